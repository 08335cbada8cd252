"""Who may do what with review packs: the one place that decides."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

REVIEW_PACK_VIEW = "review_pack.view"
REVIEW_PACK_MANAGE = "review_pack.manage"
ALL = (REVIEW_PACK_VIEW, REVIEW_PACK_MANAGE)


class Action(StrEnum):
    REQUEST = "request"
    REQUEST_REVIEW = "request_review_pack"
    GET = "get"
    LIST = "list"
    DOWNLOAD_URL = "download_url"
    EXPIRE = "expire"


REQUIRED: dict[Action, str] = {
    Action.REQUEST: REVIEW_PACK_MANAGE,
    Action.REQUEST_REVIEW: REVIEW_PACK_MANAGE,
    Action.EXPIRE: REVIEW_PACK_MANAGE,
    Action.GET: REVIEW_PACK_VIEW,
    Action.LIST: REVIEW_PACK_VIEW,
    Action.DOWNLOAD_URL: REVIEW_PACK_VIEW,
}


def effective(capabilities: Iterable[str]) -> frozenset[str]:
    """Expand granted capabilities: manage implies view."""
    granted = frozenset(c for c in capabilities if isinstance(c, str))
    if REVIEW_PACK_MANAGE in granted:
        granted |= {REVIEW_PACK_VIEW}
    return granted


def allows(capabilities: Iterable[str], action: Action) -> bool:
    return REQUIRED[action] in effective(capabilities)
