"""The one place that knows what a pack contains, in which order, and what each file is for."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ENTRYPOINT = "entrypoint"
    APPENDIX = "appendix"


class PackKind(StrEnum):
    TENANT = "tenant"
    REVIEW = "review"


@dataclass(frozen=True)
class FileSpec:
    path: str
    description: str

    @property
    def role(self) -> Role:
        return Role.ENTRYPOINT if self.path == ENTRYPOINT else Role.APPENDIX


ENTRYPOINT = "executive-summary.html"
FINDINGS = "findings.csv"
HARDENING = "hardening.json"
METADATA = "metadata.json"
OPERATIONS = "operations.csv"
SECTIONS = "sections.json"
SUMMARY = "summary.json"

# report_type in stored_reports -> path inside the pack
REPORTS = {
    "entra.admin_roles": "reports/entra_admin_roles.json",
    "permission_posture": "reports/permission_posture.json",
}

_DESCRIPTIONS = {
    ENTRYPOINT: "Human-readable executive summary; open this first.",
    FINDINGS: "Open and acknowledged findings, one row each.",
    HARDENING: "The tenant's hardening status as recorded by the host application.",
    METADATA: "Pack identity, options, fingerprint, data freshness and the SHA-256 of every other file.",
    OPERATIONS: "Operation runs of the last 30 days.",
    SECTIONS: "The published review's sections.",
    SUMMARY: "Counts and per-source data freshness.",
    REPORTS["entra.admin_roles"]: "Stored Entra admin roles report (empty when none was stored).",
    REPORTS["permission_posture"]: "Stored permission posture report (empty when none was stored).",
}

FINDINGS_COLUMNS = (
    "id",
    "finding_type",
    "severity",
    "status",
    "subject_type",
    "subject_external_id",
    "subject_display_name",
    "title",
    "evidence",
    "first_seen_at",
    "last_seen_at",
    "updated_at",
)
# The findings.csv cells that hold times, written as layout.iso writes them.
FINDINGS_TIMESTAMP_COLUMNS = ("first_seen_at", "last_seen_at", "updated_at")
OPERATIONS_COLUMNS = (
    "id",
    "type",
    "status",
    "outcome",
    "reason_code",
    "initiator_user_id",
    "created_at",
    "started_at",
    "completed_at",
)

INCLUDED_FINDING_STATUSES = ("new", "acknowledged")
SEVERITIES = ("critical", "high", "medium", "low", "informational")
OPERATIONS_WINDOW_DAYS = 30

DISCLOSURE = (
    "This pack is a point-in-time export of data the platform had cached for this tenant. "
    "It supports a review; it is not a certification, attestation or audit opinion, and it does not "
    "state that the tenant complies with any standard. Findings reflect what was detected, not "
    "everything that may be present."
)


def tenant_files(*, include_operations: bool) -> list[FileSpec]:
    paths = [ENTRYPOINT, FINDINGS, HARDENING, METADATA, *REPORTS.values(), SUMMARY]
    if include_operations:
        paths.append(OPERATIONS)
    return [FileSpec(p, _DESCRIPTIONS[p]) for p in sorted(paths)]


def review_files() -> list[FileSpec]:
    return [FileSpec(p, _DESCRIPTIONS[p]) for p in sorted([ENTRYPOINT, METADATA, SECTIONS, SUMMARY])]


def download_filename(tenant_external_id: str, generated_on: dt.date) -> str:
    return f"review-pack-{tenant_external_id}-{generated_on.isoformat()}.zip"


def iso(value: dt.datetime | None) -> str | None:
    """One timestamp format for every file: UTC, seconds, trailing Z."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("timestamps in a pack must be timezone-aware")
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
