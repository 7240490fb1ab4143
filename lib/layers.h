/* layers.h - forward/backward pairs of the fully connected networks' layers (llm.c style).
 *
 * Conventions: outputs first, then inputs, then sizes. Row-major tensors; a batch of
 * n rows. Backward functions ACCUMULATE into parameter gradients (dw, db) and, when
 * asked, into dx; the caller zeroes explicitly. Each fast kernel has a naive
 * reference beside it (used by tests). Derivations: doc/gradients.md. */
#ifndef STOCHFLOW_LAYERS_H
#define STOCHFLOW_LAYERS_H

#include <stddef.h>

/* Dense layer.
 *   y [n x out] = x [n x in] . w^T [in x out] + b [out]      (w is [out x in])  */
void stochflow__dense_forward(float *y, const float *x, const float *w, const float *b,
                              size_t n, size_t in, size_t out, int nthreads);
/* Backward of the dense layer for an upstream gradient dy [n x out]:
 *   dw [out x in] += dy^T . x          (skipped when dw is NULL)
 *   db [out]      += sum_rows dy       (skipped when db is NULL)
 *   dx [n x in]    = dy . w  (+ dx when dx_accumulate)   (skipped when dx is NULL) */
void stochflow__dense_backward(float *dx, int dx_accumulate, float *dw, float *db,
                               const float *dy, const float *x, const float *w, size_t n,
                               size_t in, size_t out, int nthreads);
/* Naive references (double accumulation), same contracts. */
void stochflow__dense_forward_naive(float *y, const float *x, const float *w, const float *b,
                                    size_t n, size_t in, size_t out);
void stochflow__dense_backward_naive(float *dx, int dx_accumulate, float *dw, float *db,
                                     const float *dy, const float *x, const float *w,
                                     size_t n, size_t in, size_t out);

/* Element-wise activation (act = STOCHFLOW_ACT_*), count elements:
 *   y = f(z);  deriv = f'(z) (skipped when deriv is NULL).  y may alias z. */
void stochflow__act_forward(float *y, float *deriv, const float *z, size_t count, int act,
                            int nthreads);
/* Backward: dz = dy * deriv (element-wise; dz may alias dy). This one overwrites: the
 * pre-activation gradient is always a fresh buffer in the model. */
void stochflow__act_backward(float *dz, const float *dy, const float *deriv, size_t count,
                             int nthreads);
/* Hidden layer forward in one call: y = f(x w^T + b) [n x out], deriv = f'(.) (skipped
 * when NULL). For wide layers the GEMM writes x w^T (beta = 0) and the bias is added in
 * the activation pass (no copy of the bias rows, no read of y by the GEMM). */
void stochflow__dense_act_forward(float *y, float *deriv, const float *x, const float *w,
                                  const float *b, size_t n, size_t in, size_t out, int act,
                                  int nthreads);
/* Backward through an activation and the bias of the layer that produced it, in one
 * pass: dz = dy * deriv [n x cols] (dz may alias dy) and, when db is not NULL,
 * db [cols] += sum_rows dz. The rows are cut into at most STOCHFLOW__BIAS_BLOCKS
 * blocks of act_backward_bias_rows(n) rows (set by n only): each block's column sums
 * (in row order) go to part [blocks x cols], then are added to db in block order, so
 * the threads stream contiguous rows and the result does not depend on their number. */
#define STOCHFLOW__BIAS_BLOCKS 32
size_t stochflow__act_backward_bias_rows(size_t n);
void stochflow__act_backward_bias(float *dz, float *db, float *part, const float *dy,
                                  const float *deriv, size_t n, size_t cols, int nthreads);
/* LayerNorm of each row over its w columns, with a per-column affine map; the same
 * operation as a one-group GroupNorm of one position (lib/conv.h), whose naive
 * references serve as this one's (c = w, hw = 1, groups = 1):
 *   mean_i = mean_j x_ij,  rstd_i = 1 / sqrt(var_j x_ij + eps)      (lib/norm.h)
 *   y [n x w] = (x - mean) rstd gamma + beta;  mean, rstd [n] are kept for backward. */
void stochflow__layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, size_t n, size_t w,
                                  int nthreads);
/* Backward for dy [n x w], with xhat = (x - mean) rstd and g = dy gamma:
 *   dx = (or += with dx_accumulate) rstd (g - mean_j g - xhat mean_j (g xhat))
 *   dgamma [w] += sum_rows dy xhat,  dbeta [w] += sum_rows dy   (both, or neither when
 *   dgamma is NULL), summed per block of act_backward_bias_rows(n) rows into
 *   part [STOCHFLOW__BIAS_BLOCKS x 2w], then in block order (as act_backward_bias). */
void stochflow__layernorm_backward(float *dx, int dx_accumulate, float *dgamma, float *dbeta,
                                   float *part, const float *dy, const float *x,
                                   const float *mean, const float *rstd, const float *gamma,
                                   size_t n, size_t w, int nthreads);
/* Forward-mode tangents: each row's T input tangents t [rows x T x w] to the output's,
 * out [rows x T x w] = gamma rstd (t - mean_j t - xhat mean_j (t xhat)) (the Jacobian
 * whose transpose backward applies). */
void stochflow__layernorm_tangents(float *out, const float *t, const float *x,
                                   const float *mean, const float *rstd, const float *gamma,
                                   size_t rows, size_t T, size_t w, int nthreads);
void stochflow__layernorm_tangents_naive(float *out, const float *t, const float *x,
                                         const float *mean, const float *rstd,
                                         const float *gamma, size_t rows, size_t T, size_t w);
/* Threads: the functions taking nthreads split their own loops into contiguous ranges
 * of rows or output columns (never across a sum), so results do not depend on it
 * (lib/parallel.h). */
/* Dot product of n floats with 8 partial sums in a fixed order (vectorizable). */
float stochflow__dot(const float *a, const float *b, size_t n);
/* Forward-mode tangents through an activation: t [rows x T x H] *= f' [rows x H]
 * (each row's T tangents scaled by that row's derivative). */
void stochflow__scale_tangents(float *t, const float *f, size_t rows, size_t T, size_t H,
                               int nthreads);
/* Scalar reference of f and f' in double, for tests. */
double stochflow__act_ref(double z, int act, double *deriv);

#endif
