"""The Celery application: `celery -A workers.app worker -Q review_packs,maintenance`."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init

import celeryconfig
from settings import Settings
from storage.db import dispose_engines


def make_app(settings: Settings | None = None) -> Celery:
    """The worker's app from the environment, or a producer's app for the given settings."""
    celery_app = Celery("reviewpacks", include=["workers.tasks", "scheduler.tasks", "workers.dispatch"])
    celery_app.config_from_object(celeryconfig)
    if settings is not None:
        settings.ensure_embedded_dirs()
        celery_app.conf.update(celeryconfig.broker_settings(settings))
    return celery_app


app = make_app()


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # A forked child must not reuse the parent's pooled database sockets.
    dispose_engines()


logging.getLogger("reviewpacks").setLevel(logging.INFO)
