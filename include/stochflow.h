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
/** A model or solver handle in use by another thread: any public call that takes the
 * handle may return it, having done nothing (doc/threading.md). @since 1.0 */
#define STOCHFLOW_E_BUSY (-12)

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
                                              minimize sum |x0 - x1|^2 (assignment);
                                              batches of at most
                                              STOCHFLOW_COUPLING_OT_MAX_N rows */
#define STOCHFLOW_COUPLING_SINKHORN 3    /**< x0 row for each x1 row drawn from the
                                              entropic OT plan (Sinkhorn) of the batch */
/**
 * Most rows the exact assignment (STOCHFLOW_COUPLING_OT) takes: its cost is cubic in the
 * batch (about 0.4 s at 1024 rows, 3 s at 2048, minutes at 4096, measured on one core), so a
 * larger batch is refused with STOCHFLOW_E_INVALID by stochflow_coupling_assign and by
 * the training calls (loss, gradient, step) before any work; use
 * STOCHFLOW_COUPLING_SINKHORN (up to 65536 rows) for larger batches. @since 1.0
 */
#define STOCHFLOW_COUPLING_OT_MAX_N 2048

/**
 * Regression targets of the training step (STOCHFLOW_PARAM_TRAIN_TARGET) for the plain
 * velocity. BATCH replaces each row's dI/dt = a' x0 + b' x1 by its posterior mean given
 * x_t over the batch's data rows: sum_j w_j (a' x0_j + b' x1_j), x0_j = (x_t - b x1_j) / a,
 * w_j proportional to N(x_t; b x1_j, a^2 I). It has the same minimizer as the batch grows
 * and a lower variance, most where t is far from the data (doc/gradients.md, "The
 * batch-posterior target"); the cost is a pass over all pairs of rows, n^2 d. It assumes
 * x0 ~ N(0, I) drawn independently of x1, so it applies to the training steps (loss,
 * gradient and step with train draws; the validation loss keeps the plain target) of an
 * unconditional model with the plain velocity objective, the INDEPENDENT coupling, a
 * non-Fourier interpolant and no gradient blocks; otherwise those calls fail with
 * STOCHFLOW_E_UNSUPPORTED. @since 1.4
 */
#define STOCHFLOW_TRAIN_TARGET_DRAW 1  /**< dI/dt of each row's own draws (default) */
#define STOCHFLOW_TRAIN_TARGET_BATCH 2 /**< its posterior mean over the batch's data rows */

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
#define STOCHFLOW_PARAM_TRAIN_TARGET 127    /**< STOCHFLOW_TRAIN_TARGET_*; default DRAW */

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
 * @return static text, or NULL for an unknown key. Thread-safe. @since 1.0
 */
STOCHFLOW_API const char *stochflow_param_name(int key);
/**
 * Key of a parameter name (the inverse of stochflow_param_name; case-sensitive).
 * @param[out] key   the STOCHFLOW_PARAM_* value; untouched on failure
 * @param[in]  name  NUL-terminated name
 * @return 0, STOCHFLOW_E_INVALID for a NULL argument, or STOCHFLOW_E_UNSUPPORTED for an
 *         unknown name. Thread-safe. @since 1.0
 */
STOCHFLOW_API int stochflow_param_key(int *key, const char *name);
/**
 * Number of keyed parameters; stochflow_param_key_at(i) for i < count lists every key
 * once: the model's parameters (100s, 400s) first, then the solver's (200s, 300s).
 * @since 1.0
 */
STOCHFLOW_API size_t stochflow_param_count(void);
/**
 * The i-th key of the table, or 0 (never a key) when i >= stochflow_param_count().
 * @since 1.0
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

/* ---- the residual MLP velocity field (doc/architecture.md) ---------------------- */

/** Velocity-field architectures (stochflow_config_arch). */
#define STOCHFLOW_ARCH_MLP 1    /**< fully connected network on [x, phi(t)] (default) */
#define STOCHFLOW_ARCH_UNET 2   /**< convolutional U-Net on NCHW images */
#define STOCHFLOW_ARCH_RESMLP 3 /**< residual MLP with LayerNorm on [x, phi(t)] */

/**
 * Make cfg a residual MLP of the given width with `blocks` pre-norm residual blocks:
 *   h = Linear(u) on the MLP's input u = [x, phi(t), conditioning];
 *   per block  h += Linear(f(Linear(LayerNorm(h))))  (the second Linear zero at the
 *   start, so each block starts as the identity);
 *   v = Linear(f(LayerNorm(h))).
 * Every matrix but the first and the last is width x width; each LayerNorm has its own
 * scale and shift. The activation f, time input, conditioning, interpolant and seed of
 * cfg apply; the MLP's hidden widths are ignored. In the same five minutes of two cores
 * it reached a lower KL than the MLP on the Gaussian mixtures of bench/RECIPE.md
 * (d = 8 to 63), at 1.85x the MLP's time per step of the same width.
 * @param[in,out] cfg     the configuration
 * @param[in]     width   1..65536 (the recipe: 256)
 * @param[in]     blocks  1..64 (the recipe: 2)
 * @return 0, STOCHFLOW_E_INVALID. @since 1.3
 */
STOCHFLOW_API int stochflow_config_set_resmlp(stochflow_config *cfg, size_t width,
                                              size_t blocks);
/**
 * The residual MLP's shape.
 * @param[out] width   NULL, or the width
 * @param[out] blocks  NULL, or the number of blocks
 * @param[in]  cfg     the configuration
 * @return 0, or STOCHFLOW_E_INVALID when cfg is NULL or not a residual MLP. @since 1.3
 */
STOCHFLOW_API int stochflow_config_resmlp(size_t *width, size_t *blocks,
                                          const stochflow_config *cfg);
/**
 * Add K gated linear experts to the residual MLP's output:
 *   v = Linear(f(LayerNorm(h))) + sum_k g_k (E_k z + c_k),  z = [x, t x, t],
 *   g = softmax(Linear(f(LayerNorm(h))))  (K gates from the network's last features).
 * Each expert is a linear field whose slope moves with t, over the whole coordinate
 * space (so no axis is preferred); the network chooses how to blend them at each point.
 * The experts start at zero (the model's initial field is the plain residual MLP's).
 * A field made of linear pieces is the form of a Gaussian mixture's velocity once its
 * components have separated; on the mixtures of bench/RECIPE.md (6 components) 8
 * experts lowered the KL 1.8-3.3x in the same time, 3 only by a quarter ("Eighth
 * round"). K = 0 (the default) removes them; stochflow_config_set_unet removes them
 * with the residual MLP.
 * @param[in,out] cfg      a residual MLP configuration (stochflow_config_set_resmlp)
 * @param[in]     experts  0..64 (the recipe for the mixtures: 8)
 * @return 0, STOCHFLOW_E_INVALID (not a residual MLP, K out of range). @since 1.5
 */
STOCHFLOW_API int stochflow_config_set_resmlp_experts(stochflow_config *cfg, size_t experts);
/**
 * The residual MLP's number of linear experts (0: none).
 * @param[out] experts  NULL, or K
 * @param[in]  cfg      the configuration
 * @return 0, or STOCHFLOW_E_INVALID when cfg is NULL or not a residual MLP. @since 1.5
 */
STOCHFLOW_API int stochflow_config_resmlp_experts(size_t *experts, const stochflow_config *cfg);

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
 * STOCHFLOW_ARCH_MLP, STOCHFLOW_ARCH_RESMLP or STOCHFLOW_ARCH_UNET (0 for a NULL
 * config). @param[in] cfg  the configuration. @since 0.2
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
 * and all keyed parameters but the thread count (a runtime setting: saved as 1, ignored
 * on load) in one versioned little-endian CRC-32-checked format
 * (doc/checkpoint-format.md). Atomic: a temporary file in the same directory is
 * written, fsync'ed and renamed over the target. A symbolic link is followed (its
 * target is replaced, the link kept); a path that exists and is not a regular file gives
 * STOCHFLOW_E_IO; an existing file's mode (and owner, where permitted) is kept. A model
 * loaded from it continues training bit-for-bit as the saved one would have; its whole
 * state is validated on load, and sections or keys this version does not know are
 * written back verbatim by its next save.
 * @param[in] m     the model (unchanged)
 * @param[in] path  file name
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_IO, STOCHFLOW_E_NOMEM,
 *         STOCHFLOW_E_BUSY. @since 1.0
 */
