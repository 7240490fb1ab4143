#!/usr/bin/python3
"""ODE vs SDE samplers on a class-conditional Fashion-MNIST U-Net (bench/SDE.md).

Through the Python binding (the library's _ctx calls), one JSON line per result:

  sde_images.py sample --model M --out-dir D [--n 500] [--nfe 40] [--specs ...]
      n images per sampler, labels 0..9 in equal numbers (image i has label i % 10),
      written to D/<spec>.npy (n x 784 in [-1, 1]) and D/<spec>.json (NFE, CPU s).
      A spec is ode-rk4, ode-heun, ode-euler (the ODE), or em:EPS / heun:EPS (the SDE
      with the score from the velocity); the steps are chosen so that every sampler
      makes --nfe network evaluations (RK4 4 per step, Heun 2, Euler and EM 1);
      em:EPS:T / heun:EPS:T stop the noise at t = T (STOCHFLOW_PARAM_SDE_T_END).
  sde_images.py frechet --dir D --classifier CLS.pt [--n 500]
      per D/*.npy: the Frechet distance in the features of bench/fmnist_classifier.py
      against the 10 000 test images and the accuracy of the generated classes; plus
      the noise floor (the test set's own first n images).
  sde_images.py lik --model M [--n 200] [--ode-solver rk4] [--ode-steps 10]
                    [--sde-steps 25] [--paths 4] [--eps 0,0.5]
      on the first n test images (dequantized as `stochflow logp --bpd` does: seed 0,
      its evaluation stream) given their true labels: the ODE bits/dim (Hutchinson, one
      probe) and the SDE likelihood estimates (Euler-Maruyama, Hutchinson, paths per
      image; --eps '' for none), each with its standard error over images and the mean
      standard error over the paths.

Environment: STOCHFLOW_LIBRARY (the built libstochflow.so) and PYTHONPATH=bindings/python.
"""
import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np

import stochflow as sf

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_STREAM = 0xFFFFFF00  # tools/images.h IMG_EVAL_STREAM: the CLI's dequantization stream
PER_STEP = {"ode-rk4": 4, "ode-heun": 2, "ode-euler": 1, "em": 1, "heun": 2}


def load(path, threads):
    m = sf.Model.load(path)
    m.set_param("threads", threads)
    return m


def cmd_sample(a):
    m = load(a.model, a.threads)
    os.makedirs(a.out_dir, exist_ok=True)
    labels = (np.arange(a.n) % 10).astype(np.int32) if a.labels == "balanced" else \
        np.full(a.n, -1, dtype=np.int32)
    for spec in a.specs.split(","):
        kind, _, rest = spec.partition(":")
        eps, _, t_end = rest.partition(":")
        steps = a.nfe // PER_STEP[kind]
        t0, c0 = time.time(), time.process_time()
        if kind.startswith("ode-"):
            x = m.sample(a.n, solver=kind[4:], steps=steps, seed=a.seed, labels=labels,
                         guidance=a.guidance)
            nfe = a.nfe
        else:
            x, nfe = m.sample(a.n, sde=float(eps), sde_method=kind, steps=steps, seed=a.seed,
                              labels=labels, guidance=a.guidance, return_nfe=True,
                              sde_t_end=float(t_end or 1.0))
        rec = {"spec": spec, "n": a.n, "steps": steps, "nfe": nfe, "labels": a.labels,
               "guidance": a.guidance, "seed": a.seed, "cpu_s": time.process_time() - c0,
               "wall_s": time.time() - t0, "finite": bool(np.isfinite(x).all())}
        name = spec.replace(":", "_") + ("_seed%d" % a.seed if a.seed else "")
        np.save(os.path.join(a.out_dir, name + ".npy"), x)
        with open(os.path.join(a.out_dir, name + ".json"), "w") as f:
            json.dump(rec, f)
        print(json.dumps(rec), flush=True)


