"""Helpers for flow tests: seed source rows, read packs back, look inside ZIPs."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile

from sqlalchemy import func, select

from storage.demo_data import seed_demo
from storage.models import Finding, ReviewPack

TENANT_PACK_FILES = [
    "executive-summary.html",
    "findings.csv",
    "hardening.json",
    "metadata.json",
    "operations.csv",
    "reports/entra_admin_roles.json",
    "reports/permission_posture.json",
    "summary.json",
]


def seed(stack, **kwargs):
    with stack.session() as session:
        return seed_demo(session, **kwargs)


def object_bytes(stack, pack) -> bytes:
    with stack.session() as session:
        key = session.get(ReviewPack, pack.id).file_path
    with stack.store().open(key) as body:
        return body.read()


def pack_key(stack, pack_id: int) -> str:
    with stack.session() as session:
        return session.get(ReviewPack, pack_id).file_path


def pack_count(stack, tenant_id: int) -> int:
    with stack.session() as session:
        return session.execute(select(func.count()).where(ReviewPack.tenant_id == tenant_id)).scalar_one()


def open_zip(data: bytes) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    return archive


def read_json(archive: zipfile.ZipFile, name: str) -> dict:
    return json.loads(archive.read(name))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_findings(stack, tenant_id: int) -> int:
    """How many findings a pack of this tenant must contain (new and acknowledged)."""
    with stack.session() as session:
        return session.execute(
            select(func.count()).where(Finding.tenant_id == tenant_id, Finding.status.in_(["new", "acknowledged"]))
        ).scalar_one()


def wait_for(predicate, timeout: float, what: str):
    """Poll until predicate returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(what)
