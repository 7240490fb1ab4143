/* recipe_bench.c - accuracy of a trained MLP flow against exact answers, per CPU second
 * of training (bench/RECIPE.md). Public API of <stochflow.h> only.
 *
 *   recipe_bench TARGET [options]
 *
 * TARGET:
 *   gmmD          a fixed Gaussian mixture in D dimensions (D = 2..128; K = 6 diagonal
 *                 components, drawn once from a fixed seed, see gmm_make) with its
 *                 closed-form density;
 *   checkerboard, 8gaussians   the library's toys with the library's exact log-density;
 *   rings, circles             noisy circles: exact density by quadrature over the angle;
 *   moons, swissroll           exact density by quadrature over the curve parameter.
 *
 * Accuracy: KL(p || q) = E_p[log p - log q] on fresh samples x ~ p (the same points for
 * every configuration of a target), with log q the model's log-density (exact
 * divergence, dopri5 at --rtol). For a toy this is the held-out NLL minus the entropy.
 * Cost: CPU seconds of the training loop (CLOCK_PROCESS_CPUTIME_ID: the process's CPU
 * time, so other load on the machine does not count), data draws included, evaluation
 * excluded.
 *
 * Options (defaults = the library's old defaults, except the width):
 *   --steps N           training steps (default 3000)
 *   --evals a,b,...     also evaluate at these steps (default: only at the end)
 *   --batch B           (1024)
 *   --width W --depth L (512, 3)
 *   --blocks B          a residual MLP of width W with B blocks instead of the MLP (0: MLP)
 *   --experts K         with --blocks: K gated linear experts on the residual MLP's output
 *                       (stochflow_config_set_resmlp_experts; 0: none)
 *   --lr X              (1e-3)
 *   --sched constant|cosine|linear|wsd:F   cosine decays to --lr-min x lr over --steps;
 *                       linear decays to 0 over --steps; wsd:F holds lr, then decays
 *                       linearly to 0 over the last fraction F of --steps (these two set
 *                       the library's rate before each step) (constant)
 *   --lr-min X          floor of the cosine, as a fraction of lr (0)
 *   --warmup N          linear warm-up steps (0)
 *   --ema X             EMA decay of the weights, evaluated with the EMA weights (0 = off)
 *   --ema-warmup        decay min(X, (1+s)/(10+s))
 *   --clip X            gradient-norm clip (0 = off)
 *   --beta2 X           Adam's second-moment decay (0.999)
 *   --time-fourier F    time features t, sin/cos(k pi t) k = 1..F (0 = raw t)
 *   --tdist uniform|strat|logitnormal:M:S|beta:A   draw of t, passed explicitly for
 *                       everything but 'uniform' (the library's own draw):
 *                       strat: stratified, t_i = (perm(i) + u_i)/n;
 *                       logitnormal: t = sigmoid(M + S N(0,1)); beta:A: Beta(A, A) via
 *                       the sine map t = (1 - cos(pi u))/2 for A = 0.5 (arcsine law).
 *                       No importance weight is applied (the minimizer of the loss is the
 *                       same for any density of t that is positive on (0, 1)).
 *   --antithetic        rows i and i + B/2 share x1 and t and use x0 and -x0
 *   --batch-target      regress on the posterior mean of dI/dt given x_t over the batch
 *                       (STOCHFLOW_PARAM_TRAIN_TARGET = STOCHFLOW_TRAIN_TARGET_BATCH)
 *   --coupling ot       minibatch OT pairing (library)
 *   --interp trig|linear (trig)
 *   --seed S            model seed and training draws (0)
 *   --eval-n N          points for the KL (default 2000 for d <= 8, 1000 to d = 21,
 *                       500 above)
 *   --rtol X            dopri5 rtol = atol for the log-density (1e-5)
 *   --rtols a,b,...     after the last evaluation, evaluate again at these tolerances
 *                       (the tolerance an accurate KL needs; lines tagged TAG@rtol)
 *   --standardize col|whiten   fit the model's map to the user's units on 100000 fresh
 *                       draws of the target before training: per column, or whitening
 *                       (the log-density stays in the target's units; default: none)
 *   --rotate            (gmmD) the mixture under a fixed random rotation Q, x' = Q x (Gram-Schmidt
 *                       of Gaussian draws from a fixed seed keyed by D): the same mixture, its
 *                       components no longer aligned with the axes (log p(x') = log p(Q^T x'))
 *   --threads T         (1)
 *   --tag NAME          label printed on each line
 *   --terr              (gmmD, trig) after training, where in t the model errs: for t on
 *                       a grid, E|v - v*|^2 / d over x_t ~ p_t against the exact velocity
 *                       v* of the mixture (independent coupling, no map), and the RMS
 *                       error of div v (lines "terr")
 *   --check-oracle      (gmmD, trig) check that exact velocity and exit: its divergence against
 *                       central differences, and E[(dI/dt - v*) . v*] = 0
 *   --dump-target FILE  (gmmD) write the mixture and exit: "d K", then per component its
 *                       weight, means and standard deviations (for bench/recipe_torch.py)
 *   --save-params FILE, --load-params FILE   the flat float32 weights (layout of
 *                       doc/architecture.md; --save-params: the live weights, so not with
 *                       --ema); a run with --load-params does not train: it evaluates the
 *                       given weights (e.g. trained by recipe_torch.py), then at --rtols
 *
 * Output: one line per evaluation, key=value:
 *   tag target d seed step cpu wall kl se nfe eval_cpu loss gnorm
 * (cpu and wall: seconds of the training loop, process CPU time and elapsed time;
 * loss and gnorm: exponential moving averages, decay 0.99, of the training loss and of
 * the L2 norm of the raw gradient before any clipping; gnorm is what --clip compares to.)
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stochflow.h"
#include "bench_util.h"

#define PI 3.14159265358979323846
#define MAXK 8
#define EVAL_SEED 987654321ULL

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- a small counter-based generator for the bench's own draws (splitmix64) ---- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
typedef struct {
    uint64_t s;
} rng;
static void rng_init(rng *r, uint64_t a, uint64_t b, uint64_t c) {
    r->s = mix64(a * 0x9e3779b97f4a7c15ULL + mix64(b + 0x632be59bd9b4e019ULL) + mix64(c ^ 0xabcdef));
}
static double unif(rng *r) { /* (0, 1) */
    r->s += 0x9e3779b97f4a7c15ULL;
    return ((double)(mix64(r->s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double gauss(rng *r) {
    double u = unif(r), v = unif(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * PI * v);
}

/* ---- targets ---------------------------------------------------------------------- */

typedef struct {
    size_t d, K;
    double w[MAXK];
    double *mu, *sd; /* K x d */
} gmm;

/* The mixture of gmmD: K = 6 components; weights proportional to exp(0.5 g); means
 * N(0, I) per coordinate; per-coordinate standard deviations log-uniform on [0.3, 1].
 * Drawn from a fixed seed keyed by d, so every run sees the same target. */
static void gmm_make(gmm *g, size_t d) {
    rng r;
    rng_init(&r, 20261204, d, 0);
    g->d = d;
    g->K = 6;
    g->mu = malloc(g->K * d * sizeof(double));
    g->sd = malloc(g->K * d * sizeof(double));
    double tot = 0;
    for (size_t k = 0; k < g->K; ++k) tot += (g->w[k] = exp(0.5 * gauss(&r)));
    for (size_t k = 0; k < g->K; ++k) {
        g->w[k] /= tot;
        for (size_t j = 0; j < d; ++j) {
            g->mu[k * d + j] = gauss(&r);
            g->sd[k * d + j] = exp(log(0.3) + (log(1.0) - log(0.3)) * unif(&r));
        }
    }
}

static void gmm_sample(float *x, const gmm *g, size_t n, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; ++i) {
        rng r;
        rng_init(&r, seed, stream, i);
        double u = unif(&r), c = 0;
        size_t k = 0;
        for (; k + 1 < g->K; ++k)
            if (u < (c += g->w[k])) break;
        for (size_t j = 0; j < g->d; ++j)
            x[i * g->d + j] = (float)(g->mu[k * g->d + j] + g->sd[k * g->d + j] * gauss(&r));
    }
}

static double gmm_logpdf(const gmm *g, const float *x) {
    double l[MAXK], mx = -INFINITY;
    for (size_t k = 0; k < g->K; ++k) {
        double a = log(g->w[k]);
        for (size_t j = 0; j < g->d; ++j) {
            double s = g->sd[k * g->d + j], z = ((double)x[j] - g->mu[k * g->d + j]) / s;
            a += -0.5 * z * z - log(s) - 0.5 * log(2 * PI);
        }
        l[k] = a;
        if (a > mx) mx = a;
    }
    double s = 0;
    for (size_t k = 0; k < g->K; ++k) s += exp(l[k] - mx);
    return mx + log(s);
}

/* log of (1/2pi) int_0^2pi N2(x - r (cos a, sin a); sd^2 I) da: a ring of radius r with
 * isotropic Gaussian noise (trapezoid rule on the periodic integrand: spectrally accurate
 * with 4096 nodes for r / sd <= 40). */
static double log_ring(double x, double y, double r, double sd) {
    enum { NA = 4096 };
    double mx = -INFINITY, e[NA];
    for (int k = 0; k < NA; ++k) {
        double a = 2 * PI * k / NA, dx = x - r * cos(a), dy = y - r * sin(a);
        e[k] = -(dx * dx + dy * dy) / (2 * sd * sd);
        if (e[k] > mx) mx = e[k];
    }
    double s = 0;
    for (int k = 0; k < NA; ++k) s += exp(e[k] - mx);
    return mx + log(s / NA) - log(2 * PI * sd * sd);
}

/* log of the mean over a in [a0, a1] of N2(p - c(a); sd^2 I) (trapezoid, na nodes). */
typedef void (*curve_fn)(double a, double c[2], int which);
static double log_curve(double x, double y, curve_fn c, int which, double a0, double a1,
                        double sd, int na) {
    double *e = malloc((size_t)(na + 1) * sizeof(double)), mx = -INFINITY;
    for (int k = 0; k <= na; ++k) {
        double p[2];
        c(a0 + (a1 - a0) * k / na, p, which);
        double dx = x - p[0], dy = y - p[1];
        e[k] = -(dx * dx + dy * dy) / (2 * sd * sd);
        if (e[k] > mx) mx = e[k];
    }
    double s = 0;
    for (int k = 0; k <= na; ++k) s += (k == 0 || k == na ? 0.5 : 1.0) * exp(e[k] - mx);
    free(e);
    return mx + log(s / na) - log(2 * PI * sd * sd);
}

static void moon_arc(double a, double c[2], int which) {
    if (which == 0) c[0] = cos(a), c[1] = sin(a);
    else c[0] = 1 - cos(a), c[1] = 1 - sin(a) - 0.5;
}
static void swiss_arc(double t, double c[2], int which) {
    (void)which;
    c[0] = t * cos(t), c[1] = t * sin(t);
}

static double logaddexp(double a, double b) {
    double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

/* Exact log-density of the toys this bench supports; NAN for others. */
static double toy_logpdf(const char *name, double x, double y) {
    if (strcmp(name, "rings") == 0) {
        static const double r[4] = {3, 2.25, 1.5, 0.75};
        double l = -INFINITY;
        for (int k = 0; k < 4; ++k) l = logaddexp(l, log(0.25) + log_ring(x, y, r[k], 0.08));
        return l;
    }
    if (strcmp(name, "circles") == 0) /* radius 3 and 1.5 after the x3 scaling */
        return logaddexp(log(0.5) + log_ring(x, y, 3.0, 0.24), log(0.5) + log_ring(x, y, 1.5, 0.24));
    if (strcmp(name, "moons") == 0) { /* p = 2 q + (-1, -0.2), q = arc + 0.1 N */
        double qx = (x + 1) / 2, qy = (y + 0.2) / 2;
        double l = logaddexp(log(0.5) + log_curve(qx, qy, moon_arc, 0, 0, PI, 0.1, 4096),
                             log(0.5) + log_curve(qx, qy, moon_arc, 1, 0, PI, 0.1, 4096));
        return l - log(4.0);
    }
    if (strcmp(name, "swissroll") == 0) /* p = (c(t) + N) / 5, t ~ U[1.5 pi, 4.5 pi] */
        return log_curve(5 * x, 5 * y, swiss_arc, 0, 1.5 * PI, 4.5 * PI, 1.0, 8192) + log(25.0);
    return NAN;
}

typedef struct {
    const char *name;
    size_t d;
    int toy; /* 1: library toy sampler */
    gmm g;
    double *rot; /* NULL, or the d x d rotation Q of --rotate (row-major) */
} target;

/* Q of --rotate: Gram-Schmidt (twice, for orthogonality to rounding) of d Gaussian rows. */
static double *rotation_make(size_t d) {
    double *q = malloc(d * d * sizeof *q);
    rng r;
    rng_init(&r, 4242, d, 7);
    for (size_t i = 0; i < d * d; ++i) q[i] = gauss(&r);
    for (size_t i = 0; i < d; ++i)
        for (int pass = 0; pass < 2; ++pass) {
            for (size_t k = 0; k < i; ++k) {
                double dot = 0;
                for (size_t j = 0; j < d; ++j) dot += q[i * d + j] * q[k * d + j];
                for (size_t j = 0; j < d; ++j) q[i * d + j] -= dot * q[k * d + j];
            }
            double nn = 0;
            for (size_t j = 0; j < d; ++j) nn += q[i * d + j] * q[i * d + j];
            for (size_t j = 0; j < d; ++j) q[i * d + j] /= sqrt(nn);
        }
    return q;
}

/* Row i of y [n x d] = Q x_i (transpose = 0) or Q^T x_i (transpose = 1), summed in
 * double; y may be x. */
static void rotate_rows(float *y, const double *q, const float *x, size_t n, size_t d,
                        int transpose) {
    double *a = malloc(2 * d * sizeof *a), *b = a + d;
    for (size_t r = 0; r < n; ++r) {
        for (size_t j = 0; j < d; ++j) a[j] = x[r * d + j];
        for (size_t i = 0; i < d; ++i) {
            double acc = 0;
            for (size_t j = 0; j < d; ++j) acc += (transpose ? q[j * d + i] : q[i * d + j]) * a[j];
            b[i] = acc;
        }
        for (size_t i = 0; i < d; ++i) y[r * d + i] = (float)b[i];
    }
    free(a);
}

static void target_sample(float *x, const target *tg, size_t n, uint64_t seed, uint64_t stream) {
    if (tg->toy) CHECK(stochflow_toy_sample(x, tg->name, n, seed, stream));
    else gmm_sample(x, &tg->g, n, seed, stream);
    if (tg->rot) rotate_rows(x, tg->rot, x, n, tg->d, 0);
}

static void target_logpdf(double *lp, const target *tg, const float *x, size_t n) {
    if (!tg->toy) {
        const size_t d = tg->d;
        float *u = malloc(d * sizeof *u);
        for (size_t i = 0; i < n; ++i) {
            const float *xi = x + i * d;
            if (tg->rot) { /* the mixture's density at Q^T x (|det Q| = 1) */
                rotate_rows(u, tg->rot, xi, 1, d, 1);
                xi = u;
            }
            lp[i] = gmm_logpdf(&tg->g, xi);
        }
        free(u);
        return;
    }
    float *f = malloc(n * sizeof(float));
    if (stochflow_toy_log_density(f, NULL, tg->name, x, n) == 0) {
        for (size_t i = 0; i < n; ++i) lp[i] = f[i];
    } else {
        for (size_t i = 0; i < n; ++i) lp[i] = toy_logpdf(tg->name, x[2 * i], x[2 * i + 1]);
        if (isnan(lp[0])) {
            fprintf(stderr, "no exact density for %s\n", tg->name);
            exit(2);
        }
    }
    free(f);
}

/* --rotate's own check: Q orthogonal, and the rotated draws carry the mixture's density of
 * the unrotated ones (the same draws, moved), or the KL would mean something else. */
static int rotation_check(const target *tg) {
    const size_t d = tg->d, n = 64;
    double worst = 0;
    for (size_t i = 0; i < d; ++i)
        for (size_t k = 0; k < d; ++k) {
            double dot = 0;
            for (size_t j = 0; j < d; ++j) dot += tg->rot[i * d + j] * tg->rot[k * d + j];
            worst = fmax(worst, fabs(dot - (i == k)));
        }
    float *xa = malloc(2 * n * d * sizeof *xa), *xb = xa + n * d;
    double *la = malloc(2 * n * sizeof *la), *lb = la + n;
    gmm_sample(xa, &tg->g, n, 5, 5);
    target_sample(xb, tg, n, 5, 5);
    for (size_t i = 0; i < n; ++i) la[i] = gmm_logpdf(&tg->g, xa + i * d);
    target_logpdf(lb, tg, xb, n);
    double moved = 0, dens = 0;
    for (size_t i = 0; i < n * d; ++i) moved += fabs((double)xa[i] - xb[i]);
    for (size_t i = 0; i < n; ++i) dens = fmax(dens, fabs(la[i] - lb[i]));
    free(xa);
    free(la);
    if (worst < 1e-12 && dens < 1e-3 && moved > 1e-3 * (double)(n * d)) return 0;
    fprintf(stderr, "--rotate: Q^T Q - I up to %g, log p changed by %g, moved %g\n", worst, dens,
            moved);
    return -1;
}

/* ---- options ---------------------------------------------------------------------- */

typedef struct {
    const char *target, *tag, *sched, *tdist, *coupling, *interp, *evals, *rtols;
    const char *save_params, *load_params, *dump_target, *standardize;
    size_t steps, batch, width, depth, blocks, experts, warmup, eval_n, time_fourier;
    double lr, lr_min, ema, clip, rtol, beta2;
    int ema_warmup, antithetic, threads, terr, check_oracle, batch_target, rotate;
    uint64_t seed;
} options;

static const char *arg(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static void parse(options *o, int argc, char **argv) {
    *o = (options){.tag = "run", .sched = "constant", .tdist = "uniform", .coupling = "independent",
                   .interp = "trig", .steps = 3000, .batch = 1024, .width = 512, .depth = 3,
                   .lr = 1e-3, .rtol = 1e-5, .threads = 1};
    if (argc < 2) {
        fprintf(stderr, "usage: recipe_bench TARGET [options] (see the source)\n");
        exit(2);
    }
    o->target = argv[1];
    for (int i = 2; i < argc; ++i) {
        const char *a = argv[i];
#define IS(s) (strcmp(a, s) == 0)
        if (IS("--steps")) o->steps = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--evals")) o->evals = arg(argc, argv, &i);
        else if (IS("--batch")) o->batch = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--width")) o->width = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--depth")) o->depth = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--blocks")) o->blocks = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--experts")) o->experts = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--lr")) o->lr = atof(arg(argc, argv, &i));
        else if (IS("--sched")) o->sched = arg(argc, argv, &i);
        else if (IS("--lr-min")) o->lr_min = atof(arg(argc, argv, &i));
        else if (IS("--warmup")) o->warmup = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--ema")) o->ema = atof(arg(argc, argv, &i));
        else if (IS("--ema-warmup")) o->ema_warmup = 1;
        else if (IS("--clip")) o->clip = atof(arg(argc, argv, &i));
        else if (IS("--beta2")) o->beta2 = atof(arg(argc, argv, &i));
        else if (IS("--time-fourier")) o->time_fourier = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--tdist")) o->tdist = arg(argc, argv, &i);
        else if (IS("--antithetic")) o->antithetic = 1;
        else if (IS("--coupling")) o->coupling = arg(argc, argv, &i);
        else if (IS("--interp")) o->interp = arg(argc, argv, &i);
        else if (IS("--seed")) o->seed = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--eval-n")) o->eval_n = strtoull(arg(argc, argv, &i), NULL, 10);
        else if (IS("--rtol")) o->rtol = atof(arg(argc, argv, &i));
        else if (IS("--rtols")) o->rtols = arg(argc, argv, &i);
        else if (IS("--threads")) o->threads = atoi(arg(argc, argv, &i));
        else if (IS("--tag")) o->tag = arg(argc, argv, &i);
        else if (IS("--terr")) o->terr = 1;
        else if (IS("--rotate")) o->rotate = 1;
        else if (IS("--batch-target")) o->batch_target = 1;
        else if (IS("--standardize")) o->standardize = arg(argc, argv, &i);
        else if (IS("--check-oracle")) o->check_oracle = 1;
        else if (IS("--save-params")) o->save_params = arg(argc, argv, &i);
        else if (IS("--load-params")) o->load_params = arg(argc, argv, &i);
        else if (IS("--dump-target")) o->dump_target = arg(argc, argv, &i);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            exit(2);
        }
#undef IS
    }
}

