/* common.h - what the files of the stochflow program (tools/) share: errors and exit
 * codes, option parsing, keywords, output checks, JSON output, signals, model and solver
 * set-up (common.c), data files (io.c), pictures (plot.c), the progress display
 * (progress.c) and the transport helpers (transport.c). The training loop is in
 * training.h, the image helpers in images.h. The commands live one per file (train.c,
 * sample.c, logp.c, info.c, demo.c; commands.h) and main() in stochflow.c only
 * dispatches. The program uses only the public API of <stochflow.h>. */
#ifndef STOCHFLOW_TOOLS_COMMON_H
#define STOCHFLOW_TOOLS_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stochflow.h"
#include "stop.h"

/* ---- errors, exit codes, time (common.c) ----------------------------------------- */

/* Exit codes (doc/cli.md): 0 success, 1 any failure, 2 a usage error, 130 interrupted. */
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130

/* Status of the helpers below: 0 ok, CLI_ERR a failure (message printed, exit 1),
 * CLI_USAGE a usage error (message printed, exit 2). */
#define CLI_ERR (-1)
#define CLI_USAGE (-2)

/* Print "stochflow: <message>" as one line on stderr and return CLI_ERR. Every failure
 * path prints exactly once, where it is detected, then returns up to main(). */
int cli_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* The same for a usage error: returns CLI_USAGE. */
int cli_usage(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* cli_fail with the library's status text and message appended. */
int cli_fail_lib(int status, const char *what);
/* The exit status for a failing helper's status (CLI_USAGE -> 2, anything else -> 1). */
int cli_exit_code(int status);

/* Wall-clock seconds (monotonic). */
double cli_now(void);

/* ---- options (common.c) ---------------------------------------------------------- */

/* An option: a one-letter metavariable means a number, checked when parsed: "X" any
 * finite real, any other letter ("N", "K", "S", ...) an unsigned integer written with
 * digits only (no sign, no space). Other metavariables are text; NULL is a flag. */
typedef struct {
    const char *name; /* "--steps", or "-n" */
    const char *arg;  /* metavariable, NULL for a flag */
    const char *help;
} optdef;

#define MAX_OPTS 64

typedef struct {
    const char *cmd;
    const optdef *defs;
    size_t n;
    const char *val[MAX_OPTS];
} opts;

/* Parse argv into o: 0 to continue, 1 when --help was printed, CLI_USAGE (printed). */
int cli_parse(opts *o, const char *cmd, const char *synopsis, const optdef *defs, size_t n,
              int argc, char **argv);
/* Value of an option (its text; "1" for a flag given), NULL when absent or unknown. */
const char *opt(const opts *o, const char *name);
/* 1 when the command has the option NAME (given or not). */
int has_opt(const opts *o, const char *name);
/* An option given as ALIAS counts as NAME (when NAME itself is absent). */
void opt_alias(opts *o, const char *alias, const char *name);
/* CLI_USAGE with "CMD: NAME is required" printed when the option is absent. */
int need(const opts *o, const char *name);
/* Refuse the first of names[0..n) that is given: "CMD: NAME WHY" (CLI_USAGE). */
int refuse(const opts *o, const char *const *names, size_t n, const char *why);
/* An option's value with a default and inclusive bounds: 0 or CLI_USAGE (printed). */
int get_u64(const opts *o, const char *name, uint64_t def, uint64_t lo, uint64_t hi,
            uint64_t *out);
int get_double(const opts *o, const char *name, double def, double lo, double hi, double *out);
/* get_double for an option that sets the library parameter named param: key from
 * stochflow_param_key (to *key, may be NULL), bounds from stochflow_param_bounds, so the
 * option accepts what stochflow_model_set_param accepts. 0, CLI_USAGE or CLI_ERR. */
int get_param_option(const opts *o, const char *name, const char *param, double def, int *key,
                     double *out);
/* "1,2,2" -> values in [lo, hi]: the count, or CLI_USAGE (printed). */
int parse_list(const char *cmd, const char *name, const char *s, size_t *v, size_t cap,
               size_t lo, size_t hi);

typedef struct {
    const char *name;
    int code;
} keyword;

int get_keyword(const opts *o, const char *name, const keyword *kw, int def, int *out);
extern const keyword ACTIVATIONS[], INTERPOLANTS[], SOLVERS[], TRACES[], SCHEDULES[],
    TRAIN_TARGETS[];
const char *keyword_name(const keyword *kw, int code);
int default_threads(void);

/* ---- output files (common.c) ------------------------------------------------------- */

/* Checked before any work: PATH's directory exists, PATH is not a directory, and PATH is
 * not the same file (device and inode) as an existing file of inputs[0..n) (NULL entries
 * are skipped; source_file() in io.c names a data source's file). 0 or CLI_ERR. */
int check_output(const char *cmd, const char *path, const char *const *inputs, size_t n);

/* ---- JSON (common.c) ----------------------------------------------------------------- */

/* One JSON object on one line, of any length. Strings are escaped to valid JSON; a byte
 * that is not part of a valid UTF-8 sequence becomes \u00XX (XX its value). */
typedef struct {
    char *buf;
    size_t len, cap;
    int first, oom;
} json;

void jraw(json *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void jbegin(json *j);
void jkey(json *j, const char *k);
void jnum(json *j, const char *k, double v);
void jint(json *j, const char *k, unsigned long long v);
void jbool(json *j, const char *k, int v);
void jstr(json *j, const char *k, const char *s);
/* Print the object as one line and free it. */
void jend(json *j);

/* ---- signals (common.c) -------------------------------------------------------------- */

/* Set by SIGINT/SIGTERM while a command runs. */
extern volatile sig_atomic_t stop_requested;
/* SIGINT/SIGTERM set stop_requested (training stops after the step, solves cancel);
 * SIGXFSZ is ignored so that a write past a file-size limit fails with an I/O error
 * (the temporary file is removed, exit 1) instead of killing the program. */
void catch_signals(void);

/* ---- data sets (io.c) ------------------------------------------------------------ */

typedef struct {
    float *x;   /* n x d, row-major; owned (free with dataset_free) */
    size_t n, d;
    int toy;    /* 1 when the source names a built-in toy (x then NULL) */
    char name[64]; /* the toy's name; for files SRC cut short: print SRC itself */
} dataset;

/* Files larger than this (elements n * d) are refused before anything is allocated. */
#define CLI_MAX_ELEMENTS ((size_t)1 << 31)
#define CLI_MAX_DIM ((size_t)65536)

/* Resolve SRC: a toy name (no data read) or a .npy / .csv file (read, validated:
 * 2-D shape, d <= CLI_MAX_DIM, every value finite). Returns 0 or CLI_ERR (message printed). */
int dataset_open(dataset *ds, const char *src);
void dataset_free(dataset *ds);
/* The file behind a data source: SRC for a .npy/.csv file, PATH for idx:PATH; NULL for
 * toys and other names (pngdir:, fashion-mnist). */
const char *source_file(const char *src);
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


/* ---- progress (progress.c) ------------------------------------------------------- */

/* On a terminal: a one-line bar on stderr with rate and ETA, redrawn at most 10 times a
 * second and erased at the end. Elsewhere (a pipe, a log file): a plain line
 * "progress: LABEL ..." every CLI_PROGRESS_LOG_SECONDS seconds, nothing at the end. */
#define CLI_PROGRESS_LOG_SECONDS 5.0

typedef struct {
    int tty;          /* stderr is a terminal */
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

/* Solver progress over [t0, t1] (returns non-zero to cancel on a stop request, except at
 * t1: solve_cancels in stop.h). */
typedef struct {
    progress *bar;
    double t0, t1;
} ode_progress;
int on_ode_progress(void *user, double t);

/* ---- models and solvers (common.c) -------------------------------------------------- */

int load_model(stochflow_model **m, const char *path);
/* 1 when the model has a U-Net (image) velocity field. */
int model_is_unet(const stochflow_model *m);
/* --threads (and --weights where the command has it): 0, CLI_USAGE or CLI_ERR. */
int set_threads(stochflow_model *m, const opts *o, int def);
uint64_t model_seed(const stochflow_model *m);

typedef struct {
    int kind;
    uint64_t steps;
    double rtol, atol;
} solver_opts;
/* --solver --steps --rtol --atol with the given defaults: 0 or CLI_USAGE. */
int parse_solver(solver_opts *so, const opts *o, int def_kind, uint64_t def_steps);
/* A solver with those settings: 0 or CLI_ERR. */
int make_solver(stochflow_solver **s, const solver_opts *so);

/* Mean and standard error of -lp. */
void nll_stats(double *nll, double *se, const float *lp, size_t n);
/* Index in [0, n) from a uniform draw u in [0, 1) (stochflow_random_uniform). */
size_t uniform_to_index(double u, size_t n);

/* ---- transport helpers (transport.c) ---------------------------------------------- */

/* --interpolant SPEC: trig | linear | fourier:M[:trig|:linear] (NULL = trig), applied to
 * cfg. Returns 0, CLI_USAGE (a malformed SPEC) or CLI_ERR (printed). */
int cli_set_interpolant(stochflow_config *cfg, const char *cmd, const char *spec);
/* --coupling independent|ot|sinkhorn and --interp-lr X (either may be absent): checked
 * (0 or CLI_USAGE), and applied (0, CLI_USAGE or CLI_ERR). */
int check_coupling(const opts *o);
int cli_set_coupling(stochflow_model *m, const opts *o);
/* Base samples x0 (b x d) of a data-to-data flow for one step; z: b floats scratch. */
int cli_base_batch(float *x0, double *u, const dataset *base, size_t b, uint64_t seed,
                   uint64_t step);
/* 1 when the model's interpolant is the learnable Fourier one. */
int cli_is_fourier(const stochflow_model *m);
/* For the learnable Fourier interpolant: print the path-length estimate and the learned
 * coefficients. Nothing for the fixed interpolants (the estimate would only be -loss). */
void cli_transport_report(const stochflow_model *m);
/* PNG of trajectories from base points (base, or N(0, I) when NULL) to t = 1 over the
 * target's samples. */
int cli_transport_picture(const char *path, stochflow_model *m, const dataset *base,
                          const dataset *data, uint64_t seed);
/* Base log-density of a data-to-data model for the solver: SRC's closed form (toys
 * checkerboard, 8gaussians); CLI_ERR with a clear message when none is available. */
int cli_set_base_logpdf(stochflow_solver *s, const dataset *base, const char *cmd);
/* n samples of a data-to-data model: base draws integrated 0 -> 1; lp (may be NULL)
 * gets log p = log p_base(x0) - integral div v (needs cli_set_base_logpdf's density). */
int cli_sample_from_base(float *x, float *lp, stochflow_solver *s, stochflow_model *m,
                         const dataset *base, size_t n, uint64_t seed);

#endif
