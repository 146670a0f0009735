"""Witness requests: the analysis's chosen values as a request, made readable.

`build_request` turns chosen values back into a request the host would hand
the plug-in; `simplify` and `render_request` make it one a reviewer reads.
(Which values the plug-in can see of each subject is `semantics.domain`.)

A value the analysis chose for any reading (`semantics.reading_domain`) is
sent so that the request has it as one of its readings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import assert_never
from urllib.parse import quote_plus

from hdrpolicy import semantics
from hdrpolicy.diagnostics import Span
from hdrpolicy.evaluate import Headers, normalize
from hdrpolicy.frontend import ir
from hdrpolicy.printer import policy_string
from hdrpolicy.semantics import PSEUDO_ORDER

_PATH = b":path"
_CLIENT = ir.CLIENT_ADDRESS.encode()
_COOKIE = b"cookie"


def build_request(values: list[tuple[ir.Subject, str | None]]) -> Headers:
    """The request in which each subject has the value given (None: a missing header).

    A query parameter goes into `:path`'s query string, form-encoded, after
    the path (or `/`); cookies into one `cookie` header (`a=v; b=w`); the
    client address into the pair the host passes it as.  Each reads back, by
    `evaluate`, as exactly the value given; a value only a request with several
    readings has (a list, a cookie's value not trimmed, values joined) as one of
    its readings.
    """
    found: dict[ir.SubjectKind, str] = {}
    params: list[str] = []
    crumbs: list[str] = []
    client: str | None = None
    extra: Headers = []
    for subject, text in values:
        if text is None:
            continue
        match subject.kind:
            case ir.SubjectKind.METHOD | ir.SubjectKind.PATH | ir.SubjectKind.HOST:
                found[subject.kind] = text
            case ir.SubjectKind.QUERY:
                assert subject.name is not None
                params.append(f"{quote_plus(subject.name)}={quote_plus(text)}")
            case ir.SubjectKind.COOKIE:
                if text != text.strip(" \t"):
                    text = f'"{text}"'  # read also without its quotes: as given
                crumbs.append(f"{subject.name}={text}")
            case ir.SubjectKind.CLIENT:
                client = text
            case ir.SubjectKind.HEADER:
                extra += _joined(subject, text)
            case _:
                assert_never(subject.kind)
    headers: Headers = []
    for kind in PSEUDO_ORDER:
        plain = semantics.subject(kind).plain
        assert plain is not None, kind
        text = found.get(kind, plain)
        subject = ir.Subject(kind=kind, span=_NO_SPAN)
        raw = text.encode()
        if normalize(subject, raw) != raw:
            raw += b":443"
        if kind is ir.SubjectKind.PATH and params:
            raw += b"?" + "&".join(params).encode()
        headers.append((subject.host_name.encode(), raw))
    if client is not None:
        headers.append((_CLIENT, client.encode()))
    if crumbs:
        headers.append((_COOKIE, "; ".join(crumbs).encode()))
    return headers + extra


def _joined(subject: ir.Subject, text: str) -> Headers:
    """A header with this value: sent once, or, for a value ending with the joiner
    (`a, `: values joined, the last empty), as its values (`a`, then ``)."""
    name = subject.host_name.encode()
    glue = semantics.joiner(subject)
    empty = 0
    while glue and text.endswith(glue):
        text, empty = text[: -len(glue)], empty + 1
    return [(name, text.encode())] + [(name, b"")] * empty


def response_key(response: ir.Response | None) -> tuple[object, ...]:
    """What a client sees of a decision: allow, or status, body and headers."""
    if response is None:
        return ("allow",)
    return ("deny", response.status, response.body_text, tuple(response.sent_headers))


# What a witness's method, path and host become when the finding does not need them.
def _plain_request() -> dict[bytes, bytes]:
    out = {}
    for kind in PSEUDO_ORDER:
        meaning = semantics.subject(kind)
        assert meaning.host_name is not None and meaning.plain is not None, kind
        out[meaning.host_name.encode()] = meaning.plain.encode()
    return out


PLAIN_REQUEST = _plain_request()
# Methods a reader recognises, tried in this order when the finding needs another.
READABLE_METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS")
# A header value tried in place of an empty one.
READABLE_VALUE = b"1"


def simplify(request: Headers, keep: Callable[[Headers], bool]) -> Headers:
    """A shorter, more readable witness showing the same thing: `keep` must hold for it.

    The solver's requests name every subject with its shortest values; a
    reviewer reads `GET /` and only the headers (query parameters, cookies)
    that matter, with real methods and non-empty values.  Each step is kept
    only if `keep` (the evaluator-backed check) still holds.
    """
    current = list(request)

    def attempt(i: int, value: bytes) -> bool:
        nonlocal current
        candidate = [*current[:i], (current[i][0], value), *current[i + 1 :]]
        if keep(candidate):
            current = candidate
            return True
        return False

    for i, (name, value) in enumerate(request):
        if name == b":method":
            for method in READABLE_METHODS:
                if method == value or attempt(i, method):
                    break
        elif name == _PATH:
            path, mark, query = value.partition(b"?")
            if path != PLAIN_REQUEST[name]:
                attempt(i, PLAIN_REQUEST[name] + mark + query)
        elif name in PLAIN_REQUEST and value != PLAIN_REQUEST[name]:
            attempt(i, PLAIN_REQUEST[name])
    i = 0
    while i < len(current):
        if current[i][0] in PLAIN_REQUEST:
            i += 1
            continue
        candidate = current[:i] + current[i + 1 :]
        if keep(candidate):
            current = candidate
        else:
            i += 1
    for i, (name, _) in enumerate(current):
        split = _PARTS.get(name)
        if split is None or split(current[i][1]) is None:
            continue
        for step in (_drop_part, _readable_part):
            n = 0
            while (parts := split(current[i][1])) is not None and n < len(parts[1]):
                changed = step(parts, n)
                if changed is None or not attempt(i, changed):
                    n += 1
    for i, (name, value) in enumerate(current):
        # An empty client address is not an IP address: "1" would be none either.
        if name not in PLAIN_REQUEST and name != _CLIENT and value == b"":
            attempt(i, READABLE_VALUE)
    return current


# A value made of parts (`:path`'s query parameters, a cookie header's cookies):
# what comes before them, the parts, and how they are joined.
_Parts = tuple[bytes, list[bytes], bytes]


def _query_parts(value: bytes) -> _Parts | None:
    path, mark, query = value.partition(b"?")
    return (path + mark, query.split(b"&"), b"&") if mark else None


def _cookie_parts(value: bytes) -> _Parts | None:
    return b"", value.split(b"; "), b"; "


_PARTS: dict[bytes, Callable[[bytes], _Parts | None]] = {
    _PATH: _query_parts,
    _COOKIE: _cookie_parts,
}


def _drop_part(parts: _Parts, n: int) -> bytes | None:
    """The value without part n (None: it is the only part, which removing the header does)."""
    before, items, joiner = parts
    if len(items) == 1:
        return before.rstrip(b"?") if before.endswith(b"?") else None
    return before + joiner.join(items[:n] + items[n + 1 :])


def _readable_part(parts: _Parts, n: int) -> bytes | None:
    """Part n with a readable value in place of an empty one (`debug=` → `debug=1`)."""
    before, items, joiner = parts
    if not items[n].endswith(b"="):
        return None
    return before + joiner.join([*items[:n], items[n] + READABLE_VALUE, *items[n + 1 :]])


def render_request(headers: Headers) -> str:
    """A witness as a reader wants it:
    `GET /path?q=1 (host example.com; client 10.0.0.1; x-role: "admin")`."""
    d: dict[bytes, bytes] = {}
    for k, v in headers:
        d.setdefault(k, v)
    method, path, host = (_shown(d[k]) for k in (b":method", _PATH, b":authority"))
    shown = [f"host {host}"]
    if _CLIENT in d:
        shown.append(f"client {_address(d[_CLIENT])}")
    rest = [
        f"{k.decode()}: {policy_string(v.decode())}"
        for k, v in headers
        if k not in PLAIN_REQUEST and k != _CLIENT
    ]
    shown.append(", ".join(rest) if rest else "no headers")
    return f"{method} {path} ({'; '.join(shown)})"


def _address(value: bytes) -> str:
    """A client address as people write it (`2001:db8::1`); anything else quoted."""
    try:
        return str(ipaddress.ip_address(value.decode()))
    except ValueError:
        return policy_string(value.decode())


def _shown(value: bytes) -> str:
    """Printable ASCII without spaces as it is; anything else quoted and escaped."""
    text = value.decode()
    if text and all(0x21 <= ord(c) <= 0x7E for c in text) and '"' not in text:
        return text
    return policy_string(text)


_NO_SPAN = Span(line=1, column=1, end_line=1, end_column=1, start=0, end=0)
