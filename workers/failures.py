"""What a failed attempt means: one table from exception to (reason code, transient?).

Transient faults are retried while the task has retries left (the attempt is handed
back to the queue); the others fail the pack at once. Only the reason code and the
exception's type are ever recorded or logged: exception text can carry endpoints,
bucket names, object keys or URLs.
"""

from __future__ import annotations

import errno
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError, IntegrityError

from domain.documents import InvalidSourceData
from domain.reasons import ReasonCode
from storage.artifacts import ArtifactStoreError, StorageUnavailable
from storage.db import DatabaseUnavailable
from workers.builders import LayoutMismatch, SourceMissing


@dataclass(frozen=True)
class Failure:
    reason: ReasonCode
    transient: bool


def _disk_full(exc: BaseException) -> bool:
    # A full scratch disk frees up as other attempts finish and the sweeps run: worth a retry.
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG)


def _is(kind: type[BaseException]) -> Callable[[BaseException], bool]:
    return lambda exc: isinstance(exc, kind)


# First match wins, so a subclass comes before its base (IntegrityError is a DBAPIError).
FAILURES: tuple[tuple[Callable[[BaseException], bool], Failure], ...] = (
    (_disk_full, Failure(ReasonCode.DISK_FULL, transient=True)),
    (_is(StorageUnavailable), Failure(ReasonCode.STORAGE_UNAVAILABLE, transient=True)),
    (_is(ArtifactStoreError), Failure(ReasonCode.STORAGE_ERROR, transient=False)),
    (_is(DatabaseUnavailable), Failure(ReasonCode.DATABASE_UNAVAILABLE, transient=True)),
    # A live pack already has the fingerprint this one was about to record: a bug, not an outage.
    (_is(IntegrityError), Failure(ReasonCode.INTERNAL_ERROR, transient=False)),
    (_is(DBAPIError), Failure(ReasonCode.DATABASE_UNAVAILABLE, transient=True)),
    (_is(InvalidSourceData), Failure(ReasonCode.INVALID_SOURCE_DATA, transient=False)),
    # JSON nested too deep for Python to decode is the source's fault, not an outage.
    (_is(RecursionError), Failure(ReasonCode.INVALID_SOURCE_DATA, transient=False)),
    (_is(SourceMissing), Failure(ReasonCode.SOURCE_MISSING, transient=False)),
    (_is(LayoutMismatch), Failure(ReasonCode.INTERNAL_ERROR, transient=False)),
)

TIMED_OUT = Failure(ReasonCode.TIMEOUT, transient=False)
UNEXPECTED = Failure(ReasonCode.INTERNAL_ERROR, transient=False)


def classify(exc: BaseException, *, timeouts: tuple[type[BaseException], ...] = ()) -> Failure:
    """The failure an exception stands for; ``timeouts`` are the runner's time-limit exceptions."""
    if timeouts and isinstance(exc, timeouts):
        return TIMED_OUT
    for matches, failure in FAILURES:
        if matches(exc):
            return failure
    return UNEXPECTED


def frames(exc: BaseException) -> str:
    """Where an exception came from, as file:line:function steps, without its text (which may carry addresses)."""
    return " > ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in traceback.extract_tb(exc.__traceback__))
