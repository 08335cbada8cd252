"""The fixed list of reasons a generation run can fail with (``context.reason_code``)."""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    STORAGE_UNAVAILABLE = "storage_unavailable"  # the artifact store stayed unreachable past the retry budget
    STORAGE_ERROR = "storage_error"  # the store refused the object (permissions, bucket missing)
    DATABASE_UNAVAILABLE = "database_unavailable"  # the database connection kept failing
    INVALID_SOURCE_DATA = "invalid_source_data"  # a source row could not be exported (e.g. a corrupt report)
    SOURCE_MISSING = "source_missing"  # the tenant or review behind the pack is gone (or the review unpublished)
    WORKER_LOST = "worker_lost"  # the worker died repeatedly holding the run
    TIMEOUT = "timeout"  # the run hit its time limit
    DISK_FULL = "disk_full"  # the worker's temp disk stayed full past the retry budget
    INTERNAL_ERROR = "internal_error"  # anything else; the log has the details


USER_MESSAGES: dict[ReasonCode, str] = {
    ReasonCode.STORAGE_UNAVAILABLE: "The file store could not be reached. Request the pack again later.",
    ReasonCode.STORAGE_ERROR: "The file store refused the pack. An operator needs to check the storage settings.",
    ReasonCode.DATABASE_UNAVAILABLE: "The database could not be reached while the pack was generated.",
    ReasonCode.INVALID_SOURCE_DATA: "Some of the tenant's stored data could not be exported.",
    ReasonCode.SOURCE_MISSING: "The tenant or review behind this pack no longer exists, or the review is no longer published.",
    ReasonCode.WORKER_LOST: "Generation was interrupted repeatedly and was stopped.",
    ReasonCode.TIMEOUT: "Generation took longer than allowed.",
    ReasonCode.DISK_FULL: "The worker ran out of disk space while writing the pack. Request the pack again later.",
    ReasonCode.INTERNAL_ERROR: "Generation failed unexpectedly. An operator can find the details in the logs.",
}
