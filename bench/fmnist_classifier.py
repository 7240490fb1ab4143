#!/usr/bin/python3
"""A small Fashion-MNIST classifier, trained once, for judging generated images.

It gives two measurements of a set of generated 28x28 images:
  - accuracy: the fraction classified as the class they were generated for
    (class-conditional models, guided sampling);
  - a Frechet distance between the Gaussian fits of the classifier's penultimate
    features (128 values per image) of two image sets, e.g. generated vs. the test set
    (the FID recipe with this classifier in place of Inception; numbers are only
    comparable with each other, not with published FIDs).

Images are read from .npy files: n x 784 (or n x 1 x 28 x 28, n x 28 x 28) floats in
[-1, 1] as `stochflow sample --out X.npy` writes them for a Fashion-MNIST model, or uint8
in [0, 255]. Labels are .npy integer vectors or one integer for every image.

Commands (Debian's PyTorch, CPU):
  fmnist_classifier.py train --out CLS.pt [--epochs 3] [--threads 2]
      trains on the 60 000 training images, prints the test accuracy
  fmnist_classifier.py accuracy --model CLS.pt --images X.npy --labels L.npy|INT
  fmnist_classifier.py frechet --model CLS.pt --images X.npy [--ref test | --ref Y.npy]
  fmnist_classifier.py testset --out X.npy [--labels-out L.npy] [--n N]
      writes the first N test images in [-1, 1] (a reference for frechet, or to check
      the pipeline: the test set's own accuracy)
Every command prints one JSON line.
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"  # Debian: dataset-fashion-mnist


def _idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fmnist(split):
    """(images uint8 n x 28 x 28, labels int64) of 'train' or 'test'."""
    p = "train" if split == "train" else "t10k"
    return _idx(p + "-images-idx3-ubyte.gz"), _idx(p + "-labels-idx1-ubyte.gz").astype(np.int64)


def to_unit(x):
    """Any accepted image array -> float32 n x 1 x 28 x 28 in [-1, 1]."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 127.5 - 1.0
    x = x.astype(np.float32).reshape(-1, 1, 28, 28)
    return np.clip(x, -1.0, 1.0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1)
        self.f1 = nn.Linear(64 * 7 * 7, 128)
        self.f2 = nn.Linear(128, 10)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return F.relu(self.f1(x.flatten(1)))

    def forward(self, x):
        return self.f2(self.features(x))


def load(path):
    net = Net()
    net.load_state_dict(torch.load(path))
    net.eval()
    return net


@torch.no_grad()
def _batched(fn, x, bs=1000):
    return torch.cat([fn(torch.from_numpy(x[i:i + bs])) for i in range(0, len(x), bs)]).numpy()


def predict(net, x):
    return _batched(net, to_unit(x)).argmax(1)


def features(net, x):
    return _batched(net.features, to_unit(x)).astype(np.float64)


def frechet(fa, fb):
    """Frechet distance between Gaussian fits of two feature sets (rows = samples)."""
    from scipy import linalg
    ma, mb = fa.mean(0), fb.mean(0)
    ca, cb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    s, _ = linalg.sqrtm(ca @ cb, disp=False)
    s = s.real
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2.0 * s))


def train(out, epochs, threads, seed=0):
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    xi, yi = fmnist("train")
    x, y = torch.from_numpy(to_unit(xi)), torch.from_numpy(yi)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    torch.save(net.state_dict(), out)
    xt, yt = fmnist("test")
    return float((predict(net, xt) == yt).mean())


def _labels(arg, n):
    if arg is None:
        return None
    if os.path.exists(arg):
        return np.load(arg).astype(np.int64).reshape(-1)
    return np.full(n, int(arg), dtype=np.int64)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    a = sub.add_parser("accuracy")
    a.add_argument("--model", required=True)
    a.add_argument("--images", required=True)
    a.add_argument("--labels", required=True)
    f = sub.add_parser("frechet")
    f.add_argument("--model", required=True)
    f.add_argument("--images", required=True)
    f.add_argument("--ref", default="test")
    s = sub.add_parser("testset")
    s.add_argument("--out", required=True)
    s.add_argument("--labels-out")
    s.add_argument("--n", type=int, default=10000)
    o = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if o.cmd == "train":
        acc = train(o.out, o.epochs, o.threads)
        print(json.dumps({"model": o.out, "epochs": o.epochs, "test_accuracy": acc}))
    elif o.cmd == "accuracy":
        net = load(o.model)
        x = np.load(o.images)
        y = _labels(o.labels, len(to_unit(x)))
        p = predict(net, x)
        if len(p) != len(y):
            sys.exit("accuracy: %d images but %d labels" % (len(p), len(y)))
        per = {int(c): float((p[y == c] == c).mean()) for c in np.unique(y)}
        print(json.dumps({"n": int(len(p)), "accuracy": float((p == y).mean()),
                          "per_class": per}))
    elif o.cmd == "frechet":
        net = load(o.model)
        fa = features(net, np.load(o.images))
        ref = fmnist("test")[0] if o.ref == "test" else np.load(o.ref)
        fb = features(net, ref)
        print(json.dumps({"n": int(len(fa)), "n_ref": int(len(fb)),
                          "frechet": frechet(fa, fb)}))
    else:
        xt, yt = fmnist("test")
        np.save(o.out, to_unit(xt[:o.n]).reshape(-1, 784))
        if o.labels_out:
            np.save(o.labels_out, yt[:o.n])
        print(json.dumps({"out": o.out, "n": int(min(o.n, len(xt)))}))


if __name__ == "__main__":
    main(sys.argv[1:])
