/* fuzz_trainer_state.c - stochflow_trainer_load_state (lib/trainer.c) on arbitrary bytes,
 * as given and with the trailing CRC-32 recomputed (so that mutations reach the checks
 * behind the checksum). Invariants: a refused state leaves the trainer as it was (no
 * state: state_size still INVALID); an accepted one saves back to the same bytes. */
#include <string.h>

#include "fuzz.h"
#include "internal.h"

static void one(const uint8_t *data, size_t size) {
    stochflow_trainer *tr = NULL;
    if (stochflow_trainer_new(&tr) != 0) return;
    size_t n = 0, w = 0;
    if (stochflow_trainer_load_state(tr, size ? data : NULL, size) == 0) {
        FUZZ_CHECK(size == 0 || stochflow_trainer_state_size(&n, tr) == 0);
        if (size > 0) {
            FUZZ_CHECK(n == size);
            uint8_t *back = malloc(n);
            FUZZ_CHECK(back != NULL);
            FUZZ_CHECK(stochflow_trainer_save_state(&w, tr, back, n) == 0 && w == n);
            FUZZ_CHECK(memcmp(back, data, n) == 0);
            free(back);
        }
    } else {
        FUZZ_CHECK(stochflow_trainer_state_size(&n, tr) == STOCHFLOW_E_INVALID);
        FUZZ_CHECK(stochflow_last_error_message()[0] != '\0');
    }
    stochflow_trainer_free(tr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    one(data, size);
    if (size >= 4) {
        uint8_t *fixed = malloc(size);
        FUZZ_CHECK(fixed != NULL);
        memcpy(fixed, data, size);
        uint32_t crc = stochflow__crc32(fixed, size - 4);
        for (int i = 0; i < 4; ++i) fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
        one(fixed, size);
        free(fixed);
    }
    return 0;
}
