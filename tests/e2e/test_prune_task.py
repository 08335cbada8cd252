"""The beat's prune task on a real worker: a hard_delete argument in the message is not enough."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest

from storage import packs
from storage.models import OperationRun, ReviewPack, Tenant, Workspace
from tests.conftest import Stack, Worker
from workers.app import make_app

pytestmark = pytest.mark.e2e


def _packs(stack: Stack) -> tuple[int, int]:
    """A ready pack past its deadline (the sign that prune ran) and one expired past the grace period."""
    now = dt.datetime.now(dt.timezone.utc)
    grace = dt.timedelta(days=stack.settings.hard_delete_grace_days)
    with stack.session() as session:
        workspace = Workspace(name="prune-task")
        session.add(workspace)
        session.flush()
        tenant = Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name="t", hardening={})
        session.add(tenant)
        session.flush()
        ids = []
        for status, expires_at, expired_at in (
            ("ready", now - dt.timedelta(minutes=1), None),
            ("expired", now - grace * 2, now - grace - dt.timedelta(days=1)),
        ):
            run = OperationRun(workspace_id=workspace.id, tenant_id=tenant.id, type="tenant.review_pack.generate", status="completed")
            session.add(run)
            session.flush()
            pack = ReviewPack(
                workspace_id=workspace.id, tenant_id=tenant.id, operation_run_id=run.id, status=status,
                fingerprint=uuid.uuid4().hex, options={}, file_path=packs.new_file_key(),
                generated_at=now - dt.timedelta(days=100), expires_at=expires_at, expired_at=expired_at,
            )
            session.add(pack)
            session.flush()
            ids.append(pack.id)
        session.commit()
    return ids[0], ids[1]


def _status(stack: Stack, pack_id: int) -> str | None:
    with stack.session() as session:
        pack = session.get(ReviewPack, pack_id)
        return pack.status if pack else None


def _prune_with_hard_delete(stack: Stack, env: dict, log_path) -> tuple[str | None, str | None]:
    due, old = _packs(stack)
    worker = Worker(env, log_path)
    try:
        worker.wait_ready()
        make_app(stack.settings).send_task("reviewpacks.prune", kwargs={"hard_delete": True}, queue="maintenance")
        # The task logs prune.done once every batch, hard deletes included, has committed.
        deadline = time.monotonic() + 60
        while b"prune.done" not in log_path.read_bytes():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
    finally:
        worker.stop()
    return _status(stack, due), _status(stack, old)


def test_a_hard_delete_argument_is_ignored_when_the_setting_does_not_allow_it(stack, tmp_path):
    assert stack.settings.prune_hard_delete is False
    assert _prune_with_hard_delete(stack, stack.env, tmp_path / "worker.log") == ("expired", "expired")


def test_a_hard_delete_argument_is_honoured_when_the_setting_allows_it(stack, tmp_path):
    env = {**stack.env, "REVIEWPACKS_PRUNE_HARD_DELETE": "true"}
    assert _prune_with_hard_delete(stack, env, tmp_path / "worker.log") == ("expired", None)
