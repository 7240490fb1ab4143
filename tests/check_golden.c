/* check_golden.c - the C side of the cross-language golden conformance test.
 *
 * One fixed scenario (below, and in doc/bindings.md) is run through the public API and
 * every number it produces is compared bit for bit with tests/data/golden.txt. The Python
 * (bindings/python/tests/test_golden.py) and Rust (bindings/rust/stochflow/tests/golden.rs)
 * bindings run the same scenario against the same file, so passing all three means C,
 * Python and Rust produce identical bytes.
 *
 * The record depends on the floating-point kernels actually executed (BLIS picks its
 * kernels per CPU at run time), so it is tied to a machine type, like any bitwise golden
 * file. After an intended numerical change, or on a different CPU, regenerate it with
 *     STOCHFLOW_GOLDEN_WRITE=1 meson test -C <builddir> golden
 * and check that the python and rust tests then pass against the new file.
 *
 * File format: '#' comment lines, then one line per quantity:
 *     <name> <f32|f64> <count> <hex bit pattern> ...
 * where each value is written as its IEEE-754 bit pattern (8 or 16 hex digits).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- the scenario ------------------------------------------------------------------ */

#define G_DIM 2
#define G_STEPS 25   /* training steps */
#define G_BATCH 64   /* training batch */
#define G_NS 8       /* samples drawn */
#define G_NP 8       /* points whose log-density is evaluated */
#define G_RES_STEPS 10 /* training steps of the residual MLP */
#define G_MAX_ITEMS 16

typedef struct {
    char name[32];
    int is_f64;
    size_t count;
    uint64_t *bits;
} item;

typedef struct {
    item items[G_MAX_ITEMS];
    size_t n;
} record;

static void rec_free(record *r) {
    for (size_t i = 0; i < r->n; ++i) free(r->items[i].bits);
    r->n = 0;
}

static void rec_add_f32(record *r, const char *name, const float *v, size_t count) {
    ck_assert_uint_lt(r->n, G_MAX_ITEMS);
    item *it = &r->items[r->n++];
    snprintf(it->name, sizeof it->name, "%s", name);
    it->is_f64 = 0;
    it->count = count;
    it->bits = calloc(count, sizeof *it->bits);
    ck_assert_ptr_nonnull(it->bits);
    for (size_t i = 0; i < count; ++i) {
        uint32_t b;
        memcpy(&b, &v[i], sizeof b);
        it->bits[i] = b;
    }
}

static void rec_add_f64(record *r, const char *name, const double *v, size_t count) {
    ck_assert_uint_lt(r->n, G_MAX_ITEMS);
    item *it = &r->items[r->n++];
    snprintf(it->name, sizeof it->name, "%s", name);
    it->is_f64 = 1;
    it->count = count;
    it->bits = calloc(count, sizeof *it->bits);
    ck_assert_ptr_nonnull(it->bits);
    for (size_t i = 0; i < count; ++i) memcpy(&it->bits[i], &v[i], sizeof it->bits[i]);
}

/* The residual MLP of parts 5 to 7: width 16, 2 blocks, the given linear experts, seed 7,
 * lr 1e-2, 1 thread. */
static stochflow_model *resmlp_model(size_t experts) {
    stochflow_config *cfg = NULL;
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, G_DIM));
    ck_assert_ok(stochflow_config_set_resmlp(cfg, 16, 2));
    ck_assert_ok(stochflow_config_set_resmlp_experts(cfg, experts));
    ck_assert_ok(stochflow_config_set_seed(cfg, 7));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-2));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1));
    return m;
}

/* 10 training steps of m on moons batches (seed 11, stream k at step k): the losses and
 * the parameters recorded as PREFIX_losses and PREFIX_params. */
static void train_moons(record *r, stochflow_model *m, const char *prefix) {
    float batch[G_BATCH * G_DIM], *params;
    double losses[G_RES_STEPS];
    size_t count;
    char name[32];
    for (int k = 0; k < G_RES_STEPS; ++k) {
        ck_assert_ok(stochflow_toy_sample(batch, "moons", G_BATCH, 11, (uint64_t)k));
        ck_assert_ok(stochflow_model_train_step(&losses[k], m, batch, G_BATCH, NULL, NULL));
    }
    snprintf(name, sizeof name, "%s_losses", prefix);
    rec_add_f64(r, name, losses, G_RES_STEPS);
    ck_assert_ok(stochflow_model_parameters(&params, &count, m));
    snprintf(name, sizeof name, "%s_params", prefix);
    rec_add_f32(r, name, params, count);
}

