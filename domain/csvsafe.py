"""CSV cells that a spreadsheet would run as a formula are made inert."""

from __future__ import annotations

from collections.abc import Iterable

# OWASP's list: a leading =, +, -, @, tab or carriage return starts a formula (or DDE call)
# in Excel, LibreOffice and Google Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Spreadsheets hold at most 32,767 characters in a cell (Excel), and Python's csv module refuses
# fields over 131,072 by default: longer text is cut, visibly, so that every reader can open the file.
MAX_CELL = 32_767
TRUNCATED = " …[truncated]"
KEEP = MAX_CELL - 1 - len(TRUNCATED)  # room for the marker and a neutralising quote


def neutralise(value: object) -> str:
    """Render one cell as text, prefixing a single quote where it could run as a formula."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # NUL cannot be stored by PostgreSQL and breaks some CSV readers; it never carries meaning here.
    if "\x00" in text:
        text = text.replace("\x00", "")
    if len(text) > KEEP + len(TRUNCATED):
        text = text[:KEEP] + TRUNCATED
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def neutralise_row(values: Iterable[object]) -> list[str]:
    return [neutralise(v) for v in values]
