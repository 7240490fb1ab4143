#!/usr/bin/python3
"""Velocity-field architectures for the mixtures, in PyTorch at equal CPU seconds, scored
by an exact log-density computed here (bench/RECIPE.md, "Fourth round: residual blocks
with normalization, in PyTorch").

    build/bench/recipe_bench gmm21 --dump-target G.txt
    /usr/bin/python3 bench/recipe_arch_torch.py gmm21 --gmm G.txt --arch resmlp \\
        --width 256 --blocks 2 --seconds 120 [--save W.bin]

Trains with bench/recipe_torch.py's loop (the trig interpolant, batch, Adam on a cosine
to 0 over --seconds of process CPU time) one of:
  mlp     the library's MLP: Linear(d + 1, w), SiLU, (Linear(w, w), SiLU) x (depth - 1),
          Linear(w, d) on [x, t];
  resmlp  Linear(d + 1, w) on [x, t], then --blocks pre-norm residual blocks
          h += Linear(SiLU(Linear(LayerNorm(h)))) (the second Linear zero at the start),
          then Linear(w, d)(SiLU(LayerNorm(h)));
  adaln   resmlp whose LayerNorms take a per-block scale and shift computed from t
          (Fourier features sin/cos(k pi t), k = 1..8, through Linear, SiLU, Linear; zero
          at the start);
  skip    resmlp + Linear(d + 1, d) on [x, t] (zero at the start): a linear path from
          the input to the output;
  tskip   resmlp + Linear(2d + 1, d) on [x, t x, t] (zero at the start): a linear path
          whose slope moves linearly with t;
  affine  resmlp whose output layer gives 2d columns (s, m), v = s * x + m (elementwise;
          s's weights zero at the start): a per-coordinate affine field whose slope and
          offset the network computes, the exact form of a diagonal Gaussian's field;
  experts two resmlps of the given shape, one for t < 1/2 and one for t >= 1/2 (each row
          goes through one: twice the parameters at the same cost per row);
  linexp  resmlp + sum_k g_k Linear_k([x, t x, t]), g = softmax(Linear(w, K)) of the last
          features (--experts K linear experts, zero at the start): the library's
          stochflow_config_set_resmlp_experts;
  tbasis  resmlp + Linear on [x h_0(t), .., x h_4(t), t], h_j the hat functions of t at
          the knots 0, 1/4, .., 1 (zero at the start): a linear path whose slope is
          piecewise linear in t.

--rotate applies a fixed random rotation Q (QR of a Gaussian matrix, seed 4242) to the
mixture, x' = Q x: the same mixture, no longer aligned with the coordinate axes (its
log-density is the mixture's at Q^T x'). --hybrid S1,S2,... after training also scores
hybrid flows that use the mixture's exact velocity (closed form for the trig
interpolant) on part of [0, 1], one line each: hybrid=exact (the exact field everywhere:
KL 0 up to the RK4 error), and for each S hybrid=late:S (the model on [S, 1], the exact
field on [0, S]) and hybrid=early:S (the reverse): where in t the model's errors cost KL.

KL(p || q) = E_p[log p - log q] on --eval-n points drawn from the mixture (seed 12345,
the same points for every run of a target): log q by integrating x and the exact
divergence (d vector-Jacobian products in one batched backward pass) from t = 1 to 0
with --rk4 fixed RK4 steps in float64, log q = log N(x(0); 0, I) - int_0^1 div v dt.
--save writes mlp weights in the library's flat layout so that recipe_bench
--load-params can score the same network with the library's dopri5, and --load scores
weights the library trained (recipe_bench --save-params) here (the checks of this
evaluator; --rk4-check gives the step count's error; `recipe_arch_torch.py --self-check`
checks log q against the closed form of linear fields, including a rotating one, and
the batched divergence against autograd's Jacobian). Prints one line: tag arch steps cpu wall kl se
logp (the mean exact log-density of the evaluation points) params.
"""
import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import recipe_torch  # noqa: E402  (make_target, mlp, train)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target")
    p.add_argument("--gmm", required=True, help="recipe_bench gmmD --dump-target FILE")
    p.add_argument("--arch", choices=["mlp", "resmlp", "adaln", "tshift", "tfeat", "skip",
                                      "tskip", "affine", "experts", "linexp", "tbasis"],
                   default="mlp")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3, help="mlp: hidden layers")
    p.add_argument("--blocks", type=int, default=2, help="resmlp, adaln: residual blocks")
    p.add_argument("--experts", type=int, default=8, help="linexp: linear experts")
    p.add_argument("--seconds", type=float, default=0.0, help="CPU seconds of training")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--sched", choices=["constant", "cosine"], default="cosine")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-n", type=int, default=500)
    p.add_argument("--rk4", type=int, default=40, help="RK4 steps of the log-density")
    p.add_argument("--rk4-check", type=int, default=0,
                   help="also evaluate with this many RK4 steps: prints the change of KL")
    p.add_argument("--save", help="mlp: the flat float32 weights (library layout)")
    p.add_argument("--load", help="mlp: evaluate these flat weights (recipe_bench "
                   "--save-params) instead of training")
    p.add_argument("--stf", type=int, default=0,
                   help="regress on E[dI | x_t] over this many data draws (the batch's own "
                   "x1 and more): a lower-variance target (0: off)")
    p.add_argument("--rotate", action="store_true",
                   help="rotate the mixture by a fixed random orthogonal matrix")
    p.add_argument("--hybrid", default="",
                   help="S1,S2,...: also score flows with the exact field on [0, S] or [S, 1]")
    p.add_argument("--tag", default="arch")
    return p.parse_args(argv)


