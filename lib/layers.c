/* layers.c - dense layer, activations and LayerNorm: fast kernels and naive references.
 * Shapes are documented in layers.h; gradients are derived in doc/gradients.md. */
#include <math.h>
#include <string.h>

#include "fastmath.h"
#include "internal.h"
#include "layers.h"
#include "norm.h"
#include "parallel.h"

/* Sign-symmetric logistic sigmoid: e = exp(-|z|) never overflows. */
static inline float sigmoid_(float z) {
    float e = exp_nonpos(-fabsf(z));
    float r = 1.0f / (1.0f + e);
    return z >= 0.0f ? r : e * r;
}

/* Dot product with 8 independent partial sums (vectorizable, fixed order). */
static inline float dot8(const float *a, const float *b, size_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; ++l) acc[l] += a[k + l] * b[k + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; k < n; ++k) s += a[k] * b[k];
    return s;
}

float stochflow__dot(const float *a, const float *b, size_t n) { return dot8(a, b, n); }

void stochflow__partition(size_t *lo, size_t *hi, size_t count, int part, int parts,
                          size_t align) {
    size_t blocks = (count + align - 1) / align;
    size_t b0 = blocks * (size_t)part / (size_t)parts, b1 = blocks * (size_t)(part + 1) / (size_t)parts;
    *lo = b0 * align < count ? b0 * align : count;
    *hi = b1 * align < count ? b1 * align : count;
}

/* Below this size of the reduction or output dimension BLIS's packed kernels lose to a
 * plain loop (machine-perf.md: K = 3 runs at ~5 GFLOP/s through BLIS). */
#define SMALL_DIM 16
#define JB 64 /* output block of the small-input kernels (stack tiles of SMALL_DIM x JB) */

/* ---- dense layer: range kernels ------------------------------------------------------ */

/* Input layer (in <= SMALL_DIM), rows [r0, r1): y = x w^T + b with a stack tile of w^T
 * so the inner loop runs along contiguous outputs. */
SIMD_CLONES
static void fwd_small_in(float *y, const float *x, const float *w, const float *b, size_t r0,
                         size_t r1, size_t in, size_t out) {
    float wt[SMALL_DIM * JB];
    for (size_t j0 = 0; j0 < out; j0 += JB) {
        size_t jn = out - j0 < JB ? out - j0 : JB;
        for (size_t k = 0; k < in; ++k)
            for (size_t j = 0; j < jn; ++j) wt[k * JB + j] = w[(j0 + j) * in + k];
        for (size_t i = r0; i < r1; ++i) {
            float *yr = y + i * out + j0;
            const float *xr = x + i * in;
            for (size_t j = 0; j < jn; ++j) yr[j] = b[j0 + j];
            for (size_t k = 0; k < in; ++k) {
                const float xk = xr[k];
                const float *wk = wt + k * JB;
                for (size_t j = 0; j < jn; ++j) yr[j] += xk * wk[j];
            }
        }
    }
}

/* Output layer (out <= SMALL_DIM), rows [r0, r1): a few dot products per row. With
 * GNU vector types, four rows at a time, so that four independent accumulators hide
 * the add latency. Each (row, output) sum runs exactly as dot8 does (8 lanes by
 * k mod 8, the same tree, the same tail), so the result is dot8's bit for bit. */
#ifdef __GNUC__
typedef float v8sf __attribute__((vector_size(32)));
/* Sum of the 8 lanes of *a in dot8's order, plus dot8's tail from k8 to in. Pointer
 * arguments: passing vectors by value changes the ABI between the SIMD clones. */
static inline float finish8(const v8sf *a, const float *x, const float *w, size_t k8,
                            size_t in) {
    const v8sf v = *a;
    float s = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    for (size_t k = k8; k < in; ++k) s += x[k] * w[k];
    return s;
}
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v))
#endif

