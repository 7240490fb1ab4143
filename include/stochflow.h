/*
 * stochflow.h - the public interface of libstochflow.
 *
 * libstochflow builds, trains and evaluates continuous-time normalizing flows with
 * stochastic interpolants (Albergo & Vanden-Eijnden, ICLR 2023). This header is the
 * whole contract: every exported symbol is declared and documented here, ordered from
 * the simplest use to the most advanced.
 *
 * ---------------------------------------------------------------------------------
 * Worked example: train a 2-D flow, sample from it, evaluate log-densities.
 *
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
 *     stochflow_config_set_hidden(cfg, 3, widths);
 *     if ((rc = stochflow_model_new(&m, cfg)) < 0) goto fail;
 *     stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3);
 *     for (int step = 0; step < 5000; ++step) {
 *         stochflow_toy_sample(data, "checkerboard", 256, 1, (uint64_t)step);
 *         if ((rc = stochflow_model_train_step(&loss, m, data, 256, NULL, NULL)) < 0)
 *             goto fail;
 *     }
 *     if ((rc = stochflow_solver_new(&s)) < 0) goto fail;
 *     float samples[1000 * 2], logp[1000];
 *     rc = stochflow_solver_sample(samples, logp, s, m, 1000, 42);   // x ~ model, log p(x)
 *     rc = stochflow_solver_log_prob(logp, NULL, s, m, data, 256, 1.0);
 *     rc = stochflow_model_save(m, "flow.sfm");
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
 *    for the calling thread. Out-parameters come first.
 *  - The library never aborts, exits or prints.
 *  - Bulk data is caller-owned float32, row-major ("C order"): a batch of n points in
 *    d dimensions is n*d floats, point i at [i*d, i*d+d). Time is double.
 *  - stochflow_*_free(NULL) is a no-op.
 *  - A handle is used by one thread at a time; distinct handles may be used from
 *    distinct threads concurrently.
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
/* Status codes. Values are stable and never renumbered.                            */
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
 * Never NULL; unknown codes give "unknown status". Thread-safe. @since 0.1
 */
STOCHFLOW_API const char *stochflow_status_string(int status);

/**
 * Detail for the most recent failing call made by this thread. Never NULL (empty
 * string when no error has happened). The pointer stays valid until the next
 * failing stochflow call on the same thread. @since 0.1
 */
STOCHFLOW_API const char *stochflow_last_error_message(void);

/** Run-time version, "MAJOR.MINOR.PATCH". Compare with STOCHFLOW_VERSION_STRING. @since 0.1 */
STOCHFLOW_API const char *stochflow_version_string(void);
/** Run-time version as MAJOR*10000 + MINOR*100 + PATCH. @since 0.1 */
STOCHFLOW_API int stochflow_version_number(void);

/* ================================================================================ */
/* Enumerations. 0 always means "the default".                                      */
/* ================================================================================ */

/** Activation of the hidden layers. */
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
 * Interpolant x_t = a(t) x0 + b(t) x1, with a(0)=1, a(1)=0, b(0)=0, b(1)=1:
 *  TRIG (default):  a = cos(pi t / 2),  b = sin(pi t / 2)
 *                   a' = -(pi/2) sin(pi t / 2),  b' = (pi/2) cos(pi t / 2)
 *  LINEAR:          a = 1 - t,  b = t,  a' = -1,  b' = 1
 *  CUSTOM:          a, b, a', b' from a caller callback (stochflow_schedule_fn).
 */
#define STOCHFLOW_INTERP_TRIG 1
#define STOCHFLOW_INTERP_LINEAR 2
#define STOCHFLOW_INTERP_CUSTOM 3

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

/** Learning-rate schedules (STOCHFLOW_PARAM_LR_SCHEDULE). */
#define STOCHFLOW_LR_CONSTANT 1 /**< default */
#define STOCHFLOW_LR_STEP 2     /**< lr * factor^floor(step / every) */
#define STOCHFLOW_LR_COSINE 3   /**< cosine from lr to lr_min over total steps */

/* ================================================================================ */
/* Keyed parameters, grouped by hundreds. Setting 0 restores the default.           */
/* stochflow_param_bounds() reports the accepted range and the default.             */
/* ================================================================================ */

/* 100s: optimizer (model handle) */
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
#define STOCHFLOW_PARAM_EMA_WARMUP 116      /**< 1 = EMA decay min(EMA_DECAY, (1+s)/(10+s))
                                              at step s (Keras num_updates rule),
                                              2 = constant decay (default) */
