"""The beat schedule as the `celery beat` process really loads it."""

from __future__ import annotations

import shelve
import subprocess
import sys
import time

from celery.schedules import crontab

from tests.conftest import ROOT, stack_env


def test_beat_process_schedules_prune_daily_and_the_reaper_often(tmp_path, pg_url, redis_url, s3_server):
    env = stack_env(pg_url=pg_url, redis_url=redis_url, s3_env=s3_server.env, bucket="unused", home=tmp_path)
    schedule_file = tmp_path / "celerybeat-schedule"
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--schedule", str(schedule_file), "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        entries = {}
        while time.monotonic() < deadline and not entries:
            time.sleep(0.5)
            if any(schedule_file.parent.glob("celerybeat-schedule*")):
                try:
                    with shelve.open(str(schedule_file), flag="r") as shelf:
                        entries = dict(shelf.get("entries", {}))
                except Exception:  # noqa: BLE001 - the file may be mid-write; try again
                    entries = {}
    finally:
        beat.terminate()
        beat.wait(timeout=30)

    by_task = {entry.task: entry for entry in entries.values()}
    prune = by_task["reviewpacks.prune"]
    assert isinstance(prune.schedule, crontab)
    # At least daily: the crontab fires on every day of the week and month.
    assert prune.schedule.day_of_week == set(range(7)) and len(prune.schedule.day_of_month) == 31
    assert prune.options["queue"] == "maintenance"
    reaper = by_task["reviewpacks.reap_stale_runs"]
    assert reaper.schedule.run_every.total_seconds() <= 300
    assert reaper.options["queue"] == "maintenance"
