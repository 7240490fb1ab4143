/* stop.c - what a stop request (SIGINT/SIGTERM, tools/common.c) does to a solve: the
 * progress callback cancels it, except at the end of its span, where the state is
 * complete; a solve that returned success is written even if a stop came meanwhile. Pure
 * functions, unit-tested by tests/cli_stop_test.c. */
#include <stdio.h>

#include "stop.h"

int solve_cancels(int stop, double t, double t_end) { return stop && t != t_end; }

int solve_finished_despite_stop(int rc, int stop, const char *cmd) {
    if (rc != 0 || !stop) return 0;
    fprintf(stderr, "stochflow: %s: stop requested, but the solve had already finished: "
                    "writing its result\n", cmd);
    return 1;
}
