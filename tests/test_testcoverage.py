"""`hdrpolicy test --coverage`: the rules and condition sides no test case exercises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import EXAMPLES, hdrpolicy
from hdrpolicy import policytests
from hdrpolicy.diagnostics import Source
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.policytests import load
from hdrpolicy.testcoverage import PolicyCoverage, measure, render_text, to_json

POLICY = """\
allow when method == "OPTIONS"
deny 401 "creds" when not header authorization exists
deny 403 "admins" when path starts_with "/admin/" and not header x-role in ["admin", "ops"]
deny 410 "gone" when path == "/old"
default deny 404 "no route"
"""
TESTS = """\
cases:
  - name: preflight
    request: {method: OPTIONS}
    expect: allow
  - name: no credentials
    request: {}
    expect: {status: 401}
  - name: admin area, repeated role
    request: {path: /admin/x, headers: [[authorization, t], [x-role, user], [x-role, admin]]}
    expect: {status: 403}
"""


def _measure(tmp_path: Path, policy: str, tests: str) -> PolicyCoverage:
    (tmp_path / "p.hp").write_text(policy)
    (tmp_path / "p.tests.yaml").write_text(tests)
    checked = check_source(Source("p.hp", policy), "p")
    assert checked.policy is not None
    loaded = load(tmp_path / "p.tests.yaml")
    assert not loaded.diagnostics
    return measure("p.hp", "p.tests.yaml", checked.policy, loaded.cases)


def test_gaps_name_rules_condition_sides_and_comparisons(tmp_path: Path) -> None:
    c = _measure(tmp_path, POLICY, TESTS)
    assert (c.rules_covered, len(c.rules), c.fallthrough) == (3, 4, 0)
    assert [(g["line"], g["kind"], g["what"]) for g in c.gaps()] == [
        (3, "comparison", "is never false"),
        (4, "rule", "decides no case"),
        (4, "condition", "never fires (its condition is never true)"),
        (4, "comparison", "is never true"),
        (5, "default", "the default decides no case"),
    ]
    # The repeated x-role gave three readings: user, admin and "user, admin"; the
    # `in` comparison was true for one of them, false for two; the reading "admin"
    # got past the rule (to the default, though the case is decided by the rule).
    admin_rule = c.rules[2]
    assert [(x.sides.true, x.sides.false) for x in admin_rule.comparisons] == [(3, 0), (1, 2)]
    text = render_text(c)
    assert text.splitlines()[0] == (
        "coverage of p.hp by p.tests.yaml: 3/4 rules decide a case, default never reached, "
        "15/18 sides of conditions and comparisons seen"
    )
    assert '  p.hp:3:24: `path starts_with "/admin/"` is never false' in text
    assert "  p.hp:4: the rule decides no case" in text
    data = to_json(c)
    assert data["rules"] == {"covered": 3, "total": 4}
    assert data["sides"] == {"covered": 15, "total": 18}
    assert data["per_rule"][3]["decided"] == 0


def test_more_cases_close_the_gaps(tmp_path: Path) -> None:
    more = TESTS + (
        "  - name: a user is no admin\n"
        "    request: {path: /admin/x, headers: {authorization: t, x-role: ops}}\n"
        "    expect: {status: 404}\n"
        "  - name: gone\n"
        "    request: {path: /old, headers: {authorization: t}}\n"
        "    expect: {status: 410}\n"
    )
    c = _measure(tmp_path, POLICY, more)
    assert c.complete_rules() and c.gaps() == [] and c.sides() == (18, 18)


@pytest.mark.parametrize("policy", sorted(EXAMPLES.glob("*.hp")), ids=lambda p: p.name)
def test_the_examples_tests_cover_every_rule_and_side(policy: Path) -> None:
    checked = check_source(Source(str(policy), policy.read_text()), policy.stem)
    assert checked.policy is not None
    loaded = load(policytests.tests_path_for(policy))
    c = measure(str(policy), "tests", checked.policy, loaded.cases)
    assert c.complete_rules() and c.gaps() == []


# Runs `hdrpolicy test`, which builds the plug-in and runs the emulator.
@pytest.mark.slow
def test_cli_reports_coverage_as_text_and_json() -> None:
    policy = str(EXAMPLES / "header-authorization.hp")
    proc = hdrpolicy("test", "--coverage", policy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith(
        f"coverage of {policy} by {EXAMPLES / 'header-authorization.tests.yaml'}: "
        "1/1 rules decide a case"
    )
    data = json.loads(hdrpolicy("test", "--coverage", "--format", "json", policy).stdout)
    [coverage] = data["coverage"]
    assert coverage["rules"] == {"covered": 1, "total": 1} and coverage["uncovered"] == []
    assert "coverage" not in json.loads(hdrpolicy("test", "--format", "json", policy).stdout)


def test_comparisons_on_query_cookie_and_client_are_counted(tmp_path: Path) -> None:
    policy = """\
list offices = ["10.0.0.0/8", "2001:db8::/32"]
deny 403 "office" when client in offices and query debug == "1"
deny 401 "session" when not cookie sid exists
"""
    tests = """\
cases:
  - name: from the office, debugging
    request: {client: 10.1.2.3, path: "/?debug=1", headers: {cookie: sid=a}}
    expect: {status: 403}
  - name: no session, from the default client
    request: {path: "/?debug=1"}
    expect: {status: 401}
"""
    c = _measure(tmp_path, policy, tests)
    [office, session] = c.rules
    # client: true from 10.1.2.3, false from the default 127.0.0.1 (each distinct
    # reading once over both protocols); query: true in both; the cookie only reached
    # by the second case, where it is missing.
    assert [(x.sides.true, x.sides.false) for x in office.comparisons] == [(1, 1), (2, 0)]
    assert [(x.sides.true, x.sides.false) for x in session.comparisons] == [(0, 1)]
    assert [
        (g["line"], g["comparison"], g["what"]) for g in c.gaps() if g["kind"] == "comparison"
    ] == [
        (2, 'query debug == "1"', "is never false"),
        (3, "cookie sid exists", "is never true"),
    ]
    more = (
        tests
        + """\
  - name: from the office with a session, not debugging
    request: {client: "2001:db8::7", path: "/?debug=0&debug=", headers: {cookie: "a=1; sid=x"}}
    expect: allow
"""
    )
    c = _measure(tmp_path, policy, more)
    [office, session] = c.rules
    # `debug` sent twice gives three readings ("0", "" and "0,"), each counted.
    assert [(x.sides.true, x.sides.false) for x in office.comparisons] == [(4, 1), (2, 3)]
    assert [(x.sides.true, x.sides.false) for x in session.comparisons] == [(3, 1)]
    assert [g for g in c.gaps() if g["kind"] == "comparison"] == []
