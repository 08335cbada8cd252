"""Every Celery setting, in one place, read from the environment through settings.Settings.

Generation tasks are long and must survive a worker dying mid-way, so the
settings below trade a little throughput for never losing a message.
"""

from kombu import Exchange, Queue

from scheduler.schedule import beat_schedule as _beat_schedule
from settings import Settings


def broker_settings(settings: Settings) -> dict:
    """The settings that depend on where the broker is; a producer with its own Settings applies these."""
    # Redis redelivers an unacknowledged message after the visibility timeout; it must exceed the hard
    # time limit, or a long but healthy task would be delivered a second time while still running.
    visibility_timeout = settings.task_time_limit + 600
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": {"visibility_timeout": visibility_timeout, **settings.broker_transport_options},
        # Celery reads the same timeout again for the result backend and for ETA/countdown messages.
        "result_backend_transport_options": {"visibility_timeout": visibility_timeout},
    }


_settings = Settings.from_env()
_settings.ensure_embedded_dirs()
globals().update(broker_settings(_settings))

# The database row is the record of every pack's state; Celery's result backend is not used.
result_backend = None
task_ignore_result = True

# Acknowledge after the task body returns, so a worker killed mid-task leaves the message to be redelivered.
task_acks_late = True
# When the worker child is killed (SIGKILL, OOM), requeue the message instead of acknowledging it.
task_reject_on_worker_lost = True
# One message at a time per process: a long task must not sit on reserved messages another worker could run.
worker_prefetch_multiplier = 1
# Soft limit raises inside the task so the pipeline can record `timeout`; the hard limit kills a stuck child.
task_soft_time_limit = _settings.task_soft_time_limit
task_time_limit = _settings.task_time_limit

# Flower and `celery events` see task progress only when workers send events.
worker_send_task_events = True
task_send_sent_event = True

# JSON only: tasks carry ids, never pickled objects.
task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"

task_queues = (
    Queue("review_packs", Exchange("review_packs"), routing_key="review_packs"),
    Queue("maintenance", Exchange("maintenance"), routing_key="maintenance"),
)
task_default_queue = "review_packs"
task_default_exchange = "review_packs"
task_default_routing_key = "review_packs"
task_routes = {
    "reviewpacks.generate": {"queue": "review_packs"},
    "reviewpacks.prune": {"queue": "maintenance"},
    "reviewpacks.reap_stale_runs": {"queue": "maintenance"},
}
# Retry publishing when the broker connection drops, instead of failing the producer at once.
task_publish_retry = True
broker_connection_retry_on_startup = True

# The schedule is data in scheduler/schedule.py; exactly one beat process runs it.
beat_schedule = _beat_schedule(_settings)

enable_utc = True
timezone = "UTC"
worker_hijack_root_logger = False
