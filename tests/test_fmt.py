"""`fmt`: one canonical layout, idempotent, and the IR before and after is equal."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from hdrpolicy.diagnostics import Source, has_errors
from hdrpolicy.fmt import check_formatted, format_file, format_policy, format_source
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source
from policy_strategies import policies

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policies"

MESSY = """\
# header comment
policy   "edge"   # names it


# about allow
allow when method=="OPTIONS"   # preflight


deny 401 "missing # not a comment" when not header Authorization exists
deny 403 "x" when (header a == "1" or header b == "2") and not (header c exists and path starts_with "/a") and header d in ["x","y",]
deny 403   # stays after the line it was on
  when header x == "y"
   and (host == "a")
default deny 404 "no route"
# end
"""

TIDY = """\
# header comment
policy "edge"  # names it

# about allow
allow when method == "OPTIONS"  # preflight

deny 401 "missing # not a comment" when not header authorization exists
deny 403 "x" when (header a == "1" or header b == "2")
    and not (header c exists and path starts_with "/a")
    and header d in ["x", "y"]
deny 403 when header x == "y"  # stays after the line it was on
    and host == "a"
default deny 404 "no route"
# end
"""


def _policy(text: str) -> ir.Policy:
    checked = check_source(Source("t.hp", text), "t")
    assert checked.policy is not None and not has_errors(checked.diagnostics), checked.diagnostics
    return checked.policy


def test_messy_layout_becomes_canonical() -> None:
    result = format_source(MESSY)
    assert result.text == TIDY
    assert _policy(TIDY) == _policy(MESSY)
    assert format_source(TIDY).text == TIDY


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('deny 403 when not (header a exists or path == "/")', None),
        ("deny 403 when header a exists and (header b exists and header c exists)", None),
        (
            "deny 403 when (header a exists and header b exists) and header c exists",
            "deny 403 when header a exists and header b exists and header c exists",
        ),
        ("deny 403 when not not header a exists", None),
        ("deny 403 when ((header a exists))", "deny 403 when header a exists"),
        ('deny 403 when header a != "x" ignoring case', None),
        ('deny 403 when header a not in ["x"] or not header a in ["y"]', None),
        ('deny 403 "q\\"\\\\\\n\\t\\u0001é" when header a matches "^\\\\d+$"', None),
        ('allow unless host == "a" \n\n\n\n deny 403', 'allow unless host == "a"\n\ndeny 403'),
    ],
)
def test_operator_spelling_and_parentheses(before: str, after: str | None) -> None:
    want = (after if after is not None else before) + "\n"
    assert format_source(before).text == want
    assert _policy(want) == _policy(before)


def test_a_file_with_errors_is_refused() -> None:
    result = format_source('deny 403 "x" unles header a exists')
    assert result.text is None
    assert [d.code for d in result.diagnostics] == ["HP101"]
    assert result.diff() is None


def test_comments_inside_a_rule_stay_where_they_were() -> None:
    messy = """\
deny 403 "no"   # why we deny
    when header a exists   # a: legacy clients
    # b: see the incident review
    or header b == "1"
    or header c exists  # c: trails the rule
deny 403 when   # short, but commented: one line each part
  not header d exists
"""
    tidy = """\
deny 403 "no" when header a exists  # why we deny # a: legacy clients
    # b: see the incident review
    or header b == "1"
    or header c exists  # c: trails the rule
deny 403 when not header d exists  # short, but commented: one line each part
"""
    once = format_source(messy).text
    assert once == tidy
    assert format_source(tidy).text == tidy
    # A comment on its own line before a part that has no line of its own goes above the rule.
    moved = format_source("deny 403 when\n  # before the only part\n  header a exists\n").text
    assert moved == "# before the only part\ndeny 403 when header a exists\n"


def test_empty_and_comment_only_files() -> None:
    assert format_source("").text == ""
    assert format_source("\n\n# only\n\n\n# comments  \n").text == "# only\n\n# comments\n"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.hp")), ids=lambda p: p.name)
def test_examples_are_formatted(path: Path) -> None:
    assert check_formatted(path) is None


def test_check_formatted_gives_a_unified_diff(tmp_path: Path) -> None:
    bad = tmp_path / "edge.hp"
    bad.write_text((EXAMPLES / "edge-gateway.hp").read_text().replace(" == ", "=="))
    diff = check_formatted(bad)
    assert diff is not None
    assert diff.startswith(f"--- {bad}\n+++ {bad} (formatted)\n")
    assert '-allow when method=="OPTIONS"\n+allow when method == "OPTIONS"\n' in diff
    fixed = format_file(bad)
    assert fixed.text == (EXAMPLES / "edge-gateway.hp").read_text()


@settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(policies())
def test_printing_then_parsing_gives_the_same_ir(policy: ir.Policy) -> None:
    text = format_policy(policy)
    assert _policy(text) == policy
    # Idempotent: the printed text is already in the canonical layout.
    assert format_source(text).text == text


@settings(max_examples=100, derandomize=True, deadline=None)
@given(policies())
def test_fmt_of_a_broken_up_layout_is_idempotent(policy: ir.Policy) -> None:
    # A different layout of the same policy: tokens spread over lines, comments between.
    messy = format_policy(policy).replace(" when ", "  # c\n when\n").replace(" and ", "\nand ")
    once = format_source(messy).text
    assert once is not None
    assert format_source(once).text == once
    assert _policy(once) == policy
