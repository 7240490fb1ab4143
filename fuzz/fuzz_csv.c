/* fuzz_csv.c - the CLI's .csv reading (tools/io.c csv_read, the library's reader) on
 * arbitrary bytes.
 * Invariants on success: a non-empty rectangular table within the CLI limits, at most
 * one value per two bytes of input (a digit and a separator), all finite. */
#include <math.h>

#include "common.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    if (path == NULL) return 0;
    float *x = NULL;
    size_t n = 0, d = 0;
    if (csv_read(&x, &n, &d, path) == 0) {
        FUZZ_CHECK(x != NULL && n > 0 && d > 0 && d <= CLI_MAX_DIM);
        FUZZ_CHECK(n * d <= (size + 1) / 2);
        for (size_t i = 0; i < n * d; ++i) FUZZ_CHECK(isfinite(x[i]));
        free(x);
    } else {
        FUZZ_CHECK(x == NULL);
    }
    return 0;
}
