"""Render a pack's ``executive-summary.html``.

The page is the pack's entrypoint, so it must open anywhere an auditor double
clicks it: one self-contained HTML5 document with inline CSS, no scripts, no
external resources and no links. Every string in the context comes from a
tenant or the host application and is treated as hostile; Jinja2 autoescaping
is on and nothing here marks data as safe: prose is split into lines in
Python and every line is escaped by the template.

Rendering is deterministic: the output depends on the context alone (no clock,
no random ids, mappings walked in insertion order). The page names its pack
(id and generation time, seed 004 FR-005), so it is one of the two entries
that differ between packs of identical content; everything else on it is the
same for the same fingerprint, and the identity sits in one marked element
(``id="pack-identity"``) so that this can be checked.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from domain.layout import OPERATIONS_WINDOW_DAYS, SEVERITIES
from domain.redaction import statement

__all__ = ["render_review_summary", "render_tenant_summary"]

_TEMPLATES_DIR = Path(__file__).parent / "templates"

# English month names are spelled out here because strftime("%B") follows the
# process locale, which would make the same pack render differently per host.
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)

_FRESHNESS_LABELS = {
    "findings": "Findings",
    "hardening": "Hardening",
    "permission_posture": "Permission posture report",
    "entra_admin_roles": "Entra admin roles report",
    "operations": "Operations",
}

_REPORT_LABELS = {
    "permission_posture": "Permission posture",
    "entra_admin_roles": "Entra admin roles",
}

# Geometry of the severity bar chart, in SVG user units.
_CHART_WIDTH = 560
_CHART_LABEL_WIDTH = 120
_CHART_BAR_MAX = 360
_CHART_ROW_HEIGHT = 30
_CHART_BAR_HEIGHT = 20

_SUMMARY_MAX_CHARS = 200
_PREVIEW_ITEMS = 4


def load_templates() -> None:
    """Compile both pages' templates now rather than on the first pack (a worker does it before it forks)."""
    for name in ("tenant_summary.html", "review_summary.html"):
        _env.get_template(name)


def render_tenant_summary(ctx: dict[str, Any]) -> str:
    """Return the executive summary page of a tenant pack."""
    counts = ctx["counts"]
    view = {
        **ctx,
        "data_as_of_display": _display_date(ctx["data_as_of"]),
        "severity_rows": _severity_rows(counts["by_severity"]),
        "chart": _severity_chart(counts["by_severity"]),
        "hardening_rows": [
            (str(key), _summarise(value)) for key, value in ctx["hardening"].items()
        ],
        "report_rows": [
            (_REPORT_LABELS.get(key, _humanise(key)), bool(present))
            for key, present in ctx["reports"].items()
        ],
        "freshness_rows": [
            {**entry, "label": _FRESHNESS_LABELS.get(key, _humanise(key)), "age": _age(entry["age_days"])}
            for key, entry in ctx["data_freshness"].items()
        ],
        "pack_identity": _identity(ctx["pack"]),
        "privacy": statement(bool(ctx["options"]["include_pii"])),
    }
    view["freshness_callouts"] = _callouts(view["freshness_rows"])
    # The fingerprint identifies the pack for machines and lives in
    # metadata.json; keeping it out of the view makes leaking it impossible.
    view.pop("fingerprint", None)
    return _env.get_template("tenant_summary.html").render(view)


def render_review_summary(ctx: dict[str, Any]) -> str:
    """Return the executive summary page of a pack derived from a published review."""
    evidence = [
        {**entry, "label": entry["source"] if entry["source"] is not None else "Unnamed source", "age": _age(entry["age_days"])}
        for entry in ctx["evidence_basis"]
    ]
    # Without options the page must not claim that personal data was removed.
    include_pii = bool(ctx.get("options", {}).get("include_pii", True))
    view = {
        **ctx,
        "include_pii": include_pii,
        "privacy": statement(include_pii),
        "key_findings": [
            {**finding, "severity_class": _severity_class(finding["severity"])}
            for finding in ctx["key_findings"]
        ],
        "sections": [
            {**section, "outline": _outline(section.get("structured_body"))}
            for section in ctx["sections"]
        ],
        "evidence_basis": evidence,
        "freshness_callouts": _callouts(evidence),
        "pack_identity": _identity(ctx["pack"]),
    }
    return _env.get_template("review_summary.html").render(view)


def _identity(pack: dict[str, Any]) -> dict[str, Any]:
    return {"id": pack["id"], "generated": _display_datetime(pack["generated_at"])}


def _age(days: int | None) -> str | None:
    if days is None:
        return None
    if days == 0:
        return "today"
    return f"{_plural(days, 'day')} old"


def _callouts(rows: list[dict[str, Any]]) -> list[str]:
    """One sentence per stale or missing source, so nobody reads old data as current."""
    lines = []
    for row in rows:
        if row["status"] == "stale":
            lines.append(f"{row['label']} is stale: last updated {row['age']}.")
        elif row["status"] == "missing":
            lines.append(f"{row['label']} is missing: no usable date was recorded.")
    return lines


# Deeper levels of a structured section body are summarised rather than nested further, so a
# hostile body costs linear time and a readable page.
_OUTLINE_MAX_DEPTH = 6


