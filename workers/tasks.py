"""Celery tasks. They only translate: decode ids, call the pipeline, map faults to retries."""

from __future__ import annotations

import functools
import logging

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready

from settings import Settings
from storage import packs, scratch
from storage.artifacts import ArtifactStore, artifact_store_from_settings
from workers import pipeline
from workers.app import app
from workers.logs import event


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def store() -> ArtifactStore:
    return artifact_store_from_settings(settings())


@worker_ready.connect
def _sweep_scratch(**_kwargs) -> None:
    # Files a killed worker on this host left behind; a live attempt elsewhere on the host
    # touched its file within the lease, so it is kept.
    removed = scratch.sweep(older_than=packs.lease_for(settings().heartbeat_seconds))
    event(logging.getLogger("reviewpacks.worker"), "scratch.swept", removed=removed)


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
    config = settings()
    can_retry = self.request.retries < config.upload_max_retries
    try:
        result = pipeline.generate(
            int(pack_id),
            settings=config,
            store=store(),
            can_retry=can_retry,
            on_progress=lambda progress: _report(self, progress),
            fatal_errors=(SoftTimeLimitExceeded,),
        )
    except pipeline.Transient as exc:
        countdown = config.upload_retry_backoff_seconds * (2**self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc
    return result.state
