"""The executive summary page: structure, escaping and determinism.

These are pure calls into ``domain.executive_summary``; the output is checked
with the standard library's HTML parser rather than string matching wherever
structure matters.
"""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import pytest

from domain.executive_summary import render_review_summary, render_tenant_summary

HOSTILE = "<script>alert(1)</script></style>\"'&javascript:alert(1)"
FINGERPRINT = "fp-3f9a1c0d5e7b2a46c8e1d0f9b7a5c3e1"
DISCLOSURE = (
    "This pack is a point-in-time export of security data.\n"
    "It is not a certification or an attestation of compliance."
)
FILES = [
    {"path": "findings.csv", "role": "appendix", "description": "Open and acknowledged findings."},
    {"path": "hardening.json", "role": "appendix", "description": "Hardening status."},
    {"path": "metadata.json", "role": "appendix", "description": "Pack identity and file roles."},
]

TENANT_HEADINGS = [
    "Security review pack — Contoso Ltd",
    "Executive summary",
    "Findings by severity",
    "Hardening status",
    "Stored reports",
    "Recent operations",
    "Data freshness",
    "What's in this pack",
    "About this document",
]

REVIEW_HEADINGS = [
    "Executive summary",
    "Key findings",
    "Accepted risks",
    "Decisions needing awareness",
    "Review sections",
    "Evidence basis",
    "What's in this pack",
    "About this document",
]

# Elements that never take a closing tag in HTML.
VOID_ELEMENTS = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source"}


PACK = {"id": 314, "generated_at": "2026-11-21T09:05:00Z"}


def fresh(as_of, age_days, stale_after_days=7):
    """A data_freshness entry as documents.source_freshness states it."""
    if age_days is None:
        return {"as_of": as_of, "age_days": None, "status": "missing"}
    return {"as_of": as_of, "age_days": age_days, "status": "stale" if age_days > stale_after_days else "current"}


def tenant_ctx(**overrides):
    ctx = {
        "tenant": {"name": "Contoso Ltd", "external_id": "contoso-001"},
        "data_as_of": "2026-11-20",
        "options": {"include_pii": False, "include_operations": True},
        "counts": {
            "total": 17,
            "by_severity": {"critical": 2, "high": 5, "medium": 6, "low": 3, "informational": 1},
            "by_status": {"new": 12, "acknowledged": 5},
            "operations": 4,
        },
        "pack": PACK,
        "stale_after_days": 7,
        "data_freshness": {
            "findings": fresh("2026-11-20T08:00:00+00:00", 1),
            "hardening": fresh("2026-11-19T22:15:00+00:00", 2),
            "permission_posture": fresh("2026-11-18T06:00:00+00:00", 3),
            "entra_admin_roles": fresh(None, None),
            "operations": fresh("2026-11-20T07:59:00+00:00", 1),
        },
        "hardening": {
            "mfa_enforced": True,
            "legacy_auth_blocked": False,
            "secure_score": 71.5,
            "conditional_access": {"policies": 12, "report_only": 3},
            "break_glass_accounts": ["bg-1", "bg-2"],
            "audit_log_retention_days": None,
        },
        "reports": {"permission_posture": True, "entra_admin_roles": False},
        "files": copy.deepcopy(FILES),
        "fingerprint": FINGERPRINT,
        "disclosure": DISCLOSURE,
    }
    ctx.update(overrides)
    return ctx


