/* check_ode.c - integrators against closed-form flows (Gaussian interpolant fields
 * through the caller-callback path), convergence orders, directions, statistics,
 * failure statuses with their partial states, and argument validation. */
#include <string.h>

#include "gmix_oracle.h"
#include "harness.h"
#include "internal.h"

static stochflow_solver *new_solver(int method, double steps_or_tol) {
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, method));
    if (method == STOCHFLOW_SOLVER_DOPRI5) {
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, steps_or_tol));
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, steps_or_tol));
    } else {
        ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, steps_or_tol));
    }
    return s;
}

static double stat(const stochflow_solver *s, int key) {
    double v = -1;
    ck_assert_ok(stochflow_solver_stat(&v, s, key));
    return v;
}

/* n base points x0 ~ N(0, I) (test stream 3) */
static float *base_points(size_t n, size_t d, uint64_t seed) {
    float *x = malloc(n * d * sizeof *x);
    ck_assert_ok(stochflow_random_normal(x, n * d, seed, 3));
    return x;
}

/* max |x - flow(s -> t)(x0)| over the batch, single-component oracle */
static double flow_error(const gmix *g, const float *x0, const float *x, size_t n, double s,
                         double t) {
    double worst = 0, a[GM_MAXD], b[GM_MAXD];
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < g->d; ++j) a[j] = x0[i * g->d + j];
        gm_flow1(g, s, a, t, b);
        for (size_t j = 0; j < g->d; ++j) worst = fmax(worst, fabs(b[j] - x[i * g->d + j]));
    }
    return worst;
}

/* ---- core -------------------------------------------------------------------------- */

START_TEST(dopri5_gaussian_endpoint) {
    /* tight tolerance: the float32 state limits the endpoint to ~1e-6 relative */
    gmix g;
    gm_single2(&g);
    enum { N = 64 };
    float *x0 = base_points(N, 2, 1), *x = malloc(sizeof(float) * N * 2);
    memcpy(x, x0, sizeof(float) * N * 2);
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-8);
    ck_assert_ok(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0));
    double err = flow_error(&g, x0, x, N, 0.0, 1.0);
    ck_assert_msg(err < 2e-5, "dopri5 endpoint error %g", err);
    double acc = stat(s, STOCHFLOW_STAT_ACCEPTED), rej = stat(s, STOCHFLOW_STAT_REJECTED);
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_T), 1.0);
    ck_assert(acc >= 5);
    /* FSAL: 1 initial evaluation + 1 for the initial step guess + 6 per attempt */
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_NFE), 2 + 6 * (acc + rej));
    ck_assert_double_eq(g.calls, stat(s, STOCHFLOW_STAT_NFE));
    /* looser tolerance: fewer steps, larger but controlled error */
    stochflow_solver_free(s);
    s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-4);
    memcpy(x, x0, sizeof(float) * N * 2);
    ck_assert_ok(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0));
    double err4 = flow_error(&g, x0, x, N, 0.0, 1.0);
    ck_assert_msg(err4 < 1e-2, "dopri5 rtol 1e-4 error %g", err4);
    ck_assert(stat(s, STOCHFLOW_STAT_ACCEPTED) < acc);
    stochflow_solver_free(s);
    free(x0);
    free(x);
}
END_TEST

/* endpoint error of a fixed-step method with `steps` steps on [0, 1] */
static double fixed_error(int method, int steps) {
    gmix g;
    gm_single2(&g);
    enum { N = 16 };
    float *x0 = base_points(N, 2, 2), *x = malloc(sizeof(float) * N * 2);
    memcpy(x, x0, sizeof(float) * N * 2);
    stochflow_solver *s = new_solver(method, steps);
    ck_assert_ok(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0));
    int stages = method == STOCHFLOW_SOLVER_EULER ? 1 : method == STOCHFLOW_SOLVER_HEUN ? 2 : 4;
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_NFE), (double)stages * steps);
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_ACCEPTED), steps);
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_REJECTED), 0);
    double err = flow_error(&g, x0, x, N, 0.0, 1.0);
    stochflow_solver_free(s);
    free(x0);
    free(x);
    return err;
}

