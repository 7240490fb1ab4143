/* check_target.c - the batch-posterior training target (STOCHFLOW_PARAM_TRAIN_TARGET =
 * STOCHFLOW_TRAIN_TARGET_BATCH, lib/target.c): against a direct double-precision
 * reference, against the closed-form velocity of a Gaussian target, bit for bit over
 * threads and across a checkpoint, and refused where its assumptions do not hold. */
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "target.h"

static void normals(float *x, size_t n, uint64_t stream) {
    ck_assert_ok(stochflow_random_normal(x, n, 41, stream));
}

/* Row i of the target by its definition, in double: the softmax over j of
 * log N(x_t; b x1_j, a^2 I) times a' x0_ij + b' x1_j, x0_ij = (x_t - b x1_j) / a. */
static void reference_row(double *y, const float *xt, const float *x1, size_t n, size_t d,
                          const double c[4]) {
    double *l = malloc(n * sizeof *l), mx = -INFINITY, sum = 0.0;
    ck_assert(l != NULL);
    for (size_t j = 0; j < n; ++j) {
        double q = 0.0;
        for (size_t k = 0; k < d; ++k) {
            double r = xt[k] - c[1] * x1[j * d + k];
            q += r * r;
        }
        l[j] = -q / (2.0 * c[0] * c[0]);
        if (l[j] > mx) mx = l[j];
    }
    for (size_t k = 0; k < d; ++k) y[k] = 0.0;
    for (size_t j = 0; j < n; ++j) {
        double w = exp(l[j] - mx);
        sum += w;
        for (size_t k = 0; k < d; ++k) {
            double x0 = (xt[k] - c[1] * x1[j * d + k]) / c[0];
            y[k] += w * (c[2] * x0 + c[3] * x1[j * d + k]);
        }
    }
    for (size_t k = 0; k < d; ++k) y[k] /= sum;
    free(l);
}

/* One row of a batch: x_t = a x0 + b x1 into xt, the plain target a' x0 + b' x1 into y. */
static void make_row(float *xt, float *y, const double c[4], const float *x0, const float *x1,
                     size_t d) {
    for (size_t k = 0; k < d; ++k) {
        xt[k] = (float)(c[0] * x0[k] + c[1] * x1[k]);
        y[k] = (float)(c[2] * x0[k] + c[3] * x1[k]);
    }
}

/* The target's scratch for n rows of d, 64-byte aligned. */
static float *scratch_for(size_t n, size_t d) {
    size_t nf = 0;
    ck_assert_int_eq(stochflow__batch_target_floats(&nf, n, d), 0);
    float *s = aligned_alloc(64, (nf * sizeof(float) + 63) / 64 * 64);
    ck_assert(s != NULL);
    return s;
}

/* Rows at t from 0 to 1 (1 itself included), the network's input rows `stride` apart:
 * the library's target against the reference, with 1 and with 3 threads. */
