"""Capabilities and isolation: the full matrix of actors × calls, and nothing written when refused."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from domain.capabilities import REVIEW_PACK_MANAGE, REVIEW_PACK_VIEW
from reviewpacks import runtime
from reviewpacks.settings import Settings
from storage import packs
from storage.artifacts import LocalStore
from storage.models import (
    AuditLog,
    Notification,
    OperationRun,
    ReviewPack,
    Tenant,
    TenantReview,
    User,
    Workspace,
    WorkspaceMembership,
)
from workers.client import Forbidden, NotFound, ReviewPackClient

NOW = dt.datetime.now(dt.timezone.utc)


class World:
    """Two workspaces; workspace A has two tenants, a ready pack and a published review."""

    def __init__(self, url: str, root):
        self.url = url
        self.published: list[int] = []
        self.store = LocalStore(root / "artifacts")
        self.store.ensure_ready()
        settings = Settings.from_env({"REVIEWPACKS_DATABASE_URL": url, "REVIEWPACKS_HOME": str(root)})
        self.client = ReviewPackClient(settings, store=self.store, publish=self.published.append)
        with runtime.session_factory(url)() as s:
            self.ws_a, self.ws_b = Workspace(name="A"), Workspace(name="B")
            s.add_all([self.ws_a, self.ws_b])
            s.flush()
            self.users = {}
            for role in ("outsider", "no_caps", "viewer", "manager", "manager_b"):
                user = User(email=f"{role}-{uuid.uuid4().hex}@example.com", display_name=role)
                s.add(user)
                s.flush()
                self.users[role] = user.id
            memberships = [
                (self.ws_a.id, "no_caps", []),
                (self.ws_a.id, "viewer", [REVIEW_PACK_VIEW]),
                (self.ws_a.id, "manager", [REVIEW_PACK_MANAGE]),
                (self.ws_b.id, "manager_b", [REVIEW_PACK_MANAGE, REVIEW_PACK_VIEW]),
                (self.ws_b.id, "outsider", [REVIEW_PACK_MANAGE]),
            ]
            s.add_all(WorkspaceMembership(workspace_id=w, user_id=self.users[r], capabilities=c) for w, r, c in memberships)
            self.tenant_a = self._tenant(s, self.ws_a.id, "A1")
            self.tenant_a2 = self._tenant(s, self.ws_a.id, "A2")
            self.tenant_b = self._tenant(s, self.ws_b.id, "B1")
            self.pack_a = self._ready_pack(s, self.tenant_a)
            self.pack_a2 = self._ready_pack(s, self.tenant_a2)
            self.pack_b = self._ready_pack(s, self.tenant_b)
            review = TenantReview(tenant_id=self.tenant_a, status="published", summary={"headline": "h"}, sections=[], published_at=NOW)
            s.add(review)
            s.flush()
            self.review_a = review.id
            s.commit()

    @staticmethod
    def _tenant(s, workspace_id: int, name: str) -> int:
        tenant = Tenant(workspace_id=workspace_id, external_id=uuid.uuid4(), name=name, hardening={})
        s.add(tenant)
        s.flush()
        return tenant.id

    def _ready_pack(self, s, tenant_id: int) -> int:
        workspace_id = s.get(Tenant, tenant_id).workspace_id
        run = OperationRun(workspace_id=workspace_id, tenant_id=tenant_id, type="tenant.review_pack.generate", status="completed", outcome="succeeded")
        s.add(run)
        s.flush()
        key = packs.new_file_key()
        source = self.store.root / "source.zip"
        source.write_bytes(b"PK fake")
        self.store.put_file(key, source, sha256="0" * 64, size=7)
        pack = ReviewPack(
            workspace_id=workspace_id, tenant_id=tenant_id, operation_run_id=run.id, status="ready",
            fingerprint=uuid.uuid4().hex, options={"include_pii": True, "include_operations": True},
            file_path=key, file_disk="local", file_size=7, sha256="0" * 64, generated_at=NOW, expires_at=NOW + dt.timedelta(days=90),
        )
        s.add(pack)
        s.flush()
        return pack.id

    def counts(self) -> tuple:
        with runtime.session_factory(self.url)() as s:
            scalar = lambda m: s.execute(select(func.count()).select_from(m)).scalar_one()  # noqa: E731
            return (
                scalar(ReviewPack), scalar(OperationRun), scalar(AuditLog), scalar(Notification),
                len(self.published), tuple(sorted(self.store.keys())),
                s.execute(select(ReviewPack.status).where(ReviewPack.id == self.pack_a)).scalar_one(),
            )

    def call(self, action: str, actor: int):
        c = self.client
        return {
            "request": lambda: c.request_pack(tenant_id=self.tenant_a, actor_id=actor),
            "request_review_pack": lambda: c.request_review_pack(self.review_a, actor),
            "get": lambda: c.get_pack(self.pack_a, actor),
            "list": lambda: c.list_packs(self.tenant_a, actor),
            "wait": lambda: c.wait(self.pack_a, actor, timeout=1),
            "download_url": lambda: c.download_url(self.pack_a, actor),
            "expire": lambda: c.expire_pack(self.pack_a, actor),
        }[action]()


@pytest.fixture
def world(pg_url, tmp_path):
    return World(pg_url, tmp_path)


ACTIONS = ["request", "request_review_pack", "get", "list", "wait", "download_url", "expire"]
MANAGE_ONLY = {"request", "request_review_pack", "expire"}
# What a successful call writes: (packs, runs, audit rows, notifications, published messages).
WRITES = {
    # The notification is the requester's "queued" notice.
    "request": (1, 1, 1, 1, 1),
    "request_review_pack": (1, 1, 1, 1, 1),
    "download_url": (0, 0, 1, 0, 0),
    "expire": (0, 0, 1, 0, 0),
}


def _expected(role: str, action: str):
    if role == "outsider":
        return NotFound
    if role == "no_caps":
        return Forbidden
    if role == "viewer" and action in MANAGE_ONLY:
        return Forbidden
    return None


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ["outsider", "no_caps", "viewer", "manager"])
def test_capability_matrix(world, role, action):
    before = world.counts()
    expected = _expected(role, action)

    if expected is not None:
        with pytest.raises(expected):
            world.call(action, world.users[role])
        assert world.counts() == before, "a refused call wrote something"
        return

    world.call(action, world.users[role])
    after = world.counts()
    delta = tuple(a - b for a, b in zip(after[:5], before[:5]))
    assert delta == WRITES.get(action, (0, 0, 0, 0, 0))
    if action == "expire":
        assert after[6] == "expired" and len(after[5]) == len(before[5]) - 1
    else:
        assert after[5] == before[5] and after[6] == "ready"


def test_not_found_says_the_same_for_unknown_ids_and_other_workspaces(world):
    outsider = world.users["manager_b"]
    with pytest.raises(NotFound) as unknown:
        world.client.get_pack(10**15, outsider)
    with pytest.raises(NotFound) as foreign:
        world.client.get_pack(world.pack_a, outsider)
    assert str(unknown.value) == str(foreign.value)


@pytest.mark.parametrize("action", ACTIONS)
def test_a_manager_of_another_workspace_cannot_reach_this_ones_ids(world, action):
    before = world.counts()
    with pytest.raises(NotFound):
        world.call(action, world.users["manager_b"])
    assert world.counts() == before


def test_listing_is_scoped_to_the_tenant(world):
    listed = world.client.list_packs(world.tenant_a, world.users["viewer"])
    assert [p.id for p in listed] == [world.pack_a]
    other = world.client.list_packs(world.tenant_a2, world.users["viewer"])
    assert [p.id for p in other] == [world.pack_a2]
    with pytest.raises(NotFound):
        world.client.list_packs(world.tenant_b, world.users["viewer"])


def test_unknown_review_and_foreign_review_are_not_found(world):
    with pytest.raises(NotFound):
        world.client.request_review_pack(10**15, world.users["manager"])
    with pytest.raises(NotFound):
        world.client.request_review_pack(world.review_a, world.users["manager_b"])
