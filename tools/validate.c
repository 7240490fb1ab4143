/* validate.c - `stochflow train` on a table (.npy/.csv): the library's trainer
 * (stochflow_trainer_fit, doc/training.md) with a held-out validation set (--val FILE or
 * FRACTION), scheduled validation (--eval-every), early stopping (--patience) that keeps
 * the best-evaluated weights, a wall-clock budget (--time) the learning-rate schedule
 * spans, and the model's standardization fitted on the training rows (per column by default,
 * --standardize diag|whiten|none). Public API of <stochflow.h> only. See doc/cli.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "training.h"
#include "validate.h"

/* Defaults for a table (doc/cli.md, measured in bench/DATA.md): without --val the CLI
 * holds out a fraction of the rows itself (tables of at least AUTO_VAL_MIN_ROWS rows),
 * trains up to DEFAULT_TABLE_STEPS steps (the schedule spans them) with an EMA of the
 * weights (TABLE_EMA with warm-up: the weights evaluated, kept and saved), evaluates
 * about every 1/100 of the budget (at most every 200 steps) and stops after
 * DEFAULT_PATIENCE evaluations without improvement, keeping the best EMA weights: small
 * tables stop once they overfit, larger ones use the budget. */
#define DEFAULT_VAL_FRACTION 0.1
#define AUTO_VAL_MIN_ROWS 20
#define DEFAULT_TABLE_STEPS 30000
#define DEFAULT_PATIENCE 50
#define TABLE_EMA 0.999
/* Rows per validation solve: the unit that processes share under mpirun (doc/
 * distributed.md), the same by default on any number of processes. */
#define DEFAULT_VAL_BLOCK 256
/* The validation solver's dopri5 tolerances: the NLL's error stays far below its standard
 * error over the held-out rows (~0.1 nats), at ~1.6x fewer steps than the 1e-5 default. */
#define VAL_TOL 1e-4

typedef struct {
    stochflow_model *m;
    progress bar;
    double t0, budget, run;
    uint64_t step0, total, ck_every, checkpoints;
    const char *ck_path;
    int time_schedule, interrupted;
    double last_val;
    char fail[6144];
} fit_ctx;

/* After every step: Ctrl-C, periodic checkpoints, the time-spanning schedule, progress. */
static int on_step(void *user, uint64_t step, double loss, double val, double se) {
    (void)se;
    fit_ctx *c = user;
    if (stop_requested) { /* under mpirun the trainer stops every process (agreed) */
        c->interrupted = 1;
        return 1;
    }
    const int writer = dist_rank() == 0; /* under mpirun only rank 0 writes and shows */
    if (writer && c->ck_every && step % c->ck_every == 0) {
        int rc = stochflow_model_save(c->m, c->ck_path);
        if (rc < 0) {
            snprintf(c->fail, sizeof c->fail, "%s: %s (%s)", c->ck_path,
                     stochflow_last_error_message(), stochflow_status_string(rc));
            return 1;
        }
        ++c->checkpoints;
    }
    double elapsed = cli_now() - c->t0;
    /* --time: the schedule's horizon follows the steps the budget will allow at the rate
     * so far, never beyond --steps (re-estimated every 10 steps) */
    if (c->time_schedule && (step - c->step0) % 10 == 0 && elapsed > 0) {
        double horizon = time_horizon(c->step0, step - c->step0, elapsed, c->budget, c->total);
        char why[512];
        if (dist_size() > 1) /* rank 0's clock: the same schedule in every process */
            dist_share(&horizon, 1, 0, writer, DIST_OK, NULL, why, sizeof why);
        stochflow_model_set_param(c->m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, horizon);
    }
    c->run = isnan(c->run) ? loss : 0.98 * c->run + 0.02 * loss;
    if (!isnan(val)) c->last_val = val;
    char extra[96];
    if (isnan(c->last_val)) snprintf(extra, sizeof extra, "loss %.4f", c->run);
    else snprintf(extra, sizeof extra, "loss %.4f val NLL %.4f", c->run, c->last_val);
    double done = c->budget > 0 ? elapsed / c->budget * (double)c->total
                                : (double)(step - c->step0);
    if (writer) progress_update(&c->bar, done, extra);
    return 0;
}

static const char *stop_name(double code) {
    switch ((int)code) {
    case STOCHFLOW_TRAINER_STOP_STEPS: return "step budget";
    case STOCHFLOW_TRAINER_STOP_TIME: return "time budget";
    case STOCHFLOW_TRAINER_STOP_PATIENCE: return "patience (no improvement)";
    case STOCHFLOW_TRAINER_STOP_CANCELLED: return "interrupted";
    default: return "?";
    }
}

