"""Every Celery setting, in one place, built from a Settings object.

Generation tasks are long and must survive a worker dying mid-way, so the
settings below trade a little throughput for never losing a message.

Nothing here runs at import: :func:`celery_config` is called by the app factory
(workers/app.py) when the app is first configured, with the settings of that
process or of the producer that built the app.  The factory loads this file by
its location next to the packages, not by the name ``celeryconfig``: that is
Celery's default module name, and a host application's own celeryconfig.py
earlier on ``sys.path`` would otherwise replace these settings.
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from reviewpacks.settings import Settings

GENERATE_QUEUE = "review_packs"
MAINTENANCE_QUEUE = "maintenance"


def broker_settings(settings: Settings) -> dict[str, Any]:
    """The settings that depend on where the broker is."""
    # Redis redelivers an unacknowledged message after the visibility timeout; it must exceed the hard
    # time limit, or a long but healthy task would be delivered a second time while still running.
    visibility_timeout = settings.task_time_limit + 600
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": {"visibility_timeout": visibility_timeout, **settings.broker_transport_options},
        # Celery reads the same timeout again for the result backend and for ETA/countdown messages.
        "result_backend_transport_options": {"visibility_timeout": visibility_timeout},
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """The whole Celery configuration for ``settings`` (the beat schedule is added by the app factory)."""
    return {
        **broker_settings(settings),
        # The database row is the record of every pack's state; Celery's result backend is not used.
        "result_backend": None,
        "task_ignore_result": True,
        # Acknowledge after the task body returns, so a worker killed mid-task leaves the message to be redelivered.
        "task_acks_late": True,
        # When the worker child is killed (SIGKILL, OOM), requeue the message instead of acknowledging it.
        "task_reject_on_worker_lost": True,
        # One message at a time per process: a long task must not sit on reserved messages another worker could run.
        "worker_prefetch_multiplier": 1,
        # The soft limit raises inside the task so the pipeline can record `timeout`; the hard limit kills a stuck child.
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        # Flower and `celery events` see task progress only when workers send events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # JSON only: tasks carry ids, never pickled objects.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_queues": (
            Queue(GENERATE_QUEUE, Exchange(GENERATE_QUEUE), routing_key=GENERATE_QUEUE),
            Queue(MAINTENANCE_QUEUE, Exchange(MAINTENANCE_QUEUE), routing_key=MAINTENANCE_QUEUE),
        ),
        "task_default_queue": GENERATE_QUEUE,
        "task_default_exchange": GENERATE_QUEUE,
        "task_default_routing_key": GENERATE_QUEUE,
        "task_routes": {
            "reviewpacks.generate": {"queue": GENERATE_QUEUE},
            "reviewpacks.prune": {"queue": MAINTENANCE_QUEUE},
            "reviewpacks.reap_stale_runs": {"queue": MAINTENANCE_QUEUE},
        },
        # Retry publishing when the broker connection drops, instead of failing the producer at once.
        "task_publish_retry": True,
        "broker_connection_retry_on_startup": True,
        "enable_utc": True,
        "timezone": "UTC",
        # Worker and beat logs of our own go through reviewpacks/logs.py; the host's root logger stays the host's.
        "worker_hijack_root_logger": False,
    }
