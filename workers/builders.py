"""Pack builders: one per kind of pack, each turning read-only sources into ordered entries.

A builder reads everything it needs through :class:`Sources` (one consistent snapshot)
and returns a :class:`Plan`: the content of every file the layout lists, as finished
bytes or as a writer that streams the entry into the archive, plus the function that
writes metadata.json from the digests of the others. :func:`write_archive` checks the
plan against the layout before it writes a byte and then writes the entries in archive
order; :func:`build_file` does all of that inside one snapshot into a scratch file.
Adding a file to a pack is a :class:`~domain.layout.FileSpec` in domain/layout.py
(what the file is) and one ``Entry`` in its kind's builder here (what it holds).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, Engine

from domain import documents, fingerprint, layout, redaction
from domain.csvwrite import COPY_LINE_END, csv_line, spool_csv, write_csv
from domain.executive_summary import render_review_summary, render_tenant_summary
from domain.options import options_from_dict
from domain.ziparchive import DEFLATE_PIECE, DeterministicZip, EntryDigest, StreamedEntry
from reviewpacks import __version__
from storage import export, queries, scratch
from storage.packs import Claim

Progress = Callable[[int, int], None]


class SourceMissing(Exception):
    """The tenant or review behind the pack no longer exists."""


class LayoutMismatch(Exception):
    """A builder's entries do not match the files its layout lists; nothing was written."""


@dataclass(frozen=True)
class Entry:
    """One file of the pack: finished ``data``, or ``write``, which streams it into the archive."""

    path: str
    data: bytes | None = None
    write: Callable[[BinaryIO], None] | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.write is None):
            raise ValueError(f"entry {self.path} needs exactly one of data or write")


@dataclass
class Tally:
    """Rows written to the pack's main table, known once its streamed entry has been written."""

    rows: int = 0


@dataclass(frozen=True)
class Plan:
    files: list[layout.FileSpec]
    entries: dict[str, Entry]
    metadata: Callable[[Mapping[str, EntryDigest]], bytes]
    summary: dict
    fingerprint: str
    tally: Tally = field(default_factory=Tally)


@dataclass(frozen=True)
class Sources:
    """Read-only access to what one pack is built from: the claim's pack and one snapshot."""

    conn: Connection
    claim: Claim
    chunk_size: int
    findings_reader: str  # "auto" | "copy" | "portable"
    progress: Progress
    # The generation date and the staleness threshold every source's age is judged by.
    basis: fingerprint.FreshnessBasis
    # What the pack says about itself: its id, generation time and generator.
    provenance: documents.Provenance

    def tenant(self) -> dict:
        tenant = queries.tenant_row(self.conn, self.claim.tenant_id)
        if tenant is None:
            raise SourceMissing("the tenant of this pack no longer exists")
        return tenant

    def review(self) -> dict:
        review = queries.review_row(self.conn, self.claim.tenant_review_id) if self.claim.tenant_review_id is not None else None
        if review is None:
            raise SourceMissing("the review of this pack no longer exists")
        if review["status"] != "published":
            # Unpublished between the request and now: a pack must only ever show a published review.
            raise SourceMissing("the review of this pack is no longer published")
        return review

    @property
    def evaluated_on(self) -> dt.date:
        return dt.date.fromisoformat(self.basis.evaluated_on)

    @property
    def use_copy(self) -> bool:
        # PostgreSQL streams the CSV itself (COPY); other databases go through the portable chunked reader.
        return self.findings_reader == "copy" or (
            self.findings_reader == "auto" and self.conn.dialect.name == "postgresql"
        )


def _file_list(files) -> list[dict]:
    return [
        {"path": f.path, "role": f.role.value, "description": f.description}
        for f in files
        if f.path != layout.ENTRYPOINT
    ]


