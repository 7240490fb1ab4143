/* params.c - the table of keyed parameters: bounds, defaults, model fields.
 * Keys are grouped by hundreds (100 optimizer, 200 ODE, 300 density, 400 runtime) and
 * never renumbered. Setting 0 restores the default, so no key accepts 0 as a value
 * unless its default is 0. */
#include <stddef.h>

#include "model.h"

typedef struct {
    int key;
    double lo, hi, def;
    int integer; /* value must be integral */
    const char *name;
} param_info;

static const param_info table[] = {
    {STOCHFLOW_PARAM_LR, 1e-12, 10.0, 1e-3, 0, "lr"},
    {STOCHFLOW_PARAM_BETA1, 1e-6, 0.999999, 0.9, 0, "beta1"},
    {STOCHFLOW_PARAM_BETA2, 1e-6, 0.99999999, 0.999, 0, "beta2"},
    {STOCHFLOW_PARAM_ADAM_EPS, 1e-30, 1.0, 1e-8, 0, "adam_eps"},
    {STOCHFLOW_PARAM_WEIGHT_DECAY, 0.0, 1.0, 0.0, 0, "weight_decay"},
    {STOCHFLOW_PARAM_GRAD_CLIP, 0.0, 1e12, 0.0, 0, "grad_clip"},
    {STOCHFLOW_PARAM_EMA_DECAY, 0.0, 0.999999999, 0.0, 0, "ema_decay"},
    {STOCHFLOW_PARAM_LR_SCHEDULE, 1, 3, STOCHFLOW_LR_CONSTANT, 1, "lr_schedule"},
    {STOCHFLOW_PARAM_LR_DECAY_EVERY, 1, 1e12, 1000, 1, "lr_decay_every"},
    {STOCHFLOW_PARAM_LR_DECAY_FACTOR, 1e-6, 1.0, 0.5, 0, "lr_decay_factor"},
    {STOCHFLOW_PARAM_LR_WARMUP, 0, 1e12, 0, 1, "lr_warmup"},
    {STOCHFLOW_PARAM_LR_TOTAL_STEPS, 1, 1e12, 10000, 1, "lr_total_steps"},
    {STOCHFLOW_PARAM_LR_MIN, 0.0, 10.0, 0.0, 0, "lr_min"},
    /* 1 = Keras-style EMA warm-up, 2 = constant decay (lib/optimizer.c) */
    {STOCHFLOW_PARAM_EMA_WARMUP, 1, 2, 2, 1, "ema_warmup"},
    /* issue 9: learnable interpolant and couplings (lib/transport.c) */
    {STOCHFLOW_PARAM_INTERP_LR, 1e-12, 10.0, 1e-3, 0, "interp_lr"},
    {STOCHFLOW_PARAM_COUPLING, 1, 3, STOCHFLOW_COUPLING_INDEPENDENT, 1, "coupling"},
    {STOCHFLOW_PARAM_SINKHORN_REG, 1e-4, 10.0, 0.05, 0, "sinkhorn_reg"},
    {STOCHFLOW_PARAM_SOLVER, 1, 4, STOCHFLOW_SOLVER_DOPRI5, 1, "solver"},
    {STOCHFLOW_PARAM_STEPS, 1, 1e8, 100, 1, "steps"},
    {STOCHFLOW_PARAM_RTOL, 1e-14, 1.0, 1e-5, 0, "rtol"},
    {STOCHFLOW_PARAM_ATOL, 1e-14, 1.0, 1e-5, 0, "atol"},
    {STOCHFLOW_PARAM_H_INIT, 0.0, 1.0, 0.0, 0, "h_init"},
    {STOCHFLOW_PARAM_H_MIN, 1e-300, 1.0, 1e-12, 0, "h_min"},
    {STOCHFLOW_PARAM_MAX_STEPS, 1, 1e9, 100000, 1, "max_steps"},
    {STOCHFLOW_PARAM_LOGP_ERROR, 1, 2, 1, 1, "logp_error"},
    {STOCHFLOW_PARAM_TRACE, 1, 2, STOCHFLOW_TRACE_EXACT, 1, "trace"},
    {STOCHFLOW_PARAM_PROBES, 1, 65536, 1, 1, "probes"},
    {STOCHFLOW_PARAM_PROBE_DIST, 1, 2, STOCHFLOW_PROBE_RADEMACHER, 1, "probe_dist"},
    {STOCHFLOW_PARAM_THREADS, 1, 256, 1, 1, "threads"},
    {STOCHFLOW_PARAM_EVAL_WEIGHTS, 1, 2, 1, 1, "eval_weights"},
};

