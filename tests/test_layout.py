"""The grammar and the Go templates have one home: `grammar/` and `templates/go/` beside `src/`."""

from __future__ import annotations

from conftest import REPO
from hdrpolicy.assets import asset
from hdrpolicy.backend import emit
from hdrpolicy.frontend import parser


def test_the_checkout_reads_its_top_level_directories() -> None:
    assert asset("grammar", "hdrpolicy.lark") == REPO / "grammar" / "hdrpolicy.lark"
    assert asset("templates", "go") == REPO / "templates" / "go"
    assert (REPO / "templates" / "go" / "main.go.jinja").is_file()


def test_no_second_copy_inside_the_package() -> None:
    package = REPO / "src" / "hdrpolicy"
    assert not (package / "grammar").exists()
    assert not (package / "templates").exists()


def test_parser_and_emitter_load_from_there() -> None:
    grammar = (REPO / "grammar" / "hdrpolicy.lark").read_text(encoding="utf-8")
    assert parser._parser().source_grammar == grammar
    loader = emit._environment().loader
    assert loader is not None
    assert sorted(loader.list_templates()) == sorted(
        p.name for p in (REPO / "templates" / "go").glob("*.jinja")
    )