/* Run the scenario. Keep it identical to test_golden.py and golden.rs. */
static void run_scenario(record *r) {
    stochflow_config *cfg = NULL;
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, G_DIM));
    const size_t widths[] = {32, 32};
    ck_assert_ok(stochflow_config_set_hidden(cfg, 2, widths));
    ck_assert_ok(stochflow_config_set_activation(cfg, STOCHFLOW_ACT_SILU));
    ck_assert_ok(stochflow_config_set_interpolant(cfg, STOCHFLOW_INTERP_TRIG));
    ck_assert_ok(stochflow_config_set_seed(cfg, 7));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-2));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1));

    /* 1. training with library-drawn x0 and t */
    float batch[G_BATCH * G_DIM];
    double losses[G_STEPS];
    for (int k = 0; k < G_STEPS; ++k) {
        ck_assert_ok(stochflow_toy_sample(batch, "moons", G_BATCH, 11, (uint64_t)k));
        ck_assert_ok(stochflow_model_train_step(&losses[k], m, batch, G_BATCH, NULL, NULL));
    }
    rec_add_f64(r, "losses", losses, G_STEPS);
    float *params = NULL;
    size_t count = 0;
    ck_assert_ok(stochflow_model_parameters(&params, &count, m));
    rec_add_f32(r, "params", params, count);

    /* 2. velocity at fixed points */
    float pts[G_NP * G_DIM], v[G_NP * G_DIM];
    ck_assert_ok(stochflow_toy_sample(pts, "moons", G_NP, 12, 0));
    ck_assert_ok(stochflow_model_velocity(v, m, 0.5, pts, G_NP));
    rec_add_f32(r, "velocity", v, G_NP * G_DIM);

    /* 3. samples and their log-densities, fixed-step RK4 */
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 16));
    float xs[G_NS * G_DIM], lps[G_NS];
    ck_assert_ok(stochflow_solver_sample(xs, lps, s, m, G_NS, 5));
    rec_add_f32(r, "samples", xs, G_NS * G_DIM);
    rec_add_f32(r, "sample_logp", lps, G_NS);

    /* 4. log-densities of fixed points: exact trace, then Hutchinson (3 probes, seed 9) */
    float lp[G_NP], se[G_NP];
    ck_assert_ok(stochflow_solver_log_prob(lp, NULL, s, m, pts, G_NP, 1.0));
    rec_add_f32(r, "logp_exact", lp, G_NP);
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_HUTCHINSON));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, 3));
    ck_assert_ok(stochflow_solver_set_seed(s, 9));
    ck_assert_ok(stochflow_solver_log_prob(lp, se, s, m, pts, G_NP, 1.0));
    rec_add_f32(r, "logp_hutchinson", lp, G_NP);
    rec_add_f32(r, "se_hutchinson", se, G_NP);

    /* 5. the residual MLP (width 16, 2 blocks, seed 7): 10 steps of training, the
     * parameters, and the exact log-density of the same points (RK4, 16 steps) */
    stochflow_model *rm = resmlp_model(0);
    train_moons(r, rm, "res");
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_EXACT));
    ck_assert_ok(stochflow_solver_log_prob(lp, NULL, s, rm, pts, G_NP, 1.0));
    rec_add_f32(r, "res_logp_exact", lp, G_NP);

    /* 6. the same residual MLP trained on the batch-posterior target: 10 steps, the
     * losses and the parameters */
    stochflow_model *bm = resmlp_model(0);
    ck_assert_ok(stochflow_model_set_param(bm, STOCHFLOW_PARAM_TRAIN_TARGET,
                                           STOCHFLOW_TRAIN_TARGET_BATCH));
    train_moons(r, bm, "bt");

    /* 7. the residual MLP with 3 linear experts: 10 steps, the losses, the parameters,
     * the exact log-density of the same points */
    stochflow_model *em = resmlp_model(3);
    train_moons(r, em, "ex");
    ck_assert_ok(stochflow_solver_log_prob(lp, NULL, s, em, pts, G_NP, 1.0));
    rec_add_f32(r, "ex_logp_exact", lp, G_NP);

    stochflow_solver_free(s);
    stochflow_model_free(em);
    stochflow_model_free(bm);
    stochflow_model_free(rm);
    stochflow_model_free(m);
}

