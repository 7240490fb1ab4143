/* check_standardize.c - the model's standardization (doc/data.md): log p in the user's
 * units against the by-hand correction, samples against the standardized samples mapped
 * back, training on user-unit data against training on standardized data, the constant
 * column error, checkpoints with and without the map (old files load, bytes unchanged
 * without one), the trainer's fit on the training rows; whitening (log p against the
 * by-hand correction, samples, the fit's identity covariance, checkpoints, a diagonal
 * file written before whitening existed, the collinear-column error leaving the model as
 * it was); a conditional model's context map (every _ctx entry point against the mapped
 * context given by hand, no Jacobian in log p(x | c), checkpoints). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define DIM 3
#define NROWS 64

static const double SHIFT[DIM] = {100.0, -3.0, 0.25};
static const double SCALE[DIM] = {20.0, 0.5, 3.0};

/* a small MLP model of dimension DIM with n_ctx context columns (0: unconditional) */
static stochflow_model *model_with(uint64_t seed, size_t n_ctx) {
    stochflow_config *cfg;
    stochflow_model *m;
    size_t widths[2] = {16, 16};
    ck_assert_ok(stochflow_config_new(&cfg, DIM));
    ck_assert_ok(stochflow_config_set_hidden(cfg, 2, widths));
    ck_assert_ok(stochflow_config_set_seed(cfg, seed));
    if (n_ctx) ck_assert_ok(stochflow_config_set_context(cfg, n_ctx, 0));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    return m;
}

static stochflow_model *new_model(uint64_t seed) { return model_with(seed, 0); }

/* a trainer of 2 steps that evaluates every step and fits the map named by standardize */
static stochflow_trainer *short_trainer(int standardize) {
    stochflow_trainer *tr;
    ck_assert_ok(stochflow_trainer_new(&tr));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_STEPS, 2));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 1));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_STANDARDIZE, standardize));
    return tr;
}

static stochflow_solver *rk4(void) {
    stochflow_solver *s;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 8));
    return s;
}

/* rows in user units: x = SHIFT + SCALE * normal */
static void user_data(float *x, size_t n, uint64_t seed) {
    ck_assert_ok(stochflow_random_normal(x, n * DIM, seed, 0));
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < DIM; ++k)
            x[i * DIM + k] = (float)(SHIFT[k] + SCALE[k] * x[i * DIM + k]);
}

