/* params.c - the table of keyed parameters (see params.h): names, owners, types, bounds,
 * defaults and fields. Keys are grouped by hundreds (100 optimizer, 200 ODE, 300 density,
 * 400 runtime) and never renumbered. Setting 0 restores the default, so no key accepts 0
 * as an explicit value unless its lower bound is 0. */
#include <stddef.h>
#include <string.h>

#include "model.h"
#include "params.h"
#include "solver.h"

#define M_(field) STOCHFLOW__OWNER_MODEL, offsetof(stochflow__hparams, field), 0
/* a model key newer than the original checkpoint format: in HPAR only when set */
#define MW_(field) STOCHFLOW__OWNER_MODEL, offsetof(stochflow__hparams, field), 1
#define S_(field) STOCHFLOW__OWNER_SOLVER, offsetof(struct stochflow_solver, field), 0
#define DBL STOCHFLOW__PTYPE_DOUBLE
#define INT STOCHFLOW__PTYPE_INT
#define ENUM STOCHFLOW__PTYPE_ENUM

/* The order is the checkpoint's HPAR order for the model keys (doc/checkpoint-format.md):
 * append new keys at the end of their owner's block, never reorder. */
static const stochflow__param_info table[] = {
    /* model: optimizer (100s) and runtime (400s) */
    {STOCHFLOW_PARAM_LR, "lr", DBL, 1e-12, 10.0, 1e-3, M_(lr)},
    {STOCHFLOW_PARAM_BETA1, "beta1", DBL, 1e-6, 0.999999, 0.9, M_(beta1)},
    {STOCHFLOW_PARAM_BETA2, "beta2", DBL, 1e-6, 0.99999999, 0.999, M_(beta2)},
    {STOCHFLOW_PARAM_ADAM_EPS, "adam_eps", DBL, 1e-30, 1.0, 1e-8, M_(eps)},
    {STOCHFLOW_PARAM_WEIGHT_DECAY, "weight_decay", DBL, 0.0, 1.0, 0.0, M_(weight_decay)},
    {STOCHFLOW_PARAM_GRAD_CLIP, "grad_clip", DBL, 0.0, 1e12, 0.0, M_(grad_clip)},
    {STOCHFLOW_PARAM_EMA_DECAY, "ema_decay", DBL, 0.0, 0.999999999, 0.0, M_(ema_decay)},
    {STOCHFLOW_PARAM_LR_SCHEDULE, "lr_schedule", ENUM, STOCHFLOW_LR_CONSTANT, STOCHFLOW_LR_COSINE,
     STOCHFLOW_LR_CONSTANT, M_(lr_schedule)},
    {STOCHFLOW_PARAM_LR_DECAY_EVERY, "lr_decay_every", INT, 1, 1e12, 1000, M_(lr_decay_every)},
    {STOCHFLOW_PARAM_LR_DECAY_FACTOR, "lr_decay_factor", DBL, 1e-6, 1.0, 0.5,
     M_(lr_decay_factor)},
    {STOCHFLOW_PARAM_LR_WARMUP, "lr_warmup", INT, 0, 1e12, 0, M_(lr_warmup)},
    {STOCHFLOW_PARAM_LR_TOTAL_STEPS, "lr_total_steps", INT, 1, 1e12, 10000, M_(lr_total_steps)},
    {STOCHFLOW_PARAM_LR_MIN, "lr_min", DBL, 0.0, 10.0, 0.0, M_(lr_min)},
    {STOCHFLOW_PARAM_THREADS, "threads", INT, 1, 256, 1, M_(threads)},
    /* 1 = EMA weights when enabled, 2 = live weights */
    {STOCHFLOW_PARAM_EVAL_WEIGHTS, "eval_weights", ENUM, 1, 2, 1, M_(eval_weights)},
    /* learnable interpolant and couplings (lib/transport.c) */
    {STOCHFLOW_PARAM_INTERP_LR, "interp_lr", DBL, 1e-12, 10.0, 1e-3, M_(interp_lr)},
    {STOCHFLOW_PARAM_COUPLING, "coupling", ENUM, STOCHFLOW_COUPLING_INDEPENDENT,
     STOCHFLOW_COUPLING_SINKHORN, STOCHFLOW_COUPLING_INDEPENDENT, M_(coupling)},
    {STOCHFLOW_PARAM_SINKHORN_REG, "sinkhorn_reg", DBL, 1e-4, 10.0, 0.05, M_(sinkhorn_reg)},
    /* 1 = Keras-style EMA warm-up, 2 = constant decay (lib/optimizer.c) */
    {STOCHFLOW_PARAM_EMA_WARMUP, "ema_warmup", ENUM, 1, 2, 2, M_(ema_warmup)},
    /* rows per gradient block summed along one tree, 0 = off (doc/distributed.md) */
    {STOCHFLOW_PARAM_GRAD_BLOCK, "grad_block", INT, 1, 268435456, 0, MW_(grad_block)},
    /* per-row context dropout of conditional training (doc/conditional.md) */
    {STOCHFLOW_PARAM_CTX_DROPOUT, "ctx_dropout", DBL, 0.0, 1.0, 0.0, MW_(ctx_dropout)},
    /* 1 = each row's own dI/dt, 2 = its posterior mean over the batch (lib/target.c) */
    {STOCHFLOW_PARAM_TRAIN_TARGET, "train_target", ENUM, STOCHFLOW_TRAIN_TARGET_DRAW,
     STOCHFLOW_TRAIN_TARGET_BATCH, STOCHFLOW_TRAIN_TARGET_DRAW, MW_(train_target)},

    /* solver: ODE integration (200s) and log-density (300s) */
    {STOCHFLOW_PARAM_SOLVER, "solver", ENUM, 1, 4, STOCHFLOW_SOLVER_DOPRI5, S_(solver)},
    {STOCHFLOW_PARAM_STEPS, "steps", INT, 1, 1e8, 100, S_(steps)},
    {STOCHFLOW_PARAM_RTOL, "rtol", DBL, 1e-14, 1.0, 1e-5, S_(rtol)},
    {STOCHFLOW_PARAM_ATOL, "atol", DBL, 1e-14, 1.0, 1e-5, S_(atol)},
    {STOCHFLOW_PARAM_H_INIT, "h_init", DBL, 0.0, 1.0, 0.0, S_(h_init)},
    {STOCHFLOW_PARAM_H_MIN, "h_min", DBL, 1e-300, 1.0, 1e-12, S_(h_min)},
    {STOCHFLOW_PARAM_MAX_STEPS, "max_steps", INT, 1, 1e9, 100000, S_(max_steps)},
    /* 1 = log-density in the error norm, 2 = not */
    {STOCHFLOW_PARAM_LOGP_ERROR, "logp_error", ENUM, 1, 2, 1, S_(logp_error)},
    {STOCHFLOW_PARAM_TRACE, "trace", ENUM, STOCHFLOW_TRACE_EXACT, STOCHFLOW_TRACE_HUTCHINSON,
     STOCHFLOW_TRACE_EXACT, S_(trace)},
    {STOCHFLOW_PARAM_PROBES, "probes", INT, 1, 65536, 1, S_(probes)},
    {STOCHFLOW_PARAM_PROBE_DIST, "probe_dist", ENUM, STOCHFLOW_PROBE_RADEMACHER,
     STOCHFLOW_PROBE_GAUSSIAN, STOCHFLOW_PROBE_RADEMACHER, S_(probe_dist)},
    /* classifier-free guidance scale w of conditional models (doc/conditional.md) */
    {STOCHFLOW_PARAM_GUIDANCE, "guidance", DBL, -1.0, 1000.0, 0.0, S_(guidance)},
};

