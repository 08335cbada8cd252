"""The deterministic ZIP writer: same writes, same bytes; fixed metadata; streaming without limits."""

from __future__ import annotations

import array
import csv
import hashlib
import io
import random
import struct
import tempfile
import zipfile

import pytest
from zlib_ng import zlib_ng

from domain import layout
from domain.ziparchive import (
    COMPRESS_LEVEL,
    DEFLATE,
    DEFLATE_PIECE,
    FILE_MODE,
    FIXED_DATE_TIME,
    DeterministicZip,
    EntryDigest,
    StreamedEntry,
)

LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
LOCAL_SIGNATURE = 0x04034B50
ZIP64_EXTRA_ID = 0x0001


def _text_data(lines: int = 5000, seed: int = 1) -> bytes:
    """Compressible but not trivially repetitive CSV-like bytes."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    rows = (",".join(rng.choice(words) + str(rng.randint(0, 99)) for _ in range(8)) for _ in range(lines))
    return "\n".join(rows).encode()


DATA = _text_data()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def build(entries, *, fileobj=None, **kwargs) -> bytes:
    """entries: (path, "bytes", data) or (path, "stream", [chunk, ...])."""
    out = fileobj if fileobj is not None else io.BytesIO()
    with DeterministicZip(out, **kwargs) as archive:
        for path, kind, payload in entries:
            if kind == "bytes":
                archive.write_bytes(path, payload)
            else:
                with archive.open_stream(path) as entry:
                    for chunk in payload:
                        entry.write(chunk)
    out.seek(0)
    return out.read()


MIXED = [
    ("executive-summary.html", "bytes", b"<html>summary</html>"),
    ("findings.csv", "stream", _chunks(DATA, 1000)),
    ("hardening.json", "bytes", b'{"hardening": {}}\n'),
    ("metadata.json", "bytes", b"{}\n"),
    ("reports/entra_admin_roles.json", "bytes", b""),
    ("summary.json", "stream", [b'{"a":', b" 1}\n"]),
]


def local_header(raw: bytes, info: zipfile.ZipInfo) -> dict:
    """Parse the local file header of one entry, including its extra fields by id."""
    fields = LOCAL_HEADER.unpack_from(raw, info.header_offset)
    sig, version, flags, method, mtime, mdate, crc, csize, usize, name_len, extra_len = fields
    assert sig == LOCAL_SIGNATURE
    start = info.header_offset + LOCAL_HEADER.size
    name = raw[start : start + name_len]
    extra = raw[start + name_len : start + name_len + extra_len]
    extras = {}
    pos = 0
    while pos < len(extra):
        header_id, size = struct.unpack_from("<HH", extra, pos)
        extras[header_id] = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
    data_start = start + name_len + extra_len
    return {
        "version": version,
        "flags": flags,
        "method": method,
        "mtime": mtime,
        "mdate": mdate,
        "compress_size": csize,
        "file_size": usize,
        "name": name,
        "extras": extras,
        "data_start": data_start,
    }


def raw_deflate(data: bytes, level: int) -> bytes:
    """zlib-ng's raw deflate stream, fed in the archive's fixed pieces."""
    compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15)
    pieces = [compressor.compress(data[i : i + DEFLATE_PIECE]) for i in range(0, len(data), DEFLATE_PIECE)]
    return b"".join(pieces) + compressor.flush()


def test_constants():
    assert FIXED_DATE_TIME == (1980, 1, 1, 0, 0, 0)
    assert FILE_MODE == 0o100644
    assert COMPRESS_LEVEL == 4
    # metadata.json states the deflate implementation, whose output depends on its version.
    assert DEFLATE == {"implementation": f"zlib-ng {zlib_ng.ZLIBNG_VERSION}", "level": COMPRESS_LEVEL}


class TestDeterminism:
    def test_two_builds_are_byte_identical(self):
        first, second = build(MIXED), build(MIXED)
        assert first == second
        assert len(first) > 1000

    def test_same_sequence_of_small_writes_gives_the_same_bytes(self):
        entries = [("a.csv", "stream", _chunks(DATA, 7))]
        assert build(entries) == build(entries)

    def test_temp_file_and_memory_give_the_same_bytes(self):
        with tempfile.TemporaryFile() as handle:
            on_disk = build(MIXED, fileobj=handle)
        assert on_disk == build(MIXED)

    def test_content_differences_change_the_bytes(self):
        changed = list(MIXED)
        changed[2] = ("hardening.json", "bytes", b'{"hardening": {"x": 1}}\n')
        assert build(changed) != build(MIXED)

    def test_chunking_does_not_change_the_content(self):
        one = build([("a.csv", "stream", [DATA])])
        small = build([("a.csv", "stream", _chunks(DATA, 7))])
        odd = build([("a.csv", "stream", _chunks(DATA, 4093))])
        for raw in (one, small, odd):
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                assert zf.read("a.csv") == DATA
        assert one == small == odd

    def test_chunking_does_not_change_the_bytes_of_entries_larger_than_a_deflate_piece(self):
        # zlib-ng's output depends on how its input is split; the entry hands it fixed pieces.
        rng = random.Random(5)
        data = b"".join(b"%d,%s\n" % (i, rng.choice([b"high", b"low", b"medium"])) for i in range(400_000))
        assert len(data) > 2 * DEFLATE_PIECE
        builds = {build([("a.csv", "stream", _chunks(data, size))]) for size in (4093, 65_537, DEFLATE_PIECE + 3, len(data))}
        assert len(builds) == 1
        with zipfile.ZipFile(io.BytesIO(builds.pop())) as zf:
            assert zf.read("a.csv") == data

    def test_write_bytes_and_a_stream_give_the_same_content_but_not_the_same_bytes(self):
        # A streamed entry always carries a ZIP64 extra field; a buffered one does not need it.
        buffered = build([("a.csv", "bytes", DATA)])
        streamed = build([("a.csv", "stream", [DATA])])
        assert buffered != streamed
        for raw in (buffered, streamed):
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                assert zf.read("a.csv") == DATA

    def test_empty_archive(self):
        raw = build([])
        assert raw == b"PK\x05\x06" + b"\x00" * 18
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            assert zf.namelist() == []


class TestOrdering:
    @pytest.mark.parametrize(
        "paths",
        [
            ["b.json", "a.json"],
            ["a.json", "a.json"],
            ["summary.json", "reports/x.json"],
            ["metadata.json", "findings.csv"],
            ["a/b.json", "a.json"],
            ["b", "B"],
        ],
        ids=lambda p: " then ".join(p),
    )
    @pytest.mark.parametrize("kind", ["bytes", "stream"])
    def test_out_of_order_or_duplicate_is_refused(self, paths, kind):
        first, second = paths
        with DeterministicZip(io.BytesIO()) as archive:
            archive.write_bytes(first, b"1")
            with pytest.raises(ValueError) as excinfo:
                if kind == "bytes":
                    archive.write_bytes(second, b"2")
                else:
                    archive.open_stream(second)
            assert str(excinfo.value) == f"entries must be added in name order: {second!r} after {first!r}"

    def test_order_is_checked_against_streamed_entries_too(self):
        with DeterministicZip(io.BytesIO()) as archive:
            with archive.open_stream("m.csv") as entry:
                entry.write(b"x")
            with pytest.raises(ValueError):
                archive.write_bytes("a.json", b"")

    def test_a_refused_entry_leaves_the_archive_usable(self):
        out = io.BytesIO()
        with DeterministicZip(out) as archive:
            archive.write_bytes("b", b"B")
            with pytest.raises(ValueError):
                archive.write_bytes("a", b"A")
            archive.write_bytes("c", b"C")
        with zipfile.ZipFile(out) as zf:
            assert zf.namelist() == ["b", "c"]
            assert [zf.read(n) for n in zf.namelist()] == [b"B", b"C"]
        assert [e.path for e in archive.entries] == ["b", "c"]

    @pytest.mark.parametrize("include_operations", [True, False])
    def test_the_pack_layout_is_in_archive_order(self, include_operations):
        files = layout.tenant_files(include_operations=include_operations)
        out = io.BytesIO()
        with DeterministicZip(out) as archive:
            for spec in files:
                archive.write_bytes(spec.path, spec.path.encode())
        with zipfile.ZipFile(out) as zf:
            assert zf.namelist() == [f.path for f in files]

    def test_review_layout_is_in_archive_order(self):
        out = io.BytesIO()
        with DeterministicZip(out) as archive:
            for spec in layout.review_files():
                archive.write_bytes(spec.path, b"x")
        with zipfile.ZipFile(out) as zf:
            assert zf.namelist() == [f.path for f in layout.review_files()]


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    return build(MIXED)


class TestEntryMetadata:
    def test_names_in_order(self, archive_bytes):
        with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
            assert zf.namelist() == [path for path, _, _ in MIXED]

    def test_every_entry_has_fixed_time_mode_and_system(self, archive_bytes):
        with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
            infos = zf.infolist()
        assert len(infos) == len(MIXED)
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            assert info.external_attr >> 16 == 0o100644, info.filename
            assert info.external_attr & 0xFFFF == 0, info.filename
            assert info.create_system == 3, info.filename
            assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
            assert info.comment == b"", info.filename

    def test_local_headers_carry_the_fixed_time_too(self, archive_bytes):
        with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
            infos = zf.infolist()
        for info in infos:
            header = local_header(archive_bytes, info)
            assert header["mtime"] == 0
            assert header["mdate"] == (0 << 9) | (1 << 5) | 1  # 1980-01-01 in DOS format
            assert header["method"] == zipfile.ZIP_DEFLATED
            assert header["name"] == info.filename.encode()

    def test_archive_has_no_comment(self, archive_bytes):
        with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
            assert zf.comment == b""

    def test_testzip_finds_no_corruption(self, archive_bytes):
        with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
            assert zf.testzip() is None

    def test_contents_read_back(self, archive_bytes):
        with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
            for path, kind, payload in MIXED:
                expected = payload if kind == "bytes" else b"".join(payload)
                assert zf.read(path) == expected


class TestCompression:
    @pytest.mark.parametrize("level", [1, 6, 9])
    @pytest.mark.parametrize("kind", ["bytes", "stream"])
    def test_the_stored_stream_is_raw_deflate_at_the_requested_level(self, level, kind):
        payload = DATA if kind == "bytes" else [DATA]
        raw = build([("a.csv", kind, payload)], compresslevel=level)
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            info = zf.getinfo("a.csv")
        header = local_header(raw, info)
        stored = raw[header["data_start"] : header["data_start"] + info.compress_size]
        assert stored == raw_deflate(DATA, level)

    def test_levels_one_and_nine_give_different_sizes(self):
        sizes = {}
        for level in (1, 9):
            raw = build([("a.csv", "bytes", DATA)], compresslevel=level)
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                sizes[level] = zf.getinfo("a.csv").compress_size
        assert sizes[9] < sizes[1] < len(DATA)

    def test_default_level_is_four(self):
        entries = [("a.csv", "bytes", DATA)]
        assert build(entries) == build(entries, compresslevel=4)
        assert build(entries) != build(entries, compresslevel=6)
        assert build(entries) != build(entries, compresslevel=1)
        assert build(entries) != build(entries, compresslevel=9)


class TestDigests:
    def test_write_bytes_returns_and_records_the_digest(self):
        with DeterministicZip(io.BytesIO()) as archive:
            digest = archive.write_bytes("a.json", DATA)
        assert digest == EntryDigest("a.json", hashlib.sha256(DATA).hexdigest(), len(DATA))
        assert archive.entries == [digest]

    def test_streamed_digest_covers_all_chunks(self):
        with DeterministicZip(io.BytesIO()) as archive:
            with archive.open_stream("a.csv") as entry:
                for chunk in _chunks(DATA, 333):
                    entry.write(chunk)
                assert entry.digest is None
                assert entry.size == entry.tell() == len(DATA)
        assert entry.digest == EntryDigest("a.csv", hashlib.sha256(DATA).hexdigest(), len(DATA))
        assert archive.entries == [entry.digest]

    def test_empty_entries(self):
        empty = hashlib.sha256(b"").hexdigest()
        with DeterministicZip(io.BytesIO()) as archive:
            archive.write_bytes("a", b"")
            with archive.open_stream("b"):
                pass
        assert archive.entries == [EntryDigest("a", empty, 0), EntryDigest("b", empty, 0)]

    def test_entries_in_write_order_match_the_archive(self):
        out = io.BytesIO()
        with DeterministicZip(out) as archive:
            for path, kind, payload in MIXED:
                if kind == "bytes":
                    archive.write_bytes(path, payload)
                else:
                    with archive.open_stream(path) as entry:
                        for chunk in payload:
                            entry.write(chunk)
        with zipfile.ZipFile(out) as zf:
            assert [e.path for e in archive.entries] == zf.namelist()
            for digest in archive.entries:
                content = zf.read(digest.path)
                assert digest.sha256 == hashlib.sha256(content).hexdigest()
                assert digest.size == len(content) == zf.getinfo(digest.path).file_size


class TestZip64:
    def test_streamed_entries_carry_a_zip64_extra_in_their_local_header(self):
        raw = build([("a.csv", "stream", [DATA]), ("b.json", "bytes", b"{}")])
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            streamed, buffered = zf.getinfo("a.csv"), zf.getinfo("b.json")
            assert zf.read("a.csv") == DATA
        header = local_header(raw, streamed)
        assert ZIP64_EXTRA_ID in header["extras"]
        file_size, compress_size = struct.unpack("<QQ", header["extras"][ZIP64_EXTRA_ID])
        assert (file_size, compress_size) == (len(DATA), streamed.compress_size)
        assert header["file_size"] == header["compress_size"] == 0xFFFFFFFF
        assert header["version"] >= 45
        # A buffered entry of known small size needs no ZIP64 fields.
        assert ZIP64_EXTRA_ID not in local_header(raw, buffered)["extras"]

    def test_streamed_entry_readable_with_zipfile(self):
        raw = build([("a.csv", "stream", _chunks(DATA, 100))])
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            info = zf.getinfo("a.csv")
            assert info.file_size == len(DATA)
            with zf.open(info) as handle:
                assert handle.read() == DATA
            assert zf.testzip() is None

    def test_large_streamed_entry_round_trips(self, tmp_path):
        chunk_size = 1 << 20
        chunk_count = 50
        line = b"2026-11-20T08:00:00Z,finding,high,new,user,7a1c2f0e-3b4d-4c5e-8f90-123456789abc\r\n"
        chunk = (line * (chunk_size // len(line) + 1))[:chunk_size]
        expected = hashlib.sha256()
        target = tmp_path / "large.zip"
        with open(target, "wb") as out, DeterministicZip(out) as archive:
            with archive.open_stream("findings.csv") as entry:
                for _ in range(chunk_count):
                    entry.write(chunk)
                    expected.update(chunk)
        total = chunk_size * chunk_count
        assert entry.digest == EntryDigest("findings.csv", expected.hexdigest(), total)
        assert target.stat().st_size < total // 10

        actual = hashlib.sha256()
        read = 0
        with zipfile.ZipFile(target) as zf:
            info = zf.getinfo("findings.csv")
            assert info.file_size == total
            with zf.open(info) as handle:
                while block := handle.read(chunk_size):
                    actual.update(block)
                    read += len(block)
        assert read == total
        assert actual.hexdigest() == expected.hexdigest()


class TestStreamedEntry:
    def test_is_a_writable_raw_io(self):
        with DeterministicZip(io.BytesIO()) as archive:
            with archive.open_stream("a") as entry:
                assert isinstance(entry, StreamedEntry)
                assert isinstance(entry, io.RawIOBase)
                assert entry.writable() is True
                assert entry.readable() is False
                assert entry.path == "a"

    def test_write_accepts_any_bytes_like_object_and_counts_bytes(self):
        numbers = array.array("i", [1, 2, 3])
        expected = b"ab" + b"cd" + b"ef" + numbers.tobytes()
        out = io.BytesIO()
        with DeterministicZip(out) as archive:
            with archive.open_stream("a") as entry:
                assert entry.write(b"ab") == 2
                assert entry.write(bytearray(b"cd")) == 2
                assert entry.write(memoryview(b"xefx")[1:3]) == 2
                assert entry.write(numbers) == numbers.itemsize * 3
        assert entry.digest == EntryDigest("a", hashlib.sha256(expected).hexdigest(), len(expected))
        with zipfile.ZipFile(out) as zf:
            assert zf.read("a") == expected

    def test_closing_twice_records_one_digest(self):
        with DeterministicZip(io.BytesIO()) as archive:
            entry = archive.open_stream("a")
            entry.write(b"x")
            entry.close()
            first = entry.digest
            entry.close()
        assert entry.digest is first
        assert archive.entries == [first]

    def test_write_after_close_fails(self):
        with DeterministicZip(io.BytesIO()) as archive:
            with archive.open_stream("a") as entry:
                entry.write(b"x")
            with pytest.raises(ValueError):
                entry.write(b"y")
        assert archive.entries == [EntryDigest("a", hashlib.sha256(b"x").hexdigest(), 1)]

    def test_csv_through_a_text_wrapper(self):
        rows = [["id", "title"], ["1", "=x"], ["2", "Überprüfung, mit Komma"], ["3", 'quote "q"']]
        out = io.BytesIO()
        with DeterministicZip(out) as archive:
            with archive.open_stream("findings.csv") as entry:
                text = io.TextIOWrapper(entry, encoding="utf-8", newline="", write_through=True)
                csv.writer(text, lineterminator="\r\n").writerows(rows)
                text.flush()
                text.detach()
        with zipfile.ZipFile(out) as zf:
            content = zf.read("findings.csv")
        assert list(csv.reader(io.StringIO(content.decode("utf-8"), newline=""))) == rows
        assert entry.digest == EntryDigest("findings.csv", hashlib.sha256(content).hexdigest(), len(content))

    def test_closing_the_text_wrapper_closes_the_entry(self):
        with DeterministicZip(io.BytesIO()) as archive:
            entry = archive.open_stream("a.txt")
            with io.TextIOWrapper(entry, encoding="utf-8") as text:
                text.write("héllo")
        assert entry.closed
        assert archive.entries == [EntryDigest("a.txt", hashlib.sha256("héllo".encode()).hexdigest(), 6)]

