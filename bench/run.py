#!/usr/bin/python3
"""libstochflow vs PyTorch: the whole benchmark comparison in one command (issue 6).

    /usr/bin/python3 bench/run.py --boost --lib-commit HEAD   # full run, ~8 min on 2 cores
    /usr/bin/python3 bench/run.py --smoke         # ~10 s harness check (meson test)

Every measurement runs in a fresh process (bench_c for the library, bench_torch.py for
PyTorch), so each reports its own peak resident set (VmHWM of /proc/self/status; ru_maxrss is
inherited from the parent over fork and exec on Linux, so it is not used). The two
implementations alternate within the run (C first on even repetitions, PyTorch first
on odd ones), every measurement is repeated --reps times, and the threads loop (1, 2)
is inside the repetition loop so slow phases of a noisy machine hit both sides.
The plain BLIS sgemm reference of each training row runs right beside it.

Writes <out-dir>/RESULTS.md (median and min-max spread, ratio libstochflow/PyTorch,
training GFLOP/s against the same-run sgemm GFLOP/s, peak memory, targets),
<out-dir>/results.png (bar chart of the ratios) and <out-dir>/results.json (raw).
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Row definitions: (id, job, params). Widths: 3 hidden layers unless stated.
LOGP_STEPS = 10   # RK4 steps for the log-density rows (4 evaluations per step)
SAMPLE_STEPS = 50


def full_rows():
    rows = []
    for w in (256, 512):
        for b in (256, 2048, 8192):
            rows.append(dict(id=f"train d=2 w={w} B={b}", job="train", d=2, width=w,
                             batch=b))
    rows.append(dict(id="train d=64 w=256 B=1024", job="train", d=64, width=256, batch=1024))
    for b in (256, 8192):
        rows.append(dict(id=f"sample RK4x{SAMPLE_STEPS} d=2 w=256 B={b}", job="sample", d=2,
                         width=256, batch=b, steps=SAMPLE_STEPS))
    rows.append(dict(id="sample dopri5 tol 1e-5 d=2 w=256 B=1024", job="sample", d=2,
                     width=256, batch=1024, solver="dopri5", tol=1e-5))
    for d in (2, 16):
        rows.append(dict(id=f"logp exact RK4x{LOGP_STEPS} d={d} w=256 B=1024", job="logp",
                         d=d, width=256, batch=1024, steps=LOGP_STEPS, trace="exact"))
    rows.append(dict(id=f"logp hutch(1) RK4x{LOGP_STEPS} d=64 w=256 B=1024", job="logp", d=64,
                     width=256, batch=1024, steps=LOGP_STEPS, trace="hutch"))
    return rows


def smoke_rows():
    return [
        dict(id="train d=2 w=64 B=256", job="train", d=2, width=64, batch=256),
        dict(id="sample RK4x5 d=2 w=64 B=256", job="sample", d=2, width=64, batch=256,
             steps=5),
        dict(id="sample dopri5 tol 1e-3 d=2 w=64 B=64", job="sample", d=2, width=64, batch=64,
             solver="dopri5", tol=1e-3),
        dict(id="logp exact RK4x2 d=3 w=64 B=64", job="logp", d=3, width=64, batch=64,
             steps=2, trace="exact"),
        dict(id="logp hutch(1) RK4x2 d=8 w=64 B=64", job="logp", d=8, width=64, batch=64,
             steps=2, trace="hutch"),
    ]


def job_args(row, threads, min_time):
    args = ["--job", row["job"], "--d", str(row["d"]), "--width", str(row["width"]),
            "--layers", str(row.get("layers", 3)), "--batch", str(row["batch"]),
            "--threads", str(threads), "--min-time", str(min_time)]
    if "steps" in row:
        args += ["--steps", str(row["steps"])]
    if "trace" in row:
        args += ["--trace", row["trace"]]
    if "solver" in row:
        args += ["--solver", row["solver"], "--tol", str(row["tol"])]
    return args


def cpu_jiffies():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def wait_quiet(max_wait, threshold):
    """Wait (up to max_wait s) until the machine's CPU use over 0.5 s is below threshold
    (fraction of all CPUs). Returns (last busy fraction, seconds waited)."""
    t0 = time.time()
    if threshold > 1.0:
        return 0.0, 0.0
    while True:
        b0, a0 = cpu_jiffies()
        time.sleep(0.5)
        b1, a1 = cpu_jiffies()
        frac = (b1 - b0) / max(1, a1 - a0)
        if frac < threshold or time.time() - t0 >= max_wait:
            return frac, time.time() - t0


def run_measured(cmd, threads, timeout, quiet):
    """run_one after waiting for a quiet machine; retried while other processes used more
    than quiet['foreign'] of the machine during the measurement. Records 'foreign' (CPU
    seconds of other processes / (wall x CPUs)) and the waits."""
    waited, res = 0.0, None
    for attempt in range(quiet["retries"] + 1):
        busy, w = wait_quiet(quiet["max_wait"], quiet["threshold"])
        waited += w
        b0, _ = cpu_jiffies()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        res = run_one(cmd, threads, timeout)
        wall = time.time() - t0
        b1, _ = cpu_jiffies()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        other = max(0.0, (b1 - b0) / CLK_TCK - own) / max(1e-9, wall * NCPU)
        # Other processes' share beyond the CPUs this job leaves idle: what they must
        # have taken from the job's own threads (other load on a free core is harmless).
        foreign = max(0.0, other - max(0, NCPU - threads) / NCPU)
        res.update(foreign=foreign, other_load=other, waited_s=waited, attempts=attempt + 1)
        if foreign <= quiet["foreign"] or not res.get("ok"):
            break
    return res


def boost_priority():
    """Put this run in its own session, hence its own scheduler autogroup, at nice -19.
    With autogroups (Linux default), plain `nice` only ranks processes within a session,
    so on a machine shared with other sessions the whole group has to be raised. Needs
    root or CAP_SYS_NICE. Returns a description for RESULTS.md."""
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader: raise the existing session's group
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("-19")
        with open("/proc/self/autogroup") as f:
            return f.read().strip()
    except OSError as e:
        return f"failed ({e})"


# OpenMP wait policy of both implementations' processes (--wait-policy). Both sides
# use libgomp (the library's own loops, BLIS's threads, PyTorch's threads), so the
# policy decides how an idle thread waits between parallel regions: 'default' (spin a
# while, then sleep; what a program gets when nobody sets anything), 'passive' (sleep
# at once: every wake-up costs, a lot for small batches) or 'active' (never sleep).
WAIT_POLICY = "default"


def policy_env(env):
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(k, None)
    if WAIT_POLICY != "default":
        env["OMP_WAIT_POLICY"] = WAIT_POLICY.upper()
    return env


def run_one(cmd, threads, timeout):
    env = policy_env(dict(os.environ))
    env["OMP_NUM_THREADS"] = str(threads)
    env["BLIS_NUM_THREADS"] = str(threads)
    t0 = time.time()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout after {timeout} s"}
    res = None
    for line in p.stdout.splitlines()[::-1]:
        line = line.strip()
        if line.startswith("{"):
            try:
                res = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if res is None:
        res = {"ok": False, "error": f"exit {p.returncode}, no JSON; stderr: "
               + p.stderr.strip()[-400:]}
    elif p.returncode != 0 and res.get("ok"):
        res["ok"] = False
        res["error"] = f"exit {p.returncode}"
    res["wall_s"] = time.time() - t0
    return res


PARITY = [dict(d=2, width=256, batch=64, steps=4), dict(d=16, width=64, batch=32, steps=2)]


def run_parity(bench_c, python, out_dir):
    """Same parameters, same batch: library vs PyTorch loss, gradient, v, exact log p."""
    out = []
    for cfg in PARITY:
        f = os.path.join(out_dir, f"parity_d{cfg['d']}.bin")
        c = run_one([bench_c, "--job", "parity", "--d", str(cfg["d"]), "--width",
                     str(cfg["width"]), "--batch", str(cfg["batch"]), "--steps",
                     str(cfg["steps"]), "--out", f], 1, timeout=300)
        if not c.get("ok"):
            out.append(dict(cfg, ok=False, error="bench_c: " + c.get("error", "?")))
            continue
        t = run_one([python, os.path.join(HERE, "bench_torch.py"), "--job", "parity",
                     "--in", f], 1, timeout=300)
        try:
            os.remove(f)
        except OSError:
            pass
        out.append(dict(cfg, ok=bool(t.get("ok")), rel_err=t.get("rel_err"),
                        error=t.get("error")))
        print(f"parity d={cfg['d']} w={cfg['width']}: "
              + ("ok " if t.get("ok") else "FAILED ") + json.dumps(t.get("rel_err")
                                                                  or t.get("error")),
              flush=True)
    return out


def weight_flops(row):
    """2 x sum(in x out) over the dense layers: the GEMM FLOPs of one forward row."""
    d, w, L = row["d"], row["width"], row.get("layers", 3)
    dims = [d + 1] + [w] * L + [d]
    return 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def tangents(row):
    if row["job"] != "logp":
        return 0
    return row["d"] if row.get("trace", "exact") == "exact" else 1


def floor_gemm_rows(row):
    """Rows of the GEMM whose sgemm rate bounds this row's evaluation from below."""
    return min(8192, row["batch"] * (1 + tangents(row)))


