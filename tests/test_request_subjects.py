"""What `query NAME`, `cookie NAME`, `client in` and named lists mean, in the reference
evaluator and the checker: the definition the plug-in, the analysis and Envoy are
tested against elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from hdrpolicy import semantics
from hdrpolicy.codec import CLIENT_ADDRESS, Protocol, SentRequest, deliver
from hdrpolicy.diagnostics import Source, render_text
from hdrpolicy.evaluate import Headers, evaluate
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import Checked, check_file, check_source


def _policy(text: str, tmp_path: Path | None = None) -> ir.Policy:
    checked = _checked(text, tmp_path)
    assert checked.ok and checked.policy is not None, checked.diagnostics
    return checked.policy


def _checked(text: str, tmp_path: Path | None = None) -> Checked:
    if tmp_path is None:
        return check_source(Source("p.hp", text), "p")
    path = tmp_path / "p.hp"
    path.write_text(text, encoding="utf-8")
    return check_file(path)


def _request(path: str = "/", cookies: tuple[str, ...] = (), client: str | None = None) -> Headers:
    out: Headers = [(b":method", b"GET"), (b":path", path.encode()), (b":authority", b"a")]
    if client is not None:
        out.append((CLIENT_ADDRESS.encode(), client.encode()))
    out.extend((b"cookie", c.encode()) for c in cookies)
    return out


# -- query parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "values"),
    [
        ("/a", []),
        ("/a?", []),
        ("/a?user=alice", [b"alice"]),
        ("/a?user", [b""]),
        ("/a?user=", [b""]),
        ("/a?user=a+b%20c", [b"a b c"]),
        ("/a?u%73er=x&user=y", [b"x", b"y"]),
        ("/a?USER=x", []),
        ("/a?&&user=1&&", [b"1"]),
        ("/a?user=a=b", [b"a=b"]),
        ("/a?user=%2F%2f", [b"//"]),
        ("/a?x=1;user=2", []),
        ("/a?user=%e2%82%ac", ["€".encode()]),
    ],
)
def test_query_values_are_form_decoded_and_matched_by_decoded_name(
    path: str, values: list[bytes]
) -> None:
    assert semantics.query_values(path.encode(), b"user") == values


def test_a_repeated_parameter_is_judged_by_every_value_and_all_of_them_joined() -> None:
    policy = _policy('deny 403 "admin" when query role == "admin"\n')
    assert not evaluate(policy, _request("/?role=user&role=admin")).allowed
    assert not evaluate(policy, _request("/?role=admin&role=user")).allowed
    # ASP.NET reads `role=a&role=b` as "a,b": that reading is judged too.
    joined = _policy('deny 403 "joined" when query role == "user,admin"\n')
    decision = evaluate(joined, _request("/?role=user&role=admin"))
    assert not decision.allowed and decision.readings == 3
    assert evaluate(joined, _request("/?role=user")).allowed


def test_malformed_percent_encoding_in_the_query_is_refused_when_the_policy_reads_one() -> None:
    policy = _policy('deny 403 when query debug == "1"\n')
    for path in ("/?debug=1%", "/?debug=%zz", "/?other=%4", "/?a%=1"):
        decision = evaluate(policy, _request(path))
        assert (decision.status, decision.body) == (400, b"query string not well-formed"), path
    assert evaluate(policy, _request("/?debug=%31")).status == 403
    assert evaluate(policy, _request("/%zz")).allowed  # the path is not the query
    # A policy that does not read the query does not refuse it.
    assert evaluate(_policy("deny 403 when header a exists\n"), _request("/?x=%zz")).allowed


def test_the_path_is_refused_before_the_query() -> None:
    policy = _policy('deny 403 when query a exists or path == "/x"\n')
    assert evaluate(policy, _request("/a/../b?x=%zz")).body == b"path not in normal form"


def test_path_still_means_the_path_without_its_query() -> None:
    policy = _policy('deny 403 when path == "/a" and query b == "c"\n')
    assert evaluate(policy, _request("/a?b=c")).status == 403
    assert evaluate(policy, _request("/a?b=d")).allowed


# -- cookies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "values"),
    [
        ("sid=1", [b"1"]),
        ("a=1; sid=2;sid=3", [b"2", b"3"]),
        ("  sid = 4 ; x=5", [b"4"]),
        ('sid="q"', [b'"q"', b"q"]),
        ("sid", [b""]),
        ("sid=", [b""]),
        ("SID=1; sidx=2; xsid=3", []),
        ("sid=a=b", [b"a=b"]),
        ("sid=%41", [b"%41"]),
        (";;sid=6;;", [b"6"]),
    ],
)
def test_cookie_values(header: str, values: list[bytes]) -> None:
    assert semantics.cookie_values(header.encode(), b"sid") == values


def test_cookies_from_every_cookie_header_on_both_protocols() -> None:
    policy = _policy('deny 403 "bad" when cookie role == "admin"\n')
    sent = SentRequest("GET", "/", "a", (("cookie", "x=1"), ("cookie", "role=admin")))
    for protocol in Protocol:
        decision = evaluate(policy, deliver(protocol, sent))
        assert decision.status == 403, protocol
    # Quotes are read both ways; a name sent twice is judged by each value.
    assert evaluate(policy, _request(cookies=('role="admin"',))).status == 403
    assert evaluate(policy, _request(cookies=("role=user; role=admin",))).status == 403
    assert evaluate(policy, _request(cookies=("role=user",))).allowed


def test_a_cookie_is_missing_without_its_name() -> None:
    policy = _policy("deny 401 unless cookie session exists\n")
    assert evaluate(policy, _request(cookies=("other=1",))).status == 401
    assert evaluate(policy, _request()).status == 401
    assert evaluate(policy, _request(cookies=("session=",))).allowed


# -- the client address ------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "normal"),
    [
        ("10.1.2.3:5000", b"10.1.2.3"),
        ("10.1.2.3", b"10.1.2.3"),
        ("[2001:db8::1]:443", b"2001:0db8:0000:0000:0000:0000:0000:0001"),
        ("2001:DB8::1", b"2001:0db8:0000:0000:0000:0000:0000:0001"),
        ("[::ffff:10.0.0.1]:80", b"10.0.0.1"),
        ("[fe80::1%eth0]:80", b""),
        ("/tmp/envoy.sock", b""),
        ("10.1.2.3:99999", b""),
        ("010.1.2.3:1", b""),
        ("", b""),
    ],
)
def test_client_address_normal_form(address: str, normal: bytes) -> None:
    assert semantics.client_address(address.encode()) == normal


def test_client_in_ranges() -> None:
    policy = _policy(
        'deny 403 "outside" unless client in ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]\n'
    )
    for inside in ("10.255.0.1:1", "[2001:db8:ffff::1]:2", "192.0.2.7:3", "[::ffff:10.0.0.9]:4"):
        assert evaluate(policy, _request(client=inside)).allowed, inside
    for outside in ("11.0.0.1:1", "[2001:db9::1]:2", "192.0.2.8:3", "/pipe", None):
        assert evaluate(policy, _request(client=outside)).status == 403, outside
    negated = _policy('deny 403 when client not in ["127.0.0.0/8"]\n')
    assert evaluate(negated, _request(client="127.0.0.2:9")).allowed
    assert evaluate(negated, _request(client="10.0.0.1:9")).status == 403
    # No address at all is outside every range.
    assert evaluate(negated, _request()).status == 403


def test_the_client_address_travels_after_the_pseudo_headers() -> None:
    sent = SentRequest("GET", "/", "a", (("x", "1"),), client="127.0.0.1:4000")
    names = [name for name, _ in deliver(Protocol.HTTP1, sent)]
    assert names[:4] == [b":method", b":path", b":authority", CLIENT_ADDRESS.encode()]
    # A policy cannot read it as a header: the subject is `client`.
    [found] = _checked("deny 403 when header :source.address exists\n").diagnostics
    assert (found.code, found.help) == ("HP210", "use the subject `client`")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('deny 403 when client == "10.0.0.1"\n', "HP220"),
        ("deny 403 when client exists\n", "HP220"),
        ('deny 403 when client matches "^10"\n', "HP220"),
        ('deny 403 when client in ["10.0.0.0/8"] ignoring case\n', "HP213"),
        ('deny 403 when client in ["10.0.0.0/33"]\n', "HP221"),
        ('deny 403 when client in ["10.0.0.0/8 "]\n', "HP221"),
        ('deny 403 when client in ["example.com"]\n', "HP221"),
        ('deny 403 when client in ["fe80::/10%eth0"]\n', "HP221"),
        ('deny 403 when client in ["10.1.2.3/8"]\n', "HP222"),
        ('deny 403 when cookie "a b" exists\n', "HP201"),
        ('deny 403 when query "" exists\n', "HP201"),
        ('deny 403 when cookie a == "x;y"\n', "HP210"),
    ],
)
def test_checker_refuses_what_cannot_mean_anything(text: str, code: str) -> None:
    assert [d.code for d in _checked(text).diagnostics] == [code]


def test_query_values_may_hold_any_character() -> None:
    policy = _policy('deny 403 when query q == "a\\nb" or query "a b" exists\n')
    assert evaluate(policy, _request("/?q=a%0Ab")).status == 403
    assert evaluate(policy, _request("/?a+b")).status == 403


# -- named lists --------------------------------------------------------------------


def test_a_named_list_means_its_values(tmp_path: Path) -> None:
    (tmp_path / "tenants.txt").write_text("# who may call\nacme\n\n  globex \n", encoding="utf-8")
    policy = _policy(
        'list admins = ["alice", "bob"]\n'
        'list tenants from "tenants.txt"\n'
        'list nets = ["10.0.0.0/8"]\n'
        "deny 403 unless header x-tenant in tenants\n"
        "deny 401 when header x-user not in admins ignoring case\n"
        "deny 402 unless client in nets\n",
        tmp_path,
    )
    assert [n.name for n in policy.lists] == ["admins", "tenants", "nets"]
    tenants = policy.rules[0].condition
    assert isinstance(tenants, ir.Compare) and tenants.list_name == "tenants"
    assert [v.value for v in tenants.values] == ["acme", "globex"]

    def request(tenant: str, user: str, client: str) -> Headers:
        return [
            *_request(client=client),
            (b"x-tenant", tenant.encode()),
            (b"x-user", user.encode()),
        ]

    assert evaluate(policy, request("globex", "ALICE", "10.0.0.1:1")).allowed
    assert evaluate(policy, request("initech", "alice", "10.0.0.1:1")).status == 403
    assert evaluate(policy, request("acme", "eve", "10.0.0.1:1")).status == 401
    assert evaluate(policy, request("acme", "bob", "11.0.0.1:1")).status == 402


def test_list_mistakes_are_located(tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text("alice\nbad\x01value\nalice\n", encoding="utf-8")
    checked = _checked(
        'list users from "users.txt"\n'
        'list users = ["x"]\n'
        'list spare = ["y"]\n'
        "deny 403 unless header x-user in usrs or header x-user in users\n",
        tmp_path,
    )
    found = [
        (d.code, d.span.line, d.source.path if d.source else None) for d in checked.diagnostics
    ]
    listed = str(tmp_path / "users.txt")
    assert found == [
        ("HP218", 2, None),
        ("HP217", 3, None),
        ("HP216", 4, None),
        ("HP202", 2, listed),
        ("HP223", 3, listed),
    ]
    unknown = next(d for d in checked.diagnostics if d.code == "HP216")
    assert unknown.help == "did you mean `users`?"
    rendered = render_text(checked.source, checked.diagnostics[3])
    assert rendered.startswith(f"{listed}:2:1: error[HP202]")
    assert "2 | bad\\u0001value" in rendered


def test_list_files_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "big.txt").write_bytes(b"x\n" * (1 << 20))
    (tmp_path / "dir").mkdir()
    checked = _checked(
        'list a from "missing.txt"\n'
        'list b from "/etc/hostname"\n'
        'list c from "latin1.txt"\n'
        'list d from "big.txt"\n'
        'list e from "dir"\n'
        "deny 403 when header x in a or header x in b or header x in c or header x in d"
        " or header x in e\n",
        tmp_path,
    )
    messages = [(d.code, d.span.line, d.message) for d in checked.diagnostics]
    assert messages == [
        ("HP219", 1, "cannot read the list file `missing.txt`: No such file or directory"),
        ("HP219", 2, "the list file `/etc/hostname` is an absolute path"),
        ("HP219", 3, "the list file `latin1.txt` is not valid UTF-8 at line 1, column 4"),
        (
            "HP219",
            4,
            "cannot read the list file `big.txt`: it is longer than hdrpolicy's limit of "
            "1,048,576 bytes",
        ),
        ("HP219", 5, "cannot read the list file `dir`: not a regular file"),
    ]


def test_too_many_values_in_a_list(tmp_path: Path) -> None:
    (tmp_path / "many.txt").write_text("".join(f"v{i}\n" for i in range(10_001)))
    checked = _checked('list m from "many.txt"\ndeny 403 when header x in m\n', tmp_path)
    [limit] = checked.diagnostics
    assert limit.code == "HP105" and limit.span.line == 10_001 and limit.source is not None