START_TEST(log_prob_in_user_units) {
    stochflow_model *a = new_model(5), *b = new_model(5); /* the same weights */
    ck_assert_ok(stochflow_model_set_standardization(a, SHIFT, SCALE));
    float x[NROWS * DIM], z[NROWS * DIM], la[NROWS], lb[NROWS];
    user_data(x, NROWS, 1);
    ck_assert_ok(stochflow_model_standardize(z, a, x, NROWS, 0));
    for (size_t i = 0; i < NROWS * DIM; ++i) {
        size_t k = i % DIM;
        ck_assert_double_eq_tol(z[i], (x[i] - SHIFT[k]) / SCALE[k], 1e-5);
    }
    stochflow_solver *s = rk4();
    ck_assert_ok(stochflow_solver_log_prob(la, NULL, s, a, x, NROWS, 1.0));
    ck_assert_ok(stochflow_solver_log_prob(lb, NULL, s, b, z, NROWS, 1.0));
    double logdet = 0;
    for (size_t k = 0; k < DIM; ++k) logdet += log(SCALE[k]);
    for (size_t i = 0; i < NROWS; ++i) ck_assert_double_eq_tol(la[i], lb[i] - logdet, 1e-5);
    /* the correction is not zero here: the test can tell the two apart */
    ck_assert(fabs(logdet) > 1.0);
    stochflow_solver_free(s);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

START_TEST(samples_in_user_units) {
    stochflow_model *a = new_model(6), *b = new_model(6);
    ck_assert_ok(stochflow_model_set_standardization(a, SHIFT, SCALE));
    float xa[NROWS * DIM], zb[NROWS * DIM], la[NROWS], lb[NROWS], back[NROWS * DIM];
    stochflow_solver *s = rk4();
    ck_assert_ok(stochflow_solver_sample(xa, la, s, a, NROWS, 42));
    ck_assert_ok(stochflow_solver_sample(zb, lb, s, b, NROWS, 42));
    double logdet = 0;
    for (size_t k = 0; k < DIM; ++k) logdet += log(SCALE[k]);
    for (size_t i = 0; i < NROWS * DIM; ++i) {
        size_t k = i % DIM;
        ck_assert_double_eq_tol(xa[i], SHIFT[k] + SCALE[k] * zb[i], 1e-4 * SCALE[k]);
    }
    for (size_t i = 0; i < NROWS; ++i) ck_assert_double_eq_tol(la[i], lb[i] - logdet, 1e-5);
    /* the public inverse map agrees */
    ck_assert_ok(stochflow_model_standardize(back, a, zb, NROWS, 1));
    for (size_t i = 0; i < NROWS * DIM; ++i) ck_assert_float_eq(back[i], xa[i]);
    stochflow_solver_free(s);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

/* Training on user-unit data with the map = training on the mapped data without it. */
START_TEST(training_maps_the_batch) {
    stochflow_model *a = new_model(7), *b = new_model(7);
    ck_assert_ok(stochflow_model_set_standardization(a, SHIFT, SCALE));
    float x[NROWS * DIM], z[NROWS * DIM];
    user_data(x, NROWS, 2);
    ck_assert_ok(stochflow_model_standardize(z, a, x, NROWS, 0));
    for (int step = 0; step < 3; ++step) {
        double la, lb;
        ck_assert_ok(stochflow_model_train_step(&la, a, x, NROWS, NULL, NULL));
        ck_assert_ok(stochflow_model_train_step(&lb, b, z, NROWS, NULL, NULL));
        ck_assert_double_eq(la, lb);
    }
    float *pa, *pb;
    size_t na, nb;
    ck_assert_ok(stochflow_model_parameters(&pa, &na, a));
    ck_assert_ok(stochflow_model_parameters(&pb, &nb, b));
    ck_assert_mem_eq(pa, pb, na * sizeof(float));
    /* a trained model's map is fixed */
    ck_assert_status(stochflow_model_set_standardization(a, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_fit_standardization(a, x, NROWS), STOCHFLOW_E_INVALID);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

START_TEST(fit_and_getters) {
    stochflow_model *m = new_model(8);
    double sh[DIM], sc[DIM];
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, m), 0);
    for (size_t k = 0; k < DIM; ++k) {
        ck_assert_double_eq(sh[k], 0.0);
        ck_assert_double_eq(sc[k], 1.0);
    }
    float x[NROWS * DIM];
    user_data(x, NROWS, 3);
    ck_assert_ok(stochflow_model_fit_standardization(m, x, NROWS));
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, m), 1);
    for (size_t k = 0; k < DIM; ++k) { /* against mean and sd (divisor n) by hand */
        double mu = 0, ss = 0;
        for (size_t i = 0; i < NROWS; ++i) mu += x[i * DIM + k];
        mu /= NROWS;
        for (size_t i = 0; i < NROWS; ++i) ss += (x[i * DIM + k] - mu) * (x[i * DIM + k] - mu);
        ck_assert_double_eq_tol(sh[k], mu, 1e-9 * (1 + fabs(mu)));
        ck_assert_double_eq_tol(sc[k], sqrt(ss / NROWS), 1e-9 * sc[k]);
    }
    ck_assert_ok(stochflow_model_set_standardization(m, NULL, NULL));
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, m), 0);
    stochflow_model_free(m);
}
END_TEST

START_TEST(constant_column_is_an_error) {
    stochflow_model *m = new_model(9);
    float x[NROWS * DIM];
    user_data(x, NROWS, 4);
    for (size_t i = 0; i < NROWS; ++i) x[i * DIM + 1] = 0.1f; /* column 2 constant */
    ck_assert_status(stochflow_model_fit_standardization(m, x, NROWS), STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "column 2 is constant"));
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, m), 0); /* unchanged */
    for (size_t i = 0; i < NROWS; ++i) x[i * DIM + 1] = 12345.678f; /* large, constant */
    ck_assert_status(stochflow_model_fit_standardization(m, x, NROWS), STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "column 2"));
    /* bad explicit maps */
    double sc[DIM] = {1, 0, 1}, sh[DIM] = {0, 0, 0};
    ck_assert_status(stochflow_model_set_standardization(m, sh, sc), STOCHFLOW_E_INVALID);
    sc[1] = 1;
    sh[2] = NAN;
    ck_assert_status(stochflow_model_set_standardization(m, sh, sc), STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_model_set_standardization(m, sh, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_fit_standardization(m, x, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_standardize(x, m, x, 1, 2), STOCHFLOW_E_INVALID);
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, m), 0);
    stochflow_model_free(m);
}
END_TEST

static uint8_t *save(size_t *len, const stochflow_model *m) {
    ck_assert_ok(stochflow_model_serialized_size(len, m));
    uint8_t *buf = malloc(*len);
    ck_assert_ok(stochflow_model_save_buffer(NULL, buf, *len, m));
    return buf;
}

/* Load a copy of the checkpoint bytes b with the f64 at offset at set to v (the CRC fixed
 * up); the status of the load. */
