#!/usr/bin/env python3
"""Held-out NLL of `stochflow train` with its defaults on real tables and toys, against a
full-covariance Gaussian and a KDE (bench/DATA.md).

For each table: a seeded 80/20 split (numpy, seed 0) written as train.npy / test.npy, then
    stochflow train --data train.npy --out model.sfm --json
with no other option (the CLI's defaults: 10% of the training rows held out for early
stopping, standardization, best weights kept), and its held-out NLL (nats per row, exact,
in the data's units) on the test rows, which training never saw:
    stochflow logp --model model.sfm --data test.npy --json
With --val-is-test (the protocol of this bench's first tables) the test rows are passed
as `--val` instead and the number is the trainer's validation NLL: the run stops and keeps
its weights by the same rows it is scored on, an optimistic number.
Baselines on the same split, in the same units:
  - Gaussian: maximum-likelihood mean and full covariance of the training rows (+1e-9
    times the mean variance on the diagonal for rank-deficient columns);
  - KDE: scikit-learn KernelDensity on the standardized rows, bandwidth chosen by 5-fold
    cross-validation on the training rows, corrected by -sum log scale.
Tables: scikit-learn's bundled iris, wine, breast_cancer, diabetes, digits (PCA to 10),
Fashion-MNIST (Debian's dataset-fashion-mnist; 6000 training images, PCA to 16 dims,
fitted on the training rows), toys moons / checkerboard / rings (4000 rows), and
zone_cities: longitude and latitude of the 418 cities of tzdata's zone.tab, the issue's
table, split 335 / 83 as there (not in the default list). A column
that is constant in a table is dropped first (the flow refuses it: it has no density).

Usage: /usr/bin/python3 bench/data_bench.py BUILD/tools/stochflow [name ...] [--val-is-test]
           [train options, e.g. --threads T --seed S --steps N --patience N --ema X]
(every other option is passed to each `stochflow train` run: the defaults are what it
measures when none is given)
"""
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def tables(names):
    import sklearn.datasets as sd
    out = {}
    if "iris" in names: out["iris"] = sd.load_iris().data
    if "wine" in names: out["wine"] = sd.load_wine().data
    if "breast_cancer" in names: out["breast_cancer"] = sd.load_breast_cancer().data
    if "diabetes" in names: out["diabetes"] = sd.load_diabetes(scaled=False).data
    if "digits_pca10" in names:
        out["digits_pca10"] = ("pca", sd.load_digits().data.astype(np.float64), 10)
    if "fmnist_pca16" in names:
        with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
            raw = f.read()
        x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)[:7500] / 255.0
        out["fmnist_pca16"] = ("pca", x, 16)
    if "zone_cities" in names: out["zone_cities"] = ("split83", zone_cities())
    return out


def zone_cities(path="/usr/share/zoneinfo/zone.tab"):
    """Longitude and latitude (degrees) of the 418 principal cities of the time zones in
    tzdata's zone.tab (ISO 6709 +-DDMM[SS]+-DDDMM[SS])."""
    def deg(t):
        sign = -1.0 if t[0] == "-" else 1.0
        t = t[1:]
        w = 2 if len(t) in (4, 6) else 3  # degrees: 2 digits for latitude, 3 for longitude
        d, m, sec = int(t[:w]), int(t[w:w + 2]), int(t[w + 2:] or 0)
        return sign * (d + m / 60.0 + sec / 3600.0)
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            c = line.split("\t")[1]
            i = max(c.rfind("+"), c.rfind("-"))
            rows.append((deg(c[i:]), deg(c[:i])))  # (longitude, latitude)
    return np.array(rows)


def toy(sf, name, n):
    """n rows of a built-in toy, drawn by the library (Python binding, the build's .so)."""
    lib = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(sf))), "lib",
                       "libstochflow.so")
    os.environ.setdefault("STOCHFLOW_LIBRARY", lib)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bindings", "python"))
    import stochflow
    return np.asarray(stochflow.toy_sample(name, n, seed=7), dtype=np.float64)


def split(x, seed=0, nv=None):
    rng = np.random.default_rng(seed)
    p = rng.permutation(len(x))
    nv = int(round(0.2 * len(x))) if nv is None else nv
    return x[p[nv:]], x[p[:nv]]


def pca(train, val, k):
    mu = train.mean(0)
    _, _, vt = np.linalg.svd(train - mu, full_matrices=False)
    w = vt[:k].T
    return (train - mu) @ w, (val - mu) @ w


