/* check_conditional.c - conditional models (doc/conditional.md): gradients of the context
 * path and the label embedding against finite differences, unconditional behaviour of
 * the _ctx twins, classifier-free guidance (w = 0 is the conditional field bit for bit;
 * w != 0 is (1 + w) v(c) - w v(none)), the context dropout rate and keying, thread-count
 * and resume reproducibility, checkpoints, errors, a loose linear-Gaussian posterior
 * oracle trained through the simulator callback, and a conditional that is a Gaussian
 * mixture known exactly (its formula checked against the joint density, then learned). */
#include <stdint.h>
#include <string.h>

#include "../bench/cond_oracle.h" /* the joint Gaussian mixture and its exact conditional */
#include "harness.h"
#include "internal.h"
#include "model.h" /* m->drop: the dropout mask of the last training batch */

static stochflow_model *make_cond(size_t d, size_t k, size_t classes, size_t width,
                                  uint64_t seed) {
    stochflow_config *c;
    ck_assert_ok(stochflow_config_new(&c, d));
    const size_t widths[] = {width, width};
    ck_assert_ok(stochflow_config_set_hidden(c, 2, widths));
    ck_assert_ok(stochflow_config_set_context(c, k, classes));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    stochflow_model *m;
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    return m;
}

static void normals(float *x, size_t n, uint64_t stream) { stochflow_random_normal(x, n, 7, stream); }

/* ---- gradients ------------------------------------------------------------------ */

/* dG/dparams by central differences (eps = 1e-2 on float weights, loss in double),
 * tolerance 3e-3 absolute + 2e-2 relative, for every parameter of m on a batch of n rows
 * of dimension d with the given conditioning. Returns how many of the last `tail`
 * parameters (the label embedding) have a non-zero gradient. */
static size_t fd_all(stochflow_model *m, size_t d, size_t n, const float *ctx,
                     const int32_t *labels, size_t tail) {
    float *x1 = malloc(n * d * sizeof *x1), *x0 = malloc(n * d * sizeof *x0);
    float *t = malloc(n * sizeof *t);
    normals(x1, n * d, 1);
    normals(x0, n * d, 2);
    for (size_t i = 0; i < n; ++i) t[i] = 0.05f + 0.9f * (float)i / (float)n;
    double loss;
    ck_assert_ok(stochflow_model_compute_gradient_ctx(&loss, m, x1, ctx, labels, n, x0, t));
    float *p, *g;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    float *gc = malloc(np * sizeof *gc);
    memcpy(gc, g, np * sizeof *g);
    const float eps = 1e-2f;
    size_t nonzero_tail = 0;
    for (size_t i = 0; i < np; ++i) {
        float keep = p[i];
        double lp, lm;
        p[i] = keep + eps;
        ck_assert_ok(stochflow_model_loss_ctx(&lp, m, x1, ctx, labels, n, x0, t));
        p[i] = keep - eps;
        ck_assert_ok(stochflow_model_loss_ctx(&lm, m, x1, ctx, labels, n, x0, t));
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        ck_assert_msg(fabs(gc[i] - fd) <= 3e-3 + 2e-2 * fabs(fd),
                      "param %zu of %zu: analytic %g vs finite difference %g", i, np,
                      (double)gc[i], fd);
        if (i >= np - tail && gc[i] != 0.0f) ++nonzero_tail;
    }
    free(gc);
    free(x1);
    free(x0);
    free(t);
    return nonzero_tail;
}

/* Every parameter of a conditional MLP: the first layer's context and null-flag columns
 * and every row of the label embedding included. Labels cover every class and -1 (the
 * "no label" row); NULL context is the null flag with a zero context. */
static void check_gradient(const float *ctx, const int32_t *labels) {
    const size_t classes = 3;
    stochflow_model *m = make_cond(2, 3, classes, 6, 11);
    /* the embedding is the block's tail: (classes + 1) x 4 floats */
    size_t nz = fd_all(m, 2, 8, ctx, labels, (classes + 1) * 4);
    /* with labels every embedding row is used; without, only the "no label" row */
    ck_assert_uint_eq(nz, labels ? (classes + 1) * 4 : 4);
    stochflow_model_free(m);
}

START_TEST(gradient_fd_context_and_labels) {
    float ctx[24];
    normals(ctx, 24, 3);
    const int32_t labels[8] = {0, 1, 2, -1, 2, 0, -1, 1};
    check_gradient(ctx, labels);
    check_gradient(NULL, labels); /* null flag and zero context */
    check_gradient(ctx, NULL);    /* the "no label" embedding only */
}
END_TEST

