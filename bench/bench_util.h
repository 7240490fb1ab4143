/* bench_util.h - what the hand-run benchmark programs share: a status check that exits
 * with the library's message (a program, not the library, may exit), and the process's
 * CPU time. */
#ifndef STOCHFLOW_BENCH_UTIL_H
#define STOCHFLOW_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "stochflow.h"

#define CHECK(expr)                                                                      \
    do {                                                                                 \
        int rc__ = (expr);                                                               \
        if (rc__ < 0) {                                                                  \
            fprintf(stderr, "%s: %s (%s)\n", #expr, stochflow_last_error_message(),      \
                    stochflow_status_string(rc__));                                      \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* CPU seconds used by this process (all its threads). */
static inline double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
