"""One error model: operational errors share `HdrpolicyError`, and the CLI renders them once."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hdrpolicy
from hdrpolicy import cli
from hdrpolicy.backend import build, compiler
from hdrpolicy.errors import HdrpolicyError
from hdrpolicy.proxy import envoy
from hdrpolicy.shipping import manifests, oci, push
from hdrpolicy.shipping.redact import MASK

PACKAGE = Path(hdrpolicy.__file__).parent
# Control flow inside a stage, never shown to a user.
INTERNAL = {"Unsupported", "BudgetSpent", "_Stop", "KeepStaging"}


def test_every_operational_error_is_an_hdrpolicy_error() -> None:
    for error in (
        build.BuildError,
        build.ToolchainMissing,
        compiler.SwitchFailed,
        manifests.ManifestError,
        oci.ImageError,
        push.PushError,
        envoy.EnvoyError,
        envoy.EnvoyMissing,
    ):
        assert issubclass(error, HdrpolicyError), error
    assert push.PushError("x").message == "x" and push.PushError("x").output == ""


def test_no_other_exception_class_in_the_package() -> None:
    """A new failure a user can meet derives from HdrpolicyError, or the CLI calls it a bug."""
    others = []
    for module in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id == "Exception" for b in node.bases
            ):
                others.append(node.name)
    assert set(others) == INTERNAL | {"HdrpolicyError"}


def test_the_cli_catches_no_operational_error_itself() -> None:
    """The commands let them rise to the one renderer (`cli.report_error`)."""
    caught = set()
    for node in ast.walk(ast.parse(inspect.getsource(cli))):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            caught.update(ast.unparse(node.type).replace("(", "").replace(")", "").split(", "))
    assert caught == {"OSError", "BuildError", "HdrpolicyError", "Exception"}


@pytest.fixture
def failing_command() -> Iterator[list[Exception]]:
    """A command added for the test that raises the given error."""
    raised: list[Exception] = []

    @cli.app.command(name="test-fail")
    def fail() -> None:
        raise raised[0]

    yield raised
    cli.app.registered_commands = [c for c in cli.app.registered_commands if c.name != "test-fail"]


def test_one_rendering_redacted_exit_1(failing_command: list[Exception]) -> None:
    failing_command.append(
        build.BuildError("fetch from https://bob:hunter2@example.com failed", "tool said: no")
    )
    result = CliRunner().invoke(cli.app, ["test-fail"])
    assert result.exit_code == 1 and not isinstance(result.exception, build.BuildError)
    assert result.output == (
        f"error: fetch from https://bob:{MASK}@example.com failed\ntool said: no\n"
    )


def test_any_other_exception_is_an_internal_error(failing_command: list[Exception]) -> None:
    failing_command.append(ZeroDivisionError("boom"))
    result = CliRunner().invoke(cli.app, ["test-fail"])
    assert isinstance(result.exception, ZeroDivisionError)  # `main` makes it exit 70
