"""Celery tasks. They only translate: decode ids, call the pipeline, map faults to retries."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready

from reviewpacks import logs, runtime
from storage import scratch
from workers import pipeline
from workers.app import app


@worker_ready.connect
def _sweep_scratch(**_kwargs: object) -> None:
    # Files a killed worker on this host left behind; a live attempt elsewhere on the host
    # touched its file within the lease, so it is kept.
    removed = scratch.sweep(older_than=runtime.current().settings.lease)
    logs.get_logger("reviewpacks.worker").info("scratch.swept", removed=removed)


def _report(task, progress: dict) -> None:
    # Flower shows only Celery's standard task fields, so the progress rides in `result` while the
    # state reads PROGRESS; the SUCCESS event replaces both when the task ends.
    task.send_event("task-progress", result=f"rows={progress['rows']} bytes={progress['bytes']}", **progress)


@app.task(
    name="reviewpacks.generate",
    bind=True,
    # A worker killed mid-generation must not lose the message: acknowledge only when done,
    # and requeue when the child dies. The run's compare-and-set claim makes redelivery harmless.
    acks_late=True,
    reject_on_worker_lost=True,
    # Transient faults (storage or database down) are retried by the pipeline's hand-back, with
    # exponential backoff; the budget comes from settings, after which the run fails with a reason.
    max_retries=None,
    ignore_result=True,
)
def generate(self, pack_id: int) -> str:
    pack_id = int(pack_id)
    process = runtime.current()
    config = process.settings
    can_retry = self.request.retries < config.transient_max_retries
    with logs.task_context(pack_id=pack_id):
        try:
            result = pipeline.generate(
                pack_id,
                settings=config,
                store=process.store,
                can_retry=can_retry,
                on_progress=lambda progress: _report(self, progress),
                fatal_errors=(SoftTimeLimitExceeded,),
            )
        except pipeline.Transient as exc:
            countdown = config.transient_retry_backoff_seconds * (2**self.request.retries)
            raise self.retry(exc=exc, countdown=countdown) from exc
    return result.state