static void check_reference(int kind) {
    enum { N = 9, D = 3, STRIDE = 5 };
    const double ts[N] = {0.0, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.97, 1.0};
    float x1[N * D], x0[N * D], xt[N * STRIDE], plain[N * D], y1[N * D], y2[N * D];
    double t_rows[N], c[N][4];
    stochflow__interp ip = {.kind = kind};
    normals(x1, N * D, 1);
    normals(x0, N * D, 2);
    for (size_t i = 0; i < N * D; ++i) x1[i] = 0.3f + 0.8f * x1[i];
    for (size_t i = 0; i < N; ++i) {
        t_rows[i] = ts[i];
        ck_assert_ok(stochflow__interp_eval(&ip, ts[i], c[i]));
        make_row(xt + i * STRIDE, plain + i * D, c[i], x0 + i * D, x1 + i * D, D);
    }
    memcpy(y1, plain, sizeof plain);
    memcpy(y2, plain, sizeof plain);
    float *scratch = scratch_for(N, D);
    stochflow__batch_target(y1, scratch, xt, STRIDE, t_rows, x1, &ip, N, D, 1, 1);
    stochflow__batch_target(y2, scratch, xt, STRIDE, t_rows, x1, &ip, N, D, 3, 2);
    ck_assert_mem_eq(y1, y2, sizeof y1);
    for (size_t i = 0; i < N; ++i) {
        if (fabs(c[i][0]) < 1e-6) { /* t = 1: the plain target, bit for bit */
            ck_assert_mem_eq(y1 + i * D, plain + i * D, D * sizeof(float));
            continue;
        }
        double y[D];
        reference_row(y, xt + i * STRIDE, x1, N, D, c[i]);
        for (size_t k = 0; k < D; ++k)
            ck_assert_msg(fabs(y1[i * D + k] - y[k]) <= 2e-5 * (1.0 + fabs(y[k])),
                          "kind %d, t = %g, k = %zu: %.7g against the reference %.7g", kind,
                          ts[i], k, (double)y1[i * D + k], y[k]);
    }
    /* a row at t = 0.5 whose own x1 is far from the rest: the others get no weight */
    for (size_t k = 0; k < D; ++k) x1[4 * D + k] += 40.0f;
    make_row(xt + 4 * STRIDE, plain + 4 * D, c[4], x0 + 4 * D, x1 + 4 * D, D);
    memcpy(y1, plain, sizeof plain);
    stochflow__batch_target(y1, scratch, xt, STRIDE, t_rows, x1, &ip, N, D, 1, 1);
    ck_assert_mem_eq(y1 + 4 * D, plain + 4 * D, D * sizeof(float));
    free(scratch);
}

/* 300 rows (three blocks of 128) of an odd width at times across (0, 1): 1 and 3 threads
 * bit for bit, and the reference; then two rows 1e-5 apart at t = 1 - 1e-7, where the
 * products' rounding could pick either: the row keeps its own target. */
START_TEST(blocks_threads_near_rows) {
    enum { N = 300, D = 5, STRIDE = 7 };
    float *x1 = malloc(N * D * sizeof *x1), *x0 = malloc(N * D * sizeof *x0);
    float *xt = calloc(N * STRIDE, sizeof *xt), *plain = malloc(N * D * sizeof *plain);
    float *y1 = malloc(N * D * sizeof *y1), *y3 = malloc(N * D * sizeof *y3);
    double *t_rows = malloc(N * sizeof *t_rows), (*c)[4] = malloc(N * sizeof *c);
    float *scratch = scratch_for(N, D);
    ck_assert(x1 && x0 && xt && plain && y1 && y3 && t_rows && c);
    stochflow__interp ip = {.kind = STOCHFLOW_INTERP_LINEAR};
    normals(x1, N * D, 5);
    normals(x0, N * D, 6);
    for (size_t i = 0; i < N; ++i) {
        t_rows[i] = 0.01 + 0.98 * fmod(0.6180339887 * (double)i, 1.0);
        ck_assert_ok(stochflow__interp_eval(&ip, t_rows[i], c[i]));
        make_row(xt + i * STRIDE, plain + i * D, c[i], x0 + i * D, x1 + i * D, D);
    }
    memcpy(y1, plain, N * D * sizeof *y1);
    memcpy(y3, plain, N * D * sizeof *y3);
    stochflow__batch_target(y1, scratch, xt, STRIDE, t_rows, x1, &ip, N, D, 1, 1);
    stochflow__batch_target(y3, scratch, xt, STRIDE, t_rows, x1, &ip, N, D, 3, 3);
    ck_assert_mem_eq(y1, y3, N * D * sizeof *y1);
    for (size_t i = 0; i < N; i += 7) {
        double y[D];
        reference_row(y, xt + i * STRIDE, x1, N, D, c[i]);
        for (size_t k = 0; k < D; ++k)
            ck_assert_msg(fabs(y1[i * D + k] - y[k]) <= 5e-5 * (1.0 + fabs(y[k])),
                          "row %zu, t = %g: %.7g against the reference %.7g", i, t_rows[i],
                          (double)y1[i * D + k], y[k]);
    }
    /* rows 0 and 1: x1 1e-5 apart in one coordinate; row 0 at t = 1 - 1e-7 */
    memcpy(x1 + D, x1, D * sizeof *x1);
    x1[D] += 1e-5f;
    t_rows[0] = 1.0 - 1e-7;
    ck_assert_ok(stochflow__interp_eval(&ip, t_rows[0], c[0]));
    make_row(xt, plain, c[0], x0, x1, D);
    memcpy(y1, plain, N * D * sizeof *y1);
    stochflow__batch_target(y1, scratch, xt, STRIDE, t_rows, x1, &ip, N, D, 2, 2);
    ck_assert_mem_eq(y1, plain, D * sizeof *y1);
    free(x1);
    free(x0);
    free(xt);
    free(plain);
    free(y1);
    free(y3);
    free(t_rows);
    free(c);
    free(scratch);
}
END_TEST

