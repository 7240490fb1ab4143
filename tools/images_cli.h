/* images_cli.h - the stochflow program's image commands (issue 8, tools/images_cli.c),
 * and the pieces of stochflow.c they share: option parsing, JSON output, the solver
 * progress callback and the model helpers. Public API of <stochflow.h> only. */
#ifndef STOCHFLOW_IMAGES_CLI_H
#define STOCHFLOW_IMAGES_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

/* ---- shared with stochflow.c (defined there) ------------------------------------------ */

#define EXIT_USAGE 2

typedef struct {
    const char *name; /* "--steps", or "-n" */
    const char *arg;  /* metavariable, NULL for a flag */
    const char *help;
} optdef;

#define MAX_OPTS 40

typedef struct {
    const char *cmd;
    const optdef *defs;
    size_t n;
    const char *val[MAX_OPTS];
} opts;

/* Value of an option (its text; "1" for a flag given), NULL when absent or unknown. */
const char *opt(const opts *o, const char *name);
/* -1 with "CMD: NAME is required" printed when the option is absent. */
int need(const opts *o, const char *name);
/* Parse an option's value with a default and inclusive bounds; 0 or -1 (printed). */
int get_u64(const opts *o, const char *name, uint64_t def, uint64_t lo, uint64_t hi,
            uint64_t *out);
int get_double(const opts *o, const char *name, double def, double lo, double hi, double *out);

typedef struct {
    const char *name;
    int code;
} keyword;

int get_keyword(const opts *o, const char *name, const keyword *kw, int def, int *out);
extern const keyword SOLVERS[], TRACES[];
const char *keyword_name(const keyword *kw, int code);
int default_threads(void);

/* One JSON object on one line. */
typedef struct {
    char buf[8192];
    size_t len;
    int first;
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
void jend(json *j);

/* Set by SIGINT/SIGTERM while a command runs. */
extern volatile sig_atomic_t stop_requested;

/* Solver progress over [t0, t1] (returns non-zero to cancel on a stop request). */
typedef struct {
    progress *bar;
    double t0, t1;
} ode_progress;
int on_ode_progress(void *user, double t);

int load_model(stochflow_model **m, const char *path);
/* --threads (and --weights where the command has it). */
int set_threads(stochflow_model *m, const opts *o, int def);
uint64_t model_seed(const stochflow_model *m);
/* The optimizer options of train (only those given are applied). */
int apply_train_params(stochflow_model *m, const opts *o, int fresh, uint64_t steps);
/* Mean and standard error of -lp. */
void nll_stats(double *nll, double *se, const float *lp, size_t n);

/* ---- image commands (images_cli.c) ----------------------------------------------------- */

/* Is SRC an image source? 1: "fashion-mnist[:train|:test]", "idx:PATH", "pngdir:PATH";
 * 0: anything else (a toy, a .npy/.csv file); -1 (message printed): an unknown "NAME:"
 * prefix. */
int cli_images_source(const char *cmd, const char *src);
/* Refuse the image-only options (--unet-*, --checkpoint-every, ...) on a non-image
 * command line: 0 or -1 (printed). */
int cli_images_reject_options(const opts *o);
/* An option given as ALIAS counts as NAME (when NAME itself is absent). */
void cli_images_alias(opts *o, const char *alias, const char *name);
/* 1 when PATH loads as a U-Net model, 0 otherwise (quietly: the caller reports). */
int cli_images_is_model(const char *path);
/* train / sample / logp for image data and U-Net models; return the exit status. */
int cli_images_train(const opts *o);
int cli_images_sample(const opts *o);
int cli_images_logp(opts *o);
/* info: for a U-Net configuration print its shape (j == NULL) or add its JSON keys;
 * returns 1 for a U-Net, 0 otherwise (then JSON gets "arch": "mlp"). */
int cli_images_info(const stochflow_config *c, json *j);

#endif
