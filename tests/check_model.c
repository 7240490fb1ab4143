/* check_model.c - the MLP velocity model: gradients against finite differences, the
 * input VJP and the exact trace, reproducibility, bad input, and learning a Gaussian
 * target whose velocity field is known in closed form. */
#include <string.h>

#include "harness.h"
#include "internal.h"

static stochflow_model *make_model(size_t d, size_t nl, const size_t *widths, int act,
                                   int time_kind, size_t nfreq, int interp, uint64_t seed) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_config_new(&c, d));
    ck_assert_ok(stochflow_config_set_hidden(c, nl, widths));
    ck_assert_ok(stochflow_config_set_activation(c, act));
    ck_assert_ok(stochflow_config_set_time_embedding(c, time_kind, nfreq));
    ck_assert_ok(stochflow_config_set_interpolant(c, interp));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    return m;
}

static void normals(float *x, size_t n, uint64_t stream) { stochflow_random_normal(x, n, 99, stream); }

/* ---- gradients ------------------------------------------------------------------ */

/* dG/dparams by central differences (eps = 1e-2 on float weights; the loss is summed
 * in double), tolerance 2e-3 absolute + 2e-2 relative, for every parameter. */
static void check_loss_gradient(int act, int time_kind, int interp) {
    const size_t d = 2, n = 6, widths[] = {7, 5};
    stochflow_model *m = make_model(d, 2, widths, act, time_kind, 2, interp, 5);
    float x1[12], x0[12], t[6];
    normals(x1, 12, 1);
    normals(x0, 12, 2);
    for (size_t i = 0; i < n; ++i) t[i] = 0.05f + 0.15f * (float)i;
    double loss;
    ck_assert_ok(stochflow_model_compute_gradient(&loss, m, x1, n, x0, t));
    float *p, *g;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    float *g_copy = malloc(np * sizeof *g_copy);
    memcpy(g_copy, g, np * sizeof *g);
    const float eps = 1e-2f;
    for (size_t i = 0; i < np; ++i) {
        float keep = p[i];
        double lp, lm;
        p[i] = keep + eps;
        ck_assert_ok(stochflow_model_loss(&lp, m, x1, n, x0, t));
        p[i] = keep - eps;
        ck_assert_ok(stochflow_model_loss(&lm, m, x1, n, x0, t));
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        ck_assert_msg(fabs(g_copy[i] - fd) <= 2e-3 + 2e-2 * fabs(fd),
                      "act %d time %d: param %zu analytic %g vs finite difference %g", act,
                      time_kind, i, (double)g_copy[i], fd);
    }
    free(g_copy);
    stochflow_model_free(m);
}

START_TEST(loss_gradient_fd) {
    check_loss_gradient(STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, STOCHFLOW_INTERP_TRIG);
    check_loss_gradient(STOCHFLOW_ACT_TANH, STOCHFLOW_TIME_FOURIER, STOCHFLOW_INTERP_LINEAR);
    check_loss_gradient(STOCHFLOW_ACT_SOFTPLUS, STOCHFLOW_TIME_RAW, STOCHFLOW_INTERP_LINEAR);
    check_loss_gradient(STOCHFLOW_ACT_RELU, STOCHFLOW_TIME_FOURIER, STOCHFLOW_INTERP_TRIG);
}
END_TEST

/* Velocity model with widths large enough to take the BLIS paths. */
static stochflow_model *wide_model(size_t d, int act) {
    const size_t widths[] = {40, 36, 24};
    return make_model(d, 3, widths, act, STOCHFLOW_TIME_FOURIER, 3, STOCHFLOW_INTERP_TRIG, 11);
}

START_TEST(vjp_fd) {
    const size_t dims[] = {3, 20};
    for (size_t q = 0; q < 2; ++q) {
        size_t d = dims[q], n = 4;
        stochflow_model *m = wide_model(d, STOCHFLOW_ACT_TANH);
        float *x = malloc(n * d * 4), *u = malloc(n * d * 4), *vjp = malloc(n * d * 4);
        float *vp = malloc(n * d * 4), *vm = malloc(n * d * 4);
        normals(x, n * d, 3);
        normals(u, n * d, 4);
        ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, 0.37, x, u, n));
        const float h = 1e-2f;
        for (size_t k = 0; k < d; ++k) {
            float *xp = malloc(n * d * 4), *xm = malloc(n * d * 4);
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
                              "d=%zu vjp[%zu,%zu] %g vs fd %g", d, i, k, (double)vjp[i * d + k], fd);
            }
            free(xp);
            free(xm);
        }
        free(x); free(u); free(vjp); free(vp); free(vm);
        stochflow_model_free(m);
    }
}
END_TEST

