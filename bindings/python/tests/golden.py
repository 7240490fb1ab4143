"""The golden conformance scenario (keep identical to tests/check_golden.c and
bindings/rust/stochflow/tests/golden.rs) and the golden file reader."""
import os

import numpy as np

import stochflow as sf

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GOLDEN = os.path.join(HERE, "..", "..", "..", "tests", "data", "golden.txt")


def golden_path():
    return os.environ.get("STOCHFLOW_GOLDEN", DEFAULT_GOLDEN)


def read_golden(path):
    """name -> numpy array of bit patterns (uint32 for f32, uint64 for f64)."""
    out = {}
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            name, kind, count, *values = line.split()
            assert len(values) == int(count), name
            dtype = np.uint64 if kind == "f64" else np.uint32
            out[name] = np.array([int(v, 16) for v in values], dtype=dtype)
    return out


def run_scenario():
    """name -> bit patterns of every quantity of the scenario."""
    m = sf.Model(2, hidden=(32, 32), activation="silu", interpolant="trig", seed=7,
                 threads=1, lr=1e-2)
    losses = np.array([m.train_step(sf.toy_sample("moons", 64, seed=11, stream=k))
                       for k in range(25)], dtype=np.float64)
    rec = {"losses": losses.view(np.uint64), "params": m.parameters().copy().view(np.uint32)}
    pts = sf.toy_sample("moons", 8, seed=12, stream=0)
    rec["velocity"] = m.velocity(0.5, pts).ravel().view(np.uint32)
    xs, lps = m.sample(8, solver="rk4", steps=16, seed=5, return_log_prob=True)
    rec["samples"] = xs.ravel().view(np.uint32)
    rec["sample_logp"] = lps.view(np.uint32)
    rec["logp_exact"] = m.log_prob(pts, solver="rk4", steps=16).view(np.uint32)
    lp, se = m.log_prob(pts, trace="hutchinson", probes=3, seed=9, return_se=True,
                        solver="rk4", steps=16)
    rec["logp_hutchinson"] = lp.view(np.uint32)
    rec["se_hutchinson"] = se.view(np.uint32)
    r = sf.Model(2, resmlp=(16, 2), seed=7, threads=1, lr=1e-2)
    losses = np.array([r.train_step(sf.toy_sample("moons", 64, seed=11, stream=k))
                       for k in range(10)], dtype=np.float64)
    rec["res_losses"] = losses.view(np.uint64)
    rec["res_params"] = r.parameters().copy().view(np.uint32)
    rec["res_logp_exact"] = r.log_prob(pts, solver="rk4", steps=16).view(np.uint32)
    b = sf.Model(2, resmlp=(16, 2), seed=7, threads=1, lr=1e-2, train_target="batch")
    losses = np.array([b.train_step(sf.toy_sample("moons", 64, seed=11, stream=k))
                       for k in range(10)], dtype=np.float64)
    rec["bt_losses"] = losses.view(np.uint64)
    rec["bt_params"] = b.parameters().copy().view(np.uint32)
    e = sf.Model(2, resmlp=(16, 2, 3), seed=7, threads=1, lr=1e-2)
    losses = np.array([e.train_step(sf.toy_sample("moons", 64, seed=11, stream=k))
                       for k in range(10)], dtype=np.float64)
    rec["ex_losses"] = losses.view(np.uint64)
    rec["ex_params"] = e.parameters().copy().view(np.uint32)
    rec["ex_logp_exact"] = e.log_prob(pts, solver="rk4", steps=16).view(np.uint32)
    return rec
