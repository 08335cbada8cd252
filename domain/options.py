"""Pack options: what a producer may ask for, checked before anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass


class InvalidOptions(ValueError):
    pass


@dataclass(frozen=True)
class PackOptions:
    include_pii: bool
    include_operations: bool

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


def resolve_options(
    include_pii: object, include_operations: object, *, default_pii: bool, default_operations: bool
) -> PackOptions:
    """Apply defaults to unset options; anything but a real bool is refused."""
    return PackOptions(
        include_pii=_flag("include_pii", include_pii, default_pii),
        include_operations=_flag("include_operations", include_operations, default_operations),
    )


def options_from_dict(raw: Mapping[str, object]) -> PackOptions:
    """Rebuild options stored on a pack row."""
    return PackOptions(include_pii=bool(raw["include_pii"]), include_operations=bool(raw["include_operations"]))


def _flag(name: str, value: object, default: bool) -> bool:
    if value is None:
        return default
    # bool is a subclass of int; 0/1, "yes" and friends are refused so that a typo cannot flip PII on.
    if type(value) is not bool:
        raise InvalidOptions(f"{name} must be true or false, got {type(value).__name__} {value!r}")
    return value