def build_tenant(src: Sources) -> Plan:
    claim = src.claim
    options = options_from_dict(claim.options)
    tenant = src.tenant()
    since = dt.date.fromisoformat(claim.options["operations_since"]) if options.include_operations else None
    pii = options.include_pii

    sources = queries.tenant_sources(src.conn, tenant, options, since, src.basis)
    fp = fingerprint.compute(sources.inputs)
    reports = sources.reports
    freshness = documents.freshness_entries(
        sources.freshness, evaluated_on=src.evaluated_on, stale_after_days=src.basis.stale_after_days
    )
    by_severity, by_status = sources.by_severity, sources.by_status
    hardening = documents.hardening_document(tenant["hardening"], include_pii=pii)
    files = layout.tenant_files(include_operations=options.include_operations)
    tally = Tally()

    entries = [Entry(layout.HARDENING, documents.json_bytes(hardening))]
    for report_type, path in layout.REPORTS.items():
        entries.append(
            Entry(path, documents.json_bytes(documents.report_document(report_type, reports[report_type], include_pii=pii)))
        )
    operations_count = None
    if options.include_operations:
        # A 30-day window of runs is small next to the findings; it sorts after metadata.json, so
        # it is finished bytes, whose digest is known before metadata.json is written.
        operations, operations_count = spool_csv(
            layout.OPERATIONS_COLUMNS,
            queries.stream_operations(src.conn, tenant["id"], since, src.chunk_size),
            lambda r: documents.operation_row(r, include_pii=pii),
        )
        entries.append(Entry(layout.OPERATIONS, operations))
    summary = documents.summary_document(
        by_severity=by_severity, by_status=by_status, operations=operations_count, freshness=freshness
    )
    entries.append(Entry(layout.SUMMARY, documents.json_bytes(summary)))
    identity = {"name": tenant["name"], "external_id": str(tenant["external_id"])}
    findings_counts = summary["counts"]["findings"]
    entries.append(
        Entry(
            layout.ENTRYPOINT,
            render_tenant_summary(
                {
                    "tenant": identity,
                    "pack": {"id": src.provenance.pack_id, "generated_at": src.provenance.generated_at},
                    "stale_after_days": src.basis.stale_after_days,
                    "data_as_of": summary["data_as_of"],
                    "options": options.as_dict(),
                    "counts": {
                        "total": findings_counts["total"],
                        "by_severity": {s: findings_counts["by_severity"][s] for s in layout.SEVERITIES},
                        "by_status": findings_counts["by_status"],
                        "operations": operations_count,
                    },
                    "data_freshness": summary["data_freshness"],
                    "hardening": hardening["hardening"],
                    "reports": {queries.report_key(t): r is not None for t, r in reports.items()},
                    "files": _file_list(files),
                    "fingerprint": fp,
                    "disclosure": layout.DISCLOSURE,
                }
            ).encode("utf-8"),
        )
    )

    # Replacements per category, read off the data files (the page repeats some of them).
    replaced = redaction.PlaceholderTally(export.find_placeholders)
    replaced.add(redaction.count_placeholders(e.data for e in entries if e.data is not None and e.path != layout.ENTRYPOINT))

    def counted(cells: list[str]) -> list[str]:
        replaced.add(redaction.count_placeholders(cells))
        return cells

    def write_findings(entry) -> None:
        tally.rows = write_csv(
            entry,
            layout.FINDINGS_COLUMNS,
            queries.stream_findings(src.conn, tenant["id"], src.chunk_size),
            lambda r: counted(documents.finding_row(r, include_pii=pii)),
            on_chunk=src.progress,
        )

    def copy_findings(entry) -> None:
        entry.write(csv_line(layout.FINDINGS_COLUMNS, COPY_LINE_END))
        rows = 0
        for block in export.copy_findings(src.conn, tenant["id"], include_pii=pii):
            entry.write(block.data)
            replaced.feed(block.data)
            rows += block.rows
            src.progress(rows, entry.size)
        # The counts come from the same snapshot as the COPY, so they are the rows written.
        tally.rows = findings_counts["total"]

    entries.append(Entry(layout.FINDINGS, write=copy_findings if src.use_copy else write_findings))

    def metadata(digests: Mapping[str, EntryDigest]) -> bytes:
        return documents.json_bytes(
            documents.metadata_document(
                kind=layout.PackKind.TENANT,
                identity={"tenant": identity},
                fingerprint=fp,
                options=options.as_dict(),
                freshness=freshness,
                files=documents.file_entries(files, digests),
                provenance=src.provenance,
                redaction_block=redaction.metadata_block(pii, replaced.counts),
            )
        )

    return Plan(
        files=files,
        entries={e.path: e for e in entries},
        metadata=metadata,
        summary=summary,
        fingerprint=fp,
        tally=tally,
    )


