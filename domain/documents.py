"""The JSON and CSV documents inside a pack, built from plain values.

The storage layer hands rows over as dicts; these functions decide what each
file says, including redaction and formula neutralising, so the same rules
apply whichever reader produced the rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain import csvsafe, layout, redaction, ziparchive
from domain.csvsafe import neutralise_row
from domain.ziparchive import EntryDigest

# Raised for source values a pack cannot carry; defined beside the redaction policy, which
# refuses too-deep JSON, and known to callers by this name.
InvalidSourceData = redaction.InvalidSourceData

SCHEMA_VERSION = 1
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_bytes(document: object) -> bytes:
    """The one JSON encoding of every pack file: sorted keys, two-space indent, trailing newline."""
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False)
    # Lone surrogates cannot be encoded; they carry no meaning, so they become U+FFFD.
    return (_LONE_SURROGATE.sub("\ufffd", text) + "\n").encode("utf-8")


# One encoder each, made once: json.dumps with any argument builds a new encoder per call.
_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_JSONB = json.JSONEncoder(separators=(", ", ": "), ensure_ascii=False)


def compact_json(value: object) -> str:
    return _COMPACT.encode(value)


def _free_text(value: object, include_pii: bool) -> str | None:
    return redaction.text_field(None if value is None else str(value), include_pii=include_pii)


_ENUMERATED = ("finding_type", "severity", "status", "subject_type")


def finding_row(row: Mapping[str, Any], *, include_pii: bool) -> list[str]:
    """One findings.csv row from a finding as the portable reader returns it (typed values)."""
    value = row.get("evidence")
    value = {} if value is None else value
    evidence = compact_json(value)
    if redaction.needs_scrub(evidence, include_pii=include_pii):
        evidence = compact_json(redaction.scrub(value, include_pii=include_pii))
    return _finding_cells(row, evidence, [layout.iso(row.get(c)) for c in layout.FINDINGS_TIMESTAMP_COLUMNS], include_pii)


def copied_finding_row(cells: Sequence[str | None], *, include_pii: bool) -> list[str]:
    """The same rules on a row as PostgreSQL's COPY wrote it (storage/export.py).

    Every cell is text: timestamps already in the pack's format, the evidence as PostgreSQL
    prints jsonb. Evidence that needs no scrub keeps that rendering; scrubbed evidence is
    printed the same way (:func:`jsonb_text`), so one file never mixes two styles.
    """
    row = dict(zip(layout.FINDINGS_COLUMNS, cells, strict=True))
    evidence = copied_evidence(row["evidence"], include_pii=include_pii)
    return _finding_cells(row, evidence, [row[c] for c in layout.FINDINGS_TIMESTAMP_COLUMNS], include_pii)


def copied_evidence(text: str | None, *, include_pii: bool) -> str:
    """The evidence cell of :func:`copied_finding_row`, from PostgreSQL's jsonb text."""
    # No evidence (SQL NULL, or JSON null, which the portable reader cannot tell apart) is {}.
    evidence = "{}" if text in (None, "null") else text
    if not redaction.needs_scrub(evidence, include_pii=include_pii):
        return evidence
    if len(evidence) <= _SHORT_EVIDENCE:
        return _scrubbed_short(evidence, include_pii)
    return _scrubbed(evidence, include_pii)


def copied_evidence_cell(text: str, *, include_pii: bool) -> str:
    """The evidence cell of :func:`copied_finding_row` on its own, for a row whose other cells
    the COPY path has found need nothing."""
    return csvsafe.neutralise(copied_evidence(text, include_pii=include_pii))


def _scrubbed(evidence: str, include_pii: bool) -> str:
    return jsonb_text(redaction.scrub(json.loads(evidence), include_pii=include_pii))


# Findings of one rule often carry the same evidence: short evidence is scrubbed once per value
# (a bounded number remembered; the result depends on the text alone).
_SHORT_EVIDENCE = 1024
_scrubbed_short = functools.lru_cache(maxsize=4096)(_scrubbed)


def jsonb_text(value: object) -> str:
    """JSON as PostgreSQL prints jsonb: ", " and ": " between items, non-ASCII characters as they are."""
    return _JSONB.encode(value)


def _finding_cells(row: Mapping[str, Any], evidence: str, timestamps: list[str | None], include_pii: bool) -> list[str]:
    values = {
        "id": row["id"],
        # Host-written enumerations: scanned when personal data is removed.
        **{c: row[c] if include_pii else _free_text(row[c], False) for c in _ENUMERATED},
        "subject_external_id": row.get("subject_external_id"),
        "subject_display_name": redaction.display_name(row.get("subject_display_name"), include_pii=include_pii),
        "title": redaction.text_field(row["title"], include_pii=include_pii),
        "evidence": evidence,
        **dict(zip(layout.FINDINGS_TIMESTAMP_COLUMNS, timestamps, strict=True)),
    }
    return neutralise_row(values[c] for c in layout.FINDINGS_COLUMNS)


