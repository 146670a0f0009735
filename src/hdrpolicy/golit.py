"""Escaping of policy text for Go source: the one place strings cross into Go.

A policy literal may hold anything (quotes, backslashes, NUL, `*/`, `{{`,
bidirectional controls); what comes out is a Go interpreted string literal
built only of printable ASCII, so it can never end early or change meaning.
"""

from __future__ import annotations

_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def go_string(value: str) -> str:
    """A Go string literal whose UTF-8 bytes are exactly `value`'s UTF-8 encoding."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            # Not encodable in UTF-8; the lowering step rejects these.
            raise ValueError(f"lone surrogate U+{code:04X} in policy string")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_comment_text(text: str) -> str:
    """Policy source text made safe and visible inside a `//` comment.

    Line breaks would end the comment, and control or format characters could
    hide what a reviewer reads, so they are shown as `\\u` escapes.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\t" or (0x20 <= code < 0x7F):
            out.append(ch)
        elif code < 0x20 or code == 0x7F or not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out).rstrip()
