/* check_rng.c - Philox known-answer vectors, statistics, counter independence. */
#include <string.h>

#include "harness.h"
#include "internal.h"

/* Known-answer test vectors from the Random123 distribution (kat_vectors,
 * philox4x32_10): counter/key all zeros, and all ones. */
START_TEST(philox_kat) {
    uint32_t out[4];
    uint32_t zero[4] = {0, 0, 0, 0};
    stochflow__philox(out, zero, 0);
    ck_assert_uint_eq(out[0], 0x6627e8d5u);
    ck_assert_uint_eq(out[1], 0xe169c58du);
    ck_assert_uint_eq(out[2], 0xbc57ac4cu);
    ck_assert_uint_eq(out[3], 0x9b00dbd8u);
    uint32_t ones[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    stochflow__philox(out, ones, 0xffffffffffffffffull);
    ck_assert_uint_eq(out[0], 0x408f276du);
    ck_assert_uint_eq(out[1], 0x41c83b0eu);
    ck_assert_uint_eq(out[2], 0xa20bc7c6u);
    ck_assert_uint_eq(out[3], 0x6d5451fdu);
}
END_TEST

START_TEST(normal_moments) {
    enum { N = 200000 };
    float *x = malloc(N * sizeof *x);
    ck_assert_ok(stochflow_random_normal(x, N, 7, 3));
    double s1 = 0, s2 = 0, s4 = 0;
    for (int i = 0; i < N; ++i) {
        s1 += x[i];
        s2 += (double)x[i] * x[i];
        s4 += (double)x[i] * x[i] * x[i] * x[i];
    }
    double mean = s1 / N, var = s2 / N - mean * mean, kurt = s4 / N;
    /* 5-sigma bands: se(mean) = 1/sqrt(N), se(var) = sqrt(2/N), se(m4) = sqrt(96/N). */
    ck_assert_double_lt(fabs(mean), 5.0 / sqrt(N));
    ck_assert_double_lt(fabs(var - 1.0), 5.0 * sqrt(2.0 / N));
    ck_assert_double_lt(fabs(kurt - 3.0), 5.0 * sqrt(96.0 / N));
    free(x);
}
END_TEST

START_TEST(prefix_stable) {
    /* out[i] depends only on (seed, stream, i): asking for fewer gives a prefix. */
    float a[100], b[37], c[100];
    ck_assert_ok(stochflow_random_normal(a, 100, 11, 5));
    ck_assert_ok(stochflow_random_normal(b, 37, 11, 5));
    ck_assert_int_eq(memcmp(a, b, sizeof b), 0);
    ck_assert_ok(stochflow_random_normal(c, 100, 11, 6));
    ck_assert_int_ne(memcmp(a, c, sizeof c), 0);
    ck_assert_ok(stochflow_random_normal(c, 100, 12, 5));
    ck_assert_int_ne(memcmp(a, c, sizeof c), 0);
}
END_TEST

START_TEST(uniform_range) {
    stochflow__rng r;
    stochflow__rng_init(&r, 1, STOCHFLOW__STREAM_T, 0, 0);
    double s = 0;
    for (int i = 0; i < 100000; ++i) {
        double u = stochflow__rng_uniform(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        s += u;
    }
    ck_assert_double_lt(fabs(s / 100000 - 0.5), 5.0 * sqrt(1.0 / 12 / 100000));
}
END_TEST

/* stochflow_random_uniform: range, mean and variance (5 standard errors), prefix
 * stability, distinct streams, and independence from the normals of the same key. */
START_TEST(public_uniform) {
    enum { N = 100000 };
    double *u = malloc(N * sizeof *u), b[37];
    float *z = malloc(N * sizeof *z);
    ck_assert_ok(stochflow_random_uniform(u, N, 7, 3));
    double s = 0, s2 = 0, sz = 0;
    ck_assert_ok(stochflow_random_normal(z, N, 7, 3));
    for (int i = 0; i < N; ++i) {
        ck_assert(u[i] >= 0.0 && u[i] < 1.0);
        s += u[i];
        s2 += (u[i] - 0.5) * (u[i] - 0.5);
        sz += (u[i] - 0.5) * z[i];
    }
    ck_assert_double_lt(fabs(s / N - 0.5), 5.0 * sqrt(1.0 / 12 / N));
    /* Var(u) = 1/12; Var((u - 1/2)^2) = 1/180 */
    ck_assert_double_lt(fabs(s2 / N - 1.0 / 12), 5.0 * sqrt(1.0 / 180 / N));
    /* correlation with the normal of the same (seed, stream, i): E[(u - 1/2) z] = 0 with
     * sd sqrt(1/12 / N); a shared Philox block would give |corr| ~ 0.28 */
    ck_assert_double_lt(fabs(sz / N), 5.0 * sqrt(1.0 / 12 / N));
    ck_assert_ok(stochflow_random_uniform(b, 37, 7, 3));
    ck_assert(memcmp(u, b, sizeof b) == 0);
    ck_assert_ok(stochflow_random_uniform(b, 37, 7, 4));
    ck_assert(memcmp(u, b, sizeof b) != 0);
    ck_assert_ok(stochflow_random_uniform(b, 37, 8, 3));
    ck_assert(memcmp(u, b, sizeof b) != 0);
    free(u);
    free(z);
}
END_TEST

START_TEST(errors) {
    ck_assert_status(stochflow_random_normal(NULL, 3, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_random_normal(NULL, 0, 0, 0));
    double u[2];
    ck_assert_status(stochflow_random_uniform(NULL, 3, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_random_uniform(NULL, 0, 0, 0));
    ck_assert_status(stochflow_random_uniform(u, 2, 0, 0xFFFFFFFFull), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_random_uniform(u, 2, 0, 0xFFFFFFFFull - 16));
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, philox_kat);
    tcase_add_test(tc, normal_moments);
    tcase_add_test(tc, prefix_stable);
    tcase_add_test(tc, uniform_range);
    tcase_add_test(tc, public_uniform);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, errors);
    suite_add_tcase(s, te);
    return s;
}
