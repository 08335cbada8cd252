"""Compare-and-set state changes on real PostgreSQL: the database is the lock."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy.exc import IntegrityError

from domain.reasons import ReasonCode
from storage import packs
from storage.artifacts import LocalStore
from storage.models import AuditLog, Notification, OperationRun, ReviewPack, Tenant, User, Workspace

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
LEASE = dt.timedelta(seconds=90)


@pytest.fixture
def queued(pg_session):
    workspace = Workspace(name="w")
    user = User(email=f"{uuid.uuid4().hex}@example.com", display_name="u")
    pg_session.add_all([workspace, user])
    pg_session.flush()
    tenant = Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name="t", hardening={})
    pg_session.add(tenant)
    pg_session.flush()
    run = OperationRun(workspace_id=workspace.id, tenant_id=tenant.id, type="tenant.review_pack.generate", status="queued", initiator_user_id=user.id)
    pg_session.add(run)
    pg_session.flush()
    pack = ReviewPack(
        workspace_id=workspace.id,
        tenant_id=tenant.id,
        operation_run_id=run.id,
        initiated_by_user_id=user.id,
        status="queued",
        fingerprint="f" * 64,
        options={"include_pii": True, "include_operations": False},
        file_path=packs.new_file_key(),
    )
    pg_session.add(pack)
    pg_session.commit()
    return pack


def test_a_second_claim_of_the_same_pack_does_nothing(pg_session, queued):
    state, claim = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE)
    assert state is packs.ClaimState.CLAIMED and claim.attempt == 1

    again, nothing = packs.claim(pg_session, queued.id, now=NOW + dt.timedelta(seconds=5), lease=LEASE)
    assert (again, nothing) == (packs.ClaimState.BUSY, None)
    pg_session.refresh(queued)
    assert queued.status == "generating"
    assert pg_session.get(OperationRun, queued.operation_run_id).attempts == 1


def test_a_stale_heartbeat_lets_a_new_attempt_take_over_and_fences_the_old_one(pg_session, queued):
    _, first = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE)
    state, second = packs.claim(pg_session, queued.id, now=NOW + LEASE + dt.timedelta(seconds=1), lease=LEASE)
    assert state is packs.ClaimState.CLAIMED and second.attempt == 2

    assert packs.heartbeat(pg_session, first, now=NOW, rows=1, nbytes=1) is False
    done = dict(now=NOW, retention=dt.timedelta(days=1), sha256="a" * 64, size=1, disk="s3", summary={}, rows=1)
    assert packs.mark_ready(pg_session, first, **done) is False
    assert packs.mark_ready(pg_session, second, **done) is True
    pg_session.refresh(queued)
    assert queued.status == "ready"


def test_final_packs_are_not_claimed(pg_session, queued):
    _, claim = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE)
    packs.mark_ready(pg_session, claim, now=NOW, retention=dt.timedelta(days=1), sha256="a" * 64, size=1, disk="s3", summary={}, rows=0)
    assert packs.claim(pg_session, queued.id, now=NOW + dt.timedelta(days=1), lease=LEASE) == (packs.ClaimState.DONE, None)
    assert packs.claim(pg_session, 10**12, now=NOW, lease=LEASE) == (packs.ClaimState.DONE, None)


def test_release_hands_the_attempt_back_for_a_retry(pg_session, queued):
    _, claim = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE)
    assert packs.release(pg_session, claim, now=NOW) is True
    pg_session.refresh(queued)
    assert queued.status == "queued"
    state, retry = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE)
    assert state is packs.ClaimState.CLAIMED and retry.attempt == 2


def test_mark_failed_records_the_reason_and_notifies_once(pg_session, queued):
    _, claim = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE)
    assert packs.mark_failed(pg_session, queued.id, ReasonCode.STORAGE_UNAVAILABLE, now=NOW, attempt=claim.attempt)
    assert not packs.mark_failed(pg_session, queued.id, ReasonCode.INTERNAL_ERROR, now=NOW)
    run = pg_session.get(OperationRun, queued.operation_run_id)
    assert (run.status, run.outcome, run.context["reason_code"]) == ("completed", "failed", "storage_unavailable")
    notes = pg_session.query(Notification).filter_by(user_id=queued.initiated_by_user_id).all()
    assert [(n.kind, n.data["reason_code"]) for n in notes] == [("review_pack.failed", "storage_unavailable")]


def test_two_live_packs_cannot_share_a_fingerprint_but_a_failed_one_does_not_block(pg_session, queued):
    twin = dict(
        workspace_id=queued.workspace_id, tenant_id=queued.tenant_id, fingerprint=queued.fingerprint, options={}, file_path=packs.new_file_key()
    )
    pg_session.add(ReviewPack(status="queued", **twin))
    with pytest.raises(IntegrityError):
        pg_session.flush()
    pg_session.rollback()

    packs.mark_failed(pg_session, queued.id, ReasonCode.INTERNAL_ERROR, now=NOW)
    pg_session.add(ReviewPack(status="queued", **twin))
    pg_session.flush()


def test_file_keys_are_random_and_carry_no_tenant_data():
    keys = {packs.new_file_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("packs/") and k.endswith(".zip") and len(k) == len("packs/") + 32 + 4 for k in keys)


def test_the_claim_records_the_store_before_anything_is_uploaded(pg_session, queued):
    packs.claim(pg_session, queued.id, now=NOW, lease=LEASE, disk="s3")
    pg_session.refresh(queued)
    assert queued.file_disk == "s3"


@pytest.mark.parametrize("object_gone, disk", [(True, None), (False, "s3")])
def test_a_failed_pack_keeps_file_disk_until_its_object_is_gone(pg_session, queued, object_gone, disk):
    _, claim = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE, disk="s3")
    assert packs.mark_failed(pg_session, queued.id, ReasonCode.STORAGE_ERROR, now=NOW, attempt=claim.attempt, object_gone=object_gone)
    pg_session.refresh(queued)
    assert (queued.status, queued.file_disk) == ("failed", disk)


def test_a_requeue_loses_to_an_attempt_that_took_the_run_over_meanwhile(pg_session, queued):
    packs.claim(pg_session, queued.id, now=NOW, lease=LEASE)
    later = NOW + LEASE * 2
    [stale] = [s for s in packs.stale_runs(pg_session, now=later, lease=LEASE, limit=10) if s.pack_id == queued.id]
    # A redelivered message takes the stale run over between the sweep's read and its update.
    state, _ = packs.claim(pg_session, queued.id, now=later, lease=LEASE)
    assert state is packs.ClaimState.CLAIMED

    assert packs.requeue_stale(pg_session, stale, now=later) is False
    pg_session.refresh(queued)
    assert queued.status == "generating"


def test_a_second_request_insert_with_a_live_fingerprint_returns_none(pg_session, queued):
    again = packs.create_request(
        pg_session, workspace_id=queued.workspace_id, tenant_id=queued.tenant_id, review_id=None,
        actor_id=queued.initiated_by_user_id, fingerprint=queued.fingerprint, previous_fingerprint=None,
        options={}, now=NOW, kind="tenant", audit_details={"outcome": "queued"}, tenant_label="t",
    )
    assert again is None


def test_expire_moves_only_ready_packs_and_writes_one_audit_row_each(pg_session, queued, tmp_path):
    store = LocalStore(tmp_path / "artifacts")
    store.ensure_ready()
    _, claim = packs.claim(pg_session, queued.id, now=NOW, lease=LEASE, disk="local")
    packs.mark_ready(pg_session, claim, now=NOW, retention=dt.timedelta(days=1), sha256="a" * 64, size=1, disk="local", summary={}, rows=0)

    first = packs.expire(pg_session, store, [queued.id], now=NOW, by="actor", actor_id=queued.initiated_by_user_id)
    second = packs.expire(pg_session, store, [queued.id], now=NOW, by="actor")

    assert (first.expired, second.expired) == ((queued.id,), ())
    # The object was never uploaded: deleting a missing object is not an error.
    assert first.objects == packs.ObjectSweep(deleted=1)
    pg_session.refresh(queued)
    assert (queued.status, queued.file_disk) == ("expired", None)
    audits = pg_session.query(AuditLog).filter_by(resource_id=queued.id, action="review_pack.expired").all()
    assert [(a.actor_user_id, a.details) for a in audits] == [(queued.initiated_by_user_id, {"by": "actor"})]
