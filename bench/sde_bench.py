"""ODE vs SDE sampling and likelihoods of stochastic-interpolant models on the 2-D toys
with exact densities (checkerboard, 8gaussians). Writes the tables of bench/SDE.md.

Per toy: three MLPs (hidden 128,128, batch 256, lr 2e-3, EMA 0.999, the same seed):
  v: the velocity of the gamma-free trig interpolant (the library's ODE training);
  b: the drift of the trig interpolant with gamma = sqrt(t (1 - t));
  s: the score of that interpolant (antithetic pairs).
Samples (n = 4000, seed 1) at equal NFE (evaluation times; drift and score together
count one): the ODE (Heun, K steps, NFE 2K) of v and of b, and the SDE (Heun, K steps,
NFE 2K) for several eps: b with s, and v with the score computed from v. Quality: the
cross-entropy -mean log p_true(samples) (lower is better; the toy's entropy is the floor
for perfect samples), and for the checkerboard, whose density is 0 off the board, the
fraction of samples off the board and the cross-entropy of the others.
Likelihoods of 2000 held-out points: the ODE (RK4 100 steps, exact divergence) of v and
b, and the SDE estimate (200 steps, 8 paths, mean of the path values) of b with s and v.

usage: STOCHFLOW_LIBRARY=build/lib/libstochflow.so PYTHONPATH=bindings/python \
       /usr/bin/python3 bench/sde_bench.py [steps [toy,toy [samples]]]
("samples": the sample table only, no likelihoods)
"""
import os
import sys
import time

import numpy as np

import stochflow as sf

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
TOYS = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("8gaussians", "checkerboard")
SAMPLES_ONLY = len(sys.argv) > 3 and sys.argv[3] == "samples"
EPS = (0.1, 0.5, 1.0)
KS = (10, 50)


def train(toy, objective=None, gamma=None, antithetic=False):
    m = sf.Model(2, hidden=(128, 128), seed=7, threads=2, lr=2e-3, ema_decay=0.999,
                 objective=objective, gamma=gamma, antithetic=antithetic)
    for s in range(STEPS):
        m.train_step(sf.toy_sample(toy, 256, seed=11, stream=s))
    return m


def quality(toy, x):
    lp, ent = sf.toy_log_density(toy, x)
    inside = np.isfinite(lp)
    ce = -float(np.mean(lp[inside]))
    return ce, 1.0 - float(np.mean(inside)), ent


def main():
    cpu0, wall0 = time.process_time(), time.time()
    print("load average at start: %.1f %.1f %.1f" % os.getloadavg())
    for toy in TOYS:
        t0 = time.process_time()
        v = train(toy)
        b = train(toy, "drift", "brownian")
        s = train(toy, "score", "brownian", antithetic=True)
        print("\n### %s (training: 3 models x %d steps, %.0f CPU s)\n" % (
            toy, STEPS, time.process_time() - t0))
        print("| sampler | K | NFE | eps | cross-entropy (nats) | off the board |")
        print("|---|---|---|---|---|---|")
        ent = None
        n = 4000
        for K in KS:
            rows = [("ODE Heun, velocity v", v.sample(n, solver="heun", steps=K, seed=1), 0),
                    ("ODE Heun, drift b", b.sample(n, solver="heun", steps=K, seed=1), 0)]
            for e in EPS:
                rows.append(("SDE Heun, b + score model s",
                             b.sample(n, sde=e, score_model=s, steps=K, seed=1), e))
                rows.append(("SDE Heun, v + score from v", v.sample(n, sde=e, steps=K, seed=1), e))
            for name, x, e in rows:
                ce, off, ent = quality(toy, x)
                print("| %s | %d | %d | %s | %.3f | %s |" % (
                    name, K, 2 * K, e if e else "-", ce,
                    "%.3f" % off if toy == "checkerboard" else "-"))
        print("\nentropy of %s: %.3f nats (the cross-entropy of exact samples)\n" % (toy, ent))
        if SAMPLES_ONLY:
            continue
        held = sf.toy_sample(toy, 2000, seed=11, stream=10 ** 9)
        print("| likelihood of 2000 held-out points | NLL (nats) | se over points | "
              "mean per-point path se |")
        print("|---|---|---|---|")
        for name, m in (("ODE RK4 100, velocity v", v), ("ODE RK4 100, drift b", b)):
            lp = m.log_prob(held, solver="rk4", steps=100)
            print("| %s | %.3f | %.3f | - |" % (name, -lp.mean(), lp.std() / np.sqrt(len(lp))))
        for e in (0.1, 0.5):
            for name, m, sm in (("SDE eps %g, b + s" % e, b, s), ("SDE eps %g, v (score from v)" % e, v, None)):
                lp, se = m.sde_log_prob(held, e, score_model=sm, paths=8, steps=200, seed=3)
                print("| %s | %.3f | %.3f | %.3f |" % (name, -lp.mean(), lp.std() / np.sqrt(len(lp)),
                                                    se.mean()))
    print("\ntotal: %.0f CPU s, %.0f s wall; load average at end: %.1f %.1f %.1f" % (
        (time.process_time() - cpu0, time.time() - wall0) + os.getloadavg()))


main()
