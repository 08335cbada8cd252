"""Generation: claim the run, read a consistent snapshot, write the ZIP, upload, finish.

The pipeline knows nothing of Celery. The task tells it whether a transient
fault may be retried; the pipeline either hands the attempt back (and raises
:class:`Transient`) or records the failure with a reason code.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from domain import documents, fingerprint, layout, redaction
from domain.executive_summary import render_review_summary, render_tenant_summary
from domain.options import options_from_dict
from domain.reasons import ReasonCode
from domain.ziparchive import DeterministicZip, EntryDigest
from settings import Settings
from storage import export, packs, queries
from storage.artifacts import ArtifactStore, ArtifactStoreError, StorageUnavailable
from storage.db import DatabaseUnavailable, engine_for, session_factory
from workers.logs import event

log = logging.getLogger("reviewpacks.pipeline")

Progress = Callable[[dict], None]


class Transient(Exception):
    """A fault worth retrying; the attempt has been handed back to the queue."""

    def __init__(self, reason: ReasonCode, message: str):
        super().__init__(message)
        self.reason = reason


class LostClaim(Exception):
    """Another attempt took the run over (this worker's heartbeat went stale)."""


@dataclass(frozen=True)
class Result:
    pack_id: int
    state: str  # "ready" | "failed" | "skipped" | "busy"
    reason: ReasonCode | None = None
    rows: int = 0
    size: int = 0


@dataclass(frozen=True)
class BuiltPack:
    path: Path
    sha256: str
    size: int
    rows: int
    summary: dict
    fingerprint: str


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def generate(
    pack_id: int,
    *,
    settings: Settings,
    store: ArtifactStore,
    can_retry: bool,
    on_progress: Progress | None = None,
    fatal_errors: tuple[type[BaseException], ...] = (),
) -> Result:
    """Generate one pack. ``fatal_errors`` are failed at once with reason ``timeout``."""
    Session = session_factory(settings.database_url)
    lease = dt.timedelta(seconds=settings.heartbeat_seconds * 3)
    started = time.monotonic()
    with Session() as session:
        state, claim = packs.claim(session, pack_id, now=utcnow(), lease=lease)
    if claim is None:
        event(log, "pack.not_claimed", pack_id=pack_id, claim=state.value)
        return Result(pack_id, "busy" if state is packs.ClaimState.BUSY else "skipped")
    _claim_event("pack.generating", claim)
    _remove_leftovers(pack_id)

    built: BuiltPack | None = None
    try:
        reporter = _Reporter(claim, settings, on_progress)
        built = build(claim, settings=settings, reporter=reporter)
        built_at = time.monotonic()
        store.put_file(claim.file_key, built.path, sha256=built.sha256, size=built.size)
        uploaded_at = time.monotonic()
        with Session() as session:
            finished = packs.mark_ready(
                session,
                claim,
                now=utcnow(),
                retention=dt.timedelta(days=settings.retention_days),
                sha256=built.sha256,
                size=built.size,
                disk=store.name,
                summary=built.summary,
                rows=built.rows,
            )
        if not finished:
            raise LostClaim(f"pack {pack_id} attempt {claim.attempt} lost its claim before finishing")
        _claim_event(
            "pack.ready",
            claim,
            rows=built.rows,
            bytes=built.size,
            duration_s=round(time.monotonic() - started, 3),
            build_s=round(built_at - started, 3),
            upload_s=round(uploaded_at - built_at, 3),
        )
        return Result(pack_id, "ready", rows=built.rows, size=built.size)
    except LostClaim:
        # The newer attempt owns the run and the object key; leave both to it.
        _claim_event("pack.claim_lost", claim, level=logging.WARNING)
        return Result(pack_id, "skipped")
    except StorageUnavailable as exc:
        return _transient_or_fail(claim, ReasonCode.STORAGE_UNAVAILABLE, exc, settings, can_retry)
    except DatabaseUnavailable as exc:
        return _transient_or_fail(claim, ReasonCode.DATABASE_UNAVAILABLE, exc, settings, can_retry)
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, IntegrityError):
            return _fail(claim, ReasonCode.INTERNAL_ERROR, exc, settings)
        return _transient_or_fail(claim, ReasonCode.DATABASE_UNAVAILABLE, exc, settings, can_retry)
    except ArtifactStoreError as exc:
        return _fail(claim, ReasonCode.STORAGE_ERROR, exc, settings)
    except documents.InvalidSourceData as exc:
        return _fail(claim, ReasonCode.INVALID_SOURCE_DATA, exc, settings)
    except RecursionError as exc:
        # JSON nested too deep for Python to decode is the source's fault, not an outage.
        return _fail(claim, ReasonCode.INVALID_SOURCE_DATA, exc, settings)
    except SourceMissing as exc:
        return _fail(claim, ReasonCode.SOURCE_MISSING, exc, settings)
    except fatal_errors as exc:
        return _fail(claim, ReasonCode.TIMEOUT, exc, settings)
    except Exception as exc:
        log.exception("pack.crashed pack_id=%s run_id=%s", pack_id, claim.run_id)
        return _fail(claim, ReasonCode.INTERNAL_ERROR, exc, settings)
    finally:
        if built is not None:
            built.path.unlink(missing_ok=True)


