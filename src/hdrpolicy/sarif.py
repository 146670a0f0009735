"""Render diagnostics as SARIF 2.1.0, for code-scanning UIs.

Rules come from the codes table (`codes.Code`), so a finding's rule id is its code;
regions use the diagnostics' 1-based lines and columns (SARIF's default
column unit is UTF-16 code units; policy files are almost always ASCII, and
`columnKind` says which unit we mean).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hdrpolicy import __version__
from hdrpolicy.codes import Code
from hdrpolicy.diagnostics import Diagnostic, Severity, Source

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/hdrpolicy/hdrpolicy"
_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def to_sarif(items: list[tuple[Source, Diagnostic]]) -> dict[str, Any]:
    """One SARIF log with one run holding every diagnostic of every file."""
    index = {code: n for n, code in enumerate(Code)}
    rules = [rule(code) for code in Code]
    results = [_result(source, d, index) for source, d in items]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "hdrpolicy",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def rule(code: Code) -> dict[str, Any]:
    """The SARIF rule of one code: its summary, meaning, help and default level."""
    return {
        "id": code.value,
        "name": code.value,
        "shortDescription": {"text": code.summary},
        "fullDescription": {"text": code.meaning},
        "help": {"text": code.help},
        "defaultConfiguration": {"level": _LEVELS[code.severity]},
    }


def _result(source: Source, d: Diagnostic, index: dict[Code, int]) -> dict[str, Any]:
    source = d.source or source
    text = d.message
    extra = [*(f"note: {n}" for n in d.notes), *([f"help: {d.help}"] if d.help else [])]
    if extra:
        text = text + "\n" + "\n".join(extra)
    end_column = d.span.end_column
    if d.span.end_line == d.span.line and end_column <= d.span.column:
        end_column = d.span.column + 1
    result: dict[str, Any] = {
        "ruleId": d.code.value,
        "ruleIndex": index[d.code],
        "level": _LEVELS[d.severity],
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(source.path)},
                    "region": {
                        "startLine": d.span.line,
                        "startColumn": d.span.column,
                        "endLine": d.span.end_line,
                        "endColumn": end_column,
                        "snippet": {"text": source.line_text(d.span.line)},
                    },
                }
            }
        ],
    }
    if d.suppression is not None:
        result["suppressions"] = [{"kind": "inSource", "justification": d.suppression}]
    return result


def _uri(path: str) -> str:
    """A relative path as a URI reference (forward slashes, spaces escaped)."""
    return quote(path.replace("\\", "/"))


def render_sarif(items: list[tuple[Source, Diagnostic]]) -> str:
    return json.dumps(to_sarif(items), indent=2)
