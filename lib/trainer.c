/* trainer.c - the training loop as a library call (doc/training.md): minibatches without
 * replacement per epoch from the counter-based generator, a validation NLL on a
 * schedule (exact on a fixed random subset: unbiased for the full validation set, with
 * its standard error), best weights, patience, a progress/cancel callback, step and
 * wall-clock budgets with the learning-rate schedule spanning the step budget.
 *
 * Built only on the public model and solver API (train_step, parameters, log_prob), so
 * the trainer's state is (model, data, trainer parameters): the batch of model step s is
 * a pure function of (seed, s, n, batch size), which is what makes a trainer resumed
 * from a checkpoint continue bitwise and the run independent of the thread count. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "model.h"

/* ---- keyed parameters of the trainer handle (500s) -------------------------------- */
/* One block, to be folded into the library's parameter table (params.c) later.
 * {key, lo, hi, default, integer, name}; setting 0 restores the default. */
typedef struct {
    int key;
    double lo, hi, def;
    int integer;
    const char *name;
} trainer_param;

static const trainer_param trainer_params[] = {
    {STOCHFLOW_TRAINER_BATCH_SIZE, 1, 1 << 24, 256, 1, "batch_size"},
    {STOCHFLOW_TRAINER_MAX_STEPS, 1, 1e12, 1000, 1, "max_steps"},
    {STOCHFLOW_TRAINER_MAX_SECONDS, 0, 1e9, 0, 0, "max_seconds"},
    {STOCHFLOW_TRAINER_EVAL_EVERY, 1, 1e12, 100, 1, "eval_every"},
    {STOCHFLOW_TRAINER_PATIENCE, 0, 1e9, 0, 1, "patience"},
    {STOCHFLOW_TRAINER_VAL_FRACTION, 0, 0.9, 0, 0, "val_fraction"},
    {STOCHFLOW_TRAINER_VAL_SUBSET, 1, 1e9, 256, 1, "val_subset"},
    {STOCHFLOW_TRAINER_SEED, 0, 9007199254740992.0, 0, 1, "seed"},
    {STOCHFLOW_TRAINER_MIN_DELTA, 0, 1e9, 0, 0, "min_delta"},
    {STOCHFLOW_TRAINER_KEEP_BEST, 1, 2, 1, 1, "keep_best"},
    {STOCHFLOW_TRAINER_SET_HORIZON, 1, 2, 1, 1, "set_horizon"},
    {STOCHFLOW_TRAINER_STANDARDIZE, 1, 3, 2, 1, "standardize"}, /* 3: whiten */
    {STOCHFLOW_TRAINER_VAL_BLOCK, 1, 1 << 24, 0, 1, "val_block"},
};
#define N_TRAINER_PARAMS (sizeof trainer_params / sizeof trainer_params[0])

/* Philox streams of the trainer (free slots below STOCHFLOW__STREAM_USER). */
#define TRAINER_STREAM_SHUFFLE 12u /* epoch permutations: step field = epoch */
#define TRAINER_STREAM_SPLIT 13u   /* validation split (step 0) and eval subset (step 1) */

struct stochflow_trainer {
    double value[N_TRAINER_PARAMS];
    stochflow_solver *solver;
    stochflow_train_progress_fn fn;
    void *user;
    double stat_best_nll, stat_best_step, stat_final_nll, stat_final_se, stat_steps,
        stat_evals, stat_stop, stat_last_loss, stat_train_rows, stat_val_rows;
    /* Early-stopping state, kept between calls and in stochflow_trainer_save_state: a
     * fit on a model at step rs_step continues it (best so far, evaluations since). */
    int rs_valid, rs_have_best;
    uint64_t rs_step, rs_since;
    double rs_best, rs_best_step;
    size_t rs_np;  /* weights in rs_w (0: none kept) */
    float *rs_w;   /* best evaluated weights, when KEEP_BEST */
    int rs_ema;    /* the evaluations (best, rs_w) were of the EMA weights, not the live */
    int par_on;    /* data-parallel (stochflow_trainer_set_parallel) */
    stochflow_trainer_parallel par;
    void *par_user;
};

static int param_index(int key) {
    for (size_t i = 0; i < N_TRAINER_PARAMS; ++i)
        if (trainer_params[i].key == key) return (int)i;
    return -1;
}

static void reset_stats(stochflow_trainer *tr) {
    tr->stat_best_nll = tr->stat_final_nll = tr->stat_final_se = NAN;
    tr->stat_last_loss = NAN;
    tr->stat_best_step = tr->stat_steps = tr->stat_evals = tr->stat_stop = 0;
    tr->stat_train_rows = tr->stat_val_rows = 0;
}

STOCHFLOW_API int stochflow_trainer_new(stochflow_trainer **out) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "trainer_new: out is NULL");
    *out = NULL;
    stochflow_trainer *tr = stochflow__calloc(1, sizeof *tr);
    RETURN_ERROR_IF(tr == NULL, STOCHFLOW_E_NOMEM, "trainer_new: out of memory");
    for (size_t i = 0; i < N_TRAINER_PARAMS; ++i) tr->value[i] = trainer_params[i].def;
    int rc = stochflow_solver_new(&tr->solver);
    if (rc < 0) {
        stochflow__free(tr);
        return rc;
    }
    reset_stats(tr);
    *out = tr;
    return 0;
}

