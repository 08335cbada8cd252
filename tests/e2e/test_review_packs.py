"""Review-derived packs and the executive summary as a browser shows it, on a real worker."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from storage.models import AuditLog, Finding, OperationRun, ReviewPack, Tenant, TenantReview
from tests.support.packs import object_bytes, open_zip, read_json, seed, sha256
from workers.client import InvalidRequest

pytestmark = pytest.mark.e2e

HOSTILE = "<script>alert(1)</script></style>\"quoted\" 'single' <img src=x onerror=\"document.title='pwned'\">"
JS_LINK = "javascript:alert(document.cookie)"
REVIEW_FILES = ["executive-summary.html", "metadata.json", "sections.json", "summary.json"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Tags(HTMLParser):
    """Every element and attribute the markup really contains (text and escapes excluded)."""

    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def _markup(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def _make_hostile(stack, ids):
    with stack.session() as session:
        session.execute(update(Tenant).where(Tenant.id == ids.tenant_id).values(name=f"Tenant {HOSTILE}"))
        review = session.get(TenantReview, ids.review_id)
        review.summary = {
            **review.summary,
            "headline": f"Headline {HOSTILE} see {JS_LINK}",
            "key_findings": [{"title": f"Finding {HOSTILE}", "severity": "high", "detail": JS_LINK}],
        }
        review.sections = [{"title": f"Section {HOSTILE}", "body": f"Body line one\n{JS_LINK}"}, {"key": "raw", "body": {"nested": [1, 2]}}]
        session.add(
            Finding(
                tenant_id=ids.tenant_id, finding_type="x", severity="critical", status="new", subject_type="user",
                subject_display_name=HOSTILE, title=f"=HYPERLINK(\"{JS_LINK}\",\"click\") {HOSTILE}", evidence={"note": HOSTILE},
            )
        )
        session.commit()


def _review_ready(stack, ids):
    client = stack.client()
    result = client.request_review_pack(ids.review_id, ids.manager_id)
    assert result.outcome == "queued"
    pack = client.wait(result.pack.id, ids.manager_id, timeout=90)
    assert pack.status == "ready", pack
    return pack


def test_review_pack_has_the_review_layout_and_metadata(stack, worker):
    ids = seed(stack, findings=5)
    pack = _review_ready(stack, ids)

    archive = open_zip(object_bytes(stack, pack))
    assert archive.namelist() == REVIEW_FILES
    metadata = read_json(archive, "metadata.json")
    assert metadata["kind"] == "review"
    assert metadata["pack"]["review"]["id"] == ids.review_id
    assert metadata["pack"]["review"]["evidence_basis"][0]["source"] == "Findings"
    assert metadata["pack"]["review"]["interpretation_version"] == "2026.1"
    assert metadata["entrypoint"] == "executive-summary.html"
    assert metadata["appendix"] == ["metadata.json", "sections.json", "summary.json"]
    assert {f["path"]: f["sha256"] for f in metadata["files"]} == {
        n: sha256(archive.read(n)) for n in REVIEW_FILES if n != "metadata.json"
    }
    assert "not a certification" in metadata["disclosure"]
    assert read_json(archive, "sections.json")["sections"][0]["title"] == "Identity"
    html = archive.read("executive-summary.html").decode()
    for heading in ("Executive summary", "Key findings", "Accepted risks", "Decisions needing awareness", "Evidence basis", "About this document"):
        assert f">{heading}</h2>" in html
    assert pack.fingerprint not in html
    assert "reason_code" not in html
    # The pack names itself and states its evidence basis with ages (seed FR-005, stale evidence edge case).
    assert metadata["pack"]["id"] == pack.id
    assert metadata["pack"]["review"]["evidence_basis"][0]["status"] == "current"
    assert read_json(archive, "summary.json")["evidence_basis"] == metadata["pack"]["review"]["evidence_basis"]
    assert f'<dd id="pack-identity">#{pack.id}, generated ' in html
    assert "<dt>Interpretation version</dt>\n<dd>2026.1</dd>" in html
    assert 'id="freshness-warning"' not in html

    again = stack.client().request_review_pack(ids.review_id, ids.manager_id)
    assert (again.outcome, again.pack.id) == ("reused_ready", pack.id)


def test_an_unpublished_review_is_refused_and_nothing_is_written(stack, worker):
    ids = seed(stack, findings=1)
    with stack.session() as session:
        session.execute(update(TenantReview).where(TenantReview.id == ids.review_id).values(status="draft"))
        session.commit()

        def counts():
            return tuple(
                session.execute(select(func.count()).select_from(m).where(m.tenant_id == ids.tenant_id)).scalar_one()
                for m in (ReviewPack, OperationRun, AuditLog)
            )

        before = counts()
        with pytest.raises(InvalidRequest, match="only published reviews"):
            stack.client().request_review_pack(ids.review_id, ids.manager_id)
        session.rollback()
        assert counts() == before


def test_hostile_text_stays_text_in_every_file(stack, worker):
    ids = seed(stack, findings=3)
    _make_hostile(stack, ids)
    review = _review_ready(stack, ids)
    client = stack.client()
    tenant = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
    tenant_pack = client.wait(tenant.pack.id, ids.manager_id, timeout=90)
    assert tenant_pack.status == "ready"

    for pack in (review, tenant_pack):
        archive = open_zip(object_bytes(stack, pack))
        html = archive.read("executive-summary.html").decode()
        markup = _markup(html)
        assert not markup.tags & {"script", "img", "a", "iframe", "object", "link"}
        assert not {a for a in markup.attributes if a in {"href", "src"} or a.startswith("on")}
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert html.count("</style>") == 1
        for name in archive.namelist():
            if name.endswith(".json"):
                json.loads(archive.read(name))
    # The structured section body is on the page as an outline, not dropped.
    review_html = open_zip(object_bytes(stack, review)).read("executive-summary.html").decode()
    assert "<strong>Nested</strong>" in review_html and "<li>1</li>" in review_html
    archive = open_zip(object_bytes(stack, tenant_pack))
    import csv
    import io

    rows = list(csv.reader(io.StringIO(archive.read("findings.csv").decode())))
    formula = next(r for r in rows if "HYPERLINK" in r[7])
    assert formula[7].startswith("'=")


def _browser(html_path: Path, out: Path) -> tuple[str, Path]:
    """Load a file in headless Chromium: the DOM after scripts would have run, and a screenshot."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--disable-sync", f"--user-data-dir={out / 'profile'}"]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    shot = out / f"{html_path.stem}.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,1800", html_path.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    return dom, shot