def flops_per_call(row):
    """GEMM FLOPs one call (training step / sampling / log-density call) cannot avoid.
    Forward-mode exact trace: the first layer's tangents are columns of W_1 (free), each
    of the d tangents then goes through the L-1 hidden x hidden layers, and only the
    diagonal of the output layer is formed. Hutchinson (1 probe): one tangent through
    every layer. PyTorch's d (or 1) reverse passes cost at least as much."""
    d, w, L, B = row["d"], row["width"], row.get("layers", 3), row["batch"]
    fwd = B * weight_flops(row)
    if row["job"] == "train":
        return 3 * fwd
    nfe = row.get("nfe", 4 * row.get("steps", 0))
    if row["job"] == "sample":
        return nfe * fwd
    if tangents(row) == d and row.get("trace", "exact") == "exact":
        extra = (L - 1) * 2 * B * d * w * w + 2 * B * d * w
    else:
        extra = 2 * B * d * w + (L - 1) * 2 * B * w * w + 2 * B * d * w
    return nfe * (fwd + extra)


def med(v):
    return statistics.median(v) if v else float("nan")


def fmt(x, digits=3):
    if x is None or x != x:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits - 1}f}" if abs(x) >= 1 else f"{x:.{digits}f}"


def spread(v):
    """median (min-max) as text."""
    if not v:
        return "FAIL"
    if len(v) == 1:
        return fmt(v[0])
    return f"{fmt(med(v))} ({fmt(min(v))}-{fmt(max(v))})"