START_TEST(exact_trace_fd) {
    const size_t dims[] = {2, 3, 20};
    const int acts[] = {STOCHFLOW_ACT_SILU, STOCHFLOW_ACT_SOFTPLUS, STOCHFLOW_ACT_TANH};
    for (size_t q = 0; q < 3; ++q) {
        size_t d = dims[q], n = 5;
        stochflow_model *m = wide_model(d, acts[q]);
        float *x = malloc(n * d * 4), *div = malloc(n * 4), *v = malloc(n * d * 4);
        float *v2 = malloc(n * d * 4), *vp = malloc(n * d * 4), *vm = malloc(n * d * 4);
        normals(x, n * d, 5);
        ck_assert_ok(stochflow_model_divergence(div, v, m, 0.8, x, n));
        ck_assert_ok(stochflow_model_velocity(v2, m, 0.8, x, n));
        ck_assert_int_eq(memcmp(v, v2, n * d * 4), 0);
        double fd[8] = {0};
        const float h = 1e-2f;
        for (size_t k = 0; k < d; ++k) {
            float *xp = malloc(n * d * 4), *xm = malloc(n * d * 4);
            memcpy(xp, x, n * d * 4);
            memcpy(xm, x, n * d * 4);
            for (size_t i = 0; i < n; ++i) {
                xp[i * d + k] += h;
                xm[i * d + k] -= h;
            }
            ck_assert_ok(stochflow_model_velocity(vp, m, 0.8, xp, n));
            ck_assert_ok(stochflow_model_velocity(vm, m, 0.8, xm, n));
            for (size_t i = 0; i < n; ++i)
                fd[i] += (vp[i * d + k] - vm[i * d + k]) / (2.0 * h);
            free(xp);
            free(xm);
        }
        for (size_t i = 0; i < n; ++i)
            ck_assert_msg(fabs(div[i] - fd[i]) <= 5e-3 + 1e-2 * fabs(fd[i]),
                          "d=%zu div[%zu] %g vs fd %g", d, i, (double)div[i], fd[i]);
        free(x); free(div); free(v); free(v2); free(vp); free(vm);
        stochflow_model_free(m);
    }
}
END_TEST

/* Hutchinson quadratic forms e^T J e from the forward-mode pass agree with the VJP:
 * e . (e^T J)  (an independent reverse-mode computation). */
START_TEST(probe_quad_matches_vjp) {
    const size_t d = 5, n = 3, K = 4;
    stochflow_model *m = wide_model(d, STOCHFLOW_ACT_SILU);
    float x[15], probes[60], quad[12], vjp[15], e[15];
    normals(x, n * d, 6);
    normals(probes, n * K * d, 7);
    ck_assert_ok(stochflow__model_eval(m, 0.3, x, n, NULL, NULL, probes, K, quad));
    for (size_t k = 0; k < K; ++k) {
        for (size_t i = 0; i < n; ++i) memcpy(e + i * d, probes + (i * K + k) * d, d * 4);
        ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, 0.3, x, e, n));
        for (size_t i = 0; i < n; ++i) {
            double ref = 0;
            for (size_t j = 0; j < d; ++j) ref += (double)e[i * d + j] * vjp[i * d + j];
            ck_assert_double_eq_tol(quad[i * K + k], ref, 1e-4 * (1 + fabs(ref)));
        }
    }
    stochflow_model_free(m);
}
END_TEST

/* ---- reproducibility ------------------------------------------------------------ */

static void train_n(stochflow_model *m, int steps, size_t n) {
    float *x1 = malloc(n * 2 * 4);
    for (int s = 0; s < steps; ++s) {
        double loss;
        stochflow_random_normal(x1, n * 2, 77, (uint64_t)s);
        ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
    }
    free(x1);
}

