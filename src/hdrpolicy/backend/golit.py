"""Escaping for Go source: the one place strings from outside cross into Go.

Two targets, one function each.  `go_string` makes a Go interpreted string
literal of printable ASCII only, so it can never end early or change meaning,
whatever it holds (quotes, backslashes, NUL, `*/`, `{{`, bidirectional
controls, a file name's undecodable bytes).  `go_comment_text` makes text (a
policy's source line, a file name) one visible line inside a `//` comment.
"""

from __future__ import annotations

from hdrpolicy.escape import ESCAPED_BYTES, visible_line

_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def go_string(value: str) -> str:
    """A Go string literal holding exactly `value`'s bytes (`os.fsencode`'s, for a file name).

    Text is UTF-8; a surrogate-escaped byte (from a file name that is not
    UTF-8) is that byte.  Other lone surrogates have no bytes: ValueError (the
    lowering step rejects them in policies, and file names cannot hold them).
    """
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code in ESCAPED_BYTES:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"lone surrogate U+{code:04X} has no UTF-8 encoding")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_comment_text(text: str) -> str:
    """Text made safe and visible inside a `//` comment (`visible_line`, trailing blanks cut).

    A `//` comment ends only at a line break, and Go rejects NUL, a byte order
    mark and invalid UTF-8 in source: `visible_line` leaves none of them.
    """
    return visible_line(text).rstrip()