def build_commit(rev):
    """Build bench_c and the library from a clean `git archive` of rev, in
    build-bench-lib-<hash>/ (ignored by git), so that the measured library is exactly
    that commit whatever the working tree holds. Returns (path of bench_c, hash)."""
    h = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", rev], check=True,
                       capture_output=True, text=True).stdout.strip()
    top = os.path.join(ROOT, f"build-bench-lib-{h}")
    src, bld = os.path.join(top, "src"), os.path.join(top, "build")
    exe = os.path.join(bld, "bench", "bench_c")
    if not os.path.exists(exe):
        os.makedirs(src, exist_ok=True)
        arch = subprocess.run(["git", "-C", ROOT, "archive", h], check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=arch, check=True)
        if not os.path.exists(os.path.join(bld, "build.ninja")):
            subprocess.run(["meson", "setup", bld, src, "-Dtests=false"], check=True,
                           capture_output=True)
        subprocess.run(["ninja", "-C", bld, "bench/bench_c"], check=True, capture_output=True)
    return exe, h


def find_bench_c(args):
    if args.bench_c:
        return args.bench_c
    for d in [args.build_dir] if args.build_dir else ["build-bench", "build"]:
        p = os.path.join(ROOT, d, "bench", "bench_c")
        if os.path.exists(p):
            return p
    sys.exit("bench_c not found: build it (ninja -C <builddir>) and pass --build-dir")


def machine_info():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "lib", "include"],
                               capture_output=True, text=True).stdout.strip()
        rev += " (lib/ or include/ modified)" if dirty else ""
    except OSError:
        rev = "?"
    return cpu, os.cpu_count(), rev


def evaluate_targets(rows, agg, threads):
    """List of (target text, measured text, pass bool or None)."""
    out = []

    def r(row):
        return agg.get((row["id"], threads))

    def bound(a):
        if a.get("max_ratio") != a.get("max_ratio"):
            return ""
        return f" (GEMM-floor bound {a['max_ratio']:.2f}x)"

    for row in rows:
        a = r(row)
        if a is None or a["ratio"] != a["ratio"]:
            continue
        job, b = row["job"], row["batch"]
        if job == "train":
            if row["d"] == 2 and b in (256, 8192):
                need = 1.8 if b == 256 else 1.3
                out.append((f"{row['id']}: steps/s >= {need}x PyTorch",
                            f"{a['ratio']:.2f}x" + bound(a), a["ratio"] >= need))
            if a.get("sgemm_frac") == a.get("sgemm_frac"):
                need = 0.8 if b >= 2048 else 0.6 if b >= 256 else None
                if need is not None:
                    out.append((f"{row['id']}: GFLOP/s >= {need:.0%} of same-run sgemm",
                                f"{a['sgemm_frac']:.0%} ({fmt(a['c_gflops'])} of "
                                f"{fmt(a['sgemm'])} GFLOP/s; hidden-only sgemm "
                                f"{fmt(a['sgemm_hidden'])})",
                                a["sgemm_frac"] >= need))
        elif job == "sample" and row.get("solver", "rk4") == "rk4":
            need = 1.5 if b <= 256 else 1.2
            out.append((f"{row['id']}: >= {need}x PyTorch", f"{a['ratio']:.2f}x" + bound(a),
                        a["ratio"] >= need))
        elif job == "logp" and row.get("trace") == "exact":
            out.append((f"{row['id']}: >= 4x PyTorch", f"{a['ratio']:.2f}x" + bound(a),
                        a["ratio"] >= 4))
        if a.get("mem_ratio") == a.get("mem_ratio"):
            out.append((f"{row['id']}: peak RSS <= 0.5x PyTorch",
                        f"{a['mem_ratio']:.2f}x ({a['c_rss']:.0f} vs {a['t_rss']:.0f} MiB)",
                        a["mem_ratio"] <= 0.5))
    return out


