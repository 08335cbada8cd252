"""The fault suite's report: one row per fault, printed at the end of the run.

Set REVIEWPACKS_RELIABILITY_REPORT=path to also write the table as Markdown.
REVIEWPACKS_FAULT_TRIALS=full runs the full trial counts (docs/reliability.md);
the default is the smaller CI count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

FULL = os.environ.get("REVIEWPACKS_FAULT_TRIALS", "ci") == "full"


def trials(full: int, ci: int) -> int:
    return full if FULL else ci


@dataclass
class Row:
    fault: str
    trials: int = 0
    ready: int = 0
    failed_as_expected: int = 0
    duplicates: int = 0
    leftovers: int = 0


class Report:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def row(self, fault: str) -> Row:
        return self.rows.setdefault(fault, Row(fault))

    def markdown(self) -> str:
        lines = [
            "| fault | trials | packs ready | failed with reason (expected) | duplicates | leftovers |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows.values():
            lines.append(f"| {r.fault} | {r.trials} | {r.ready} | {r.failed_as_expected} | {r.duplicates} | {r.leftovers} |")
        return "\n".join(lines)


_REPORT = Report()


@pytest.fixture(scope="session")
def reliability() -> Report:
    return _REPORT


def pytest_terminal_summary(terminalreporter):
    if not _REPORT.rows:
        return
    terminalreporter.write_sep("-", f"reliability ({'full' if FULL else 'ci'} trial counts)")
    terminalreporter.write_line(_REPORT.markdown())
    target = os.environ.get("REVIEWPACKS_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(_REPORT.markdown() + "\n")
