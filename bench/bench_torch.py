#!/usr/bin/python3
"""PyTorch reference for the libstochflow benchmarks (issue 6).

Runs ONE measurement in this process and prints one JSON line, exactly like
bench_c does for the library, so the harness (bench/run.py) can alternate the two.

The computation is the library's, written the idiomatic PyTorch way:
  - MLP on [x, t]: Linear(d+1, w), SiLU, (Linear(w, w), SiLU) x (L-1), Linear(w, d),
    PyTorch default initialisation.
  - Trigonometric interpolant x_t = cos(pi t/2) x0 + sin(pi t/2) x1,
    dI/dt = -(pi/2) sin(pi t/2) x0 + (pi/2) cos(pi t/2) x1,
    loss = mean_i |v_i|^2 - 2 dI_i . v_i, x0 ~ N(0, I), t ~ U[0, 1] drawn every step,
    torch.optim.Adam(lr=1e-3).
  - Sampling: x(0) ~ N(0, I), classic RK4 with a fixed number of steps from t=0 to 1,
    under torch.no_grad().
  - Log-density at t=1: RK4 on (x, l) backward from t=1 to 0 with l' = -div v, then
    log p = log N(x(0)) - (accumulated divergence).  Exact divergence by d autograd
    passes per evaluation (torch.autograd.grad of v[:, i].sum() w.r.t. x, i = 1..d);
    Hutchinson by one vector-Jacobian product per evaluation with a fixed Rademacher
    probe per point.

Threads: the harness sets BLIS_NUM_THREADS / OMP_NUM_THREADS before this process
starts (Debian's torch calls BLIS through libblas.so.3 and torch.set_num_threads does
not reach it); we also call torch.set_num_threads for torch's own element-wise work.
"""
import argparse
import json
import math
import os
import resource
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--job", required=True, choices=["train", "sample", "logp", "parity"])
    p.add_argument("--d", type=int, default=2)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=50, help="RK4 steps (sample, logp)")
    p.add_argument("--trace", choices=["exact", "hutch"], default="exact")
    p.add_argument("--solver", choices=["rk4", "dopri5"], default="rk4",
                   help="sample: fixed-step RK4 or adaptive dopri5 (rtol = atol = --tol)")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--min-time", type=float, default=1.0,
                   help="timed seconds (after warm-up); at least --min-iters iterations")
    p.add_argument("--min-iters", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--in", dest="infile", help="parity: the file bench_c --job parity wrote")
    return p.parse_args(argv)


def maxrss_kb():
    """Peak resident set in KiB: VmHWM of this process's own address space (ru_maxrss
    is carried over fork and exec on Linux, so it can report the parent's size)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def parity_check(a, net, flat, velocity, train_loss_terms, rk4_log_prob, vel_div_exact,
                 n_params):
    """Load the library's parameters into the torch MLP and recompute its numbers."""
    import numpy as np
    import torch
    d, B = a.d, a.batch
    pos = [0]

    def take(n):
        out = flat[pos[0]:pos[0] + n]
        pos[0] += n
        return torch.from_numpy(out.copy())

    P = int(np.frombuffer(open(a.infile, "rb").read()[40:48], dtype="<u8")[0])
    assert P == n_params, f"parameter count differs: library {P}, torch {n_params}"
    with torch.no_grad():
        for lin in [m for m in net if isinstance(m, torch.nn.Linear)]:
            lin.weight.copy_(take(lin.weight.numel()).view_as(lin.weight))
            lin.bias.copy_(take(lin.bias.numel()))
    x1 = take(B * d).view(B, d)
    x0 = take(B * d).view(B, d)
    t = take(B).view(B, 1)
    c_loss = float(take(1)[0])
    c_grad = take(P)
    c_logp = take(B)
    c_v = take(B * d).view(B, d)
    net.zero_grad(set_to_none=True)
    loss = train_loss_terms(x1, x0, t)
    loss.backward()
    t_grad = torch.cat([torch.cat([m.weight.grad.reshape(-1), m.bias.grad])
                        for m in net if isinstance(m, torch.nn.Linear)])
    with torch.no_grad():
        t_v = velocity(0.3, x1)
    t_logp = rk4_log_prob(x1, a.steps, vel_div_exact)

    def rel(x, y):
        return float((x.double() - y.double()).abs().max() / max(1e-30, float(y.abs().max())))

    errs = {"loss": abs(c_loss - float(loss)) / max(1e-30, abs(float(loss))),
            "grad": rel(c_grad, t_grad), "velocity": rel(c_v, t_v),
            "logp": rel(c_logp, t_logp)}
    tol = {"loss": 1e-4, "grad": 1e-3, "velocity": 1e-4, "logp": 1e-4}
    ok = all(errs[k] <= tol[k] for k in errs)
    print(json.dumps({"impl": "torch", "ok": ok, "job": "parity", "rel_err": errs,
                      "tol": tol, "params": n_params,
                      **({} if ok else {"error": "library and PyTorch disagree: "
                                        + json.dumps(errs)})}))
    return 0 if ok else 1


def main(argv):
    a = parse_args(argv)
    os.environ.setdefault("BLIS_NUM_THREADS", str(a.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    rss_start = maxrss_kb()
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rss_import = maxrss_kb()

    parity = None
    if a.job == "parity":
        # Read the library's parameters and results; recompute them here (below).
        raw = open(a.infile, "rb").read()
        hdr = np.frombuffer(raw[:48], dtype="<u8")
        a.d, a.width, a.layers, a.batch, a.steps = (int(x) for x in hdr[:5])
        parity = np.frombuffer(raw[48:], dtype="<f4")
    d, w, L, B = a.d, a.width, a.layers, a.batch
    mods = [nn.Linear(d + 1, w), nn.SiLU()]
    for _ in range(L - 1):
        mods += [nn.Linear(w, w), nn.SiLU()]
    mods += [nn.Linear(w, d)]
    net = nn.Sequential(*mods)
    n_params = sum(p.numel() for p in net.parameters())

    # Data pool, generated before timing (same distributions as bench_c).
    rng = np.random.default_rng(a.seed)
    n_pool = 4

    def make_batch(n):
        if d == 2:  # FFJORD checkerboard
            x1 = rng.random(n) * 4 - 2
            x2_ = rng.random(n) - rng.integers(0, 2, n) * 2
            x2 = x2_ + (np.floor(x1) % 2)
            return np.stack([x1, x2], 1).astype(np.float32) * 2
        return rng.standard_normal((n, d)).astype(np.float32)

    pool = [torch.from_numpy(make_batch(B)) for _ in range(n_pool)]
    half_pi = math.pi / 2

    def velocity(t, x):
        tt = torch.full((x.shape[0], 1), float(t), dtype=x.dtype)
        return net(torch.cat([x, tt], 1))

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    state = {"k": 0, "loss": 0.0}

    def train_loss_terms(x1, x0, t):
        a_t, b_t = torch.cos(half_pi * t), torch.sin(half_pi * t)
        xt = a_t * x0 + b_t * x1
        dI = (-half_pi * b_t) * x0 + (half_pi * a_t) * x1
        v = net(torch.cat([xt, t], 1))
        return ((v * v).sum(1) - 2.0 * (dI * v).sum(1)).mean()

    def train_step(x1):
        n = x1.shape[0]
        x0 = torch.randn(n, d)
        t = torch.rand(n, 1)
        loss = train_loss_terms(x1, x0, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def rk4_sample(n, steps):
        with torch.no_grad():
            x = torch.randn(n, d)
            h = 1.0 / steps
            for k in range(steps):
                t = k * h
                k1 = velocity(t, x)
                k2 = velocity(t + h / 2, x + (h / 2) * k1)
                k3 = velocity(t + h / 2, x + (h / 2) * k2)
                k4 = velocity(t + h, x + h * k3)
                x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    nfe = [0]

    # Dormand-Prince 5(4) exactly as the library's lib/ode.c runs it: double state,
    # float network inputs, error norm = max over rows of the RMS of
    # err / (atol + rtol max(|y_old|, |y_new|)), Hairer's initial step per row (smallest
    # row wins), factor 0.9 err^-1/5 in [0.2, 10], no growth right after a rejection,
    # FSAL. (torchdiffeq would differ: one RMS over the whole batch.)
    DP_C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
    DP_A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
            [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
    DP_B = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]
    DP_E = [71 / 57600, 0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]

    def f64(t, y):
        nfe[0] += 1
        return velocity(t, y.float()).double()

    def dopri5_sample(n, tol):
        rtol = atol = tol
        with torch.no_grad():
            y = torch.randn(n, d).double()
            t, t1 = 0.0, 1.0
            k = [None] * 7
            k[0] = f64(t, y)
            # initial step (Hairer II.4), per row
            sc = atol + rtol * y.abs()
            d0 = ((y / sc) ** 2).mean(1).sqrt()
            d1 = ((k[0] / sc) ** 2).mean(1).sqrt()
            hi = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6),
                             0.01 * d0 / d1)
            h0 = min(1.0, float(hi.min()))
            k1 = f64(t + h0, y + h0 * k[0])
            d2 = ((((k1 - k[0]) / sc) ** 2).mean(1).sqrt()) / h0
            mx = torch.maximum(d1, d2)
            h1 = torch.where(mx <= 1e-15, torch.full_like(mx, max(1e-6, h0 * 1e-3)),
                             (0.01 / mx) ** 0.2)
            habs = min(100 * h0, 1.0, float(h1.min()))
            facmax = 10.0
            while True:
                last = False
                rem = t1 - t
                if habs >= rem * (1 - 1e-12):
                    habs, last = rem, True
                h = habs
                for st in range(1, 7):
                    acc = sum(a * k[j] for j, a in enumerate(DP_A[st]) if a != 0)
                    k[st] = f64(t + DP_C[st] * h, y + h * acc)
                ynew = y + h * sum(b * k[j] for j, b in enumerate(DP_B) if b != 0)
                e = h * sum(c * k[j] for j, c in enumerate(DP_E) if c != 0)
                scl = atol + rtol * torch.maximum(y.abs(), ynew.abs())
                err = float(((e / scl) ** 2).mean(1).sqrt().max())
                fac = facmax if err == 0 else min(facmax, max(0.2, 0.9 * err ** -0.2))
                if err <= 1.0:
                    y, t = ynew, (t1 if last else t + h)
                    k[0] = k[6]
                    if last:
                        return y.float()
                    habs *= fac
                    facmax = 10.0
                else:
                    habs *= fac
                    facmax = 1.0

    def vel_div_exact(t, x):
        nfe[0] += 1
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = velocity(t, x)
            div = torch.zeros(x.shape[0])
            for i in range(d):
                g = torch.autograd.grad(v[:, i].sum(), x, retain_graph=i < d - 1)[0]
                div = div + g[:, i]
        return v.detach(), div.detach()

    def make_vel_div_hutch(eps):
        def f(t, x):
            nfe[0] += 1
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                v = velocity(t, x)
                (g,) = torch.autograd.grad(v, x, eps)
                quad = (g * eps).sum(1)
            return v.detach(), quad.detach()
        return f

    def rk4_log_prob(x, steps, f):
        # (x, l) backward from t = 1 to t = 0, l' = -div v; l(0) - l(1) = int_0^1 div dt.
        x = x.clone()
        l = torch.zeros(x.shape[0])
        h = -1.0 / steps
        for k in range(steps):
            t = 1.0 + k * h
            v1, g1 = f(t, x)
            v2, g2 = f(t + h / 2, x + (h / 2) * v1)
            v3, g3 = f(t + h / 2, x + (h / 2) * v2)
            v4, g4 = f(t + h, x + h * v3)
            x = x + (h / 6) * (v1 + 2 * v2 + 2 * v3 + v4)
            l = l - (h / 6) * (g1 + 2 * g2 + 2 * g3 + g4)
        logp0 = -0.5 * (x * x).sum(1) - 0.5 * d * math.log(2 * math.pi)
        return logp0 - l

    if a.job == "parity":
        return parity_check(a, net, parity, velocity, train_loss_terms, rk4_log_prob,
                            vel_div_exact, n_params)
    if a.job == "train":
        unit, per_iter = "steps/s", 1

        def run_once(warm):
            x1 = pool[state["k"] % n_pool]
            state["k"] += 1
            state["loss"] = train_step(x1)
        warm_iters = 3
    elif a.job == "sample":
        unit, per_iter = "samples/s", B

        def run_once(warm):
            nfe[0] = 0
            if a.solver == "dopri5":
                x = dopri5_sample(min(B, 256) if warm else B, a.tol)
            else:
                x = rk4_sample(min(B, 256) if warm else B, a.steps)
                nfe[0] = 4 * a.steps
            state["loss"] = float(x[0, 0])
        warm_iters = 1
    else:
        unit, per_iter = "points/s", B
        g = torch.Generator().manual_seed(a.seed + 7)

        def run_once(warm):
            x = pool[state["k"] % n_pool]
            state["k"] += 1
            if warm:
                x = x[: min(B, 256)]
            nfe[0] = 0
            if a.trace == "exact":
                f = vel_div_exact
            else:
                eps = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
                f = make_vel_div_hutch(eps)
            lp = rk4_log_prob(x, a.steps, f)
            state["loss"] = float(lp.mean())
        warm_iters = 1

    rss_setup = maxrss_kb()
    # Warm-up: warm_iters iterations and, for training, at least 0.3 s.
    t_warm, k = time.perf_counter(), 0
    while k < warm_iters or (a.job == "train" and time.perf_counter() - t_warm < 0.3):
        run_once(True)
        k += 1
    times = []
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run_once(False)
        times.append(time.perf_counter() - t0)
        if len(times) >= a.min_iters and time.perf_counter() - t_start >= a.min_time:
            break
    times_sorted = sorted(times)
    med = times_sorted[len(times) // 2] if len(times) % 2 else 0.5 * (
        times_sorted[len(times) // 2 - 1] + times_sorted[len(times) // 2])
    out = {
        "impl": "torch", "ok": True, "job": a.job, "d": d, "width": w, "layers": L,
        "batch": B, "threads": a.threads, "steps": a.steps, "trace": a.trace,
        "params": n_params, "iters": len(times), "median_iter_s": med,
        "rate": per_iter / med, "unit": unit,
        "maxrss_kb": maxrss_kb(), "rss_start_kb": rss_start, "rss_import_kb": rss_import,
        "rss_setup_kb": rss_setup, "check": state["loss"],
        "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
    }
    if a.job == "train":
        out["gflops"] = 6.0 * B * n_params / med / 1e9
    if a.job == "logp":
        out["nfe"] = nfe[0]
    if a.job == "sample":
        out["nfe"] = nfe[0]
        out["solver"] = a.solver
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
