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

/* u^T dv/dx at n = 4 points (t = 0.37) against central differences (h = 1e-2):
 * tolerance 2e-3 + 1e-2 |fd|. */
static void check_vjp_fd(stochflow_model *m, size_t d) {
    const size_t n = 4;
    float *x = malloc(n * d * 4), *u = malloc(n * d * 4), *vjp = malloc(n * d * 4);
    float *vp = malloc(n * d * 4), *vm = malloc(n * d * 4);
    float *xp = malloc(n * d * 4), *xm = malloc(n * d * 4);
    field_normals(x, n * d, 3);
    field_normals(u, n * d, 4);
    ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, 0.37, x, u, n));
    const float h = 1e-2f;
    for (size_t k = 0; k < d; ++k) {
        memcpy(xp, x, n * d * 4);
        memcpy(xm, x, n * d * 4);
        for (size_t i = 0; i < n; ++i) {
            xp[i * d + k] += h;
            xm[i * d + k] -= h;
        }
        ck_assert_ok(stochflow_model_velocity(vp, m, 0.37, xp, n));
        ck_assert_ok(stochflow_model_velocity(vm, m, 0.37, xm, n));
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
    float *x = malloc(n * d * 4), *div = malloc(n * 4), *v = malloc(n * d * 4);
    float *v2 = malloc(n * d * 4), *vp = malloc(n * d * 4), *vm = malloc(n * d * 4);
    float *xp = malloc(n * d * 4), *xm = malloc(n * d * 4);
    field_normals(x, n * d, 5);
    ck_assert_ok(stochflow_model_divergence(div, v, m, 0.8, x, n));
    ck_assert_ok(stochflow_model_velocity(v2, m, 0.8, x, n));
    ck_assert_int_eq(memcmp(v, v2, n * d * 4), 0);
    double fd[5] = {0};
    const float h = 1e-2f;
    for (size_t k = 0; k < d; ++k) {
        memcpy(xp, x, n * d * 4);
        memcpy(xm, x, n * d * 4);
        for (size_t i = 0; i < n; ++i) {
            xp[i * d + k] += h;
            xm[i * d + k] -= h;
        }
        ck_assert_ok(stochflow_model_velocity(vp, m, 0.8, xp, n));
        ck_assert_ok(stochflow_model_velocity(vm, m, 0.8, xm, n));
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

#endif
