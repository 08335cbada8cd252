"""The COPY statement's column expressions give what the slower, plainer ones gave, for any value."""

from __future__ import annotations

import os

import psycopg
import pytest

from storage import export

TO_CHAR = "to_char(f.c AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
# What the fast branch is for, and the values at and past its edges.
TIMESTAMPS = [
    "2026-11-30 07:51:44.999999+00",
    "2026-03-29 01:30:00+01",
    "1969-12-31 23:59:59.5+00",
    "1999-12-31 23:59:59.999999-05",
    "2000-01-01 00:00:00+14",
    "0001-01-01 00:00:00+00",
    "0999-05-06 01:02:03.25+00",
    "1000-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "0001-12-31 23:59:59+00 BC",
    "0044-03-15 12:00:00+00 BC",
    "10000-01-01 00:00:00+00",
    "294276-12-31 23:59:59+00",
    "infinity",
    "-infinity",
    None,
]


@pytest.fixture
def conn(pg_url):
    with psycopg.connect(pg_url.replace("+psycopg", "")) as connection:
        yield connection


def _texts(conn, expression: str) -> list[str | None]:
    values = ", ".join("(NULL::timestamptz)" if v is None else f"('{v}'::timestamptz)" for v in TIMESTAMPS)
    return [row[0] for row in conn.execute(f"SELECT {expression} FROM (VALUES {values}) AS f(c)")]


@pytest.mark.parametrize("datestyle", ["ISO, MDY", "ISO, DMY", "SQL, DMY", "Postgres, MDY", "German, DMY"])
@pytest.mark.parametrize("timezone", ["UTC", "America/St_Johns", "Asia/Kathmandu"])
def test_a_timestamp_is_written_as_to_char_writes_it_under_any_session_setting(conn, datestyle, timezone):
    conn.execute(f"SET DateStyle = '{datestyle}'")
    conn.execute(f"SET TimeZone = '{timezone}'")
    expected = _texts(conn, TO_CHAR)
    assert expected[0] == "2026-11-30T07:51:44Z" and expected[1] == "2026-03-29T00:30:00Z"
    assert _texts(conn, export.TIMESTAMP_SQL.format(col="f.c")) == expected


def test_the_fast_branch_alone_is_to_char_for_every_value_it_takes(conn):
    # The CASE sends finite years after Christ under an ISO DateStyle to the fast branch: this is
    # that branch on its own, so a wrong branch cannot hide behind the to_char fallback.
    fast = export.TIMESTAMP_SQL.split(" THEN ", 1)[1].split(" ELSE ", 1)[0].format(col="f.c")
    taken = "f.c >= '0001-01-01 00:00:00+00' AND f.c < 'infinity'"
    conn.execute("SET DateStyle = 'ISO, MDY'")
    rows = list(zip(_texts(conn, fast), _texts(conn, TO_CHAR), _texts(conn, taken), strict=True))
    assert sum(1 for _, _, inside in rows if inside) == 11
    assert [(f, t) for f, t, inside in rows if inside and f != t] == []


@pytest.mark.parametrize(
    ("stored", "written"),
    [
        (None, "{}"),
        ("null", "{}"),
        ("{}", "{}"),
        ("[]", "[]"),
        ("[null]", "[null]"),
        ('"null"', '"null"'),
        ("0", "0"),
        ("false", "false"),
        ('{"a": null}', '{"a": null}'),
        ('"' + "x" * 500 + '"', '"' + "x" * 500 + '"'),
        ('{"role": "Global Administrator", "last_sign_in_days": 12}', '{"role": "Global Administrator", "last_sign_in_days": 12}'),
    ],
)
def test_no_evidence_is_an_empty_object_and_every_other_value_is_kept(conn, stored, written):
    # Stored in a table, as the findings are: small values then carry a one-byte header.
    conn.execute("CREATE TEMP TABLE evidence_values (e jsonb) ON COMMIT DROP")
    conn.execute("INSERT INTO evidence_values VALUES (%s::jsonb)", (stored,))
    expression = export.EVIDENCE_SQL.format(col="f.e")
    (text,) = conn.execute(f"SELECT ({expression})::text FROM evidence_values f").fetchone()
    assert text == written


def _plan_nodes(conn, statement: str) -> list[dict]:
    return _plan_nodes_of(conn.execute("EXPLAIN (FORMAT JSON) " + statement).fetchone()[0][0]["Plan"])


def _plan_nodes_of(plan: dict) -> list[dict]:
    nodes, todo = [], [plan]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def test_a_tenant_is_read_through_its_index_in_id_order_not_past_other_tenants_rows():
    """With tenant_id = x ORDER BY id, the planner walks the primary key past every other tenant's
    rows; the statement's form makes it read the tenant's own rows through (tenant_id, id)."""
    from sqlalchemy import create_engine
    from sqlalchemy import text as sql
    from sqlalchemy.orm import Session

    from storage.demo_data import add_findings, seed_demo
    from tests.conftest import migrated_database

    with migrated_database(f"reviewpacks_test_plan_{os.getpid()}") as url:
        engine = create_engine(url)
        with Session(engine) as session:
            tenants = [seed_demo(session, findings=0, name=name).tenant_id for name in ("First", "Second")]
            for tenant_id in tenants:
                add_findings(session, tenant_id, 50_000)
            session.execute(sql("ANALYZE findings"))
            session.commit()
        engine.dispose()
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            statement = psycopg.ClientCursor(conn).mogrify(export.findings_copy_sql(), export.copy_params(tenants[1], False))
            select = statement.removeprefix("COPY (").removesuffix(") TO STDOUT WITH (FORMAT csv)")
            nodes = _plan_nodes(conn, select)
            assert [n.get("Index Name") for n in nodes if "Scan" in n["Node Type"]] == ["ix_findings_tenant_id_id"]
            assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")]
            # What the plain form does on the same table, which the statement's form avoids.
            plain = select.replace(f"f.tenant_id = ANY('{{{tenants[1]}}}'::int2[]::bigint[])", f"f.tenant_id = {tenants[1]}")
            plain = plain.replace("ORDER BY f.tenant_id, f.id", "ORDER BY f.id")
            assert plain != select
            assert [n.get("Index Name") for n in _plan_nodes(conn, plain) if "Scan" in n["Node Type"]] == ["pk_findings"]
        # The portable keyset reader (REVIEWPACKS_FINDINGS_READER=portable) pages the same way.
        from storage import queries
        from tests.support.sql import recorded_statements

        engine = create_engine(url)
        with engine.connect() as conn:
            with recorded_statements(conn) as pages:
                chunks = queries.stream_findings(conn, tenants[1], 1_000)
                first, second = next(chunks), next(chunks)
            assert len(pages) == 2 and first[-1]["id"] < second[0]["id"]
            for statement, params in pages:
                plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
                nodes = _plan_nodes_of(plan[0]["Plan"])
                assert [n.get("Index Name") for n in nodes if "Scan" in n["Node Type"]] == ["ix_findings_tenant_id_id"]
                assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")]
        engine.dispose()
