/*
 * stochflow.h - the public interface of libstochflow.
 *
 * libstochflow builds, trains and evaluates continuous-time normalizing flows with
 * stochastic interpolants (Albergo & Vanden-Eijnden, ICLR 2023). This header is the
 * whole contract: every exported symbol is declared and documented here, ordered by
 * concept: status and errors, parameters, configuration, model, couplings, solver, data
 * and utilities.
 *
 * ---------------------------------------------------------------------------------
 * Worked example: train a 2-D flow, sample from it, evaluate log-densities.
 *
 *     #include <stdio.h>
 *     #include <stochflow.h>
 *
 *     stochflow_config *cfg = NULL;
 *     stochflow_model *m = NULL;
 *     stochflow_solver *s = NULL;
 *     float data[256 * 2];                  // n x d, row-major, filled by the caller
 *     double loss;
 *     int rc;
 *
 *     if ((rc = stochflow_config_new(&cfg, 2)) < 0) goto fail;
 *     size_t widths[] = {256, 256, 256};
 *     if ((rc = stochflow_config_set_hidden(cfg, 3, widths)) < 0) goto fail;
 *     if ((rc = stochflow_model_new(&m, cfg)) < 0) goto fail;
 *     if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3)) < 0) goto fail;
 *     for (int step = 0; step < 5000; ++step) {
 *         stochflow_toy_sample(data, "checkerboard", 256, 1, (uint64_t)step);
 *         if ((rc = stochflow_model_train_step(&loss, m, data, 256, NULL, NULL)) < 0)
 *             goto fail;
 *     }
 *     if ((rc = stochflow_solver_new(&s)) < 0) goto fail;
 *     float samples[1000 * 2], logp[1000];
 *     rc = stochflow_solver_sample(samples, logp, s, m, 1000, 42);   // x ~ model, log p(x)
 *     if (rc == 0) rc = stochflow_solver_log_prob(logp, NULL, s, m, data, 256, 1.0);
 *     if (rc == 0) rc = stochflow_model_save(m, "flow.sfm");
 *   fail:
 *     if (rc < 0) fprintf(stderr, "%s\n", stochflow_last_error_message());
 *     stochflow_solver_free(s);
 *     stochflow_model_free(m);
 *     stochflow_config_free(cfg);
 *
 * ---------------------------------------------------------------------------------
 * Conventions (see doc/errors.md, doc/threading.md, doc/abi.md):
 *  - Fallible calls return int: 0 (STOCHFLOW_OK) on success, a negative
 *    STOCHFLOW_E_* code on failure; stochflow_last_error_message() then gives detail
 *    for the calling thread. Every function that takes a pointer rejects a NULL one it
 *    needs with STOCHFLOW_E_INVALID. A failing call leaves its handle usable, and in
 *    its previous state where this header says so (doc/errors.md).
 *  - Out-parameters come first, then the handle or data they are computed from.
 *  - Value getters (stochflow_config_dim, stochflow_model_step, ...) return the value
 *    itself; a NULL handle gives 0 and sets the thread's message (doc/errors.md).
 *  - The library never aborts, exits or prints.
 *  - Bulk data is caller-owned float32, row-major ("C order"): a batch of n points in
 *    d dimensions is n*d floats, point i at [i*d, i*d+d). Time is double.
 *  - stochflow_*_free(NULL) is a no-op.
 *  - A handle is used by one thread at a time; distinct handles may be used from
 *    distinct threads concurrently. Functions taking a non-const model or solver use
 *    its workspace even when they only evaluate.
 *  - @since gives the release in which a function got its present signature.
 *
 * Time and sign conventions (the usual source of confusion):
 *  - t = 0 is the base (noise) x0 ~ rho0, t = 1 is the data x1 ~ rho1.
 *  - Sampling integrates dx/dt = v(t, x) forward from t = 0 to t = 1.
 *  - The log-density obeys d/dt log rho_t(x(t)) = -div v(t, x(t)). Hence
 *      log rho1(x) = log rho0(x(0)) - integral_0^1 div v(t, x(t)) dt,
 *    where x(t) is the trajectory through x at t = 1 (integrated backward to t = 0).
 *  - Every dlogp output of the integrators holds l(t1) - l(t0) =
 *    -integral_{t0}^{t1} div v dt for the direction actually integrated.
 */
#ifndef STOCHFLOW_H
#define STOCHFLOW_H

#include <stddef.h>
#include <stdint.h>

#include "stochflow_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(STOCHFLOW_BUILDING) && defined(__GNUC__)
#define STOCHFLOW_API __attribute__((visibility("default")))
#else
#define STOCHFLOW_API
#endif

/* ================================================================================ */
/* Status, errors and versions. Status values are stable and never renumbered.      */
/* ================================================================================ */

#define STOCHFLOW_OK 0
#define STOCHFLOW_E_INVALID (-1)       /**< invalid argument (NULL, size, range, state) */
#define STOCHFLOW_E_NOMEM (-2)         /**< memory allocation failed */
#define STOCHFLOW_E_IO (-3)            /**< file could not be read or written */
#define STOCHFLOW_E_FORMAT (-4)        /**< malformed, truncated or corrupted input bytes */
#define STOCHFLOW_E_NONFINITE (-5)     /**< NaN or Inf in input, loss, gradient or state */
#define STOCHFLOW_E_STEP_UNDERFLOW (-6) /**< adaptive step size fell below the minimum */
#define STOCHFLOW_E_MAX_STEPS (-7)     /**< adaptive integrator exceeded its step budget */
#define STOCHFLOW_E_CANCELLED (-8)     /**< a caller callback asked to stop */
#define STOCHFLOW_E_UNSUPPORTED (-9)   /**< unknown key or feature not available */
#define STOCHFLOW_E_VERSION (-10)      /**< file written by an unsupported format version */
#define STOCHFLOW_E_CALLBACK (-11)     /**< a caller callback returned an error */

/**
 * Static English text for a status code ("ok", "invalid argument", ...).
 * @param[in] status  any int
 * @return never NULL; unknown codes give "unknown status". Thread-safe. @since 0.1
 */
STOCHFLOW_API const char *stochflow_status_string(int status);

/**
 * Detail for the most recent failing call made by this thread.
 * @return never NULL (empty string when no error has happened); valid until the next
 *         failing stochflow call on the same thread. @since 0.1
 */
STOCHFLOW_API const char *stochflow_last_error_message(void);

/**
 * Run-time version, "MAJOR.MINOR.PATCH"; compare with STOCHFLOW_VERSION_STRING.
 * @return static text. @since 0.1
 */
STOCHFLOW_API const char *stochflow_version_string(void);
/** Run-time version as MAJOR*10000 + MINOR*100 + PATCH. @since 0.1 */
STOCHFLOW_API int stochflow_version_number(void);

/* ================================================================================ */
/* Parameters: keyed tunables of the model and solver handles, grouped by hundreds, */
/* their enumerated values, and the table that names and bounds them                */
/* (doc/parameters.md). Setting 0 restores the default; an unknown key gives        */
/* STOCHFLOW_E_UNSUPPORTED.                                                         */
/* ================================================================================ */

/* Values of the enumerated parameters. 0 always means "the default". */

