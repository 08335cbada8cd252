"""The COPY fast path and the portable path export the same values, hostile input included."""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import json
import re
import uuid
import zipfile

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from domain import documents, redaction
from domain.csvsafe import TRUNCATED
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
    # Every category of the redaction policy (domain/redaction.py), in keys and values.
    {"upn": "alias_contoso.com#EXT#@tenant.onmicrosoft.com", "note": "from 203.0.113.7 and 2001:db8::7",
     "status": "seen at 198.51.100.2, call +44 20 7946 0958", "type": "jörg+tag@müller.de"},
    {"manager": {"name": "Mia Manager", "id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "employeeNumber": 4711081542},
     "owners": ["Olaf Owner", None, True], "favouriteColleague": "Carl Colleague", "sAMAccountName": "carl"},
    {"accountKey": "bXlTdG9yYWdlS2V5", "sig": "c2lnbmF0dXJlMTIzNDU2Nzg5MA==", "key": "identity", "auth": "basic",
     "result": "Bearer 0paqueT0kenValue.x and eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln"},
    {"role": "https://a.blob.core.windows.net/c?sv=2022&sig=AbC%2Bdef%3D&se=1",
     "setting": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==;EndpointSuffix=x",
     "state": "AKIAIOSFODNN7EXAMPLE ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 abc8Q~AbCdEfGhIjKlMnOpQrStUvWxYz0123456",
     "mode": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"},
    {"a@b.co": 1, "c@d.co": 2, "[redacted:email]": None, "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.x": 3},
    {"level": "enabled", "version": "2026-11-20T10:00:00Z", "count": "87.5%", "kind": "ＩＤ", "empty": ""},
    {"deep": [[[[{"upn": "deep@contoso.com", "type": ["x@y.io", 5]}]]]]},
    {"big": "y" * 40_000, "role": "z" * 40_000 + " a@b.co"},
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
    "Guest alias_contoso.com#EXT#@tenant.onmicrosoft.com signed in from 203.0.113.7 / 2001:db8::7",
    "Token eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln leaked, call (555) 123-4567",
    " =cmd|' /C calc'!A0",
    "\u200b@SUM(1)",
    "\uff1dcmd",
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
                    subject_display_name=[None, "", "Jane Doe", "=Jane", "jane@contoso.com",
                                          "svc AKIAIOSFODNN7EXAMPLE"][i % 6],
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
    # The replacement counts are read off the bytes each path wrote: they must agree as well.
    others["redaction"] = json.loads(archive.read("metadata.json"))["redaction"]
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
        if fast[evidence].endswith(TRUNCATED) or slow[evidence].endswith(TRUNCATED):
            # Cut at the cell limit: the two spellings of the JSON are cut at different places.
            assert fast[evidence].endswith(TRUNCATED) and slow[evidence].endswith(TRUNCATED)
            continue
        assert json.loads(strip(fast[evidence])) == json.loads(strip(slow[evidence]))
    assert copy_others == portable_others

    text = "\n".join(",".join(r) for r in copy_rows)
    secrets = ["s3cr3t", '"abc"', "bXlTdG9yYWdlS2V5", "c2lnbmF0dXJl", "0paqueT0kenValue", "eyJhbGciOi", "AbC%2Bdef",
               "AKIAIOSFODNN7EXAMPLE", "ghp_A1b2", "abc8Q~", "MIIEvQIBADANBg", "AccountKey=abc"]
    assert [s for s in secrets if s in text] == []
    personal = ["jane", "x@y.io", "bob@", "alias_contoso", "müller", "203.0.113.7", "2001:db8::7", "198.51.100.2",
                "7946 0958", "Mia Manager", "4711081542", "Olaf Owner", "Carl Colleague", "carl", "deep@", "123-4567"]
    leaked = [p for p in personal if p.lower() in text.lower()]
    assert leaked == [] if not include_pii else leaked
    counts = copy_others["redaction"]["replacements"]
    assert counts["secret"] > 0 and (include_pii or min(counts.values()) > 0)
    title = copy_rows[0].index("title")
    inert = [r[title] for r in copy_rows[1:] if r[title].lstrip("'").lstrip(" \u200b").startswith(("=", "@", "+", "-", "\t", "\r", "\uff1d"))]
    assert inert and all(cell.startswith("'") for cell in inert)


# -- value by value: a finding written with any evidence, title and name comes out of COPY as the
# -- portable path writes it (evidence compared as JSON values). --

_KEYS = st.sampled_from(
    ["id", "name", "displayName", "owner", "members", "role", "userType", "status", "note", "accountKey", "key",
     "sig", "password", "x-api-key", "createdBy", "ipAddress", "businessPhones", "sAMAccountName", "détails", "",
     "a@b.co", "c@d.co", "[redacted:email]", "headline", "KEY", "\u212aey"]
)
_STRINGS = st.sampled_from(
    ["", "enabled", "Global Administrator", "Jane Doe", "jane@contoso.com", "alias_c.com#EXT#@t.onmicrosoft.com",
     "203.0.113.7", "2001:db8::1", "+44 20 7946 0958", "(555) 123-4567", "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
     "2026-11-20T10:00:00Z", "42", "Zx81kLmN0pQrStUv9wXy5z", "AKIAIOSFODNN7EXAMPLE", "Bearer abc.def",
     "https://a.b/c?sv=1&sig=x", "AccountKey=abc==;x=y", "-----BEGIN KEY-----\nabc", "jörg@bücher.de", "ＩＤ",
     " =1", "\u200b+1", "＝1", '"quoted", and, commas', "line\nbreak", "\\."]
) | st.text(alphabet="aZ09@.:+-_=~ #?é,\"\n", max_size=30)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | _STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evidence=_JSON, title=_STRINGS, name=st.none() | _STRINGS, include_pii=st.booleans())
def test_copy_rows_equal_portable_rows_for_any_value(pg_url, evidence, title, name, include_pii):
    from domain import documents
    from storage import export, queries

    engine = runtime.engine_for(pg_url)
    with engine.connect() as conn, conn.begin() as transaction:
        tenant_id = seed_demo_in(conn)
        conn.execute(Finding.__table__.insert(), [{
            "tenant_id": tenant_id, "finding_type": "stale_account", "severity": "high", "status": "new",
            "subject_type": "user", "subject_display_name": name, "title": title, "evidence": evidence,
        }])
        copied = b"".join(block.data for block in export.copy_findings(conn, tenant_id, include_pii=include_pii))
        [portable] = [documents.finding_row(r, include_pii=include_pii)
                      for chunk in queries.stream_findings(conn, tenant_id, 10) for r in chunk]
        transaction.rollback()
    [fast] = list(csv.reader(io.StringIO(copied.decode("utf-8"), newline="")))
    column = 8  # evidence: the same values; PostgreSQL prints jsonb with its own spacing and key order
    assert fast[:column] + fast[column + 1 :] == portable[:column] + portable[column + 1 :]
    strip = lambda cell: cell[1:] if cell.startswith("'") else cell  # noqa: E731
    assert fast[column].startswith("'") == portable[column].startswith("'")
    assert json.loads(strip(fast[column])) == json.loads(strip(portable[column]))


def seed_demo_in(conn) -> int:
    from storage.models import Tenant, Workspace

    workspace = conn.execute(Workspace.__table__.insert().values(name="w")).inserted_primary_key[0]
    tenant = Tenant.__table__.insert().values(workspace_id=workspace, name="t", external_id=uuid.uuid4())
    return conn.execute(tenant).inserted_primary_key[0]


# PostgreSQL text holds neither NUL nor lone surrogates, so COPY never sends them.
_CELLS = st.none() | _STRINGS | st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)


