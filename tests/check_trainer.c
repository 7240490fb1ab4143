/* check_trainer.c - the trainer: its batches against an independent replay of the
 * documented keying, thread-count independence, resume = uninterrupted, validation,
 * best weights, patience, budgets, callback cancel, failures that change nothing. */
#include <string.h>

#include "harness.h"
#include "internal.h"

#define NROWS 100
#define DIM 2

static float data[NROWS * DIM], vdata[40 * DIM];

static void make_data(void) {
    ck_assert_ok(stochflow_toy_sample(data, "moons", NROWS, 3, 0));
    ck_assert_ok(stochflow_toy_sample(vdata, "moons", 40, 3, 1));
}

static stochflow_model *small_model(int threads) {
    stochflow_config *cfg;
    stochflow_model *m;
    size_t widths[2] = {16, 16};
    ck_assert_ok(stochflow_config_new(&cfg, DIM));
    ck_assert_ok(stochflow_config_set_hidden(cfg, 2, widths));
    ck_assert_ok(stochflow_config_set_seed(cfg, 11));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 3e-3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, threads));
    return m;
}

static stochflow_trainer *small_trainer(double batch, double steps) {
    stochflow_trainer *tr;
    stochflow_solver *s;
    ck_assert_ok(stochflow_trainer_new(&tr));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_BATCH_SIZE, batch));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_STEPS, steps));
    ck_assert_ok(stochflow_trainer_solver(&s, tr));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 4));
    return tr;
}

static void params_of(float *out, stochflow_model *m) {
    float *p;
    size_t n;
    ck_assert_ok(stochflow_model_parameters(&p, &n, m));
    memcpy(out, p, n * sizeof(float));
}

/* The documented batch rule, replayed with the generator directly: epoch e's order is a
 * Fisher-Yates permutation drawn from (seed, stream 12, step e); step s takes rows
 * [j B, j B + B) of epoch s / ceil(n / B), j = s mod ceil(n / B). */
START_TEST(batches_follow_the_documented_keying) {
    make_data();
    const size_t B = 32, steps = 9, per = (NROWS + B - 1) / B; /* 4 batches, last has 4 */
    stochflow_model *a = small_model(1), *b = small_model(1);
    stochflow_trainer *tr = small_trainer(B, steps);
    ck_assert_ok(stochflow_trainer_fit(tr, a, data, NROWS, NULL, 0));
    double v;
    ck_assert_ok(stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_STEPS));
    ck_assert_double_eq(v, steps);
    ck_assert_ok(stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_STOP));
    ck_assert_double_eq(v, STOCHFLOW_TRAINER_STOP_STEPS);
    /* the manual replay: same horizon, same batches */
    ck_assert_ok(stochflow_model_set_param(b, STOCHFLOW_PARAM_LR_TOTAL_STEPS, steps));
    size_t perm[NROWS];
    float batch[32 * DIM];
    for (size_t s = 0; s < steps; ++s) {
        size_t e = s / per, j = s % per;
        stochflow__rng r;
        stochflow__rng_init(&r, 11, 12, e, 0);
        for (size_t i = 0; i < NROWS; ++i) perm[i] = i;
        for (size_t i = NROWS; i > 1; --i) {
            size_t k = (size_t)(stochflow__rng_uniform(&r) * (double)i);
            size_t t = perm[i - 1];
            perm[i - 1] = perm[k];
            perm[k] = t;
        }
        size_t lo = j * B, hi = lo + B < NROWS ? lo + B : NROWS;
        for (size_t k = lo; k < hi; ++k) memcpy(batch + (k - lo) * DIM, data + perm[k] * DIM, sizeof batch[0] * DIM);
        double loss;
        ck_assert_ok(stochflow_model_train_step(&loss, b, batch, hi - lo, NULL, NULL));
    }
    size_t np = stochflow_model_num_params(a);
    float *pa = malloc(np * sizeof(float)), *pb = malloc(np * sizeof(float));
    params_of(pa, a);
    params_of(pb, b);
    ck_assert_int_eq(memcmp(pa, pb, np * sizeof(float)), 0);
    free(pa);
    free(pb);
    stochflow_trainer_free(tr);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

