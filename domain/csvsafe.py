"""CSV cells that a spreadsheet would run as a formula are made inert."""

from __future__ import annotations

from collections.abc import Iterable

# OWASP's list: a leading =, +, -, @, tab or carriage return starts a formula (or DDE call)
# in Excel, LibreOffice and Google Sheets. Spreadsheets also read the full-width forms, and skip
# leading spaces and zero-width characters before deciding, so those do not hide a prefix.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Characters looked past when finding a cell's first character (the tab and carriage return are
# prefixes themselves, so they are not among them).
LEADING_IGNORED = " \n\u00a0\u200b\u200c\u200d\u2060\ufeff"
# The same test as one pattern, for the COPY path: optional ignored characters, then a prefix.
FORMULA_PATTERN = "^[" + LEADING_IGNORED + "]*[" + "".join(FORMULA_PREFIXES).replace("-", "\\-") + "]"

# Spreadsheets hold at most 32,767 characters in a cell (Excel), and Python's csv module refuses
# fields over 131,072 by default: longer text is cut, visibly, so that every reader can open the file.
MAX_CELL = 32_767
TRUNCATED = " …[truncated]"
KEEP = MAX_CELL - 1 - len(TRUNCATED)  # room for the marker and a neutralising quote


def cut(text: str) -> str:
    """Text longer than a cell holds is cut, with a visible marker."""
    if len(text) > KEEP + len(TRUNCATED):
        return text[:KEEP] + TRUNCATED
    return text


def starts_formula(text: str) -> bool:
    return text.lstrip(LEADING_IGNORED).startswith(FORMULA_PREFIXES)


# Only a cell that starts with one of these characters can start a formula.
_FIRST = frozenset(FORMULA_PREFIXES) | frozenset(LEADING_IGNORED)


def neutralise(value: object) -> str:
    """Render one cell as text, prefixing a single quote where it could run as a formula."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # NUL cannot be stored by PostgreSQL and breaks some CSV readers; it never carries meaning here.
    if "\x00" in text:
        text = text.replace("\x00", "")
    text = cut(text)
    if text and text[0] in _FIRST and starts_formula(text):
        return "'" + text
    return text


def neutralise_row(values: Iterable[object]) -> list[str]:
    return [neutralise(v) for v in values]