/* (113-115: issue 9, with the transport declarations below) */

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
 * @param[out] lo,hi  inclusive bounds (any may be NULL)
 * @param[out] def    default value (may be NULL)
 * @return 0, or STOCHFLOW_E_UNSUPPORTED for an unknown key. @since 0.1
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
 * @param[out] key  the STOCHFLOW_PARAM_* value; untouched on failure
 * @return 0, STOCHFLOW_E_INVALID for a NULL argument, or STOCHFLOW_E_UNSUPPORTED for an
 *         unknown name. @since 0.3
 */
STOCHFLOW_API int stochflow_param_key(int *key, const char *name);
/**
 * Number of keyed parameters; stochflow_param_key_at(i) for i < count lists every key
 * once: the model's parameters (100s, 400s) first, then the solver's (200s, 300s).
 * @since 0.3
 */
STOCHFLOW_API size_t stochflow_param_count(void);
/** The i-th key of the table, or 0 (never a key) when i >= stochflow_param_count(). @since 0.3 */
STOCHFLOW_API int stochflow_param_key_at(size_t i);

/* ================================================================================ */
/* Configuration: what a model is made of.                                          */
/* ================================================================================ */

typedef struct stochflow_config stochflow_config;

/**
 * Caller-defined interpolant schedule: write a(t), b(t), a'(t), b'(t) into out[0..3].
 * Must satisfy a(0)=1, a(1)=0, b(0)=0, b(1)=1 (checked at attach time). Called from
 * the thread that calls the training function.
 */
typedef void (*stochflow_schedule_fn)(void *user, double t, double out[4]);

/**
 * New configuration for data dimension dim (1..65536). Defaults: hidden 256,256,256,
 * SiLU, raw time input, trigonometric interpolant, seed 0.
 * @param[out] out  receives the handle; free with stochflow_config_free().
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_config_new(stochflow_config **out, size_t dim);
/** Free a configuration; NULL is a no-op. @since 0.1 */
STOCHFLOW_API void stochflow_config_free(stochflow_config *cfg);
/** Hidden layer widths: n_layers in 1..64, each width in 1..65536 (copied). @since 0.1 */
STOCHFLOW_API int stochflow_config_set_hidden(stochflow_config *cfg, size_t n_layers,
                                              const size_t *widths);
/** Hidden activation STOCHFLOW_ACT_* (0 = default SiLU). @since 0.1 */
STOCHFLOW_API int stochflow_config_set_activation(stochflow_config *cfg, int activation);
/** Time conditioning STOCHFLOW_TIME_*; n_freq (F) in 1..64 for FOURIER, ignored for RAW. */
STOCHFLOW_API int stochflow_config_set_time_embedding(stochflow_config *cfg, int kind,
                                                      size_t n_freq);
/** Interpolant STOCHFLOW_INTERP_TRIG or _LINEAR (0 = default trig). @since 0.1 */
STOCHFLOW_API int stochflow_config_set_interpolant(stochflow_config *cfg, int kind);
/**
 * Custom interpolant from a callback (sets STOCHFLOW_INTERP_CUSTOM). The boundary
 * values are checked to 1e-6. The callback is not saved in checkpoints: a loaded
 * CUSTOM model needs stochflow_model_set_schedule() before training. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_schedule(stochflow_config *cfg, stochflow_schedule_fn fn,
                                                void *user);
/** Seed of every random draw the model makes. @since 0.1 */
STOCHFLOW_API int stochflow_config_set_seed(stochflow_config *cfg, uint64_t seed);

/** Data dimension. @since 0.1 */
STOCHFLOW_API size_t stochflow_config_dim(const stochflow_config *cfg);
/**
 * Hidden widths: copies min(count, cap) widths to widths_out (may be NULL when cap is
 * 0) and returns the number of hidden layers. @since 0.1
 */
STOCHFLOW_API size_t stochflow_config_hidden(const stochflow_config *cfg, size_t *widths_out,
                                             size_t cap);
/** Activation, time embedding kind, number of Fourier frequencies, interpolant. */
STOCHFLOW_API int stochflow_config_activation(const stochflow_config *cfg);
STOCHFLOW_API int stochflow_config_time_embedding(const stochflow_config *cfg, size_t *n_freq);
STOCHFLOW_API int stochflow_config_interpolant(const stochflow_config *cfg);
STOCHFLOW_API uint64_t stochflow_config_seed(const stochflow_config *cfg);

/* ================================================================================ */
/* Model: the velocity network, its optimizer and its random stream.                */
/* ================================================================================ */

