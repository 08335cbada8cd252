"""The content fingerprint: equal inputs give the same pack, byte for byte.

A fingerprint covers everything the pack's content depends on, and nothing that
changes without the content changing (no pack or run ids), so a request can be
answered with an existing pack when nothing moved. The one clock value in it is
the UTC date of evaluation: a pack states each source's age in days and whether
it is stale, and those change with the date. The pack's own identity (id,
generation time) lives outside the content and outside the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from domain.options import PackOptions

# Bumped whenever the pack's layout or rendering changes, so that old packs are not reused for new code.
PACK_FORMAT_VERSION = 4


@dataclass(frozen=True)
class SourceStamp:
    """A cheap summary of a set of rows that changes whenever any row does."""

    count: int = 0
    max_id: int | None = None
    latest_change: str | None = None  # ISO timestamp of the newest change


@dataclass(frozen=True)
class ReportStamp:
    report_id: int | None = None
    fingerprint: str | None = None
    generated_at: str | None = None


@dataclass(frozen=True)
class FreshnessBasis:
    """What the pack's statements about data age depend on besides the data itself."""

    evaluated_on: str  # ISO date (UTC) against which ages and staleness are stated
    stale_after_days: int


@dataclass(frozen=True)
class TenantPackInputs:
    tenant_id: int
    tenant_external_id: str
    tenant_name: str
    options: PackOptions
    # The tenant's finding change counter (finding_stats.changes): it moves on every write to any
    # of the tenant's findings, whichever column changed.
    findings_changes: int
    hardening: dict[str, Any]
    hardening_updated_at: str | None = None
    reports: dict[str, ReportStamp] = field(default_factory=dict)
    operations_since: str | None = None  # ISO date; None when operations are excluded
    operations: SourceStamp | None = None
    # Runs change after creation (status, outcome, completion), and operations.csv shows it.
    operations_completed: SourceStamp | None = None
    freshness: FreshnessBasis | None = None


@dataclass(frozen=True)
class ReviewPackInputs:
    review_id: int
    tenant_id: int
    tenant_external_id: str
    tenant_name: str
    status: str
    published_at: str | None
    summary: dict[str, Any]
    sections: list[Any]
    options: PackOptions
    freshness: FreshnessBasis | None = None


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def compute(inputs: TenantPackInputs | ReviewPackInputs) -> str:
    kind = "tenant" if isinstance(inputs, TenantPackInputs) else "review"
    document = {"format": PACK_FORMAT_VERSION, "kind": kind, "inputs": _plain(inputs)}
    return hashlib.sha256(canonical(document)).hexdigest()


def _plain(value: Any) -> Any:
    """The JSON shape of the inputs, as dataclasses.asdict gives it, without copying their documents.

    Every request computes a fingerprint; asdict deep-copies the tenant's hardening document and
    the review's texts on each call only for json.dumps to read them once.
    """
    names = _field_names(type(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, dict) and any(_field_names(type(v)) is not None for v in value.values()):
        return {k: _plain(v) for k, v in value.items()}
    return value


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names, looked up once per class (dataclasses.fields builds them on each call)."""
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls)) if is_dataclass(cls) else None
        return names