/* ---- the file ---------------------------------------------------------------------- */

static const char *golden_path(char *buf, size_t cap) {
    const char *dir = getenv("STOCHFLOW_TEST_DATA");
    snprintf(buf, cap, "%s/golden.txt", dir ? dir : "tests/data");
    return buf;
}

static void write_golden(const record *r, const char *path) {
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fprintf(f, "# libstochflow golden conformance record; see tests/check_golden.c\n"
               "# and doc/bindings.md. Values are IEEE-754 bit patterns in hex.\n"
               "# Regenerate: STOCHFLOW_GOLDEN_WRITE=1 meson test -C <builddir> golden\n"
               "# library %s\n",
            stochflow_version_string());
    for (size_t i = 0; i < r->n; ++i) {
        const item *it = &r->items[i];
        fprintf(f, "%s %s %zu", it->name, it->is_f64 ? "f64" : "f32", it->count);
        for (size_t j = 0; j < it->count; ++j) {
            if (it->is_f64)
                fprintf(f, " %016" PRIx64, it->bits[j]);
            else
                fprintf(f, " %08" PRIx32, (uint32_t)it->bits[j]);
        }
        fputc('\n', f);
    }
    ck_assert_int_eq(fclose(f), 0);
}

static double as_value(const item *it, uint64_t bits) {
    if (it->is_f64) {
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    uint32_t b = (uint32_t)bits;
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

static void compare_golden(const record *r, const char *path) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL,
                  "cannot read %s; generate it with STOCHFLOW_GOLDEN_WRITE=1 meson test golden",
                  path);
    size_t matched = 0;
    for (;;) {
        int c = fgetc(f);
        if (c == EOF) break;
        if (c == '#' || c == '\n') {
            while (c != '\n' && c != EOF) c = fgetc(f);
            continue;
        }
        ungetc(c, f);
        char name[64], type[8];
        size_t count;
        ck_assert_int_eq(fscanf(f, "%63s %7s %zu", name, type, &count), 3);
        const item *it = NULL;
        for (size_t i = 0; i < r->n; ++i)
            if (strcmp(r->items[i].name, name) == 0) it = &r->items[i];
        ck_assert_msg(it != NULL, "golden file has an unknown quantity '%s'", name);
        ck_assert_msg(it->count == count, "%s: golden has %zu values, computed %zu", name, count,
                      it->count);
        ck_assert_str_eq(type, it->is_f64 ? "f64" : "f32");
        for (size_t j = 0; j < count; ++j) {
            uint64_t want;
            ck_assert_int_eq(fscanf(f, "%" SCNx64, &want), 1);
            ck_assert_msg(want == it->bits[j],
                          "%s[%zu]: computed %.9g (bits %" PRIx64 "), golden %.9g (bits %" PRIx64
                          ")",
                          name, j, as_value(it, it->bits[j]), it->bits[j], as_value(it, want),
                          want);
        }
        ++matched;
    }
    fclose(f);
    ck_assert_uint_eq(matched, r->n);
}

START_TEST(test_golden_record) {
    record r = {.n = 0};
    run_scenario(&r);
    char buf[4096];
    const char *path = golden_path(buf, sizeof buf);
    const char *w = getenv("STOCHFLOW_GOLDEN_WRITE");
    if (w && strcmp(w, "1") == 0) write_golden(&r, path);
    compare_golden(&r, path);
    rec_free(&r);
}
END_TEST

/* The scenario is deterministic within one process too (same bits on a second run). */
START_TEST(test_golden_repeatable) {
    record a = {.n = 0}, b = {.n = 0};
    run_scenario(&a);
    run_scenario(&b);
    ck_assert_uint_eq(a.n, b.n);
    for (size_t i = 0; i < a.n; ++i) {
        ck_assert_uint_eq(a.items[i].count, b.items[i].count);
        ck_assert_msg(memcmp(a.items[i].bits, b.items[i].bits,
                             a.items[i].count * sizeof *a.items[i].bits) == 0,
                      "%s differs between two runs", a.items[i].name);
    }
    rec_free(&a);
    rec_free(&b);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_golden_repeatable);
    tcase_add_test(tc, test_golden_record);
    suite_add_tcase(s, tc);
    return s;
}
