/* fuzz_data.c - the invariants shared by the fuzz targets of the library's data parsers
 * (lib/dataio.c): fuzz_data_npy.c and fuzz_data_csv.c. On success: a non-empty matrix
 * within the value bound, no more values than the bytes can hold (min_bytes bytes per
 * value), all finite; a second parse of the same bytes gives the same bits; a bound one
 * below the value count is refused. On failure: nothing returned, zero sizes, a message. */
#include <math.h>
#include <string.h>

#include "fuzz_data.h"

#define MAX_VALUES ((size_t)1 << 20)

void fuzz_data_check(data_parse_fn parse, const uint8_t *data, size_t size, size_t min_bytes) {
    float *x = NULL, *y = NULL;
    size_t n = 7, d = 7, n2, d2;
    int rc = parse(&x, &n, &d, data, size, MAX_VALUES);
    if (rc == 0) {
        FUZZ_CHECK(x != NULL && n > 0 && d > 0 && n <= MAX_VALUES / d);
        FUZZ_CHECK(n * d * min_bytes <= size + 1);
        for (size_t i = 0; i < n * d; ++i) FUZZ_CHECK(isfinite(x[i]));
        FUZZ_CHECK(parse(&y, &n2, &d2, data, size, MAX_VALUES) == 0);
        FUZZ_CHECK(n2 == n && d2 == d && memcmp(x, y, n * d * sizeof(float)) == 0);
        if (n * d > 1) {
            float *z = NULL;
            FUZZ_CHECK(parse(&z, &n2, &d2, data, size, n * d - 1) == STOCHFLOW_E_FORMAT);
            FUZZ_CHECK(z == NULL);
        }
        stochflow_data_free(x);
        stochflow_data_free(y);
    } else {
        FUZZ_CHECK(rc < 0 && x == NULL && n == 0 && d == 0);
        FUZZ_CHECK(stochflow_last_error_message()[0] != '\0');
    }
}
