"""hdrpolicy's size limits: input beyond them is refused with HP105, naming the limit.

Each limit is far beyond what a reviewed policy needs and keeps every later
stage (analysis, `fmt`, the evaluator, the emitted Go) within its time and its
stack; they are listed in the README's "Limits" table.
"""

from __future__ import annotations

# A policy file, in characters (a 5,000-rule file of typical rules is ~400 KB).
MAX_SOURCE_CHARS = 1 << 20
# Rules (and the `default`) in one policy.
MAX_RULES = 5_000
# `not`, `and`, `or` and parenthesised groups that change the meaning, nested.
MAX_CONDITION_DEPTH = 100
# Comparisons in one rule's condition.
MAX_COMPARISONS = 1_000
# A regular expression, in characters.  Below this, Go's limit on the runes in
# a pattern's character classes (`maxRunes`) cannot be reached.
MAX_PATTERN_CHARS = 32_768
# Values in one named list (an allow-list kept in its own file).
MAX_LIST_VALUES = 10_000
# A list file, in bytes.
MAX_LIST_FILE_BYTES = 1 << 20
# Syntax errors reported per file before the parser stops looking.
MAX_SYNTAX_ERRORS = 50


def describe(count: int) -> str:
    """1000 → `1,000`: limits are quoted as people write numbers."""
    return f"{count:,}"
