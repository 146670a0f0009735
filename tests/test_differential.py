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
from hdrpolicy.codec import CLIENT_ADDRESS, Protocol, SentRequest, deliver
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import Headers, evaluate
from hdrpolicy.frontend.pipeline import check_file, check_source
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


# -- query parameters, cookies, the client address ------------------------------

QUERY_NAMES = ["a", "ab", "a b", "é"]
COOKIE_NAMES = ["sid", "a", "SID"]
# Values a rule compares with: what decoded parameters and trimmed cookies can be.
NAMED_WORDS = ["", "1", "2", "x y", "1,2", "é", "%", "+", '"1"', "a=b", "%41", "1,1"]
NETWORKS = [
    "10.0.0.0/8",
    "10.1.2.3",
    "10.1.2.3/8",  # host bits set (a warning): it means 10.0.0.0/8
    "0.0.0.0/0",
    "::/0",
    "2001:db8::/32",
    "2001:db8::1/128",
    "192.168.0.0/16",
    "::ffff:0:0/96",
    "127.0.0.1/32",
]
named_subjects = st.sampled_from(
    [
        *(f"query {policy_string(n)}" for n in QUERY_NAMES),
        *(f"cookie {n}" for n in COOKIE_NAMES),
        "header cookie",
        "path",
    ]
)


@st.composite
def named_comparisons(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 3)) == 0:
        op = draw(st.sampled_from(["in", "not in"]))
        if draw(st.booleans()):
            return f"client {op} offices"
        ranges = draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=3, unique=True))
        return f"client {op} [{', '.join(map(policy_string, ranges))}]"
    subject = draw(named_subjects)
    op = draw(st.sampled_from(OPERATORS))
    if op == "exists":
        return f"{subject} exists"
    if op == "matches":
        return f"{subject} matches {policy_string(draw(st.sampled_from(['^1', ',', '^$', ' '])))}"
    fold = " ignoring case" if draw(st.booleans()) else ""
    if op in ("in", "not in") and draw(st.booleans()):
        return f"{subject} {op} words{fold}"
    if op in ("in", "not in"):
        values = draw(st.lists(st.sampled_from(NAMED_WORDS), min_size=1, max_size=3))
        return f"{subject} {op} [{', '.join(map(policy_string, values))}]{fold}"
    return f"{subject} {op} {policy_string(draw(st.sampled_from(NAMED_WORDS)))}{fold}"


@st.composite
def named_policies(draw: st.DrawFn) -> str:
    lines = [
        'list offices = ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]',
        'list words = ["1", "x y", "é", "1,2"]',
    ]
    for i in range(draw(st.integers(min_value=2, max_value=10))):
        guard = draw(st.sampled_from(["when", "unless"]))
        cond = draw(conditions(named_comparisons()))
        if draw(st.integers(0, 3)) == 0:
            lines.append(f"allow {guard} {cond}")
        else:
            lines.append(f'deny {400 + i} "rule {i}" {guard} {cond}')
    lines.append('allow when header x-never exists\ndeny 403 "words" when query a in words')
    return "\n".join(lines) + "\n"


PARAM_NAMES = ["a", "ab", "a%62", "A", "a+b", "a%20b", "b", "", "%61", "%C3%A9", "a b", "%c3%a9"]
PARAM_NAMES += ["beta", "%62eta"]
PARAM_VALUES = ["1", "2", "", "x+y", "%41", "1,2", "é", "%C3%A9", "a=b", "%2C", "%2c", "+"]
# A `%` not followed by two hex digits: the request is refused (drawn rarely).
MALFORMED = ["%zz", "%4", "%", "a%g1"]
CRUMBS = [
    "sid=1",
    "sid=2",
    "sid= 1 ",
    'sid="1"',
    'sid=""',
    'sid="',
    "sid",
    "SID=x y",
    "a=1",
    " a = 2",
    "a",
    "",
    "b=1,2",
    "sid=1=2",
    "a=é",
    "canary=yes",
    "beta=0",
]
CLIENTS = [
    "10.1.2.3:5000",
    "10.1.2.3",
    "10.200.0.1:80",
    "[2001:db8::1]:443",
    "[2001:DB8:0::1]:443",
    "2001:db8::2",
    "[::ffff:10.1.2.3]:80",
    "[::ffff:192.168.1.7]:1",
    "[::1]:1",
    "[::1]",
    "127.0.0.1:8080",
    "192.168.1.7:9",
    "garbage",
    "/tmp/envoy.sock",
    "fe80::1%eth0",
    "[fe80::1%eth0]:1",
    "1.2.3.4:99999",
    "1.2.3.4:",
    "01.2.3.4:1",
    "[10.1.2.3]:80",
    " 10.1.2.3:1",
    "0.0.0.0:0",
]


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(PARAM_NAMES))
        if draw(st.integers(0, 4)) == 0:
            parts.append(name)  # no `=`
        else:
            parts.append(f"{name}={draw(st.sampled_from(PARAM_VALUES))}")
    if draw(st.integers(0, 9)) == 0:
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(MALFORMED)))
    return "&".join(parts) + draw(st.sampled_from(["", "", "&", "&&a=1", "?a=2"]))


@st.composite
def cookie_values(draw: st.DrawFn) -> str:
    crumbs = draw(st.lists(st.sampled_from(CRUMBS), min_size=1, max_size=4))
    return draw(st.sampled_from(["; ", ";", " ; "])).join(crumbs)