START_TEST(same_seed_same_params) {
    const size_t widths[] = {64, 64, 64};
    stochflow_model *a = make_model(2, 3, widths, 0, 0, 0, 0, 3);
    stochflow_model *b = make_model(2, 3, widths, 0, 0, 0, 0, 3);
    stochflow_model *c = make_model(2, 3, widths, 0, 0, 0, 0, 4);
    ck_assert_ok(stochflow_model_set_param(b, STOCHFLOW_PARAM_THREADS, 2));
    train_n(a, 15, 128);
    train_n(b, 15, 128);
    train_n(c, 15, 128);
    float *pa, *pb, *pc;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&pa, &np, a));
    ck_assert_ok(stochflow_model_parameters(&pb, NULL, b));
    ck_assert_ok(stochflow_model_parameters(&pc, NULL, c));
    /* 1 thread vs 2 threads: bitwise identical */
    ck_assert_int_eq(memcmp(pa, pb, np * 4), 0);
    ck_assert_int_ne(memcmp(pa, pc, np * 4), 0);
    ck_assert_uint_eq(stochflow_model_step(a), 15);
    stochflow_model_free(a);
    stochflow_model_free(b);
    stochflow_model_free(c);
}
END_TEST

START_TEST(split_step_equals_train_step) {
    const size_t widths[] = {32, 32};
    stochflow_model *a = make_model(2, 2, widths, 0, 0, 0, 0, 8);
    stochflow_model *b = make_model(2, 2, widths, 0, 0, 0, 0, 8);
    float x1[64 * 2];
    for (int s = 0; s < 5; ++s) {
        double la, lb;
        normals(x1, 128, (uint64_t)(100 + s));
        ck_assert_ok(stochflow_model_train_step(&la, a, x1, 64, NULL, NULL));
        ck_assert_ok(stochflow_model_compute_gradient(&lb, b, x1, 64, NULL, NULL));
        ck_assert_ok(stochflow_model_apply_gradient(b));
        ck_assert(la == lb);
    }
    float *pa, *pb;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&pa, &np, a));
    ck_assert_ok(stochflow_model_parameters(&pb, NULL, b));
    ck_assert_int_eq(memcmp(pa, pb, np * 4), 0);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

START_TEST(eval_chunking_consistent) {
    /* A batch larger than the internal evaluation chunk gives the same rows as
     * evaluating each row on its own. */
    const size_t d = 3, n = 9000;
    stochflow_model *m = wide_model(d, STOCHFLOW_ACT_SILU);
    float *x = malloc(n * d * 4), *v = malloc(n * d * 4), *div = malloc(n * 4);
    normals(x, n * d, 9);
    ck_assert_ok(stochflow_model_divergence(div, v, m, 0.5, x, n));
    const size_t rows[] = {0, 2730, 8191, 8999};
    for (size_t q = 0; q < 4; ++q) {
        float v1[3], d1;
        ck_assert_ok(stochflow_model_divergence(&d1, v1, m, 0.5, x + rows[q] * d, 1));
        for (size_t j = 0; j < d; ++j) ck_assert_float_eq_tol(v1[j], v[rows[q] * d + j], 1e-5f);
        ck_assert_float_eq_tol(d1, div[rows[q]], 1e-4f);
    }
    free(x); free(v); free(div);
    stochflow_model_free(m);
}
END_TEST

/* ---- errors --------------------------------------------------------------------- */