START_TEST(matches_reference_trig) { check_reference(STOCHFLOW_INTERP_TRIG); }
END_TEST

START_TEST(matches_reference_linear) { check_reference(STOCHFLOW_INTERP_LINEAR); }
END_TEST

/* x1 ~ N(mu, s^2 I): x_t ~ N(b mu, (a^2 + b^2 s^2) I) and the velocity is
 * v* = a' E[x0 | x_t] + b' E[x1 | x_t], E[x0 | x_t] = a r, E[x1 | x_t] = mu + b s^2 r,
 * r = (x_t - b mu) / (a^2 + b^2 s^2). Over a batch of 3000 rows the batch target's
 * squared error is under 2% of the plain target's and, up to t = 0.7, under 1% of
 * |v*|^2 (at t = 0.9 the weights concentrate on fewer rows). */
START_TEST(approaches_gaussian_velocity) {
    enum { N = 3000, D = 2 };
    const double mu[D] = {1.0, -0.5}, s = 0.6;
    float *x1 = malloc(N * D * sizeof *x1), *x0 = malloc(N * D * sizeof *x0);
    float *xt = malloc(N * D * sizeof *xt), *y = malloc(N * D * sizeof *y);
    float *scratch = scratch_for(N, D);
    double *t_rows = malloc(N * sizeof *t_rows);
    ck_assert(x1 && x0 && xt && y && t_rows);
    normals(x1, N * D, 3);
    normals(x0, N * D, 4);
    for (size_t i = 0; i < N * D; ++i) x1[i] = (float)(mu[i % D] + s * x1[i]);
    for (int kind = STOCHFLOW_INTERP_TRIG; kind <= STOCHFLOW_INTERP_LINEAR; ++kind) {
        stochflow__interp ip = {.kind = kind};
        const double ts[] = {0.1, 0.4, 0.7, 0.9};
        for (size_t q = 0; q < sizeof ts / sizeof ts[0]; ++q) {
            double c[4];
            ck_assert_ok(stochflow__interp_eval(&ip, ts[q], c));
            const double var = c[0] * c[0] + c[1] * c[1] * s * s;
            for (size_t i = 0; i < N; ++i) {
                t_rows[i] = ts[q];
                make_row(xt + i * D, y + i * D, c, x0 + i * D, x1 + i * D, D);
            }
            double e_plain = 0.0, e_batch = 0.0, sig = 0.0;
            for (size_t i = 0; i < 200; ++i) /* the plain target's error, before */
                for (size_t k = 0; k < D; ++k) {
                    double r = (xt[i * D + k] - c[1] * mu[k]) / var;
                    double v = c[2] * c[0] * r + c[3] * (mu[k] + c[1] * s * s * r);
                    e_plain += (y[i * D + k] - v) * (y[i * D + k] - v);
                }
            stochflow__batch_target(y, scratch, xt, D, t_rows, x1, &ip, N, D, 2, 2);
            for (size_t i = 0; i < 200; ++i)
                for (size_t k = 0; k < D; ++k) {
                    double r = (xt[i * D + k] - c[1] * mu[k]) / var;
                    double v = c[2] * c[0] * r + c[3] * (mu[k] + c[1] * s * s * r);
                    e_batch += (y[i * D + k] - v) * (y[i * D + k] - v);
                    sig += v * v;
                }
            ck_assert_msg(e_batch <= 0.02 * e_plain && (ts[q] > 0.75 || e_batch <= 0.01 * sig),
                          "kind %d, t = %g: squared error %g (plain target %g, |v*|^2 %g)",
                          kind, ts[q], e_batch, e_plain, sig);
        }
    }
    free(x1);
    free(x0);
    free(xt);
    free(y);
    free(scratch);
    free(t_rows);
}
END_TEST