/** Learning-rate schedules (STOCHFLOW_PARAM_LR_SCHEDULE). */
#define STOCHFLOW_LR_CONSTANT 1 /**< default */
#define STOCHFLOW_LR_STEP 2     /**< lr * factor^floor(step / every) */
#define STOCHFLOW_LR_COSINE 3   /**< cosine from lr to lr_min over total steps */

/**
 * Couplings of x0 and x1 in a training batch (STOCHFLOW_PARAM_COUPLING). With OT or
 * SINKHORN, stochflow_model_loss, _compute_gradient and _train_step re-pair the rows of
 * x0 (the caller's, or the model's N(0, I) draws) with the rows of x1 before forming
 * x_t; stochflow_coupling_assign computes the same pairing (doc/transport.md).
 */
#define STOCHFLOW_COUPLING_INDEPENDENT 1 /**< rows paired as given (default; the paper) */
#define STOCHFLOW_COUPLING_OT 2          /**< exact minibatch OT: x0 rows permuted to
                                              minimize sum |x0 - x1|^2 (assignment) */
#define STOCHFLOW_COUPLING_SINKHORN 3    /**< x0 row for each x1 row drawn from the
                                              entropic OT plan (Sinkhorn) of the batch */

/** ODE solvers (STOCHFLOW_PARAM_SOLVER). */
#define STOCHFLOW_SOLVER_EULER 1
#define STOCHFLOW_SOLVER_HEUN 2
#define STOCHFLOW_SOLVER_RK4 3
#define STOCHFLOW_SOLVER_DOPRI5 4 /**< adaptive Dormand-Prince 5(4) (default) */

/** Divergence estimators (STOCHFLOW_PARAM_TRACE). */
#define STOCHFLOW_TRACE_EXACT 1      /**< exact trace of dv/dx (default) */
#define STOCHFLOW_TRACE_HUTCHINSON 2 /**< Hutchinson estimate, K fixed probes */

/** Hutchinson probe distributions (STOCHFLOW_PARAM_PROBE_DIST). */
#define STOCHFLOW_PROBE_RADEMACHER 1 /**< entries +-1 (default) */
#define STOCHFLOW_PROBE_GAUSSIAN 2   /**< entries N(0, 1) */

/* 100s: optimizer and training (model handle) */
#define STOCHFLOW_PARAM_LR 100              /**< Adam learning rate; default 1e-3 */
#define STOCHFLOW_PARAM_BETA1 101           /**< default 0.9 */
#define STOCHFLOW_PARAM_BETA2 102           /**< default 0.999 */
#define STOCHFLOW_PARAM_ADAM_EPS 103        /**< default 1e-8 */
#define STOCHFLOW_PARAM_WEIGHT_DECAY 104    /**< decoupled (AdamW); default 0 = none */
#define STOCHFLOW_PARAM_GRAD_CLIP 105       /**< max global gradient L2 norm; 0 = off */
#define STOCHFLOW_PARAM_EMA_DECAY 106       /**< EMA of weights; 0 = off (default) */
#define STOCHFLOW_PARAM_LR_SCHEDULE 107     /**< STOCHFLOW_LR_*; default constant */
#define STOCHFLOW_PARAM_LR_DECAY_EVERY 108  /**< STEP schedule period; default 1000 */
#define STOCHFLOW_PARAM_LR_DECAY_FACTOR 109 /**< STEP schedule factor; default 0.5 */
#define STOCHFLOW_PARAM_LR_WARMUP 110       /**< linear warm-up steps; default 0 */
#define STOCHFLOW_PARAM_LR_TOTAL_STEPS 111  /**< COSINE horizon; default 10000 */
#define STOCHFLOW_PARAM_LR_MIN 112          /**< COSINE floor; default 0 */
#define STOCHFLOW_PARAM_INTERP_LR 113       /**< Adam ascent rate of the learnable Fourier
                                                 interpolant's coefficients; default 1e-3 */
#define STOCHFLOW_PARAM_COUPLING 114        /**< STOCHFLOW_COUPLING_*; default INDEPENDENT */
#define STOCHFLOW_PARAM_SINKHORN_REG 115    /**< entropic regularization of SINKHORN, as a
                                                 fraction of the batch's mean cost; default
                                                 0.05 */
#define STOCHFLOW_PARAM_EMA_WARMUP 116      /**< 1 = EMA decay min(EMA_DECAY, (1+s)/(10+s))
                                                 at step s (Keras num_updates rule),
                                                 2 = constant decay (default) */

/* 200s: ODE integration (solver handle) */
#define STOCHFLOW_PARAM_SOLVER 200          /**< STOCHFLOW_SOLVER_*; default DOPRI5 */
#define STOCHFLOW_PARAM_STEPS 201           /**< fixed-step solvers: steps; default 100 */
#define STOCHFLOW_PARAM_RTOL 202            /**< DOPRI5 relative tolerance; default 1e-5 */
#define STOCHFLOW_PARAM_ATOL 203            /**< DOPRI5 absolute tolerance; default 1e-5 */
#define STOCHFLOW_PARAM_H_INIT 204          /**< DOPRI5 first step; default 0 = automatic */
#define STOCHFLOW_PARAM_H_MIN 205           /**< DOPRI5 minimum |step|; default 1e-12 */
#define STOCHFLOW_PARAM_MAX_STEPS 206       /**< DOPRI5 max attempted steps; default 100000 */
#define STOCHFLOW_PARAM_LOGP_ERROR 207      /**< 1 = log-density in error norm (default), 2 = not */

/* 300s: log-density (solver handle) */
#define STOCHFLOW_PARAM_TRACE 300           /**< STOCHFLOW_TRACE_*; default EXACT */
#define STOCHFLOW_PARAM_PROBES 301          /**< Hutchinson probes per point K; default 1 */
#define STOCHFLOW_PARAM_PROBE_DIST 302      /**< STOCHFLOW_PROBE_*; default RADEMACHER */

/* 400s: runtime (model handle) */
#define STOCHFLOW_PARAM_THREADS 400         /**< threads for matrix work; default 1 */
#define STOCHFLOW_PARAM_EVAL_WEIGHTS 401    /**< 1 = EMA when enabled (default), 2 = live */

/**
 * Range and default of a keyed parameter.
 * @param[out] lo   NULL, or the inclusive lower bound
 * @param[out] hi   NULL, or the inclusive upper bound
 * @param[out] def  NULL, or the default value
 * @param[in]  key  a STOCHFLOW_PARAM_* value
 * @return 0, or STOCHFLOW_E_UNSUPPORTED for an unknown key. Thread-safe. @since 0.1
 */
STOCHFLOW_API int stochflow_param_bounds(double *lo, double *hi, double *def, int key);

/**
 * Short snake_case name of a keyed parameter ("lr", "beta1", "grad_clip", "solver",
 * "rtol", ...), as the CLI's options and the bindings' keyword arguments spell it.
 * @return static text, or NULL for an unknown key. Thread-safe. @since 0.3
 */
STOCHFLOW_API const char *stochflow_param_name(int key);
/**
 * Key of a parameter name (the inverse of stochflow_param_name; case-sensitive).
 * @param[out] key   the STOCHFLOW_PARAM_* value; untouched on failure
 * @param[in]  name  NUL-terminated name
 * @return 0, STOCHFLOW_E_INVALID for a NULL argument, or STOCHFLOW_E_UNSUPPORTED for an
 *         unknown name. Thread-safe. @since 0.3
 */
