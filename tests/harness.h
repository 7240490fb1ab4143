/* harness.h - shared main() and helpers for the Check suites.
 * Each tests/check_<concern>.c defines make_suite() and includes this file once. */
#ifndef STOCHFLOW_TEST_HARNESS_H
#define STOCHFLOW_TEST_HARNESS_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "stochflow.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

Suite *make_suite(void);

/* Assert a status code, printing the library's message on failure. */
#define ck_assert_status(expr, expected)                                               \
    do {                                                                               \
        int st__ = (expr);                                                             \
        ck_assert_msg(st__ == (expected), "%s returned %d (%s), expected %d: %s", #expr, \
                      st__, stochflow_status_string(st__), (int)(expected),            \
                      stochflow_last_error_message());                                 \
    } while (0)
#define ck_assert_ok(expr) ck_assert_status((expr), STOCHFLOW_OK)

/* stochflow_config_set_unet from the options struct, for tests that sweep the shape:
 * the defaults of stochflow_unet_options_init, then every field given. */
static inline int set_unet_shape(stochflow_config *cfg, size_t channels, size_t height,
                                 size_t width, size_t base, size_t n_levels,
                                 const size_t *mult, size_t blocks, uint32_t attn_mask,
                                 size_t groups) {
    stochflow_unet_options o;
    int rc = stochflow_unet_options_init(&o, sizeof o);
    if (rc < 0) return rc;
    o.channels = channels;
    o.height = height;
    o.width = width;
    o.base = base;
    o.n_levels = n_levels;
    if (n_levels <= STOCHFLOW_UNET_MAX_LEVELS) /* else refused: mult is not read */
        for (size_t l = 0; l < n_levels; ++l) o.mult[l] = mult[l];
    o.blocks = blocks;
    o.attn_mask = attn_mask;
    o.groups = groups;
    return stochflow_config_set_unet(cfg, &o);
}

int main(void) {
    SRunner *sr = srunner_create(make_suite());
    /* TAP on stdout for meson (CK_TAP_LOG_FILE_NAME=- is set by meson too). */
    srunner_set_tap(sr, "-");
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