/* ---- the draw of t ---------------------------------------------------------------- */

/* Fill t[0..n) for step `step` (NULL return: let the library draw uniform t). */
static const float *draw_t(float *t, const options *o, size_t n, uint64_t step) {
    if (strcmp(o->tdist, "uniform") == 0) return NULL;
    rng r;
    rng_init(&r, o->seed + 77, step, 0);
    if (strcmp(o->tdist, "strat") == 0) { /* one t per stratum, strata shuffled */
        for (size_t i = 0; i < n; ++i) t[i] = (float)(((double)i + unif(&r)) / (double)n);
        for (size_t i = n; i > 1; --i) {
            size_t j = (size_t)(unif(&r) * (double)i);
            float s = t[i - 1];
            t[i - 1] = t[j];
            t[j] = s;
        }
        return t;
    }
    double m, s, a;
    if (sscanf(o->tdist, "logitnormal:%lf:%lf", &m, &s) == 2) {
        for (size_t i = 0; i < n; ++i) t[i] = (float)(1.0 / (1.0 + exp(-(m + s * gauss(&r)))));
        return t;
    }
    if (sscanf(o->tdist, "beta:%lf", &a) == 1 && a == 0.5) {
        for (size_t i = 0; i < n; ++i) t[i] = (float)(0.5 * (1.0 - cos(PI * unif(&r))));
        return t;
    }
    fprintf(stderr, "unknown --tdist %s\n", o->tdist);
    exit(2);
}