@st.composite
def named_requests(draw: st.DrawFn) -> Headers:
    path = draw(st.sampled_from(["/", "/x", "/x/y", "/", "/x", "/a/../b"]))
    if draw(st.integers(0, 5)):
        path += "?" + draw(query_strings())
    pairs: Headers = [(b":method", b"GET"), (b":path", path.encode())]
    if draw(st.integers(0, 9)) == 0:
        pairs.append((b":path", b"/?a=second"))  # a host never passes it twice: the first counts
    pairs.append((b":authority", b"example.com"))
    for _ in range(draw(st.integers(0, 3))):
        pairs.append(
            (draw(st.sampled_from([b"cookie", b"Cookie"])), draw(cookie_values()).encode())
        )
    if draw(st.integers(0, 3)):
        name = draw(st.sampled_from([CLIENT_ADDRESS.encode(), CLIENT_ADDRESS.upper().encode()]))
        pairs.insert(
            draw(st.integers(0, len(pairs))), (name, draw(st.sampled_from(CLIENTS)).encode())
        )
    return pairs


@st.composite
def named_sent_requests(draw: st.DrawFn) -> SentRequest:
    """A client's request with cookies and a query string (HTTP/2 joins the cookies)."""
    return SentRequest(
        method="GET",
        path="/x?" + draw(query_strings()),
        host="example.com",
        headers=tuple(("cookie", draw(cookie_values())) for _ in range(draw(st.integers(0, 3)))),
        client=draw(st.one_of(st.none(), st.sampled_from(CLIENTS))),
    )


@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    policy=named_policies(),
    raw=st.lists(named_requests(), min_size=60, max_size=60),
    sent=st.lists(named_sent_requests(), min_size=15, max_size=15),
)
def test_query_cookie_and_client_plugin_agrees_with_evaluator(
    tmp_path_factory: pytest.TempPathFactory,
    policy: str,
    raw: list[Headers],
    sent: list[SentRequest],
) -> None:
    """Untidy query strings (repeats, `+`, escapes in names and values, malformed
    escapes), cookies (several headers, quoted values, repeated names, crumbs without
    `=`) and client addresses (v4, v6, v4-mapped, missing, garbage)."""
    reqs = raw + delivered(sent)
    workdir = tmp_path_factory.mktemp("named")
    result = compile_text(policy, workdir)
    assert result.checked.ok and result.checked.policy, (policy, result.checked.diagnostics)
    plugin = run_plugin(Path(result.out_dir) / "plugin.wasm", reqs)
    for req, got in zip(reqs, plugin, strict=True):
        decision = evaluate(result.checked.policy, req)
        assert agreement(decision, got) is None, (policy, req, agreement(decision, got))


def test_every_client_address_is_judged_in_the_evaluators_form(
    tmp_path: Path,
) -> None:
    """The plug-in's normalised client address (in its deny log) is `client_address`'s."""
    policy = 'deny 403 "who" when client not in ["203.0.113.0/24"] and header x-go exists\n'
    result = compile_text(policy, tmp_path)
    assert result.checked.ok and result.checked.policy
    reqs = [[(b"x-go", b"1"), (CLIENT_ADDRESS.encode(), c.encode())] for c in CLIENTS]
    reqs.append([(b"x-go", b"1")])
    plugin = run_plugin(Path(result.out_dir) / "plugin.wasm", reqs)
    for req, got in zip(reqs, plugin, strict=True):
        decision = evaluate(result.checked.policy, req)
        assert agreement(decision, got) is None, (req, agreement(decision, got))
        seen = decision.values["client"]
        shown = "missing" if seen is None else f'"{seen.decode()}"'
        want = f'policy: policy.hp:1: denied with 403: client is {shown}, header x-go is "1"'
        assert got.debug == (want,), req
    seen_all = {evaluate(result.checked.policy, r).values["client"] for r in reqs}
    assert seen_all >= {
        b"10.1.2.3",
        b"2001:0db8:0000:0000:0000:0000:0000:0001",
        b"",
        None,
    }


@settings(
    max_examples=2,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(reqs=st.lists(named_requests(), min_size=80, max_size=80))
def test_tinygo_target_go_reads_query_cookie_and_client_as_the_evaluator(
    reqs: list[Headers],
) -> None:
    """The tinygo target's Go (run natively) on the golden case that reads all three."""
    case = Path(__file__).parent / "golden" / "tinygo-cookie-client"
    checked = check_file(case / "policy.hp")
    assert checked.ok and checked.policy, checked.diagnostics
    canary = [(b":path", b"/"), (b"cookie", b"canary=yes; beta=1")]
    reqs = [
        *reqs,
        [*canary, (CLIENT_ADDRESS.encode(), b"10.20.3.4:1")],
        [*canary, (CLIENT_ADDRESS.encode(), b"[2001:db8:1::9]:1")],
        [*canary, (CLIENT_ADDRESS.encode(), b"[::ffff:10.20.3.4]:1")],
        [*canary, (CLIENT_ADDRESS.encode(), b"10.21.3.4:1")],
        canary,
        [(b":path", b"/?beta=1"), (b"cookie", b"beta")],
        [(b":path", b"/?beta=2"), (b"cookie", b"beta")],
        [(b":path", b"/?beta=%zz"), (b"cookie", b"beta")],
    ]
    module = emit(checked.policy, checked.source, "policy.hp", TINYGO)
    decisions = [evaluate(checked.policy, r) for r in reqs]
    for req, decision, got in zip(reqs, decisions, run_native(module, reqs), strict=True):
        assert agreement(decision, got) is None, (req, agreement(decision, got))
    assert {d.status for d in decisions} >= {None, 400, 403}
