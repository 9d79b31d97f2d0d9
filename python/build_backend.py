"""The PEP 517 build backend of the os-lively wheel: maturin, plus the
one thing maturin's cffi mode cannot derive by itself.

maturin (`bindings = "cffi"`, see pyproject.toml) builds the Rust library
with cargo and packages it with the Python sources as a `py3-none`
manylinux wheel (cffi's ABI mode: no compiled extension, so one wheel
serves every CPython 3). It makes the cffi declarations from a header:
`<cargo target dir>/header.h` if that file exists, else a fresh cbindgen
run over the crate. cffi cannot parse our header as cbindgen writes it
(preprocessor conditionals, the `LIVELY_MUST_USE` attribute, a
`UINT64_MAX` constant), so before delegating every hook to maturin this
writes that header.h: include/os_lively.h turned into plain declarations
by cdef_from_header.py. `pip install ./python`, `pip wheel ./python` and
`python -m build python` all come through here; a direct `maturin build`
works once this has run (`python build_backend.py` writes the header).

The protobuf module (src/os_lively/service_pb2.py) is committed, not
generated here, so neither building nor installing needs protoc for it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cdef_from_header import cdef_from_header  # noqa: E402

from maturin import (  # noqa: E402,F401 (the hooks pip calls)
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)

try:  # PEP 660 (pip install -e), in the maturin versions that have it
    from maturin import build_editable, get_requires_for_build_editable  # noqa: F401
except ImportError:
    pass

_maturin_build_wheel = build_wheel


def _read_compatibility() -> str:
    """`[tool.maturin] compatibility` from pyproject.toml (one line, read
    without a TOML parser: Python 3.9 and 3.10 have none built in)."""
    import re

    text = (HERE / "pyproject.toml").read_text()
    m = re.search(r'^compatibility\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        sys.exit("os-lively: no [tool.maturin] compatibility in %s" % (HERE / "pyproject.toml"))
    return m.group(1)


_COMPATIBILITY = _read_compatibility()


def cargo_target_dir(manifest: Path) -> Path:
    """The target directory cargo (and so maturin) uses for `manifest`."""
    cargo = os.environ.get("CARGO", "cargo")
    try:
        out = subprocess.run(
            [cargo, "metadata", "--format-version", "1", "--no-deps", "--manifest-path", str(manifest)],
            check=True, stdout=subprocess.PIPE,
        ).stdout
    except FileNotFoundError:
        sys.exit("os-lively: building the wheel needs cargo (https://rustup.rs); %r was not found" % cargo)
    return Path(json.loads(out)["target_directory"])


def write_cffi_header() -> Path:
    """Writes `<target dir>/header.h` for maturin (only when it changed, so
    an unchanged header leaves no new mtime behind)."""
    root = HERE.parent
    header = root / "include" / "os_lively.h"
    if not header.is_file():
        sys.exit("os-lively: %s is missing; build from a checkout of the os-lively repository" % header)
    text = cdef_from_header(header.read_text())
    target = cargo_target_dir(root / "Cargo.toml")
    target.mkdir(parents=True, exist_ok=True)
    out = target / "header.h"
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)
    return out


def _with_platform_tag(config_settings):
    """maturin's PEP 517 hooks tag wheels `linux_*` (`--compatibility
    off`) unless told otherwise; `maturin build` reads `compatibility`
    from pyproject.toml. Pass the same, so `pip wheel ./python` gives the
    manylinux wheel `maturin build` gives (unless the caller chose)."""
    settings = dict(config_settings or {})
    if "maturin.build-args" not in settings and "build-args" not in settings \
            and not os.environ.get("MATURIN_PEP517_ARGS"):
        settings["maturin.build-args"] = "--compatibility %s" % _COMPATIBILITY
    return settings


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    write_cffi_header()
    return _maturin_build_wheel(wheel_directory, _with_platform_tag(config_settings), metadata_directory)


if "build_editable" in globals():
    _maturin_build_editable = build_editable

    def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: F811
        write_cffi_header()
        return _maturin_build_editable(wheel_directory, config_settings, metadata_directory)


if __name__ == "__main__":
    print(write_cffi_header())