START_TEST(convergence_orders) {
    /* error ratio when halving the step -> 2^order. Step counts chosen so the error
     * stays far above the float32 rounding floor (~1e-6). */
    struct {
        int method, steps;
        double lo, hi;
    } cases[] = {{STOCHFLOW_SOLVER_EULER, 64, 1.8, 2.2},
                 {STOCHFLOW_SOLVER_HEUN, 16, 3.4, 4.6},
                 {STOCHFLOW_SOLVER_RK4, 10, 13.0, 19.0}};
    for (size_t c = 0; c < 3; ++c) {
        double e1 = fixed_error(cases[c].method, cases[c].steps);
        double e2 = fixed_error(cases[c].method, 2 * cases[c].steps);
        double r = e1 / e2;
        fprintf(stderr, "# method %d: err(%d) = %.3e, err(%d) = %.3e, ratio %.3f\n",
                cases[c].method, cases[c].steps, e1, 2 * cases[c].steps, e2, r);
        ck_assert_msg(r > cases[c].lo && r < cases[c].hi,
                      "method %d: error ratio %g outside [%g, %g] (errors %g, %g)",
                      cases[c].method, r, cases[c].lo, cases[c].hi, e1, e2);
    }
}
END_TEST

START_TEST(round_trip) {
    /* forward 0 -> 1 then backward 1 -> 0 returns the start: stated tolerance 1e-5
     * absolute at rtol = atol = 1e-7 (float32 state, points |x| <= ~4; measured
     * 2.4e-7 for x and <= 2.4e-7 for dlogp). */
    gmix gs[2];
    gm_single2(&gs[0]);
    gm_mix2(&gs[1]);
    enum { N = 200 };
    for (int c = 0; c < 2; ++c) {
        float *x0 = base_points(N, 2, 4), *x = malloc(sizeof(float) * N * 2);
        memcpy(x, x0, sizeof(float) * N * 2);
        stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-7);
        float dl[N], dl2[N];
        ck_assert_ok(stochflow_solver_integrate_fn(dl, NULL, s, gm_field, &gs[c], 2, x, N, 0.0, 1.0));
        ck_assert_ok(stochflow_solver_integrate_fn(dl2, NULL, s, gm_field, &gs[c], 2, x, N, 1.0, 0.0));
        ck_assert_double_eq(stat(s, STOCHFLOW_STAT_T), 0.0);
        double worst = 0, worstl = 0;
        for (size_t i = 0; i < N * 2; ++i) worst = fmax(worst, fabs(x[i] - x0[i]));
        /* the accumulated divergence cancels too */
        for (size_t i = 0; i < N; ++i) worstl = fmax(worstl, fabs(dl[i] + dl2[i]));
        ck_assert_msg(worst < 1e-5, "round trip error %g (case %d)", worst, c);
        ck_assert_msg(worstl < 1e-5, "round trip dlogp error %g (case %d)", worstl, c);
        stochflow_solver_free(s);
        free(x0);
        free(x);
    }
}
END_TEST

START_TEST(intermediate_intervals) {
    /* any [t0, t1] in either direction, every solver */
    gmix g;
    gm_single2(&g);
    enum { N = 32 };
    double iv[3][2] = {{0.2, 0.7}, {0.9, 0.35}, {1.0, 0.5}};
    int methods[2] = {STOCHFLOW_SOLVER_RK4, STOCHFLOW_SOLVER_DOPRI5};
    double par[2] = {200, 1e-8};
    for (int mi = 0; mi < 2; ++mi)
        for (int k = 0; k < 3; ++k) {
            float *x0 = base_points(N, 2, 5), *x = malloc(sizeof(float) * N * 2);
            memcpy(x, x0, sizeof(float) * N * 2);
            stochflow_solver *s = new_solver(methods[mi], par[mi]);
            ck_assert_ok(
                stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, iv[k][0], iv[k][1]));
            ck_assert_double_eq(stat(s, STOCHFLOW_STAT_T), iv[k][1]);
            double err = flow_error(&g, x0, x, N, iv[k][0], iv[k][1]);
            ck_assert_msg(err < 2e-5, "method %d interval [%g, %g]: error %g", methods[mi],
                          iv[k][0], iv[k][1], err);
            stochflow_solver_free(s);
            free(x0);
            free(x);
        }
}
END_TEST

