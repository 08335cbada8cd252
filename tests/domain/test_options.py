"""Pack options: defaults for unset values, real booleans only, and the stored round trip."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from domain.options import InvalidOptions, PackOptions, options_from_dict, resolve_options

OPTION_NAMES = ("include_pii", "include_operations")
BOOLS = (True, False)
DEFAULT_COMBOS = list(itertools.product(BOOLS, BOOLS))

REFUSED = [
    (0, "int 0"),
    (1, "int 1"),
    (2, "int 2"),
    (0.0, "float 0.0"),
    (1.0, "float 1.0"),
    ("true", "str 'true'"),
    ("false", "str 'false'"),
    ("yes", "str 'yes'"),
    ("no", "str 'no'"),
    ("", "str ''"),
    ("1", "str '1'"),
    ([], "list []"),
    ([True], "list [True]"),
    ({}, "dict {}"),
    ((), "tuple ()"),
    (b"true", "bytes b'true'"),
]


def _call(name: str, value: object, *, default_pii: bool = True, default_operations: bool = True) -> PackOptions:
    kwargs = {"include_pii": None, "include_operations": None, name: value}
    return resolve_options(**kwargs, default_pii=default_pii, default_operations=default_operations)


@pytest.mark.parametrize("default_pii, default_operations", DEFAULT_COMBOS)
def test_none_takes_the_defaults(default_pii, default_operations):
    opts = resolve_options(None, None, default_pii=default_pii, default_operations=default_operations)
    assert opts == PackOptions(include_pii=default_pii, include_operations=default_operations)
    assert opts.include_pii is default_pii
    assert opts.include_operations is default_operations


@pytest.mark.parametrize("pii, ops", DEFAULT_COMBOS)
@pytest.mark.parametrize("default_pii, default_operations", DEFAULT_COMBOS)
def test_real_booleans_win_over_defaults(pii, ops, default_pii, default_operations):
    opts = resolve_options(pii, ops, default_pii=default_pii, default_operations=default_operations)
    assert opts.include_pii is pii
    assert opts.include_operations is ops


@pytest.mark.parametrize("name", OPTION_NAMES)
@pytest.mark.parametrize("value", BOOLS)
def test_one_set_one_default(name, value):
    opts = _call(name, value, default_pii=not value, default_operations=not value)
    other = "include_operations" if name == "include_pii" else "include_pii"
    assert getattr(opts, name) is value
    assert getattr(opts, other) is (not value)


@pytest.mark.parametrize("name", OPTION_NAMES)
@pytest.mark.parametrize("value, shown", REFUSED, ids=[s for _, s in REFUSED])
def test_anything_but_a_bool_is_refused_and_named(name, value, shown):
    with pytest.raises(InvalidOptions) as excinfo:
        _call(name, value)
    message = str(excinfo.value)
    assert message == f"{name} must be true or false, got {shown}"
    other = "include_operations" if name == "include_pii" else "include_pii"
    assert other not in message


def test_the_first_bad_option_is_reported():
    with pytest.raises(InvalidOptions, match=r"^include_pii "):
        resolve_options("yes", 1, default_pii=True, default_operations=True)


def test_bool_subclass_of_int_is_not_enough():
    class Flag(int):
        pass

    with pytest.raises(InvalidOptions, match="include_operations must be true or false, got Flag 1"):
        resolve_options(True, Flag(1), default_pii=True, default_operations=True)


def test_invalid_options_is_a_value_error():
    assert issubclass(InvalidOptions, ValueError)


@pytest.mark.parametrize("pii, ops", DEFAULT_COMBOS)
def test_as_dict(pii, ops):
    assert PackOptions(include_pii=pii, include_operations=ops).as_dict() == {
        "include_pii": pii,
        "include_operations": ops,
    }


@pytest.mark.parametrize("pii, ops", DEFAULT_COMBOS)
def test_options_from_dict_round_trip(pii, ops):
    original = PackOptions(include_pii=pii, include_operations=ops)
    rebuilt = options_from_dict(original.as_dict())
    assert rebuilt == original
    assert rebuilt.include_pii is pii
    assert rebuilt.include_operations is ops


def test_options_from_dict_ignores_extra_stored_keys():
    # Pack rows store more than the two flags (e.g. the operations window start).
    stored = {"include_pii": False, "include_operations": True, "operations_since": "2026-10-21"}
    assert options_from_dict(stored) == PackOptions(include_pii=False, include_operations=True)


@pytest.mark.parametrize("missing", OPTION_NAMES)
def test_options_from_dict_needs_both_keys(missing):
    stored = {"include_pii": True, "include_operations": True}
    del stored[missing]
    with pytest.raises(KeyError):
        options_from_dict(stored)


def test_options_are_frozen_and_hashable():
    opts = PackOptions(include_pii=True, include_operations=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.include_pii = False  # type: ignore[misc]
    assert hash(opts) == hash(PackOptions(include_pii=True, include_operations=False))
    assert opts != PackOptions(include_pii=True, include_operations=True)