def aggregate(rows, results, threads_list):
    agg = {}
    for row in rows:
        for T in threads_list:
            key = (row["id"], T)
            rs = [x for x in results if x["row"] == row["id"] and x["threads"] == T]
            c = [x for x in rs if x["impl"] == "c" and x.get("ok")]
            t = [x for x in rs if x["impl"] == "torch" and x.get("ok")]
            g = [x for x in rs if x["impl"] == "sgemm" and x.get("ok")]
            a = {
                "c_rates": [x["rate"] for x in c], "t_rates": [x["rate"] for x in t],
                "unit": (c or t or [{}])[0].get("unit", ""),
                "errors": [x.get("error", "?") for x in rs if not x.get("ok")],
            }
            a["ratio"] = med(a["c_rates"]) / med(a["t_rates"]) if c and t else float("nan")
            # Paired ratios (the same repetition), for the spread of the ratio.
            pr = []
            for rep in sorted({x["rep"] for x in rs}):
                cc = [x["rate"] for x in c if x["rep"] == rep]
                tt = [x["rate"] for x in t if x["rep"] == rep]
                if cc and tt:
                    pr.append(cc[0] / tt[0])
            a["pair_ratios"] = pr
            a["c_rss"] = med([x["maxrss_kb"] / 1024 for x in c]) if c else float("nan")
            a["t_rss"] = med([x["maxrss_kb"] / 1024 for x in t]) if t else float("nan")
            a["t_rss_import"] = (med([x["rss_import_kb"] / 1024 for x in t])
                                 if t else float("nan"))
            a["c_rss_setup"] = med([x["rss_setup_kb"] / 1024 for x in c]) if c else float("nan")
            a["mem_ratio"] = a["c_rss"] / a["t_rss"] if c and t else float("nan")
            a["c_nfe"] = sorted({x.get("nfe") for x in c if "nfe" in x})
            a["t_nfe"] = sorted({x.get("nfe") for x in t if "nfe" in x})
            # GEMM floor: the unavoidable GEMM FLOPs at the same-run sgemm rate of the
            # hidden shapes; the best rate any implementation could reach on BLIS.
            f = [x for x in rs if x["impl"] == "floor" and x.get("ok")]
            if row["job"] == "train":
                rate = med([x["gflops_hidden"] for x in g]) if g else float("nan")
            else:
                rate = med([x["gflops"] for x in f]) if f else float("nan")
            nfes = a["c_nfe"] or a["t_nfe"]
            per_call = flops_per_call(dict(row, nfe=min(nfes)) if row.get("solver") == "dopri5"
                                      and nfes else row)
            items = 1 if row["job"] == "train" else row["batch"]
            a["floor_rate"] = items / (per_call / (rate * 1e9)) if rate == rate else float("nan")
            a["max_ratio"] = a["floor_rate"] / med(a["t_rates"]) if t else float("nan")
            a["c_floor_frac"] = med(a["c_rates"]) / a["floor_rate"] if c else float("nan")
            a["foreign_max"] = max([x.get("foreign", 0.0) for x in rs] + [0.0])
            if row["job"] == "train":
                a["c_gflops"] = med([x["gflops"] for x in c]) if c else float("nan")
                a["t_gflops"] = med([x["gflops"] for x in t]) if t else float("nan")
                a["sgemm"] = med([x["gflops"] for x in g]) if g else float("nan")
                a["sgemm_hidden"] = med([x["gflops_hidden"] for x in g]) if g else float("nan")
                a["sgemm_frac"] = a["c_gflops"] / a["sgemm"] if c and g else float("nan")
                a["t_sgemm_frac"] = a["t_gflops"] / a["sgemm"] if t and g else float("nan")
            agg[key] = a
    return agg


