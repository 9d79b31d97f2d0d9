#!/usr/bin/env python3
"""Checks the declared MSRV (`rust-version` in Cargo.toml) is honest.

Only one toolchain is installable here, so the check is what can be shown
without the old compiler:
  - the library and the CLI declare the same rust-version;
  - no crate either builds on (normal and build dependencies, as locked in
    Cargo.lock) declares a higher rust-version (cargo would refuse it);
  - our code's std API use is checked by clippy's `incompatible_msrv` lint,
    which reads rust-version and runs in scripts/test.sh's clippy step
    (-D warnings); edition 2024 itself needs 1.85, the declared floor.
Exit status 1 with the offending crates named.
"""

import json
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in v.split(".")) + (0,) * (3 - len(v.split(".")))


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"], text=True))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    ours = [packages[i] for i in meta["workspace_members"]]
    declared = {p["name"]: p.get("rust_version") for p in ours}
    if len(set(declared.values())) != 1 or None in declared.values():
        sys.exit("msrv: the workspace's packages must declare one rust-version: %s" % declared)
    msrv = next(iter(declared.values()))

    too_new = []
    seen = set()
    stack = [p["id"] for p in ours]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        p = packages[pid]
        if p.get("rust_version") and version(p["rust_version"]) > version(msrv):
            too_new.append("%s %s (rust-version %s)" % (p["name"], p["version"], p["rust_version"]))
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    if too_new:
        sys.exit("msrv: rust-version %s is below what these dependencies need:\n  %s"
                 % (msrv, "\n  ".join(sorted(too_new))))
    print("msrv: rust-version %s covers %d crates" % (msrv, len(seen)))


if __name__ == "__main__":
    main()
