/* check_density.c - log-densities against closed forms (Gaussian and Gaussian-mixture
 * targets through the caller-callback path), sampling, base log-densities, and the
 * Hutchinson machinery (fixed probes, unbiasedness, standard errors) on closed-form
 * linear fields through the internal probe-field source. */
#include <string.h>

#include "gmix_oracle.h"
#include "harness.h"
#include "internal.h"
#include "solver.h"

static stochflow_solver *dopri(double tol) {
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, tol));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, tol));
    return s;
}

/* n test points: half base draws, half spread wider (tails), test stream 9 */
static float *test_points(size_t n, size_t d, uint64_t seed, double spread) {
    float *x = malloc(n * d * sizeof *x);
    ck_assert_ok(stochflow_random_normal(x, n * d, seed, 9));
    for (size_t i = 0; i < n * d; ++i) x[i] *= (float)((i / d) % 2 ? spread : 1.0);
    return x;
}

/* max |logp - log rho_t| over the batch */
static double logp_error(const gmix *g, double t, const float *x, const float *logp, size_t n) {
    double worst = 0, xd[GM_MAXD];
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < g->d; ++j) xd[j] = x[i * g->d + j];
        worst = fmax(worst, fabs(logp[i] - gm_logpdf(g, t, xd)));
    }
    return worst;
}

/* ---- oracle self-check ------------------------------------------------------------- */

START_TEST(oracle_divergence_fd) {
    /* the oracle's analytic divergence equals central differences of its velocity
     * (eps 1e-5 in double: truncation ~1e-10, rounding ~1e-11) */
    gmix gs[3];
    gm_single2(&gs[0]);
    gm_mix2(&gs[1]);
    gm_mix3(&gs[2]);
    double ts[] = {0.0, 0.3, 0.77, 1.0};
    for (int c = 0; c < 3; ++c)
        for (int it = 0; it < 4; ++it)
            for (int p = 0; p < 5; ++p) {
                const gmix *g = &gs[c];
                double x[GM_MAXD], v[GM_MAXD], vp[GM_MAXD], vm[GM_MAXD];
                for (size_t j = 0; j < g->d; ++j) x[j] = 0.7 * sin(1.3 * p + 2.1 * j) + 0.2 * p;
                double div = gm_velocity(g, ts[it], x, v), fd = 0, h = 1e-5;
                for (size_t j = 0; j < g->d; ++j) {
                    double xj = x[j];
                    x[j] = xj + h;
                    gm_velocity(g, ts[it], x, vp);
                    x[j] = xj - h;
                    gm_velocity(g, ts[it], x, vm);
                    x[j] = xj;
                    fd += (vp[j] - vm[j]) / (2 * h);
                }
                ck_assert_msg(fabs(div - fd) < 1e-6 * (1 + fabs(div)),
                              "case %d t %g: div %.12g, fd %.12g", c, ts[it], div, fd);
            }
}
END_TEST

/* ---- log-densities ----------------------------------------------------------------- */

static void check_log_prob(gmix *g, double t, double tol_solver, double tol, size_t n,
                           double spread) {
    float *x = test_points(n, g->d, 1 + g->K, spread);
    float *logp = malloc(n * sizeof *logp);
    stochflow_solver *s = dopri(tol_solver);
    ck_assert_ok(stochflow_solver_log_prob_fn(logp, NULL, s, gm_field, g, g->d, x, n, t));
    double err = logp_error(g, t, x, logp, n);
    double nfe;
    ck_assert_ok(stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE));
    fprintf(stderr, "# d=%zu K=%zu %s t=%g: max |log p error| %.3e (NFE %g)\n", g->d, g->K,
            g->linear ? "linear" : "trig", t, err, nfe);
    ck_assert_msg(err < tol, "d=%zu K=%zu t=%g: log-density error %g > %g", g->d, g->K, t, err,
                  tol);
    double t_reached;
    ck_assert_ok(stochflow_solver_stat(&t_reached, s, STOCHFLOW_STAT_T));
    ck_assert_double_eq(t_reached, 0.0);
    stochflow_solver_free(s);
    free(x);
    free(logp);
}

START_TEST(log_prob_gaussian) {
    gmix g;
    gm_single2(&g);
    check_log_prob(&g, 1.0, 1e-8, 1e-4, 200, 3.0);
    g.linear = 1;
    check_log_prob(&g, 1.0, 1e-8, 1e-4, 200, 3.0);
}
END_TEST