class SourceMissing(Exception):
    pass


TEMP_PREFIX = "review-pack-"


def _remove_leftovers(pack_id: int) -> None:
    """Delete temp files an earlier attempt of this pack left behind when its worker was killed.

    Only reached after a successful claim, so the attempt that wrote them no longer owns the run.
    """
    for leftover in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}{pack_id}-*"):
        leftover.unlink(missing_ok=True)
        event(log, "pack.leftover_removed", pack_id=pack_id, file=leftover.name)


def _claim_event(name: str, claim: packs.Claim, *, level: int = logging.INFO, **fields: object) -> None:
    """One log line about an attempt, identified the same way every time."""
    event(
        log,
        name,
        level=level,
        pack_id=claim.pack_id,
        run_id=claim.run_id,
        tenant_id=claim.tenant_id,
        attempt=claim.attempt,
        **fields,
    )


def _transient_or_fail(claim, reason: ReasonCode, exc: Exception, settings: Settings, can_retry: bool) -> Result:
    if not can_retry:
        return _fail(claim, reason, exc, settings)
    with session_factory(settings.database_url)() as session:
        released = packs.release(session, claim, now=utcnow())
    _claim_event("pack.retrying", claim, level=logging.WARNING, reason_code=reason.value, error=type(exc).__name__)
    if not released:
        return Result(claim.pack_id, "skipped")
    raise Transient(reason, str(exc)) from exc


def _fail(claim, reason: ReasonCode, exc: BaseException, settings: Settings) -> Result:
    # Only the exception's type goes into the run context: messages can carry URLs or hostnames.
    with session_factory(settings.database_url)() as session:
        packs.mark_failed(session, claim.pack_id, reason, now=utcnow(), attempt=claim.attempt, detail=type(exc).__name__)
    _claim_event("pack.failed", claim, level=logging.ERROR, reason_code=reason.value, error=type(exc).__name__)
    return Result(claim.pack_id, "failed", reason=reason)


class _Reporter:
    """Throttled progress: extends the claim's heartbeat and tells Flower and the client."""

    def __init__(self, claim: packs.Claim, settings: Settings, on_progress: Progress | None):
        self._claim = claim
        self._settings = settings
        self._on_progress = on_progress
        self.interval_s = min(settings.progress_interval_seconds, settings.heartbeat_seconds)
        # The claim has just written the heartbeat; small packs finish before they need another.
        self._next = time.monotonic() + self.interval_s

    def __call__(self, rows: int, nbytes: int) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        with session_factory(self._settings.database_url)() as session:
            owned = packs.heartbeat(session, self._claim, now=utcnow(), rows=rows, nbytes=nbytes)
        if not owned:
            raise LostClaim(f"pack {self._claim.pack_id} attempt {self._claim.attempt} is no longer the owner")
        self._tell(rows, nbytes)

    def done(self, rows: int, nbytes: int) -> None:
        """The last figures; the database gets them with the ready state itself."""
        self._tell(rows, nbytes)

    def _tell(self, rows: int, nbytes: int) -> None:
        if self._on_progress is not None:
            self._on_progress({"pack_id": self._claim.pack_id, "rows": rows, "bytes": nbytes})


