"""Maintenance tasks run by celery-beat on the `maintenance` queue. They only translate.

They are shared tasks, so this package needs nothing from workers/: the app
that includes them (workers/app.py) registers them when it is finalised.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task

from reviewpacks import logs, runtime
from scheduler import recovery, retention


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@shared_task(
    name="reviewpacks.prune",
    # Retention is idempotent and row-claimed; a redelivered prune only finds less to do.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def prune(hard_delete: bool | None = None) -> str:
    process = runtime.current()
    # The message's own hard_delete flag counts only where the deployment allows hard deletes.
    allowed = retention.hard_delete_allowed(process.settings, hard_delete)
    with logs.task_context(task="reviewpacks.prune"):
        return str(retention.prune(process.settings, process.store, now=_now(), hard_delete=allowed))


@shared_task(name="reviewpacks.reap_stale_runs", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def reap_stale_runs(self) -> str:
    def publish_generate(pack_id: int) -> None:
        self.app.send_task("reviewpacks.generate", args=[pack_id], queue="review_packs")

    with logs.task_context(task="reviewpacks.reap_stale_runs"):
        return str(recovery.reap(runtime.current().settings, publish_generate, now=_now()))