STOCHFLOW_API int stochflow_param_key(int *key, const char *name);
/**
 * Number of keyed parameters; stochflow_param_key_at(i) for i < count lists every key
 * once: the model's parameters (100s, 400s) first, then the solver's (200s, 300s).
 * @since 0.3
 */
STOCHFLOW_API size_t stochflow_param_count(void);
/**
 * The i-th key of the table, or 0 (never a key) when i >= stochflow_param_count().
 * @since 0.3
 */
STOCHFLOW_API int stochflow_param_key_at(size_t i);

/* ================================================================================ */
/* Configuration: what a model is made of. An MLP (default) or a U-Net velocity     */
/* field, its time input, the interpolant and the seed.                             */
/* ================================================================================ */

typedef struct stochflow_config stochflow_config;

/**
 * New configuration for data dimension dim (1..65536). Defaults: MLP with hidden
 * widths 256,256,256, SiLU, raw time input, trigonometric interpolant, seed 0.
 * @param[out] out  receives the handle; free with stochflow_config_free()
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_config_new(stochflow_config **out, size_t dim);
/**
 * Free a configuration; NULL is a no-op.
 * @param[in] cfg  the handle, or NULL. @since 0.1
 */
STOCHFLOW_API void stochflow_config_free(stochflow_config *cfg);
/**
 * Seed of every random draw the model makes (initial weights, training draws).
 * @param[in,out] cfg  the configuration
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_seed(stochflow_config *cfg, uint64_t seed);
/** Data dimension (0 for a NULL config). @param[in] cfg  the configuration. @since 0.1 */
STOCHFLOW_API size_t stochflow_config_dim(const stochflow_config *cfg);
/**
 * The seed (0 for a NULL config; 0 is also a valid seed). @param[in] cfg  the
 * configuration. @since 0.1
 */
STOCHFLOW_API uint64_t stochflow_config_seed(const stochflow_config *cfg);

/* ---- the MLP velocity field ----------------------------------------------------- */

/** Activation of the hidden layers. 0 always means "the default". */
#define STOCHFLOW_ACT_SILU 1     /**< x * sigmoid(x) (default) */
#define STOCHFLOW_ACT_TANH 2
#define STOCHFLOW_ACT_RELU 3
#define STOCHFLOW_ACT_SOFTPLUS 4 /**< log(1 + exp(x)) */

/**
 * How t enters the network. The network input is [x, phi(t)]:
 *  RAW (default):  phi(t) = (t)                                  (1 feature)
 *  FOURIER(F):     phi(t) = (t, sin(pi t), cos(pi t), ..., sin(F pi t), cos(F pi t))
 *                                                                (1 + 2F features)
 */
#define STOCHFLOW_TIME_RAW 1
#define STOCHFLOW_TIME_FOURIER 2

/**
 * Hidden layer widths of the MLP.
 * @param[in,out] cfg     the configuration
 * @param[in]     widths  n_layers widths (copied), each in 1..65536; n_layers in 1..64
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_hidden(stochflow_config *cfg, size_t n_layers,
                                              const size_t *widths);
/**
 * Hidden activation STOCHFLOW_ACT_* (0 = default SiLU).
 * @param[in,out] cfg  the configuration
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_activation(stochflow_config *cfg, int activation);
/**
 * Time input STOCHFLOW_TIME_* (0 = RAW); n_freq (F) in 1..64 for FOURIER, ignored
 * for RAW.
 * @param[in,out] cfg  the configuration
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_time_embedding(stochflow_config *cfg, int kind,
                                                      size_t n_freq);
/**
 * Hidden widths of the MLP.
 * @param[out] n_layers  NULL, or the number of hidden layers
 * @param[out] widths    min(n_layers, cap) widths; may be NULL when cap is 0
 * @param[in]  cfg       the configuration
 * @return 0, STOCHFLOW_E_INVALID (NULL cfg, or NULL widths with cap > 0). @since 1.0
 */
STOCHFLOW_API int stochflow_config_hidden(size_t *n_layers, size_t *widths, size_t cap,
                                          const stochflow_config *cfg);
/**
 * Activation STOCHFLOW_ACT_* (0 for a NULL config). @param[in] cfg  the configuration.
 * @since 0.1
 */
STOCHFLOW_API int stochflow_config_activation(const stochflow_config *cfg);
/**
 * Time input of the MLP.
 * @param[out] kind    NULL, or STOCHFLOW_TIME_*
 * @param[out] n_freq  NULL, or F (meaningful for FOURIER)
 * @param[in]  cfg     the configuration
 * @return 0, STOCHFLOW_E_INVALID (NULL cfg). @since 1.0
 */
STOCHFLOW_API int stochflow_config_time_embedding(int *kind, size_t *n_freq,
                                                  const stochflow_config *cfg);

/* ---- interpolants --------------------------------------------------------------- */

/**
 * Interpolant x_t = a(t) x0 + b(t) x1, with a(0)=1, a(1)=0, b(0)=0, b(1)=1:
 *  TRIG (default):  a = cos(pi t / 2),  b = sin(pi t / 2)
 *                   a' = -(pi/2) sin(pi t / 2),  b' = (pi/2) cos(pi t / 2)
 *  LINEAR:          a = 1 - t,  b = t,  a' = -1,  b' = 1
 *  CUSTOM:          a, b, a', b' from a caller callback (stochflow_schedule_fn).
 *  FOURIER:         learnable (stochflow_config_set_fourier_interpolant):
 *                     a(t) = a_base(t) + sum_{m=1..M} alpha_m sin(m pi t),
 *                     b(t) = b_base(t) + sum_{m=1..M} beta_m  sin(m pi t),
 *                   with (a_base, b_base) the TRIG or LINEAR schedule, so the boundary
 *                   values hold for any coefficients; alpha = beta = 0 initially.
 *                   Training plays the max-min game max_{alpha,beta} min_v G: every
 *                   training step takes a descent step for the network and an Adam
 *                   ascent step (STOCHFLOW_PARAM_INTERP_LR) for the coefficients on the
 *                   same batch. Coefficients and their ascent moments are saved in
 *                   checkpoints (doc/transport.md).
 */
#define STOCHFLOW_INTERP_TRIG 1
#define STOCHFLOW_INTERP_LINEAR 2
#define STOCHFLOW_INTERP_CUSTOM 3
#define STOCHFLOW_INTERP_FOURIER 4

/**
 * Caller-defined interpolant schedule: write a(t), b(t), a'(t), b'(t) into out[0..3].
 * Must satisfy a(0)=1, a(1)=0, b(0)=0, b(1)=1 (checked at attach time). Called from
 * the thread that calls the training function.
 */
typedef void (*stochflow_schedule_fn)(void *user, double t, double out[4]);

