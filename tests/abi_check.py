#!/usr/bin/python3
"""ABI hygiene: the exported symbols of libstochflow.so, the names in the linker
version script and the functions the public header declares must be the same set,
and all of them must carry the stochflow_ prefix.

usage: abi_check.py HEADER MAPFILE LIBRARY"""
import re
import subprocess
import sys


def header_functions(path):
    text = open(path).read()
    # STOCHFLOW_API <return type> <name>(   (declarations may span lines)
    return set(re.findall(r"^STOCHFLOW_API\s+[^;(]*?\b(\w+)\s*\(", text, re.M))


def map_symbols(path):
    text = re.sub(r"#.*", "", open(path).read())
    names = set()
    for block in re.findall(r"global:(.*?)(?:local:|\})", text, re.S):
        names |= set(re.findall(r"([A-Za-z_]\w*)\s*;", block))
    return names


def exported(path):
    out = subprocess.run(["nm", "-D", "--defined-only", path], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDRBVW":
            names.add(parts[2].split("@")[0])
    return {n for n in names if not n.startswith("STOCHFLOW_")}  # version nodes


def main():
    header, mapfile, lib = sys.argv[1:4]
    h, m, e = header_functions(header), map_symbols(mapfile), exported(lib)
    ok = True
    for name, got in (("version script", m), ("nm -D", e)):
        if got != h:
            ok = False
            print(f"{name} differs from the header:")
            for s in sorted(h - got):
                print(f"  missing from {name}: {s}")
            for s in sorted(got - h):
                print(f"  not in the header: {s}")
    bad = sorted(s for s in h | e if not s.startswith("stochflow_") or s.startswith("stochflow__"))
    if bad:
        ok = False
        print("symbols without the public stochflow_ prefix:", ", ".join(bad))
    print(f"{len(h)} public functions; header, version script and exports "
          f"{'agree' if ok else 'DISAGREE'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