#define N_ROWS (sizeof table / sizeof table[0])

const stochflow__param_info *stochflow__param_table(size_t *count) {
    *count = N_ROWS;
    return table;
}

const stochflow__param_info *stochflow__param_find(int key) {
    for (size_t i = 0; i < N_ROWS; ++i)
        if (table[i].key == key) return &table[i];
    return NULL;
}

double *stochflow__param_field(void *obj, int owner, int key) {
    const stochflow__param_info *p = stochflow__param_find(key);
    if (p == NULL || p->owner != owner) return NULL;
    return (double *)((char *)obj + p->offset);
}

void stochflow__param_defaults(void *obj, int owner) {
    for (size_t i = 0; i < N_ROWS; ++i)
        if (table[i].owner == owner) *(double *)((char *)obj + table[i].offset) = table[i].def;
}

int stochflow__param_resolve(double *resolved, int key, double value) {
    const stochflow__param_info *p = stochflow__param_find(key);
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_UNSUPPORTED, "unknown parameter key %d", key);
    if (value == 0.0) {
        *resolved = p->def;
        return 0;
    }
    RETURN_ERROR_IF(!(value >= p->lo && value <= p->hi), STOCHFLOW_E_INVALID,
                    "parameter %s (%d) = %g out of range [%g, %g]", p->name, key, value, p->lo,
                    p->hi);
    RETURN_ERROR_IF(p->type != STOCHFLOW__PTYPE_DOUBLE && value != (double)(long long)value,
                    STOCHFLOW_E_INVALID, "parameter %s (%d) must be an integer, got %g", p->name,
                    key, value);
    *resolved = value;
    return 0;
}

void stochflow__hparams_defaults(stochflow__hparams *hp) {
    stochflow__param_defaults(hp, STOCHFLOW__OWNER_MODEL);
}

double *stochflow__hparams_field(stochflow__hparams *hp, int key) {
    return stochflow__param_field(hp, STOCHFLOW__OWNER_MODEL, key);
}

double *stochflow__solver_field(stochflow_solver *s, int key) {
    return stochflow__param_field(s, STOCHFLOW__OWNER_SOLVER, key);
}

void stochflow__solver_defaults(stochflow_solver *s) {
    stochflow__param_defaults(s, STOCHFLOW__OWNER_SOLVER);
}

/* ---- public lookups --------------------------------------------------------------- */

STOCHFLOW_API int stochflow_param_bounds(double *lo, double *hi, double *def, int key) {
    const stochflow__param_info *p = stochflow__param_find(key);
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_UNSUPPORTED, "unknown parameter key %d", key);
    if (lo) *lo = p->lo;
    if (hi) *hi = p->hi;
    if (def) *def = p->def;
    return 0;
}

STOCHFLOW_API const char *stochflow_param_name(int key) {
    const stochflow__param_info *p = stochflow__param_find(key);
    return p ? p->name : NULL;
}

STOCHFLOW_API int stochflow_param_key(int *key, const char *name) {
    RETURN_ERROR_IF(key == NULL || name == NULL, STOCHFLOW_E_INVALID,
                    "param_key: NULL argument");
    for (size_t i = 0; i < N_ROWS; ++i)
        if (strcmp(table[i].name, name) == 0) {
            *key = table[i].key;
            return 0;
        }
    return stochflow__error(STOCHFLOW_E_UNSUPPORTED, "unknown parameter name \"%.64s\"", name);
}

STOCHFLOW_API size_t stochflow_param_count(void) { return N_ROWS; }

STOCHFLOW_API int stochflow_param_key_at(size_t i) { return i < N_ROWS ? table[i].key : 0; }
