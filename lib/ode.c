/* ode.c - fixed-step (Euler, Heun, RK4) and adaptive Dormand-Prince 5(4) integrators
 * for the augmented state (x [n x d], l [n x K]) of doc/log-density.md.
 *
 * Precision: the caller's state is float32, but the integrator keeps its own copy of
 * the state and of the log-density accumulators in double, so the many small
 * increments of a long or tightly controlled integration are not lost to float
 * rounding. Stage states are rounded to float only to evaluate the velocity (the
 * model and the callbacks take float). Stage derivatives are stored as float (they
 * are produced in float). Extra memory: O(n * (d + K)) per stage, nothing per step.
 *
 * Time is double throughout; the grid of the fixed-step methods is t0 + (t1-t0) k/N
 * (no accumulated drift) and the last point is t1 exactly. */
#include <math.h>
#include <string.h>

#include "model.h"
#include "solver.h"

#define MAX_STAGES 7

typedef struct {
    stochflow_solver *s;
    const stochflow__vsrc *src;
    size_t n, d, K;
    const float *probes; /* Hutchinson probes or NULL (exact) */
    double tlo, thi;     /* the integration interval: stage times are clamped into it */
    double *y, *ynew;    /* [n x d] state: last accepted, candidate */
    double *l, *lnew;    /* [n x K] accumulators (NULL when K == 0) */
    float *xs;           /* [n x d] stage state rounded to float */
    float *kv[MAX_STAGES]; /* [n x d] stage velocities */
    float *kl[MAX_STAGES]; /* [n x K] stage accumulator derivatives (-div or -quad) */
    int nstages;
} ode_ctx;

/* First index of a non-finite value in a[0..len), or len. */
static size_t first_nonfinite(const float *a, size_t len) {
    for (size_t i = 0; i < len; ++i)
        if (!stochflow__finitef(a[i])) return i;
    return len;
}

/* Evaluate the field at (t, c->xs): velocities into kv, and when want_l the
 * accumulator derivatives (-div or -quad) into kl. Counts one NFE. */
static int eval(ode_ctx *c, double t, float *kv, float *kl, int want_l) {
    const stochflow__vsrc *src = c->src;
    size_t n = c->n, d = c->d, K = c->K;
    int hutch = c->probes != NULL;
    int rc;
    if (!want_l || K == 0) kl = NULL;
    /* t + c h can land an ulp outside [t0, t1] (and so outside [0, 1]) */
    if (t < c->tlo) t = c->tlo;
    if (t > c->thi) t = c->thi;
    c->s->nfe += 1;
    if (src->model) {
        rc = stochflow__model_eval(src->model, t, c->xs, n, kv, (kl && !hutch) ? kl : NULL,
                                   (kl && hutch) ? c->probes : NULL, (kl && hutch) ? K : 0,
                                   (kl && hutch) ? kl : NULL);
        if (rc < 0) return rc;
    } else if (src->fn) {
        rc = src->fn(src->user, t, n, d, c->xs, kv, kl);
        RETURN_ERROR_IF(rc != 0, STOCHFLOW_E_CALLBACK,
                        "velocity callback returned %d at t = %.17g", rc, t);
    } else {
        rc = src->probe_fn(src->user, t, n, d, c->xs, kv, kl ? c->probes : NULL, kl ? K : 0,
                           kl);
        RETURN_ERROR_IF(rc != 0, STOCHFLOW_E_CALLBACK,
                        "velocity callback returned %d at t = %.17g", rc, t);
    }
    size_t bad = first_nonfinite(kv, n * d);
    RETURN_ERROR_IF(bad < n * d, STOCHFLOW_E_NONFINITE,
                    "velocity is not finite at t = %.17g (point %zu, component %zu: %g)", t,
                    bad / d, bad % d, (double)kv[bad]);
    if (kl) {
        bad = first_nonfinite(kl, n * K);
        RETURN_ERROR_IF(bad < n * K, STOCHFLOW_E_NONFINITE,
                        "divergence is not finite at t = %.17g (point %zu)", t, bad / K);
        for (size_t i = 0; i < n * K; ++i) kl[i] = -kl[i];
    }
    return 0;
}

