#!/usr/bin/env python3
"""Check every binding's view of the C ABI against include/stochflow.h.

For each function the Python (ctypes table), Rust (-sys extern block) and Julia (ccall
sites) bindings use, the header must declare it with the same number of arguments and
the same argument and return kinds (int32, size_t, uint64, double, pointer, ...). The
Python and Rust bindings must also cover every header function (or list it as
deliberately unbound), and their integer constants must equal the header's #defines, as
must the Julia file's trainer keys (TRAINER_PARAMS, TRAINER_STATS).

Usage: check_symbols.py <source root>     (exit 0 = consistent, 1 = mismatch)
Run by `meson test bindings-symbols`. Needs nothing but the standard library.
"""

import os
import re
import sys

# Kinds every language is normalised to.
C_KINDS = {
    "int": "i32", "size_t": "usize", "uint64_t": "u64", "uint32_t": "u32", "double": "f64",
    "float": "f32", "void": "void",
}


def strip_c_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def c_kind(decl):
    """Kind of a C parameter or return declaration (name may be included)."""
    decl = decl.strip()
    if "*" in decl or "[" in decl or re.search(r"\b\w+_fn\b", decl):
        return "ptr"  # data pointers, arrays, strings, handles and callback typedefs
    words = [w for w in re.findall(r"\w+", decl) if w not in ("const", "STOCHFLOW_API")]
    for w in words:
        if w in C_KINDS:
            return C_KINDS[w]
    raise ValueError("unknown C type in %r" % decl)


def parse_header(path):
    """name -> (return kind, [argument kinds]) and the integer #defines."""
    text = open(path, encoding="utf-8").read()
    defines = {}
    for m in re.finditer(r"^#define\s+(STOCHFLOW_\w+)\s+\(?(-?\d+)\)?", text, flags=re.M):
        defines[m.group(1)] = int(m.group(2))
    body = strip_c_comments(text)
    funcs = {}
    for m in re.finditer(r"STOCHFLOW_API\s+([^;{]*?)\b(stochflow_\w+)\s*\(([^)]*)\)\s*;", body):
        ret, name, args = m.group(1), m.group(2), m.group(3).strip()
        arglist = [] if args in ("", "void") else [a for a in args.split(",")]
        funcs[name] = (c_kind(ret), [c_kind(a) for a in arglist])
    return funcs, defines


# ---- Python (ctypes) ------------------------------------------------------------------


def python_view(root):
    import ctypes
    import importlib.util
    # Load _capi.py on its own: importing the package would open the library.
    path = os.path.join(root, "bindings", "python", "stochflow", "_capi.py")
    spec = importlib.util.spec_from_file_location("stochflow_capi_check", path)
    _capi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_capi)

    def kind(t):
        if t is None:
            return "void"
        if t in (ctypes.c_char_p, ctypes.c_void_p) or hasattr(t, "_type_") and \
                isinstance(t._type_, type):
            return "ptr"
        size = ctypes.sizeof(t)
        code = t._type_
        if code in "dD":
            return "f64"
        if code == "f":
            return "f32"
        signed = code.islower()
        return {(4, True): "i32", (4, False): "u32", (8, False): "u64"}.get(
            (size, signed), "?%s" % code)

    funcs = {}
    for name, (ret, args) in _capi.PROTOTYPES.items():
        # ctypes.c_size_t and c_uint64 are the same class on LP64 (both c_ulong), so
        # Python is compared with size_t and uint64_t merged ("u64"), see compare().
        funcs[name] = (kind(ret), [kind(a) for a in args])
    return funcs, dict(_capi.CONSTANTS), set(_capi.NOT_BOUND)


# ---- Rust (-sys crate) ----------------------------------------------------------------

RUST_KINDS = {
    "c_int": "i32", "i32": "i32", "size_t": "usize", "usize": "usize", "u64": "u64",
    "u32": "u32", "f64": "f64", "c_double": "f64", "f32": "f32", "()": "void",
}


def rust_kind(t):
    t = t.strip()
    if t.startswith("*") or t.startswith("Option<") or t.endswith("_fn"):
        return "ptr"
    return RUST_KINDS.get(t, "?" + t)


def rust_view(root):
    path = os.path.join(root, "bindings", "rust", "stochflow-sys", "src", "lib.rs")
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"//[^\n]*", " ", text)
    funcs = {}
    for m in re.finditer(r"pub fn (stochflow_\w+)\s*\(([^)]*)\)\s*(->\s*([^;]+))?;", text):
        name, args, ret = m.group(1), m.group(2), m.group(4) or "()"
        # split on commas that are not inside <...> or (...)
        parts, depth, cur = [], 0, ""
        for ch in args:
            if ch in "<(":
                depth += 1
            elif ch in ">)":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            parts.append(cur)
        kinds = [rust_kind(p.split(":", 1)[1]) for p in parts if p.strip()]
        funcs[name] = (rust_kind(ret), kinds)
    consts = {}
    for m in re.finditer(r"pub const (STOCHFLOW_\w+)\s*:\s*\w+\s*=\s*(-?\d+)\s*;", text):
        consts[m.group(1)] = int(m.group(2))
    not_bound = set(re.findall(r'"(stochflow_\w+)"', text.split("NOT_BOUND", 1)[1])) \
        if "NOT_BOUND" in text else set()
    return funcs, consts, not_bound