typedef struct stochflow_model stochflow_model;

/**
 * Create a model from a configuration (the configuration is copied and may be freed
 * afterwards). Weights are initialised from the seed (PyTorch-style uniform
 * +-1/sqrt(fan_in)); Adam moments are zero; the step counter is 0.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_new(stochflow_model **out, const stochflow_config *cfg);
/** Free a model and its workspace; NULL is a no-op. @since 0.1 */
STOCHFLOW_API void stochflow_model_free(stochflow_model *m);
/** A copy of the model's configuration; free with stochflow_config_free(). @since 0.1 */
STOCHFLOW_API int stochflow_model_config(stochflow_config **out, const stochflow_model *m);
/** Data dimension d. @since 0.1 */
STOCHFLOW_API size_t stochflow_model_dim(const stochflow_model *m);
/** Number of trainable network parameters (length of the flat buffers). @since 0.1 */
STOCHFLOW_API size_t stochflow_model_num_params(const stochflow_model *m);
/** Number of optimizer updates applied so far. @since 0.1 */
STOCHFLOW_API uint64_t stochflow_model_step(const stochflow_model *m);

/** Set a 100s or 400s keyed parameter (see stochflow_param_bounds). @since 0.1 */
STOCHFLOW_API int stochflow_model_set_param(stochflow_model *m, int key, double value);
/** Read a 100s or 400s keyed parameter. @since 0.1 */
STOCHFLOW_API int stochflow_model_get_param(double *out, const stochflow_model *m, int key);
/** Attach (or replace) the callback of a CUSTOM-interpolant model. @since 0.1 */
STOCHFLOW_API int stochflow_model_set_schedule(stochflow_model *m, stochflow_schedule_fn fn,
                                               void *user);

/**
 * Interpolant loss on a batch, without any update:
 *   G = (1/n) sum_i |v(t_i, x_t,i)|^2 - 2 dI/dt_i . v(t_i, x_t,i),
 *   x_t = a(t) x0 + b(t) x1,  dI/dt = a'(t) x0 + b'(t) x1.
 * Its minimum over v is minus the path length (see doc/method.md).
 * @param[out] loss  the batch mean G
 * @param x1  data, n x d
 * @param x0  base samples n x d, or NULL to draw x0 ~ N(0, I) from the model's
 *            random stream (keyed by seed, current step and row index)
 * @param t   times in [0, 1], n values, or NULL to draw t ~ U[0, 1]
 * Uses the live (not EMA) weights; does not touch the gradient buffer or step.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE (message names the first bad
 *         index), STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_model_loss(double *loss, stochflow_model *m, const float *x1,
                                       size_t n, const float *x0, const float *t);
/**
 * One training step: compute the loss and its gradient (as stochflow_model_loss, with
 * the draws keyed by the current step), then apply one Adam update and advance the
 * step counter. A non-finite loss or gradient leaves the model unchanged (weights,
 * moments, step) and returns STOCHFLOW_E_NONFINITE. @since 0.1
 */
STOCHFLOW_API int stochflow_model_train_step(double *loss, stochflow_model *m, const float *x1,
                                             size_t n, const float *x0, const float *t);
/**
 * First half of a step: overwrite the gradient buffer with dG/dparams for the batch.
 * Together with stochflow_model_apply_gradient() this equals train_step, and lets a
 * caller combine gradients (e.g. average across processes) in between. @since 0.1
 */
STOCHFLOW_API int stochflow_model_compute_gradient(double *loss, stochflow_model *m,
                                                   const float *x1, size_t n, const float *x0,
                                                   const float *t);
/**
 * Second half of a step: gradient clipping, Adam (bias-corrected, decoupled weight
 * decay), EMA, step counter + 1, using whatever the gradient buffer holds.
 * A non-finite gradient leaves the model unchanged: STOCHFLOW_E_NONFINITE. @since 0.1
 */
STOCHFLOW_API int stochflow_model_apply_gradient(stochflow_model *m);
/**
 * Borrowed views of the flat parameter and gradient buffers (count floats each).
 * Valid until the model is freed. Writing through them is allowed between calls
 * (e.g. to install averaged gradients). Layout: doc/architecture.md. @since 0.1
 */
STOCHFLOW_API int stochflow_model_parameters(float **params, size_t *count, stochflow_model *m);
STOCHFLOW_API int stochflow_model_gradients(float **grads, size_t *count, stochflow_model *m);