/* The conditioning changes the field; a row's field depends on its own context only. */
START_TEST(context_reaches_the_field) {
    const size_t d = 3, k = 2, n = 5;
    stochflow_model *m = make_cond(d, k, 4, 16, 3);
    float x[15], ctx[10], ctx2[10], v1[15], v2[15], v3[15];
    normals(x, 15, 4);
    normals(ctx, 10, 5);
    memcpy(ctx2, ctx, sizeof ctx);
    ctx2[2 * 2] += 0.5f; /* row 2 only */
    int32_t lab[5] = {0, 1, 2, 3, -1};
    ck_assert_ok(stochflow_model_velocity_ctx(v1, m, 0.4, x, ctx, lab, n));
    ck_assert_ok(stochflow_model_velocity_ctx(v2, m, 0.4, x, ctx2, lab, n));
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < d; ++j) {
            if (i == 2)
                ck_assert_float_ne(v1[i * d + j], v2[i * d + j]);
            else
                ck_assert_float_eq(v1[i * d + j], v2[i * d + j]);
        }
    lab[0] = 3;
    ck_assert_ok(stochflow_model_velocity_ctx(v3, m, 0.4, x, ctx, lab, n));
    ck_assert_float_ne(v1[0], v3[0]);
    ck_assert_float_eq(v1[d], v3[d]);
    /* NULL labels == every label -1; the plain call == both NULL */
    const int32_t none[5] = {-1, -1, -1, -1, -1};
    ck_assert_ok(stochflow_model_velocity_ctx(v1, m, 0.4, x, NULL, none, n));
    ck_assert_ok(stochflow_model_velocity_ctx(v2, m, 0.4, x, NULL, NULL, n));
    ck_assert_ok(stochflow_model_velocity(v3, m, 0.4, x, n));
    ck_assert_mem_eq(v1, v2, sizeof v1);
    ck_assert_mem_eq(v1, v3, sizeof v1);
    stochflow_model_free(m);
}
END_TEST

/* An unconditional model through the _ctx twins: the same bits as the plain calls. */
START_TEST(twins_of_unconditional_model) {
    stochflow_config *c;
    ck_assert_ok(stochflow_config_new(&c, 2));
    stochflow_model *a, *b;
    ck_assert_ok(stochflow_model_new(&a, c));
    ck_assert_ok(stochflow_model_new(&b, c));
    stochflow_config_free(c);
    float x[64], v1[64], v2[64];
    normals(x, 64, 6);
    for (int s = 0; s < 3; ++s) {
        double la, lb;
        ck_assert_ok(stochflow_model_train_step(&la, a, x, 32, NULL, NULL));
        ck_assert_ok(stochflow_model_train_step_ctx(&lb, b, x, NULL, NULL, 32, NULL, NULL));
        ck_assert(la == lb);
    }
    ck_assert_ok(stochflow_model_velocity(v1, a, 0.3, x, 32));
    ck_assert_ok(stochflow_model_velocity_ctx(v2, b, 0.3, x, NULL, NULL, 32));
    ck_assert_mem_eq(v1, v2, sizeof v1);
    stochflow_solver *s;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_sample(v1, NULL, s, a, 32, 5));
    ck_assert_ok(stochflow_solver_sample_ctx(v2, NULL, s, b, NULL, NULL, 32, 5));
    ck_assert_mem_eq(v1, v2, sizeof v1);
    stochflow_solver_free(s);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

/* ---- guidance ------------------------------------------------------------------- */

START_TEST(guidance_zero_is_unguided) {
    const size_t d = 2, k = 2, n = 16;
    stochflow_model *m = make_cond(d, k, 3, 16, 8);
    float ctx[32], a[32], b[32], la[16], lb[16];
    normals(ctx, 32, 9);
    int32_t lab[16];
    for (size_t i = 0; i < n; ++i) lab[i] = (int32_t)(i % 4) - 1;
    stochflow_solver *s;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_sample_ctx(a, la, s, m, ctx, lab, n, 3));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, 2.0));
    ck_assert_ok(stochflow_solver_sample_ctx(b, lb, s, m, ctx, lab, n, 3));
    ck_assert(memcmp(a, b, sizeof a) != 0); /* guidance changes the samples */
    double w;
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, 0.0));
    ck_assert_ok(stochflow_solver_get_param(&w, s, STOCHFLOW_PARAM_GUIDANCE));
    ck_assert(w == 0.0);
    ck_assert_ok(stochflow_solver_sample_ctx(b, lb, s, m, ctx, lab, n, 3));
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_mem_eq(la, lb, sizeof la);
    /* guided sampling with 3 threads: the same bits as with 1 */
    float c1[32], c3[32];
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, 2.0));
    ck_assert_ok(stochflow_solver_sample_ctx(c1, NULL, s, m, ctx, lab, n, 3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 3));
    ck_assert_ok(stochflow_solver_sample_ctx(c3, NULL, s, m, ctx, lab, n, 3));
    ck_assert_mem_eq(c1, c3, sizeof c1);
    stochflow_solver_free(s);
    stochflow_model_free(m);
}
END_TEST

static int zero_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                      float *div) {
    (void)user, (void)t, (void)x;
    memset(v, 0, n * d * sizeof *v);
    if (div) memset(div, 0, n * sizeof *div);
    return 0;
}

/* One Euler step from the base draws with guidance w moves by
 * (1 + w) v(0, x0 | c) - w v(0, x0 | none); the guided divergence is the same combination
 * of divergences. */
