#!/usr/bin/python3
"""PyTorch reference of the training recipes of bench/RECIPE.md, for a fixed budget of
CPU seconds, scored by the library's own exact evaluation.

    /usr/bin/python3 bench/recipe_torch.py TARGET --seconds S --out W.bin [options]
    build/bench/recipe_bench TARGET --width W --depth L --load-params W.bin

TARGET is gmmD (the mixture recipe_bench writes with --dump-target FILE, given here as
--gmm FILE) or checkerboard (the FFJORD checkerboard, as lib/toys.c draws it).

The model is the library's MLP written the idiomatic PyTorch way, as in
bench/bench_torch.py: Linear(d + 1, w), SiLU, (Linear(w, w), SiLU) x (L - 1),
Linear(w, d) on [x, t], PyTorch's default initialisation; the trigonometric interpolant
x_t = cos(pi t/2) x0 + sin(pi t/2) x1 with x0 ~ N(0, I), t ~ U[0, 1] drawn every step;
loss mean_i |v_i|^2 - 2 dI_i . v_i; torch.optim.Adam (betas 0.9, 0.999, eps 1e-8, as the
library). Schedule: 'constant' at --lr, or 'cosine' from --lr to 0 over the budget. The
budget is the process's CPU seconds of the training loop (time.process_time, all
threads), the measure recipe_bench reports as cpu=; the cosine follows the fraction of
the budget spent, so a run ends at the rate's floor whatever its speed.

Writes the weights in the library's flat layout (per layer the weight, out x in
row-major, then the bias; float32 little-endian), so that recipe_bench --load-params
computes KL(p || model) on the same points with the same exact dopri5 log-density as
for the library's own runs. Prints one line: tag, steps, cpu seconds, wall seconds.
"""
import argparse
import math
import os
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target")
    p.add_argument("--gmm", help="the mixture file of recipe_bench --dump-target (gmmD)")
    p.add_argument("--seconds", type=float, required=True, help="CPU seconds of training")
    p.add_argument("--out", required=True, help="where the flat float32 weights go")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sched", choices=["constant", "cosine"], default="constant")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="torch")
    return p.parse_args(argv)


def make_target(target, gmm_path):
    """(d, draw, mixture): draw(n) gives n float32 rows of the target; mixture is
    (weights float64 [K], means [K, d], sds [K, d]) for gmmD, None for the toy."""
    import numpy as np
    import torch

    if target.startswith("gmm"):
        if not gmm_path:
            sys.exit("gmmD needs --gmm FILE (recipe_bench gmmD --dump-target FILE)")
        with open(gmm_path) as f:
            d, K = (int(v) for v in f.readline().split())
            rows = [np.array(f.readline().split(), dtype=np.float64) for _ in range(K)]
        if d != int(target[3:]):
            sys.exit(f"{gmm_path} holds a mixture in d = {d}, not {target}")
        w = torch.tensor([r[0] for r in rows], dtype=torch.float64)
        mu = torch.tensor(np.stack([r[1:1 + d] for r in rows]), dtype=torch.float32)
        sd = torch.tensor(np.stack([r[1 + d:] for r in rows]), dtype=torch.float32)

        def draw(n):
            k = torch.multinomial(w, n, replacement=True)
            return mu[k] + sd[k] * torch.randn(n, d)
        return d, draw, (w, mu, sd)
    if target == "checkerboard":
        def draw(n):
            x1 = torch.rand(n) * 4 - 2
            x2 = torch.rand(n) - torch.randint(0, 2, (n,)).float() * 2
            x2 = x2 + torch.remainder(torch.floor(x1), 2)
            return torch.stack([x1, x2], 1) * 2
        return 2, draw, None
    sys.exit("targets: gmmD (with --gmm) or checkerboard")


def mlp(d, width, depth):
    """The library's MLP: Linear(d + 1, w), SiLU, (Linear(w, w), SiLU) x (depth - 1),
    Linear(w, d), on [x, t]; PyTorch's default initialisation."""
    from torch import nn

    mods = [nn.Linear(d + 1, width), nn.SiLU()]
    for _ in range(depth - 1):
        mods += [nn.Linear(width, width), nn.SiLU()]
    return nn.Sequential(*mods, nn.Linear(width, d))


def train(net, draw, d, a):
    """Adam on the interpolant loss for a.seconds of process CPU time (a.batch, a.lr,
    a.sched: constant, or cosine to 0 over the budget); net maps [x_t, t] to v.
    Returns (steps, cpu seconds, wall seconds, last loss)."""
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    half_pi = 0.5 * math.pi
    steps, loss = 0, float("nan")
    c0, w0 = time.process_time(), time.perf_counter()
    while True:
        frac = (time.process_time() - c0) / a.seconds
        if frac >= 1.0:
            break
        lr = a.lr if a.sched == "constant" else a.lr * 0.5 * (1.0 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        x1 = draw(a.batch)
        x0 = torch.randn(a.batch, d)
        t = torch.rand(a.batch, 1)
        c, s = torch.cos(half_pi * t), torch.sin(half_pi * t)
        xt = c * x0 + s * x1
        dI = half_pi * (c * x1 - s * x0)
        nref = getattr(a, "stf", 0)
        if nref:  # target averaged over a reference set of data given x_t (own x1 included)
            ref = torch.cat([x1, draw(nref - a.batch)], 0) if nref > a.batch else x1
            r = ref.double()
            xd, cd, sd = xt.double(), c.double(), s.double()
            # log N(x_t; s x1_j, c^2 I) up to terms constant in j
            lw = -(((xd * xd).sum(1, keepdim=True) - 2 * sd * (xd @ r.T)
                    + sd * sd * (r * r).sum(1)[None]) / (2 * cd * cd))
            wgt = torch.softmax(lw, 1)
            ex1 = wgt @ r  # E[x1 | x_t] over the reference set
            # dI = (pi/2)(c x1 - s x0), x0 = (x_t - s x1)/c: affine in x1
            dI = (half_pi * ((cd + sd * sd / cd) * ex1 - sd / cd * xd)).float()
        v = net(torch.cat([xt, t], 1))
        loss = ((v * v).sum(1) - 2.0 * (dI * v).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return steps, time.process_time() - c0, time.perf_counter() - w0, float(loss)


def main(argv):
    a = parse_args(argv)
    if not a.seconds > 0:
        sys.exit("--seconds must be > 0")
    os.environ.setdefault("BLIS_NUM_THREADS", str(a.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch
    from torch import nn

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    d, draw, _ = make_target(a.target, a.gmm)

    net = mlp(d, a.width, a.depth)
    steps, cpu, wall, loss = train(net, draw, d, a)

    flat = torch.cat([torch.cat([m.weight.detach().reshape(-1), m.bias.detach()])
                      for m in net if isinstance(m, nn.Linear)])
    flat.numpy().astype("<f4").tofile(a.out)
    print(f"tag={a.tag} target={a.target} impl=torch steps={steps} batch={a.batch} "
          f"cpu={cpu:.2f} wall={wall:.2f} threads={a.threads} loss={float(loss):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
