/* fuzz_checkpoint.c - stochflow_model_load_buffer on arbitrary bytes.
 *
 * Input: one mode byte, then the checkpoint bytes. With bit 0 of the mode set, the
 * header's payload length and the trailing CRC-32 are recomputed before loading, so
 * that mutations reach the section and configuration parsers instead of stopping at
 * the checksum (the plain mode covers the checksum path itself).
 *
 * On a successful load the model must behave: it re-serializes to bytes that load
 * again and re-serialize identically, and velocity, divergence and one training step
 * return a status (never crash) drawn from the documented set. */
#include <string.h>

#include "fuzz.h"
#include "internal.h"

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (uint8_t)(v >> (8 * i));
}

static void exercise(stochflow_model *m) {
    /* a hostile file may ask for 256 BLIS threads: keep the fuzzer single-threaded */
    FUZZ_CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1) == 0);
    size_t len = 0;
    FUZZ_CHECK(stochflow_model_serialized_size(&len, m) == 0 && len >= 28);
    uint8_t *a = malloc(len), *b = malloc(len);
    FUZZ_CHECK(a && b);
    size_t wa = 0, wb = 0;
    FUZZ_CHECK(stochflow_model_save_buffer(&wa, a, len, m) == 0 && wa == len);
    stochflow_model *m2 = NULL;
    FUZZ_CHECK(stochflow_model_load_buffer(&m2, a, len) == 0 && m2 != NULL);
    FUZZ_CHECK(stochflow_model_save_buffer(&wb, b, len, m2) == 0 && wb == len);
    FUZZ_CHECK(memcmp(a, b, len) == 0);
    stochflow_model_free(m2);
    free(a);
    free(b);

    size_t d = stochflow_model_dim(m);
    FUZZ_CHECK(d >= 1 && d <= 65536);
    if (d > 64) return; /* keep each input cheap */
    float x[4 * 64], v[4 * 64], div[4];
    for (size_t i = 0; i < 4 * d; ++i) x[i] = (float)((int)(i % 7) - 3) * 0.25f;
    int rc = stochflow_model_velocity(v, m, 0.5, x, 4);
    FUZZ_CHECK(rc == 0 || rc == STOCHFLOW_E_NONFINITE);
    rc = stochflow_model_divergence(div, NULL, m, 0.25, x, 4);
    FUZZ_CHECK(rc == 0 || rc == STOCHFLOW_E_NONFINITE);
    double loss;
    uint64_t step = stochflow_model_step(m);
    rc = stochflow_model_train_step(&loss, m, x, 4, NULL, NULL);
    /* INVALID: a custom-interpolant model has no schedule callback after loading */
    FUZZ_CHECK(rc == 0 || rc == STOCHFLOW_E_NONFINITE || rc == STOCHFLOW_E_INVALID);
    FUZZ_CHECK(stochflow_model_step(m) == step + (rc == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int fix = data[0] & 1;
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    uint8_t *copy = NULL;
    if (fix && len >= 28) {
        copy = malloc(len);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, p, len);
        put_le64(copy + 16, (uint64_t)(len - 28));
        put_le32(copy + len - 4, stochflow__crc32(copy, len - 4));
        p = copy;
    }
    stochflow_model *m = (stochflow_model *)&m; /* must be overwritten */
    int rc = stochflow_model_load_buffer(&m, p, len);
    if (rc == 0) {
        FUZZ_CHECK(m != NULL);
        exercise(m);
        stochflow_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL);
        FUZZ_CHECK(rc == STOCHFLOW_E_FORMAT || rc == STOCHFLOW_E_VERSION);
        FUZZ_CHECK(stochflow_last_error_message()[0] != '\0');
    }
    free(copy);
    return 0;
}
