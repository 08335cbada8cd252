"""Pack plans are checked against the layout before a byte is written."""

from __future__ import annotations

import io
import zipfile

import pytest

from domain import layout
from workers.builders import Entry, LayoutMismatch, Plan, write_archive


def _plan(entries: list[Entry], files=None) -> Plan:
    return Plan(
        files=files or layout.review_files(),
        entries={e.path: e for e in entries},
        metadata=lambda digests: ",".join(sorted(digests)).encode(),
        summary={},
        fingerprint="f",
    )


def _complete() -> list[Entry]:
    return [Entry(layout.ENTRYPOINT, b"<html>"), Entry(layout.SECTIONS, b"[]"), Entry(layout.SUMMARY, b"{}")]


def test_a_complete_plan_writes_every_file_and_metadata_knows_the_others():
    out = io.BytesIO()
    write_archive(out, _plan(_complete()))
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [f.path for f in layout.review_files()]
        assert archive.read(layout.METADATA) == b"executive-summary.html,sections.json,summary.json"


def test_a_streamed_entry_before_metadata_is_written_and_digested():
    entries = _complete()
    entries[0] = Entry(layout.ENTRYPOINT, write=lambda out: out.write(b"<html>streamed"))
    out = io.BytesIO()
    write_archive(out, _plan(entries))
    with zipfile.ZipFile(out) as archive:
        assert archive.read(layout.ENTRYPOINT) == b"<html>streamed"
        assert b"executive-summary.html" in archive.read(layout.METADATA)


def test_a_streamed_entry_after_metadata_is_refused_before_anything_is_written():
    entries = _complete()
    entries[2] = Entry(layout.SUMMARY, write=lambda out: out.write(b"{}"))
    out = io.BytesIO()
    with pytest.raises(LayoutMismatch, match="must sort before metadata.json"):
        write_archive(out, _plan(entries))
    assert out.getvalue() == b""


@pytest.mark.parametrize(
    "entries, message",
    [
        (_complete()[:2], r"missing \['summary.json'\]"),
        ([*_complete(), Entry("extra.txt", b"x")], r"unexpected \['extra.txt'\]"),
    ],
)
def test_entries_must_match_the_layout(entries, message):
    out = io.BytesIO()
    with pytest.raises(LayoutMismatch, match=message):
        write_archive(out, _plan(entries))
    assert out.getvalue() == b""


def test_an_entry_has_data_or_a_writer_not_both():
    with pytest.raises(ValueError):
        Entry("a", b"x", write=lambda out: None)
    with pytest.raises(ValueError):
        Entry("a")
