"""The pack and run state machines. Transitions only go forward."""

from __future__ import annotations

from enum import StrEnum


class PackStatus(StrEnum):
    QUEUED = "queued"
    GENERATING = "generating"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


RUN_TYPE_GENERATE = "tenant.review_pack.generate"

# A generating pack may go back to queued only when its attempt is handed back
# for a retry (transient fault, or a worker that died); that is not a user-visible
# step backwards, since the run row records every attempt. Generating -> generating
# (and running -> running for the run) is a takeover: a new attempt claims a run
# whose worker stopped sending heartbeats, without handing it back first.
PACK_TRANSITIONS: dict[PackStatus, frozenset[PackStatus]] = {
    PackStatus.QUEUED: frozenset({PackStatus.GENERATING, PackStatus.FAILED}),
    PackStatus.GENERATING: frozenset({PackStatus.GENERATING, PackStatus.READY, PackStatus.FAILED, PackStatus.QUEUED}),
    PackStatus.READY: frozenset({PackStatus.EXPIRED}),
    PackStatus.FAILED: frozenset(),
    PackStatus.EXPIRED: frozenset(),
}

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.COMPLETED}),
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.QUEUED}),
    RunStatus.COMPLETED: frozenset(),
}

ACTIVE_PACK_STATUSES = frozenset({PackStatus.QUEUED, PackStatus.GENERATING})
TERMINAL_PACK_STATUSES = frozenset({PackStatus.READY, PackStatus.FAILED, PackStatus.EXPIRED})


class InvalidTransition(ValueError):
    pass


def check_pack_transition(current: str, new: str) -> PackStatus:
    """Return the new status if the move is allowed, else raise InvalidTransition."""
    src, dst = PackStatus(current), PackStatus(new)
    if dst not in PACK_TRANSITIONS[src]:
        raise InvalidTransition(f"a pack cannot go from {src} to {dst}")
    return dst


def check_run_transition(current: str, new: str) -> RunStatus:
    src, dst = RunStatus(current), RunStatus(new)
    if dst not in RUN_TRANSITIONS[src]:
        raise InvalidTransition(f"a run cannot go from {src} to {dst}")
    return dst


def sources_for(target: PackStatus) -> tuple[str, ...]:
    """The pack statuses a compare-and-set into ``target`` may start from, for WHERE clauses."""
    return tuple(sorted(src.value for src, dsts in PACK_TRANSITIONS.items() if target in dsts))


def run_sources_for(target: RunStatus) -> tuple[str, ...]:
    """The run statuses a compare-and-set into ``target`` may start from, for WHERE clauses."""
    return tuple(sorted(src.value for src, dsts in RUN_TRANSITIONS.items() if target in dsts))