/**
 * Interpolant STOCHFLOW_INTERP_TRIG or _LINEAR (0 = default trig).
 * @param[in,out] cfg  the configuration
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_interpolant(stochflow_config *cfg, int kind);
/**
 * Custom interpolant from a callback (sets STOCHFLOW_INTERP_CUSTOM). The boundary
 * values are checked to 1e-6. The callback is not saved in checkpoints: a loaded
 * CUSTOM model needs stochflow_model_set_schedule() before training.
 * @param[in,out] cfg   the configuration
 * @param[in]     fn    the schedule
 * @param[in]     user  passed to fn unchanged; must outlive every model made from cfg
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_schedule(stochflow_config *cfg, stochflow_schedule_fn fn,
                                                void *user);
/**
 * Select the learnable Fourier interpolant (STOCHFLOW_INTERP_FOURIER).
 * @param[in,out] cfg      the configuration
 * @param[in]     base     STOCHFLOW_INTERP_TRIG or STOCHFLOW_INTERP_LINEAR (0 = linear)
 * @param[in]     n_modes  M, in 1..64
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_fourier_interpolant(stochflow_config *cfg, int base,
                                                           size_t n_modes);
/**
 * Interpolant STOCHFLOW_INTERP_* (0 for a NULL config). @param[in] cfg  the
 * configuration. @since 0.1
 */
STOCHFLOW_API int stochflow_config_interpolant(const stochflow_config *cfg);
/**
 * Base schedule and number of modes of a FOURIER configuration.
 * @param[out] base     NULL, or STOCHFLOW_INTERP_TRIG / _LINEAR
 * @param[out] n_modes  NULL, or M
 * @param[in]  cfg      the configuration
 * @return 0, or STOCHFLOW_E_INVALID when cfg is NULL or not FOURIER. @since 1.0
 */
STOCHFLOW_API int stochflow_config_fourier_interpolant(int *base, size_t *n_modes,
                                                       const stochflow_config *cfg);

/* ---- the U-Net velocity field (doc/unet.md) ------------------------------------- */

/** Velocity-field architectures (stochflow_config_arch). */
#define STOCHFLOW_ARCH_MLP 1  /**< fully connected network on [x, phi(t)] (default) */
#define STOCHFLOW_ARCH_UNET 2 /**< convolutional U-Net on NCHW images */
/** Most U-Net resolution levels. */
#define STOCHFLOW_UNET_MAX_LEVELS 6

/**
 * Shape of a DDPM-style U-Net over images of channels x height x width (NCHW float32;
 * channels * height * width must equal the configuration's dimension). Level l works at
 * resolution (height, width) / 2^l with base * mult[l] channels and `blocks` residual
 * blocks (GroupNorm, SiLU, 3x3 convolution, time embedding added per channel); levels
 * are joined by stride-2 convolutions down and nearest up-sampling + 3x3 convolution
 * up, with skip connections. Bit l of attn_mask adds single-head self-attention after
 * every block of level l; the middle block (lowest level) has attention when the bit of
 * the lowest level is set. Attention keeps positions^2 values per image, so it is
 * refused at levels of more than 64 x 64 = 4096 positions. The time t enters as a
 * sinusoidal embedding of base features through a 2-layer MLP of width 4 * base.
 *
 * A size-versioned struct (doc/unet.md says why not keyed parameters): fill it with
 * stochflow_unet_options_init(&o, sizeof o), then set the fields. Reserved fields must
 * stay zero; a later release gives them a meaning in which zero keeps this release's
 * behaviour, and accepts the sizes of earlier releases.
 */
typedef struct stochflow_unet_options {
    size_t size;     /**< sizeof(stochflow_unet_options), set by _init */
    size_t channels; /**< image channels (no default: set it) */
    size_t height;   /**< image height; divisible by 2^(n_levels - 1) (no default) */
    size_t width;    /**< image width; divisible by 2^(n_levels - 1) (no default) */
    size_t base;     /**< channels of level 0; default 32 */
    size_t n_levels; /**< 1..STOCHFLOW_UNET_MAX_LEVELS; default 3 */
    size_t mult[STOCHFLOW_UNET_MAX_LEVELS]; /**< n_levels multipliers, each 1..16;
                                                 default 1, 2, 2 */
    size_t blocks;      /**< residual blocks per level, 1..8; default 1 */
    uint32_t attn_mask; /**< bit l: attention at level l; default 4 (level 2) */
    uint32_t reserved32; /**< must be 0 */
    size_t groups;      /**< GroupNorm groups; divides base * mult[l]; default 8 */
    uint64_t reserved[4]; /**< must be 0 */
} stochflow_unet_options;

/**
 * Fill o with the defaults above (channels, height and width 0: the caller sets them).
 * @param[out] o     the options
 * @param[in]  size  sizeof *o as the caller compiled it
 * @return 0, STOCHFLOW_E_INVALID (NULL o, or a size this library does not know).
 * @since 1.0
 */
STOCHFLOW_API int stochflow_unet_options_init(stochflow_unet_options *o, size_t size);
/**
 * Make cfg a U-Net with the shape o (copied). The MLP settings of cfg (hidden widths,
 * activation, time input) are ignored; the interpolant and seed apply.
 * @param[in,out] cfg  the configuration
 * @param[in]     o    options from stochflow_unet_options_init
 * @return 0, STOCHFLOW_E_INVALID (message names the offending field; also an unknown
 *         size or a non-zero reserved field), STOCHFLOW_E_UNSUPPORTED (cfg has the
 *         FOURIER interpolant). @since 1.0
 */
STOCHFLOW_API int stochflow_config_set_unet(stochflow_config *cfg,
                                            const stochflow_unet_options *o);
/**
 * STOCHFLOW_ARCH_MLP or STOCHFLOW_ARCH_UNET (0 for a NULL config). @param[in] cfg  the
 * configuration. @since 0.2
 */
STOCHFLOW_API int stochflow_config_arch(const stochflow_config *cfg);
/**
 * The U-Net shape of cfg, with size = sizeof *out and reserved fields 0.
 * @param[out] out  the options
 * @param[in]  cfg  the configuration
 * @return 0, or STOCHFLOW_E_INVALID when an argument is NULL or cfg is not a U-Net.
 * @since 1.0
 */
STOCHFLOW_API int stochflow_config_unet(stochflow_unet_options *out,
                                        const stochflow_config *cfg);

/* ================================================================================ */
/* Model: the velocity network, its optimizer, its interpolant and random stream.   */
/* ================================================================================ */

typedef struct stochflow_model stochflow_model;

/* ---- create and inspect --------------------------------------------------------- */

/**
 * Create a model from a configuration (the configuration is copied and may be freed
 * afterwards). Weights are initialised from the seed (PyTorch-style uniform
 * +-1/sqrt(fan_in)); Adam moments are zero; the step counter is 0.
 * @param[out] out  receives the handle; free with stochflow_model_free()
 * @param[in]  cfg  the configuration
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_new(stochflow_model **out, const stochflow_config *cfg);
/** Free a model and its workspace; NULL is a no-op. @param[in] m  the model. @since 0.1 */
STOCHFLOW_API void stochflow_model_free(stochflow_model *m);
/**
 * A copy of the model's configuration (for FOURIER, the base schedule and M; the
 * learned coefficients are read with stochflow_model_interpolant_coefficients).
 * @param[out] out  receives a new handle; free with stochflow_config_free()
 * @param[in]  m    the model
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_config(stochflow_config **out, const stochflow_model *m);
/** Data dimension d (0 for a NULL model). @param[in] m  the model. @since 0.1 */
STOCHFLOW_API size_t stochflow_model_dim(const stochflow_model *m);
/**
 * Number of trainable network parameters (the length of the flat buffers; 0 for a
 * NULL model). @param[in] m  the model. @since 0.1
 */
STOCHFLOW_API size_t stochflow_model_num_params(const stochflow_model *m);
/**
 * Number of optimizer updates applied so far (0 for a NULL model). @param[in] m  the
 * model. @since 0.1
 */