@contextmanager
def snapshot(engine: Engine):
    """One read transaction that sees a single consistent state of every source."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn:
        with conn.begin():
            yield conn


def build(claim: packs.Claim, *, settings: Settings, reporter: _Reporter) -> BuiltPack:
    """Write the pack into a temp file; the caller owns (and removes) the file."""
    engine = engine_for(settings.database_url)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{claim.pack_id}-", suffix=".zip")
    path = Path(name)
    try:
        with os.fdopen(fd, "w+b") as out:
            with snapshot(engine) as conn:
                if claim.tenant_review_id is not None:
                    summary, fp, rows = _write_review_pack(conn, claim, out)
                else:
                    summary, fp, rows = _write_tenant_pack(conn, claim, out, settings, reporter)
            if fp != claim.fingerprint:
                # Data moved between the request and now: the pack describes what was read, and says so.
                with session_factory(settings.database_url)() as session:
                    packs.set_fingerprint(session, claim, fp)
            # No fsync: the file only feeds the upload; after a crash the next attempt rebuilds it.
            out.flush()
            size = out.tell()
            out.seek(0)
            sha = hashlib.file_digest(out, "sha256").hexdigest()
        reporter.done(rows, size)
        return BuiltPack(path=path, sha256=sha, size=size, rows=rows, summary=summary, fingerprint=fp)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# RFC 4180 line ends. They also matter for safety: Python's csv module quotes a cell holding a
# carriage return only when \r is part of the line terminator. PostgreSQL's COPY ends lines with
# \n (and quotes CR and LF itself), so its findings.csv header follows suit.
CSV_LINE_END = "\r\n"
COPY_LINE_END = "\n"


def _csv_line(values, line_end: str) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=line_end).writerow(values)
    return buffer.getvalue().encode("utf-8")


def _write_csv(target, header, chunks, to_row, on_chunk=None) -> int:
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


def _write_archive(out, files, *, ready: dict[str, bytes], streams: dict, metadata: Callable[[dict], bytes]) -> None:
    """Write every file of the layout, in order.

    ``ready`` holds finished documents; ``streams`` maps a path to a function that
    writes the entry. metadata.json lists the digest of every other file, so a
    streamed entry must sort before it (its digest is known once written).
    """
    known = {path: EntryDigest(path, hashlib.sha256(data).hexdigest(), len(data)) for path, data in ready.items()}
    with DeterministicZip(out) as archive:
        for spec in files:
            if spec.path in streams:
                if spec.path > layout.METADATA:
                    raise AssertionError(f"{spec.path} must be ready before metadata.json is written")
                with archive.open_stream(spec.path) as entry:
                    streams[spec.path](entry)
                known[spec.path] = entry.digest
            elif spec.path == layout.METADATA:
                archive.write_bytes(spec.path, metadata(known))
            else:
                archive.write_bytes(spec.path, ready[spec.path])


def _tallied(tally: redaction.PlaceholderTally, cells: list[str]) -> list[str]:
    tally.add(redaction.count_placeholders(cells))
    return cells


def _spool_csv(header, chunks, to_row) -> tuple[bytes, int]:
    buffer = io.BytesIO()
    count = _write_csv(buffer, header, chunks, to_row)
    return buffer.getvalue(), count


def _file_list(files) -> list[dict]:
    return [
        {"path": f.path, "role": f.role.value, "description": f.description}
        for f in files
        if f.path != layout.ENTRYPOINT
    ]


def _write_tenant_pack(conn: Connection, claim: packs.Claim, out, settings: Settings, reporter) -> tuple[dict, str, int]:
    options = options_from_dict(claim.options)
    tenant = queries.tenant_row(conn, claim.tenant_id)
    if tenant is None:
        raise SourceMissing(f"tenant {claim.tenant_id} no longer exists")
    since = dt.date.fromisoformat(claim.options["operations_since"]) if options.include_operations else None
    pii = options.include_pii

    sources = queries.tenant_sources(conn, tenant, options, since)
    fp = fingerprint.compute(sources.inputs)
    reports, freshness = sources.reports, sources.freshness
    by_severity, by_status = sources.by_severity, sources.by_status
    hardening = documents.hardening_document(tenant["hardening"], include_pii=pii)
    files = layout.tenant_files(include_operations=options.include_operations)

    ready: dict[str, bytes] = {layout.HARDENING: documents.json_bytes(hardening)}
    for report_type, path in layout.REPORTS.items():
        ready[path] = documents.json_bytes(documents.report_document(report_type, reports[report_type], include_pii=pii))
    operations_count = None
    if options.include_operations:
        # A 30-day window of runs is small next to the findings; it sorts after metadata.json, so
        # its digest must be known first.
        ready[layout.OPERATIONS], operations_count = _spool_csv(
            layout.OPERATIONS_COLUMNS,
            queries.stream_operations(conn, tenant["id"], since, settings.findings_chunk_size),
            lambda r: documents.operation_row(r, include_pii=pii),
        )
    summary = documents.summary_document(
        by_severity=by_severity, by_status=by_status, operations=operations_count, freshness=freshness
    )
    ready[layout.SUMMARY] = documents.json_bytes(summary)
    identity = {"name": tenant["name"], "external_id": str(tenant["external_id"])}
    findings_counts = summary["counts"]["findings"]
    ready[layout.ENTRYPOINT] = render_tenant_summary(
        {
            "tenant": identity,
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
    ).encode("utf-8")

    rows = 0
    # Replacements per category, read off the data files (the page repeats some of them).
    tally = redaction.PlaceholderTally()
    tally.add(redaction.count_placeholders(data for path, data in ready.items() if path != layout.ENTRYPOINT))

    def write_findings(entry) -> None:
        nonlocal rows
        rows = _write_csv(
            entry,
            layout.FINDINGS_COLUMNS,
            queries.stream_findings(conn, tenant["id"], settings.findings_chunk_size),
            lambda r: _tallied(tally, documents.finding_row(r, include_pii=pii)),
            on_chunk=reporter,
        )

    def copy_findings(entry) -> None:
        nonlocal rows
        entry.write(_csv_line(layout.FINDINGS_COLUMNS, COPY_LINE_END))
        lines = 0
        total = sum(by_status.values())
        for block in export.copy_findings(conn, tenant["id"], include_pii=pii, threaded=total > 20_000):
            entry.write(block)
            tally.feed(block)
            # Quoted cells may hold line breaks, so this is progress, not the row count.
            lines += block.count(b"\n")
            reporter(lines, entry.size)
        # The counts come from the same snapshot as the COPY, so they are the rows written.
        rows = findings_counts["total"]

    def metadata(digests: dict) -> bytes:
        return documents.json_bytes(
            documents.metadata_document(
                kind=layout.PackKind.TENANT,
                identity={"tenant": identity},
                fingerprint=fp,
                options=options.as_dict(),
                freshness=freshness,
                files=documents.file_entries(files, digests),
                redaction_block=redaction.metadata_block(pii, tally.counts),
            )
        )

    # PostgreSQL streams the CSV itself (COPY); other databases go through the portable chunked reader.
    fast = settings.findings_reader == "copy" or (
        settings.findings_reader == "auto" and conn.dialect.name == "postgresql"
    )
    streams = {layout.FINDINGS: copy_findings if fast else write_findings}
    _write_archive(out, files, ready=ready, streams=streams, metadata=metadata)
    return summary, fp, rows


def _write_review_pack(conn: Connection, claim: packs.Claim, out) -> tuple[dict, str, int]:
    options = options_from_dict(claim.options)
    review = queries.review_row(conn, claim.tenant_review_id)
    tenant = queries.tenant_row(conn, claim.tenant_id)
    if review is None or tenant is None:
        raise SourceMissing(f"review {claim.tenant_review_id} or its tenant no longer exists")
    fp = fingerprint.compute(queries.review_pack_inputs(conn, review, tenant, options))
    content = documents.review_content(review, include_pii=options.include_pii)
    files = layout.review_files()
    identity = {"name": tenant["name"], "external_id": str(tenant["external_id"])}
    published_at = layout.iso(review["published_at"])
    summary = documents.review_summary_document(review, content)
    freshness = {"review": published_at}
    ready = {
        layout.SECTIONS: documents.json_bytes({"sections": content["raw_sections"]}),
        layout.SUMMARY: documents.json_bytes(summary),
        layout.ENTRYPOINT: render_review_summary(
            {
                "tenant": identity,
                "review": {"id": review["id"], "published_at": published_at},
                "headline": content["headline"],
                "overall_status": content["overall_status"],
                "key_findings": content["key_findings"],
                "accepted_risks": content["accepted_risks"],
                "decisions": content["decisions"],
                "sections": content["sections"],
                "evidence_basis": content["evidence_basis"],
                "files": _file_list(files),
                "disclosure": layout.DISCLOSURE,
                "options": options.as_dict(),
            }
        ).encode("utf-8"),
    }
    replacements = redaction.count_placeholders([ready[layout.SECTIONS], ready[layout.SUMMARY]])

    def metadata(digests: dict) -> bytes:
        return documents.json_bytes(
            documents.metadata_document(
                kind=layout.PackKind.REVIEW,
                identity={
                    "tenant": identity,
                    "review": {
                        "id": review["id"],
                        "published_at": published_at,
                        "interpretation_version": content["raw_summary"].get("interpretation_version"),
                        "evidence_basis": content["evidence_basis"],
                    },
                },
                fingerprint=fp,
                options=options.as_dict(),
                freshness=freshness,
                files=documents.file_entries(files, digests),
                redaction_block=redaction.metadata_block(options.include_pii, replacements),
            )
        )

    _write_archive(out, files, ready=ready, streams={}, metadata=metadata)
    return summary, fp, 0