START_TEST(fixed_step_rows_independent) {
    /* a fixed-step result for a point does not depend on its batch (bitwise) */
    gmix g;
    gm_mix2(&g);
    enum { N = 9 };
    float *xb = base_points(N, 2, 6), *x1 = base_points(N, 2, 6);
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_RK4, 20);
    float dlb[N], dl1;
    ck_assert_ok(stochflow_solver_integrate_fn(dlb, NULL, s, gm_field, &g, 2, xb, N, 0.0, 1.0));
    for (size_t i = 0; i < N; ++i) {
        ck_assert_ok(stochflow_solver_integrate_fn(&dl1, NULL, s, gm_field, &g, 2, x1 + 2 * i, 1, 0.0,
                                                   1.0));
        ck_assert_int_eq(memcmp(x1 + 2 * i, xb + 2 * i, 2 * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(&dl1, &dlb[i], sizeof(float)), 0);
    }
    stochflow_solver_free(s);
    free(xb);
    free(x1);
}
END_TEST

START_TEST(zero_length_and_empty) {
    gmix g;
    gm_single2(&g);
    float x[4] = {1, 2, 3, 4}, dl[2] = {7, 7};
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-6);
    ck_assert_ok(stochflow_solver_integrate_fn(dl, NULL, s, gm_field, &g, 2, x, 2, 0.3, 0.3));
    ck_assert(x[0] == 1 && x[3] == 4 && dl[0] == 0 && dl[1] == 0);
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_NFE), 0);
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_T), 0.3);
    /* n == 0 is a no-op, NULL buffers allowed */
    ck_assert_ok(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, NULL, 0, 0.0, 1.0));
    ck_assert_int_eq(g.calls, 0);
    stochflow_solver_free(s);
}
END_TEST

START_TEST(h_init_and_logp_error) {
    /* a given first step and both error-norm modes reach the same endpoint */
    gmix g;
    gm_mix2(&g);
    enum { N = 16 };
    float *x0 = base_points(N, 2, 7);
    float xa[N * 2], xb[N * 2], dla[N], dlb[N];
    memcpy(xa, x0, sizeof xa);
    memcpy(xb, x0, sizeof xb);
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-8);
    ck_assert_ok(stochflow_solver_integrate_fn(dla, NULL, s, gm_field, &g, 2, xa, N, 0.0, 1.0));
    double nfe_in = stat(s, STOCHFLOW_STAT_NFE);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_LOGP_ERROR, 2));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_H_INIT, 1e-3));
    ck_assert_ok(stochflow_solver_integrate_fn(dlb, NULL, s, gm_field, &g, 2, xb, N, 0.0, 1.0));
    double nfe_out = stat(s, STOCHFLOW_STAT_NFE);
    /* given h_init: no extra evaluation for the guess */
    ck_assert_double_eq(nfe_out, 1 + 6 * (stat(s, STOCHFLOW_STAT_ACCEPTED) +
                                          stat(s, STOCHFLOW_STAT_REJECTED)));
    for (size_t i = 0; i < N * 2; ++i) ck_assert_float_eq_tol(xa[i], xb[i], 1e-5);
    for (size_t i = 0; i < N; ++i) ck_assert_float_eq_tol(dla[i], dlb[i], 1e-4);
    fprintf(stderr, "# NFE with log-density in the error norm %g, without %g\n", nfe_in, nfe_out);
    stochflow_solver_free(s);
    free(x0);
}
END_TEST

/* ---- failure statuses ------------------------------------------------------------- */

