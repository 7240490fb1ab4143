/* fuzz_npy.c - the CLI's .npy reading (tools/io.c npy_read, the library's reader) on
 * arbitrary bytes.
 * Invariants on success: a non-empty 2-D shape within the CLI limits, no more values
 * than the bytes can hold (nothing allocated beyond what the file backs), all finite. */
#include <math.h>

#include "common.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    if (path == NULL) return 0;
    float *x = NULL;
    size_t n = 0, d = 0;
    if (npy_read(&x, &n, &d, path) == 0) {
        FUZZ_CHECK(x != NULL && n > 0 && d > 0 && d <= CLI_MAX_DIM);
        FUZZ_CHECK(n <= CLI_MAX_ELEMENTS / d);
        FUZZ_CHECK(n * d <= size); /* at least 1 byte per value in the file (i1, u1) */
        for (size_t i = 0; i < n * d; ++i) FUZZ_CHECK(isfinite(x[i]));
        free(x);
    } else {
        FUZZ_CHECK(x == NULL);
    }
    return 0;
}