SIMD_CLONES
static void fwd_small_out(float *y, const float *x, const float *w, const float *b, size_t r0,
                          size_t r1, size_t in, size_t out) {
    size_t i = r0;
#ifdef __GNUC__
    const size_t k8 = in / 8 * 8;
    for (; i + 4 <= r1; i += 4) {
        const float *x0 = x + i * in, *x1 = x0 + in, *x2 = x1 + in, *x3 = x2 + in;
        for (size_t j = 0; j < out; ++j) {
            const float *wj = w + j * in;
            v8sf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, wv, t0, t1, t2, t3;
            for (size_t k = 0; k < k8; k += 8) {
                LOAD8(wv, wj + k);
                LOAD8(t0, x0 + k);
                LOAD8(t1, x1 + k);
                LOAD8(t2, x2 + k);
                LOAD8(t3, x3 + k);
                a0 += t0 * wv;
                a1 += t1 * wv;
                a2 += t2 * wv;
                a3 += t3 * wv;
            }
            y[i * out + j] = finish8(&a0, x0, wj, k8, in) + b[j];
            y[(i + 1) * out + j] = finish8(&a1, x1, wj, k8, in) + b[j];
            y[(i + 2) * out + j] = finish8(&a2, x2, wj, k8, in) + b[j];
            y[(i + 3) * out + j] = finish8(&a3, x3, wj, k8, in) + b[j];
        }
    }
#endif
    for (; i < r1; ++i)
        for (size_t j = 0; j < out; ++j) y[i * out + j] = dot8(x + i * in, w + j * in, in) + b[j];
}

void stochflow__dense_forward(float *y, const float *x, const float *w, const float *b,
                              size_t n, size_t in, size_t out, int nthreads) {
    if (in <= SMALL_DIM) {
#define BODY(lo, hi) fwd_small_in(y, x, w, b, lo, hi, in, out)
        PARALLEL_RANGES(n, n * out, nthreads, 1, BODY);
#undef BODY
        return;
    }
    if (out <= SMALL_DIM) {
#define BODY(lo, hi) fwd_small_out(y, x, w, b, lo, hi, in, out)
        PARALLEL_RANGES(n, n * in, nthreads, 1, BODY);
#undef BODY
        return;
    }
    for (size_t i = 0; i < n; ++i) memcpy(y + i * out, b, out * sizeof *y);
    stochflow__sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 1.0f, y, out, nthreads);
}

/* db[j] += sum_i dy[i, j] for columns [c0, c1) (rows summed in order). */
SIMD_CLONES
static void bias_grad(float *db, const float *dy, size_t n, size_t out, size_t c0, size_t c1) {
    for (size_t i = 0; i < n; ++i) {
        const float *dyr = dy + i * out;
        for (size_t j = c0; j < c1; ++j) db[j] += dyr[j];
    }
}

/* Input-layer weight gradient for output columns [c0, c1) (multiples of JB): a dw^T
 * tile (in x JB) accumulated on the stack along contiguous outputs. */
SIMD_CLONES
static void wgrad_small_in(float *dw, const float *dy, const float *x, size_t n, size_t in,
                           size_t out, size_t c0, size_t c1) {
    float acc[SMALL_DIM * JB];
    for (size_t j0 = c0; j0 < c1; j0 += JB) {
        size_t jn = c1 - j0 < JB ? c1 - j0 : JB;
        memset(acc, 0, sizeof acc);
        for (size_t i = 0; i < n; ++i) {
            const float *dyr = dy + i * out + j0;
            const float *xr = x + i * in;
            for (size_t k = 0; k < in; ++k) {
                const float xk = xr[k];
                float *ak = acc + k * JB;
                for (size_t j = 0; j < jn; ++j) ak[j] += xk * dyr[j];
            }
        }
        for (size_t j = 0; j < jn; ++j)
            for (size_t k = 0; k < in; ++k) dw[(j0 + j) * in + k] += acc[k * JB + j];
    }
}

/* Output-layer weight gradient for input columns [k0, k1): dw[j, k] += sum_i dy[i,j] x[i,k]. */
SIMD_CLONES
static void wgrad_small_out(float *dw, const float *dy, const float *x, size_t n, size_t in,
                            size_t out, size_t k0, size_t k1) {
    for (size_t i = 0; i < n; ++i) {
        const float *dyr = dy + i * out;
        const float *xr = x + i * in;
        for (size_t j = 0; j < out; ++j) {
            const float g = dyr[j];
            float *dwr = dw + j * in;
            for (size_t k = k0; k < k1; ++k) dwr[k] += g * xr[k];
        }
    }
}