STOCHFLOW_API uint64_t stochflow_model_step(const stochflow_model *m);
/**
 * Set a 100s or 400s keyed parameter (range: stochflow_param_bounds; 0 = default).
 * @param[in,out] m  the model
 * @return 0, STOCHFLOW_E_INVALID (NULL model, value out of range),
 *         STOCHFLOW_E_UNSUPPORTED (unknown key or a solver key). @since 0.1
 */
STOCHFLOW_API int stochflow_model_set_param(stochflow_model *m, int key, double value);
/**
 * Read a 100s or 400s keyed parameter.
 * @param[out] out  the value
 * @param[in]  m    the model
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_UNSUPPORTED. @since 0.1
 */
STOCHFLOW_API int stochflow_model_get_param(double *out, const stochflow_model *m, int key);
/**
 * Attach (or replace) the callback of a CUSTOM-interpolant model (needed after loading
 * one from a checkpoint).
 * @param[in,out] m     the model
 * @param[in]     fn    the schedule (checked as by stochflow_config_set_schedule)
 * @param[in]     user  passed to fn unchanged; must outlive the model
 * @return 0, STOCHFLOW_E_INVALID (also when the model is not CUSTOM). @since 0.1
 */
STOCHFLOW_API int stochflow_model_set_schedule(stochflow_model *m, stochflow_schedule_fn fn,
                                               void *user);

/* ---- training (doc/architecture.md, doc/gradients.md) --------------------------- */

/**
 * Interpolant loss on a batch, without any update:
 *   G = (1/n) sum_i |v(t_i, x_t,i)|^2 - 2 dI/dt_i . v(t_i, x_t,i),
 *   x_t = a(t) x0 + b(t) x1,  dI/dt = a'(t) x0 + b'(t) x1.
 * Its minimum over v is minus the path length (doc/transport.md).
 * Uses the live (not EMA) weights; does not touch the gradient buffer or step.
 * @param[out]    loss  the batch mean G
 * @param[in,out] m     the model (its workspace)
 * @param[in]     x1    data, n x d
 * @param[in]     x0    base samples n x d, or NULL to draw x0 ~ N(0, I) from the model's
 *                      random stream (keyed by seed, current step and row index)
 * @param[in]     t     times in [0, 1], n values, or NULL to draw t ~ U[0, 1]
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE (message names the first bad
 *         index), STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_loss(double *loss, stochflow_model *m, const float *x1,
                                       size_t n, const float *x0, const float *t);
/**
 * One training step: compute the loss and its gradient (as stochflow_model_loss, with
 * the draws keyed by the current step), then apply one Adam update and advance the
 * step counter. A non-finite loss or gradient leaves the model unchanged (weights,
 * moments, step).
 * @param[out]    loss    the batch mean G before the update
 * @param[in,out] m       the model
 * @param[in]     x1, x0, t  as for stochflow_model_loss
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_train_step(double *loss, stochflow_model *m, const float *x1,
                                             size_t n, const float *x0, const float *t);
/**
 * First half of a step: overwrite the gradient buffer with dG/dparams for the batch.
 * Together with stochflow_model_apply_gradient() this equals train_step, and lets a
 * caller combine gradients (e.g. average across processes) in between.
 * @param[out]    loss    the batch mean G
 * @param[in,out] m       the model (gradient buffer, workspace)
 * @param[in]     x1, x0, t  as for stochflow_model_loss
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_compute_gradient(double *loss, stochflow_model *m,
                                                   const float *x1, size_t n, const float *x0,
                                                   const float *t);
/**
 * Second half of a step: gradient clipping, Adam (bias-corrected, decoupled weight
 * decay), EMA, step counter + 1, using whatever the gradient buffer holds.
 * @param[in,out] m  the model
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE (a non-finite gradient; the
 *         model is unchanged). @since 0.1
 */
STOCHFLOW_API int stochflow_model_apply_gradient(stochflow_model *m);
/**
 * Borrowed view of the flat parameter buffer (layout: doc/architecture.md). Valid until
 * the model is freed; writing through it is allowed between calls.
 * @param[out]    params  the buffer
 * @param[out]    count   NULL, or its length in floats
 * @param[in,out] m       the model
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_model_parameters(float **params, size_t *count, stochflow_model *m);
/**
 * Borrowed view of the flat gradient buffer, as stochflow_model_parameters (e.g. to
 * install averaged gradients before stochflow_model_apply_gradient).
 * @param[out]    grads  the buffer
 * @param[out]    count  NULL, or its length in floats
 * @param[in,out] m      the model
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_model_gradients(float **grads, size_t *count, stochflow_model *m);
/**
 * Running path-length estimate: the exponential moving average (decay 0.99,
 * bias-corrected) of minus the training loss, -G, over the training steps taken since
 * the model was created (kept in checkpoints). When the network is near its optimum,
 * -G estimates the path length integral_0^1 E|v(t, x_t)|^2 dt (kinetic energy), which
 * is >= W2(rho0, rho1)^2; a network short of its optimum gives a lower value.
 * Available for every interpolant (doc/transport.md).
 * @param[out] out    the estimate
 * @param[out] count  NULL, or the number of steps averaged
 * @param[in]  m      the model
 * @return 0, or STOCHFLOW_E_INVALID before the first training step. @since 0.1
 */
STOCHFLOW_API int stochflow_model_path_length(double *out, uint64_t *count,
                                              const stochflow_model *m);

/* ---- evaluation (weights per STOCHFLOW_PARAM_EVAL_WEIGHTS) ----------------------- */

/**
 * Velocity v(t, x) for a batch at one time t (in [0, 1]).
 * @param[out]    v  n x d
 * @param[in,out] m  the model (its workspace)
 * @param[in]     x  n x d
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_velocity(float *v, stochflow_model *m, double t,
                                           const float *x, size_t n);
/**
 * Vector-Jacobian product with respect to x: out_i = u_i^T dv(t, x_i)/dx_i.
 * @param[out]    out  n x d
 * @param[in,out] m    the model (its workspace)
 * @param[in]     x    n x d
 * @param[in]     u    n x d
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_velocity_vjp(float *out, stochflow_model *m, double t,
                                               const float *x, const float *u, size_t n);
/**
 * Exact divergence div v(t, x_i) = tr(dv/dx) for each point, by forward-mode
 * propagation of the d tangent directions in one batched pass.
 * @param[out]    div  n values
 * @param[out]    v    NULL, or v(t, x) (n x d)
 * @param[in,out] m    the model (its workspace)
 * @param[in]     x    n x d
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_divergence(float *div, float *v, stochflow_model *m, double t,
                                             const float *x, size_t n);

/* ---- checkpoints (doc/checkpoint-format.md) ------------------------------------- */

/**
 * Save configuration, weights, EMA weights, Adam moments, step, seed, interpolant state
 * and all keyed parameters in one versioned little-endian CRC-32-checked format.
 * Atomic: a temporary file in the same directory is written, fsync'ed and renamed over
 * the target. A model loaded from it continues training bit-for-bit as the saved one
 * would have.
 * @param[in] m     the model (unchanged)
 * @param[in] path  file name
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_IO, STOCHFLOW_E_NOMEM. @since 1.0
 */
