"""Who may do what: every grant set against every action."""

from __future__ import annotations

import itertools

import pytest

from domain.capabilities import (
    ALL,
    REQUIRED,
    REVIEW_PACK_MANAGE,
    REVIEW_PACK_VIEW,
    Action,
    allows,
    effective,
)

VIEW = "review_pack.view"
MANAGE = "review_pack.manage"

# From the contract: view covers list, get, wait, download_url; manage covers request,
# request_review_pack and expire, and implies view. wait is a series of gets, so it needs no
# action of its own.
VIEW_ACTIONS = frozenset({Action.GET, Action.LIST, Action.DOWNLOAD_URL})
MANAGE_ACTIONS = frozenset({Action.REQUEST, Action.REQUEST_REVIEW, Action.EXPIRE})

JUNK_STRINGS = [
    "",
    "review_pack",
    "review_pack.*",
    "*",
    "admin",
    "REVIEW_PACK.VIEW",
    "Review_Pack.Manage",
    " review_pack.view",
    "review_pack.view ",
    "review_pack.manage\n",
    "review_pack.viewer",
    "review_packs.manage",
    "review-pack.manage",
    "tenant.manage",
]
JUNK_OBJECTS = [None, 0, 1, True, 3.5, b"review_pack.view", b"review_pack.manage", ("review_pack.manage",)]
JUNK_UNHASHABLE = [["review_pack.manage"], {"review_pack.view": True}, {"review_pack.manage"}]

GRANTS = {
    "none": [],
    "view": [VIEW],
    "manage": [MANAGE],
    "both": [VIEW, MANAGE],
    "junk_strings": JUNK_STRINGS,
    "junk_objects": JUNK_OBJECTS,
    "junk_unhashable": JUNK_UNHASHABLE,
    "view_among_junk": [None, "admin", VIEW, 7, ["x"]],
    "manage_among_junk": [b"review_pack.view", MANAGE, {"a": 1}, "REVIEW_PACK.VIEW"],
    "duplicates": [VIEW, VIEW, VIEW],
}

EXPECTED_ALLOWED = {
    "none": frozenset(),
    "view": VIEW_ACTIONS,
    "manage": VIEW_ACTIONS | MANAGE_ACTIONS,
    "both": VIEW_ACTIONS | MANAGE_ACTIONS,
    "junk_strings": frozenset(),
    "junk_objects": frozenset(),
    "junk_unhashable": frozenset(),
    "view_among_junk": VIEW_ACTIONS,
    "manage_among_junk": VIEW_ACTIONS | MANAGE_ACTIONS,
    "duplicates": VIEW_ACTIONS,
}

MATRIX = list(itertools.product(GRANTS, Action))


def test_constants():
    assert REVIEW_PACK_VIEW == VIEW
    assert REVIEW_PACK_MANAGE == MANAGE
    assert ALL == (VIEW, MANAGE)


def test_action_values_match_the_client_methods():
    assert {a.value for a in Action} == {
        "request",
        "request_review_pack",
        "get",
        "list",
        "download_url",
        "expire",
    }


def test_every_action_needs_exactly_one_known_capability():
    assert set(REQUIRED) == set(Action)
    assert set(REQUIRED.values()) == {VIEW, MANAGE}


def test_required_table_equals_the_contract():
    assert {a for a, cap in REQUIRED.items() if cap == VIEW} == VIEW_ACTIONS
    assert {a for a, cap in REQUIRED.items() if cap == MANAGE} == MANAGE_ACTIONS


@pytest.mark.parametrize("grant, action", MATRIX, ids=[f"{g}-{a.value}" for g, a in MATRIX])
def test_matrix(grant, action):
    assert allows(GRANTS[grant], action) is (action in EXPECTED_ALLOWED[grant])


@pytest.mark.parametrize("action", list(Action), ids=str)
def test_manage_implies_view(action):
    if allows([VIEW], action):
        assert allows([MANAGE], action) is True


@pytest.mark.parametrize("action", sorted(MANAGE_ACTIONS), ids=str)
def test_view_does_not_imply_manage(action):
    assert allows([VIEW], action) is False


@pytest.mark.parametrize("action", list(Action), ids=str)
def test_no_capabilities_allow_nothing(action):
    assert allows([], action) is False


@pytest.mark.parametrize("action", list(Action), ids=str)
def test_action_accepts_its_plain_string_value(action):
    # Action is a StrEnum, so a caller holding the plain string gets the same answer as with the member.
    assert allows([MANAGE], action.value) is True
    assert allows([VIEW], action.value) is (action in VIEW_ACTIONS)


class TestEffective:
    def test_empty(self):
        assert effective([]) == frozenset()

    def test_view_only(self):
        assert effective([VIEW]) == frozenset({VIEW})

    def test_manage_adds_view(self):
        assert effective([MANAGE]) == frozenset({VIEW, MANAGE})

    def test_both(self):
        assert effective([MANAGE, VIEW]) == frozenset({VIEW, MANAGE})

    def test_returns_a_frozenset(self):
        assert type(effective([VIEW])) is frozenset

    def test_non_strings_are_dropped(self):
        assert effective(JUNK_OBJECTS + JUNK_UNHASHABLE + [VIEW]) == frozenset({VIEW})

    def test_unknown_strings_are_kept_but_grant_nothing(self):
        # Unknown capability strings survive effective() (they are harmless) but never satisfy REQUIRED.
        result = effective(["reports.view", VIEW])
        assert result == frozenset({"reports.view", VIEW})

    @pytest.mark.parametrize(
        "iterable",
        [
            (MANAGE,),
            {MANAGE},
            frozenset({MANAGE}),
            iter([MANAGE]),
            (c for c in [MANAGE]),
            {MANAGE: "granted"},
        ],
        ids=["tuple", "set", "frozenset", "iterator", "generator", "dict-keys"],
    )
    def test_any_iterable_of_strings(self, iterable):
        assert effective(iterable) == frozenset({VIEW, MANAGE})

    def test_a_bare_string_is_not_a_list_of_capabilities(self):
        # Iterating "review_pack.manage" yields characters, none of which is a capability.
        assert allows(MANAGE, Action.REQUEST) is False
        assert allows(VIEW, Action.GET) is False

    def test_input_is_not_mutated(self):
        granted = [MANAGE, None]
        effective(granted)
        assert granted == [MANAGE, None]