def build(a, d):
    import torch
    from torch import nn

    if a.arch == "mlp":
        return recipe_torch.mlp(d, a.width, a.depth)

    class Block(nn.Module):
        def __init__(self, w, ada, tshift):
            super().__init__()
            self.norm = nn.LayerNorm(w, elementwise_affine=not ada)
            self.l1, self.l2 = nn.Linear(w, w), nn.Linear(w, w)
            self.temb = nn.Linear(16, w, bias=False) if tshift else None
            nn.init.zeros_(self.l2.weight)
            nn.init.zeros_(self.l2.bias)

        def forward(self, h, mod=None, tf=None):
            z = self.norm(h)
            if mod is not None:
                scale, shift = mod.chunk(2, 1)
                z = z * (1 + scale) + shift
            a = self.l1(z)
            if self.temb is not None:
                a = a + self.temb(tf)
            return h + self.l2(torch.nn.functional.silu(a))

    class ResMLP(nn.Module):
        def __init__(self, w, blocks, ada, arch):
            super().__init__()
            self.ada = ada
            self.arch = arch
            self.inp = nn.Linear(d + 1 + (16 if arch == "tfeat" else 0), w)
            self.blocks = nn.ModuleList([Block(w, ada, arch == "tshift") for _ in range(blocks)])
            self.register_buffer("freq", math.pi * torch.arange(1, 9, dtype=torch.float32))
            self.norm = nn.LayerNorm(w)
            self.out = nn.Linear(w, d)
            if ada:
                self.temb = nn.Sequential(nn.Linear(16, w), nn.SiLU(),
                                          nn.Linear(w, 2 * w * blocks))
                nn.init.zeros_(self.temb[2].weight)
                nn.init.zeros_(self.temb[2].bias)

        def forward(self, u):
            ft = u[:, -1:] * self.freq.to(u.dtype)
            tf = torch.cat([ft.sin(), ft.cos()], 1)
            h = self.inp(torch.cat([u, tf], 1) if self.arch == "tfeat" else u)
            mods = [None] * len(self.blocks)
            if self.ada:
                mods = self.temb(tf).chunk(len(self.blocks), 1)
            for blk, m in zip(self.blocks, mods):
                h = blk(h, m, tf)
            return self.out(torch.nn.functional.silu(self.norm(h)))

    if a.arch in ("resmlp", "adaln", "tshift", "tfeat"):
        return ResMLP(a.width, a.blocks, a.arch == "adaln", a.arch)
    base = lambda: ResMLP(a.width, a.blocks, False, "resmlp")

    class Wrapped(nn.Module):
        """skip, tskip, affine, experts, linexp, tbasis around the plain residual MLP
        (module doc)."""

        def __init__(self, kind):
            super().__init__()
            self.kind = kind
            self.nets = nn.ModuleList([base() for _ in range(2 if kind == "experts" else 1)])
            if kind in ("skip", "tskip"):
                self.skip = nn.Linear(d + 1 if kind == "skip" else 2 * d + 1, d)
                nn.init.zeros_(self.skip.weight)
                nn.init.zeros_(self.skip.bias)
            if kind == "tbasis":  # x times hat functions of t at knots 0, 1/4, .., 1
                self.skip = nn.Linear(5 * d + 1, d)
                nn.init.zeros_(self.skip.weight)
                nn.init.zeros_(self.skip.bias)
            if kind == "linexp":  # K gated linear experts on [x, t x, t]
                self.K = a.experts
                self.gate = nn.Linear(a.width, self.K)
                self.exp = nn.Linear(2 * d + 1, self.K * d)
                nn.init.zeros_(self.exp.weight)
                nn.init.zeros_(self.exp.bias)
            if kind == "affine":  # rows [0, d) of the output layer give s, rows [d, 2d) m
                net = self.nets[0]
                net.out = nn.Linear(a.width, 2 * d)
                nn.init.zeros_(net.out.weight[:d])
                nn.init.zeros_(net.out.bias[:d])

        def forward(self, u):
            x, t = u[:, :-1], u[:, -1:]
            if self.kind == "experts":
                late = (t[:, 0] >= 0.5).nonzero().squeeze(1)
                early = (t[:, 0] < 0.5).nonzero().squeeze(1)
                out = torch.zeros(u.shape[0], d, dtype=u.dtype)
                if early.numel():
                    out = out.index_copy(0, early, self.nets[0](u[early]))
                if late.numel():
                    out = out.index_copy(0, late, self.nets[1](u[late]))
                return out
            if self.kind == "linexp":
                net = self.nets[0]
                h = net.inp(u)
                for blk in net.blocks:
                    h = blk(h)
                f = torch.nn.functional.silu(net.norm(h))
                g = torch.softmax(self.gate(f), 1)
                e = self.exp(torch.cat([x, t * x, t], 1)).view(-1, self.K, d)
                return net.out(f) + (g.unsqueeze(2) * e).sum(1)
            if self.kind == "tbasis":
                k = torch.arange(5, dtype=u.dtype)
                hat = torch.clamp(1 - (4 * t - k).abs(), min=0)  # (n, 5)
                z = torch.cat([(hat.unsqueeze(2) * x.unsqueeze(1)).flatten(1), t], 1)
                return self.nets[0](u) + self.skip(z)
            o = self.nets[0](u)
            if self.kind == "affine":
                return o[:, :d] * x + o[:, d:]
            z = u if self.kind == "skip" else torch.cat([x, t * x, t], 1)
            return o + self.skip(z)

    return Wrapped(a.arch)