/* Input gradient of a thin layer for rows [r0, r1): dx[i, :] (+)= sum_j dy[i, j] w[j, :]. */
SIMD_CLONES
static void xgrad_small(float *dx, int accumulate, const float *dy, const float *w, size_t r0,
                        size_t r1, size_t in, size_t out) {
    for (size_t i = r0; i < r1; ++i) {
        float *dxr = dx + i * in;
        const float *dyr = dy + i * out;
        if (!accumulate) memset(dxr, 0, in * sizeof *dxr);
        for (size_t j = 0; j < out; ++j) {
            float g = dyr[j];
            const float *wr = w + j * in;
            for (size_t k = 0; k < in; ++k) dxr[k] += g * wr[k];
        }
    }
}

void stochflow__dense_backward(float *dx, int dx_accumulate, float *dw, float *db,
                               const float *dy, const float *x, const float *w, size_t n,
                               size_t in, size_t out, int nthreads) {
    if (db) {
#define BODY(lo, hi) bias_grad(db, dy, n, out, lo, hi)
        PARALLEL_RANGES(out, n * out, nthreads, 16, BODY);
#undef BODY
    }
    if (dw) {
        if (in <= SMALL_DIM) {
#define BODY(lo, hi) wgrad_small_in(dw, dy, x, n, in, out, lo, hi)
            PARALLEL_RANGES(out, n * out * in, nthreads, JB, BODY);
#undef BODY
        } else if (out <= SMALL_DIM) {
#define BODY(lo, hi) wgrad_small_out(dw, dy, x, n, in, out, lo, hi)
            PARALLEL_RANGES(in, n * out * in, nthreads, 16, BODY);
#undef BODY
        } else {
            stochflow__sgemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in, nthreads);
        }
    }
    if (dx) {
        if (in <= SMALL_DIM || out <= SMALL_DIM) {
#define BODY(lo, hi) xgrad_small(dx, dx_accumulate, dy, w, lo, hi, in, out)
            PARALLEL_RANGES(n, n * out * in, nthreads, 1, BODY);
#undef BODY
        } else {
            stochflow__sgemm(0, 0, n, in, out, 1.0f, dy, out, w, in, dx_accumulate ? 1.0f : 0.0f,
                             dx, in, nthreads);
        }
    }
}

void stochflow__dense_forward_naive(float *y, const float *x, const float *w, const float *b,
                                    size_t n, size_t in, size_t out) {
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < out; ++j) {
            double acc = b[j];
            for (size_t k = 0; k < in; ++k) acc += (double)x[i * in + k] * w[j * in + k];
            y[i * out + j] = (float)acc;
        }
}

void stochflow__dense_backward_naive(float *dx, int dx_accumulate, float *dw, float *db,
                                     const float *dy, const float *x, const float *w,
                                     size_t n, size_t in, size_t out) {
    for (size_t j = 0; j < out; ++j) {
        if (db) {
            double acc = 0;
            for (size_t i = 0; i < n; ++i) acc += dy[i * out + j];
            db[j] += (float)acc;
        }
        if (dw)
            for (size_t k = 0; k < in; ++k) {
                double acc = 0;
                for (size_t i = 0; i < n; ++i) acc += (double)dy[i * out + j] * x[i * in + k];
                dw[j * in + k] += (float)acc;
            }
    }
    if (dx)
        for (size_t i = 0; i < n; ++i)
            for (size_t k = 0; k < in; ++k) {
                double acc = dx_accumulate ? dx[i * in + k] : 0.0;
                for (size_t j = 0; j < out; ++j) acc += (double)dy[i * out + j] * w[j * in + k];
                dx[i * in + k] = (float)acc;
            }
}

/* One loop per (activation, with/without derivative): no branch inside, so every
 * loop vectorizes. */
#define ACT_LOOP(F_AND_D)                                        \
    do {                                                         \
        if (deriv) {                                             \
            for (size_t i = 0; i < count; ++i) {                 \
                float v = z[i], f, d;                            \
                F_AND_D;                                         \
                deriv[i] = d;                                    \
                y[i] = f;                                        \
            }                                                    \
        } else {                                                 \
            for (size_t i = 0; i < count; ++i) {                 \
                float v = z[i], f, d;                            \
                F_AND_D;                                         \
                (void)d;                                         \
                y[i] = f;                                        \
            }                                                    \
        }                                                        \
    } while (0)

