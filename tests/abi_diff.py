#!/usr/bin/python3
"""ABI compatibility: compare the built libstochflow.so against the committed baseline
with libabigail's abidiff (doc/abi.md).

usage: abi_diff.py BASELINE_DIR HEADERS_DIR LIBRARY          check (a meson test)
       abi_diff.py --update BASELINE_DIR HEADERS_DIR LIBRARY write the baseline

The baseline is BASELINE_DIR/<SONAME>.abi (abidw's XML of the public types). The check
  - passes when nothing changed, or when functions were only added (a compatible change:
    the new symbols go in a new version node of lib/stochflow.map);
  - fails when a function was removed or changed (type, parameters, a struct it reaches)
    or a variable changed: an incompatible change needs a new SONAME and a new baseline
    in the same commit;
  - fails when there is no baseline for the library's SONAME (the SONAME was bumped but
    the baseline was not written: run with --update).
Exit 77 (skipped) when abidw/abidiff are not installed (Debian: abigail-tools)."""
import os
import re
import shutil
import subprocess
import sys


def soname(lib):
    out = subprocess.run(["readelf", "-d", lib], check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"\(SONAME\).*\[(.+?)\]", out)
    if not m:
        sys.exit(f"abi_diff: {lib} has no SONAME")
    return m.group(1)


def main(argv):
    update = argv[:1] == ["--update"]
    if update:
        argv = argv[1:]
    if len(argv) != 3:
        sys.exit(__doc__)
    base_dir, headers, lib = argv
    for tool in ("abidw", "abidiff"):
        if shutil.which(tool) is None:
            print(f"1..0 # SKIP {tool} not installed (Debian package abigail-tools)")
            return 77
    lib = os.path.realpath(lib)
    name = soname(lib)
    baseline = os.path.join(base_dir, name + ".abi")
    if update:
        os.makedirs(base_dir, exist_ok=True)
        subprocess.run(["abidw", "--no-corpus-path", "--headers-dir", headers,
                        "--out-file", baseline, lib], check=True)
        print(f"abi_diff: wrote {baseline}")
        return 0
    if not os.path.exists(baseline):
        print(f"abi_diff: no baseline {baseline} for SONAME {name}: an incompatible change "
              f"bumps the SONAME and writes its baseline with\n  {sys.argv[0]} --update "
              f"{base_dir} {headers} LIBRARY")
        return 1
    r = subprocess.run(["abidiff", "--headers-dir2", headers, baseline, lib],
                       capture_output=True, text=True)
    report = r.stdout + r.stderr
    if r.returncode & 3:
        print(report)
        print(f"abi_diff: abidiff failed to run (status {r.returncode})")
        return 1
    m = re.search(r"Functions changes summary: (\d+) Removed, (\d+) Changed", report)
    v = re.search(r"Variables changes summary: (\d+) Removed, (\d+) Changed", report)
    removed = int(m.group(1)) if m else 0
    changed = int(m.group(2)) if m else 0
    vchanged = (int(v.group(1)) + int(v.group(2))) if v else 0
    incompatible = bool(r.returncode & 8) or removed or changed or vchanged
    if report.strip():
        print(report)
    if incompatible:
        print(f"abi_diff: INCOMPATIBLE change against {baseline}: {removed} removed, "
              f"{changed} changed functions. Revert it, or bump the SONAME in "
              f"lib/meson.build and write the new baseline (--update) in the same commit.")
        return 1
    print(f"abi_diff: compatible with {baseline}"
          + (" (functions added)" if r.returncode & 4 else " (no change)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