def _outline(value: Any, depth: int = 0) -> list[dict[str, Any]] | None:
    """A structured section body as nested items: each with a label, a text and children."""
    if value is None:
        return None
    pairs: list[tuple[str | None, Any]]
    if isinstance(value, dict):
        pairs = [(_humanise(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = [(None, v) for v in value]
    else:
        return [{"label": None, "text": _scalar(value), "children": None}]
    items: list[dict[str, Any]] = []
    for label, item in pairs:
        if _is_scalar(item):
            items.append({"label": label, "text": _scalar(item), "children": None})
        elif depth + 1 >= _OUTLINE_MAX_DEPTH:
            items.append({"label": label, "text": _summarise(item) + " (in full in sections.json)", "children": None})
        else:
            items.append({"label": label, "text": None if item else "none", "children": _outline(item, depth + 1) or None})
    return items


def _display_datetime(value: str) -> str:
    try:
        moment = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(_dt.timezone.utc)
    except ValueError:
        return str(value)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}, {moment:%H:%M} UTC"


def _severity_rows(by_severity: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": key, "label": key.capitalize(), "count": int(by_severity.get(key, 0))}
        for key in SEVERITIES
    ]


def _severity_chart(by_severity: dict[str, int]) -> dict[str, Any]:
    rows = _severity_rows(by_severity)
    largest = max(row["count"] for row in rows)
    bars = []
    for index, row in enumerate(rows):
        # An all-zero pack draws empty bars rather than dividing by zero.
        width = round(_CHART_BAR_MAX * row["count"] / largest) if largest else 0
        # A non-zero count always gets a visible sliver so it never reads as zero.
        if row["count"] and width < 2:
            width = 2
        top = index * _CHART_ROW_HEIGHT
        bars.append(
            {
                **row,
                "y": top + (_CHART_ROW_HEIGHT - _CHART_BAR_HEIGHT) // 2,
                "text_y": top + _CHART_ROW_HEIGHT // 2 + 5,
                "width": width,
                "value_x": _CHART_LABEL_WIDTH + width + 8,
            }
        )
    description = "Bar chart of open findings by severity: " + ", ".join(
        f"{row['label']} {row['count']}" for row in rows
    ) + "."
    return {
        "width": _CHART_WIDTH,
        "height": len(rows) * _CHART_ROW_HEIGHT,
        "label_width": _CHART_LABEL_WIDTH,
        "bar_height": _CHART_BAR_HEIGHT,
        "bars": bars,
        "description": description,
    }


def _severity_class(severity: Any) -> str:
    # Class names are picked from a fixed list so tenant text never lands in
    # an attribute as anything but an escaped value.
    key = str(severity).strip().lower()
    return f"sev-{key}" if key in SEVERITIES else "sev-other"


def _display_date(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        day = _dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _humanise(key: Any) -> str:
    return str(key).replace("_", " ").capitalize()


def _scalar(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _summarise(value: Any) -> str:
    """One line for a hardening value: the scalar itself, or a compact outline."""
    if _is_scalar(value):
        text = _scalar(value)
    elif isinstance(value, dict):
        text = _summarise_mapping(value)
    elif isinstance(value, (list, tuple)):
        text = _summarise_sequence(value)
    else:
        text = str(value)
    text = " ".join(text.split())
    if len(text) > _SUMMARY_MAX_CHARS:
        text = text[: _SUMMARY_MAX_CHARS - 1].rstrip() + "…"
    return text


def _summarise_mapping(value: dict[str, Any]) -> str:
    if not value:
        return "none"
    if len(value) <= _PREVIEW_ITEMS and all(_is_scalar(v) for v in value.values()):
        return "; ".join(f"{k}: {_scalar(v)}" for k, v in value.items())
    names = [str(k) for k in value]
    preview = ", ".join(names[:_PREVIEW_ITEMS])
    more = len(names) - _PREVIEW_ITEMS
    suffix = f" and {more} more" if more > 0 else ""
    return f"{_plural(len(names), 'setting')}: {preview}{suffix}"


def _summarise_sequence(value: list[Any] | tuple[Any, ...]) -> str:
    if not value:
        return "none"
    if len(value) <= _PREVIEW_ITEMS and all(_is_scalar(v) for v in value):
        return ", ".join(_scalar(v) for v in value)
    return _plural(len(value), "item")


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    word = noun if count == 1 else (plural or noun + "s")
    return f"{count:,} {word}"


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _paragraphs(text: Any) -> list[list[str]]:
    """Split prose into paragraphs of lines; the template escapes each line."""
    if text is None:
        return []
    normalised = str(text).replace("\r\n", "\n").replace("\r", "\n").strip()
    if not normalised:
        return []
    return [
        [line.strip() for line in chunk.strip().split("\n")]
        for chunk in _PARAGRAPH_BREAK.split(normalised)
    ]


def _number(value: int) -> str:
    return f"{int(value):,}"


_env = Environment(
    loader=FileSystemLoader(_TEMPLATES_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["paragraphs"] = _paragraphs
_env.filters["number"] = _number
_env.globals["plural"] = _plural
_env.globals["operations_window_days"] = OPERATIONS_WINDOW_DAYS