static int blowup_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                        float *div) {
    (void)user;
    for (size_t i = 0; i < n * d; ++i) v[i] = (float)(1.0 / ((0.5 - t) * (0.5 - t)));
    if (div)
        for (size_t i = 0; i < n; ++i) div[i] = 0;
    return 0;
}

START_TEST(status_step_underflow) {
    /* x' = 1/(0.5 - t)^2 has x = x0 + 1/(0.5 - t) - 2: it blows up at t = 0.5 */
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-6);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_H_MIN, 1e-6));
    float x[2] = {0, 0};
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, blowup_field, NULL, 2, x, 1, 0.0, 1.0),
                     STOCHFLOW_E_STEP_UNDERFLOW);
    double t = stat(s, STOCHFLOW_STAT_T);
    ck_assert_msg(t > 0.49 && t < 0.5, "stopped at t = %.17g", t);
    /* partial state valid: the exact solution at STAT_T */
    double exact = 1.0 / (0.5 - t) - 2.0;
    ck_assert_msg(fabs(x[0] - exact) <= 1e-3 * exact, "x = %g, exact %g", x[0], exact);
    ck_assert(stat(s, STOCHFLOW_STAT_REJECTED) >= 1);
    stochflow_solver_free(s);
}
END_TEST

START_TEST(status_max_steps) {
    gmix g;
    gm_single2(&g);
    enum { N = 4 };
    float *x0 = base_points(N, 2, 8), x[N * 2];
    memcpy(x, x0, sizeof x);
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-9);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_MAX_STEPS, 3));
    float dl[N];
    ck_assert_status(stochflow_solver_integrate_fn(dl, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0),
                     STOCHFLOW_E_MAX_STEPS);
    double t = stat(s, STOCHFLOW_STAT_T);
    ck_assert(t > 0.0 && t < 1.0);
    ck_assert_double_le(stat(s, STOCHFLOW_STAT_ACCEPTED) + stat(s, STOCHFLOW_STAT_REJECTED), 3);
    ck_assert_msg(flow_error(&g, x0, x, N, 0.0, t) < 1e-5, "partial state off at t = %g", t);
    /* dlogp is the partial accumulator up to STAT_T: -(1/2) sum_j log(C_j(t)/C_j(0)) */
    double ab[4];
    gm_sched(&g, t, ab);
    double ex = 0;
    for (int j = 0; j < 2; ++j) ex -= 0.5 * log(ab[0] * ab[0] + ab[1] * ab[1] * g.s[0][j] * g.s[0][j]);
    ck_assert_double_eq_tol(dl[0], ex, 1e-5);
    stochflow_solver_free(s);
    free(x0);
}
END_TEST

START_TEST(status_nonfinite) {
    gmix g;
    gm_single2(&g);
    g.nan_after = 0.65;
    enum { N = 3 };
    float *x0 = base_points(N, 2, 9), x[N * 2];
    int methods[2] = {STOCHFLOW_SOLVER_EULER, STOCHFLOW_SOLVER_DOPRI5};
    for (int mi = 0; mi < 2; ++mi) {
        memcpy(x, x0, sizeof x);
        stochflow_solver *s = new_solver(methods[mi], mi == 0 ? 10 : 1e-6);
        ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0),
                         STOCHFLOW_E_NONFINITE);
        double t = stat(s, STOCHFLOW_STAT_T);
        ck_assert_msg(t > 0.0 && t <= 0.7, "t = %g", t);
        /* Euler (grid 0.1) evaluates at 0.7 > 0.65 after accepting the step to 0.7;
         * every dopri5 stage of an accepted step lies at or before its end time */
        if (mi == 0) ck_assert_double_eq_tol(t, 0.7, 1e-12);
        if (mi == 1) ck_assert(t <= 0.65);
        for (size_t i = 0; i < N * 2; ++i) ck_assert(isfinite(x[i]));
        if (mi == 1) ck_assert_msg(flow_error(&g, x0, x, N, 0.0, t) < 1e-4, "partial state");
        stochflow_solver_free(s);
    }
    /* non-finite input */
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-6);
    x[3] = INFINITY;
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0),
                     STOCHFLOW_E_NONFINITE);
    stochflow_solver_free(s);
    free(x0);
}
END_TEST