def field_div(net, x, t):
    """v(x, t) and its exact divergence at the n rows of x, in one batched backward pass:
    copy i of the rows gets the cotangent e_i, so its gradient is row i of each Jacobian."""
    import torch

    n, d = x.shape
    eye = torch.eye(d, dtype=x.dtype).repeat_interleave(n, 0)  # row i*n+j: e_i
    xr = x.repeat(d, 1).requires_grad_(True)
    v = net(torch.cat([xr, torch.full((n * d, 1), t, dtype=x.dtype)], 1))
    (g,) = torch.autograd.grad(v, xr, grad_outputs=eye)
    div = (g * eye).sum(1).view(d, n).sum(0)  # sum_i dv_i/dx_i
    return v[:n].detach(), div.detach()


def log_q(net, x1, rk4, exact=None, split=0.0, model_late=True):
    """log q(x1) of the flow dx/dt = net([x, t]) from N(0, I) at t = 0 (float64). With
    exact (a field of the same form): RK4 steps whose midpoint lies in [split, 1] use net
    and the others exact (model_late), or the reverse."""
    import torch

    n, d = x1.shape
    x, acc, h = x1.clone(), torch.zeros(n, dtype=x1.dtype), -1.0 / rk4
    for k in range(rk4):  # t from 1 down to 0; acc = int_t^1 div v ds
        t = 1.0 + k * h
        field = net
        if exact is not None and ((t + 0.5 * h >= split) != model_late):
            field = exact

        def f(x, t):
            return field_div(field, x, t)

        v1, g1 = f(x, t)
        v2, g2 = f(x + 0.5 * h * v1, t + 0.5 * h)
        v3, g3 = f(x + 0.5 * h * v2, t + 0.5 * h)
        v4, g4 = f(x + h * v3, t + h)
        x = x + h / 6 * (v1 + 2 * v2 + 2 * v3 + v4)
        acc = acc - h / 6 * (g1 + 2 * g2 + 2 * g3 + g4)
    return -0.5 * (x * x).sum(1) - 0.5 * d * math.log(2 * math.pi) - acc


