"""The pack lifecycle through the client: expire, regenerate, list, audit rows, notifications."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from sqlalchemy import delete, select, update

from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage.artifacts import ArtifactNotFound, LocalStore
from storage.demo_data import seed_demo
from storage.models import AuditLog, Notification, ReviewPack, TenantReview
from tests.conftest import ROOT
from workers import pipeline
from workers.client import InvalidRequest, NotFound, ReviewPackClient


@pytest.fixture
def env(pg_url, tmp_path):
    settings = Settings.from_env(
        {"REVIEWPACKS_DATABASE_URL": pg_url, "REVIEWPACKS_HOME": str(tmp_path), "REVIEWPACKS_ARTIFACT_STORE": f"file://{tmp_path}/artifacts"}
    )
    store = LocalStore(tmp_path / "artifacts")
    store.ensure_ready()
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=15)

    def ready(**options):
        result = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, **options)
        assert pipeline.generate(result.pack.id, settings=settings, store=store, can_retry=False).state == "ready"
        return client.get_pack(result.pack.id, ids.manager_id)

    return settings, store, client, ids, ready


def _audits(settings, pack_id):
    with runtime.session_factory(settings.database_url)() as session:
        return session.execute(select(AuditLog).where(AuditLog.resource_id == pack_id).order_by(AuditLog.id)).scalars().all()


def _key(settings, pack_id):
    with runtime.session_factory(settings.database_url)() as session:
        return session.get(ReviewPack, pack_id).file_path


def test_expire_deletes_the_object_keeps_the_row_and_is_idempotent(env):
    settings, store, client, ids, ready = env
    pack = ready()
    key = _key(settings, pack.id)
    assert store.stat(key).size == pack.file_size

    expired = client.expire_pack(pack.id, ids.manager_id)
    again = client.expire_pack(pack.id, ids.manager_id)

    assert expired.status == again.status == "expired"
    with pytest.raises(ArtifactNotFound):
        store.stat(key)
    assert [a.action for a in _audits(settings, pack.id)] == [
        "review_pack.requested",
        "review_pack.expired",
    ]
    with pytest.raises(NotFound, match=f"pack {pack.id} has expired"):
        client.download_url(pack.id, ids.manager_id)


def test_a_queued_pack_cannot_be_expired(env):
    settings, store, client, ids, _ = env
    queued = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    with pytest.raises(InvalidRequest, match="only a ready pack can be expired"):
        client.expire_pack(queued.id, ids.manager_id)
    assert client.get_pack(queued.id, ids.manager_id).status == "queued"


def test_an_expired_pack_with_the_same_fingerprint_does_not_block_a_new_one(env):
    settings, store, client, ids, ready = env
    first = ready()
    client.expire_pack(first.id, ids.manager_id)

    second = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)

    assert second.outcome == "queued"
    assert second.pack.id != first.id and second.pack.fingerprint == first.fingerprint


def test_a_failed_pack_with_the_same_fingerprint_does_not_block_a_new_one(env):
    settings, store, client, ids, _ = env
    first = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    with runtime.session_factory(settings.database_url)() as session:
        from domain.reasons import ReasonCode
        from storage import packs

        packs.mark_failed(session, first.id, ReasonCode.INTERNAL_ERROR, now=pipeline.utcnow())
    second = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert second.outcome == "queued" and second.pack.id != first.id


def test_reuse_outcomes_are_audited_truthfully(env):
    settings, store, client, ids, ready = env
    pack = ready()
    reused = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert (reused.outcome, reused.pack.id) == ("reused_ready", pack.id)
    client.download_url(pack.id, ids.viewer_id)

    audits = _audits(settings, pack.id)
    assert [(a.action, a.details.get("outcome")) for a in audits] == [
        ("review_pack.requested", "queued"),
        ("review_pack.requested", "reused_ready"),
        ("review_pack.download_url_issued", None),
    ]
    assert [a.actor_user_id for a in audits] == [ids.manager_id, ids.manager_id, ids.viewer_id]
    assert all(a.workspace_id == ids.workspace_id and a.tenant_id == ids.tenant_id for a in audits)
    # The URL is a bearer credential and never lands in an audit row.
    assert all("file://" not in str(a.details) and "X-Amz" not in str(a.details) for a in audits)


def test_ready_notification_goes_to_the_initiator(env):
    settings, store, client, ids, ready = env
    pack = ready()
    with runtime.session_factory(settings.database_url)() as session:
        notes = session.execute(select(Notification).where(Notification.user_id == ids.manager_id)).scalars().all()
    assert [(n.kind, n.data["pack_id"]) for n in notes] == [("review_pack.queued", pack.id), ("review_pack.ready", pack.id)]
    assert notes[0].body == f"Review pack #{pack.id} for Contoso Ltd is queued for generation."
    assert notes[1].body == f"Review pack #{pack.id} for Contoso Ltd is ready to download."


def test_list_is_newest_first_and_filters_by_status(env):
    settings, store, client, ids, ready = env
    first = ready(include_operations=False)
    second = ready(include_pii=False)
    third = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    client.expire_pack(first.id, ids.manager_id)

    assert [p.id for p in client.list_packs(ids.tenant_id, ids.viewer_id)] == [third.id, second.id, first.id]
    assert [p.id for p in client.list_packs(ids.tenant_id, ids.viewer_id, status="ready")] == [second.id]
    assert [p.id for p in client.list_packs(ids.tenant_id, ids.viewer_id, status="expired")] == [first.id]
    with pytest.raises(InvalidRequest, match="status must be one of"):
        client.list_packs(ids.tenant_id, ids.viewer_id, status="bogus")


def test_cli_says_already_available_when_a_ready_pack_is_reused(env, pg_url, tmp_path):
    settings, store, client, ids, ready = env
    pack = ready()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    run_env.update(REVIEWPACKS_DATABASE_URL=pg_url, REVIEWPACKS_HOME=str(tmp_path), REVIEWPACKS_BROKER_URL="redis://127.0.0.1:6379/14")
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id)],
        cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"pack {pack.id} already available" in result.stdout
    assert "queued" not in result.stdout


def _set(settings, model, row_id, **values):
    with runtime.session_factory(settings.database_url)() as session:
        session.execute(update(model).where(model.id == row_id).values(**values))
        session.commit()


def test_download_url_lives_no_longer_than_the_pack(env):
    settings, store, client, ids, ready = env
    pack = ready()
    _set(settings, ReviewPack, pack.id, expires_at=pipeline.utcnow() + dt.timedelta(seconds=90))
    client.download_url(pack.id, ids.viewer_id)
    _set(settings, ReviewPack, pack.id, expires_at=pipeline.utcnow() + dt.timedelta(days=3))
    client.download_url(pack.id, ids.viewer_id)
    issued = [a.details["ttl_seconds"] for a in _audits(settings, pack.id) if a.action == "review_pack.download_url_issued"]
    assert 85 <= issued[0] <= 90
    assert issued[1] == settings.download_url_ttl_minutes * 60
    _set(settings, ReviewPack, pack.id, expires_at=pipeline.utcnow() - dt.timedelta(seconds=1))
    with pytest.raises(NotFound, match=f"pack {pack.id} has expired"):
        client.download_url(pack.id, ids.viewer_id)


def test_download_url_of_a_failed_pack_is_not_found_and_the_failure_is_notified(env):
    settings, store, client, ids, _ = env
    queued = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    with runtime.session_factory(settings.database_url)() as session:
        from domain.reasons import USER_MESSAGES, ReasonCode
        from storage import packs

        packs.mark_failed(session, queued.id, ReasonCode.STORAGE_ERROR, now=pipeline.utcnow())
    with pytest.raises(NotFound, match=f"pack {queued.id} failed and has no file to download"):
        client.download_url(queued.id, ids.manager_id)
    with runtime.session_factory(settings.database_url)() as session:
        note = session.execute(
            select(Notification).where(Notification.user_id == ids.manager_id, Notification.kind == "review_pack.failed")
        ).scalar_one()
    assert note.body == f"Review pack #{queued.id} for Contoso Ltd failed: {USER_MESSAGES[ReasonCode.STORAGE_ERROR]}"
    assert note.data["reason_code"] == "storage_error" and "X-Amz" not in note.body


def test_review_packs_keep_their_kind_status_and_audit_outcomes(env):
    settings, store, client, ids, _ = env
    assert client.review_pack_status(ids.review_id, ids.viewer_id) == "unavailable"
    first = client.request_review_pack(ids.review_id, ids.manager_id)
    assert client.review_pack_status(ids.review_id, ids.viewer_id) == "generating"
    again = client.request_review_pack(ids.review_id, ids.manager_id)
    assert pipeline.generate(first.pack.id, settings=settings, store=store, can_retry=False).state == "ready"
    assert client.review_pack_status(ids.review_id, ids.viewer_id) == "available"
    reused = client.request_review_pack(ids.review_id, ids.manager_id)
    assert [r.outcome for r in (first, again, reused)] == ["queued", "reused_active", "reused_ready"]
    audits = [a for a in _audits(settings, first.pack.id) if a.action == "review_pack.requested"]
    assert [(a.details["review_id"], a.details["export_outcome"]) for a in audits] == [
        (ids.review_id, "queued"),
        (ids.review_id, "reused_active_run"),
        (ids.review_id, "reused"),
    ]
    assert client.download_url(first.pack.id, ids.viewer_id)

    # Unpublished: the pack can no longer be downloaded and the review has no pack to offer.
    _set(settings, TenantReview, ids.review_id, status="archived")
    with pytest.raises(NotFound, match="belongs to a review that is no longer published"):
        client.download_url(first.pack.id, ids.viewer_id)
    assert client.review_pack_status(ids.review_id, ids.viewer_id) == "unavailable"
    _set(settings, TenantReview, ids.review_id, status="published")
    # Ready but past its deadline, before prune has run: no longer available.
    _set(settings, ReviewPack, first.pack.id, expires_at=pipeline.utcnow() - dt.timedelta(seconds=1))
    assert client.review_pack_status(ids.review_id, ids.viewer_id) == "expired"
    client.expire_pack(first.pack.id, ids.manager_id)
    assert client.review_pack_status(ids.review_id, ids.viewer_id) == "expired"

    # A deleted review leaves a review pack, never a tenant pack.
    with runtime.session_factory(settings.database_url)() as session:
        session.execute(delete(TenantReview).where(TenantReview.id == ids.review_id))
        session.commit()
    view = client.get_pack(first.pack.id, ids.manager_id)
    assert (view.kind, view.tenant_review_id) == ("review", None)
    with pytest.raises(NotFound):
        client.review_pack_status(ids.review_id, ids.viewer_id)


def test_a_review_unpublished_before_generation_fails_the_pack_with_source_missing(env):
    settings, store, client, ids, _ = env
    queued = client.request_review_pack(ids.review_id, ids.manager_id).pack
    _set(settings, TenantReview, ids.review_id, status="draft")
    result = pipeline.generate(queued.id, settings=settings, store=store, can_retry=False)
    assert (result.state, result.reason) == ("failed", "source_missing")
    assert client.get_pack(queued.id, ids.manager_id).reason_code == "source_missing"