START_TEST(guidance_combines_fields) {
    const size_t d = 3, k = 2, n = 6;
    stochflow_model *m = make_cond(d, k, 0, 16, 9);
    float ctx[12], xs[18], base[18], vc[18], vn[18], dc[6], dn[6], dw[6];
    normals(ctx, 12, 10);
    stochflow_solver *s;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_EULER));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 1));
    /* the base draws: a sample of the zero field */
    ck_assert_ok(stochflow_solver_sample_fn(base, NULL, s, zero_field, NULL, d, n, 4));
    const double w = 1.5;
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, w));
    ck_assert_ok(stochflow_solver_sample_ctx(xs, NULL, s, m, ctx, NULL, n, 4));
    ck_assert_ok(stochflow_model_velocity_ctx(vc, m, 0.0, base, ctx, NULL, n));
    ck_assert_ok(stochflow_model_velocity_ctx(vn, m, 0.0, base, NULL, NULL, n));
    for (size_t i = 0; i < n * d; ++i) {
        float g = (float)((1.0 + w) * (double)vc[i] - w * (double)vn[i]);
        float want = (float)((double)base[i] + (double)g);
        ck_assert_msg(xs[i] == want, "element %zu: %g vs %g", i, (double)xs[i], (double)want);
    }
    /* divergence through the internal evaluation the integrators use */
    ck_assert_ok(stochflow_model_divergence_ctx(dc, NULL, m, 0.5, base, ctx, NULL, n));
    ck_assert_ok(stochflow_model_divergence_ctx(dn, NULL, m, 0.5, base, NULL, NULL, n));
    ck_assert_ok(stochflow__model_eval_ctx(m, 0.5, base, ctx, NULL, w, n, vc, dw, NULL, 0, NULL));
    for (size_t i = 0; i < n; ++i)
        ck_assert_float_eq(dw[i], (float)((1.0 + w) * (double)dc[i] - w * (double)dn[i]));
    stochflow_solver_free(s);
    stochflow_model_free(m);
}
END_TEST

/* ---- context dropout -------------------------------------------------------------- */

/* The dropped fraction over many rows is the rate (binomial: 20000 rows at p = 0.3 have
 * a standard deviation of 0.0032; the bound is 5 of them); rows drop independently of
 * the batch split; a rate of 1 is training without conditioning. */
START_TEST(dropout_rate_and_keying) {
    const size_t d = 2, k = 1, n = 20000;
    stochflow_model *m = make_cond(d, k, 2, 8, 12);
    float *x = malloc(n * d * sizeof *x), *ctx = malloc(n * k * sizeof *ctx);
    normals(x, n * d, 13);
    normals(ctx, n * k, 14);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_CTX_DROPOUT, 0.3));
    double loss;
    ck_assert_ok(stochflow_model_compute_gradient_ctx(&loss, m, x, ctx, NULL, n, NULL, NULL));
    size_t dropped = 0;
    for (size_t i = 0; i < n; ++i) dropped += m->drop[i];
    double frac = (double)dropped / (double)n;
    ck_assert_msg(fabs(frac - 0.3) < 5 * 0.0032, "dropped fraction %g", frac);
    uint8_t first[100];
    memcpy(first, m->drop, sizeof first);
    ck_assert_ok(stochflow_model_compute_gradient_ctx(&loss, m, x, ctx, NULL, 100, NULL, NULL));
    ck_assert_mem_eq(first, m->drop, sizeof first); /* row i's draw: (seed, step, i) */
    /* loss evaluation never drops */
    double l1, l2;
    ck_assert_ok(stochflow_model_loss_ctx(&l1, m, x, ctx, NULL, 64, NULL, NULL));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_CTX_DROPOUT, 0.0));
    ck_assert_ok(stochflow_model_loss_ctx(&l2, m, x, ctx, NULL, 64, NULL, NULL));
    ck_assert(l1 == l2);
    /* rate 1: every row dropped = the gradient without any conditioning */
    float *g, *g1 = malloc(m->n_params * sizeof *g1);
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    const int32_t lab[64] = {1, 0, 1, 1};
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_CTX_DROPOUT, 1.0));
    ck_assert_ok(stochflow_model_compute_gradient_ctx(&l1, m, x, ctx, lab, 64, NULL, NULL));
    memcpy(g1, g, m->n_params * sizeof *g1);
    ck_assert_ok(stochflow_model_compute_gradient_ctx(&l2, m, x, NULL, NULL, 64, NULL, NULL));
    ck_assert(l1 == l2);
    ck_assert_mem_eq(g1, g, m->n_params * sizeof *g1);
    free(g1);
    free(x);
    free(ctx);
    stochflow_model_free(m);
}
END_TEST

/* ---- reproducibility and checkpoints ---------------------------------------------- */

/* m through its checkpoint bytes; *has_cond: whether the file has a COND section. */
static stochflow_model *reload(const stochflow_model *m, int *has_cond) {
    size_t len;
    ck_assert_ok(stochflow_model_serialized_size(&len, m));
    char *buf = malloc(len);
    ck_assert_ok(stochflow_model_save_buffer(NULL, buf, len, m));
    *has_cond = 0;
    for (size_t i = 0; i + 4 <= len; ++i) *has_cond |= memcmp(buf + i, "COND", 4) == 0;
    stochflow_model *r;
    ck_assert_ok(stochflow_model_load_buffer(&r, buf, len));
    free(buf);
    return r;
}

