/* cli.h - declarations shared by the files of the stochflow program (tools/).
 * The program uses only the public API of <stochflow.h>. */
#ifndef STOCHFLOW_CLI_H
#define STOCHFLOW_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stochflow.h"

/* ---- errors (stochflow.c) -------------------------------------------------------- */

/* Print "stochflow: <message>" as one line on stderr and return -1. Every failure path
 * prints exactly once, where it is detected, then returns -1 up to main(). */
int cli_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* cli_fail with the library's status text and message appended. */
int cli_fail_lib(int status, const char *what);

/* Wall-clock seconds (monotonic). */
double cli_now(void);

/* ---- data sets (io.c) ------------------------------------------------------------ */

typedef struct {
    float *x;   /* n x d, row-major; owned (free with dataset_free) */
    size_t n, d;
    int toy;    /* 1 when the source names a built-in toy (x then NULL) */
    char name[64];
} dataset;

/* Files larger than this (elements n * d) are refused before anything is allocated. */
#define CLI_MAX_ELEMENTS ((size_t)1 << 31)
#define CLI_MAX_DIM ((size_t)65536)

/* Resolve SRC: a toy name (no data read) or a .npy / .csv file (read, validated:
 * 2-D shape, d <= CLI_MAX_DIM, every value finite). Returns 0 or -1 (message printed). */
int dataset_open(dataset *ds, const char *src);
void dataset_free(dataset *ds);
int has_suffix(const char *s, const char *suffix);

/* Readers (exposed for tests of hostile headers). */
int npy_read(float **out, size_t *n, size_t *d, const char *path);
int csv_read(float **out, size_t *n, size_t *d, const char *path);
/* Writers: atomic (temporary file + rename). cols values per row. */
int npy_write(const char *path, const float *x, size_t n, size_t cols);
int csv_write(const char *path, const float *x, size_t n, size_t cols, const char *header);
/* By extension (.npy or .csv); anything else is an error. */
int matrix_write(const char *path, const float *x, size_t n, size_t cols, const char *header);
/* Create a directory (and its parents); existing is fine. */
int make_dirs(const char *path);

/* ---- pictures (plot.c) ----------------------------------------------------------- */

typedef struct {
    uint8_t *px; /* w x h x 3 */
    int w, h;
} canvas;

int canvas_new(canvas *c, int w, int h, uint8_t gray);
void canvas_free(canvas *c);
void canvas_blit(canvas *dst, const canvas *src, int x0, int y0);
/* 5x7 bitmap text scaled by `scale`; unknown characters draw as boxes. */
void canvas_text(canvas *c, int x, int y, const char *s, int scale, const uint8_t rgb[3]);
int canvas_text_width(const char *s, int scale);
int canvas_save(const canvas *c, const char *path);

/* A panel: title band on top, a size x size plot below. */
/* 2-D histogram of the first two coordinates of x (n x d) over [lo, hi]^2. */
int plot_histogram(canvas *out, const char *title, const float *x, size_t n, size_t d,
                   double lo, double hi, int size);
/* Heat map of g x g values (row 0 = lowest y) scaled to size x size; values are
 * densities (not logs), shown linearly from 0 to vmax (<= 0: the 99.5th percentile). */
int plot_heatmap(canvas *out, const char *title, const float *val, int g, double vmax,
                 int size);
/* Loss curve: raw values faint, a moving average bold, y from robust percentiles. */
int plot_curve(canvas *out, const char *title, const double *y, size_t n, int w, int h);
/* Range [lo, hi] that covers the bulk of the first two coordinates (square). */
void plot_auto_range(double *lo, double *hi, const float *x, size_t n, size_t d);

/* ---- progress bar (progress.c) --------------------------------------------------- */

typedef struct {
    int enabled;      /* stderr is a terminal */
    double start, last_draw;
    double total;     /* units of work (steps, or 1.0 for an ODE time interval) */
    const char *label;
    const char *unit;
} progress;

void progress_start(progress *p, const char *label, double total, const char *unit);
/* done: work done so far; extra: appended text (e.g. "loss 1.234") or NULL. */
void progress_update(progress *p, double done, const char *extra);
/* Erase the bar (the final result is printed by the caller). */
void progress_end(progress *p);

/* ---- transport (transport_cli.c, issue 9) ------------------------------------------- */

/* --interpolant SPEC: trig | linear | fourier:M[:trig|:linear] (NULL = trig), applied to
 * cfg. Returns 0 or -1 (message printed). */
int cli_set_interpolant(stochflow_config *cfg, const char *cmd, const char *spec);
/* --coupling independent|ot|sinkhorn and --interp-lr X (either may be NULL). */
int cli_set_coupling(stochflow_model *m, const char *cmd, const char *coupling,
                     const char *interp_lr);
/* Base samples x0 (b x d) of a data-to-data flow for one step; z: b floats scratch. */
int cli_base_batch(float *x0, float *z, const dataset *base, size_t b, uint64_t seed,
                   uint64_t step);
/* Print the path-length estimate and, for a Fourier interpolant, its coefficients. */
void cli_transport_report(const stochflow_model *m);
/* PNG of trajectories from base points (base, or N(0, I) when NULL) to t = 1 over the
 * target's samples. */
int cli_transport_picture(const char *path, stochflow_model *m, const dataset *base,
                          const dataset *data, uint64_t seed);
/* Base log-density of a data-to-data model for the solver: SRC's closed form (toys
 * checkerboard, 8gaussians); -1 with a clear message when none is available. */
int cli_set_base_logpdf(stochflow_solver *s, const dataset *base, const char *cmd);
/* n samples of a data-to-data model: base draws integrated 0 -> 1; lp (may be NULL)
 * gets log p = log p_base(x0) - integral div v (needs cli_set_base_logpdf's density). */
int cli_sample_from_base(float *x, float *lp, stochflow_solver *s, stochflow_model *m,
                         const dataset *base, size_t n, uint64_t seed);

#endif
