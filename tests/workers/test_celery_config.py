"""The Celery settings that make long tasks crash-safe, as the worker process loads them."""

from __future__ import annotations

import subprocess
import sys

import celeryconfig
import workers.tasks  # noqa: F401 - registers the tasks the worker loads through `include`
from tests.conftest import ROOT
from workers.app import app


def test_generate_task_delivery_policy():
    task = app.tasks["reviewpacks.generate"]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.ignore_result is True


def test_crash_safety_settings():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.result_backend_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.worker_send_task_events is True and conf.task_send_sent_event is True
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"


def test_routes_follow_the_contract():
    routes = celeryconfig.task_routes
    assert routes["reviewpacks.generate"] == {"queue": "review_packs"}
    assert routes["reviewpacks.prune"] == {"queue": "maintenance"}
    assert routes["reviewpacks.reap_stale_runs"] == {"queue": "maintenance"}
    assert {q.name for q in celeryconfig.task_queues} == {"review_packs", "maintenance"}


def test_visibility_timeout_follows_a_configured_time_limit():
    code = (
        "from workers.app import app; c = app.conf; "
        "print(c.task_time_limit, c.broker_transport_options['visibility_timeout'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "REVIEWPACKS_TASK_SOFT_TIME_LIMIT": "100", "REVIEWPACKS_TASK_TIME_LIMIT": "160",
             "REVIEWPACKS_BROKER_URL": "redis://127.0.0.1:6379/13"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(out[0]) == 160 and int(out[1]) > 160
