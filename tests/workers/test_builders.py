"""Pack plans are checked against the layout before a byte is written."""

from __future__ import annotations

import io
import sys
import threading
import time
import zipfile

import pytest

from domain import layout
from domain.ziparchive import DEFLATE_PIECE, DeterministicZip
from workers.builders import DeflateBehind, Entry, LayoutMismatch, Plan, write_archive


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


def _archive(write_entry) -> bytes:
    out = io.BytesIO()
    with DeterministicZip(out) as archive:
        with archive.open_stream("findings.csv") as stream:
            write_entry(stream)
    return out.getvalue()


def _data(size: int) -> bytes:
    # Varied enough that deflate's output depends on where the pieces are cut.
    return b"".join(b"%d,row %d,%s\n" % (i, i * 7919 % 10007, b"x" * (i % 97)) for i in range(size))[: size * 30]


@pytest.mark.parametrize("as_bytes", [False, True])
@pytest.mark.parametrize("write_size", [1, 4093, DEFLATE_PIECE - 1, DEFLATE_PIECE + 3, 3 * DEFLATE_PIECE])
def test_an_entry_written_behind_is_the_entry_written_directly(write_size, as_bytes):
    data = _data(120_000)
    assert len(data) > 3 * DEFLATE_PIECE

    def direct(stream):
        stream.write(data)

    # Large bytes blocks are handed over as they are, anything else is gathered first.

    threads = set()

    def behind(stream):
        original = stream.write
        stream.write = lambda piece: threads.add(threading.get_ident()) or original(piece)
        with DeflateBehind(stream) as out:
            for start in range(0, len(data), write_size):
                piece = memoryview(data)[start : start + write_size]
                out.write(bytes(piece) if as_bytes else piece)
                assert out.tell() == min(start + write_size, len(data))

    assert _archive(behind) == _archive(direct)
    # The entry was hashed, deflated and written by the thread, not by the writer's own.
    assert threads and threading.get_ident() not in threads


def test_large_blocks_after_a_small_write_are_handed_over_without_a_copy():
    data, size = _data(120_000), DEFLATE_PIECE + 7
    header, blocks = b"id,title\n", [data[i * size : (i + 1) * size] for i in range(3)]
    handed = []

    def behind(stream):
        original = stream.write
        stream.write = lambda piece: handed.append(piece) or original(piece)
        with DeflateBehind(stream) as out:
            out.write(header)
            for block in blocks:
                out.write(block)

    def direct(stream):
        stream.write(header + b"".join(blocks))

    assert _archive(behind) == _archive(direct)
    assert handed[0] == header and all(piece is block for piece, block in zip(handed[1:], blocks, strict=True))


def test_an_error_behind_is_raised_to_the_writer_and_the_thread_ends():
    class Failing:
        def __init__(self):
            self.pieces = 0

        def write(self, piece):
            self.pieces += 1
            raise OSError("no space left on device")

    failing = Failing()
    out = DeflateBehind(failing)
    with pytest.raises(OSError, match="no space left"):
        for _ in range(50):  # far more pieces than are ever in flight
            out.write(b"x" * DEFLATE_PIECE)
    with pytest.raises(OSError, match="no space left"):
        out.close()
    assert not out._thread.is_alive() and failing.pieces == 1


def test_an_error_of_the_writer_waits_for_the_thread_and_is_the_one_raised():
    written = []

    class Slow:
        def write(self, piece):
            time.sleep(0.2)
            written.append(len(piece))

    with pytest.raises(RuntimeError, match="the database went away"):
        with DeflateBehind(Slow()) as out:
            out.write(b"y" * (2 * DEFLATE_PIECE + 5))
            raise RuntimeError("the database went away")
    # The error reaches the writer only once the thread is done with what it was handed: nothing
    # writes into the archive after the build gives up on it.
    assert not out._thread.is_alive()
    assert written == [2 * DEFLATE_PIECE + 5]


def test_the_interpreter_changes_hands_quicker_only_while_entries_are_written_behind():
    class Sink:
        def write(self, piece):
            pass

    before = sys.getswitchinterval()
    first = DeflateBehind(Sink())
    assert sys.getswitchinterval() == DeflateBehind._SWITCH_INTERVAL < before
    second = DeflateBehind(Sink())
    first.close()
    # Another entry is still written behind (a pool of threads may build two packs at once).
    assert sys.getswitchinterval() == DeflateBehind._SWITCH_INTERVAL
    second.close()
    second.close()
    assert sys.getswitchinterval() == before