/* --standardize MODE / --no-standardize into t->standardize: 0 or CLI_USAGE. */
static int standardize_option(const opts *o, table_opts *t) {
    const char *mode = opt(o, "--standardize");
    t->standardize = TABLE_STD_DIAG;
    if (mode != NULL) {
        if (strcmp(mode, "diag") == 0) t->standardize = TABLE_STD_DIAG;
        else if (strcmp(mode, "whiten") == 0) t->standardize = TABLE_STD_WHITEN;
        else if (strcmp(mode, "none") == 0) t->standardize = TABLE_STD_NONE;
        else return cli_usage("train: --standardize %s: diag, whiten or none", mode);
    }
    if (opt(o, "--no-standardize")) {
        if (mode != NULL && t->standardize != TABLE_STD_NONE)
            return cli_usage("train: --no-standardize and --standardize %s disagree", mode);
        t->standardize = TABLE_STD_NONE;
    }
    return 0;
}

int table_check_options(const opts *o, int table, int cond_table, table_opts *t) {
    static const char *const TABLE_ONLY[] = {"--val", "--eval-every", "--patience", "--time",
                                             "--val-block"};
    static const char *const STD_OPTS[] = {"--no-standardize", "--standardize"};
    int rc;
    memset(t, 0, sizeof *t);
    if (!table) {
        if ((rc = refuse(o, TABLE_ONLY, sizeof TABLE_ONLY / sizeof TABLE_ONLY[0],
                         "applies to unconditional .npy/.csv data only")) != 0)
            return rc;
        if (!cond_table)
            return refuse(o, STD_OPTS, 2,
                          "applies to .npy/.csv data only (a conditional model: in one process)");
        return standardize_option(o, t);
    }
    const char *val = opt(o, "--val");
    if (val) {
        char *end = NULL;
        double f = strtod(val, &end);
        if (end != val && *end == '\0') {
            if (!(f >= 0 && f <= 0.9))
                return cli_usage("train: --val %s: a fraction must be in [0, 0.9] (0: none)",
                                 val);
            t->val_fraction = f;
            t->no_val = f == 0;
        } else if (source_file(val) == NULL) {
            return cli_usage("train: --val %s: a fraction in (0, 0.9] or a .npy/.csv file", val);
        } else {
            t->val_file = val;
        }
    }
    if (val == NULL) { /* held out by the CLI (table_train: when the table is large enough) */
        t->val_fraction = DEFAULT_VAL_FRACTION;
        t->auto_val = 1;
    }
    if (t->no_val && (opt(o, "--patience") || opt(o, "--eval-every") || opt(o, "--val-block")))
        return cli_usage("train: %s needs a validation set (--val FILE|FRACTION, not 0)",
                         opt(o, "--patience")     ? "--patience"
                         : opt(o, "--eval-every") ? "--eval-every"
                                                  : "--val-block");
    if ((rc = get_u64(o, "--eval-every", 0, 1, 1000000000, &t->eval_every)) != 0 ||
        (rc = get_u64(o, "--val-block", DEFAULT_VAL_BLOCK, 1, 1 << 24, &t->val_block)) != 0 ||
        (rc = get_u64(o, "--patience", DEFAULT_PATIENCE, 0, 1000000000, &t->patience)) != 0 ||
        (rc = get_double(o, "--time", 0, 1e-3, 1e9, &t->seconds)) != 0)
        return rc;
    return standardize_option(o, t);
}

int cond_table_standardize(stochflow_model *m, const table_opts *t, const float *x,
                           const float *ctx, size_t n) {
    int rc = 0;
    if (t->standardize == TABLE_STD_WHITEN) rc = stochflow_model_fit_whitening(m, x, n);
    else if (t->standardize == TABLE_STD_DIAG) rc = stochflow_model_fit_standardization(m, x, n);
    if (rc == 0 && ctx != NULL && t->standardize != TABLE_STD_NONE)
        rc = stochflow_model_fit_context_standardization(m, ctx, n);
    if (rc < 0) {
        cli_fail_lib(rc, "standardization");
        return CLI_ERR;
    }
    return 0;
}

int table_recipe(stochflow_model *m) {
    int rc;
    if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, TABLE_EMA)) < 0 ||
        /* the decay ramps up (min(TABLE_EMA, (1 + s)/(10 + s)) at step s), so a short run
         * is not held back at its first weights */
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_WARMUP, 1)) < 0)
        return cli_fail_lib(rc, "table defaults");
    return 0;
}

/* Default evaluation period: about 100 evaluations over the step budget (each is an exact
 * NLL solve, the main cost of a run on a small table; with the patience above a run
 * waits out a third of the default budget without improvement), at least one per
 * epoch's worth of steps when epochs are long, between 10 and 200 steps. */
