"""The COPY fast path and the portable path export the same values, hostile input included."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import uuid
import zipfile

import pytest

from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage.artifacts import LocalStore
from storage.demo_data import seed_demo
from storage.models import Finding, ReviewPack
from workers import pipeline
from workers.client import ReviewPackClient

EVIDENCE = [
    {},
    {"role": "Global Administrator", "last_sign_in_days": 12},
    {"client_secret": "s3cr3t", "nested": {"accessToken": "abc", "list": [{"password": "p"}, {"pwd": "x"}]}},
    {"passwordless_enabled": True, "apiKey": None, "cookie": 5},
    {"displayName": "Jane Doe", "userPrincipalName": "jane@contoso.com", "members": [{"mail": "a@b.co"}]},
    {"userDisplayName": ["Jane", {"deep": "Doe"}], "phone": ["+1 555"], "note": "mail bob@example.org now"},
    {"jane.doe@contoso.com": False, "bob@contoso.com": True, "[redacted]": 1},
    {"=cmd": "@SUM(1)", "text": "-1", "rtl": "\u202eevil\u202c", "emoji": "🔐✅"},
    {"quote": 'say "hi"', "newline": "a\nb\r\nc", "comma": "a,b"},
    ["list", "at", "top", {"email": "x@y.io"}],
    "=HYPERLINK(\"http://x\")",
    -1,
]
TITLES = [
    "=HYPERLINK(\"javascript:alert(1)\",\"click\")",
    "@SUM(A1)",
    "+1",
    "-1",
    "\tTabbed",
    "\rCarriage",
    "Mail jane.doe@contoso.com and x@y.io",
    'Quotes "inside", commas, and\nnewlines',
    "<script>alert(1)</script>",
    "\u202eRTL override\u202c and emoji 🚨",
    "",
    "x" * 200_000,
]


@pytest.fixture
def tenant(pg_url, tmp_path):
    with runtime.session_factory(pg_url)() as session:
        ids = seed_demo(session, findings=0)
        rows = []
        for i in range(len(EVIDENCE) * len(TITLES)):
            rows.append(
                Finding(
                    tenant_id=ids.tenant_id,
                    finding_type="=type" if i % 7 == 0 else "mfa_gap",
                    severity=["critical", "high", "-low", "@medium", "informational"][i % 5],
                    status=["new", "acknowledged", "resolved"][i % 3],
                    subject_type="user",
                    subject_external_id=uuid.uuid4() if i % 4 else None,
                    subject_display_name=[None, "", "Jane Doe", "=Jane", "jane@contoso.com"][i % 5],
                    title=TITLES[i % len(TITLES)],
                    evidence=EVIDENCE[i % len(EVIDENCE)],
                )
            )
        session.add_all(rows)
        session.commit()
    return ids


def _findings(settings, store, client, ids, reader, include_pii):
    settings = dataclasses.replace(settings, findings_reader=reader)
    pack = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=include_pii).pack
    assert pipeline.generate(pack.id, settings=settings, store=store, can_retry=False).state == "ready"
    with runtime.session_factory(settings.database_url)() as session:
        row = session.get(ReviewPack, pack.id)
        key = row.file_path
        row.status = "expired"  # out of dedupe, so the other reader gets its own pack
        session.commit()
    with store.open(key) as body:
        archive = zipfile.ZipFile(io.BytesIO(body.read()))
    assert archive.testzip() is None
    others = {n: archive.read(n) for n in archive.namelist() if n not in ("findings.csv", "metadata.json")}
    # The page names its pack (id, generation time); the rest of it is content like any other entry.
    others["executive-summary.html"] = re.sub(rb'<dd id="pack-identity">[^<]*</dd>', b"", others["executive-summary.html"])
    return list(csv.reader(io.StringIO(archive.read("findings.csv").decode("utf-8"), newline=""))), others


@pytest.mark.parametrize("include_pii", [True, False])
def test_copy_and_portable_readers_agree(pg_url, tmp_path, tenant, include_pii):
    settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": pg_url, "REVIEWPACKS_HOME": str(tmp_path)})
    store = LocalStore(tmp_path / "artifacts")
    store.ensure_ready()
    client = ReviewPackClient(settings, store=store, publish=lambda _id: None)

    copy_rows, copy_others = _findings(settings, store, client, tenant, "copy", include_pii)
    portable_rows, portable_others = _findings(settings, store, client, tenant, "portable", include_pii)

    assert len(copy_rows) == len(portable_rows) > 1
    assert copy_rows[0] == portable_rows[0]
    evidence = copy_rows[0].index("evidence")
    for fast, slow in zip(copy_rows[1:], portable_rows[1:]):
        assert fast[:evidence] + fast[evidence + 1 :] == slow[:evidence] + slow[evidence + 1 :]
        # Evidence: the same JSON values; PostgreSQL prints jsonb with its own spacing and key order.
        strip = lambda cell: cell[1:] if cell.startswith("'") else cell  # noqa: E731
        assert fast[evidence].startswith("'") == slow[evidence].startswith("'")
        assert json.loads(strip(fast[evidence])) == json.loads(strip(slow[evidence]))
    assert copy_others == portable_others

    text = "\n".join(",".join(r) for r in copy_rows)
    assert "s3cr3t" not in text and '"abc"' not in text
    if not include_pii:
        assert "jane" not in text.lower() and "x@y.io" not in text and "bob@" not in text
    formulas = [r for r in copy_rows[1:] if r[copy_rows[0].index("title")].lstrip("'").startswith(("=", "@", "+", "-", "\t", "\r"))]
    assert formulas and all(r[copy_rows[0].index("title")].startswith("'") for r in formulas)