static int load_with(const uint8_t *b, size_t len, size_t at, double v) {
    uint8_t *bad = malloc(len);
    memcpy(bad, b, len);
    memcpy(bad + at, &v, 8);
    uint32_t crc = stochflow__crc32(bad, len - 4);
    for (int i = 0; i < 4; ++i) bad[len - 4 + i] = (uint8_t)(crc >> (8 * i));
    stochflow_model *x = NULL;
    int rc = stochflow_model_load_buffer(&x, bad, len);
    stochflow_model_free(x);
    free(bad);
    return rc;
}

START_TEST(checkpoint_round_trip) {
    stochflow_model *plain = new_model(10), *m = new_model(10);
    size_t len0, len1, len2;
    uint8_t *b0 = save(&len0, plain);
    ck_assert_ok(stochflow_model_set_standardization(m, SHIFT, SCALE));
    uint8_t *b1 = save(&len1, m);
    ck_assert_uint_eq(len1, len0 + 16 + 8 + 16 * DIM); /* one section more */
    stochflow_model *r;
    ck_assert_ok(stochflow_model_load_buffer(&r, b1, len1));
    double sh[DIM], sc[DIM];
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, r), 1);
    ck_assert_mem_eq(sh, SHIFT, sizeof sh);
    ck_assert_mem_eq(sc, SCALE, sizeof sc);
    uint8_t *b2 = save(&len2, r);
    ck_assert_uint_eq(len2, len1);
    ck_assert_mem_eq(b2, b1, len1);
    /* without a map the bytes are those of a model that never had one */
    ck_assert_ok(stochflow_model_set_standardization(m, NULL, NULL));
    free(b2);
    b2 = save(&len2, m);
    ck_assert_uint_eq(len2, len0);
    ck_assert_mem_eq(b2, b0, len0);
    /* a corrupted section is a format error (CRC fixed up) */
    ck_assert_status(load_with(b1, len1, len1 - 4 - 8 * DIM, -1.0), /* the first scale */
                     STOCHFLOW_E_FORMAT);
    free(b0);
    free(b1);
    free(b2);
    stochflow_model_free(r);
    stochflow_model_free(plain);
    stochflow_model_free(m);
}
END_TEST

/* path = $STOCHFLOW_TEST_DATA/rel */
static void data_path(char *path, size_t cap, const char *rel) {
    const char *dir = getenv("STOCHFLOW_TEST_DATA");
    ck_assert_ptr_nonnull(dir);
    snprintf(path, cap, "%s/%s", dir, rel);
}

START_TEST(old_files_load_without_a_map) {
    char path[4096];
    data_path(path, sizeof path, "checkpoints/mlp_ema.sfm");
    stochflow_model *m;
    ck_assert_ok(stochflow_model_load(&m, path));
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, m), 0);
    stochflow_model_free(m);
}
END_TEST

START_TEST(trainer_fits_on_the_training_rows) {
    float x[NROWS * DIM];
    user_data(x, NROWS, 5);
    stochflow_trainer *tr = short_trainer(1);
    stochflow_model *m = new_model(12), *ref = new_model(12);
    /* the validation rows play no part: the map equals a fit on the training rows */
    ck_assert_ok(stochflow_trainer_fit(tr, m, x, NROWS - 16, x + (NROWS - 16) * DIM, 16));
    ck_assert_ok(stochflow_model_fit_standardization(ref, x, NROWS - 16));
    double a[DIM], b[DIM], c[DIM], d[DIM];
    ck_assert_int_eq(stochflow_model_standardization(a, b, m), 1);
    ck_assert_int_eq(stochflow_model_standardization(c, d, ref), 1);
    ck_assert_mem_eq(a, c, sizeof a);
    ck_assert_mem_eq(b, d, sizeof b);
    /* the final NLL is in the user's units: a column scale of 20 costs about log 20 */
    double nll;
    ck_assert_ok(stochflow_trainer_stat(&nll, tr, STOCHFLOW_TRAINER_STAT_FINAL_NLL));
    ck_assert(nll > 3.0);
    /* a constant column: the fit fails naming it, the model untouched */
    stochflow_model *u = new_model(13);
    for (size_t i = 0; i < NROWS; ++i) x[i * DIM] = 7.0f;
    ck_assert_status(stochflow_trainer_fit(tr, u, x, NROWS, NULL, 0), STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "column 1"));
    ck_assert_uint_eq(stochflow_model_step(u), 0);
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, u), 0);
    /* off (the default): the model's map, none here, is left alone */
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_STANDARDIZE, 0));
    stochflow_model *v = new_model(14);
    user_data(x, NROWS, 6);
    ck_assert_ok(stochflow_trainer_fit(tr, v, x, NROWS, NULL, 0));
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, v), 0);
    stochflow_model_free(u);
    stochflow_model_free(v);
    stochflow_model_free(m);
    stochflow_model_free(ref);
    stochflow_trainer_free(tr);
}
END_TEST