/* c->xs = float(y + h * sum_j a[j] kv[j]), j < ns. */
static void stage_state(ode_ctx *c, double h, const double *a, int ns) {
    size_t len = c->n * c->d;
    for (size_t i = 0; i < len; ++i) {
        double acc = 0.0;
        for (int j = 0; j < ns; ++j)
            if (a[j] != 0.0) acc += a[j] * (double)c->kv[j][i];
        c->xs[i] = (float)(c->y[i] + h * acc);
    }
}

/* ynew = y + h sum_j b[j] kv[j]; lnew likewise with kl (j < ns). */
static void combine(ode_ctx *c, double h, const double *b, int ns) {
    size_t len = c->n * c->d;
    for (size_t i = 0; i < len; ++i) {
        double acc = 0.0;
        for (int j = 0; j < ns; ++j)
            if (b[j] != 0.0) acc += b[j] * (double)c->kv[j][i];
        c->ynew[i] = c->y[i] + h * acc;
    }
    size_t lenl = c->n * c->K;
    for (size_t i = 0; i < lenl; ++i) {
        double acc = 0.0;
        for (int j = 0; j < ns; ++j)
            if (b[j] != 0.0) acc += b[j] * (double)c->kl[j][i];
        c->lnew[i] = c->l[i] + h * acc;
    }
}

static void accept(ode_ctx *c) {
    double *tmp = c->y;
    c->y = c->ynew;
    c->ynew = tmp;
    tmp = c->l;
    c->l = c->lnew;
    c->lnew = tmp;
    c->s->accepted += 1;
}

static void to_float_state(ode_ctx *c) {
    size_t len = c->n * c->d;
    for (size_t i = 0; i < len; ++i) c->xs[i] = (float)c->y[i];
}

static int progress(ode_ctx *c, double t) {
    c->s->t_reached = t;
    if (c->s->progress) {
        int r = c->s->progress(c->s->progress_user, t);
        RETURN_ERROR_IF(r != 0, STOCHFLOW_E_CANCELLED,
                        "integration cancelled by the progress callback at t = %.17g", t);
    }
    return 0;
}

/* ---- fixed-step Runge-Kutta ------------------------------------------------------ */

typedef struct {
    int ns;
    double c[4];
    double a[4][4];
    double b[4];
} tableau;

static const tableau EULER = {1, {0}, {{0}}, {1.0}};
static const tableau HEUN = {2, {0, 1}, {{0}, {1.0}}, {0.5, 0.5}};
static const tableau RK4 = {4,
                            {0, 0.5, 0.5, 1},
                            {{0}, {0.5}, {0, 0.5}, {0, 0, 1.0}},
                            {1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6}};

static int run_fixed(ode_ctx *c, const tableau *tb, double t0, double t1, size_t steps) {
    for (size_t k = 0; k < steps; ++k) {
        double ta = t0 + (t1 - t0) * ((double)k / (double)steps);
        double tb_ = (k + 1 == steps) ? t1 : t0 + (t1 - t0) * ((double)(k + 1) / (double)steps);
        double h = tb_ - ta;
        for (int s = 0; s < tb->ns; ++s) {
            if (s == 0)
                to_float_state(c);
            else
                stage_state(c, h, tb->a[s], s);
            FORWARD_IF_ERROR(eval(c, ta + tb->c[s] * h, c->kv[s], c->kl[s], 1));
        }
        combine(c, h, tb->b, tb->ns);
        accept(c);
        FORWARD_IF_ERROR(progress(c, tb_));
    }
    return 0;
}

/* ---- Dormand-Prince 5(4) --------------------------------------------------------- */