typedef struct {
    int calls, stop_at;
    double last_t;
} prog;

static int progress_cb(void *user, double t) {
    prog *p = user;
    ck_assert(t > p->last_t); /* forward integration: strictly increasing */
    p->last_t = t;
    return ++p->calls >= p->stop_at;
}

START_TEST(status_cancelled) {
    gmix g;
    gm_single2(&g);
    enum { N = 5 };
    float *x0 = base_points(N, 2, 10), x[N * 2];
    int methods[2] = {STOCHFLOW_SOLVER_RK4, STOCHFLOW_SOLVER_DOPRI5};
    for (int mi = 0; mi < 2; ++mi) {
        memcpy(x, x0, sizeof x);
        stochflow_solver *s = new_solver(methods[mi], mi == 0 ? 50 : 1e-8);
        prog p = {0, 3, -1};
        ck_assert_ok(stochflow_solver_set_progress(s, progress_cb, &p));
        ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0),
                         STOCHFLOW_E_CANCELLED);
        ck_assert_int_eq(p.calls, 3);
        ck_assert_double_eq(stat(s, STOCHFLOW_STAT_T), p.last_t);
        ck_assert_double_eq(stat(s, STOCHFLOW_STAT_ACCEPTED), 3);
        if (mi == 0) ck_assert_double_eq_tol(p.last_t, 0.06, 1e-15);
        ck_assert_msg(flow_error(&g, x0, x, N, 0.0, p.last_t) < 1e-5, "partial state");
        /* removing the callback: runs to the end */
        ck_assert_ok(stochflow_solver_set_progress(s, NULL, NULL));
        ck_assert_ok(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, p.last_t, 1.0));
        ck_assert_msg(flow_error(&g, x0, x, N, 0.0, 1.0) < 2e-5, "resumed integration");
        stochflow_solver_free(s);
    }
    free(x0);
}
END_TEST

START_TEST(status_callback_failure) {
    gmix g;
    gm_single2(&g);
    g.fail_at = 20;
    enum { N = 2 };
    float *x0 = base_points(N, 2, 11), x[N * 2];
    memcpy(x, x0, sizeof x);
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_RK4, 100);
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, N, 0.0, 1.0),
                     STOCHFLOW_E_CALLBACK);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "42"));
    /* 19 good evaluations = 4 steps of RK4 + 3 stages of the 5th */
    ck_assert_double_eq(stat(s, STOCHFLOW_STAT_ACCEPTED), 4);
    ck_assert_double_eq_tol(stat(s, STOCHFLOW_STAT_T), 0.04, 1e-15);
    ck_assert(flow_error(&g, x0, x, N, 0.0, 0.04) < 1e-5);
    stochflow_solver_free(s);
    free(x0);
}
END_TEST

/* ---- arguments and parameters ----------------------------------------------------- */

START_TEST(invalid_arguments) {
    gmix g;
    gm_single2(&g);
    float x[2] = {0, 0};
    stochflow_solver *s = new_solver(STOCHFLOW_SOLVER_DOPRI5, 1e-5);
    ck_assert_status(stochflow_solver_new(NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, NULL, gm_field, &g, 2, x, 1, 0, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, NULL, &g, 2, x, 1, 0, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, NULL, 1, 0, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 0, x, 1, 0, 1),
                     STOCHFLOW_E_INVALID);
    double bad_t[] = {-0.1, 1.5, NAN, INFINITY};
    for (int i = 0; i < 4; ++i) {
        ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, 1, bad_t[i], 1),
                         STOCHFLOW_E_INVALID);
        ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, 1, 0, bad_t[i]),
                         STOCHFLOW_E_INVALID);
    }
    ck_assert_status(stochflow_solver_integrate(NULL, NULL, s, NULL, x, 1, 0, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_sample(x, NULL, s, NULL, 1, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_log_prob(x, NULL, s, NULL, x, 1, 1.0), STOCHFLOW_E_INVALID);
    ck_assert_int_eq(g.calls, 0);
    /* Hutchinson needs Jacobian-vector products: not available from a callback */
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_HUTCHINSON));
    float dl;
    ck_assert_status(stochflow_solver_integrate_fn(&dl, NULL, s, gm_field, &g, 2, x, 1, 0, 1),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "Hutchinson"));
    /* ... but plain integration without the log-density is fine */
    ck_assert_ok(stochflow_solver_integrate_fn(NULL, NULL, s, gm_field, &g, 2, x, 1, 0, 1));
    stochflow_solver_free(s);
    stochflow_solver_free(NULL);
}
END_TEST