/**
 * Velocity v(t, x) for a batch at one time t (in [0, 1]).
 * @param[out] v  n x d
 * Uses the evaluation weights (STOCHFLOW_PARAM_EVAL_WEIGHTS). @since 0.1
 */
STOCHFLOW_API int stochflow_model_velocity(float *v, stochflow_model *m, double t,
                                           const float *x, size_t n);
/**
 * Vector-Jacobian product with respect to x: out_i = u_i^T dv(t, x_i)/dx_i (n x d).
 * @since 0.1
 */
STOCHFLOW_API int stochflow_model_velocity_vjp(float *out, stochflow_model *m, double t,
                                               const float *x, const float *u, size_t n);
/**
 * Exact divergence div v(t, x_i) = tr(dv/dx) for each point (n values), by
 * forward-mode propagation of the d tangent directions in one batched pass.
 * @param[out] v  may be NULL; else receives v(t, x) (n x d). @since 0.1
 */
STOCHFLOW_API int stochflow_model_divergence(float *div, float *v, stochflow_model *m, double t,
                                             const float *x, size_t n);

/**
 * Checkpoints: configuration, weights, EMA weights, Adam moments, step, seed and all
 * keyed parameters, in one versioned little-endian CRC-32-checked format
 * (doc/checkpoint-format.md). Saving to a path is atomic: a temporary file in the
 * same directory is written, fsync'ed and renamed over the target. A model loaded
 * from a checkpoint continues training bit-for-bit as the saved one would have.
 * @return 0, STOCHFLOW_E_IO, STOCHFLOW_E_FORMAT, STOCHFLOW_E_VERSION,
 *         STOCHFLOW_E_NOMEM, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_model_save(stochflow_model *m, const char *path);
STOCHFLOW_API int stochflow_model_load(stochflow_model **out, const char *path);
/** Exact number of bytes stochflow_model_save_buffer() writes. @since 0.1 */
STOCHFLOW_API int stochflow_model_serialized_size(size_t *size, const stochflow_model *m);
/** Serialize into caller memory buf[0..cap); *written receives the size. @since 0.1 */
STOCHFLOW_API int stochflow_model_save_buffer(size_t *written, const stochflow_model *m,
                                              void *buf, size_t cap);
/** Load from caller memory (buffer not retained). @since 0.1 */
STOCHFLOW_API int stochflow_model_load_buffer(stochflow_model **out, const void *buf,
                                              size_t len);

/* ================================================================================ */
/* Solver: integration, sampling and log-density.                                   */
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

/** New solver with default settings (dopri5, rtol = atol = 1e-5, exact trace). */
STOCHFLOW_API int stochflow_solver_new(stochflow_solver **out);
/** Free a solver; NULL is a no-op. */
STOCHFLOW_API void stochflow_solver_free(stochflow_solver *s);
/** Set a 200s or 300s keyed parameter. */
STOCHFLOW_API int stochflow_solver_set_param(stochflow_solver *s, int key, double value);
/** Read a 200s or 300s keyed parameter. */
STOCHFLOW_API int stochflow_solver_get_param(double *out, const stochflow_solver *s, int key);
/** Seed of the Hutchinson probes (default 0). */
STOCHFLOW_API int stochflow_solver_set_seed(stochflow_solver *s, uint64_t seed);
/** Base log-density (NULL restores N(0, I)). */
STOCHFLOW_API int stochflow_solver_set_base_logpdf(stochflow_solver *s, stochflow_logpdf_fn fn,
                                                   void *user);
/** Progress/cancel callback (NULL for none). */
STOCHFLOW_API int stochflow_solver_set_progress(stochflow_solver *s, stochflow_progress_fn fn,
                                                void *user);
/** A statistic of the last integration (STOCHFLOW_STAT_*). */
STOCHFLOW_API int stochflow_solver_stat(double *out, const stochflow_solver *s, int key);

/**
 * Integrate dx/dt = v(t, x) from t0 to t1 (either direction; t in [0, 1]) in place.
 * @param[in,out] x  n x d: the states at t0 on entry, at t1 on success. On a failure
 *                   status (underflow, max steps, non-finite, cancelled) x holds the
 *                   last accepted state at time STOCHFLOW_STAT_T.
 * @param[out] dlogp  NULL, or n values receiving -integral_{t0}^{t1} div v dt
 *                    (exact or Hutchinson per STOCHFLOW_PARAM_TRACE)
 * @param[out] dlogp_se  NULL, or n standard errors of dlogp across the K Hutchinson
 *                    probes (sample std / sqrt K; NaN when K = 1; 0 for exact)
 * On a failure status after integration started, dlogp and dlogp_se hold the partial
 * accumulators up to STOCHFLOW_STAT_T as well. n = 0 is a no-op. The probes of point i
 * are keyed by (solver seed, row i) and held fixed along its trajectory.
 * Details, error control and precision: doc/log-density.md.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_STEP_UNDERFLOW,
 *         STOCHFLOW_E_MAX_STEPS, STOCHFLOW_E_CANCELLED, STOCHFLOW_E_NOMEM.
 */
