"""Writing CSV files as bytes: RFC 4180 line ends, streamed or spooled into memory.

Cells are neutralised by the row functions in domain/documents.py (through
domain/csvsafe.py) before they get here; this module only writes rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

# RFC 4180 line ends. They also matter for safety: Python's csv module quotes a cell holding a
# carriage return only when \r is part of the line terminator. PostgreSQL's COPY ends lines with
# \n (and quotes CR and LF itself), so its findings.csv header follows suit.
CSV_LINE_END = "\r\n"
COPY_LINE_END = "\n"


def csv_line(values: Iterable[object], line_end: str) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=line_end).writerow(values)
    return buffer.getvalue().encode("utf-8")


def write_csv(
    target: BinaryIO,
    header: Iterable[str],
    chunks: Iterable[list[Any]],
    to_row: Callable[[Any], list[Any]],
    on_chunk: Callable[[int, int], None] | None = None,
) -> int:
    """Stream rows as CSV into a binary file-like object; returns the number of data rows."""
    count = 0
    # newline="" lets the csv module write its own line ends; errors="replace" keeps
    # undecodable text (lone surrogates) from aborting a pack.
    text = io.TextIOWrapper(target, encoding="utf-8", errors="replace", newline="", write_through=True)
    writer = csv.writer(text, lineterminator=CSV_LINE_END)
    writer.writerow(header)
    for chunk in chunks:
        writer.writerows(to_row(row) for row in chunk)
        count += len(chunk)
        if on_chunk is not None:
            on_chunk(count, target.tell())
    text.flush()
    text.detach()
    return count


def spool_csv(header: Iterable[str], chunks: Iterable[list[Any]], to_row: Callable[[Any], list[Any]]) -> tuple[bytes, int]:
    """The whole CSV in memory, for small files; returns the bytes and the number of data rows."""
    buffer = io.BytesIO()
    count = write_csv(buffer, header, chunks, to_row)
    return buffer.getvalue(), count
