"""The checker accepts exactly the regular expressions Go's `regexp` accepts (on a corpus)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hdrpolicy.build import find_go
from hdrpolicy.goregexp import go_regex_error

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
