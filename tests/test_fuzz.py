"""Fuzzing `check`, `fmt` and `diff`: grammar-aware text and byte mutations of real policies.

Whatever the input, no command fails with an exception (exit 70), every
diagnostic lies inside the file, and a policy that checks clean formats to a
text that formats to itself and means the same (equal IR).  Bounded for CI
(a few hundred examples, about a minute); raise `FUZZ_EXAMPLES` to search longer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hdrpolicy.cli import app
from hdrpolicy.diagnostics import Source
from hdrpolicy.fmt import format_policy, format_source
from hdrpolicy.frontend.parser import TERMINAL_WORDS
from hdrpolicy.frontend.pipeline import Checked, check_file, check_source, files_beside
from policy_strategies import policies

REPO = Path(__file__).resolve().parents[1]
SEEDS = [
    p.read_bytes()
    for p in sorted(
        [
            *REPO.glob("examples/policies/*.hp"),
            *REPO.glob("tests/golden/*/policy.hp"),
            *REPO.glob("tests/diagnostics/*.hp"),
        ]
    )
]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- inputs ---------------------------------------------------------------------------

# The grammar's words, and what is easy to get wrong next to them.
_WORDS = [
    *(w.strip("`") for w in TERMINAL_WORDS.values() if w.startswith("`")),
    "ignoring case",
    "not in",
    '"x"',
    '"^a+$"',
    '"(a"',
    '"\\u2028"',
    '"\\q"',
    '"',
    "403",
    "700",
    "x-role",
    "Host",
    "x/y",
    "# c",
    "unles",
    "&&",
    "'a'",
    "\u00e9",
]
_SEPARATORS = st.sampled_from([" ", " ", " ", "\n", "\r\n", "\r", "\t", "  ", "\n\n", " # c\n"])
_INTERESTING = [
    b"\r",
    b"\n",
    b"\r\n",
    b'"',
    b"\\",
    b"(",
    b")",
    b"[",
    b"]",
    b",",
    b"#",
    b" not ",
    b" and ",
    b" or ",
    b"deny 403 ",
    b"\xff",
    b"\xe2\x80\xa8",
    b"\x1b",
    b"\x00",
    b"\t",
]


@st.composite
def token_soup(draw: st.DrawFn) -> bytes:
    """Sequences of the grammar's own words: mostly almost-policies."""
    words = draw(st.lists(st.sampled_from(_WORDS), max_size=40))
    out = []
    for word in words:
        out.append(word)
        out.append(draw(_SEPARATORS))
    return "".join(out).encode("utf-8")


@st.composite
def valid_texts(draw: st.DrawFn) -> bytes:
    """A generated policy in canonical layout, then laid out differently."""
    text = format_policy(draw(policies()))
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return text.replace("\n", sep).replace(" ", draw(st.sampled_from([" ", "  ", "\t"]))).encode()


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """Byte mutations of a policy: insert, delete or overwrite at random places."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        payload = draw(st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=3))
        if kind == "insert":
            data[pos:pos] = payload
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            data[pos : pos + len(payload)] = payload
    return bytes(data)


inputs = st.one_of(
    mutated(st.sampled_from(SEEDS)),
    mutated(valid_texts()),
    token_soup(),
    valid_texts(),
)

# -- properties -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def cli(*args: str) -> int:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # the CLI's `main` would make this exit 70
    return result.exit_code


def assert_inside(checked: Checked) -> None:
    text = checked.source.text
    lines = text.split("\n")
    for d in checked.diagnostics:
        assert 0 <= d.span.start <= d.span.end <= len(text) + 1, d
        assert 1 <= d.span.line <= len(lines), d
        assert 1 <= d.span.column <= len(lines[d.span.line - 1]) + 2, d


@given(data=inputs)
@FUZZ
def test_check_fmt_and_diff_never_crash(workdir: Path, data: bytes) -> None:
    policy = workdir / "fuzz.hp"
    policy.write_bytes(data)
    assert cli("check", str(policy), "--budget-ms", "100") in (0, 1)
    checked = check_file(policy)
    assert_inside(checked)
    assert cli("fmt", "--check", str(policy)) in (0, 1)
    seed = workdir / "seed.hp"
    seed.write_bytes(SEEDS[len(data) % len(SEEDS)])
    assert cli("diff", str(seed), str(policy)) in (0, 1, 2)


@given(data=inputs)
@FUZZ
def test_fmt_is_idempotent_and_keeps_the_meaning(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    formatted = format_source(text)
    assert_inside(Checked(formatted.source, None, formatted.diagnostics))
    if formatted.text is None:
        return
    again = format_source(formatted.text)
    assert again.text == formatted.text
    before = check_file_text(text)
    after = check_file_text(formatted.text)
    assert before.policy is not None and after.policy is not None
    # fmt never reads list files: one it names may be missing, before and after alike.
    assert after.ok == before.ok and before.policy == after.policy


def check_file_text(text: str) -> Checked:
    """Checked as if it were beside the examples, so their list files are found."""
    return check_source(
        Source("fuzz.hp", text), "fuzz", files_beside(REPO / "examples" / "policies")
    )