/* KL(p || model) on the fixed points xe (log p in lp), printed as one line. */
static void evaluate(stochflow_solver *s, stochflow_model *m, const options *o, const char *tag,
                     const float *xe, const double *lp, float *lq, size_t d, size_t done,
                     double train_cpu, double train_wall, double run_loss, double run_gnorm) {
    double e0 = cpu_seconds(), nfe = 0;
    CHECK(stochflow_solver_log_prob(lq, NULL, s, m, xe, o->eval_n, 1.0));
    stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE);
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < o->eval_n; ++i) {
        double v = lp[i] - (double)lq[i];
        sum += v;
        sum2 += v * v;
    }
    double kl = sum / (double)o->eval_n;
    double var = (sum2 / (double)o->eval_n - kl * kl) * (double)o->eval_n / (double)(o->eval_n - 1);
    printf("tag=%s target=%s%s d=%zu seed=%llu step=%zu cpu=%.2f wall=%.2f kl=%.5f se=%.5f "
           "nfe=%.0f eval_cpu=%.1f loss=%.5f gnorm=%.4g\n",
           tag, o->target, o->rotate ? "r" : "", d, (unsigned long long)o->seed, done, train_cpu,
           train_wall, kl,
           sqrt(var > 0 ? var / (double)o->eval_n : 0), nfe, cpu_seconds() - e0, run_loss,
           run_gnorm);
    fflush(stdout);
}

