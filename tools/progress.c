/* progress.c - progress of long work on stderr. On a terminal: a one-line bar with rate
 * and ETA, redrawn at most 10 times a second and erased at the end. In a pipe or a log
 * file: a plain line "progress: ..." every CLI_PROGRESS_LOG_SECONDS seconds (so a long
 * run shows it is alive), nothing at the end; the final result is the caller's. Also the
 * solvers' progress callback for a whole-batch ODE solve. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <unistd.h>

#include "common.h"

void progress_start(progress *p, const char *label, double total, const char *unit) {
    p->tty = isatty(STDERR_FILENO);
    p->start = cli_now();
    p->last_draw = p->tty ? 0.0 : p->start;
    p->total = total > 0 ? total : 1.0;
    p->label = label;
    p->unit = unit;
}

static void fmt_time(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void progress_update(progress *p, double done, const char *extra) {
    double now = cli_now();
    if (p->tty ? now - p->last_draw < 0.1 && done < p->total
               : now - p->last_draw < CLI_PROGRESS_LOG_SECONDS)
        return;
    p->last_draw = now;
    double frac = done / p->total;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    double el = now - p->start;
    double rate = el > 0 ? done / el : 0.0;
    double eta = frac > 0 ? el * (1.0 - frac) / frac : -1.0;
    char e1[48], e2[48];
    fmt_time(e1, sizeof e1, el);
    fmt_time(e2, sizeof e2, eta);
    if (!p->tty) {
        fprintf(stderr, "progress: %s %.0f%% (%.6g/%.6g %s), %.1f %s/s, elapsed %s, ETA %s%s%s\n",
                p->label, 100.0 * frac, done, p->total, p->unit, rate, p->unit, e1, e2,
                extra ? ", " : "", extra ? extra : "");
        fflush(stderr);
        return;
    }
    char bar[31];
    int fill = (int)(frac * 30.0);
    for (int i = 0; i < 30; ++i) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[30] = '\0';
    fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %.1f %s/s %s ETA %s%s%s", p->label, bar,
            100.0 * frac, rate, p->unit, e1, e2, extra ? "  " : "", extra ? extra : "");
    fflush(stderr);
}

void progress_end(progress *p) {
    if (!p->tty) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

int on_ode_progress(void *user, double t) {
    ode_progress *p = user;
    double span = p->t1 - p->t0;
    progress_update(p->bar, span != 0 ? (t - p->t0) / span : 1.0, NULL);
    return solve_cancels(stop_requested, t, p->t1); /* Ctrl-C cancels an unfinished solve */
}