static const double DP_C[7] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
static const double DP_A[7][6] = {
    {0},
    {1.0 / 5},
    {3.0 / 40, 9.0 / 40},
    {44.0 / 45, -56.0 / 15, 32.0 / 9},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
/* 5th-order weights (= last row of A, FSAL) and error weights b - b_hat. */
static const double DP_B[7] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784,
                               11.0 / 84, 0};
static const double DP_E[7] = {71.0 / 57600,  0,           -71.0 / 16695, 71.0 / 1920,
                               -17253.0 / 339200, 22.0 / 525, -1.0 / 40};

/* Error norm: max over rows of the RMS over the row's components of
 * err / (atol + rtol max(|y_old|, |y_new|)); accumulators count when logp_in. */
static double error_norm(ode_ctx *c, double h, int logp_in) {
    size_t n = c->n, d = c->d, K = c->K;
    double atol = c->s->atol, rtol = c->s->rtol;
    size_t m = d + (logp_in ? K : 0);
    double worst = 0.0;
    for (size_t i = 0; i < n; ++i) {
        double sum = 0.0;
        for (size_t j = 0; j < d; ++j) {
            size_t q = i * d + j;
            double e = 0.0;
            for (int s = 0; s < 7; ++s)
                if (DP_E[s] != 0.0) e += DP_E[s] * (double)c->kv[s][q];
            e *= h;
            double sc = atol + rtol * fmax(fabs(c->y[q]), fabs(c->ynew[q]));
            sum += (e / sc) * (e / sc);
        }
        if (logp_in) {
            for (size_t k = 0; k < K; ++k) {
                size_t q = i * K + k;
                double e = 0.0;
                for (int s = 0; s < 7; ++s)
                    if (DP_E[s] != 0.0) e += DP_E[s] * (double)c->kl[s][q];
                e *= h;
                double sc = atol + rtol * fmax(fabs(c->l[q]), fabs(c->lnew[q]));
                sum += (e / sc) * (e / sc);
            }
        }
        double r = sqrt(sum / (double)m);
        if (!(r <= worst)) worst = r; /* NaN propagates */
    }
    return worst;
}

/* Hairer, Norsett & Wanner, Solving ODEs I, II.4 ("hinit"), applied per row; the batch
 * uses the smallest row estimate. f0 = kv[0]/kl[0] at (t0, y). Costs one NFE. */
static int initial_step(double *hout, ode_ctx *c, double t0, double t1, int logp_in) {
    size_t n = c->n, d = c->d, K = c->K;
    double atol = c->s->atol, rtol = c->s->rtol;
    double span = fabs(t1 - t0), dir = t1 > t0 ? 1.0 : -1.0;
    size_t m = d + (logp_in ? K : 0);
    double h0 = span;
    for (size_t i = 0; i < n; ++i) {
        double s0 = 0, s1 = 0;
        for (size_t j = 0; j < d; ++j) {
            size_t q = i * d + j;
            double sc = atol + rtol * fabs(c->y[q]);
            s0 += (c->y[q] / sc) * (c->y[q] / sc);
            s1 += ((double)c->kv[0][q] / sc) * ((double)c->kv[0][q] / sc);
        }
        if (logp_in)
            for (size_t k = 0; k < K; ++k) {
                size_t q = i * K + k;
                double sc = atol + rtol * fabs(c->l[q]);
                s0 += (c->l[q] / sc) * (c->l[q] / sc);
                s1 += ((double)c->kl[0][q] / sc) * ((double)c->kl[0][q] / sc);
            }
        double d0 = sqrt(s0 / (double)m), d1 = sqrt(s1 / (double)m);
        double hi = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
        if (hi < h0) h0 = hi;
    }
    /* explicit Euler step of size h0, then the second derivative estimate */
    for (size_t q = 0; q < n * d; ++q) c->xs[q] = (float)(c->y[q] + dir * h0 * c->kv[0][q]);
    FORWARD_IF_ERROR(eval(c, t0 + dir * h0, c->kv[1], c->kl[1], logp_in));
    double h = fmin(100.0 * h0, span);
    for (size_t i = 0; i < n; ++i) {
        double s1 = 0, s2 = 0;
        for (size_t j = 0; j < d; ++j) {
            size_t q = i * d + j;
            double sc = atol + rtol * fabs(c->y[q]);
            double f0 = c->kv[0][q], df = ((double)c->kv[1][q] - f0) / sc;
            s1 += (f0 / sc) * (f0 / sc);
            s2 += df * df;
        }
        if (logp_in)
            for (size_t k = 0; k < K; ++k) {
                size_t q = i * K + k;
                double sc = atol + rtol * fabs(c->l[q]);
                double f0 = c->kl[0][q], df = ((double)c->kl[1][q] - f0) / sc;
                s1 += (f0 / sc) * (f0 / sc);
                s2 += df * df;
            }
        double d1 = sqrt(s1 / (double)m), d2 = sqrt(s2 / (double)m) / h0;
        double mx = fmax(d1, d2);
        double h1 = mx <= 1e-15 ? fmax(1e-6, h0 * 1e-3) : pow(0.01 / mx, 1.0 / 5.0);
        if (h1 < h) h = h1;
    }
    *hout = h;
    return 0;
}

