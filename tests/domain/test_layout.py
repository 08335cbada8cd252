"""The pack layout: which files, in which order, with which role, and the one timestamp format."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from domain.layout import (
    DISCLOSURE,
    ENTRYPOINT,
    FINDINGS_COLUMNS,
    INCLUDED_FINDING_STATUSES,
    OPERATIONS_COLUMNS,
    OPERATIONS_WINDOW_DAYS,
    REPORTS,
    SEVERITIES,
    FileSpec,
    PackKind,
    Role,
    download_filename,
    iso,
    review_files,
    tenant_files,
)

# Copied from CONTRACT.md, "The pack (ZIP)".
CONTRACT_TENANT_FILES = [
    "executive-summary.html",
    "findings.csv",
    "hardening.json",
    "metadata.json",
    "operations.csv",
    "reports/entra_admin_roles.json",
    "reports/permission_posture.json",
    "summary.json",
]
CONTRACT_REVIEW_FILES = ["executive-summary.html", "metadata.json", "sections.json", "summary.json"]

UTC = dt.timezone.utc


class TestTenantFiles:
    def test_with_operations_equals_the_contract(self):
        assert [f.path for f in tenant_files(include_operations=True)] == CONTRACT_TENANT_FILES

    def test_without_operations_drops_only_operations_csv(self):
        expected = [p for p in CONTRACT_TENANT_FILES if p != "operations.csv"]
        assert [f.path for f in tenant_files(include_operations=False)] == expected

    @pytest.mark.parametrize("include_operations", [True, False])
    def test_sorted_and_unique(self, include_operations):
        paths = [f.path for f in tenant_files(include_operations=include_operations)]
        assert paths == sorted(paths)
        assert len(paths) == len(set(paths))

    def test_every_call_returns_a_fresh_list(self):
        first = tenant_files(include_operations=True)
        first.clear()
        assert len(tenant_files(include_operations=True)) == 8


class TestReviewFiles:
    def test_equals_the_contract(self):
        assert [f.path for f in review_files()] == CONTRACT_REVIEW_FILES

    def test_sorted(self):
        paths = [f.path for f in review_files()]
        assert paths == sorted(paths)


ALL_SPECS = {
    "tenant": tenant_files(include_operations=True),
    "tenant-no-ops": tenant_files(include_operations=False),
    "review": review_files(),
}


class TestRoles:
    @pytest.mark.parametrize("kind", list(ALL_SPECS))
    def test_only_the_executive_summary_is_the_entrypoint(self, kind):
        roles = {f.path: f.role for f in ALL_SPECS[kind]}
        assert [p for p, r in roles.items() if r is Role.ENTRYPOINT] == ["executive-summary.html"]
        assert all(r is Role.APPENDIX for p, r in roles.items() if p != "executive-summary.html")

    @pytest.mark.parametrize("kind", list(ALL_SPECS))
    def test_every_file_has_a_description(self, kind):
        for spec in ALL_SPECS[kind]:
            assert spec.description.strip() == spec.description
            assert spec.description.endswith(".")
            assert len(spec.description) > 10

    def test_role_is_computed_from_the_path(self):
        assert FileSpec("executive-summary.html", "x").role is Role.ENTRYPOINT
        assert FileSpec("anything-else.json", "x").role is Role.APPENDIX

    def test_role_and_kind_values(self):
        assert [r.value for r in Role] == ["entrypoint", "appendix"]
        assert [k.value for k in PackKind] == ["tenant", "review"]

    def test_filespec_is_frozen(self):
        spec = FileSpec("a", "b")
        with pytest.raises(AttributeError):
            spec.path = "c"  # type: ignore[misc]


class TestConstants:
    def test_entrypoint(self):
        assert ENTRYPOINT == "executive-summary.html"

    def test_report_types_and_paths(self):
        assert REPORTS == {
            "entra.admin_roles": "reports/entra_admin_roles.json",
            "permission_posture": "reports/permission_posture.json",
        }

    def test_findings_columns_follow_the_source_table(self):
        assert FINDINGS_COLUMNS == (
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

    def test_operations_columns(self):
        assert OPERATIONS_COLUMNS == (
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

    def test_included_statuses_exclude_resolved(self):
        assert INCLUDED_FINDING_STATUSES == ("new", "acknowledged")

    def test_severities_in_order(self):
        assert SEVERITIES == ("critical", "high", "medium", "low", "informational")

    def test_operations_window(self):
        assert OPERATIONS_WINDOW_DAYS == 30

    def test_disclosure_says_it_is_not_a_certification(self):
        assert "not a certification" in DISCLOSURE
        assert "attestation" in DISCLOSURE
        assert "\n" not in DISCLOSURE


class TestDownloadFilename:
    def test_format(self):
        external_id = "7a1c2f0e-3b4d-4c5e-8f90-123456789abc"
        assert (
            download_filename(external_id, dt.date(2026, 3, 4))
            == "review-pack-7a1c2f0e-3b4d-4c5e-8f90-123456789abc-2026-03-04.zip"
        )

    def test_shape_for_a_random_uuid(self):
        name = download_filename(str(uuid.uuid4()), dt.date(2026, 12, 31))
        assert re.fullmatch(r"review-pack-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}-2026-12-31\.zip", name)

    def test_uuid_object_is_rendered_in_canonical_form(self):
        value = uuid.UUID("7A1C2F0E-3B4D-4C5E-8F90-123456789ABC")
        assert download_filename(value, dt.date(2026, 1, 9)) == (  # type: ignore[arg-type]
            "review-pack-7a1c2f0e-3b4d-4c5e-8f90-123456789abc-2026-01-09.zip"
        )

    def test_date_is_zero_padded(self):
        assert download_filename("x", dt.date(2026, 1, 2)).endswith("-2026-01-02.zip")


class TestIso:
    def test_none(self):
        assert iso(None) is None

    @pytest.mark.parametrize(
        "value, expected",
        [
            (dt.datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC), "2026-11-20T08:00:00Z"),
            (dt.datetime(2026, 11, 20, 8, 0, 0, 999_999, tzinfo=UTC), "2026-11-20T08:00:00Z"),
            (dt.datetime(2026, 11, 20, 10, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-11-20T08:30:15Z"),
            (
                dt.datetime(2026, 11, 20, 3, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
                "2026-11-20T08:30:00Z",
            ),
            (dt.datetime(2026, 1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2025-12-31T23:00:00Z"),
            (dt.datetime(2026, 12, 31, 20, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2027-01-01T01:00:00Z"),
            (dt.datetime(1980, 1, 1, tzinfo=UTC), "1980-01-01T00:00:00Z"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_utc_seconds_trailing_z(self, value, expected):
        assert iso(value) == expected

    def test_same_instant_same_text(self):
        a = dt.datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
        b = a.astimezone(dt.timezone(dt.timedelta(hours=9)))
        assert iso(a) == iso(b) == "2026-05-05T12:00:00Z"

    @pytest.mark.parametrize("value", [dt.datetime(2026, 11, 20, 8, 0), dt.datetime.min])
    def test_naive_is_refused(self, value):
        with pytest.raises(ValueError, match="timezone-aware"):
            iso(value)

    def test_shape(self):
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", iso(dt.datetime.now(UTC)))
