"""Planted personal data and secrets, in the shapes Microsoft Graph and Azure store them, in every source.

plant() writes them into a seeded tenant (findings, hardening, both reports, operation
runs, the published review); leaks() lists every planted value that a pack still carries
anywhere, after decompressing every entry. Values that name a person are only planted
where a pack can know they name one (person keys, display names, fields it does not
recognise): names inside free prose are a stated limitation, addresses and numbers are not.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
import zipfile

from storage.models import Finding, OperationRun, StoredReport, Tenant, TenantReview

GUEST_UPN = "alias_contoso.com#EXT#@fabrikam.onmicrosoft.com"
JWT = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1cG4iOiJzZWNyZXRAY29udG9zby5jb20ifQ.U2lnbmF0dXJlUGFydDEyMw"
SAS = "https://stacct.blob.core.windows.net/exports/t.zip?sv=2022-11-02&se=2026-12-01&sp=r&sig=SasSig%2Babc%3D"
CONN = "DefaultEndpointsProtocol=https;AccountName=stacct;AccountKey=QWNjb3VudEtleVZhbHVlMTIzNDU2==;EndpointSuffix=core.windows.net"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
STORAGE_KEY = "St0rageK3y" + "A" * 76 + "=="

# Every value that must leave no trace when include_pii is false.
PERSONAL = [
    "Fiona Finding", "fiona.finding@contoso.com", GUEST_UPN, "alias_contoso.com#EXT#", "jörg.müller@bücher.de",
    "Brenda Breakglass", "brenda@contoso.com", "Sam Security", "bbreakglass", "bbnick", "Andy Assignee",
    "Mia Manager", "Olaf Owner", "Rita Reviewer", "Petra Preparer", "Carl Contact", "Gus Guest", "Uma Unlisted",
    "Hank Hidden", "203.0.113.9", "198.51.100.23", "2001:db8:85a3::8a2e:370:7334", "+1 425 555 0100",
    "+44 20 7946 0958", "(555) 123-4567", "ops.person@contoso.com", "E-104711",
]
# Every value that must leave no trace in any pack.
SECRETS = [
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9", "U2lnbmF0dXJlUGFydDEyMw", "SasSig%2Babc", "QWNjb3VudEtleVZhbHVl",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "AKIAIOSFODNN7EXAMPLE", "ghp_Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "glpat-Gl4bP4tT0k3nV4lu3X", "abc8Q~EntraClientSecretValue0123456789",
    "St0rageK3y", "PlainPassw0rd!", "BearerOpaque0123", "hunter2-top-secret", "SvcPassInUrl",
]


def plant(session, ids) -> None:
    """Write the corpus into the seeded tenant ids.tenant_id and its published review."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    tenant = session.get(Tenant, ids.tenant_id)
    tenant.hardening = {
        "mfa_enforced": True,
        "break_glass": [{"displayName": "Brenda Breakglass", "userPrincipalName": "brenda@contoso.com",
                         "onPremisesSamAccountName": "bbreakglass", "mailNickname": "bbnick", "id": str(uuid.UUID(int=7))}],
        "alert_contact": "Sam Security",
        "smtp": {"host": "smtp.contoso.com", "password": "PlainPassw0rd!"},
        "storage": CONN,
        "audit_export": SAS,
        "security_defaults": "enabled",
    }
    session.add_all(
        [
            Finding(
                tenant_id=ids.tenant_id, finding_type="risky_sign_in", severity="high", status="new", subject_type="user",
                subject_external_id=uuid.uuid4(), subject_display_name="Fiona Finding",
                title=f"Guest {GUEST_UPN} signed in from 203.0.113.9 and 2001:db8:85a3::8a2e:370:7334, call (555) 123-4567",
                evidence={
                    "user": {"displayName": "Fiona Finding", "mail": "fiona.finding@contoso.com", "id": str(uuid.uuid4())},
                    "ipAddress": "198.51.100.23",
                    "assignedTo": "Andy Assignee",
                    "detail": f"call +44 20 7946 0958 or (555) 123-4567, token {JWT}",
                    "type": "jörg.müller@bücher.de",
                    "headers": {"Authorization": "Bearer BearerOpaque0123abc", "x-functions-key": "hunter2-top-secret"},
                    "role": "AKIAIOSFODNN7EXAMPLE and ghp_Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8",
                },
            ),
            Finding(
                tenant_id=ids.tenant_id, finding_type="app_secret", severity="critical", status="acknowledged",
                subject_type="application of ops.person@contoso.com", subject_external_id=uuid.uuid4(),
                subject_display_name="Payroll app",
                title="Client secret abc8Q~EntraClientSecretValue0123456789 stored in a setting",
                evidence={"status": f"slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx, {PEM}",
                          "uniqueUnlistedField": "Uma Unlisted", "manager": {"name": "Mia Manager", "employeeId": "E-104711"}},
            ),
        ]
    )
    for report in session.query(StoredReport).filter(StoredReport.tenant_id == ids.tenant_id):
        if report.report_type == "entra.admin_roles":
            report.payload = {
                "roles": [
                    {"role": "Global Administrator", "members": [
                        {"displayName": "Gus Guest", "userPrincipalName": GUEST_UPN, "businessPhones": ["+1 425 555 0100"],
                         "id": str(uuid.UUID(int=9)), "signInActivity": {"lastSignInIp": "203.0.113.9"}},
                    ]},
                ],
                "owners": ["Olaf Owner"],
                "connection": CONN,
            }
        else:
            report.payload = {
                "score": 72,
                "apps": [{"appId": str(uuid.UUID(int=3)), "hiddenContact": "Hank Hidden", "primaryKey": STORAGE_KEY,
                          "glToken": "glpat-Gl4bP4tT0k3nV4lu3X", "state": f"key {STORAGE_KEY}"}],
            }
    session.add(
        OperationRun(
            workspace_id=ids.workspace_id, tenant_id=ids.tenant_id, type="inventory.sync", status="completed",
            outcome="failed", context={"reason_code": "mailbox ops.person@contoso.com unreachable from 198.51.100.23"},
            initiator_user_id=ids.manager_id, created_at=now, started_at=now, completed_at=now,
        )
    )
    review = session.get(TenantReview, ids.review_id)
    review.summary = {
        **review.summary,
        "headline": "Ask ops.person@contoso.com about the sign-ins from 198.51.100.23.",
        "key_findings": [{"title": "Shared mailbox", "severity": "high", "detail": f"Password in {SAS}"}],
        "decisions": [{"title": "Rotate keys", "detail": f"Old key AKIAIOSFODNN7EXAMPLE, token {JWT}"}],
        "reviewer": {"displayName": "Rita Reviewer", "mail": "fiona.finding@contoso.com"},
        "preparedBy": "Petra Preparer",
        "customerContact": "Carl Contact",
        "connectionString": CONN,
    }
    review.sections = [
        {"title": "Identity", "body": f"Guest {GUEST_UPN} has a phone +1 425 555 0100.\nSee {SAS}", "owner": "Olaf Owner"},
        {"key": "apps", "body": {"table": [["app", "https://svc:SvcPassInUrl@files.contoso.com/x"]]}},
    ]
    session.commit()