def build_review(src: Sources) -> Plan:
    claim = src.claim
    options = options_from_dict(claim.options)
    review = src.review()
    tenant = src.tenant()
    fp = fingerprint.compute(queries.review_pack_inputs(src.conn, review, tenant, options, src.basis))
    content = documents.review_content(review, include_pii=options.include_pii)
    files = layout.review_files()
    identity = {"name": tenant["name"], "external_id": str(tenant["external_id"])}
    published_at = layout.iso(review["published_at"])
    stale_after_days = src.basis.stale_after_days
    freshness = documents.freshness_entries(
        {"review": published_at}, evaluated_on=src.evaluated_on, stale_after_days=stale_after_days
    )
    evidence = documents.evidence_freshness(
        content["evidence_basis"], evaluated_on=src.evaluated_on, stale_after_days=stale_after_days
    )
    summary = documents.review_summary_document(review, content, evidence=evidence, freshness=freshness)
    interpretation_version = content["raw_summary"].get("interpretation_version")
    entries = [
        Entry(layout.SECTIONS, documents.json_bytes({"sections": content["raw_sections"]})),
        Entry(layout.SUMMARY, documents.json_bytes(summary)),
        Entry(
            layout.ENTRYPOINT,
            render_review_summary(
                {
                    "tenant": identity,
                    "pack": {"id": src.provenance.pack_id, "generated_at": src.provenance.generated_at},
                    "stale_after_days": stale_after_days,
                    "interpretation_version": None if interpretation_version is None else str(interpretation_version),
                    "review": {"id": review["id"], "published_at": published_at},
                    "headline": content["headline"],
                    "overall_status": content["overall_status"],
                    "key_findings": content["key_findings"],
                    "accepted_risks": content["accepted_risks"],
                    "decisions": content["decisions"],
                    "sections": content["sections"],
                    "evidence_basis": evidence,
                    "files": _file_list(files),
                    "disclosure": layout.DISCLOSURE,
                    "options": options.as_dict(),
                }
            ).encode("utf-8"),
        ),
    ]
    replacements = redaction.count_placeholders(e.data for e in entries if e.path in (layout.SECTIONS, layout.SUMMARY))

    def metadata(digests: Mapping[str, EntryDigest]) -> bytes:
        return documents.json_bytes(
            documents.metadata_document(
                kind=layout.PackKind.REVIEW,
                identity={
                    "tenant": identity,
                    "review": {
                        "id": review["id"],
                        "published_at": published_at,
                        "interpretation_version": interpretation_version,
                        "evidence_basis": evidence,
                    },
                },
                fingerprint=fp,
                options=options.as_dict(),
                freshness=freshness,
                files=documents.file_entries(files, digests),
                provenance=src.provenance,
                redaction_block=redaction.metadata_block(options.include_pii, replacements),
            )
        )

    return Plan(files=files, entries={e.path: e for e in entries}, metadata=metadata, summary=summary, fingerprint=fp)


def builder_for(claim: Claim) -> Callable[[Sources], Plan]:
    # The kind is stored on the pack: a review pack whose review was deleted stays a review pack.
    return build_review if claim.kind == layout.PackKind.REVIEW else build_tenant


def ordered(plan: Plan) -> Iterator[Entry | None]:
    """The plan's entries in archive order; None stands for metadata.json.

    Raises :class:`LayoutMismatch` before anything is written when the entries are not exactly
    the layout's files, or when a streamed entry sorts after metadata.json: metadata.json lists
    the digest of every other file, and a streamed entry's digest is known only once written.
    """
    expected = {spec.path for spec in plan.files} - {layout.METADATA}
    if set(plan.entries) != expected:
        missing, extra = sorted(expected - set(plan.entries)), sorted(set(plan.entries) - expected)
        raise LayoutMismatch(f"entries do not match the layout: missing {missing}, unexpected {extra}")
    late = sorted(p for p, e in plan.entries.items() if e.write is not None and p > layout.METADATA)
    if late:
        raise LayoutMismatch(f"streamed entries must sort before {layout.METADATA}: {late}")
    return iter([None if spec.path == layout.METADATA else plan.entries[spec.path] for spec in plan.files])


