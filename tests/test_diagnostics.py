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
from hdrpolicy.codes import README_BEGIN, README_END, Code, markdown_table, with_table
from hdrpolicy.codes import main as codes_main
from hdrpolicy.diagnostics import Severity, render_text
from hdrpolicy.frontend.pipeline import check_file

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


def _package_modules() -> list[tuple[Path, ast.Module]]:
    package = Path(hdrpolicy.__file__).parent
    return [
        (module, ast.parse(module.read_text(encoding="utf-8")))
        for module in sorted(package.rglob("*.py"))
    ]


def test_every_code_is_used_through_the_enum_and_no_other() -> None:
    """Diagnostics name their code as `Code.HPnnn`; none spells one as a string."""
    used: set[str] = set()
    spelled: list[str] = []
    for module, tree in _package_modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "Code"
            ):
                used.add(node.attr)
            elif (
                module.name != "codes.py"
                and isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"HP\d{3}", node.value)
            ):
                spelled.append(f"{module.name}:{node.lineno}: {node.value!r}")
    assert spelled == []
    assert used == {c.name for c in Code}


def test_codes_are_named_by_their_value() -> None:
    for code in Code:
        assert code.name == code.value == str(code) == f"{code}"
        assert code.summary and code.meaning and code.help


def test_readme_table_is_the_generated_one() -> None:
    """Regenerate with `python -m hdrpolicy.codes README.md`."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert with_table(readme) == readme
    documented = re.findall(r"^\| (HP\d{3}) \| (\w+) \|", readme, re.MULTILINE)
    assert documented == [(c.value, c.severity.value) for c in Code]


def test_readme_table_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{README_BEGIN}\nstale\n{README_END}\nafter\n", encoding="utf-8")
    assert codes_main([str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text == f"before\n{README_BEGIN}\n{markdown_table()}{README_END}\nafter\n"
    assert "stale" not in text
    with pytest.raises(ValueError, match="markers"):
        with_table("no markers here")


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_diagnostics_carry_their_codes_severity(case: Path) -> None:
    for d in check_file(case).diagnostics:
        assert d.severity is d.code.severity, d


if __name__ == "__main__":
    for case in CASES:
        case.with_suffix(".expected").write_text(rendered(case), encoding="utf-8")
    sys.exit(0)
