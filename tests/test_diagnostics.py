"""Diagnostics cases: each `tests/diagnostics/NAME.hp` renders exactly `NAME.expected`.

Regenerate with `python tests/test_diagnostics.py` (then read the diff).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hdrpolicy.diagnostics import Severity, render_text
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


if __name__ == "__main__":
    for case in CASES:
        case.with_suffix(".expected").write_text(rendered(case), encoding="utf-8")
    sys.exit(0)
