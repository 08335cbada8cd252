"""Maintenance tasks run by celery-beat on the `maintenance` queue. They only translate."""

from __future__ import annotations

import datetime as dt

from scheduler import recovery, retention
from workers.app import app
from workers.tasks import settings, store


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _publish_generate(pack_id: int) -> None:
    app.send_task("reviewpacks.generate", args=[pack_id], queue="review_packs")


@app.task(
    name="reviewpacks.prune",
    # Retention is idempotent and row-claimed; a redelivered prune only finds less to do.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def prune(hard_delete: bool | None = None) -> str:
    config = settings()
    allowed = retention.hard_delete_allowed(config, hard_delete)
    return str(retention.prune(config, store(), now=_now(), hard_delete=allowed))


@app.task(name="reviewpacks.reap_stale_runs", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def reap_stale_runs() -> str:
    return str(recovery.reap(settings(), _publish_generate, now=_now()))
