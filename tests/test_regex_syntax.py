"""The checker accepts exactly the regular expressions Go's `regexp` accepts (on a corpus)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hdrpolicy.build import find_go
from hdrpolicy.checker import go_regex_error

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