STOCHFLOW_API int stochflow_model_save(const stochflow_model *m, const char *path);
/**
 * Load a checkpoint written by stochflow_model_save.
 * @param[out] out   receives a new model; free with stochflow_model_free()
 * @param[in]  path  file name
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_IO, STOCHFLOW_E_FORMAT, STOCHFLOW_E_VERSION,
 *         STOCHFLOW_E_NOMEM (the state is validated whole: a non-finite value or a negative
 *         Adam second moment is STOCHFLOW_E_FORMAT naming the field). @since 0.1
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
 *                augmenting paths with potentials, O(n^3) worst case;
 *                n <= STOCHFLOW_COUPLING_OT_MAX_N = 2048, larger n is STOCHFLOW_E_INVALID:
 *                use SINKHORN, n <= 65536)
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
 * @return as stochflow_images_load. @since 1.0
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

/* ================================================================================ */
/* Data readers: .npy and .csv matrices (doc/data.md).                               */
/* ================================================================================ */

/**
 * Parse a .npy file held in memory into an n x d float32 matrix (row-major).
 * The header is parsed as a Python dict literal with exactly the keys 'descr',
 * 'fortran_order' and 'shape' (any order; a key inside another value cannot fool it).
 * dtypes: '<f4', '<f8', integers '<i1'..'<i8', '<u1'..'<u8' (converted to the nearest
 * float), also big-endian '>'. C and Fortran order. shape (n, d), or (n,) read as n x 1.
 * The data must be exactly n * d items: fewer is "truncated", more is an error (the
 * header's shape smaller than the data). Every value must be finite in float32.
 * @param[out] x  on success a new matrix, free with stochflow_data_free; NULL on failure
 * @param max_values  most values accepted (n * d); 0 = 2^28
 * @return 0, STOCHFLOW_E_FORMAT (message names the key, or row and column),
 *         STOCHFLOW_E_NONFINITE (message names row and column), STOCHFLOW_E_INVALID,
 *         STOCHFLOW_E_NOMEM. @since 1.0
 */
STOCHFLOW_API int stochflow_data_parse_npy(float **x, size_t *n, size_t *d, const void *buf,
                                           size_t len, size_t max_values);
/**
 * Parse .csv text held in memory into an n x d float32 matrix. A UTF-8 BOM is skipped;
 * lines end in LF, CRLF or CR; blank lines and lines starting with '#' are skipped. The
 * separator is ';' if the first row has one, else a tab if it has one, else ','. The first
 * row is a header exactly when none of its cells is a number; a first row with some
 * numeric and some other cells is an error naming the cell. Data cells must be plain
 * decimal numbers ([+-]digits[.digits][e[+-]digits], blanks around allowed): empty
 * cells, NA/NaN/inf, hexadecimal, quoted numbers and decimal commas are errors naming
 * row (the 1-based line of the file), column (1-based) and the token. Every row must
 * have the same number of cells. Independent of the host program's locale.
 * @return as stochflow_data_parse_npy. @since 1.0
 */
STOCHFLOW_API int stochflow_data_parse_csv(float **x, size_t *n, size_t *d, const void *buf,
                                           size_t len, size_t max_values);
/**
 * Read a .npy or .csv file (as the parse functions), reading at most max_bytes bytes
 * (0 = 2^30): a longer file, pipe or device (/dev/zero) fails with STOCHFLOW_E_FORMAT
 * after at most max_bytes + 1 bytes. Messages start with the path.
 * @return as the parse functions, plus STOCHFLOW_E_IO (cannot open or read). @since 1.0
 */
STOCHFLOW_API int stochflow_data_read_npy(float **x, size_t *n, size_t *d, const char *path,
                                          size_t max_bytes, size_t max_values);
STOCHFLOW_API int stochflow_data_read_csv(float **x, size_t *n, size_t *d, const char *path,
                                          size_t max_bytes, size_t max_values);
/** Free a matrix returned by the data readers; NULL is a no-op. @since 1.0 */
STOCHFLOW_API void stochflow_data_free(float *x);

/* ================================================================================ */
/* Trainer: the training loop with validation, early stopping and budgets            */
/* (doc/training.md).                                                                */
/* ================================================================================ */

typedef struct stochflow_trainer stochflow_trainer;

/**
 * Trainer progress callback, called after every training step with the model's step
 * count, the step's loss, and (after a scheduled evaluation, else NaN) the validation
 * NLL estimate in nats per point and its standard error. Return non-zero to stop:
 * stochflow_trainer_fit then returns STOCHFLOW_E_CANCELLED.
 */
typedef int (*stochflow_train_progress_fn)(void *user, uint64_t step, double loss,
                                           double val_nll, double val_se);

/* 500s: trainer keyed parameters (stochflow_trainer_set_param; 0 restores the default) */
#define STOCHFLOW_TRAINER_BATCH_SIZE 500   /**< rows per minibatch; default 256 */
#define STOCHFLOW_TRAINER_MAX_STEPS 501    /**< stop when the model's step count reaches
                                                this (absolute, so a resumed run ends at
                                                the same step); default 1000 */
#define STOCHFLOW_TRAINER_MAX_SECONDS 502  /**< wall-clock budget of one fit call; 0 = none */
#define STOCHFLOW_TRAINER_EVAL_EVERY 503   /**< validation every k steps; default 100 */
#define STOCHFLOW_TRAINER_PATIENCE 504     /**< stop after this many evaluations without
                                                improvement; 0 = never (default) */
#define STOCHFLOW_TRAINER_VAL_FRACTION 505 /**< hold out this fraction of the rows (seeded
                                                split) when no validation matrix is given;
                                                default 0 */
#define STOCHFLOW_TRAINER_VAL_SUBSET 506   /**< rows of the fixed random subset evaluated on
                                                the schedule; default 256 */
#define STOCHFLOW_TRAINER_SEED 507         /**< shuffling and split seed; 0 = the model's
                                                configuration seed (default) */
#define STOCHFLOW_TRAINER_MIN_DELTA 508    /**< improvement needed to reset patience, nats;
                                                default 0 */
#define STOCHFLOW_TRAINER_KEEP_BEST 509    /**< 1 = install the best-evaluated weights at the
                                                end (default), 2 = keep the last */
#define STOCHFLOW_TRAINER_SET_HORIZON 510  /**< 1 = set the model's LR_TOTAL_STEPS to
                                                MAX_STEPS (default), 2 = leave it */

/* Statistics of the last fit (stochflow_trainer_stat) */
#define STOCHFLOW_TRAINER_STAT_BEST_NLL 550   /**< best scheduled validation estimate */
#define STOCHFLOW_TRAINER_STAT_BEST_STEP 551  /**< model step of that estimate */
#define STOCHFLOW_TRAINER_STAT_FINAL_NLL 552  /**< exact mean NLL on the whole validation
                                                   set with the final weights */
#define STOCHFLOW_TRAINER_STAT_FINAL_SE 553   /**< its standard error (sample sd / sqrt n) */
#define STOCHFLOW_TRAINER_STAT_STEPS 554      /**< steps taken by the call */
#define STOCHFLOW_TRAINER_STAT_EVALS 555      /**< scheduled evaluations made */
#define STOCHFLOW_TRAINER_STAT_STOP 556       /**< STOCHFLOW_TRAINER_STOP_* */
#define STOCHFLOW_TRAINER_STAT_LAST_LOSS 557  /**< loss of the last step */
#define STOCHFLOW_TRAINER_STAT_TRAIN_ROWS 558 /**< rows trained on */
#define STOCHFLOW_TRAINER_STAT_VAL_ROWS 559   /**< rows validated on */

/** Why a fit stopped (STOCHFLOW_TRAINER_STAT_STOP). */
#define STOCHFLOW_TRAINER_STOP_STEPS 1     /**< step budget reached */
#define STOCHFLOW_TRAINER_STOP_TIME 2      /**< wall-clock budget reached */
#define STOCHFLOW_TRAINER_STOP_PATIENCE 3  /**< no improvement for PATIENCE evaluations */
#define STOCHFLOW_TRAINER_STOP_CANCELLED 4 /**< the callback asked to stop */

/** New trainer with default parameters and its own validation solver. @since 1.0 */
STOCHFLOW_API int stochflow_trainer_new(stochflow_trainer **out);
/** Free a trainer; NULL is a no-op. @since 1.0 */
STOCHFLOW_API void stochflow_trainer_free(stochflow_trainer *tr);
/** Set, read and bound a 500s keyed parameter. @since 1.0 */
STOCHFLOW_API int stochflow_trainer_set_param(stochflow_trainer *tr, int key, double value);
STOCHFLOW_API int stochflow_trainer_get_param(double *out, const stochflow_trainer *tr, int key);
STOCHFLOW_API int stochflow_trainer_param_bounds(double *lo, double *hi, double *def, int key);
/** Progress/cancel callback (NULL for none). @since 1.0 */
STOCHFLOW_API int stochflow_trainer_set_progress(stochflow_trainer *tr,
                                                 stochflow_train_progress_fn fn, void *user);