def _utf8_alternatives(chars: Iterable[str]) -> bytes:
    return b"(?:" + b"|".join(re.escape(c.encode("utf-8")) for c in sorted(set(chars))) + b")"


# The characters outside ASCII whose str.lower() starts with an ASCII letter
# (tests/domain/test_documents.py checks the list is complete).
_LOWERS_TO = {"k": ("\u212a",), "i": ("\u0130",)}


def _caseless(hint: str) -> bytes:
    """A bytes pattern for every text whose str.lower() holds ``hint`` (Kelvin sign included)."""
    parts = []
    for c in hint:
        if c.isascii() and c.isalpha():
            # Characters whose lower-case form starts with this letter: its two ASCII cases, plus
            # U+212A KELVIN SIGN for k and U+0130 for i.
            parts.append(_utf8_alternatives({c, c.upper(), *_LOWERS_TO.get(c, ())}))
        else:
            parts.append(re.escape(c.encode("utf-8")))
    return b"".join(parts)


def copy_first_look_pattern() -> bytes:
    """A bytes pattern that every findings row COPY writes must match to need :func:`copied_finding_row`.

    With personal data included, a row that does not match comes out of copied_finding_row
    unchanged: it holds none of the characters or pieces a secret is made of (the first looks of
    domain/redaction.py), no cell that starts like a formula (domain/csvsafe.py), and no secret-key
    hint in any letter case. Cells too long for a spreadsheet are found by their length, not by
    this pattern. The pattern uses only what Python's re and RE2 (in Latin-1 mode, byte by byte)
    read alike; tests/domain/test_documents.py checks the promise on generated rows.
    """
    ignored = _utf8_alternatives(csvsafe.LEADING_IGNORED)
    prefixes = _utf8_alternatives(csvsafe.FORMULA_PREFIXES)
    pieces = [
        b"[=~@]",
        # A cell starts a line or follows a comma; quoted cells open with a quote.
        b'(?:\\A|[,\n])"?' + ignored + b"*" + prefixes,
        *(re.escape(h.encode("utf-8")) for h in redaction.SECRET_VALUE_HINTS),
        *(_caseless(h) for h in redaction.SECRET_KEY_HINTS),
    ]
    return b"|".join(pieces)


def copy_personal_look_pattern() -> bytes:
    """A bytes pattern that every text holding personal data by shape matches, wherever it is.

    Each piece is a rule of domain/redaction.py's PII_RULES without its look-arounds, so it
    matches wherever the rule does (tests/domain/test_documents.py checks this on generated
    text): an e-mail's @, an IPv4 address's digit-dot-digit, an IPv6 address's eight groups or
    its ::, a + before a digit, and the North American phone shape. The phone shape keeps its
    rule's look-behind as a character of its own (RE2 has no look-arounds): without it, the digit
    runs of one UUID in eight look like a phone number. Without personal data, the COPY path
    passes a row through the row function when this or the first look matches.
    """
    hexgroup = b"[0-9A-Fa-f]{1,4}"
    return b"|".join([
        b"@",
        b"[0-9][.][0-9]",
        b"(?:" + hexgroup + b":){7}" + hexgroup,
        b"::",
        b"[+][0-9]",
        b"(?:\\A|[^0-9A-Za-z.-])[(]?[0-9]{3}[)]?[ .-]?[0-9]{3}[ .-][0-9]{4}",
    ])


def operation_row(row: Mapping[str, Any], *, include_pii: bool = False) -> list[str]:
    context = row.get("context") or {}
    reason = context.get("reason_code") if isinstance(context, dict) else None
    # Host applications write these columns; they are scanned like any free text.
    def text(value: object) -> str | None:
        return _free_text(value, include_pii)

    values = {
        "id": row["id"],
        "type": text(row["type"]),
        "status": text(row["status"]),
        "outcome": text(row.get("outcome")),
        "reason_code": text(reason),
        "initiator_user_id": row.get("initiator_user_id"),
        "created_at": layout.iso(row.get("created_at")),
        "started_at": layout.iso(row.get("started_at")),
        "completed_at": layout.iso(row.get("completed_at")),
    }
    return neutralise_row(values[c] for c in layout.OPERATIONS_COLUMNS)


def hardening_document(hardening: object, *, include_pii: bool) -> dict[str, Any]:
    if hardening is None:
        hardening = {}
    if not isinstance(hardening, dict):
        raise InvalidSourceData("the tenant's hardening status is not a JSON object")
    return {"hardening": redaction.scrub(hardening, include_pii=include_pii)}


