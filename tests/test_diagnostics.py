"""Diagnostics cases: each `tests/diagnostics/NAME.hp` renders exactly `NAME.expected`.

Regenerate with `python tests/test_diagnostics.py` (then read the diff).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import hdrpolicy
from hdrpolicy.diagnostics import CODES, Severity, render_text
from hdrpolicy.pipeline import check_file

CASES_DIR = Path(__file__).parent / "diagnostics"
CASES = sorted(CASES_DIR.glob("*.hp"))


def rendered(case: Path) -> str:
    checked = check_file(case, shown_as=case.name)
    return "\n\n".join(render_text(checked.source, d) for d in checked.diagnostics) + "\n"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_rendered_diagnostics(case: Path) -> None:
    expected = case.with_suffix(".expected").read_text(encoding="utf-8")
    assert rendered(case) == expected


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_every_bad_policy_is_rejected(case: Path) -> None:
    checked = check_file(case)
    assert not checked.ok
    assert any(d.severity is Severity.ERROR for d in checked.diagnostics)


def test_diagnostic_parts_for_a_typo() -> None:
    checked = check_file(CASES_DIR / "syntax-typo.hp")
    [d] = checked.diagnostics
    assert d.code == "HP101"
    assert (d.span.line, d.span.column) == (1, 14)
    assert checked.source.text[d.span.start : d.span.end] == "unles"
    assert d.help == "did you mean `unless`?"


def test_all_findings_of_a_file_are_collected() -> None:
    checked = check_file(CASES_DIR / "regex.hp")
    assert [d.code for d in checked.diagnostics] == ["HP204"] * 4
    assert [d.span.column for d in checked.diagnostics] == sorted(
        d.span.column for d in checked.diagnostics
    )


def _codes_in_use() -> set[str]:
    """Every `HPnnn` string constant in the package, but those that define the table
    (`CODES = {...}`) or are compared against (`code < "HP400"`)."""
    package = Path(hdrpolicy.__file__).parent
    found: set[str] = set()
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        skipped = {
            id(const)
            for node in ast.walk(tree)
            if isinstance(node, ast.Compare)
            or (isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "CODES")
            for const in ast.walk(node)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skipped
            ):
                found.update(re.findall(r"\bHP\d{3}\b", node.value))
    return found


def test_every_code_in_use_is_in_codes_and_the_readme_and_no_other() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| (HP\d{3}) \|", readme, re.MULTILINE))
    assert _codes_in_use() == set(CODES) == documented


if __name__ == "__main__":
    for case in CASES:
        case.with_suffix(".expected").write_text(rendered(case), encoding="utf-8")
    sys.exit(0)