/* ---- whitening ------------------------------------------------------------------- */

/* a lower-triangular factor with off-diagonal mass, row-major */
static const double CHOL[DIM * DIM] = {1.0, 0.0, 0.0, 0.6, 0.8, 0.0, -0.3, 0.5, 0.4};

static double whiten_logdet(void) {
    double ld = 0;
    for (size_t k = 0; k < DIM; ++k) ld += log(SCALE[k]) + log(CHOL[k * DIM + k]);
    return ld;
}

/* correlated rows in user units: x = SHIFT + SCALE * (CHOL e), e standard normal */
static void correlated_data(float *x, size_t n, uint64_t seed) {
    ck_assert_ok(stochflow_random_normal(x, n * DIM, seed, 0));
    for (size_t i = 0; i < n; ++i) {
        double e[DIM];
        for (size_t k = 0; k < DIM; ++k) e[k] = x[i * DIM + k];
        for (size_t k = 0; k < DIM; ++k) {
            double u = 0;
            for (size_t j = 0; j <= k; ++j) u += CHOL[k * DIM + j] * e[j];
            x[i * DIM + k] = (float)(SHIFT[k] + SCALE[k] * u);
        }
    }
}

START_TEST(whitening_log_prob_in_user_units) {
    stochflow_model *a = new_model(21), *b = new_model(21); /* the same weights */
    ck_assert_ok(stochflow_model_set_whitening(a, SHIFT, SCALE, CHOL));
    ck_assert_int_eq(stochflow_model_whitening(NULL, a), 1);
    float x[NROWS * DIM], z[NROWS * DIM], la[NROWS], lb[NROWS];
    correlated_data(x, NROWS, 31);
    ck_assert_ok(stochflow_model_standardize(z, a, x, NROWS, 0));
    for (size_t i = 0; i < NROWS; ++i) { /* z = L^{-1} u by hand (solved in double) */
        double u[DIM], w[DIM];
        for (size_t k = 0; k < DIM; ++k) u[k] = (x[i * DIM + k] - SHIFT[k]) / SCALE[k];
        w[0] = u[0] / CHOL[0];
        w[1] = (u[1] - CHOL[3] * w[0]) / CHOL[4];
        w[2] = (u[2] - CHOL[6] * w[0] - CHOL[7] * w[1]) / CHOL[8];
        for (size_t k = 0; k < DIM; ++k) ck_assert_double_eq_tol(z[i * DIM + k], w[k], 1e-5);
    }
    stochflow_solver *s = rk4();
    ck_assert_ok(stochflow_solver_log_prob(la, NULL, s, a, x, NROWS, 1.0));
    ck_assert_ok(stochflow_solver_log_prob(lb, NULL, s, b, z, NROWS, 1.0));
    const double logdet = whiten_logdet();
    for (size_t i = 0; i < NROWS; ++i) ck_assert_double_eq_tol(la[i], lb[i] - logdet, 1e-5);
    /* the factor's share of the correction is not zero: log 0.8 + log 0.4 */
    double diag_only = 0;
    for (size_t k = 0; k < DIM; ++k) diag_only += log(SCALE[k]);
    ck_assert(fabs(logdet - diag_only) > 1.0);
    /* in place, and back */
    float y[NROWS * DIM];
    memcpy(y, x, sizeof y);
    ck_assert_ok(stochflow_model_standardize(y, a, y, NROWS, 0));
    ck_assert_mem_eq(y, z, sizeof y);
    ck_assert_ok(stochflow_model_standardize(y, a, y, NROWS, 1));
    for (size_t i = 0; i < NROWS * DIM; ++i)
        ck_assert_double_eq_tol(y[i], x[i], 1e-5 * (1 + fabs(x[i])));
    stochflow_solver_free(s);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

START_TEST(whitening_samples_in_user_units) {
    stochflow_model *a = new_model(22), *b = new_model(22);
    ck_assert_ok(stochflow_model_set_whitening(a, SHIFT, SCALE, CHOL));
    float xa[NROWS * DIM], zb[NROWS * DIM], la[NROWS], lb[NROWS];
    stochflow_solver *s = rk4();
    ck_assert_ok(stochflow_solver_sample(xa, la, s, a, NROWS, 43));
    ck_assert_ok(stochflow_solver_sample(zb, lb, s, b, NROWS, 43));
    for (size_t i = 0; i < NROWS; ++i)
        for (size_t k = 0; k < DIM; ++k) { /* x = shift + scale * (L z) */
            double u = 0;
            for (size_t j = 0; j <= k; ++j) u += CHOL[k * DIM + j] * zb[i * DIM + j];
            ck_assert_double_eq_tol(xa[i * DIM + k], SHIFT[k] + SCALE[k] * u,
                                    1e-4 * SCALE[k] * (1 + fabs(u)) + 1e-5 * fabs(SHIFT[k]));
        }
    for (size_t i = 0; i < NROWS; ++i)
        ck_assert_double_eq_tol(la[i], lb[i] - whiten_logdet(), 1e-5);
    stochflow_solver_free(s);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

START_TEST(whitening_fit_gives_identity_covariance) {
    enum { N = 2000 };
    float *x = malloc(N * DIM * sizeof *x), *z = malloc(N * DIM * sizeof *z);
    correlated_data(x, N, 32);
    stochflow_model *m = new_model(23);
    ck_assert_ok(stochflow_model_fit_whitening(m, x, N));
    double sh[DIM], sc[DIM], L[DIM * DIM];
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, m), 1);
    ck_assert_int_eq(stochflow_model_whitening(L, m), 1);
    for (size_t k = 0; k < DIM; ++k)
        for (size_t j = k + 1; j < DIM; ++j) ck_assert_double_eq(L[k * DIM + j], 0.0);
    ck_assert(L[3] > 0.3); /* the data's correlation is found (0.6 / 1 in CHOL's units) */
    ck_assert_ok(stochflow_model_standardize(z, m, x, N, 0));
    for (size_t a = 0; a < DIM; ++a) {
        double mu = 0;
        for (size_t i = 0; i < N; ++i) mu += z[i * DIM + a];
        ck_assert_double_eq_tol(mu / N, 0.0, 1e-5);
        for (size_t b = 0; b <= a; ++b) {
            double c = 0;
            for (size_t i = 0; i < N; ++i) c += (double)z[i * DIM + a] * z[i * DIM + b];
            ck_assert_double_eq_tol(c / N, a == b ? 1.0 : 0.0, 1e-4);
        }
    }
    /* the per-column map afterwards replaces it */
    ck_assert_ok(stochflow_model_fit_standardization(m, x, N));
    ck_assert_int_eq(stochflow_model_whitening(L, m), 0);
    ck_assert_double_eq(L[3], 0.0);
    ck_assert_double_eq(L[4], 1.0);
    free(x);
    free(z);
    stochflow_model_free(m);
}
END_TEST

