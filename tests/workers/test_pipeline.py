"""The generation pipeline called directly (no Celery), on PostgreSQL and the local artifact store."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import resource
import signal
from pathlib import Path

import pytest
from sqlalchemy import update

from reviewpacks import runtime
from reviewpacks.settings import Settings
from scheduler import retention
from storage import scratch
from storage.artifacts import ArtifactStoreError, LocalStore, StorageUnavailable
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


def test_a_pack_built_before_its_first_report_reports_no_progress(setup):
    # Its task's success follows at once; a last progress event would cost a broker round trip for nothing.
    settings, store, client, ids = setup
    settings = dataclasses.replace(settings, progress_interval_seconds=3600.0)
    seen = []
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    result = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True, on_progress=seen.append)
    assert result.state == "ready" and result.rows > 0 and seen == []


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
    # The first attempt failed before uploading: no object can exist, and the row says so.
    assert _row(settings, pack.id).file_disk is None
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


SECRET_ADDRESS = "https://10.9.8.7:9000/private-bucket/packs/0123abcd.zip?X-Amz-Signature=f00"


class RefusingStore(LocalStore):
    """Stores the object, then reports a refusal, as a store whose response was lost would."""

    def __init__(self, root, *, delete_works: bool = True):
        super().__init__(root)
        self.delete_works = delete_works

    def put_file(self, key, *args, **kwargs):
        super().put_file(key, *args, **kwargs)
        raise ArtifactStoreError(f"refused {SECRET_ADDRESS}")

    def delete(self, key):
        if not self.delete_works:
            raise StorageUnavailable(f"cannot reach {SECRET_ADDRESS}")
        super().delete(key)


def _row(settings, pack_id):
    with _session(settings) as session:
        return session.get(ReviewPack, pack_id)


def test_a_pack_that_fails_after_its_upload_deletes_the_object(setup, tmp_path, caplog):
    settings, _, client, ids = setup
    store = RefusingStore(tmp_path / "refusing")
    store.ensure_ready()
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    with caplog.at_level("DEBUG", logger="reviewpacks"):
        result = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True)

    assert (result.state, result.reason) == ("failed", pipeline.ReasonCode.STORAGE_ERROR)
    assert list(store.keys()) == []
    row = _row(settings, pack.id)
    assert (row.status, row.file_disk) == ("failed", None)
    with _session(settings) as session:
        context = session.get(OperationRun, pack.operation_run_id).context
    assert "10.9.8.7" not in str(context) and "10.9.8.7" not in caplog.text


def test_an_object_a_failed_pack_could_not_delete_is_swept_by_the_next_prune(setup, tmp_path):
    settings, _, client, ids = setup
    store = RefusingStore(tmp_path / "refusing", delete_works=False)
    store.ensure_ready()
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    assert pipeline.generate(pack.id, settings=settings, store=store, can_retry=False).state == "failed"
    row = _row(settings, pack.id)
    assert (row.status, row.file_disk) == ("failed", "local")
    assert list(store.keys()) == [row.file_path]

    store.delete_works = True
    result = retention.prune(settings, store, now=pipeline.utcnow())

    assert result.objects_deleted >= 1
    assert list(store.keys()) == []
    assert _row(settings, pack.id).file_disk is None


def test_retries_and_failures_carry_the_reason_code_and_never_the_exception_text(setup, tmp_path, caplog):
    settings, _, client, ids = setup

    class Unreachable(LocalStore):
        def put_file(self, *args, **kwargs):
            raise StorageUnavailable(f"could not connect to {SECRET_ADDRESS}")

    down = Unreachable(tmp_path / "unreachable")
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    with caplog.at_level("DEBUG", logger="reviewpacks"):
        with pytest.raises(pipeline.Transient) as raised:
            pipeline.generate(pack.id, settings=settings, store=down, can_retry=True)
        failed = pipeline.generate(pack.id, settings=settings, store=down, can_retry=False)

    assert str(raised.value) == "storage_unavailable"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert failed.reason == pipeline.ReasonCode.STORAGE_UNAVAILABLE
    assert "10.9.8.7" not in caplog.text and "private-bucket" not in caplog.text
    with _session(settings) as session:
        assert "10.9.8.7" not in str(session.get(OperationRun, pack.operation_run_id).context)


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """The kernel refuses writes past ``limit`` bytes with EFBIG, as a full or capped disk would."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_full_disk_is_retried_then_fails_as_disk_full(setup, tmp_path):
    settings, store, client, ids = setup
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    with _file_size_limit(2048):
        with pytest.raises(pipeline.Transient) as raised:
            pipeline.generate(pack.id, settings=settings, store=store, can_retry=True)
        assert client.get_pack(pack.id, ids.manager_id).status == "queued"
        failed = pipeline.generate(pack.id, settings=settings, store=store, can_retry=False)

    assert raised.value.reason == pipeline.ReasonCode.DISK_FULL
    assert (failed.state, failed.reason) == ("failed", pipeline.ReasonCode.DISK_FULL)
    assert list(scratch.directory().glob(f"{scratch.PREFIX}{pack.id}-*")) == []
    assert list(store.keys()) == []

    retried = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    assert pipeline.generate(retried.id, settings=settings, store=store, can_retry=False).state == "ready"


def test_one_session_factory_carries_every_write_of_an_attempt(setup, monkeypatch):
    settings, store, client, ids = setup
    opened = []
    factory = runtime.session_factory(settings.database_url)

    def counting():
        opened.append(1)
        return factory()

    counting.kw = factory.kw
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack

    def no_other_factory(_url):
        raise AssertionError("the pipeline looked up a session factory of its own")

    monkeypatch.setattr(pipeline, "session_factory", no_other_factory)
    result = pipeline.generate(
        pack.id, settings=dataclasses.replace(settings, progress_interval_seconds=1e-6), store=store,
        can_retry=True, sessions=counting,
    )

    assert result.state == "ready"
    # The claim, the heartbeats while findings stream, and the ready mark.
    assert len(opened) >= 3


def test_a_database_down_at_claim_time_is_retried_without_its_text(setup, caplog):
    settings, store, client, ids = setup
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    # Nothing listens on this port: the connection error names the host and port.
    dead = runtime.session_factory("postgresql+psycopg://postgres@127.0.0.1:9/reviewpacks_nowhere")

    with caplog.at_level("DEBUG", logger="reviewpacks"):
        with pytest.raises(pipeline.Transient) as raised:
            pipeline.generate(pack.id, settings=settings, store=store, can_retry=True, sessions=dead)

    assert str(raised.value) == "database_unavailable"
    assert "127.0.0.1" not in caplog.text and "nowhere" not in caplog.text
    assert client.get_pack(pack.id, ids.manager_id).status == "queued"
