"""Operational errors: what stops a command that is not a fault in the policy.

A missing toolchain, a failed build, a registry that refuses a push, Envoy that
will not start: each stage raises a subclass of `HdrpolicyError`, and the CLI
renders every one the same way (`error: MESSAGE`, then any detail, exit 1).
Faults in a policy are diagnostics instead (`codes`, `diagnostics`); a bug in
hdrpolicy is any other exception (exit 70).
"""

from __future__ import annotations


class HdrpolicyError(Exception):
    """A failure the user can act on.

    `message` is one line that says what failed and, where it can, what to do;
    `output` is optional detail printed after it (a tool's output, or a help line).
    Neither may hold a secret: the CLI redacts what it prints all the same.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.output = output
