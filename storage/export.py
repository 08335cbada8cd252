"""The PostgreSQL fast path: findings.csv straight out of `COPY … TO STDOUT`.

Python never touches a row. Every rule the portable path applies per row in
domain/ — formula neutralising, PII placeholders, e-mail redaction, secret
removal in the evidence JSON, the timestamp format — is expressed in the
SELECT that COPY runs, with the patterns taken from domain/redaction.py. The
bytes arrive already in CSV and go straight into the ZIP entry.

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
from storage.db import DatabaseUnavailable

# Cells that start like a formula get a leading quote, exactly as domain.csvsafe.neutralise does.
_FORMULA_CODES = [ord(prefix) for prefix in csvsafe.FORMULA_PREFIXES]
_TIMESTAMP = "to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _neutralised(column: str) -> str:
    # PostgreSQL text cannot hold NUL, so the portable path's NUL stripping has nothing to do here.
    # Over-long text is cut first, with the same marker and length as domain.csvsafe.
    cut = (
        f"CASE WHEN length({column}) > {csvsafe.KEEP + len(csvsafe.TRUNCATED)} "
        f"THEN left({column}, {csvsafe.KEEP}) || %(truncated)s ELSE {column} END"
    )
    return f"CASE WHEN ascii({column}) = ANY(%(formula)s) THEN '''' || {cut} ELSE {cut} END"


def findings_copy_sql() -> str:
    """The COPY statement; parameters: tenant_id, include_pii, the redaction patterns."""
    display = "CASE WHEN %(include_pii)s THEN f.subject_display_name ELSE %(placeholder)s END"
    display = f"CASE WHEN f.subject_display_name IS NULL THEN NULL ELSE {display} END"
    title = (
        "CASE WHEN %(include_pii)s OR strpos(f.title, '@') = 0 THEN f.title "
        "ELSE regexp_replace(f.title, %(email_re)s, %(placeholder)s, 'g') END"
    )
    # Only rows whose evidence could need it go through the scrub function: the hints are literal
    # pieces of every secret-like or personal-data-like key, and an "@" of every e-mail address.
    evidence = (
        "CASE WHEN lower(f.evidence::text) LIKE ANY(%(secret_hints)s) "
        "OR (NOT %(include_pii)s AND (lower(f.evidence::text) LIKE ANY(%(pii_hints)s) OR strpos(f.evidence::text, '@') > 0)) "
        "THEN reviewpacks_scrub(f.evidence, %(include_pii)s, %(secret_re)s, %(pii_re)s, %(email_re)s)::text "
        "ELSE f.evidence::text END"
    )
    columns = {
        "id": "f.id::text",
        "finding_type": _neutralised("f.finding_type"),
        "severity": _neutralised("f.severity"),
        "status": _neutralised("f.status"),
        "subject_type": _neutralised("f.subject_type"),
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
        f"COPY (SELECT {select_list} FROM findings f "
        f"CROSS JOIN LATERAL (SELECT {display} AS display, {title} AS title, {evidence} AS evidence) x "
        f"WHERE f.tenant_id = %(tenant_id)s AND f.status IN ({statuses}) ORDER BY f.id) "
        "TO STDOUT WITH (FORMAT csv)"
    )


def copy_params(tenant_id: int, include_pii: bool) -> dict:
    """The parameters of :func:`findings_copy_sql` for one tenant."""
    return {
        "tenant_id": tenant_id,
        "include_pii": include_pii,
        "placeholder": redaction.PII_PLACEHOLDER,
        "formula": _FORMULA_CODES,
        "truncated": csvsafe.TRUNCATED,
        "secret_re": redaction.SECRET_KEY_PATTERN,
        "pii_re": redaction.PII_KEY_PATTERN,
        # Unanchored, for the prefilter: any text that could be such a key.
        "secret_hints": [f"%{hint}%" for hint in redaction.SECRET_KEY_HINTS],
        "pii_hints": [f"%{hint}%" for hint in redaction.PII_KEY_HINTS],
        "email_re": redaction.EMAIL_PATTERN,
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
    except psycopg.OperationalError as error:
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
