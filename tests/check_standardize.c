/* check_standardize.c - the model's standardization (doc/data.md): log p in the user's
 * units against the by-hand correction, samples against the standardized samples mapped
 * back, training on user-unit data against training on standardized data, the constant
 * column error, checkpoints with and without the map (old files load, bytes unchanged
 * without one), the trainer's fit on the training rows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define DIM 3
#define NROWS 64

static const double SHIFT[DIM] = {100.0, -3.0, 0.25};
static const double SCALE[DIM] = {20.0, 0.5, 3.0};

static stochflow_model *new_model(uint64_t seed) {
    stochflow_config *cfg;
    stochflow_model *m;
    size_t widths[2] = {16, 16};
    ck_assert_ok(stochflow_config_new(&cfg, DIM));
    ck_assert_ok(stochflow_config_set_hidden(cfg, 2, widths));
    ck_assert_ok(stochflow_config_set_seed(cfg, seed));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    return m;
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
    uint8_t *bad = malloc(len1);
    memcpy(bad, b1, len1);
    size_t at = len1 - 4 - 8 * DIM; /* the first scale */
    double neg = -1.0;
    memcpy(bad + at, &neg, 8);
    uint32_t crc = stochflow__crc32(bad, len1 - 4);
    for (int i = 0; i < 4; ++i) bad[len1 - 4 + i] = (uint8_t)(crc >> (8 * i));
    stochflow_model *x;
    ck_assert_status(stochflow_model_load_buffer(&x, bad, len1), STOCHFLOW_E_FORMAT);
    free(bad);
    free(b0);
    free(b1);
    free(b2);
    stochflow_model_free(r);
    stochflow_model_free(plain);
    stochflow_model_free(m);
}
END_TEST

START_TEST(old_files_load_without_a_map) {
    const char *dir = getenv("STOCHFLOW_TEST_DATA");
    ck_assert_ptr_nonnull(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoints/mlp_ema.sfm", dir);
    stochflow_model *m;
    ck_assert_ok(stochflow_model_load(&m, path));
    ck_assert_int_eq(stochflow_model_standardization(NULL, NULL, m), 0);
    stochflow_model_free(m);
}
END_TEST

START_TEST(trainer_fits_on_the_training_rows) {
    float x[NROWS * DIM];
    user_data(x, NROWS, 5);
    stochflow_trainer *tr;
    ck_assert_ok(stochflow_trainer_new(&tr));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_STEPS, 2));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 1));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_STANDARDIZE, 1));
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
    suite_add_tcase(s, core);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, constant_column_is_an_error);
    suite_add_tcase(s, errors);
    return s;
}