STOCHFLOW_API int stochflow_model_save(const stochflow_model *m, const char *path);
/**
 * Load a checkpoint written by stochflow_model_save.
 * @param[out] out   receives a new model; free with stochflow_model_free()
 * @param[in]  path  file name
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_IO, STOCHFLOW_E_FORMAT, STOCHFLOW_E_VERSION,
 *         STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_load(stochflow_model **out, const char *path);
/**
 * Exact number of bytes stochflow_model_save_buffer() writes.
 * @param[out] size  the byte count
 * @param[in]  m     the model
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_model_serialized_size(size_t *size, const stochflow_model *m);
/**
 * Serialize into caller memory buf[0..cap), the bytes stochflow_model_save writes.
 * @param[out] written  NULL, or the size
 * @param[out] buf      cap bytes (stochflow_model_serialized_size tells how many)
 * @param[in]  m        the model
 * @return 0, STOCHFLOW_E_INVALID (also cap too small). @since 1.0
 */
STOCHFLOW_API int stochflow_model_save_buffer(size_t *written, void *buf, size_t cap,
                                              const stochflow_model *m);
/**
 * Load from caller memory (the buffer is not retained).
 * @param[out] out  receives a new model
 * @param[in]  buf  len bytes
 * @return as stochflow_model_load, without STOCHFLOW_E_IO. @since 0.1
 */
STOCHFLOW_API int stochflow_model_load_buffer(stochflow_model **out, const void *buf,
                                              size_t len);

/* ---- interpolant introspection --------------------------------------------------- */

/**
 * Read-only copy of the learned coefficients of a FOURIER model.
 * @param[out] alpha    NULL, or M values alpha_1..alpha_M
 * @param[out] beta     NULL, or M values beta_1..beta_M
 * @param[out] n_modes  NULL, or M
 * @param[in]  m        the model
 * @return 0, or STOCHFLOW_E_INVALID when m is NULL or its interpolant is not FOURIER.
 * @since 0.1
 */
STOCHFLOW_API int stochflow_model_interpolant_coefficients(double *alpha, double *beta,
                                                           size_t *n_modes,
                                                           const stochflow_model *m);
/**
 * The model's schedule at t in [0, 1], for every interpolant kind (CUSTOM calls the
 * callback).
 * @param[out] out  {a(t), b(t), a'(t), b'(t)}
 * @param[in]  m    the model
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_model_interpolant_eval(double out[4], const stochflow_model *m,
                                                   double t);

/* ================================================================================ */
/* Couplings: how the rows of x0 and x1 in a batch are paired (doc/transport.md).   */
/* ================================================================================ */

/**
 * Minibatch coupling as used in training (STOCHFLOW_PARAM_COUPLING), for n points x0
 * and n points x1 (n x d each): perm[i] = index of the x0 row paired with x1 row i.
 *   OT:          a permutation minimizing sum_i |x0[perm[i]] - x1[i]|^2 (exact, shortest
 *                augmenting paths with potentials, O(n^3) worst case; n <= 65536)
 *   SINKHORN:    perm[i] drawn from the entropic plan's column i (keyed by seed and i),
 *                regularization reg times the mean cost (reg <= 0: 0.05); not a
 *                permutation in general
 *   INDEPENDENT: perm[i] = i
 * Data-to-data flows pass base samples as x0 to the training calls; they sample with
 * stochflow_solver_integrate (0 -> 1) and give log-densities a base density with
 * stochflow_solver_set_base_logpdf (the default N(0, I) is wrong for such a model).
 * @param[out] perm  n indices
 * @param[out] cost  NULL, or the mean paired cost (1/n) sum_i |x0[perm[i]] - x1[i]|^2
 * @param[in]  x0    n x d
 * @param[in]  x1    n x d
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_coupling_assign(size_t *perm, double *cost, const float *x0,
                                            const float *x1, size_t n, size_t d, int mode,
                                            double reg, uint64_t seed);

/* ================================================================================ */
/* Solver: integration, sampling and log-density (doc/log-density.md).              */
/* ================================================================================ */

typedef struct stochflow_solver stochflow_solver;

/**
 * A caller-defined velocity field, integrated by the same code as a model (used for
 * closed-form oracles). Write v(t, x) for the n points of x (n x d) into v; when div
 * is non-NULL also write the exact divergence of v at each point (n values).
 * Return 0 on success; any non-zero value stops the integration with
 * STOCHFLOW_E_CALLBACK.
 */
typedef int (*stochflow_velocity_fn)(void *user, double t, size_t n, size_t d, const float *x,
                                     float *v, float *div);

/**
 * Caller-defined base log-density log rho0(x) for n points (n x d); returns 0 on
 * success. The default is the standard normal: -|x|^2/2 - (d/2) ln(2 pi).
 */
typedef int (*stochflow_logpdf_fn)(void *user, size_t n, size_t d, const float *x,
                                   float *logp);

/**
 * Progress callback: called after every accepted step with the current time; return
 * non-zero to cancel (the call then returns STOCHFLOW_E_CANCELLED).
 */
typedef int (*stochflow_progress_fn)(void *user, double t);

/** Solver statistics of the most recent call (stochflow_solver_stat). */
#define STOCHFLOW_STAT_NFE 1      /**< velocity evaluations (a divergence eval counts 1) */
#define STOCHFLOW_STAT_ACCEPTED 2 /**< accepted steps */
#define STOCHFLOW_STAT_REJECTED 3 /**< rejected steps (adaptive only) */
#define STOCHFLOW_STAT_T 4        /**< time reached (the end time unless it failed) */

/**
 * New solver with default settings (dopri5, rtol = atol = 1e-5, exact trace, seed 0).
 * @param[out] out  receives the handle; free with stochflow_solver_free()
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_new(stochflow_solver **out);
/** Free a solver; NULL is a no-op. @param[in] s  the solver. @since 0.1 */
STOCHFLOW_API void stochflow_solver_free(stochflow_solver *s);
/**
 * Set a 200s or 300s keyed parameter (range: stochflow_param_bounds; 0 = default).
 * @param[in,out] s  the solver
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_UNSUPPORTED (unknown or model key).
 * @since 0.1
 */
STOCHFLOW_API int stochflow_solver_set_param(stochflow_solver *s, int key, double value);
/**
 * Read a 200s or 300s keyed parameter.
 * @param[out] out  the value
 * @param[in]  s    the solver
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_UNSUPPORTED. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_get_param(double *out, const stochflow_solver *s, int key);
/**
 * Seed of the Hutchinson probes (default 0).
 * @param[in,out] s  the solver
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_set_seed(stochflow_solver *s, uint64_t seed);
/**
 * Base log-density of the log-density and sampling calls.
 * @param[in,out] s     the solver
 * @param[in]     fn    NULL restores N(0, I)
 * @param[in]     user  passed to fn unchanged
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_set_base_logpdf(stochflow_solver *s, stochflow_logpdf_fn fn,
                                                   void *user);
/**
 * Progress/cancel callback.
 * @param[in,out] s     the solver
 * @param[in]     fn    NULL for none
 * @param[in]     user  passed to fn unchanged
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_set_progress(stochflow_solver *s, stochflow_progress_fn fn,
                                                void *user);
/**
 * A statistic of the last integration (STOCHFLOW_STAT_*).
 * @param[out] out  the value
 * @param[in]  s    the solver
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_UNSUPPORTED (unknown key). @since 0.1
 */