#ifdef STOCHFLOW_HAVE_V8
/* SiLU of 8 elements (and f' when deriv): lane for lane the scalar loop's operations
 * (sigmoid_, then f = v d, f' = d (1 + v (1 - d))), bit for bit. */
static inline void silu8(float *y, float *deriv, const float *z) {
    stochflow__v8sf v, e, mabs;
    memcpy(&v, z, sizeof v);
    stochflow__v8si sign = {0};
    sign += (int32_t)0x80000000u;
    mabs = (stochflow__v8sf)((stochflow__v8si)v | sign); /* -fabsf(v) */
    exp_nonpos8((float *)&e, (const float *)&mabs);
    stochflow__v8sf r = 1.0f / (1.0f + e);
    stochflow__v8sf d = STOCHFLOW__V8_SELECT(v >= 0.0f, r, e * r);
    stochflow__v8sf f = v * d;
    if (deriv) {
        stochflow__v8sf dd = d * (1.0f + v * (1.0f - d));
        memcpy(deriv, &dd, sizeof dd);
    }
    memcpy(y, &f, sizeof f);
}
#endif

SIMD_CLONES
static void act_range(float *y, float *deriv, const float *z, size_t count, int act) {
#ifdef STOCHFLOW_HAVE_V8
    if (act == STOCHFLOW_ACT_SILU) {
        size_t i = 0;
        if (deriv)
            for (; i + 8 <= count; i += 8) silu8(y + i, deriv + i, z + i);
        else
            for (; i + 8 <= count; i += 8) silu8(y + i, NULL, z + i);
        y += i;
        z += i;
        if (deriv) deriv += i;
        count -= i;
    }
#endif
    switch (act) {
    case STOCHFLOW_ACT_TANH:
        ACT_LOOP(f = tanhf(v); d = 1.0f - f * f);
        break;
    case STOCHFLOW_ACT_RELU:
        ACT_LOOP(f = v > 0.0f ? v : 0.0f; d = v > 0.0f ? 1.0f : 0.0f);
        break;
    case STOCHFLOW_ACT_SOFTPLUS:
        /* log(1 + e^v) = max(v, 0) + log1p(e^-|v|), stable for all v */
        ACT_LOOP(d = sigmoid_(v); f = (v > 0.0f ? v : 0.0f) + log1pf(exp_nonpos(-fabsf(v))));
        break;
    default: /* STOCHFLOW_ACT_SILU */
        ACT_LOOP(d = sigmoid_(v); f = v * d; d = d * (1.0f + v * (1.0f - d)));
        break;
    }
}

void stochflow__act_forward(float *y, float *deriv, const float *z, size_t count, int act,
                            int nthreads) {
#define BODY(lo, hi) act_range(y + (lo), deriv ? deriv + (lo) : NULL, z + (lo), (hi) - (lo), act)
    PARALLEL_RANGES(count, count, nthreads, 16, BODY);
#undef BODY
}

/* Rows [r0, r1) of y [n x out]: z = y + b (the GEMM's product plus the bias), then
 * y = f(z) and deriv = f'(z), row by row while the row is in cache. */
SIMD_CLONES
static void bias_act_rows(float *y, float *deriv, const float *b, size_t r0, size_t r1,
                          size_t out, int act) {
    for (size_t i = r0; i < r1; ++i) {
        float *yr = y + i * out;
        for (size_t j = 0; j < out; ++j) yr[j] = yr[j] + b[j];
        act_range(yr, deriv ? deriv + i * out : NULL, yr, out, act);
    }
}

void stochflow__dense_act_forward(float *y, float *deriv, const float *x, const float *w,
                                  const float *b, size_t n, size_t in, size_t out, int act,
                                  int nthreads) {
    if (in <= SMALL_DIM || out <= SMALL_DIM) {
        stochflow__dense_forward(y, x, w, b, n, in, out, nthreads);
        stochflow__act_forward(y, deriv, y, n * out, act, nthreads);
        return;
    }
    stochflow__sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out, nthreads);
