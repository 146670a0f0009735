"""What each operator and subject means: the one table every stage reads.

The evaluator, the emitter, the analysis (its languages and domains), the
checker and the formatter each need part of an operator's or a subject's
meaning; they all take it from here, so a stage cannot drift from the
others.  A table is built by a function that `match`es every member of its
enum and ends in `assert_never`: a new operator or subject kind is a type
error until it has an entry (and `tests/test_semantics.py` checks the rest:
the Go helpers the template defines, the README's checklist).
"""

from __future__ import annotations

import codecs
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, assert_never, overload

from hdrpolicy.analysis import resyntax
from hdrpolicy.codec import COMMA, JOINED_HEADERS
from hdrpolicy.frontend import ir
from hdrpolicy.printer import policy_string

if TYPE_CHECKING:
    import re2

    from hdrpolicy.analysis.regular import Algebra, Re

# -- ASCII case ---------------------------------------------------------------------

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()
_FOLD_TEXT = str.maketrans(_UPPER, _LOWER)
_FOLD_BYTES = bytes.maketrans(_UPPER.encode(), _LOWER.encode())
# Each lower-case ASCII letter and the upper-case one that folds to it.
_UNFOLD = dict(zip(_LOWER, _UPPER, strict=True))


@overload
def fold(value: bytes) -> bytes: ...
@overload
def fold(value: str) -> str: ...
def fold(value: bytes | str) -> bytes | str:
    """Lower-case A-Z only: the meaning of `ignoring case`, of a host's case, and of
    header names (the plug-in's `lowerASCII`; the template's `equalFoldASCII`)."""
    if isinstance(value, bytes):
        return value.translate(_FOLD_BYTES)
    return value.translate(_FOLD_TEXT)


# -- guards ----------------------------------------------------------------------


def negates(guard: ir.Guard) -> bool:
    """Whether the guard inverts its condition: a rule fires `when` it holds,
    `unless` it does not."""
    match guard:
        case ir.Guard.WHEN:
            return False
        case ir.Guard.UNLESS:
            return True
        case _:
            assert_never(guard)


def fires(guard: ir.Guard, condition: bool) -> bool:
    """Whether a rule with this guard fires when its condition has this value."""
    return condition != negates(guard)


# -- operators -------------------------------------------------------------------


class Literals(Enum):
    """How many literals an operator takes."""

    NONE = "none"  # `exists`: the subject's presence only
    ONE = "one"
    LIST = "list"  # `in [..]`: any of them


@dataclass(frozen=True)
class OperatorMeaning:
    """One operator.

    A *positive* operator tests a present value against each literal (`holds`,
    on the value and the literal as bytes, both folded when `ignoring case`
    applies) and is true if any literal holds; it is false on a missing value
    (`exists` is the exception: it only tests presence).  A *negated*
    operator is the exact negation of another (`negation_of`) and has no
    meaning of its own.  `atom` is the operator each literal is tested with
    (`in` tests `==` per literal); the analysis's atoms use it.
    """

    op: ir.Op
    text: str
    literals: Literals
    negation_of: ir.Op | None = None
    # Whether `ignoring case` may follow it.
    ignore_case: bool = False
    # Its literal is a Go regular expression (checked by Go's syntax, not as a value).
    pattern: bool = False
    atom: ir.Op | None = None
    holds: Callable[[bytes, bytes], bool] | None = None
    # Where the literal must sit in the value (start, end): what HP210 reads.
    anchored: tuple[bool, bool] = (False, False)
    # The template's helpers: `r.<go_helper>(field, literal)`, and with `ignoring case`.
    go_helper: str | None = None
    go_fold_helper: str | None = None
    # The analysis's regular language of one atom: (algebra, literal, folded) → term;
    # raises `regular.Unsupported` for what it cannot translate.
    language: Callable[[Algebra, str, bool], Re] | None = None
    # The subject kind whose own meaning this is (`client in`: address ranges), if any.
    kind: ir.SubjectKind | None = None
    # Its literals are address ranges (CIDRs), checked as such.
    networks: bool = False

    @property
    def positive(self) -> OperatorMeaning:
        """The operator this one negates, or itself."""
        return self if self.negation_of is None else operator(self.negation_of, self.kind)

    @property
    def whole(self) -> bool:
        """Its literal must be the whole value (`==`, `in`, and their negations)."""
        return self.positive.anchored == (True, True)


