/* fuzz_idx.c - stochflow_images_load_limited("idx:PATH") on arbitrary bytes, raw or gzip
 * (the input is the whole file, an in-memory file from fuzz_file). The shared checks of
 * fuzz_images_check (limit 784 values, 28 x 28), and no more pixel bytes than the input
 * holds: raw, header + every byte of data and nothing more (so fewer than its size);
 * gzip, deflate's ~1032:1. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    if (path == NULL) return 0;
    char src[96];
    snprintf(src, sizeof src, "idx:%s", path);
    size_t n = 0, per = 0;
    if (!fuzz_images_check(src, 784, &n, &per)) return 0;
    int gz = size >= 2 && data[0] == 0x1F && data[1] == 0x8B;
    if (gz) FUZZ_CHECK(n * per <= 1100 * size);
    else FUZZ_CHECK(n * per < size);
    return 0;
}