static uint64_t default_eval_every(uint64_t steps, size_t n_train, size_t batch) {
    uint64_t e = steps / 100;
    uint64_t epoch = (n_train + batch - 1) / batch;
    if (e < epoch) e = epoch;
    if (e < 10) e = 10;
    if (e > 200) e = 200;
    return e;
}

int table_train(table_result *res, stochflow_model *m, const dataset *ds, const opts *o,
                const table_opts *t, uint64_t steps, size_t batch, uint64_t ck_every,
                const char *ck_path, int resumed, dist_table *rows) {
    memset(res, 0, sizeof *res);
    dataset vds = {0};
    /* under mpirun with the data read by rows: the validation file too (positioned
     * reads when it is a plain .npy, else held whole and handed out by rows) */
    dist_table vt = {.fd = -1};
    stochflow_trainer *tr = NULL;
    int rc, ret = CLI_ERR, lazy_val = 0;
    const int writer = dist_rank() == 0;
    if (t->val_file) {
        if (rows && (lazy_val = dist_table_open(&vt, t->val_file)) < 0) return CLI_ERR;
        if (lazy_val) {
            vds.n = vt.n;
            vds.d = vt.d;
        } else if (dataset_open(&vds, t->val_file) != 0) {
            return CLI_ERR;
        } else if (rows) {
            vt = (dist_table){.fd = -1, .n = vds.n, .d = vds.d, .mem = vds.x, .path = t->val_file};
        }
        if (vds.toy || vds.d != ds->d) {
            cli_fail("train: --val %s has %zu columns but --data has %zu", t->val_file,
                     vds.toy ? (size_t)2 : vds.d, ds->d);
            goto out;
        }
    }
    /* too few rows to hold out from: no validation, the whole budget */
    const double val_fraction = t->auto_val && ds->n < AUTO_VAL_MIN_ROWS ? 0 : t->val_fraction;
    size_t n_val = t->val_file ? vds.n : (size_t)floor(val_fraction * (double)ds->n + 0.5);
    size_t n_train = t->val_file ? ds->n : ds->n - n_val;
    uint64_t step0 = stochflow_model_step(m);
    fit_ctx c = {.m = m, .budget = t->seconds, .run = NAN, .last_val = NAN, .step0 = step0,
                 .ck_every = ck_every, .ck_path = ck_path};
    /* --time without --steps: the time alone bounds the run; neither: the table default */
    uint64_t run_steps = opt(o, "--steps") != NULL ? steps
                         : t->seconds > 0          ? 1000000000ull
                                                   : DEFAULT_TABLE_STEPS;
    c.total = run_steps;
    double sched = 0;
    stochflow_solver *vs = NULL;
    if ((rc = stochflow_trainer_new(&tr)) < 0 ||
        (rc = stochflow_model_get_param(&sched, m, STOCHFLOW_PARAM_LR_SCHEDULE)) < 0 ||
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_BATCH_SIZE, (double)batch)) < 0 ||
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_STEPS,
                                          (double)(step0 + run_steps))) < 0 ||
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_SECONDS, t->seconds)) < 0 ||
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_FRACTION,
                                          t->val_file ? 0 : val_fraction)) < 0 ||
        (rc = stochflow_trainer_set_param(
             tr, STOCHFLOW_TRAINER_EVAL_EVERY,
             (double)(t->eval_every ? t->eval_every
                                    : default_eval_every(run_steps, n_train, batch)))) < 0 ||
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_PATIENCE,
                                          n_val ? (double)t->patience : 0)) < 0 ||
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_STANDARDIZE,
                                          t->standardize == TABLE_STD_WHITEN ? 3
                                          : t->standardize == TABLE_STD_DIAG ? 1
                                                                             : 2)) < 0 ||
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_BLOCK,
                                          (double)t->val_block)) < 0 ||
        /* under mpirun: the steps, validation solves and stops split across processes */
        (rc = dist_trainer(tr, rows, rows && t->val_file ? &vt : NULL)) < 0 ||
        /* a resumed model keeps its schedule's horizon; a fresh one spans this run */
        (rc = stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_SET_HORIZON,
                                          resumed || t->seconds > 0 ? 2 : 1)) < 0 ||
        (rc = stochflow_trainer_set_progress(tr, on_step, &c)) < 0 ||
        (rc = stochflow_trainer_solver(&vs, tr)) < 0 ||
        (rc = stochflow_solver_set_param(vs, STOCHFLOW_PARAM_RTOL, VAL_TOL)) < 0 ||
        (rc = stochflow_solver_set_param(vs, STOCHFLOW_PARAM_ATOL, VAL_TOL)) < 0) {
        cli_fail_lib(rc, "trainer");
        goto out;
    }
    c.time_schedule = t->seconds > 0 && !resumed && (int)sched != STOCHFLOW_LR_CONSTANT;
    if (c.time_schedule &&
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS,
                                        (double)(step0 + run_steps))) < 0) {
        cli_fail_lib(rc, "--time");
        goto out;
    }
    progress_start(&c.bar, "train", (double)run_steps, "steps");
    c.t0 = cli_now();
    rc = stochflow_trainer_fit(tr, m, rows ? NULL : ds->x, ds->n,
                               t->val_file && !rows ? vds.x : NULL, t->val_file ? vds.n : 0);
    progress_end(&c.bar);
    res->seconds = cli_now() - c.t0;
    res->checkpoints = c.checkpoints;
    res->interrupted = c.interrupted;
    snprintf(res->fail, sizeof res->fail, "%s", c.fail);
    double v;
    stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_STEPS);
    res->steps_run = (uint64_t)v;
    stochflow_trainer_stat(&res->last_loss, tr, STOCHFLOW_TRAINER_STAT_LAST_LOSS);
    stochflow_trainer_stat(&res->val_nll, tr, STOCHFLOW_TRAINER_STAT_FINAL_NLL);
    stochflow_trainer_stat(&res->val_se, tr, STOCHFLOW_TRAINER_STAT_FINAL_SE);
    stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_BEST_STEP);
    res->best_step = (uint64_t)v;
    stochflow_trainer_stat(&v, tr, STOCHFLOW_TRAINER_STAT_STOP);
    res->stop = stop_name(v);
    res->n_train = n_train;
    res->n_val = n_val;
    res->standardized = stochflow_model_standardization(NULL, NULL, m) == 1
                            ? (stochflow_model_whitening(NULL, m) == 1 ? TABLE_STD_WHITEN
                                                                       : TABLE_STD_DIAG)
                            : TABLE_STD_NONE;
    if (rc == STOCHFLOW_E_CANCELLED && (c.interrupted || c.fail[0])) {
        ret = 0; /* the caller saves the model and reports */
    } else if (rc == STOCHFLOW_E_CANCELLED && dist_size() > 1) {
        ret = 0; /* another process stopped: why is agreed below */
    } else if (rc < 0 && dist_size() > 1) { /* every process failed: rank 0 says it once */
        if (writer)
            cli_fail("training: %s", dist_failure()[0] ? dist_failure()
                                                       : stochflow_last_error_message());
    } else if (rc < 0) {
        cli_fail_lib(rc, "training"); /* as a failing step of the toy loop: nothing saved */
    } else {
        ret = 0;
    }
    if (rc == STOCHFLOW_E_CANCELLED && dist_size() > 1) {
        /* every process learns why the run stopped (rank 0's checkpoint, a Ctrl-C), so
         * that every one saves, reports and exits alike */
        char why[sizeof res->fail];
        int a = dist_agree(c.fail[0] ? DIST_FAIL : c.interrupted ? DIST_STOP : DIST_OK, c.fail,
                           why, sizeof why);
        if (a == DIST_FAIL) snprintf(res->fail, sizeof res->fail, "%s", writer ? c.fail : why);
        res->interrupted = a == DIST_STOP;
    }
    dist_report_reads(rows, rows && t->val_file ? &vt : NULL);
