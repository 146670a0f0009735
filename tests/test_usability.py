"""What a new user tripped on: help, option checks, stdin, directories, BOMs, push messages."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, hdrpolicy
from hdrpolicy import cli
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import evaluate
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.policytests import DEFAULT_HOST, DEFAULT_METHOD, DEFAULT_PATH, Expectation
from hdrpolicy.runner import meets
from hdrpolicy.shipping import oci
from hdrpolicy.shipping.push import ErrorKind, PushError, parse_reference, tag_given
from registry import Registry, skopeo

TUTORIAL = str(EXAMPLES / "header-authorization.hp")
MESSY = 'deny 403   "x" unless header Allow=="true"\n'
TIDY = 'deny 403 "x" unless header allow == "true"\n'


def run_with_stdin(text: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "hdrpolicy", *args], input=text, capture_output=True, check=False
    )


@pytest.mark.parametrize("command", ["compile", "check", "test", "explain", "push", "fmt"])
def test_dash_h_is_help_and_help_shows_plain_metavars(command: str) -> None:
    short, long = hdrpolicy(command, "-h"), hdrpolicy(command, "--help")
    assert short.returncode == 0 and short.stdout == long.stdout
    assert "Usage: " in short.stdout
    assert "<bool>" not in short.stdout and "<list[" not in short.stdout


def test_negative_budgets_are_refused(tmp_path: Path) -> None:
    for args in (
        ("check", "--budget-ms", "-1", TUTORIAL),
        ("compile", TUTORIAL, "--no-build", "--analysis-budget-ms", "-5"),
    ):
        proc = hdrpolicy(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "is not in the range x>=0" in proc.stderr
    assert not (tmp_path / "dist").exists()


def test_explain_takes_curl_style_headers() -> None:
    for header in ("allow: true", "allow:true", "allow=true"):
        proc = hdrpolicy("explain", TUTORIAL, "-H", header)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("decision: allow"), header
    # Only the first separator ends the name; the value keeps the rest.
    proc = hdrpolicy("explain", TUTORIAL, "-H", "allow: a=b", "--format", "json")
    assert '"a=b"' in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-H", "x y: 1"), "`x y` is not a header name"),
        (("-H", ": 1"), "`` is not a header name"),
        (("-H", "allow"), "is not NAME=VALUE or NAME: VALUE"),
        (("--method", ""), "is not an HTTP method"),
        (("--method", "GET /"), "is not an HTTP method"),
    ],
)
def test_explain_refuses_bad_request_parts(args: tuple[str, ...], message: str) -> None:
    proc = hdrpolicy("explain", TUTORIAL, *args)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_fmt_dash_formats_standard_input() -> None:
    proc = run_with_stdin(MESSY.encode(), "fmt", "-")
    assert (proc.returncode, proc.stdout.decode()) == (0, TIDY)
    proc = run_with_stdin(TIDY.encode(), "fmt", "-")
    assert (proc.returncode, proc.stdout.decode()) == (0, TIDY)
    check = run_with_stdin(MESSY.encode(), "fmt", "--check", "-")
    assert check.returncode == 1
    assert check.stdout.decode().startswith("--- <stdin>\n")
    assert run_with_stdin(TIDY.encode(), "fmt", "--check", "-").stdout == b""
    broken = run_with_stdin(b"deny 700\n", "fmt", "-")
    assert broken.returncode == 1 and broken.stdout == b""
    assert b"<stdin>:1:6: error[HP203]" in broken.stderr


def test_check_fmt_and_test_take_directories(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.hp").write_text(MESSY)
    (tmp_path / "one.hp").write_text(TIDY)
    (tmp_path / "notes.txt").write_text("not a policy")
    check = hdrpolicy("check", str(tmp_path))
    assert check.returncode == 0 and "ok: 2 policies checked" in check.stderr
    fmt = hdrpolicy("fmt", "--check", str(tmp_path))
    assert fmt.returncode == 1 and f"--- {tmp_path / 'b' / 'two.hp'}" in fmt.stdout
    assert "one.hp" not in fmt.stdout
    # `test DIR` runs every policy below DIR, in order; neither has a tests file here.
    test = hdrpolicy("test", str(tmp_path))
    assert test.returncode == 1
    errors = [line for line in test.stderr.splitlines() if line.startswith("error:")]
    assert [e.split(":")[1].strip() for e in errors] == [
        str(tmp_path / "b" / "two.hp"),
        str(tmp_path / "one.hp"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("check", "fmt", "test"):
        proc = hdrpolicy(command, str(empty))
        assert proc.returncode == 1 and "no policy files (.hp) below" in proc.stderr


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    policy = tmp_path / "bom.hp"
    policy.write_bytes(b"\xef\xbb\xbf" + TIDY.encode())
    assert hdrpolicy("check", str(policy)).returncode == 0
    assert hdrpolicy("fmt", "--check", str(policy)).returncode == 0
    proc = run_with_stdin(b"\xef\xbb\xbf" + MESSY.encode(), "fmt", "-")
    assert proc.stdout.decode() == TIDY
    # Positions count from after the mark, as editors show them.
    policy.write_bytes(b"\xef\xbb\xbfdeny 700\n")
    assert f"{policy}:1:6: error[HP203]" in hdrpolicy("check", str(policy)).stderr


def test_options_that_would_be_ignored_are_refused(tmp_path: Path) -> None:
    for args, message in (
        (("--no-build", "--namespace", "x"), "--no-build writes no image and no manifests"),
        (("--no-build", "--push", "r.example.com/a:v1"), "so --push would do nothing"),
        (("--no-build", "--phase", "AUTHZ", "--fail-open"), "--phase, --fail-open would do"),
        (("--username", "u", "--insecure"), "--username, --insecure go with --push REF"),
        (("--force",), "--force goes with --push REF"),
    ):
        proc = hdrpolicy("compile", TUTORIAL, *args, cwd=tmp_path)
        assert proc.returncode == 1, args
        assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "dist").exists()


def test_push_says_why_a_directory_has_no_image(tmp_path: Path) -> None:
    tinygo = hdrpolicy(
        "compile", TUTORIAL, "--toolchain", "tinygo", "--no-build", "-o", "t", cwd=tmp_path
    )
    assert tinygo.returncode == 0, tinygo.stderr
    proc = hdrpolicy("push", "t", "r.example.com/a:v1", cwd=tmp_path)
    assert proc.returncode == 1
    assert "the tinygo target's Go sources but no plugin.wasm" in proc.stderr
    assert "--toolchain go" in proc.stderr
    go = hdrpolicy("compile", TUTORIAL, "--no-build", "-o", "g", cwd=tmp_path)
    assert go.returncode == 0, go.stderr
    proc = hdrpolicy("push", "g", "r.example.com/a:v1", cwd=tmp_path)
    assert "no plugin.wasm (compiled with --no-build)" in proc.stderr
    proc = hdrpolicy("push", ".", "r.example.com/a:v1", cwd=tmp_path)
    assert "holds no compiled policy: run `hdrpolicy compile POLICY -o .`" in proc.stderr


def test_an_upper_case_repository_is_explained() -> None:
    with pytest.raises(PushError) as failed:
        parse_reference("r.example.com:5000/Team/Header-Auth:V1")
    assert failed.value.kind is ErrorKind.REFERENCE
    assert "repository names are lower case" in failed.value.message
    assert "write `r.example.com:5000/team/header-auth:V1`" in failed.value.message
    # Not the case: still the general message.
    with pytest.raises(PushError, match="is not a registry reference"):
        parse_reference("r.example.com/Bad Name:v1")


def test_push_without_a_tag_says_it_pushes_latest(registry: Registry, tmp_path: Path) -> None:
    assert tag_given("r.example.com/a:v1") and not tag_given("r.example.com:5000/a")
    out = tmp_path / "dist"
    (tmp_path / "plugin.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00untagged")
    oci.write_image_layout(tmp_path / "plugin.wasm", out / "oci")
    ref = f"{registry.host}/test-oci/untagged"
    login = ["--username", registry.username, "--password-stdin", "--plain-http"]
    proc = subprocess.run(
        [sys.executable, "-m", "hdrpolicy", "push", str(out), ref, *login],
        input=registry.password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert f"note: `{ref}` names no tag: pushing it as `{ref}:latest`" in proc.stderr
    # This directory has no manifests to pin, but the image is there under `latest`.
    inspected = skopeo(
        "inspect", "--tls-verify=false", "--creds", registry.creds, f"docker://{ref}:latest"
    )
    assert oci.read_image_layout(out / "oci").digest in inspected


def test_a_failed_case_shows_the_response_header_it_got() -> None:
    checked = check_source(
        Source("p.hp", 'deny 429 "slow" with header retry-after = "30" when header a exists\n'),
        "p",
    )
    assert checked.policy is not None
    decision = evaluate(checked.policy, [(b":method", b"GET"), (b"a", b"1")])
    wrong = Expectation(allow=False, status=429, headers=(("Retry-After", "60"),))
    assert meets(decision, wrong) == (
        "expected header Retry-After: '60' but the response has Retry-After: '30'"
    )
    missing = Expectation(allow=False, status=429, headers=(("x-why", "slow"),))
    assert meets(decision, missing) == (
        "expected header x-why: 'slow' but the response has no x-why"
    )


def test_explain_defaults_are_a_test_cases_defaults() -> None:
    parameters = inspect.signature(cli.explain).parameters
    defaults = [parameters[name].default for name in ("method", "path", "host")]
    assert defaults == [DEFAULT_METHOD, DEFAULT_PATH, DEFAULT_HOST]
