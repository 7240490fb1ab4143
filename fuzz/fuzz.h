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

#endif
