"""Policies for z3: the regex translation, the request domain and witness requests.

`domain_regexes` says which values the plug-in can see of each subject
(`atoms` reads them into its own regular-language terms; patterns go through
`resyntax` and `regular` directly); `build_request` turns chosen values back
into a request the host would hand the plug-in.

Scope: requests that send each header at most once (one reading), as UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable

import z3

from hdrpolicy import ir
from hdrpolicy.diagnostics import Span
from hdrpolicy.evaluate import NEVER_ENCODED, Headers, normalize
from hdrpolicy.printer import policy_string

# Characters a (trimmed) header value cannot hold: controls but HTAB, and DEL.
_FORBIDDEN = [(0x00, 0x08), (0x0A, 0x1F), (0x7F, 0x7F), (0xD800, 0xDFFF)]
# z3's largest character; values beyond it are outside the model.
MAX_CHAR = 0x2FFFF
_TCHAR = "!#$%&'*+-.^_`|~"


def string_val(text: str) -> z3.SeqRef:
    """A z3 string literal; every non-alphanumeric is escaped (z3 parses `\\u{…}`)."""
    return z3.StringVal(
        "".join(c if c.isascii() and c.isalnum() else f"\\u{{{ord(c):x}}}" for c in text)
    )


def char_range(lo: int, hi: int) -> z3.ReRef:
    return z3.Range(string_val(chr(lo)), string_val(chr(hi)))


def lit_re(text: str) -> z3.ReRef:
    return z3.Re(string_val(text))


ANY_CHAR = z3.AllChar(z3.ReSort(z3.StringSort()))
ANY = z3.Star(ANY_CHAR)
EMPTY_RE = z3.Re(z3.StringVal(""))
_SPACE = z3.Union(lit_re(" "), lit_re("\t"))


def _no_forbidden() -> z3.ReRef:
    bad = z3.Union(*[char_range(lo, hi) for lo, hi in _FORBIDDEN])
    return z3.Star(z3.Intersect(ANY_CHAR, z3.Complement(bad)))


def _trimmed() -> z3.ReRef:
    """Empty, or neither starting nor ending with a space or tab."""
    edge = z3.Intersect(ANY_CHAR, z3.Complement(_SPACE))
    return z3.Union(EMPTY_RE, edge, z3.Concat(edge, ANY, edge))


def domain_regexes(kind: ir.SubjectKind, list_delimiter: str | None = None) -> list[z3.ReRef]:
    """The values the plug-in judges of a subject, as regexes that must all match.

    Every value is trimmed and free of control characters (others are refused);
    method is an HTTP token, path is in normal form (others are refused), host
    is lower case.  A value that may be a list (`list_delimiter`) is modelled
    without the delimiter: with it, a request has several readings, which the
    analysis does not model.  (method, path and host are always present; a
    header may be missing.)
    """
    out = [z3.Intersect(_no_forbidden(), _trimmed())]
    if list_delimiter is not None:
        out.append(z3.Star(z3.Intersect(ANY_CHAR, z3.Complement(lit_re(list_delimiter)))))
    if kind is ir.SubjectKind.METHOD:
        tchar = z3.Union(
            char_range(ord("0"), ord("9")),
            char_range(ord("a"), ord("z")),
            char_range(ord("A"), ord("Z")),
            *[lit_re(c) for c in _TCHAR],
        )
        out.append(z3.Plus(tchar))
    elif kind is ir.SubjectKind.PATH:
        out.append(_normal_path())
    elif kind is ir.SubjectKind.HOST:
        upper = char_range(ord("A"), ord("Z"))
        out.append(z3.Star(z3.Intersect(ANY_CHAR, z3.Complement(upper))))
    return out


def _normal_path() -> z3.ReRef:
    """`evaluate.path_in_normal_form` as a regex (the query is already cut off)."""
    hex_digit = z3.Union(char_range(ord("0"), ord("9")), char_range(ord("A"), ord("F")))
    never = z3.Union(*[lit_re(f"%{c:02X}") for c in sorted(NEVER_ENCODED)])
    escape = z3.Intersect(z3.Concat(lit_re("%"), hex_digit, hex_digit), z3.Complement(never))
    special = z3.Union(*[lit_re(c) for c in "?#\\%"])
    raw = z3.Intersect(ANY_CHAR, z3.Complement(special))
    shape = z3.Concat(lit_re("/"), z3.Star(z3.Union(raw, escape)))
    segment_end = z3.Union(EMPTY_RE, z3.Concat(lit_re("/"), ANY), z3.Concat(lit_re(";"), ANY))
    dots = z3.Concat(ANY, z3.Union(lit_re("/."), lit_re("/..")), segment_end)
    double = z3.Concat(ANY, lit_re("//"), ANY)
    return z3.Intersect(shape, z3.Complement(dots), z3.Complement(double))


def build_request(values: list[tuple[ir.Subject, str | None]]) -> Headers:
    """The request in which each subject has the value given (None: a missing header)."""
    headers: Headers = []
    pseudo = {
        ir.SubjectKind.METHOD: "GET",
        ir.SubjectKind.PATH: "/",
        ir.SubjectKind.HOST: "example.com",
    }
    found: dict[ir.SubjectKind, str] = {}
    extra: Headers = []
    for subject, text in values:
        if text is None:
            continue
        if subject.kind is ir.SubjectKind.HEADER:
            extra.append((subject.host_name.encode(), text.encode()))
        else:
            found[subject.kind] = text
    for kind in (ir.SubjectKind.METHOD, ir.SubjectKind.PATH, ir.SubjectKind.HOST):
        text = found.get(kind, pseudo[kind])
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
PLAIN_REQUEST = {b":method": b"GET", b":path": b"/", b":authority": b"example.com"}
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