START_TEST(log_prob_mixture_2d) {
    gmix g;
    gm_mix2(&g);
    check_log_prob(&g, 1.0, 1e-8, 1e-4, 200, 2.0);
}
END_TEST

START_TEST(log_prob_mixture_3d) {
    gmix g;
    gm_mix3(&g);
    check_log_prob(&g, 1.0, 1e-8, 1e-4, 200, 2.0);
}
END_TEST

START_TEST(log_prob_intermediate_time) {
    gmix g;
    gm_mix2(&g);
    check_log_prob(&g, 0.5, 1e-8, 1e-4, 100, 2.0);
    check_log_prob(&g, 0.25, 1e-8, 1e-4, 100, 2.0);
    gm_mix3(&g);
    check_log_prob(&g, 0.5, 1e-8, 1e-4, 100, 2.0);
    /* t = 0 is the base density itself, no integration */
    check_log_prob(&g, 0.0, 1e-8, 1e-6, 10, 2.0);
}
END_TEST

START_TEST(log_prob_fixed_step) {
    /* RK4 with 200 steps is also accurate to 1e-4 on the mixture */
    gmix g;
    gm_mix2(&g);
    enum { N = 50 };
    float *x = test_points(N, 2, 3, 2.0), logp[N];
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 200));
    ck_assert_ok(stochflow_solver_log_prob_fn(logp, NULL, s, gm_field, &g, 2, x, N, 1.0));
    double err = logp_error(&g, 1.0, x, logp, N);
    ck_assert_msg(err < 1e-4, "RK4 log-density error %g", err);
    stochflow_solver_free(s);
    free(x);
}
END_TEST

START_TEST(logp_error_modes) {
    /* log-density excluded from the error norm: still accurate on this problem */
    gmix g;
    gm_mix3(&g);
    enum { N = 50 };
    float *x = test_points(N, 3, 4, 2.0), logp[N];
    stochflow_solver *s = dopri(1e-8);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_LOGP_ERROR, 2));
    ck_assert_ok(stochflow_solver_log_prob_fn(logp, NULL, s, gm_field, &g, 3, x, N, 1.0));
    double err = logp_error(&g, 1.0, x, logp, N);
    ck_assert_msg(err < 1e-4, "log-density error %g with LOGP_ERROR = 2", err);
    stochflow_solver_free(s);
    free(x);
}
END_TEST

/* ---- sampling ---------------------------------------------------------------------- */

START_TEST(sample_moments_and_logp) {
    /* pushed-forward samples have the target's mean and covariance (5 standard errors,
     * estimated from the sample's own 4th moments), and the forward-pass log-density
     * equals the closed form (1e-4) and the backward log_prob (1e-4). */
    gmix gs[2];
    gm_single2(&gs[0]);
    gm_mix2(&gs[1]);
    enum { N = 20000 };
    for (int c = 0; c < 2; ++c) {
        gmix *g = &gs[c];
        size_t d = g->d;
        float *x = malloc(N * d * sizeof *x), *logp = malloc(N * sizeof *logp);
        stochflow_solver *s = dopri(1e-7);
        ck_assert_ok(stochflow_solver_sample_fn(x, logp, s, gm_field, g, d, N, 77));
        /* target moments */
        double mean[GM_MAXD] = {0}, cov[GM_MAXD][GM_MAXD] = {{0}};
        for (size_t k = 0; k < g->K; ++k)
            for (size_t j = 0; j < d; ++j) mean[j] += g->q[k] * g->mu[k][j];
        for (size_t k = 0; k < g->K; ++k)
            for (size_t a = 0; a < d; ++a)
                for (size_t b = 0; b < d; ++b)
                    cov[a][b] += g->q[k] * ((a == b ? g->s[k][a] * g->s[k][a] : 0) +
                                            (g->mu[k][a] - mean[a]) * (g->mu[k][b] - mean[b]));
        double sm[GM_MAXD] = {0};
        for (size_t i = 0; i < N; ++i)
            for (size_t j = 0; j < d; ++j) sm[j] += x[i * d + j] / (double)N;
        for (size_t a = 0; a < d; ++a) {
            double se = sqrt(cov[a][a] / N);
            ck_assert_msg(fabs(sm[a] - mean[a]) < 5 * se, "case %d mean[%zu] %g vs %g (se %g)",
                          c, a, sm[a], mean[a], se);
            for (size_t b = 0; b < d; ++b) {
                double s1 = 0, s2 = 0;
                for (size_t i = 0; i < N; ++i) {
                    double p = (x[i * d + a] - mean[a]) * (x[i * d + b] - mean[b]);
                    s1 += p;
                    s2 += p * p;
                }
                s1 /= N;
                double sec = sqrt((s2 / N - s1 * s1) / N);
                ck_assert_msg(fabs(s1 - cov[a][b]) < 5 * sec,
                              "case %d cov[%zu][%zu] %g vs %g (se %g)", c, a, b, s1, cov[a][b],
                              sec);
            }
        }
        double err = logp_error(g, 1.0, x, logp, N);
        ck_assert_msg(err < 1e-4, "case %d: forward log-density error %g", c, err);
        /* backward pass on a subset agrees with the forward one */
        enum { M = 100 };
        float lb[M];
        ck_assert_ok(stochflow_solver_log_prob_fn(lb, NULL, s, gm_field, g, d, x, M, 1.0));
        for (size_t i = 0; i < M; ++i) ck_assert_float_eq_tol(lb[i], logp[i], 1e-4);
        stochflow_solver_free(s);
        free(x);
        free(logp);
    }
}
END_TEST

