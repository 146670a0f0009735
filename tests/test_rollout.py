"""Safe rollout in the SDK's emulator: dry-run, shadow, counters and filter state.

The plug-in of each build must do exactly what `rollout.run` (the evaluator's
model of a build) says: let the request through or send the response,
increment exactly the counters, set exactly the filter state.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import EXAMPLES
from envoy_support import checked_text, policy_of
from hdrpolicy import rollout
from hdrpolicy.backend.compiler import cached_wasm, emit_build, rollout_build
from hdrpolicy.backend.host import HostResult, run_plugin
from hdrpolicy.backend.toolchains import GO
from hdrpolicy.codec import CLIENT_ADDRESS
from hdrpolicy.evaluate import Headers
from hdrpolicy.frontend.pipeline import Checked, check_file

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("emulator")]

TUTORIAL = check_file(EXAMPLES / "header-authorization.hp")
YES = check_file(EXAMPLES.parent / "readme" / "header-authorization-yes.hp")

# A policy with allow rules, a default, a path rule and a joined header.
ROUTES = checked_text(
    """policy "routes"
allow when method == "OPTIONS"
deny 401 "who are you" when not header authorization exists
deny 403 "admins only" when path starts_with "/admin" and header x-role != "admin"
allow when path starts_with "/public"
default deny 404 "no route"
""",
    "routes",
)
# The next version: /admin opens to ops (a different rule), /public needs a GET,
# /healthz opens, and the default says 410 instead of 404.
ROUTES_NEXT = checked_text(
    """policy "routes"
