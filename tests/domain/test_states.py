"""The pack and run state machines, checked cell by cell against the contract.

The expected tables are written out here by hand rather than read from the
module, so that a change to ``PACK_TRANSITIONS`` or ``RUN_TRANSITIONS`` has to be
made twice: once on purpose in the code and once on purpose in this file.
"""

from __future__ import annotations

import itertools

import pytest

from domain import reasons
from domain.states import (
    ACTIVE_PACK_STATUSES,
    PACK_TRANSITIONS,
    RUN_TRANSITIONS,
    RUN_TYPE_GENERATE,
    TERMINAL_PACK_STATUSES,
    InvalidTransition,
    PackStatus,
    RunOutcome,
    RunStatus,
    check_pack_transition,
    check_run_transition,
    run_sources_for,
    sources_for,
)

P = PackStatus
R = RunStatus

# The contract: queued -> generating -> ready | failed; ready -> expired. A queued pack can
# fail without ever generating (the source vanished), a generating pack is handed back to
# queued when its attempt is retried, and generating -> generating is a takeover of a run whose
# worker stopped sending heartbeats (documented in domain/states.py).
EXPECTED_PACK = {
    (P.QUEUED, P.GENERATING),
    (P.QUEUED, P.FAILED),
    (P.GENERATING, P.READY),
    (P.GENERATING, P.FAILED),
    (P.GENERATING, P.QUEUED),
    (P.GENERATING, P.GENERATING),
    (P.READY, P.EXPIRED),
}

# Run: queued -> running -> completed; a queued run may complete (fail) directly, a running
# run goes back to queued when its attempt is retried, and running -> running is a takeover.
EXPECTED_RUN = {
    (R.QUEUED, R.RUNNING),
    (R.QUEUED, R.COMPLETED),
    (R.RUNNING, R.COMPLETED),
    (R.RUNNING, R.QUEUED),
    (R.RUNNING, R.RUNNING),
}

PACK_PAIRS = list(itertools.product(PackStatus, PackStatus))
RUN_PAIRS = list(itertools.product(RunStatus, RunStatus))


def _pair_id(pair) -> str:
    return f"{pair[0].value}->{pair[1].value}"


class TestEnums:
    def test_pack_status_values(self):
        assert [s.value for s in PackStatus] == ["queued", "generating", "ready", "failed", "expired"]

    def test_run_status_values(self):
        assert [s.value for s in RunStatus] == ["queued", "running", "completed"]

    def test_run_outcome_values(self):
        assert [o.value for o in RunOutcome] == ["succeeded", "failed"]

    def test_run_type(self):
        assert RUN_TYPE_GENERATE == "tenant.review_pack.generate"

    def test_statuses_compare_equal_to_their_database_strings(self):
        assert PackStatus.READY == "ready"
        assert RunStatus.COMPLETED == "completed"
        assert f"{PackStatus.GENERATING}" == "generating"


class TestPackTable:
    def test_table_has_a_row_for_every_status(self):
        assert set(PACK_TRANSITIONS) == set(PackStatus)

    def test_table_equals_the_contract(self):
        actual = {(src, dst) for src, dsts in PACK_TRANSITIONS.items() for dst in dsts}
        assert actual == EXPECTED_PACK

    @pytest.mark.parametrize("pair", PACK_PAIRS, ids=_pair_id)
    def test_every_cell_of_the_matrix(self, pair):
        src, dst = pair
        if pair in EXPECTED_PACK:
            result = check_pack_transition(src, dst)
            assert result is dst
            assert isinstance(result, PackStatus)
        else:
            with pytest.raises(InvalidTransition) as excinfo:
                check_pack_transition(src, dst)
            assert str(excinfo.value) == f"a pack cannot go from {src.value} to {dst.value}"

    @pytest.mark.parametrize("pair", PACK_PAIRS, ids=_pair_id)
    def test_plain_strings_are_accepted(self, pair):
        src, dst = pair
        if pair in EXPECTED_PACK:
            assert check_pack_transition(src.value, dst.value) is dst
        else:
            with pytest.raises(InvalidTransition):
                check_pack_transition(src.value, dst.value)

    @pytest.mark.parametrize("status", [P.QUEUED, P.READY, P.FAILED, P.EXPIRED], ids=str)
    def test_no_status_but_generating_moves_to_itself(self, status):
        with pytest.raises(InvalidTransition):
            check_pack_transition(status, status)

    def test_a_takeover_keeps_a_pack_generating(self):
        assert check_pack_transition("generating", "generating") is P.GENERATING

    @pytest.mark.parametrize("status", [P.FAILED, P.EXPIRED], ids=str)
    def test_terminal_states_have_no_exits(self, status):
        assert PACK_TRANSITIONS[status] == frozenset()
        for dst in PackStatus:
            with pytest.raises(InvalidTransition):
                check_pack_transition(status, dst)

    def test_only_failed_and_expired_are_dead_ends(self):
        assert {s for s, dsts in PACK_TRANSITIONS.items() if not dsts} == {P.FAILED, P.EXPIRED}

    def test_ready_only_expires(self):
        assert PACK_TRANSITIONS[P.READY] == frozenset({P.EXPIRED})
        assert check_pack_transition("ready", "expired") is P.EXPIRED
        for dst in (P.QUEUED, P.GENERATING, P.READY, P.FAILED):
            with pytest.raises(InvalidTransition):
                check_pack_transition("ready", dst)

    def test_only_ready_packs_expire(self):
        assert {src for src, dsts in PACK_TRANSITIONS.items() if P.EXPIRED in dsts} == {P.READY}

    @pytest.mark.parametrize(
        "current, new", [("bogus", "ready"), ("ready", "bogus"), ("READY", "expired"), ("", "queued")]
    )
    def test_unknown_status_is_a_value_error(self, current, new):
        with pytest.raises(ValueError):
            check_pack_transition(current, new)

    def test_invalid_transition_is_a_value_error(self):
        assert issubclass(InvalidTransition, ValueError)


