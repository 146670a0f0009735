"""The diagnostic codes: one table that every diagnostic, the README and SARIF read.

Each code carries its severity, a short summary (SARIF's short description), what
it means and an example (the README's table) and a general help (SARIF's rule
help; a diagnostic's own help is about its instance).  Codes are stable: users
filter and suppress by them, so never renumber one.

`python -m hdrpolicy.codes README.md` rewrites the README's table between its
markers; `python -m hdrpolicy.codes` prints it.  A test checks the README.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    # Worth knowing, often intended (an `allow` carved out before denies):
    # never an error, not even with `--strict`.
    NOTE = "note"


_E, _W, _N = Severity.ERROR, Severity.WARNING, Severity.NOTE


class Code(StrEnum):
    """A diagnostic code; it compares, formats and serialises as its name (`HP101`)."""

    severity: Severity
    summary: str
    meaning: str
    example: str
    help: str

    def __new__(
        cls, code: str, severity: Severity, summary: str, meaning: str, example: str, help: str
    ) -> Code:
        member = str.__new__(cls, code)
        member._value_ = code
        member.severity = severity
        member.summary = summary
        member.meaning = meaning
        member.example = example
        member.help = help
        return member

    # -- the source file: syntax and reading ----------------------------------
    HP101 = (
        "HP101",
        _E,
        "syntax error",
        "syntax error",
        '`deny 403 "x" unles header a exists`',
        "fix the text at the caret; the message says what may come there",
    )
    HP102 = (
        "HP102",
        _E,
        "invalid string escape",
        "unknown string escape, or a `\\u` surrogate",
        '`"\\q"`',
        'strings know `\\"`, `\\\\`, `\\n`, `\\t` and `\\uXXXX` (not a surrogate)',
    )
    HP103 = (
        "HP103",
        _E,
        "source is not valid UTF-8",
        "the file is not UTF-8",
        "",
        "save the policy file as UTF-8",
    )
    HP104 = (
        "HP104",
        _E,
        "a character that displays differently from how it reads",
        "a character tools show differently from how hdrpolicy reads it: control characters "
        "other than tab and line breaks, U+2028/U+2029, bidi overrides (in strings, write "
        "`\\uXXXX`)",
        "`# note` then U+2028 then `deny 403`",
        "remove the character, or write it in a string as `\\uXXXX`",
    )
    HP105 = (
        "HP105",
        _E,
        "beyond hdrpolicy's limits",
        "input beyond hdrpolicy's limits (see Limits)",
        "101 nested `not`",
        "split the policy or simplify the construct: the message names the limit",
    )
    # -- the checker ---------------------------------------------------------
    HP201 = (
        "HP201",
        _E,
        "invalid header or cookie name",
        "a header or cookie name that is not an HTTP token, or an empty query parameter name",
        '`header x/y exists`, `cookie "a b" exists`, `query "" exists`',
        "header and cookie names are HTTP tokens: letters, digits and !#$%&'*+-.^_`|~",
    )
    HP202 = (
        "HP202",
        _E,
        "invalid header value",
        "control character in a header value",
        '`with header x = "a\\nb"`',
        "remove the control character from the value",
    )
    HP203 = (
        "HP203",
        _E,
        "status out of range",
        "status outside 200\N{EN DASH}599",
        "`deny 700`",
        "a local reply's status is 200 to 599",
    )
    HP204 = (
        "HP204",
        _E,
        "invalid regular expression",
        "regular expression Go would reject, Go's limits included",
        '`matches "(a"`, 1,000 nested groups',
        "write the pattern in Go's RE2 syntax, within its limits",
    )
    HP205 = (
        "HP205",
        _E,
        "duplicate `policy`",
        "duplicate `policy`",
        "",
        "a file names one plug-in: keep one `policy` statement",
    )
    HP206 = (
        "HP206",
        _E,
        "duplicate `default`",
        "duplicate `default`",
        "",
        "keep a single `default`",
    )
    HP207 = (
        "HP207",
        _E,
        "`default` is not last",
        "`default` is not last",
        "",
        "move `default` to the end of the file",
    )
    HP208 = (
        "HP208",
        _E,
        "unreachable rule",
        "unreachable rule after an unconditional one",
        "`deny 403` then anything",
        "remove the rule, or give the rule before it a condition",
    )
    HP209 = (
        "HP209",
        _E,
        "empty list",
        "empty list, or a list file with no values",
        "`in []`, `list a = []`, a list file of comments only",
        "list at least one value",
    )
    HP210 = (
        "HP210",
        _E,
        "subject can never match",
        "a comparison that can never match what the plug-in sees",
        '`header host` (use `host`), `host == "API.example.com"`, `host == "a.com:443"`, '
        '`path == "/a?b"`, `header x == " a"`',
        "compare with the value as the plug-in sees it (see What the plug-in sees)",
    )
    HP211 = (
        "HP211",
        _E,
        "invalid policy name",
        "invalid policy name",
        '`policy "My Policy"`',
        "a policy name is lower-case letters, digits and `-` (at most 63)",
    )
    HP212 = (
        "HP212",
        _E,
        "`policy` is not first",
        "`policy` is not first",
        "",
        "move `policy` to the top of the file",
    )
    HP213 = (
        "HP213",
        _E,
        "`ignoring case` where it does not apply",
        "`ignoring case` on `matches` or on `client`",
        '`matches "bot" ignoring case`, `client in ["10.0.0.0/8"] ignoring case`',
        "write `(?i)` in the pattern instead; addresses have no case",
    )
    HP214 = (
        "HP214",
        _E,
        "response header set by the proxy",
        "a response header the proxy sets",
        '`with header content-length = "1"`',
        "drop the header: the proxy sets it",
    )
    HP215 = (
        "HP215",
        _E,
        "response Envoy cannot send as written",
        "a response Envoy cannot send as written: a body on 204, 205 or 304; `content-type` on "
        "a response without a body",
        '`deny 204 "gone"`, `deny 403 with header content-type = "application/json"`',
        "drop the body or the `content-type`, or choose a status that takes a body",
    )
    HP216 = (
        "HP216",
        _E,
        "unknown list",
        "a comparison with a named list that no `list` declares",
        "`header x-user in admins` without `list admins = [...]`",
        'declare the list with `list NAME = [...]` or `list NAME from "FILE"`, or fix the name',
    )
    HP217 = (
        "HP217",
        _W,
        "unused list",
        "a `list` no comparison uses",
        '`list admins = ["alice"]` and no `in admins`',
        "use the list, or remove it",
    )
    HP218 = (
        "HP218",
        _E,
        "duplicate list",
        "two `list`s with one name",
        '`list a = ["x"]` twice',
        "rename or merge the lists",
    )
    HP219 = (
        "HP219",
        _E,
        "list file cannot be read",
        "a list file that cannot be read, is not UTF-8, or is given by an absolute path",
        '`list tenants from "missing.txt"`',
        "give the file's path relative to the policy file",
    )
    HP220 = (
        "HP220",
        _E,
        "operator does not apply to the subject",
        "an operator a subject does not take",
        '`client == "10.0.0.1"`, `client exists`',
        "`client` takes `in` and `not in` with address ranges",
    )
    HP221 = (
        "HP221",
        _E,
        "invalid address range",
        "a client address range that is not a CIDR or an IP address",
        '`client in ["10.0.0.0/33"]`, `client in ["10.0.0.0/8 "]`',
        "write a CIDR such as 10.0.0.0/8 or 2001:db8::/32",
    )
    HP222 = (
        "HP222",
        _W,
        "address range with host bits set",
        "a CIDR whose address has bits set past its prefix (they are ignored)",
        '`client in ["10.1.2.3/8"]`',
        "write the range's first address, e.g. 10.0.0.0/8",
    )
    HP223 = (
        "HP223",
        _W,
        "repeated value in a list",
        "a value given twice in one list",
        '`list admins = ["alice", "alice"]`',
        "remove the repeated value",
    )
    # -- policy test files ---------------------------------------------------
    HP301 = (
        "HP301",
        _E,
        "invalid policy test file",
        "invalid policy test file (points at the YAML line)",
        "`reqest:`",
        "fix the test file at the line shown (see Testing a policy)",
    )
    # -- the analysis (warnings; `check --strict` makes them errors) -----------
    HP401 = (
        "HP401",
        _W,
        "rule never fires (shadowed)",
        "a rule that never fires, naming the rules that decide first",
        "a rule after `deny 403 when header a exists` that needs `header a`",
        "remove the rule, or move it before the rules that decide first",
    )
    HP402 = (
        "HP402",
        _W,
        "condition always true or always false",
        "a condition that is always true or always false",
        '`header a == "x" and header a == "y"`',
        "fix the condition: part of it decides nothing",
    )
    HP403 = (
        "HP403",
        _W,
        "redundant rule",
        "a redundant rule (removing it changes no decision)",
        "the same rule twice",
        "remove the rule",
    )
    HP404 = (
        "HP404",
        _N,
        "`allow` makes a later deny partly dead",
        "an `allow` that makes part of later denies dead, with witnesses",
        '`allow when method == "OPTIONS"` before `deny 401 …`',
        "if intended, say so with `# hdrpolicy: ignore HP404 — reason`",
    )
    HP405 = (
        "HP405",
        _W,
        "analysis could not decide",
        "the analysis could not decide (an untranslatable regex, or its budget is spent)",
        '`matches "\\\\pL"`',
        "simplify the pattern, or raise `--budget`",
    )
    HP406 = (
        "HP406",
        _W,
        "unused suppression",
        "a suppression comment that silences nothing",
        "`# hdrpolicy: ignore HP403 — …` above a rule that is not redundant",
        "remove the suppression comment",
    )
    HP407 = (
        "HP407",
        _W,
        "invalid suppression",
        "an invalid suppression comment (no reason, or not an analysis code)",
        "`# hdrpolicy: ignore HP404`",
        "write `# hdrpolicy: ignore HP40x — reason` with an analysis code (HP401 to HP405)",
    )


# The findings a `# hdrpolicy: ignore` comment may silence: the analysis's own.
SUPPRESSIBLE = (Code.HP401, Code.HP402, Code.HP403, Code.HP404, Code.HP405)

README_BEGIN = "<!-- diagnostic codes: generated by `python -m hdrpolicy.codes README.md` -->"
README_END = "<!-- end of diagnostic codes -->"


def markdown_table() -> str:
    """The README's table of codes, one row per code."""
    rows = ["| code | severity | meaning | example |", "| --- | --- | --- | --- |"]
    rows += [
        f"| {c} | {c.severity} | {_cell(c.meaning)} | {_cell(c.example)} |".replace("|  |", "| |")
        for c in Code
    ]
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def with_table(readme: str) -> str:
    """`readme` with the text between the markers replaced by the generated table."""
    head, begin, rest = readme.partition(README_BEGIN)
    _, end, tail = rest.partition(README_END)
    if not begin or not end:
        raise ValueError(f"the README has no `{README_BEGIN}` … `{README_END}` markers")
    return f"{head}{README_BEGIN}\n{markdown_table()}{README_END}{tail}"


def main(argv: list[str]) -> int:
    if not argv:
        sys.stdout.write(markdown_table())
        return 0
    readme = Path(argv[0])
    text = readme.read_text(encoding="utf-8")
    updated = with_table(text)
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
        print(f"updated the diagnostic codes in `{readme}`")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