def gaussian_nll(train, val):
    mu = train.mean(0)
    c = np.cov(train, rowvar=False, bias=True).reshape(train.shape[1], train.shape[1])
    c += 1e-9 * np.trace(c) / len(c) * np.eye(len(c))
    sign, logdet = np.linalg.slogdet(c)
    e = val - mu
    q = np.einsum("ij,jk,ik->i", e, np.linalg.inv(c), e)
    return float(np.mean(0.5 * (q + logdet + len(c) * np.log(2 * np.pi))))


def kde_nll(train, val):
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KernelDensity
    mu, sd = train.mean(0), train.std(0)
    zt, zv = (train - mu) / sd, (val - mu) / sd
    g = GridSearchCV(KernelDensity(), {"bandwidth": np.logspace(-1.5, 0.5, 15)}, cv=5)
    g.fit(zt)
    return float(-np.mean(g.best_estimator_.score_samples(zv)) + np.sum(np.log(sd))), \
        float(g.best_params_["bandwidth"])


def main():
    args = sys.argv[1:]
    sf = args.pop(0)
    passed = []  # options given to every `stochflow train` run
    val_is_test = "--val-is-test" in args
    if val_is_test:
        args.remove("--val-is-test")
    flags = ("--ema-warmup", "--no-standardize")  # train options without a value
    rest = []
    while args:
        a = args.pop(0)
        if a in flags:
            passed.append(a)
        elif a.startswith("--"):
            passed += [a, args.pop(0)]
        else:
            rest.append(a)
    args = rest
    names = args or ["iris", "wine", "breast_cancer", "diabetes", "digits_pca10",
                     "fmnist_pca16", "moons", "checkerboard", "rings"]
    data = tables(names)
    rows = []
    for name in names:
        if name in data:
            x = data[name]
        else:
            x = toy(sf, name, 4000)
        if isinstance(x, tuple) and x[0] == "split83":  # the 335 / 83 split
            tr, va = split(x[1], nv=83)
        elif isinstance(x, tuple):
            _, full, k = x
            tr, va = split(full)
            tr, va = pca(tr, va, k)
        else:
            x = np.asarray(x, np.float64)
            x = x[:, x.std(0) > 0]
            tr, va = split(x)
        with tempfile.TemporaryDirectory() as d:
            np.save(d + "/train.npy", tr.astype(np.float32))
            np.save(d + "/test.npy", va.astype(np.float32))
            cmd = [sf, "train", "--data", d + "/train.npy", "--out", d + "/model.sfm", "--json"]
            if val_is_test:
                cmd += ["--val", d + "/test.npy"]
            cmd += passed
            t0 = time.time()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run(cmd, capture_output=True, text=True)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            secs = time.time() - t0
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            load = os.getloadavg()[0]
            if r.returncode != 0:
                print(name, "FAILED", r.stderr.strip(), flush=True)
                continue
            js = json.loads(r.stdout.strip().splitlines()[-1])
            if not val_is_test:  # the test rows, never seen in training
                lp = subprocess.run([sf, "logp", "--model", d + "/model.sfm", "--data",
                                     d + "/test.npy", "--json"], capture_output=True, text=True)
                if lp.returncode != 0:
                    print(name, "logp FAILED", lp.stderr.strip(), flush=True)
                    continue
                jl = json.loads(lp.stdout.strip().splitlines()[-1])
                js["val_nll"], js["val_nll_se"] = jl["nll"], jl["se"]
        # the evaluation in float32: compare in the same float64 units
        g = gaussian_nll(tr, va)
        k, bw = kde_nll(tr, va)
        row = dict(name=name, n_train=len(tr), n_val=len(va), d=tr.shape[1],
                   flow=js["val_nll"], flow_se=js["val_nll_se"], gauss=g, kde=k, kde_bw=bw,
                   steps=js["steps"], best=js.get("best_step", js["steps"]),  # --val 0: none
                   stop=js.get("stop", "step budget"), secs=secs,
                   cpu=cpu, load=load, options=" ".join(passed),
                   standardization=js.get("standardization"))
        rows.append(row)
        print("%-14s n=%5d/%4d d=%3d  flow %9.3f (se %.3f)  gauss %9.3f  kde %9.3f (bw %.2f)  "
              "steps %5d best %5d stop %-26s wall %6.1f s cpu %6.1f s load %.1f"
              % (name, row["n_train"], row["n_val"], row["d"], row["flow"], row["flow_se"],
                 g, k, bw, row["steps"], row["best"], row["stop"], secs, cpu, load),
              flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
