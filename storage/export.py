"""The PostgreSQL fast path: findings.csv straight out of `COPY … TO STDOUT`.

Python never touches a row. Every rule the portable path applies per row in
domain/ — formula neutralising, the redaction policy of domain/redaction.py
(secrets always, personal data without include_pii) in the display name, the
title and the evidence JSON, the timestamp format — is expressed in the
SELECT that COPY runs, with every pattern and list passed from domain/ in one
``reviewpacks_policy`` value (migration 0006). The bytes arrive already in CSV
and go straight into the ZIP entry.

The common row must stay cheap: a row goes through the policy functions only
when a first look (LIKE and one character-class pattern, the same test that
domain.redaction.needs_scrub makes on the portable path) finds something a
secret could be made of, or when personal data is to be removed.

Evidence is rendered as PostgreSQL prints jsonb, where the portable path prints
compact sorted JSON: the same values, not the same bytes. A given deployment
always uses one path, so its packs stay byte-for-byte deterministic.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import psycopg
from sqlalchemy import Connection

from domain import csvsafe, layout, redaction
from domain.documents import InvalidSourceData
from storage.db import DatabaseUnavailable

# Cells that start like a formula get a leading quote, exactly as domain.csvsafe.neutralise does.
# The first character alone decides for almost every cell; only cells that start with a character
# a spreadsheet looks past need the pattern.
_FORMULA_CODES = [ord(prefix) for prefix in csvsafe.FORMULA_PREFIXES]
_IGNORED_CODES = [ord(c) for c in csvsafe.LEADING_IGNORED]
_TIMESTAMP = "to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
# Raised by reviewpacks_redact_json (migration 0006) for JSON nested deeper than the policy allows;
# 54001 is PostgreSQL's own stack-depth limit, should a value be deep in some other way.
_TOO_DEEP = {"RP001", "54001"}


def _neutralised(column: str) -> str:
    # PostgreSQL text cannot hold NUL, so the portable path's NUL stripping has nothing to do here.
    # Over-long text is cut first, with the same marker and length as domain.csvsafe.
    cut = (
        f"CASE WHEN length({column}) > {csvsafe.KEEP + len(csvsafe.TRUNCATED)} "
        f"THEN left({column}, {csvsafe.KEEP}) || %(truncated)s ELSE {column} END"
    )
    formula = (
        f"ascii({column}) = ANY(%(formula)s) "
        f"OR (ascii({column}) = ANY(%(formula_ignored)s) AND {column} ~ %(formula_re)s)"
    )
    return f"CASE WHEN {formula} THEN '''' || {cut} ELSE {cut} END"


def _may_hold_secret_value(column: str) -> str:
    """SQL for domain.redaction.may_hold_secret_value."""
    return f"({column} ~ %(secret_chars)s OR {column} LIKE ANY(%(secret_value_hints)s))"


def findings_copy_sql() -> str:
    """The COPY statement; parameters: tenant_id, include_pii, and the policy from domain/redaction.py."""
    # One first look over the row's three free-text values together (joined by a character that
    # is in no hint and breaks every run): the common row pays for one pattern and a few LIKEs,
    # and only a row with a hint looks again at each value on its own.
    def hint(column: str) -> str:
        return f"h.hint AND {_may_hold_secret_value(column)}"

    # domain.redaction.display_name and text_field, in SQL.
    display = (
        "CASE WHEN f.subject_display_name IS NULL THEN NULL "
        "WHEN NOT %(include_pii)s THEN %(person)s "
        f"WHEN {hint('f.subject_display_name')} "
        "THEN reviewpacks_redact_text(reviewpacks_cut(f.subject_display_name, pol.p), pol.p) "
        "ELSE f.subject_display_name END"
    )
    title = (
        "CASE WHEN f.title IS NULL THEN NULL "
        f"WHEN %(include_pii)s AND NOT ({hint('f.title')}) THEN f.title "
        "ELSE reviewpacks_redact_text(reviewpacks_cut(f.title, pol.p), pol.p) END"
    )
    # domain.redaction.needs_scrub: with personal data, only evidence that may hold a secret.
    evidence = (
        "CASE WHEN NOT %(include_pii)s OR lower(t.evidence) LIKE ANY(%(secret_key_hints)s) "
        f"OR ({hint('t.evidence')}) "
        "THEN reviewpacks_redact_json(f.evidence, pol.p, '', false, 0)::text "
        "ELSE t.evidence END"
    )
    together = "t.evidence || chr(1) || coalesce(f.title, '') || chr(1) || coalesce(f.subject_display_name, '')"
    # The enumerated columns are host-written text too: scanned when personal data is removed.
    enumerated = ("finding_type", "severity", "status", "subject_type")
    scanned = ", ".join(
        f"CASE WHEN %(include_pii)s THEN f.{c} ELSE reviewpacks_scan(reviewpacks_cut(f.{c}, pol.p), pol.p) END AS {c}"
        for c in enumerated
    )
    columns = {
        "id": "f.id::text",
        **{c: _neutralised(f"x.{c}") for c in enumerated},
        "subject_external_id": "f.subject_external_id::text",
        "subject_display_name": _neutralised("x.display"),
        "title": _neutralised("x.title"),
        "evidence": _neutralised("x.evidence"),
        "first_seen_at": _TIMESTAMP.format(col="f.first_seen_at"),
        "last_seen_at": _TIMESTAMP.format(col="f.last_seen_at"),
        "updated_at": _TIMESTAMP.format(col="f.updated_at"),
    }
    select_list = ", ".join(columns[c] for c in layout.FINDINGS_COLUMNS)
    statuses = ", ".join(f"'{s}'" for s in layout.INCLUDED_FINDING_STATUSES)
    return (
        # OFFSET 0 keeps each LATERAL step from being merged into the select list, where every
        # reference to its columns (a cell is read up to six times) would compute it again.
        f"COPY (SELECT {select_list} FROM findings f CROSS JOIN (SELECT {POLICY_SQL} AS p) pol "
        "CROSS JOIN LATERAL (SELECT f.evidence::text AS evidence OFFSET 0) t "
        f"CROSS JOIN LATERAL (SELECT {_may_hold_secret_value(together)} AS hint OFFSET 0) h "
        f"CROSS JOIN LATERAL (SELECT {display} AS display, {title} AS title, {evidence} AS evidence, {scanned} "
        "OFFSET 0) x "
        f"WHERE f.tenant_id = %(tenant_id)s AND f.status IN ({statuses}) ORDER BY f.id) "
        "TO STDOUT WITH (FORMAT csv)"
    )


# The policy as one value, in the field order of the reviewpacks_policy type (migration 0006).
POLICY_FIELDS = (
    "include_pii", "max_depth", "cell_keep", "cell_marker", "key_camel", "key_separator", "secret_key_parts",
    "secret_key_last_parts", "secret_key_pieces", "weak_secret_keys", "credential", "person_keys",
    "person_key_last_parts", "safe_keys", "safe_key_last_parts", "safe_value", "safe_values", "uuid",
    "secret_patterns", "secret_replacements", "pii_patterns", "pii_replacements", "secret_placeholder",
    "person_placeholder", "text_placeholder", "secret_chars", "secret_value_hints", "pii_hints", "pii_any",
)
POLICY_SQL = "ROW(" + ", ".join(f"%(p_{name})s" for name in POLICY_FIELDS) + ")::reviewpacks_policy"


def _like(text: str) -> str:
    """A LIKE pattern that finds text anywhere, its own backslash, % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def policy_params(include_pii: bool) -> dict:
    """domain/redaction.py's policy as query parameters (POLICY_SQL reads them)."""
    policy = {
        "include_pii": include_pii,
        "max_depth": redaction.MAX_DEPTH,
        "cell_keep": csvsafe.KEEP,
        "cell_marker": csvsafe.TRUNCATED,
        "key_camel": redaction.KEY_CAMEL_PATTERN,
        "key_separator": redaction.KEY_SEPARATOR_PATTERN,
        "secret_key_parts": list(redaction.SECRET_KEY_PARTS),
        "secret_key_last_parts": list(redaction.SECRET_KEY_LAST_PARTS),
        "secret_key_pieces": [_like(piece) for piece in redaction.SECRET_KEY_PIECES],
        "weak_secret_keys": list(redaction.WEAK_SECRET_KEYS),
        "credential": redaction.CREDENTIAL_VALUE_PATTERN,
        "person_keys": list(redaction.PERSON_KEYS),
        "person_key_last_parts": list(redaction.PERSON_KEY_LAST_PARTS),
        "safe_keys": list(redaction.SAFE_KEYS),
        "safe_key_last_parts": list(redaction.SAFE_KEY_LAST_PARTS),
        "safe_value": redaction.SAFE_VALUE_PATTERN,
        "safe_values": list(redaction.SAFE_VALUES),
        "uuid": redaction.UUID_PATTERN,
        "secret_patterns": [pattern for pattern, _ in redaction.SECRET_RULES],
        "secret_replacements": [replacement for _, replacement in redaction.SECRET_RULES],
        "pii_patterns": [pattern for pattern, _ in redaction.PII_RULES],
        "pii_replacements": [replacement for _, replacement in redaction.PII_RULES],
        "secret_placeholder": redaction.SECRET_PLACEHOLDER,
        "person_placeholder": redaction.PII_PLACEHOLDER,
        "text_placeholder": redaction.TEXT_PLACEHOLDER,
        "secret_chars": redaction.SECRET_CHARS_PATTERN,
        "secret_value_hints": [_like(hint) for hint in redaction.SECRET_VALUE_HINTS],
        "pii_hints": list(redaction.PII_HINTS),
        "pii_any": "|".join(redaction.PII_HINTS),
    }
    return {f"p_{name}": policy[name] for name in POLICY_FIELDS}


