/* cli_stop_test.c - the CLI's decisions on a stop request during a solve (tools/stop.c):
 * a stop cancels an unfinished solve from its progress callback, never the callback at
 * the end of the span (the state is complete: `timeout 60 stochflow sample` used to
 * throw away a sample integrated to t = 1 as cancelled), and a solve that returned
 * success is written with a note on stderr. TAP output. */
#include <stdio.h>

#include "stochflow.h"
#include "stop.h"

static int n, failed;

static void check(int cond, const char *what) {
    ++n;
    if (!cond) ++failed;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n, what);
}

int main(void) {
    /* sampling 0 -> 1 */
    check(!solve_cancels(0, 0.5, 1.0), "no stop: never cancels");
    check(!solve_cancels(0, 1.0, 1.0), "no stop: not at the end either");
    check(solve_cancels(1, 0.0, 1.0), "stop at the start: cancels");
    check(solve_cancels(1, 0.999, 1.0), "stop just before the end: cancels");
    check(!solve_cancels(1, 1.0, 1.0), "stop at t = 1 of a 0 -> 1 solve: finished, kept");
    /* log-density 1 -> 0 */
    check(solve_cancels(1, 0.25, 0.0), "log-density, stop at t = 0.25: cancels");
    check(!solve_cancels(1, 0.0, 1.0 - 1.0), "log-density, stop at t = 0: finished, kept");
    /* after the call */
    check(solve_finished_despite_stop(0, 1, "sample") == 1,
          "success with a stop requested: written (note on stderr)");
    check(solve_finished_despite_stop(0, 0, "sample") == 0, "success, no stop: no note");
    check(solve_finished_despite_stop(STOCHFLOW_E_CANCELLED, 1, "sample") == 0,
          "CANCELLED: not written");
    check(solve_finished_despite_stop(STOCHFLOW_E_NONFINITE, 1, "logp") == 0,
          "another failure: not written");
    printf("1..%d\n", n);
    return failed != 0;
}