STOCHFLOW_API int stochflow_solver_stat(double *out, const stochflow_solver *s, int key);

/* ---- integration ---------------------------------------------------------------- */

/**
 * Integrate dx/dt = v(t, x) from t0 to t1 (either direction; t in [0, 1]) in place.
 * n = 0 is a no-op. The probes of point i are keyed by (solver seed, row i) and held
 * fixed along its trajectory. Error control and precision: doc/log-density.md.
 * @param[out]    dlogp     NULL, or n values receiving -integral_{t0}^{t1} div v dt
 *                          (exact or Hutchinson per STOCHFLOW_PARAM_TRACE)
 * @param[out]    dlogp_se  NULL, or n standard errors of dlogp across the K Hutchinson
 *                          probes (sample std / sqrt K; NaN when K = 1; 0 for exact)
 * @param[in,out] s         the solver (statistics)
 * @param[in,out] m         the model (its workspace)
 * @param[in,out] x         n x d: the states at t0 on entry, at t1 on success. On a
 *                          failure status after integration started (underflow, max
 *                          steps, non-finite, cancelled) x, dlogp and dlogp_se hold the
 *                          last accepted state at time STOCHFLOW_STAT_T.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_STEP_UNDERFLOW,
 *         STOCHFLOW_E_MAX_STEPS, STOCHFLOW_E_CANCELLED, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_integrate(float *dlogp, float *dlogp_se, stochflow_solver *s,
                                             stochflow_model *m, float *x, size_t n, double t0,
                                             double t1);
/**
 * As stochflow_solver_integrate, for a caller-defined field in d dimensions. A
 * callback has no Jacobian-vector products, hence no Hutchinson form: the divergence is
 * the callback's exact one and dlogp_se is 0; with STOCHFLOW_TRACE_HUTCHINSON and dlogp
 * or dlogp_se requested the call returns STOCHFLOW_E_UNSUPPORTED.
 * @param[out]    dlogp     NULL, or n values (as stochflow_solver_integrate)
 * @param[out]    dlogp_se  NULL, or n values, all 0
 * @param[in,out] s         the solver
 * @param[in]     fn        the velocity field
 * @param[in]     user      passed to fn unchanged
 * @param[in,out] x         n x d, as stochflow_solver_integrate
 * @return as stochflow_solver_integrate, plus STOCHFLOW_E_CALLBACK and
 *         STOCHFLOW_E_UNSUPPORTED. @since 1.0
 */
STOCHFLOW_API int stochflow_solver_integrate_fn(float *dlogp, float *dlogp_se,
                                                stochflow_solver *s, stochflow_velocity_fn fn,
                                                void *user, size_t d, float *x, size_t n,
                                                double t0, double t1);

/* ---- sampling ------------------------------------------------------------------- */

/**
 * Draw n base points x0 ~ N(0, I) (counter-based, keyed by seed and row index) and
 * integrate them to t = 1.
 * @param[out]    x     n x d samples
 * @param[out]    logp  NULL, or n values log rho1(x) computed in the same forward pass
 * @param[in,out] s     the solver
 * @param[in,out] m     the model (its workspace)
 * @return as stochflow_solver_integrate. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_sample(float *x, float *logp, stochflow_solver *s,
                                          stochflow_model *m, size_t n, uint64_t seed);
/**
 * As stochflow_solver_sample, for a caller-defined field in d dimensions (exact
 * divergence only): the same base draws (keyed by seed and row index), integrated
 * 0 -> 1. logp uses the solver's base log-density at the draws (N(0, I) unless
 * replaced), so it agrees with stochflow_solver_log_prob_fn on the returned points.
 * @param[out]    x     n x d samples
 * @param[out]    logp  NULL, or n values
 * @param[in,out] s     the solver
 * @param[in]     fn    the velocity field
 * @param[in]     user  passed to fn unchanged
 * @return as stochflow_solver_integrate, plus STOCHFLOW_E_CALLBACK. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_sample_fn(float *x, float *logp, stochflow_solver *s,
                                             stochflow_velocity_fn fn, void *user, size_t d,
                                             size_t n, uint64_t seed);

/* ---- log-density ---------------------------------------------------------------- */

/**
 * Log-density log rho_t(x) of points x at time t (t = 1: the model density of data):
 * integrates (x, l) backward from t to 0 and adds the base log-density at x(0).
 * @param[out]    logp  n values
 * @param[out]    se    NULL, or n Hutchinson standard errors (as dlogp_se)
 * @param[in,out] s     the solver
 * @param[in,out] m     the model (its workspace)
 * @param[in]     x     n x d (not modified)
 * @return as stochflow_solver_integrate, plus STOCHFLOW_E_CALLBACK from a base
 *         log-density callback. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_log_prob(float *logp, float *se, stochflow_solver *s,
                                            stochflow_model *m, const float *x, size_t n,
                                            double t);
/**
 * As stochflow_solver_log_prob, for a caller-defined field (exact divergence: se is 0;
 * STOCHFLOW_E_UNSUPPORTED under STOCHFLOW_TRACE_HUTCHINSON).
 * @param[out]    logp  n values
 * @param[out]    se    NULL, or n values, all 0
 * @param[in,out] s     the solver
 * @param[in]     fn    the velocity field
 * @param[in]     user  passed to fn unchanged
 * @param[in]     x     n x d (not modified)
 * @return as stochflow_solver_integrate_fn. @since 1.0
 */
STOCHFLOW_API int stochflow_solver_log_prob_fn(float *logp, float *se, stochflow_solver *s,
                                               stochflow_velocity_fn fn, void *user, size_t d,
                                               const float *x, size_t n, double t);

/* ================================================================================ */
/* Data and utilities: random draws, built-in 2-D toys, images, PNG, bits/dim.      */
/* ================================================================================ */

/* ---- random draws --------------------------------------------------------------- */

/**
 * Standard normal draws, counter-based (Philox4x32-10): out[i] depends only on
 * (seed, stream, i), never on n or threads.
 * @param[out] out     n values
 * @param[in]  stream  0 .. 2^32 - 17
 * @return 0, STOCHFLOW_E_INVALID (NULL out with n > 0, stream too large). @since 0.1
 */
STOCHFLOW_API int stochflow_random_normal(float *out, size_t n, uint64_t seed, uint64_t stream);
/**
 * Uniform draws in [0, 1) (multiples of 2^-53), counter-based like
 * stochflow_random_normal: out[i] depends only on (seed, stream, i). The uniform and
 * the normal draws of one (seed, stream) are independent of each other. floor(u * N)
 * is an index in 0..N-1 for every N < 2^53.
 * @param[out] out     n values
 * @param[in]  stream  0 .. 2^32 - 17
 * @return 0, STOCHFLOW_E_INVALID (NULL out with n > 0, stream too large). @since 1.0
 */
STOCHFLOW_API int stochflow_random_uniform(double *out, size_t n, uint64_t seed,
                                           uint64_t stream);

/* ---- built-in 2-D toys ---------------------------------------------------------- */

/**
 * Built-in 2-D toy densities (FFJORD's generators): "swissroll", "circles", "rings",
 * "moons", "8gaussians", "pinwheel", "2spirals", "checkerboard", "line", "cos".
 * Deterministic in (name, seed, stream).
 * @param[out] out   n x 2 floats
 * @param[in]  name  one of the names above
 * @return 0, STOCHFLOW_E_INVALID (an unknown name lists the valid ones). @since 0.1
 */