STOCHFLOW_API void stochflow_trainer_free(stochflow_trainer *tr) {
    if (tr == NULL) return;
    stochflow__free(tr->rs_w);
    stochflow_solver_free(tr->solver);
    stochflow__free(tr);
}

STOCHFLOW_API int stochflow_trainer_param_bounds(double *lo, double *hi, double *def, int key) {
    int i = param_index(key);
    RETURN_ERROR_IF(i < 0, STOCHFLOW_E_UNSUPPORTED, "trainer: unknown parameter key %d", key);
    if (lo) *lo = trainer_params[i].lo;
    if (hi) *hi = trainer_params[i].hi;
    if (def) *def = trainer_params[i].def;
    return 0;
}

STOCHFLOW_API int stochflow_trainer_set_param(stochflow_trainer *tr, int key, double value) {
    RETURN_ERROR_IF(tr == NULL, STOCHFLOW_E_INVALID, "trainer_set_param: trainer is NULL");
    int i = param_index(key);
    RETURN_ERROR_IF(i < 0, STOCHFLOW_E_UNSUPPORTED, "trainer: unknown parameter key %d", key);
    const trainer_param *p = &trainer_params[i];
    if (value == 0) {
        tr->value[i] = p->def;
        return 0;
    }
    RETURN_ERROR_IF(!isfinite(value) || value < p->lo || value > p->hi, STOCHFLOW_E_INVALID,
                    "trainer: %s = %g outside [%g, %g]", p->name, value, p->lo, p->hi);
    RETURN_ERROR_IF(p->integer && value != floor(value), STOCHFLOW_E_INVALID,
                    "trainer: %s = %g must be an integer", p->name, value);
    tr->value[i] = value;
    return 0;
}

STOCHFLOW_API int stochflow_trainer_get_param(double *out, const stochflow_trainer *tr, int key) {
    RETURN_ERROR_IF(out == NULL || tr == NULL, STOCHFLOW_E_INVALID,
                    "trainer_get_param: NULL argument");
    int i = param_index(key);
    RETURN_ERROR_IF(i < 0, STOCHFLOW_E_UNSUPPORTED, "trainer: unknown parameter key %d", key);
    *out = tr->value[i];
    return 0;
}

STOCHFLOW_API int stochflow_trainer_set_progress(stochflow_trainer *tr,
                                                 stochflow_train_progress_fn fn, void *user) {
    RETURN_ERROR_IF(tr == NULL, STOCHFLOW_E_INVALID, "trainer_set_progress: trainer is NULL");
    tr->fn = fn;
    tr->user = user;
    return 0;
}

STOCHFLOW_API int stochflow_trainer_solver(stochflow_solver **out, stochflow_trainer *tr) {
    RETURN_ERROR_IF(out == NULL || tr == NULL, STOCHFLOW_E_INVALID,
                    "trainer_solver: NULL argument");
    *out = tr->solver;
    return 0;
}

STOCHFLOW_API int stochflow_trainer_stat(double *out, const stochflow_trainer *tr, int key) {
    RETURN_ERROR_IF(out == NULL || tr == NULL, STOCHFLOW_E_INVALID,
                    "trainer_stat: NULL argument");
    switch (key) {
    case STOCHFLOW_TRAINER_STAT_BEST_NLL: *out = tr->stat_best_nll; return 0;
    case STOCHFLOW_TRAINER_STAT_BEST_STEP: *out = tr->stat_best_step; return 0;
    case STOCHFLOW_TRAINER_STAT_FINAL_NLL: *out = tr->stat_final_nll; return 0;
    case STOCHFLOW_TRAINER_STAT_FINAL_SE: *out = tr->stat_final_se; return 0;
    case STOCHFLOW_TRAINER_STAT_STEPS: *out = tr->stat_steps; return 0;
    case STOCHFLOW_TRAINER_STAT_EVALS: *out = tr->stat_evals; return 0;
    case STOCHFLOW_TRAINER_STAT_STOP: *out = tr->stat_stop; return 0;
    case STOCHFLOW_TRAINER_STAT_LAST_LOSS: *out = tr->stat_last_loss; return 0;
    case STOCHFLOW_TRAINER_STAT_TRAIN_ROWS: *out = tr->stat_train_rows; return 0;
    case STOCHFLOW_TRAINER_STAT_VAL_ROWS: *out = tr->stat_val_rows; return 0;
    default: break;
    }
    return stochflow__error(STOCHFLOW_E_UNSUPPORTED, "trainer_stat: unknown key %d", key);
}

/* ---- the loop ---------------------------------------------------------------------- */

static double get(const stochflow_trainer *tr, int key) { return tr->value[param_index(key)]; }