/**
 * Borrowed pointer to the solver used for validation log-densities (configure it with
 * stochflow_solver_set_param; default dopri5, exact trace). Valid until the trainer is
 * freed. @since 1.0
 */
STOCHFLOW_API int stochflow_trainer_solver(stochflow_solver **out, stochflow_trainer *tr);
/** A statistic of the last fit (STOCHFLOW_TRAINER_STAT_*). @since 1.0 */
STOCHFLOW_API int stochflow_trainer_stat(double *out, const stochflow_trainer *tr, int key);
/**
 * Train m on the rows of x (n x d, d = the model's dimension) until the model's step
 * count reaches MAX_STEPS, the wall-clock budget is spent, or PATIENCE evaluations pass
 * without improvement. Model step s trains on rows [j B, j B + B) (the last batch of an
 * epoch may be smaller) of the permutation of epoch s / ceil(n / B), drawn from the
 * counter-based generator keyed by (seed, epoch): every row once per epoch, the same
 * bits for any thread count, and a fit on a model loaded from a checkpoint continues
 * exactly as the uninterrupted fit (same data and trainer parameters).
 * Validation: xval (nval x d) or, with VAL_FRACTION, a seeded split of x. Every
 * EVAL_EVERY steps the exact mean NLL (the trainer's solver) of a fixed random subset
 * of VAL_SUBSET validation rows is computed: an unbiased estimate of the whole set's
 * mean NLL, reported with its standard error (finite-population corrected). At the end
 * the best-evaluated weights are installed (KEEP_BEST) and the exact NLL of the whole
 * validation set is computed (STOCHFLOW_TRAINER_STAT_FINAL_NLL).
 * Arguments, parameters and memory are all checked before the model is touched: such a
 * failure leaves model and trainer unchanged. A failure during training (a non-finite
 * step, a solver error, the callback's stop) leaves the model at the last completed step
 * (a valid resume point) with the last weights, not the best; the early-stopping
 * state is kept in the trainer (stochflow_trainer_save_state).
 * With EMA on (and EVAL_WEIGHTS = 1) the validation evaluates the EMA weights: those are
 * the best weights kept, and they are installed into the EMA copy, the live weights
 * staying the last step's.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM,
 *         STOCHFLOW_E_CANCELLED, or a solver status. @since 1.0
 */
STOCHFLOW_API int stochflow_trainer_fit(stochflow_trainer *tr, stochflow_model *m,
                                        const float *x, size_t n, const float *xval,
                                        size_t nval);
/**
 * The trainer's early-stopping state (best estimate and its step, evaluations since it,
 * the best weights when KEEP_BEST, and the model step it belongs to) as bytes
 * (little-endian, CRC-32-checked; doc/training.md). A fit whose model is at that step
 * continues the state instead of starting afresh, so a run resumed from a model
 * checkpoint plus this state stops at the same step and installs the same best weights
 * as the uninterrupted run. The trainer handle keeps the state between its own fits
 * as well (load_state(tr, NULL, 0) forgets it: do so before fitting another model that
 * happens to be at the same step). state_size and save_state fail with
 * STOCHFLOW_E_INVALID before the first fit; load_state leaves the trainer unchanged on
 * failure.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_FORMAT, STOCHFLOW_E_VERSION,
 *         STOCHFLOW_E_NOMEM. @since 1.0
 */
STOCHFLOW_API int stochflow_trainer_state_size(size_t *size, const stochflow_trainer *tr);
STOCHFLOW_API int stochflow_trainer_save_state(size_t *written, const stochflow_trainer *tr,
                                               void *buf, size_t cap);
STOCHFLOW_API int stochflow_trainer_load_state(stochflow_trainer *tr, const void *buf,
                                               size_t len);

/** Trainer key: rows per validation solve. The scheduled and the final validation NLL
 * are computed in solves of VAL_BLOCK rows (the last one shorter); 0 = every row in one
 * solve (default). dopri5 takes one step size per solve, so a row's log-density depends
 * on the rows solved with it: the solves are what processes share under
 * stochflow_trainer_set_parallel, and the same VAL_BLOCK gives the same bits on any
 * number of processes. @since 1.1 */
#define STOCHFLOW_TRAINER_VAL_BLOCK 512

/**
 * Data-parallel fitting (doc/distributed.md): the callbacks that carry the trainer across
 * processes. Every process calls stochflow_trainer_fit on its own model (the same model,
 * parameters and trainer parameters everywhere); each callback is then called on every
 * process at the same point, in the same order, so it may communicate.
 * The model must have STOCHFLOW_PARAM_GRAD_BLOCK set.
 */
typedef struct stochflow_trainer_parallel {
    size_t rank, size; /**< this process and the number of processes */
    /** One optimizer step on a batch of n rows, of which this process holds rows
     * [row0, row0 + rows) (stochflow_grad_share; rows may be 0) in x, in the data's
     * units. status: 0, or negative when this process could not read its rows. The
     * callback computes stochflow_model_partial_gradient of its rows, combines the
     * processes' sums along stochflow_grad_tree_split, installs the total, records the
     * loss and applies it, and sets *loss to the batch loss; it returns 0 on every
     * process, or non-zero on every process (nothing applied). Required. */
    int (*step)(void *user, int status, double *loss, stochflow_model *m, const float *x,
                size_t rows, size_t row0, size_t n);
    /** Share values: v has n entries of which this process filled [lo, hi) (the ranges
     * of the processes do not overlap and cover [0, n)); on return every process holds
     * all n, bit for bit. status: 0, or this process's negative status (its entries are
     * not valid). Returns 0 on every process, or non-zero on every process when any
     * process passed a failure. Required. */
    int (*share)(void *user, int status, double *v, size_t n, size_t lo, size_t hi);
    /** The largest of the processes' flags (0, 1 or 2), the same on every process;
     * negative on failure. Called once before the first step and once after every step,
     * to stop together (1: the wall-clock budget, 2: the progress callback's stop).
     * Required. */
    int (*agree)(void *user, int flag);
    /** Optional: fill dst (k x d) with the rows idx[0..k) of the data (from_val = 0: the
     * x of the fit) or of the validation rows (from_val = 1); 0 on success. With it,
     * stochflow_trainer_fit accepts x = NULL (n rows) and xval = NULL (nval rows), and
     * asks only for the rows this process uses: its share of each batch and of the
     * validation solves (process 0 also reads the training rows once when it fits the
     * standardization). */
    int (*rows)(void *user, float *dst, const size_t *idx, size_t k, int from_val);
} stochflow_trainer_parallel;
/**
 * Make the next fits data-parallel with these callbacks (copied; user is passed to
 * them); NULL returns to one process. The result of a fit (weights, validation numbers,
 * best step, stop) is the same on every process and, with the same GRAD_BLOCK and
 * VAL_BLOCK, bit for bit that of one process fitting alone (the wall-clock budget
 * aside). A fit's first callback is a share of one value carrying each process's check
 * of its own rows (non-finite x or xval), so a process holding rows and one reading them
 * through `rows` fail together. @return 0, STOCHFLOW_E_INVALID. @since 1.1
 */
STOCHFLOW_API int stochflow_trainer_set_parallel(stochflow_trainer *tr,
                                                 const stochflow_trainer_parallel *p,
                                                 void *user);

/* Stochastic interpolants and SDE sampling (doc/sde.md).                           */
/* ================================================================================ */

/**
 * Latent-noise schedules gamma(t) of x_t = a x0 + b x1 + gamma z, z ~ N(0, I), with
 * gamma(0) = gamma(1) = 0. stochflow_gamma_eval writes {gamma, gamma', gamma gamma'}:
 * the product stays finite at the ends where gamma' of the square-root schedules is
 * infinite, and it is what the drift b = v - gamma gamma' s needs.
 *  ZERO:             gamma = 0 (deterministic interpolant)
 *  BROWNIAN:         sqrt(t (1 - t)),    gamma gamma' = (1 - 2t) / 2
 *  BROWNIAN_SCALED:  sqrt(c t (1 - t)),  gamma gamma' = c (1 - 2t) / 2   (scale c > 0)
 *  QUADRATIC:        t (1 - t)
 *  SIN2:             sin^2(pi t)
 *  CUSTOM:           a caller callback (stochflow_gamma_fn)
 */
#define STOCHFLOW_GAMMA_ZERO 1
#define STOCHFLOW_GAMMA_BROWNIAN 2
#define STOCHFLOW_GAMMA_BROWNIAN_SCALED 3
#define STOCHFLOW_GAMMA_QUADRATIC 4
#define STOCHFLOW_GAMMA_SIN2 5
#define STOCHFLOW_GAMMA_CUSTOM 6