class DeflateBehind(io.RawIOBase):
    """A streamed entry that a thread of its own hashes, deflates and writes out.

    The builder's thread reads and checks the next rows meanwhile: hashing, deflating and
    writing release the interpreter, so on two cores they overlap with it. Small writes are
    gathered into pieces of at least :data:`DEFLATE_PIECE` (a large ``bytes`` block is handed over
    as it is) and go over in order, at most two in flight, so the entry's bytes are those of
    writing it directly. An error of the thread is raised by the next write or by close; close
    waits until every piece is written.
    """

    _IN_FLIGHT = 2
    # The thread takes the interpreter back after every piece it hashes, deflates or writes; at the
    # default interval of 5 ms it waited that long each time, the queue filled and the builder
    # waited in turn. While any entry is written behind, the interpreter changes hands every
    # 0.5 ms (bench/results.md).
    _SWITCH_INTERVAL = 0.0005
    _switching = threading.Lock()
    _writing = 0
    _interval_before = 0.0

    def __init__(self, stream: StreamedEntry):
        super().__init__()
        self.size = 0
        self._pending = bytearray()
        self._pieces: queue.Queue[bytes | None] = queue.Queue(self._IN_FLIGHT)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_pieces, args=(stream,), name="reviewpacks-deflate", daemon=True)
        self._quicker_switches()
        try:
            self._thread.start()
        except BaseException:
            self._usual_switches()
            raise

    def _write_pieces(self, stream: StreamedEntry) -> None:
        while (piece := self._pieces.get()) is not None:
            if self._error is None:
                try:
                    stream.write(piece)
                except BaseException as error:  # noqa: BLE001 - raised again on the builder's thread
                    self._error = error
            # After an error the pieces are taken and dropped, so that a put never waits forever.

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._error is not None:
            raise self._error
        if self.closed:
            raise ValueError("write to a closed entry")
        view = memoryview(data).cast("B")
        self.size += len(view)
        if isinstance(data, bytes) and len(data) >= DEFLATE_PIECE:
            # A large block that cannot change is handed over as it is, after what came before it.
            if self._pending:
                self._pieces.put(bytes(self._pending))
                self._pending.clear()
            self._pieces.put(data)
            return len(view)
        self._pending += view
        if len(self._pending) >= DEFLATE_PIECE:
            self._pieces.put(bytes(self._pending))
            self._pending.clear()
        return len(view)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._pending and self._error is None:
                self._pieces.put(bytes(self._pending))
                self._pending.clear()
        finally:
            self._pieces.put(None)
            self._thread.join()
            super().close()
            self._usual_switches()
        if self._error is not None:
            raise self._error

    @classmethod
    def _quicker_switches(cls) -> None:
        with cls._switching:
            if cls._writing == 0:
                cls._interval_before = sys.getswitchinterval()
                sys.setswitchinterval(min(cls._interval_before, cls._SWITCH_INTERVAL))
            cls._writing += 1

    @classmethod
    def _usual_switches(cls) -> None:
        with cls._switching:
            cls._writing -= 1
            if cls._writing == 0:
                sys.setswitchinterval(cls._interval_before)


def write_archive(out: BinaryIO, plan: Plan) -> None:
    """Write every file of the plan into a deterministic ZIP, metadata.json from the others' digests."""
    entries = list(ordered(plan))
    known = {
        e.path: EntryDigest(e.path, hashlib.sha256(e.data).hexdigest(), len(e.data))
        for e in entries
        if e is not None and e.data is not None
    }
    with DeterministicZip(out) as archive:
        for entry in entries:
            if entry is None:
                archive.write_bytes(layout.METADATA, plan.metadata(known))
            elif entry.write is not None:
                with archive.open_stream(entry.path) as stream:
                    with DeflateBehind(stream) as behind:
                        entry.write(behind)
                known[entry.path] = stream.digest
            else:
                archive.write_bytes(entry.path, entry.data)


@dataclass(frozen=True)
class BuiltPack:
    path: Path
    sha256: str
    size: int
    rows: int
    summary: dict
    fingerprint: str
    generated_at: dt.datetime


def generator() -> str:
    """The project and version that wrote a pack, as metadata.json names it."""
    return f"reviewpacks {__version__}"


def build_file(
    claim: Claim, *, engine: Engine, chunk_size: int, findings_reader: str, stale_after_days: int, progress: Progress
) -> BuiltPack:
    """Build the claim's pack from one snapshot into a scratch file; the caller owns (and removes) it."""
    # One clock reading: the pack states it as its generation time and judges every source's age by its date.
    generated_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    basis = fingerprint.FreshnessBasis(generated_at.date().isoformat(), stale_after_days)
    provenance = documents.Provenance(claim.pack_id, layout.iso(generated_at), generator())
    fd, path = scratch.new_file(claim.pack_id)
    try:
        with os.fdopen(fd, "w+b") as out:
            with queries.snapshot(engine) as conn:
                sources = Sources(
                    conn=conn,
                    claim=claim,
                    chunk_size=chunk_size,
                    findings_reader=findings_reader,
                    progress=progress,
                    basis=basis,
                    provenance=provenance,
                )
                plan = builder_for(claim)(sources)
                write_archive(out, plan)
            # No fsync: the file only feeds the upload; after a crash the next attempt rebuilds it.
            out.flush()
            size = out.tell()
            out.seek(0)
            sha = hashlib.file_digest(out, "sha256").hexdigest()
        return BuiltPack(
            path=path,
            sha256=sha,
            size=size,
            rows=plan.tally.rows,
            summary=plan.summary,
            fingerprint=plan.fingerprint,
            generated_at=generated_at,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
