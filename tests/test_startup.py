"""`fmt` and `check` start without the libraries only other commands need.

The pre-commit hooks run them on every commit; `benchmarks/bench_startup.py`
measures the time.  This checks the behaviour behind it: which modules a run
loads, in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES

TUTORIAL = str(EXAMPLES / "header-authorization.hp")
# Pushing (oras, requests, jsonschema), Docker, the Go build (jinja2), manifests (yaml).
SHIPPING = {"oras", "requests", "jsonschema", "docker", "jinja2", "yaml"}

RUN = """
import json, sys
from hdrpolicy.cli import main
out, sys.argv = sys.argv[1], ["hdrpolicy", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}, f)
"""


def loaded(tmp_path: Path, *args: str) -> set[str]:
    """The top-level packages imported by `hdrpolicy ARGS`, which must succeed."""
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(out), *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["code"] in (0, None), proc.stderr
    return set(result["modules"])


@pytest.mark.parametrize(
    "args",
    [("fmt", "--check", TUTORIAL), ("check", "--budget-ms", "0", TUTORIAL)],
    ids=["fmt --check", "check --budget-ms 0"],
)
def test_fmt_and_check_without_analysis_load_neither_z3_nor_shipping(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    modules = loaded(tmp_path, *args)
    assert "lark" in modules and "pydantic" in modules  # it did run
    assert modules & (SHIPPING | {"z3"}) == set()


def test_check_loads_z3_for_its_analysis_and_nothing_for_shipping(tmp_path: Path) -> None:
    # Three rules with findings: the analysis certainly runs.
    modules = loaded(tmp_path, "check", str(EXAMPLES.parent / "readme" / "three.hp"))
    assert "z3" in modules
    assert modules & SHIPPING == set()


def fmt_check_with_cache(cache: Path) -> None:
    """`fmt --check` of the tutorial with XDG_CACHE_HOME=CACHE succeeds quietly."""
    proc = subprocess.run(
        [sys.executable, "-m", "hdrpolicy", "fmt", "--check", TUTORIAL],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_parser_tables_are_cached_and_an_unusable_cache_only_costs_time(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fmt_check_with_cache(cache)
    [tables] = (cache / "hdrpolicy" / "parser").iterdir()
    written = tables.read_bytes()
    fmt_check_with_cache(cache)  # reads them
    assert tables.read_bytes() == written
    for broken in (b"garbage\n", written[:100]):  # not Lark's; cut short
        tables.write_bytes(broken)
        fmt_check_with_cache(cache)
        rebuilt = tables.read_bytes()  # and rewritten (pickles differ from run to run)
        assert rebuilt.partition(b"\n")[0] == written.partition(b"\n")[0]
        assert len(rebuilt) > 1000
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    fmt_check_with_cache(not_a_directory)