/**
 * Caller-defined gamma schedule (the stochflow_schedule_fn style): write gamma(t),
 * gamma'(t) and gamma(t) gamma'(t) into out[0..2]. Must give gamma(0) = gamma(1) = 0
 * and gamma >= 0 (checked at attach time); out[1] may be +-Inf at the ends when out[2]
 * stays finite. Called from the thread that calls the library.
 */
typedef void (*stochflow_gamma_fn)(void *user, double t, double out[3]);

/**
 * One built-in gamma schedule at t in [0, 1]: out = {gamma, gamma', gamma gamma'}.
 * @param kind   STOCHFLOW_GAMMA_* except CUSTOM
 * @param scale  c of BROWNIAN_SCALED (> 0, finite); ignored by the other kinds
 * @return 0, STOCHFLOW_E_INVALID (kind, t or scale). Thread-safe. @since 1.0
 */
STOCHFLOW_API int stochflow_gamma_eval(double out[3], int kind, double scale, double t);

/**
 * Stochastic interpolant kinds. Every kind is written x_t = c0 x0 + c1 x1 + c2 z with
 * the coefficients of stochflow_sinterp_eval:
 *  TWO_SIDED:  x_t = a x0 + b x1 + gamma z        (c0, c1, c2) = (a, b, gamma)
 *  ONE_SIDED:  x_t = alpha z + beta x1             (0, b, a): the Gaussian base is z,
 *              alpha = a, beta = b of the schedule; no separate gamma; x0 unused
 *  MIRROR:     x_t = x1 + gamma z                  (0, 1, gamma): data to itself
 */
#define STOCHFLOW_SI_TWO_SIDED 1
#define STOCHFLOW_SI_ONE_SIDED 2
#define STOCHFLOW_SI_MIRROR 3

/**
 * Fields of a stochastic interpolant (conditional expectations given x_t = x):
 *  VELOCITY:  v   = E[c0' x0 + c1' x1 | x]         (no noise term)
 *  DRIFT:     b   = E[c0' x0 + c1' x1 + c2' z | x]  = v - c2 c2' s
 *  SCORE:     s   = grad log rho_t = -E[z | x] / c2
 *  DENOISER:  eta = -E[z | x],  s = eta / c2
 */
#define STOCHFLOW_FIELD_VELOCITY 1
#define STOCHFLOW_FIELD_DRIFT 2
#define STOCHFLOW_FIELD_SCORE 3
#define STOCHFLOW_FIELD_DENOISER 4
/** Score computed from a velocity model (Gaussian base, no gamma): see
 *  stochflow_score_from_velocity. Only as STOCHFLOW_PARAM_SDE_SCORE. */
#define STOCHFLOW_FIELD_SCORE_FROM_VELOCITY 5

typedef struct stochflow_sinterp stochflow_sinterp;

/**
 * New stochastic interpolant.
 * @param kind      STOCHFLOW_SI_* (0 = TWO_SIDED)
 * @param schedule  STOCHFLOW_INTERP_TRIG or _LINEAR (0 = TRIG) for (a, b), or
 *                  (alpha, beta) for ONE_SIDED; MIRROR ignores it. A CUSTOM schedule
 *                  is attached afterwards with stochflow_sinterp_set_schedule.
 * @param gamma     STOCHFLOW_GAMMA_* (0 = BROWNIAN) for TWO_SIDED and MIRROR; ONE_SIDED
 *                  ignores it. CUSTOM: attach with stochflow_sinterp_set_gamma.
 * @param scale     c of BROWNIAN_SCALED (ignored otherwise)
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM. @since 1.0
 */
STOCHFLOW_API int stochflow_sinterp_new(stochflow_sinterp **out, int kind, int schedule,
                                        int gamma, double scale);
/** Free; NULL is a no-op. @since 1.0 */
STOCHFLOW_API void stochflow_sinterp_free(stochflow_sinterp *si);
/**
 * Caller schedule for (a, b) (or (alpha, beta)); the boundary values are checked as
 * for stochflow_config_set_schedule. On failure the interpolant is unchanged.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE. @since 1.0
 */
STOCHFLOW_API int stochflow_sinterp_set_schedule(stochflow_sinterp *si,
                                                 stochflow_schedule_fn fn, void *user);
/**
 * Caller gamma schedule (sets STOCHFLOW_GAMMA_CUSTOM); gamma(0) = gamma(1) = 0 and a
 * finite gamma gamma' at both ends are checked. On failure the interpolant is unchanged.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE. @since 1.0
 */
STOCHFLOW_API int stochflow_sinterp_set_gamma(stochflow_sinterp *si, stochflow_gamma_fn fn,
                                              void *user);
/**
 * Coefficients at t in [0, 1]: out = {c0, c1, c2, c0', c1', c2', c2 c2'} of
 * x_t = c0 x0 + c1 x1 + c2 z (c2' may be +-Inf at the ends; c2 c2' is finite).
 * @return 0, STOCHFLOW_E_INVALID. @since 1.0
 */
STOCHFLOW_API int stochflow_sinterp_eval(double out[7], const stochflow_sinterp *si, double t);

/**
 * Per-sample interpolant points and regression targets, for a training step.
 * Row i: x_t = c0 x0_i + c1 x1_i + sign c2 z_i at time t[i], and the target y_i of the
 * field's quadratic loss L = |o|^2 - 2 y . o (= |o - y|^2 - |y|^2, minimizer y's
 * conditional mean):
 *  VELOCITY: y = c0' x0 + c1' x1      DRIFT: y = c0' x0 + c1' x1 + sign c2' z
 *  SCORE:    y = -sign z / c2         DENOISER: y = -sign z
 * sign = +1 is the plain draw; sign = -1 the antithetic partner x_t- = I - c2 z.
 * @param[out] xt      NULL or n x d;  target: NULL or n x d
 * @param[in]  t       n times in [0, 1]; x0: n x d (NULL allowed for ONE_SIDED and
 *                     MIRROR), x1, z: n x d
 * @return 0, STOCHFLOW_E_INVALID (sizes, NULLs, t outside [0, 1], sign not +-1, field),
 *         STOCHFLOW_E_NONFINITE (SCORE where c2 = 0, DRIFT where c2' is infinite: draw
 *         t inside (0, 1); the message names the row). Outputs are untouched on failure.
 * Thread-safe for distinct outputs. @since 1.0
 */
STOCHFLOW_API int stochflow_sinterp_point(float *xt, float *target, const stochflow_sinterp *si,
                                          int field, const double *t, const float *x0,
                                          const float *x1, const float *z, size_t n, size_t d,
                                          int sign);
/**
 * The quadratic loss of a field and its gradient with respect to the network output o
 * (n x d, evaluated at the x_t of stochflow_sinterp_point with the same sign):
 *   loss = weight (1/n) sum_i L_i,  L_i as above written out per field:
 *   VELOCITY/DRIFT: |o|^2 - 2 y . o;  SCORE: |o|^2 + (2 sign / c2) z . o;
 *   DENOISER: |o|^2 + 2 sign z . o;   grad = weight (2/n) (o - y).
 * Antithetic sampling: call with sign +1 (o at x_t+) and sign -1 (o at x_t-), each with
 * weight 0.5, and add. The loss is summed in double.
 * @param[out] loss  may be NULL;  grad: NULL or n x d (overwritten)
 * @return as stochflow_sinterp_point, plus STOCHFLOW_E_NONFINITE for a non-finite o
 *         or loss. @since 1.0
 */
STOCHFLOW_API int stochflow_sinterp_loss(double *loss, float *grad, const stochflow_sinterp *si,
                                         int field, const double *t, const float *x0,
                                         const float *x1, const float *z, const float *o,
                                         size_t n, size_t d, int sign, double weight);

/**
 * Score of a Gaussian base N(0, I) interpolant x_t = a x0 + b x1 (no gamma) from its
 * velocity v: s = (b' x - b v) / (a (a' b - a b')), and, when div_v and div_s are both
 * non-NULL, div s = (b' d - b div v) / (a (a' b - a b')).
 * @param ab  {a, b, a', b'} at the time of x (stochflow_model_interpolant_eval)
 * @return 0, STOCHFLOW_E_INVALID (NULLs; a (a' b - a b') = 0, which happens at t = 1
 *         where a = 0: the score of the data is not recoverable from v there, so stop
 *         the SDE before t = 1, see STOCHFLOW_PARAM_SDE_T_END). @since 1.0
 */
STOCHFLOW_API int stochflow_score_from_velocity(float *s, float *div_s, const float *x,
                                                const float *v, const float *div_v, size_t n,
                                                size_t d, const double ab[4]);

