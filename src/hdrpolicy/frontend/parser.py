"""Stage 1, parse: policy text → Lark tree, with every Lark error turned into a diagnostic.

This is the only module that calls Lark's parser; `lower` is the only one that
reads its trees.  Syntax errors are recovered from at statement boundaries so a
file with several mistakes reports all of them.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from functools import cache

import lark
from lark import (
    Lark,
    Token,
    Tree,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from hdrpolicy.assets import asset
from hdrpolicy.backend.cache import cache_root
from hdrpolicy.diagnostics import Code, Diagnostic, Source, did_you_mean
from hdrpolicy.frontend.limits import MAX_RULES, MAX_SOURCE_CHARS, MAX_SYNTAX_ERRORS, describe

# What each terminal is called in an error message.
TERMINAL_WORDS: dict[str, str] = {
    "POLICY": "`policy`",
    "DENY": "`deny`",
    "ALLOW": "`allow`",
    "DEFAULT": "`default`",
    "WITH": "`with`",
    "WHEN": "`when`",
    "UNLESS": "`unless`",
    "OR": "`or`",
    "AND": "`and`",
    "NOT": "`not`",
    "IN": "`in`",
    "EXISTS": "`exists`",
    "HEADER": "`header`",
    "PATH": "`path`",
    "METHOD": "`method`",
    "HOST": "`host`",
    "QUERY": "`query`",
    "COOKIE": "`cookie`",
    "CLIENT": "`client`",
    "LIST": "`list`",
    "FROM": "`from`",
    "IGNORING": "`ignoring case`",
    "CASE": "`case`",
    "EQ": "`==`",
    "NE": "`!=`",
    "ASSIGN": "`=`",
    "STARTS_WITH": "`starts_with`",
    "ENDS_WITH": "`ends_with`",
    "CONTAINS": "`contains`",
    "MATCHES": "`matches`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "COMMA": "`,`",
    "INT": "a status code",
    "STRING": 'a string in double quotes ("…")',
    "HEADER_NAME": "a header name",
    "PARAM_NAME": "a name",
    "LIST_NAME": "a list's name",
    "$END": "the end of the file",
}

# Spellings from other languages, and what this one says instead.
_FAMILIAR = {
    "=": "==",
    "===": "==",
    "is": "==",
    "eq": "==",
    "ne": "!=",
    "&&": "and",
    "&": "and",
    "||": "or",
    "|": "or",
    "!": "not",
    "if": "when",
    "where": "when",
    "except": "unless",
    "startswith": "starts_with",
    "endswith": "ends_with",
    "has": "exists",
    "like": "matches",
}


def _hint(found: str, expected: set[str]) -> str | None:
    """A help line for a wrong token: the familiar spelling's equivalent, else a
    close keyword, either only if it could stand here."""
    allowed = {
        TERMINAL_WORDS[n].strip("`") for n in expected if TERMINAL_WORDS.get(n, "").startswith("`")
    }
    if found.startswith("'"):
        return 'strings are in double quotes: "…"'
    if (found in ("true", "false") or found.isdigit()) and "STRING" in expected:
        return f'values are strings: write "{found}"'
    familiar = _FAMILIAR.get(found.lower())
    if familiar is not None and familiar in allowed:
        return f"write `{familiar}`"
    guess = did_you_mean(found, sorted(allowed))
    if guess and guess != found:
        return f"did you mean `{guess}`?"
    return None


_STATEMENT_START = re.compile(r"^[ \t]*(policy|list|deny|allow|default)\b", re.MULTILINE)


@cache
def _parser() -> Lark:
    """The LALR parser, its tables kept in the cache directory.

    Building the tables takes longer than the rest of `fmt` on a small file, and
    the pre-commit hooks start hdrpolicy on every commit.  Lark checks the
    grammar's and its own version's hash before using the file and rebuilds it
    otherwise; an unusable cache directory only costs the time.
    """
    grammar = asset("grammar", "hdrpolicy.lark").read_text("utf-8")
    tables: str | bool = False
    try:
        directory = cache_root() / "parser"
        directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(grammar.encode()).hexdigest()[:16]
        tables = str(directory / f"lark-{lark.__version__}-{digest}.pickle")
    except (OSError, RuntimeError):  # RuntimeError: no home directory
        pass
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=tables,
    )


# Characters that tools disagree about (Python, YAML and some editors end a line
# at U+2028 and friends, `cat` does not; ESC sequences and bidi overrides make
# a terminal or an editor show other text than hdrpolicy reads).  A string
# spells them with `\\uXXXX`.
_MISLEADING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def parse(source: Source) -> tuple[Tree[Token] | None, list[Diagnostic]]:
    """Parse a whole file; on a syntax error, skip to the next statement and go on.

    The tree returned is of what remains once the failed statements are blanked
    out, so later stages can report their findings on the rest of the file.
    After an error, parsing resumes after the blanked statement (not from the
    top), so a file with many errors is still read about once.
    """
    text = source.text
    if len(text) > MAX_SOURCE_CHARS:
        return None, [_too_large(source)]
    too_many = _too_many_rules(source)
    if too_many is not None:
        return None, [too_many]
    diagnostics = _misleading_characters(source)
    text = _MISLEADING.sub(" ", text)
    base = 0
    errors = 0
    while errors <= MAX_SYNTAX_ERRORS:
        try:
            tree = _parser().parse(text[base:] if base else text)
        except UnexpectedInput as exc:
            errors += 1
            if errors > MAX_SYNTAX_ERRORS:
                break
            diagnostics.append(_syntax_diagnostic(source, text, exc, base))
            text, base = _blank_failed_statement(text, _error_offset(text, exc, base))
            continue
        if base == 0:
            return tree, diagnostics
        base = 0  # the rest parses: now the whole text, for the tree
    return None, diagnostics


def _too_large(source: Source) -> Diagnostic:
    return Diagnostic(
        Code.HP105,
        Code.HP105.severity,
        f"the file is longer than hdrpolicy's limit of {describe(MAX_SOURCE_CHARS)} characters",
        source.span(MAX_SOURCE_CHARS, MAX_SOURCE_CHARS + 1),
        help="split the policy: one plug-in per policy file",
    )


# Strings and comments are skipped; every rule has one `deny` or `allow`.
_RULE_KEYWORDS = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\b(deny|allow)\b')


def _too_many_rules(source: Source) -> Diagnostic | None:
    """Refuse a file with far too many rules before parsing it (which would take long).

    Counting keywords, `default deny` included: beyond the limit plus one, the
    keyword at the limit is a rule beyond it (the checker counts exactly).
    """
    keywords = (m for m in _RULE_KEYWORDS.finditer(source.text) if m.group(1) is not None)
    beyond = list(itertools.islice(keywords, MAX_RULES, MAX_RULES + 2))
    if len(beyond) < 2:
        return None
    return Diagnostic(
        Code.HP105,
        Code.HP105.severity,
        f"more than hdrpolicy's limit of {describe(MAX_RULES)} rules in one policy",
        source.span(beyond[0].start(), beyond[0].end()),
        help="split the policy into several plug-ins",
    )


def _misleading_characters(source: Source) -> list[Diagnostic]:
    found = []
    for m in _MISLEADING.finditer(source.text):
        ch = m.group()
        found.append(
            Diagnostic(
                Code.HP104,
                Code.HP104.severity,
                f"character U+{ord(ch):04X} is not allowed in a policy file",
                source.span(m.start(), m.end()),
                help=f"tools show it differently; in a string write \\u{ord(ch):04x}",
            )
        )
        if len(found) == MAX_SYNTAX_ERRORS:
            break
    return found


def _error_offset(text: str, exc: UnexpectedInput, base: int) -> int:
    if isinstance(exc, UnexpectedEOF) or exc.pos_in_stream is None:
        return len(text)
    return base + int(exc.pos_in_stream)


def _blank_failed_statement(text: str, offset: int) -> tuple[str, int]:
    """Replace the text the error belongs to with spaces (keeping newlines and offsets).

    Returns the new text and where parsing resumes: the end of the blanked part.

    An error at a statement keyword means the statement before it was cut
    short; an error on a line of its own is a stray line; otherwise the error
    is inside the statement that holds it.
    """
    starts = [m.start(1) for m in _STATEMENT_START.finditer(text)]
    line_start = text.rfind("\n", 0, offset) + 1
    first_on_line = text[line_start:offset].strip() == ""
    if offset in starts:
        previous = [s for s in starts if s < offset]
        start, end = (previous[-1] if previous else 0), offset
    elif first_on_line:
        start = line_start
        end = next((s for s in starts if s > offset), len(text))
    else:
        start = max((s for s in starts if s <= offset), default=0)
        end = next((s for s in starts if s > offset), len(text))
    blanked = "".join(ch if ch == "\n" else " " for ch in text[start:end])
    if blanked == text[start:end]:
        # Nothing left to blank: drop the rest so the loop ends.
        return text[:start], 0
    return text[:start] + blanked + text[end:], end


def _expected_words(names: set[str]) -> str:
    words = sorted({TERMINAL_WORDS.get(n, n.lower()) for n in names})
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_diagnostic(source: Source, text: str, exc: UnexpectedInput, base: int) -> Diagnostic:
    """The diagnostic for a Lark error; Lark's offsets count from `base` in `text`."""
    help_text: str | None = None
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        tok = exc.token
        start = base + tok.start_pos if tok.start_pos is not None else len(text)
        end = base + tok.end_pos if tok.end_pos is not None else start + len(str(tok))
        found = f"`{_shorten(str(tok))}`"
        expected = set(exc.accepts or exc.expected)
        help_text = _hint(str(tok), expected)
    elif isinstance(exc, UnexpectedCharacters):
        start = base + int(exc.pos_in_stream or 0)
        end = start + 1
        ch = text[start]
        found = f"`{ch}`" if ch.isprintable() else f"character U+{ord(ch):04X}"
        expected = set()
        if ch == '"':
            found = "an unterminated string"
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            help_text = 'close the string with `"` on the same line'
        expected = set(exc.allowed or ())
        if ch != '"':
            word = re.match(r"[A-Za-z_]+|'[^'\n]*'?|[=&|!]+", text[start:])
            if word:
                end = start + word.end()
                found = f"`{_shorten(word.group())}`"
                help_text = _hint(word.group(), expected)
    else:
        start = end = len(text)
        found = "the end of the file"
        expected = set(getattr(exc, "expected", ()) or ())
    if help_text is None:
        help_text = _context_hint(text, start, expected)
    words = _expected_words(expected)
    cut_short = _statement_cut_short(text, start)
    if found == "an unterminated string":
        message = "unterminated string"
    elif cut_short is not None:
        keyword, line = cut_short
        message = f"`{keyword}` at line {line} is incomplete: expected {words} before {found}"
    else:
        message = f"unexpected {found}" + (f", expected {words}" if words else "")
    return Diagnostic(
        Code.HP101, Code.HP101.severity, message, source.span(start, end), help=help_text
    )