START_TEST(whitening_checkpoint_round_trip) {
    stochflow_model *m = new_model(24);
    ck_assert_ok(stochflow_model_set_whitening(m, SHIFT, SCALE, CHOL));
    size_t len1, len2;
    uint8_t *b1 = save(&len1, m);
    stochflow_model *r;
    ck_assert_ok(stochflow_model_load_buffer(&r, b1, len1));
    double sh[DIM], sc[DIM], L[DIM * DIM];
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, r), 1);
    ck_assert_int_eq(stochflow_model_whitening(L, r), 1);
    ck_assert_mem_eq(sh, SHIFT, sizeof sh);
    ck_assert_mem_eq(sc, SCALE, sizeof sc);
    ck_assert_mem_eq(L, CHOL, sizeof L);
    uint8_t *b2 = save(&len2, r);
    ck_assert_uint_eq(len2, len1);
    ck_assert_mem_eq(b2, b1, len1);
    /* the same density after the round trip */
    float x[NROWS * DIM], la[NROWS], lb[NROWS];
    correlated_data(x, NROWS, 33);
    stochflow_solver *s = rk4();
    ck_assert_ok(stochflow_solver_log_prob(la, NULL, s, m, x, NROWS, 1.0));
    ck_assert_ok(stochflow_solver_log_prob(lb, NULL, s, r, x, NROWS, 1.0));
    ck_assert_mem_eq(la, lb, sizeof la);
    /* a zero diagonal entry of the stored factor is a format error (CRC fixed up): the
     * last f64 of the section is L[2][2] */
    ck_assert_status(load_with(b1, len1, len1 - 4 - 8, 0.0), STOCHFLOW_E_FORMAT);
    free(b1);
    free(b2);
    stochflow_solver_free(s);
    stochflow_model_free(r);
    stochflow_model_free(m);
}
END_TEST

/* tests/data/standardize/stdz_diag.sfm: a model (dim 3, widths 16 16, seed 5) with the
 * per-column map SHIFT, SCALE, written by the library before whitening existed. */
START_TEST(diagonal_file_from_before_whitening_loads) {
    char path[4096];
    data_path(path, sizeof path, "standardize/stdz_diag.sfm");
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t file[8192];
    size_t flen = fread(file, 1, sizeof file, f);
    fclose(f);
    stochflow_model *m;
    ck_assert_ok(stochflow_model_load_buffer(&m, file, flen));
    double sh[DIM], sc[DIM];
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, m), 1);
    ck_assert_int_eq(stochflow_model_whitening(NULL, m), 0);
    ck_assert_mem_eq(sh, SHIFT, sizeof sh);
    ck_assert_mem_eq(sc, SCALE, sizeof sc);
    size_t len;
    uint8_t *b = save(&len, m); /* written back as it was */
    ck_assert_uint_eq(len, flen);
    ck_assert_mem_eq(b, file, flen);
    free(b);
    stochflow_model_free(m);
}
END_TEST

