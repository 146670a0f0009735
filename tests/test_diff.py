"""`diff`: behaviour changes as classes of requests, each with a confirmed witness."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from hypothesis import given, settings

from hdrpolicy.analysis.diff import (
    diff_policies,
    load_policy,
    render_json,
    render_markdown,
    render_text,
)
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import evaluate
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source
from policy_strategies import policies

TUTORIAL = 'deny 403 "Forbidden by ASM Wasm Plugin" unless header allow == "true"\n'
ACCEPTS_YES = 'deny 403 "Forbidden by ASM Wasm Plugin" unless header allow in ["true", "yes"]\n'


def _policy(text: str) -> ir.Policy:
    checked = check_source(Source("t.hp", text), "t")
    assert checked.policy is not None
    return checked.policy


def test_tutorial_accepting_yes_is_exactly_one_change() -> None:
    result = diff_policies(_policy(TUTORIAL), _policy(ACCEPTS_YES))
    assert not result.equivalent and result.complete
    [change] = result.changes
    assert change.kind == "now allowed" and change.confirmed
    assert change.old.status == 403 and change.old.line == 1 and change.new.allowed
    assert (b"allow", b"yes") in change.witness
    text = render_text(result, "old.hp", "new.hp")
    assert (
        '- now allowed: denied 403 "Forbidden by ASM Wasm Plugin" by the rule at line 1 '
        "→ allowed (no rule fired)"
    ) in text
    assert 'witness: GET / (host example.com; allow: "yes")' in text
    data = json.loads(render_json(result, "old.hp", "new.hp"))
    assert data["equivalent"] is False and ["allow", "yes"] in data["changes"][0]["witness"]
    assert "| now allowed |" in render_markdown(result, "old.hp", "new.hp")


def test_reordered_policies_are_equivalent() -> None:
    a = 'deny 401 "a" when header a exists\n'
    b = 'deny 402 "b" when path == "/x" and not header a exists\n'
    old, new = a + b, b + a
    result = diff_policies(_policy(old), _policy(new))
    assert result.equivalent
    assert "are equivalent for requests with one reading" in render_text(result, "old", "new")


def test_reordering_overlapping_rules_is_a_change() -> None:
    old = 'deny 401 "a" when header a exists\ndeny 402 "b" when path == "/x"\n'
    new = 'deny 402 "b" when path == "/x"\ndeny 401 "a" when header a exists\n'
    [change] = diff_policies(_policy(old), _policy(new)).changes
    assert change.kind == "response changed" and change.confirmed
    assert (change.old.status, change.new.status) == (401, 402)


def test_now_allowed_changes_come_first_and_a_deny_change_says_what_changed() -> None:
    old = (
        'deny 403 "a" when header a exists\n'
        "allow when header b exists\n"
        'deny 429 "slow" with header retry-after = "30" when header c exists\n'
        "default deny 404\n"
    )
    new = (
        'deny 403 "b" when header a exists\n'
        'deny 401 "b" when header b exists\n'
        'deny 429 "slow" with header retry-after = "60" when header c exists\n'
        "allow when header d exists\n"
        "default deny 404\n"
    )
    result = diff_policies(_policy(old), _policy(new))
    assert result.complete
    kinds = [c.kind for c in result.changes]
    assert kinds == sorted(kinds, key=["now allowed", "now denied", "response changed"].index)
    assert kinds[0] == "now allowed" and "now denied" in kinds
    text = render_text(result, "old", "new")
    assert '- response changed: denied 403 "a" by the rule at line 1 → denied 403 "b" by ' in text
    assert (
        'denied 429 "slow" with retry-after: "30" by the rule at line 3 → '
        'denied 429 "slow" with retry-after: "60" by the rule at line 3'
    ) in text
    assert "- now allowed: denied 404 by the default → allowed by the rule at line 4" in text
    assert "now denied 403" not in text


def test_an_incomplete_diff_says_so_and_never_claims_zero_changes() -> None:
    result = diff_policies(_policy(TUTORIAL), _policy(ACCEPTS_YES), steps=1)
    assert not result.complete and not result.equivalent and result.changes == []
    text = render_text(result, "old", "new")
    assert text.startswith("diff incomplete: its budget of 1 steps is spent")
    assert "0 change" not in text
    assert json.loads(render_json(result, "old", "new"))["complete"] is False
    assert "**Incomplete:**" in render_markdown(result, "old", "new")


@settings(max_examples=25, derandomize=True, deadline=None)
@given(policies(max_rules=3), policies(max_rules=3))
def test_every_witness_is_confirmed_and_self_diff_is_empty(a: ir.Policy, b: ir.Policy) -> None:
    assert diff_policies(a, a).equivalent
    for change in diff_policies(a, b).changes:
        # Unconfirmed only where an untranslated regex was over-approximated.
        assert change.confirmed or any(
            c.op is ir.Op.MATCHES
            for p in (a, b)
            for r in p.rules
            if r.condition is not None
            for c in ir.comparisons(r.condition)
        )


def test_load_from_a_git_revision(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "edge.hp").write_text(TUTORIAL)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    (tmp_path / "policies" / "edge.hp").write_text(ACCEPTS_YES)
    old = load_policy("main:policies/edge.hp", cwd=tmp_path)
    new = load_policy(str(tmp_path / "policies" / "edge.hp"))
    assert old.policy is not None and new.policy is not None
    assert old.source.path == "main:policies/edge.hp" and old.policy.name == "edge"
    assert len(diff_policies(old.policy, new.policy).changes) == 1


# -- named lists and list files ------------------------------------------------------

LISTED = """\
list tenants from "lists/tenants.txt"
list offices from "lists/offices.txt"
deny 403 "blocked" when header x-tenant == "umbrella"
allow when header x-tenant in tenants and client in offices
allow when query user in ["alice"] and header x-tenant in tenants
default deny 401
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _repo(root: Path, tenants: str, offices: str) -> None:
    """A repository whose HEAD holds the policy and its list files; the work tree
    then gets `tenants` and `offices` as the edited list files."""
    _git(root, "init", "-q", "-b", "main")
    lists = root / "policies" / "lists"
    lists.mkdir(parents=True)
    (root / "policies" / "p.hp").write_text(LISTED)
    (lists / "tenants.txt").write_text("# who may call\nacme\ninitech\n")
    (lists / "offices.txt").write_text("10.0.0.0/8\n")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    (lists / "tenants.txt").write_text(tenants)
    (lists / "offices.txt").write_text(offices)


