/* check_config.c - getters report errors one way: value getters (configuration and
 * model) give 0 (never a valid value) for a NULL handle and set the thread's message;
 * status getters return STOCHFLOW_E_INVALID with a message. */
#include <string.h>

#include "harness.h"

static void clear_message(void) {
    /* a successful lookup leaves the message alone, so provoke a known one first */
    int key;
    ck_assert_int_lt(stochflow_param_key(&key, "-"), 0);
    ck_assert_ptr_null(strstr(stochflow_last_error_message(), "config is NULL"));
}

#define ASSERT_NULL_REPORTED(call, fn)                                                   \
    do {                                                                                 \
        clear_message();                                                                 \
        ck_assert(!(call));                                                              \
        ck_assert_msg(strstr(stochflow_last_error_message(), fn ": config is NULL") != NULL, \
                      "%s: message \"%s\"", fn, stochflow_last_error_message());         \
    } while (0)

START_TEST(value_getters_on_null) {
    ASSERT_NULL_REPORTED(stochflow_config_dim(NULL), "config_dim");
    ASSERT_NULL_REPORTED(stochflow_config_activation(NULL), "config_activation");
    ASSERT_NULL_REPORTED(stochflow_config_interpolant(NULL), "config_interpolant");
    ASSERT_NULL_REPORTED(stochflow_config_seed(NULL), "config_seed");
    ASSERT_NULL_REPORTED(stochflow_config_arch(NULL), "config_arch");
    /* the model's value getters follow the same rule */
    clear_message();
    ck_assert_uint_eq(stochflow_model_dim(NULL), 0);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "model_dim: model is NULL"));
    clear_message();
    ck_assert_uint_eq(stochflow_model_num_params(NULL), 0);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "model_num_params: model"));
    clear_message();
    ck_assert_uint_eq(stochflow_model_step(NULL), 0);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "model_step: model is NULL"));
}
END_TEST

START_TEST(value_getters_on_a_config) {
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_config_new(&c, 3));
    ck_assert_ok(stochflow_config_set_seed(c, 9));
    ck_assert_uint_eq(stochflow_config_dim(c), 3);
    size_t nh = 0, w[2] = {7, 7};
    ck_assert_ok(stochflow_config_hidden(&nh, NULL, 0, c));
    ck_assert_uint_eq(nh, 3);
    ck_assert_ok(stochflow_config_hidden(&nh, w, 2, c)); /* at most cap widths */
    ck_assert(nh == 3 && w[0] == 256 && w[1] == 256);
    ck_assert_ok(stochflow_config_hidden(NULL, w, 1, c));
    ck_assert_int_eq(stochflow_config_activation(c), STOCHFLOW_ACT_SILU);
    size_t nf = 7;
    int kind = 0;
    ck_assert_ok(stochflow_config_time_embedding(&kind, &nf, c));
    ck_assert_int_eq(kind, STOCHFLOW_TIME_RAW);
    ck_assert_uint_eq(nf, 0);
    ck_assert_ok(stochflow_config_time_embedding(NULL, NULL, c));
    ck_assert_int_eq(stochflow_config_interpolant(c), STOCHFLOW_INTERP_TRIG);
    ck_assert_uint_eq(stochflow_config_seed(c), 9);
    ck_assert_int_eq(stochflow_config_arch(c), STOCHFLOW_ARCH_MLP);
    /* status getters: INVALID with a message */
    stochflow_unet_options u;
    ck_assert_status(stochflow_config_unet(&u, c), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_unet(&u, NULL), STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "config is NULL"));
    /* status getters with out-parameters first: a NULL config is INVALID, nothing written */
    w[0] = 7;
    nh = 7;
    ck_assert_status(stochflow_config_hidden(&nh, w, 2, NULL), STOCHFLOW_E_INVALID);
    ck_assert(nh == 7 && w[0] == 7);
    ck_assert_status(stochflow_config_hidden(&nh, NULL, 2, c), STOCHFLOW_E_INVALID);
    nf = 7;
    ck_assert_status(stochflow_config_time_embedding(&kind, &nf, NULL), STOCHFLOW_E_INVALID);
    ck_assert_uint_eq(nf, 7);
    stochflow_config_free(c);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, value_getters_on_a_config);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, value_getters_on_null);
    suite_add_tcase(s, te);
    return s;
}
