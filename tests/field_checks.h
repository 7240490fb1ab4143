/* field_checks.h - derivative checks shared by the suites of the networks
 * (check_model.c: the MLP; check_resmlp.c: the residual MLP): the input VJP and the
 * exact divergence against central differences of the velocity, and Hutchinson's
 * forward-mode forms against the reverse-mode VJP. Include after harness.h and
 * internal.h (stochflow__model_eval). */
#ifndef STOCHFLOW_TEST_FIELD_CHECKS_H
#define STOCHFLOW_TEST_FIELD_CHECKS_H

#include <string.h>

static void field_normals(float *x, size_t n, uint64_t stream) {
    stochflow_random_normal(x, n, 99, stream);
}

/* Velocities at x +- h e_k (every row's coordinate k moved), into vp and vm; xp, xm are
 * scratch of n x d. */
static void velocity_pm(float *vp, float *vm, float *xp, float *xm, stochflow_model *m,
                        double t, const float *x, size_t n, size_t d, size_t k, float h) {
    memcpy(xp, x, n * d * 4);
    memcpy(xm, x, n * d * 4);
    for (size_t i = 0; i < n; ++i) {
        xp[i * d + k] += h;
        xm[i * d + k] -= h;
    }
    ck_assert_ok(stochflow_model_velocity(vp, m, t, xp, n));
    ck_assert_ok(stochflow_model_velocity(vm, m, t, xm, n));
}

/* u^T dv/dx at n = 4 points (t = 0.37) against central differences (h = 1e-2):
 * tolerance 2e-3 + 1e-2 |fd|. */
static void check_vjp_fd(stochflow_model *m, size_t d) {
    const size_t n = 4;
    const float h = 1e-2f;
    float *x = malloc(n * d * 4), *u = malloc(n * d * 4), *vjp = malloc(n * d * 4);
    float *vp = malloc(n * d * 4), *vm = malloc(n * d * 4);
    float *xp = malloc(n * d * 4), *xm = malloc(n * d * 4);
    field_normals(x, n * d, 3);
    field_normals(u, n * d, 4);
    ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, 0.37, x, u, n));
    for (size_t k = 0; k < d; ++k) {
        velocity_pm(vp, vm, xp, xm, m, 0.37, x, n, d, k, h);
        for (size_t i = 0; i < n; ++i) {
            double fd = 0;
            for (size_t j = 0; j < d; ++j)
                fd += (double)u[i * d + j] * (vp[i * d + j] - vm[i * d + j]) / (2.0 * h);
            ck_assert_msg(fabs(vjp[i * d + k] - fd) <= 2e-3 + 1e-2 * fabs(fd),
                          "d=%zu vjp[%zu,%zu] %g vs fd %g", d, i, k, (double)vjp[i * d + k],
                          fd);
        }
    }
    free(x); free(u); free(vjp); free(vp); free(vm); free(xp); free(xm);
}

/* The exact divergence at n = 5 points (t = 0.8) against the trace of the central
 * differences' Jacobian (h = 1e-2): tolerance 5e-3 + 1e-2 |fd|; the velocity returned
 * beside it is bit for bit stochflow_model_velocity's. */
static void check_exact_trace_fd(stochflow_model *m, size_t d) {
    const size_t n = 5;
    const float h = 1e-2f;
    float *x = malloc(n * d * 4), *div = malloc(n * 4), *v = malloc(n * d * 4);
    float *v2 = malloc(n * d * 4), *vp = malloc(n * d * 4), *vm = malloc(n * d * 4);
    float *xp = malloc(n * d * 4), *xm = malloc(n * d * 4);
    field_normals(x, n * d, 5);
    ck_assert_ok(stochflow_model_divergence(div, v, m, 0.8, x, n));
    ck_assert_ok(stochflow_model_velocity(v2, m, 0.8, x, n));
    ck_assert_int_eq(memcmp(v, v2, n * d * 4), 0);
    double fd[5] = {0};
    for (size_t k = 0; k < d; ++k) {
        velocity_pm(vp, vm, xp, xm, m, 0.8, x, n, d, k, h);
        for (size_t i = 0; i < n; ++i) fd[i] += (vp[i * d + k] - vm[i * d + k]) / (2.0 * h);
    }
    for (size_t i = 0; i < n; ++i)
        ck_assert_msg(fabs(div[i] - fd[i]) <= 5e-3 + 1e-2 * fabs(fd[i]),
                      "d=%zu div[%zu] %g vs fd %g", d, i, (double)div[i], fd[i]);
    free(x); free(div); free(v); free(v2); free(vp); free(vm); free(xp); free(xm);
}

/* Hutchinson quadratic forms e^T J e from the forward-mode pass (K = 4 probes at n = 3
 * points of d = 5, t = 0.3) against e . (e^T J) from the VJP: an independent
 * reverse-mode computation. */
static void check_probe_quad_vs_vjp(stochflow_model *m) {
    enum { D = 5, N = 3, K = 4 };
    float x[N * D], probes[N * K * D], quad[N * K], vjp[N * D], e[N * D];
    field_normals(x, N * D, 6);
    field_normals(probes, N * K * D, 7);
    ck_assert_ok(stochflow__model_eval(m, 0.3, x, N, NULL, NULL, probes, K, quad));
    for (size_t k = 0; k < K; ++k) {
        for (size_t i = 0; i < N; ++i) memcpy(e + i * D, probes + (i * K + k) * D, D * 4);
        ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, 0.3, x, e, N));
        for (size_t i = 0; i < N; ++i) {
            double ref = 0;
            for (size_t j = 0; j < D; ++j) ref += (double)e[i * D + j] * vjp[i * D + j];
            ck_assert_double_eq_tol(quad[i * K + k], ref, 1e-4 * (1 + fabs(ref)));
        }
    }
}

/* The three checks on networks built by make(d, activation): the VJP at d = 3 and 20
 * (tanh), the exact trace at d = 2, 3, 20 (SiLU, softplus, tanh), the Hutchinson forms
 * at d = 5 (SiLU). The suites' networks are wide enough for the BLIS paths. */
static void check_field_derivatives(stochflow_model *(*make)(size_t d, int act)) {
    const size_t vjp_dims[] = {3, 20}, tr_dims[] = {2, 3, 20};
    const int acts[] = {STOCHFLOW_ACT_SILU, STOCHFLOW_ACT_SOFTPLUS, STOCHFLOW_ACT_TANH};
    for (size_t q = 0; q < 2; ++q) {
        stochflow_model *m = make(vjp_dims[q], STOCHFLOW_ACT_TANH);
        check_vjp_fd(m, vjp_dims[q]);
        stochflow_model_free(m);
    }
    for (size_t q = 0; q < 3; ++q) {
        stochflow_model *m = make(tr_dims[q], acts[q]);
        check_exact_trace_fd(m, tr_dims[q]);
        stochflow_model_free(m);
    }
    stochflow_model *m = make(5, STOCHFLOW_ACT_SILU);
    check_probe_quad_vs_vjp(m);
    stochflow_model_free(m);
}

#endif
