"""The generation pipeline called directly (no Celery), on PostgreSQL and the local artifact store."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update

from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage.artifacts import LocalStore, StorageUnavailable
from storage.demo_data import seed_demo
from storage.models import Finding, OperationRun, ReviewPack, StoredReport
from workers import pipeline
from workers.client import ReviewPackClient


@pytest.fixture(params=["copy", "portable"])
def setup(request, pg_url, tmp_path):
    settings = Settings.from_env(
        {
            "REVIEWPACKS_DATABASE_URL": pg_url,
            "REVIEWPACKS_HOME": str(tmp_path),
            "REVIEWPACKS_FINDINGS_CHUNK_SIZE": "7",
            "REVIEWPACKS_FINDINGS_READER": request.param,
        }
    )
    store = LocalStore(tmp_path / "artifacts")
    store.ensure_ready()
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=60)
    return settings, store, client, ids


def _session(settings):
    return runtime.session_factory(settings.database_url)()


def test_generate_then_a_duplicate_delivery_does_nothing(setup):
    settings, store, client, ids = setup
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    first = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True)
    second = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True)

    assert first.state == "ready" and first.rows > 0
    assert second.state == "skipped"
    assert list(store.keys()) == [_key(settings, pack.id)]


def _key(settings, pack_id):
    with _session(settings) as session:
        return session.get(ReviewPack, pack_id).file_path


def test_progress_is_reported_while_findings_stream(setup):
    settings, store, client, ids = setup
    settings = dataclasses.replace(settings, progress_interval_seconds=1e-6)
    seen = []
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    result = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True, on_progress=seen.append)
    rows = [p["rows"] for p in seen]
    assert rows == sorted(rows) and rows[-1] == result.rows
    if settings.findings_reader == "portable":
        assert len(rows) > 2  # chunk size 7: several progress reports, not one at the end


def test_a_corrupt_stored_report_fails_once_with_a_reason(setup):
    settings, store, client, ids = setup
    with _session(settings) as session:
        session.execute(
            update(StoredReport).where(StoredReport.tenant_id == ids.tenant_id, StoredReport.report_type == "permission_posture")
            .values(payload="corrupt")
        )
        session.commit()
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    result = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True)

    assert (result.state, result.reason) == ("failed", pipeline.ReasonCode.INVALID_SOURCE_DATA)
    view = client.get_pack(pack.id, ids.manager_id)
    assert (view.status, view.reason_code) == ("failed", "invalid_source_data")
    assert list(store.keys()) == []


class DownStore(LocalStore):
    def put_file(self, *args, **kwargs):
        raise StorageUnavailable("store down")


def test_transient_storage_fault_hands_the_attempt_back_then_fails_when_out_of_retries(setup, tmp_path):
    settings, _, client, ids = setup
    down = DownStore(tmp_path / "down")
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    with pytest.raises(pipeline.Transient) as raised:
        pipeline.generate(pack.id, settings=settings, store=down, can_retry=True)
    assert raised.value.reason == pipeline.ReasonCode.STORAGE_UNAVAILABLE
    assert client.get_pack(pack.id, ids.manager_id).status == "queued"

    result = pipeline.generate(pack.id, settings=settings, store=down, can_retry=False)
    assert result.state == "failed"
    with _session(settings) as session:
        run = session.get(OperationRun, pack.operation_run_id)
    assert (run.attempts, run.context["reason_code"]) == (2, "storage_unavailable")
    assert list(Path(settings.home).rglob("review-pack-*")) == []


def test_data_changed_after_the_request_is_recorded_in_the_fingerprint(setup):
    settings, store, client, ids = setup
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    with _session(settings) as session:
        session.execute(
            update(Finding).where(Finding.tenant_id == ids.tenant_id)
            .values(updated_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
        )
        session.commit()

    assert pipeline.generate(pack.id, settings=settings, store=store, can_retry=True).state == "ready"

    ready = client.get_pack(pack.id, ids.manager_id)
    assert ready.fingerprint != pack.fingerprint
    fresh = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert (fresh.outcome, fresh.pack.id) == ("reused_ready", pack.id)
