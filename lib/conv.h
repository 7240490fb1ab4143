/* conv.h - forward/backward pairs of the image layers used by the U-Net:
 * 2-D convolution, GroupNorm, nearest 2x up-sampling and single-head self-attention.
 *
 * Conventions as in layers.h: outputs first, then inputs, then sizes. Tensors are NCHW
 * float32, contiguous. Backward functions ACCUMULATE into parameter gradients (dw, db,
 * dgamma, dbeta) when those are non-NULL; dx is written (dx_accumulate = 0) or added to
 * (dx_accumulate = 1) and skipped when NULL. No function allocates: scratch memory comes
 * from the caller, sized by the *_scratch() queries. Each fast kernel has a naive
 * reference beside it (double accumulation) used by the tests. nthreads splits loops
 * into fixed contiguous ranges (lib/parallel.h), never across a sum, so results do not
 * depend on it. Derivations: doc/gradients.md ("Image layers"). */
#ifndef STOCHFLOW_CONV_H
#define STOCHFLOW_CONV_H

#include <stddef.h>

/* ---- 2-D convolution ----------------------------------------------------------------
 * Square kernel k in {1, 3}, stride s in {1, 2}, zero padding p = (k - 1) / 2:
 *   Ho = (H + 2p - k) / s + 1, Wo likewise (integer division).
 *   x [n x ci x H x W], w [co x ci x k x k], b [co] (b may be NULL: no bias),
 *   y [n x co x Ho x Wo]:
 *   y[i,o,r,c] = b[o] + sum_{j,u,v} w[o,j,u,v] x[i, j, s r + u - p, s c + v - p]   */
typedef struct {
    size_t n, ci, h, w; /* input */
    size_t co, k, stride;
} stochflow__conv_shape;

size_t stochflow__conv_out_h(const stochflow__conv_shape *s);
size_t stochflow__conv_out_w(const stochflow__conv_shape *s);
/* Floats of scratch that forward and backward need for shape s (the same for both). */
size_t stochflow__conv_scratch(const stochflow__conv_shape *s);
void stochflow__conv_forward(float *y, const float *x, const float *w, const float *b,
                             const stochflow__conv_shape *s, float *scratch, int nthreads);
/* dw [co x ci x k x k] += sum dy (x) x;  db [co] += sum dy;  dx = (or +=) w^T (x) dy. */
void stochflow__conv_backward(float *dx, int dx_accumulate, float *dw, float *db,
                              const float *dy, const float *x, const float *w,
                              const stochflow__conv_shape *s, float *scratch, int nthreads);
void stochflow__conv_forward_naive(float *y, const float *x, const float *w, const float *b,
                                   const stochflow__conv_shape *s);
void stochflow__conv_backward_naive(float *dx, int dx_accumulate, float *dw, float *db,
                                    const float *dy, const float *x, const float *w,
                                    const stochflow__conv_shape *s);

/* ---- GroupNorm -----------------------------------------------------------------------
 * x, y [n x c x hw]; groups divides c; per (image, group) over its c/groups channels and
 * hw positions: mu, var (biased), rstd = 1/sqrt(var + eps), eps = 1e-5;
 *   y = (x - mu) rstd gamma[c] + beta[c].   mean, rstd [n x groups] are saved for backward. */
void stochflow__groupnorm_forward(float *y, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, size_t n, size_t c,
                                  size_t hw, size_t groups, int nthreads);
void stochflow__groupnorm_backward(float *dx, int dx_accumulate, float *dgamma, float *dbeta,
                                   const float *dy, const float *x, const float *mean,
                                   const float *rstd, const float *gamma, size_t n, size_t c,
                                   size_t hw, size_t groups, int nthreads);
void stochflow__groupnorm_forward_naive(float *y, float *mean, float *rstd, const float *x,
                                        const float *gamma, const float *beta, size_t n,
                                        size_t c, size_t hw, size_t groups);
void stochflow__groupnorm_backward_naive(float *dx, int dx_accumulate, float *dgamma,
                                         float *dbeta, const float *dy, const float *x,
                                         const float *mean, const float *rstd,
                                         const float *gamma, size_t n, size_t c, size_t hw,
                                         size_t groups);

/* ---- nearest-neighbour 2x up-sampling ------------------------------------------------
 * x [n x c x h x w] -> y [n x c x 2h x 2w], y[i,j,r,q] = x[i,j,r/2,q/2];
 * backward: dx[i,j,r,q] (+)= sum of the 4 dy it was copied to. */
void stochflow__upsample2_forward(float *y, const float *x, size_t n, size_t c, size_t h,
                                  size_t w, int nthreads);
void stochflow__upsample2_backward(float *dx, int dx_accumulate, const float *dy, size_t n,
                                   size_t c, size_t h, size_t w, int nthreads);

/* ---- single-head self-attention over positions ---------------------------------------
 * q, k, v, o [n x c x L] (L = h*w positions, channel-major as NCHW);
 *   P[i] [L x L] = softmax over j of (q[i,:,a] . k[i,:,j]) / sqrt(c)   (row a)
 *   o[i,:,a] = sum_j P[i][a,j] v[i,:,j].
 * probs [n x L x L] is saved by forward for backward. Backward WRITES dq, dk, dv
 * (no accumulation; none may be NULL). scratch: stochflow__attention_scratch floats. */
size_t stochflow__attention_scratch(size_t n, size_t c, size_t L, int nthreads);
void stochflow__attention_forward(float *o, float *probs, const float *q, const float *k,
                                  const float *v, size_t n, size_t c, size_t L, int nthreads);
void stochflow__attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *probs, size_t n, size_t c, size_t L,
                                   float *scratch, int nthreads);
void stochflow__attention_forward_naive(float *o, float *probs, const float *q, const float *k,
                                        const float *v, size_t n, size_t c, size_t L);
void stochflow__attention_backward_naive(float *dq, float *dk, float *dv, const float *dout,
                                         const float *q, const float *k, const float *v,
                                         const float *probs, size_t n, size_t c, size_t L);

#endif