static int run_dopri5(ode_ctx *c, double t0, double t1) {
    stochflow_solver *s = c->s;
    int logp_in = c->K > 0 && s->logp_error == 1;
    double dir = t1 > t0 ? 1.0 : -1.0;
    double t = t0;
    double hmin = s->h_min;
    uint64_t max_steps = (uint64_t)s->max_steps, attempts = 0;

    to_float_state(c);
    FORWARD_IF_ERROR(eval(c, t, c->kv[0], c->kl[0], 1));
    double habs;
    if (s->h_init > 0)
        habs = fmin(s->h_init, fabs(t1 - t0));
    else
        FORWARD_IF_ERROR(initial_step(&habs, c, t0, t1, logp_in));
    double facmax = 10.0;

    for (;;) {
        RETURN_ERROR_IF(attempts >= max_steps, STOCHFLOW_E_MAX_STEPS,
                        "dopri5: %llu steps attempted without reaching t = %.17g (at t = "
                        "%.17g); raise STOCHFLOW_PARAM_MAX_STEPS or loosen the tolerances",
                        (unsigned long long)attempts, t1, t);
        int last = 0;
        double rem = fabs(t1 - t);
        if (habs >= rem * (1.0 - 1e-12)) {
            habs = rem;
            last = 1;
        }
        double h = dir * habs;
        RETURN_ERROR_IF(t + h == t, STOCHFLOW_E_STEP_UNDERFLOW,
                        "dopri5: step %g vanishes against t = %.17g", habs, t);
        for (int st = 1; st < 7; ++st) {
            stage_state(c, h, DP_A[st], st);
            FORWARD_IF_ERROR(eval(c, t + DP_C[st] * h, c->kv[st], c->kl[st], 1));
        }
        /* stage 7 is evaluated at the 5th-order solution: combine with DP_B (its
         * seventh weight is 0, so kv[6] is not needed for ynew). */
        combine(c, h, DP_B, 6);
        ++attempts;
        double err = error_norm(c, h, logp_in);
        RETURN_ERROR_IF(err != err, STOCHFLOW_E_NONFINITE,
                        "dopri5: error estimate is not finite at t = %.17g", t);
        double fac = err == 0.0 ? facmax : fmin(facmax, fmax(0.2, 0.9 * pow(err, -0.2)));
        if (err <= 1.0) {
            accept(c);
            t = last ? t1 : t + h;
            /* FSAL: the last stage is f(t_new, y_new) */
            float *tv = c->kv[0];
            c->kv[0] = c->kv[6];
            c->kv[6] = tv;
            float *tl = c->kl[0];
            c->kl[0] = c->kl[6];
            c->kl[6] = tl;
            FORWARD_IF_ERROR(progress(c, t));
            if (last) return 0;
            habs *= fac;
            facmax = 10.0;
        } else {
            s->rejected += 1;
            habs *= fac;
            facmax = 1.0; /* no growth right after a rejection */
            RETURN_ERROR_IF(habs < hmin, STOCHFLOW_E_STEP_UNDERFLOW,
                            "dopri5: step size %g below STOCHFLOW_PARAM_H_MIN = %g at t = %.17g",
                            habs, hmin, t);
        }
    }
}

