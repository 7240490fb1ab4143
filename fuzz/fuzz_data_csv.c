/* fuzz_data_csv.c - the library's .csv parser (stochflow_data_parse_csv) on arbitrary
 * bytes; invariants in fuzz_data.c (a value takes a digit and a separator: two bytes,
 * the last value's separator may be the end of the input). */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_data_check(stochflow_data_parse_csv, data, size, 2);
    return 0;
}
