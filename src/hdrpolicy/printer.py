"""Policy source text from values: the inverse of the lexer's string decoding."""

from __future__ import annotations

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