START_TEST(collinear_columns_are_an_error) {
    stochflow_model *m = new_model(25);
    float x[NROWS * DIM];
    correlated_data(x, NROWS, 34);
    for (size_t i = 0; i < NROWS; ++i) /* column 3 = 2 column 1 - column 2 */
        x[i * DIM + 2] = 2.0f * x[i * DIM] - x[i * DIM + 1];
    /* a map already held stays as it was when the fit fails */
    ck_assert_ok(stochflow_model_set_standardization(m, SHIFT, SCALE));
    ck_assert_status(stochflow_model_fit_whitening(m, x, NROWS), STOCHFLOW_E_INVALID);
    const char *msg = stochflow_last_error_message();
    ck_assert_ptr_nonnull(strstr(msg, "column 3"));
    ck_assert_ptr_nonnull(strstr(msg, "columns 1, 2"));
    double sh[DIM], sc[DIM];
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, m), 1);
    ck_assert_int_eq(stochflow_model_whitening(NULL, m), 0);
    ck_assert_mem_eq(sh, SHIFT, sizeof sh);
    ck_assert_mem_eq(sc, SCALE, sizeof sc);
    /* a duplicated column: named with the one it repeats */
    for (size_t i = 0; i < NROWS; ++i) x[i * DIM + 2] = x[i * DIM];
    ck_assert_status(stochflow_model_fit_whitening(m, x, NROWS), STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "column 3"));
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "of column 1 "));
    /* bad explicit factors */
    double L[DIM * DIM];
    memcpy(L, CHOL, sizeof L);
    L[1] = 0.5; /* above the diagonal */
    ck_assert_status(stochflow_model_set_whitening(m, SHIFT, SCALE, L), STOCHFLOW_E_INVALID);
    L[1] = 0.0;
    L[4] = 0.0; /* singular */
    ck_assert_status(stochflow_model_set_whitening(m, SHIFT, SCALE, L), STOCHFLOW_E_INVALID);
    L[4] = NAN;
    ck_assert_status(stochflow_model_set_whitening(m, SHIFT, SCALE, L), STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_model_set_whitening(m, SHIFT, SCALE, NULL), STOCHFLOW_E_INVALID);
    ck_assert_int_eq(stochflow_model_whitening(NULL, m), 0);
    ck_assert_int_eq(stochflow_model_standardization(sh, sc, m), 1);
    ck_assert_mem_eq(sc, SCALE, sizeof sc);
    /* the trainer: the error, and the model as it was (step 0, no map) */
    stochflow_model *u = new_model(26);
    stochflow_trainer *tr = short_trainer(3);
    ck_assert_status(stochflow_trainer_fit(tr, u, x, NROWS, NULL, 0), STOCHFLOW_E_INVALID);
    ck_assert_uint_eq(stochflow_model_step(u), 0);
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, u), 0);
    stochflow_trainer_free(tr);
    stochflow_model_free(u);
    stochflow_model_free(m);
}
END_TEST

START_TEST(trainer_whitens_on_the_training_rows) {
    float x[NROWS * DIM];
    correlated_data(x, NROWS, 35);
    stochflow_trainer *tr = short_trainer(3);
    ck_assert_status(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_STANDARDIZE, 4),
                     STOCHFLOW_E_INVALID);
    stochflow_model *m = new_model(27), *ref = new_model(27);
    ck_assert_ok(stochflow_trainer_fit(tr, m, x, NROWS - 16, x + (NROWS - 16) * DIM, 16));
    ck_assert_ok(stochflow_model_fit_whitening(ref, x, NROWS - 16));
    double a[DIM * DIM], b[DIM * DIM];
    ck_assert_int_eq(stochflow_model_whitening(a, m), 1);
    ck_assert_int_eq(stochflow_model_whitening(b, ref), 1);
    ck_assert_mem_eq(a, b, sizeof a);
    stochflow_model_free(m);
    stochflow_model_free(ref);
    stochflow_trainer_free(tr);
}
END_TEST

/* ---- the context map ------------------------------------------------------------------ */

#define NCTX 2
static const double CSHIFT[NCTX] = {50.0, -7.0};
static const double CSCALE[NCTX] = {10.0, 0.25};

static stochflow_model *new_cond_model(uint64_t seed) { return model_with(seed, NCTX); }

