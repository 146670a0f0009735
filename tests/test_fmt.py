"""`fmt`: one canonical layout, idempotent, and the IR before and after is equal."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from hdrpolicy.diagnostics import Source, has_errors
from hdrpolicy.fmt import check_formatted, format_file, format_policy, format_source
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source, files_beside
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


LISTS_MESSY = """\
policy "lists"
# who may
list admins=["alice","bob",]   # the admins
list tenants   from   "tenants.txt"
list offices = ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32", "172.16.0.0/12", "100.64.0.0/10", "198.51.100.0/24"]
list reviewed = [
  "a",   # first
  # before b
  "b"
  # before the end
]
deny 403 when header x-user not in admins and query "a b" == "1" and cookie sid exists
deny 403 when client in [ "10.0.0.0/8" ] or header x-tenant in tenants
deny 403 when client not in offices and query page in reviewed and cookie "__Host-t" == "x"
"""

LISTS_TIDY = """\
policy "lists"

# who may
list admins = ["alice", "bob"]  # the admins
list tenants from "tenants.txt"
list offices = [
    "10.0.0.0/8",
    "192.168.0.0/16",
    "2001:db8::/32",
    "172.16.0.0/12",
    "100.64.0.0/10",
    "198.51.100.0/24",
]
list reviewed = [
    "a",  # first
    # before b
    "b",
    # before the end
]
deny 403 when header x-user not in admins and query "a b" == "1" and cookie sid exists
deny 403 when client in ["10.0.0.0/8"] or header x-tenant in tenants
deny 403 when client not in offices and query page in reviewed and cookie __Host-t == "x"
"""


def test_lists_query_cookie_and_client_have_one_layout(tmp_path: Path) -> None:
    # No tenants.txt anywhere: `fmt` never reads list files, so it formats anyway.
    result = format_source(LISTS_MESSY)
    assert [d.code for d in result.diagnostics] == []
    assert result.text == LISTS_TIDY
    assert format_source(LISTS_TIDY).text == LISTS_TIDY
    # With the list file beside it, both layouts mean the same policy.
    (tmp_path / "tenants.txt").write_text("# tenants\nacme\nglobex\n")
    before = check_source(Source("t.hp", LISTS_MESSY), "t", files_beside(tmp_path))
    after = check_source(Source("t.hp", LISTS_TIDY), "t", files_beside(tmp_path))
    assert before.ok and after.ok
    assert before.policy == after.policy
    [tenants] = [n for n in after.policy.lists if n.name == "tenants"]  # type: ignore[union-attr]
    assert [v.value for v in tenants.values] == ["acme", "globex"]


def test_in_name_stays_a_name() -> None:
    text = 'list a = ["x", "y"]\ndeny 403 when header h in a or header g not in a ignoring case\n'
    assert format_source(text).text == text
    policy = _policy(text)
    [rule] = policy.rules
    assert rule.condition is not None
    assert [c.list_name for c in ir.comparisons(rule.condition)] == ["a", "a"]
    # The comparison holds the list's values (the checker filled them in), yet prints by name.
    assert [v.value for v in ir.comparisons(rule.condition)[0].values] == ["x", "y"]


@pytest.mark.parametrize(
    "text",
    [
        'list t from "/etc/tenants.txt"\ndeny 403 when header x in t\n',  # absolute: HP219
        'list t from "missing.txt"\ndeny 403 when header x in t\n',  # missing: HP219
    ],
)
def test_fmt_formats_a_policy_whose_list_file_check_refuses(text: str) -> None:
    checked = check_source(Source("t.hp", text), "t")
    assert [d.code for d in checked.diagnostics] == ["HP219"]
    result = format_source(text)
    assert result.text == text
    assert result.diagnostics == []


def test_fmt_refuses_an_unknown_list_and_keeps_other_warnings() -> None:
    unknown = format_source("deny 403 when header x in admins\n")
    assert unknown.text is None
    assert [d.code for d in unknown.diagnostics] == ["HP216"]
    unused = format_source('list a = ["x"]\ndeny 403\n')
    assert unused.text == 'list a = ["x"]\ndeny 403\n'
    assert [d.code for d in unused.diagnostics] == ["HP217"]


def test_names_that_need_quotes_keep_them() -> None:
    text = 'deny 403 when query "a=b c" exists or query "x#" == "1" or cookie "sid" exists\n'
    want = 'deny 403 when query "a=b c" exists or query "x#" == "1" or cookie sid exists\n'
    assert format_source(text).text == want
    assert _policy(want) == _policy(text)
