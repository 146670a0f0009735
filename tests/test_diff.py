"""`diff`: behaviour changes as classes of requests, each with a confirmed witness."""

from __future__ import annotations

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
    assert "are equivalent for requests that send each header once" in render_text(
        result, "old", "new"
    )


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