#define BODY(lo, hi) bias_act_rows(y, deriv, b, lo, hi, out, act)
    PARALLEL_RANGES(n, n * out, nthreads, 1, BODY);
#undef BODY
}

/* Rows [r0, r1) of dz = dy * deriv [n x cols] (in place allowed), and their column
 * sums, in row order, into part [cols] (overwritten). */
SIMD_CLONES
static void mul_colsum_rows(float *dz, float *part, const float *dy, const float *deriv,
                            size_t r0, size_t r1, size_t cols) {
    for (size_t j = 0; j < cols; ++j) part[j] = 0.0f;
    for (size_t i = r0; i < r1; ++i) {
        float *dzr = dz + i * cols;
        const float *dyr = dy + i * cols, *fr = deriv + i * cols;
        for (size_t j = 0; j < cols; ++j) {
            const float v = dyr[j] * fr[j];
            dzr[j] = v;
            part[j] += v;
        }
    }
}

/* db[j] += part[0][j] + part[1][j] + ... (blocks in order) for columns [c0, c1). */
SIMD_CLONES
static void add_parts(float *db, const float *part, size_t nb, size_t cols, size_t c0,
                      size_t c1) {
    for (size_t b = 0; b < nb; ++b)
        for (size_t j = c0; j < c1; ++j) db[j] += part[b * cols + j];
}

size_t stochflow__act_backward_bias_rows(size_t n) {
    size_t rb = (n + STOCHFLOW__BIAS_BLOCKS - 1) / STOCHFLOW__BIAS_BLOCKS;
    return rb < 16 ? 16 : (rb + 15) / 16 * 16;
}

void stochflow__act_backward_bias(float *dz, float *db, float *part, const float *dy,
                                  const float *deriv, size_t n, size_t cols, int nthreads) {
    if (db == NULL) {
        stochflow__act_backward(dz, dy, deriv, n * cols, nthreads);
        return;
    }
    const size_t rb = stochflow__act_backward_bias_rows(n), nb = (n + rb - 1) / rb;
#define BODY(lo, hi)                                                                        \
    for (size_t b_ = (lo); b_ < (hi); ++b_)                                                 \
    mul_colsum_rows(dz, part + b_ * cols, dy, deriv, b_ * rb, n - b_ * rb < rb ? n : (b_ + 1) * rb, \
                    cols)
    PARALLEL_RANGES(nb, n * cols, nthreads, 1, BODY);
#undef BODY
#define BODY(lo, hi) add_parts(db, part, nb, cols, lo, hi)
    PARALLEL_RANGES(cols, nb * cols * 4, nthreads, 16, BODY);
#undef BODY
}

SIMD_CLONES
static void mul_range(float *dz, const float *dy, const float *deriv, size_t count) {
    for (size_t i = 0; i < count; ++i) dz[i] = dy[i] * deriv[i];
}

void stochflow__act_backward(float *dz, const float *dy, const float *deriv, size_t count,
                             int nthreads) {
#define BODY(lo, hi) mul_range(dz + (lo), dy + (lo), deriv + (lo), (hi) - (lo))
    PARALLEL_RANGES(count, count, nthreads, 16, BODY);
#undef BODY
}

SIMD_CLONES
static void scale_rows_range(float *t, const float *f, size_t T, size_t H, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i)
        for (size_t k = 0; k < T; ++k) {
            float *tr = t + (i * T + k) * H;
            const float *fr = f + i * H;
            for (size_t j = 0; j < H; ++j) tr[j] *= fr[j];
        }
}

void stochflow__scale_tangents(float *t, const float *f, size_t rows, size_t T, size_t H,
                               int nthreads) {
#define BODY(lo, hi) scale_rows_range(t, f, T, H, lo, hi)
    PARALLEL_RANGES(rows, rows * T * H, nthreads, 1, BODY);
#undef BODY
}

/* ---- LayerNorm ------------------------------------------------------------------------ */

/* Rows [r0, r1): the operations of a one-group GroupNorm at one position (lib/conv.c),
 * so the bits agree with it. */
