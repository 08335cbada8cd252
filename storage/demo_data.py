"""A demo workspace with realistic source rows, written the way a host application would."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from domain.capabilities import REVIEW_PACK_MANAGE, REVIEW_PACK_VIEW
from storage.models import (
    Finding,
    OperationRun,
    StoredReport,
    Tenant,
    TenantReview,
    User,
    Workspace,
    WorkspaceMembership,
)

SEVERITIES = ("critical", "high", "medium", "low", "informational")
STATUSES = ("new", "acknowledged", "resolved")
FINDING_TYPES = ("permission_posture", "entra_admin_roles", "stale_account", "mfa_gap")


@dataclass(frozen=True)
class DemoIds:
    workspace_id: int
    tenant_id: int
    manager_id: int
    viewer_id: int
    review_id: int


def seed_demo(session: Session, *, findings: int = 250, seed: int = 7, name: str = "Contoso") -> DemoIds:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    # Identities are unique per call so that the demo can be seeded again into the same database.
    suffix = uuid.uuid4().hex[:8]

    workspace = Workspace(name=f"{name} MSP")
    session.add(workspace)
    session.flush()
    manager = User(email=f"ops.lead+{suffix}@example.com", display_name="Olivia Ops")
    viewer = User(email=f"auditor+{suffix}@example.com", display_name="Arun Auditor")
    session.add_all([manager, viewer])
    session.flush()
    session.add_all(
        [
            WorkspaceMembership(workspace_id=workspace.id, user_id=manager.id, capabilities=[REVIEW_PACK_MANAGE]),
            WorkspaceMembership(workspace_id=workspace.id, user_id=viewer.id, capabilities=[REVIEW_PACK_VIEW]),
        ]
    )
    tenant = Tenant(
        workspace_id=workspace.id,
        external_id=uuid.uuid4(),
        name=f"{name} Ltd",
        hardening={
            "mfa_enforced": True,
            "legacy_auth_blocked": False,
            "security_defaults": "enabled",
            "conditional_access_policies": 12,
        },
        hardening_updated_at=now - dt.timedelta(hours=6),
    )
    session.add(tenant)
    session.flush()

    session.add_all(
        [
            Finding(
                tenant_id=tenant.id,
                finding_type=rng.choice(FINDING_TYPES),
                severity=rng.choice(SEVERITIES),
                status=rng.choice(STATUSES),
                subject_type="user",
                subject_external_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                subject_display_name=f"User {i:05d}",
                title=f"Privileged role assigned without recent sign-in review #{i:05d}",
                evidence={"role": "Global Administrator", "last_sign_in_days": rng.randint(0, 400)},
                first_seen_at=now - dt.timedelta(days=rng.randint(10, 90)),
                last_seen_at=now - dt.timedelta(days=rng.randint(0, 9)),
                updated_at=now - dt.timedelta(days=rng.randint(0, 9)),
            )
            for i in range(findings)
        ]
    )
    session.add_all(
        [
            StoredReport(
                tenant_id=tenant.id,
                report_type="permission_posture",
                fingerprint=uuid.UUID(int=rng.getrandbits(128)).hex,
                payload={"score": 72, "apps_with_high_privilege": 4, "checked_permissions": 118},
                generated_at=now - dt.timedelta(days=1),
            ),
            StoredReport(
                tenant_id=tenant.id,
                report_type="entra.admin_roles",
                fingerprint=uuid.UUID(int=rng.getrandbits(128)).hex,
                payload={
                    "roles": [
                        {"role": "Global Administrator", "members": [{"displayName": "Olivia Ops", "id": str(uuid.UUID(int=1))}]}
                    ]
                },
                generated_at=now - dt.timedelta(days=1),
            ),
        ]
    )
    session.add_all(
        [
            OperationRun(
                workspace_id=workspace.id,
                tenant_id=tenant.id,
                type=rng.choice(("inventory.sync", "findings.scan", "entra.admin_roles.scan")),
                status="completed",
                outcome="succeeded",
                context={},
                initiator_user_id=manager.id,
                created_at=now - dt.timedelta(days=d),
                started_at=now - dt.timedelta(days=d),
                completed_at=now - dt.timedelta(days=d) + dt.timedelta(minutes=3),
            )
            for d in range(0, 40, 3)
        ]
    )
    review = TenantReview(
        tenant_id=tenant.id,
        status="published",
        summary={
            "headline": "Identity controls are solid; privileged access needs a quarterly review.",
            "interpretation_version": "2026.1",
            "overall_status": "needs attention",
            "key_findings": [
                {"title": "Four apps hold high-privilege Graph permissions", "severity": "high", "detail": "Review consent grants."}
            ],
            "accepted_risks": [
                {"title": "Legacy authentication for one scanner", "justification": "Vendor upgrade scheduled.", "expires": "2027-03-31"}
            ],
            "decisions": [{"title": "Adopt PIM for Global Administrators", "detail": "Budget approval needed."}],
            "evidence_basis": [{"source": "Findings", "as_of": now.date().isoformat()}],
        },
        sections=[{"title": "Identity", "body": "MFA is enforced for all users.\nConditional access covers admins."}],
        published_at=now - dt.timedelta(days=2),
    )
    session.add(review)
    session.commit()
    return DemoIds(workspace.id, tenant.id, manager.id, viewer.id, review.id)


def _evidence(i: int, rng: random.Random, personal_share: float) -> str:
    days = rng.randint(0, 400)
    if personal_share and rng.random() < personal_share:
        return json.dumps({
            "role": "Global Administrator",
            "last_sign_in_days": days,
            "principal": {"displayName": f"Person {i:07d}", "userPrincipalName": f"person{i:07d}@contoso.com"},
            "signInIp": f"203.0.{i % 256}.{i % 199 + 1}",
            "note": f"assigned by admin{i % 97}@contoso.com",
        })
    return '{"role": "Global Administrator", "last_sign_in_days": %d}' % days


def add_findings(
    session: Session, tenant_id: int, count: int, *, seed: int = 11, open_share: float = 0.9, personal_share: float = 0.0
) -> None:
    """Add many realistic findings fast: COPY on PostgreSQL, batched inserts elsewhere.

    ``personal_share`` of the rows carry personal data in their evidence, as Microsoft Graph
    returns it: a person's name, a UPN, a sign-in address, and an e-mail address inside a note.
    """
    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    columns = (
        "tenant_id", "finding_type", "severity", "status", "subject_type", "subject_external_id",
        "subject_display_name", "title", "evidence", "first_seen_at", "last_seen_at", "updated_at",
    )

    def rows():
        for i in range(count):
            status = ("new", "acknowledged")[i % 2] if rng.random() < open_share else "resolved"
            yield (
                tenant_id,
                FINDING_TYPES[i % len(FINDING_TYPES)],
                SEVERITIES[rng.randrange(len(SEVERITIES))],
                status,
                "user",
                uuid.UUID(int=rng.getrandbits(128), version=4),
                f"User {i:07d}",
                f"Privileged role assigned without a recent sign-in review, case {i:09d}",
                _evidence(i, rng, personal_share),
                now - dt.timedelta(days=30),
                now - dt.timedelta(days=1),
                now - dt.timedelta(seconds=i % 86400),
            )

    connection = session.connection()
    if connection.dialect.name == "postgresql":
        raw = connection.connection.dbapi_connection
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY findings ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row(row)
    else:
        batch = []
        for row in rows():
            values = dict(zip(columns, row))
            values["evidence"] = {"role": "Global Administrator"}
            batch.append(values)
            if len(batch) == 5000:
                session.execute(Finding.__table__.insert(), batch)
                batch = []
        if batch:
            session.execute(Finding.__table__.insert(), batch)
    session.commit()
