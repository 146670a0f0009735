"""Text from outside (file names, option values) made visible: one printable line.

Each target language has its own escaping function that builds on this one:
`golit.go_comment_text` for Go comments, `manifests.yaml_comment_text` for
YAML comments.  (`golit.go_string` makes Go string literals of exact bytes.)
"""

from __future__ import annotations

# Python decodes a file name's bytes that are not UTF-8 to U+DC80 to U+DCFF
# (PEP 383, `surrogateescape`); each stands for the byte `code - 0xDC00`.
ESCAPED_BYTES = range(0xDC80, 0xDD00)


def visible_line(text: str) -> str:
    """`text` as one line of printable characters: nothing can end the line or hide.

    Line breaks (also U+2028/2029 and NEL), control and format characters
    (bidirectional overrides, zero-width, BOM) and unassigned code points are
    shown as `\\uXXXX`; a file name's undecodable byte as `\\xNN`.  Tabs stay.
    Gives the same text when applied again (its output is printable already).
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\t" or (0x20 <= code < 0x7F) or (code >= 0x80 and ch.isprintable()):
            out.append(ch)
        elif code in ESCAPED_BYTES:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)