static int cancel_at;
static int on_progress(void *user, uint64_t step, double loss, double val, double se) {
    (void)loss;
    (void)val;
    (void)se;
    if (user) ++*(int *)user;
    return cancel_at > 0 && step == (uint64_t)cancel_at;
}

START_TEST(threads_and_resume_are_bitwise) {
    make_data();
    const double steps = 30;
    stochflow_model *a = small_model(1), *b = small_model(2), *c = small_model(1);
    stochflow_trainer *tr = small_trainer(16, steps);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_FRACTION, 0.2));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 10));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_KEEP_BEST, 2));
    ck_assert_ok(stochflow_trainer_fit(tr, a, data, NROWS, NULL, 0));
    double final_a, rows;
    ck_assert_ok(stochflow_trainer_stat(&final_a, tr, STOCHFLOW_TRAINER_STAT_FINAL_NLL));
    ck_assert_ok(stochflow_trainer_stat(&rows, tr, STOCHFLOW_TRAINER_STAT_VAL_ROWS));
    ck_assert_double_eq(rows, 20);
    ck_assert_ok(stochflow_trainer_fit(tr, b, data, NROWS, NULL, 0)); /* 2 threads */
    /* interrupted at step 13 by the callback, checkpointed, resumed on a loaded copy */
    cancel_at = 13;
    int calls = 0;
    ck_assert_ok(stochflow_trainer_set_progress(tr, on_progress, &calls));
    ck_assert_status(stochflow_trainer_fit(tr, c, data, NROWS, NULL, 0), STOCHFLOW_E_CANCELLED);
    ck_assert_int_eq(calls, 13);
    ck_assert_uint_eq(stochflow_model_step(c), 13);
    size_t sz, wr;
    ck_assert_ok(stochflow_model_serialized_size(&sz, c));
    void *buf = malloc(sz);
    ck_assert_ok(stochflow_model_save_buffer(&wr, buf, sz, c));
    stochflow_model_free(c);
    ck_assert_ok(stochflow_model_load_buffer(&c, buf, wr));
    free(buf);
    cancel_at = 0;
    stochflow_trainer *tr2 = small_trainer(16, steps);
    ck_assert_ok(stochflow_trainer_set_param(tr2, STOCHFLOW_TRAINER_VAL_FRACTION, 0.2));
    ck_assert_ok(stochflow_trainer_set_param(tr2, STOCHFLOW_TRAINER_EVAL_EVERY, 10));
    ck_assert_ok(stochflow_trainer_set_param(tr2, STOCHFLOW_TRAINER_KEEP_BEST, 2));
    ck_assert_ok(stochflow_trainer_fit(tr2, c, data, NROWS, NULL, 0));
    double final_c;
    ck_assert_ok(stochflow_trainer_stat(&final_c, tr2, STOCHFLOW_TRAINER_STAT_FINAL_NLL));
    ck_assert_double_eq(final_a, final_c);
    size_t np = stochflow_model_num_params(a);
    float *pa = malloc(np * sizeof(float)), *pb = malloc(np * sizeof(float)),
          *pc = malloc(np * sizeof(float));
    params_of(pa, a);
    params_of(pb, b);
    params_of(pc, c);
    ck_assert_int_eq(memcmp(pa, pb, np * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(pa, pc, np * sizeof(float)), 0);
    /* the schedule spans the step budget */
    double horizon;
    ck_assert_ok(stochflow_model_get_param(&horizon, a, STOCHFLOW_PARAM_LR_TOTAL_STEPS));
    ck_assert_double_eq(horizon, steps);
    free(pa);
    free(pb);
    free(pc);
    stochflow_trainer_free(tr);
    stochflow_trainer_free(tr2);
    stochflow_model_free(a);
    stochflow_model_free(b);
    stochflow_model_free(c);
}
END_TEST

