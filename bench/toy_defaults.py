#!/usr/bin/env python3
"""What `stochflow train --data TOY --out M` gives with no other option: its gap to the
exact density, KL(p || q) = E_p[log p - log q] (nats; for a toy, the held-out NLL minus
the entropy), for the toys whose density the library knows in closed form
(stochflow_toy_log_density: 8gaussians, checkerboard), and the CPU and wall seconds of
the run.

Usage: /usr/bin/python3 bench/toy_defaults.py BUILD/tools/stochflow [toy ...]
           [--n N] [train options, e.g. --steps N --threads T --seed S]
The evaluation points: N (default 4000) fresh draws of the toy (seed 12345, a stream no
training draw uses); log q from the model by dopri5 at rtol = atol = 1e-5, exact trace.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings",
                                "python"))


def main():
    args = sys.argv[1:]
    sf = args.pop(0)
    os.environ.setdefault("STOCHFLOW_LIBRARY", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(sf))), "lib", "libstochflow.so.1"))
    import stochflow as sfl
    n = 4000
    if "--n" in args:
        i = args.index("--n")
        n = int(args[i + 1])
        del args[i:i + 2]
    toys, passed = [], []
    while args:
        a = args.pop(0)
        if a.startswith("--"):
            passed += [a, args.pop(0)]
        else:
            toys.append(a)
    rows = []
    for toy in toys or ["8gaussians", "checkerboard"]:
        with tempfile.TemporaryDirectory() as d:
            cmd = [sf, "train", "--data", toy, "--out", d + "/m.sfm", "--json"] + passed
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            w0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - w0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode != 0:
                print(toy, "FAILED", r.stderr.strip(), flush=True)
                continue
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            js = json.loads(r.stdout.strip().splitlines()[-1])
            m = sfl.Model.load(d + "/m.sfm")
            x = sfl.toy_sample(toy, n, seed=12345, stream=7)
            logq = sfl.Solver(solver="dopri5", rtol=1e-5, atol=1e-5).log_prob(m, x)
            logp = sfl.toy_log_density(toy, x)[0]
            gap = np.asarray(logp, np.float64) - np.asarray(logq, np.float64)
            row = dict(toy=toy, steps=js.get("steps"), cpu=cpu, wall=wall, kl=float(gap.mean()),
                       se=float(gap.std(ddof=1) / np.sqrt(n)), options=" ".join(passed))
            rows.append(row)
            print("%-12s steps %6s  train CPU %6.1f s  wall %6.1f s  KL %.4f (se %.4f)  %s"
                  % (toy, row["steps"], cpu, wall, row["kl"], row["se"], row["options"]),
                  flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