START_TEST(sample_reproducible) {
    /* draws keyed by (seed, row): a prefix of a larger batch, identical on repeat */
    gmix g;
    gm_mix2(&g);
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    float a[20], b[8], c[20];
    ck_assert_ok(stochflow_solver_sample_fn(a, NULL, s, gm_field, &g, 2, 10, 5));
    ck_assert_ok(stochflow_solver_sample_fn(b, NULL, s, gm_field, &g, 2, 4, 5));
    ck_assert_int_eq(memcmp(a, b, sizeof b), 0);
    ck_assert_ok(stochflow_solver_sample_fn(c, NULL, s, gm_field, &g, 2, 10, 6));
    ck_assert_int_ne(memcmp(a, c, sizeof c), 0);
    ck_assert_ok(stochflow_solver_sample_fn(NULL, NULL, s, gm_field, &g, 2, 0, 6));
    ck_assert_status(stochflow_solver_sample_fn(NULL, NULL, s, gm_field, &g, 2, 3, 6),
                     STOCHFLOW_E_INVALID);
    stochflow_solver_free(s);
}
END_TEST

/* ---- base log-density ------------------------------------------------------------- */

typedef struct {
    int fail, nan, calls;
} basecfg;

static int base_std(void *user, size_t n, size_t d, const float *x, float *logp) {
    basecfg *b = user;
    b->calls++;
    if (b->fail) return -3;
    for (size_t i = 0; i < n; ++i) {
        double q = 0;
        for (size_t j = 0; j < d; ++j) q += (double)x[i * d + j] * x[i * d + j];
        logp[i] = (float)(-0.5 * q - 0.5 * d * log(2 * GM_PI));
        if (b->nan) logp[i] = NAN;
    }
    return 0;
}

START_TEST(custom_base) {
    gmix g;
    gm_mix2(&g);
    enum { N = 20 };
    float *x = test_points(N, 2, 6, 1.5), l1[N], l2[N];
    stochflow_solver *s = dopri(1e-6);
    ck_assert_ok(stochflow_solver_log_prob_fn(l1, NULL, s, gm_field, &g, 2, x, N, 1.0));
    basecfg b = {0, 0, 0};
    ck_assert_ok(stochflow_solver_set_base_logpdf(s, base_std, &b));
    ck_assert_ok(stochflow_solver_log_prob_fn(l2, NULL, s, gm_field, &g, 2, x, N, 1.0));
    ck_assert_int_eq(b.calls, 1);
    for (size_t i = 0; i < N; ++i) ck_assert_float_eq_tol(l1[i], l2[i], 1e-5);
    b.fail = 1;
    ck_assert_status(stochflow_solver_log_prob_fn(l2, NULL, s, gm_field, &g, 2, x, N, 1.0),
                     STOCHFLOW_E_CALLBACK);
    b.fail = 0;
    b.nan = 1;
    ck_assert_status(stochflow_solver_log_prob_fn(l2, NULL, s, gm_field, &g, 2, x, N, 1.0),
                     STOCHFLOW_E_NONFINITE);
    ck_assert_ok(stochflow_solver_set_base_logpdf(s, NULL, NULL)); /* back to N(0, I) */
    ck_assert_ok(stochflow_solver_log_prob_fn(l2, NULL, s, gm_field, &g, 2, x, N, 1.0));
    for (size_t i = 0; i < N; ++i) ck_assert_float_eq(l1[i], l2[i]);
    /* the standard error of an exact divergence is 0, and asking for it changes nothing */
    float se[N], se2[N], xs[2 * N], dl[N];
    for (size_t i = 0; i < N; ++i) se[i] = se2[i] = NAN;
    ck_assert_ok(stochflow_solver_log_prob_fn(l2, se, s, gm_field, &g, 2, x, N, 1.0));
    for (size_t i = 0; i < N; ++i) {
        ck_assert_float_eq(l1[i], l2[i]);
        ck_assert(se[i] == 0.0f);
    }
    memcpy(xs, x, sizeof xs);
    ck_assert_ok(stochflow_solver_integrate_fn(dl, se2, s, gm_field, &g, 2, xs, N, 1.0, 0.0));
    for (size_t i = 0; i < N; ++i) ck_assert(se2[i] == 0.0f);
    /* a callback has no Hutchinson form: asking for only the standard error is refused */
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_HUTCHINSON));
    ck_assert_status(stochflow_solver_log_prob_fn(l2, se, s, gm_field, &g, 2, x, N, 1.0),
                     STOCHFLOW_E_UNSUPPORTED);
    memcpy(xs, x, sizeof xs);
    ck_assert_status(stochflow_solver_integrate_fn(NULL, se2, s, gm_field, &g, 2, xs, N, 1.0, 0.0),
                     STOCHFLOW_E_UNSUPPORTED);
    stochflow_solver_free(s);
    free(x);
}
END_TEST