def review_ctx(**overrides):
    ctx = {
        "tenant": {"name": "Contoso Ltd", "external_id": "contoso-001"},
        "review": {"id": 42, "published_at": "2026-11-21T10:00:00+00:00"},
        "headline": "Posture improved this quarter.\nTwo critical items remain.",
        "overall_status": "Needs attention",
        "key_findings": [
            {"title": "Legacy authentication still allowed", "severity": "critical",
             "detail": "Block legacy protocols.\n\nSee the hardening appendix."},
        ],
        "accepted_risks": [
            {"title": "Shared mailbox without MFA", "justification": "Vendor constraint.",
             "expires": "2027-03-31"},
        ],
        "decisions": [{"title": "Retire on-premises sync", "detail": "Planned for Q1."}],
        "sections": [{"title": "Identity", "body": "First paragraph.\n\nSecond paragraph.\nSame paragraph."}],
        "pack": PACK,
        "stale_after_days": 7,
        "interpretation_version": "2026.11",
        "evidence_basis": [{"source": "findings", **fresh("2026-11-20T08:00:00+00:00", 1)},
                           {"source": "hardening", **fresh(None, None)}],
        "files": copy.deepcopy(FILES),
        "disclosure": DISCLOSURE,
    }
    ctx.update(overrides)
    return ctx