allow when method == "OPTIONS"
deny 401 "who are you" when not header authorization exists
deny 403 "admins only" when path starts_with "/admin" and header x-role not in ["admin", "ops"]
allow when path starts_with "/public" and method == "GET"
allow when path == "/healthz"
default deny 410 "gone"
""",
    "routes-next",
)


def request(
    path: str = "/", method: str = "GET", headers: list[tuple[str, str]] | None = None
) -> Headers:
    pairs = [(":method", method), (":path", path), (":authority", "example.com")]
    return [(k.encode(), v.encode()) for k, v in pairs + (headers or [])]


TUTORIAL_REQUESTS = [
    request(headers=[("allow", "true")]),
    request(headers=[("allow", "false")]),
    request(headers=[("allow", "yes")]),
    request(),
    request(headers=[("allow", "yes"), ("allow", "true")]),
    request(headers=[("allow", " true")]),
    request(headers=[("allow", "true"), ("allow", "yes")]),
]
AUTH = ("authorization", "Bearer t")
ROUTES_REQUESTS = [
    request(method="OPTIONS", path="/admin/x"),
    request(path="/public/a"),
    request(path="/public/a", headers=[AUTH]),
    request(path="/public/a", method="POST", headers=[AUTH]),
    request(path="/admin/users", headers=[AUTH]),
    request(path="/admin/users", headers=[AUTH, ("x-role", "admin")]),
    request(path="/admin/users", headers=[AUTH, ("x-role", "ops")]),
    request(path="/admin/users", headers=[AUTH, ("x-role", "ops"), ("x-role", "admin")]),
    request(path="/other", headers=[AUTH]),
    request(path="/healthz", headers=[AUTH]),
    request(path="/public/../admin", headers=[AUTH]),
    request(path="/public/a", headers=[("authorization", "a"), ("authorization", "b")]),
    request(path="/x", headers=[AUTH] + [("x-role", str(i)) for i in range(70)]),
]


def side(checked: Checked) -> rollout.Side:
    return rollout.Side(policy_of(checked), Path(checked.source.path).name)


def run_build(
    checked: Checked,
    requests: list[Headers],
    options: rollout.Options,
    shadow: Checked | None = None,
) -> tuple[rollout.Build, list[HostResult]]:
    build = options.build(side(checked), side(shadow) if shadow else None)
    wasm = cached_wasm(checked, GO, lambda _: None, options, shadow)
    results = run_plugin(wasm, requests, counters=build.counters, state=build.state_keys)
    return build, results


def assert_agrees(build: rollout.Build, headers: Headers, got: HostResult) -> rollout.Outcome:
    want = rollout.run(build, headers)
    assert got.trap is None
    if want.allowed:
        assert (got.action, got.status) == ("continue", None), (headers, got)
    else:
        assert got.action == "pause"
        assert (got.status, got.body, tuple(got.headers)) == (want.status, want.body, want.headers)
    assert got.counters == dict(want.counters), headers
    assert got.state == want.filter_state, headers
    return want


BUILDS = [
    pytest.param(rollout.Options(), id="enforce"),
    pytest.param(rollout.Options(rollout.Mode.DRY_RUN), id="dry-run"),
    pytest.param(rollout.Options(decision_header="x-hdrpolicy-rule"), id="decision-header"),
    pytest.param(rollout.Options(metrics=False, filter_state=False), id="bare"),
]


@pytest.mark.parametrize("options", BUILDS)
@pytest.mark.parametrize(
    ("checked", "requests"),
    [(TUTORIAL, TUTORIAL_REQUESTS), (ROUTES, ROUTES_REQUESTS)],
    ids=["tutorial", "routes"],
)
def test_the_plugin_does_what_the_build_model_says(
    checked: Checked, requests: list[Headers], options: rollout.Options
) -> None:
    build, results = run_build(checked, requests, options)
    outcomes = [assert_agrees(build, h, r) for h, r in zip(requests, results, strict=True)]
    # The model is not trivially satisfied: the policies deny, by several rules.
    assert len({o.live_by for o in outcomes}) >= 3
    if build.mode is rollout.Mode.DRY_RUN:
        assert all(o.allowed for o in outcomes)
    if not build.metrics:
        assert all(not r.counters and not r.state for r in results)


@pytest.mark.parametrize(
    ("live", "shadow", "requests"),
    [(TUTORIAL, YES, TUTORIAL_REQUESTS), (ROUTES, ROUTES_NEXT, ROUTES_REQUESTS)],
    ids=["tutorial", "routes"],
)
def test_a_shadow_build_enforces_live_and_counts_each_difference(
    live: Checked, shadow: Checked, requests: list[Headers]
) -> None:
    build, results = run_build(live, requests, rollout.Options(), shadow)
    outcomes = [assert_agrees(build, h, r) for h, r in zip(requests, results, strict=True)]
    # The enforced response is exactly the live policy's.
    _, alone = run_build(live, requests, rollout.Options())
    for with_shadow, without in zip(results, alone, strict=True):
        assert (with_shadow.status, with_shadow.body) == (without.status, without.body)
    comparisons = {o.comparison for o in outcomes}
    if live is ROUTES:
        assert comparisons == set(rollout.Comparison)


def test_shadow_of_the_tutorial_counts_exactly_the_allow_yes_requests_as_newly_allowed() -> None:
    _, results = run_build(TUTORIAL, TUTORIAL_REQUESTS, rollout.Options(), YES)
    newly = rollout.shadow_metric("header-authorization", rollout.Comparison.NEWLY_ALLOW)
    counted = [i for i, r in enumerate(results) if r.counters.get(newly)]
    # `allow: yes` alone; `yes` then `true` is denied by both (the joined reading
    # `yes, true` is neither).
    assert counted == [2]
    assert results[2].state["hdrpolicy.header-authorization.shadow"] == (
        b"newly-allow allow - no-rule"
    )
    # Disagreements are logged, header values redacted.
    assert results[2].info == (
        "header-authorization: shadow newly-allow (live deny 403 by header-authorization.hp:4: "
        "header allow is <redacted>; shadow allow by no-rule)",
    )
    assert not results[0].info and not results[1].info


def test_shadow_log_values_shows_them() -> None:
    options = rollout.Options(log_values=True)
    _, results = run_build(TUTORIAL, TUTORIAL_REQUESTS[2:3], options, YES)
    assert 'header allow is "yes"' in results[0].info[0]


def test_dry_run_logs_what_it_would_deny_with_the_rule_and_no_values() -> None:
    _, results = run_build(TUTORIAL, TUTORIAL_REQUESTS[:4], rollout.Options(rollout.Mode.DRY_RUN))
    assert [r.info for r in results] == [
        (),
        (
            "header-authorization: dry-run: would deny with 403 by header-authorization.hp:4: "
            "header allow is <redacted>",
        ),
        (
            "header-authorization: dry-run: would deny with 403 by header-authorization.hp:4: "
            "header allow is <redacted>",
        ),
        (
            "header-authorization: dry-run: would deny with 403 by header-authorization.hp:4: "
            "header allow is missing",
        ),
    ]
    assert all(not r.debug for r in results)


def test_dry_run_info_lines_are_rate_limited() -> None:
    denied = request(headers=[("allow", "no")])
    _, results = run_build(TUTORIAL, [denied] * 200, rollout.Options(rollout.Mode.DRY_RUN))
    lines = [line for r in results for line in r.info]
    # At most LOG_LINES_PER_SECOND per second; 200 requests take well under 5 s here.
    assert rollout.LOG_LINES_PER_SECOND <= len(lines) <= 5 * rollout.LOG_LINES_PER_SECOND
    counted = sum(sum(r.counters.values()) for r in results)
    assert counted == 200
    notes = [int(m.group(1)) for line in lines if (m := re.search(r"\((\d+) earlier", line))]
    assert sum(notes) <= 200 - len(lines)


def test_a_policy_of_no_subjects_and_a_shadow_reading_more() -> None:
    bare = checked_text('policy "bare"\ndeny 403 "closed"\n', "bare")
    opened = checked_text('policy "bare"\nallow when header x-open exists\ndeny 403 "closed"\n')
    requests = [request(), request(headers=[("x-open", "1")]), request(headers=[("x-open", " 1")])]
    build, results = run_build(bare, requests, rollout.Options(), opened)
    outcomes = [assert_agrees(build, h, r) for h, r in zip(requests, results, strict=True)]
    assert [o.comparison for o in outcomes] == [
        rollout.Comparison.AGREE,
        rollout.Comparison.NEWLY_ALLOW,
        rollout.Comparison.DIFFERENT_RESPONSE,  # the shadow refuses the padded value
    ]


# A policy that reads a query parameter (so it refuses a malformed query string),
# a cookie and the client address; and its previous version, which reads none.
STORE = checked_text(
    """policy "store"