START_TEST(best_weights_and_exact_final) {
    make_data();
    stochflow_model *m = small_model(1);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-2)); /* noisy: the best is not the last */
    stochflow_trainer *tr = small_trainer(16, 60);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 5));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_SUBSET, 1000)); /* all 40 */
    ck_assert_ok(stochflow_trainer_fit(tr, m, data, NROWS, vdata, 40));
    double best, best_step, final, evals, se;
    ck_assert_ok(stochflow_trainer_stat(&best, tr, STOCHFLOW_TRAINER_STAT_BEST_NLL));
    ck_assert_ok(stochflow_trainer_stat(&best_step, tr, STOCHFLOW_TRAINER_STAT_BEST_STEP));
    ck_assert_ok(stochflow_trainer_stat(&final, tr, STOCHFLOW_TRAINER_STAT_FINAL_NLL));
    ck_assert_ok(stochflow_trainer_stat(&se, tr, STOCHFLOW_TRAINER_STAT_FINAL_SE));
    ck_assert_ok(stochflow_trainer_stat(&evals, tr, STOCHFLOW_TRAINER_STAT_EVALS));
    ck_assert_double_eq(evals, 12);
    ck_assert(best_step >= 5 && best_step <= 60);
    /* the subset is the whole set, so the final exact number with the installed best
     * weights equals the best scheduled estimate */
    ck_assert_double_eq_tol(final, best, 1e-9);
    ck_assert(se > 0 && isfinite(se));
    /* and it is what the solver gives for those weights */
    stochflow_solver *s;
    ck_assert_ok(stochflow_trainer_solver(&s, tr));
    float logp[40];
    ck_assert_ok(stochflow_solver_log_prob(logp, NULL, s, m, vdata, 40, 1.0));
    double mean = 0;
    for (int i = 0; i < 40; ++i) mean -= logp[i] / 40.0;
    ck_assert_double_eq_tol(mean, final, 1e-6);
    stochflow_trainer_free(tr);
    stochflow_model_free(m);
}
END_TEST

/* With EMA on, the validation evaluates the EMA weights: the best kept and installed are
 * those, into the EMA copy; the live weights stay the last step's. */
START_TEST(best_ema_weights_are_installed) {
    make_data();
    /* validation rows 1.6 times wider than the data: their NLL is best early on */
    float wide[40 * DIM];
    for (int i = 0; i < 40 * DIM; ++i) wide[i] = 1.6f * vdata[i];
    stochflow_model *m = small_model(1);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-2));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.8));
    stochflow_trainer *tr = small_trainer(16, 60);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 5));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_SUBSET, 1000));
    ck_assert_ok(stochflow_trainer_fit(tr, m, data, NROWS, wide, 40));
    double best, best_step, final;
    ck_assert_ok(stochflow_trainer_stat(&best, tr, STOCHFLOW_TRAINER_STAT_BEST_NLL));
    ck_assert_ok(stochflow_trainer_stat(&best_step, tr, STOCHFLOW_TRAINER_STAT_BEST_STEP));
    ck_assert_ok(stochflow_trainer_stat(&final, tr, STOCHFLOW_TRAINER_STAT_FINAL_NLL));
    ck_assert(best_step < 60); /* the best is not the last, so installing it shows */
    ck_assert_double_eq_tol(final, best, 1e-9);
    stochflow_solver *s;
    ck_assert_ok(stochflow_trainer_solver(&s, tr));
    float logp[40];
    double ema_nll = 0, live_nll = 0;
    ck_assert_ok(stochflow_solver_log_prob(logp, NULL, s, m, wide, 40, 1.0));
    for (int i = 0; i < 40; ++i) ema_nll -= logp[i] / 40.0;
    ck_assert_double_eq_tol(ema_nll, best, 1e-6);
    /* the live weights were not replaced: they are the last step's, not the best EMA */
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, 2));
    ck_assert_ok(stochflow_solver_log_prob(logp, NULL, s, m, wide, 40, 1.0));
    for (int i = 0; i < 40; ++i) live_nll -= logp[i] / 40.0;
    ck_assert(fabs(live_nll - best) > 1e-4);
    stochflow_trainer_free(tr);
    stochflow_model_free(m);
}
END_TEST

