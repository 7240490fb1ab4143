/* check_params.c - the keyed-parameter table: every key has a name and back, unknown
 * names and keys are refused, and the published bounds are exactly what the setters
 * accept (lo and hi accepted, the next double outside refused, state unchanged). */
#include <math.h>
#include <string.h>

#include "harness.h"
#include "params.h"

/* 100s and 400s belong to the model, 200s and 300s to the solver. */
static int is_model_key(int key) { return key / 100 == 1 || key / 100 == 4; }

typedef struct {
    stochflow_model *m;
    stochflow_solver *s;
} handles;

static handles make_handles(void) {
    handles h = {NULL, NULL};
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_config_new(&c, 2));
    ck_assert_ok(stochflow_model_new(&h.m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_solver_new(&h.s));
    return h;
}

static void free_handles(handles h) {
    stochflow_model_free(h.m);
    stochflow_solver_free(h.s);
}

static int set(handles h, int key, double v) {
    return is_model_key(key) ? stochflow_model_set_param(h.m, key, v)
                             : stochflow_solver_set_param(h.s, key, v);
}

static double get(handles h, int key) {
    double v = NAN;
    if (is_model_key(key))
        ck_assert_ok(stochflow_model_get_param(&v, h.m, key));
    else
        ck_assert_ok(stochflow_solver_get_param(&v, h.s, key));
    return v;
}

START_TEST(name_key_round_trip) {
    const size_t n = stochflow_param_count();
    ck_assert_uint_ge(n, 30);
    for (size_t i = 0; i < n; ++i) {
        int key = stochflow_param_key_at(i);
        ck_assert_int_gt(key, 0);
        const char *name = stochflow_param_name(key);
        ck_assert_ptr_nonnull(name);
        /* short snake_case */
        ck_assert_uint_ge(strlen(name), 2);
        ck_assert_uint_le(strlen(name), 16);
        ck_assert_msg(name[0] >= 'a' && name[0] <= 'z', "name %s", name);
        for (const char *p = name; *p; ++p)
            ck_assert_msg((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_',
                          "name %s is not snake_case", name);
        int back = -1;
        ck_assert_ok(stochflow_param_key(&back, name));
        ck_assert_int_eq(back, key);
        double lo, hi, def;
        ck_assert_ok(stochflow_param_bounds(&lo, &hi, &def, key));
        ck_assert(lo <= hi);
        ck_assert(def == 0.0 || (def >= lo && def <= hi));
        /* keys and names are unique */
        for (size_t j = 0; j < i; ++j) {
            int other = stochflow_param_key_at(j);
            ck_assert_int_ne(other, key);
            ck_assert_str_ne(stochflow_param_name(other), name);
        }
    }
    ck_assert_int_eq(stochflow_param_key_at(n), 0);
    ck_assert_int_eq(stochflow_param_key_at((size_t)-1), 0);
    /* a few names the CLI and the bindings spell out */
    const struct {
        const char *name;
        int key;
    } known[] = {{"lr", STOCHFLOW_PARAM_LR},
                 {"beta1", STOCHFLOW_PARAM_BETA1},
                 {"grad_clip", STOCHFLOW_PARAM_GRAD_CLIP},
                 {"solver", STOCHFLOW_PARAM_SOLVER},
                 {"rtol", STOCHFLOW_PARAM_RTOL},
                 {"weight_decay", STOCHFLOW_PARAM_WEIGHT_DECAY},
                 {"threads", STOCHFLOW_PARAM_THREADS},
                 {"probes", STOCHFLOW_PARAM_PROBES}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; ++i) {
        int key = 0;
        ck_assert_ok(stochflow_param_key(&key, known[i].name));
        ck_assert_int_eq(key, known[i].key);
        ck_assert_str_eq(stochflow_param_name(known[i].key), known[i].name);
    }
}
END_TEST

START_TEST(unknown_names_and_keys) {
    const int bad_keys[] = {0, -1, 1, 99, 150, 199, 208, 399, 402, 1000, 100000};
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; ++i) {
        int k = bad_keys[i];
        ck_assert_ptr_null(stochflow_param_name(k));
        ck_assert_status(stochflow_param_bounds(NULL, NULL, NULL, k), STOCHFLOW_E_UNSUPPORTED);
    }
    const char *bad_names[] = {"", "LR", "lr ", "learning_rate", "beta", "stochflow_param_lr"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; ++i) {
        int key = 12345;
        ck_assert_status(stochflow_param_key(&key, bad_names[i]), STOCHFLOW_E_UNSUPPORTED);
        ck_assert_int_eq(key, 12345); /* untouched on failure */
        ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "unknown parameter name"));
    }
    int key = 0;
    ck_assert_status(stochflow_param_key(NULL, "lr"), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_param_key(&key, NULL), STOCHFLOW_E_INVALID);
    /* a key of the other handle is refused by each setter and getter */
    handles h = make_handles();
    double v;
    ck_assert_status(stochflow_model_set_param(h.m, STOCHFLOW_PARAM_RTOL, 1e-3),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_solver_set_param(h.s, STOCHFLOW_PARAM_LR, 1e-3),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_model_get_param(&v, h.m, STOCHFLOW_PARAM_STEPS),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_solver_get_param(&v, h.s, STOCHFLOW_PARAM_BETA1),
                     STOCHFLOW_E_UNSUPPORTED);
    free_handles(h);
}
END_TEST

