"""The per-process runtime: one engine per URL, pieces built on first use, nothing shared across a fork."""

from __future__ import annotations

import os

import pytest

from reviewpacks import runtime
from reviewpacks.settings import Settings


@pytest.fixture
def fresh_current(monkeypatch):
    """Run with no process runtime built yet, and put the previous one back afterwards."""
    monkeypatch.setattr(runtime, "_current", None)


def test_one_engine_and_one_session_factory_per_database_url(tmp_path):
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    assert runtime.engine_for(first) is runtime.engine_for(first)
    assert runtime.engine_for(first) is not runtime.engine_for(second)
    assert runtime.session_factory(first) is runtime.session_factory(first)
    assert runtime.session_factory(first).kw["bind"] is runtime.engine_for(first)


def test_a_runtime_builds_its_store_once_and_again_after_a_fork(tmp_path, fresh_current, monkeypatch):
    monkeypatch.setenv("REVIEWPACKS_HOME", str(tmp_path))
    monkeypatch.delenv("REVIEWPACKS_ARTIFACT_STORE", raising=False)
    process = runtime.current()
    assert runtime.current() is process
    assert process.settings.home == tmp_path
    store = process.store
    assert process.store is store
    assert process.engine is runtime.engine_for(process.settings.database_url)

    runtime.after_fork()
    assert process.store is not store
    assert process.settings is runtime.current().settings


def test_the_process_runtime_is_built_on_first_use_from_the_environment(tmp_path, fresh_current, monkeypatch):
    monkeypatch.setenv("REVIEWPACKS_HOME", str(tmp_path / "first"))
    monkeypatch.setenv("REVIEWPACKS_HEARTBEAT_SECONDS", "11")
    process = runtime.current()
    monkeypatch.setenv("REVIEWPACKS_HEARTBEAT_SECONDS", "12")
    assert runtime.current() is process and process.settings.heartbeat_seconds == 11
    assert not (tmp_path / "first").exists()


def test_a_forked_child_opens_its_own_database_connections(tmp_path):
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    engine = runtime.engine_for(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("select 1")
    parent_checked_in = engine.pool.checkedin()
    assert parent_checked_in == 1
    pid = os.fork()
    if pid == 0:  # the child: after_fork must leave it an empty pool, and the parent's socket alone
        runtime.after_fork()
        os._exit(0 if engine.pool.checkedin() == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert engine.pool.checkedin() == parent_checked_in


def test_explicit_settings_can_be_given_a_store(tmp_path):
    marker = object()
    assert runtime.Runtime(Settings(home=tmp_path), store=marker).store is marker


def test_a_pool_child_builds_its_store_as_it_starts_and_its_first_pack_reuses_it(tmp_path, fresh_current, monkeypatch):
    from workers import app as worker_app

    monkeypatch.setenv("REVIEWPACKS_HOME", str(tmp_path))
    monkeypatch.delenv("REVIEWPACKS_ARTIFACT_STORE", raising=False)
    built = []
    real = runtime.artifact_store_from_settings
    monkeypatch.setattr(runtime, "artifact_store_from_settings", lambda settings: built.append(real(settings)) or built[-1])

    worker_app._fresh_connections()
    assert len(built) == 1
    assert runtime.current().store is built[0]
    assert len(built) == 1

    worker_app._fresh_connections()  # the next child, forked from a parent that had one
    assert len(built) == 2 and runtime.current().store is built[1]


def test_a_store_the_settings_cannot_build_does_not_stop_a_pool_child_and_is_logged_by_its_type(
    tmp_path, fresh_current, monkeypatch, caplog
):
    from workers import app as worker_app

    monkeypatch.setenv("REVIEWPACKS_HOME", str(tmp_path))

    def broken(settings):
        raise ValueError("cannot use s3://tenant-secrets.example.com/packs")

    monkeypatch.setattr(runtime, "artifact_store_from_settings", broken)
    with caplog.at_level("WARNING", logger="reviewpacks"):
        worker_app._fresh_connections()
    assert "worker.store_not_built" in caplog.text and "ValueError" in caplog.text
    assert "tenant-secrets" not in caplog.text
    with pytest.raises(ValueError):
        runtime.current().store  # noqa: B018 - the first pack meets the same error, with its reason code


def test_a_worker_compiles_the_summary_templates_before_it_forks(monkeypatch):
    from jinja2.utils import LRUCache

    from domain import executive_summary
    from workers import app as worker_app

    cache = LRUCache(10)
    monkeypatch.setattr(executive_summary._env, "cache", cache)
    worker_app._compile_templates()
    assert sorted(name for _, name in cache.keys()) == ["review_summary.html", "tenant_summary.html"]