static const param_info *find(int key) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; ++i)
        if (table[i].key == key) return &table[i];
    return NULL;
}

STOCHFLOW_API int stochflow_param_bounds(double *lo, double *hi, double *def, int key) {
    const param_info *p = find(key);
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_UNSUPPORTED, "unknown parameter key %d", key);
    if (lo) *lo = p->lo;
    if (hi) *hi = p->hi;
    if (def) *def = p->def;
    return 0;
}

int stochflow__param_resolve(double *resolved, int key, double value) {
    const param_info *p = find(key);
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_UNSUPPORTED, "unknown parameter key %d", key);
    if (value == 0.0) {
        *resolved = p->def;
        return 0;
    }
    RETURN_ERROR_IF(!(value >= p->lo && value <= p->hi), STOCHFLOW_E_INVALID,
                    "parameter %s (%d) = %g out of range [%g, %g]", p->name, key, value, p->lo,
                    p->hi);
    RETURN_ERROR_IF(p->integer && value != (double)(long long)value, STOCHFLOW_E_INVALID,
                    "parameter %s (%d) must be an integer, got %g", p->name, key, value);
    *resolved = value;
    return 0;
}

void stochflow__hparams_defaults(stochflow__hparams *hp) {
    static const int keys[] = {
        STOCHFLOW_PARAM_LR, STOCHFLOW_PARAM_BETA1, STOCHFLOW_PARAM_BETA2,
        STOCHFLOW_PARAM_ADAM_EPS, STOCHFLOW_PARAM_WEIGHT_DECAY, STOCHFLOW_PARAM_GRAD_CLIP,
        STOCHFLOW_PARAM_EMA_DECAY, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_PARAM_LR_DECAY_EVERY,
        STOCHFLOW_PARAM_LR_DECAY_FACTOR, STOCHFLOW_PARAM_LR_WARMUP,
        STOCHFLOW_PARAM_LR_TOTAL_STEPS, STOCHFLOW_PARAM_LR_MIN, STOCHFLOW_PARAM_THREADS,
        STOCHFLOW_PARAM_EVAL_WEIGHTS,
        STOCHFLOW_PARAM_INTERP_LR, STOCHFLOW_PARAM_COUPLING, STOCHFLOW_PARAM_SINKHORN_REG,
        STOCHFLOW_PARAM_EMA_WARMUP};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; ++i)
        *stochflow__hparams_field(hp, keys[i]) = find(keys[i])->def;
}

double *stochflow__hparams_field(stochflow__hparams *hp, int key) {
    switch (key) {
    case STOCHFLOW_PARAM_LR: return &hp->lr;
    case STOCHFLOW_PARAM_BETA1: return &hp->beta1;
    case STOCHFLOW_PARAM_BETA2: return &hp->beta2;
    case STOCHFLOW_PARAM_ADAM_EPS: return &hp->eps;
    case STOCHFLOW_PARAM_WEIGHT_DECAY: return &hp->weight_decay;
    case STOCHFLOW_PARAM_GRAD_CLIP: return &hp->grad_clip;
    case STOCHFLOW_PARAM_EMA_DECAY: return &hp->ema_decay;
    case STOCHFLOW_PARAM_LR_SCHEDULE: return &hp->lr_schedule;
    case STOCHFLOW_PARAM_LR_DECAY_EVERY: return &hp->lr_decay_every;
    case STOCHFLOW_PARAM_LR_DECAY_FACTOR: return &hp->lr_decay_factor;
    case STOCHFLOW_PARAM_LR_WARMUP: return &hp->lr_warmup;
    case STOCHFLOW_PARAM_LR_TOTAL_STEPS: return &hp->lr_total_steps;
    case STOCHFLOW_PARAM_LR_MIN: return &hp->lr_min;
    case STOCHFLOW_PARAM_THREADS: return &hp->threads;
    case STOCHFLOW_PARAM_EVAL_WEIGHTS: return &hp->eval_weights;
    case STOCHFLOW_PARAM_INTERP_LR: return &hp->interp_lr;
    case STOCHFLOW_PARAM_COUPLING: return &hp->coupling;
    case STOCHFLOW_PARAM_SINKHORN_REG: return &hp->sinkhorn_reg;
    case STOCHFLOW_PARAM_EMA_WARMUP: return &hp->ema_warmup;
    default: return NULL;
    }
}
