"""Policy strings cross into Go through one escaping function; Go must read back the same bytes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdrpolicy.backend.build import find_go
from hdrpolicy.backend.golit import go_comment_text, go_string

# Builds with Go, runs the emulator or installs packages: `scripts/test --fast` skips it.
pytestmark = pytest.mark.slow

NASTY = [
    "",
    '"',
    "\\",
    '\\"',
    "\n\r\t\0",
    "*/ /* // ",
    "{{ x }} {% if %} ${x} %s %v",
    "é\u202e\u2028\U0001f600",
    '"); os.Exit(1); ("',
    "\x7f\x01",
]


def _go_roundtrip(values: list[str], tmp: Path) -> list[bytes]:
    """Compile a Go program printing each literal, hex-encoded, one per line."""
    body = "\n".join(f"\tfmt.Println(hex.EncodeToString([]byte({go_string(v)})))" for v in values)
    (tmp / "main.go").write_text(
        f'package main\n\nimport (\n\t"encoding/hex"\n\t"fmt"\n)\n\nfunc main() {{\n{body}\n}}\n'
    )
    (tmp / "go.mod").write_text("module roundtrip\n\ngo 1.24\n")
    go = find_go()
    env = go.environment(wasm=False, GOFLAGS="")
    out = subprocess.run(
        [go.binary, "run", "."], cwd=tmp, env=env, capture_output=True, text=True, check=True
    )
    return [bytes.fromhex(line) for line in out.stdout.splitlines()]


def test_go_string_is_printable_ascii_only() -> None:
    for value in NASTY:
        literal = go_string(value)
        assert literal.isascii() and literal.isprintable(), literal
        assert literal.startswith('"') and literal.endswith('"')


@settings(max_examples=3, deadline=None)
@given(values=st.lists(st.text(), min_size=1, max_size=60))
def test_go_reads_back_the_exact_bytes(
    tmp_path_factory: pytest.TempPathFactory, values: list[str]
) -> None:
    workdir = tmp_path_factory.mktemp("golit")
    values = NASTY + values
    assert _go_roundtrip(values, workdir) == [v.encode("utf-8") for v in values]


def test_comment_text_cannot_end_the_comment_or_hide_text() -> None:
    text = go_comment_text('deny 403 "a\nb\r\u202e\u2028" */')
    assert "\n" not in text and "\r" not in text
    assert "\u202e" not in text and "\u2028" not in text
    assert "\\u202e" in text