class Outline(HTMLParser):
    """Collects headings, tags and the text inside <style>, and checks nesting."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.headings: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.style_blocks = 0
        self.svg_rects = 0
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name, value) for name, value in attrs)
        if tag == "style":
            self.style_blocks += 1
        if tag == "rect":
            self.svg_rects += 1
        if tag in {"h1", "h2"}:
            self._heading = []
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name, value) for name, value in attrs)
        if tag == "rect":
            self.svg_rects += 1

    def handle_endtag(self, tag):
        if tag in VOID_ELEMENTS:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag in {"h1", "h2"} and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)


def outline(html: str) -> Outline:
    parser = Outline()
    parser.feed(html)
    parser.close()
    assert parser.errors == []
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


def text_of(html: str) -> str:
    """The visible text, whitespace collapsed, without the <style> block."""
    without_style = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    without_tags = re.sub(r"<[^>]+>", " ", without_style)
    return " ".join(without_tags.split())


# --- tenant pack ----------------------------------------------------------


def test_tenant_page_is_a_self_contained_html5_document():
    html = render_tenant_summary(tenant_ctx())

    assert html.startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in html
    assert "@media print" in html
    parsed = outline(html)
    assert parsed.style_blocks == 1
    assert "script" not in parsed.tags
    assert "<script" not in html.lower()
    assert "link" not in parsed.tags and "img" not in parsed.tags
    # Nothing is loaded from elsewhere and nothing links out.
    assert not [a for a in parsed.attrs if a[1] in {"href", "src"}]
    assert "href=" not in html
    assert "@import" not in html and "url(" not in html


def test_tenant_headings_appear_in_order():
    parsed = outline(render_tenant_summary(tenant_ctx()))

    assert parsed.headings == TENANT_HEADINGS


def test_tenant_summary_states_counts_and_date_in_plain_language():
    text = text_of(render_tenant_summary(tenant_ctx()))

    assert "There are 17 open findings in this pack: 12 new and 5 acknowledged." in text
    assert "2 are rated critical and 5 are rated high severity" in text
    assert "as of 20 November 2026" in text
    assert "4 operation runs from the last 30 days are listed in operations.csv" in text


def test_tenant_status_table_and_sections_show_the_data():
    text = text_of(render_tenant_summary(tenant_ctx()))

    assert "New 12" in text
    assert "Acknowledged 5" in text
    assert "Total open 17" in text
    # Hardening: scalars as themselves, nested values compactly.
    assert "mfa_enforced yes" in text
    assert "legacy_auth_blocked no" in text
    assert "secure_score 71.5" in text
    assert "conditional_access policies: 12; report_only: 3" in text
    assert "break_glass_accounts bg-1, bg-2" in text
    assert "audit_log_retention_days not set" in text
    # Stored reports and freshness.
    assert "Permission posture Present" in text
    assert "Entra admin roles Not available" in text
    assert "Findings 2026-11-20T08:00:00+00:00" in text
    assert "Entra admin roles report Not available" in text
    # Files and disclosure.
    for file in FILES:
        assert file["path"] in text
        assert file["description"] in text
    assert "It is not a certification or an attestation of compliance." in text


def test_large_hardening_values_are_summarised():
    ctx = tenant_ctx(hardening={
        "policies": {f"policy_{i}": {"enabled": True} for i in range(7)},
        "exclusions": list(range(30)),
        "note": "x" * 500,
    })
    text = text_of(render_tenant_summary(ctx))

    assert "7 settings: policy_0, policy_1, policy_2, policy_3 and 3 more" in text
    assert "exclusions 30 items" in text
    assert "x" * 500 not in text
    assert "x" * 150 in text


def test_severity_chart_has_one_labelled_bar_per_severity_scaled_to_the_max():
    html = render_tenant_summary(tenant_ctx())
    parsed = outline(html)

    assert parsed.tags.count("svg") == 1
    assert parsed.svg_rects == 5
    assert html.count("<rect") == 5
    svg = dict((name, value) for tag, name, value in parsed.attrs if tag == "svg")
    assert svg["role"] == "img"
    assert svg["aria-label"] == (
        "Bar chart of open findings by severity: "
        "Critical 2, High 5, Medium 6, Low 3, Informational 1."
    )
    assert "<title>Bar chart of open findings by severity" in html
    widths = [int(value) for tag, name, value in parsed.attrs if tag == "rect" and name == "width"]
    assert widths == [120, 300, 360, 180, 60]
    for label in ("Critical", "High", "Medium", "Low", "Informational"):
        assert f">{label}</text>" in html


def test_severity_chart_handles_all_zero_counts():
    ctx = tenant_ctx(
        data_as_of=None,
        counts={
            "total": 0,
            "by_severity": {"critical": 0, "high": 0, "medium": 0, "low": 0, "informational": 0},
            "by_status": {"new": 0, "acknowledged": 0},
            "operations": 0,
        },
        hardening={},
    )
    html = render_tenant_summary(ctx)
    parsed = outline(html)
    text = text_of(html)

    assert parsed.svg_rects == 5
    widths = [value for tag, name, value in parsed.attrs if tag == "rect" and name == "width"]
    assert widths == ["0"] * 5
    assert "There are no open findings in this pack." in text
    assert "No security data was available for this tenant" in text
    assert "No hardening data was available." in text
    assert "No operation runs were recorded in the last 30 days." in text


def test_small_counts_stay_visible_next_to_a_large_one():
    ctx = tenant_ctx()
    ctx["counts"]["by_severity"] = {"critical": 1, "high": 0, "medium": 5000, "low": 0, "informational": 0}
    parsed = outline(render_tenant_summary(ctx))

    widths = [int(value) for tag, name, value in parsed.attrs if tag == "rect" and name == "width"]
    assert widths == [2, 0, 360, 0, 0]


def test_operations_excluded_is_said_in_words():
    ctx = tenant_ctx(options={"include_pii": True, "include_operations": False})
    ctx["counts"]["operations"] = None
    text = text_of(render_tenant_summary(ctx))

    assert "Operations were excluded from this pack." in text
    assert "operations.csv" not in text


def test_fingerprint_is_not_rendered():
    html = render_tenant_summary(tenant_ctx())

    assert FINGERPRINT not in html
    assert "fingerprint" not in html.lower()


def test_rendering_is_deterministic():
    assert render_tenant_summary(tenant_ctx()) == render_tenant_summary(tenant_ctx())
    assert render_review_summary(review_ctx()) == render_review_summary(review_ctx())


def test_rendering_does_not_mutate_the_context():
    ctx = tenant_ctx()
    before = copy.deepcopy(ctx)
    render_tenant_summary(ctx)

    assert ctx == before


def test_missing_context_keys_fail_loudly():
    ctx = tenant_ctx()
    del ctx["disclosure"]

    from jinja2.exceptions import UndefinedError

    with pytest.raises(UndefinedError):
        render_tenant_summary(ctx)


def test_hostile_tenant_text_is_escaped_everywhere():
    ctx = tenant_ctx(
        tenant={"name": HOSTILE, "external_id": HOSTILE},
        hardening={HOSTILE: HOSTILE, "nested": {HOSTILE: HOSTILE}},
        files=[{"path": HOSTILE, "role": HOSTILE, "description": HOSTILE}],
        disclosure=HOSTILE + "\n" + HOSTILE,
        data_freshness={"findings": fresh(HOSTILE, None), HOSTILE: fresh(HOSTILE, None)},
        data_as_of=HOSTILE,
    )
    html = render_tenant_summary(ctx)
    parsed = outline(html)

    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "script" not in parsed.tags
    # The only </style> is the one that closes the inline stylesheet, so a
    # tenant name cannot end the style block early.
    assert html.count("</style>") == 1
    assert html.index("</style>") < html.index("<body>")
    assert parsed.style_blocks == 1
    assert "&lt;/style&gt;" in html
    assert "href=" not in html
    assert not [a for a in parsed.attrs if a[1] in {"href", "src"} or a[1].startswith("on")]
    # Quotes are escaped so the name cannot break out of an attribute value.
    assert "&#34;" in html and "&#39;" in html
    # The text survives intact for the reader.
    assert "Security review pack — " + HOSTILE in outline(html).headings[0]


def test_hostile_text_in_the_title_is_escaped():
    html = render_tenant_summary(tenant_ctx(tenant={"name": "</title><script>x</script>", "external_id": "t"}))

    assert "<title>Security review pack — &lt;/title&gt;&lt;script&gt;x&lt;/script&gt;</title>" in html


# --- review-derived pack --------------------------------------------------


def test_review_page_structure():
    html = render_review_summary(review_ctx())
    parsed = outline(html)

    assert html.startswith("<!doctype html>")
    assert parsed.headings[0] == "Security review pack — Contoso Ltd"
    assert parsed.headings[1:] == REVIEW_HEADINGS
    assert "script" not in parsed.tags
    assert "href=" not in html
    assert "@media print" in html


def test_review_page_renders_its_content():
    html = render_review_summary(review_ctx())
    text = text_of(html)

    assert "Posture improved this quarter." in text
    assert "Overall status: Needs attention" in text
    assert "Legacy authentication still allowed" in text
    assert 'class="badge sev-critical"' in html
    assert "Acceptance expires 2027-03-31." in text
    assert "Retire on-premises sync" in text
    assert "Identity" in text
    assert "Not recorded" in text
    assert "None recorded." not in text
    # Section bodies: blank lines become paragraphs, single newlines <br>.
    assert "<p>First paragraph.</p>\n<p>Second paragraph.<br>\nSame paragraph.</p>" in html


def test_review_empty_lists_say_none_recorded():
    ctx = review_ctx(
        headline=None, overall_status=None, key_findings=[], accepted_risks=[],
        decisions=[], sections=[], evidence_basis=[],
    )
    html = render_review_summary(ctx)
    outline(html)
    text = text_of(html)

    # Executive summary, five empty lists.
    assert text.count("None recorded.") == 6


def test_review_hostile_text_is_escaped_and_severity_class_is_not_taken_from_data():
    ctx = review_ctx(
        headline=HOSTILE,
        overall_status=HOSTILE,
        key_findings=[{"title": HOSTILE, "severity": 'x" onmouseover="alert(1)', "detail": HOSTILE}],
        accepted_risks=[{"title": HOSTILE, "justification": HOSTILE, "expires": HOSTILE}],
        decisions=[{"title": HOSTILE, "detail": HOSTILE}],
        sections=[{"title": HOSTILE, "body": HOSTILE + "\n\n" + HOSTILE}],
        evidence_basis=[{"source": HOSTILE, **fresh(HOSTILE, None)}],
    )
    html = render_review_summary(ctx)
    parsed = outline(html)

    assert "<script" not in html.lower()
    assert html.count("</style>") == 1
    assert "href=" not in html
    assert 'class="badge sev-other"' in html
    assert not [a for a in parsed.attrs if a[1].startswith("on")]
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10


def test_review_page_has_no_fingerprint_or_raw_json():
    html = render_review_summary(review_ctx())

    assert "fingerprint" not in html.lower()
    assert "{&#34;" not in html and '{"' not in html


IDENTITY = re.compile(r'<dd id="pack-identity">[^<]*</dd>')


@pytest.mark.parametrize("render, ctx", [(render_tenant_summary, tenant_ctx), (render_review_summary, review_ctx)])
def test_the_page_names_its_pack_in_one_marked_element(render, ctx):
    html = render(ctx())
    assert IDENTITY.findall(html) == ['<dd id="pack-identity">#314, generated 21 November 2026, 09:05 UTC</dd>']
    other = render(ctx(pack={"id": 315, "generated_at": "2026-11-22T00:00:00Z"}))
    # Everything but the identity is the same page: the content part is deterministic.
    assert other != html
    assert IDENTITY.sub("", other) == IDENTITY.sub("", html)


def test_tenant_page_states_each_source_age_and_calls_out_stale_and_missing_ones():
    freshness = {
        "findings": fresh("2026-11-20T08:00:00Z", 1),
        "hardening": fresh("2026-11-01T08:00:00Z", 20),
        "entra_admin_roles": fresh(None, None),
    }
    html = render_tenant_summary(tenant_ctx(data_freshness=freshness, data_as_of="2026-11-01"))
    text = text_of(html)
    assert "1 day old" in text and "20 days old" in text
    assert 'id="freshness-warning"' in html
    assert "more than 7 days old" in text
    assert "Hardening is stale: last updated 20 days old." in text
    assert "Entra admin roles report is missing: no usable date was recorded." in text
    assert "Findings is" not in text
    assert "1 November 2026 (the oldest source)" in text


def test_no_callout_when_every_source_is_current():
    freshness = {"findings": fresh("2026-11-20T08:00:00Z", 1), "hardening": fresh("2026-11-21T08:00:00Z", 0)}
    html = render_tenant_summary(tenant_ctx(data_freshness=freshness))
    assert 'id="freshness-warning"' not in html
    assert "today" in text_of(html)


def test_review_page_shows_interpretation_version_and_evidence_status():
    evidence = [{"source": "findings", **fresh("2026-10-01", 51)}, {"source": "hardening", **fresh("2026-11-20", 1)}]
    html = render_review_summary(review_ctx(evidence_basis=evidence))
    text = text_of(html)
    assert "Interpretation version 2026.11" in text
    assert "findings is stale: last updated 51 days old." in text
    assert "51 days old" in text and "1 day old" in text
    assert "Not recorded" in text_of(render_review_summary(review_ctx(interpretation_version=None)))


def test_structured_section_bodies_are_rendered_as_an_outline():
    sections = [
        {"title": "Apps", "body": "", "structured_body": {"owner_count": 3, "apps": [{"name": "CRM", "scope": "Mail.Read"}], "empty": []}},
        {"title": "Listed", "body": "", "structured_body": ["alpha", HOSTILE]},
    ]
    html = render_review_summary(review_ctx(sections=sections))
    text = text_of(html)
    assert "<strong>Owner count</strong>: 3" in html
    assert "<strong>Name</strong>: CRM" in html and "<strong>Scope</strong>: Mail.Read" in html
    assert "<strong>Empty</strong>: none" in html
    assert "alpha" in text
    assert HOSTILE not in html and "<script>alert" not in html
    assert html.count('<ul class="outline">') == 4


def test_deep_structured_bodies_are_summarised_past_a_fixed_depth():
    deep: object = "bottom"
    for _ in range(500):
        deep = {"level": deep}
    html = render_review_summary(review_ctx(sections=[{"title": "Deep", "body": "", "structured_body": deep}]))
    assert html.count('<ul class="outline">') == 6
    assert "(in full in sections.json)" in text_of(html)