/* The same evaluation again at each tolerance of --rtols (lines tagged TAG@rtol). */
static void eval_rtols(stochflow_solver *s, stochflow_model *m, const options *o, const float *xe,
                       const double *lp, float *lq, size_t d, size_t done, double train_cpu,
                       double train_wall, double run_loss, double run_gnorm) {
    for (const char *p = o->rtols; p && *p;) {
        char *end, tag[96];
        double r = strtod(p, &end);
        snprintf(tag, sizeof tag, "%s@%g", o->tag, r);
        CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, r));
        CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, r));
        evaluate(s, m, o, tag, xe, lp, lq, d, done, train_cpu, train_wall, run_loss, run_gnorm);
        if (*end != ',') break;
        p = end + 1;
    }
}

/* ---- where in t the model errs (gmm targets, trig interpolant) --------------------- */

/* The exact velocity of the trig interpolant from x0 ~ N(0, I) to the mixture, and its
 * divergence. Given component k, x_t = c x0 + s x1 is Gaussian per coordinate with mean
 * s mu and variance c^2 + s^2 sd^2, and E[c' x0 + s' x1 | x_t = x, k] is affine in x with
 * slope (c' c + s' s sd^2) / var; the mixture's velocity weights these by the posterior
 * r_k(x), whose gradient is r_k (g_k - sum_j r_j g_j), g_k = grad log N_k(x). */