@hypothesis_settings(max_examples=400, deadline=None)
@given(cells=st.lists(_CELLS, min_size=12, max_size=12))
def test_a_row_the_first_look_passes_is_already_what_the_row_function_returns(cells):
    """The promise storage/export.py builds on: no match, no change (with personal data included)."""
    from domain import documents
    from storage import export

    cells[0] = "1"  # COPY's first cell is the finding's id
    # The evidence cell is JSON; COPY writes {} for none (storage/export.py).
    try:
        json.loads(cells[8] or "")
    except ValueError:
        cells[8] = json.dumps(cells[8])
    if cells[8] == "null":
        cells[8] = "{}"
    line = export.copy_line([c if c is not None else "" for c in cells])
    if re.search(documents.copy_first_look_pattern(), line) or len(line) > export._LONG_ROW:
        return
    assert documents.copied_finding_row(cells, include_pii=True) == [c if c is not None else "" for c in cells]


@hypothesis_settings(max_examples=300, deadline=None)
@given(cells=st.lists(_CELLS, min_size=1, max_size=12))
def test_copy_lines_parse_back_to_their_cells(cells):
    from storage import export

    # NULL and the empty string stay apart, as in COPY's own output.
    assert export.parse_copy_row(export.copy_line(cells).decode("utf-8")) == cells


# -- the block-level looks of storage/export.py: a block comes out exactly as if every row had
# -- gone through the row function, with personal data and without. --

