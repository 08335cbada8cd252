"""The content fingerprint: stable for equal inputs, different for any change."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re

import pytest

from domain import fingerprint
from domain.fingerprint import (
    PACK_FORMAT_VERSION,
    FreshnessBasis,
    ReportStamp,
    ReviewPackInputs,
    SourceStamp,
    TenantPackInputs,
    canonical,
    compute,
)
from domain.options import PackOptions

HEX64 = re.compile(r"^[0-9a-f]{64}$")
EXTERNAL_ID = "7a1c2f0e-3b4d-4c5e-8f90-123456789abc"


def tenant_inputs(**overrides) -> TenantPackInputs:
    """A fresh, fully populated set of tenant inputs (new objects on every call)."""
    values = dict(
        tenant_id=7,
        tenant_external_id=EXTERNAL_ID,
        tenant_name="Contoso Ltd",
        options=PackOptions(include_pii=True, include_operations=True),
        findings_changes=4213,
        hardening={"mfa_enforced": True, "secure_score": 71.5, "ca": {"policies": 12, "report_only": 3}},
        reports={
            "entra.admin_roles": ReportStamp(report_id=5, fingerprint="r-abc", generated_at="2026-11-18T06:00:00Z"),
            "permission_posture": ReportStamp(report_id=6, fingerprint="r-def", generated_at="2026-11-19T06:00:00Z"),
        },
        operations_since="2026-10-21",
        operations=SourceStamp(count=4, max_id=88, latest_change="2026-11-20T07:59:00Z"),
        freshness=FreshnessBasis(evaluated_on="2026-11-21", stale_after_days=7),
    )
    values.update(overrides)
    return TenantPackInputs(**values)


def review_inputs(**overrides) -> ReviewPackInputs:
    values = dict(
        review_id=11,
        tenant_id=7,
        tenant_external_id=EXTERNAL_ID,
        tenant_name="Contoso Ltd",
        status="published",
        published_at="2026-11-21T09:30:00Z",
        summary={"headline": "Good progress", "key_findings": [{"title": "MFA gaps", "severity": "high"}]},
        sections=[{"key": "identity", "title": "Identity", "body": "Text."}],
        options=PackOptions(include_pii=True, include_operations=False),
        freshness=FreshnessBasis(evaluated_on="2026-11-21", stale_after_days=7),
    )
    values.update(overrides)
    return ReviewPackInputs(**values)


BASE = compute(tenant_inputs())
BASE_REVIEW = compute(review_inputs())


def _report(base: ReportStamp, **changes) -> ReportStamp:
    return dataclasses.replace(base, **changes)


def _with_report(report_type: str, **changes) -> TenantPackInputs:
    reports = dict(tenant_inputs().reports)
    reports[report_type] = _report(reports[report_type], **changes)
    return tenant_inputs(reports=reports)


# One field at a time: every one of these must move the fingerprint.
TENANT_CHANGES = {
    "hardening_updated_at": lambda: tenant_inputs(hardening_updated_at="2026-11-20T08:00:00.000001+00:00"),
    "operations_completed": lambda: tenant_inputs(operations_completed=SourceStamp(1, 88, "2026-11-20T08:00:00+00:00")),
    "tenant_id": lambda: tenant_inputs(tenant_id=8),
    "tenant_external_id": lambda: tenant_inputs(tenant_external_id="7a1c2f0e-3b4d-4c5e-8f90-123456789abd"),
    "tenant_name": lambda: tenant_inputs(tenant_name="Contoso Ltd."),
    "option_include_pii": lambda: tenant_inputs(options=PackOptions(include_pii=False, include_operations=True)),
    "option_include_operations": lambda: tenant_inputs(
        options=PackOptions(include_pii=True, include_operations=False)
    ),
    # Any write to any finding moves the counter by at least one.
    "findings_changes": lambda: tenant_inputs(findings_changes=4214),
    "findings_changes_zero": lambda: tenant_inputs(findings_changes=0),
    # Ages and stale flags are stated against the evaluation date, with this threshold.
    "evaluated_on": lambda: tenant_inputs(freshness=FreshnessBasis(evaluated_on="2026-11-22", stale_after_days=7)),
    "stale_after_days": lambda: tenant_inputs(freshness=FreshnessBasis(evaluated_on="2026-11-21", stale_after_days=8)),
    "hardening_value": lambda: tenant_inputs(
        hardening={"mfa_enforced": False, "secure_score": 71.5, "ca": {"policies": 12, "report_only": 3}}
    ),
    "hardening_nested_value": lambda: tenant_inputs(
        hardening={"mfa_enforced": True, "secure_score": 71.5, "ca": {"policies": 12, "report_only": 4}}
    ),
    "hardening_number_type": lambda: tenant_inputs(
        hardening={"mfa_enforced": True, "secure_score": 71.5, "ca": {"policies": 12.0, "report_only": 3}}
    ),
    "hardening_true_vs_1": lambda: tenant_inputs(
        hardening={"mfa_enforced": 1, "secure_score": 71.5, "ca": {"policies": 12, "report_only": 3}}
    ),
    "hardening_new_key": lambda: tenant_inputs(
        hardening={
            "mfa_enforced": True,
            "secure_score": 71.5,
            "ca": {"policies": 12, "report_only": 3},
            "legacy_auth_blocked": False,
        }
    ),
    "hardening_empty": lambda: tenant_inputs(hardening={}),
    "admin_roles_report_id": lambda: _with_report("entra.admin_roles", report_id=9),
    "admin_roles_fingerprint": lambda: _with_report("entra.admin_roles", fingerprint="r-abd"),
    "admin_roles_generated_at": lambda: _with_report("entra.admin_roles", generated_at="2026-11-18T06:00:01Z"),
    "admin_roles_missing": lambda: _with_report(
        "entra.admin_roles", report_id=None, fingerprint=None, generated_at=None
    ),
    "posture_report_id": lambda: _with_report("permission_posture", report_id=60),
    "posture_fingerprint": lambda: _with_report("permission_posture", fingerprint="r-xyz"),
    "posture_generated_at": lambda: _with_report("permission_posture", generated_at="2026-11-19T06:00:01Z"),
    "reports_swapped_between_types": lambda: tenant_inputs(
        reports={
            "entra.admin_roles": tenant_inputs().reports["permission_posture"],
            "permission_posture": tenant_inputs().reports["entra.admin_roles"],
        }
    ),
    "reports_empty": lambda: tenant_inputs(reports={}),
    "operations_since": lambda: tenant_inputs(operations_since="2026-10-22"),
    "operations_since_none": lambda: tenant_inputs(operations_since=None),
    "operations_count": lambda: tenant_inputs(operations=SourceStamp(5, 88, "2026-11-20T07:59:00Z")),
    "operations_max_id": lambda: tenant_inputs(operations=SourceStamp(4, 89, "2026-11-20T07:59:00Z")),
    "operations_latest_change": lambda: tenant_inputs(operations=SourceStamp(4, 88, "2026-11-20T07:59:59Z")),
    "operations_none": lambda: tenant_inputs(operations=None),
    "operations_empty_stamp": lambda: tenant_inputs(operations=SourceStamp()),
}

REVIEW_CHANGES = {
    "review_id": lambda: review_inputs(review_id=12),
    "tenant_id": lambda: review_inputs(tenant_id=8),
    "tenant_external_id": lambda: review_inputs(tenant_external_id="00000000-0000-0000-0000-000000000000"),
    "tenant_name": lambda: review_inputs(tenant_name="Fabrikam"),
    "status": lambda: review_inputs(status="archived"),
    "published_at": lambda: review_inputs(published_at="2026-11-21T09:30:01Z"),
    "published_at_none": lambda: review_inputs(published_at=None),
    "summary": lambda: review_inputs(summary={"headline": "Good progress!", "key_findings": []}),
    "summary_nested": lambda: review_inputs(
        summary={"headline": "Good progress", "key_findings": [{"title": "MFA gaps", "severity": "medium"}]}
    ),
    "sections": lambda: review_inputs(sections=[{"key": "identity", "title": "Identity", "body": "Text!"}]),
    "sections_order": lambda: review_inputs(
        sections=[{"key": "b", "title": "B", "body": ""}, {"key": "a", "title": "A", "body": ""}]
    ),
    "option_include_pii": lambda: review_inputs(options=PackOptions(include_pii=False, include_operations=False)),
    "option_include_operations": lambda: review_inputs(
        options=PackOptions(include_pii=True, include_operations=True)
    ),
    "evaluated_on": lambda: review_inputs(freshness=FreshnessBasis(evaluated_on="2026-11-22", stale_after_days=7)),
    "stale_after_days": lambda: review_inputs(freshness=FreshnessBasis(evaluated_on="2026-11-21", stale_after_days=3)),
}


class TestStability:
    def test_shape(self):
        assert HEX64.match(BASE)
        assert HEX64.match(BASE_REVIEW)

    def test_separately_constructed_equal_inputs_agree(self):
        first, second = tenant_inputs(), tenant_inputs()
        assert first is not second and first.hardening is not second.hardening
        assert compute(first) == compute(second) == BASE

    def test_review_inputs_agree(self):
        assert compute(review_inputs()) == compute(review_inputs()) == BASE_REVIEW

    def test_hardening_key_order_does_not_matter(self):
        reordered = {"ca": {"report_only": 3, "policies": 12}, "secure_score": 71.5, "mfa_enforced": True}
        assert list(reordered) != list(tenant_inputs().hardening)
        assert compute(tenant_inputs(hardening=reordered)) == BASE

    def test_report_key_order_does_not_matter(self):
        reports = tenant_inputs().reports
        reordered = {k: reports[k] for k in reversed(list(reports))}
        assert compute(tenant_inputs(reports=reordered)) == BASE

    def test_review_summary_key_order_does_not_matter(self):
        summary = {"key_findings": [{"severity": "high", "title": "MFA gaps"}], "headline": "Good progress"}
        assert compute(review_inputs(summary=summary)) == BASE_REVIEW

    def test_is_the_sha256_of_the_documented_canonical_document(self):
        # Written out by hand so that a change in the canonical form (which would stop old packs
        # from being reused) shows up here.
        document = {
            "format": PACK_FORMAT_VERSION,
            "kind": "tenant",
            "inputs": {
                "tenant_id": 7,
                "tenant_external_id": EXTERNAL_ID,
                "tenant_name": "Contoso Ltd",
                "options": {"include_pii": True, "include_operations": True},
                "findings_changes": 4213,
                "hardening": {"mfa_enforced": True, "secure_score": 71.5, "ca": {"policies": 12, "report_only": 3}},
                "hardening_updated_at": None,
                "reports": {
                    "entra.admin_roles": {
                        "report_id": 5,
                        "fingerprint": "r-abc",
                        "generated_at": "2026-11-18T06:00:00Z",
                    },
                    "permission_posture": {
                        "report_id": 6,
                        "fingerprint": "r-def",
                        "generated_at": "2026-11-19T06:00:00Z",
                    },
                },
                "operations_since": "2026-10-21",
                "operations": {"count": 4, "max_id": 88, "latest_change": "2026-11-20T07:59:00Z"},
                "operations_completed": None,
                "freshness": {"evaluated_on": "2026-11-21", "stale_after_days": 7},
            },
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert BASE == hashlib.sha256(text.encode()).hexdigest()

    def test_pinned_value_for_the_current_format(self):
        assert PACK_FORMAT_VERSION == 4
        empty = TenantPackInputs(
            tenant_id=1,
            tenant_external_id="00000000-0000-0000-0000-000000000001",
            tenant_name="T",
            options=PackOptions(include_pii=False, include_operations=False),
            findings_changes=0,
            hardening={},
        )
        expected_text = (
            '{"format":4,"inputs":{"findings_changes":0,"freshness":null,"hardening":{},'
            '"hardening_updated_at":null,"operations":null,"operations_completed":null,"operations_since":null,'
            '"options":{"include_operations":false,"include_pii":false},'
            '"reports":{},"tenant_external_id":"00000000-0000-0000-0000-000000000001","tenant_id":1,'
            '"tenant_name":"T"},"kind":"tenant"}'
        )
        assert compute(empty) == hashlib.sha256(expected_text.encode()).hexdigest()

    def test_compute_does_not_mutate_inputs(self):
        inputs = tenant_inputs()
        before = dataclasses.asdict(inputs)
        compute(inputs)
        assert dataclasses.asdict(inputs) == before


class TestSensitivity:
    @pytest.mark.parametrize("change", list(TENANT_CHANGES))
    def test_each_tenant_field_moves_the_fingerprint(self, change):
        changed = compute(TENANT_CHANGES[change]())
        assert HEX64.match(changed)
        assert changed != BASE

    def test_all_tenant_changes_are_distinct_from_each_other(self):
        results = {name: compute(make()) for name, make in TENANT_CHANGES.items()}
        assert len(set(results.values())) == len(results)

    @pytest.mark.parametrize("change", list(REVIEW_CHANGES))
    def test_each_review_field_moves_the_fingerprint(self, change):
        assert compute(REVIEW_CHANGES[change]()) != BASE_REVIEW

    def test_all_review_changes_are_distinct_from_each_other(self):
        results = {name: compute(make()) for name, make in REVIEW_CHANGES.items()}
        assert len(set(results.values())) == len(results)

    @pytest.mark.parametrize("pii, ops", list(itertools.product([True, False], repeat=2)))
    def test_each_option_combination_has_its_own_fingerprint(self, pii, ops):
        others = {
            compute(tenant_inputs(options=PackOptions(include_pii=p, include_operations=o)))
            for p, o in itertools.product([True, False], repeat=2)
            if (p, o) != (pii, ops)
        }
        mine = compute(tenant_inputs(options=PackOptions(include_pii=pii, include_operations=ops)))
        assert mine not in others


class TestKinds:
    def test_tenant_and_review_inputs_never_collide(self):
        assert BASE != BASE_REVIEW

    def test_kind_is_part_of_the_document_even_for_look_alike_inputs(self, monkeypatch):
        # Make both kinds' documents the same dict: only "kind" can tell them apart.
        same = {"x": 1}
        monkeypatch.setattr(fingerprint, "_plain", lambda _inputs: same)
        assert compute(tenant_inputs()) != compute(review_inputs())

    def test_kind_labels(self, monkeypatch):
        seen = []
        real = fingerprint.canonical

        def spy(value):
            seen.append(value["kind"])
            return real(value)

        monkeypatch.setattr(fingerprint, "canonical", spy)
        compute(tenant_inputs())
        compute(review_inputs())
        assert seen == ["tenant", "review"]


class TestFormatVersion:
    def test_bump_changes_every_fingerprint(self, monkeypatch):
        monkeypatch.setattr(fingerprint, "PACK_FORMAT_VERSION", PACK_FORMAT_VERSION + 1)
        assert compute(tenant_inputs()) != BASE
        assert compute(review_inputs()) != BASE_REVIEW

    def test_bumped_fingerprint_is_itself_stable(self, monkeypatch):
        monkeypatch.setattr(fingerprint, "PACK_FORMAT_VERSION", PACK_FORMAT_VERSION + 1)
        assert compute(tenant_inputs()) == compute(tenant_inputs())

    def test_restoring_the_version_restores_the_fingerprint(self, monkeypatch):
        monkeypatch.setattr(fingerprint, "PACK_FORMAT_VERSION", 99)
        bumped = compute(tenant_inputs())
        monkeypatch.setattr(fingerprint, "PACK_FORMAT_VERSION", PACK_FORMAT_VERSION)
        assert compute(tenant_inputs()) == BASE != bumped


class TestCanonical:
    def test_sorted_compact_ascii(self):
        assert canonical({"b": 1, "a": ["é", None, True]}) == b'{"a":["\\u00e9",null,true],"b":1}'

    def test_nested_keys_sorted(self):
        assert canonical({"z": {"y": 1, "x": 2}}) == b'{"z":{"x":2,"y":1}}'

    def test_insertion_order_is_irrelevant(self):
        assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})

    def test_unknown_types_are_stringified(self):
        import datetime as dt

        value = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        assert canonical({"t": value}) == b'{"t":"2026-01-02 03:04:05+00:00"}'

    def test_returns_bytes(self):
        assert isinstance(canonical([]), bytes)


def test_the_fingerprint_document_has_the_shape_asdict_gives():
    """compute() builds the document without deep copies; its JSON is exactly asdict's."""
    from dataclasses import asdict

    from domain.fingerprint import FreshnessBasis, ReportStamp, TenantPackInputs, _plain, canonical
    from domain.options import PackOptions

    inputs = TenantPackInputs(
        tenant_id=1, tenant_external_id="x", tenant_name="T", options=PackOptions(include_pii=False, include_operations=True),
        findings_changes=7, hardening={"mfa": {"state": "on", "list": [1, {"a": None}]}},
        reports={"a": ReportStamp(1, "f", "2026-01-01"), "b": ReportStamp()},
        freshness=FreshnessBasis("2026-11-29", 7),
    )
    assert canonical(_plain(inputs)) == canonical(asdict(inputs))
