#!/usr/bin/python3
"""The old and the new training recipe, trained by the library and by PyTorch for the
same CPU seconds, scored by the same exact evaluation (bench/RECIPE.md).

    /usr/bin/python3 bench/recipe_vs_torch.py build/bench/recipe_bench \\
        --targets gmm21,checkerboard --seconds 60 [--log bench/recipe_runs.txt]

For each target and recipe, the library (recipe_bench, its step count calibrated to
--seconds of CPU on a short run first) and PyTorch (bench/recipe_torch.py, a cosine over
exactly --seconds of CPU) train side by side, one thread each, at the same time, so a
slow phase of the machine hits both. PyTorch's weights are then scored by recipe_bench
--load-params: KL(p || model) on the same points, exact divergence, dopri5 1e-5.

Recipes (the networks of bench/RECIPE.md):
  old  batch 1024, Adam 1e-3 constant; 3 x 512 for the mixtures, 3 x 256 for the toys
  new  batch 256, Adam on a cosine to 0; 3 x 256 at peak 2e-3 for the mixtures of
       d >= 21, 3 x 128 at 2e-3 for smaller ones, 4 x 128 at 3e-3 for the toys
Prints a Markdown table; every raw line goes to --log when given.
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def recipe(name, target):
    toy = not target.startswith("gmm")
    if name == "old":
        return dict(width=256 if toy else 512, depth=3, batch=1024, lr=1e-3, sched="constant")
    if toy:
        return dict(width=128, depth=4, batch=256, lr=3e-3, sched="cosine")
    small = int(target[3:]) <= 8
    return dict(width=128 if small else 256, depth=3, batch=256, lr=2e-3, sched="cosine")


def bench_args(r):
    return ["--width", str(r["width"]), "--depth", str(r["depth"]), "--batch", str(r["batch"]),
            "--lr", str(r["lr"]), "--sched", r["sched"], "--threads", "1"]


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if l.startswith("tag=")]


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe_bench")
    p.add_argument("--targets", default="gmm21,checkerboard")
    p.add_argument("--recipes", default="old,new")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--log")
    a = p.parse_args(argv)
    rb = a.recipe_bench
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", BLIS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    rows, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for target in a.targets.split(","):
            gmm = []
            if target.startswith("gmm"):
                gfile = os.path.join(tmp, target + ".txt")
                subprocess.run([rb, target, "--dump-target", gfile], check=True,
                               capture_output=True)
                gmm = ["--gmm", gfile]
            for name in a.recipes.split(","):
                r = recipe(name, target)
                # calibrate the library's step count on 300 steps of the same run
                cal = fields(run([rb, target, *bench_args(r), "--steps", "300",
                                  "--eval-n", "10", "--seed", str(a.seed)])[-1])
                steps = max(1, int(a.seconds / (float(cal["cpu"]) / 300)))
                tag = f"{name}-{int(a.seconds)}s"
                wfile = os.path.join(tmp, f"{target}-{name}.bin")
                c = subprocess.Popen([rb, target, *bench_args(r), "--steps", str(steps),
                                      "--seed", str(a.seed), "--tag", "lib-" + tag],
                                     stdout=subprocess.PIPE, text=True, env=env)
                t = subprocess.Popen([a.python, os.path.join(HERE, "recipe_torch.py"), target,
                                      *gmm, "--seconds", str(a.seconds), "--out", wfile,
                                      "--width", str(r["width"]), "--depth", str(r["depth"]),
                                      "--batch", str(r["batch"]), "--lr", str(r["lr"]),
                                      "--sched", r["sched"], "--seed", str(a.seed),
                                      "--tag", "torch-" + tag],
                                     stdout=subprocess.PIPE, text=True, env=env)
                c_out, t_out = c.communicate()[0], t.communicate()[0]
                if c.returncode or t.returncode:
                    sys.exit(f"{target} {name}: a run failed")
                c_line = [l for l in c_out.splitlines() if l.startswith("tag=")][-1]
                t_line = [l for l in t_out.splitlines() if l.startswith("tag=")][-1]
                e_line = run([rb, target, *bench_args(r), "--load-params", wfile,
                              "--tag", "torch-" + tag])[-1]
                cf, tf, ef = fields(c_line), fields(t_line), fields(e_line)
                raw += [c_line, t_line, e_line]
                rows.append((target, name, steps, cf["cpu"], cf["kl"], cf["se"], tf["steps"],
                             tf["cpu"], ef["kl"], ef["se"]))
                print(f"{target} {name}: library {steps} steps {cf['cpu']} s KL {cf['kl']}; "
                      f"torch {tf['steps']} steps {tf['cpu']} s KL {ef['kl']}", file=sys.stderr)
    if a.log:
        with open(a.log, "a") as f:
            f.write("\n".join(raw) + "\n")
    print("| target | recipe | library: steps | CPU s | KL +- SE | PyTorch: steps | CPU s "
          "| KL +- SE |")
    print("|---|---|---|---|---|---|---|---|")
    for (tg, nm, cs, cc, ck, cse, ts, tc, tk, tse) in rows:
        print(f"| {tg} | {nm} | {cs} | {cc} | {ck} +- {cse} | {ts} | {tc} | {tk} +- {tse} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
