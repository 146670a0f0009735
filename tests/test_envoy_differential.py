"""Differential testing through a real Envoy: random policies by random untidy requests,
over HTTP/1.1 and HTTP/2, decide what `evaluate(policy, deliver(protocol, request))` says.

Requests are what clients really send: built-in headers that Envoy joins
(`user-agent`, `authorization`, `accept`) sent more than once, header-name case,
spaces and tabs around values, dot segments, `//` and percent-encoded paths,
query strings (repeated, form-encoded and malformed parameters) and cookies
(several `cookie` lines, which HTTP/2 joins), from 127.0.0.1 and sometimes
with an `x-forwarded-for` that names another client address.
The policies' vocabulary is `policy_strategies`'s.  One Envoy carries every
policy (a listener each), so the test costs one start.  A seeded generator
keeps CI's examples fixed; `HDRPOLICY_ENVOY_SEED` explores others.
"""

from __future__ import annotations

import os
import random

import pytest

from envoy_support import checked_text, envoy_with, policy_of, wasm_of
from hdrpolicy.codec import Protocol, SentRequest, deliver
from hdrpolicy.evaluate import evaluate
from hdrpolicy.printer import policy_string
from hdrpolicy.proxy import clients
from hdrpolicy.runner import describe_response, envoy_agreement
from policy_strategies import HEADER_NAMES, PATTERNS

# Starts Envoy or builds Go programs: `scripts/test --fast` skips it.
pytestmark = pytest.mark.slow

SEED = int(os.environ.get("HDRPOLICY_ENVOY_SEED", "20261125"))
POLICIES, REQUESTS, MAX_REPORTED = 4, 80, 12

# Built-in headers Envoy joins, and ones it keeps apart.
REQUEST_HEADERS = sorted({*HEADER_NAMES, "authorization", "accept", "x-forwarded-for"})
WORDS = ["a", "admin", "b", "curl/8.5", "Mozilla/5.0", "true", "Bearer x", "a,b", "é", "x y"]
WORDS += ["curl/8.5", "Mozilla/5.0", "admin", "Bearer x", "true"]
PATH_WORDS = ["/admin", "/api/v1/", "/public", "/a"]
HOSTS = ["example.com", "Example.COM:8080", "billing.internal", "a.internal:8443"]
METHODS = ["GET", "POST", "OPTIONS", "PUT", "DELETE", "HEAD"]
SEGMENTS = ["admin", "api", "v1", "public", "users", "a", "..", ".", "", "%2e%2e", "%61dmin"]
SEGMENTS += ["%2F", "%2fadmin", "%5C", "x;y", "A", "a%20b", "..;", "%41"]
BYPASSES = ["/{}", "/{}", "/public/../{}", "//{}", "/./{}", "/public%2F..%2F{}", "/x/..%5C{}"]
BYPASSES += ["/api/v1/../../{}", "/public/%2e%2e/{}", "/%61dmin/{}", "/{}/./x", "/public/..;/{}"]
SHARP_HEADERS = ["user-agent", "user-agent", "authorization", "accept", "x-role", "allow"]
OPERATORS = ["==", "!=", "in", "not in", "starts_with", "ends_with", "contains", "matches"]


# Conditions that tell apart what a client sent from what Envoy made of it.
SHARP = [
    'header user-agent matches "^curl/"',
    'header user-agent starts_with "Mozilla/"',
    'header authorization == "Bearer x"',
    'header accept contains "admin"',
    'header x-role == "admin"',
    'header allow == "true"',
    'header x-tenant in ["a", "b"]',
    'path starts_with "/admin"',
    'path starts_with "/api/v1/"',
    'path == "/public"',
    # What joining and kept whitespace change.
    'header user-agent contains ","',
    'header accept == "a,b"',
    'header authorization == "Bearer x,Bearer x"',
    'header user-agent ends_with "curl/8.5"',
    'header x-forwarded-for contains " "',
    'path contains ".."',
    'path contains "//"',
    # Query parameters, cookies and the client address.
    'query next == "/admin"',
    "query a exists",
    'query a in ["1", "x y", "1,2"]',
    'query a starts_with "%"',
    'cookie session == "1"',
    "cookie session exists",
    'cookie role in ["admin", "\\"admin\\""]',
    'client in ["127.0.0.0/8"]',
    'client not in ["10.0.0.0/8"]',
]
# Query strings: repeats, `+`, escapes, a parameter without `=`, malformed `%`.
QUERY_PARTS = ["a=1", "a=2", "a=x+y", "a=%31", "%61=1", "a=%2F", "a", "next=/admin", "a=%zz", ""]
QUERY_PARTS += ["next=%2Fadmin", "b=%", "a=%25"]
COOKIES = ["session=1", "session=1; role=admin", " role=admin ", 'role="admin"', ""]
COOKIES += ["session=2;session=1", "Session=1", "role"]
FORWARDED = ["10.1.2.3", "127.0.0.9", "unknown", "10.1.2.3, 127.0.0.1"]