def copy_params(tenant_id: int, include_pii: bool) -> dict:
    return {
        "tenant_id": tenant_id,
        "include_pii": include_pii,
        "person": redaction.PII_PLACEHOLDER,
        "formula": _FORMULA_CODES,
        "formula_ignored": _IGNORED_CODES,
        "formula_re": csvsafe.FORMULA_PATTERN,
        "truncated": csvsafe.TRUNCATED,
        "secret_key_hints": [_like(hint) for hint in redaction.SECRET_KEY_HINTS],
        "secret_value_hints": [_like(hint) for hint in redaction.SECRET_VALUE_HINTS],
        "secret_chars": redaction.SECRET_CHARS_PATTERN,
        **policy_params(include_pii),
    }


_DONE = object()
BLOCK_SIZE = 1 << 20  # 1 MiB: large enough for deflate to run at full speed
QUEUE_BLOCKS = 8  # blocks in flight between the reader and the deflater: memory stays under ~10 MB


def _blocks(raw, tenant_id: int, include_pii: bool) -> Iterator[bytes]:
    with raw.cursor() as cursor:
        with cursor.copy(findings_copy_sql(), copy_params(tenant_id, include_pii)) as copy:
            # COPY sends one message per row; deflate and hashing are only efficient on large
            # buffers, so rows are gathered into blocks first.
            buffer = bytearray()
            for data in copy:
                buffer += data
                if len(buffer) >= BLOCK_SIZE:
                    yield bytes(buffer)
                    buffer.clear()
            if buffer:
                yield bytes(buffer)