/* context rows in user units, and the same mapped by hand as the library maps them */
static void context_rows(float *c, float *cz, size_t n, uint64_t seed) {
    ck_assert_ok(stochflow_random_normal(c, n * NCTX, seed, 0));
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < NCTX; ++k) {
            c[i * NCTX + k] = (float)(CSHIFT[k] + CSCALE[k] * c[i * NCTX + k]);
            cz[i * NCTX + k] = (float)(((double)c[i * NCTX + k] - CSHIFT[k]) / CSCALE[k]);
        }
}

START_TEST(context_map_in_every_entry_point) {
    stochflow_model *a = new_cond_model(41), *b = new_cond_model(41);
    ck_assert_ok(stochflow_model_set_context_standardization(a, CSHIFT, CSCALE));
    ck_assert_ok(stochflow_model_set_standardization(a, SHIFT, SCALE)); /* both maps */
    ck_assert_ok(stochflow_model_set_standardization(b, SHIFT, SCALE));
    float x[NROWS * DIM], c[NROWS * NCTX], cz[NROWS * NCTX];
    user_data(x, NROWS, 42);
    context_rows(c, cz, NROWS, 43);
    /* training: the same losses and weights */
    for (int step = 0; step < 3; ++step) {
        double la, lb;
        ck_assert_ok(stochflow_model_train_step_ctx(&la, a, x, c, NULL, NROWS, NULL, NULL));
        ck_assert_ok(stochflow_model_train_step_ctx(&lb, b, x, cz, NULL, NROWS, NULL, NULL));
        ck_assert_double_eq(la, lb);
    }
    float *pa, *pb;
    size_t na, nb;
    ck_assert_ok(stochflow_model_parameters(&pa, &na, a));
    ck_assert_ok(stochflow_model_parameters(&pb, &nb, b));
    ck_assert_mem_eq(pa, pb, na * sizeof(float));
    double lossa, lossb;
    ck_assert_ok(stochflow_model_loss_ctx(&lossa, a, x, c, NULL, NROWS, NULL, NULL));
    ck_assert_ok(stochflow_model_loss_ctx(&lossb, b, x, cz, NULL, NROWS, NULL, NULL));
    ck_assert_double_eq(lossa, lossb);
    /* velocity, divergence, VJP */
    float z[NROWS * DIM], va[NROWS * DIM], vb[NROWS * DIM], da[NROWS], db[NROWS];
    ck_assert_ok(stochflow_model_standardize(z, a, x, NROWS, 0));
    ck_assert_ok(stochflow_model_velocity_ctx(va, a, 0.5, z, c, NULL, NROWS));
    ck_assert_ok(stochflow_model_velocity_ctx(vb, b, 0.5, z, cz, NULL, NROWS));
    ck_assert_mem_eq(va, vb, sizeof va);
    ck_assert_ok(stochflow_model_divergence_ctx(da, va, a, 0.5, z, c, NULL, NROWS));
    ck_assert_ok(stochflow_model_divergence_ctx(db, vb, b, 0.5, z, cz, NULL, NROWS));
    ck_assert_mem_eq(da, db, sizeof da);
    ck_assert_ok(stochflow_model_velocity_vjp_ctx(va, a, 0.5, z, c, NULL, x, NROWS));
    ck_assert_ok(stochflow_model_velocity_vjp_ctx(vb, b, 0.5, z, cz, NULL, x, NROWS));
    ck_assert_mem_eq(va, vb, sizeof va);
    /* the context changes the field: the map is not a no-op here */
    ck_assert_ok(stochflow_model_velocity_ctx(va, a, 0.5, z, c, NULL, NROWS));
    ck_assert_ok(stochflow_model_velocity_ctx(vb, b, 0.5, z, c, NULL, NROWS));
    ck_assert(memcmp(va, vb, sizeof va) != 0);
    /* log p(x | c): the same numbers, no Jacobian term for the context */
    stochflow_solver *s = rk4();
    float la[NROWS], lb[NROWS];
    ck_assert_ok(stochflow_solver_log_prob_ctx(la, NULL, s, a, x, c, NULL, NROWS, 1.0));
    ck_assert_ok(stochflow_solver_log_prob_ctx(lb, NULL, s, b, x, cz, NULL, NROWS, 1.0));
    ck_assert_mem_eq(la, lb, sizeof la);
    /* sampling */
    float sa[NROWS * DIM], sb[NROWS * DIM];
    ck_assert_ok(stochflow_solver_sample_ctx(sa, la, s, a, c, NULL, NROWS, 44));
    ck_assert_ok(stochflow_solver_sample_ctx(sb, lb, s, b, cz, NULL, NROWS, 44));
    ck_assert_mem_eq(sa, sb, sizeof sa);
    ck_assert_mem_eq(la, lb, sizeof la);
    /* integration */
    memcpy(sa, z, sizeof z);
    memcpy(sb, z, sizeof z);
    ck_assert_ok(stochflow_solver_integrate_ctx(la, NULL, s, a, sa, c, NULL, NROWS, 0.0, 1.0));
    ck_assert_ok(stochflow_solver_integrate_ctx(lb, NULL, s, b, sb, cz, NULL, NROWS, 0.0, 1.0));
    ck_assert_mem_eq(sa, sb, sizeof sa);
    stochflow_solver_free(s);
    /* fixed once trained */
    ck_assert_status(stochflow_model_set_context_standardization(a, NULL, NULL),
                     STOCHFLOW_E_INVALID);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

START_TEST(context_map_fit_and_checkpoint) {
    stochflow_model *m = new_cond_model(45);
    float c[NROWS * NCTX], cz[NROWS * NCTX];
    context_rows(c, cz, NROWS, 46);
    double sh[NCTX], sc[NCTX];
    ck_assert_int_eq(stochflow_model_context_standardization(sh, sc, m), 0);
    ck_assert_double_eq(sc[1], 1.0);
    ck_assert_ok(stochflow_model_fit_context_standardization(m, c, NROWS));
    ck_assert_int_eq(stochflow_model_context_standardization(sh, sc, m), 1);
    for (size_t k = 0; k < NCTX; ++k) {
        double mu = 0, ss = 0;
        for (size_t i = 0; i < NROWS; ++i) mu += c[i * NCTX + k];
        mu /= NROWS;
        for (size_t i = 0; i < NROWS; ++i) ss += (c[i * NCTX + k] - mu) * (c[i * NCTX + k] - mu);
        ck_assert_double_eq_tol(sh[k], mu, 1e-9 * (1 + fabs(mu)));
        ck_assert_double_eq_tol(sc[k], sqrt(ss / NROWS), 1e-9 * sc[k]);
    }
    /* context map alone, then with whitening: each round-trips to the same bytes */
    for (int with_white = 0; with_white < 2; ++with_white) {
        if (with_white) ck_assert_ok(stochflow_model_set_whitening(m, SHIFT, SCALE, CHOL));
        size_t len1, len2;
        uint8_t *b1 = save(&len1, m);
        stochflow_model *r;
        ck_assert_ok(stochflow_model_load_buffer(&r, b1, len1));
        double sh2[NCTX], sc2[NCTX];
        ck_assert_int_eq(stochflow_model_context_standardization(sh2, sc2, r), 1);
        ck_assert_mem_eq(sh2, sh, sizeof sh);
        ck_assert_mem_eq(sc2, sc, sizeof sc);
        ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, r), with_white);
        ck_assert_int_eq(stochflow_model_whitening(NULL, r), with_white);
        uint8_t *b2 = save(&len2, r);
        ck_assert_uint_eq(len2, len1);
        ck_assert_mem_eq(b2, b1, len1);
        free(b1);
        free(b2);
        stochflow_model_free(r);
    }
    /* a constant context column: named, the map as it was */
    for (size_t i = 0; i < NROWS; ++i) c[i * NCTX + 1] = 3.0f;
    ck_assert_status(stochflow_model_fit_context_standardization(m, c, NROWS),
                     STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "context column 2"));
    double sh3[NCTX];
    ck_assert_int_eq(stochflow_model_context_standardization(sh3, NULL, m), 1);
    ck_assert_mem_eq(sh3, sh, sizeof sh);
    /* an unconditional model has no context map */
    stochflow_model *u = new_model(47);
    ck_assert_status(stochflow_model_fit_context_standardization(u, c, NROWS),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_set_context_standardization(u, CSHIFT, CSCALE),
                     STOCHFLOW_E_INVALID);
    stochflow_model_free(u);
    stochflow_model_free(m);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("standardize");
    TCase *core = tcase_create("core");
    tcase_add_test(core, log_prob_in_user_units);
    tcase_add_test(core, samples_in_user_units);
    tcase_add_test(core, training_maps_the_batch);
    tcase_add_test(core, fit_and_getters);
    tcase_add_test(core, checkpoint_round_trip);
    tcase_add_test(core, old_files_load_without_a_map);
    tcase_add_test(core, trainer_fits_on_the_training_rows);
    tcase_add_test(core, whitening_log_prob_in_user_units);
    tcase_add_test(core, whitening_samples_in_user_units);
    tcase_add_test(core, whitening_fit_gives_identity_covariance);
    tcase_add_test(core, whitening_checkpoint_round_trip);
    tcase_add_test(core, diagonal_file_from_before_whitening_loads);
    tcase_add_test(core, trainer_whitens_on_the_training_rows);
    tcase_add_test(core, context_map_in_every_entry_point);
    tcase_add_test(core, context_map_fit_and_checkpoint);
    suite_add_tcase(s, core);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, constant_column_is_an_error);
    tcase_add_test(errors, collinear_columns_are_an_error);
    suite_add_tcase(s, errors);
    return s;
}
