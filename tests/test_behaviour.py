"""The compiled plugin.wasm, run in the SDK's host emulator, does what the tutorial's does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import compile_text
from hdrpolicy.backend.host import run_plugin
from hdrpolicy.printer import policy_string

# Builds with Go, runs the emulator or installs packages: `scripts/test --fast` skips it.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("emulator")]

BASE = [(b":method", b"GET"), (b":path", b"/status/418"), (b":authority", b"gw.example.com")]


def test_tutorial_plugin_denies_without_allow_header(tutorial_wasm: Path) -> None:
    missing, true, false, upper = run_plugin(
        tutorial_wasm,
        [
            BASE,
            [*BASE, (b"allow", b"true")],
            [*BASE, (b"allow", b"false")],
            [*BASE, (b"allow", b"TRUE")],
        ],
    )
    assert missing.action == "pause"
    assert missing.status == 403
    assert missing.body == b"Forbidden by ASM Wasm Plugin"
    assert missing.headers == [(b"content-type", b"text/plain")]
    assert any("header allow is missing" in line for line in missing.debug)
    assert true.action == "continue" and true.status is None and true.debug == ()
    assert false.status == 403 and any('header allow is "false"' in x for x in false.debug)
    assert upper.status == 403


def test_deny_log_quotes_values_as_strconv_quote_does(tutorial_wasm: Path) -> None:
    # Printable ASCII takes the plug-in's own path; anything else goes to strconv.Quote.
    quoted = {
        b"a b~": '"a b~"',
        b'say "hi"': r'"say \"hi\""',
        b"back\\slash": r'"back\\slash"',
        b"tab\there": r'"tab\there"',
        b"del\x7f": r'"del\x7f"',
        b"caf\xc3\xa9": '"caf\u00e9"',
        b"bad\xff": r'"bad\xff"',
    }
    results = run_plugin(tutorial_wasm, [[*BASE, (b"allow", v)] for v in quoted])
    for want, got in zip(quoted.values(), results, strict=True):
        assert got.status == 403
        assert got.debug == (
            "header-authorization: header-authorization.hp:4: denied with 403: "
            f"header allow is {want}",
        )
    (upper_name,) = run_plugin(tutorial_wasm, [[*BASE, (b"ALLOW", b"true")]])
    assert upper_name.action == "continue"


def test_rules_and_subjects_behave_as_documented(tmp_path: Path) -> None:
    policy = "\n".join(
        [
            'allow when method == "OPTIONS"',
            'deny 401 "who" when not header authorization exists',
            'deny 403 "admins" when path starts_with "/admin/" and not header x-role in ["admin"]',
            'deny 429 "slow" with header retry-after = "30" when header x-tenant == "noisy"',
            'deny 403 "internal" when host ends_with ".internal" and method != "GET"',
            'deny 418 "env" when header x-env == "prod" ignoring case',
            'deny 403 "bot" when header user-agent matches "^curl/"',
            'default deny 404 "no route"',
        ]
    )
    result = compile_text(policy, tmp_path)
    assert result.checked.ok, result.checked.diagnostics
    auth = (b"authorization", b"x")

    def req(
        method: bytes, path: bytes, host: bytes, *extra: tuple[bytes, bytes]
    ) -> list[tuple[bytes, bytes]]:
        return [(b":method", method), (b":path", path), (b":authority", host), *extra]

    cases = {
        "preflight": (req(b"OPTIONS", b"/", b"a"), None),
        "no auth": (req(b"GET", b"/", b"a"), 401),
        "admin path, no role": (req(b"GET", b"/admin/x?y=1", b"a", auth), 403),
        "admin path, role": (req(b"GET", b"/admin/x", b"a", auth, (b"x-role", b"admin")), 404),
        "query is not the path": (req(b"GET", b"/x?/admin/", b"a", auth), 404),
        "noisy": (req(b"GET", b"/", b"a", auth, (b"x-tenant", b"noisy")), 429),
        "internal post, port and case": (req(b"POST", b"/", b"Svc.INTERNAL:8080", auth), 403),
        "internal get": (req(b"GET", b"/", b"svc.internal", auth), 404),
        "prod any case": (req(b"GET", b"/", b"a", auth, (b"x-env", b"PrOd")), 418),
        "curl": (req(b"GET", b"/", b"a", auth, (b"user-agent", b"curl/8.4.0")), 403),
        "mixed-case header name": (req(b"GET", b"/", b"a", (b"Authorization", b"x")), 404),
    }
    results = run_plugin(result.out_dir / "plugin.wasm", [r for r, _ in cases.values()])
    for (name, (_, want)), got in zip(cases.items(), results, strict=True):
        assert got.status == want, name
        assert got.action == ("continue" if want is None else "pause"), name
    noisy = results[list(cases).index("noisy")]
    assert noisy.headers == [(b"content-type", b"text/plain"), (b"retry-after", b"30")]


@settings(max_examples=4, deadline=None)
@given(bodies=st.lists(st.text(max_size=40), min_size=1, max_size=40, unique=True))
def test_any_deny_body_comes_back_byte_identical(
    tmp_path_factory: pytest.TempPathFactory, bodies: list[str]
) -> None:
    workdir = tmp_path_factory.mktemp("bodies")
    rules = [
        f'deny 403 {policy_string(body)} when header x-case == "{i}"'
        for i, body in enumerate(bodies)
    ]
    result = compile_text("\n".join(rules), workdir)
    assert result.checked.ok, result.checked.diagnostics
    got = run_plugin(
        result.out_dir / "plugin.wasm", [[(b"x-case", str(i).encode())] for i in range(len(bodies))]
    )
    assert [r.body for r in got] == [b.encode("utf-8") for b in bodies]
