/* fuzz_data.h - shared checker of the data-parser fuzz targets (fuzz_data.c). */
#ifndef STOCHFLOW_FUZZ_DATA_H
#define STOCHFLOW_FUZZ_DATA_H

#include "fuzz.h"
#include "stochflow.h"

typedef int (*data_parse_fn)(float **x, size_t *n, size_t *d, const void *buf, size_t len,
                             size_t max_values);

/* Parse data[0..size) and check the invariants; min_bytes: input bytes per value. */
void fuzz_data_check(data_parse_fn parse, const uint8_t *data, size_t size, size_t min_bytes);

#endif
