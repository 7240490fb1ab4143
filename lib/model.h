/* model.h - the configuration and the model handle's layout, shared by model.c,
 * optimizer.c, interpolant.c, transport.c, coupling.c, checkpoint.c and config.c.
 * Private to the library. The network behind the handle: network.h. */
#ifndef STOCHFLOW_MODEL_H
#define STOCHFLOW_MODEL_H

#include "internal.h"
#include "network.h"
#include "transport.h"
#include "unet.h"

#define STOCHFLOW__MAX_HIDDEN 64
#define STOCHFLOW__MAX_WIDTH 65536
#define STOCHFLOW__MAX_DIM 65536
#define STOCHFLOW__MAX_FREQ 64

struct stochflow_config {
    size_t dim;
    size_t n_hidden;
    size_t hidden[STOCHFLOW__MAX_HIDDEN];
    int activation;   /* STOCHFLOW_ACT_* (resolved, never 0) */
    int time_kind;    /* STOCHFLOW_TIME_* */
    size_t n_freq;    /* FOURIER only */
    stochflow__interp interp; /* kind, schedule, Fourier base/modes/coefficients */
    uint64_t seed;
    int arch;         /* STOCHFLOW_ARCH_* */
    stochflow__unet_cfg unet; /* ARCH_UNET only */
};

/* Optimizer and runtime settings (keyed parameters). */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay, grad_clip, ema_decay;
    double lr_schedule, lr_decay_every, lr_decay_factor, lr_warmup, lr_total_steps, lr_min;
    double threads, eval_weights;
    double interp_lr, coupling, sinkhorn_reg; /* interpolant ascent, couplings */
    double ema_warmup; /* STOCHFLOW_PARAM_EMA_WARMUP (lib/optimizer.c) */
} stochflow__hparams;

struct stochflow_model {
    stochflow_config cfg; /* cfg.interp is the model's live interpolant */
    size_t d;          /* data dimension */
    stochflow__network net; /* MLP or U-Net (network.h) */
    size_t n_params;
    float *params, *grads, *ema, *adam_m, *adam_v; /* n_params each */
    int ema_valid;     /* ema holds a copy (set on the first update with EMA on) */
    uint64_t step;
    stochflow__hparams hp;
    /* Workspace, grown on demand and reused (no allocation per step). */
    float *ws;
    size_t ws_floats;
    stochflow__transport tr; /* coefficient gradient and moments, pairing, path length */
};

/* config.c */
void stochflow__config_defaults(stochflow_config *c, size_t dim);
int stochflow__config_validate(const stochflow_config *c);

/* params.c */
void stochflow__hparams_defaults(stochflow__hparams *hp);
/* Pointer to the field of a model (100s/400s) key, or NULL for other keys. */
double *stochflow__hparams_field(stochflow__hparams *hp, int key);
/* Validate value for key against its bounds (0 -> default); writes the resolved value. */
int stochflow__param_resolve(double *resolved, int key, double value);

/* model.c */
int stochflow__model_build(stochflow_model **out, const stochflow_config *cfg, int init_weights);
/* Number of parameters a (validated) configuration implies, without allocating. */
int stochflow__model_param_count(size_t *count, const stochflow_config *cfg);
/* Learning rate at the current step, after schedule and warm-up. */
double stochflow__model_lr(const stochflow_model *m);

/* optimizer.c: clip + Adam + EMA on m->grads, the Fourier coefficients' ascent on
 * m->tr.grad (when it holds a fresh gradient), step++; model unchanged on failure. */
int stochflow__optimizer_apply(stochflow_model *m);

#endif