START_TEST(parameters) {
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    double v;
    int keys[] = {200, 201, 202, 203, 204, 205, 206, 207, 300, 301, 302};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; ++i) {
        double def;
        ck_assert_ok(stochflow_param_bounds(NULL, NULL, &def, keys[i]));
        ck_assert_ok(stochflow_solver_get_param(&v, s, keys[i]));
        ck_assert_double_eq(v, def);
    }
    ck_assert_ok(stochflow_solver_get_param(&v, s, STOCHFLOW_PARAM_SOLVER));
    ck_assert_double_eq(v, STOCHFLOW_SOLVER_DOPRI5);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, 1e-7));
    ck_assert_ok(stochflow_solver_get_param(&v, s, STOCHFLOW_PARAM_RTOL));
    ck_assert_double_eq(v, 1e-7);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, 0)); /* default */
    ck_assert_ok(stochflow_solver_get_param(&v, s, STOCHFLOW_PARAM_RTOL));
    ck_assert_double_eq(v, 1e-5);
    ck_assert_status(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, 5), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 2.5), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, -1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, NAN), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_param(s, STOCHFLOW_PARAM_LR, 1e-3),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_solver_set_param(s, 999, 1), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_solver_get_param(&v, s, 100), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_solver_get_param(NULL, s, 200), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_param(NULL, 200, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_stat(&v, s, 99), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_solver_stat(NULL, s, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_seed(NULL, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_progress(NULL, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_base_logpdf(NULL, NULL, NULL), STOCHFLOW_E_INVALID);
    stochflow_solver_free(s);
}
END_TEST

START_TEST(out_of_memory) {
    /* every allocation of solver_new and of an integration can fail cleanly */
    gmix g;
    gm_mix2(&g);
    int hit_ok = 0;
    for (uint64_t k = 1; k < 64 && !hit_ok; ++k) {
        stochflow_solver *s = NULL;
        float x[4] = {0.1f, 0.2f, -0.3f, 0.4f}, dl[2];
        stochflow__alloc_fail_at(k);
        int rc = stochflow_solver_new(&s);
        if (rc == 0) rc = stochflow_solver_integrate_fn(dl, NULL, s, gm_field, &g, 2, x, 2, 0.0, 1.0);
        if (rc == 0) rc = stochflow_solver_log_prob_fn(dl, NULL, s, gm_field, &g, 2, x, 2, 1.0);
        stochflow__alloc_fail_at(0);
        if (rc == 0)
            hit_ok = 1;
        else
            ck_assert_msg(rc == STOCHFLOW_E_NOMEM, "allocation %llu: %d %s", (unsigned long long)k,
                          rc, stochflow_last_error_message());
        stochflow_solver_free(s);
    }
    ck_assert(hit_ok);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("ode");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dopri5_gaussian_endpoint);
    tcase_add_test(tc, convergence_orders);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, intermediate_intervals);
    tcase_add_test(tc, fixed_step_rows_independent);
    tcase_add_test(tc, zero_length_and_empty);
    tcase_add_test(tc, h_init_and_logp_error);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, status_step_underflow);
    tcase_add_test(tc, status_max_steps);
    tcase_add_test(tc, status_nonfinite);
    tcase_add_test(tc, status_cancelled);
    tcase_add_test(tc, status_callback_failure);
    tcase_add_test(tc, invalid_arguments);
    tcase_add_test(tc, parameters);
    tcase_add_test(tc, out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}