/** SDE integrators (STOCHFLOW_PARAM_SDE_METHOD). */
#define STOCHFLOW_SDE_EULER_MARUYAMA 1 /**< weak order 1 */
#define STOCHFLOW_SDE_HEUN 2           /**< predictor-corrector, weak order 2 for the
                                            additive noise here (default) */

/* 500s: SDE sampling (sde handle) */
#define STOCHFLOW_PARAM_SDE_METHOD 600  /**< STOCHFLOW_SDE_*; default HEUN */
#define STOCHFLOW_PARAM_SDE_STEPS 601   /**< steps on [0, 1]; default 100 */
#define STOCHFLOW_PARAM_SDE_EPS 602     /**< constant diffusion eps >= 0; default 0 (the
                                             probability-flow ODE) */
#define STOCHFLOW_PARAM_SDE_T_END 603   /**< noise only for t < T_END; after it, eps = 0
                                             (ODE steps, no score needed); default 1 */
#define STOCHFLOW_PARAM_SDE_DENOISE 604 /**< 1 = off (default), 2 = the last step
                                             deterministic (no noise, eps = 0) */
#define STOCHFLOW_PARAM_SDE_DRIFT 605   /**< what the drift model outputs:
                                             STOCHFLOW_FIELD_DRIFT (default) or VELOCITY
                                             (then b = v - c2 c2' s) */
#define STOCHFLOW_PARAM_SDE_SCORE 606   /**< what the score model outputs:
                                             STOCHFLOW_FIELD_SCORE (default), DENOISER, or
                                             SCORE_FROM_VELOCITY (no score model) */
#define STOCHFLOW_PARAM_SDE_PATHS 607   /**< likelihood paths per point; default 16 */
#define STOCHFLOW_PARAM_SDE_LIK_AVG 608 /**< how the paths of a point are combined:
                                             STOCHFLOW_SDE_LIK_*; default MEAN */
#define STOCHFLOW_PARAM_SDE_GUIDANCE 609 /**< guidance scale w in [-1, 1000] of a
                                              conditional model (as the solver's
                                              STOCHFLOW_PARAM_GUIDANCE): every network
                                              output and divergence f becomes (1 + w) f(c)
                                              - w f(none); default 0 (unguided) @since 1.1 */
#define STOCHFLOW_PARAM_SDE_TRACE 610   /**< divergences of the model-form likelihood:
                                             STOCHFLOW_TRACE_EXACT (default) or
                                             _HUTCHINSON (one Rademacher probe per path,
                                             fixed along it; for large d, e.g. images)
                                             @since 1.1 */

/** Path averages of the SDE likelihood (STOCHFLOW_PARAM_SDE_LIK_AVG), see
 *  stochflow_sde_log_prob_fn. */
#define STOCHFLOW_SDE_LIK_MEAN 1       /**< mean of the path values: a lower bound */
#define STOCHFLOW_SDE_LIK_LOGMEANEXP 2 /**< log of the mean of exp(path value) */

/**
 * Drift and score of an SDE sampler as a caller callback: for the n points x (n x d)
 * at time t write b (n x d) and, when the pointers are non-NULL, s (n x d), div b (n)
 * and div s (n). s and div s are requested only where eps(t) > 0. Return 0, or
 * non-zero to stop with STOCHFLOW_E_CALLBACK.
 */
typedef int (*stochflow_sde_field_fn)(void *user, double t, size_t n, size_t d,
                                      const float *x, float *b, float *s, float *div_b,
                                      float *div_s);
/** Time-dependent diffusion eps(t) >= 0 (replaces STOCHFLOW_PARAM_SDE_EPS). */
typedef double (*stochflow_eps_fn)(void *user, double t);

typedef struct stochflow_sde stochflow_sde;

/** New SDE sampler with the defaults above (gamma-free interpolant). @since 1.0 */
STOCHFLOW_API int stochflow_sde_new(stochflow_sde **out);
/** Free; NULL is a no-op. @since 1.0 */
STOCHFLOW_API void stochflow_sde_free(stochflow_sde *s);
/** Set a 500s keyed parameter (0 restores the default). @since 1.0 */
STOCHFLOW_API int stochflow_sde_set_param(stochflow_sde *s, int key, double value);
/** Read a 500s keyed parameter. @since 1.0 */
STOCHFLOW_API int stochflow_sde_get_param(double *out, const stochflow_sde *s, int key);
/** Bounds and default of a 500s key (stochflow_param_bounds' twin for this group). @since 1.0 */
STOCHFLOW_API int stochflow_sde_param_bounds(double *lo, double *hi, double *def, int key);
/** Time-dependent eps (NULL restores the constant STOCHFLOW_PARAM_SDE_EPS). @since 1.0 */
STOCHFLOW_API int stochflow_sde_set_eps_schedule(stochflow_sde *s, stochflow_eps_fn fn,
                                                 void *user);
/**
 * The stochastic interpolant whose gamma the model form needs (VELOCITY drift: b = v -
 * c2 c2' s; DENOISER score: s = eta / c2). Copied; NULL restores "no gamma". @since 1.0
 */
STOCHFLOW_API int stochflow_sde_set_interpolant(stochflow_sde *s, const stochflow_sinterp *si);
/** A statistic of the last call: STOCHFLOW_STAT_NFE (field evaluations: one per
 *  evaluation time, drift and score together), _ACCEPTED (steps), _T. @since 1.0 */
STOCHFLOW_API int stochflow_sde_stat(double *out, const stochflow_sde *s, int key);

/**
 * Sample with the forward SDE dX = [b + eps s] dt + sqrt(2 eps) dW from X(0) ~ N(0, I)
 * (the same base draws as stochflow_solver_sample: keyed by seed and row) to t = 1, on
 * the uniform grid of STOCHFLOW_PARAM_SDE_STEPS steps. The noise of step k for row i is
 * keyed by (seed, k, i): the result depends neither on the thread count nor on the
 * batch split. With eps = 0 everywhere the result is bit for bit that of
 * stochflow_solver_sample_fn with STOCHFLOW_SOLVER_EULER (method EULER_MARUYAMA) or
 * STOCHFLOW_SOLVER_HEUN (method HEUN) and the same steps, for b as the velocity.
 * @param[out] x  n x d samples (on failure: unspecified)
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM, STOCHFLOW_E_CALLBACK,
 *         STOCHFLOW_E_NONFINITE. @since 1.0
 */
STOCHFLOW_API int stochflow_sde_sample_fn(float *x, stochflow_sde *s, stochflow_sde_field_fn fn,
                                          void *user, size_t d, size_t n, uint64_t seed);
/**
 * As stochflow_sde_sample_fn with networks: drift is a model trained for b (or for v,
 * STOCHFLOW_PARAM_SDE_DRIFT), score a model trained for s or eta (STOCHFLOW_PARAM_SDE_SCORE),
 * or NULL with SCORE_FROM_VELOCITY: then s comes from drift's velocity and the model's
 * own interpolant (any model the library trains). Both models must have the same
 * dimension; their evaluation weights and threads apply.
 * @since 1.0
 */
STOCHFLOW_API int stochflow_sde_sample(float *x, stochflow_sde *s, stochflow_model *drift,
                                       stochflow_model *score, size_t n, uint64_t seed);
/**
 * SDE log-likelihood estimate of the points x (n x d) at t = 1, averaged over
 * STOCHFLOW_PARAM_SDE_PATHS paths of the backward SDE dY = [b - eps s] dt +
 * sqrt(2 eps) dW from Y(1) = x to t = 0 (Euler-Maruyama, the grid of SDE_STEPS):
 *   log rho1(x) ~ log rho0(Y(0)) - int_0^1 [div(b + eps s) + eps |s|^2](Y(t)) dt
 *                 - int sqrt(2 eps) s . dW,
 * with rho0 = N(0, I). The last term has mean zero (a control variate: with the exact
 * fields each path gives log rho1(x) up to time discretization). With eps = 0 it is the
 * ODE formula. Paths of point i are keyed by (seed, step, i * paths + p).
 * For learned fields, exp(path value) has mean rho^_1(x), the time-1 density of the
 * sampler's own forward SDE (drift b + eps s): the MEAN of the path values is a lower
 * bound of log rho^_1(x) (equality when s is the score of the marginals of that SDE),
 * LOGMEANEXP a consistent estimate of it (biased low for finite paths). doc/sde.md.
 * @param[out] logp  n values;  se: NULL or n standard errors over the paths (MEAN:
 *                   std / sqrt P; LOGMEANEXP: delta method; NaN when P = 1)
 * @return as stochflow_sde_sample_fn. @since 1.0
 */
STOCHFLOW_API int stochflow_sde_log_prob_fn(float *logp, float *se, stochflow_sde *s,
                                            stochflow_sde_field_fn fn, void *user, size_t d,
                                            const float *x, size_t n, uint64_t seed);
/** As stochflow_sde_log_prob_fn with networks (as stochflow_sde_sample; exact
 *  divergences, or Hutchinson ones with STOCHFLOW_PARAM_SDE_TRACE). @since 1.0 */
STOCHFLOW_API int stochflow_sde_log_prob(float *logp, float *se, stochflow_sde *s,
                                         stochflow_model *drift, stochflow_model *score,
                                         const float *x, size_t n, uint64_t seed);
/**
 * stochflow_sde_sample for conditional models: ctx [n x n_ctx] and labels [n] (-1: no
 * label), either NULL, as in stochflow_solver_sample_ctx; they are given to the drift
 * and to the score model (each must accept them, and both must take the same context
 * width n_ctx: STOCHFLOW_E_INVALID otherwise). With STOCHFLOW_PARAM_SDE_GUIDANCE
 * w != 0 every network output is (1 + w) f(c) - w f(none): with eps = 0 the samples
 * are bit for bit those of stochflow_solver_sample_ctx with the same guidance (EULER /
 * HEUN, the same steps). The guided score is the score of the tilted marginals
 * rho_t(x | c)^(1+w) rho_t(x)^(-w) (unnormalized), which are not the marginals of the
 * guided drift: with eps > 0 the guided SDE samples a law that depends on eps
 * (doc/sde.md). w = 0 and no conditioning give the bits of stochflow_sde_sample.
 * @return as stochflow_sde_sample, plus STOCHFLOW_E_INVALID for bad conditioning or
 *         guidance without a conditional model, STOCHFLOW_E_BUSY. @since 1.1
 */
STOCHFLOW_API int stochflow_sde_sample_ctx(float *x, stochflow_sde *s, stochflow_model *drift,
                                           stochflow_model *score, const float *ctx,
                                           const int32_t *labels, size_t n, uint64_t seed);
/**
 * stochflow_sde_log_prob for conditional models (ctx, labels and guidance as in
 * stochflow_sde_sample_ctx; the paths of point i take point i's conditioning). With
 * guidance the estimate refers to the guided SDE's own time-1 density, not p(x | c).
 * @return as stochflow_sde_sample_ctx. @since 1.1
 */
STOCHFLOW_API int stochflow_sde_log_prob_ctx(float *logp, float *se, stochflow_sde *s,
                                             stochflow_model *drift, stochflow_model *score,
                                             const float *x, const float *ctx,
                                             const int32_t *labels, size_t n, uint64_t seed);

/* ==== Conditional models ================================================================
 * A conditional model learns v(t, x | c) for a per-row context c: k = n_ctx floats per
 * row (continuous context), a class label in [0, n_classes), or both
 * (stochflow_config_set_context). Every entry point that takes data has a _ctx twin
 * taking, right after the data pointer, ctx [n x n_ctx] floats (one row per point; NULL
 * = no context for any row) and labels [n] int32 (in [0, n_classes), or -1 = no label;
 * NULL = no label for any row). The plain functions are the twins with NULL, NULL: a
 * model without context behaves exactly as an unconditional one, bit for bit. Context
 * given to a model without context (or labels to one without classes) is
 * STOCHFLOW_E_INVALID. Both networks: the MLP takes the conditioning as more inputs, the
 * U-Net adds a linear map of it to the time embedding of every residual block.
 *
 * Classifier-free guidance: train with STOCHFLOW_PARAM_CTX_DROPOUT = p (each row's
 * conditioning is dropped with probability p: a zero context with a learned null flag,
 * and the learned "no label" embedding), then sample with STOCHFLOW_PARAM_GUIDANCE = w:
 * v_w = (1 + w) v(t, x | c) - w v(t, x | none). w = 0 (the default) is the conditional
 * field itself, bit for bit. A log-density computed with w != 0 is the density of the
 * guided flow, not p(x | c). Posterior estimation: stochflow_model_train_simulator.
 * Recipe and design: doc/conditional.md.
 * ====================================================================================== */

#define STOCHFLOW_PARAM_CTX_DROPOUT 126 /**< per-row context dropout probability of
                                             training, in [0, 1]; default 0 (model) */
#define STOCHFLOW_PARAM_GUIDANCE 303    /**< guidance scale w in [-1, 1000]; default 0
                                             (solver; model velocity sources only) */

/**
 * Make cfg a conditional model: n_ctx context floats per row and/or n_classes class
 * labels (either may be 0; both 0 = unconditional, the default).
 * @return 0, STOCHFLOW_E_INVALID (NULL cfg, n_ctx > 65536, n_classes > 2^20). @since 1.0
 */
STOCHFLOW_API int stochflow_config_set_context(stochflow_config *cfg, size_t n_ctx,
                                               size_t n_classes);
/** The conditioning of cfg (either output may be NULL). @return 0 or STOCHFLOW_E_INVALID
 *  (NULL cfg). @since 1.0 */
STOCHFLOW_API int stochflow_config_context(size_t *n_ctx, size_t *n_classes,
                                           const stochflow_config *cfg);
/** The conditioning of a model (either output may be NULL). @return 0 or
 *  STOCHFLOW_E_INVALID (NULL model). @since 1.0 */
STOCHFLOW_API int stochflow_model_context(size_t *n_ctx, size_t *n_classes,
                                          const stochflow_model *m);

/**
 * stochflow_model_train_step with each row's conditioning: x1 [n x d] is drawn jointly
 * with ctx [n x n_ctx] and/or labels [n] (either NULL). With STOCHFLOW_PARAM_CTX_DROPOUT
 * p > 0, row i's conditioning is dropped when a uniform draw keyed by (seed, step, row i,
 * the dropout stream) is below p, so the draws depend on neither the thread count nor
 * the batch split. Same status codes, plus STOCHFLOW_E_INVALID for a non-finite context,
 * a label outside -1..n_classes-1, or conditioning the model does not take; the model is
 * unchanged on failure. @since 1.0
 */
STOCHFLOW_API int stochflow_model_train_step_ctx(double *loss, stochflow_model *m,
                                                 const float *x1, const float *ctx,
                                                 const int32_t *labels, size_t n,
                                                 const float *x0, const float *t);
/** stochflow_model_loss with conditioning (never dropped). @since 1.0 */
STOCHFLOW_API int stochflow_model_loss_ctx(double *loss, stochflow_model *m, const float *x1,
                                           const float *ctx, const int32_t *labels, size_t n,
                                           const float *x0, const float *t);
/** stochflow_model_compute_gradient with conditioning (dropout as in train_step_ctx).
 *  @since 1.0 */
STOCHFLOW_API int stochflow_model_compute_gradient_ctx(double *loss, stochflow_model *m,
                                                       const float *x1, const float *ctx,
                                                       const int32_t *labels, size_t n,
                                                       const float *x0, const float *t);
/** stochflow_model_velocity given each row's conditioning (unguided). @since 1.0 */
STOCHFLOW_API int stochflow_model_velocity_ctx(float *v, stochflow_model *m, double t,
                                               const float *x, const float *ctx,
                                               const int32_t *labels, size_t n);
/** stochflow_model_divergence given each row's conditioning (unguided). @since 1.0 */
STOCHFLOW_API int stochflow_model_divergence_ctx(float *div, float *v, stochflow_model *m,
                                                 double t, const float *x, const float *ctx,
                                                 const int32_t *labels, size_t n);
/** stochflow_model_velocity_vjp given each row's conditioning (unguided). @since 1.0 */
STOCHFLOW_API int stochflow_model_velocity_vjp_ctx(float *out, stochflow_model *m, double t,
                                                   const float *x, const float *ctx,
                                                   const int32_t *labels, const float *u,
                                                   size_t n);

/**
 * stochflow_solver_sample given each sample's conditioning (ctx [n x n_ctx], labels [n]),
 * guided by the solver's STOCHFLOW_PARAM_GUIDANCE (w != 0 needs a conditional model;
 * each velocity evaluation then costs two network passes). @since 1.0
 */
STOCHFLOW_API int stochflow_solver_sample_ctx(float *x, float *logp, stochflow_solver *s,
                                              stochflow_model *m, const float *ctx,
                                              const int32_t *labels, size_t n, uint64_t seed);
/**
 * stochflow_solver_log_prob of x [n x d] given each row's conditioning: log p(x | c) for
 * guidance 0; for w != 0 the log-density of the guided flow. @since 1.0
 */
STOCHFLOW_API int stochflow_solver_log_prob_ctx(float *logp, float *se, stochflow_solver *s,
                                                stochflow_model *m, const float *x,
                                                const float *ctx, const int32_t *labels,
                                                size_t n, double t);
/** stochflow_solver_integrate given each row's conditioning (and the guidance). @since 1.0 */
STOCHFLOW_API int stochflow_solver_integrate_ctx(float *dlogp, float *dlogp_se,
                                                 stochflow_solver *s, stochflow_model *m,
                                                 float *x, const float *ctx,
                                                 const int32_t *labels, size_t n, double t0,
                                                 double t1);

/**
 * A simulator for posterior estimation: write n fresh draws theta [n x d] from the prior
 * and x [n x n_ctx] ~ p(x | theta), from the randomness keyed by (seed, step) (the
 * model's seed and step: the same call gives the same draws, so training resumes
 * bit for bit). Return 0, or non-zero to fail the step (STOCHFLOW_E_CALLBACK). Called
 * from the thread that called stochflow_model_train_simulator.
 */
typedef int (*stochflow_simulator_fn)(void *user, size_t n, uint64_t seed, uint64_t step,
                                      float *theta, float *x);
/**
 * One training step of the posterior flow p(theta | x) on n fresh simulated pairs: theta
 * is the flow's variable (d = the model's dimension), x its context (n_ctx > 0 needed);
 * then stochflow_solver_sample_ctx / _log_prob_ctx with an observed x give the posterior.
 * @return as stochflow_model_train_step_ctx, plus STOCHFLOW_E_CALLBACK (simulator
 *         failed; model unchanged). @since 1.0
 */
STOCHFLOW_API int stochflow_model_train_simulator(double *loss, stochflow_model *m,
                                                  stochflow_simulator_fn fn, void *user,
                                                  size_t n);

/* ==================================================================================
 * Data-parallel training
 *
 * The seam an engine (MPI, mpi4py, anything that moves bytes) needs to split one batch
 * across processes and still get the same bits as one process, whatever the number of
 * processes or threads (doc/distributed.md). The library itself links no such engine.
 *
 * With STOCHFLOW_PARAM_GRAD_BLOCK = B > 0, the rows of a batch of n_global rows are cut
 * into blocks of B rows (the last one shorter); each block's gradient is computed on its
 * own and the blocks are summed along ONE fixed binary tree over block indices: the node
 * [lo, hi) (hi - lo >= 2) is the sum, left + right in float, of [lo, mid) and [mid, hi),
 * mid = stochflow_grad_tree_split(lo, hi). The loss numerator (sum over rows of
 * |o|^2 - 2 dI.o, in double) goes along the same tree. stochflow_model_compute_gradient
 * and stochflow_model_train_step then use that tree too, so one process equals any
 * number of processes bitwise. A driver on `size` processes:
 *
 *     stochflow_grad_share(&row0, &rows, n_global, B, rank, size);
 *     stochflow_model_partial_gradient(&part, m, x1 + row0 * d, rows, NULL, NULL,
 *                                      row0, n_global);     (gradient buffer = partial)
 *     combine the processes' partial gradients and loss sums along the tree over process
 *     indices [0, active) with the same split rule (process lo adds process mid's sum:
 *     mine + theirs), send the total back, write it into stochflow_model_gradients(),
 *     stochflow_model_record_loss(m, total_loss_sum / n_global);
 *     stochflow_model_apply_gradient(m);
 *
 * Refused (STOCHFLOW_E_UNSUPPORTED) with blocks: couplings other than INDEPENDENT (they
 * pair rows across the whole batch) and the learnable FOURIER interpolant (its
 * coefficient gradient would need a reduction of its own).
 * ================================================================================== */

#define STOCHFLOW_PARAM_GRAD_BLOCK 117 /**< rows per gradient block summed along one tree
                                            (doc/distributed.md); 0 = off (default) */

/**
 * The split point of the node [lo, hi) of the reduction tree: lo + the largest power of
 * two strictly below hi - lo. 0 when hi - lo < 2 (a leaf). @since 1.0
 */
STOCHFLOW_API size_t stochflow_grad_tree_split(size_t lo, size_t hi);

/**
 * The rows of a batch that process `rank` of `size` computes so that its partial sum
 * is one node of the tree: with nb = ceil(n_global / block) blocks, every process gets
 * S blocks, S the smallest power of two >= ceil(nb / size), process r the blocks
 * [r S, min((r + 1) S, nb)). Processes past the last block get no rows (*rows = 0); the
 * others, active = ceil(nb / S) of them, combine along the tree over [0, active).
 * @param[out] row0    first global row of the share
 * @param[out] rows    number of rows (0: the process only receives the total)
 * @param[out] active  number of processes that hold rows (may be NULL)
 * @return 0, STOCHFLOW_E_INVALID (n_global or block 0, rank >= size). @since 1.0
 */
STOCHFLOW_API int stochflow_grad_share(size_t *row0, size_t *rows, size_t *active,
                                       size_t n_global, size_t block, size_t rank,
                                       size_t size);

/**
 * The partial gradient of rows [row0, row0 + n) of a batch of n_global rows, with
 * STOCHFLOW_PARAM_GRAD_BLOCK = B set: x1 (and x0, t when given) hold only those n rows,
 * every draw (t, x0) is keyed by the GLOBAL row index as in compute_gradient, and the
 * loss gradient is scaled by 1 / n_global. The gradient buffer is overwritten with the
 * tree sum of the range's blocks, which must form one node of the tree over the batch's
 * blocks (row0 a multiple of B; stochflow_grad_share gives such ranges).
 * @param[out] loss_sum  the range's loss numerator (the batch loss is the tree sum of
 *             the processes' values divided by n_global)
 * With row0 = 0 and n = n_global the gradient is compute_gradient's (GRAD_BLOCK set)
 * and the mean loss_sum / n_global is recorded as the batch loss.
 * The gradient buffer is untouched on failure.
 * @return 0, STOCHFLOW_E_INVALID (B not set, a range that is not a node, bad batch),
 *         STOCHFLOW_E_UNSUPPORTED (a coupling or the FOURIER interpolant),
 *         STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 1.0
 */
STOCHFLOW_API int stochflow_model_partial_gradient(double *loss_sum, stochflow_model *m,
                                                   const float *x1, size_t n,
                                                   const float *x0, const float *t,
                                                   size_t row0, size_t n_global);

/**
 * Record the batch loss of the gradient the next stochflow_model_apply_gradient applies
 * (the path-length estimate, stochflow_model_path_length). compute_gradient and a
 * whole-batch partial_gradient record it themselves; a driver that combined partial
 * sums records total / n_global. @return 0, STOCHFLOW_E_INVALID (NULL model, non-finite
 * loss). @since 1.0
 */
STOCHFLOW_API int stochflow_model_record_loss(stochflow_model *m, double loss);


/* ===================================================================================
 * Stochastic interpolants: training
 * ===================================================================================
 * A model learns one field of a stochastic interpolant x_t = c0 x0 + c1 x1 + c2 z
 * (stochflow_sinterp_point): the configuration names the field and the interpolant; the
 * training step (stochflow_model_train_step, the trainer) then draws t, x0 and the
 * latent z ~ N(0, I) (its own stream, keyed by seed, step and row) and regresses the
 * field's target. The interpolant's schedule (a, b) is the configuration's
 * (stochflow_config_set_interpolant / _set_schedule). Train a drift (or velocity) model
 * and a score (or denoiser) model and sample with stochflow_sde_sample. doc/sde.md.
 */

/** Objective flag: antithetic pairs (each row also at x_t- = I - c2 z, the two losses
 *  averaged; the network sees 2n rows per batch of n). */
#define STOCHFLOW_OBJECTIVE_ANTITHETIC 1
/** Training times of the SCORE and DRIFT objectives are clamped to
 *  [T_MIN, 1 - T_MIN]: the score target -z/c2 is undefined where c2 = 0 and the drift
 *  target's c2' z is infinite there for the square-root gamma schedules. */
#define STOCHFLOW_OBJECTIVE_T_MIN ((double)1e-3)

/**
 * Set what a model built from cfg learns.
 * @param field  STOCHFLOW_FIELD_VELOCITY (0), _DRIFT, _SCORE or _DENOISER
 * @param kind   STOCHFLOW_SI_TWO_SIDED (0), _ONE_SIDED (x_t = a z + b x1: the base is the
 *               latent) or _MIRROR (x_t = x1 + gamma z)
 * @param gamma  STOCHFLOW_GAMMA_ZERO (0) .. _SIN2 (not CUSTOM); ONE_SIDED ignores it
 * @param gamma_scale  c of STOCHFLOW_GAMMA_BROWNIAN_SCALED (> 0), ignored otherwise
 * @param flags  0 or STOCHFLOW_OBJECTIVE_ANTITHETIC
 * All zeros is the default: the velocity of the deterministic interpolant, the
 * library's ODE training, bit for bit. SCORE and DENOISER need a noise term (c2 not
 * identically zero: ONE_SIDED, or a gamma other than ZERO); MIRROR needs a gamma.
 * A non-default objective is stored in checkpoints (section SINT) and is not available
 * with the learnable Fourier interpolant (model_new: STOCHFLOW_E_UNSUPPORTED).
 * @return 0, STOCHFLOW_E_INVALID (config unchanged). @since 0.3
 */
STOCHFLOW_API int stochflow_config_set_objective(stochflow_config *cfg, int field, int kind,
                                                 int gamma, double gamma_scale, int flags);
/**
 * The objective of cfg, resolved (defaults written as their constants). Any out-pointer
 * may be NULL. @return 0, STOCHFLOW_E_INVALID (cfg NULL). @since 0.3
 */
STOCHFLOW_API int stochflow_config_objective(int *field, int *kind, int *gamma,
                                             double *gamma_scale, int *flags,
                                             const stochflow_config *cfg);
/**
 * A new stochastic interpolant equal to the one model m trains on (its schedule, kind
 * and gamma; a custom schedule's callback is shared), for stochflow_sde_set_interpolant.
 * Free with stochflow_sinterp_free.
 * @return 0, STOCHFLOW_E_INVALID (NULLs; Fourier interpolant), STOCHFLOW_E_NOMEM. @since 0.3
 */
STOCHFLOW_API int stochflow_model_sinterp(stochflow_sinterp **out, const stochflow_model *m);

/* ================================================================================ */
/* Standardization: the model's affine map between the user's units and the network's */
/* space (doc/data.md).                                                              */
/* ================================================================================ */

/*
 * A model may hold a per-feature affine map z = (x - shift) / scale, fitted on training
 * data or set explicitly, kept in its checkpoint. With one set:
 *   - stochflow_model_train_step / compute_gradient / loss and stochflow_trainer_fit take
 *     data x1 in the user's units and map it to z before forming x_t (base samples x0,
 *     when given, are in z: the base is N(0, I) there);
 *   - stochflow_solver_log_prob(model) takes x in the user's units and returns
 *     log p_x(x) = log p_z(z) - sum_k log scale_k;
 *   - stochflow_solver_sample(model) returns x = shift + scale z and log p_x;
 *   - the network's functions stay in z: stochflow_model_velocity, _divergence,
 *     _velocity_vjp and stochflow_solver_integrate take and return points in z (use
 *     stochflow_model_standardize to cross the map).
 * Without one, every space is the user's and nothing changes (a model saved without one
 * writes the same bytes as before; files without the STDZ section load without one).
 */

/** Trainer key (stochflow_trainer_set_param): 1 = fit the per-column map on the training
 * rows (after the validation split) when the model holds none and has not trained; 2 =
 * use the model's map as it is (default); 3 = fit a whitening map instead of the
 * per-column one (stochflow_model_fit_whitening; 3 since 1.1). @since 0.3 */
#define STOCHFLOW_TRAINER_STANDARDIZE 511

/**
 * Fit the map on the rows of x (n x d, n >= 2): shift = column mean, scale = column
 * standard deviation (divisor n). A constant column is an error naming it (1-based); a
 * model that has trained (step > 0) refuses, since the map defines the space its weights
 * were trained in.
 * @return 0, STOCHFLOW_E_INVALID (NULL, n < 2, a constant column, a trained model),
 *         STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM; m unchanged on failure. @since 0.3
 */
STOCHFLOW_API int stochflow_model_fit_standardization(stochflow_model *m, const float *x,
                                                      size_t n);
/**
 * Set the map explicitly (shift, scale: d values each, copied; scale finite and > 0), or
 * remove it (both NULL). Refused on a model that has trained (step > 0).
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM; m unchanged on
 *         failure. @since 0.3
 */
STOCHFLOW_API int stochflow_model_set_standardization(stochflow_model *m, const double *shift,
                                                      const double *scale);
/**
 * Read the map into shift and scale (d values each; either may be NULL); without one,
 * writes the identity (0 and 1). For a whitening map (below) these are its column means
 * and standard deviations; stochflow_model_whitening reads its factor.
 * @return 1 when the model holds a map (per-column or whitening), 0 when it does not,
 *         STOCHFLOW_E_INVALID. @since 0.3
 */
STOCHFLOW_API int stochflow_model_standardization(double *shift, double *scale,
                                                  const stochflow_model *m);
/**
 * Map n rows across: inverse = 0: out = (x - shift) / scale (user units to the network's
 * space), inverse = 1: out = shift + scale x; with whitening out = L^{-1} ((x - shift) /
 * scale) and out = shift + scale (L x). out may be x. The identity without a map.
 * @return 0, STOCHFLOW_E_INVALID. @since 0.3
 */
STOCHFLOW_API int stochflow_model_standardize(float *out, const stochflow_model *m,
                                              const float *x, size_t n, int inverse);

/*
 * Whitening: the map z = L^{-1} ((x - shift) / scale) with L lower-triangular (d x d,
 * row-major, positive diagonal), fitted as the Cholesky factor of the correlation matrix
 * of the training rows, so that z has identity covariance on them. Everything said above
 * of the per-column map holds with the Jacobian dz/dx = L^{-1} diag(1/scale):
 *   log p_x(x) = log p_z(z) - sum_k log scale_k - sum_k log L_kk;
 *   samples x = shift + scale * (L z);
 *   a velocity v_z of the network's space is v_x = diag(scale) L v_z in the user's units
 *   (and x = shift + scale * (L z) maps the points). stochflow_model_standardize crosses it.
 * Limited to d <= 1024 (the factor is d x d doubles in the model and its checkpoint).
 */

/**
 * Fit a whitening map on the rows of x (n x d, n >= 2): shift = column mean, scale =
 * column standard deviation (divisor n), L = Cholesky factor of the correlation matrix.
 * A constant column is an error naming it; a column that is (nearly) a linear combination
 * of earlier ones (residual standard deviation below 1e-4 of its own) is
 * STOCHFLOW_E_INVALID naming it and those columns. Refused on a trained model.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM; m unchanged on
 *         failure. @since 1.1
 */
STOCHFLOW_API int stochflow_model_fit_whitening(stochflow_model *m, const float *x, size_t n);
/**
 * Set a whitening map explicitly: shift, scale (d values each, scale > 0) and chol (d x d,
 * row-major, lower-triangular: entries above the diagonal must be 0, the diagonal > 0).
 * Copied. Remove it with stochflow_model_set_standardization(m, NULL, NULL).
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM; m unchanged on
 *         failure. @since 1.1
 */
STOCHFLOW_API int stochflow_model_set_whitening(stochflow_model *m, const double *shift,
                                                const double *scale, const double *chol);
/**
 * Read the whitening factor into chol (d x d, row-major; may be NULL); the identity when
 * the model holds none (a per-column map or no map: stochflow_model_standardization reads
 * shift and scale in either case).
 * @return 1 when the model holds a whitening map, 0 when not, STOCHFLOW_E_INVALID.
 * @since 1.1
 */
STOCHFLOW_API int stochflow_model_whitening(double *chol, const stochflow_model *m);

/*
 * A conditional model (stochflow_config_set_context, n_ctx > 0) may hold a per-column map
 * of its context columns, c' = (c - shift) / scale, applied wherever a context enters the
 * network: every _ctx entry point (training, loss, gradient, velocity, divergence, VJP,
 * integration, log-density, sampling) takes the context in the user's units. Labels are
 * not mapped. log p(x | c) needs no Jacobian term for it: the context is conditioned on,
 * not modelled, so the map only reparametrizes the network's input. Saved in the
 * checkpoint's STDZ section.
 */

/**
 * Fit the context map on n >= 2 context rows (n x n_ctx): column mean and standard
 * deviation (divisor n); a constant context column is an error naming it. Refused on a
 * model without context columns or one that has trained.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM; m unchanged on
 *         failure. @since 1.1
 */
STOCHFLOW_API int stochflow_model_fit_context_standardization(stochflow_model *m,
                                                              const float *ctx, size_t n);
/**
 * Set the context map explicitly (n_ctx shifts and scales, scale > 0), or remove it (both
 * NULL). Refused on a trained model.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 1.1
 */
STOCHFLOW_API int stochflow_model_set_context_standardization(stochflow_model *m,
                                                              const double *shift,
                                                              const double *scale);
/**
 * Read the context map (n_ctx values each; either may be NULL; the identity without one).
 * @return 1 when the model holds one, 0 when not, STOCHFLOW_E_INVALID. @since 1.1
 */
STOCHFLOW_API int stochflow_model_context_standardization(double *shift, double *scale,
                                                          const stochflow_model *m);

#ifdef __cplusplus
}
#endif

#endif /* STOCHFLOW_H */