START_TEST(bounds_match_validation) {
    handles h = make_handles();
    for (size_t i = 0; i < stochflow_param_count(); ++i) {
        const int key = stochflow_param_key_at(i);
        const char *name = stochflow_param_name(key);
        double lo, hi, def;
        ck_assert_ok(stochflow_param_bounds(&lo, &hi, &def, key));
        /* fresh handles hold the default */
        ck_assert_msg(get(h, key) == def, "%s: fresh value %g, default %g", name, get(h, key),
                      def);
        /* both ends accepted (0 is "default" and reads back as the default) */
        ck_assert_msg(set(h, key, lo) == 0, "%s: lo %g refused: %s", name, lo,
                      stochflow_last_error_message());
        ck_assert_msg(get(h, key) == (lo == 0.0 ? def : lo), "%s after lo", name);
        ck_assert_msg(set(h, key, hi) == 0, "%s: hi %g refused: %s", name, hi,
                      stochflow_last_error_message());
        ck_assert_msg(get(h, key) == hi, "%s after hi", name);
        /* the next double outside each end refused, the value unchanged */
        const double below = nextafter(lo, -INFINITY), above = nextafter(hi, INFINITY);
        ck_assert_msg(set(h, key, below) == STOCHFLOW_E_INVALID, "%s: %.17g accepted", name,
                      below);
        ck_assert_msg(set(h, key, above) == STOCHFLOW_E_INVALID, "%s: %.17g accepted", name,
                      above);
        ck_assert_msg(set(h, key, NAN) == STOCHFLOW_E_INVALID, "%s: NaN accepted", name);
        ck_assert_msg(get(h, key) == hi, "%s changed by a refused set", name);
        /* integer and enum parameters refuse fractions inside the range */
        const stochflow__param_info *p = stochflow__param_find(key);
        ck_assert_ptr_nonnull(p);
        if (p->type != STOCHFLOW__PTYPE_DOUBLE && hi > lo) {
            ck_assert_msg(set(h, key, lo + 0.5) == STOCHFLOW_E_INVALID, "%s: fraction", name);
            ck_assert(get(h, key) == hi);
        }
        /* 0 restores the default */
        ck_assert_ok(set(h, key, 0.0));
        ck_assert(get(h, key) == def);
    }
    free_handles(h);
}
END_TEST

/* The table is the only list: the model's fields and the solver's fields are disjoint
 * and every row's field is a distinct double of its owner's struct. */
START_TEST(table_fields_distinct) {
    size_t n;
    const stochflow__param_info *t = stochflow__param_table(&n);
    ck_assert_uint_eq(n, stochflow_param_count());
    for (size_t i = 0; i < n; ++i) {
        ck_assert_int_eq(t[i].owner == STOCHFLOW__OWNER_MODEL, is_model_key(t[i].key));
        for (size_t j = 0; j < i; ++j)
            ck_assert(t[i].owner != t[j].owner || t[i].offset != t[j].offset);
    }
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("params");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, name_key_round_trip);
    tcase_add_test(tc, bounds_match_validation);
    tcase_add_test(tc, table_fields_distinct);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, unknown_names_and_keys);
    suite_add_tcase(s, te);
    return s;
}