/* ---- through the model -------------------------------------------------------------- */

static stochflow_model *small_model(int interp, int fourier, size_t n_ctx, int target) {
    const size_t widths[] = {16, 16};
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_config_new(&c, 3));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, widths));
    if (fourier) ck_assert_ok(stochflow_config_set_fourier_interpolant(c, interp, 2));
    else ck_assert_ok(stochflow_config_set_interpolant(c, interp));
    if (n_ctx) ck_assert_ok(stochflow_config_set_context(c, n_ctx, 0));
    ck_assert_ok(stochflow_config_set_seed(c, 3));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_TRAIN_TARGET, target));
    return m;
}

static const float *params(stochflow_model *m, size_t *n) {
    float *p = NULL;
    ck_assert_ok(stochflow_model_parameters(&p, n, m));
    return p;
}

static void params_of(float *out, stochflow_model *m) {
    size_t n = 0;
    const float *p = params(m, &n);
    memcpy(out, p, n * sizeof *p);
}

enum { NB = 48, DM = 3 };

static void batch(float *x1) {
    normals(x1, NB * DM, 9);
    for (size_t i = 0; i < NB * DM; ++i) x1[i] = 0.5f * x1[i] + (i % 2 ? 1.0f : -1.0f);
}

/* Same bits for 1, 2 and 3 threads; the setting changes the step (BATCH is not DRAW);
 * the loss of stochflow_model_loss (evaluation draws) keeps the plain target. */
START_TEST(threads_bitwise) {
    float x1[NB * DM];
    batch(x1);
    size_t np = 0;
    stochflow_model *ref = small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_DRAW);
    (void)params(ref, &np);
    float *p1 = malloc(np * sizeof *p1), *p2 = malloc(np * sizeof *p2);
    ck_assert(p1 && p2);
    double l_draw, l_batch, loss;
    ck_assert_ok(stochflow_model_loss(&l_draw, ref, x1, NB, NULL, NULL));
    for (int s = 0; s < 3; ++s) ck_assert_ok(stochflow_model_train_step(&loss, ref, x1, NB, NULL, NULL));
    params_of(p2, ref);
    for (int threads = 1; threads <= 3; ++threads) {
        stochflow_model *m =
            small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_BATCH);
        ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, threads));
        ck_assert_ok(stochflow_model_loss(&l_batch, m, x1, NB, NULL, NULL));
        ck_assert(l_batch == l_draw);
        for (int s = 0; s < 3; ++s)
            ck_assert_ok(stochflow_model_train_step(&loss, m, x1, NB, NULL, NULL));
        if (threads == 1) {
            params_of(p1, m);
            ck_assert(memcmp(p1, p2, np * sizeof *p1) != 0);
        } else {
            float *p = malloc(np * sizeof *p);
            ck_assert(p != NULL);
            params_of(p, m);
            ck_assert_mem_eq(p, p1, np * sizeof *p);
            free(p);
        }
        stochflow_model_free(m);
    }
    stochflow_model_free(ref);
    free(p1);
    free(p2);
}
END_TEST

