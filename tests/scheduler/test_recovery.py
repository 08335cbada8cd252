"""The sweepers on real PostgreSQL: stale running runs, forgotten queued runs, the attempt cap."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid

import pytest

from reviewpacks import runtime
from reviewpacks.settings import Settings
from scheduler import recovery
from storage import packs, scratch
from storage.models import OperationRun, ReviewPack, Tenant, Workspace

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def world(pg_url, tmp_path):
    settings = Settings.from_env(
        {
            "REVIEWPACKS_DATABASE_URL": pg_url,
            "REVIEWPACKS_HOME": str(tmp_path),
            "REVIEWPACKS_HEARTBEAT_SECONDS": "10",
            "REVIEWPACKS_QUEUED_REPUBLISH_SECONDS": "300",
            "REVIEWPACKS_MAX_ATTEMPTS": "3",
        }
    )
    with runtime.session_factory(pg_url)() as session:
        workspace = Workspace(name="recovery")
        session.add(workspace)
        session.flush()
        tenant = Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name="t", hardening={})
        session.add(tenant)
        session.commit()
    published: list[int] = []
    return settings, workspace.id, tenant.id, published


def _run(settings, ws, tenant, *, run_status, pack_status, heartbeat_ago=None, attempts=1, created_ago=dt.timedelta(0)):
    with runtime.session_factory(settings.database_url)() as session:
        # A tenant of its own per pack: a tenant has at most one queued or generating pack.
        own = Tenant(workspace_id=ws, external_id=uuid.uuid4(), name=f"t{tenant}", hardening={})
        session.add(own)
        session.flush()
        tenant = own.id
        run = OperationRun(
            workspace_id=ws, tenant_id=tenant, type="tenant.review_pack.generate", status=run_status, attempts=attempts,
            created_at=NOW - created_ago, heartbeat_at=NOW - heartbeat_ago if heartbeat_ago is not None else None,
        )
        session.add(run)
        session.flush()
        pack = ReviewPack(
            workspace_id=ws, tenant_id=tenant, operation_run_id=run.id, status=pack_status,
            fingerprint=uuid.uuid4().hex, options={}, file_path=packs.new_file_key(),
        )
        session.add(pack)
        session.commit()
        return pack.id, run.id


def _state(settings, pack_id, run_id):
    with runtime.session_factory(settings.database_url)() as session:
        run = session.get(OperationRun, run_id)
        return session.get(ReviewPack, pack_id).status, run.status, (run.context or {}).get("reason_code")


def test_a_stale_running_run_is_requeued_and_republished(world):
    settings, ws, tenant, published = world
    stale = _run(settings, ws, tenant, run_status="running", pack_status="generating", heartbeat_ago=dt.timedelta(seconds=31))
    live = _run(settings, ws, tenant, run_status="running", pack_status="generating", heartbeat_ago=dt.timedelta(seconds=5))

    result = recovery.reap(settings, published.append, now=NOW)

    assert (result.requeued, result.failed) == (1, 0)
    assert published == [stale[0]]
    assert _state(settings, *stale) == ("queued", "queued", None)
    assert _state(settings, *live) == ("generating", "running", None)


def test_a_run_that_used_up_its_attempts_fails_as_worker_lost(world):
    settings, ws, tenant, published = world
    spent = _run(settings, ws, tenant, run_status="running", pack_status="generating", heartbeat_ago=dt.timedelta(minutes=5), attempts=3)

    result = recovery.reap(settings, published.append, now=NOW)

    assert (result.requeued, result.failed) == (0, 1)
    assert published == []
    assert _state(settings, *spent) == ("failed", "completed", "worker_lost")


def test_a_queued_run_whose_message_was_lost_is_republished_once_per_window(world):
    settings, ws, tenant, published = world
    forgotten = _run(settings, ws, tenant, run_status="queued", pack_status="queued", created_ago=dt.timedelta(minutes=6))
    fresh = _run(settings, ws, tenant, run_status="queued", pack_status="queued", created_ago=dt.timedelta(seconds=30))

    first = recovery.reap(settings, published.append, now=NOW)
    second = recovery.reap(settings, published.append, now=NOW + dt.timedelta(seconds=1))

    assert first.republished == 1 and second.republished == 0
    assert published == [forgotten[0]]
    assert _state(settings, *fresh) == ("queued", "queued", None)


def test_final_runs_are_left_alone(world):
    settings, ws, tenant, published = world
    _run(settings, ws, tenant, run_status="completed", pack_status="ready", heartbeat_ago=dt.timedelta(days=1), created_ago=dt.timedelta(days=1))
    result = recovery.reap(settings, published.append, now=NOW)
    assert (result.requeued, result.failed, result.republished) == (0, 0, 0)
    assert published == []


def test_the_reaper_sweeps_scratch_files_older_than_the_lease(world, tmp_path, monkeypatch):
    settings, _, _, published = world
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "host-tmp"))
    (tmp_path / "host-tmp").mkdir()
    fd, left = scratch.new_file(41)
    os.close(fd)
    fd, live = scratch.new_file(42)
    os.close(fd)
    lease = settings.heartbeat_seconds * 3
    then = time.time() - lease - 5
    os.utime(left, (then, then))

    result = recovery.reap(settings, published.append, now=NOW)

    assert result.temp_files_removed == 1
    assert (left.exists(), live.exists()) == (False, True)
