"""The Celery settings that make long tasks crash-safe, as the worker process loads them."""

from __future__ import annotations

import subprocess
import sys

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
    routes = app.conf.task_routes
    assert routes["reviewpacks.generate"] == {"queue": "review_packs"}
    assert routes["reviewpacks.prune"] == {"queue": "maintenance"}
    assert routes["reviewpacks.reap_stale_runs"] == {"queue": "maintenance"}
    assert {q.name for q in app.conf.task_queues} == {"review_packs", "maintenance"}


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


def test_a_producer_app_is_built_from_its_own_settings_without_reading_the_environment(tmp_path, monkeypatch):
    from reviewpacks.settings import Settings
    from workers.app import make_app

    # A value the environment path would refuse: reading it at all would raise.
    monkeypatch.setenv("REVIEWPACKS_RETENTION_DAYS", "not-a-number")
    monkeypatch.setenv("REVIEWPACKS_BROKER_URL", "redis://127.0.0.1:6379/15")
    settings = Settings(home=tmp_path, broker_url="redis://127.0.0.1:6379/12", task_soft_time_limit=50, task_time_limit=70)
    producer = make_app(settings)
    try:
        assert producer.conf.broker_url == "redis://127.0.0.1:6379/12"
        assert producer.conf.task_time_limit == 70
        assert producer.conf.task_acks_late is True
        assert producer.conf.task_routes["reviewpacks.generate"] == {"queue": "review_packs"}
    finally:
        producer.close()


def test_a_bad_value_stops_the_worker_with_a_message_naming_the_variable(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "REVIEWPACKS_HEARTBEAT_SECONDS": "soon", "REVIEWPACKS_BROKER_URL": "redis://127.0.0.1:6379/13"}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-P", "solo", "--loglevel=WARNING"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "REVIEWPACKS_HEARTBEAT_SECONDS must be a whole number, got 'soon'" in result.stdout + result.stderr