START_TEST(log_prob_errors) {
    gmix g;
    gm_single2(&g);
    float x[4] = {0, 1, 2, NAN}, l[2];
    stochflow_solver *s = dopri(1e-5);
    ck_assert_status(stochflow_solver_log_prob_fn(l, NULL, s, gm_field, &g, 2, x, 2, 1.0),
                     STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_solver_log_prob_fn(NULL, NULL, s, gm_field, &g, 2, x, 1, 1.0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_log_prob_fn(l, NULL, s, gm_field, &g, 2, NULL, 1, 1.0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_log_prob_fn(l, NULL, s, gm_field, &g, 2, x, 1, 1.01),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_log_prob_fn(l, NULL, NULL, gm_field, &g, 2, x, 1, 1.0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_log_prob_fn(l, NULL, s, NULL, &g, 2, x, 1, 1.0),
                     STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_solver_log_prob_fn(NULL, NULL, s, gm_field, &g, 2, NULL, 0, 1.0));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_HUTCHINSON));
    ck_assert_status(stochflow_solver_log_prob_fn(l, NULL, s, gm_field, &g, 2, x, 1, 1.0),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_int_eq(g.calls, 0);
    stochflow_solver_free(s);
}
END_TEST

/* ---- Hutchinson on a closed-form linear field --------------------------------------- */

/* v = (1 + t) A x with a fixed d x d matrix A; quad = (1 + t) p^T A p. */
typedef struct {
    size_t d;
    double A[4][4];
} linfield;

static int lin_probe_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                           const float *probes, size_t K, float *quad) {
    const linfield *f = user;
    for (size_t i = 0; i < n; ++i)
        for (size_t a = 0; a < d; ++a) {
            double s = 0;
            for (size_t b = 0; b < d; ++b) s += f->A[a][b] * x[i * d + b];
            v[i * d + a] = (float)((1 + t) * s);
        }
    if (quad)
        for (size_t i = 0; i < n; ++i)
            for (size_t k = 0; k < K; ++k) {
                const float *p = probes + (i * K + k) * d;
                double q = 0;
                for (size_t a = 0; a < d; ++a)
                    for (size_t b = 0; b < d; ++b) q += p[a] * f->A[a][b] * p[b];
                quad[i * K + k] = (float)((1 + t) * q);
            }
    return 0;
}

static void lin_default(linfield *f) {
    *f = (linfield){.d = 3, .A = {{0.3, 0.5, -0.2}, {0.1, -0.4, 0.6}, {0.25, -0.3, 0.2}}};
}

/* integral of (1 + t) over [t0, t1] */
static double lin_weight(double t0, double t1) { return (t1 - t0) + 0.5 * (t1 * t1 - t0 * t0); }

START_TEST(hutchinson_probes_fixed) {
    /* K = 1: the accumulator is exactly -(p^T A p) int (1 + t) dt for the probe of
     * the row, regenerated here from (seed, PROBE stream, row): the probe was drawn
     * as documented and held fixed along the whole adaptive trajectory. */
    linfield f;
    lin_default(&f);
    stochflow__vsrc src = {.probe_fn = lin_probe_field, .user = &f, .d = 3};
    enum { N = 30 };
    float *x = test_points(N, 3, 7, 1.0), dl[N], se[N];
    stochflow_solver *s = dopri(1e-8);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_HUTCHINSON));
    ck_assert_ok(stochflow_solver_set_seed(s, 1234));
    ck_assert_ok(stochflow__solver_integrate_src(dl, se, s, &src, x, N, 0.1, 0.9));
    double w = lin_weight(0.1, 0.9);
    for (size_t i = 0; i < N; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, 1234, STOCHFLOW__STREAM_PROBE, 0, i);
        double p[3], q = 0;
        for (int a = 0; a < 3; ++a) p[a] = (stochflow__rng_u32(&r) & 1u) ? 1.0 : -1.0;
        for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) q += p[a] * f.A[a][b] * p[b];
        ck_assert_double_eq_tol(dl[i], -q * w, 1e-5);
        ck_assert(isnan(se[i])); /* K = 1: no spread estimate */
    }
    stochflow_solver_free(s);
    free(x);
}
END_TEST

