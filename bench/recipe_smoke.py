#!/usr/bin/python3
"""Smoke test of the recipe bench's tools (suite 'bench', a few seconds):

  - recipe_bench's exact velocity of a mixture (--check-oracle): its divergence agrees
    with central differences of its velocity, and E[(dI/dt - v*) . v*] = 0 within four
    standard errors, the property that makes v* the loss's minimizer;
  - --save-params then --load-params gives back the same model (the same KL, every digit);
  - --rotate: the run's own check of its rotation (orthogonal; the rotated draws carry the
    mixture's density of the unrotated ones) passes and the run scores;
  - when PyTorch is importable: weights trained by recipe_torch.py load into the library
    (--load-params) and score better than PyTorch's untrained network, which a wrong
    parameter layout would not; recipe_arch_torch.py's exact log-density matches the
    closed form of linear fields (--self-check), its residual network trains and scores,
    and its exact mixture field scores KL ~ 0, with --rotate moving the same points and
    the hybrids at S = 0 being the exact field and the model.

    /usr/bin/python3 bench/recipe_smoke.py BUILD/bench/recipe_bench
"""
import math
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from recipe_vs_torch import fields  # noqa: E402  (one parser of recipe_bench's lines)


def bench(rb, *args):
    out = subprocess.run([rb, *args], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def main(argv):
    rb = argv[0]
    failures = []
    lines = bench(rb, "gmm5", "--check-oracle")
    if len(lines) != 3:
        failures.append(f"oracle: {len(lines)} lines instead of 3 (t = 0.1, 0.5, 0.9)")
    for line in lines:
        m = re.search(r"div_vs_fd_max_abs=(\S+) E\[\(dI-v\*\)\.v\*\]=(\S+) \+- (\S+)", line)
        if not m:
            failures.append("oracle: unexpected line " + line)
            continue
        div, mean, se = (float(v) for v in m.groups())
        if not (div < 1e-6 and abs(mean) < 4 * se):
            failures.append("oracle: " + line)
    print("oracle checked", flush=True)
    # --rotate checks its rotation (orthogonal, density carried) before it trains
    rot = fields(bench(rb, "gmm5", "--rotate", "--width", "16", "--steps", "20", "--eval-n", "20")[-1])
    if rot["target"] != "gmm5r" or not math.isfinite(float(rot["kl"])):
        failures.append(f"--rotate: {rot}")
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "p.bin")
        net = ["--width", "32", "--depth", "3", "--eval-n", "300"]
        trained = fields(bench(rb, "gmm5", *net, "--steps", "300", "--save-params", p)[-1])
        loaded = fields(bench(rb, "gmm5", *net, "--load-params", p)[-1])
        if trained["kl"] != loaded["kl"]:
            failures.append(f"round trip: KL {trained['kl']} trained, {loaded['kl']} loaded")
        print("round trip", trained["kl"], loaded["kl"], flush=True)
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch not importable: its part skipped")
            torch = None
        if torch is not None:
            g = os.path.join(tmp, "g.txt")
            bench(rb, "gmm5", "--dump-target", g)
            kl = {}
            for name, seconds in (("untrained", "1e-9"), ("trained", "3")):
                w = os.path.join(tmp, name + ".bin")
                subprocess.run([sys.executable, os.path.join(HERE, "recipe_torch.py"), "gmm5",
                                "--gmm", g, "--seconds", seconds, "--out", w, "--width", "32",
                                "--depth", "3", "--batch", "256", "--lr", "2e-3",
                                "--sched", "cosine"], check=True, capture_output=True)
                kl[name] = float(fields(bench(rb, "gmm5", *net, "--load-params", w)[-1])["kl"])
            print("PyTorch's weights in the library: KL", kl, flush=True)
            if not kl["trained"] < 0.5 * kl["untrained"]:
                failures.append(f"PyTorch's weights: KL {kl}")
            arch = os.path.join(HERE, "recipe_arch_torch.py")
            r = subprocess.run([sys.executable, arch, "--self-check"], capture_output=True,
                               text=True)
            print(r.stdout.strip(), flush=True)
            if r.returncode:
                failures.append("recipe_arch_torch.py's log-density against linear fields")
            out = subprocess.run([sys.executable, arch, "gmm5", "--gmm", g, "--arch", "adaln",
                                  "--width", "16", "--blocks", "1", "--seconds", "0.5",
                                  "--eval-n", "16", "--rk4", "4"], check=True,
                                 capture_output=True, text=True).stdout
            f = fields(out.splitlines()[-1])
            print("residual network in PyTorch:", out.strip(), flush=True)
            if not (int(f["steps"]) > 0 and math.isfinite(float(f["kl"]))):
                failures.append(f"recipe_arch_torch.py: {out.strip()}")
            # the mixture's exact field (rotated) scored by the same evaluator: KL ~ 0; the
            # hybrids at S = 0 are the exact field (early) and the model (late) everywhere;
            # the rotated points are the unrotated ones moved, so their mean log p is theirs
            runs = {}
            for rot in ("--rotate", None):
                out = subprocess.run([sys.executable, arch, "gmm5", "--gmm", g, "--arch", "affine",
                                      "--width", "16", "--blocks", "1", "--seconds", "0.5",
                                      "--eval-n", "64", "--rk4", "24", "--hybrid", "0,0.5"]
                                     + ([rot] if rot else []),
                                     check=True, capture_output=True, text=True).stdout
                print("exact field and hybrids in PyTorch:", out.strip(), flush=True)
                rows = [fields(x) for x in out.splitlines()]
                main_row = [x for x in rows if "hybrid" not in x][0]
                hyb = {x["hybrid"]: float(x["kl"]) for x in rows if "hybrid" in x}
                runs[rot] = (main_row, hyb)
            main_row, hyb = runs["--rotate"]
            ok = (set(hyb) == {"exact", "late:0.0", "early:0.0", "late:0.5", "early:0.5"} and
                  abs(hyb["exact"]) < 1e-3 and hyb["early:0.0"] == hyb["exact"] and
                  hyb["late:0.0"] == float(main_row["kl"]) and
                  abs(float(main_row["logp"]) - float(runs[None][0]["logp"])) < 1e-4)
            if not ok:
                failures.append(f"recipe_arch_torch.py --hybrid/--rotate: {runs}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
