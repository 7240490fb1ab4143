/* model.h - the configuration and the model handle's layout, shared by model.c,
 * optimizer.c, interpolant.c, transport.c, coupling.c, checkpoint.c and config.c.
 * Private to the library. The network behind the handle: network.h. */
#ifndef STOCHFLOW_MODEL_H
#define STOCHFLOW_MODEL_H

#include "busy.h"
#include "internal.h"
#include "network.h"
#include "transport.h"
#include "unet.h"

#define STOCHFLOW__MAX_HIDDEN 64
#define STOCHFLOW__MAX_WIDTH 65536
#define STOCHFLOW__MAX_DIM 65536
#define STOCHFLOW__MAX_FREQ 64
#define STOCHFLOW__MAX_RES_BLOCKS 64 /* residual MLP blocks */
#define STOCHFLOW__MAX_RES_EXPERTS 64 /* residual MLP linear experts */
#define STOCHFLOW__MAX_CTX 65536      /* context floats per row */
#define STOCHFLOW__MAX_CLASSES 1048576 /* class labels */

/* The training objective of a model (stochflow_config_set_objective, lib/objective.c):
 * all zeros is the plain ODE velocity of the deterministic interpolant. */
typedef struct {
    int field;        /* STOCHFLOW_FIELD_VELOCITY .. DENOISER; 0 = VELOCITY */
    int kind;         /* STOCHFLOW_SI_*; 0 = TWO_SIDED */
    int gamma;        /* STOCHFLOW_GAMMA_ZERO .. SIN2; 0 = ZERO */
    double scale;     /* BROWNIAN_SCALED only */
    int flags;        /* STOCHFLOW_OBJECTIVE_* */
} stochflow__objective;

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
    size_t res_width, res_blocks; /* ARCH_RESMLP only */
    size_t res_experts; /* ARCH_RESMLP: gated linear experts of the output (0: none) */
    size_t n_ctx;     /* context floats per row (0: none; doc/conditional.md) */
    size_t n_classes; /* class labels 0..n_classes-1 (0: none) */
    stochflow__objective obj; /* what the training step regresses (lib/objective.c) */
};

/* What a loaded checkpoint held that this version does not know (unknown sections, with
 * their headers, and unknown HPAR entries, 16 bytes each): written back verbatim by the
 * next save (lib/checkpoint.c, doc/checkpoint-format.md). */
typedef struct {
    uint8_t *sections;
    size_t sections_len;
    uint8_t *hpar;
    size_t hpar_count;
} stochflow__carried;

/* Optimizer and runtime settings (keyed parameters). */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay, grad_clip, ema_decay;
    double lr_schedule, lr_decay_every, lr_decay_factor, lr_warmup, lr_total_steps, lr_min;
    double threads, eval_weights;
    double interp_lr, coupling, sinkhorn_reg; /* interpolant ascent, couplings */
    double ema_warmup; /* STOCHFLOW_PARAM_EMA_WARMUP (lib/optimizer.c) */
    double grad_block; /* STOCHFLOW_PARAM_GRAD_BLOCK: rows per gradient block, 0 = off */
    double ctx_dropout; /* STOCHFLOW_PARAM_CTX_DROPOUT (doc/conditional.md) */
    double train_target; /* STOCHFLOW_PARAM_TRAIN_TARGET (lib/target.c) */
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
    stochflow__busy busy;    /* lib/busy.h: the thread inside a public call, or 0 */
    stochflow__carried carried; /* lib/checkpoint.c: unknown checkpoint content */
    uint8_t *drop;           /* [drop_cap] per-row context dropout of a training batch */
    size_t drop_cap;
    /* lib/standardize.c: the affine map z = (x - shift) / scale between the user's units
     * and the network's space (NULL: none); std_logdet = sum log scale; std_buf holds a
     * training batch mapped to z (grown on demand). */
    double *std_shift, *std_scale, std_logdet;
    float *std_buf;
    size_t std_buf_floats;
    /* Whitening (NULL: the diagonal map only): the lower-triangular factor L (d x d,
     * row-major, positive diagonal) of the correlation of the scaled data, so that
     * z = L^{-1} ((x - shift) / scale); std_logdet then also holds sum log L_kk. */
    double *std_chol;
    /* The context map c' = (c - ctx_shift) / ctx_scale (n_ctx each, one allocation; NULL:
     * none), applied wherever a context enters the network; ctx_buf holds a mapped batch. */
    double *ctx_shift, *ctx_scale;
    float *ctx_buf;
    size_t ctx_buf_floats;
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
/* Whether the model evaluates with its EMA copy (EMA on and EVAL_WEIGHTS 1), and the
 * weights it evaluates with: that copy once it has been started (the first update), else
 * the live weights (n_params floats). */
int stochflow__model_evaluates_ema(const stochflow_model *m);
float *stochflow__model_eval_weights(stochflow_model *m);

/* Conditioning of a batch (doc/conditional.md): validate ctx [n x n_ctx] (finite) and
 * labels [n] (-1 or in [0, n_classes)) against the model; either may be NULL. */
int stochflow__model_check_cond(const stochflow_model *m, const float *ctx,
                                const int32_t *labels, size_t n);
/* Velocity / divergence / Hutchinson forms (as stochflow__model_eval) given the
 * conditioning of each row, guided with scale w (0: unguided; otherwise
 * (1 + w) f(c) - w f(none) for each output f, doc/conditional.md). */
int stochflow__model_eval_ctx(stochflow_model *m, double t, const float *x, const float *ctx,
                              const int32_t *labels, double w, size_t n, float *v, float *div,
                              const float *probes, size_t K, float *quad);
/* standardize.c: z = (x - shift) / scale for n rows (a copy when none is set), and its
 * inverse in place; the model's training-batch copy of x1 in z (*out = x1 when none). */
void stochflow__std_forward(float *z, const stochflow_model *m, const float *x, size_t n);
void stochflow__std_inverse(float *x, const stochflow_model *m, size_t n);
int stochflow__std_batch(const float **out, stochflow_model *m, const float *x1, size_t n);
/* Install shift and scale (d each) and, when chol is not NULL, the whitening factor
 * (d x d, lower triangle used), all validated by the caller; 0 or NOMEM, m unchanged. */
int stochflow__std_install(stochflow_model *m, const double *shift, const double *scale,
                           const double *chol);
/* Install the context map (n_ctx shifts and scales, validated); 0 or NOMEM. */
int stochflow__std_ctx_install(stochflow_model *m, const double *shift, const double *scale);
/* The context rows ctx (n x n_ctx) mapped by the model's context map into its buffer
 * (*out = ctx when the model holds none, or ctx is NULL). */
int stochflow__std_ctx(const float **out, stochflow_model *m, const float *ctx, size_t n);

/* optimizer.c: clip + Adam + EMA on m->grads, the Fourier coefficients' ascent on
 * m->tr.grad (when it holds a fresh gradient), step++; model unchanged on failure. */
int stochflow__optimizer_apply(stochflow_model *m);

#endif