/* Run n rows with K probes; return the mean over rows of the estimates, the
 * empirical std of the row estimates and the RMS of the reported standard errors. */
static void hutch_stats(double *mean, double *emp_sd, double *rep_se, const linfield *f,
                        int dist, size_t n, size_t K) {
    stochflow__vsrc src = {.probe_fn = lin_probe_field, .user = (void *)f, .d = f->d};
    float *x = test_points(n, f->d, 8, 1.0), *dl = malloc(n * sizeof *dl),
          *se = malloc(n * sizeof *se);
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 10));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_HUTCHINSON));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, (double)K));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBE_DIST, dist));
    ck_assert_ok(stochflow__solver_integrate_src(dl, se, s, &src, x, n, 0.0, 1.0));
    double s1 = 0, s2 = 0, q = 0;
    for (size_t i = 0; i < n; ++i) {
        s1 += dl[i];
        s2 += (double)dl[i] * dl[i];
        q += (double)se[i] * se[i];
    }
    *mean = s1 / n;
    *emp_sd = sqrt((s2 - s1 * s1 / n) / (n - 1));
    *rep_se = sqrt(q / n);
    stochflow_solver_free(s);
    free(x);
    free(dl);
    free(se);
}

START_TEST(hutchinson_unbiased_and_se) {
    /* Exact: -tr(A) * 1.5. Per-probe variance, Rademacher: 2 sum_{a != b} S_ab^2,
     * Gaussian: 2 sum_ab S_ab^2 with S = (A + A^T)/2, times 1.5^2. With K probes per
     * row the row estimate has sd sqrt(var/K); the reported SE must match both that
     * theory and the empirical spread across rows (15% with 400 rows: the sd of a
     * sample sd is ~ 1/sqrt(2 * 400) = 3.5%); the grand mean is within 3 standard
     * errors of the exact value. */
    linfield f;
    lin_default(&f);
    double w = lin_weight(0.0, 1.0), tr = 0, off = 0, diag = 0;
    for (int a = 0; a < 3; ++a) {
        tr += f.A[a][a];
        for (int b = 0; b < 3; ++b) {
            double S = 0.5 * (f.A[a][b] + f.A[b][a]);
            if (a == b)
                diag += S * S;
            else
                off += S * S;
        }
    }
    double exact = -tr * w;
    int dists[2] = {STOCHFLOW_PROBE_RADEMACHER, STOCHFLOW_PROBE_GAUSSIAN};
    double var1[2] = {2 * off * w * w, 2 * (off + diag) * w * w};
    enum { N = 400, K = 16 };
    for (int c = 0; c < 2; ++c) {
        double mean, sd, se;
        hutch_stats(&mean, &sd, &se, &f, dists[c], N, K);
        double theory = sqrt(var1[c] / K);
        fprintf(stderr, "# Hutchinson dist %d: mean %.5f exact %.5f; row sd %.4f, reported "
                        "se %.4f, theory %.4f\n", dists[c], mean, exact, sd, se, theory);
        ck_assert_msg(fabs(mean - exact) < 3 * sd / sqrt(N), "dist %d: mean %g vs exact %g",
                      dists[c], mean, exact);
        ck_assert_msg(fabs(se / sd - 1) < 0.15, "dist %d: reported se %g vs empirical %g",
                      dists[c], se, sd);
        ck_assert_msg(fabs(se / theory - 1) < 0.15, "dist %d: reported se %g vs theory %g",
                      dists[c], se, theory);
    }
    /* many probes at one point: within 3 reported SEs of the exact value */
    {
        stochflow__vsrc src = {.probe_fn = lin_probe_field, .user = &f, .d = 3};
        float x[3] = {0.5f, -1.0f, 0.25f}, dl, se1;
        stochflow_solver *s = dopri(1e-7);
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE,
                                                STOCHFLOW_TRACE_HUTCHINSON));
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, 4096));
        ck_assert_ok(stochflow__solver_integrate_src(&dl, &se1, s, &src, x, 1, 0.0, 1.0));
        ck_assert_msg(fabs(dl - exact) < 3 * se1, "K=4096: %g vs %g (se %g)", dl, exact, se1);
        ck_assert(se1 > 0 && se1 < 0.05);
        stochflow_solver_free(s);
    }
    /* diagonal A with Rademacher probes: p^T A p = tr A for every probe, SE exactly 0 */
    linfield dg = {.d = 3, .A = {{0.3, 0, 0}, {0, -0.4, 0}, {0, 0, 0.2}}};
    double mean, sd, se;
    hutch_stats(&mean, &sd, &se, &dg, STOCHFLOW_PROBE_RADEMACHER, 20, 4);
    ck_assert_double_eq_tol(mean, -0.1 * w, 1e-5);
    ck_assert_double_lt(se, 1e-6);
}
END_TEST