def entries(data: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def leaks(files: dict[str, str], *, include_pii: bool) -> list[tuple[str, str]]:
    """(file, value) for every planted value still present in any decompressed entry."""
    planted = SECRETS + ([] if include_pii else PERSONAL)
    return [(name, value) for name, text in files.items() for value in planted if value.lower() in text.lower()]


def personal_data_kept(files: dict[str, str]) -> list[str]:
    """The planted personal values a pack with include_pii still carries (most of them, by design)."""
    text = "\n".join(files.values())
    return [value for value in PERSONAL if value in text]


# The three ways a pack's findings are read: PostgreSQL's COPY, the portable reader on
# PostgreSQL, and the portable reader on the embedded SQLite default.
BACKENDS = ["postgresql-copy", "postgresql-portable", "sqlite-portable"]


def backend_setup(backend: str, pg_url: str, tmp_path):
    """Settings and a local artifact store for one of BACKENDS (SQLite migrated in tmp_path)."""
    from reviewpacks.settings import Settings
    from storage import db
    from storage.artifacts import LocalStore

    url = f"sqlite:///{tmp_path / 'packs.db'}" if backend.startswith("sqlite") else pg_url
    if url.startswith("sqlite"):
        db.upgrade(url)
    settings = Settings.from_env(
        {"REVIEWPACKS_DATABASE_URL": url, "REVIEWPACKS_HOME": str(tmp_path),
         "REVIEWPACKS_FINDINGS_READER": backend.split("-")[1]}
    )
    store = LocalStore(tmp_path / "artifacts")
    store.ensure_ready()
    return settings, store
