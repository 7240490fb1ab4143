/* fuzz_data_npy.c - the library's .npy parser (stochflow_data_parse_npy) on arbitrary
 * bytes; invariants in fuzz_data.c (a value takes at least one byte of the file). */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_data_check(stochflow_data_parse_npy, data, size, 1);
    return 0;
}
