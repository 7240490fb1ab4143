/* check_error.c - status strings, thread-local messages, versions. */
#include <string.h>

#include "harness.h"
#include "internal.h"

START_TEST(status_strings) {
    ck_assert_str_eq(stochflow_status_string(STOCHFLOW_OK), "ok");
    for (int s = -11; s <= 0; ++s) {
        const char *msg = stochflow_status_string(s);
        ck_assert_ptr_nonnull(msg);
        ck_assert_str_ne(msg, "unknown status");
    }
    ck_assert_str_eq(stochflow_status_string(-999), "unknown status");
    ck_assert_str_eq(stochflow_status_string(5), "unknown status");
}
END_TEST

START_TEST(message_set) {
    int rc = stochflow__error(STOCHFLOW_E_INVALID, "bad %s %d", "thing", 7);
    ck_assert_int_eq(rc, STOCHFLOW_E_INVALID);
    ck_assert_str_eq(stochflow_last_error_message(), "bad thing 7");
}
END_TEST

START_TEST(finite_check) {
    float x[4] = {1.0f, 2.0f, NAN, INFINITY};
    ck_assert_int_eq(stochflow__check_finite(x, 2, "x"), 0);
    ck_assert_int_eq(stochflow__check_finite(x, 4, "data"), STOCHFLOW_E_NONFINITE);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "index 2"));
    ck_assert_int_eq(stochflow__check_finite(x + 3, 1, "data"), STOCHFLOW_E_NONFINITE);
}
END_TEST

START_TEST(version) {
    ck_assert_str_eq(stochflow_version_string(), STOCHFLOW_VERSION_STRING);
    ck_assert_int_eq(stochflow_version_number(), STOCHFLOW_VERSION_NUMBER);
}
END_TEST

START_TEST(alloc_overflow) {
    ck_assert_ptr_null(stochflow__alloc_array(SIZE_MAX / 2, 4));
    ck_assert_ptr_null(stochflow__calloc(SIZE_MAX / 8, 16));
    stochflow__alloc_fail_at(2);
    void *a = stochflow__malloc(8);
    void *b = stochflow__malloc(8);
    void *c = stochflow__malloc(8);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(stochflow__alloc_count(), 3);
    stochflow__alloc_fail_at(0);
    stochflow__free(a);
    stochflow__free(c);
    stochflow__free(NULL);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_strings);
    tcase_add_test(tc, message_set);
    tcase_add_test(tc, finite_check);
    tcase_add_test(tc, version);
    tcase_add_test(tc, alloc_overflow);
    suite_add_tcase(s, tc);
    return s;
}