START_TEST(exact_trace_se_zero) {
    /* exact trace: standard errors are 0; the probe field's exact path is unused */
    gmix g;
    gm_single2(&g);
    float x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, dl[2], se[2] = {7, 7};
    stochflow__vsrc src = {.fn = gm_field, .user = &g, .d = 2};
    stochflow_solver *s = dopri(1e-6);
    ck_assert_ok(stochflow__solver_integrate_src(dl, se, s, &src, x, 2, 0.0, 1.0));
    ck_assert(se[0] == 0 && se[1] == 0);
    /* closed form: -int div = -(1/2) sum_j log(s_j^2) */
    ck_assert_double_eq_tol(dl[0], -(log(3.0) + log(0.5)), 1e-5);
    stochflow_solver_free(s);
}
END_TEST


/* ---- the model path: a random MLP -------------------------------------------------- */

/* A random MLP velocity field (d, hidden 2 x width, tanh, Fourier time features) with
 * its weights scaled by `gain` so the field is visibly nonlinear. */
static stochflow_model *random_mlp(size_t d, size_t width, uint64_t seed, float gain) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    size_t widths[2] = {width, width};
    ck_assert_ok(stochflow_config_new(&c, d));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, widths));
    ck_assert_ok(stochflow_config_set_activation(c, STOCHFLOW_ACT_TANH));
    ck_assert_ok(stochflow_config_set_time_embedding(c, STOCHFLOW_TIME_FOURIER, 2));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    float *p;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    for (size_t i = 0; i < np; ++i) p[i] *= gain;
    return m;
}

/* velocity callback wrapping a model, with the divergence by central differences of
 * stochflow_model_velocity (float; eps 1e-2 -> error ~1e-4 on these fields) */
static int model_fd_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                          float *div) {
    stochflow_model *m = user;
    if (stochflow_model_velocity(v, m, t, x, n) != 0) return 1;
    if (div == NULL) return 0;
    float *xp = malloc(n * d * sizeof *xp), *vp = malloc(n * d * sizeof *vp),
          *vm = malloc(n * d * sizeof *vm);
    const float eps = 1e-2f;
    for (size_t i = 0; i < n; ++i) div[i] = 0;
    for (size_t j = 0; j < d; ++j) {
        memcpy(xp, x, n * d * sizeof *xp);
        for (size_t i = 0; i < n; ++i) xp[i * d + j] += eps;
        stochflow_model_velocity(vp, m, t, xp, n);
        for (size_t i = 0; i < n; ++i) xp[i * d + j] -= 2 * eps;
        stochflow_model_velocity(vm, m, t, xp, n);
        for (size_t i = 0; i < n; ++i)
            div[i] += (vp[i * d + j] - vm[i * d + j]) / (2 * eps);
    }
    free(xp);
    free(vp);
    free(vm);
    return 0;
}