/* perm = a uniform permutation of 0..n-1 (Fisher-Yates), keyed by (seed, stream, step). */
static void permutation(size_t *perm, size_t n, uint64_t seed, uint32_t stream, uint64_t step) {
    stochflow__rng r;
    stochflow__rng_init(&r, seed, stream, step, 0);
    for (size_t i = 0; i < n; ++i) perm[i] = i;
    for (size_t i = n; i > 1; --i) {
        size_t j = (size_t)(stochflow__rng_uniform(&r) * (double)i);
        if (j >= i) j = i - 1;
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Where the rows come from: the caller's matrices, or (data-parallel, x NULL) the rows
 * callback. Training row i (in the training order) is row tidx[i] of x (i without a
 * split); validation row k is row vidx[k] of x (a split) or row k of xval. */
typedef struct {
    const stochflow_trainer *tr;
    const float *x, *xval;
    const size_t *tidx, *vidx;
    size_t d;
    size_t *scratch; /* row indices for the callback */
} rowsrc;

/* dst = the training (val = 0) or validation (val = 1) rows sel[0..k). */
static int fetch(const rowsrc *S, float *dst, const size_t *sel, size_t k, int val) {
    const size_t d = S->d;
    const int from_xval = val && S->vidx == NULL;
    const float *src = from_xval ? S->xval : S->x;
    const size_t *map = val ? S->vidx : S->tidx;
    if (src != NULL) {
        for (size_t j = 0; j < k; ++j) {
            size_t r = map ? map[sel[j]] : sel[j];
            memcpy(dst + j * d, src + r * d, d * sizeof(float));
        }
        return 0;
    }
    for (size_t j = 0; j < k; ++j) S->scratch[j] = map ? map[sel[j]] : sel[j];
    int urc = S->tr->par.rows(S->tr->par_user, dst, S->scratch, k, from_xval);
    RETURN_ERROR_IF(urc != 0, STOCHFLOW_E_CALLBACK,
                    "trainer_fit: the rows callback returned %d for %zu %s rows", urc, k,
                    from_xval ? "validation" : "data");
    return 0;
}

/* -log p of the validation rows sel[0..k) into nll [k], in solves of VAL_BLOCK rows (all
 * k in one when 0): dopri5 takes one step size per solve, so the solves are the unit that
 * decides the bits. With processes, each solves a contiguous share of the solves and the
 * values are shared (the share callback), identical everywhere. buf holds a solve's
 * rows, logp its values. */
static int val_terms(double *nll, stochflow_trainer *tr, stochflow_model *m, const rowsrc *S,
                     const size_t *sel, size_t k, float *buf, float *logp) {
    size_t V = (size_t)tr->value[param_index(STOCHFLOW_TRAINER_VAL_BLOCK)];
    if (V == 0 || V > k) V = k;
    const size_t nc = k / V + (k % V != 0);
    size_t c0 = 0, c1 = nc;
    if (tr->par_on) {
        c0 = tr->par.rank * nc / tr->par.size;
        c1 = (tr->par.rank + 1) * nc / tr->par.size;
    }
    int rc = 0;
    for (size_t c = c0; c < c1 && rc == 0; ++c) {
        const size_t lo = c * V, hi = lo + V < k ? lo + V : k;
        rc = fetch(S, buf, sel + lo, hi - lo, 1);
        if (rc == 0) rc = stochflow_solver_log_prob(logp, NULL, tr->solver, m, buf, hi - lo, 1.0);
        for (size_t i = lo; rc == 0 && i < hi; ++i) nll[i] = -(double)logp[i - lo];
    }
    if (!tr->par_on) return rc;
    const size_t lo = c0 * V < k ? c0 * V : k, hi = c1 * V < k ? c1 * V : k;
    int src = tr->par.share(tr->par_user, rc, nll, k, lo, hi);
    if (rc < 0) return rc;
    RETURN_ERROR_IF(src != 0, STOCHFLOW_E_CALLBACK,
                    "trainer_fit: the validation of another process failed (share callback "
                    "returned %d)", src);
    return 0;
}

/* Mean of the per-row terms nll [n] and its standard error (sample standard deviation /
 * sqrt n, times the finite-population factor fpc). */
static int nll_stats(double *mean, double *se, const double *nll, size_t n, double fpc) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; ++i) s += nll[i];
    double mu = s / (double)n;
    for (size_t i = 0; i < n; ++i) s2 += (nll[i] - mu) * (nll[i] - mu);
    RETURN_ERROR_IF(!isfinite(mu), STOCHFLOW_E_NONFINITE,
                    "trainer: the validation log-likelihood is not finite");
    *mean = mu;
    *se = n > 1 ? sqrt(s2 / (double)(n - 1) / (double)n) * fpc : NAN;
    return 0;
}

typedef struct {
    float *vbuf, *batch, *logp, *best; /* best: a new rs_w, or NULL */
    double *nll;
    size_t *perm, *tidx, *vidx, *sub, *all, *scratch;
    unsigned char *mask;
} buffers;

static void free_buffers(buffers *b) {
    stochflow__free(b->vbuf);
    stochflow__free(b->batch);
    stochflow__free(b->logp);
    stochflow__free(b->best);
    stochflow__free(b->nll);
    stochflow__free(b->perm);
    stochflow__free(b->tidx);
    stochflow__free(b->vidx);
    stochflow__free(b->sub);
    stochflow__free(b->all);
    stochflow__free(b->scratch);
    stochflow__free(b->mask);
}

STOCHFLOW_API int stochflow_trainer_set_parallel(stochflow_trainer *tr,
                                                 const stochflow_trainer_parallel *p,
                                                 void *user) {
    RETURN_ERROR_IF(tr == NULL, STOCHFLOW_E_INVALID, "trainer_set_parallel: trainer is NULL");
    if (p == NULL) {
        tr->par_on = 0;
        memset(&tr->par, 0, sizeof tr->par);
        tr->par_user = NULL;
        return 0;
    }
    RETURN_ERROR_IF(p->size == 0 || p->rank >= p->size, STOCHFLOW_E_INVALID,
                    "trainer_set_parallel: rank %zu of %zu", p->rank, p->size);
    RETURN_ERROR_IF(p->step == NULL || p->share == NULL || p->agree == NULL,
                    STOCHFLOW_E_INVALID,
                    "trainer_set_parallel: step, share and agree callbacks are required");
    tr->par = *p;
    tr->par_user = user;
    tr->par_on = 1;
    return 0;
}

