/* check_interpolant.c - the schedules a(t), b(t) of x_t = a x0 + b x1: boundary values,
 * derivatives against central differences, the trig interpolant's variance
 * preservation, and caller-defined schedules (accepted, checked, and used in the loss). */
#include <string.h>

#include "harness.h"
#include "internal.h"

/* a = (1-t)^2, b = t^2 (+ derivatives): a valid custom schedule */
static void quad_schedule(void *user, double t, double out[4]) {
    (void)user;
    out[0] = (1 - t) * (1 - t);
    out[1] = t * t;
    out[2] = -2 * (1 - t);
    out[3] = 2 * t;
}

/* violates a(1) = 0 */
static void bad_schedule(void *user, double t, double out[4]) {
    (void)user;
    out[0] = 1 - 0.5 * t;
    out[1] = t;
    out[2] = -0.5;
    out[3] = 1;
}

static void check_kind(const stochflow__interp *ip) {
    double c0[4], c1[4];
    ck_assert_ok(stochflow__interp_eval(ip, 0.0, c0));
    ck_assert_ok(stochflow__interp_eval(ip, 1.0, c1));
    ck_assert_double_eq_tol(c0[0], 1.0, 1e-15);
    ck_assert_double_eq_tol(c0[1], 0.0, 1e-15);
    ck_assert_double_eq_tol(c1[0], 0.0, 1e-15);
    ck_assert_double_eq_tol(c1[1], 1.0, 1e-15);
    ck_assert_ok(stochflow__interp_check(ip));
    /* a' and b' against central differences, h = 1e-6, tolerance 1e-8 */
    for (int i = 1; i < 20; ++i) {
        double t = i / 20.0, h = 1e-6, c[4], cp[4], cm[4];
        ck_assert_ok(stochflow__interp_eval(ip, t, c));
        ck_assert_ok(stochflow__interp_eval(ip, t + h, cp));
        ck_assert_ok(stochflow__interp_eval(ip, t - h, cm));
        ck_assert_double_eq_tol(c[2], (cp[0] - cm[0]) / (2 * h), 1e-8);
        ck_assert_double_eq_tol(c[3], (cp[1] - cm[1]) / (2 * h), 1e-8);
    }
}

START_TEST(builtin_schedules) {
    stochflow__interp trig = {.kind = STOCHFLOW_INTERP_TRIG};
    stochflow__interp lin = {.kind = STOCHFLOW_INTERP_LINEAR};
    stochflow__interp quad = {.kind = STOCHFLOW_INTERP_CUSTOM, .fn = quad_schedule};
    check_kind(&trig);
    check_kind(&lin);
    check_kind(&quad);
    /* trig preserves variance: a^2 + b^2 = 1; linear: a + b = 1 */
    for (int i = 0; i <= 10; ++i) {
        double c[4];
        ck_assert_ok(stochflow__interp_eval(&trig, i / 10.0, c));
        ck_assert_double_eq_tol(c[0] * c[0] + c[1] * c[1], 1.0, 1e-14);
        ck_assert_ok(stochflow__interp_eval(&lin, i / 10.0, c));
        ck_assert_double_eq_tol(c[0] + c[1], 1.0, 1e-15);
    }
}
END_TEST

START_TEST(custom_schedules) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_config_new(&c, 2));
    ck_assert_status(stochflow_config_set_schedule(c, bad_schedule, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_schedule(c, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_interpolant(c, STOCHFLOW_INTERP_CUSTOM),
                     STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_config_set_schedule(c, quad_schedule, NULL));
    ck_assert_int_eq(stochflow_config_interpolant(c), STOCHFLOW_INTERP_CUSTOM);
    size_t w[] = {16};
    ck_assert_ok(stochflow_config_set_hidden(c, 1, w));
    ck_assert_ok(stochflow_model_new(&m, c));

    /* The custom schedule is what the loss uses: with the network output o (velocity at
     * x_t), the loss is |o|^2 - 2 (a' x0 + b' x1) . o, checked by hand for one row. */
    float x1[2] = {0.5f, -1.0f}, x0[2] = {0.25f, 0.75f}, t[1] = {0.3f}, v[2];
    double loss, cq[4];
    ck_assert_ok(stochflow_model_loss(&loss, m, x1, 1, x0, t));
    quad_schedule(NULL, (double)t[0], cq);
    float xt[2];
    for (int k = 0; k < 2; ++k) xt[k] = (float)(cq[0] * x0[k] + cq[1] * x1[k]);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, 2));
    ck_assert_ok(stochflow_model_velocity(v, m, (double)t[0], xt, 1));
    double expect = 0;
    for (int k = 0; k < 2; ++k)
        expect += (double)v[k] * v[k] - 2.0 * (cq[2] * x0[k] + cq[3] * x1[k]) * v[k];
    ck_assert_double_eq_tol(loss, expect, 1e-5 * (1 + fabs(expect)));

    /* A saved custom model loads without its callback: training then says so, and works
     * again once the schedule is attached. */
    size_t len;
    ck_assert_ok(stochflow_model_serialized_size(&len, m));
    void *buf = malloc(len);
    ck_assert_ok(stochflow_model_save_buffer(NULL, buf, len, m));
    stochflow_model *m2 = NULL;
    ck_assert_ok(stochflow_model_load_buffer(&m2, buf, len));
    ck_assert_status(stochflow_model_train_step(&loss, m2, x1, 1, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_set_schedule(m2, bad_schedule, NULL), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_model_set_schedule(m2, quad_schedule, NULL));
    ck_assert_ok(stochflow_model_train_step(&loss, m2, x1, 1, NULL, NULL));
    /* a built-in model refuses a schedule callback */
    stochflow_model *m3 = NULL;
    ck_assert_ok(stochflow_config_set_interpolant(c, STOCHFLOW_INTERP_LINEAR));
    ck_assert_ok(stochflow_model_new(&m3, c));
    ck_assert_status(stochflow_model_set_schedule(m3, quad_schedule, NULL), STOCHFLOW_E_INVALID);
    free(buf);
    stochflow_model_free(m);
    stochflow_model_free(m2);
    stochflow_model_free(m3);
    stochflow_config_free(c);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("interpolant");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, builtin_schedules);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("custom");
    tcase_add_test(te, custom_schedules);
    suite_add_tcase(s, te);
    return s;
}