@cache
def _regex(pattern: str) -> re2._Regexp:
    import re2  # the evaluator's RE2, loaded only when a pattern is evaluated

    options = re2.Options()
    options.log_errors = False
    # Go's `regexp` takes patterns past RE2's default 8 MB (`\\pL{1000}`): so must we.
    options.max_mem = 1 << 31
    return re2.compile(pattern, options)


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Decode like Go's `range` over a string: each invalid byte is one U+FFFD."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("hdrpolicy-go", _go_replace)


def _search(value: bytes, pattern: bytes) -> bool:
    """Go's `regexp.MatchString`: an unanchored search over the value read as UTF-8."""
    text = value.decode("utf-8", "hdrpolicy-go")
    source = pattern.decode()
    if "\\B" in source:
        # RE2 tries `\B` between the bytes of a multi-byte character as well; Go's
        # `regexp` only between characters.  Stepping over whole characters to where
        # the match starts gives Go's answer.
        return _regex(rf"\A(?s:.)*?(?:{source})").match(text) is not None
    return _regex(source).search(text) is not None


def _literal(alg: Algebra, text: str, folded: bool) -> Re:
    """The one-string language; folded, each character also matches what folds to it."""
    parts = []
    for ch in text:
        codes = {ord(ch)}
        if folded and ch in _UNFOLD:
            codes.add(ord(_UNFOLD[ch]))
        parts.append(alg.chars((c, c) for c in sorted(codes)))
    return alg.cat(*parts)


def _pattern_language(alg: Algebra, pattern: str, folded: bool) -> Re:
    from hdrpolicy.analysis.regular import Unsupported

    node = resyntax.parse(pattern)
    if isinstance(node, resyntax.Untranslatable):
        raise Unsupported(node.construct)
    return alg.search(node)


