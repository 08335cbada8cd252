"""storage/packs.py is the only writer of review pack and run state: the source tree says so.

Every statement that inserts, updates or deletes review packs or operation runs — through
SQLAlchemy Core, the ORM, or raw SQL — must live in storage/packs.py. This test reads the
production source (not the tests) and lists every other line that does one of those.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNER = Path("storage/packs.py")

# Places that touch these tables for reasons other than pack or run state, each with its reason.
ALLOWED = {
    # The schema itself: tables, indexes and the scrub function.
    Path("storage/migrations"): "schema migrations",
    # The model classes, which only declare the tables.
    Path("storage/models.py"): "table declarations",
    # Demo tenants' operation history (runs of other types that operations.csv exports): source data
    # a demo starts from, not the state of a pack or its generation run.
    Path("storage/demo_data.py"): "demo source data",
}

MODELS = r"(?:ReviewPack|OperationRun)"
TABLES = r"(?:review_packs|operation_runs)"
PATTERNS = {
    "core statement": re.compile(rf"\b(?:update|delete|insert)\(\s*{MODELS}\b"),
    "table object": re.compile(rf"\b{MODELS}\.__table__\b"),
    "new row": re.compile(rf"(?<!class )\b{MODELS}\("),
    "raw SQL": re.compile(rf"(?i)\b(?:update|delete\s+from|insert\s+into)\s+\"?{TABLES}\b"),
    "ORM delete": re.compile(r"\bsession\.delete\("),
    "ORM attribute write": re.compile(
        r"\b(?:pack|run|review_pack|operation_run)\.(?:status|outcome|file_disk|expired_at|expires_at|heartbeat_at|attempts"
        r"|published_at|fingerprint|context)\s*=(?!=)"
    ),
}


def _production_files() -> list[Path]:
    files = [p for p in ROOT.glob("*.py")]
    for package in ("domain", "storage", "workers", "scheduler", "bench"):
        files += (ROOT / package).rglob("*.py")
    return sorted(p.relative_to(ROOT) for p in files)


def _allowed(path: Path) -> bool:
    return any(path == allowed or allowed in path.parents for allowed in ALLOWED)


def _writes(text: str) -> list[tuple[int, str, str]]:
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        for name, pattern in PATTERNS.items():
            if pattern.search(line):
                hits.append((number, name, line.strip()))
    return hits


def test_no_module_but_storage_packs_writes_pack_or_run_state():
    offenders = [
        f"{path}:{number}: {name}: {line}"
        for path in _production_files()
        if path != OWNER and not _allowed(path)
        for number, name, line in _writes((ROOT / path).read_text())
    ]
    assert offenders == []


def test_the_owner_is_where_the_writes_are():
    found = {name for _, name, _ in _writes((ROOT / OWNER).read_text())}
    assert {"core statement", "new row", "ORM attribute write"} <= found


@pytest.mark.parametrize(
    "line",
    [
        "session.execute(update(ReviewPack).where(ReviewPack.id == 1).values(status='expired'))",
        "session.execute(delete(OperationRun).where(OperationRun.id == 1))",
        "conn.execute(insert(ReviewPack).values(status='queued'))",
        "session.add(OperationRun(status='queued'))",
        "conn.execute(text('UPDATE review_packs SET status = 1'))",
        'conn.execute(text("delete from operation_runs"))',
        "conn.execute(ReviewPack.__table__.update())",
        "pack.status = PackStatus.EXPIRED",
        "run.heartbeat_at = now",
        "session.delete(pack)",
    ],
)
def test_the_patterns_catch_each_kind_of_write(line):
    assert _writes(line), line


@pytest.mark.parametrize(
    "line",
    [
        "class ReviewPack(Base):",
        "select(ReviewPack).where(ReviewPack.status == 'ready')",
        "if pack.status == PackStatus.READY:",
        "SELECT id FROM review_packs",
    ],
)
def test_reads_are_not_writes(line):
    assert not _writes(line)