/* The kept best belongs to the weights that were evaluated: after switching between the
 * EMA and the live weights, a continued fit restarts the tracking instead of installing
 * an EMA best into the live weights; the state records which weights it holds. */
START_TEST(best_of_other_weights_is_not_installed) {
    make_data();
    stochflow_model *m = small_model(1);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.8));
    stochflow_trainer *tr = small_trainer(16, 40);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 5));
    ck_assert_ok(stochflow_trainer_set_progress(tr, on_progress, NULL));
    cancel_at = 20;
    ck_assert_status(stochflow_trainer_fit(tr, m, data, NROWS, vdata, 40), STOCHFLOW_E_CANCELLED);
    cancel_at = 0;
    /* the state says "EMA weights" (flags bit 1) and saves back to its own bytes */
    size_t n, n2;
    ck_assert_ok(stochflow_trainer_state_size(&n, tr));
    unsigned char *st = malloc(n), *st2 = malloc(n);
    ck_assert_ok(stochflow_trainer_save_state(&n, tr, st, n));
    ck_assert_uint_eq(st[8], 3);
    stochflow_trainer *tr2 = small_trainer(16, 40);
    ck_assert_ok(stochflow_trainer_load_state(tr2, st, n));
    ck_assert_ok(stochflow_trainer_save_state(&n2, tr2, st2, n));
    ck_assert(n2 == n && memcmp(st, st2, n) == 0);
    /* now the live weights are evaluated: a fit of zero steps leaves them as they are */
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, 2));
    size_t np = stochflow_model_num_params(m);
    float *before = malloc(np * sizeof(float)), *after = malloc(np * sizeof(float));
    params_of(before, m);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_STEPS, 20));
    ck_assert_ok(stochflow_trainer_fit(tr, m, data, NROWS, vdata, 40));
    params_of(after, m);
    ck_assert(memcmp(before, after, np * sizeof(float)) == 0);
    double bs;
    ck_assert_ok(stochflow_trainer_stat(&bs, tr, STOCHFLOW_TRAINER_STAT_BEST_STEP));
    ck_assert_double_eq(bs, 0); /* no best of the live weights yet */
    free(before);
    free(after);
    free(st);
    free(st2);
    stochflow_trainer_free(tr2);
    stochflow_trainer_free(tr);
    stochflow_model_free(m);
}
END_TEST

static double seen_se;
static int record_se(void *user, uint64_t step, double loss, double val, double se) {
    (void)user;
    (void)step;
    (void)loss;
    if (!isnan(val)) seen_se = se;
    return 0;
}

START_TEST(patience_subset_and_time) {
    make_data();
    stochflow_model *m = small_model(1);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-12)); /* no progress */
    stochflow_trainer *tr = small_trainer(16, 1000);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 2));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_PATIENCE, 3));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MIN_DELTA, 0.5));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_SUBSET, 10));
    ck_assert_ok(stochflow_trainer_set_progress(tr, record_se, NULL));
    ck_assert_ok(stochflow_trainer_fit(tr, m, data, NROWS, vdata, 40));
    double v;
    ck_assert_ok(stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_STOP));
    ck_assert_double_eq(v, STOCHFLOW_TRAINER_STOP_PATIENCE);
    ck_assert_ok(stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_STEPS));
    ck_assert_double_eq(v, 8); /* evaluations at 2 (best), 4, 6, 8 */
    ck_assert(seen_se > 0 && isfinite(seen_se)); /* a strict subset has an uncertainty */
    /* a zero wall-clock budget stops before the first step */
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_SECONDS, 1e-9));
    uint64_t before = stochflow_model_step(m);
    ck_assert_ok(stochflow_trainer_fit(tr, m, data, NROWS, vdata, 40));
    ck_assert_ok(stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_STOP));
    ck_assert_double_eq(v, STOCHFLOW_TRAINER_STOP_TIME);
    ck_assert_uint_eq(stochflow_model_step(m), before);
    stochflow_trainer_free(tr);
    stochflow_model_free(m);
}
END_TEST

