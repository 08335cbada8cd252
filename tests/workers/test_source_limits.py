"""Too-deep or very large source values: a clear failure or a bounded pack, never a retried outage."""

from __future__ import annotations

import json
import uuid

import pytest

from domain.reasons import ReasonCode
from domain.redaction import MAX_DEPTH
from reviewpacks import runtime
from storage.demo_data import seed_demo
from storage.models import Finding, ReviewPack, StoredReport
from tests.support import corpus
from workers import pipeline
from workers.client import ReviewPackClient

BACKENDS = corpus.BACKENDS
_setup = corpus.backend_setup


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("include_pii", [False, True])
def test_too_deep_evidence_fails_as_invalid_source_data_without_retry(backend, include_pii, pg_url, tmp_path):
    settings, store = _setup(backend, pg_url, tmp_path)
    with runtime.session_factory(settings.database_url)() as session:
        ids = seed_demo(session, findings=2)
        # A secret-like key deep inside, so that the evidence is scrubbed on both paths even with PII.
        session.add(Finding(tenant_id=ids.tenant_id, finding_type="deep", severity="low", status="new",
                            subject_type="user", subject_external_id=uuid.uuid4(), title="deep",
                            evidence=_nested(400, {"password": "x"})))
        session.commit()
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=include_pii).pack

    # can_retry=True: an outage would raise Transient here; bad data must fail at once.
    result = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True)

    assert (result.state, result.reason) == ("failed", ReasonCode.INVALID_SOURCE_DATA)
    with runtime.session_factory(settings.database_url)() as session:
        assert session.get(ReviewPack, pack.id).status == "failed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_deep_report_fails_as_invalid_source_data(backend, pg_url, tmp_path):
    settings, store = _setup(backend, pg_url, tmp_path)
    with runtime.session_factory(settings.database_url)() as session:
        ids = seed_demo(session, findings=1)
        report = session.query(StoredReport).filter(StoredReport.tenant_id == ids.tenant_id).first()
        report.payload = _nested(MAX_DEPTH + 5, "x")
        session.commit()
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=True).pack
    result = pipeline.generate(pack.id, settings=settings, store=store, can_retry=True)
    assert (result.state, result.reason) == ("failed", ReasonCode.INVALID_SOURCE_DATA)


@pytest.mark.parametrize("backend", ["postgresql-copy", "postgresql-portable"])
def test_a_huge_value_and_a_wide_object_give_a_bounded_pack(backend, pg_url, tmp_path):
    # The shapes that once took minutes: a 320k-character report value, a 20,000-key evidence object.
    settings, store = _setup(backend, pg_url, tmp_path)
    with runtime.session_factory(settings.database_url)() as session:
        ids = seed_demo(session, findings=1)
        report = session.query(StoredReport).filter(
            StoredReport.tenant_id == ids.tenant_id, StoredReport.report_type == "entra.admin_roles"
        ).one()
        report.payload = {"role": "a." * 160_000, "owner": "x@" * 10}
        session.add(Finding(tenant_id=ids.tenant_id, finding_type="wide", severity="low", status="new",
                            subject_type="user", subject_external_id=uuid.uuid4(), title="wide",
                            evidence={f"member{i}@contoso.com": f"value {i}" for i in range(20_000)}))
        session.commit()
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=False).pack
    assert pipeline.generate(pack.id, settings=settings, store=store, can_retry=False).state == "ready"
    with runtime.session_factory(settings.database_url)() as session:
        key = session.get(ReviewPack, pack.id).file_path
    with store.open(key) as body:
        files = corpus.entries(body.read())
    assert "member1@contoso.com" not in files["findings.csv"]
    payload = json.loads(files["reports/entra_admin_roles.json"])["payload"]
    # Cut to a spreadsheet cell before scanning, with the visible marker.
    assert len(payload["role"]) < 33_000 and payload["role"].endswith("…[truncated]")