static void train(stochflow_model *m, int steps, const float *x, const float *ctx,
                  const int32_t *lab, size_t n) {
    for (int s = 0; s < steps; ++s) {
        double loss;
        ck_assert_ok(stochflow_model_train_step_ctx(&loss, m, x, ctx, lab, n, NULL, NULL));
    }
}

START_TEST(threads_and_resume_bitwise) {
    const size_t d = 3, k = 4, n = 600;
    float *x = malloc(n * d * sizeof *x), *ctx = malloc(n * k * sizeof *ctx);
    int32_t *lab = malloc(n * sizeof *lab);
    normals(x, n * d, 15);
    normals(ctx, n * k, 16);
    for (size_t i = 0; i < n; ++i) lab[i] = (int32_t)(i % 6) - 1;
    stochflow_model *a = make_cond(d, k, 5, 64, 21), *b = make_cond(d, k, 5, 64, 21);
    ck_assert_ok(stochflow_model_set_param(a, STOCHFLOW_PARAM_CTX_DROPOUT, 0.2));
    ck_assert_ok(stochflow_model_set_param(b, STOCHFLOW_PARAM_CTX_DROPOUT, 0.2));
    ck_assert_ok(stochflow_model_set_param(b, STOCHFLOW_PARAM_THREADS, 3));
    train(a, 3, x, ctx, lab, n);
    train(b, 3, x, ctx, lab, n);
    ck_assert_mem_eq(a->params, b->params, a->n_params * sizeof(float));
    /* save, load, continue: the same as uninterrupted; the file has the COND section */
    int has_cond;
    stochflow_model *r = reload(a, &has_cond);
    ck_assert(has_cond);
    size_t nk, nc;
    ck_assert_ok(stochflow_model_context(&nk, &nc, r));
    ck_assert_uint_eq(nk, k);
    ck_assert_uint_eq(nc, 5);
    double p;
    ck_assert_ok(stochflow_model_get_param(&p, r, STOCHFLOW_PARAM_CTX_DROPOUT));
    ck_assert(p == 0.2);
    train(a, 2, x, ctx, lab, n);
    train(r, 2, x, ctx, lab, n);
    ck_assert_mem_eq(a->params, r->params, a->n_params * sizeof(float));
    float va[30], vr[30];
    ck_assert_ok(stochflow_model_velocity_ctx(va, a, 0.7, x, ctx, lab, 10));
    ck_assert_ok(stochflow_model_velocity_ctx(vr, r, 0.7, x, ctx, lab, 10));
    ck_assert_mem_eq(va, vr, sizeof va);
    free(x);
    free(ctx);
    free(lab);
    stochflow_model_free(a);
    stochflow_model_free(b);
    stochflow_model_free(r);
}
END_TEST

/* An unconditional model's file has neither the COND section nor the dropout rate. */
START_TEST(unconditional_file_unchanged) {
    stochflow_config *c;
    ck_assert_ok(stochflow_config_new(&c, 2));
    stochflow_model *m;
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    size_t len;
    ck_assert_ok(stochflow_model_serialized_size(&len, m));
    uint8_t *buf = malloc(len);
    ck_assert_ok(stochflow_model_save_buffer(NULL, buf, len, m));
    int has_cond = 0;
    for (size_t i = 0; i + 4 <= len; ++i) has_cond |= memcmp(buf + i, "COND", 4) == 0;
    ck_assert(!has_cond);
    /* HPAR: count of model keys minus the three stored only when set (the dropout rate,
     * the gradient block size and the training target, all at their defaults here) */
    size_t n_model = 0;
    for (size_t i = 0; i < stochflow_param_count(); ++i) {
        int key = stochflow_param_key_at(i);
        n_model += (key >= 100 && key < 200) || key >= 400;
    }
    size_t at = 0;
    while (at + 4 <= len && memcmp(buf + at, "HPAR", 4) != 0) ++at;
    ck_assert(at + 20 <= len);
    ck_assert_uint_eq((size_t)(buf[at + 16] | (buf[at + 17] << 8)), n_model - 3);
    free(buf);
    stochflow_model_free(m);
}
END_TEST

/* ---- errors --------------------------------------------------------------------- */

static int failing_sim(void *user, size_t n, uint64_t seed, uint64_t step, float *theta,
                       float *x) {
    (void)user, (void)n, (void)seed, (void)step, (void)theta, (void)x;
    return 7;
}

