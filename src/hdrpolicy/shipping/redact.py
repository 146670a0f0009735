"""No credential reaches the terminal: every message is redacted where the CLI prints it.

Whatever hdrpolicy learns that is secret (a password, a token, an `auth`
entry) is `hold`-ed the moment it is read, with the forms it can take on the
way out: `user:password`, the Basic header's base64, escaped as Python, JSON or
`visible_line` would show it, URL-encoded.  `redact` replaces all of them, and the
password of any `scheme://user:password@` URL, by `***`, so a registry that echoes
the Authorization header, or an exception that quotes a header, prints
nothing secret.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote

from hdrpolicy.escape import visible_line

MASK = "***"
_held: set[str] = set()
# `scheme://user:password@host` in a URL (a registry reference with credentials
# is refused, and its credentials held, by `push.parse_reference`).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@`'\"]*):[^\s/@`'\"]+@")


def _forms(secret: str) -> set[str]:
    """The secret as it can appear in a message: raw, escaped (Python, JSON, ours), URL-encoded."""
    return {
        secret,
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        json.dumps(secret)[1:-1],
        visible_line(secret),
        quote(secret, safe=""),
    }


def hold(*secrets: str) -> None:
    """Remember secrets hdrpolicy holds, so that no message prints them."""
    for secret in secrets:
        if secret:
            _held.update(f for f in _forms(secret) if f)


def hold_credentials(username: str, password: str) -> None:
    """A password, with the `user:password` pair and the Basic header's base64 of it."""
    pair = f"{username}:{password}"
    basic = base64.b64encode(pair.encode("utf-8", "surrogateescape")).decode("ascii")
    hold(password, pair, basic, basic.rstrip("="))


def redact(text: str) -> str:
    """`text` with every held secret and every `user:password@` replaced by `***`."""
    for secret in sorted(_held, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