def copy_findings(
    conn: Connection, tenant_id: int, *, include_pii: bool, threaded: bool = True
) -> Iterator[bytes]:
    """Yield findings.csv data rows as COPY sends them (no header), in blocks of about 1 MiB.

    With ``threaded``, a reader thread pulls from the socket while the caller deflates, so
    reading and compressing overlap on two cores; the bounded queue keeps memory flat. Small
    exports skip the thread, whose start-up would cost more than the overlap saves.
    """
    raw = conn.connection.dbapi_connection
    try:
        if threaded:
            yield from _in_thread(_blocks(raw, tenant_id, include_pii), name=f"copy-findings-{tenant_id}")
        else:
            yield from _blocks(raw, tenant_id, include_pii)
    except psycopg.Error as error:
        if error.sqlstate in _TOO_DEEP:
            raise InvalidSourceData(f"a finding's evidence is nested deeper than {redaction.MAX_DEPTH} levels") from None
        if not isinstance(error, psycopg.OperationalError):
            raise
        # The connection is gone (terminated, network): the pool must not hand it out again.
        conn.invalidate(error)
        raise DatabaseUnavailable(f"the database connection broke during COPY: {type(error).__name__}") from error


def _in_thread(source: Iterator[bytes], *, name: str) -> Iterator[bytes]:
    chunks: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
    failure: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            for block in source:
                while not stop.is_set():
                    try:
                        chunks.put(block, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            failure.append(exc)
        finally:
            chunks.put(_DONE)

    reader = threading.Thread(target=read, name=name, daemon=True)
    reader.start()
    try:
        while True:
            block = chunks.get()
            if block is _DONE:
                break
            yield block
    finally:
        stop.set()
        # Drain so that a reader blocked on a full queue can finish.
        while reader.is_alive():
            try:
                chunks.get(timeout=0.1)
            except queue.Empty:
                pass
        reader.join()
    if failure:
        raise failure[0]