/* The standardization fitted on the training rows [n_train] (fetched whole), by one
 * process when there are several (rank 0) and shared: every process installs the same
 * map. *fitted = 1 once this process installed one. */
static int fit_standardization(int *fitted, stochflow_trainer *tr, stochflow_model *m,
                               const rowsrc *S, size_t n_train, int whiten) {
    const size_t d = S->d;
    *fitted = 0;
    int rc = 0;
    double *v = NULL;
    float *rows = NULL;
    size_t *sel = NULL;
    const int fits = !tr->par_on || tr->par.rank == 0;
    /* shared under set_parallel: shift, scale and (whitening) the d x d factor; the
     * whitening's dimension limit (lib/standardize.c) checked before that allocation */
    RETURN_ERROR_IF(whiten && d > STOCHFLOW__MAX_WHITEN_DIM, STOCHFLOW_E_INVALID,
                    "trainer_fit: whitening is limited to %d columns, the data has %zu (use "
                    "the per-column standardization)", STOCHFLOW__MAX_WHITEN_DIM, d);
    const size_t nv = whiten ? 2 * d + d * d : 2 * d;
    if (tr->par_on) {
        v = stochflow__alloc_array(nv, sizeof(double));
        if (v == NULL) rc = stochflow__error(STOCHFLOW_E_NOMEM, "trainer_fit: out of memory");
    }
    if (rc == 0 && fits) {
        if (S->x != NULL && S->tidx == NULL) { /* the caller's rows, in place */
            rc = whiten ? stochflow_model_fit_whitening(m, S->x, n_train)
                        : stochflow_model_fit_standardization(m, S->x, n_train);
        } else {
            rows = stochflow__alloc_array(n_train * d, sizeof(float));
            sel = stochflow__alloc_array(n_train, sizeof(size_t));
            if (rows == NULL || sel == NULL) {
                rc = stochflow__error(STOCHFLOW_E_NOMEM,
                                      "trainer_fit: out of memory for the %zu training rows "
                                      "the standardization is fitted on", n_train);
            } else {
                for (size_t i = 0; i < n_train; ++i) sel[i] = i;
                rowsrc S2 = *S;
                S2.scratch = sel; /* in place: scratch[j] = map(sel[j]) reads sel[j] first */
                rc = fetch(&S2, rows, sel, n_train, 0);
                if (rc == 0)
                    rc = whiten ? stochflow_model_fit_whitening(m, rows, n_train)
                                : stochflow_model_fit_standardization(m, rows, n_train);
            }
        }
        if (rc == 0) *fitted = 1;
        if (rc == 0 && v) rc = stochflow_model_standardization(v, v + d, m);
        if (rc > 0 && whiten) rc = stochflow_model_whitening(v + 2 * d, m);
        if (rc > 0) rc = 0; /* standardization() and whitening() return 1 when held */
    }
    if (tr->par_on && v) {
        int src = tr->par.share(tr->par_user, rc, v, nv, 0, fits ? nv : 0);
        if (rc == 0 && src != 0)
            rc = stochflow__error(STOCHFLOW_E_CALLBACK,
                                  "trainer_fit: the standardization of process 0 failed (share "
                                  "callback returned %d)", src);
        if (rc == 0 && !fits) {
            rc = whiten ? stochflow_model_set_whitening(m, v, v + d, v + 2 * d)
                        : stochflow_model_set_standardization(m, v, v + d);
            if (rc == 0) *fitted = 1;
        }
    }
    if (rc < 0 && *fitted) {
        stochflow_model_set_standardization(m, NULL, NULL);
        *fitted = 0;
    }
    stochflow__free(v);
    stochflow__free(rows);
    stochflow__free(sel);
    return rc;
}

/* Every process's flag, agreed (the largest); the flag itself with one process. */
static int agreed(stochflow_trainer *tr, int flag) {
    return tr->par_on ? tr->par.agree(tr->par_user, flag) : flag;
}