out:
    stochflow_trainer_free(tr);
    dist_table_close(&vt);
    dataset_free(&vds);
    return ret;
}

void table_report(const table_result *r, json *j, int want_json) {
    if (r->n_val > 0)
        printf("validation NLL %.4f nats per row (held out: %zu rows, exact; se %.4f), best "
               "evaluation at model step %llu; stopped by the %s\n",
               r->val_nll, r->n_val, r->val_se, (unsigned long long)r->best_step, r->stop);
    else
        printf("no validation set (--val FILE|FRACTION holds rows out); stopped by the %s\n",
               r->stop);
    printf("standardization: %s\n",
           r->standardized == TABLE_STD_WHITEN
               ? "whitening (mean and Cholesky factor of the covariance of the training rows), "
                 "stored in the model (log-densities and samples in the data's units)"
           : r->standardized == TABLE_STD_DIAG
               ? "per-column mean and standard deviation of the training rows, "
                 "stored in the model (log-densities and samples in the data's units)"
               : "none (the data's units)");
    if (!want_json) return;
    jint(j, "train_rows", r->n_train);
    jint(j, "val_rows", r->n_val);
    if (r->n_val > 0) {
        jnum(j, "val_nll", r->val_nll);
        jnum(j, "val_nll_se", r->val_se);
        jint(j, "best_step", r->best_step);
    }
    jstr(j, "stop", r->stop);
    jbool(j, "standardized", r->standardized != TABLE_STD_NONE);
    jstr(j, "standardization", r->standardized == TABLE_STD_WHITEN ? "whiten"
                               : r->standardized == TABLE_STD_DIAG ? "diag"
                                                                   : "none");
}
