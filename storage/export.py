"""The PostgreSQL fast path: findings.csv straight out of `COPY … TO STDOUT`.

PostgreSQL sends the plain columns in CSV, timestamps already in the pack's
format, and Python keeps its hands off almost every row. The rules live in
domain/ once: :func:`domain.documents.copied_finding_row` applies the same
redaction policy and formula neutralising as the portable path, to every row
that could need them. Which rows those are is settled per block of about
1 MiB by one pattern (:func:`domain.documents.copy_first_look_pattern`),
matched by RE2, a linear-time engine that scans a block in about a millisecond:
a row that does not match is already exactly what the row function would
return, so the block goes into the ZIP as PostgreSQL sent it. Without
personal data a second pattern finds personal data by shape
(:func:`domain.documents.copy_personal_look_pattern`), and a row whose evidence
the allow-list has not already been seen to leave unchanged (by this process, in
any pack) goes through the policy too; the subject's name is replaced in the
query. Each row's evidence is taken out of a block with byte operations that run
in C, and a row whose cells before the evidence no pattern matches has only its
evidence replaced (:func:`domain.documents.copied_evidence_cell`), not parsed and
written again cell by cell, with personal data and without. Each distinct evidence
goes through the policy once per block: findings of one rule repeat their evidence,
long values too.

Evidence is printed as PostgreSQL prints jsonb, where the portable path prints
compact sorted JSON: the same values, not the same bytes. A given deployment
always uses one path, so its packs stay byte-for-byte deterministic.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import select
import socket
from collections.abc import Collection, Iterator
from typing import NamedTuple

import psycopg
import re2
from sqlalchemy import Connection

from domain import csvsafe, documents, layout, redaction
from storage.db import DatabaseUnavailable

# A timestamp as the pack writes it (layout.iso): UTC, whole seconds, "T" and "Z". to_char spends a
# third of the statement's time on three columns; where PostgreSQL prints timestamps as ISO 8601
# (its default DateStyle), the same text comes from its own output with the space made a "T", in
# about two thirds of the time. Infinite values and years before Christ (which ISO output marks
# with "BC"), and every value under another DateStyle, keep to_char
# (tests/storage/test_copy_sql.py compares the two).
_TO_CHAR = "to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
TIMESTAMP_SQL = (
    "CASE WHEN {col} >= '0001-01-01 00:00:00+00' AND {col} < 'infinity' "
    "AND (SELECT starts_with(current_setting('DateStyle'), 'ISO,')) "
    "THEN replace(date_trunc('second', {col} AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z' "
    f"ELSE {_TO_CHAR} END"
)
# No evidence is {} on both paths (domain.documents.copied_evidence says why). A JSON null is a
# dozen bytes, so only small values are compared with it: the comparison costs on every row.
EVIDENCE_SQL = "CASE WHEN {col} IS NULL OR (pg_column_size({col}) < 64 AND {col} = 'null') THEN '{{}}'::jsonb ELSE {col} END"


def findings_copy_sql() -> str:
    """The COPY statement; its parameters are :func:`copy_params`."""
    columns = {c: TIMESTAMP_SQL.format(col=f"f.{c}") if c in layout.FINDINGS_TIMESTAMP_COLUMNS else f"f.{c}" for c in layout.FINDINGS_COLUMNS}
    columns["evidence"] = EVIDENCE_SQL.format(col="f.evidence")
    # Without personal data a subject's name is replaced whole (domain.redaction.display_name).
    columns["subject_display_name"] = (
        "CASE WHEN %(include_pii)s OR f.subject_display_name IS NULL THEN f.subject_display_name ELSE %(person)s END"
    )
    select_list = ", ".join(columns[c] for c in layout.FINDINGS_COLUMNS)
    statuses = ", ".join(f"'{s}'" for s in layout.INCLUDED_FINDING_STATUSES)
    return (
        f"COPY (SELECT {select_list} FROM findings f "
        # The tenant as a one-element array, and the order by tenant and id: PostgreSQL then reads the
        # tenant's rows through the (tenant_id, id) index, already in id order. Written as
        # "tenant_id = x ORDER BY id", the planner prefers the primary key and walks it past every
        # other tenant's rows: on a table of two 1M-finding tenants, the second one's first row
        # came after 0.3 s, and on a table of many tenants each pack would read them all.
        f"WHERE f.tenant_id = ANY(%(tenant_ids)s::bigint[]) AND f.status IN ({statuses}) ORDER BY f.tenant_id, f.id) "
        "TO STDOUT WITH (FORMAT csv)"
    )


def copy_params(tenant_id: int, include_pii: bool) -> dict:
    return {"tenant_ids": [tenant_id], "include_pii": include_pii, "person": redaction.PII_PLACEHOLDER}


def _compile(pattern: bytes) -> re2._Regexp:
    options = re2.Options()
    # Byte by byte: the patterns spell multi-byte characters out as their UTF-8 bytes.
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(pattern, options)


_FIRST_LOOK = _compile(documents.copy_first_look_pattern())
# Without personal data both looks run as one pattern: one pass over the block, one call per match.
_EITHER_LOOK = _compile(documents.copy_first_look_pattern() + b"|" + documents.copy_personal_look_pattern())
_ANY_PLACEHOLDER = _compile(redaction.PLACEHOLDERS_PATTERN)
_UNANCHORED = re2._Anchor.UNANCHORED  # for _looks, which calls the binding directly


def find_placeholders(block: bytes) -> list[bytes]:
    """The placeholders a block holds, for redaction.PlaceholderTally.

    RE2 clears a block without any in one fast pass; a block with some is listed by Python's
    engine, whose findall loops in C (RE2's binding builds each match in Python).
    """
    return redaction.find_placeholders(block) if _ANY_PLACEHOLDER.search(block) else []


# A row longer than this (in bytes) may hold a cell over the spreadsheet limit, which must be cut.
_LONG_ROW = csvsafe.KEEP
_NEEDS_QUOTES = re.compile('[,"\n\r]')
_QUOTED_CELL = re.compile('"([^"]*(?:""[^"]*)*)"')  # one pass, no backtracking


def parse_copy_row(line: str) -> list[str | None]:
    """The cells of one row in COPY's CSV (unquoted empty is NULL, ``""`` is the empty string)."""
    cells: list[str | None] = []
    end = len(line) - 1 if line.endswith("\n") else len(line)
    i = 0
    while True:
        if line.startswith('"', i):
            match = _QUOTED_CELL.match(line, i)
            if match is None:
                raise ValueError("a quoted cell is not closed")
            cells.append(match.group(1).replace('""', '"'))
            i = match.end()
        else:
            k = line.find(",", i, end)
            k = end if k == -1 else k
            cells.append(line[i:k] or None)
            i = k
        if i >= end:
            return cells
        i += 1  # the comma


def _copy_cell(cell: str | None) -> str:
    """One cell as COPY writes it in CSV: NULL empty, the empty string and special text quoted."""
    if cell is None:
        return ""
    if not cell or cell == "\\." or _NEEDS_QUOTES.search(cell):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def copy_line(cells: list[str | None]) -> bytes:
    """One row in COPY's CSV dialect, so fixed rows sit among PostgreSQL's own unchanged."""
    return (",".join(map(_copy_cell, cells)) + "\n").encode("utf-8")


def _fixed(row: bytes, include_pii: bool, clean: set[bytes] | None = None) -> bytes:
    cells = parse_copy_row(row.decode("utf-8"))
    # NULL stays NULL (an empty unquoted cell), as in the rows COPY sent that need no change.
    fixed = [
        None if cell is None and out == "" else out
        for cell, out in zip(cells, documents.copied_finding_row(cells, include_pii=include_pii), strict=True)
    ]
    evidence = cells[_EVIDENCE]
    # Evidence the policy leaves as it is without personal data needs no second look in the rows
    # that carry it; evidence too long to be remembered is not encoded for it.
    if not include_pii and clean is not None and evidence is not None and len(evidence) <= _CLEAN_CELL and evidence == fixed[_EVIDENCE]:
        _remember(clean, _copy_cell(evidence).encode("utf-8"))
    return copy_line(fixed)


_EVIDENCE = layout.FINDINGS_COLUMNS.index("evidence")
# Evidence the policy leaves as it is, without personal data, as COPY writes its cell. The verdict
# depends on the text alone, so it holds for every pack the process builds: packs of one rule's
# findings repeat a few hundred values, across tenants too. At most _CLEAN_KEPT cells of at most
# _CLEAN_CELL bytes are kept (17 MiB at worst); when full, the set starts over.
_CLEAN_CELL = 1024
_CLEAN_KEPT = 16_384
_KNOWN_CLEAN: set[bytes] = set()


def _remember(clean: set[bytes], cell: bytes) -> None:
    if len(cell) <= _CLEAN_CELL:
        if len(clean) >= _CLEAN_KEPT:
            clean.clear()
        clean.add(cell)


# The evidence is followed only by the timestamps, which hold no comma (NULL, or the query's format).
_AFTER_EVIDENCE = len(layout.FINDINGS_COLUMNS) - 1 - _EVIDENCE
assert layout.FINDINGS_COLUMNS[_EVIDENCE + 1 :] == layout.FINDINGS_TIMESTAMP_COLUMNS


# The one object COPY leaves unquoted, and what a finding without evidence gets; with the comma before it.
_EMPTY_OBJECT = b"{}"
_COMMA_EMPTY_OBJECT = b"," + _EMPTY_OBJECT


def _evidence_span(row: bytes) -> tuple[int, int]:
    """Where the evidence cell of one row (without its line end) starts and ends, when it is a
    quoted object or the empty object; otherwise a span of bytes that no remembered evidence equals.

    The empty object, which is also what a finding without evidence gets, is the one object COPY
    leaves unquoted: it ends the bytes before the timestamps, after a comma (an unquoted cell
    holds none). The last ,"{ before the timestamps opens the evidence cell when that is a quoted
    object: it only ever opens a cell, since inside a quoted cell every quote is doubled.
    Otherwise the bytes from there span a cell's closing quote, and every remembered cell holds
    only doubled quotes or is the empty object.
    """
    end = len(row.rsplit(b",", _AFTER_EVIDENCE)[0])
    if row.endswith(_COMMA_EMPTY_OBJECT, 0, end):
        return end - 2, end
    return row.rfind(b',"{', 0, end) + 1, end


def _quoted_object(cell: bytes) -> bool:
    return len(cell) >= 4 and cell.endswith(b'}"') and b'"' not in cell[1:-1].replace(b'""', b"")


def _object_text(cell: bytes) -> str:
    """The JSON text of a quoted-object evidence cell."""
    return cell[1:-1].replace(b'""', b'"').decode("utf-8")


def _policy_cell(cell: bytes, include_pii: bool) -> bytes | None:
    """An evidence cell as the policy leaves it, in COPY's CSV (the same bytes when it changes
    nothing); None when the cell is not an object, whose row goes through the row function."""
    if cell == _EMPTY_OBJECT:
        evidence = "{}"
    elif _quoted_object(cell):
        evidence = _object_text(cell)
    else:
        return None
    fixed = documents.copied_evidence_cell(evidence, include_pii=include_pii)
    return cell if fixed == evidence else _copy_cell(fixed).encode("utf-8")


def _judged(cell: bytes, include_pii: bool, clean: set[bytes], fixed_cells: dict[bytes, bytes]) -> bytes | None:
    """:func:`_policy_cell`, kept in the block's ``fixed_cells``; evidence the policy leaves as it
    is without personal data is remembered for the process too."""
    fixed = _policy_cell(cell, include_pii)
    if fixed is not None:
        fixed_cells[cell] = fixed
        if fixed == cell and not include_pii:
            _remember(clean, cell)
    return fixed


def _fixed_evidence(
    row: bytes, include_pii: bool, clean: set[bytes], looked: int | None, fixed_cells: dict[bytes, bytes]
) -> bytes:
    """A row through the row function, or only its evidence cell when nothing before the
    evidence matched a look (the timestamps after it are the query's).

    ``looked`` is where the leftmost match of a look in the row starts, if any: no match of a
    look crosses from one cell into the next quoted object, so one that starts in the evidence
    or after it leaves the cells before it alone. ``fixed_cells`` holds the block's evidence cells
    the policy has already been asked about: findings of one rule repeat their evidence, long
    values too, and each distinct one goes through the policy once per block.
    """
    body = row[:-1]
    start, end = _evidence_span(body)
    if start == 0 or (looked is not None and looked < start):
        return _fixed(row, include_pii, clean)
    cell = body[start:end]
    fixed = fixed_cells.get(cell) or _judged(cell, include_pii, clean, fixed_cells)
    if fixed is None:
        return _fixed(row, include_pii, clean)
    if fixed == cell:
        return row
    return b"".join((body[:start], fixed, body[end:], b"\n"))


def _unknown_evidence(
    block: bytes,
    ends: list[int],
    clean: set[bytes],
    looked: Collection[int] = (),
    fixed_cells: dict[bytes, bytes] | None = None,
) -> list[int]:
    """The rows whose evidence the policy is not known to leave as it is (``clean``).

    Each distinct evidence the block holds that is not known yet is judged once, here: small
    packs repeat a few hundred values over their rows, which would otherwise each go through
    the policy. Each goes into ``fixed_cells`` as the policy left it, for its rows' pass; evidence
    it leaves as it is is remembered (up to :data:`_CLEAN_CELL` bytes) and its rows need nothing.
    The evidence of a ``looked`` row is left to that row's own pass.
    """
    lines = block.split(b"\n")
    # Split at line ends when every row is one line (the common case, in C); else row by row.
    rows = lines[:-1] if len(lines) == len(ends) + 1 else [block[s : e - 1] for s, e in zip([0, *ends], ends)]
    # Each row's _evidence_span, written out: a call per row cost a third of the time.
    cells = [head[head.rfind(b',"{') + 1 :] for row in rows for head in (row.rsplit(b",", _AFTER_EVIDENCE)[0],)]
    unknown = set(cells).difference(clean)
    if not unknown:
        return []
    if any(cell.endswith(_COMMA_EMPTY_OBJECT) for cell in unknown):
        # The empty object, unquoted: the bytes above run from an earlier cell to it (a quoted
        # object ends with a quote). Only a block that holds one pays for looking at each row again.
        cells = [_EMPTY_OBJECT if cell.endswith(_COMMA_EMPTY_OBJECT) else cell for cell in cells]
        unknown = set(cells).difference(clean)
        if not unknown:
            return []
    judged = {} if fixed_cells is None else fixed_cells
    unknown.difference_update(
        [cell for cell in unknown.difference(cells[row] for row in looked) if _judged(cell, False, clean, judged) == cell]
    )
    return [row for row, cell in enumerate(cells) if cell in unknown] if unknown else []


def _looks(block: bytes, ends: list[int], include_pii: bool) -> dict[int, int]:
    """Each row of the block that a look matches, and where the leftmost match in it starts.

    RE2's binding is called directly: its Python wrapper builds a generator and a match object
    per call, which a block with a personal row every few kilobytes pays for thousands of times
    (tests/workers/test_export_parity.py checks the two agree).
    """
    match = (_FIRST_LOOK if include_pii else _EITHER_LOOK)._regexp.Match
    looked: dict[int, int] = {}
    position, size = 0, len(block)
    while (start := match(_UNANCHORED, block, position, size)[0][0]) >= 0:
        # A match that starts with a row's line end is about the first cell of the next row; the
        # next search starts at this row's line end, so that the next row's first cell is seen
        # as a line's start.
        row = bisect.bisect_right(ends, start + 1)
        looked[row] = start
        position = ends[row] - 1
    return looked


def _settle(block: bytes, ends: list[int], long_rows: list[int], include_pii: bool, clean: set[bytes]) -> bytes:
    """The block with every row that needs it passed through the row function, or only its
    evidence through the policy when only the evidence can need it.

    With personal data, the rows the first look matches. Without, also the rows that hold
    personal data by shape anywhere, and the rows whose evidence the policy has not yet been
    seen to leave as it is: evidence repeats across findings, so after the first rows most
    evidence is known (``clean``, :data:`_KNOWN_CLEAN` for the process).
    """
    looked = _looks(block, ends, include_pii)
    rows = set(long_rows)
    rows.update(looked)
    fixed_cells: dict[bytes, bytes] = {}
    if not include_pii:
        rows.update(_unknown_evidence(block, ends, clean, looked, fixed_cells))
    if not rows:
        return block
    # The rows in between go into the join as views of the block, not as copies of it.
    view = memoryview(block)
    out: list[bytes | memoryview] = []
    done = 0
    for row in sorted(rows):
        start = ends[row - 1] if row else 0
        line = block[start : ends[row]]
        if len(line) > _LONG_ROW:
            fixed = _fixed(line, include_pii, clean)
        else:
            at = looked.get(row)
            fixed = _fixed_evidence(line, include_pii, clean, None if at is None else at - start, fixed_cells)
        out += [view[done:start], fixed]
        done = ends[row]
    out.append(view[done:])
    return b"".join(out)


BLOCK_SIZE = 1 << 20  # 1 MiB: large enough for deflate to run at full speed


class Block(NamedTuple):
    """About 1 MiB of findings.csv, whole rows, and how many rows it holds."""

    data: bytes
    rows: int


def _blocks(raw: psycopg.Connection, tenant_id: int, include_pii: bool) -> Iterator[Block]:
    with raw.cursor() as cursor:
        with cursor.copy(findings_copy_sql(), copy_params(tenant_id, include_pii)) as copy:
            # COPY sends one message per row; the row ends are kept so that a match found in a
            # block leads back to its row. Deflate and hashing run on whole blocks.
            buffer = bytearray()
            ends: list[int] = []
            long_rows: list[int] = []
            for data in _copied_rows(copy, raw):
                if len(data) > _LONG_ROW:
                    long_rows.append(len(ends))
                buffer += data
                ends.append(len(buffer))
                if len(buffer) >= BLOCK_SIZE:
                    yield Block(_settle(bytes(buffer), ends, long_rows, include_pii, _KNOWN_CLEAN), len(ends))
                    buffer.clear()
                    ends, long_rows = [], []
            if buffer:
                yield Block(_settle(bytes(buffer), ends, long_rows, include_pii, _KNOWN_CLEAN), len(ends))


def _copied_rows(copy: psycopg.Copy, raw: psycopg.Connection) -> Iterator[memoryview]:
    """The rows COPY sends, one message each.

    Rows are taken from libpq directly: psycopg's wait loop around each row costs more than the
    row itself. When libpq holds no whole row, it first reads what the socket already holds.
    Only when that is nothing either does the reader wait, until the socket holds a good part
    of a block (:func:`_gathered_waits`); without poll(), psycopg waits.
    """
    pgconn = raw.pgconn
    get, consume = pgconn.get_copy_data, pgconn.consume_input
    with _gathered_waits(pgconn.socket) as wait:
        while True:
            # Both raise psycopg.OperationalError when the connection fails, as psycopg's own read does.
            nbytes, data = get(1)
            while nbytes == 0:
                consume()
                nbytes, data = get(1)
                if nbytes == 0:
                    if wait is None:
                        data = copy.read()
                        if not data:
                            return  # psycopg read the end and the statement's result
                        nbytes = len(data)
                    else:
                        wait()
            if nbytes < 0:
                break
            yield data
    # Outside the wait's socket option: libpq may wait for the statement's result itself.
    _finish_copy(raw)


# PostgreSQL sends COPY's rows in pieces of 8 KiB. A reader woken for each piece (a million rows
# of findings: 30,000 waits) spent more on waking than on the rows; woken once 64 KiB are there,
# or after 5 ms at most, it takes them in a few reads (bench/results.md). The last piece of a copy
# is always short and waits out the 5 ms, so a copy is read piece by piece until it has needed
# _WAKE_LATER_AFTER waits (about 1 MiB): a small pack's copy never waits for more.
_WAKE_AT = 64 * 1024
_WAIT_MS = 5
_WAKE_LATER_AFTER = 128


class _GatheredWaits:
    """Waits for COPY's next rows on the connection's socket (see :func:`_gathered_waits`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self.waits = 0

    def __call__(self) -> bool:
        """Wait; whether the socket became readable (False: the wait's time ran out)."""
        self.waits += 1
        if self.waits == _WAKE_LATER_AFTER:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _WAKE_AT)
            except OSError:
                pass  # the wait still ends after _WAIT_MS or when anything arrives
        return bool(self._poller.poll(_WAIT_MS))


@contextlib.contextmanager
def _gathered_waits(fd: int) -> Iterator[_GatheredWaits | None]:
    """A wait that returns when rows arrive, and once a copy has waited :data:`_WAKE_LATER_AFTER`
    times, only when the socket holds :data:`_WAKE_AT` bytes or :data:`_WAIT_MS` have passed.
    The socket's option is restored afterwards, whatever happens: libpq's and psycopg's own waits
    would otherwise sleep on a short answer.
    """
    if not hasattr(select, "poll"):
        yield None
        return
    # A duplicate of the connection's descriptor: closing it leaves the connection's own open.
    with socket.socket(fileno=os.dup(fd)) as sock:
        try:
            yield _GatheredWaits(sock)
        finally:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            except OSError:
                pass  # the connection is gone; nothing waits on it again


def _finish_copy(raw: psycopg.Connection) -> None:
    """Collect the statement's result after libpq reported the end of the copy, as psycopg would."""
    pgconn = raw.pgconn
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass
    if result is None:
        raise psycopg.OperationalError("the copy ended without a result")
    if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(result, encoding=raw.info.encoding)


def copy_findings(conn: Connection, tenant_id: int, *, include_pii: bool) -> Iterator[Block]:
    """Yield findings.csv data rows as COPY sends them (no header), in blocks of about 1 MiB.

    Blocks are read and checked on the caller's thread, which hands each one to the entry's
    deflating thread (workers.builders.DeflateBehind) and reads on; PostgreSQL keeps writing
    into the socket meanwhile. A reader thread of its own was measured to gain nothing on two
    cores (reading and checking hold the interpreter) and cost 9 MB of peak memory for the
    blocks in flight (bench/results.md).
    """
    raw = conn.connection.dbapi_connection
    try:
        yield from _blocks(raw, tenant_id, include_pii)
    except psycopg.Error as error:
        if not isinstance(error, psycopg.OperationalError):
            raise
        # The connection is gone (terminated, network): the pool must not hand it out again.
        conn.invalidate(error)
        raise DatabaseUnavailable(f"the database connection broke during COPY: {type(error).__name__}") from error
