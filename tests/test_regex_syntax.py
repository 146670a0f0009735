"""The checker accepts exactly the regular expressions Go's `regexp` accepts (on a corpus)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hdrpolicy.backend.build import BuildError, build, find_go
from hdrpolicy.backend.emit import emit
from hdrpolicy.backend.host import run_plugin
from hdrpolicy.backend.toolchains import GO
from hdrpolicy.diagnostics import Source
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.goregexp import go_regex_error
from hdrpolicy.frontend.pipeline import check_source

# 1,000 nested groups: Go's parse tree would be 1,001 deep (its limit is 1,000).
DEEP = "(" * 1000 + "a" + ")" * 1000

PATTERNS = [
    "^curl/",
    "bot",
    "(?i)Mozilla",
    r"\d+",
    r"\bword\b",
    r"\pL+",
    r"\p{Greek}",
    r"[[:alpha:]]",
    r"[[:word:]]",
    r"\Qa.b\E",
    "(?P<name>x)",
    "(?<name>x)",
    "(?P<1bad>x)",
    "(?P<>x)",
    "a{2,3}",
    "a{1000}",
    "a{1001}",
    "a{2,1}",
    "(a",
    "a)",
    "[a",
    "a]",
    "*a",
    "a**",
    "a++",
    "a*?",
    "a??",
    r"\8",
    r"\C",
    r"\Z",
    r"\z",
    r"\A",
    "(?=x)",
    "(?!x)",
    "(?<=x)",
    r"(a)\1",
    "(?s).",
    "(?U)a+",
    "(?m)^a$",
    "(?x) a",
    "[z-a]",
    r"[\d-z]",
    r"\x{10FFFF}",
    r"\x{110000}",
    r"\e",
    r"\cA",
    "((((((((((a))))))))))",
    "[^\\x00-\\x{10FFFF}]",
    "",
    "|",
    "()",
    r"\.",
    "a|*",
    # Go's limits (regexp/syntax/parse.go): RE2's smaller memory limit must not
    # refuse what Go takes, and Go's nesting and size limits must be found.
    r"\pL{1000}",
    r"[\p{L}\p{N}]{1000}",
    r"(\pL{100}){10}",
    "(a{1000}){2}",
    "(a{10}){100}",
    "(a{10}){101}",
    "(" * 998 + "a" + ")" * 998,
    "(" * 999 + "a" + ")" * 999,
    "(" * 1000 + "a" + ")" * 1000,
    "(?:" * 1000 + "a" + ")" * 1000,
    "(?:" * 600 + "(" * 500 + "a" + ")" * 1100,
    "(" * 500 + "a*" + ")" * 500,
    "(" * 499 + "a*" + ")" * 499,
    "(" * 499 + "ab" + ")" * 499,
    "(" * 499 + "a|b" + ")" * 499,
    "(" * 499 + "ab|cd" + ")" * 499,
    "(" * 498 + "ab|cd" + ")" * 498,
    "(" + "a" * 3353 + "){1000}",
    "(" + "a" * 3354 + "){1000}",
    "(" + "a" * 3355 + "){1000}",
    "(?:" + "a" * 3355 + "){1000}",
    "(?:" + "a" * 3356 + "){1000}",
    "(?:a*" + "b" * 3353 + "){1000}",
    "(?:a*" + "b" * 3354 + "){1000}",
    "(?:" + "[ab]" * 3355 + "){1000}",
    "(?:" + "[ab]" * 3356 + "){1000}",
    "(?:" + "a|" * 1100 + "b){1000}",
    "(?:" + "ab|" * 1100 + "cd){1000}",
    "(?:(?:a{1000}){1}x){1}",
    "|".join(f"w{i}" for i in range(2000)),
    r"\pL" * 10000,
]

_PROGRAM = """package main

import (
\t"encoding/json"
\t"fmt"
\t"os"
\t"regexp"
)

func main() {
\tvar patterns []string
\tif err := json.NewDecoder(os.Stdin).Decode(&patterns); err != nil {
\t\tpanic(err)
\t}
\tfor _, p := range patterns {
\t\t_, err := regexp.Compile(p)
\t\tfmt.Println(err == nil)
\t}
}
"""


@pytest.mark.slow
def test_checker_agrees_with_go_regexp(tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text(_PROGRAM)
    (tmp_path / "go.mod").write_text("module regexcheck\n\ngo 1.24\n")
    go = find_go()
    out = subprocess.run(
        [go.binary, "run", "."],
        cwd=tmp_path,
        env=go.environment(wasm=False, GOFLAGS=""),
        input=json.dumps(PATTERNS),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    go_accepts = dict(zip(PATTERNS, (line == "true" for line in out), strict=True))
    ours = {p: go_regex_error(p) is None for p in PATTERNS}
    assert {p for p in PATTERNS if ours[p] != go_accepts[p]} == set()


def test_checker_refuses_the_pattern_that_made_the_plugin_panic() -> None:
    checked = check_source(Source("deep.hp", f'deny 403 when header x matches "{DEEP}"\n'), "deep")
    [d] = checked.diagnostics
    assert (d.code, d.message) == (
        "HP204",
        "invalid regular expression: expression nests too deeply",
    )
    assert (d.span.line, d.span.column) == (1, 32)


def test_a_pattern_go_cannot_compile_fails_the_start_with_a_log_line(tmp_path: Path) -> None:
    """Past the checker (an IR made by hand), the plug-in reports the pattern, never panics."""
    checked = check_source(Source("p.hp", 'deny 403 when header x matches "a"\n'), "p")
    assert checked.policy is not None
    [rule] = checked.policy.rules
    assert isinstance(rule.condition, ir.Compare)
    bad = rule.condition.model_copy(update={"values": [ir.StringLit(value=DEEP, span=rule.span)]})
    policy = checked.policy.model_copy(
        update={"rules": [rule.model_copy(update={"condition": bad})]}
    )
    for name, data in emit(policy, checked.source, "p.hp", GO).items():
        (tmp_path / name).write_bytes(data)
    build(tmp_path, GO, lambda _: None)
    with pytest.raises(BuildError) as failed:
        run_plugin(tmp_path / "plugin.wasm", [])
    assert "the plug-in did not start" in failed.value.output
    assert "expression nests too deeply" in failed.value.output
    assert "panic" not in failed.value.output