class TestRunTable:
    def test_table_has_a_row_for_every_status(self):
        assert set(RUN_TRANSITIONS) == set(RunStatus)

    def test_table_equals_the_contract(self):
        actual = {(src, dst) for src, dsts in RUN_TRANSITIONS.items() for dst in dsts}
        assert actual == EXPECTED_RUN

    @pytest.mark.parametrize("pair", RUN_PAIRS, ids=_pair_id)
    def test_every_cell_of_the_matrix(self, pair):
        src, dst = pair
        if pair in EXPECTED_RUN:
            result = check_run_transition(src, dst)
            assert result is dst
            assert isinstance(result, RunStatus)
        else:
            with pytest.raises(InvalidTransition) as excinfo:
                check_run_transition(src, dst)
            assert str(excinfo.value) == f"a run cannot go from {src.value} to {dst.value}"

    @pytest.mark.parametrize("pair", RUN_PAIRS, ids=_pair_id)
    def test_plain_strings_are_accepted(self, pair):
        src, dst = pair
        if pair in EXPECTED_RUN:
            assert check_run_transition(src.value, dst.value) is dst
        else:
            with pytest.raises(InvalidTransition):
                check_run_transition(src.value, dst.value)

    def test_completed_has_no_exits(self):
        assert RUN_TRANSITIONS[R.COMPLETED] == frozenset()
        for dst in RunStatus:
            with pytest.raises(InvalidTransition):
                check_run_transition(R.COMPLETED, dst)

    @pytest.mark.parametrize("current, new", [("done", "completed"), ("queued", "ready"), ("running", "failed")])
    def test_unknown_status_is_a_value_error(self, current, new):
        with pytest.raises(ValueError):
            check_run_transition(current, new)


class TestStatusGroups:
    def test_active(self):
        assert ACTIVE_PACK_STATUSES == frozenset({P.QUEUED, P.GENERATING})

    def test_terminal(self):
        assert TERMINAL_PACK_STATUSES == frozenset({P.READY, P.FAILED, P.EXPIRED})

    def test_active_and_terminal_partition_the_statuses(self):
        assert ACTIVE_PACK_STATUSES.isdisjoint(TERMINAL_PACK_STATUSES)
        assert ACTIVE_PACK_STATUSES | TERMINAL_PACK_STATUSES == frozenset(PackStatus)

    def test_active_statuses_can_all_still_finish(self):
        for status in ACTIVE_PACK_STATUSES:
            assert PACK_TRANSITIONS[status] & TERMINAL_PACK_STATUSES


class TestSourcesFor:
    @pytest.mark.parametrize(
        "target, expected",
        [
            (P.QUEUED, ("generating",)),
            (P.GENERATING, ("generating", "queued")),
            (P.READY, ("generating",)),
            (P.FAILED, ("generating", "queued")),
            (P.EXPIRED, ("ready",)),
        ],
        ids=str,
    )
    def test_exact_sources(self, target, expected):
        assert sources_for(target) == expected

    def test_ready_comes_only_from_generating(self):
        assert sources_for(PackStatus.READY) == ("generating",)

    @pytest.mark.parametrize("target", list(PackStatus), ids=str)
    def test_sources_are_sorted_plain_strings_consistent_with_the_check(self, target):
        sources = sources_for(target)
        assert list(sources) == sorted(sources)
        assert all(type(s) is str for s in sources)
        for src in PackStatus:
            allowed = src.value in sources
            if allowed:
                assert check_pack_transition(src, target) is target
            else:
                with pytest.raises(InvalidTransition):
                    check_pack_transition(src, target)


class TestRunSourcesFor:
    @pytest.mark.parametrize(
        "target, expected",
        [
            (R.QUEUED, ("running",)),
            (R.RUNNING, ("queued", "running")),
            (R.COMPLETED, ("queued", "running")),
        ],
        ids=str,
    )
    def test_exact_sources(self, target, expected):
        assert run_sources_for(target) == expected


class TestReasonCodes:
    """The fixed list of ``context.reason_code`` values a failed run may carry (domain/reasons.py)."""

    def test_the_fixed_list(self):
        assert [r.value for r in reasons.ReasonCode] == [
            "storage_unavailable",
            "storage_error",
            "database_unavailable",
            "invalid_source_data",
            "source_missing",
            "worker_lost",
            "timeout",
            "disk_full",
            "internal_error",
        ]

    @pytest.mark.parametrize("code", list(reasons.ReasonCode), ids=str)
    def test_every_reason_has_a_user_message(self, code):
        message = reasons.USER_MESSAGES[code]
        assert message.strip() == message
        assert message.endswith(".")
        assert len(message) > 20

    def test_messages_cover_exactly_the_codes(self):
        assert set(reasons.USER_MESSAGES) == set(reasons.ReasonCode)