_TIMESTAMP_CELLS = st.sampled_from(["2026-11-20T10:00:00Z", "1999-01-31T23:59:59Z", None])
_EVIDENCE_POOL = [
    {"role": "Global Administrator", "last_sign_in_days": 3},
    {"role": "Global Administrator", "last_sign_in_days": 4},
    {"status": "enabled"},
    {"name": "Jane Doe"},
    {"note": "free text"},
    {"principal": {"displayName": "Person"}},
    {"role": "a,\"{b"},
    {"level": "x\",\"{\"y"},
    ["Jane Doe"],
    "John Smith",
    5,
    {},
    # Past the policy's own memory of short values, and changed with personal data and without.
    {"password": "hunter2", "description": "Requires multifactor authentication. " * 40},
]
_TITLES = _STRINGS | st.sampled_from(
    ['{"role": "Global Administrator", "last_sign_in_days": 3}', 'x,"{', '{', 'case 000000001', "Top 10 risks"]
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            _STRINGS, _STRINGS, st.none() | _STRINGS, _TITLES, st.sampled_from(range(len(_EVIDENCE_POOL))),
            _TIMESTAMP_CELLS, _TIMESTAMP_CELLS,
        ),
        min_size=1,
        max_size=30,
    ),
    include_pii=st.booleans(),
)
def test_a_settled_block_equals_every_row_through_the_row_function(rows, include_pii):
    from storage import export

    lines = []
    for i, (kind, status, name, title, evidence, first, last) in enumerate(rows):
        if not include_pii and name is not None:
            name = redaction.PII_PLACEHOLDER  # the query replaces it (storage/export.py)
        cells = [str(i + 1), kind or "stale_account", "high", status or "new", "user",
                 "3f2504e0-4f89-41d3-9a0c-0305e82c3301", name, title,
                 json.dumps(_EVIDENCE_POOL[evidence], separators=(", ", ": "), ensure_ascii=False),
                 first, last, "2026-11-29T21:38:31Z"]
        lines.append(export.copy_line(cells))
    block = b"".join(lines)
    ends = [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    expected = b"".join(export._fixed(line, include_pii) for line in lines)
    # The cell by which a row's evidence is known clean is the one its _evidence_span gives.
    for line, (*_, evidence, _first, _last) in zip(lines, rows, strict=True):
        cell = line[slice(*export._evidence_span(line[:-1]))]
        assert export._unknown_evidence(line, [len(line)], {cell}) == []
        # Unknown evidence is judged: known clean once the policy leaves it as it is, else the row's.
        learned: set[bytes] = set()
        value = _EVIDENCE_POOL[evidence]
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
        left = isinstance(value, dict) and documents.copied_evidence_cell(text, include_pii=False) == text
        assert export._unknown_evidence(line, [len(line)], learned) == ([] if left else [0])
        assert learned == ({cell} if left else set())
        # A looked row's evidence is left to the row's own pass.
        assert export._unknown_evidence(line, [len(line)], set(), [0]) == [0]
    clean: set[bytes] = set()
    # Twice: the second time, evidence seen to be left as it is is known clean.
    assert export._settle(block, ends, [], include_pii, clean) == expected
    assert export._settle(block, ends, [], include_pii, clean) == expected


@pytest.mark.parametrize("include_pii", [True, False])
def test_a_formula_at_the_start_of_the_row_after_a_matched_row_is_neutralised(include_pii):
    """The look matches a formula prefix after a line end; the row before it must not hide it."""
    from storage import export

    lines = [
        export.copy_line([row_id, "stale_account", "high", "new", "user", None, redaction.PII_PLACEHOLDER, title,
                          '{"a": 1}', "2026-11-20T10:00:00Z", None, None])
        for row_id, title in (("1", "mail a@b.c"), ("-5", "x"), ("-6", "y"))
    ]
    block = b"".join(lines)
    ends = [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    settled = export._settle(block, ends, [], include_pii, set())
    assert settled == b"".join(export._fixed(line, include_pii) for line in lines)
    assert b"\n'-5," in settled and b"\n'-6," in settled


def test_without_personal_data_known_clean_evidence_skips_the_row_function(monkeypatch):
    """After the first rows, rows whose evidence the policy left as it is are not looked at again."""
    from storage import export

    common = {"role": "Global Administrator", "last_sign_in_days": 3}
    personal = {"role": "Global Administrator", "manager": {"displayName": "Mia Manager"}}
    lines = [
        export.copy_line([str(i), "stale_account", "high", "new", "user", None, redaction.PII_PLACEHOLDER,
                          "Top risks", json.dumps(personal if i == 7 else common, separators=(", ", ": ")),
                          "2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"])
        for i in range(1, 11)
    ]
    block, ends = b"".join(lines), [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    real, calls = documents.copied_evidence, []
    monkeypatch.setattr(documents, "copied_evidence", lambda text, **kw: calls.append(text) or real(text, **kw))
    common_text, personal_text = (json.dumps(v, separators=(", ", ": ")) for v in (common, personal))
    clean: set[bytes] = set()
    first = export._settle(block, ends, [], False, clean)
    # Each distinct evidence of the block goes through the policy once, not once per row, and
    # the evidence it changes is written into its row as it came out.
    assert sorted(calls) == sorted([common_text, personal_text])
    calls.clear()
    assert export._settle(block, ends, [], False, clean) == first
    assert calls == [personal_text]  # only the evidence that names a person
    assert b"Mia Manager" not in first


def test_without_personal_data_findings_without_evidence_skip_the_row_function(monkeypatch):
    """The empty object, which COPY leaves unquoted, is judged once like any other evidence."""
    from storage import export

    lines = [
        export.copy_line([str(i), "stale_account", "high", "new", "user", None, redaction.PII_PLACEHOLDER,
                          "Top risks", "{}", "2026-11-20T10:00:00Z", None, "2026-11-20T10:00:00Z"])
        for i in range(1, 11)
    ]
    block, ends = b"".join(lines), [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    real_evidence, judged = documents.copied_evidence, []
    monkeypatch.setattr(documents, "copied_evidence", lambda text, **kw: judged.append(text) or real_evidence(text, **kw))
    real_row, rows = export._fixed, []
    monkeypatch.setattr(export, "_fixed", lambda row, *args: rows.append(row) or real_row(row, *args))
    clean: set[bytes] = set()
    assert export._settle(block, ends, [], False, clean) == block
    assert judged == ["{}"] and rows == [] and clean == {b"{}"}
    judged.clear()
    assert export._settle(block, ends, [], False, clean) == block
    assert judged == [] and rows == []


@pytest.mark.parametrize("include_pii", [True, False])
def test_long_evidence_repeated_over_a_block_goes_through_the_policy_once(monkeypatch, include_pii):
    """Findings of one rule often share a long evidence value: the policy sees it once per block,
    and a row whose other cells need nothing gets only its evidence replaced, with personal data too."""
    from storage import export

    conditions = {
        f"rule_{i}": {"status": "enabled", "description": f"Requires multifactor authentication for group {i}"}
        for i in range(20)
    }
    evidence = json.dumps({"conditions": conditions, "password": "hunter2"}, separators=(", ", ": "))
    assert len(evidence) > documents._SHORT_EVIDENCE  # past the policy's own memory of short values
    lines = [
        export.copy_line([str(i), "conditional_access", "high", "new", "user", None, redaction.PII_PLACEHOLDER,
                          "Policy gap", evidence, "2026-11-20T10:00:00Z", None, "2026-11-20T10:00:00Z"])
        for i in range(1, 11)
    ]
    block, ends = b"".join(lines), [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    expected = b"".join(export._fixed(line, include_pii) for line in lines)
    real_evidence, judged = documents.copied_evidence, []
    monkeypatch.setattr(documents, "copied_evidence", lambda text, **kw: judged.append(text) or real_evidence(text, **kw))
    real_row, rows = export._fixed, []
    monkeypatch.setattr(export, "_fixed", lambda row, *args: rows.append(row) or real_row(row, *args))
    settled = export._settle(block, ends, [], include_pii, set())
    assert settled == expected
    assert judged == [evidence] and rows == []
    assert b"hunter2" not in settled and settled.count(redaction.SECRET_PLACEHOLDER.encode()) == 10


def test_without_personal_data_evidence_known_clean_in_one_pack_is_known_in_the_next(pg_url, monkeypatch):
    """The verdict on evidence depends on its text alone: the next export, of another tenant too, reuses it."""
    from storage import export

    monkeypatch.setattr(export, "_KNOWN_CLEAN", set())
    common = {"role": "Global Administrator", "last_sign_in_days": 3}
    personal = {"role": "Global Administrator", "manager": {"displayName": "Mia Manager"}}
    engine = runtime.engine_for(pg_url)
    with engine.connect() as conn, conn.begin() as transaction:
        tenants = [seed_demo_in(conn) for _ in range(2)]
        conn.execute(Finding.__table__.insert(), [
            {"tenant_id": tenant_id, "finding_type": "stale_account", "severity": "high", "status": "new",
             "subject_type": "user", "subject_display_name": "Jane Doe", "title": "Top risks",
             "evidence": personal if i == 3 else common}
            for tenant_id in tenants for i in range(5)
        ])
        real, calls = documents.copied_evidence, []
        monkeypatch.setattr(documents, "copied_evidence", lambda text, **kw: calls.append(json.loads(text)) or real(text, **kw))
        first = b"".join(block.data for block in export.copy_findings(conn, tenants[0], include_pii=False))
        assert sorted(calls, key=lambda value: "manager" in value) == [common, personal]
        calls.clear()
        second = b"".join(block.data for block in export.copy_findings(conn, tenants[1], include_pii=False))
        assert calls == [personal]  # the policy changes it: its verdict is not remembered
        transaction.rollback()
    assert b"Mia Manager" not in first + second
    assert len(export._KNOWN_CLEAN) == 1


def test_the_known_clean_evidence_is_bounded(monkeypatch):
    from storage import export

    monkeypatch.setattr(export, "_CLEAN_KEPT", 3)
    clean: set[bytes] = set()
    for cell in (b'"{1}"', b'"{2}"', b'"{3}"'):
        export._remember(clean, cell)
    assert clean == {b'"{1}"', b'"{2}"', b'"{3}"'}
    export._remember(clean, b'"{4}"')  # full: the set starts over
    assert clean == {b'"{4}"'}
    export._remember(clean, b'"{' + b"x" * export._CLEAN_CELL + b'}"')  # too long to keep
    assert clean == {b'"{4}"'}


@pytest.mark.parametrize(
    ("title", "whole_row"),
    [("Top risks", False), ("Ask mia@contoso.com", True), ("=HYPERLINK(1)", True), ("token=abc", True)],
)
def test_without_personal_data_a_row_whose_other_cells_need_nothing_changes_only_its_evidence(
    monkeypatch, title, whole_row
):
    """The row function parses a row only when something before its evidence matches a look."""
    from storage import export

    evidence = json.dumps({"manager": {"displayName": "Mia Manager"}, "role": "Owner"}, separators=(", ", ": "))
    line = export.copy_line(["1", "stale_account", "high", "new", "user", None, redaction.PII_PLACEHOLDER, title,
                             evidence, "2026-11-20T10:00:00Z", None, "2026-11-20T10:00:00Z"])
    expected = export._fixed(line, False)
    real, parsed = export.parse_copy_row, []
    monkeypatch.setattr(export, "parse_copy_row", lambda text: parsed.append(text) or real(text))
    settled = export._settle(line, [len(line)], [], False, set())
    assert settled == expected
    assert b"Mia Manager" not in settled
    assert bool(parsed) == whole_row


# -- the placeholder tally of the COPY path: RE2's matches over blocks, seams included, count
# -- what the portable path counts over the whole text. --

_TALLY_PIECES = st.sampled_from([*redaction.PLACEHOLDERS.values(), "[re", "[redacted:", "]", "x", "[", "é", "\n"])


@hypothesis_settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_TALLY_PIECES, max_size=40), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_the_block_tally_counts_what_the_whole_text_holds(pieces, cuts):
    from storage import export

    data = "".join(pieces).encode("utf-8")
    for findall in (export.find_placeholders, None):
        tally = redaction.PlaceholderTally(findall)
        previous = 0
        for cut in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
            tally.feed(data[previous:cut])
            previous = cut
        assert tally.counts == redaction.count_placeholders([data])


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(_TITLES, st.sampled_from(range(len(_EVIDENCE_POOL)))), min_size=1, max_size=30),
    include_pii=st.booleans(),
)
def test_the_look_through_re2s_binding_finds_what_its_search_finds(rows, include_pii):
    """_looks calls RE2's binding directly; each row's leftmost match is the one re2.search gives."""
    from storage import export

    lines = [
        # A row id like -3 starts like a formula: that match starts at the line end before it.
        export.copy_line([str(i if i % 3 else -i), "stale_account", "high", "new", "user", None, "Mia", title,
                          json.dumps(_EVIDENCE_POOL[evidence], separators=(", ", ": "), ensure_ascii=False),
                          "2026-11-20T10:00:00Z", None, None])
        for i, (title, evidence) in enumerate([*rows, ("mail mia@contoso.com", 0), *rows])
    ]
    block = b"".join(lines)
    ends = [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    pattern = export._FIRST_LOOK if include_pii else export._EITHER_LOOK
    expected, position = {}, 0
    while (match := pattern.search(block, position)) is not None:
        row = bisect.bisect_right(ends, match.start() + 1)
        expected[row] = match.start()
        position = ends[row] - 1
    assert len(rows) in expected  # the row with an address, at least
    assert export._looks(block, ends, include_pii) == expected
