/* training.h - the training loop of the stochflow program (training.c), shared by
 * `train` (2-D/tabular data and images) and `demo`. Public API of <stochflow.h> only. */
#ifndef STOCHFLOW_TOOLS_TRAINING_H
#define STOCHFLOW_TOOLS_TRAINING_H

#include "common.h"

/* Fill the batch of model step `step`: set *x (batch x d) and *x0 (base samples, or NULL
 * for N(0, I)) to buffers the filler owns. 0, or CLI_ERR (printed). */
typedef int (*batch_filler)(void *user, const float **x, const float **x0, uint64_t step);

/* After every step: 0 to go on, 1 to stop as if interrupted, CLI_ERR to stop with a
 * failure written into fail (training stops, the caller still saves its model). */
typedef int (*step_hook)(void *user, stochflow_model *m, uint64_t step, char *fail,
                         size_t cap);

typedef struct {
    uint64_t steps;       /* steps to run now */
    size_t batch;
    const char *label;    /* progress label */
    batch_filler fill;
    void *fill_user;
    const char *checkpoint; /* saved (atomically) after every checkpoint_every-th model step */
    uint64_t checkpoint_every; /* 0: never */
    step_hook hook;       /* NULL: none */
    void *hook_user;
    int keep_history;     /* keep every loss (the demo's curve); else only the last 100 */
    /* conditional models: the filler's buffers of each batch's context (batch x n_ctx)
     * and labels (batch), refilled by fill with the batch; NULL: none */
    const float *ctx;
    const int32_t *labels;
    /* wall-clock budget in seconds (0: none): the loop stops after the step that spends
     * it; with time_schedule the model's LR_TOTAL_STEPS follows the steps the budget will
     * allow at the rate so far (re-estimated every 10 steps), so a cosine schedule spans
     * the budget */
    double seconds;
    int time_schedule;
} train_spec;

typedef struct {
    uint64_t steps_run, checkpoints;
    double seconds, last_loss, mean_loss; /* mean of the last min(100, steps_run) losses */
    double *history;      /* keep_history: steps_run losses (caller frees) */
    int interrupted;      /* SIGINT/SIGTERM (or the hook) stopped the loop after a step */
    char fail[6144];      /* a periodic file failed: "PATH: why" (training stopped) */
} train_result;

/* The horizon (STOCHFLOW_PARAM_LR_TOTAL_STEPS) of a cosine that spans a --time budget:
 * the model steps the budget allows at the rate so far (done steps since step0 in elapsed
 * seconds), at least the next step, never beyond the run's bound step0 + max_steps (so
 * exactly that bound once the run's last step is done), and within the library's range. */
double time_horizon(uint64_t step0, uint64_t done, double elapsed, double budget,
                    uint64_t max_steps);

/* Run sp->steps training steps. 0 when the loop ended (all steps, interrupted, or a
 * periodic file failed: see res), CLI_ERR when a step or the filler failed (printed). The
 * loss history grows with the steps run, so --steps 10^9 needs no memory up front. */
int train_run(train_result *res, stochflow_model *m, const train_spec *sp);

/* Batches of 2-D/tabular data (train, demo): b rows of ds (and of base, when not NULL),
 * in buffers x (b x d), x0 (b x d, with a base) and z (b floats) the caller owns. Toys:
 * a fresh draw from stream = step; files: rows uniformly with replacement, indices keyed
 * by (seed, stream = step, i). */
typedef struct {
    const dataset *ds, *base;
    size_t b;
    uint64_t seed;
    float *x, *x0;
    double *u; /* b uniform draws: row indices */
    /* conditioning rows of ds (n x k context, n labels; NULL: none), copied with the rows
     * drawn into cb (b x k) and lb (b) */
    const float *ctx;
    size_t k;
    const int32_t *labels;
    float *cb;
    int32_t *lb;
} points_batch;
int fill_points(void *user, const float **x, const float **x0, uint64_t step);

/* The training recipe of a new MLP model (doc/training-recipe.md, measured in
 * bench/RECIPE.md): Adam at peak learning rate RECIPE_LR on a cosine schedule that decays
 * to 0 over exactly the run's steps, batch RECIPE_BATCH. `train` applies it to every new
 * MLP model before the user's optimizer options (which override it); a resumed model
 * keeps the schedule in its checkpoint. */
#define RECIPE_LR 2e-3
#define RECIPE_BATCH 256
/* Set the recipe's optimizer settings on a new model trained for `steps` steps: 0 or
 * CLI_ERR (printed). */
int apply_recipe(stochflow_model *m, uint64_t steps);

/* The optimizer options of train/demo (only those given are applied): 0, CLI_USAGE or
 * CLI_ERR. fresh: a new model (a cosine schedule then spans `steps`). */
int apply_train_params(stochflow_model *m, const opts *o, int fresh, uint64_t steps);
/* Check the optimizer options' values without a model (before any work). */
int check_train_params(const opts *o);

/* A new MLP model of dimension dim from the architecture options (--hidden --activation
 * --interpolant --time-fourier --seed), with default widths and time features (train,
 * demo): 0, CLI_USAGE or CLI_ERR. check_mlp_options: their values alone, before any data
 * is read: 0 or CLI_USAGE. */
int build_mlp(stochflow_model **m, const opts *o, size_t dim, const char *def_hidden,
              int def_fourier);
/* build_mlp of a conditional model: n_ctx context floats and n_classes labels per row. */
int build_mlp_cond(stochflow_model **m, const opts *o, size_t dim, const char *def_hidden,
                   int def_fourier, size_t n_ctx, size_t n_classes);
int check_mlp_options(const opts *o);

#endif
