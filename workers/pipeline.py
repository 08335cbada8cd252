"""Generation of one pack: claim the run, build the ZIP, upload it, mark the pack ready.

The pipeline knows nothing of Celery. The task tells it whether a transient fault
may be retried; the pipeline either hands the attempt back (and raises
:class:`Transient`) or records the failure with a reason code from the table in
workers/failures.py. Every state change goes through storage/packs.py; what goes
into the pack is the business of the builders in workers/builders.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from domain.reasons import ReasonCode
from reviewpacks import logs
from reviewpacks.runtime import session_factory
from reviewpacks.settings import Settings
from storage import packs, scratch
from storage.artifacts import ArtifactStore, ArtifactStoreError
from storage.models import utcnow
from workers import builders, failures, progress

log = logs.get_logger("reviewpacks.pipeline")


class Transient(Exception):
    """A fault worth retrying; the attempt has been handed back to the queue.

    Its text is the reason code alone: the task retries with it, and Flower shows it.
    """

    def __init__(self, reason: ReasonCode | str):
        # Accepting the code's text lets the exception cross a pickle (prefork pool, events).
        self.reason = ReasonCode(reason)
        super().__init__(self.reason.value)


@dataclass(frozen=True)
class Result:
    pack_id: int
    state: str  # "ready" | "failed" | "skipped" | "busy"
    reason: ReasonCode | None = None
    rows: int = 0
    size: int = 0
    build_seconds: float = 0.0
    upload_seconds: float = 0.0


def generate(
    pack_id: int,
    *,
    settings: Settings,
    store: ArtifactStore,
    can_retry: bool,
    sessions: sessionmaker[Session] | None = None,
    on_progress: progress.Progress | None = None,
    fatal_errors: tuple[type[BaseException], ...] = (),
) -> Result:
    """Generate one pack. ``fatal_errors`` (the runner's time limits) fail it at once with ``timeout``.

    ``sessions`` is the one session factory every database write of the attempt goes through;
    without it, the factory for ``settings.database_url``.
    """
    sessions = sessions or session_factory(settings.database_url)
    started = time.monotonic()
    try:
        with sessions() as session:
            state, claim = packs.claim(
                session, pack_id, now=utcnow(), lease=settings.lease, disk=store.name
            )
    except Exception as exc:
        # Nothing is claimed, so nothing is recorded; the message is retried or the run re-published.
        failure = failures.classify(exc)
        log.warning("pack.claim_failed", pack_id=pack_id, error=type(exc).__name__, trace=failures.frames(exc))
        if failure.transient:
            raise Transient(failure.reason) from None
        return Result(pack_id, "skipped", reason=failure.reason)
    if claim is None:
        log.info("pack.not_claimed", pack_id=pack_id, claim=state.value)
        return Result(pack_id, "busy" if state is packs.ClaimState.BUSY else "skipped")
    # Every later line of this attempt carries its run, tenant and attempt without being told.
    logs.bind(pack_id=claim.pack_id, run_id=claim.run_id, tenant_id=claim.tenant_id, attempt=claim.attempt)
    log.info("pack.generating")

    built: builders.BuiltPack | None = None
    uploading = False
    try:
        for name in scratch.remove_pack_files(pack_id):
            log.info("pack.leftover_removed", file=name)
        reporter = progress.Reporter(claim, sessions, settings, on_progress)
        built = builders.build_file(
            claim,
            engine=sessions.kw["bind"],
            chunk_size=settings.findings_chunk_size,
            findings_reader=settings.findings_reader,
            stale_after_days=settings.stale_after_days,
            progress=reporter,
        )
        if built.fingerprint != claim.fingerprint:
            # Data moved between the request and now: the pack describes what was read, and says so.
            with sessions() as session:
                packs.set_fingerprint(session, claim, built.fingerprint)
        reporter.done(built.rows, built.size)
        built_at = time.monotonic()
        # From here an object may exist under the key, even if put_file raises.
        uploading = True
        store.put_file(claim.file_key, built.path, sha256=built.sha256, size=built.size)
        uploaded_at = time.monotonic()
        with sessions() as session:
            finished = packs.mark_ready(
                session,
                claim,
                now=utcnow(),
                retention=settings.retention,
                sha256=built.sha256,
                size=built.size,
                disk=store.name,
                summary=built.summary,
                rows=built.rows,
                generated_at=built.generated_at,
            )
        if not finished:
            raise progress.LostClaim()
        log.info(
            "pack.ready",
            rows=built.rows,
            bytes=built.size,
            duration_s=round(time.monotonic() - started, 3),
            build_s=round(built_at - started, 3),
            upload_s=round(uploaded_at - built_at, 3),
        )
        return Result(
            pack_id,
            "ready",
            rows=built.rows,
            size=built.size,
            build_seconds=built_at - started,
            upload_seconds=uploaded_at - built_at,
        )
    except progress.LostClaim:
        # The newer attempt owns the run and the object key; leave both to it.
        log.warning("pack.claim_lost")
        return Result(pack_id, "skipped")
    except (Exception, *fatal_errors) as exc:
        failure = failures.classify(exc, timeouts=fatal_errors)
        if failure is failures.UNEXPECTED:
            # The frames say where, without the exception's text (which may carry addresses).
            log.error("pack.crashed", error=type(exc).__name__, trace=failures.frames(exc))
        if failure.transient and can_retry:
            return _hand_back(claim, sessions, failure.reason, exc)
        return _fail(claim, sessions, store, failure.reason, exc, uploaded=uploading)
    finally:
        if built is not None:
            built.path.unlink(missing_ok=True)


def _hand_back(claim: packs.Claim, sessions: sessionmaker[Session], reason: ReasonCode, exc: BaseException) -> Result:
    log.warning("pack.retrying", reason_code=reason.value, error=type(exc).__name__)
    try:
        with sessions() as session:
            released = packs.release(session, claim, now=utcnow())
    except Exception as bookkeeping:
        # The database is down too: the run keeps its stale heartbeat and the reaper hands it back.
        log.warning("pack.release_failed", error=type(bookkeeping).__name__)
        raise Transient(reason) from None
    if not released:
        return Result(claim.pack_id, "skipped")
    raise Transient(reason) from None


def _fail(
    claim: packs.Claim,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    reason: ReasonCode,
    exc: BaseException,
    *,
    uploaded: bool,
) -> Result:
    # Nothing outlives retention: an object this attempt uploaded goes now. If it cannot, or an
    # earlier attempt may have uploaded one, the pack keeps file_disk (set by the claim) and the
    # next prune deletes whatever is under the key.
    deleted = not uploaded and claim.attempt == 1
    if uploaded:
        try:
            store.delete(claim.file_key)
            deleted = True
        except ArtifactStoreError as delete_error:
            log.warning("pack.object_delete_failed", error=type(delete_error).__name__)
    try:
        with sessions() as session:
            packs.mark_failed(
                session,
                claim.pack_id,
                reason,
                now=utcnow(),
                attempt=claim.attempt,
                # Only the exception's type goes into the run context: messages can carry URLs or hostnames.
                detail=type(exc).__name__,
                object_gone=deleted,
            )
    except Exception as bookkeeping:
        # The reaper fails the run as worker_lost once its heartbeat is stale.
        log.error("pack.mark_failed_failed", error=type(bookkeeping).__name__)
    log.error("pack.failed", reason_code=reason.value, error=type(exc).__name__)
    return Result(claim.pack_id, "failed", reason=reason)
