"""CSV formula neutralising: dangerous leading characters get a quote, everything else is left alone."""

from __future__ import annotations

import csv
import io

import pytest

from domain.csvsafe import FORMULA_PREFIXES, neutralise, neutralise_row


def test_the_owasp_prefix_list():
    assert FORMULA_PREFIXES[:6] == ("=", "+", "-", "@", "\t", "\r")
    assert FORMULA_PREFIXES[6:] == ("\uff1d", "\uff0b", "\uff0d", "\uff20")


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES, ids=repr)
@pytest.mark.parametrize("rest", ["", "1", "cmd|' /C calc'!A0", "SUM(A1:A2)"])
def test_each_prefix_gets_exactly_one_quote(prefix, rest):
    value = prefix + rest
    assert neutralise(value) == "'" + value


@pytest.mark.parametrize(
    "value, expected",
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("@SUM(1)", "'@SUM(1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("=1+2", "'=1+2"),
        ("==", "'=="),
        ("=cmd|'/C calc'!A0", "'=cmd|'/C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@", "'@"),
    ],
    ids=repr,
)
def test_known_payloads(value, expected):
    assert neutralise(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("hello", "hello"),
        ("a=b", "a=b"),
        ("1+1", "1+1"),
        ("user@example.com", "user@example.com"),
        ("x-y", "x-y"),
        ("", ""),
        (None, ""),
        (42, "42"),
        (0, "0"),
        (3.5, "3.5"),
        (True, "True"),
        ("'=already quoted", "'=already quoted"),
        ("line one\nline two", "line one\nline two"),
        ("multi\r\nline", "multi\r\nline"),
        ("Überprüfung", "Überprüfung"),
        ("7a1c2f0e-3b4d-4c5e-8f90-123456789abc", "7a1c2f0e-3b4d-4c5e-8f90-123456789abc"),
        ("2026-11-20T08:00:00Z", "2026-11-20T08:00:00Z"),
    ],
    ids=repr,
)
def test_safe_values_are_unchanged(value, expected):
    assert neutralise(value) == expected


def test_negative_numbers_render_as_quoted_text():
    # A non-string is rendered with str() first; "-5" starts with a formula character like any other text.
    assert neutralise(-5) == "'-5"


def test_the_result_is_always_a_str():
    for value in (None, 1, 2.0, "x", "=x", b"bytes"):
        assert type(neutralise(value)) is str


@pytest.mark.parametrize(
    "value, expected",
    [
        ("a\x00b", "ab"),
        ("\x00", ""),
        ("\x00\x00abc\x00", "abc"),
        ("\x00=1", "'=1"),
        ("=\x001", "'=1"),
        ("\x00\x00-1", "'-1"),
    ],
    ids=repr,
)
def test_nul_bytes_are_removed_before_the_formula_check(value, expected):
    assert neutralise(value) == expected


def test_neutralise_row_from_any_iterable():
    row = ["=1", None, 5, "ok", "@x"]
    expected = ["'=1", "", "5", "ok", "'@x"]
    assert neutralise_row(row) == expected
    assert neutralise_row(tuple(row)) == expected
    assert neutralise_row(v for v in row) == expected
    assert neutralise_row([]) == []


def test_neutralise_row_returns_a_new_list():
    row = ["=1"]
    result = neutralise_row(row)
    assert result is not row
    assert row == ["=1"]


ROUND_TRIP_ROWS = [
    ["id", "title", "note"],
    [1, '=HYPERLINK("http://x","y")', "plain"],
    [2, "@SUM(1)", "a, with comma"],
    [3, "+1", 'quote " inside'],
    [4, "-1", "line\nbreak"],
    [5, "\t=1", None],
    [6, "\r=1", ""],
    [7, "safe=value", "x\x00y"],
]
EXPECTED_CELLS = [
    ["id", "title", "note"],
    ["1", '\'=HYPERLINK("http://x","y")', "plain"],
    ["2", "'@SUM(1)", "a, with comma"],
    ["3", "'+1", 'quote " inside'],
    ["4", "'-1", "line\nbreak"],
    ["5", "'\t=1", ""],
    ["6", "'\r=1", ""],
    ["7", "safe=value", "xy"],
]


def test_csv_round_trip():
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in ROUND_TRIP_ROWS:
        writer.writerow(neutralise_row(row))
    buffer.seek(0)
    back = list(csv.reader(buffer))
    assert len(back) == len(ROUND_TRIP_ROWS)
    assert back == EXPECTED_CELLS
    titles = [row[1] for row in back[1:]]
    assert [t.startswith("'") for t in titles] == [True, True, True, True, True, True, False]
    # No cell read back from the file starts with a character a spreadsheet would evaluate.
    for row in back:
        for cell in row:
            assert not cell.startswith(FORMULA_PREFIXES)


@pytest.mark.parametrize(
    "value",
    [" =1+1", "  @SUM(1)", "\u200b=cmd", "\ufeff+1", "\u00a0-1", "\n=1", " \u200d \u2060=1", "\uff1dcmd", "\uff20SUM(1)",
     " \uff0b1", "\uff0d1"],
    ids=repr,
)
def test_prefixes_behind_spaces_zero_width_characters_or_in_full_width_are_neutralised(value):
    assert neutralise(value) == "'" + value


@pytest.mark.parametrize("value", [" plain", "\u200bplain", "a=1", "x @y", "\u3000text"], ids=repr)
def test_leading_spaces_alone_are_left_alone(value):
    assert neutralise(value) == value


def test_the_copy_pattern_agrees_with_the_python_test():
    import re

    from domain.csvsafe import FORMULA_PATTERN, LEADING_IGNORED, starts_formula

    samples = [c + rest for c in [*LEADING_IGNORED, *FORMULA_PREFIXES, "a", "\u3000"] for rest in ["", "=1", "x", " \u200b@"]]
    for text in samples:
        assert bool(re.match(FORMULA_PATTERN, text)) == starts_formula(text), repr(text)