def report_document(report_type: str, report: Mapping[str, Any] | None, *, include_pii: bool) -> dict[str, Any]:
    """A stored report as exported; an empty structure when the tenant has none."""
    if report is None:
        return {"report_type": report_type, "available": False, "generated_at": None, "payload": {}}
    payload = report.get("payload")
    if not isinstance(payload, (dict, list)):
        raise InvalidSourceData(f"stored report {report.get('id')} ({report_type}) has no JSON object payload")
    return {
        "report_type": report_type,
        "available": True,
        "generated_at": layout.iso(report.get("generated_at")),
        "payload": redaction.scrub(payload, include_pii=include_pii),
    }


def data_as_of(freshness: Mapping[str, str | None]) -> str | None:
    """The oldest source's date: the pack is only as current as its least current source."""
    stamps = [v for v in freshness.values() if v]
    return min(stamps)[:10] if stamps else None


CURRENT, STALE, MISSING = "current", "stale", "missing"


def source_freshness(as_of: str | None, *, evaluated_on: dt.date, stale_after_days: int) -> dict[str, Any]:
    """One source's date, its age in whole days on the evaluation date, and whether it is stale.

    A date that cannot be read (a review's evidence basis is free text) cannot show the data is
    current, so it counts as missing; the text itself is kept.
    """
    day = _iso_day(as_of)
    if day is None:
        return {"as_of": as_of, "age_days": None, "status": MISSING}
    # A source stamped after the evaluation date (clock skew on the host) is current, not negative days old.
    age = max((evaluated_on - day).days, 0)
    return {"as_of": as_of, "age_days": age, "status": STALE if age > stale_after_days else CURRENT}


def _iso_day(value: object) -> dt.date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def freshness_entries(freshness: Mapping[str, str | None], *, evaluated_on: dt.date, stale_after_days: int) -> dict[str, Any]:
    """summary.json's and metadata.json's ``data_freshness``: every source by name, sorted."""
    return {
        source: source_freshness(as_of, evaluated_on=evaluated_on, stale_after_days=stale_after_days)
        for source, as_of in sorted(freshness.items())
    }


def evidence_freshness(evidence_basis: Iterable[Mapping[str, Any]], *, evaluated_on: dt.date, stale_after_days: int) -> list[dict[str, Any]]:
    """A review's evidence basis with each item's age and status stated like a tenant pack's sources."""
    return [
        {"source": item.get("source"), **source_freshness(item.get("as_of"), evaluated_on=evaluated_on, stale_after_days=stale_after_days)}
        for item in evidence_basis
    ]