deny 403 "staff only" when path starts_with "/staff" and client not in ["10.0.0.0/8"]
""",
    "store",
)
STORE_NEXT = checked_text(
    """policy "store"
deny 403 "staff only" when path starts_with "/staff" and client not in ["10.0.0.0/8"]
deny 400 "no debug" when query debug exists and cookie staff != "1"
""",
    "store-next",
)
CLIENT = [(CLIENT_ADDRESS, "10.1.2.3:5000")]
OUTSIDE = [(CLIENT_ADDRESS, "[2001:db8::1]:5000")]
STORE_REQUESTS = [
    request("/staff/a", headers=CLIENT),
    request("/staff/a", headers=OUTSIDE),
    request("/staff/a"),
    request("/x?debug=1", headers=CLIENT),
    request("/x?debug=1", headers=[("cookie", "staff=1")]),
    request("/x?debug=%zz"),
    request("/staff/a?debug=%zz", headers=OUTSIDE),
    request("/x?debug=1", headers=[("cookie", "staff=0"), ("cookie", "staff=1")]),
    request("/x?debug=1&debug=2", headers=[("cookie", 'staff="1"')]),
]


@pytest.mark.parametrize(
    ("live", "shadow", "options"),
    [
        (STORE_NEXT, None, rollout.Options()),
        (STORE_NEXT, None, rollout.Options(rollout.Mode.DRY_RUN)),
        (STORE_NEXT, STORE, rollout.Options()),
        (STORE, STORE_NEXT, rollout.Options()),
    ],
    ids=["enforce", "dry-run", "shadow-without-query", "shadow-with-query"],
)
def test_a_policy_reading_a_query_parameter_counts_and_records_its_refusal(
    live: Checked, shadow: Checked | None, options: rollout.Options
) -> None:
    build, results = run_build(live, STORE_REQUESTS, options, shadow)
    outcomes = [assert_agrees(build, h, r) for h, r in zip(STORE_REQUESTS, results, strict=True)]
    # Both malformed query strings are refused by the policy that reads `query`, before
    # any rule; the one that does not read it judges them by its rules.
    for checked, decided in [(live, [o.live_by for o in outcomes])] + (
        [(shadow, [o.shadow_by for o in outcomes])] if shadow else []
    ):
        refused = [i for i, by in enumerate(decided) if by == "query-not-well-formed"]
        assert refused == ([5, 6] if checked is STORE_NEXT else []), decided


@pytest.mark.parametrize(
    ("live", "shadow"),
    [(TUTORIAL, None), (ROUTES, ROUTES_NEXT), (STORE_NEXT, None), (STORE, STORE_NEXT)],
)
def test_the_plugin_defines_only_counters_the_build_names(
    live: Checked, shadow: Checked | None
) -> None:
    """`Build.counters` (what `test` reads) holds every counter the emitted Go defines;
    the malformed query's only where the policy reads a query parameter."""
    build = rollout_build(live, shadow, rollout.Options())
    main = emit_build(build, live, shadow, GO)["main.go"].decode()
    defined = re.findall(r'^\tmetricName: +"([^"]+)",$', main, re.M)
    defined += re.findall(r'^\t"(hdrpolicy\.shadow\.[^"]+)",$', main, re.M)
    assert defined, "the counters are not found in the emitted Go"
    assert set(defined) <= set(build.counters)
    refusing = [name for name in build.counters if name.endswith(".query_not_well_formed")]
    assert refusing == [name for name in defined if name.endswith(".query_not_well_formed")]
    reads_query = [role for role, s in (("enforce", live), ("shadow", shadow)) if s is STORE_NEXT]
    assert [name.split(".")[3] for name in refusing] == reads_query