def cmd_frechet(a):
    sys.path.insert(0, HERE)
    import fmnist_classifier as fc
    net = fc.load(a.classifier)
    test, test_labels = fc.fmnist("test")
    ref = fc.features(net, test)
    floor = fc.frechet(fc.features(net, test[:a.n]), ref)
    print(json.dumps({"spec": "test set, first %d images" % a.n, "frechet": floor,
                      "accuracy": float((fc.predict(net, fc.to_unit(test[:a.n])) ==
                                         test_labels[:a.n]).mean())}), flush=True)
    for path in sorted(glob.glob(os.path.join(a.dir, "*.npy"))):
        x = np.load(path)
        meta = {}
        if os.path.exists(path[:-4] + ".json"):
            with open(path[:-4] + ".json") as f:
                meta = json.load(f)
        rec = {"spec": meta.get("spec", os.path.basename(path)), "seed": meta.get("seed"),
               "n": len(x), "nfe": meta.get("nfe"),
               "frechet": fc.frechet(fc.features(net, x), ref)}
        if meta.get("labels") == "balanced":
            pred = fc.predict(net, fc.to_unit(x))
            rec["accuracy"] = float((pred == np.arange(len(x)) % 10).mean())
        print(json.dumps(rec), flush=True)


def stats(v):
    v = np.asarray(v, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def cmd_lik(a):
    m = load(a.model, a.threads)
    sys.path.insert(0, HERE)
    import fmnist_classifier as fc
    px, lab = fc.fmnist("test")
    px = np.ascontiguousarray(px[:a.n])
    x = sf.images_dequantize(px, seed=0, stream=EVAL_STREAM).reshape(a.n, -1)
    d = x.shape[1]
    lab = np.asarray(lab, dtype=np.int32)[:a.n]
    t0, c0 = time.time(), time.process_time()
    lp = m.log_prob(x, trace="hutchinson", solver=a.ode_solver, steps=a.ode_steps, seed=1,
                    labels=lab)
    b, bse = stats(sf.bits_per_dim(lp, d))
    print(json.dumps({"likelihood": "ode", "solver": a.ode_solver, "steps": a.ode_steps,
                      "nfe": PER_STEP["ode-" + a.ode_solver] * a.ode_steps, "n": a.n,
                      "bpd": b, "bpd_se": bse, "cpu_s": time.process_time() - c0,
                      "wall_s": time.time() - t0}), flush=True)
    for eps in [float(e) for e in a.eps.split(",") if e]:
        t0, c0 = time.time(), time.process_time()
        lp, se = m.sde_log_prob(x, eps, paths=a.paths, steps=a.sde_steps, seed=1, labels=lab,
                                trace="hutchinson")
        b, bse = stats(sf.bits_per_dim(lp, d))
        path_se = float(np.mean(se) / (d * math.log(2)))
        print(json.dumps({"likelihood": "sde", "eps": eps, "steps": a.sde_steps,
                          "paths": a.paths, "n": a.n, "bpd": b, "bpd_se": bse,
                          "path_se_bpd": path_se, "cpu_s": time.process_time() - c0,
                          "wall_s": time.time() - t0}), flush=True)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--model", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--n", type=int, default=500)
    s.add_argument("--nfe", type=int, default=40)
    s.add_argument("--specs", default="ode-rk4,ode-heun,ode-euler,em:0.1,em:0.5,em:1,"
                                      "heun:0.1,heun:0.5,heun:1")
    s.add_argument("--labels", choices=("balanced", "null"), default="balanced")
    s.add_argument("--guidance", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    f = sub.add_parser("frechet")
    f.add_argument("--dir", required=True)
    f.add_argument("--classifier", required=True)
    f.add_argument("--n", type=int, default=500)
    li = sub.add_parser("lik")
    li.add_argument("--model", required=True)
    li.add_argument("--n", type=int, default=200)
    li.add_argument("--ode-solver", choices=("rk4", "heun", "euler"), default="rk4")
    li.add_argument("--ode-steps", type=int, default=10)
    li.add_argument("--sde-steps", type=int, default=25)
    li.add_argument("--paths", type=int, default=4)
    li.add_argument("--eps", default="0,0.5")
    li.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    {"sample": cmd_sample, "frechet": cmd_frechet, "lik": cmd_lik}[a.cmd](a)


if __name__ == "__main__":
    main(sys.argv[1:])