START_TEST(failures_change_nothing) {
    make_data();
    stochflow_model *m = small_model(1);
    stochflow_trainer *tr = small_trainer(16, 10);
    size_t np = stochflow_model_num_params(m);
    float *p0 = malloc(np * sizeof(float)), *p1 = malloc(np * sizeof(float));
    params_of(p0, m);
    double horizon0;
    ck_assert_ok(stochflow_model_get_param(&horizon0, m, STOCHFLOW_PARAM_LR_TOTAL_STEPS));
    /* both a validation matrix and a fraction */
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_FRACTION, 0.5));
    ck_assert_status(stochflow_trainer_fit(tr, m, data, NROWS, vdata, 40), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_FRACTION, 0));
    /* a NaN in the data names the cell */
    float bad[NROWS * DIM];
    memcpy(bad, data, sizeof bad);
    bad[7] = NAN;
    ck_assert_status(stochflow_trainer_fit(tr, m, bad, NROWS, NULL, 0), STOCHFLOW_E_NONFINITE);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "row 4, column 2"));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.99));
    /* out of memory at each allocation of the fit */
    for (uint64_t k = 1; k <= 8; ++k) {
        stochflow__alloc_fail_at(k);
        int rc = stochflow_trainer_fit(tr, m, data, NROWS, NULL, 0);
        stochflow__alloc_fail_at(0);
        ck_assert_int_eq(rc, STOCHFLOW_E_NOMEM);
    }
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0));
    ck_assert_status(stochflow_trainer_fit(tr, m, NULL, NROWS, NULL, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_trainer_fit(tr, m, data, NROWS, NULL, 3), STOCHFLOW_E_INVALID);
    ck_assert_uint_eq(stochflow_model_step(m), 0);
    params_of(p1, m);
    ck_assert_int_eq(memcmp(p0, p1, np * sizeof(float)), 0);
    double horizon1;
    ck_assert_ok(stochflow_model_get_param(&horizon1, m, STOCHFLOW_PARAM_LR_TOTAL_STEPS));
    ck_assert_double_eq(horizon0, horizon1);
    /* keyed parameters: bounds, unknown keys, 0 restores the default */
    double lo, hi, def, v;
    ck_assert_ok(stochflow_trainer_param_bounds(&lo, &hi, &def, STOCHFLOW_TRAINER_BATCH_SIZE));
    ck_assert_double_eq(def, 256);
    ck_assert_status(stochflow_trainer_set_param(tr, 599, 1), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_BATCH_SIZE, 1.5),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_FRACTION, 0.95),
                     STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_BATCH_SIZE, 0));
    ck_assert_ok(stochflow_trainer_get_param(&v, tr, STOCHFLOW_TRAINER_BATCH_SIZE));
    ck_assert_double_eq(v, 256);
    ck_assert_status(stochflow_trainer_stat(&v, tr, 600), STOCHFLOW_E_UNSUPPORTED);
    stochflow_trainer_free(NULL);
    free(p0);
    free(p1);
    stochflow_trainer_free(tr);
    stochflow_model_free(m);
}
END_TEST

/* The scheduled estimate on a random subset is unbiased for the whole validation set's
 * mean NLL and its reported standard error is calibrated: over many split seeds (a
 * fixed model: learning rate 1e-12), the subset estimates average to the exact value
 * within 4 standard errors of that average, and their spread matches the reported
 * standard error within a factor of 1.5. */