START_TEST(bad_input) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    ck_assert_status(stochflow_config_new(&c, 0), STOCHFLOW_E_INVALID);
    ck_assert_ptr_null(c);
    ck_assert_status(stochflow_config_new(NULL, 2), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_config_new(&c, 2));
    size_t huge[] = {100000};
    ck_assert_status(stochflow_config_set_hidden(c, 1, huge), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_hidden(c, 0, huge), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_activation(c, 99), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_time_embedding(c, STOCHFLOW_TIME_FOURIER, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_interpolant(c, 42), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_new(&m, NULL), STOCHFLOW_E_INVALID);
    size_t w[] = {8};
    ck_assert_ok(stochflow_config_set_hidden(c, 1, w));
    ck_assert_ok(stochflow_model_new(&m, c));

    float x1[4] = {0.1f, 0.2f, NAN, 0.3f}, t[2] = {0.5f, 1.5f};
    double loss;
    ck_assert_status(stochflow_model_train_step(&loss, NULL, x1, 2, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_train_step(&loss, m, NULL, 2, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_train_step(&loss, m, x1, 0, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_train_step(&loss, m, x1, 2, NULL, NULL), STOCHFLOW_E_NONFINITE);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "index 2"));
    x1[2] = 0.0f;
    ck_assert_status(stochflow_model_loss(&loss, m, x1, 2, NULL, t), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_loss(NULL, m, x1, 2, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_uint_eq(stochflow_model_step(m), 0);

    ck_assert_status(stochflow_model_set_param(m, 12345, 1.0), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_model_set_param(m, STOCHFLOW_PARAM_RTOL, 1e-3), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, -1.0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1.5), STOCHFLOW_E_INVALID);
    double v;
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 0.25));
    ck_assert_ok(stochflow_model_get_param(&v, m, STOCHFLOW_PARAM_LR));
    ck_assert_double_eq(v, 0.25);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 0)); /* 0 = default */
    ck_assert_ok(stochflow_model_get_param(&v, m, STOCHFLOW_PARAM_LR));
    ck_assert_double_eq(v, 1e-3);
    double lo, hi, def;
    ck_assert_ok(stochflow_param_bounds(&lo, &hi, &def, STOCHFLOW_PARAM_BETA2));
    ck_assert(lo < def && def < hi);
    ck_assert_status(stochflow_param_bounds(NULL, NULL, NULL, 7), STOCHFLOW_E_UNSUPPORTED);

    float xs[2] = {0, 0}, vs[2];
    ck_assert_status(stochflow_model_velocity(vs, m, 1.5, xs, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_velocity(NULL, m, 0.5, xs, 1), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_model_velocity(vs, m, 0.5, xs, 0));

    stochflow_model_free(m);
    stochflow_model_free(NULL);
    stochflow_config_free(c);
    stochflow_config_free(NULL);
}
END_TEST

START_TEST(nonfinite_step_leaves_model_unchanged) {
    const size_t widths[] = {16, 16};
    stochflow_model *m = make_model(2, 2, widths, 0, 0, 0, 0, 1);
    train_n(m, 3, 32);
    size_t np = stochflow_model_num_params(m);
    float *p;
    ck_assert_ok(stochflow_model_parameters(&p, NULL, m));
    p[0] = 1e30f; /* makes the output (and the loss) overflow */
    size_t sz;
    ck_assert_ok(stochflow_model_serialized_size(&sz, m));
    unsigned char *before = malloc(sz), *after = malloc(sz);
    ck_assert_ok(stochflow_model_save_buffer(NULL, m, before, sz));
    float x1[64];
    normals(x1, 64, 3);
    double loss;
    ck_assert_status(stochflow_model_train_step(&loss, m, x1, 32, NULL, NULL), STOCHFLOW_E_NONFINITE);
    ck_assert_ok(stochflow_model_save_buffer(NULL, m, after, sz));
    ck_assert_int_eq(memcmp(before, after, sz), 0);
    ck_assert_uint_eq(stochflow_model_step(m), 3);
    /* a non-finite gradient installed by the caller is refused the same way */
    p[0] = 0.0f;
    float *g;
    ck_assert_ok(stochflow_model_compute_gradient(&loss, m, x1, 32, NULL, NULL));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    g[np - 1] = NAN;
    ck_assert_status(stochflow_model_apply_gradient(m), STOCHFLOW_E_NONFINITE);
    ck_assert_uint_eq(stochflow_model_step(m), 3);
    free(before);
    free(after);
    stochflow_model_free(m);
}
END_TEST

START_TEST(out_of_memory) {
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_config_new(&c, 2));
    int saw_nomem = 0;
    for (uint64_t k = 1; k < 20; ++k) {
        stochflow_model *m = NULL;
        stochflow__alloc_fail_at(k);
        int rc = stochflow_model_new(&m, c);
        uint64_t used = stochflow__alloc_count();
        stochflow__alloc_fail_at(0);
        if (rc == STOCHFLOW_E_NOMEM) {
            saw_nomem = 1;
            ck_assert_ptr_null(m);
        } else {
            ck_assert_ok(rc);
            ck_assert_uint_lt(used, k);
            stochflow_model_free(m);
            break;
        }
    }
    ck_assert(saw_nomem);
    stochflow_config_free(c);
}
END_TEST