def exact_field(mix, rot=None):
    """The mixture's exact velocity for the trig interpolant from N(0, I), as a function of
    u = [x, t] (float64): per component k, x_t ~ N(b mu_k, a^2 + b^2 sd_k^2) per
    coordinate and E[dI/dt | x_t, k] = a' E[x0 | x_t, k] + b' E[x1 | x_t, k] is affine in
    x_t; the posterior weights of the components combine them. rot: the rotation Q of
    --rotate (the field of Q x is Q v(Q^T x))."""
    import torch

    w, mu, sd = (m.double() for m in mix)
    hp = 0.5 * math.pi

    def v(u):
        x, t = u[:, :-1], u[:, -1:]
        if rot is not None:
            x = x @ rot
        a, b = torch.cos(hp * t)[:, :, None], torch.sin(hp * t)[:, :, None]
        var = a * a + b * b * (sd * sd)[None]                     # n x K x d
        r = x[:, None, :] - b * mu[None]
        lw = (-0.5 * r * r / var - 0.5 * torch.log(var)).sum(2) + torch.log(w)[None]
        post = torch.softmax(lw, 1)[:, :, None]
        vk = -hp * b * (a * r / var) + hp * a * (mu[None] + b * (sd * sd)[None] * r / var)
        out = (post * vk).sum(1)
        return out @ rot.T if rot is not None else out
    return v


def self_check(d=5, n=64):
    """The evaluator against a closed form: the linear field v(x, t) = a x moves
    N(0, I) at t = 0 to N(0, e^(2a) I) at t = 1, so log q(x) = log N(x; 0, e^(2a) I);
    and a field with a t-dependent, non-diagonal part, v = (a + b t) x + c S x with S
    skew-symmetric (divergence (a + b t) d), whose exact answer is the same with
    a + b/2 for a (the flow's map is a rotation times a scaling). Then the batched
    divergence of each network, with random weights, against the trace of autograd's
    Jacobian at single points. Returns the largest error."""
    import torch

    torch.manual_seed(7)
    x1 = torch.randn(n, d, dtype=torch.float64) * 1.3
    skew = torch.randn(d, d, dtype=torch.float64)
    skew = skew - skew.T
    worst = 0.0
    for a, b, c in ((0.3, 0.0, 0.0), (-0.2, 0.8, 0.7)):
        def net(u, a=a, b=b, c=c):
            x, t = u[:, :-1], u[:, -1:]
            return (a + b * t) * x + c * x @ skew.T
        s2 = math.exp(2 * (a + 0.5 * b))
        exact = -0.5 * (x1 * x1).sum(1) / s2 - 0.5 * d * math.log(2 * math.pi * s2)
        worst = max(worst, float((log_q(net, x1, 128) - exact).abs().max()))
    # the batched divergence of the nonlinear networks against autograd's full Jacobian,
    # at points whose Jacobians differ (all weights random, none left at zero)
    for arch in ("mlp", "resmlp", "adaln", "tshift", "tfeat", "skip", "tskip", "affine",
                 "linexp", "tbasis", "experts"):
        a = argparse.Namespace(arch=arch, width=8, depth=3, blocks=2, experts=3)
        net = build(a, d).double()
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0.0, 0.5)
        x = torch.randn(4, d, dtype=torch.float64)
        _, div = field_div(net, x, 0.37)
        for j in range(4):
            u = lambda y: net(torch.cat([y[None], torch.full((1, 1), 0.37, dtype=y.dtype)], 1))[0]
            jac = torch.autograd.functional.jacobian(u, x[j])
            worst = max(worst, abs(float(jac.diagonal().sum() - div[j])))
    return worst