STOCHFLOW_API int stochflow_solver_integrate(float *dlogp, float *dlogp_se, stochflow_solver *s,
                                             stochflow_model *m, float *x, size_t n, double t0,
                                             double t1);
/**
 * As stochflow_solver_integrate, for a caller-defined field in d dimensions (exact
 * divergence only: with STOCHFLOW_TRACE_HUTCHINSON and dlogp != NULL the call returns
 * STOCHFLOW_E_UNSUPPORTED). A non-zero callback return gives STOCHFLOW_E_CALLBACK.
 */
STOCHFLOW_API int stochflow_solver_integrate_fn(float *dlogp, stochflow_solver *s,
                                                stochflow_velocity_fn fn, void *user, size_t d,
                                                float *x, size_t n, double t0, double t1);
/**
 * Log-density log rho_t(x) of points x at time t (t = 1: the model density of data):
 * integrates (x, l) backward from t to 0 and adds the base log-density at x(0).
 * @param[out] logp  n values
 * @param[out] se    NULL, or n Hutchinson standard errors (as dlogp_se)
 */
STOCHFLOW_API int stochflow_solver_log_prob(float *logp, float *se, stochflow_solver *s,
                                            stochflow_model *m, const float *x, size_t n,
                                            double t);
/** As stochflow_solver_log_prob, for a caller-defined field (exact divergence only). */
STOCHFLOW_API int stochflow_solver_log_prob_fn(float *logp, stochflow_solver *s,
                                               stochflow_velocity_fn fn, void *user, size_t d,
                                               const float *x, size_t n, double t);
/**
 * Draw n base points x0 ~ N(0, I) (counter-based, keyed by seed and row index) and
 * integrate them to t = 1.
 * @param[out] x     n x d samples
 * @param[out] logp  NULL, or n values log rho1(x) computed in the same forward pass
 */
STOCHFLOW_API int stochflow_solver_sample(float *x, float *logp, stochflow_solver *s,
                                          stochflow_model *m, size_t n, uint64_t seed);

/* ---- added by issue 3 (integration and log-density) ----------------------------- */

/**
 * As stochflow_solver_sample, for a caller-defined field in d dimensions (exact
 * divergence only): the same base draws (keyed by seed and row index), integrated
 * 0 -> 1. logp uses the solver's base log-density at the draws (N(0, I) unless
 * replaced), so it agrees with stochflow_solver_log_prob_fn on the returned points.
 * @return as stochflow_solver_integrate, plus STOCHFLOW_E_CALLBACK. @since 0.1
 */
STOCHFLOW_API int stochflow_solver_sample_fn(float *x, float *logp, stochflow_solver *s,
                                             stochflow_velocity_fn fn, void *user, size_t d,
                                             size_t n, uint64_t seed);

/* ================================================================================ */
/* Optimizing the transport (issue 9): learnable interpolants, minibatch couplings.  */
/* See doc/transport.md.                                                             */
/* ================================================================================ */

/**
 * Learnable interpolant (set with stochflow_config_set_fourier_interpolant):
 *   a(t) = a_base(t) + sum_{m=1..M} alpha_m sin(m pi t),
 *   b(t) = b_base(t) + sum_{m=1..M} beta_m  sin(m pi t),
 * with (a_base, b_base) the TRIG or LINEAR schedule, so the boundary values hold for
 * any coefficients. alpha = beta = 0 initially (the base schedule). Training plays the
 * max-min game max_{alpha,beta} min_v G: every training step takes a descent step for
 * the network and an Adam ascent step (STOCHFLOW_PARAM_INTERP_LR) for the coefficients
 * on the same batch. The coefficients and their ascent moments are saved in checkpoints
 * (section "INTP"; files with this interpolant need a library with issue 9).
 */
#define STOCHFLOW_INTERP_FOURIER 4