SIMD_CLONES
static void ln_fwd_rows(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                        const float *beta, size_t w, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
        const float *xr = x + i * w;
        float *yr = y + i * w;
        double mu, var;
        stochflow__moments8(&mu, &var, xr, w);
        const float mf = (float)mu, rf = (float)(1.0 / sqrt(var + STOCHFLOW__NORM_EPS));
        if (mean) mean[i] = mf;
        if (rstd) rstd[i] = rf;
        /* the float mean's rounding error folded into the shift, as GroupNorm does */
        const double shift = mu - (double)mf;
        for (size_t j = 0; j < w; ++j) {
            const float a = rf * gamma[j];
            const float bb = (float)((double)beta[j] - shift * (double)a);
            yr[j] = (xr[j] - mf) * a + bb;
        }
    }
}

void stochflow__layernorm_forward(float *y, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, size_t n, size_t w,
                                  int nthreads) {
#define BODY(lo, hi) ln_fwd_rows(y, mean, rstd, x, gamma, beta, w, lo, hi)
    PARALLEL_RANGES(n, n * w, nthreads, 1, BODY);
#undef BODY
}

/* Rows [r0, r1) of the backward: dx, and with part the rows' sums of dy xhat (part[0..w))
 * and dy (part[w..2w)), in row order, overwriting part. */
SIMD_CLONES
static void ln_bwd_rows(float *dx, int accumulate, float *part, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *gamma, size_t w,
                        size_t r0, size_t r1) {
    if (part)
        for (size_t j = 0; j < 2 * w; ++j) part[j] = 0.0f;
    for (size_t i = r0; i < r1; ++i) {
        const float *xr = x + i * w, *dyr = dy + i * w;
        const float mf = mean[i], rf = rstd[i];
        double s1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t j = 0;
        for (; j + 8 <= w; j += 8)
            for (int l = 0; l < 8; ++l) {
                const float g = dyr[j + l] * gamma[j + l], xh = (xr[j + l] - mf) * rf;
                s1[l] += (double)g;
                s2[l] += (double)g * (double)xh;
            }
        double t1 = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]));
        double t2 = ((s2[0] + s2[1]) + (s2[2] + s2[3])) + ((s2[4] + s2[5]) + (s2[6] + s2[7]));
        for (; j < w; ++j) {
            const float g = dyr[j] * gamma[j], xh = (xr[j] - mf) * rf;
            t1 += (double)g;
            t2 += (double)g * (double)xh;
        }
        const float m1 = (float)(t1 / (double)w), m2 = (float)(t2 / (double)w);
        if (dx) {
            float *dxr = dx + i * w;
            for (j = 0; j < w; ++j) {
                const float v = rf * (dyr[j] * gamma[j] - m1 - (xr[j] - mf) * rf * m2);
                dxr[j] = accumulate ? dxr[j] + v : v;
            }
        }
        if (part)
            for (j = 0; j < w; ++j) {
                part[j] += dyr[j] * ((xr[j] - mf) * rf);
                part[w + j] += dyr[j];
            }
    }
}

/* dgamma[j] += part[b][j], dbeta[j] += part[b][w + j] over blocks b in order, columns
 * [c0, c1). */
SIMD_CLONES
static void ln_add_parts(float *dgamma, float *dbeta, const float *part, size_t nb, size_t w,
                         size_t c0, size_t c1) {
    for (size_t b = 0; b < nb; ++b)
        for (size_t j = c0; j < c1; ++j) {
            dgamma[j] += part[b * 2 * w + j];
            dbeta[j] += part[b * 2 * w + w + j];
        }
}

