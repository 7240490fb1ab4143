#!/usr/bin/env python3
"""Plot the held-out loss curve written by bench/image_curve (CSV "step,loss") and,
optionally, bits/dim points (CSV "step,bpd,se") into one PNG (bench/IMAGES.md).

Usage: /usr/bin/python3 bench/plot_curve.py curve.csv out.png [bpd.csv]
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f)]


def main():
    rows = read(sys.argv[1])
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    n = 2 if len(sys.argv) > 3 else 1
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.8), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, loss, "o-", ms=3)
    ax.set_xlabel("training step (batch 64)")
    ax.set_ylabel("held-out interpolant loss per image")
    ax.set_title("Fashion-MNIST test loss (1024 images, fixed noise)")
    ax.grid(alpha=0.3)
    if n == 2:
        b = read(sys.argv[3])
        ax = axes[0][1]
        ax.errorbar([int(r["step"]) for r in b], [float(r["bpd"]) for r in b],
                    yerr=[float(r["se"]) for r in b], fmt="o-", ms=3, capsize=3,
                    label=b[0].get("label", "flow"))
        ax.axhline(4.23, color="gray", ls="--", label="logit-space Gaussian 4.23")
        ax.axhline(3.0, color="green", ls=":", label="goal 3.0")
        ax.set_xlabel("training step")
        ax.set_ylabel("test bits/dim")
        ax.set_title("Fashion-MNIST test bits/dim")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
