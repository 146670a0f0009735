"""Policies for z3: the regex translation, the request domain and witness requests.

`translate_regex` turns a Go/RE2 pattern into a z3 regex (or None: outside
the supported subset, so the caller says "unknown", never guesses);
`domain_regexes` says which values the plug-in can see of each subject.
`atoms` reads both into its own regular-language terms; `build_request`
turns chosen values back into a request the host would hand the plug-in.

Scope: requests that send each header at most once (one reading), as UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import z3

from hdrpolicy import ir
from hdrpolicy.diagnostics import Span
from hdrpolicy.evaluate import NEVER_ENCODED, Headers, normalize

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


def simplify(request: Headers, keep: Callable[[Headers], bool]) -> Headers:
    """A shorter witness showing the same thing: `keep` must hold for the result.

    The solver's requests name every subject with its smallest values; a
    reviewer reads `GET /` and only the headers that matter.  Each step is
    kept only if `keep` (the evaluator-backed check) still holds.
    """
    current = list(request)
    for i, (name, value) in enumerate(current):
        plain = PLAIN_REQUEST.get(name)
        if plain is not None and value != plain:
            candidate = [*current[:i], (name, plain), *current[i + 1 :]]
            if keep(candidate):
                current = candidate
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
    return current


def render_request(headers: Headers) -> str:
    """A witness as a reader wants it: `GET /path` on host, then the headers."""
    d = dict(headers[:3])
    line = f"{d[b':method'].decode()} {d[b':path'].decode()} (host {d[b':authority'].decode()!r})"
    rest = [f"{k.decode()}: {v.decode()!r}" for k, v in headers[3:]]
    return line + ("; " + ", ".join(rest) if rest else "; no other headers")


# -- regular expressions --------------------------------------------------------


class _Unsupported(Exception):
    """Raised inside the regex translator; never escapes `translate_regex`."""


_PERL = {
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A), (0x5F, 0x5F)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
}
_SIMPLE_ESC = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
# RE2's simple case folding for ASCII letters includes two non-ASCII characters.
_FOLD_EXTRA = {"k": ["\u212a"], "s": ["\u017f"]}


def translate_regex(pattern: str) -> z3.ReRef | None:
    """A Go/RE2 pattern as a z3 regex of the *search* (unanchored) language, or None.

    Supported: literals, escapes, `.`, classes (ranges, negation, `\\d\\w\\s`),
    groups, alternation, `* + ? {m} {m,} {m,n}` (lazy or not: same language),
    `^`/`$`/`\\A`/`\\z` at the ends of top-level alternatives, and a leading
    `(?i)`.  Anything else is None: the caller says "unknown", never guesses.
    """
    if _nesting(pattern) > _MAX_NESTING:
        return None
    try:
        regex = _RegexParser(pattern).search_language()
    except (_Unsupported, IndexError, ValueError):
        return None
    return regex if _depth_at_most(regex, _MAX_TERM_DEPTH) else None


# The translator and `regular.Algebra.from_z3` recurse: deeper patterns (Go takes
# groups nested 999 deep, alternations of thousands) are "unknown" to the analysis.
_MAX_NESTING = 100
_MAX_TERM_DEPTH = 250


def _nesting(pattern: str) -> int:
    """How deep `(` nests (an escaped or bracketed `(` may count: then it only overestimates)."""
    depth = deepest = 0
    escaped = False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def _depth_at_most(term: z3.ExprRef, limit: int) -> bool:
    """Is the z3 term at most `limit` deep?  (Iterative: terms can be thousands deep.)"""
    seen: dict[int, int] = {}
    stack = [(term, 1)]
    while stack:
        node, level = stack.pop()
        if level > limit:
            return False
        if seen.get(node.get_id(), 0) >= level:
            continue
        seen[node.get_id()] = level
        stack.extend((child, level + 1) for child in node.children())
    return True


class _RegexParser:
    def __init__(self, pattern: str) -> None:
        self.fold = False
        if pattern.startswith("(?i)"):
            self.fold, pattern = True, pattern[4:]
        self.s = pattern
        self.i = 0

    def peek(self) -> str | None:
        return self.s[self.i] if self.i < len(self.s) else None

    def search_language(self) -> z3.ReRef:
        alternatives = []
        while True:
            start_anchor = self._anchor(("^", "\\A"))
            body = self.sequence()
            end_anchor = self._anchor(("$", "\\z"))
            left = EMPTY_RE if start_anchor else ANY
            right = EMPTY_RE if end_anchor else ANY
            alternatives.append(z3.Concat(left, body, right))
            if self.peek() == "|":
                self.i += 1
                continue
            if self.peek() is not None:
                raise _Unsupported(self.s[self.i :])
            break
        return alternatives[0] if len(alternatives) == 1 else z3.Union(*alternatives)

    def _anchor(self, spellings: tuple[str, ...]) -> bool:
        for sp in spellings:
            if self.s.startswith(sp, self.i):
                self.i += len(sp)
                return True
        return False

    def alternation(self) -> z3.ReRef:
        parts = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            parts.append(self.sequence())
        return parts[0] if len(parts) == 1 else z3.Union(*parts)

    def sequence(self) -> z3.ReRef:
        items: list[z3.ReRef] = []
        while self.peek() not in (None, "|", ")"):
            if self.peek() == "$" or self.s.startswith("\\z", self.i):
                # Only an anchor at the very end of an alternative is supported.
                rest = self.s[self.i + (1 if self.peek() == "$" else 2) :]
                if rest == "" or rest.startswith("|"):
                    break
                raise _Unsupported("anchor")
            items.append(self.repeat(self.atom()))
        if not items:
            return EMPTY_RE
        return items[0] if len(items) == 1 else z3.Concat(*items)

    def repeat(self, re_: z3.ReRef) -> z3.ReRef:
        while True:
            c = self.peek()
            if c == "*":
                re_, self.i = z3.Star(re_), self.i + 1
            elif c == "+":
                re_, self.i = z3.Plus(re_), self.i + 1
            elif c == "?":
                re_, self.i = z3.Option(re_), self.i + 1
            elif c == "{" and (m := re.match(r"\{(\d+)(,(\d*))?\}", self.s[self.i :])):
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
                self.i += m.end()
                if hi is None:
                    re_ = z3.Concat(z3.Loop(re_, lo, lo), z3.Star(re_)) if lo else z3.Star(re_)
                else:
                    re_ = z3.Loop(re_, lo, hi) if hi else EMPTY_RE
            else:
                return re_
            if self.peek() == "?":  # lazy: the same language
                self.i += 1
            if self.peek() in ("*", "+", "?"):
                raise _Unsupported("double repetition")

    def atom(self) -> z3.ReRef:
        c = self.s[self.i]
        if c == "(":
            if self.s.startswith("(?:", self.i):
                self.i += 3
            elif self.s.startswith("(?", self.i):
                raise _Unsupported("flags or named group")
            else:
                self.i += 1
            inner = self.alternation()
            if self.peek() != ")":
                raise _Unsupported("unbalanced")
            self.i += 1
            return inner
        if c == "[":
            return self.char_class()
        if c == ".":
            self.i += 1
            return z3.Intersect(ANY_CHAR, z3.Complement(lit_re("\n")))
        if c in "^$":
            raise _Unsupported("anchor")
        if c == "\\":
            ranges = self.escape()
            return self._ranges_re(ranges)
        if c in "*+?{":
            if c == "{" and not re.match(r"\{(\d+)(,(\d*))?\}", self.s[self.i :]):
                self.i += 1
                return self._char("{")
            raise _Unsupported("repetition without operand")
        self.i += 1
        return self._char(c)

    def escape(self) -> list[tuple[int, int]]:
        c = self.s[self.i + 1]
        self.i += 2
        if c in _PERL:
            return _PERL[c]
        if c in "DWS":
            return _negate(_PERL[c.lower()])
        if c in _SIMPLE_ESC:
            return [(ord(_SIMPLE_ESC[c]),) * 2]
        if c == "x":
            m = re.match(r"\{([0-9A-Fa-f]{1,6})\}|([0-9A-Fa-f]{2})", self.s[self.i :])
            if not m:
                raise _Unsupported("\\x")
            self.i += m.end()
            code = int(m.group(1) or m.group(2), 16)
            return [(code, code)]
        if not c.isalnum() and c.isascii():
            return [(ord(c), ord(c))]
        raise _Unsupported(f"\\{c}")

    def char_class(self) -> z3.ReRef:
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.s[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if self.s.startswith("[:", self.i):
                raise _Unsupported("POSIX class")
            if c == "\\":
                got = self.escape()
                if len(got) != 1 or got[0][0] != got[0][1]:
                    ranges.extend(got)
                    continue
                lo = got[0][0]
            else:
                lo = ord(c)
                self.i += 1
            if self.peek() == "-" and self.s[self.i + 1] != "]":
                self.i += 1
                if self.peek() == "\\":
                    got = self.escape()
                    if len(got) != 1 or got[0][0] != got[0][1]:
                        raise _Unsupported("class range to a class")
                    hi = got[0][0]
                else:
                    hi = ord(self.s[self.i])
                    self.i += 1
                if hi < lo:
                    raise _Unsupported("bad range")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        if self.fold:
            ranges = _fold_ranges(ranges)
        if negate:
            ranges = _negate(ranges)
        return self._ranges_re(ranges, folded=True)

    def _char(self, c: str) -> z3.ReRef:
        return self._ranges_re([(ord(c), ord(c))])

    def _ranges_re(self, ranges: list[tuple[int, int]], folded: bool = False) -> z3.ReRef:
        if self.fold and not folded:
            ranges = _fold_ranges(ranges)
        if not ranges:
            return z3.Empty(z3.ReSort(z3.StringSort()))
        parts = [char_range(lo, hi) for lo, hi in ranges]
        return parts[0] if len(parts) == 1 else z3.Union(*parts)


def _negate(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= MAX_CHAR:
        out.append((nxt, MAX_CHAR))
    return out


def _fold_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Add RE2's case-fold partners; only ASCII letters (and their two extras) are known."""
    out = list(ranges)
    for lo, hi in ranges:
        for code in range(lo, min(hi, 0x7F) + 1):
            ch = chr(code)
            if ch.isalpha():
                for partner in [ch.lower(), ch.upper(), *_FOLD_EXTRA.get(ch.lower(), [])]:
                    out.append((ord(partner), ord(partner)))
        if hi > 0x7F and any(
            lo <= c <= hi for c in (0x17F, 0x212A)
        ):  # a fold partner of k or s: add the ASCII letters
            out.extend([(ord("k"), ord("k")), (ord("K"), ord("K"))] if lo <= 0x212A <= hi else [])
            out.extend([(ord("s"), ord("s")), (ord("S"), ord("S"))] if lo <= 0x17F <= hi else [])
        if hi > 0x7F and _has_cased_non_ascii(max(lo, 0x80), hi):
            raise _Unsupported("case folding beyond ASCII")
    return out


def _has_cased_non_ascii(lo: int, hi: int) -> bool:
    if hi - lo > 0x1000:
        return True  # a wide range surely holds cased letters: say unknown
    return any(
        chr(c).lower() != chr(c) or chr(c).upper() != chr(c)
        for c in range(lo, hi + 1)
        if c not in (0x17F, 0x212A)
    )


_NO_SPAN = Span(line=1, column=1, end_line=1, end_column=1, start=0, end=0)
