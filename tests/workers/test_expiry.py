"""Objects never outlive their pack, on PostgreSQL and S3 over HTTP.

Every READY -> EXPIRED change (an actor's expire, prune, and the expiry a request
performs on a pack past its deadline) goes through storage/packs.py: same audit row,
object deleted. With the store unreachable, an expiry still completes: the row moves
and keeps file_disk, and the next prune deletes the object. A pack that fails after
its upload deletes the object, or leaves it to prune when it cannot.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from reviewpacks.settings import Settings
from scheduler import retention
from storage.artifacts import ArtifactNotFound, ArtifactStoreError, S3Store, StorageUnavailable
from storage.models import AuditLog, ReviewPack
from tests.conftest import Stack
from tests.support.packs import seed
from tests.support.s3 import free_port
from workers import pipeline
from workers.client import ReviewPackClient


@pytest.fixture
def world(stack: Stack):
    ids = seed(stack, findings=12)
    client = stack.client(publish=lambda _id: None)
    store = stack.store()

    def ready(**options):
        result = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, **options)
        assert result.outcome == "queued"
        assert pipeline.generate(result.pack.id, settings=stack.settings, store=store, can_retry=False).state == "ready"
        return client.get_pack(result.pack.id, ids.manager_id)

    return ids, client, store, ready


def _row(stack: Stack, pack_id: int) -> ReviewPack:
    with stack.session() as session:
        return session.get(ReviewPack, pack_id)


def _exists(store, key: str) -> bool:
    try:
        store.stat(key)
        return True
    except ArtifactNotFound:
        return False


def _expiry_audits(stack: Stack, pack_id: int) -> list[tuple[int | None, dict]]:
    with stack.session() as session:
        rows = session.execute(
            select(AuditLog).where(AuditLog.resource_id == pack_id, AuditLog.action == "review_pack.expired")
        ).scalars()
        return [(a.actor_user_id, a.details) for a in rows]


def _past_deadline(stack: Stack, pack_id: int) -> None:
    with stack.session() as session:
        session.execute(
            update(ReviewPack)
            .where(ReviewPack.id == pack_id)
            .values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
        )
        session.commit()


def test_actor_prune_and_request_expiries_write_the_same_audit_row_and_delete_the_object(stack, world):
    ids, client, store, ready = world
    by_actor = ready(include_pii=True, include_operations=False)
    by_prune = ready(include_pii=False, include_operations=False)
    by_request = ready(include_pii=False, include_operations=True)
    keys = {p.id: _row(stack, p.id).file_path for p in (by_actor, by_prune, by_request)}
    assert all(_exists(store, key) for key in keys.values())

    client.expire_pack(by_actor.id, ids.manager_id)
    _past_deadline(stack, by_request.id)
    again = client.request_pack(
        tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=False, include_operations=True
    )
    _past_deadline(stack, by_prune.id)
    assert retention.prune(stack.settings, store, now=dt.datetime.now(dt.timezone.utc)).expired >= 1

    assert again.outcome == "queued" and again.pack.id != by_request.id
    for pack in (by_actor, by_prune, by_request):
        row = _row(stack, pack.id)
        assert (row.status, row.file_disk) == ("expired", None)
        assert not _exists(store, keys[pack.id])
    assert _expiry_audits(stack, by_actor.id) == [(ids.manager_id, {"by": "actor"})]
    assert _expiry_audits(stack, by_prune.id) == [(None, {"by": "retention"})]
    assert _expiry_audits(stack, by_request.id) == [(None, {"by": "retention"})]


def test_a_request_expires_a_pack_past_its_deadline_exactly_as_prune_would(stack, world):
    ids, client, store, ready = world
    old = ready(include_pii=True, include_operations=True)
    key = _row(stack, old.id).file_path
    _past_deadline(stack, old.id)

    fresh = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=True, include_operations=True)

    assert fresh.outcome == "queued" and fresh.pack.id != old.id
    row = _row(stack, old.id)
    assert (row.status, row.file_disk) == ("expired", None) and row.expired_at is not None
    assert not _exists(store, key)
    assert _expiry_audits(stack, old.id) == [(None, {"by": "retention"})]


def _dead_store_client(stack: Stack) -> ReviewPackClient:
    # Same database, but the artifact store's endpoint is a port nobody listens on.
    settings = Settings.from_env({**stack.env, "REVIEWPACKS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    return ReviewPackClient(settings, publish=lambda _id: None)


def test_expire_with_storage_down_completes_and_the_next_prune_deletes_the_object(stack, world):
    ids, _, store, ready = world
    pack = ready(include_pii=True, include_operations=False)
    key = _row(stack, pack.id).file_path

    view = _dead_store_client(stack).expire_pack(pack.id, ids.manager_id)

    assert view.status == "expired"
    row = _row(stack, pack.id)
    assert (row.status, row.file_disk) == ("expired", "s3")
    assert _exists(store, key)
    assert _expiry_audits(stack, pack.id) == [(ids.manager_id, {"by": "actor"})]

    result = retention.prune(stack.settings, store, now=dt.datetime.now(dt.timezone.utc))

    assert result.objects_deleted >= 1
    assert _row(stack, pack.id).file_disk is None
    assert not _exists(store, key)


def test_a_request_with_storage_down_still_expires_the_old_pack_and_queues_a_new_one(stack, world):
    ids, _, store, ready = world
    old = ready(include_pii=False, include_operations=False)
    key = _row(stack, old.id).file_path
    _past_deadline(stack, old.id)

    fresh = _dead_store_client(stack).request_pack(
        tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=False, include_operations=False
    )

    assert fresh.outcome == "queued"
    row = _row(stack, old.id)
    assert (row.status, row.file_disk) == ("expired", "s3")
    assert _expiry_audits(stack, old.id) == [(None, {"by": "retention"})]
    retention.prune(stack.settings, store, now=dt.datetime.now(dt.timezone.utc))
    assert not _exists(store, key) and _row(stack, old.id).file_disk is None


class AnswerLostStore(S3Store):
    """Real S3 over HTTP whose upload succeeds but whose answer is lost, as a dropped response would be."""

    deletes_work = True

    def put_file(self, key, *args, **kwargs):
        super().put_file(key, *args, **kwargs)
        raise ArtifactStoreError("the upload's response was lost")

    def delete(self, key):
        if not self.deletes_work:
            raise StorageUnavailable("the store stopped answering")
        super().delete(key)


@pytest.mark.parametrize("deletes_work", [True, False], ids=["deleted-at-once", "swept-by-prune"])
def test_a_pack_that_fails_after_its_upload_leaves_no_object(stack, world, deletes_work):
    ids, client, _, _ = world
    store = AnswerLostStore.from_settings(stack.settings)
    store.deletes_work = deletes_work
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=False, include_operations=False).pack
    key = _row(stack, pack.id).file_path

    result = pipeline.generate(pack.id, settings=stack.settings, store=store, can_retry=False)

    assert (result.state, result.reason) == ("failed", pipeline.ReasonCode.STORAGE_ERROR)
    row = _row(stack, pack.id)
    assert row.status == "failed"
    if deletes_work:
        assert row.file_disk is None and not _exists(stack.store(), key)
        return
    assert row.file_disk == "s3" and _exists(stack.store(), key)
    retention.prune(stack.settings, stack.store(), now=dt.datetime.now(dt.timezone.utc))
    assert _row(stack, pack.id).file_disk is None and not _exists(stack.store(), key)