START_TEST(errors) {
    stochflow_config *c;
    ck_assert_ok(stochflow_config_new(&c, 2));
    stochflow_model *u;
    ck_assert_ok(stochflow_model_new(&u, c));
    float x[8] = {0}, v[8], ctx[4] = {0};
    int32_t lab[4] = {0, 0, 0, 0};
    double loss;
    ck_assert_status(stochflow_model_velocity_ctx(v, u, 0.5, x, ctx, NULL, 4),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_train_step_ctx(&loss, u, x, NULL, lab, 4, NULL, NULL),
                     STOCHFLOW_E_INVALID);
    ck_assert_uint_eq(stochflow_model_step(u), 0);
    stochflow_solver *s;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, 1.0));
    ck_assert_status(stochflow_solver_sample(v, NULL, s, u, 4, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, -2.0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_train_simulator(&loss, u, failing_sim, NULL, 4),
                     STOCHFLOW_E_INVALID); /* no context */
    ck_assert_ok(stochflow_config_set_context(c, 1, 3));
    size_t nk = 9, nc = 9;
    ck_assert_ok(stochflow_config_context(&nk, &nc, c));
    ck_assert_uint_eq(nk, 1);
    ck_assert_uint_eq(nc, 3);
    ck_assert_status(stochflow_config_set_context(c, 70000, 0), STOCHFLOW_E_INVALID);
    stochflow_model *m;
    ck_assert_ok(stochflow_model_new(&m, c));
    lab[2] = 3; /* out of range */
    ck_assert_status(stochflow_model_train_step_ctx(&loss, m, x, ctx, lab, 4, NULL, NULL),
                     STOCHFLOW_E_INVALID);
    lab[2] = -2;
    ck_assert_status(stochflow_model_velocity_ctx(v, m, 0.5, x, ctx, lab, 4),
                     STOCHFLOW_E_INVALID);
    ctx[1] = NAN;
    ck_assert_status(stochflow_solver_log_prob_ctx(v, NULL, s, m, x, ctx, NULL, 4, 1.0),
                     STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_model_train_simulator(&loss, m, failing_sim, NULL, 4),
                     STOCHFLOW_E_CALLBACK);
    ck_assert_uint_eq(stochflow_model_step(m), 0);
    stochflow_model_free(m);
    stochflow_model_free(u);
    stochflow_solver_free(s);
    stochflow_config_free(c);
}
END_TEST

/* A simulator of pairs theta [n x 2], x [n x 2] keyed by (seed, step). */
static int small_sim(void *user, size_t n, uint64_t seed, uint64_t step, float *theta,
                     float *x) {
    (void)user;
    stochflow_random_normal(theta, 2 * n, seed, 2 * step);
    stochflow_random_normal(x, 2 * n, seed, 2 * step + 1);
    for (size_t i = 0; i < 2 * n; ++i) x[i] += theta[i];
    return 0;
}

/* Every allocation of a conditional training step (with dropout), a simulator step and a
 * guided sample failing in turn: NOMEM with a message, the model unchanged, no leak (the
 * sanitizer build); then the call succeeds once it allocates less than the failure point. */
START_TEST(out_of_memory_sweep) {
    float x[32], ctx[32], out[32];
    normals(x, 32, 40);
    normals(ctx, 32, 41);
    const int32_t lab[16] = {0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2, -1};
    for (int which = 0; which < 3; ++which) {
        size_t failures = 0;
        for (uint64_t k = 1; k < 1000; ++k) {
            stochflow_model *m = make_cond(2, 2, 3, 8, 5);
            ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_CTX_DROPOUT, 0.3));
            stochflow_solver *s;
            ck_assert_ok(stochflow_solver_new(&s));
            ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, 1.0));
            float *keep = malloc(m->n_params * sizeof *keep);
            memcpy(keep, m->params, m->n_params * sizeof *keep);
            double loss;
            stochflow__alloc_fail_at(k);
            int rc = which == 0   ? stochflow_model_train_step_ctx(&loss, m, x, ctx, lab, 16,
                                                                   NULL, NULL)
                     : which == 1 ? stochflow_model_train_simulator(&loss, m, small_sim, NULL, 16)
                                  : stochflow_solver_sample_ctx(out, NULL, s, m, ctx, lab, 16, 1);
            uint64_t used = stochflow__alloc_count();
            stochflow__alloc_fail_at(0);
            if (rc == STOCHFLOW_E_NOMEM) {
                ++failures;
                ck_assert(stochflow_last_error_message()[0] != '\0');
                ck_assert_uint_eq(stochflow_model_step(m), 0);
                ck_assert_mem_eq(keep, m->params, m->n_params * sizeof *keep);
            } else {
                ck_assert_ok(rc);
            }
            free(keep);
            stochflow_solver_free(s);
            stochflow_model_free(m);
            if (rc == 0 && used < k) break;
        }
        ck_assert_uint_gt(failures, 1);
    }
}
END_TEST

/* ---- posterior oracle (loose) ------------------------------------------------------ */

/* A conditional MLP (depth x width, theta of dimension dt, context of dx floats, seed 1)
 * trained for `steps` steps of 256 pairs from the simulator fn, Adam at lr on a cosine
 * schedule to 0, context dropout rate `drop` (not set when 0). */