/* ---- learning a closed form ----------------------------------------------------- */

/* Base N(0, I), target N(mu, diag(s^2)), x_t = a x0 + b x1: per coordinate k,
 * v*(t, x)_k = b' mu_k + c_k (x_k - b mu_k),  c_k = (a a' + b b' s_k^2)/(a^2 + b^2 s_k^2),
 * and min G = -int_0^1 E|v*|^2 dt with E|v*|^2 = sum_k (b' mu_k)^2 + (a a' + b b' s_k^2)^2 /
 * (a^2 + b^2 s_k^2). */
static const double MU[2] = {1.0, -0.5}, SD[2] = {0.5, 1.5};

static void coeffs(int interp, double t, double c[4]) {
    if (interp == STOCHFLOW_INTERP_LINEAR) {
        c[0] = 1 - t; c[1] = t; c[2] = -1; c[3] = 1;
    } else {
        c[0] = cos(M_PI * t / 2); c[1] = sin(M_PI * t / 2);
        c[2] = -M_PI / 2 * sin(M_PI * t / 2); c[3] = M_PI / 2 * cos(M_PI * t / 2);
    }
}

static double exact_min_loss(int interp) {
    const int N = 2000; /* Simpson on [0, 1] */
    double acc = 0;
    for (int i = 0; i <= N; ++i) {
        double t = (double)i / N, c[4], e = 0;
        coeffs(interp, t, c);
        for (int k = 0; k < 2; ++k) {
            double s2 = SD[k] * SD[k];
            e += c[3] * MU[k] * c[3] * MU[k] +
                 pow(c[0] * c[2] + c[1] * c[3] * s2, 2) / (c[0] * c[0] + c[1] * c[1] * s2);
        }
        acc += e * (i == 0 || i == N ? 1 : (i % 2 ? 4 : 2));
    }
    return -acc / (3.0 * N);
}

