"""The beat schedule, as data. The app factory (workers/app.py) hands it to beat; tests read it from the beat app."""

from __future__ import annotations

from celery.schedules import crontab

from reviewpacks.settings import Settings


def beat_schedule(settings: Settings) -> dict:
    return {
        # Daily, off the hour, when exports are rare.
        "reviewpacks.prune.daily": {
            "task": "reviewpacks.prune",
            "schedule": crontab(hour=3, minute=17),
            "options": {"queue": "maintenance"},
        },
        # Every minute by default: a lost worker's run resumes within a few leases.
        "reviewpacks.reap_stale_runs": {
            "task": "reviewpacks.reap_stale_runs",
            "schedule": settings.reap_interval_seconds,
            "options": {"queue": "maintenance", "expires": settings.reap_interval_seconds},
        },
    }