START_TEST(model_exact_trace_fd) {
    /* the model's forward-mode exact trace equals finite differences of its velocity,
     * pointwise and integrated along trajectories by the solver (same RK4 grid, so the
     * trajectories are identical and only the divergence source differs) */
    enum { N = 40, D = 3 };
    stochflow_model *m = random_mlp(D, 32, 11, 2.0f);
    float *x = test_points(N, D, 12, 1.5), div[N], v[N * D], fd[N], v2[N * D];
    double ts[3] = {0.0, 0.4, 1.0};
    for (int it = 0; it < 3; ++it) {
        ck_assert_ok(stochflow_model_divergence(div, v, m, ts[it], x, N));
        ck_assert_int_eq(model_fd_field(m, ts[it], N, D, x, v2, fd), 0);
        for (size_t i = 0; i < N; ++i)
            ck_assert_msg(fabs(div[i] - fd[i]) < 2e-3 * (1 + fabs(fd[i])),
                          "t %g point %zu: trace %g, finite differences %g", ts[it], i,
                          (double)div[i], (double)fd[i]);
    }
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 20));
    float xa[N * D], xb[N * D], la[N], lb[N], se[N];
    memcpy(xa, x, sizeof xa);
    memcpy(xb, x, sizeof xb);
    ck_assert_ok(stochflow_solver_integrate(la, se, s, m, xa, N, 1.0, 0.0));
    ck_assert_ok(stochflow_solver_integrate_fn(lb, NULL, s, model_fd_field, m, D, xb, N, 1.0, 0.0));
    double spread = 0;
    for (size_t i = 0; i < N; ++i) {
        ck_assert(se[i] == 0.0f);
        ck_assert_msg(fabs(la[i] - lb[i]) < 2e-3 * (1 + fabs(lb[i])), "point %zu: %g vs %g", i,
                      (double)la[i], (double)lb[i]);
        spread = fmax(spread, fabs(la[i]));
    }
    ck_assert_int_eq(memcmp(xa, xb, sizeof xa), 0);
    ck_assert_msg(spread > 0.05, "test field too weak (max |dlogp| %g)", spread);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    free(x);
}
END_TEST

START_TEST(model_hutchinson_unbiased) {
    /* On one RK4 grid the x trajectory does not depend on the trace mode and the
     * accumulated estimate is linear in p^T J p, so it is exactly unbiased for the
     * exact-trace result. Over N points with K probes each, d_i = est_i - exact_i:
     * sum_i d_i is within 3 of its standard errors sqrt(sum se_i^2), and the reported
     * SEs match the empirical spread: sqrt(sum d_i^2 / sum se_i^2) in [0.85, 1.15]
     * (its own sampling sd is ~ 1/sqrt(2N) = 6%). One point with K = 4096: within 3 SE. */
    enum { N = 150, D = 2, K = 32 };
    stochflow_model *m = random_mlp(D, 32, 21, 2.0f);
    float *x = test_points(N, D, 13, 1.5), xe[N * D], xh[N * D], le[N], lh[N], se[N];
    memcpy(xe, x, sizeof xe);
    memcpy(xh, x, sizeof xh);
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 10));
    ck_assert_ok(stochflow_solver_integrate(le, NULL, s, m, xe, N, 1.0, 0.0));
    int dists[2] = {STOCHFLOW_PROBE_RADEMACHER, STOCHFLOW_PROBE_GAUSSIAN};
    for (int c = 0; c < 2; ++c) {
        memcpy(xh, x, sizeof xh);
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE,
                                                STOCHFLOW_TRACE_HUTCHINSON));
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, K));
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBE_DIST, dists[c]));
        ck_assert_ok(stochflow_solver_set_seed(s, 100 + c));
        ck_assert_ok(stochflow_solver_integrate(lh, se, s, m, xh, N, 1.0, 0.0));
        ck_assert_int_eq(memcmp(xe, xh, sizeof xe), 0);
        /* d_i = est_i - exact_i: E d_i = 0, E d_i^2 = var_i / K = E se_i^2 */
        double sd = 0, sd2 = 0, sse2 = 0;
        for (size_t i = 0; i < N; ++i) {
            ck_assert(se[i] > 0);
            double dd = lh[i] - le[i];
            sd += dd;
            sd2 += dd * dd;
            sse2 += (double)se[i] * se[i];
        }
        double zmean = sd / sqrt(sse2), ratio = sqrt(sd2 / sse2);
        fprintf(stderr, "# model Hutchinson dist %d: sum of errors / its SE %.3f, "
                        "RMS error / RMS reported SE %.3f\n", dists[c], zmean, ratio);
        ck_assert_msg(fabs(zmean) < 3, "dist %d: grand mean off by %g SE", dists[c], zmean);
        ck_assert_msg(ratio > 0.85 && ratio < 1.15, "dist %d: RMS error / RMS SE = %g",
                      dists[c], ratio);
    }
    /* many probes at one point */
    float lone, seone, xone[D];
    memcpy(xone, x, sizeof xone);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, 4096));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBE_DIST, 0));
    ck_assert_ok(stochflow_solver_integrate(&lone, &seone, s, m, xone, 1, 1.0, 0.0));
    ck_assert_msg(fabs(lone - le[0]) < 3 * seone, "K=4096: %g vs exact %g (se %g)",
                  (double)lone, (double)le[0], (double)seone);
    /* same seed, same probes: reproducible; another seed differs (Gaussian probes:
     * with d = 2 Rademacher probes take only 2 distinct values of p^T J p) */
    float l2;
    memcpy(xone, x, sizeof xone);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBE_DIST,
                                            STOCHFLOW_PROBE_GAUSSIAN));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, 3));
    ck_assert_ok(stochflow_solver_integrate(&l2, NULL, s, m, xone, 1, 1.0, 0.0));
    float l3;
    memcpy(xone, x, sizeof xone);
    ck_assert_ok(stochflow_solver_integrate(&l3, NULL, s, m, xone, 1, 1.0, 0.0));
    ck_assert(l2 == l3);
    ck_assert_ok(stochflow_solver_set_seed(s, 999));
    memcpy(xone, x, sizeof xone);
    ck_assert_ok(stochflow_solver_integrate(&l3, NULL, s, m, xone, 1, 1.0, 0.0));
    ck_assert(l2 != l3);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    free(x);
}
END_TEST