def severity_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts for the fixed severities in order; unknown severities are kept after them, sorted."""
    ordered = {s: int(counts.get(s, 0)) for s in layout.SEVERITIES}
    for other in sorted(set(counts) - set(layout.SEVERITIES)):
        ordered[other] = int(counts[other])
    return ordered


def summary_document(
    *,
    by_severity: Mapping[str, int],
    by_status: Mapping[str, int],
    operations: int | None,
    freshness: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """``freshness`` is the output of :func:`freshness_entries`."""
    severities = severity_counts(by_severity)
    return {
        "schema_version": SCHEMA_VERSION,
        "counts": {
            "findings": {
                "total": sum(severities.values()),
                "by_severity": severities,
                "by_status": {s: int(by_status.get(s, 0)) for s in layout.INCLUDED_FINDING_STATUSES},
            },
            "operations": operations,
        },
        "data_as_of": data_as_of({k: v["as_of"] for k, v in freshness.items()}),
        "data_freshness": dict(sorted(freshness.items())),
    }


def file_entries(specs: Iterable[layout.FileSpec], digests: Mapping[str, EntryDigest]) -> list[dict[str, Any]]:
    return [
        {
            "path": spec.path,
            "role": spec.role.value,
            "description": spec.description,
            "sha256": digests[spec.path].sha256,
            "size": digests[spec.path].size,
        }
        for spec in specs
        if spec.path != layout.METADATA
    ]


@dataclass(frozen=True)
class Provenance:
    """Who this pack is: the values that differ between two packs of identical content."""

    pack_id: int
    generated_at: str  # UTC, ISO 8601 (layout.iso)
    generator: str  # "reviewpacks <version>"


# The entries that name the pack (its id and generation time), and therefore differ between two
# packs of identical content. Every other entry is content: byte-identical for an identical fingerprint.
IDENTITY_ENTRIES = frozenset({layout.METADATA, layout.ENTRYPOINT})


def content_sha256(files: Iterable[Mapping[str, Any]]) -> str:
    """One SHA-256 over the content entries, in name order.

    It hashes the lines ``sha256sum`` prints for those entries (``<hex>  <path>``), so an
    auditor can recompute it from the unpacked ZIP:
    ``sha256sum findings.csv hardening.json … | sha256sum`` with the names sorted.
    """
    lines = sorted((f["path"], f["sha256"]) for f in files if f["path"] not in IDENTITY_ENTRIES)
    return hashlib.sha256("".join(f"{sha}  {path}\n" for path, sha in lines).encode()).hexdigest()


def metadata_document(
    *,
    kind: layout.PackKind,
    identity: Mapping[str, Any],
    fingerprint: str,
    options: Mapping[str, Any],
    freshness: Mapping[str, dict[str, Any]],
    files: list[dict[str, Any]],
    provenance: Provenance,
    redaction_block: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``freshness`` is the output of :func:`freshness_entries`."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind.value,
        "pack": {**identity, "id": provenance.pack_id, "generated_at": provenance.generated_at},
        "generator": provenance.generator,
        "content_sha256": content_sha256(files),
        "fingerprint": fingerprint,
        "options": dict(options),
        "data_as_of": data_as_of({k: v["as_of"] for k, v in freshness.items()}),
        "data_freshness": dict(sorted(freshness.items())),
        "entrypoint": layout.ENTRYPOINT,
        "appendix": sorted([f["path"] for f in files if f["role"] == layout.Role.APPENDIX.value] + [layout.METADATA]),
        "files": files,
        "disclosure": layout.DISCLOSURE,
        "archive": {"deflate": dict(ziparchive.DEFLATE)},
    }
    if redaction_block is not None:
        document["redaction"] = dict(redaction_block)
    return document


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise InvalidSourceData("a review text field holds structured data where text was expected")
    return str(value)


def _items(summary: Mapping[str, Any], key: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    raw = summary.get(key) or []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise InvalidSourceData(f"the review's {key} must be a list of objects")
    return [{f: _text(item.get(f)) for f in fields} for item in raw]


def review_content(review: Mapping[str, Any], *, include_pii: bool) -> dict[str, Any]:
    """The human-facing content of a published review, validated and redacted."""
    # A review's prose is its content: kept and scanned, while unknown fields follow the allow-list.
    summary = redaction.scrub(review.get("summary") or {}, include_pii=include_pii, prose=True)
    sections = redaction.scrub(review.get("sections") or [], include_pii=include_pii, prose=True)
    if not isinstance(summary, dict):
        raise InvalidSourceData("the review summary is not a JSON object")
    if not isinstance(sections, list) or not all(isinstance(s, dict) for s in sections):
        raise InvalidSourceData("the review sections are not a list of objects")
    key_findings = _items(summary, "key_findings", ("title", "severity", "detail"))
    for finding in key_findings:
        finding["severity"] = finding["severity"] or "unrated"
        finding["detail"] = finding["detail"] or ""
    accepted_risks = _items(summary, "accepted_risks", ("title", "justification", "expires"))
    for risk in accepted_risks:
        risk["justification"] = risk["justification"] or ""
    decisions = _items(summary, "decisions", ("title", "detail"))
    for decision in decisions:
        decision["detail"] = decision["detail"] or ""
    return {
        "headline": _text(summary.get("headline")),
        "overall_status": _text(summary.get("overall_status")),
        "key_findings": key_findings,
        "accepted_risks": accepted_risks,
        "decisions": decisions,
        "evidence_basis": _items(summary, "evidence_basis", ("source", "as_of")),
        "sections": [
            {
                "title": _text(s.get("title") or s.get("key")) or "Untitled section",
                "body": s["body"] if isinstance(s.get("body"), str) else "",
                # A structured body (object or list) is shown on the page as an outline, not dropped.
                "structured_body": s["body"] if isinstance(s.get("body"), (dict, list)) else None,
            }
            for s in sections
        ],
        "raw_summary": summary,
        "raw_sections": sections,
    }


def review_summary_document(
    review: Mapping[str, Any],
    content: Mapping[str, Any],
    *,
    evidence: list[dict[str, Any]] | None = None,
    freshness: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``evidence`` (from :func:`evidence_freshness`) and ``freshness`` state the review's basis and age."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "review": {"id": review["id"], "status": review["status"], "published_at": layout.iso(review.get("published_at"))},
        "counts": {
            "key_findings": len(content["key_findings"]),
            "accepted_risks": len(content["accepted_risks"]),
            "decisions": len(content["decisions"]),
            "sections": len(content["sections"]),
        },
        "summary": content["raw_summary"],
    }
    if evidence is not None:
        document["evidence_basis"] = evidence
    if freshness is not None:
        document["data_freshness"] = dict(sorted(freshness.items()))
    return document