def _diff_repo(root: Path, old: str = "main:policies/p.hp") -> tuple[ir.Policy, ir.Policy]:
    before = load_policy(old, cwd=root)
    after = load_policy(str(root / "policies" / "p.hp"))
    assert before.ok and after.ok, (before.diagnostics, after.diagnostics)
    assert before.policy is not None and after.policy is not None
    return before.policy, after.policy


def test_a_list_file_change_reports_exactly_the_values_added_and_removed(tmp_path: Path) -> None:
    _repo(tmp_path, "# who may call\nacme\nglobex\numbrella\n", "10.0.0.0/8\n")
    old, new = _diff_repo(tmp_path)
    assert [v.value for v in old.lists[0].values] == ["acme", "initech"]
    result = diff_policies(old, new)
    assert result.complete and not result.equivalent
    got = {(v.list_name, v.value, v.action) for v in result.values}
    assert got == {
        ("tenants", "globex", "added"),
        ("tenants", "umbrella", "added"),
        ("tenants", "initech", "removed"),
    }
    by_value = {v.value: v for v in result.values}
    # globex: now allowed (from an office, or as alice), and every witness carries it.
    globex = by_value["globex"]
    assert [c.kind for c in globex.changes] == ["now allowed"]
    initech = by_value["initech"]
    assert [c.kind for c in initech.changes] == ["now denied"]
    for v in (globex, initech):
        assert v.phrase == f'header x-tenant is "{v.value}"'
        for change in v.changes:
            assert change.confirmed and (b"x-tenant", v.value.encode()) in change.witness
            before, after = evaluate(old, change.witness), evaluate(new, change.witness)
            assert before.allowed != after.allowed
            assert change.old.allowed == before.allowed and change.new.allowed == after.allowed
    # umbrella: the rule at line 3 denies it before the list is read.
    umbrella = by_value["umbrella"]
    assert umbrella.changes == ()
    assert (
        umbrella.note
        == 'every request with one reading in which header x-tenant is "umbrella" is decided '
        "as before"
    )
    text = render_text(result, "main:policies/p.hp", "policies/p.hp")
    assert "named lists: 2 value(s) added, 1 removed, value by value:" in text
    assert (
        '- now allowed: header x-tenant is "globex" (added to `tenants`): '
        "denied 401 by the default → allowed by the rule at line "
    ) in text
    assert (
        '- now denied: header x-tenant is "initech" (removed from `tenants`): allowed by the rule'
    ) in text
    assert (
        '- no change: header x-tenant is "umbrella" (added to `tenants`): every request with '
        'one reading in which header x-tenant is "umbrella" is decided as before'
    ) in text
    data = json.loads(render_json(result, "a", "b"))
    assert {(v["list"], v["value"], v["action"]) for v in data["list_values"]} == got
    [item] = [v for v in data["list_values"] if v["value"] == "globex"]
    assert ["x-tenant", "globex"] in item["changes"][0]["witness"]
    markdown = render_markdown(result, "a", "b")
    assert '| `tenants` | added "globex" | now allowed: header x-tenant is "globex" |' in markdown
    assert '| `tenants` | added "umbrella" | no change: every request' in markdown


def test_an_address_range_added_to_a_list_file_is_reported_with_an_address_in_it(
    tmp_path: Path,
) -> None:
    _repo(tmp_path, "# who may call\nacme\ninitech\n", "10.0.0.0/8\n192.168.0.0/16\n")
    old, new = _diff_repo(tmp_path)
    result = diff_policies(old, new)
    [value] = result.values
    assert (value.list_name, value.value, value.action) == ("offices", "192.168.0.0/16", "added")
    assert value.phrase == "client in 192.168.0.0/16"
    [change] = value.changes
    assert change.kind == "now allowed" and change.confirmed
    address = dict(change.witness)[ir.CLIENT_ADDRESS.encode()].decode()
    assert ipaddress.ip_address(address) in ipaddress.ip_network("192.168.0.0/16")
    assert "client 192.168." in render_text(result, "a", "b")


def test_an_unchanged_list_file_is_equivalent(tmp_path: Path) -> None:
    _repo(tmp_path, "# who may call\nacme\ninitech\n", "10.0.0.0/8\n")
    old, new = _diff_repo(tmp_path, "main:./policies/p.hp")
    result = diff_policies(old, new)
    assert result.equivalent and result.values == []


def test_a_list_file_missing_at_the_revision_is_a_located_error(tmp_path: Path) -> None:
    _repo(tmp_path, "acme\n", "10.0.0.0/8\n")
    _git(tmp_path, "rm", "-q", "policies/lists/offices.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "y")
    checked = load_policy("main:policies/p.hp", cwd=tmp_path)
    assert not checked.ok
    [error] = checked.diagnostics
    assert error.code == "HP219" and (error.span.line, error.span.column) == (2, 19)
    assert error.message.startswith("cannot read the list file `lists/offices.txt`: ")
    assert "policies/lists/offices.txt" in error.message and "main" in error.message