/**
 * Couplings of x0 and x1 in a batch (STOCHFLOW_PARAM_COUPLING). With OT or SINKHORN,
 * stochflow_model_loss, _compute_gradient and _train_step re-pair the rows of x0 (the
 * caller's, or the model's N(0, I) draws) with the rows of x1 before forming x_t.
 * Data-to-data flows: pass base samples as x0; sample them with
 * stochflow_solver_integrate (0 -> 1) and give log-densities a base density with
 * stochflow_solver_set_base_logpdf (the default N(0, I) is wrong for such a model).
 */
#define STOCHFLOW_COUPLING_INDEPENDENT 1 /**< rows paired as given (default; the paper) */
#define STOCHFLOW_COUPLING_OT 2          /**< exact minibatch OT: x0 rows permuted to
                                              minimize sum |x0 - x1|^2 (assignment) */
#define STOCHFLOW_COUPLING_SINKHORN 3    /**< x0 row for each x1 row drawn from the
                                              entropic OT plan (Sinkhorn) of the batch */

/* Keyed parameters of the model handle added by issue 9 (100s: training). */
#define STOCHFLOW_PARAM_INTERP_LR 113    /**< Adam ascent rate of the Fourier coefficients;
                                              default 1e-3 */
#define STOCHFLOW_PARAM_COUPLING 114     /**< STOCHFLOW_COUPLING_*; default INDEPENDENT */
#define STOCHFLOW_PARAM_SINKHORN_REG 115 /**< entropic regularization of SINKHORN, as a
                                              fraction of the batch's mean cost; default
                                              0.05 */

/**
 * Select the learnable Fourier interpolant (STOCHFLOW_INTERP_FOURIER).
 * @param base     STOCHFLOW_INTERP_TRIG or STOCHFLOW_INTERP_LINEAR (0 = linear)
 * @param n_modes  M, in 1..64
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_config_set_fourier_interpolant(stochflow_config *cfg, int base,
                                                           size_t n_modes);
/**
 * Base schedule and number of modes of a FOURIER configuration (both may be NULL).
 * @return 0, or STOCHFLOW_E_INVALID when cfg is NULL or not FOURIER. @since 0.1
 */
STOCHFLOW_API int stochflow_config_fourier_interpolant(const stochflow_config *cfg, int *base,
                                                       size_t *n_modes);
/**
 * Read-only copy of the learned coefficients: alpha[0..M) and beta[0..M) (either may be
 * NULL; each must hold M values), M to *n_modes (may be NULL).
 * @return 0, or STOCHFLOW_E_INVALID when the model's interpolant is not FOURIER.
 * @since 0.1
 */
STOCHFLOW_API int stochflow_model_interpolant_coefficients(double *alpha, double *beta,
                                                           size_t *n_modes,
                                                           const stochflow_model *m);
/**
 * The model's schedule at t in [0, 1]: out = {a(t), b(t), a'(t), b'(t)}, for every
 * interpolant kind (CUSTOM calls the callback).
 * @return 0, STOCHFLOW_E_INVALID. @since 0.1
 */
STOCHFLOW_API int stochflow_model_interpolant_eval(double out[4], const stochflow_model *m,
                                                   double t);
/**
 * Running path-length estimate: the exponential moving average (decay 0.99,
 * bias-corrected) of minus the training loss, -G, over the training steps taken since
 * the model was created (kept in checkpoints). When the network is near its optimum,
 * -G estimates the path length integral_0^1 E|v(t, x_t)|^2 dt (kinetic energy), which
 * is >= W2(rho0, rho1)^2; a network short of its optimum gives a lower value.
 * Available for every interpolant.
 * @param[out] count  NULL, or the number of steps averaged
 * @return 0, or STOCHFLOW_E_INVALID before the first training step. @since 0.1
 */
STOCHFLOW_API int stochflow_model_path_length(double *out, uint64_t *count,
                                              const stochflow_model *m);
/**
 * Minibatch coupling as used in training, for n points x0 and n points x1 (n x d each):
 * perm[i] = index of the x0 row paired with x1 row i.
 *   OT:          a permutation minimizing sum_i |x0[perm[i]] - x1[i]|^2 (exact, shortest
 *                augmenting paths with potentials, O(n^3) worst case; n <= 65536)
 *   SINKHORN:    perm[i] drawn from the entropic plan's column i (keyed by seed and i),
 *                regularization reg times the mean cost (reg <= 0: 0.05); not a
 *                permutation in general
 *   INDEPENDENT: perm[i] = i
 * @param[out] cost  NULL, or the mean paired cost (1/n) sum_i |x0[perm[i]] - x1[i]|^2
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NONFINITE, STOCHFLOW_E_NOMEM. @since 0.1
 */
