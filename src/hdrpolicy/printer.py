"""Policy source text from values: the inverse of the lexer's string decoding."""

from __future__ import annotations

import re

_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}


def policy_string(value: str) -> str:
    """A policy string literal that decodes to exactly `value`.

    Control and other invisible characters are written as `\\uXXXX` so a
    reviewer sees them; characters beyond U+FFFF (which `\\u` cannot spell)
    are written as themselves.
    """
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif code < 0x20 or code == 0x7F or (code <= 0xFFFF and not ch.isprintable()):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# What a query parameter's or cookie's name may be written as without quotes
# (the grammar's PARAM_NAME).
_BARE_NAME = re.compile(r'^[^\s"()\[\],=#]+$')


def name_text(name: str) -> str:
    """A subject's name as the policy writes it: bare when it can be, else a string."""
    if _BARE_NAME.match(name) and name.isprintable():
        return name
    return policy_string(name)
