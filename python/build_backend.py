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

The platform tag. A wheel that pip installs on every maintained Linux is
`manylinux2014` (glibc 2.17: RHEL 7 and everything newer), the
`compatibility` of pyproject.toml; the library's glibc symbols allow it
only when it is linked against an old glibc, which `zig cc` does without
a container (maturin's `--zig`). So:

- with zig at hand (the `ziglang` package importable in the build
  environment, `zig` on PATH, or ZIG_COMMAND set), the wheel is built
  with `--zig --compatibility manylinux2014`;
- `-C zig=true` (pip's `--config-settings`) asks for that: the build
  environment then gets `ziglang` (from PyPI) as a build requirement,
  and a build without zig fails instead of falling back;
- otherwise (`pip install ./python` on a machine without zig) the wheel
  is built for this machine alone and tagged plain `linux`: pip installs
  it here; it is not one to hand to other machines.

A caller's own maturin arguments (`-C build-args=...` or
MATURIN_PEP517_ARGS) replace all of this.
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
_maturin_get_requires_for_build_wheel = get_requires_for_build_wheel


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


def crate_root() -> Path:
    """The crate's directory: `[tool.maturin] manifest-path`'s, which is
    `..` in a checkout (python/ beside the crate) and `.` in the sdist
    (maturin puts pyproject.toml beside Cargo.toml there)."""
    import re

    m = re.search(r'^manifest-path\s*=\s*"([^"]+)"', (HERE / "pyproject.toml").read_text(), re.M)
    return (HERE / (m.group(1) if m else "Cargo.toml")).resolve().parent


def write_cffi_header() -> Path:
    """Writes `<target dir>/header.h` for maturin (only when it changed, so
    an unchanged header leaves no new mtime behind)."""
    root = crate_root()
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


#: The zig the wheel is linked with (`-C zig=true`): the version tested
#: with this maturin (zig releases have changed what `zig cc` does to C
#: code: 0.14's UBSan runtime broke some maturin builds), so a new one is
#: tried before it is pinned.
ZIGLANG_REQUIREMENT = "ziglang==0.17.1"


def _setting(config_settings, name):
    value = (config_settings or {}).get(name)
    if isinstance(value, list):  # pip passes a repeated key as a list
        value = value[-1]
    return value


def _zig_requested(config_settings) -> bool:
    value = _setting(config_settings, "zig")
    if value is None:
        value = os.environ.get("OSLIVELY_WHEEL_ZIG", "")
    value = str(value).strip().lower()
    if value in ("", "0", "false", "no", "auto"):
        return False
    if value in ("1", "true", "yes"):
        return True
    sys.exit("os-lively: the zig setting is true or false, not %r" % value)


def _zig_command():
    """How maturin should run zig, or None: ZIG_COMMAND, `zig` on PATH,
    else the `ziglang` package of this interpreter (maturin itself would
    look for it under `python3` on PATH, which in pip's isolated build
    environment is not this interpreter)."""
    if os.environ.get("ZIG_COMMAND"):
        return os.environ["ZIG_COMMAND"]
    import shutil

    if shutil.which("zig"):
        return "zig"
    import importlib.util

    if importlib.util.find_spec("ziglang") is not None:
        return "%s -m ziglang" % sys.executable
    return None


def _caller_chose(config_settings) -> bool:
    return bool(_setting(config_settings, "maturin.build-args") or _setting(config_settings, "build-args")
                or os.environ.get("MATURIN_PEP517_ARGS"))


def _with_platform_tag(config_settings):
    """The maturin arguments for the platform tag (see the module's
    docstring); maturin's PEP 517 hooks would otherwise tag the wheel
    `linux` without checking it."""
    settings = dict(config_settings or {})
    if _caller_chose(settings):
        return settings
    zig = _zig_command()
    if zig is not None:
        os.environ["ZIG_COMMAND"] = zig
        settings["maturin.build-args"] = "--zig --compatibility %s" % _COMPATIBILITY
    elif _zig_requested(settings):
        sys.exit("os-lively: zig=true, but no zig was found (pip install %s, or put zig on PATH)"
                 % ZIGLANG_REQUIREMENT)
    else:
        sys.stderr.write("os-lively: no zig found: building a wheel for this machine only (tag `linux`); "
                         "for a %s wheel build with -C zig=true\n" % _COMPATIBILITY)
        settings["maturin.build-args"] = "--compatibility off"
    return settings


def get_requires_for_build_wheel(config_settings=None):  # noqa: F811
    extra = [ZIGLANG_REQUIREMENT] if _zig_requested(config_settings) else []
    return list(_maturin_get_requires_for_build_wheel(config_settings)) + extra


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
