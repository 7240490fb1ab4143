/*
 * internal.h - declarations shared between the library's source files.
 * Nothing here is exported; cross-file names are stochflow__<module>_<name>.
 */
#ifndef STOCHFLOW_INTERNAL_H
#define STOCHFLOW_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "stochflow.h"

/* ---- constants and checks used everywhere ---------------------------------------- */

#define STOCHFLOW__PI 3.14159265358979323846
#define STOCHFLOW__HALF_PI (0.5 * STOCHFLOW__PI) /* exact: halving a double */

/* 1 when v is finite, 0 for NaN or +-Inf: v - v is 0 for finite v and NaN otherwise.
 * Branch-free, so loops that test every element still vectorize. */
static inline int stochflow__finitef(float v) { return v - v == 0.0f; }

/* Largest dimension that may be whitened (lib/standardize.c): the factor is d x d doubles
 * in the model and its checkpoint, and the fit costs n d^2. */
#define STOCHFLOW__MAX_WHITEN_DIM 1024

/* ---- errors (error.c) ------------------------------------------------------------ */

/* Record a formatted message for this thread and return status (always < 0). */
int stochflow__error(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* For value getters (the value is the return, not a status): record
 * "<fn>: <what> is NULL" as an INVALID message and return 0, never a valid value of theirs
 * (doc/errors.md). */
int stochflow__null_handle(const char *fn, const char *what);

/* Return status with a message when cond holds. */
#define RETURN_ERROR_IF(cond, status, ...)                 \
    do {                                                   \
        if (cond) return stochflow__error((status), __VA_ARGS__); \
    } while (0)
/* Propagate a negative status (the callee already set the message). */
#define FORWARD_IF_ERROR(expr)        \
    do {                              \
        int rc__ = (expr);            \
        if (rc__ < 0) return rc__;    \
    } while (0)

/* ---- allocation (alloc.c) -------------------------------------------------------- */

/* All library allocations go through these, so tests can inject failures. Sizes are
 * checked for overflow: stochflow__alloc_array(n, size) returns NULL if n*size
 * overflows. Memory is 64-byte aligned. */
void *stochflow__malloc(size_t size);
void *stochflow__calloc(size_t n, size_t size);
void *stochflow__alloc_array(size_t n, size_t size);
void stochflow__free(void *p);
/* Test hook: make the n-th allocation from now on fail (n = 1: the next one); 0 turns
 * injection off. Returns the number of allocations made since the last call. Not
 * thread-safe; for tests only. */
void stochflow__alloc_fail_at(uint64_t n);
uint64_t stochflow__alloc_count(void);

/* n rounded up to a multiple of 16 (floats: 64 bytes), where workspace regions start. */
static inline size_t stochflow__pad16(size_t n) { return (n + 15) / 16 * 16; }

/* Checked multiply: *out = a*b, returns 0, or -1 on overflow. */
static inline int stochflow__mul_size(size_t *out, size_t a, size_t b) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

/* ---- random numbers (rng.c) ------------------------------------------------------ */

/* Philox4x32-10: 128-bit counter ctr, 64-bit key; 4 x 32 random bits out. */
void stochflow__philox(uint32_t out[4], const uint32_t ctr[4], uint64_t key);

/* Streams: a draw is keyed by (seed, stream, step, row, block). */
enum {
    STOCHFLOW__STREAM_X0 = 1,        /* training base samples */
    STOCHFLOW__STREAM_T = 2,         /* training times */
    STOCHFLOW__STREAM_INIT = 3,      /* weight initialisation */
    STOCHFLOW__STREAM_EVAL_X0 = 4,   /* loss evaluation base samples */
    STOCHFLOW__STREAM_EVAL_T = 5,    /* loss evaluation times */
    STOCHFLOW__STREAM_SAMPLE = 6,    /* stochflow_solver_sample base draws */
    STOCHFLOW__STREAM_PROBE = 7,     /* Hutchinson probes */
    STOCHFLOW__STREAM_COUPLING = 8,  /* Sinkhorn coupling draws */
    STOCHFLOW__STREAM_CTX_DROP = 9,  /* context dropout of conditional training */
    STOCHFLOW__STREAM_USER = 16,     /* stochflow_random_normal (user stream in the step);
                                        toys.c takes USER + 1..3, images.c USER + 4 */
    STOCHFLOW__STREAM_USER_UNIFORM = 21 /* stochflow_random_uniform (likewise) */
};

/* A cursor over the random words of one (seed, stream, step, row). */
typedef struct {
    uint64_t key;
    uint32_t ctr[4];
    uint32_t buf[4];
    int avail;
} stochflow__rng;

void stochflow__rng_init(stochflow__rng *r, uint64_t seed, uint32_t stream, uint64_t step,
                         uint64_t row);
uint32_t stochflow__rng_u32(stochflow__rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double stochflow__rng_uniform(stochflow__rng *r);
/* Standard normal (Box-Muller, one output per call). */
double stochflow__rng_normal(stochflow__rng *r);

/* ---- BLIS wrapper (gemm.c): the only file that includes <blis.h> ----------------- */

/* C[m x n] = alpha * op(A) op(B) + beta * C, row-major with leading dimensions.
 * op(A) is m x k: A is m x k (lda >= k) or, with ta, k x m (lda >= m). Likewise B.
 * nthreads via a per-call runtime object. Checks its own arguments before calling BLIS
 * (which would abort() on bad ones): sizes and leading dimensions within BLIS's signed
 * range, each leading dimension at least a stored row, no NULL operand when there is
 * work. Returns 0, or STOCHFLOW_E_INVALID with a message and C untouched. Callers pass
 * sizes from validated layouts, so the check is a guard, not their validation; it costs
 * a few comparisons per call. */
int stochflow__sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                     const float *a, size_t lda, const float *b, size_t ldb, float beta,
                     float *c, size_t ldc, int nthreads);
/* Naive reference (double accumulation) with the same contract, for tests. */
void stochflow__sgemm_naive(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                            const float *a, size_t lda, const float *b, size_t ldb,
                            float beta, float *c, size_t ldc);

/* ---- interpolants (interpolant.c) ------------------------------------------------ */

#define STOCHFLOW__MAX_MODES 64  /* Fourier interpolant modes */

/* The interpolant, stored once: in the configuration (stochflow_config.interp), and so
 * in the model's copy of it (m->cfg.interp), which is the live one. */
typedef struct {
    int kind;                    /* STOCHFLOW_INTERP_* */
    stochflow_schedule_fn fn;    /* CUSTOM only */
    void *user;
    /* FOURIER only: base schedule (TRIG or LINEAR), M modes, coef[0..M) = alpha (added
     * to a), coef[M..2M) = beta (added to b). The coefficients are learned: zero in a
     * new model, set by the optimizer's ascent step and by checkpoints. */
    int base;
    size_t n_modes;
    double coef[2 * STOCHFLOW__MAX_MODES];
} stochflow__interp;

/* out = {a, b, a', b'} at t. Returns 0, or an error for CUSTOM without a callback. */
int stochflow__interp_eval(const stochflow__interp *ip, double t, double out[4]);
/* Check the boundary values of a schedule (to 1e-6); error message on failure. */
int stochflow__interp_check(const stochflow__interp *ip);
/* FOURIER: the gradient of the batch loss G with respect to (alpha, beta) into grad
 * [2 M], given the network output o [n x d], the loss's input gradient du (row stride
 * du_stride, x_t in the first d columns), the paired x0, x1 [n x d] and the times t. */
void stochflow__interp_coef_grad(double *grad, const stochflow__interp *ip, const float *o,
                                 const float *du, size_t du_stride, const float *x0,
                                 const float *x1, const double *t, size_t n, size_t d);

/* ---- model internals used by the solver (model.c) ------------------------------- */

/*
 * Evaluate the velocity with the evaluation weights at one time t for n points,
 * chunking large batches internally (workspace stays bounded).
 *   v      [n x d] out (may be NULL when only the divergence is wanted)
 *   div    [n] out, exact divergence, or NULL
 *   probes [n x K x d] Hutchinson probe vectors, or NULL
 *   quad   [n x K] out: probe_k . (dv/dx probe_k) for each probe, or NULL
 * Returns 0 or a negative status (NOMEM, NONFINITE when v is not finite).
 */
int stochflow__model_eval(stochflow_model *m, double t, const float *x, size_t n, float *v,
                          float *div, const float *probes, size_t K, float *quad);

/* ---- files (fileio.c) ----------------------------------------------------------- */

/* Write len bytes to path atomically: temporary file in the same directory, fsync,
 * rename over path, fsync of the directory. STOCHFLOW_E_IO with a message on failure
 * (the old file, if any, is left intact). */
int stochflow__atomic_write(const char *path, const void *data, size_t len);
/* CRC-32 (IEEE, as zlib's crc32()). */
uint32_t stochflow__crc32(const void *p, size_t n);
/* Read a regular file of at most max_size bytes into *data (free with stochflow__free).
 * STOCHFLOW_E_IO (missing, not regular, too large, read error) or NOMEM. */
int stochflow__read_file(uint8_t **data, size_t *len, const char *path, uint64_t max_size);

/* ---- checks --------------------------------------------------------------------- */

/* 0 when all n values are finite, else NONFINITE naming what and the first index. */
int stochflow__check_finite(const float *x, size_t n, const char *what);

#endif /* STOCHFLOW_INTERNAL_H */
