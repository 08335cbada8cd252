"""Celery tasks. They only translate: decode ids, call the pipeline, map faults to retries.

What Flower shows comes from here, so it is kept to reason codes: a failed pack is a
task in state FAILURE with :class:`PackFailed`, a retry carries :class:`PackRetry`.
Neither holds more than the reason code, and both are raised outside any ``except``
block so that no chained exception (with a storage message or URL) reaches the
traceback Celery sends with the event.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready

from reviewpacks import logs, runtime
from storage import scratch
from workers import metrics, pipeline
from workers.app import app


@worker_ready.connect
def _sweep_scratch(**_kwargs: object) -> None:
    # Files a killed worker on this host left behind; a live attempt elsewhere on the host
    # touched its file within the lease, so it is kept.
    removed = scratch.sweep(older_than=runtime.current().settings.lease)
    logs.get_logger("reviewpacks.worker").info("scratch.swept", removed=removed)


class PackFailed(Exception):
    """The pack failed; the reason code is all a task result or event carries."""

    def __init__(self, reason_code: str):
        super().__init__(reason_code)
        self.reason_code = reason_code

    def __reduce__(self):
        return (type(self), (self.reason_code,))


class PackRetry(PackFailed):
    """A transient fault handed the attempt back; it will run again after a backoff."""


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
    # A failed pack is an expected outcome, recorded on its row: log it without a traceback.
    throws=(PackFailed,),
)
def generate(self, pack_id: int) -> str:
    pack_id = int(pack_id)
    process = runtime.current()
    config = process.settings
    can_retry = self.request.retries < config.transient_max_retries
    retry_reason = None
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
            retry_reason = exc.reason.value
    if retry_reason is not None:
        metrics.record_retry(config, retry_reason)
        countdown = config.transient_retry_backoff_seconds * (2**self.request.retries)
        raise self.retry(exc=PackRetry(retry_reason), countdown=countdown)
    reason = result.reason.value if result.reason is not None else None
    metrics.record_outcome(
        config,
        outcome=result.state,
        reason=reason,
        rows=result.rows,
        size=result.size,
        build_seconds=result.build_seconds,
        upload_seconds=result.upload_seconds,
    )
    if result.state == "failed":
        raise PackFailed(reason or "internal_error")
    return result.state