def write_png(path, rows, agg, threads_list):
    labels = [r["id"] for r in rows]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return write_png_numpy(path, rows, agg, threads_list)
    import numpy as np
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) * len(threads_list) + 1.5))
    y = np.arange(len(rows))
    h = 0.8 / len(threads_list)
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    for i, T in enumerate(threads_list):
        vals = [agg[(r["id"], T)]["ratio"] for r in rows]
        vals = [v if v == v else 0 for v in vals]
        bars = ax.barh(y + (i - (len(threads_list) - 1) / 2) * h, vals, h,
                       label=f"{T} thread{'s' if T > 1 else ''}", color=colors[i % 3])
        for b, v in zip(bars, vals):
            ax.text(v, b.get_y() + b.get_height() / 2, f" {v:.2f}x", va="center", fontsize=7)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speed ratio libstochflow / PyTorch (higher is better)")
    ax.set_title("libstochflow vs PyTorch 1.13 (same computation, same threads)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_png_numpy(path, rows, agg, threads_list):
    """Fallback without matplotlib: plain bars (no text) via a minimal PNG writer."""
    import struct
    import zlib
    W, bar_h, gap = 600, 10, 6
    n = len(rows) * len(threads_list)
    H = n * (bar_h + 2) + len(rows) * gap + 20
    img = [[(255, 255, 255)] * W for _ in range(H)]
    vmax = max([agg[(r["id"], T)]["ratio"] for r in rows for T in threads_list
                if agg[(r["id"], T)]["ratio"] == agg[(r["id"], T)]["ratio"]] + [1.0])
    scale = (W - 20) / vmax
    yy = 10
    cols = [(76, 114, 176), (221, 132, 82)]
    for r in rows:
        for i, T in enumerate(threads_list):
            v = agg[(r["id"], T)]["ratio"]
            v = v if v == v else 0
            for y in range(yy, yy + bar_h):
                for x in range(10, 10 + int(v * scale)):
                    img[y][x] = cols[i % 2]
            yy += bar_h + 2
        yy += gap
    x1 = 10 + int(scale)
    for y in range(H):
        img[y][x1] = (0, 0, 0)
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in img)

    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def write_md(path, cmdline, rows, agg, threads_list, meta, parity, partial=False, boost=None):
    cpu, ncpu, rev, tv, started, dur, reps, min_time, mode = meta
    L = []
    L.append("# libstochflow vs PyTorch: benchmark results\n")
    if partial:
        L.append(f"**Partial: written after {reps} completed repetition(s) of a run that "
                 "did not finish.**\n")
    L.append("Produced by one run of:\n")
    L.append("```\n" + cmdline + "\n```\n")
    L.append(f"- Date: {started} UTC, wall time {dur / 60:.1f} min; machine: {cpu}, "
             f"{ncpu} logical CPUs; library commit {rev}; PyTorch {tv}.")
    L.append(f"- Each cell: median over {reps} fresh processes (min-max in brackets); each "
             f"process warms up, then times calls for >= {min_time} s and reports "
             "work / median call time. The implementations alternate within each "
             "repetition. Ratio = median libstochflow / median PyTorch (higher is better; "
             "for memory lower is better); the bracket after it is the range of the "
             "per-repetition paired ratios.")
    L.append("- Same computation both sides: MLP on [x, t] (3 hidden layers, SiLU, output d, "
             "PyTorch-default uniform init), trigonometric interpolant, loss "
             "mean |v|^2 - 2 dI.v with x0 ~ N(0,I) and t ~ U[0,1] drawn inside every step, "
             "Adam lr 1e-3. Sampling: RK4, fixed steps, x(0) ~ N(0, I). Log-density at "
             "t=1: RK4 backward on (x, log p), same number of velocity evaluations both "
             "sides (NFE column); PyTorch's exact divergence is d autograd passes per "
             "evaluation, Hutchinson is 1 Rademacher probe, 1 VJP per evaluation.")
    L.append("- Threads: STOCHFLOW_PARAM_THREADS = T for the library; BLIS_NUM_THREADS = "
             "OMP_NUM_THREADS = T and torch.set_num_threads(T) for PyTorch (Debian's "
             "PyTorch calls the same BLIS through libblas.so.3). OpenMP wait policy of "
             "both sides: " + (("libgomp's default (OMP_WAIT_POLICY and GOMP_SPINCOUNT "
                               "removed from the environment: idle threads spin a while, "
                               "then sleep)") if WAIT_POLICY == "default" else
                              f"OMP_WAIT_POLICY={WAIT_POLICY.upper()}") + ".")
    L.append("- GFLOP/s of training = 6 x batch x parameters / step time. 'sgemm' = plain "
             "BLIS sgemm, same run, same threads, on the GEMM shapes of one training step "
             "(per layer: forward, input gradient, weight gradient; all layers, including "
             "the thin input (K = d+1) and output (N = d) layers); 'hidden' = the same on "
             "the width x width layers only, i.e. what BLIS reaches on its favourite "
             "shapes.")
    L.append("- 'GEMM floor' = the rate an implementation would reach if it did nothing but "
             "the GEMM FLOPs the computation cannot avoid, at the same-run BLIS sgemm rate "
             "of the hidden (width x width) shapes (training: 6 x batch x weights; sampling: "
             "one forward per evaluation; exact log-density: forward plus d tangents through "
             "the hidden layers, the first layer's tangents being free; Hutchinson: forward "
             "plus one tangent). '(max ratio)' = floor / PyTorch: no BLIS-based "
             "implementation can beat PyTorch by more than this, so a target above it is "
             "out of reach on this machine.")
    if boost:
        L.append(f"- Run with --boost ({boost}): the machine was shared with other busy "
                 "sessions, so the benchmark's scheduler group ran at nice -19 and no "
                 "measurement waited for quiet; others still got some CPU (see 'other "
                 "load'; measurements above 25% were retried once).")
    L.append("- 'other load' = the largest share of the machine's CPU time that other "
             "processes used during any measurement of the row beyond the cores the job "
             "left idle (i.e. taken from the job's own threads; measured from /proc/stat "
             "minus the job's CPU time).\n")
    L.append("Parity (same parameters and batch in both; max relative difference; "
             "tolerances loss 1e-4, gradient 1e-3, v and log p 1e-4):\n")
    for pr in parity:
        res = ("ok" if pr["ok"] else "**FAILED**") + " " + (
            ", ".join(f"{k} {v:.1e}" for k, v in pr["rel_err"].items()) if pr.get("rel_err")
            else str(pr.get("error")))
        L.append(f"- d={pr['d']}, width {pr['width']}, batch {pr['batch']}, exact log p with "
                 f"RK4 x {pr['steps']}: {res}")
    L.append("")
    for T in threads_list:
        L.append(f"## {T} thread{'s' if T > 1 else ''}\n")
        L.append("| row | libstochflow | PyTorch | ratio | GEMM floor (max ratio) | "
                 "lib % of floor | lib GFLOP/s | torch GFLOP/s | sgemm GFLOP/s (all / hidden) "
                 "| lib % of sgemm | NFE lib/torch | other load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            a = agg[(r["id"], T)]
            ratio = "-" if a["ratio"] != a["ratio"] else f"**{a['ratio']:.2f}x**"
            if a["pair_ratios"] and len(a["pair_ratios"]) > 1:
                ratio += f" ({min(a['pair_ratios']):.2f}-{max(a['pair_ratios']):.2f})"
            if r["job"] == "train":
                gf = (fmt(a["c_gflops"]), fmt(a["t_gflops"]),
                      f"{fmt(a['sgemm'])} / {fmt(a['sgemm_hidden'])}",
                      "-" if a["sgemm_frac"] != a["sgemm_frac"] else f"{a['sgemm_frac']:.0%}")
            else:
                gf = ("", "", "", "")
            nfe = ""
            if a["c_nfe"] or a["t_nfe"]:
                nfe = f"{'/'.join(str(int(x)) for x in a['c_nfe'])} / " \
                      f"{'/'.join(str(int(x)) for x in a['t_nfe'])}"
            fl = "-" if a["floor_rate"] != a["floor_rate"] else (
                f"{fmt(a['floor_rate'])} ({a['max_ratio']:.2f}x)")
            ff = "-" if a["c_floor_frac"] != a["c_floor_frac"] else f"{a['c_floor_frac']:.0%}"
            L.append(f"| {r['id']} ({a['unit']}) | {spread(a['c_rates'])} | "
                     f"{spread(a['t_rates'])} | {ratio} | {fl} | {ff} | {gf[0]} | {gf[1]} | "
                     f"{gf[2]} | {gf[3]} | {nfe} | {a['foreign_max']:.0%} |")
        L.append("")
        L.append(f"Peak resident memory ({T} thread{'s' if T > 1 else ''}), MiB, median "
                 "over processes (VmHWM of the whole process; PyTorch's includes the "
                 "~230 MiB of `import torch`, shown separately):\n")
        L.append("| job | libstochflow | PyTorch | ratio | PyTorch after import | "
                 "PyTorch job increment |")
        L.append("|---|---|---|---|---|---|")
        for r in rows:
            a = agg[(r["id"], T)]
            inc = a["t_rss"] - a["t_rss_import"]
            mr = "-" if a["mem_ratio"] != a["mem_ratio"] else f"{a['mem_ratio']:.2f}x"
            L.append(f"| {r['id']} | {fmt(a['c_rss'])} | {fmt(a['t_rss'])} | {mr} | "
                     f"{fmt(a['t_rss_import'])} | {fmt(inc)} |")
        L.append("")
        errs = [(r["id"], e) for r in rows for e in agg[(r["id"], T)]["errors"]]
        if errs:
            L.append("Failures:\n")
            for rid, e in errs:
                L.append(f"- {rid}: {e}")
            L.append("")
    Tt = max(threads_list)
    if mode == "smoke":
        Tt = None  # the smoke rows are not the rows: no target table
    if Tt is not None:
        L.append(f"## Targets (issue 6, {Tt} thread{'s' if Tt > 1 else ''})\n")
        L.append("| target | measured | met |")
        L.append("|---|---|---|")
        for text, meas, ok in evaluate_targets(rows, agg, Tt):
            L.append(f"| {text} | {meas} | {'yes' if ok else '**no**'} |")
        L.append("")
    L.append("![ratios](results.png)\n")
    notes = os.path.join(HERE, "profile.md")
    if os.path.exists(notes) and mode != "smoke":
        with open(notes) as f:
            L.append(f.read())
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def write_outputs(args, rows, results, threads_list, parity, torch_version, started, dur,
                  reps, min_time, reps_done):
    """RESULTS.md, results.png, results.json from the measurements so far."""
    agg = aggregate(rows, results, threads_list)
    cpu, ncpu, rev = machine_info()
    if getattr(args, "lib_desc", None):
        rev = args.lib_desc
    cmdline = "/usr/bin/python3 " + " ".join(shlex.quote(x) for x in
                                               [os.path.relpath(__file__, os.getcwd())]
                                               + sys.argv[1:])
    meta = (cpu, ncpu, rev, torch_version, started, dur, reps_done, min_time,
            "smoke" if args.smoke else "full")
    boost = getattr(args, "boosted", None)
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump({"command": cmdline, "started": started, "parity": parity,
                   "reps_done": reps_done, "reps": reps, "duration_s": dur,
                   "min_time": min_time, "library": rev, "cpu": cpu, "ncpu": ncpu,
                   "torch_version": torch_version, "boost": boost,
                   "results": results}, f, indent=1)
    write_md(os.path.join(args.out_dir, "RESULTS.md"), cmdline, rows, agg, threads_list, meta,
             parity, partial=reps_done < reps, boost=boost)
    write_png(os.path.join(args.out_dir, "results.png"), rows, agg, threads_list)
    return agg


def main():
    p = argparse.ArgumentParser(description="libstochflow vs PyTorch benchmarks")
    p.add_argument("--smoke", action="store_true", help="~10 s check of the harness")
    p.add_argument("--build-dir", help="meson build dir holding bench/bench_c "
                   "(default: build-bench, then build)")
    p.add_argument("--bench-c", help="path of the bench_c program")
    p.add_argument("--lib-commit", help="measure the library of this git commit, built "
                   "from a clean git archive in build-bench-lib-<hash>/ (recommended: "
                   "the working tree may hold others' unfinished edits)")
    p.add_argument("--python", default="/usr/bin/python3", help="python with torch")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--min-time", type=float, default=1.0, help="timed seconds per process")
    p.add_argument("--rows", default="", help="only rows whose id contains this text")
    p.add_argument("--out-dir", default=HERE)
    p.add_argument("--quiet-threshold", type=float, default=0.12,
                   help="start a measurement when machine CPU use is below this fraction")
    p.add_argument("--max-wait", type=float, default=120,
                   help="longest wait for a quiet machine before measuring anyway (s)")
    p.add_argument("--max-foreign", type=float, default=0.08,
                   help="retry a measurement when other processes used more than this "
                   "fraction of the machine during it")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--boost", action="store_true",
                   help="run in a new session whose scheduler autogroup is at nice -19 "
                   "(for a shared, busy machine; needs root), measure without waiting for "
                   "quiet, retry once above 25%% other load")
    p.add_argument("--wait-policy", choices=["default", "passive", "active"],
                   default="default", help="OpenMP wait policy of both sides' processes "
                   "(default: libgomp's own; OMP_WAIT_POLICY and GOMP_SPINCOUNT set in this shell "
                   "are removed)")
    args = p.parse_args()
    global WAIT_POLICY
    WAIT_POLICY = args.wait_policy
    boosted = None
    if args.boost:
        boosted = boost_priority()
        print("priority boost: " + boosted, flush=True)
        args.boosted = boosted
        args.max_wait = 0
        args.quiet_threshold = 1.01
        args.max_foreign = max(args.max_foreign, 0.25)
        args.retries = min(args.retries, 1)
    quiet = {"threshold": args.quiet_threshold, "max_wait": args.max_wait,
             "foreign": args.max_foreign, "retries": args.retries, "boost": boosted}

    lib_desc = None
    if args.lib_commit:
        bench_c, h = build_commit(args.lib_commit)
        lib_desc = f"{h} (clean git archive, built by --lib-commit)"
        print(f"library and bench_c built from commit {h}: {bench_c}", flush=True)
    else:
        bench_c = find_bench_c(args)
    args.lib_desc = lib_desc
    bench_torch = os.path.join(HERE, "bench_torch.py")
    chk = subprocess.run([args.python, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)
    if chk.returncode != 0:
        print("PyTorch is not importable by " + args.python + ": skipping")
        return 77
    torch_version = chk.stdout.strip()
    if args.smoke:
        rows, threads_list, reps, min_time = smoke_rows(), [1], 1, 0.2
        quiet = {"threshold": 1.01, "max_wait": 0, "foreign": 1.0, "retries": 0}
    else:
        rows = full_rows()
        threads_list = [int(x) for x in args.threads.split(",")]
        reps, min_time = args.reps, args.min_time
    if args.rows:
        rows = [r for r in rows if args.rows in r["id"]]
    os.makedirs(args.out_dir, exist_ok=True)

    started = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")
    t_run = time.time()
    parity = run_parity(bench_c, args.python, args.out_dir)
    results = []
    n_total = reps * len(threads_list) * len(rows)
    k = 0
    for rep in range(reps):
        if rep > 0:
            write_outputs(args, rows, results, threads_list, parity, torch_version, started,
                          time.time() - t_run, reps, min_time, rep)
        for T in threads_list:
            for ri, row in enumerate(rows):
                k += 1
                a = job_args(row, T, min_time)
                order = ["c", "torch"] if (rep + ri) % 2 == 0 else ["torch", "c"]
                order.append("sgemm" if row["job"] == "train" else "floor")
                for impl in order:
                    if impl == "c":
                        cmd = [bench_c] + a
                    elif impl == "torch":
                        cmd = [args.python, bench_torch] + a
                    elif impl == "sgemm":
                        cmd = [bench_c] + job_args(dict(row, job="sgemm"), T, min_time)
                    else:
                        cmd = [bench_c] + job_args(dict(row, job="sgemm-fwd",
                                                        batch=floor_gemm_rows(row)),
                                                   T, min(min_time, 0.5))
                    res = run_measured(cmd, T, 900, quiet)
                    res.update(row=row["id"], threads=T, rep=rep, impl=impl)
                    results.append(res)
                    status = (f"{res['rate']:.4g} {res.get('unit', '')}" if res.get("ok")
                              else "FAILED: " + res.get("error", "?")[:200])
                    extra = (f" (other load {res['foreign']:.0%}, waited {res['waited_s']:.0f}s,"
                             f" attempt {res['attempts']})")
                    print(f"[{k}/{n_total} {time.time() - t_run:6.0f}s] rep {rep} T={T} "
                          f"{impl:5s} {row['id']}: {status}{extra}", flush=True)
    agg = write_outputs(args, rows, results, threads_list, parity, torch_version, started,
                        time.time() - t_run, reps, min_time, reps)
    print(f"wrote {args.out_dir}/RESULTS.md, results.png, results.json in "
          f"{time.time() - t_run:.0f} s")

    failed = [x for x in results + parity if not x.get("ok")]
    # The same number of velocity evaluations both sides, or the comparison is unfair.
    bad_nfe = [r["id"] for r in rows for T in threads_list
               if agg[(r["id"], T)]["c_nfe"] and agg[(r["id"], T)]["t_nfe"]
               and agg[(r["id"], T)]["c_nfe"] != agg[(r["id"], T)]["t_nfe"]]
    if bad_nfe:
        print("NFE differs between the implementations for: " + ", ".join(bad_nfe))
    if failed:
        print(f"{len(failed)} measurement(s) failed")
    return 1 if failed or bad_nfe else 0


if __name__ == "__main__":
    sys.exit(main())