def random_compare(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(SHARP)
    kind = rng.choice(["header", "header", "header", "path", "method", "host"])
    subject = f"header {rng.choice(REQUEST_HEADERS)}" if kind == "header" else kind
    if kind == "header" and rng.random() < 0.2:
        return f"{subject} exists"
    op = rng.choice(OPERATORS)
    if op == "matches":
        return f"{subject} matches {policy_string(rng.choice([*PATTERNS, '^curl/', ',']))}"
    pool = {"path": PATH_WORDS, "method": METHODS, "host": [h.lower() for h in HOSTS]}
    words = pool.get(kind, WORDS)
    if kind == "host":
        words = [w.split(":")[0] for w in words]
    fold = " ignoring case" if kind != "host" and rng.random() < 0.3 else ""
    if op in ("in", "not in"):
        chosen = rng.sample(words, rng.randint(1, 3))
        return f"{subject} {op} [{', '.join(map(policy_string, chosen))}]{fold}"
    return f"{subject} {op} {policy_string(rng.choice(words))}{fold}"


def random_condition(rng: random.Random) -> str:
    """Mostly one comparison, so that later rules get requests to decide too."""
    roll = rng.random()
    if roll < 0.6:
        return random_compare(rng)
    if roll < 0.7:
        return f"not {random_compare(rng)}"
    op = "and" if roll < 0.85 else "or"
    return f"{random_compare(rng)} {op} {random_compare(rng)}"


def random_policy(rng: random.Random) -> str:
    lines = []
    for i in range(rng.randint(3, 7)):
        guard = "unless" if rng.random() < 0.15 else "when"
        if rng.random() < 0.3:
            lines.append(f"allow {guard} {random_condition(rng)}")
        else:
            extra = f' with header x-rule = "{i}"' if rng.random() < 0.3 else ""
            body = rng.choice(["", f' "rule {i}"'])
            status = rng.choice([401, 403, 418, 429])
            lines.append(f"deny {status}{body}{extra} {guard} {random_condition(rng)}")
    if rng.random() < 0.5:
        lines.append('default deny 404 "no route"')
    return "\n".join(lines) + "\n"


def random_path(rng: random.Random) -> str:
    if rng.random() < 0.5:  # a spelling of a path the policies name
        return rng.choice(BYPASSES).format(rng.choice(["admin/users", "api/v1/x", "public"]))
    path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.15:
        path = "/" + path
    if rng.random() < 0.15:
        path += "?next=/admin"
    elif rng.random() < 0.3:
        path += "?" + "&".join(rng.choice(QUERY_PARTS) for _ in range(rng.randint(1, 3)))
    return path


def random_value(rng: random.Random) -> str:
    value = rng.choice(WORDS)
    if rng.random() < 0.25:
        value = rng.choice([" ", "\t", "  "]) + value
    if rng.random() < 0.25:
        value += rng.choice([" ", "\t"])
    return value


def random_request(rng: random.Random) -> SentRequest:
    headers: list[tuple[str, str]] = []
    for _ in range(rng.randint(0, 5)):
        if headers and rng.random() < 0.4:
            name = rng.choice(headers)[0]  # a repeat
        else:
            name = rng.choice([*REQUEST_HEADERS, *SHARP_HEADERS])
        if rng.random() < 0.2:
            name = name.title()
        headers.append((name, random_value(rng)))
    for _ in range(rng.choice([0, 0, 1, 2])):
        headers.append((rng.choice(["cookie", "cookie", "Cookie"]), rng.choice(COOKIES)))
    if rng.random() < 0.15:
        headers.append(("x-forwarded-for", rng.choice(FORWARDED)))
    method, path, host = rng.choice(METHODS), random_path(rng), rng.choice(HOSTS)
    return SentRequest(method, path, host, tuple(headers), client="127.0.0.1")


def test_envoy_agrees_with_the_evaluator_on_random_policies_and_requests() -> None:
    rng = random.Random(SEED)
    texts = [random_policy(rng) for _ in range(POLICIES)]
    checked = [checked_text(text, f"random{i}") for i, text in enumerate(texts)]
    requests = [random_request(rng) for _ in range(REQUESTS)]
    listeners = {f"p{i}": (wasm_of(c), False) for i, c in enumerate(checked)}
    failures = []
    with envoy_with(listeners) as proxy:
        for i, (text, policy) in enumerate(zip(texts, map(policy_of, checked), strict=True)):
            for request in requests:
                for protocol in Protocol:
                    decision = evaluate(policy, deliver(protocol, request))
                    proxy.upstream.take()
                    response = clients.send(protocol, proxy.port(f"p{i}"), request)
                    reached = bool(proxy.upstream.take())
                    token = proxy.upstream.token
                    why = envoy_agreement(decision, response, reached, token, request.method)
                    if why is not None:
                        failures.append(
                            f"seed {SEED}, policy p{i}:\n{text}  {protocol.value} {request}\n"
                            f"  {why}\n  Envoy: {describe_response(response, reached)}"
                        )
    assert not failures, f"{len(failures)} disagreements:\n" + "\n".join(failures[:MAX_REPORTED])