void stochflow__layernorm_backward(float *dx, int dx_accumulate, float *dgamma, float *dbeta,
                                   float *part, const float *dy, const float *x,
                                   const float *mean, const float *rstd, const float *gamma,
                                   size_t n, size_t w, int nthreads) {
    if (dgamma == NULL) {
#define BODY(lo, hi) ln_bwd_rows(dx, dx_accumulate, NULL, dy, x, mean, rstd, gamma, w, lo, hi)
        PARALLEL_RANGES(n, n * w, nthreads, 1, BODY);
#undef BODY
        return;
    }
    const size_t rb = stochflow__act_backward_bias_rows(n), nb = (n + rb - 1) / rb;
#define BODY(lo, hi)                                                                          \
    for (size_t b_ = (lo); b_ < (hi); ++b_)                                                   \
    ln_bwd_rows(dx, dx_accumulate, part + b_ * 2 * w, dy, x, mean, rstd, gamma, w, b_ * rb, \
                n - b_ * rb < rb ? n : (b_ + 1) * rb)
    PARALLEL_RANGES(nb, n * w, nthreads, 1, BODY);
#undef BODY
#define BODY(lo, hi) ln_add_parts(dgamma, dbeta, part, nb, w, lo, hi)
    PARALLEL_RANGES(w, nb * w * 8, nthreads, 16, BODY);
#undef BODY
}

/* Rows [r0, r1) of the tangents. */
SIMD_CLONES
static void ln_tan_rows(float *out, const float *t, const float *x, const float *mean,
                        const float *rstd, const float *gamma, size_t T, size_t w, size_t r0,
                        size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
        const float *xr = x + i * w;
        const float mf = mean[i], rf = rstd[i];
        for (size_t k = 0; k < T; ++k) {
            const float *tr = t + (i * T + k) * w;
            float *orow = out + (i * T + k) * w;
            double s1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            size_t j = 0;
            for (; j + 8 <= w; j += 8)
                for (int l = 0; l < 8; ++l) {
                    s1[l] += (double)tr[j + l];
                    s2[l] += (double)tr[j + l] * (double)((xr[j + l] - mf) * rf);
                }
            double u1 = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]));
            double u2 = ((s2[0] + s2[1]) + (s2[2] + s2[3])) + ((s2[4] + s2[5]) + (s2[6] + s2[7]));
            for (; j < w; ++j) {
                u1 += (double)tr[j];
                u2 += (double)tr[j] * (double)((xr[j] - mf) * rf);
            }
            const float m1 = (float)(u1 / (double)w), m2 = (float)(u2 / (double)w);
            for (j = 0; j < w; ++j)
                orow[j] = gamma[j] * (rf * (tr[j] - m1 - (xr[j] - mf) * rf * m2));
        }
    }
}

void stochflow__layernorm_tangents(float *out, const float *t, const float *x,
                                   const float *mean, const float *rstd, const float *gamma,
                                   size_t rows, size_t T, size_t w, int nthreads) {
#define BODY(lo, hi) ln_tan_rows(out, t, x, mean, rstd, gamma, T, w, lo, hi)
    PARALLEL_RANGES(rows, rows * T * w, nthreads, 1, BODY);
#undef BODY
}

void stochflow__layernorm_tangents_naive(float *out, const float *t, const float *x,
                                         const float *mean, const float *rstd,
                                         const float *gamma, size_t rows, size_t T, size_t w) {
    for (size_t i = 0; i < rows; ++i)
        for (size_t k = 0; k < T; ++k) {
            const float *tr = t + (i * T + k) * w;
            double m1 = 0.0, m2 = 0.0;
            for (size_t j = 0; j < w; ++j) {
                const double xh = ((double)x[i * w + j] - mean[i]) * rstd[i];
                m1 += tr[j];
                m2 += tr[j] * xh;
            }
            m1 /= (double)w;
            m2 /= (double)w;
            for (size_t j = 0; j < w; ++j) {
                const double xh = ((double)x[i * w + j] - mean[i]) * rstd[i];
                out[(i * T + k) * w + j] = (float)(gamma[j] * rstd[i] * (tr[j] - m1 - xh * m2));
            }
        }
}

double stochflow__act_ref(double z, int act, double *deriv) {
    double s = 1.0 / (1.0 + exp(-z));
    switch (act) {
    case STOCHFLOW_ACT_TANH: *deriv = 1.0 - tanh(z) * tanh(z); return tanh(z);
    case STOCHFLOW_ACT_RELU: *deriv = z > 0 ? 1.0 : 0.0; return z > 0 ? z : 0.0;
    case STOCHFLOW_ACT_SOFTPLUS: *deriv = s; return log1p(exp(z));
    default: *deriv = s * (1.0 + z * (1.0 - s)); return z * s;
    }
}
