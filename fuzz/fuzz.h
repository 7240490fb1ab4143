/* fuzz.h - shared declarations of the fuzz targets (fuzz/), built two ways:
 *  - with clang's libFuzzer (meson -Dfuzz=true): fuzz_<target> executables;
 *  - with any compiler, linked to replay.c: replay_<target>, the deterministic smoke run
 *    of the normal test suite (suite 'fuzz').
 * Every target aborts (a crash the fuzzer reports) when an invariant of the parser is
 * broken; plain rejections of bad input are the expected, quiet outcome. */
#ifndef STOCHFLOW_FUZZ_H
#define STOCHFLOW_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Report a broken invariant and abort (libFuzzer saves the input as a crash). */
#define FUZZ_CHECK(cond)                                                            \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                      \
            abort();                                                                \
        }                                                                           \
    } while (0)

/* A path naming a regular file that holds exactly data[0..size) (an in-memory file,
 * rewritten on each call), for the CLI readers that take a path. NULL on failure. */
const char *fuzz_file(const uint8_t *data, size_t size);

/* Load the image source src three ways (everything; max_count 1; max_values limit) and
 * check what every load must satisfy: a failure is FORMAT (or NOMEM) with a message,
 * NULL pixels and zero sizes; a success is non-empty, C in {1, 3}, every byte readable;
 * when everything loads, max_count 1 loads its first image byte for byte, and the limit
 * fails exactly when an image has more than `limit` values, else gives the same bytes.
 * Returns 1 with the count and the bytes per image when everything loaded, else 0.
 * (fuzz_images.c, for fuzz_idx and fuzz_pngdir.) */
int fuzz_images_check(const char *src, size_t limit, size_t *count, size_t *per_image);

#endif
