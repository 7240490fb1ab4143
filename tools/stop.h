/* stop.h - stop requests and solves (tools/stop.c). */
#ifndef STOCHFLOW_TOOLS_STOP_H
#define STOCHFLOW_TOOLS_STOP_H

/* Whether a solver's progress callback at time t cancels the solve: on a stop request,
 * except at t == t_end (the library reports the end of the span exactly), where the
 * solve has finished and cancelling would throw a complete result away. */
int solve_cancels(int stop, double t, double t_end);

/* After a solve (or a loop of them) that returned rc: 1 when it succeeded although a
 * stop was requested meanwhile (says so on stderr, naming cmd; the caller writes the
 * result and exits 0), else 0. Only STOCHFLOW_E_CANCELLED from the library is a
 * cancelled solve. */
int solve_finished_despite_stop(int rc, int stop, const char *cmd);

#endif