static void gmm_velocity(double *v, double *div, const gmm *g, double t, const double *x) {
    const size_t d = g->d, K = g->K;
    const double c = cos(0.5 * PI * t), s = sin(0.5 * PI * t);
    const double dc = -0.5 * PI * s, ds = 0.5 * PI * c;
    double lr[MAXK], mx = -INFINITY;
    for (size_t k = 0; k < K; ++k) {
        double a = log(g->w[k]);
        for (size_t j = 0; j < d; ++j) {
            double sd = g->sd[k * d + j], var = c * c + s * s * sd * sd;
            double z = x[j] - s * g->mu[k * d + j];
            a += -0.5 * z * z / var - 0.5 * log(var);
        }
        lr[k] = a;
        if (a > mx) mx = a;
    }
    double tot = 0;
    for (size_t k = 0; k < K; ++k) tot += (lr[k] = exp(lr[k] - mx));
    for (size_t k = 0; k < K; ++k) lr[k] /= tot;
    double gbar_m = 0, trace = 0; /* sum_k r_k (g_k - gbar) . m_k and sum_k r_k tr A_k */
    for (size_t j = 0; j < d; ++j) v[j] = 0;
    double gbar[128] = {0}; /* d <= 128 (main) */
    for (size_t k = 0; k < K; ++k)
        for (size_t j = 0; j < d; ++j) {
            double sd = g->sd[k * d + j], var = c * c + s * s * sd * sd;
            double z = x[j] - s * g->mu[k * d + j];
            gbar[j] += lr[k] * (-z / var);
        }
    for (size_t k = 0; k < K; ++k)
        for (size_t j = 0; j < d; ++j) {
            double sd = g->sd[k * d + j], var = c * c + s * s * sd * sd;
            double z = x[j] - s * g->mu[k * d + j];
            double slope = (dc * c + ds * s * sd * sd) / var;
            double m = ds * g->mu[k * d + j] + slope * z;
            v[j] += lr[k] * m;
            trace += lr[k] * slope;
            gbar_m += lr[k] * (-z / var - gbar[j]) * m;
        }
    *div = trace + gbar_m;
}