STOCHFLOW_API int stochflow_coupling_assign(size_t *perm, double *cost, const float *x0,
                                            const float *x1, size_t n, size_t d, int mode,
                                            double reg, uint64_t seed);

/* ================================================================================ */
/* Utilities: random numbers, built-in 2-D datasets, PNG output.                    */
/* ================================================================================ */

/**
 * Standard normal draws, counter-based (Philox4x32-10): out[i] depends only on
 * (seed, stream, i), never on n or threads. @since 0.1
 */
STOCHFLOW_API int stochflow_random_normal(float *out, size_t n, uint64_t seed, uint64_t stream);

/**
 * Built-in 2-D toy densities (FFJORD's generators): "swissroll", "circles", "rings",
 * "moons", "8gaussians", "pinwheel", "2spirals", "checkerboard", "line", "cos".
 * Writes n x 2 floats; deterministic in (name, seed, stream).
 * @return 0, STOCHFLOW_E_INVALID (unknown name lists the valid ones). @since 0.1
 */
STOCHFLOW_API int stochflow_toy_sample(float *out, const char *name, size_t n, uint64_t seed,
                                       uint64_t stream);
/** Number of built-in toys, and the name of toy i (NULL when out of range). */
STOCHFLOW_API size_t stochflow_toy_count(void);
STOCHFLOW_API const char *stochflow_toy_name(size_t i);
/**
 * True log-density of a toy where it is known in closed form ("checkerboard",
 * "8gaussians"); STOCHFLOW_E_UNSUPPORTED for the others.
 * @param[out] entropy  NULL, or the differential entropy in nats (checkerboard:
 *                      ln 32; 8gaussians: by deterministic quadrature)
 */
STOCHFLOW_API int stochflow_toy_log_density(float *logp, double *entropy, const char *name,
                                            const float *x, size_t n);

/**
 * Write an 8-bit PNG. channels: 1 (gray), 3 (RGB) or 4 (RGBA); pixels row-major,
 * interleaved, width*height*channels bytes. Atomic like checkpoints. @since 0.1
 */
STOCHFLOW_API int stochflow_png_write(const char *path, const uint8_t *pixels, uint32_t width,
                                      uint32_t height, int channels);

/* ================================================================================ */
/* Image flows (issue 8): a convolutional U-Net velocity field, image data, bits/dim. */
/* ================================================================================ */

/** Velocity-field architectures (stochflow_config_arch). */
#define STOCHFLOW_ARCH_MLP 1  /**< fully connected network on [x, phi(t)] (default) */
#define STOCHFLOW_ARCH_UNET 2 /**< convolutional U-Net on NCHW images */
/** Most U-Net resolution levels. */
#define STOCHFLOW_UNET_MAX_LEVELS 6

/**
 * Make cfg a DDPM-style U-Net over images of channels x height x width (NCHW float32;
 * channels * height * width must equal the configuration's dimension). Level l works at
 * resolution (height, width) / 2^l with base * mult[l] channels and `blocks` residual
 * blocks (GroupNorm, SiLU, 3x3 convolution, time embedding added per channel); levels
 * are joined by stride-2 convolutions down and nearest up-sampling + 3x3 convolution
 * up, with skip connections. Bit l of attn_mask adds single-head self-attention after
 * every block of level l; the middle block (lowest level) has attention when the bit of
 * the lowest level is set. Attention keeps positions^2 values per image, so it is
 * refused at levels of more than 64 x 64 = 4096 positions. The time t enters as a sinusoidal embedding of base
 * features through a 2-layer MLP of width 4 * base. The MLP settings of cfg (hidden
 * widths, activation, time embedding) are ignored; the interpolant and seed apply.
 * @param n_levels  1..STOCHFLOW_UNET_MAX_LEVELS; height and width divisible by
 *                  2^(n_levels - 1)
 * @param mult      n_levels multipliers, each 1..16
 * @param blocks    residual blocks per level, 1..8
 * @param groups    GroupNorm groups; must divide base * mult[l] for every l
 * @return 0, STOCHFLOW_E_INVALID (message names the offending value). @since 0.2
 */
STOCHFLOW_API int stochflow_config_set_unet(stochflow_config *cfg, size_t channels,
                                            size_t height, size_t width, size_t base,
                                            size_t n_levels, const size_t *mult, size_t blocks,
                                            uint32_t attn_mask, size_t groups);
