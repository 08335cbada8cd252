"""The failure table: each exception maps to one reason code and a retry decision."""

from __future__ import annotations

import errno
import pickle

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from domain.documents import InvalidSourceData
from domain.reasons import ReasonCode
from storage.artifacts import ArtifactNotFound, ArtifactStoreError, StorageUnavailable
from storage.db import DatabaseUnavailable
from workers.builders import LayoutMismatch, SourceMissing
from workers.failures import classify
from workers.pipeline import Transient


class TimeLimit(Exception):
    pass


@pytest.mark.parametrize(
    "exc, reason, transient",
    [
        (OSError(errno.ENOSPC, "No space left on device"), ReasonCode.DISK_FULL, True),
        (OSError(errno.EFBIG, "File too large"), ReasonCode.DISK_FULL, True),
        (StorageUnavailable("x"), ReasonCode.STORAGE_UNAVAILABLE, True),
        (ArtifactStoreError("x"), ReasonCode.STORAGE_ERROR, False),
        (ArtifactNotFound("x"), ReasonCode.STORAGE_ERROR, False),
        (DatabaseUnavailable("x"), ReasonCode.DATABASE_UNAVAILABLE, True),
        (OperationalError("select 1", {}, Exception("gone")), ReasonCode.DATABASE_UNAVAILABLE, True),
        (IntegrityError("insert", {}, Exception("duplicate")), ReasonCode.INTERNAL_ERROR, False),
        (InvalidSourceData("x"), ReasonCode.INVALID_SOURCE_DATA, False),
        (SourceMissing("x"), ReasonCode.SOURCE_MISSING, False),
        (LayoutMismatch("x"), ReasonCode.INTERNAL_ERROR, False),
        (OSError(errno.EACCES, "Permission denied"), ReasonCode.INTERNAL_ERROR, False),
        (KeyError("x"), ReasonCode.INTERNAL_ERROR, False),
        (TimeLimit(), ReasonCode.INTERNAL_ERROR, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_each_exception_has_one_reason(exc, reason, transient):
    failure = classify(exc)
    assert (failure.reason, failure.transient) == (reason, transient)


def test_the_runners_time_limit_is_a_timeout_whatever_else_it_is():
    assert classify(TimeLimit(), timeouts=(TimeLimit,)).reason == ReasonCode.TIMEOUT
    assert classify(TimeLimit(), timeouts=(TimeLimit,)).transient is False


def test_a_retry_carries_only_the_reason_and_survives_a_pickle():
    exc = pickle.loads(pickle.dumps(Transient(ReasonCode.DISK_FULL)))
    assert (exc.reason, str(exc), exc.args) == (ReasonCode.DISK_FULL, "disk_full", ("disk_full",))
