/* progress.c - a one-line progress bar on stderr with rate and ETA, drawn only when
 * stderr is a terminal (otherwise every call is a no-op, so pipes and logs receive
 * nothing but the final result). Redrawn at most 10 times a second. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <unistd.h>

#include "cli.h"

void progress_start(progress *p, const char *label, double total, const char *unit) {
    p->enabled = isatty(STDERR_FILENO);
    p->start = cli_now();
    p->last_draw = 0.0;
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
    if (!p->enabled) return;
    double now = cli_now();
    if (now - p->last_draw < 0.1 && done < p->total) return;
    p->last_draw = now;
    double frac = done / p->total;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    double el = now - p->start;
    double rate = el > 0 ? done / el : 0.0;
    double eta = frac > 0 ? el * (1.0 - frac) / frac : -1.0;
    char bar[31], e1[48], e2[48];
    int fill = (int)(frac * 30.0);
    for (int i = 0; i < 30; ++i) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[30] = '\0';
    fmt_time(e1, sizeof e1, el);
    fmt_time(e2, sizeof e2, eta);
    fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %.1f %s/s %s ETA %s%s%s", p->label, bar,
            100.0 * frac, rate, p->unit, e1, e2, extra ? "  " : "", extra ? extra : "");
    fflush(stderr);
}

void progress_end(progress *p) {
    if (!p->enabled) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}