static stochflow_model *train_simulated(size_t dt, size_t dx, size_t depth, size_t width,
                                        double lr, int steps, stochflow_simulator_fn fn,
                                        void *user, double drop) {
    stochflow_config *c;
    ck_assert_ok(stochflow_config_new(&c, dt));
    const size_t widths[] = {width, width, width, width};
    ck_assert(depth <= 4);
    ck_assert_ok(stochflow_config_set_hidden(c, depth, widths));
    ck_assert_ok(stochflow_config_set_context(c, dx, 0));
    ck_assert_ok(stochflow_config_set_seed(c, 1));
    stochflow_model *m;
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, lr));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, steps));
    if (drop > 0) ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_CTX_DROPOUT, drop));
    for (int s = 0; s < steps; ++s) {
        double loss;
        ck_assert_ok(stochflow_model_train_simulator(&loss, m, fn, user, 256));
    }
    return m;
}

/* theta ~ N(0, I_2), x | theta ~ N(A theta, s^2 I_2) with A = [[1, 0.5], [0, 1]],
 * s = 0.5: the posterior is N(mu, S), S = (I + A^T A / s^2)^{-1}, mu = S A^T x / s^2.
 * Draws keyed by (seed, step) through stochflow_random_normal. */
static const double A2[2][2] = {{1.0, 0.5}, {0.0, 1.0}};
#define S_NOISE 0.5

static int lg_sim(void *user, size_t n, uint64_t seed, uint64_t step, float *theta, float *x) {
    (void)user;
    float *e = malloc(2 * n * sizeof *e);
    stochflow_random_normal(theta, 2 * n, seed, 1000 + 2 * step);
    stochflow_random_normal(e, 2 * n, seed, 1001 + 2 * step);
    for (size_t i = 0; i < n; ++i)
        for (int r = 0; r < 2; ++r)
            x[2 * i + r] = (float)(A2[r][0] * theta[2 * i] + A2[r][1] * theta[2 * i + 1] +
                                   S_NOISE * e[2 * i + r]);
    free(e);
    return 0;
}

/* KL(exact posterior || model) at a few observations, by 400 exact posterior draws each
 * and exact log-densities; the bound (0.15 nats for 1500 steps) is loose: the bench
 * (bench/CONDITIONAL.md) measures the d = 10 version. */