/* For t on a grid: E|v - v*|^2 / d and the RMS of div v - div v* over x_t ~ p_t. */
static void time_errors(stochflow_model *m, const gmm *g, const options *o) {
    enum { NT = 12 };
    static const double ts[NT] = {0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99};
    const size_t d = g->d, n = 500;
    float *x1 = malloc(n * d * sizeof(float)), *x0 = malloc(n * d * sizeof(float));
    float *xt = malloc(n * d * sizeof(float)), *v = malloc(n * d * sizeof(float));
    float *dv = malloc(n * sizeof(float));
    double *vs = malloc(d * sizeof(double)), *xd = malloc(d * sizeof(double));
    gmm_sample(x1, g, n, EVAL_SEED + 1, 3);
    CHECK(stochflow_random_normal(x0, n * d, EVAL_SEED + 2, 3));
    for (int q = 0; q < NT; ++q) {
        double t = ts[q], c = cos(0.5 * PI * t), s = sin(0.5 * PI * t);
        for (size_t i = 0; i < n * d; ++i) xt[i] = (float)(c * x0[i] + s * x1[i]);
        CHECK(stochflow_model_divergence(dv, v, m, t, xt, n));
        double e2 = 0, de2 = 0, vn = 0;
        for (size_t i = 0; i < n; ++i) {
            double ds;
            for (size_t j = 0; j < d; ++j) xd[j] = xt[i * d + j];
            gmm_velocity(vs, &ds, g, t, xd);
            for (size_t j = 0; j < d; ++j) {
                double e = (double)v[i * d + j] - vs[j];
                e2 += e * e;
                vn += vs[j] * vs[j];
            }
            de2 += ((double)dv[i] - ds) * ((double)dv[i] - ds);
        }
        printf("terr tag=%s t=%.2f verr2=%.3e vnorm2=%.3e div_rmse=%.4f\n", o->tag, t,
               e2 / (double)(n * d), vn / (double)(n * d), sqrt(de2 / (double)n));
    }
    fflush(stdout);
    free(x1);
    free(x0);
    free(xt);
    free(v);
    free(dv);
    free(vs);
    free(xd);
}

/* The oracle's own checks: its divergence against central differences of its velocity,
 * and the property that defines it, E[(dI/dt - v*(t, x_t)) . v*(t, x_t)] = 0 (v* is the
 * conditional expectation of dI/dt), by Monte Carlo with its standard error. */
static void check_oracle(const gmm *g) {
    const size_t d = g->d, n = 20000;
    float *x1 = malloc(n * d * sizeof(float)), *x0 = malloc(n * d * sizeof(float));
    double *x = malloc(d * sizeof(double)), *v = malloc(d * sizeof(double));
    double *vp = malloc(d * sizeof(double)), *vm = malloc(d * sizeof(double));
    gmm_sample(x1, g, n, 11, 12);
    CHECK(stochflow_random_normal(x0, n * d, 13, 14));
    for (double t = 0.1; t < 1.0; t += 0.4) {
        double c = cos(0.5 * PI * t), s = sin(0.5 * PI * t);
        double dc = -0.5 * PI * s, ds = 0.5 * PI * c, worst = 0, sum = 0, sum2 = 0, vv = 0;
        for (size_t i = 0; i < n; ++i) {
            double div, dv;
            for (size_t j = 0; j < d; ++j) x[j] = c * x0[i * d + j] + s * x1[i * d + j];
            gmm_velocity(v, &div, g, t, x);
            if (i < 20) { /* central differences, h = 1e-5 */
                double fd = 0;
                for (size_t j = 0; j < d; ++j) {
                    double keep = x[j];
                    x[j] = keep + 1e-5;
                    gmm_velocity(vp, &dv, g, t, x);
                    x[j] = keep - 1e-5;
                    gmm_velocity(vm, &dv, g, t, x);
                    x[j] = keep;
                    fd += (vp[j] - vm[j]) / 2e-5;
                }
                if (fabs(fd - div) > worst) worst = fabs(fd - div);
            }
            double a = 0;
            for (size_t j = 0; j < d; ++j) {
                a += (dc * x0[i * d + j] + ds * x1[i * d + j] - v[j]) * v[j];
                vv += v[j] * v[j];
            }
            sum += a;
            sum2 += a * a;
        }
        double mean = sum / (double)n, se = sqrt((sum2 / (double)n - mean * mean) / (double)n);
        printf("oracle d=%zu t=%.1f div_vs_fd_max_abs=%.2e E[(dI-v*).v*]=%.5f +- %.5f "
               "(E|v*|^2 = %.4f)\n", d, t, worst, mean, se, vv / (double)n);
    }
    free(x1);
    free(x0);
    free(x);
    free(v);
    free(vp);
    free(vm);
}

/* Write the mixture (for a reference implementation to sample the same target): a line
 * "d K", then per component its weight, its d means and its d standard deviations. */