static void learn_gaussian(int interp) {
    const size_t widths[] = {64, 64};
    stochflow_model *m = make_model(2, 2, widths, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_FOURIER, 4,
                                    interp, 21);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 3e-3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, 2500));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.99));
    const size_t n = 512;
    float *x1 = malloc(n * 2 * 4);
    for (int s = 0; s < 2500; ++s) {
        double loss;
        stochflow_random_normal(x1, n * 2, 5, (uint64_t)s);
        for (size_t i = 0; i < n; ++i)
            for (int k = 0; k < 2; ++k) x1[i * 2 + k] = (float)(MU[k] + SD[k] * x1[i * 2 + k]);
        ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
    }
    /* held-out points: t in [0.05, 0.95], x from rho_t */
    double err2 = 0, ref2 = 0;
    float x[2 * 400], v[2 * 400];
    for (int it = 0; it < 10; ++it) {
        double t = 0.05 + 0.1 * it, c[4];
        coeffs(interp, t, c);
        stochflow_random_normal(x, 800, 6, (uint64_t)it);
        for (int i = 0; i < 400; ++i)
            for (int k = 0; k < 2; ++k) {
                double sd = sqrt(c[0] * c[0] + c[1] * c[1] * SD[k] * SD[k]);
                x[i * 2 + k] = (float)(c[1] * MU[k] + sd * x[i * 2 + k]);
            }
        ck_assert_ok(stochflow_model_velocity(v, m, t, x, 400));
        for (int i = 0; i < 400; ++i)
            for (int k = 0; k < 2; ++k) {
                double s2 = SD[k] * SD[k];
                double ck = (c[0] * c[2] + c[1] * c[3] * s2) / (c[0] * c[0] + c[1] * c[1] * s2);
                double ve = c[3] * MU[k] + ck * (x[i * 2 + k] - c[1] * MU[k]);
                err2 += pow(v[i * 2 + k] - ve, 2);
                ref2 += ve * ve;
            }
    }
    double rel = sqrt(err2 / ref2);
    ck_assert_msg(rel < 0.05, "interp %d: relative RMS velocity error %g (tolerance 0.05)",
                  interp, rel);
    /* The loss approaches its analytic minimum G* = -int E|v*|^2. G(v) - G(v*) =
     * E|v - v*|^2 >= 0 is estimated with common random numbers: the model's loss and
     * the exact field's loss on the same (x0, x1, t), t stratified over 10 bands of
     * [0, 1] (5 x 4096 draws per band). The exact field's mean must match G* within MC
     * error (se ~ 0.008, tolerance 0.04), and the excess of the trained model must be
     * small: at most 0.01 (a 64x64 network after 2500 steps reaches ~0.003). */
    const size_t ne = 4096;
    float *xe = malloc(ne * 2 * 4), *x0 = malloc(ne * 2 * 4), *tt = malloc(ne * 4);
    double model_mean = 0, exact_mean = 0;
    for (int band = 0; band < 10; ++band)
        for (int b = 0; b < 5; ++b) {
            double loss, g = 0;
            stochflow_random_normal(xe, ne * 2, 8, (uint64_t)(band * 5 + b));
            stochflow_random_normal(x0, ne * 2, 9, (uint64_t)(band * 5 + b));
            for (size_t i = 0; i < ne; ++i) {
                tt[i] = (float)(0.1 * band + 0.1 * (i + 0.5) / ne);
                for (int k = 0; k < 2; ++k) xe[i * 2 + k] = (float)(MU[k] + SD[k] * xe[i * 2 + k]);
            }
            ck_assert_ok(stochflow_model_loss(&loss, m, xe, ne, x0, tt));
            for (size_t i = 0; i < ne; ++i) {
                double c[4];
                coeffs(interp, tt[i], c);
                for (int k = 0; k < 2; ++k) {
                    double s2 = SD[k] * SD[k];
                    double ck = (c[0] * c[2] + c[1] * c[3] * s2) / (c[0] * c[0] + c[1] * c[1] * s2);
                    double xt = c[0] * x0[i * 2 + k] + c[1] * xe[i * 2 + k];
                    double dI = c[2] * x0[i * 2 + k] + c[3] * xe[i * 2 + k];
                    double ve = c[3] * MU[k] + ck * (xt - c[1] * MU[k]);
                    g += ve * ve - 2 * dI * ve;
                }
            }
            model_mean += loss / 50;
            exact_mean += g / (double)ne / 50;
        }
    double gstar = exact_min_loss(interp), excess = model_mean - exact_mean;
    ck_assert_msg(fabs(exact_mean - gstar) < 0.04, "interp %d: MC loss of v* %g vs G* %g",
                  interp, exact_mean, gstar);
    ck_assert_msg(excess > -0.002 && excess < 0.01,
                  "interp %d: trained loss %g exceeds the minimum %g by %g (tolerance 0.01)",
                  interp, model_mean, exact_mean, excess);
    free(x0);
    free(tt);
    free(x1);
    free(xe);
    stochflow_model_free(m);
}

START_TEST(learn_gaussian_trig) { learn_gaussian(STOCHFLOW_INTERP_TRIG); }
END_TEST
START_TEST(learn_gaussian_linear) { learn_gaussian(STOCHFLOW_INTERP_LINEAR); }
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("model");
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, loss_gradient_fd);
    tcase_add_test(tg, vjp_fd);
    tcase_add_test(tg, exact_trace_fd);
    tcase_add_test(tg, probe_quad_matches_vjp);
    suite_add_tcase(s, tg);
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, same_seed_same_params);
    tcase_add_test(tc, split_step_equals_train_step);
    tcase_add_test(tc, eval_chunking_consistent);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, bad_input);
    tcase_add_test(te, nonfinite_step_leaves_model_unchanged);
    tcase_add_test(te, out_of_memory);
    suite_add_tcase(s, te);
    TCase *tl = tcase_create("learning");
    tcase_set_timeout(tl, 240);
    tcase_add_test(tl, learn_gaussian_trig);
    tcase_add_test(tl, learn_gaussian_linear);
    suite_add_tcase(s, tl);
    return s;
}
