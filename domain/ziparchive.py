"""A ZIP writer whose bytes depend only on the entries written into it.

Every entry gets the same timestamp, permissions and creator system, entries
must come in name order, and streamed entries always carry ZIP64 sizes, so two
builds of the same content are byte-identical and there is no size limit.

Entries are deflated by zlib-ng, which writes the standard deflate format that
every unzip reads, about twice as fast as zlib at the same level and a little
smaller. Its output depends on its version, so the version is pinned
(constraints.txt) and stated in metadata.json (:data:`DEFLATE`).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import IO, BinaryIO

from zlib_ng import zlib_ng

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP header can hold
FILE_MODE = 0o100644  # regular file, rw-r--r--
# zlib-ng's level 4: on a million findings rows, a quarter less deflate time than level 6 for
# 0.8 % more bytes (bench/results.md), still within 10 % of `gzip -6` over the same rows.
COMPRESS_LEVEL = 4
DEFLATE_PIECE = 1 << 20
DEFLATE = {"implementation": f"zlib-ng {zlib_ng.ZLIBNG_VERSION}", "level": COMPRESS_LEVEL}


@dataclass(frozen=True)
class EntryDigest:
    path: str
    sha256: str
    size: int  # uncompressed bytes


class DeterministicZip:
    def __init__(self, fileobj: BinaryIO, *, compresslevel: int = COMPRESS_LEVEL):
        self._zip = zipfile.ZipFile(fileobj, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self._level = compresslevel
        self._last: str | None = None
        self.entries: list[EntryDigest] = []

    def _info(self, path: str) -> zipfile.ZipInfo:
        if self._last is not None and path <= self._last:
            raise ValueError(f"entries must be added in name order: {path!r} after {self._last!r}")
        self._last = path
        info = zipfile.ZipInfo(path, date_time=FIXED_DATE_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        # ZipFile.open(ZipInfo, "w") ignores the archive's compresslevel; the ZipInfo must carry it.
        # Python 3.13 renamed the slot to compress_level and kept _compresslevel as its alias.
        info._compresslevel = self._level  # type: ignore[attr-defined]
        info.create_system = 3
        info.external_attr = FILE_MODE << 16
        return info

    def _open(self, info: zipfile.ZipInfo, *, force_zip64: bool = False) -> IO[bytes]:
        raw = self._zip.open(info, mode="w", force_zip64=force_zip64)
        # zipfile deflates with the standard library's zlib; the entry's compressor is swapped
        # before the first byte (tests/domain/test_ziparchive.py checks the bytes are zlib-ng's).
        if not hasattr(raw, "_compressor"):
            raise RuntimeError("this Python's zipfile has no replaceable compressor")
        raw._compressor = zlib_ng.compressobj(self._level, zlib_ng.DEFLATED, -15)
        return raw

    def write_bytes(self, path: str, data: bytes) -> EntryDigest:
        info = self._info(path)
        with self._open(info) as entry:
            entry.write(data)
        digest = EntryDigest(path, hashlib.sha256(data).hexdigest(), len(data))
        self.entries.append(digest)
        return digest

    def open_stream(self, path: str) -> "StreamedEntry":
        """Open an entry of unknown size for streaming writes; close it to record its digest."""
        info = self._info(path)
        return StreamedEntry(self, path, self._open(info, force_zip64=True))

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> "DeterministicZip":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamedEntry(io.RawIOBase):
    """A writable entry that hashes and counts what passes through (usable under TextIOWrapper)."""

    def __init__(self, archive: DeterministicZip, path: str, raw: IO[bytes]):
        super().__init__()
        self._archive = archive
        self._raw = raw
        self._hash = hashlib.sha256()
        self.path = path
        self.size = 0
        self.digest: EntryDigest | None = None
        self._pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.digest is not None:
            raise ValueError("write to a closed entry")
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self.size += len(view)
        # zlib-ng's output depends on how the input is split between calls: the compressor gets
        # fixed-size pieces, so the archive depends on the content alone, not on the writes.
        self._pending += view
        if len(self._pending) >= DEFLATE_PIECE:
            whole = len(self._pending) - len(self._pending) % DEFLATE_PIECE
            pieces = memoryview(self._pending)
            for start in range(0, whole, DEFLATE_PIECE):
                self._raw.write(pieces[start : start + DEFLATE_PIECE])
            pieces.release()
            del self._pending[:whole]
        return len(view)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if self.digest is None:
            if self._pending:
                self._raw.write(self._pending)
                self._pending.clear()
            self._raw.close()
            self.digest = EntryDigest(self.path, self._hash.hexdigest(), self.size)
            self._archive.entries.append(self.digest)
        super().close()