def network(literal: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR literal's address range (host bits dropped; the checker warns of them).
    Raises ValueError for what is not a CIDR or an address."""
    return _network(literal)


@cache
def _network(literal: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if "%" in literal:
        raise ValueError("an address with a zone")
    return ipaddress.ip_network(literal, strict=False)


def _in_network(value: bytes, literal: bytes) -> bool:
    """Whether a client address (in `client_address`'s form; b"": none) is in the range."""
    if not value:
        return False
    address = ipaddress.ip_address(value.decode("ascii"))
    return address in network(literal.decode())


def _network_language(alg: Algebra, literal: str, folded: bool) -> Re:
    """The client addresses in a range, as `client_address` writes them."""
    from hdrpolicy.analysis.addresses import network_language

    return network_language(alg, network(literal))


def _subject_operator(op: ir.Op, kind: ir.SubjectKind) -> OperatorMeaning | None:
    """An operator whose meaning is the subject's own (None: the operator's)."""
    if kind is not ir.SubjectKind.CLIENT:
        return None
    match op:
        case ir.Op.IN:
            return OperatorMeaning(
                op,
                op.value,
                Literals.LIST,
                atom=ir.Op.IN,
                holds=_in_network,
                go_helper="inNetworks",
                language=_network_language,
                kind=kind,
                networks=True,
            )
        case ir.Op.NOT_IN:
            return OperatorMeaning(
                op, op.value, Literals.LIST, negation_of=ir.Op.IN, kind=kind, networks=True
            )
        case _:
            return None


def _operator(op: ir.Op) -> OperatorMeaning:
    match op:
        case ir.Op.EQ:
            return OperatorMeaning(
                op,
                op.value,
                Literals.ONE,
                ignore_case=True,
                atom=ir.Op.EQ,
                holds=lambda value, lit: value == lit,
                anchored=(True, True),
                go_helper="equals",
                go_fold_helper="equalsFold",
                language=_literal,
            )
        case ir.Op.NE:
            return OperatorMeaning(
                op, op.value, Literals.ONE, negation_of=ir.Op.EQ, ignore_case=True
            )
        case ir.Op.IN:
            eq = operator(ir.Op.EQ)
            return OperatorMeaning(
                op,
                op.value,
                Literals.LIST,
                ignore_case=True,
                atom=ir.Op.EQ,
                holds=eq.holds,
                anchored=eq.anchored,
                go_helper=eq.go_helper,
                go_fold_helper=eq.go_fold_helper,
                language=eq.language,
            )
        case ir.Op.NOT_IN:
            return OperatorMeaning(
                op, op.value, Literals.LIST, negation_of=ir.Op.IN, ignore_case=True
            )
        case ir.Op.STARTS_WITH:
            return OperatorMeaning(
                op,
                op.value,
                Literals.ONE,
                ignore_case=True,
                atom=op,
                holds=lambda value, lit: value.startswith(lit),
                anchored=(True, False),
                go_helper="hasPrefix",
                go_fold_helper="hasPrefixFold",
                language=lambda alg, lit, folded: alg.cat(_literal(alg, lit, folded), alg.full),
            )
        case ir.Op.ENDS_WITH:
            return OperatorMeaning(
                op,
                op.value,
                Literals.ONE,
                ignore_case=True,
                atom=op,
                holds=lambda value, lit: value.endswith(lit),
                anchored=(False, True),
                go_helper="hasSuffix",
                go_fold_helper="hasSuffixFold",
                language=lambda alg, lit, folded: alg.cat(alg.full, _literal(alg, lit, folded)),
            )
        case ir.Op.CONTAINS:
            return OperatorMeaning(
                op,
                op.value,
                Literals.ONE,
                ignore_case=True,
                atom=op,
                holds=lambda value, lit: lit in value,
                go_helper="contains",
                go_fold_helper="containsFold",
                language=lambda alg, lit, folded: alg.cat(
                    alg.full, _literal(alg, lit, folded), alg.full
                ),
            )
        case ir.Op.MATCHES:
            return OperatorMeaning(
                op,
                op.value,
                Literals.ONE,
                pattern=True,
                atom=op,
                holds=_search,
                go_helper="matches",
                language=_pattern_language,
            )
        case ir.Op.EXISTS:
            return OperatorMeaning(op, op.value, Literals.NONE, go_helper="exists")
        case _:
            assert_never(op)


@cache
def operator(op: ir.Op, kind: ir.SubjectKind | None = None) -> OperatorMeaning:
    """The meaning of an operator (on a subject of this kind: some subjects give an
    operator their own meaning, as `client in` tests address ranges)."""
    if kind is not None and (own := _subject_operator(op, kind)) is not None:
        return own
    return _operator(op)


def comparison(cmp: ir.Compare) -> OperatorMeaning:
    """The meaning of a comparison's operator on its subject."""
    return operator(cmp.op, cmp.subject.kind)


def folds(cmp: ir.Compare) -> bool:
    """Whether a comparison ignores case (the checker refuses it where it does not apply)."""
    return cmp.ignore_case and comparison(cmp).positive.ignore_case


def holds(meaning: OperatorMeaning, literal: str, ignore_case: bool, value: bytes) -> bool:
    """A positive operator's test of one present value against one literal."""
    assert meaning.holds is not None, meaning.op
    lit = literal.encode()
    if ignore_case and meaning.ignore_case:
        value, lit = fold(value), fold(lit)
    return meaning.holds(value, lit)


# -- subjects ----------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectMeaning:
    """One kind of subject: how the plug-in reads it, and what values it can have.

    `normalize` turns the value the host passes into the one rules judge
    (the evaluator's `normalize`; the template's `normalize` does the same in
    Go, with one branch per kind whose `go_field` is set).  A *named* subject
    (`query NAME`, `cookie NAME`) is read out of the host's values by
    `extract` instead: every value the name has in one host value.  `domain`
    is the analysis's language of the values rules can see (each a condition
    the value meets: the trimmed value, the kind's own form).  `never` is
    HP210's rule: why a literal can never match the normalised value
    (message, help; none: it can).
    """

    kind: ir.SubjectKind
    # How the policy spells it (a header: `header NAME`).
    spelling: str
    # The pseudo-header the host passes it as (None: a header, by its own name).
    host_name: str | None
    # Header names that reach the plug-in as this subject, not as a header.
    aliases: tuple[str, ...]
    normalize: Callable[[bytes], bytes]
    domain: Callable[[Algebra], list[Re]]
    never: Callable[[str, OperatorMeaning, bool], list[tuple[str, str]]]
    # The template's model key of this kind's field, for its normalisation branch.
    go_field: str | None = None
    # A value (as the host passes it) not in this form is refused before any rule
    # runs, with `refusal` (status, body); the domain holds only values in it.
    in_normal_form: Callable[[bytes], bool] | None = None
    refusal: tuple[int, str] | None = None
    # What a witness request sends for it when a finding does not need it.
    plain: str | None = None
    # Read from a value the host passes once: only the first counts, never padded.
    single: bool = False
    # A named subject's values in one host value: (value, name) → its values, in order.
    extract: Callable[[bytes, bytes], list[bytes]] | None = None
    # How several values make one more reading (None: they do not).
    joiner: str | None = ", "
    # The operators it takes (None: all).
    operators: frozenset[ir.Op] | None = None
    # The values its readings can have, given how several values are joined (None:
    # `domain`'s, without a list delimiter); see `reading_domain`.
    readings: Callable[[Algebra, str | None], list[Re]] | None = None

    @property
    def pseudo(self) -> bool:
        """`:method`, `:path`, `:authority` or the client address: one value per request."""
        return self.single


OWS = b" \t"
# Characters a (trimmed) header value cannot hold: controls but HTAB, and DEL
# (Envoy refuses them), and surrogates (not UTF-8).
_FORBIDDEN = [(0x00, 0x08), (0x0A, 0x1F), (0x7F, 0x7F), (0xD800, 0xDFFF)]
_TCHAR = "!#$%&'*+-.^_`|~"
# RFC 3986 unreserved characters, and `/` and `\`: never percent-encoded in normal form.
NEVER_ENCODED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\\")


_HEX = b"0123456789ABCDEF"


def path_in_normal_form(value: bytes) -> bool:
    """Whether `:path` (up to `?`) is the one spelling of its resource a service resolves.

    It starts with `/`; has no `.` or `..` segment (nor `..;x`), no `//`, no
    `\\`, no `#`; and percent signs only as `%XX` with upper-case hex digits
    that do not encode an unreserved character, `/` or `\\`.
    """
    path = value.split(b"?", 1)[0]
    if not path.startswith(b"/") or b"//" in path or b"\\" in path or b"#" in path:
        return False
    for segment in path.split(b"/"):
        if segment.split(b";", 1)[0] in (b".", b".."):
            return False
    i = path.find(b"%")
    while i >= 0:
        digits = path[i + 1 : i + 3]
        if len(digits) < 2 or any(c not in _HEX for c in digits):
            return False
        if int(digits, 16) in NEVER_ENCODED:
            return False
        i = path.find(b"%", i + 3)
    return True


def _trim(value: bytes) -> bytes:
    return value.strip(OWS)


def _without_query(value: bytes) -> bytes:
    return _trim(value).split(b"?", 1)[0]


def _strip_port(host: bytes) -> bytes:
    i = host.rfind(b":")
    if i < 0 or b"]" in host[i:]:
        return host
    port = host[i + 1 :]
    return host[:i] if all(0x30 <= c <= 0x39 for c in port) else host


def _host(value: bytes) -> bytes:
    return fold(_strip_port(_trim(value)))


def query_well_formed(value: bytes) -> bool:
    """Whether every `%` in the query string (after the first `?`) starts `%XX`, XX hex."""
    query = _trim(value).partition(b"?")[2]
    i = query.find(b"%")
    while i >= 0:
        digits = query[i + 1 : i + 3]
        if len(digits) < 2 or any(c not in _ANY_HEX for c in digits):
            return False
        i = query.find(b"%", i + 3)
    return True


_ANY_HEX = b"0123456789ABCDEFabcdef"


def form_decode(text: bytes) -> bytes:
    """HTML form decoding: `+` is a space, `%XX` a byte (a `%` not so is kept)."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == 0x2B:
            out.append(0x20)
        elif c == 0x25 and len(text) >= i + 3 and all(d in _ANY_HEX for d in text[i + 1 : i + 3]):
            out.append(int(text[i + 1 : i + 3], 16))
            i += 2
        else:
            out.append(c)
        i += 1
    return bytes(out)


def query_values(value: bytes, name: bytes) -> list[bytes]:
    """Every value of the query parameter `name` in a `:path`, decoded, in order.

    The query string is what follows the first `?`; parameters are separated by
    `&` (empty ones skipped); a parameter's name is what comes before its first
    `=` (without `=`: the value is empty); names and values are form-decoded
    and names compared exactly, so `a%62=1` is a value of `ab`.
    """
    query = _trim(value).partition(b"?")[2]
    out = []
    for part in query.split(b"&"):
        if not part:
            continue
        key, _, val = part.partition(b"=")
        if form_decode(key) == name:
            out.append(form_decode(val))
    return out


def cookie_values(value: bytes, name: bytes) -> list[bytes]:
    """Every value of the cookie `name` in a `cookie` header value, in order.

    Cookies are separated by `;`; each is trimmed of spaces and tabs; its name
    is what comes before its first `=` (trimmed; without `=`, the whole cookie
    is the name and the value is empty), compared exactly; its value is
    trimmed.  A value in double quotes is read both as sent and without them
    (RFC 6265 allows the quotes; some services strip them, some do not).
    """
    out = []
    for crumb in value.split(b";"):
        key, _, val = crumb.strip(OWS).partition(b"=")
        if not crumb.strip(OWS) or key.strip(OWS) != name:
            continue
        val = val.strip(OWS)
        out.append(val)
        if len(val) >= 2 and val[:1] == val[-1:] == b'"':
            out.append(val[1:-1])
    return out


def client_address(value: bytes) -> bytes:
    """Envoy's `source.address` (`10.1.2.3:5000`, `[2001:db8::1]:5000`, or a bare
    address) as rules judge it: IPv4 dotted, IPv6 in full (eight groups of four
    lower-case hex digits), an IPv4-mapped IPv6 address as IPv4; b"" when it is
    not an IP address (a pipe, an address with a zone)."""
    text = _trim(value).decode("ascii", "replace")
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and _is_port(port[1:]))):
            return b""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _is_port(port):
            return b""
    else:
        host = text
    if "%" in host:
        return b""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return b""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped).encode()
        return address.exploded.encode()
    return str(address).encode()


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


def _allowed(alg: Algebra) -> Re:
    """Free of the characters Envoy refuses."""
    bad = alg.union(*[alg.chars([r]) for r in _FORBIDDEN])
    return alg.star(alg.inter(alg.any_char, alg.compl(bad)))


def _trimmed(alg: Algebra) -> Re:
    """No space or tab at either end."""
    edge = alg.inter(alg.any_char, alg.compl(alg.union(alg.literal(" "), alg.literal("\t"))))
    return alg.union(alg.eps, edge, alg.cat(edge, alg.full, edge))


def _value_domain(alg: Algebra) -> list[Re]:
    """Every value: trimmed, and free of the characters Envoy refuses."""
    return [alg.inter(_allowed(alg), _trimmed(alg))]


def _header_readings(alg: Algebra, glue: str | None) -> list[Re]:
    """A header's readings: its trimmed values, and values joined with `glue`, which end
    with it once per empty value sent last (`a` then `` → `a, `)."""
    if glue is None:
        return _value_domain(alg)
    return [_allowed(alg), alg.cat(_trimmed(alg), alg.star(alg.literal(glue)))]


def _cookie_readings(alg: Algebra, glue: str | None) -> list[Re]:
    """A cookie's readings: any text without `;`, since a value in double quotes is also
    read without them (`sid=" a"` gives ` a`)."""
    return [_allowed(alg), alg.star(alg.inter(alg.any_char, alg.compl(alg.literal(";"))))]


def _method_domain(alg: Algebra) -> list[Re]:
    """An HTTP token."""
    tchar = alg.union(
        alg.chars([(ord("0"), ord("9"))]),
        alg.chars([(ord("a"), ord("z"))]),
        alg.chars([(ord("A"), ord("Z"))]),
        *[alg.literal(c) for c in _TCHAR],
    )
    return [*_value_domain(alg), alg.cat(tchar, alg.star(tchar))]


def _path_domain(alg: Algebra) -> list[Re]:
    """`path_in_normal_form` (the query is already cut off)."""
    hex_digit = alg.union(alg.chars([(ord("0"), ord("9"))]), alg.chars([(ord("A"), ord("F"))]))
    never = alg.union(*[alg.literal(f"%{c:02X}") for c in sorted(NEVER_ENCODED)])
    escape = alg.inter(alg.cat(alg.literal("%"), hex_digit, hex_digit), alg.compl(never))
    special = alg.union(*[alg.literal(c) for c in "?#\\%"])
    raw = alg.inter(alg.any_char, alg.compl(special))
    shape = alg.cat(alg.literal("/"), alg.star(alg.union(raw, escape)))
    segment_end = alg.union(
        alg.eps, alg.cat(alg.literal("/"), alg.full), alg.cat(alg.literal(";"), alg.full)
    )
    dots = alg.cat(alg.full, alg.union(alg.literal("/."), alg.literal("/..")), segment_end)
    double = alg.cat(alg.full, alg.literal("//"), alg.full)
    normal = alg.inter(shape, alg.compl(dots), alg.compl(double))
    return [*_value_domain(alg), normal]


def _host_domain(alg: Algebra) -> list[Re]:
    """ASCII lower case."""
    upper = alg.chars([(ord("A"), ord("Z"))])
    return [*_value_domain(alg), alg.star(alg.inter(alg.any_char, alg.compl(upper)))]


Finding = tuple[str, str]


def _spaces(literal: str, meaning: OperatorMeaning, ignore_case: bool) -> list[Finding]:
    """A value is judged trimmed: a space or tab where the value starts or ends never is."""
    start, end = meaning.positive.anchored
    if (start and literal[:1] in (" ", "\t")) or (end and literal[-1:] in (" ", "\t")):
        return [
            (
                f"values are compared without leading and trailing spaces, "
                f"so {policy_string(literal)} never matches",
                f"write {policy_string(literal.strip(' ' + chr(9)))}",
            )
        ]
    return []


def _path_never(literal: str, meaning: OperatorMeaning, ignore_case: bool) -> list[Finding]:
    if "?" in literal:
        return [
            (
                "`path` never contains `?`: it is compared without its query string",
                "compare the path only; the query string is not part of it",
            )
        ]
    return _spaces(literal, meaning, ignore_case)


def _host_never(literal: str, meaning: OperatorMeaning, ignore_case: bool) -> list[Finding]:
    if re.search(r":[0-9]*$", literal) and meaning.whole:
        found = [
            (
                f"`host` is compared without its port, so `{literal}` never matches",
                f'write "{literal.rsplit(":", 1)[0]}"',
            )
        ]
    else:
        found = _spaces(literal, meaning, ignore_case)
    if not ignore_case and fold(literal) != literal:
        found.append(
            (
                f"`host` is compared in lower case, so `{literal}` never matches",
                f'write "{fold(literal)}"',
            )
        )
    return found


def _query_domain(alg: Algebra) -> list[Re]:
    """A decoded value may hold any character (`%00` too), untrimmed; surrogates are
    not UTF-8, as for headers."""
    surrogates = alg.chars([(0xD800, 0xDFFF)])
    return [alg.star(alg.inter(alg.any_char, alg.compl(surrogates)))]


def _cookie_domain(alg: Algebra) -> list[Re]:
    """Trimmed, without `;`; one reading only: not in double quotes."""
    quoted = alg.cat(alg.literal('"'), alg.full, alg.literal('"'))
    no_semicolon = alg.star(alg.inter(alg.any_char, alg.compl(alg.literal(";"))))
    return [*_value_domain(alg), no_semicolon, alg.compl(quoted)]


def _client_domain(alg: Algebra) -> list[Re]:
    """`client_address`'s forms (`addresses.client_domain`)."""
    from hdrpolicy.analysis.addresses import client_domain

    return [client_domain(alg)]


def _cookie_never(literal: str, meaning: OperatorMeaning, ignore_case: bool) -> list[Finding]:
    if ";" in literal:
        return [
            (
                "a cookie's value never contains `;`: it separates cookies",
                "compare a part of the value without `;`",
            )
        ]
    return _spaces(literal, meaning, ignore_case)


def _nothing_never(literal: str, meaning: OperatorMeaning, ignore_case: bool) -> list[Finding]:
    return []


def _subject(kind: ir.SubjectKind) -> SubjectMeaning:
    match kind:
        case ir.SubjectKind.HEADER:
            return SubjectMeaning(
                kind, "header", None, (), _trim, _value_domain, _spaces, readings=_header_readings
            )
        case ir.SubjectKind.PATH:
            return SubjectMeaning(
                kind,
                "path",
                ":path",
                (),
                _without_query,
                _path_domain,
                _path_never,
                go_field="path_field",
                in_normal_form=path_in_normal_form,
                refusal=(ir.BAD_PATH_STATUS, ir.BAD_PATH_BODY),
                plain="/",
                single=True,
            )
        case ir.SubjectKind.METHOD:
            return SubjectMeaning(
                kind,
                "method",
                ":method",
                (),
                _trim,
                _method_domain,
                _spaces,
                plain="GET",
                single=True,
            )
        case ir.SubjectKind.HOST:
            return SubjectMeaning(
                kind,
                "host",
                ":authority",
                ("host",),
                _host,
                _host_domain,
                _host_never,
                go_field="host_field",
                plain="example.com",
                single=True,
            )
        case ir.SubjectKind.QUERY:
            return SubjectMeaning(
                kind,
                "query",
                ":path",
                (),
                _trim,
                _query_domain,
                _nothing_never,
                in_normal_form=query_well_formed,
                refusal=(ir.BAD_QUERY_STATUS, ir.BAD_QUERY_BODY),
                single=True,
                extract=query_values,
                # A parameter sent twice is also read as its values joined (ASP.NET's reading).
                joiner=",",
            )
        case ir.SubjectKind.COOKIE:
            return SubjectMeaning(
                kind,
                "cookie",
                "cookie",
                (),
                _trim,
                _cookie_domain,
                _cookie_never,
                extract=cookie_values,
                readings=_cookie_readings,
                joiner=None,
            )
        case ir.SubjectKind.CLIENT:
            return SubjectMeaning(
                kind,
                "client",
                ir.CLIENT_ADDRESS,
                (),
                client_address,
                _client_domain,
                _nothing_never,
                go_field="client_field",
                single=True,
                operators=frozenset({ir.Op.IN, ir.Op.NOT_IN}),
            )
        case _:
            assert_never(kind)


@cache
def subject(kind: ir.SubjectKind) -> SubjectMeaning:
    """The meaning of a subject kind."""
    return _subject(kind)


# The pseudo-subjects in the order the host passes them (`codec.deliver`).
PSEUDO_ORDER = (ir.SubjectKind.METHOD, ir.SubjectKind.PATH, ir.SubjectKind.HOST)


def list_delimiter(target: ir.Subject) -> str | None:
    """The delimiter a subject's value may be a list of (None: it is one value).

    A joined header's value may be several client values joined by Envoy, and
    so is an `:authority` (a repeated `Host`); a cookie header is a list of
    cookies, however it arrived.  A named subject's values are already its own.
    """
    if subject(target.kind).extract is not None:
        return None
    host_name = target.host_name
    if host_name in JOINED_HEADERS or host_name == subject(ir.SubjectKind.HOST).host_name:
        return COMMA
    if host_name == "cookie":
        return ";"
    return None


def joiner(target: ir.Subject) -> str | None:
    """How the evaluator and the plug-in join a subject's several values into one more
    reading (None: they do not): `; ` for the cookie header, `,` for a query parameter."""
    if list_delimiter(target) == ";":
        return "; "
    return subject(target.kind).joiner


def domain(alg: Algebra, kind: ir.SubjectKind, delimiter: str | None) -> Re:
    """The values the plug-in can see of a subject: its kind's domain; a value that may
    be a list is modelled without the delimiter (with it, a request has several
    readings, which the analysis does not model)."""
    parts = list(subject(kind).domain(alg))
    if delimiter is not None:
        parts.insert(1, alg.star(alg.inter(alg.any_char, alg.compl(alg.literal(delimiter)))))
    return alg.inter(*parts)


def reading_domain(alg: Algebra, target: ir.Subject) -> Re:
    """Every value one reading of the subject can have (`evaluate.subject_readings`):
    `domain`'s, and also a value read whole though it holds its list delimiter, several
    values joined, and a cookie's value without its double quotes.

    Each reading gives each subject one of these values, so what no combination of
    them makes true no request makes true, whatever its readings.
    """
    meaning = subject(target.kind)
    if meaning.readings is None:
        return alg.inter(*meaning.domain(alg))
    return alg.inter(*meaning.readings(alg, joiner(target)))


def pseudo_subjects() -> dict[str, str]:
    """Header names a `header` subject cannot read, and the subject that reads them."""
    out: dict[str, str] = {}
    for kind in ir.SubjectKind:
        meaning = subject(kind)
        if meaning.host_name is not None and meaning.single:
            out.setdefault(meaning.host_name, meaning.spelling)
        for alias in meaning.aliases:
            out[alias] = meaning.spelling
    return out