STOCHFLOW_API int stochflow_trainer_fit(stochflow_trainer *tr, stochflow_model *m,
                                        const float *x, size_t n, const float *xval,
                                        size_t nval) {
    RETURN_ERROR_IF(tr == NULL || m == NULL, STOCHFLOW_E_INVALID, "trainer_fit: NULL handle");
    const int by_rows = tr->par_on && tr->par.rows != NULL && x == NULL;
    RETURN_ERROR_IF((x == NULL && !by_rows) || n == 0, STOCHFLOW_E_INVALID,
                    "trainer_fit: no training data");
    RETURN_ERROR_IF(xval == NULL && nval > 0 && !by_rows, STOCHFLOW_E_INVALID,
                    "trainer_fit: xval is NULL with nval = %zu", nval);
    const size_t d = stochflow_model_dim(m);
    size_t total;
    RETURN_ERROR_IF(stochflow__mul_size(&total, n, d) != 0, STOCHFLOW_E_INVALID,
                    "trainer_fit: n x d overflows");
    double gblock = 0;
    FORWARD_IF_ERROR(stochflow_model_get_param(&gblock, m, STOCHFLOW_PARAM_GRAD_BLOCK));
    RETURN_ERROR_IF(tr->par_on && gblock == 0, STOCHFLOW_E_INVALID,
                    "trainer_fit: data-parallel training needs STOCHFLOW_PARAM_GRAD_BLOCK set "
                    "on the model (the blocks the processes share)");
    /* (the rows callback's rows are checked where they are used: the gradient and the
     * solver refuse non-finite rows) */
    int rc_in = 0;
    for (size_t i = 0; x && i < n * d && rc_in == 0; ++i)
        if (!isfinite(x[i]))
            rc_in = stochflow__error(STOCHFLOW_E_NONFINITE,
                                     "trainer_fit: training row %zu, column %zu is not finite",
                                     i / d + 1, i % d + 1);
    for (size_t i = 0; xval && i < nval * d && rc_in == 0; ++i)
        if (!isfinite(xval[i]))
            rc_in = stochflow__error(STOCHFLOW_E_NONFINITE,
                                     "trainer_fit: validation row %zu, column %zu is not finite",
                                     i / d + 1, i % d + 1);
    /* Across processes the check is shared (one value, filled by process 0): processes
     * that hold rows and processes that read them through the callback fail together
     * instead of some waiting in a later call. */
    if (tr->par_on) {
        double flag = 0.0;
        int src = tr->par.share(tr->par_user, rc_in, &flag, 1, 0, tr->par.rank == 0 ? 1 : 0);
        if (rc_in == 0 && src != 0)
            rc_in = stochflow__error(STOCHFLOW_E_CALLBACK,
                                     "trainer_fit: another process refused its rows (share "
                                     "callback returned %d)", src);
    }
    if (rc_in < 0) return rc_in;
    const int have_val = xval != NULL || (by_rows && nval > 0);
    const double frac = get(tr, STOCHFLOW_TRAINER_VAL_FRACTION);
    RETURN_ERROR_IF(have_val && frac > 0, STOCHFLOW_E_INVALID,
                    "trainer_fit: both a validation matrix and a validation fraction given");
    size_t n_val = have_val ? nval : (size_t)floor(frac * (double)n + 0.5);
    size_t n_train = have_val ? n : n - n_val;
    RETURN_ERROR_IF(n_train == 0 || (frac > 0 && n_val == 0), STOCHFLOW_E_INVALID,
                    "trainer_fit: validation fraction %g of %zu rows leaves an empty split",
                    frac, n);
    const int keep_best = get(tr, STOCHFLOW_TRAINER_KEEP_BEST) == 1 && n_val > 0;
    double old_horizon = 0;
    FORWARD_IF_ERROR(stochflow_model_get_param(&old_horizon, m, STOCHFLOW_PARAM_LR_TOTAL_STEPS));
    uint64_t seed = (uint64_t)get(tr, STOCHFLOW_TRAINER_SEED);
    if (seed == 0) {
        stochflow_config *cfg = NULL;
        FORWARD_IF_ERROR(stochflow_model_config(&cfg, m));
        seed = stochflow_config_seed(cfg);
        stochflow_config_free(cfg);
    }
    const size_t bs_param = (size_t)get(tr, STOCHFLOW_TRAINER_BATCH_SIZE);
    const size_t bs = bs_param < n_train ? bs_param : n_train;
    const size_t per_epoch = (n_train + bs - 1) / bs;
    const uint64_t max_steps = (uint64_t)get(tr, STOCHFLOW_TRAINER_MAX_STEPS);
    const double max_seconds = get(tr, STOCHFLOW_TRAINER_MAX_SECONDS);
    const uint64_t eval_every = (uint64_t)get(tr, STOCHFLOW_TRAINER_EVAL_EVERY);
    const uint64_t patience = (uint64_t)get(tr, STOCHFLOW_TRAINER_PATIENCE);
    const double min_delta = get(tr, STOCHFLOW_TRAINER_MIN_DELTA);
    size_t n_sub = (size_t)get(tr, STOCHFLOW_TRAINER_VAL_SUBSET);
    if (n_sub > n_val) n_sub = n_val;
    size_t vb = (size_t)get(tr, STOCHFLOW_TRAINER_VAL_BLOCK);
    if (vb == 0 || vb > n_val) vb = n_val; /* the largest solve */

    /* Everything that can fail for lack of memory, before the model is touched. */
    buffers b;
    memset(&b, 0, sizeof b);
    size_t np = stochflow_model_num_params(m);
    size_t nperm = n > n_val ? n : n_val;
    const size_t most = bs > vb ? bs : vb; /* rows fetched at once */
    b.perm = stochflow__alloc_array(nperm, sizeof(size_t));
    b.batch = stochflow__alloc_array(bs * d, sizeof(float));
    b.vbuf = stochflow__alloc_array(vb ? vb * d : 1, sizeof(float));
    b.logp = stochflow__alloc_array(vb ? vb : 1, sizeof(float));
    b.nll = stochflow__alloc_array(n_val ? n_val : 1, sizeof(double));
    b.sub = stochflow__alloc_array(n_sub ? n_sub : 1, sizeof(size_t));
    b.all = stochflow__alloc_array(n_val ? n_val : 1, sizeof(size_t));
    b.scratch = by_rows ? stochflow__alloc_array(most, sizeof(size_t)) : NULL;
    /* Continue the early-stopping state of an earlier call (or of a loaded state) when
     * it belongs to this model's current step; a fresh best-weights buffer is needed
     * only when none of the right size is kept. */
    const int ema_eval = stochflow__model_evaluates_ema(m);
    const int cont = tr->rs_valid && tr->rs_step == stochflow_model_step(m) &&
                     (tr->rs_np == np || tr->rs_np == 0) &&
                     /* a best of the other weights (EMA or live) is not comparable */
                     (!tr->rs_have_best || tr->rs_ema == ema_eval);
    const int need_w = keep_best && !(cont && tr->rs_np == np);
    b.best = need_w ? stochflow__calloc(np, sizeof(float)) : NULL; /* zeros until a best */
    if (!have_val) {
        b.tidx = stochflow__alloc_array(n_train, sizeof(size_t));
        b.vidx = stochflow__alloc_array(n_val ? n_val : 1, sizeof(size_t));
        b.mask = stochflow__malloc(n);
    }
    if (b.perm == NULL || b.batch == NULL || b.vbuf == NULL || b.logp == NULL ||
        b.nll == NULL || b.sub == NULL || b.all == NULL || (by_rows && b.scratch == NULL) ||
        (need_w && b.best == NULL) ||
        (!have_val && (b.tidx == NULL || b.vidx == NULL || b.mask == NULL))) {
        free_buffers(&b);
        return stochflow__error(STOCHFLOW_E_NOMEM, "trainer_fit: out of memory");
    }
    rowsrc S = {tr, x, xval, NULL, NULL, d, b.scratch};
    /* Split: a seeded permutation's first n_val rows validate, the others (in their
     * original order) train. */
    if (!have_val) {
        permutation(b.perm, n, seed, TRAINER_STREAM_SPLIT, 0);
        memcpy(b.vidx, b.perm, n_val * sizeof(size_t));
        /* the training rows keep their original order */
        memset(b.mask, 0, n);
        for (size_t k = 0; k < n_val; ++k) b.mask[b.perm[k]] = 1;
        size_t nr = 0;
        for (size_t i = 0; i < n; ++i)
            if (!b.mask[i]) b.tidx[nr++] = i;
        S.tidx = b.tidx;
        S.vidx = b.vidx;
    }
    /* The fixed evaluation subset: the first n_sub rows of a seeded permutation. */
    if (n_val > 0) {
        permutation(b.perm, n_val, seed, TRAINER_STREAM_SPLIT, 1);
        memcpy(b.sub, b.perm, n_sub * sizeof(size_t));
        for (size_t k = 0; k < n_val; ++k) b.all[k] = k;
    }
    const double fpc = n_val > 1 ? sqrt((double)(n_val - n_sub) / (double)(n_val - 1)) : 1.0;
    /* The standardization, fitted on the training rows only (lib/standardize.c): for an
     * untrained model without one; per column (1) or whitening (3). Fails (a constant or
     * collinear column) leaving the model as it was. */
    int fitted = 0;
    const int stdz = (int)get(tr, STOCHFLOW_TRAINER_STANDARDIZE);
    if (stdz != 2 && stochflow_model_step(m) == 0 &&
        stochflow_model_standardization(NULL, NULL, m) == 0 && n_train >= 2) {
        int rc = fit_standardization(&fitted, tr, m, &S, n_train, stdz == 3);
        if (rc < 0) {
            free_buffers(&b);
            return rc;
        }
    }

    /* From here on the model changes. */
    if (get(tr, STOCHFLOW_TRAINER_SET_HORIZON) == 1) {
        int rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)max_steps);
        if (rc < 0) {
            if (fitted) stochflow_model_set_standardization(m, NULL, NULL);
            free_buffers(&b);
            return rc;
        }
    }
    /* a kept best without its weights cannot be installed: tracking restarts */
    if (!cont || (need_w && tr->rs_have_best)) {
        tr->rs_have_best = 0;
        tr->rs_best = INFINITY;
        tr->rs_best_step = 0;
        tr->rs_since = 0;
    }
    if (need_w) {
        stochflow__free(tr->rs_w);
        tr->rs_w = b.best;
        b.best = NULL;
        tr->rs_np = np;
    } else if (!keep_best) { /* weights are not followed: drop stale ones */
        stochflow__free(tr->rs_w);
        tr->rs_w = NULL;
        tr->rs_np = 0;
    }
    tr->rs_valid = 1;
    tr->rs_ema = ema_eval;
    reset_stats(tr);
    if (tr->rs_have_best) {
        tr->stat_best_nll = tr->rs_best;
        tr->stat_best_step = tr->rs_best_step;
    }
    tr->stat_train_rows = (double)n_train;
    tr->stat_val_rows = (double)n_val;
    const double t_start = now_seconds();
    uint64_t cached_epoch = UINT64_MAX;
    int rc = 0, first = 1, late_agreed = 0;
    for (;;) {
        uint64_t s = stochflow_model_step(m);
        if (s >= max_steps) {
            tr->stat_stop = STOCHFLOW_TRAINER_STOP_STEPS;
            break;
        }
        /* the clock is each process's own: the processes agree on stopping (with the
         * progress callback's stop, after the previous step; before the first, here) */
        int late = max_seconds > 0 && now_seconds() - t_start >= max_seconds;
        if (tr->par_on) late = first ? agreed(tr, late) : late_agreed;
        first = 0;
        if (late != 0) {
            if (late < 0) {
                rc = stochflow__error(STOCHFLOW_E_CALLBACK,
                                      "trainer_fit: the agree callback returned %d", late);
                break;
            }
            tr->stat_stop = STOCHFLOW_TRAINER_STOP_TIME;
            break;
        }
        uint64_t epoch = s / per_epoch;
        size_t j = (size_t)(s % per_epoch);
        if (epoch != cached_epoch) {
            permutation(b.perm, n_train, seed, TRAINER_STREAM_SHUFFLE, epoch);
            cached_epoch = epoch;
        }
        size_t lo = j * bs, hi = lo + bs < n_train ? lo + bs : n_train;
        double loss;
        if (tr->par_on) { /* this process's share of the batch; the callback combines */
            size_t row0 = 0, rows = 0;
            int st = stochflow_grad_share(&row0, &rows, NULL, hi - lo, (size_t)gblock,
                                          tr->par.rank, tr->par.size);
            if (st == 0 && rows > 0) st = fetch(&S, b.batch, b.perm + lo + row0, rows, 0);
            int urc = tr->par.step(tr->par_user, st, &loss, m, b.batch, rows, row0, hi - lo);
            if (st < 0) rc = st;
            else if (urc != 0)
                rc = stochflow__error(STOCHFLOW_E_CALLBACK,
                                      "trainer_fit: the step callback returned %d at model "
                                      "step %llu", urc, (unsigned long long)s);
        } else {
            rc = fetch(&S, b.batch, b.perm + lo, hi - lo, 0);
            if (rc == 0) rc = stochflow_model_train_step(&loss, m, b.batch, hi - lo, NULL, NULL);
        }
        if (rc < 0) break;
        tr->stat_last_loss = loss;
        tr->stat_steps += 1;
        double vn = NAN, vse = NAN;
        if (n_val > 0 && (s + 1) % eval_every == 0) {
            rc = val_terms(b.nll, tr, m, &S, b.sub, n_sub, b.vbuf, b.logp);
            if (rc == 0) rc = nll_stats(&vn, &vse, b.nll, n_sub, fpc);
            if (rc < 0) break;
            tr->stat_evals += 1;
            if (!tr->rs_have_best || vn < tr->rs_best - min_delta) { /* first: always */
                tr->rs_best = vn;
                tr->rs_best_step = (double)(s + 1);
                tr->stat_best_nll = vn;
                tr->stat_best_step = (double)(s + 1);
                if (keep_best) memcpy(tr->rs_w, stochflow__model_eval_weights(m), np * sizeof(float));
                tr->rs_have_best = 1;
                tr->rs_since = 0;
            } else {
                ++tr->rs_since;
            }
        }
        int stop = tr->fn != NULL && tr->fn(tr->user, s + 1, loss, vn, vse) != 0;
        if (tr->par_on) { /* one agreement per step: 2 = someone stops, 1 = out of time */
            int f = agreed(tr, stop ? 2 : max_seconds > 0 && now_seconds() - t_start >= max_seconds);
            if (f < 0) {
                rc = stochflow__error(STOCHFLOW_E_CALLBACK,
                                      "trainer_fit: the agree callback returned %d", f);
                break;
            }
            stop = f == 2;
            late_agreed = f == 1;
        }
        if (stop) {
            tr->stat_stop = STOCHFLOW_TRAINER_STOP_CANCELLED;
            rc = stochflow__error(STOCHFLOW_E_CANCELLED,
                                  "trainer_fit: cancelled by the progress callback at step %llu",
                                  (unsigned long long)(s + 1));
            break;
        }
        if (patience > 0 && tr->rs_since >= patience) {
            tr->stat_stop = STOCHFLOW_TRAINER_STOP_PATIENCE;
            break;
        }
    }
    tr->rs_step = stochflow_model_step(m);
    if (rc == 0 && keep_best && tr->rs_have_best)
        memcpy(stochflow__model_eval_weights(m), tr->rs_w, np * sizeof(float));
    if (rc < 0 && tr->stat_steps == 0) { /* nothing trained: leave the model as it was */
        stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, old_horizon);
        if (fitted) stochflow_model_set_standardization(m, NULL, NULL);
    }
    if (rc == 0 && n_val > 0) {
        rc = val_terms(b.nll, tr, m, &S, b.all, n_val, b.vbuf, b.logp);
        if (rc == 0) rc = nll_stats(&tr->stat_final_nll, &tr->stat_final_se, b.nll, n_val, 1.0);
    }
    free_buffers(&b);
    return rc;
}