/** STOCHFLOW_ARCH_MLP or STOCHFLOW_ARCH_UNET (0 for a NULL config). @since 0.2 */
STOCHFLOW_API int stochflow_config_arch(const stochflow_config *cfg);
/**
 * The U-Net settings of cfg (any output may be NULL; mult receives n_levels values).
 * @return 0, or STOCHFLOW_E_INVALID when cfg is NULL or not a U-Net. @since 0.2
 */
STOCHFLOW_API int stochflow_config_unet(size_t *channels, size_t *height, size_t *width,
                                        size_t *base, size_t *n_levels, size_t *mult,
                                        size_t *blocks, uint32_t *attn_mask, size_t *groups,
                                        const stochflow_config *cfg);

/**
 * Load 8-bit images. source is "idx:PATH" (IDX unsigned-byte file, raw or gzip, of
 * dimensions [N, H, W] (1 channel) or [N, H, W, C] with C in {1, 3}) or "pngdir:PATH"
 * (every *.png file of the directory in byte order of names; all of one size; gray
 * gives 1 channel, RGB 3; palette and 16-bit are converted to 8 bits, alpha dropped;
 * gray and RGB files may not be mixed). At most max_count images are read (0 = all).
 * A raw IDX file must have exactly the size its header implies; a gzip one is read only
 * as far as max_count needs (to its end, CRC included, when all are read). Nothing
 * proportional to a header's claimed size is allocated before the data is seen
 * (doc/images.md). On failure *pixels is NULL and the four sizes are 0.
 * @param[out] pixels  [count x channels x height x width] planar (NCHW) bytes; free
 *                     with stochflow_images_free
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
 * the result is at most min(max_count, N) x max_values bytes (doc/images.md).
 * @since 0.3
 */
STOCHFLOW_API int stochflow_images_load_limited(uint8_t **pixels, size_t *count,
                                                size_t *channels, size_t *height,
                                                size_t *width, const char *source,
                                                size_t max_count, size_t max_values);
/** Free what stochflow_images_load returned; NULL is a no-op. @since 0.2 */
STOCHFLOW_API void stochflow_images_free(uint8_t *pixels);
/**
 * Uniform dequantization into [-1, 1): out[i] = 2 (p[i] + u_i) / 256 - 1 with
 * u_i ~ U[0, 1) depending only on (seed, stream, i), never on n (Philox keying in
 * doc/images.md); stochflow_images_quantize(out[i]) == p[i] always.
 * @return 0, STOCHFLOW_E_INVALID (NULL with n > 0, stream >= 2^32). @since 0.2
 */
STOCHFLOW_API int stochflow_images_dequantize(float *out, const uint8_t *pixels, size_t n,
                                              uint64_t seed, uint64_t stream);
/** Bin centres, no noise: out[i] = 2 (p[i] + 0.5) / 256 - 1. @since 0.2 */
STOCHFLOW_API int stochflow_images_to_float(float *out, const uint8_t *pixels, size_t n);
/** Back to 8 bits: p = clamp(floor((x + 1) * 128), 0, 255); NaN gives 0. @since 0.2 */
STOCHFLOW_API int stochflow_images_quantize(uint8_t *out, const float *x, size_t n);
/**
 * Bits per dimension of a log-density logp (nats) of dequantized data scaled to
 * [-1, 1]^dim: bpd = -logp / (dim ln 2) + 7 (the 7 = log2 128 is the change of
 * variables from [0, 256)^dim; doc/images.md). A uniform density on [-1, 1]^dim gives
 * exactly 8. Returns NaN when dim is 0. @since 0.2
 */
STOCHFLOW_API double stochflow_bits_per_dim(double logp, size_t dim);
/**
 * Write n images [n x channels x height x width] (floats in [-1, 1], quantized as by
 * stochflow_images_quantize) as one PNG grid, ncols images per row (0 = ceil(sqrt n)),
 * separated by 2-pixel borders; channels 1 or 3. The PNG is ncols (width + 2) + 2 by
 * ceil(n / ncols) (height + 2) + 2 pixels (at most 10^6 each way); image k's top-left
 * pixel is at (2 + (k % ncols)(width + 2), 2 + (k / ncols)(height + 2)); borders and
 * empty cells are 128. Atomic like stochflow_png_write.
 * @return 0, STOCHFLOW_E_INVALID, STOCHFLOW_E_NOMEM, STOCHFLOW_E_IO. @since 0.2
 */
STOCHFLOW_API int stochflow_images_write_grid(const char *path, const float *images, size_t n,
                                              size_t channels, size_t height, size_t width,
                                              size_t ncols);

#ifdef __cplusplus
}
#endif

#endif /* STOCHFLOW_H */
