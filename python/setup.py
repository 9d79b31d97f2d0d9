"""Builds the os-lively wheel from a checkout of the os-lively repository.

`pip install ./python` runs this: it builds the Rust library with
`cargo build --release --lib`, puts `libos_lively.so.0` inside the
package, generates the protobuf module from proto/os_lively/service.proto
with protoc, and compiles the cffi binding (`os_lively._native`) against
include/os_lively.h, linked to the library with an rpath of `$ORIGIN`.

Environment: CARGO (cargo binary), CARGO_TARGET_DIR (honoured by cargo),
PROTOC (protoc binary), OS_LIVELY_SOURCE_DIR (the repository, when this
directory was copied elsewhere, e.g. by building an sdist first).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cdef_from_header import cdef_from_header  # noqa: E402

# extern "Python" trampolines the package passes to the library.
CALLBACKS = """
extern "Python" void _os_lively_event_cb(void *userdata, const struct lively_event *event);
extern "Python" void _os_lively_release_cb(void *userdata);
extern "Python" void _os_lively_log_cb(void *userdata, lively_log_level level, const char *message);
"""


def repo_root():
    root = Path(os.environ.get("OS_LIVELY_SOURCE_DIR") or HERE.parent).resolve()
    if not (root / "Cargo.toml").is_file() or not (root / "include" / "os_lively.h").is_file():
        sys.exit(
            "os-lively: %s is not an os-lively checkout (no Cargo.toml and include/os_lively.h); "
            "build from the repository (`pip install ./python`) or set OS_LIVELY_SOURCE_DIR" % root
        )
    return root


def crate_version(root):
    m = re.search(r'^version\s*=\s*"([^"]+)"', (root / "Cargo.toml").read_text(), re.M)
    if not m:
        sys.exit("os-lively: no version in %s/Cargo.toml" % root)
    return m.group(1)


def run(cmd, **kw):
    print("os-lively build: " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


class BuildNative(build_ext):
    """cargo build, protoc, then the cffi extension."""

    def run(self):
        root = repo_root()
        cargo = os.environ.get("CARGO", "cargo")
        protoc = os.environ.get("PROTOC", "protoc")
        for tool, what in ((cargo, "cargo (https://rustup.rs)"), (protoc, "protoc (apt-get install protobuf-compiler)")):
            if shutil.which(tool) is None:
                sys.exit("os-lively: building needs %s; %r was not found" % (what, tool))
        manifest = root / "Cargo.toml"
        run([cargo, "build", "--release", "--lib", "--manifest-path", manifest])
        meta = subprocess.run(
            [cargo, "metadata", "--format-version", "1", "--no-deps", "--manifest-path", str(manifest)],
            check=True, stdout=subprocess.PIPE,
        )
        target = Path(json.loads(meta.stdout)["target_directory"])
        built = target / "release" / "libos_lively.so"
        if not built.is_file():
            sys.exit("os-lively: cargo did not produce %s" % built)

        pkg_out = Path(self.build_lib) / "os_lively"
        pkg_out.mkdir(parents=True, exist_ok=True)
        temp = Path(self.build_temp).resolve()
        link_dir = temp / "link"
        link_dir.mkdir(parents=True, exist_ok=True)
        # Link against a copy in a directory of its own (target/release also
        # holds the static archive); the DT_NEEDED entry is the soname,
        # libos_lively.so.0, found next to the extension through $ORIGIN.
        shutil.copy2(built, link_dir / "libos_lively.so")
        shutil.copy2(built, pkg_out / "libos_lively.so.0")

        # The message class, generated (never hand-written): the proto's
        # path os_lively/service.proto lands as os_lively/service_pb2.py.
        run([protoc, "--python_out=%s" % self.build_lib, "-I", root / "proto",
             root / "proto" / "os_lively" / "service.proto"])

        import cffi

        header = root / "include" / "os_lively.h"
        ffi = cffi.FFI()
        ffi.cdef(cdef_from_header(header.read_text()) + CALLBACKS)
        ffi.set_source("os_lively._native", '#include "os_lively.h"')
        c_file = temp / "_native.c"
        ffi.emit_c_code(str(c_file))
        for ext in self.extensions:
            ext.sources = [str(c_file)]
            ext.include_dirs = [str(root / "include")]
            ext.library_dirs = [str(link_dir)]
            ext.libraries = ["os_lively"]
            ext.extra_link_args = ["-Wl,-rpath,$ORIGIN"]
        super().run()


setup(
    version=crate_version(repo_root()),
    ext_modules=[Extension("os_lively._native", sources=[])],
    cmdclass={"build_ext": BuildNative},
)