def log_p(x, mix):
    import torch

    w, mu, sd = (m.double() for m in mix)
    z = (x[:, None, :] - mu[None]) / sd[None]
    comp = (-0.5 * (z * z) - torch.log(sd)[None] - 0.5 * math.log(2 * math.pi)).sum(2)
    return torch.logsumexp(comp + torch.log(w)[None], 1)


def main(argv):
    if argv == ["--self-check"]:
        err = self_check()
        print(f"self-check: largest error (log q against linear fields' closed form, "
              f"divergence against autograd's Jacobian) {err:.3g}")
        return 0 if err < 1e-6 else 1
    a = parse_args(argv)
    if not a.load and not a.seconds > 0:
        sys.exit("--seconds must be > 0 (or --load weights)")
    os.environ.setdefault("BLIS_NUM_THREADS", str(a.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    torch.set_num_threads(a.threads)
    d, draw, mix = recipe_torch.make_target(a.target, a.gmm)
    if mix is None:
        sys.exit("targets: gmmD")
    rot = None
    if a.rotate:
        g = torch.Generator().manual_seed(4242)
        q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        rot = q * torch.sign(torch.diagonal(r))[None]
        draw_axes, qt = draw, rot.T.float()
        draw = lambda n: draw_axes(n) @ qt  # rows x' = (Q x)^T = x^T Q^T
    torch.manual_seed(12345)
    pts = draw(a.eval_n).double()
    torch.manual_seed(a.seed)
    net = build(a, d)
    params = sum(p.numel() for p in net.parameters())
    if a.load:
        if a.arch != "mlp":
            sys.exit("--load: mlp only (the library's layout)")
        import numpy as np
        flat = torch.from_numpy(np.fromfile(a.load, dtype="<f4"))
        lin = [m for m in net if isinstance(m, torch.nn.Linear)]
        if flat.numel() != sum(m.weight.numel() + m.bias.numel() for m in lin):
            sys.exit(f"{a.load}: {flat.numel()} floats, not this network's size")
        k = 0
        with torch.no_grad():
            for m in lin:
                for p in (m.weight, m.bias):
                    p.copy_(flat[k:k + p.numel()].view_as(p))
                    k += p.numel()
        steps, cpu, wall = 0, 0.0, 0.0
    else:
        steps, cpu, wall, _ = recipe_torch.train(net, draw, d, a)
    if a.save:
        if a.arch != "mlp":
            sys.exit("--save: mlp only (the library's layout)")
        flat = torch.cat([torch.cat([m.weight.detach().reshape(-1), m.bias.detach()])
                          for m in net if isinstance(m, torch.nn.Linear)])
        flat.numpy().astype("<f4").tofile(a.save)
    net = net.double().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    lp = log_p(pts @ rot if rot is not None else pts, mix)
    diff = lp - log_q(net, pts, a.rk4)
    kl, se = float(diff.mean()), float(diff.std() / math.sqrt(len(diff)))
    if a.rk4_check:
        kl2 = float((lp - log_q(net, pts, a.rk4_check)).mean())
        print(f"rk4-check: kl={kl:.6f} at {a.rk4} steps, {kl2:.6f} at {a.rk4_check}")
    shape = f"depth={a.depth}" if a.arch == "mlp" else f"blocks={a.blocks}"
    print(f"tag={a.tag} target={a.target} arch={a.arch} width={a.width} {shape} "
          f"seed={a.seed} steps={steps} cpu={cpu:.2f} wall={wall:.2f} "
          f"kl={kl:.5f} se={se:.5f} logp={float(lp.mean()):.6f} params={params} rk4={a.rk4}"
          + (" rotated" if a.rotate else ""),
          flush=True)
    if a.hybrid:
        exact = exact_field(mix, rot)
        runs = [("exact", None, 0.0, True)]  # the exact field everywhere: KL 0 but for RK4
        for sp in (float(v) for v in a.hybrid.split(",")):
            runs += [(f"late:{sp}", sp, sp, True), (f"early:{sp}", sp, sp, False)]
        for name, sp, cut, late in runs:
            field = exact if sp is None else net
            diff = lp - log_q(field, pts, a.rk4, exact, cut, late)
            print(f"tag={a.tag} hybrid={name} kl={float(diff.mean()):.5f} "
                  f"se={float(diff.std() / math.sqrt(len(diff))):.5f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
