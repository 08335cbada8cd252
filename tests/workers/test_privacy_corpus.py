"""No planted personal data (without include_pii) and no planted secret (ever) in any file of any pack.

Both export paths (PostgreSQL COPY and the portable reader, on PostgreSQL and on the
embedded SQLite default), tenant and review packs, PII on and off. The whole flow on a
real worker is in tests/e2e/test_privacy_corpus.py.
"""

from __future__ import annotations

import json

import pytest

from domain import redaction
from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage.artifacts import LocalStore
from storage.demo_data import seed_demo
from storage.models import ReviewPack
from tests.support import corpus
from workers import pipeline
from workers.client import InvalidRequest, ReviewPackClient


@pytest.fixture(params=corpus.BACKENDS)
def planted(request, pg_url, tmp_path):
    settings, store = corpus.backend_setup(request.param, pg_url, tmp_path)
    with runtime.session_factory(settings.database_url)() as session:
        ids = seed_demo(session, findings=3)
        corpus.plant(session, ids)
    return settings, store, ids


def _generate(settings, store, pack_id) -> dict[str, str]:
    assert pipeline.generate(pack_id, settings=settings, store=store, can_retry=False).state == "ready"
    with runtime.session_factory(settings.database_url)() as session:
        key = session.get(ReviewPack, pack_id).file_path
    with store.open(key) as body:
        return corpus.entries(body.read())


@pytest.mark.parametrize("include_pii", [False, True])
def test_tenant_pack(planted, include_pii):
    settings, store, ids = planted
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=include_pii).pack
    files = _generate(settings, store, pack.id)

    assert sorted(files) == sorted(
        ["executive-summary.html", "findings.csv", "hardening.json", "metadata.json", "operations.csv",
         "reports/entra_admin_roles.json", "reports/permission_posture.json", "summary.json"]
    )
    assert corpus.leaks(files, include_pii=include_pii) == []
    block = json.loads(files["metadata.json"])["redaction"]
    assert block["policy_version"] == redaction.POLICY_VERSION and block["include_pii"] is include_pii
    assert block["limitation"] == redaction.LIMITATION
    counts = block["replacements"]
    # The counts are the placeholders in the data files (the page repeats some of them).
    data = [text for name, text in files.items() if name not in ("metadata.json", "executive-summary.html")]
    assert counts == redaction.count_placeholders(data)
    assert counts["secret"] >= 10
    assert redaction.statement(include_pii) in files["executive-summary.html"]
    if include_pii:
        assert counts["person"] == counts["email"] == counts["ip"] == counts["phone"] == 0
        # What was planted as personal data is still there: only secrets went.
        kept = corpus.personal_data_kept(files)
        assert {"Fiona Finding", corpus.GUEST_UPN, "203.0.113.9", "Brenda Breakglass", "Hank Hidden"} <= set(kept)
    else:
        assert min(counts[c] for c in ("person", "text", "email", "ip", "phone")) > 0, counts
        # Structure and technical values survive the allow-list.
        roles = json.loads(files["reports/entra_admin_roles.json"])["payload"]["roles"]
        assert roles[0]["role"] == "Global Administrator"
        assert json.loads(files["hardening.json"])["hardening"]["security_defaults"] == "enabled"


@pytest.mark.parametrize("include_pii", [False, True])
def test_review_pack(planted, include_pii):
    settings, store, ids = planted
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    pack = client.request_review_pack(ids.review_id, ids.manager_id, include_pii=include_pii).pack
    assert pack.options["include_pii"] is include_pii
    files = _generate(settings, store, pack.id)

    assert sorted(files) == ["executive-summary.html", "metadata.json", "sections.json", "summary.json"]
    assert corpus.leaks(files, include_pii=include_pii) == []
    block = json.loads(files["metadata.json"])["redaction"]
    assert block["include_pii"] is include_pii
    assert block["replacements"] == redaction.count_placeholders([files["sections.json"], files["summary.json"]])
    assert redaction.statement(include_pii) in files["executive-summary.html"]
    summary = json.loads(files["summary.json"])["summary"]
    if not include_pii:
        # The review's own prose stays, scanned; fields the review format does not know go.
        assert summary["headline"].startswith("Ask [redacted:email] about the sign-ins from [redacted:ip]")
        assert summary["preparedBy"] == summary["customerContact"] == redaction.PII_PLACEHOLDER


def test_review_packs_with_and_without_pii_are_different_requests(planted):
    settings, store, ids = planted
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    without = client.request_review_pack(ids.review_id, ids.manager_id, include_pii=False).pack
    _generate(settings, store, without.id)
    with_pii = client.request_review_pack(ids.review_id, ids.manager_id, include_pii=True)
    assert with_pii.outcome == "queued" and with_pii.pack.fingerprint != without.fingerprint
    assert client.request_review_pack(ids.review_id, ids.manager_id, include_pii=False).outcome == "reused_ready"


@pytest.mark.parametrize("bad", ["no", 0, 1, "false"])
def test_review_pack_option_must_be_a_bool(pg_url, tmp_path, bad):
    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": pg_url, "REVIEWPACKS_HOME": str(tmp_path)})
    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=0)
    client = ReviewPackClient(settings, store=LocalStore(tmp_path / "a"), publish=lambda _id: None)
    with pytest.raises(InvalidRequest, match="include_pii"):
        client.request_review_pack(ids.review_id, ids.manager_id, include_pii=bad)
    with runtime.session_factory(pg_url)() as session:
        assert session.query(ReviewPack).filter(ReviewPack.tenant_review_id == ids.review_id).count() == 0