/* Two steps, a checkpoint, two more = four uninterrupted steps; the setting is kept. */
START_TEST(checkpoint_resume) {
    float x1[NB * DM];
    batch(x1);
    double loss, v;
    stochflow_model *a = small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_BATCH);
    stochflow_model *b = small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_BATCH);
    for (int s = 0; s < 2; ++s) ck_assert_ok(stochflow_model_train_step(&loss, b, x1, NB, NULL, NULL));
    size_t need = 0, written = 0;
    ck_assert_ok(stochflow_model_serialized_size(&need, b));
    void *buf = malloc(need);
    ck_assert(buf != NULL);
    ck_assert_ok(stochflow_model_save_buffer(&written, buf, need, b));
    stochflow_model_free(b);
    ck_assert_ok(stochflow_model_load_buffer(&b, buf, written));
    free(buf);
    ck_assert_ok(stochflow_model_get_param(&v, b, STOCHFLOW_PARAM_TRAIN_TARGET));
    ck_assert(v == STOCHFLOW_TRAIN_TARGET_BATCH);
    for (int s = 0; s < 2; ++s) ck_assert_ok(stochflow_model_train_step(&loss, b, x1, NB, NULL, NULL));
    for (int s = 0; s < 4; ++s) ck_assert_ok(stochflow_model_train_step(&loss, a, x1, NB, NULL, NULL));
    size_t na = 0, nb = 0;
    const float *pa = params(a, &na), *pb = params(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_mem_eq(pa, pb, na * sizeof *pa);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

/* Where x0 is not an independent N(0, I) draw per row, or rows differ in what they
 * condition on, the step fails with UNSUPPORTED and leaves the model as it was. */
static void refused(stochflow_model *m, const float *x1, const float *ctx) {
    size_t np = 0;
    const float *p = params(m, &np);
    float *before = malloc(np * sizeof *before);
    ck_assert(before != NULL);
    memcpy(before, p, np * sizeof *p);
    double loss;
    if (ctx)
        ck_assert_status(stochflow_model_train_step_ctx(&loss, m, x1, ctx, NULL, NB, NULL, NULL),
                         STOCHFLOW_E_UNSUPPORTED);
    else
        ck_assert_status(stochflow_model_train_step(&loss, m, x1, NB, NULL, NULL),
                         STOCHFLOW_E_UNSUPPORTED);
    ck_assert(strstr(stochflow_last_error_message(), "batch-posterior") != NULL);
    ck_assert_uint_eq(stochflow_model_step(m), 0);
    ck_assert_mem_eq(params(m, &np), before, np * sizeof *before);
    free(before);
    stochflow_model_free(m);
}

START_TEST(refused_where_it_does_not_hold) {
    float x1[NB * DM], ctx[NB];
    batch(x1);
    for (size_t i = 0; i < NB; ++i) ctx[i] = (float)i / NB;
    stochflow_model *m = small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_BATCH);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_COUPLING, STOCHFLOW_COUPLING_OT));
    refused(m, x1, NULL);
    m = small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_BATCH);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, 16));
    refused(m, x1, NULL);
    m = small_model(STOCHFLOW_INTERP_TRIG, 1, 0, STOCHFLOW_TRAIN_TARGET_BATCH);
    refused(m, x1, NULL);
    m = small_model(STOCHFLOW_INTERP_TRIG, 0, 1, STOCHFLOW_TRAIN_TARGET_BATCH);
    refused(m, x1, ctx);
    /* the partial gradient of the distributed path, too */
    m = small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_BATCH);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, 16));
    double sum;
    ck_assert_status(stochflow_model_partial_gradient(&sum, m, x1, 16, NULL, NULL, 0, NB),
                     STOCHFLOW_E_UNSUPPORTED);
    stochflow_model_free(m);
    /* a stochastic-interpolant objective */
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_config_new(&c, DM));
    ck_assert_ok(stochflow_config_set_objective(c, STOCHFLOW_FIELD_DRIFT, STOCHFLOW_SI_TWO_SIDED,
                                                STOCHFLOW_GAMMA_SIN2, 0.0, 0));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_TRAIN_TARGET,
                                           STOCHFLOW_TRAIN_TARGET_BATCH));
    refused(m, x1, NULL);
    /* out of range */
    m = small_model(STOCHFLOW_INTERP_TRIG, 0, 0, STOCHFLOW_TRAIN_TARGET_DRAW);
    ck_assert_status(stochflow_model_set_param(m, STOCHFLOW_PARAM_TRAIN_TARGET, 3),
                     STOCHFLOW_E_INVALID);
    stochflow_model_free(m);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("target");
    TCase *tr = tcase_create("reference");
    tcase_add_test(tr, matches_reference_trig);
    tcase_add_test(tr, matches_reference_linear);
    tcase_add_test(tr, approaches_gaussian_velocity);
    tcase_add_test(tr, blocks_threads_near_rows);
    suite_add_tcase(s, tr);
    TCase *tm = tcase_create("model");
    tcase_add_test(tm, threads_bitwise);
    tcase_add_test(tm, checkpoint_resume);
    tcase_add_test(tm, refused_where_it_does_not_hold);
    suite_add_tcase(s, tm);
    return s;
}