# ---- Julia (ccall sites) --------------------------------------------------------------

JULIA_KINDS = {
    "Cint": "i32", "Int32": "i32", "Csize_t": "usize", "UInt64": "u64", "UInt32": "u32",
    "Cdouble": "f64", "Float64": "f64", "Cfloat": "f32", "Float32": "f32", "Cvoid": "void",
    "Nothing": "void",
}


def julia_kind(t):
    t = t.strip()
    if t.startswith(("Ptr{", "Ref{", "Cstring")):
        return "ptr"
    return JULIA_KINDS.get(t, "?" + t)


def julia_view(root):
    path = os.path.join(root, "bindings", "julia", "src", "StochFlow.jl")
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"#[^\n]*", " ", text)
    calls = {}
    # ccall((:name, LIB), RetType, (ArgTypes...,), args...)
    for m in re.finditer(r"ccall\(\(:(stochflow_\w+),\s*\w+\),\s*([^,]+),\s*\(", text):
        name, ret = m.group(1), m.group(2)
        i, depth, start = m.end(), 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        inner = text[start:i - 1]
        parts, depth, cur = [], 0, ""
        for ch in inner:
            if ch in "{(":
                depth += 1
            elif ch in "})":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            parts.append(cur)
        sig = (julia_kind(ret), [julia_kind(p) for p in parts if p.strip()])
        calls.setdefault(name, []).append(sig)
    return calls


def julia_trainer_constants(root):
    """The Julia file's trainer keys (Dict entries `:name => value` of TRAINER_PARAMS and
    TRAINER_STATS) as the header names they stand for, STOCHFLOW_TRAINER_NAME and
    STOCHFLOW_TRAINER_STAT_NAME."""
    path = os.path.join(root, "bindings", "julia", "src", "StochFlow.jl")
    text = re.sub(r"#[^\n]*", " ", open(path, encoding="utf-8").read())
    out = {}
    for table, prefix in (("TRAINER_PARAMS", "STOCHFLOW_TRAINER_"),
                          ("TRAINER_STATS", "STOCHFLOW_TRAINER_STAT_")):
        m = re.search(r"const %s = Dict\((.*?)\)" % table, text, flags=re.S)
        if m is None:
            continue
        for name, value in re.findall(r":(\w+)\s*=>\s*(-?\d+)", m.group(1)):
            out[prefix + name.upper()] = int(value)
    return out


def merge_lp64(sig):
    return (sig[0].replace("usize", "u64"), [k.replace("usize", "u64") for k in sig[1]])


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    header, defines = parse_header(os.path.join(root, "include", "stochflow.h"))
    errors = []

    def compare(lang, name, sig):
        if name not in header:
            errors.append("%s: %s is not declared in stochflow.h" % (lang, name))
            return
        want = header[name]
        if lang == "python":  # see python_view(): size_t and uint64_t look alike
            sig, want = merge_lp64(sig), merge_lp64(want)
        if len(sig[1]) != len(want[1]):
            errors.append("%s: %s takes %d arguments, the header says %d"
                          % (lang, name, len(sig[1]), len(want[1])))
        elif sig != want:
            errors.append("%s: %s has kinds %s -> %s, the header says %s -> %s"
                          % (lang, name, sig[1], sig[0], want[1], want[0]))

    counts = {}
    for lang, view in (("python", python_view), ("rust", rust_view)):
        funcs, consts, not_bound = view(root)
        counts[lang] = len(funcs)
        for name, sig in funcs.items():
            compare(lang, name, sig)
        for name in sorted(set(header) - set(funcs) - not_bound):
            errors.append("%s: header function %s is neither bound nor listed in NOT_BOUND"
                          % (lang, name))
        for name in sorted(not_bound & set(funcs)):
            errors.append("%s: %s is bound but also listed in NOT_BOUND" % (lang, name))
        for name, value in consts.items():
            if defines.get(name) != value:
                errors.append("%s: constant %s = %d, the header says %s"
                              % (lang, name, value, defines.get(name)))
        for name in sorted(set(defines) - set(consts)):
            if not name.startswith("STOCHFLOW_VERSION"):
                errors.append("%s: header constant %s is missing" % (lang, name))
    jl = julia_view(root)
    counts["julia"] = len(jl)
    for name, sigs in jl.items():
        for sig in sigs:
            compare("julia", name, sig)
    for name, value in julia_trainer_constants(root).items():
        if defines.get(name) != value:
            errors.append("julia: constant %s = %d, the header says %s"
                          % (name, value, defines.get(name)))
    for e in errors:
        print("MISMATCH", e)
    print("header: %d functions, %d constants; checked python %d, rust %d, julia %d functions"
          % (len(header), len(defines), counts["python"], counts["rust"], counts["julia"]))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