START_TEST(linear_gaussian_posterior) {
    stochflow_model *m = train_simulated(2, 2, 2, 64, 3e-3, 1500, lg_sim, NULL, 0.0);
    /* posterior covariance S = (I + A^T A / s^2)^{-1} (2 x 2 inverse) */
    double P[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            P[i][j] = (i == j) + (A2[0][i] * A2[0][j] + A2[1][i] * A2[1][j]) / (S_NOISE * S_NOISE);
    double det = P[0][0] * P[1][1] - P[0][1] * P[1][0];
    double S[2][2] = {{P[1][1] / det, -P[0][1] / det}, {-P[1][0] / det, P[0][0] / det}};
    double L00 = sqrt(S[0][0]), L10 = S[1][0] / L00, L11 = sqrt(S[1][1] - L10 * L10);
    stochflow_solver *sv;
    ck_assert_ok(stochflow_solver_new(&sv));
    const size_t M = 400;
    const float obs[3][2] = {{0.3f, -0.5f}, {1.5f, 1.0f}, {-1.0f, 0.2f}};
    float *th = malloc(2 * M * sizeof *th), *z = malloc(2 * M * sizeof *z);
    float *ctx = malloc(2 * M * sizeof *ctx), *lq = malloc(M * sizeof *lq);
    double kl_sum = 0.0;
    for (int o = 0; o < 3; ++o) {
        double mu[2];
        for (int i = 0; i < 2; ++i)
            mu[i] = (S[i][0] * (A2[0][0] * obs[o][0] + A2[1][0] * obs[o][1]) +
                     S[i][1] * (A2[0][1] * obs[o][0] + A2[1][1] * obs[o][1])) /
                    (S_NOISE * S_NOISE);
        stochflow_random_normal(z, 2 * M, 77, (uint64_t)o);
        for (size_t i = 0; i < M; ++i) {
            th[2 * i] = (float)(mu[0] + L00 * z[2 * i]);
            th[2 * i + 1] = (float)(mu[1] + L10 * z[2 * i] + L11 * z[2 * i + 1]);
            ctx[2 * i] = obs[o][0];
            ctx[2 * i + 1] = obs[o][1];
        }
        ck_assert_ok(stochflow_solver_log_prob_ctx(lq, NULL, sv, m, th, ctx, NULL, M, 1.0));
        double kl = 0.0;
        for (size_t i = 0; i < M; ++i) {
            double lp = -0.5 * (z[2 * i] * z[2 * i] + z[2 * i + 1] * z[2 * i + 1]) -
                        log(2 * M_PI) - log(L00 * L11);
            kl += lp - lq[i];
        }
        kl_sum += kl / (double)M;
    }
    double kl = kl_sum / 3.0;
    fprintf(stderr, "# linear-Gaussian d = 2: mean KL(exact || model) = %.4f nats\n", kl);
    ck_assert_msg(kl < 0.15, "KL %g", kl);
    free(th);
    free(z);
    free(ctx);
    free(lq);
    stochflow_solver_free(sv);
    stochflow_model_free(m);
}
END_TEST

/* ---- a Gaussian-mixture conditional known exactly (bench/cond_oracle.h) ------------ */

/* The closed form of p(theta | x) for a joint Gaussian mixture (doc/conditional.md) is
 * the joint density over the density of x: log p(theta, x) - log p(theta | x) equals
 * log p(x) for every theta (the joint through the factor of the whole covariance, the
 * conditional through the Schur complements: independent code paths), to 1e-9, at joint
 * draws and at thetas far off them. With dt = 1 the conditional integrates to 1 (trapezoid
 * over [-40, 40]), and the closed form's sampler has the mixture's mean. */
START_TEST(mixture_conditional_formula) {
    static cmix c;
    const size_t shapes[3][3] = {{2, 2, 3}, {1, 3, 4}, {3, 2, 2}}; /* dt, dx, K */
    for (int q = 0; q < 3; ++q) {
        const size_t dt = shapes[q][0], dx = shapes[q][1];
        ck_assert_int_eq(cm_make(&c, dt, dx, shapes[q][2], 40 + (uint64_t)q), 0);
        float th[20 * CM_MAXD], xs[20 * CM_MAXD], off[5 * CM_MAXD];
        ck_assert_int_eq(cm_sample_joint(&c, 20, 5, (uint64_t)q, th, xs), 0);
        normals(off, 5 * dt, 60 + (uint64_t)q);
        for (size_t i = 0; i < 20; ++i) {
            double x[CM_MAXD], t[CM_MAXD];
            for (size_t j = 0; j < dx; ++j) x[j] = xs[i * dx + j];
            const double lpx = cm_marginal_x(&c, x, NULL);
            for (size_t r = 0; r < 6; ++r) { /* the draw, then 5 points up to 6 sd off it */
                for (size_t j = 0; j < dt; ++j)
                    t[j] = th[i * dt + j] + (r == 0 ? 0.0 : 1.5 * (double)r * off[(r - 1) * dt + j]);
                const double gap = cm_joint_logpdf(&c, t, x) - cm_cond_logpdf(&c, t, x) - lpx;
                ck_assert_msg(fabs(gap) < 1e-9, "shape %d draw %zu point %zu: %g", q, i, r, gap);
            }
        }
        if (dt == 1)
            for (size_t i = 0; i < 3; ++i) {
                double x[CM_MAXD], sum = 0.0;
                for (size_t j = 0; j < dx; ++j) x[j] = xs[i * dx + j];
                const int N = 80000;
                for (int k = 0; k <= N; ++k) {
                    double t = -40.0 + 80.0 * k / N;
                    sum += (k == 0 || k == N ? 0.5 : 1.0) * exp(cm_cond_logpdf(&c, &t, x));
                }
                sum *= 80.0 / N;
                ck_assert_msg(fabs(sum - 1.0) < 1e-8, "shape %d: integral %.12f", q, sum);
            }
    }
    /* the sampler of the closed form: mean within 5 standard errors of sum_k w_k mu_k */
    ck_assert_int_eq(cm_make(&c, 2, 2, 3, 40), 0);
    const size_t n = 20000;
    float *th = malloc(n * 2 * sizeof *th);
    double *lp = malloc(n * sizeof *lp), x[2] = {0.4, -0.3}, lw[CM_MAXK], mean[2] = {0, 0};
    ck_assert_int_eq(cm_sample_cond(&c, x, n, 3, 0, th, lp), 0);
    cm_marginal_x(&c, x, lw);
    for (size_t k = 0; k < c.K; ++k) {
        double mu[2];
        cm_cond_mean(&c, k, x, mu);
        mean[0] += exp(lw[k]) * mu[0];
        mean[1] += exp(lw[k]) * mu[1];
    }
    for (int j = 0; j < 2; ++j) {
        double s = 0.0, s2 = 0.0;
        for (size_t i = 0; i < n; ++i) {
            s += th[2 * i + j];
            s2 += (double)th[2 * i + j] * th[2 * i + j];
        }
        const double m = s / (double)n, se = sqrt((s2 / (double)n - m * m) / (double)n);
        ck_assert_msg(fabs(m - mean[j]) < 5 * se, "coordinate %d: %g vs %g (se %g)", j, m, mean[j], se);
    }
    free(th);
    free(lp);
}
END_TEST

/* Mean KL(p(theta | x) || model) over n_obs observations x drawn from the joint, the model
 * given x (with_ctx = 1) or no context (0); the context-blind figure
 * KL(p(theta | x) || p(theta)) into *blind. */
static double mixture_kl(double *blind, stochflow_model *m, const cmix *c, size_t n_obs,
                         int with_ctx) {
    float xs[8 * CM_MAXD], ts[8 * CM_MAXD];
    ck_assert_int_eq(cm_sample_joint(c, n_obs, 2, (uint64_t)1 << 30, ts, xs), 0);
    stochflow_solver *sv;
    ck_assert_ok(stochflow_solver_new(&sv));
    double kl = 0.0, b = 0.0;
    for (size_t o = 0; o < n_obs; ++o) {
        double k1, b1;
        ck_assert_ok(cm_kl_at(&k1, &b1, sv, m, c, xs + o * c->dx, 400, o, with_ctx));
        kl += k1;
        b += b1;
    }
    stochflow_solver_free(sv);
    *blind = b / (double)n_obs;
    return kl / (double)n_obs;
}

/* A conditional MLP (3 x 64) trained on joint draws of a mixture in dt = 2, dx = 2,
 * K = 3 whose p(theta | x) is multimodal for most x learns it: mean KL < 0.15 nats over
 * 4 observations (measured 0.028; bench/CONDITIONAL.md runs the larger version). The bound
 * is one a broken context path fails: a model blind to x can at best learn p(theta), whose
 * KL(p(theta | x) || p(theta)) is 0.91 nats at these observations (checked > 0.6), and the
 * same training with every row's context dropped (dropout rate 1, scored without context:
 * the network never sees x) stays above 0.45 nats. */
START_TEST(mixture_posterior) {
    static cmix c;
    ck_assert_int_eq(cm_make(&c, 2, 2, 3, 3), 0);
    double kl[2], blind = 0.0;
    for (int drop = 0; drop < 2; ++drop) {
        stochflow_model *m = train_simulated(2, 2, 3, 64, 2e-3, 3000, cm_simulate, &c, drop);
        kl[drop] = mixture_kl(&blind, m, &c, 4, !drop);
        stochflow_model_free(m);
    }
    fprintf(stderr, "# mixture conditional dt = 2, dx = 2, K = 3: mean KL(exact || model) = %.4f "
            "nats; context dropped in training: %.4f; context-blind optimum %.4f\n",
            kl[0], kl[1], blind);
    ck_assert_msg(blind > 0.6, "context-blind KL %g: x says too little for the check", blind);
    ck_assert_msg(kl[0] < 0.15, "KL %g", kl[0]);
    ck_assert_msg(kl[1] > 0.45, "KL without context %g", kl[1]);
}
END_TEST

/* ---- the U-Net ------------------------------------------------------------------- */

/* A tiny conditional U-Net (1 x 4 x 4 images, base 4, one level), its weights moved off
 * the zero-initialised start so that every path carries gradient. */
static stochflow_model *cond_unet(size_t k, size_t classes) {
    stochflow_config *c;
    ck_assert_ok(stochflow_config_new(&c, 16));
    const size_t mult[1] = {1};
    ck_assert_ok(set_unet_shape(c, 1, 4, 4, 4, 1, mult, 1, 0, 2));
    ck_assert_ok(stochflow_config_set_context(c, k, classes));
    ck_assert_ok(stochflow_config_set_seed(c, 4));
    stochflow_model *m;
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    float *p;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    float *z = malloc(np * sizeof *z);
    normals(z, np, 30);
    for (size_t i = 0; i < np; ++i) p[i] += 0.3f * z[i];
    free(z);
    return m;
}

/* The U-Net adds a linear map of [context, null flag, label embedding] to its time
 * embedding: every parameter against finite differences (the map and the embedding
 * included), the field depends on the conditioning, NULL is the plain call, and the
 * checkpoint keeps it. */
START_TEST(unet_conditioning) {
    const size_t k = 2, classes = 3, n = 4;
    stochflow_model *m = cond_unet(k, classes);
    float ctx[8];
    normals(ctx, 8, 31);
    const int32_t lab[4] = {0, 2, -1, 1};
    ck_assert_uint_eq(fd_all(m, 16, n, ctx, lab, (classes + 1) * 4), (classes + 1) * 4);
    float x[64], v1[64], v2[64], v3[64];
    normals(x, 64, 32);
    ck_assert_ok(stochflow_model_velocity_ctx(v1, m, 0.4, x, ctx, lab, n));
    ck_assert_ok(stochflow_model_velocity_ctx(v2, m, 0.4, x, NULL, NULL, n));
    ck_assert_ok(stochflow_model_velocity(v3, m, 0.4, x, n));
    ck_assert(memcmp(v1, v2, sizeof v1) != 0);
    ck_assert_mem_eq(v2, v3, sizeof v2);
    int has_cond;
    stochflow_model *r = reload(m, &has_cond);
    ck_assert(has_cond);
    ck_assert_ok(stochflow_model_velocity_ctx(v2, r, 0.4, x, ctx, lab, n));
    ck_assert_mem_eq(v1, v2, sizeof v1);
    stochflow_model_free(r);
    stochflow_model_free(m);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("conditional");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, context_reaches_the_field);
    tcase_add_test(tc, twins_of_unconditional_model);
    tcase_add_test(tc, guidance_zero_is_unguided);
    tcase_add_test(tc, guidance_combines_fields);
    tcase_add_test(tc, dropout_rate_and_keying);
    tcase_add_test(tc, threads_and_resume_bitwise);
    tcase_add_test(tc, unconditional_file_unchanged);
    tcase_add_test(tc, linear_gaussian_posterior);
    tcase_add_test(tc, mixture_conditional_formula);
    tcase_add_test(tc, mixture_posterior);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, gradient_fd_context_and_labels);
    tcase_add_test(tg, unet_conditioning);
    suite_add_tcase(s, tg);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, errors);
    tcase_add_test(te, out_of_memory_sweep);
    suite_add_tcase(s, te);
    return s;
}