_NAMED = {"query": "parameter", "cookie": "cookie"}
_OPERATOR_WORDS = {"exists", "in", "not", "matches", "contains", "starts_with", "ends_with"}


def _context_hint(text: str, start: int, expected: set[str]) -> str | None:
    """A help line from what comes before the error: a `query`/`cookie` without its name
    (or whose operator was taken for one), a name after `client`, a list's name or
    file written wrong."""
    before = text[:start]
    at = re.match(r"\S*", text[start:])
    found = at.group() if at else ""
    named = re.search(r"\b(query|cookie)\s+$", before)
    if named and "PARAM_NAME" in expected:
        keyword = named.group(1)
        return (
            f"name the {_NAMED[keyword]} after `{keyword}`: `{keyword} NAME …` "
            f'(`{keyword} "…"` for a name with spaces)'
        )
    taken = re.search(r"\b(query|cookie)\s+(\w+)\s*$", before)
    if taken and taken.group(2) in _OPERATOR_WORDS:
        keyword, word = taken.groups()
        return f"`{word}` was read as the {_NAMED[keyword]}'s name: write `{keyword} NAME {word} …`"
    if re.search(r"\bclient\s+$", before) and found and found[0].isalpha():
        return '`client` takes no name: write `client in ["10.0.0.0/8", …]`'
    if "LIST_NAME" in expected and found:
        return "a list's name is a letter, then letters, digits, `_` and `-`"
    if re.search(r"\bfrom\s+$", before) and "STRING" in expected and found:
        return f'write the file name in double quotes: `from "{_shorten(found)}"`'
    return None


def _shorten(token: str, width: int = 40) -> str:
    """A token as quoted in a message: a very long one is cut."""
    return token if len(token) <= width else token[: width - 1] + "…"


def _statement_cut_short(text: str, offset: int) -> tuple[str, int] | None:
    """(keyword, line) of the statement before `offset` if a new statement starts at `offset`."""
    starts = list(_STATEMENT_START.finditer(text))
    if not any(m.start(1) == offset for m in starts):
        return None
    previous = [m for m in starts if m.start(1) < offset]
    if not previous:
        return None
    m = previous[-1]
    return m.group(1), text.count("\n", 0, m.start(1)) + 1
