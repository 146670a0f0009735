"""The reference evaluator, `explain`, policy test files and `hdrpolicy test`."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import EXAMPLES, hdrpolicy
from hdrpolicy.codec import Protocol, deliver
from hdrpolicy.diagnostics import Source, render_text
from hdrpolicy.evaluate import Headers, evaluate
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.policytests import load

TESTFILES = Path(__file__).parent / "testfiles"


def policy_of(text: str) -> ir.Policy:
    checked = check_source(Source("p.hp", text), "p")
    assert checked.ok and checked.policy is not None, checked.diagnostics
    return checked.policy


def req(
    *headers: tuple[str, str], method: str = "GET", path: str = "/", host: str = "h"
) -> Headers:
    base = [(":method", method), (":path", path), (":authority", host), *headers]
    return [(k.encode(), v.encode()) for k, v in base]


# -- the evaluator ----------------------------------------------------------------


def test_first_rule_that_fires_decides() -> None:
    policy = policy_of(
        'allow when header a == "1"\ndeny 401 "one" when header b exists\ndefault deny 404 "d"\n'
    )
    assert evaluate(policy, req(("a", "1"), ("b", "x"))).allowed
    denied = evaluate(policy, req(("b", "x")))
    assert (denied.status, denied.body, denied.rule and denied.rule.span.line) == (401, b"one", 2)
    fallback = evaluate(policy, req())
    assert (fallback.status, fallback.is_default) == (404, True)


def test_missing_header_negations() -> None:
    policy = policy_of('deny 403 when header a != "x"\n')
    assert not evaluate(policy, req()).allowed  # != is true for a missing header
    assert evaluate(policy, req(("a", "x"))).allowed
    policy = policy_of('deny 403 when header a not in ["x"]\n')
    assert not evaluate(policy, req()).allowed


@pytest.mark.parametrize(
    ("rule", "first_then_second"),
    [
        ('allow when header x-role == "admin"\ndefault deny 403', ("user", "admin")),
        ('allow when header x-role == "admin"\ndefault deny 403', ("admin", "user")),
        ('deny 403 when header x-role == "admin"', ("user", "admin")),
        ('deny 403 when header x-role == "admin"', ("admin", "user")),
        ('deny 403 unless header x-role == "user"', ("user", "admin")),
    ],
)
def test_repeated_header_cannot_be_used_to_pass(
    rule: str, first_then_second: tuple[str, str]
) -> None:
    """Whichever value the service behind reads, the request is refused."""
    policy = policy_of(rule + "\n")
    a, b = first_then_second
    decision = evaluate(policy, req(("x-role", a), ("x-role", b)))
    assert not decision.allowed
    assert decision.readings == 3


def test_repeated_header_with_same_values_passes_an_allow_only_if_every_reading_does() -> None:
    policy = policy_of('deny 403 unless header x contains "ok"\n')
    assert evaluate(policy, req(("x", "ok"), ("x", "ok too"))).allowed


def test_too_many_readings_is_refused_with_431() -> None:
    policy = policy_of('deny 403 when header a == "x" or header b == "y"\n')
    many = [("a", str(i)) for i in range(8)] + [("b", str(i)) for i in range(8)]
    decision = evaluate(policy, req(*many))
    assert (decision.status, decision.too_many_readings) == (431, True)


def test_subject_normalisation() -> None:
    policy = policy_of(
        'deny 401 when path == "/a"\ndeny 402 when host == "api.example.com"\n'
        'deny 403 when header x == "v"\n'
    )
    assert evaluate(policy, req(path="/a?b=c")).status == 401
    assert evaluate(policy, req(host="API.Example.com:8443")).status == 402
    assert evaluate(policy, req(host="[::1]:80")).allowed
    assert evaluate(policy, req(("X", "v"))).status == 403
    assert evaluate(policy, req(("X", "  v\t"))).status == 400  # refused: surrounding whitespace


def test_ignoring_case_folds_ascii_only() -> None:
    policy = policy_of('deny 403 when header x == "é-a" ignoring case\n')
    assert evaluate(policy, req(("x", "é-A"))).status == 403
    assert evaluate(policy, req(("x", "É-a"))).allowed


# -- explain ----------------------------------------------------------------------


def test_explain_text_and_json() -> None:
    policy = str(EXAMPLES / "header-authorization.hp")
    start = time.monotonic()
    text = hdrpolicy("explain", policy, "--header", "allow=false")
    elapsed = time.monotonic() - start
    assert text.returncode == 0, text.stderr
    assert 'decision: deny 403 "Forbidden by ASM Wasm Plugin"' in text.stdout
    assert '(header allow is "false") → false' in text.stdout
    data = json.loads(hdrpolicy("explain", policy, "-H", "allow=true", "--format", "json").stdout)
    assert data["decision"] == "allow"
    assert data["trace"][0]["comparisons"][0]["value"] == "true"
    print(f"explain took {elapsed:.2f}s")  # a figure, not an assertion: machines are noisy


def test_explain_rejects_a_malformed_header() -> None:
    proc = hdrpolicy("explain", str(EXAMPLES / "header-authorization.hp"), "-H", "allow")
    assert proc.returncode == 1 and "NAME=VALUE" in proc.stderr


LISTS_POLICY = """\
list admins from "admins.txt"
list offices = ["10.0.0.0/8", "2001:db8::/32"]
deny 403 "admins only" when path starts_with "/admin/" and header x-user not in admins
deny 403 "offices only" when query debug == "1" and client not in offices
deny 401 "no session" when not cookie sid exists
"""


@pytest.fixture
def lists_policy(tmp_path: Path) -> Path:
    (tmp_path / "admins.txt").write_text("# who may\nalice\nbob\n")
    policy = tmp_path / "lists.hp"
    policy.write_text(LISTS_POLICY)
    return policy


def test_explain_names_the_list_and_what_in_it_matched(lists_policy: Path) -> None:
    proc = hdrpolicy(
        "explain",
        str(lists_policy),
        "--path",
        "/admin/x?debug=1&x=%41+b",
        "--client",
        "2001:db8::5",
        "-H",
        "x-user: bob",
        "-H",
        'cookie: a=1; sid="s 1"',
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert (
        'header x-user not in admins  (header x-user is "bob"; admins has "bob") → false' in lines
    )
    assert 'query debug == "1"  (query debug is "1") → true' in lines
    # IPv6 as the plug-in compares it: in full; and the range of the list that holds it.
    assert (
        'client not in offices  (client is "2001:0db8:0000:0000:0000:0000:0000:0005"; '
        'offices has "2001:db8::/32") → false'
    ) in lines
    # A quoted cookie value is read as sent and without its quotes: two readings.
    assert lines[0] == "decision: allow"
    assert lines[2].startswith("readings: 2 ")
    assert 'cookie sid exists  (cookie sid is "\\"s 1\\"") → true' in lines
    outsider = hdrpolicy("explain", str(lists_policy), "--path", "/?debug=1", "-H", "cookie: sid=1")
    assert 'decision: deny 403 "offices only"' in outsider.stdout
    assert 'client not in offices  (client is "127.0.0.1"; offices has no match) → true' in (
        outsider.stdout
    )
    data = json.loads(
        hdrpolicy(
            "explain",
            str(lists_policy),
            "--path",
            "/admin/",
            "-H",
            "x-user=eve",
            "--format",
            "json",
        ).stdout
    )
    first = data["trace"][0]["comparisons"][1]
    assert (first["list"], first["value"], first["matched"], first["result"]) == (
        "admins",
        "eve",
        None,
        True,
    )


def test_explain_refuses_a_malformed_query_before_any_rule(lists_policy: Path) -> None:
    proc = hdrpolicy("explain", str(lists_policy), "--path", "/?debug=%zz")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == [
        'decision: deny 400 "query string not well-formed"',
        "decided by: refused before any rule: query string not well-formed "
        '(the path is "/?debug=%zz")',
    ]


@pytest.mark.parametrize("client", ["10.0.0.0/8", "localhost", "10.1.2.3:80", "fe80::1%eth0", ""])
def test_explain_refuses_a_client_that_is_not_an_address(lists_policy: Path, client: str) -> None:
    proc = hdrpolicy("explain", str(lists_policy), "--client", client)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: `--client {client}` is not an IP address (e.g. 10.1.2.3 or 2001:db8::1: "
        "one address, no range, port or zone)\n"
    )


# -- test files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("unknown-key", 3, "unknown key `reqest` in a case"),
        ("unquoted-bool", 3, "a header value must be a string, not `true`"),
        ("bad-expect", 3, "`expect` is `allow` or a deny mapping, not `permit`"),
        ("bad-expect", 5, "`status` must be a whole number"),
        ("bad-expect", 7, "a header must be a [name, value] pair"),
        ("duplicate-names", 4, "duplicate case name `same`"),
        ("not-yaml", 2, "invalid YAML"),
        ("bad-client", 3, "`client` must be an IP address, not `10.0.0.0/8`"),
        ("bad-client", 6, "`client` must be an IP address, not `localhost`"),
        ("bad-client", 9, "`client` must be an IP address, not `127.0.0.1:8080`"),
        ("bad-client", 12, "`client` must be an IP address, not `fe80::1%eth0`"),
        ("bad-client", 15, "`client` must be a string, not `2001:0:0:0:0:0:0:1`"),
    ],
)
def test_test_file_errors_point_at_the_yaml_line(name: str, line: int, message: str) -> None:
    loaded = load(TESTFILES / f"{name}.tests.yaml")
    found = [(d.span.line, d.message) for d in loaded.diagnostics]
    assert any(ln == line and msg.startswith(message) for ln, msg in found), found
    rendered = render_text(loaded.source, loaded.diagnostics[0])
    assert f"{name}.tests.yaml:" in rendered and "^" in rendered


def test_a_case_comes_from_its_client_or_from_127_0_0_1(tmp_path: Path) -> None:
    tests = tmp_path / "p.tests.yaml"
    tests.write_text(
        "cases:\n"
        "  - {name: default, expect: allow}\n"
        "  - {name: v4, request: {client: 10.1.2.3}, expect: allow}\n"
        '  - {name: v6, request: {client: "2001:db8::1"}, expect: allow}\n'
    )
    loaded = load(tests)
    assert loaded.diagnostics == []
    assert [c.request().client for c in loaded.cases] == [
        "127.0.0.1:50000",
        "10.1.2.3:50000",
        "[2001:db8::1]:50000",
    ]
    # The evaluator reads it as the plug-in does, through the codec.
    policy = policy_of('deny 403 when client in ["10.0.0.0/8", "2001:db8::/32"]\n')
    decided = [evaluate(policy, deliver(Protocol.HTTP1, c.request())).allowed for c in loaded.cases]
    assert decided == [True, False, False]


def test_every_example_has_a_tests_file() -> None:
    for policy in EXAMPLES.glob("*.hp"):
        assert policy.with_name(policy.stem + ".tests.yaml").is_file(), policy


@pytest.mark.slow
@pytest.mark.usefixtures("emulator")
def test_hdrpolicy_test_passes_on_the_examples(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    proc = hdrpolicy("test", *map(str, sorted(EXAMPLES.glob("*.hp"))), "--junit-xml", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].endswith("passed, 0 failed")
    suites = ET.parse(junit).getroot()
    assert int(suites[0].get("tests", "0")) > 0


@pytest.mark.slow
@pytest.mark.usefixtures("emulator")
def test_a_wrong_expectation_fails_with_a_diff_and_a_trace(tmp_path: Path) -> None:
    policy = tmp_path / "p.hp"
    policy.write_text((EXAMPLES / "header-authorization.hp").read_text())
    (tmp_path / "p.tests.yaml").write_text(
        "cases:\n"
        "  - name: wrong on purpose\n"
        "    request: {headers: {allow: 'true'}}\n"
        "    expect: {status: 403}\n"
        "  - name: right\n"
        "    expect: {status: 403}\n"
    )
    proc = hdrpolicy("test", str(policy))
    assert proc.returncode == 1
    out = proc.stdout
    assert "FAIL" in out and "wrong on purpose" in out and "p.tests.yaml:2" in out
    assert "expected: deny 403" in out and "actual:   allow" in out
    assert '(header allow is "true") → true' in out
    assert out.splitlines()[-1] == "1 passed, 1 failed"
    data = json.loads(hdrpolicy("test", str(policy), "--format", "json").stdout)
    assert [c["passed"] for c in data["policies"][0]["cases"]] == [False, True]


def test_missing_tests_file_is_an_error(tmp_path: Path) -> None:
    policy = tmp_path / "p.hp"
    policy.write_text("deny 403 when header a exists\n")
    proc = hdrpolicy("test", str(policy))
    assert proc.returncode == 1 and "p.tests.yaml" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_tinygo_target_runs_natively_and_says_so() -> None:
    proc = hdrpolicy("test", str(EXAMPLES / "header-authorization.hp"), "--toolchain", "tinygo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "its wasm itself was not run" in proc.stdout
    assert proc.stdout.splitlines()[-1].endswith("passed, 0 failed")
