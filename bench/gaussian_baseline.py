#!/usr/bin/env python3
"""Bits/dim of a full-covariance Gaussian in logit space on Fashion-MNIST (the baseline
of issue 8, bench/IMAGES.md), computed independently of the library with numpy.

Data: Debian's dataset-fashion-mnist IDX files. Uniform dequantization y = (p + u)/256,
logit transform z = logit(lam + (1 - 2 lam) y); a Gaussian N(mu, Sigma) fitted to the
training images' z (maximum likelihood, plus 1e-6 on the diagonal) scores the test
images with the change of variables back to y, then to [0, 256)^D:
    bpd = -(log N(z) + sum log|dz/dy|) / (D ln 2) + 8.

Usage: /usr/bin/python3 bench/gaussian_baseline.py [lam ...]   (default: 1e-6 0.01 0.05)
"""
import gzip
import sys

import numpy as np

ROOT = "/usr/share/datasets/fashion-mnist/"


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h * w)


def logit_data(p, lam, rng):
    y = (p.astype(np.float64) + rng.uniform(size=p.shape)) / 256.0
    s = lam + (1 - 2 * lam) * y
    z = np.log(s) - np.log1p(-s)
    logdet = np.sum(np.log(1 - 2 * lam) - np.log(s) - np.log1p(-s), axis=1)
    return z, logdet


def main():
    lams = [float(a) for a in sys.argv[1:]] or [1e-6, 0.01, 0.05]
    train = idx(ROOT + "train-images-idx3-ubyte.gz")
    test = idx(ROOT + "t10k-images-idx3-ubyte.gz")
    D = train.shape[1]
    for lam in lams:
        rng = np.random.default_rng(0)
        z, _ = logit_data(train, lam, rng)
        mu = z.mean(axis=0)
        cov = np.cov(z, rowvar=False, bias=True) + 1e-6 * np.eye(D)
        L = np.linalg.cholesky(cov)
        logdet_cov = 2 * np.sum(np.log(np.diag(L)))
        zt, ldt = logit_data(test, lam, rng)
        sol = np.linalg.solve(L, (zt - mu).T)
        logn = -0.5 * np.sum(sol ** 2, axis=0) - 0.5 * logdet_cov - 0.5 * D * np.log(2 * np.pi)
        bpd = -(logn + ldt) / (D * np.log(2)) + 8
        print("lambda %-7g test bits/dim %.4f +- %.4f (10000 images)"
              % (lam, bpd.mean(), bpd.std(ddof=1) / np.sqrt(len(bpd))))


if __name__ == "__main__":
    main()
