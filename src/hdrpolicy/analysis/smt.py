"""Witness requests: the analysis's chosen values as a request, made readable.

`build_request` turns chosen values back into a request the host would hand
the plug-in; `simplify` and `render_request` make it one a reviewer reads.
(Which values the plug-in can see of each subject is `semantics.domain`.)

Scope: requests that send each header at most once (one reading), as UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable

from hdrpolicy import semantics
from hdrpolicy.diagnostics import Span
from hdrpolicy.evaluate import Headers, normalize
from hdrpolicy.frontend import ir
from hdrpolicy.printer import policy_string
from hdrpolicy.semantics import PSEUDO_ORDER


def build_request(values: list[tuple[ir.Subject, str | None]]) -> Headers:
    """The request in which each subject has the value given (None: a missing header)."""
    headers: Headers = []
    found: dict[ir.SubjectKind, str] = {}
    extra: Headers = []
    for subject, text in values:
        if text is None:
            continue
        if subject.is_pseudo:
            found[subject.kind] = text
        else:
            extra.append((subject.host_name.encode(), text.encode()))
    for kind in PSEUDO_ORDER:
        plain = semantics.subject(kind).plain
        assert plain is not None, kind
        text = found.get(kind, plain)
        subject = ir.Subject(kind=kind, span=_NO_SPAN)
        raw = text.encode()
        if normalize(subject, raw) != raw:
            raw += b":443"
        headers.append((subject.host_name.encode(), raw))
    return headers + extra


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
    reviewer reads `GET /` and only the headers that matter, with real
    methods and non-empty values.  Each step is kept only if `keep` (the
    evaluator-backed check) still holds.
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
    for i, (name, value) in enumerate(current):
        if name not in PLAIN_REQUEST and value == b"":
            attempt(i, READABLE_VALUE)
    return current


def render_request(headers: Headers) -> str:
    """A witness as a reader wants it: `GET /path (host example.com; x-role: "admin")`."""
    d = dict(headers[:3])
    method, path, host = (_shown(d[k]) for k in (b":method", b":path", b":authority"))
    rest = [f"{k.decode()}: {policy_string(v.decode())}" for k, v in headers[3:]]
    return f"{method} {path} (host {host}; {', '.join(rest) if rest else 'no headers'})"


def _shown(value: bytes) -> str:
    """Printable ASCII without spaces as it is; anything else quoted and escaped."""
    text = value.decode()
    if text and all(0x21 <= ord(c) <= 0x7E for c in text) and '"' not in text:
        return text
    return policy_string(text)


_NO_SPAN = Span(line=1, column=1, end_line=1, end_column=1, start=0, end=0)
