"""Whole flows on a real worker: Redis broker, PostgreSQL migrated by Alembic, S3 over HTTP."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import subprocess
import uuid

import pytest
import requests
from sqlalchemy import delete, select, update

from domain.redaction import PII_PLACEHOLDER
from storage.models import Finding, Notification, OperationRun, ReviewPack, StoredReport, Tenant
from tests.support.packs import (
    TENANT_PACK_FILES,
    object_bytes,
    open_zip,
    pack_count,
    pack_key,
    read_json,
    seed,
    sha256,
)

pytestmark = pytest.mark.e2e

WAIT = 90


def _ready(stack, ids, **options):
    client = stack.client()
    result = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, **options)
    assert result.outcome == "queued"
    pack = client.wait(result.pack.id, ids.manager_id, timeout=WAIT)
    assert pack.status == "ready", pack
    return pack


def test_request_becomes_ready_with_the_contract_layout(stack, worker):
    ids = seed(stack, findings=300)
    pack = _ready(stack, ids)

    data = object_bytes(stack, pack)
    assert sha256(data) == pack.sha256
    assert len(data) == pack.file_size
    archive = open_zip(data)
    assert archive.namelist() == TENANT_PACK_FILES

    metadata = read_json(archive, "metadata.json")
    assert metadata["entrypoint"] == "executive-summary.html"
    assert metadata["fingerprint"] == pack.fingerprint
    listed = {f["path"]: f for f in metadata["files"]}
    assert sorted(listed) == [n for n in TENANT_PACK_FILES if n != "metadata.json"]
    for name, entry in listed.items():
        assert entry["sha256"] == sha256(archive.read(name)), name
        assert entry["role"] == ("entrypoint" if name == "executive-summary.html" else "appendix")
    assert "not a certification" in metadata["disclosure"]

    with stack.session() as session:
        open_findings = session.execute(
            select(Finding.id).where(Finding.tenant_id == ids.tenant_id, Finding.status.in_(["new", "acknowledged"]))
            .order_by(Finding.id)
        ).scalars().all()
        run = session.get(OperationRun, pack.operation_run_id)
        notes = session.execute(select(Notification).where(Notification.user_id == ids.manager_id)).scalars().all()
    rows = list(csv.DictReader(io.StringIO(archive.read("findings.csv").decode())))
    assert [int(r["id"]) for r in rows] == open_findings
    assert pack.rows_written == len(open_findings)
    summary = read_json(archive, "summary.json")
    assert summary["counts"]["findings"]["total"] == len(open_findings)
    assert set(summary["data_freshness"]) == {"findings", "hardening", "permission_posture", "entra_admin_roles", "operations"}
    html = archive.read("executive-summary.html").decode()
    assert "<svg" in html and "Contoso Ltd" in html

    assert (run.type, run.status, run.outcome) == ("tenant.review_pack.generate", "completed", "succeeded")
    assert [n.kind for n in notes] == ["review_pack.queued", "review_pack.ready"]
    assert notes[1].body == f"Review pack #{pack.id} for Contoso Ltd is ready to download."
    assert metadata["pack"]["id"] == pack.id
    assert metadata["pack"]["generated_at"] == pack.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert metadata["generator"].startswith("reviewpacks ")
    assert all(entry["status"] in ("current", "stale", "missing") for entry in summary["data_freshness"].values())
    assert pack.expires_at - pack.generated_at == dt.timedelta(days=stack.settings.retention_days)
    assert list((stack.home / "tmp").rglob("review-pack-*")) == []


def test_presigned_url_downloads_the_pack_over_http(stack, worker):
    ids = seed(stack, findings=50)
    pack = _ready(stack, ids)
    client = stack.client()

    url = client.download_url(pack.id, ids.viewer_id)
    response = requests.get(url, timeout=30)

    assert response.status_code == 200
    assert sha256(response.content) == pack.sha256
    with stack.session() as session:
        from storage.models import Tenant

        external_id = session.get(Tenant, ids.tenant_id).external_id
    expected = f'attachment; filename="review-pack-{external_id}-{pack.generated_at.date().isoformat()}.zip"'
    assert response.headers["Content-Disposition"] == expected
    assert f"X-Amz-Expires={stack.settings.download_url_ttl_minutes * 60}" in url
    # The object itself is private: the same URL without its signature is refused.
    assert requests.get(url.split("?", 1)[0], timeout=30).status_code == 403
    head = stack.store()._client.head_object(Bucket=stack.bucket, Key=f"review-packs/{pack_key(stack, pack.id)}")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == pack.sha256
    # The seed's X-Review-Pack-SHA256 header: S3 returns the object's sha256 metadata on the download itself.
    assert response.headers["x-amz-meta-sha256"] == pack.sha256


def test_include_pii_false_hides_names_and_keeps_uuids(stack, worker):
    ids = seed(stack, findings=20)
    subject = uuid.uuid4()
    with stack.session() as session:
        session.add(
            Finding(
                tenant_id=ids.tenant_id,
                finding_type="stale_account",
                severity="high",
                status="new",
                subject_type="user",
                subject_external_id=subject,
                subject_display_name="Jane Confidential",
                title="Mailbox jane.confidential@example.com forwards externally",
                evidence={"displayName": "Jane Confidential", "mail": "jane.confidential@example.com"},
            )
        )
        session.commit()
    pack = _ready(stack, ids, include_pii=False)

    archive = open_zip(object_bytes(stack, pack))
    everything = b"".join(archive.read(n) for n in archive.namelist()).decode()
    assert "Jane Confidential" not in everything
    assert "jane.confidential@example.com" not in everything
    assert "Olivia Ops" not in everything  # the admin roles report's member name
    assert str(subject) in everything
    row = next(r for r in csv.DictReader(io.StringIO(archive.read("findings.csv").decode())) if r["subject_external_id"] == str(subject))
    assert row["subject_display_name"] == PII_PLACEHOLDER
    assert read_json(archive, "metadata.json")["options"]["include_pii"] is False


def test_include_operations_false_drops_operations_csv(stack, worker):
    ids = seed(stack, findings=10)
    pack = _ready(stack, ids, include_operations=False)
    archive = open_zip(object_bytes(stack, pack))
    assert archive.namelist() == [n for n in TENANT_PACK_FILES if n != "operations.csv"]
    assert read_json(archive, "summary.json")["counts"]["operations"] is None


def test_missing_reports_give_empty_structures(stack, worker):
    ids = seed(stack, findings=5)
    with stack.session() as session:
        session.query(StoredReport).filter(StoredReport.tenant_id == ids.tenant_id).delete()
        session.commit()
    pack = _ready(stack, ids)
    archive = open_zip(object_bytes(stack, pack))
    for name in ("reports/entra_admin_roles.json", "reports/permission_posture.json"):
        assert read_json(archive, name)["available"] is False
        assert read_json(archive, name)["payload"] == {}


def test_identical_request_reuses_the_ready_pack_without_a_new_object(stack, worker):
    ids = seed(stack, findings=40)
    pack = _ready(stack, ids)
    keys_before = sorted(stack.store().keys())

    again = stack.client().request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)

    assert again.outcome == "reused_ready"
    assert again.pack.id == pack.id
    assert pack_count(stack, ids.tenant_id) == 1
    assert sorted(stack.store().keys()) == keys_before


IDENTITY = re.compile(rb'<dd id="pack-identity">[^<]*</dd>')


def test_same_fingerprint_regenerates_identical_content(stack, worker, tmp_path):
    ids = seed(stack, findings=500)
    first = _ready(stack, ids)
    first_zip = open_zip(object_bytes(stack, first))
    # Take the first pack out of dedupe without touching the source data.
    with stack.session() as session:
        session.execute(update(ReviewPack).where(ReviewPack.id == first.id).values(status="expired"))
        session.commit()

    second = _ready(stack, ids)
    second_zip = open_zip(object_bytes(stack, second))

    assert second.id != first.id
    assert second.fingerprint == first.fingerprint
    assert first_zip.namelist() == second_zip.namelist()
    for name in first_zip.namelist():
        if name not in ("metadata.json", "executive-summary.html"):
            assert first_zip.read(name) == second_zip.read(name), name
    # The page differs only in the element that names the pack.
    pages = [z.read("executive-summary.html") for z in (first_zip, second_zip)]
    assert pages[0] != pages[1]
    assert IDENTITY.sub(b"", pages[0]) == IDENTITY.sub(b"", pages[1])
    metadata = [read_json(z, "metadata.json") for z in (first_zip, second_zip)]
    assert metadata[0]["content_sha256"] == metadata[1]["content_sha256"]
    assert [m["pack"]["id"] for m in metadata] == [first.id, second.id]

    # content_sha256 is what the documented sha256sum line prints for the unpacked pack.
    second_zip.extractall(tmp_path)
    script = (
        "sha256sum $(find . -type f ! -name metadata.json ! -name executive-summary.html "
        "| sed 's|^\\./||' | LC_ALL=C sort) | sha256sum"
    )
    printed = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert printed.split()[0] == metadata[1]["content_sha256"]


def test_last_seen_at_moved_without_updated_at_gives_a_new_pack(stack, worker):
    ids = seed(stack, findings=30)
    first = _ready(stack, ids)
    with stack.session() as session:
        # The host records a new sighting of one finding and leaves updated_at alone.
        target = session.execute(
            select(Finding.id).where(Finding.tenant_id == ids.tenant_id, Finding.status == "new").limit(1)
        ).scalar_one()
        session.execute(
            update(Finding).where(Finding.id == target).values(last_seen_at=dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc))
        )
        session.commit()

    again = stack.client().request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    assert again.outcome == "queued" and again.pack.fingerprint != first.fingerprint
    second = stack.client().wait(again.pack.id, ids.manager_id, timeout=WAIT)
    rows = list(csv.DictReader(io.StringIO(open_zip(object_bytes(stack, second)).read("findings.csv").decode())))
    assert next(r for r in rows if int(r["id"]) == target)["last_seen_at"] == "2031-01-01T00:00:00Z"


def test_stale_and_missing_sources_are_stated_in_the_pack(stack, worker):
    ids = seed(stack, findings=10)
    now = dt.datetime.now(dt.timezone.utc)
    with stack.session() as session:
        session.execute(update(Tenant).where(Tenant.id == ids.tenant_id).values(hardening_updated_at=now - dt.timedelta(days=30)))
        session.execute(delete(StoredReport).where(StoredReport.tenant_id == ids.tenant_id, StoredReport.report_type == "entra.admin_roles"))
        session.commit()

    pack = _ready(stack, ids)
    archive = open_zip(object_bytes(stack, pack))
    freshness = read_json(archive, "summary.json")["data_freshness"]
    assert freshness["hardening"]["status"] == "stale" and freshness["hardening"]["age_days"] == 30
    assert freshness["entra_admin_roles"] == {"as_of": None, "age_days": None, "status": "missing"}
    assert read_json(archive, "summary.json")["data_as_of"] == (now - dt.timedelta(days=30)).date().isoformat()
    html = archive.read("executive-summary.html").decode()
    assert 'id="freshness-warning"' in html
    assert "Hardening is stale: last updated 30 days old." in html
    assert "Entra admin roles report is missing" in html
    assert read_json(archive, "metadata.json")["data_freshness"] == freshness


def test_changed_data_gives_a_new_pack_that_records_the_previous_fingerprint(stack, worker):
    ids = seed(stack, findings=30)
    first = _ready(stack, ids)
    with stack.session() as session:
        session.execute(
            update(Finding).where(Finding.tenant_id == ids.tenant_id, Finding.status == "new")
            .values(status="resolved", updated_at=dt.datetime.now(dt.timezone.utc))
        )
        session.commit()

    second = _ready(stack, ids)

    assert second.fingerprint != first.fingerprint
    assert second.previous_fingerprint == first.fingerprint
    assert read_json(open_zip(object_bytes(stack, second)), "summary.json")["counts"]["findings"]["by_status"]["new"] == 0


def test_cli_request_wait_shows_progress_and_ends_with_the_url(stack, worker):
    import sys

    from tests.conftest import ROOT

    ids = seed(stack, findings=200)
    env = {**stack.env, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "request", "--tenant", str(ids.tenant_id), "--actor", str(ids.manager_id), "--wait"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "queued for generation" in result.stdout
    assert re.search(r"ready .* \d+ rows, \d+ bytes", result.stderr)  # progress goes to stderr
    url = result.stdout.strip().splitlines()[-1]
    assert url.startswith(stack.settings.s3_endpoint_url) and "X-Amz-Signature=" in url
    assert requests.get(url, timeout=30).status_code == 200