static double last_val, last_se;
static int record_eval(void *user, uint64_t step, double loss, double val, double se) {
    (void)user;
    (void)step;
    (void)loss;
    if (!isnan(val)) {
        last_val = val;
        last_se = se;
    }
    return 0;
}

START_TEST(subset_estimate_is_unbiased) {
    make_data();
    enum { SEEDS = 60 };
    double est[SEEDS], se_sum = 0, mean = 0, exact = 0;
    for (int k = 0; k < SEEDS; ++k) {
        stochflow_model *m = small_model(1);
        ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-12));
        stochflow_trainer *tr = small_trainer(16, 1);
        ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 1));
        ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_SUBSET, 8));
        ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_KEEP_BEST, 2));
        ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_SEED, 1000 + k));
        ck_assert_ok(stochflow_trainer_set_progress(tr, record_eval, NULL));
        ck_assert_ok(stochflow_trainer_fit(tr, m, data, NROWS, vdata, 40));
        double final;
        ck_assert_ok(stochflow_trainer_stat(&final, tr, STOCHFLOW_TRAINER_STAT_FINAL_NLL));
        if (k == 0) exact = final;
        ck_assert_double_eq_tol(final, exact, 1e-4); /* the same model every time */
        est[k] = last_val;
        se_sum += last_se;
        mean += last_val / SEEDS;
        stochflow_trainer_free(tr);
        stochflow_model_free(m);
    }
    double var = 0;
    for (int k = 0; k < SEEDS; ++k) var += (est[k] - mean) * (est[k] - mean) / (SEEDS - 1);
    double sd = sqrt(var), se_mean = se_sum / SEEDS;
    ck_assert_msg(fabs(mean - exact) < 4 * sd / sqrt(SEEDS),
                  "subset mean %g vs exact %g (sd %g)", mean, exact, sd);
    ck_assert_msg(se_mean > sd / 1.5 && se_mean < sd * 1.5,
                  "reported standard error %g vs spread %g", se_mean, sd);
}
END_TEST

/* Early stopping resumes too: cancelled at step 17, model checkpoint + trainer state
 * saved, both loaded into new handles: the resumed fit stops at the same step, by
 * patience, and installs the same best weights as the uninterrupted fit. */