/* ---- the early-stopping state as bytes -------------------------------------------- */
/* Layout (little-endian): "SFTS", u32 version = 1, u32 flags (bit 0: have_best; bit 1:
 * the best is of the EMA weights, not the live ones),
 * u32 0, u64 step, f64 best, f64 best_step, u64 evaluations since the best, u64 np,
 * np float32 best weights, u32 CRC-32 of all preceding bytes. */
#define STATE_HEAD 56

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t f64_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}
static double bits_f64(uint64_t u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}

STOCHFLOW_API int stochflow_trainer_state_size(size_t *size, const stochflow_trainer *tr) {
    RETURN_ERROR_IF(size == NULL || tr == NULL, STOCHFLOW_E_INVALID,
                    "trainer_state_size: NULL argument");
    RETURN_ERROR_IF(!tr->rs_valid, STOCHFLOW_E_INVALID,
                    "trainer_state_size: no fit has run on this trainer");
    *size = STATE_HEAD + tr->rs_np * 4 + 4;
    return 0;
}

STOCHFLOW_API int stochflow_trainer_save_state(size_t *written, const stochflow_trainer *tr,
                                               void *buf, size_t cap) {
    size_t need;
    FORWARD_IF_ERROR(stochflow_trainer_state_size(&need, tr));
    RETURN_ERROR_IF(written == NULL || buf == NULL, STOCHFLOW_E_INVALID,
                    "trainer_save_state: NULL argument");
    RETURN_ERROR_IF(cap < need, STOCHFLOW_E_INVALID,
                    "trainer_save_state: buffer of %zu bytes, need %zu", cap, need);
    unsigned char *p = buf;
    memcpy(p, "SFTS", 4);
    put32(p + 4, 1);
    put32(p + 8, (tr->rs_have_best ? 1u : 0u) | (tr->rs_ema ? 2u : 0u));
    put32(p + 12, 0);
    put64(p + 16, tr->rs_step);
    put64(p + 24, f64_bits(tr->rs_best));
    put64(p + 32, f64_bits(tr->rs_best_step));
    put64(p + 40, tr->rs_since);
    put64(p + 48, tr->rs_np);
    for (size_t i = 0; i < tr->rs_np; ++i) {
        uint32_t w;
        memcpy(&w, &tr->rs_w[i], 4);
        put32(p + STATE_HEAD + 4 * i, w);
    }
    put32(p + need - 4, stochflow__crc32(p, need - 4));
    *written = need;
    return 0;
}

