/* validate.h - `stochflow train` on a table (.npy/.csv) through the library's trainer:
 * validation, early stopping, time budget, standardization (validate.c, doc/cli.md). */
#ifndef STOCHFLOW_TOOLS_VALIDATE_H
#define STOCHFLOW_TOOLS_VALIDATE_H

#include "common.h"
#include "mpi_driver.h"

enum { TABLE_STD_NONE = 0, TABLE_STD_DIAG = 1, TABLE_STD_WHITEN = 2 };

typedef struct {
    double val_fraction;  /* --val FRACTION, the default fraction without --val, or 0 */
    int auto_val;         /* no --val: the CLI holds out val_fraction (tables large enough) */
    int no_val;           /* --val 0: no validation set */
    const char *val_file; /* --val FILE, or NULL */
    uint64_t eval_every;  /* 0: the default */
    uint64_t patience;    /* evaluations without improvement (with a validation set) */
    double seconds;       /* --time, or 0 */
    int standardize;      /* TABLE_STD_*: --standardize diag (default), whiten, none */
    uint64_t val_block;   /* --val-block: rows per validation solve (0: all in one) */
} table_opts;

typedef struct {
    uint64_t steps_run, checkpoints, best_step;
    double seconds, last_loss, val_nll, val_se;
    size_t n_train, n_val;
    const char *stop;
    int interrupted, standardized; /* standardized: TABLE_STD_* of the model */
    char fail[6144]; /* a periodic checkpoint failed: "PATH: why" (training stopped) */
} table_result;

/* The table options' values, before any work (table: the data is a .npy/.csv file; for
 * other data these options are refused, except --standardize and --no-standardize for a
 * conditional model on a .npy/.csv file in one process, cond_table): 0 or CLI_USAGE. */
int table_check_options(const opts *o, int table, int cond_table, table_opts *t);
/* A new table model's defaults beyond the MLP recipe (apply_recipe): the EMA of the
 * weights, TABLE_EMA with the EMA warm-up; options given later override them. 0, or
 * CLI_ERR (printed). */
int table_recipe(stochflow_model *m);
/* A new conditional model trained from a table (cond_table above) in the step loop: fit
 * the data map of t->standardize on the rows x (n x d) and, unless it is none, the
 * context map on ctx (n x n_ctx; NULL: labels only). 0, or CLI_ERR (printed). */
int cond_table_standardize(stochflow_model *m, const table_opts *t, const float *x,
                           const float *ctx, size_t n);
/* Train m on ds with the trainer (under mpirun, rows: the data read by positioned reads,
 * ds->x then NULL; NULL when ds->x holds it): 0 when the run ended (budget, patience, interrupted,
 * or a periodic checkpoint failed: see res; the caller saves m), CLI_ERR (printed). */
int table_train(table_result *res, stochflow_model *m, const dataset *ds, const opts *o,
                const table_opts *t, uint64_t steps, size_t batch, uint64_t ck_every,
                const char *ck_path, int resumed, dist_table *rows);
/* The summary lines (and JSON keys when want_json). */
void table_report(const table_result *r, json *j, int want_json);

#endif