STOCHFLOW_API int stochflow_toy_sample(float *out, const char *name, size_t n, uint64_t seed,
                                       uint64_t stream);
/** Number of built-in toys. @since 0.1 */
STOCHFLOW_API size_t stochflow_toy_count(void);
/** Name of toy i: static text, or NULL when i >= stochflow_toy_count(). @since 0.1 */
STOCHFLOW_API const char *stochflow_toy_name(size_t i);
/**
 * True log-density of a toy where it is known in closed form ("checkerboard",
 * "8gaussians").
 * @param[out] logp     n values (may be NULL only when n is 0)
 * @param[out] entropy  NULL, or the differential entropy in nats (checkerboard:
 *                      ln 32; 8gaussians: by deterministic quadrature)
 * @param[in]  name     the toy
 * @param[in]  x        n x 2 points
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_UNSUPPORTED (a toy without a closed form).
 * @since 0.1
 */
STOCHFLOW_API int stochflow_toy_log_density(float *logp, double *entropy, const char *name,
                                            const float *x, size_t n);

/* ---- images (doc/images.md) ----------------------------------------------------- */

/**
 * Load 8-bit images. source is "idx:PATH" (IDX unsigned-byte file, raw or gzip, of
 * dimensions [N, H, W] (1 channel) or [N, H, W, C] with C in {1, 3}) or "pngdir:PATH"
 * (every *.png file of the directory in byte order of names; all of one size; gray
 * gives 1 channel, RGB 3; palette and 16-bit are converted to 8 bits, alpha dropped;
 * gray and RGB files may not be mixed). At most max_count images are read (0 = all).
 * A raw IDX file must have exactly the size its header implies; a gzip one is read only
 * as far as max_count needs (to its end, CRC included, when all are read). Nothing
 * proportional to a header's claimed size is allocated before the data is seen.
 * On failure *pixels is NULL and the four sizes are 0.
 * @param[out] pixels    [count x channels x height x width] planar (NCHW) bytes; free
 *                       with stochflow_images_free
 * @param[out] count     images read
 * @param[out] channels  1 or 3
 * @param[out] height    rows
 * @param[out] width     columns
 * @param[in]  source    "idx:PATH" or "pngdir:PATH"
 * @return 0, STOCHFLOW_E_IO (cannot open or read), STOCHFLOW_E_FORMAT (malformed file,
 *         message names the file and the problem; also a directory without .png files),
 *         STOCHFLOW_E_INVALID (NULL argument, unknown source prefix), STOCHFLOW_E_NOMEM.
 * @since 0.2
 */
STOCHFLOW_API int stochflow_images_load(uint8_t **pixels, size_t *count, size_t *channels,
                                        size_t *height, size_t *width, const char *source,
                                        size_t max_count);
/**
 * stochflow_images_load with a caller's limit on the size of one image: an image of more
 * than max_values values (channels x height x width; 0 = no limit) is STOCHFLOW_E_FORMAT,
 * found from the headers (the IDX header; the IHDR of every PNG file of the directory)
 * before any pixel is decoded or any buffer proportional to the data is allocated. So
 * the result is at most min(max_count, N) x max_values bytes.
 * @param[out] pixels, count, channels, height, width  as stochflow_images_load
 * @param[in]  source  as stochflow_images_load
 * @return as stochflow_images_load. @since 0.3
 */
STOCHFLOW_API int stochflow_images_load_limited(uint8_t **pixels, size_t *count,
                                                size_t *channels, size_t *height,
                                                size_t *width, const char *source,
                                                size_t max_count, size_t max_values);
/**
 * Free what stochflow_images_load returned; NULL is a no-op. @param[in] pixels @since
 * 0.2
 */
STOCHFLOW_API void stochflow_images_free(uint8_t *pixels);
/**
 * Uniform dequantization into [-1, 1): out[i] = 2 (p[i] + u_i) / 256 - 1 with
 * u_i ~ U[0, 1) depending only on (seed, stream, i), never on n (Philox keying in
 * doc/images.md); stochflow_images_quantize(out[i]) == p[i] always.
 * @param[out] out     n floats
 * @param[in]  pixels  n bytes
 * @return 0, STOCHFLOW_E_INVALID (NULL with n > 0, stream >= 2^32). @since 0.2
 */
STOCHFLOW_API int stochflow_images_dequantize(float *out, const uint8_t *pixels, size_t n,
                                              uint64_t seed, uint64_t stream);
/**
 * Bin centres, no noise: out[i] = 2 (p[i] + 0.5) / 256 - 1.
 * @param[out] out     n floats
 * @param[in]  pixels  n bytes
 * @return 0, STOCHFLOW_E_INVALID. @since 0.2
 */
STOCHFLOW_API int stochflow_images_to_float(float *out, const uint8_t *pixels, size_t n);
/**
 * Back to 8 bits: p = clamp(floor((x + 1) * 128), 0, 255); NaN gives 0.
 * @param[out] out  n bytes
 * @param[in]  x    n floats
 * @return 0, STOCHFLOW_E_INVALID. @since 0.2
 */
STOCHFLOW_API int stochflow_images_quantize(uint8_t *out, const float *x, size_t n);
/**
 * Write n images [n x channels x height x width] (floats in [-1, 1], quantized as by
 * stochflow_images_quantize) as one PNG grid, ncols images per row (0 = ceil(sqrt n)),
 * separated by 2-pixel borders; channels 1 or 3. The PNG is ncols (width + 2) + 2 by
 * ceil(n / ncols) (height + 2) + 2 pixels (at most 10^6 each way); image k's top-left
 * pixel is at (2 + (k % ncols)(width + 2), 2 + (k / ncols)(height + 2)); borders and
 * empty cells are 128. Atomic like stochflow_png_write.
 * @param[in] path    file name
 * @param[in] images  n x channels x height x width floats
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM, STOCHFLOW_E_IO. @since 0.2
 */
STOCHFLOW_API int stochflow_images_write_grid(const char *path, const float *images, size_t n,
                                              size_t channels, size_t height, size_t width,
                                              size_t ncols);

/* ---- PNG and bits per dimension ------------------------------------------------- */

/**
 * Write an 8-bit PNG. channels: 1 (gray), 3 (RGB) or 4 (RGBA). Atomic like
 * checkpoints.
 * @param[in] path    file name
 * @param[in] pixels  row-major, interleaved, width*height*channels bytes
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM, STOCHFLOW_E_IO. @since 0.1
 */
STOCHFLOW_API int stochflow_png_write(const char *path, const uint8_t *pixels, uint32_t width,
                                      uint32_t height, int channels);
/**
 * Bits per dimension of a log-density logp (nats) of dequantized data scaled to
 * [-1, 1]^dim: bpd = -logp / (dim ln 2) + 7 (the 7 = log2 128 is the change of
 * variables from [0, 256)^dim; doc/images.md). A uniform density on [-1, 1]^dim gives
 * exactly 8.
 * @return bits per dimension, or NaN when dim is 0. @since 0.2
 */
STOCHFLOW_API double stochflow_bits_per_dim(double logp, size_t dim);

#ifdef __cplusplus
}
#endif

#endif /* STOCHFLOW_H */