START_TEST(early_stopping_state_resumes) {
    make_data();
    stochflow_model *a = small_model(1), *c = small_model(1);
    ck_assert_ok(stochflow_model_set_param(a, STOCHFLOW_PARAM_LR, 3e-2));
    ck_assert_ok(stochflow_model_set_param(c, STOCHFLOW_PARAM_LR, 3e-2));
    stochflow_trainer *ta = small_trainer(16, 400), *tc = small_trainer(16, 400);
    stochflow_trainer *all[2] = {ta, tc};
    for (int i = 0; i < 2; ++i) {
        ck_assert_ok(stochflow_trainer_set_param(all[i], STOCHFLOW_TRAINER_EVAL_EVERY, 3));
        ck_assert_ok(stochflow_trainer_set_param(all[i], STOCHFLOW_TRAINER_PATIENCE, 4));
        ck_assert_ok(stochflow_trainer_set_param(all[i], STOCHFLOW_TRAINER_VAL_SUBSET, 16));
    }
    size_t sz, wr;
    ck_assert_status(stochflow_trainer_state_size(&sz, ta), STOCHFLOW_E_INVALID); /* no fit */
    ck_assert_ok(stochflow_trainer_fit(ta, a, data, NROWS, vdata, 40));
    double stop, steps_a, best_a;
    ck_assert_ok(stochflow_trainer_stat(&stop, ta, STOCHFLOW_TRAINER_STAT_STOP));
    ck_assert_double_eq(stop, STOCHFLOW_TRAINER_STOP_PATIENCE);
    steps_a = (double)stochflow_model_step(a);
    ck_assert_ok(stochflow_trainer_stat(&best_a, ta, STOCHFLOW_TRAINER_STAT_BEST_STEP));
    ck_assert(best_a < steps_a && steps_a > 17);
    cancel_at = 17;
    ck_assert_ok(stochflow_trainer_set_progress(tc, on_progress, NULL));
    ck_assert_status(stochflow_trainer_fit(tc, c, data, NROWS, vdata, 40),
                     STOCHFLOW_E_CANCELLED);
    cancel_at = 0;
    ck_assert_ok(stochflow_trainer_state_size(&sz, tc));
    unsigned char *st = malloc(sz);
    ck_assert_ok(stochflow_trainer_save_state(&wr, tc, st, sz));
    ck_assert_uint_eq(wr, sz);
    size_t msz, mwr;
    ck_assert_ok(stochflow_model_serialized_size(&msz, c));
    void *mb = malloc(msz);
    ck_assert_ok(stochflow_model_save_buffer(&mwr, mb, msz, c));
    stochflow_model_free(c);
    stochflow_trainer_free(tc);
    ck_assert_ok(stochflow_model_load_buffer(&c, mb, mwr));
    tc = small_trainer(16, 400);
    ck_assert_ok(stochflow_trainer_set_param(tc, STOCHFLOW_TRAINER_EVAL_EVERY, 3));
    ck_assert_ok(stochflow_trainer_set_param(tc, STOCHFLOW_TRAINER_PATIENCE, 4));
    ck_assert_ok(stochflow_trainer_set_param(tc, STOCHFLOW_TRAINER_VAL_SUBSET, 16));
    /* corrupted states are refused and change nothing */
    st[60] ^= 1;
    ck_assert_status(stochflow_trainer_load_state(tc, st, sz), STOCHFLOW_E_FORMAT);
    st[60] ^= 1;
    ck_assert_status(stochflow_trainer_load_state(tc, st, sz - 1), STOCHFLOW_E_FORMAT);
    ck_assert_status(stochflow_trainer_state_size(&wr, tc), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_trainer_load_state(tc, st, sz));
    ck_assert_ok(stochflow_trainer_fit(tc, c, data, NROWS, vdata, 40));
    double best_c;
    ck_assert_ok(stochflow_trainer_stat(&stop, tc, STOCHFLOW_TRAINER_STAT_STOP));
    ck_assert_double_eq(stop, STOCHFLOW_TRAINER_STOP_PATIENCE);
    ck_assert_double_eq((double)stochflow_model_step(c), steps_a);
    ck_assert_ok(stochflow_trainer_stat(&best_c, tc, STOCHFLOW_TRAINER_STAT_BEST_STEP));
    ck_assert_double_eq(best_c, best_a);
    size_t np = stochflow_model_num_params(a);
    float *pa = malloc(np * sizeof(float)), *pc = malloc(np * sizeof(float));
    params_of(pa, a);
    params_of(pc, c);
    ck_assert_int_eq(memcmp(pa, pc, np * sizeof(float)), 0);
    /* without the state the resumed run would restart the patience count */
    ck_assert_ok(stochflow_trainer_load_state(tc, NULL, 0));
    ck_assert_status(stochflow_trainer_state_size(&wr, tc), STOCHFLOW_E_INVALID);
    free(pa);
    free(pc);
    free(st);
    free(mb);
    stochflow_trainer_free(ta);
    stochflow_trainer_free(tc);
    stochflow_model_free(a);
    stochflow_model_free(c);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, batches_follow_the_documented_keying);
    tcase_add_test(tc, threads_and_resume_are_bitwise);
    tcase_add_test(tc, best_weights_and_exact_final);
    tcase_add_test(tc, best_ema_weights_are_installed);
    tcase_add_test(tc, best_of_other_weights_is_not_installed);
    tcase_add_test(tc, patience_subset_and_time);
    tcase_add_test(tc, subset_estimate_is_unbiased);
    tcase_add_test(tc, early_stopping_state_resumes);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, failures_change_nothing);
    suite_add_tcase(s, te);
    return s;
}