int stochflow__ode_integrate(stochflow_solver *s, const stochflow__vsrc *src, float *x,
                             size_t n, double t0, double t1, double *acc, size_t K,
                             const float *probes) {
    ode_ctx c;
    memset(&c, 0, sizeof c);
    s->nfe = s->accepted = s->rejected = 0;
    s->t_reached = t0;
    if (acc == NULL) K = 0;
    if (n == 0 || t0 == t1) {
        if (acc) memset(acc, 0, n * K * sizeof *acc);
        s->t_reached = t1;
        return 0;
    }
    c.s = s;
    c.src = src;
    c.n = n;
    c.d = src->d;
    c.K = K;
    c.probes = K ? probes : NULL;
    c.tlo = t0 < t1 ? t0 : t1;
    c.thi = t0 < t1 ? t1 : t0;
    int method = (int)s->solver;
    c.nstages = method == STOCHFLOW_SOLVER_EULER ? 1
                : method == STOCHFLOW_SOLVER_HEUN ? 2
                : method == STOCHFLOW_SOLVER_RK4  ? 4
                                                  : 7;
    size_t nd, nk;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, c.d) != 0 || stochflow__mul_size(&nk, n, K) != 0,
                    STOCHFLOW_E_INVALID, "integrate: batch size overflows");
    int rc = 0;
    c.y = stochflow__alloc_array(nd, sizeof(double));
    c.ynew = stochflow__alloc_array(nd, sizeof(double));
    c.xs = stochflow__alloc_array(nd, sizeof(float));
    int ok = c.y && c.ynew && c.xs;
    if (K) {
        c.l = stochflow__calloc(nk, sizeof(double));
        c.lnew = stochflow__calloc(nk, sizeof(double));
        ok = ok && c.l && c.lnew;
    }
    for (int i = 0; i < c.nstages && ok; ++i) {
        c.kv[i] = stochflow__alloc_array(nd, sizeof(float));
        ok = c.kv[i] != NULL;
        if (ok && K) {
            c.kl[i] = stochflow__alloc_array(nk, sizeof(float));
            ok = c.kl[i] != NULL;
        }
    }
    if (!ok) {
        rc = stochflow__error(STOCHFLOW_E_NOMEM, "integrate: out of memory (batch %zu x %zu)",
                              n, c.d);
        if (acc) memset(acc, 0, nk * sizeof *acc); /* state unchanged, at t0 */
        goto done;
    }
    for (size_t i = 0; i < nd; ++i) c.y[i] = x[i];

    switch (method) {
    case STOCHFLOW_SOLVER_EULER: rc = run_fixed(&c, &EULER, t0, t1, (size_t)s->steps); break;
    case STOCHFLOW_SOLVER_HEUN: rc = run_fixed(&c, &HEUN, t0, t1, (size_t)s->steps); break;
    case STOCHFLOW_SOLVER_RK4: rc = run_fixed(&c, &RK4, t0, t1, (size_t)s->steps); break;
    default: rc = run_dopri5(&c, t0, t1); break;
    }
    /* success or failure: hand back the last accepted state (time s->t_reached) */
    for (size_t i = 0; i < nd; ++i) x[i] = (float)c.y[i];
    if (acc)
        for (size_t i = 0; i < nk; ++i) acc[i] = c.l[i];
done:
    stochflow__free(c.y);
    stochflow__free(c.ynew);
    stochflow__free(c.xs);
    stochflow__free(c.l);
    stochflow__free(c.lnew);
    for (int i = 0; i < MAX_STAGES; ++i) {
        stochflow__free(c.kv[i]);
        stochflow__free(c.kl[i]);
    }
    return rc;
}
