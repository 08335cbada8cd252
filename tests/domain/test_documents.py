"""The JSON and CSV documents inside a pack, built from plain values."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import hashlib
import io
import json
import uuid
import zipfile

import pytest

from domain import layout
from domain.documents import (
    SCHEMA_VERSION,
    InvalidSourceData,
    Provenance,
    compact_json,
    content_sha256,
    data_as_of,
    evidence_freshness,
    file_entries,
    finding_row,
    freshness_entries,
    hardening_document,
    json_bytes,
    metadata_document,
    operation_row,
    report_document,
    review_content,
    review_summary_document,
    severity_counts,
    source_freshness,
    summary_document,
)
from domain.redaction import PII_PLACEHOLDER, PLACEHOLDERS, SECRET_PLACEHOLDER, TEXT_PLACEHOLDER
from domain.ziparchive import DeterministicZip, EntryDigest

EMAIL = PLACEHOLDERS["email"]

UTC = dt.timezone.utc
SUBJECT_ID = uuid.UUID("3f2504e0-4f89-41d3-9a0c-0305e82c3301")
FP = "a" * 64
PROVENANCE = Provenance(pack_id=314, generated_at="2026-11-21T09:05:00Z", generator="reviewpacks 9.9.9")


def _fresh(freshness: dict) -> dict:
    return freshness_entries(freshness, evaluated_on=dt.date(2026, 11, 21), stale_after_days=7)


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, 0, 0, tzinfo=UTC)


def test_schema_version():
    assert SCHEMA_VERSION == 1


def test_invalid_source_data_is_a_value_error():
    assert issubclass(InvalidSourceData, ValueError)


class TestJsonBytes:
    def test_exact_encoding(self):
        assert json_bytes({"b": 1, "a": [1, {"d": None, "c": True}]}) == (
            b'{\n  "a": [\n    1,\n    {\n      "c": true,\n      "d": null\n    }\n  ],\n  "b": 1\n}\n'
        )

    def test_deterministic_whatever_the_insertion_order(self):
        first = {"z": {"b": 2, "a": 1}, "y": [3, 2, 1], "x": "é"}
        second = {"x": "é", "y": [3, 2, 1], "z": {"a": 1, "b": 2}}
        assert json_bytes(first) == json_bytes(second)
        assert json_bytes(first) == json_bytes(copy.deepcopy(first))

    def test_keys_are_sorted_at_every_level(self):
        text = json_bytes({"b": {"y": 1, "x": 2}, "a": 0}).decode()
        assert text.index('"a"') < text.index('"b"')
        assert text.index('"x"') < text.index('"y"')

    @pytest.mark.parametrize("document", [{}, [], None, "text", 1, {"a": "b"}])
    def test_exactly_one_trailing_newline(self, document):
        raw = json_bytes(document)
        assert raw.endswith(b"\n")
        assert not raw.endswith(b"\n\n")
        assert json.loads(raw) == document

    def test_non_ascii_is_written_as_utf8(self):
        assert json_bytes({"name": "Überprüfung ✓"}) == '{\n  "name": "Überprüfung ✓"\n}\n'.encode("utf-8")

    def test_lone_surrogate_does_not_crash(self):
        raw = json_bytes({"title": "bad \ud800 text", "k\udfff": 1})
        text = raw.decode("utf-8")  # strictly valid UTF-8
        assert "\ud800" not in text and "\udfff" not in text
        parsed = json.loads(text)
        assert len(parsed) == 2
        # One character in, one character out: the rest of the text is untouched.
        assert len(parsed["title"]) == len("bad \ud800 text")
        assert parsed["title"][:4] == "bad " and parsed["title"][5:] == " text"

    def test_lone_surrogate_becomes_the_replacement_character(self):
        # documents.json_bytes promises U+FFFD for lone surrogates.
        assert json_bytes({"title": "bad \ud800 text"}) == '{\n  "title": "bad \ufffd text"\n}\n'.encode("utf-8")


class TestCompactJson:
    def test_sorted_compact_unicode(self):
        assert compact_json({"b": [1, 2], "a": {"y": "é", "x": None}}) == '{"a":{"x":null,"y":"é"},"b":[1,2]}'

    def test_scalars(self):
        assert compact_json({}) == "{}"
        assert compact_json([]) == "[]"
        assert compact_json("x") == '"x"'


def finding(**overrides) -> dict:
    row = {
        "id": 101,
        "finding_type": "privileged_role_no_review",
        "severity": "high",
        "status": "new",
        "subject_type": "user",
        "subject_external_id": SUBJECT_ID,
        "subject_display_name": "Jane Doe",
        "title": "Account jane.doe@contoso.com has no MFA",
        "evidence": {
            "role": "Global Administrator",
            "last_sign_in_days": 12,
            "accessToken": "eyJ-secret",
            "userPrincipalName": "jane.doe@contoso.com",
            "notes": ["ping jane.doe@contoso.com"],
            "objectId": str(SUBJECT_ID),
        },
        "first_seen_at": at(1, 8),
        "last_seen_at": at(19, 23),
        "updated_at": dt.datetime(2026, 11, 20, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    }
    row.update(overrides)
    return row


class TestFindingRow:
    def test_columns_follow_the_layout(self):
        row = finding_row(finding(), include_pii=True)
        assert len(row) == len(layout.FINDINGS_COLUMNS) == 12
        assert all(type(cell) is str for cell in row)

    def test_without_pii(self):
        assert finding_row(finding(), include_pii=False) == [
            "101",
            "privileged_role_no_review",
            "high",
            "new",
            "user",
            str(SUBJECT_ID),
            PII_PLACEHOLDER,
            f"Account {EMAIL} has no MFA",
            f'{{"accessToken":"{SECRET_PLACEHOLDER}","last_sign_in_days":12,"notes":["{TEXT_PLACEHOLDER}"],'
            f'"objectId":"{SUBJECT_ID}","role":"Global Administrator","userPrincipalName":"{PII_PLACEHOLDER}"}}',
            "2026-11-01T08:00:00Z",
            "2026-11-19T23:00:00Z",
            "2026-11-20T08:00:00Z",
        ]

    def test_with_pii(self):
        assert finding_row(finding(), include_pii=True) == [
            "101",
            "privileged_role_no_review",
            "high",
            "new",
            "user",
            str(SUBJECT_ID),
            "Jane Doe",
            "Account jane.doe@contoso.com has no MFA",
            f'{{"accessToken":"{SECRET_PLACEHOLDER}","last_sign_in_days":12,"notes":["ping jane.doe@contoso.com"],'
            f'"objectId":"{SUBJECT_ID}","role":"Global Administrator",'
            '"userPrincipalName":"jane.doe@contoso.com"}',
            "2026-11-01T08:00:00Z",
            "2026-11-19T23:00:00Z",
            "2026-11-20T08:00:00Z",
        ]

    def as_dict(self, row: list[str]) -> dict[str, str]:
        return dict(zip(layout.FINDINGS_COLUMNS, row))

    @pytest.mark.parametrize("include_pii", [True, False])
    def test_formula_title_is_neutralised(self, include_pii):
        title = '=HYPERLINK("http://x","y")'
        cells = self.as_dict(finding_row(finding(title=title), include_pii=include_pii))
        assert cells["title"] == "'" + title

    @pytest.mark.parametrize("include_pii", [True, False])
    @pytest.mark.parametrize("column", ["finding_type", "severity", "status", "subject_type"])
    def test_every_text_column_is_neutralised(self, column, include_pii):
        cells = self.as_dict(finding_row(finding(**{column: "@SUM(1)"}), include_pii=include_pii))
        assert cells[column] == "'@SUM(1)"

    def test_formula_display_name_is_neutralised_when_kept(self):
        cells = self.as_dict(finding_row(finding(subject_display_name="-Jane"), include_pii=True))
        assert cells["subject_display_name"] == "'-Jane"

    def test_display_name_redacted_but_subject_id_kept(self):
        cells = self.as_dict(finding_row(finding(), include_pii=False))
        assert cells["subject_display_name"] == PII_PLACEHOLDER
        assert cells["subject_external_id"] == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"

    @pytest.mark.parametrize("include_pii", [True, False])
    def test_missing_display_name_stays_empty(self, include_pii):
        cells = self.as_dict(finding_row(finding(subject_display_name=None), include_pii=include_pii))
        assert cells["subject_display_name"] == ""

    @pytest.mark.parametrize("include_pii", [True, False])
    def test_evidence_is_compact_sorted_and_without_secrets(self, include_pii):
        evidence = {"z": 1, "a": {"client_secret": "hunter2", "y": [1, 2]}, "password": "pw"}
        cells = self.as_dict(finding_row(finding(evidence=evidence), include_pii=include_pii))
        assert cells["evidence"] == (
            f'{{"a":{{"client_secret":"{SECRET_PLACEHOLDER}","y":[1,2]}},"password":"{SECRET_PLACEHOLDER}","z":1}}'
        )
        assert "hunter2" not in cells["evidence"]
        assert json.loads(cells["evidence"])["a"]["client_secret"] == SECRET_PLACEHOLDER

    @pytest.mark.parametrize(
        "evidence, expected",
        [(None, "{}"), ({}, "{}"), ([], "[]"), ([{"b": 1, "a": 2}], '[{"a":2,"b":1}]')],
    )
    def test_evidence_defaults(self, evidence, expected):
        cells = self.as_dict(finding_row(finding(evidence=evidence), include_pii=True))
        assert cells["evidence"] == expected

    def test_evidence_input_not_mutated(self):
        row = finding()
        before = copy.deepcopy(row)
        finding_row(row, include_pii=False)
        assert row == before

    def test_optional_columns_may_be_missing(self):
        optional = ("subject_external_id", "subject_display_name", "first_seen_at", "last_seen_at", "updated_at")
        row = finding()
        for key in (*optional, "evidence"):
            del row[key]
        cells = self.as_dict(finding_row(row, include_pii=False))
        assert [cells[c] for c in optional] == [""] * 5
        assert cells["evidence"] == "{}"

    @pytest.mark.parametrize("include_pii", [True, False])
    def test_missing_title_is_empty(self, include_pii):
        cells = self.as_dict(finding_row(finding(title=None), include_pii=include_pii))
        assert cells["title"] == ""

    def test_naive_timestamps_are_refused(self):
        with pytest.raises(ValueError):
            finding_row(finding(updated_at=dt.datetime(2026, 11, 20)), include_pii=True)

    def test_rows_survive_a_csv_round_trip(self):
        rows = [list(layout.FINDINGS_COLUMNS)] + [
            finding_row(finding(id=i, title=t), include_pii=False)
            for i, t in enumerate(['=1+1', 'a "quoted", title', "line\nbreak", "\tx"], start=1)
        ]
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        buffer.seek(0)
        back = list(csv.reader(buffer))
        assert back == rows
        assert [r[7] for r in back[1:]] == ["'=1+1", 'a "quoted", title', "line\nbreak", "'\tx"]


def operation(**overrides) -> dict:
    row = {
        "id": 5,
        "type": "inventory.sync",
        "status": "completed",
        "outcome": "failed",
        "context": {"reason_code": "timeout", "token": "abc", "detail": "x"},
        "initiator_user_id": 3,
        "created_at": at(20, 7),
        "started_at": None,
        "completed_at": dt.datetime(2026, 11, 20, 9, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    }
    row.update(overrides)
    return row


class TestOperationRow:
    def test_exact_row(self):
        assert operation_row(operation()) == [
            "5",
            "inventory.sync",
            "completed",
            "failed",
            "timeout",
            "3",
            "2026-11-20T07:00:00Z",
            "",
            "2026-11-20T08:05:00Z",
        ]

    def test_columns_follow_the_layout(self):
        assert len(operation_row(operation())) == len(layout.OPERATIONS_COLUMNS) == 9

    @pytest.mark.parametrize(
        "context, expected",
        [
            ({"reason_code": "storage_error"}, "storage_error"),
            ({}, ""),
            (None, ""),
            ({"other": 1}, ""),
            (["reason_code"], ""),
            ("corrupt", ""),
            ({"reason_code": "=cmd"}, "'=cmd"),
        ],
        ids=repr,
    )
    def test_reason_code_comes_from_the_context(self, context, expected):
        cells = dict(zip(layout.OPERATIONS_COLUMNS, operation_row(operation(context=context))))
        assert cells["reason_code"] == expected

    def test_optional_columns_may_be_missing(self):
        row = {"id": 1, "type": "t", "status": "queued"}
        assert operation_row(row) == ["1", "t", "queued", "", "", "", "", "", ""]

    def test_context_secrets_never_reach_the_row(self):
        assert "abc" not in operation_row(operation())


class TestHardeningDocument:
    def test_none_is_empty(self):
        assert hardening_document(None, include_pii=False) == {"hardening": {}}

    @pytest.mark.parametrize("include_pii", [True, False])
    def test_empty_dict(self, include_pii):
        assert hardening_document({}, include_pii=include_pii) == {"hardening": {}}

    def test_scrubbed_without_pii(self):
        hardening = {
            "mfa_enforced": True,
            "break_glass": [{"displayName": "BG One", "id": str(SUBJECT_ID)}],
            "alert_webhookUrl": "https://hooks.example/abc",
            "contact": "secops@contoso.com",
        }
        assert hardening_document(hardening, include_pii=False) == {
            "hardening": {
                "mfa_enforced": True,
                "break_glass": [{"displayName": PII_PLACEHOLDER, "id": str(SUBJECT_ID)}],
                "alert_webhookUrl": SECRET_PLACEHOLDER,
                "contact": PII_PLACEHOLDER,
            }
        }

    def test_scrubbed_with_pii(self):
        hardening = {"contact": "secops@contoso.com", "api_key": "k"}
        assert hardening_document(hardening, include_pii=True) == {
            "hardening": {"contact": "secops@contoso.com", "api_key": SECRET_PLACEHOLDER}
        }

    @pytest.mark.parametrize("value", ["corrupt", [1, 2], [], 5, True, 0.5])
    def test_non_object_is_invalid_source_data(self, value):
        with pytest.raises(InvalidSourceData, match=r"^the tenant's hardening status is not a JSON object$"):
            hardening_document(value, include_pii=True)

    def test_input_not_mutated(self):
        hardening = {"password": "x", "nested": {"mail": "a@b.com"}}
        before = copy.deepcopy(hardening)
        hardening_document(hardening, include_pii=False)
        assert hardening == before


class TestReportDocument:
    @pytest.mark.parametrize("report_type", list(layout.REPORTS))
    @pytest.mark.parametrize("include_pii", [True, False])
    def test_missing_report_is_an_empty_structure(self, report_type, include_pii):
        assert report_document(report_type, None, include_pii=include_pii) == {
            "report_type": report_type,
            "available": False,
            "generated_at": None,
            "payload": {},
        }

    def test_stored_report(self):
        report = {
            "id": 6,
            "report_type": "entra.admin_roles",
            "fingerprint": "r-1",
            "generated_at": at(19, 6),
            "payload": {
                "roles": [{"role": "Global Administrator", "members": [{"displayName": "Olivia Ops", "id": "u-1"}]}],
                "graph_token": "abc",
            },
        }
        assert report_document("entra.admin_roles", report, include_pii=False) == {
            "report_type": "entra.admin_roles",
            "available": True,
            "generated_at": "2026-11-19T06:00:00Z",
            "payload": {
                "roles": [
                    # "u-1" is no UUID: under a person's key it could name one, so it goes too.
                    {"role": "Global Administrator", "members": [{"displayName": PII_PLACEHOLDER, "id": PII_PLACEHOLDER}]}
                ],
                "graph_token": SECRET_PLACEHOLDER,
            },
        }
        kept = report_document("entra.admin_roles", report, include_pii=True)
        assert kept["payload"]["roles"][0]["members"][0]["displayName"] == "Olivia Ops"
        assert kept["payload"]["graph_token"] == SECRET_PLACEHOLDER

    def test_list_payload_is_accepted(self):
        report = {"id": 1, "payload": [{"a": 1}], "generated_at": None}
        assert report_document("permission_posture", report, include_pii=True) == {
            "report_type": "permission_posture",
            "available": True,
            "generated_at": None,
            "payload": [{"a": 1}],
        }

    def test_empty_dict_payload_is_available(self):
        report = {"id": 1, "payload": {}, "generated_at": at(1)}
        assert report_document("permission_posture", report, include_pii=True)["available"] is True

    @pytest.mark.parametrize("payload", ["corrupt", None, 5, True, b"{}"], ids=repr)
    def test_non_object_payload_is_invalid_source_data(self, payload):
        report = {"id": 6, "payload": payload, "generated_at": at(19)}
        with pytest.raises(InvalidSourceData) as excinfo:
            report_document("permission_posture", report, include_pii=True)
        assert str(excinfo.value) == "stored report 6 (permission_posture) has no JSON object payload"

    def test_report_without_payload_key(self):
        with pytest.raises(InvalidSourceData):
            report_document("permission_posture", {"id": 2}, include_pii=True)


class TestDataAsOf:
    @pytest.mark.parametrize(
        "freshness, expected",
        [
            ({}, None),
            ({"a": None, "b": None}, None),
            ({"a": ""}, None),
            ({"a": "2026-11-20T08:00:00Z"}, "2026-11-20"),
            ({"a": "2026-11-20T08:00:00Z", "b": "2026-11-21T00:00:00Z", "c": None}, "2026-11-20"),
            ({"z": "2025-12-31T23:59:59Z", "a": "2026-01-01T00:00:00Z"}, "2025-12-31"),
            ({"a": "2026-11-21T00:00:00Z", "b": "2026-11-20T23:59:59Z"}, "2026-11-20"),
        ],
    )
    def test_oldest_date(self, freshness, expected):
        # The pack is only as current as its least current source.
        assert data_as_of(freshness) == expected


class TestSeverityCounts:
    def test_fixed_keys_in_order_even_when_zero(self):
        assert list(severity_counts({}).items()) == [
            ("critical", 0),
            ("high", 0),
            ("medium", 0),
            ("low", 0),
            ("informational", 0),
        ]

    def test_unknown_severities_kept_after_the_fixed_ones_sorted(self):
        counts = severity_counts({"urgent": 2, "high": 3, "bogus": 1, "critical": 1})
        assert list(counts.items()) == [
            ("critical", 1),
            ("high", 3),
            ("medium", 0),
            ("low", 0),
            ("informational", 0),
            ("bogus", 1),
            ("urgent", 2),
        ]

    def test_values_are_ints(self):
        counts = severity_counts({"high": 3.0, "odd": True})
        assert counts["high"] == 3 and type(counts["high"]) is int
        assert counts["odd"] == 1 and type(counts["odd"]) is int


class TestSummaryDocument:
    def test_exact(self):
        document = summary_document(
            by_severity={"high": 3, "critical": 1, "urgent": 2},
            by_status={"new": 4, "acknowledged": 2, "resolved": 9},
            operations=4,
            freshness=_fresh({"operations": "2026-11-10T07:59:00Z", "findings": "2026-11-20T08:00:00Z", "hardening": None}),
        )
        assert document == {
            "schema_version": 1,
            "counts": {
                "findings": {
                    "total": 6,
                    "by_severity": {
                        "critical": 1,
                        "high": 3,
                        "medium": 0,
                        "low": 0,
                        "informational": 0,
                        "urgent": 2,
                    },
                    "by_status": {"new": 4, "acknowledged": 2},
                },
                "operations": 4,
            },
            "data_as_of": "2026-11-10",
            "data_freshness": {
                "findings": {"as_of": "2026-11-20T08:00:00Z", "age_days": 1, "status": "current"},
                "hardening": {"as_of": None, "age_days": None, "status": "missing"},
                "operations": {"as_of": "2026-11-10T07:59:00Z", "age_days": 11, "status": "stale"},
            },
        }
        assert list(document["data_freshness"]) == ["findings", "hardening", "operations"]
        assert list(document["counts"]["findings"]["by_status"]) == ["new", "acknowledged"]

    def test_empty_tenant(self):
        document = summary_document(by_severity={}, by_status={}, operations=None, freshness=_fresh({"findings": None}))
        assert document["counts"] == {
            "findings": {
                "total": 0,
                "by_severity": {"critical": 0, "high": 0, "medium": 0, "low": 0, "informational": 0},
                "by_status": {"new": 0, "acknowledged": 0},
            },
            "operations": None,
        }
        assert document["data_as_of"] is None

    def test_total_counts_unknown_severities(self):
        document = summary_document(
            by_severity={"critical": 1, "weird": 5}, by_status={}, operations=0, freshness={}
        )
        assert document["counts"]["findings"]["total"] == 6
        assert document["counts"]["operations"] == 0

    def test_serialises_deterministically(self):
        kwargs = dict(by_severity={"low": 1}, by_status={"new": 1}, operations=None, freshness=_fresh({"b": None, "a": None}))
        assert json_bytes(summary_document(**kwargs)) == json_bytes(summary_document(**kwargs))


def _digests(paths) -> dict[str, EntryDigest]:
    return {p: EntryDigest(p, hashlib.sha256(p.encode()).hexdigest(), len(p)) for p in paths}


class TestFileEntries:
    def test_tenant_files(self):
        specs = layout.tenant_files(include_operations=True)
        digests = _digests(s.path for s in specs if s.path != "metadata.json")
        entries = file_entries(specs, digests)
        assert [e["path"] for e in entries] == [
            "executive-summary.html",
            "findings.csv",
            "hardening.json",
            "operations.csv",
            "reports/entra_admin_roles.json",
            "reports/permission_posture.json",
            "summary.json",
        ]
        for entry, spec in zip(entries, [s for s in specs if s.path != "metadata.json"]):
            assert entry == {
                "path": spec.path,
                "role": "entrypoint" if spec.path == "executive-summary.html" else "appendix",
                "description": spec.description,
                "sha256": digests[spec.path].sha256,
                "size": digests[spec.path].size,
            }

    def test_metadata_is_never_listed_even_if_a_digest_exists(self):
        specs = layout.review_files()
        entries = file_entries(specs, _digests(s.path for s in specs))
        assert [e["path"] for e in entries] == ["executive-summary.html", "sections.json", "summary.json"]

    def test_a_missing_digest_is_an_error(self):
        with pytest.raises(KeyError):
            file_entries(layout.review_files(), _digests(["executive-summary.html", "summary.json"]))


class TestMetadataDocument:
    FRESHNESS = _fresh({"operations": "2026-11-20T07:59:00Z", "findings": "2026-11-20T08:00:00Z", "entra_admin_roles": None})

    def document(self, include_operations: bool = True) -> dict:
        specs = layout.tenant_files(include_operations=include_operations)
        files = file_entries(specs, _digests(s.path for s in specs if s.path != "metadata.json"))
        return metadata_document(
            kind=layout.PackKind.TENANT,
            identity={"tenant": {"name": "Contoso", "external_id": str(SUBJECT_ID)}},
            fingerprint=FP,
            options={"include_pii": False, "include_operations": include_operations},
            freshness=self.FRESHNESS,
            files=files,
            provenance=PROVENANCE,
        )

    def test_top_level_keys(self):
        assert sorted(self.document()) == sorted(
            [
                "schema_version",
                "kind",
                "pack",
                "generator",
                "content_sha256",
                "fingerprint",
                "options",
                "data_as_of",
                "data_freshness",
                "entrypoint",
                "appendix",
                "files",
                "disclosure",
                "archive",
            ]
        )

    def test_archive_states_the_deflate_implementation(self):
        from domain.ziparchive import DEFLATE

        assert self.document()["archive"] == {"deflate": DEFLATE}

    def test_identity_fingerprint_options(self):
        document = self.document()
        assert document["schema_version"] == 1
        assert document["kind"] == "tenant"
        assert document["pack"] == {
            "tenant": {"name": "Contoso", "external_id": str(SUBJECT_ID)},
            "id": 314,
            "generated_at": "2026-11-21T09:05:00Z",
        }
        assert document["generator"] == "reviewpacks 9.9.9"
        assert document["fingerprint"] == FP
        assert document["options"] == {"include_pii": False, "include_operations": True}

    def test_entrypoint_and_disclosure(self):
        document = self.document()
        assert document["entrypoint"] == "executive-summary.html"
        assert document["disclosure"] == layout.DISCLOSURE

    @pytest.mark.parametrize("include_operations", [True, False])
    def test_appendix_is_sorted_and_includes_metadata(self, include_operations):
        expected = [
            "findings.csv",
            "hardening.json",
            "metadata.json",
            *(["operations.csv"] if include_operations else []),
            "reports/entra_admin_roles.json",
            "reports/permission_posture.json",
            "summary.json",
        ]
        assert self.document(include_operations)["appendix"] == expected

    @pytest.mark.parametrize("include_operations", [True, False])
    def test_files_exclude_metadata_and_carry_digests(self, include_operations):
        files = self.document(include_operations)["files"]
        paths = [f["path"] for f in files]
        assert "metadata.json" not in paths
        assert paths == [
            s.path for s in layout.tenant_files(include_operations=include_operations) if s.path != "metadata.json"
        ]
        for f in files:
            assert f["sha256"] == hashlib.sha256(f["path"].encode()).hexdigest()
            assert f["size"] == len(f["path"])
            assert f["role"] == ("entrypoint" if f["path"] == "executive-summary.html" else "appendix")

    def test_freshness(self):
        document = self.document()
        assert document["data_as_of"] == "2026-11-20"
        assert list(document["data_freshness"]) == ["entra_admin_roles", "findings", "operations"]

    def test_review_metadata(self):
        specs = layout.review_files()
        document = metadata_document(
            kind=layout.PackKind.REVIEW,
            identity={"review": {"id": 11, "published_at": "2026-11-21T09:30:00Z"}},
            fingerprint=FP,
            options={"include_pii": True, "include_operations": False},
            freshness=_fresh({"review": "2026-11-21T09:30:00Z"}),
            files=file_entries(specs, _digests(s.path for s in specs)),
            provenance=PROVENANCE,
        )
        assert document["kind"] == "review"
        assert document["appendix"] == ["metadata.json", "sections.json", "summary.json"]
        assert [f["path"] for f in document["files"]] == ["executive-summary.html", "sections.json", "summary.json"]
        assert document["data_as_of"] == "2026-11-21"

    def test_inputs_are_copied_not_shared(self):
        identity = {"tenant": {"name": "Contoso"}}
        options = {"include_pii": True}
        document = metadata_document(
            kind=layout.PackKind.TENANT,
            identity=identity,
            fingerprint=FP,
            options=options,
            freshness={},
            files=[],
            provenance=PROVENANCE,
        )
        assert document["pack"] is not identity
        assert document["options"] is not options
        assert document["appendix"] == ["metadata.json"]
        assert document["data_as_of"] is None

    def test_metadata_in_a_real_archive_lists_every_other_file_with_its_digest(self):
        specs = layout.tenant_files(include_operations=True)
        contents = {s.path: f"content of {s.path}\n".encode() for s in specs}
        out = io.BytesIO()
        with DeterministicZip(out) as archive:
            digests: dict[str, EntryDigest] = {}
            for spec in specs:
                if spec.path == "metadata.json":
                    # Files after metadata.json are known up front, as in the pipeline's ready documents.
                    later = {
                        s.path: EntryDigest(s.path, hashlib.sha256(contents[s.path]).hexdigest(), len(contents[s.path]))
                        for s in specs
                        if s.path > "metadata.json"
                    }
                    document = metadata_document(
                        kind=layout.PackKind.TENANT,
                        identity={},
                        fingerprint=FP,
                        options={},
                        freshness={},
                        files=file_entries(specs, {**digests, **later}),
                        provenance=PROVENANCE,
                    )
                    archive.write_bytes(spec.path, json_bytes(document))
                else:
                    digests[spec.path] = archive.write_bytes(spec.path, contents[spec.path])
        with zipfile.ZipFile(out) as zf:
            metadata = json.loads(zf.read("metadata.json"))
            listed = {f["path"]: f for f in metadata["files"]}
            assert sorted(listed) == sorted(set(zf.namelist()) - {"metadata.json"})
            for path, entry in listed.items():
                data = zf.read(path)
                assert entry["sha256"] == hashlib.sha256(data).hexdigest()
                assert entry["size"] == len(data)
            # content_sha256 is what `sha256sum <content entries, sorted> | sha256sum` prints.
            content = sorted(set(zf.namelist()) - {"metadata.json", "executive-summary.html"})
            listing = "".join(f"{hashlib.sha256(zf.read(p)).hexdigest()}  {p}\n" for p in content)
            assert metadata["content_sha256"] == hashlib.sha256(listing.encode()).hexdigest()


REVIEW = {
    "id": 11,
    "status": "published",
    "published_at": dt.datetime(2026, 11, 21, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    "summary": {
        "headline": "Solid controls; ask jane.doe@contoso.com about privileged access.",
        "overall_status": "needs attention",
        "key_findings": [
            {"title": "Four apps hold high privilege", "severity": "high", "detail": "Review consent."},
            {"title": "No severity given"},
        ],
        "accepted_risks": [
            {"title": "Legacy auth for a scanner", "justification": "Vendor upgrade.", "expires": "2027-03-31"},
            {"title": "No justification"},
        ],
        "decisions": [{"title": "Quarterly access review", "detail": "Owner: security team."}, {"title": "Bare"}],
        "evidence_basis": [{"source": "findings", "as_of": "2026-11-20"}, {"source": "hardening"}],
        "reviewer": {"displayName": "Rita Reviewer", "id": "u-9"},
        "api_token": "leak",
    },
    "sections": [
        {"key": "identity", "title": "Identity", "body": "MFA is enforced."},
        {"key": "apps", "body": {"table": [["app", "scope"]]}},
        {"title": "Listed", "body": ["a", "b"]},
        {"body": None},
        {"key": "", "title": "", "body": "Mail ops@contoso.com"},
    ],
}


class TestReviewContent:
    def test_defaults_for_an_empty_review(self):
        assert review_content({}, include_pii=True) == {
            "headline": None,
            "overall_status": None,
            "key_findings": [],
            "accepted_risks": [],
            "decisions": [],
            "evidence_basis": [],
            "sections": [],
            "raw_summary": {},
            "raw_sections": [],
        }

    def test_none_summary_and_sections_are_empty(self):
        content = review_content({"summary": None, "sections": None}, include_pii=False)
        assert content["raw_summary"] == {} and content["raw_sections"] == []

    def test_full_review_without_pii(self):
        content = review_content(REVIEW, include_pii=False)
        assert content["headline"] == f"Solid controls; ask {EMAIL} about privileged access."
        assert content["overall_status"] == "needs attention"
        assert content["key_findings"] == [
            {"title": "Four apps hold high privilege", "severity": "high", "detail": "Review consent."},
            {"title": "No severity given", "severity": "unrated", "detail": ""},
        ]
        assert content["accepted_risks"] == [
            {"title": "Legacy auth for a scanner", "justification": "Vendor upgrade.", "expires": "2027-03-31"},
            {"title": "No justification", "justification": "", "expires": None},
        ]
        assert content["decisions"] == [
            {"title": "Quarterly access review", "detail": "Owner: security team."},
            {"title": "Bare", "detail": ""},
        ]
        assert content["evidence_basis"] == [
            {"source": "findings", "as_of": "2026-11-20"},
            {"source": "hardening", "as_of": None},
        ]
        assert content["sections"] == [
            {"title": "Identity", "body": "MFA is enforced.", "structured_body": None},
            # Without personal data, strings under keys the policy does not know are masked in a structured body too.
            {"title": "apps", "body": "", "structured_body": {"table": [[PLACEHOLDERS["text"], PLACEHOLDERS["text"]]]}},
            {"title": "Listed", "body": "", "structured_body": ["a", "b"]},
            {"title": "Untitled section", "body": "", "structured_body": None},
            {"title": "Untitled section", "body": f"Mail {EMAIL}", "structured_body": None},
        ]
        assert content["raw_summary"]["reviewer"] == {"displayName": PII_PLACEHOLDER, "id": PII_PLACEHOLDER}
        assert content["raw_summary"]["api_token"] == SECRET_PLACEHOLDER

    def test_structured_section_bodies_are_kept_for_the_page_and_the_raw_sections(self):
        content = review_content(REVIEW, include_pii=True)
        assert content["raw_sections"][1]["body"] == {"table": [["app", "scope"]]}
        assert content["raw_sections"][2]["body"] == ["a", "b"]
        assert [s["body"] for s in content["sections"]] == ["MFA is enforced.", "", "", "", "Mail ops@contoso.com"]
        assert all(type(s["body"]) is str for s in content["sections"])
        assert [s["structured_body"] for s in content["sections"]][1:3] == [{"table": [["app", "scope"]]}, ["a", "b"]]

    def test_with_pii_names_and_addresses_stay_but_secrets_do_not(self):
        content = review_content(REVIEW, include_pii=True)
        assert content["headline"] == REVIEW["summary"]["headline"]
        assert content["raw_summary"]["reviewer"]["displayName"] == "Rita Reviewer"
        assert content["raw_summary"]["api_token"] == SECRET_PLACEHOLDER
        assert "leak" not in json.dumps(content)

    def test_text_fields_are_stringified(self):
        content = review_content(
            {"summary": {"headline": 5, "key_findings": [{"title": 7, "severity": 1, "detail": 2.5}]}},
            include_pii=True,
        )
        assert content["headline"] == "5"
        assert content["key_findings"] == [{"title": "7", "severity": "1", "detail": "2.5"}]

    def test_input_not_mutated(self):
        review = copy.deepcopy(REVIEW)
        review_content(review, include_pii=False)
        assert review == REVIEW

    @pytest.mark.parametrize(
        "review",
        [
            {"summary": "corrupt"},
            {"summary": [1]},
            {"summary": 5},
            {"sections": "corrupt"},
            {"sections": {"key": "a"}},
            {"sections": ["text"]},
            {"sections": [{"title": "ok"}, None]},
            {"summary": {"key_findings": {"title": "x"}}},
            {"summary": {"key_findings": ["x"]}},
            {"summary": {"key_findings": "x"}},
            {"summary": {"accepted_risks": [None]}},
            {"summary": {"decisions": 5}},
            {"summary": {"evidence_basis": [["findings"]]}},
            {"summary": {"headline": {"text": "x"}}},
            {"summary": {"overall_status": ["ok"]}},
            {"summary": {"key_findings": [{"title": {"nested": 1}}]}},
            {"summary": {"accepted_risks": [{"title": "x", "expires": ["2027"]}]}},
            {"sections": [{"title": ["a"]}]},
            {"sections": [{"key": {"a": 1}}]},
        ],
        ids=repr,
    )
    def test_wrong_shapes_are_invalid_source_data(self, review):
        with pytest.raises(InvalidSourceData):
            review_content(review, include_pii=True)


class TestReviewSummaryDocument:
    def test_exact(self):
        content = review_content(REVIEW, include_pii=False)
        document = review_summary_document(REVIEW, content)
        assert document == {
            "schema_version": 1,
            "review": {"id": 11, "status": "published", "published_at": "2026-11-21T09:30:00Z"},
            "counts": {"key_findings": 2, "accepted_risks": 2, "decisions": 2, "sections": 5},
            "summary": content["raw_summary"],
        }
        assert document["summary"]["headline"] == f"Solid controls; ask {EMAIL} about privileged access."

    def test_unpublished_time(self):
        content = review_content({}, include_pii=True)
        document = review_summary_document({"id": 1, "status": "draft"}, content)
        assert document["review"] == {"id": 1, "status": "draft", "published_at": None}
        assert document["counts"] == {"key_findings": 0, "accepted_risks": 0, "decisions": 0, "sections": 0}


class TestFreshness:
    EVALUATED = dt.date(2026, 11, 21)

    @pytest.mark.parametrize(
        "as_of, age, status",
        [
            ("2026-11-21T23:59:59Z", 0, "current"),
            ("2026-11-14T00:00:00Z", 7, "current"),  # exactly the threshold is not yet older than it
            ("2026-11-13T23:59:59Z", 8, "stale"),
            ("2025-11-21", 365, "stale"),
            ("2026-11-25T00:00:00Z", 0, "current"),  # stamped in the future by a skewed host clock
            (None, None, "missing"),
            ("", None, "missing"),
            ("last tuesday", None, "missing"),
            ("2026-13-45", None, "missing"),
        ],
    )
    def test_status_and_age(self, as_of, age, status):
        entry = source_freshness(as_of, evaluated_on=self.EVALUATED, stale_after_days=7)
        assert entry == {"as_of": as_of, "age_days": age, "status": status}

    def test_threshold_is_the_setting(self):
        assert source_freshness("2026-11-19", evaluated_on=self.EVALUATED, stale_after_days=1)["status"] == "stale"
        assert source_freshness("2026-11-19", evaluated_on=self.EVALUATED, stale_after_days=2)["status"] == "current"

    def test_entries_are_sorted_by_source(self):
        entries = freshness_entries({"b": None, "a": "2026-11-21"}, evaluated_on=self.EVALUATED, stale_after_days=7)
        assert list(entries) == ["a", "b"]

    def test_evidence_basis_items_gain_age_and_status(self):
        evidence = evidence_freshness(
            [{"source": "findings", "as_of": "2026-11-01"}, {"source": "hardening", "as_of": None}],
            evaluated_on=self.EVALUATED,
            stale_after_days=7,
        )
        assert evidence == [
            {"source": "findings", "as_of": "2026-11-01", "age_days": 20, "status": "stale"},
            {"source": "hardening", "as_of": None, "age_days": None, "status": "missing"},
        ]

    def test_review_summary_states_the_evidence_basis(self):
        content = review_content(REVIEW, include_pii=True)
        evidence = evidence_freshness(content["evidence_basis"], evaluated_on=self.EVALUATED, stale_after_days=7)
        freshness = freshness_entries({"review": "2026-11-21T09:30:00Z"}, evaluated_on=self.EVALUATED, stale_after_days=7)
        document = review_summary_document(REVIEW, content, evidence=evidence, freshness=freshness)
        assert document["evidence_basis"] == evidence
        assert document["data_freshness"] == {"review": {"as_of": "2026-11-21T09:30:00Z", "age_days": 0, "status": "current"}}


class TestContentSha256:
    FILES = [
        {"path": "executive-summary.html", "sha256": "1" * 64},
        {"path": "summary.json", "sha256": "3" * 64},
        {"path": "findings.csv", "sha256": "2" * 64},
    ]

    def test_is_the_sha256sum_listing_of_the_content_entries_in_name_order(self):
        listing = f"{'2' * 64}  findings.csv\n{'3' * 64}  summary.json\n"
        assert content_sha256(self.FILES) == hashlib.sha256(listing.encode()).hexdigest()

    def test_the_entries_that_name_the_pack_are_left_out(self):
        changed = [dict(f, sha256="f" * 64) if f["path"] == "executive-summary.html" else f for f in self.FILES]
        assert content_sha256(changed) == content_sha256(self.FILES)
        assert content_sha256([*self.FILES, {"path": "metadata.json", "sha256": "9" * 64}]) == content_sha256(self.FILES)

    def test_any_content_entry_moves_it(self):
        changed = [dict(f, sha256="f" * 64) if f["path"] == "findings.csv" else f for f in self.FILES]
        assert content_sha256(changed) != content_sha256(self.FILES)


from hypothesis import given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@hypothesis_settings(max_examples=2000, deadline=None)
@given(text=st.text(alphabet="0123456789.:+-() @aAfF#_x\u00a0", max_size=40))
def test_the_personal_look_matches_wherever_a_personal_data_rule_does(text):
    """storage/export.py skips the row function for rows this pattern does not match."""
    import re

    from domain import redaction
    from domain.documents import copy_personal_look_pattern

    if any(re.search(pattern, text) for pattern, _ in redaction.PII_RULES):
        assert re.search(copy_personal_look_pattern(), text.encode("utf-8")), text


def test_every_character_that_lower_cases_to_an_ascii_letter_is_spelled_out():
    """The first look finds secret-key hints in any case, as str.lower() would read them."""
    from domain.documents import _LOWERS_TO

    found: dict[str, set[str]] = {}
    for code in range(0x80, 0x110000):
        lowered = chr(code).lower()
        if lowered[:1].isascii() and lowered[:1].isalpha():
            found.setdefault(lowered[0], set()).add(chr(code))
    assert found == {letter: set(chars) for letter, chars in _LOWERS_TO.items()}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("e3939895-2249-41dc-98cb-eef9e335eeaf", False),  # a digit run inside a UUID
        ("ref x939895-2249", False),  # a letter before it: the phone rule does not match either
        ("call 555-123-4567", True),
        ("(555) 123-4567", True),
        ("555.123.4567", True),
        ('x,"555 123-4567"', True),
    ],
)
def test_the_personal_look_reads_the_phone_shape_with_its_rule_s_look_behind(text, matches):
    import re

    from domain import redaction
    from domain.documents import copy_personal_look_pattern

    assert bool(re.search(copy_personal_look_pattern(), text.encode())) is matches
    assert any(re.search(pattern, text) for pattern in redaction.PHONE_PATTERNS) is matches