static void dump_target(const gmm *g, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f, "%zu %zu\n", g->d, g->K);
    for (size_t k = 0; k < g->K; ++k) {
        fprintf(f, "%.17g", g->w[k]);
        for (size_t j = 0; j < g->d; ++j) fprintf(f, " %.17g", g->mu[k * g->d + j]);
        for (size_t j = 0; j < g->d; ++j) fprintf(f, " %.17g", g->sd[k * g->d + j]);
        fprintf(f, "\n");
    }
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Raw little-endian float32 parameters in the library's flat layout. */
static void params_io(stochflow_model *m, const char *path, int load) {
    float *p;
    size_t n;
    CHECK(stochflow_model_parameters(&p, &n, m));
    FILE *f = fopen(path, load ? "rb" : "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t done = load ? fread(p, sizeof(float), n, f) : fwrite(p, sizeof(float), n, f);
    if (done != n || (load && fgetc(f) != EOF)) {
        fprintf(stderr, "%s: expected exactly %zu float32 parameters\n", path, n);
        exit(1);
    }
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    options o;
    parse(&o, argc, argv);
    target tg = {.name = o.target};
    if (strncmp(o.target, "gmm", 3) == 0) {
        tg.d = strtoull(o.target + 3, NULL, 10);
        if (tg.d < 2 || tg.d > 128) {
            fprintf(stderr, "gmmD: D in 2..128\n");
            return 2;
        }
        gmm_make(&tg.g, tg.d);
    } else {
        tg.d = 2;
        tg.toy = 1;
    }
    const size_t d = tg.d, B = o.batch;
    /* combinations whose numbers would mean something else than they say */
    const char *refuse = NULL;
    if ((o.terr || o.check_oracle || o.dump_target || o.rotate) && tg.toy)
        refuse = "--terr, --check-oracle, --dump-target and --rotate need a gmmD target";
    else if (o.rotate && (o.terr || o.check_oracle || o.dump_target))
        refuse = "--terr, --check-oracle and --dump-target describe the unrotated mixture";
    else if ((o.terr || o.check_oracle) && strcmp(o.interp, "trig") != 0)
        refuse = "--terr and --check-oracle: the exact velocity is the trig interpolant's";
    else if (o.terr && (o.standardize || strcmp(o.coupling, "independent") != 0))
        refuse = "--terr: the exact velocity is that of the independent coupling, no map";
    else if (o.standardize && strcmp(o.standardize, "col") != 0 &&
             strcmp(o.standardize, "whiten") != 0)
        refuse = "--standardize: col or whiten";
    else if (o.load_params && (o.standardize || o.evals))
        refuse = "--load-params evaluates given weights once: no --standardize, no --evals";
    else if (o.save_params && o.ema > 0)
        refuse = "--save-params writes the live weights, --ema evaluates the EMA ones";
    if (refuse) {
        fprintf(stderr, "%s\n", refuse);
        free(tg.g.mu);
        free(tg.g.sd);
        return 2;
    }
    if (o.rotate) {
        tg.rot = rotation_make(d);
        if (rotation_check(&tg) != 0) {
            free(tg.g.mu);
            free(tg.g.sd);
            free(tg.rot);
            return 1;
        }
    }
    if (o.dump_target || o.check_oracle) { /* either, then exit */
        if (o.dump_target) dump_target(&tg.g, o.dump_target);
        if (o.check_oracle) check_oracle(&tg.g);
        free(tg.g.mu);
        free(tg.g.sd);
        return 0;
    }
    if (o.eval_n == 0) o.eval_n = d <= 8 ? 2000 : d <= 21 ? 1000 : 500;

    /* the exact side of the KL, once: fixed points x ~ p and log p(x) */
    float *xe = malloc(o.eval_n * d * sizeof(float)), *lq = malloc(o.eval_n * sizeof(float));
    double *lp = malloc(o.eval_n * sizeof(double));
    target_sample(xe, &tg, o.eval_n, EVAL_SEED, (((uint64_t)1) << 40) + 5);
    target_logpdf(lp, &tg, xe, o.eval_n);

    stochflow_config *cfg;
    CHECK(stochflow_config_new(&cfg, d));
    size_t widths[64];
    for (size_t l = 0; l < o.depth; ++l) widths[l] = o.width;
    CHECK(stochflow_config_set_hidden(cfg, o.depth, widths));
    if (o.blocks) CHECK(stochflow_config_set_resmlp(cfg, o.width, o.blocks));
    if (o.experts) CHECK(stochflow_config_set_resmlp_experts(cfg, o.experts));
    CHECK(stochflow_config_set_seed(cfg, o.seed));
    CHECK(stochflow_config_set_interpolant(cfg, strcmp(o.interp, "linear") == 0
                                                    ? STOCHFLOW_INTERP_LINEAR
                                                    : STOCHFLOW_INTERP_TRIG));
    if (o.time_fourier)
        CHECK(stochflow_config_set_time_embedding(cfg, STOCHFLOW_TIME_FOURIER, o.time_fourier));
    stochflow_model *m;
    CHECK(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, o.threads));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, o.lr));
    if (strcmp(o.sched, "cosine") == 0) {
        CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE));
        CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)o.steps));
        if (o.lr_min > 0) CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_MIN, o.lr * o.lr_min));
    }
    if (o.warmup) CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_WARMUP, (double)o.warmup));
    if (o.ema > 0) CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, o.ema));
    if (o.ema_warmup) CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_WARMUP, 1));
    if (o.clip > 0) CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_CLIP, o.clip));
    if (o.standardize) { /* fitted on draws the training never sees (stream 2^41) */
        const size_t nf = 100000;
        float *xf = malloc(nf * d * sizeof(float));
        target_sample(xf, &tg, nf, o.seed + 5, ((uint64_t)1) << 41);
        if (strcmp(o.standardize, "whiten") == 0) CHECK(stochflow_model_fit_whitening(m, xf, nf));
        else CHECK(stochflow_model_fit_standardization(m, xf, nf));
        free(xf);
    }
    if (o.beta2 > 0) CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_BETA2, o.beta2));
    if (o.batch_target)
        CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_TRAIN_TARGET,
                                        STOCHFLOW_TRAIN_TARGET_BATCH));
    if (strcmp(o.coupling, "ot") == 0)
        CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_COUPLING, STOCHFLOW_COUPLING_OT));

    stochflow_solver *s;
    CHECK(stochflow_solver_new(&s));
    CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_DOPRI5));
    CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, o.rtol));
    CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, o.rtol));
    CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_EXACT));

    float *x1 = malloc(B * d * sizeof(float)), *x0 = malloc(B * d * sizeof(float));
    float *tb = malloc(B * sizeof(float));
    double train_cpu = 0, train_wall = 0, loss = NAN, run_loss = NAN, run_gnorm = NAN;
    float *grads;
    size_t n_params;
    CHECK(stochflow_model_gradients(&grads, &n_params, m));
    if (o.load_params) { /* evaluate given weights instead of training */
        params_io(m, o.load_params, 1);
        o.steps = 0;
        evaluate(s, m, &o, o.tag, xe, lp, lq, d, 0, 0, 0, NAN, NAN);
        eval_rtols(s, m, &o, xe, lp, lq, d, 0, 0, 0, NAN, NAN);
    }
    size_t at[256], n_at = 0; /* --evals */
    for (const char *p = o.evals; p && *p && n_at < 256;) {
        char *end;
        at[n_at++] = strtoull(p, &end, 10);
        if (*end != ',') break;
        p = end + 1;
    }
    double wsd = -1; /* the fraction of the run that decays; -1: the library's schedule */
    if (strcmp(o.sched, "linear") == 0) wsd = 1;
    else if (strncmp(o.sched, "wsd:", 4) == 0) wsd = atof(o.sched + 4);
    else if (strcmp(o.sched, "cosine") != 0 && strcmp(o.sched, "constant") != 0) {
        fprintf(stderr, "--sched: constant, cosine, linear or wsd:F\n");
        return 2;
    }
    if (wsd == 0 || wsd > 1) {
        fprintf(stderr, "--sched wsd:F: F in (0, 1]\n");
        return 2;
    }
    for (size_t step = 0; step < o.steps; ++step) {
        double c0 = cpu_seconds(), w0 = wall_seconds();
        if (wsd > 0) {
            double left = (double)(o.steps - step) / (double)o.steps; /* 1 .. 1/steps */
            CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR,
                                            left >= wsd ? o.lr : o.lr * left / wsd));
        }
        const float *tp = draw_t(tb, &o, B, step), *x0p = NULL;
        if (o.antithetic) { /* rows h+i repeat row i's x1 and t with -x0 */
            size_t h = B / 2;
            target_sample(x1, &tg, h, o.seed, step);
            memcpy(x1 + h * d, x1, h * d * sizeof(float));
            if (B % 2) target_sample(x1 + 2 * h * d, &tg, 1, o.seed + 1, step);
            CHECK(stochflow_random_normal(x0, B * d, o.seed + 3, step));
            for (size_t i = 0; i < h * d; ++i) x0[h * d + i] = -x0[i];
            if (!tp) { /* the library would draw independent t per row: give it pairs */
                rng r;
                rng_init(&r, o.seed + 78, step, 0);
                for (size_t i = 0; i < h; ++i) tb[i] = tb[h + i] = (float)unif(&r);
                if (B % 2) tb[B - 1] = (float)unif(&r);
            } else {
                memcpy(tb + h, tb, h * sizeof(float));
            }
            tp = tb;
            x0p = x0;
        } else {
            target_sample(x1, &tg, B, o.seed, step);
        }
        CHECK(stochflow_model_train_step(&loss, m, x1, B, x0p, tp));
        train_cpu += cpu_seconds() - c0;
        train_wall += wall_seconds() - w0;
        run_loss = isnan(run_loss) ? loss : 0.99 * run_loss + 0.01 * loss;
        double g2 = 0; /* the raw gradient of this step (clipping scales the update only) */
        for (size_t i = 0; i < n_params; ++i) g2 += (double)grads[i] * grads[i];
        run_gnorm = isnan(run_gnorm) ? sqrt(g2) : 0.99 * run_gnorm + 0.01 * sqrt(g2);
        size_t done = step + 1;
        int eval_now = done == o.steps;
        for (size_t q = 0; q < n_at; ++q) eval_now |= at[q] == done;
        if (!eval_now) continue;
        evaluate(s, m, &o, o.tag, xe, lp, lq, d, done, train_cpu, train_wall, run_loss,
                 run_gnorm);
        if (done == o.steps)
            eval_rtols(s, m, &o, xe, lp, lq, d, done, train_cpu, train_wall, run_loss, run_gnorm);
    }
    if (o.terr) time_errors(m, &tg.g, &o);
    if (o.save_params) params_io(m, o.save_params, 0);
    free(x1);
    free(x0);
    free(tb);
    free(xe);
    free(lq);
    free(lp);
    free(tg.g.mu);
    free(tg.g.sd);
    free(tg.rot);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    return 0;
}
