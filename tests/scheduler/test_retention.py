"""Retention on real PostgreSQL and a real artifact store: expire, hard-delete, and overlapping prunes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import threading
import uuid

import pytest
from sqlalchemy import func, select

from reviewpacks import runtime
from reviewpacks.settings import Settings
from scheduler import retention
from storage import packs
from storage.artifacts import ArtifactNotFound, LocalStore
from storage.models import AuditLog, OperationRun, ReviewPack, Tenant, Workspace
from tests.conftest import ROOT

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def world(pg_url, tmp_path):
    settings = Settings.from_env(
        {
            "REVIEWPACKS_DATABASE_URL": pg_url,
            "REVIEWPACKS_HOME": str(tmp_path),
            "REVIEWPACKS_ARTIFACT_STORE": f"file://{tmp_path}/artifacts",
            "REVIEWPACKS_PRUNE_BATCH_SIZE": "7",
        }
    )
    store = LocalStore(tmp_path / "artifacts")
    store.ensure_ready()
    with runtime.session_factory(pg_url)() as session:
        workspace = Workspace(name="retention")
        session.add(workspace)
        session.flush()
        tenant = Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name="t", hardening={})
        session.add(tenant)
        session.commit()
    return settings, store, workspace.id, tenant.id


def _pack(settings, store, workspace_id, tenant_id, *, status="ready", expires_in=None, expired_ago=None) -> tuple[int, str]:
    key = packs.new_file_key()
    source = store.root / f"src-{uuid.uuid4().hex}.zip"
    source.write_bytes(b"zip")
    store.put_file(key, source, sha256="0" * 64, size=3)
    source.unlink()
    with runtime.session_factory(settings.database_url)() as session:
        run = OperationRun(workspace_id=workspace_id, tenant_id=tenant_id, type="tenant.review_pack.generate", status="completed")
        session.add(run)
        session.flush()
        pack = ReviewPack(
            workspace_id=workspace_id,
            tenant_id=tenant_id,
            operation_run_id=run.id,
            status=status,
            fingerprint=uuid.uuid4().hex,
            options={},
            file_path=key,
            file_disk="local",
            generated_at=NOW - dt.timedelta(days=100),
            expires_at=NOW + expires_in if expires_in is not None else None,
            expired_at=NOW - expired_ago if expired_ago is not None else None,
        )
        session.add(pack)
        session.commit()
        return pack.id, key


def _status(settings, pack_id):
    with runtime.session_factory(settings.database_url)() as session:
        pack = session.get(ReviewPack, pack_id)
        return pack.status if pack else None


def _exists(store, key):
    try:
        store.stat(key)
        return True
    except ArtifactNotFound:
        return False


def test_past_retention_expires_and_deletes_the_object_future_is_untouched(world):
    settings, store, ws, tenant = world
    due, due_key = _pack(settings, store, ws, tenant, expires_in=-dt.timedelta(minutes=1))
    later, later_key = _pack(settings, store, ws, tenant, expires_in=dt.timedelta(days=1))

    result = retention.prune(settings, store, now=NOW)

    assert (result.expired, result.hard_deleted) == (1, 0)
    assert str(result) == "1 packs expired, 0 packs hard-deleted"
    assert (_status(settings, due), _exists(store, due_key)) == ("expired", False)
    assert (_status(settings, later), _exists(store, later_key)) == ("ready", True)
    with runtime.session_factory(settings.database_url)() as session:
        audit = session.execute(select(AuditLog).where(AuditLog.resource_id == due)).scalar_one()
        row = session.get(ReviewPack, due)
    assert (audit.action, audit.details, audit.actor_user_id) == ("review_pack.expired", {"by": "retention"}, None)
    assert row.file_disk is None and row.expired_at is not None


def test_hard_delete_removes_rows_past_the_grace_period_only(world):
    settings, store, ws, tenant = world
    grace = dt.timedelta(days=settings.hard_delete_grace_days)
    old, _ = _pack(settings, store, ws, tenant, status="expired", expires_in=-grace * 2, expired_ago=grace + dt.timedelta(hours=1))
    recent, _ = _pack(settings, store, ws, tenant, status="expired", expires_in=-dt.timedelta(days=1), expired_ago=dt.timedelta(days=1))

    without = retention.prune(settings, store, now=NOW)
    assert without.hard_deleted == 0 and _status(settings, old) == "expired"

    result = retention.prune(settings, store, now=NOW, hard_delete=True)

    assert result.hard_deleted == 1
    assert _status(settings, old) is None
    assert _status(settings, recent) == "expired"


def test_an_object_already_gone_is_not_an_error(world):
    settings, store, ws, tenant = world
    pack_id, key = _pack(settings, store, ws, tenant, expires_in=-dt.timedelta(minutes=1))
    store.delete(key)
    assert retention.prune(settings, store, now=NOW).expired == 1
    assert _status(settings, pack_id) == "expired"


def test_prune_works_in_batches(world):
    settings, store, ws, tenant = world
    ids = [_pack(settings, store, ws, tenant, expires_in=-dt.timedelta(minutes=1))[0] for _ in range(30)]
    result = retention.prune(settings, store, now=NOW)
    assert result.expired == 30 and result.objects_deleted == 30
    assert {_status(settings, i) for i in ids} == {"expired"}


def _retention_audits(settings, ids):
    with runtime.session_factory(settings.database_url)() as session:
        return session.execute(
            select(AuditLog.resource_id, func.count())
            .where(AuditLog.resource_id.in_(ids), AuditLog.action == "review_pack.expired")
            .group_by(AuditLog.resource_id)
        ).all()


def test_two_prunes_in_parallel_threads_expire_each_pack_once(world):
    settings, store, ws, tenant = world
    settings = dataclasses.replace(settings, prune_batch_size=3)
    ids = [_pack(settings, store, ws, tenant, expires_in=-dt.timedelta(minutes=1))[0] for _ in range(40)]
    barrier = threading.Barrier(2)
    results = []

    def run():
        barrier.wait()
        results.append(retention.prune(settings, store, now=NOW))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(r.expired for r in results) == 40
    assert sorted(_retention_audits(settings, ids)) == sorted((i, 1) for i in ids)


def test_two_prune_processes_overlap_and_counts_add_up(world):
    """Two `reviewpacks prune` processes started together, as a beat and an operator would."""
    settings, store, ws, tenant = world
    ids = [_pack(settings, store, ws, tenant, expires_in=-dt.timedelta(minutes=1))[0] for _ in range(60)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    env.update(
        REVIEWPACKS_DATABASE_URL=settings.database_url,
        REVIEWPACKS_ARTIFACT_STORE=settings.artifact_store,
        REVIEWPACKS_HOME=str(settings.home),
        REVIEWPACKS_PRUNE_BATCH_SIZE="2",
        COLUMNS="200",
    )
    procs = [
        subprocess.Popen([sys.executable, "-m", "workers.cli", "prune"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    counts = [int(out.split(" packs expired")[0].split()[-1]) for out in outputs]
    assert sum(counts) == 60
    assert sorted(_retention_audits(settings, ids)) == sorted((i, 1) for i in ids)
    assert list(store.keys()) == []


@pytest.mark.parametrize(
    "setting, requested, allowed",
    [(False, None, False), (False, True, False), (False, False, False), (True, None, True), (True, True, True), (True, False, False)],
)
def test_a_prune_message_hard_deletes_only_when_the_setting_allows(world, setting, requested, allowed):
    settings = dataclasses.replace(world[0], prune_hard_delete=setting)
    assert retention.hard_delete_allowed(settings, requested) is allowed