START_TEST(model_sample_round_trip) {
    /* sample (forward, with log p) then pull back: returns the base draws (stated
     * tolerance 1e-4 at rtol = atol = 1e-7) and log_prob agrees with the forward log p
     * (1e-4) */
    enum { N = 100, D = 2 };
    stochflow_model *m = random_mlp(D, 32, 31, 2.0f);
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, 1e-7));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, 1e-7));
    float x[N * D], logp[N], lb[N], xb[N * D];
    ck_assert_ok(stochflow_solver_sample(x, logp, s, m, N, 2024));
    ck_assert_ok(stochflow_solver_log_prob(lb, NULL, s, m, x, N, 1.0));
    memcpy(xb, x, sizeof xb);
    ck_assert_ok(stochflow_solver_integrate(NULL, NULL, s, m, xb, N, 1.0, 0.0));
    double moved = 0;
    for (size_t i = 0; i < N; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, 2024, STOCHFLOW__STREAM_SAMPLE, 0, i);
        for (size_t j = 0; j < D; ++j) {
            double x0 = (float)stochflow__rng_normal(&r);
            ck_assert_msg(fabs(xb[i * D + j] - x0) < 1e-4, "point %zu: %g vs base %g", i,
                          (double)xb[i * D + j], x0);
            moved = fmax(moved, fabs(x[i * D + j] - x0));
        }
        ck_assert_msg(fabs(lb[i] - logp[i]) < 1e-4, "point %zu: log_prob %g, sample %g", i,
                      (double)lb[i], (double)logp[i]);
    }
    ck_assert_msg(moved > 0.1, "flow too weak to test (max displacement %g)", moved);
    /* n = 0 and NULL logp */
    ck_assert_ok(stochflow_solver_sample(NULL, NULL, s, m, 0, 1));
    ck_assert_ok(stochflow_solver_sample(x, NULL, s, m, N, 2024));
    stochflow_solver_free(s);
    stochflow_model_free(m);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("density");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, oracle_divergence_fd);
    tcase_add_test(tc, log_prob_gaussian);
    tcase_add_test(tc, log_prob_mixture_2d);
    tcase_add_test(tc, log_prob_mixture_3d);
    tcase_add_test(tc, log_prob_intermediate_time);
    tcase_add_test(tc, log_prob_fixed_step);
    tcase_add_test(tc, logp_error_modes);
    tcase_add_test(tc, sample_moments_and_logp);
    tcase_add_test(tc, sample_reproducible);
    tcase_add_test(tc, custom_base);
    suite_add_tcase(s, tc);
    tc = tcase_create("hutchinson");
    tcase_add_test(tc, hutchinson_probes_fixed);
    tcase_add_test(tc, hutchinson_unbiased_and_se);
    tcase_add_test(tc, exact_trace_se_zero);
    suite_add_tcase(s, tc);
    tc = tcase_create("model");
    tcase_add_test(tc, model_exact_trace_fd);
    tcase_add_test(tc, model_hutchinson_unbiased);
    tcase_add_test(tc, model_sample_round_trip);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, log_prob_errors);
    suite_add_tcase(s, tc);
    return s;
}
