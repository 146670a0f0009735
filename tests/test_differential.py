"""Differential testing: on random policies and random requests, the compiled
plug-in (in the SDK's emulator) decides exactly what the reference evaluator does.

Requests come two ways: raw header pairs (anything a host could pass), and
requests as a client sends them turned into what Envoy hands the plug-in over
HTTP/1.1 and HTTP/2 (`codec.deliver`): repeated built-in headers joined,
whitespace kept or trimmed, a repeated Host, dot segments and encoded paths.

Each example compiles one policy with many rules and drives many requests
through one VM, so the number of wasm builds stays small.  The seed is fixed
(`derandomize`) so CI runs the same examples every time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import compile_text
from hdrpolicy.backend.emit import emit
from hdrpolicy.backend.host import run_native, run_plugin
from hdrpolicy.backend.toolchains import TINYGO
from hdrpolicy.codec import Protocol, SentRequest, deliver
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import Headers, evaluate
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.printer import policy_string
from hdrpolicy.runner import agreement

# Builds with Go, runs the emulator or installs packages: `scripts/test --fast` skips it.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("emulator")]

HEADERS = ["x-a", "x-b", "x-role", "user-agent", "cookie", "accept"]
WORDS = ["", "a", "A", "ab", "b", "admin", "user", "a, b", "/x", "/x/y", "GET", "é", "a=1"]
PATTERNS = ["^a", "b$", "a|b", "^$", "(?i)^A", ".", "^[a-z]+$", "\\d", "^.$", "é"]

OPERATORS = ["==", "!=", "in", "not in", "starts_with", "ends_with", "contains", "matches"]
OPERATORS.append("exists")
PSEUDO_SUBJECTS = ["path", "method", "host"]
subjects = st.sampled_from([*PSEUDO_SUBJECTS, *(f"header {h}" for h in HEADERS)])
words = st.sampled_from(WORDS)


@st.composite
def comparisons(draw: st.DrawFn, subjects: st.SearchStrategy[str] = subjects) -> str:
    subject = draw(subjects)
    op = draw(st.sampled_from(OPERATORS))
    if op == "exists":
        return f"{subject} exists"
    if op == "matches":
        return f"{subject} matches {policy_string(draw(st.sampled_from(PATTERNS)))}"
    if subject == "host":  # host is compared in lower case (upper case is an error)
        lit = draw(words).lower()
        values = [w.lower() for w in draw(st.lists(words, min_size=1, max_size=3))]
    else:
        lit = draw(words)
        values = draw(st.lists(words, min_size=1, max_size=3))
    fold = " ignoring case" if draw(st.booleans()) else ""
    if op in ("in", "not in"):
        return f"{subject} {op} [{', '.join(map(policy_string, values))}]{fold}"
    return f"{subject} {op} {policy_string(lit)}{fold}"


def conditions(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            inner.map(lambda c: f"not ({c})"),
            st.tuples(inner, inner).map(lambda ab: f"({ab[0]}) and ({ab[1]})"),
            st.tuples(inner, inner).map(lambda ab: f"({ab[0]}) or ({ab[1]})"),
        ),
        max_leaves=4,
    )


@st.composite
def policies(draw: st.DrawFn, pseudo_only: bool = False) -> str:
    leaves = comparisons(st.sampled_from(PSEUDO_SUBJECTS)) if pseudo_only else comparisons()
    lines = []
    for i in range(draw(st.integers(min_value=1, max_value=12))):
        guard = draw(st.sampled_from(["when", "unless"]))
        cond = draw(conditions(leaves))
        if draw(st.integers(0, 3)) == 0:
            lines.append(f"allow {guard} {cond}")
        else:
            extra = f' with header x-rule = "{i}"' if draw(st.booleans()) else ""
            lines.append(f'deny {400 + i} "rule {i}"{extra} {guard} {cond}')
    if draw(st.booleans()):
        lines.append('default deny 599 "default"')
    return "\n".join(lines) + "\n"


header_names = st.sampled_from([*HEADERS, "X-A", "X-Role", "other"])
values = st.one_of(
    words.map(str.encode),
    st.sampled_from([b" a ", b"\ta", b"\xff", b"a\xc3", b"\xe2\x82", b"\xc3\xa9", b"ADMIN"]),
    st.binary(max_size=4),
)


@st.composite
def requests(draw: st.DrawFn) -> Headers:
    pairs: Headers = []
    if draw(st.integers(0, 9)):
        pairs.append((b":method", draw(st.sampled_from([b"GET", b"POST", b"get", b"OPTIONS"]))))
    if draw(st.integers(0, 9)):
        pairs.append(
            (
                b":path",
                draw(
                    st.sampled_from([b"/x", b"/x/y?z=1", b"/a?b", b"?", b"/", b"/a/../b", b"/%2e"])
                ),
            )
        )
    if draw(st.integers(0, 9)):
        pairs.append(
            (b":authority", draw(st.sampled_from([b"a", b"A:80", b"[::1]:8", b"ab:x", b"b."])))
        )
    pairs.extend(draw(st.lists(st.tuples(header_names.map(str.encode), values), max_size=5)))
    if draw(st.integers(0, 4)) == 0:
        pairs.append((b"user-agent", draw(st.sampled_from([b"a,b", b"curl/8, a", b"a , b,"]))))
    if pairs and draw(st.integers(0, 7)) == 0:
        # A host should never pass a pseudo-header twice; if it did, the first counts.
        name, _ = pairs[0]
        if name.startswith(b":"):
            pairs.append((name, b"/other"))
    return pairs


SENT_PATHS = [
    "/",
    "/x",
    "/x/y?z=/../",
    "/a/../x",
    "/a/./x",
    "//x",
    "/%61",
    "/a%2Fx",
    "/a%2fx",
    "/a/..;/x",
    "/A%3Ab",
    "/a%3ab",
    "/a\\x",
    "/a%",
    "x",
]
sent_names = st.sampled_from(
    ["x-a", "X-A", "x-role", "user-agent", "User-Agent", "accept", "cookie", "host"]
)
sent_values = st.sampled_from(
    ["a", "b", "admin", "user", "a, b", "a,b", " a ", "\ta", "a ", "", "curl/8", "a=1; b=2", "é"]
)


@st.composite
def sent_requests(draw: st.DrawFn) -> SentRequest:
    """A request as a client writes it: repeats, case and whitespace as drawn."""
    return SentRequest(
        method=draw(st.sampled_from(["GET", "POST", "get", "OPTIONS"])),
        path=draw(st.sampled_from(SENT_PATHS)),
        host=draw(st.sampled_from(["a", "A:80", "[::1]:8", "b.", "a,b", " a"])),
        headers=tuple(draw(st.lists(st.tuples(sent_names, sent_values), max_size=6))),
    )


def delivered(sent: list[SentRequest]) -> list[Headers]:
    return [deliver(protocol, request) for protocol in Protocol for request in sent]


@settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    policy=policies(),
    raw=st.lists(requests(), min_size=40, max_size=40),
    sent=st.lists(sent_requests(), min_size=20, max_size=20),
)
def test_plugin_agrees_with_evaluator(
    tmp_path_factory: pytest.TempPathFactory,
    policy: str,
    raw: list[Headers],
    sent: list[SentRequest],
) -> None:
    reqs = raw + delivered(sent)
    workdir = tmp_path_factory.mktemp("diff")
    result = compile_text(policy, workdir)
    assert result.checked.ok and result.checked.policy, (policy, result.checked.diagnostics)
    plugin = run_plugin(Path(result.out_dir) / "plugin.wasm", reqs)
    for req, got in zip(reqs, plugin, strict=True):
        decision = evaluate(result.checked.policy, req)
        assert agreement(decision, got) is None, (policy, req, agreement(decision, got))


@settings(
    max_examples=3,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy=policies(), reqs=st.lists(requests(), min_size=60, max_size=60))
def test_tinygo_target_go_agrees_with_evaluator(policy: str, reqs: list[Headers]) -> None:
    """The tinygo target's Go, run natively against the tetratelabs SDK's emulator."""
    checked = check_source(Source("policy.hp", policy), "policy")
    assert checked.ok and checked.policy, (policy, checked.diagnostics)
    module = emit(checked.policy, checked.source, "policy.hp", TINYGO)
    for req, got in zip(reqs, run_native(module, reqs), strict=True):
        decision = evaluate(checked.policy, req)
        assert agreement(decision, got) is None, (policy, req, agreement(decision, got))


@settings(
    max_examples=3,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    policy=policies(pseudo_only=True),
    raw=st.lists(requests(), min_size=40, max_size=40),
    sent=st.lists(sent_requests(), min_size=20, max_size=20),
)
def test_pseudo_header_only_plugin_agrees_with_evaluator(
    tmp_path_factory: pytest.TempPathFactory,
    policy: str,
    raw: list[Headers],
    sent: list[SentRequest],
) -> None:
    """Policies on method, path and host only read those, one host call each."""
    reqs = raw + delivered(sent)
    workdir = tmp_path_factory.mktemp("pseudo")
    result = compile_text(policy, workdir)
    assert result.checked.ok and result.checked.policy, (policy, result.checked.diagnostics)
    source = (result.out_dir / "main.go").read_text()
    assert "GetHttpRequestHeaders" not in source and "proxy_get_header_map_pairs" not in source
    plugin = run_plugin(Path(result.out_dir) / "plugin.wasm", reqs)
    for req, got in zip(reqs, plugin, strict=True):
        decision = evaluate(result.checked.policy, req)
        assert agreement(decision, got) is None, (policy, req, agreement(decision, got))