STOCHFLOW_API int stochflow_trainer_load_state(stochflow_trainer *tr, const void *buf,
                                               size_t len) {
    RETURN_ERROR_IF(tr == NULL || (buf == NULL && len > 0), STOCHFLOW_E_INVALID,
                    "trainer_load_state: NULL argument");
    if (buf == NULL) { /* (NULL, 0): forget the state; the next fit starts afresh */
        stochflow__free(tr->rs_w);
        tr->rs_w = NULL;
        tr->rs_np = 0;
        tr->rs_valid = tr->rs_have_best = 0;
        return 0;
    }
    const unsigned char *p = buf;
    RETURN_ERROR_IF(len < STATE_HEAD + 4 || memcmp(p, "SFTS", 4) != 0, STOCHFLOW_E_FORMAT,
                    "trainer state: not a trainer state (bad magic or too short)");
    RETURN_ERROR_IF(get32(p + 4) != 1, STOCHFLOW_E_VERSION,
                    "trainer state: version %u, this library reads 1", get32(p + 4));
    uint64_t np = get64(p + 48);
    RETURN_ERROR_IF(np > (len - STATE_HEAD - 4) / 4 || STATE_HEAD + np * 4 + 4 != len,
                    STOCHFLOW_E_FORMAT, "trainer state: %zu bytes do not hold %llu weights",
                    len, (unsigned long long)np);
    RETURN_ERROR_IF(get32(p + len - 4) != stochflow__crc32(p, len - 4), STOCHFLOW_E_FORMAT,
                    "trainer state: CRC-32 mismatch (corrupted)");
    uint32_t flags = get32(p + 8);
    RETURN_ERROR_IF((flags & ~3u) != 0 || get32(p + 12) != 0, STOCHFLOW_E_FORMAT,
                    "trainer state: unknown flags");
    double best = bits_f64(get64(p + 24)), best_step = bits_f64(get64(p + 32));
    RETURN_ERROR_IF((flags & 1u) && (!isfinite(best) || !(best_step >= 0)), STOCHFLOW_E_FORMAT,
                    "trainer state: the best value is not finite");
    RETURN_ERROR_IF(!(flags & 1u) && (best != INFINITY || best_step != 0 || get64(p + 40) != 0),
                    STOCHFLOW_E_FORMAT, "trainer state: no best, yet a best value is set");
    float *w = NULL;
    if (np > 0) {
        w = stochflow__alloc_array((size_t)np, sizeof(float));
        RETURN_ERROR_IF(w == NULL, STOCHFLOW_E_NOMEM, "trainer state: out of memory");
        for (size_t i = 0; i < np; ++i) {
            uint32_t u = get32(p + STATE_HEAD + 4 * i);
            memcpy(&w[i], &u, 4);
            if (!isfinite(w[i])) {
                stochflow__free(w);
                return stochflow__error(STOCHFLOW_E_FORMAT,
                                        "trainer state: best weight %zu is not finite", i);
            }
        }
    }
    stochflow__free(tr->rs_w);
    tr->rs_w = w;
    tr->rs_np = (size_t)np;
    tr->rs_valid = 1;
    tr->rs_have_best = (flags & 1u) != 0;
    tr->rs_ema = (flags & 2u) != 0;
    tr->rs_step = get64(p + 16);
    tr->rs_best = tr->rs_have_best ? best : INFINITY;
    tr->rs_best_step = best_step;
    tr->rs_since = get64(p + 40);
    return 0;
}