def _text(dom: str) -> str:
    body = re.sub(r"(?s)<style.*?</style>", "", dom)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
@pytest.mark.parametrize("kind", ["review", "tenant"])
def test_executive_summary_renders_in_a_real_browser(stack, worker, tmp_path, kind):
    ids = seed(stack, findings=40)
    _make_hostile(stack, ids)
    client = stack.client()
    if kind == "review":
        pack = _review_ready(stack, ids)
        headings = ["Executive summary", "Key findings", "Accepted risks", "Decisions needing awareness", "Evidence basis", "About this document"]
    else:
        result = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id)
        pack = client.wait(result.pack.id, ids.manager_id, timeout=90)
        headings = ["Executive summary", "Findings by severity", "Hardening status", "Data freshness", "About this document"]

    download = requests.get(client.download_url(pack.id, ids.manager_id), timeout=30)
    assert download.status_code == 200
    zip_path = tmp_path / "pack.zip"
    zip_path.write_bytes(download.content)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extract("executive-summary.html", tmp_path)

    dom, shot = _browser(tmp_path / "executive-summary.html", tmp_path)

    text = _text(dom)
    for heading in headings:
        assert heading in text
    assert "<script>alert(1)</script>" in dom.replace("&lt;", "<").replace("&gt;", ">")
    markup = _markup(dom)
    assert not markup.tags & {"script", "img", "a"}  # hostile markup never became an element
    assert not {a for a in markup.attributes if a.startswith("on")}
    # Had the onerror handler run, it would have replaced the whole title with "pwned".
    assert re.search(r"<title>(.*?)</title>", dom, re.S).group(1).startswith("Security review pack")
    assert '{"' not in text and '":' not in text  # no raw JSON on the page
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
