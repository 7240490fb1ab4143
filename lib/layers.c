/* layers.c - dense layer and activations: fast kernels and naive references.
 * Shapes are documented in layers.h; gradients are derived in doc/gradients.md. */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "layers.h"

/* Below this size of the reduction or output dimension BLIS's packed kernels lose to a
 * plain loop (machine-perf.md: K = 3 runs at ~5 GFLOP/s through BLIS). */
#define SMALL_DIM 16

void stochflow__dense_forward(float *y, const float *x, const float *w, const float *b,
                              size_t n, size_t in, size_t out, int nthreads) {
    if (in <= SMALL_DIM) {
        /* Input layer: rank-"in" update plus bias, vectorized across outputs with w^T
         * read column by column. */
        for (size_t i = 0; i < n; ++i) {
            float *yr = y + i * out;
            const float *xr = x + i * in;
            memcpy(yr, b, out * sizeof *yr);
            for (size_t k = 0; k < in; ++k) {
                float xk = xr[k];
                const float *wk = w + k;
                for (size_t j = 0; j < out; ++j) yr[j] += xk * wk[j * in];
            }
        }
        return;
    }
    if (out <= SMALL_DIM) {
        /* Output layer: a few dot products per row. */
        for (size_t i = 0; i < n; ++i) {
            const float *xr = x + i * in;
            for (size_t j = 0; j < out; ++j) {
                const float *wr = w + j * in;
                float acc = 0.0f;
                for (size_t k = 0; k < in; ++k) acc += xr[k] * wr[k];
                y[i * out + j] = acc + b[j];
            }
        }
        return;
    }
    for (size_t i = 0; i < n; ++i) memcpy(y + i * out, b, out * sizeof *y);
    stochflow__sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 1.0f, y, out, nthreads);
}

void stochflow__dense_backward(float *dx, int dx_accumulate, float *dw, float *db,
                               const float *dy, const float *x, const float *w, size_t n,
                               size_t in, size_t out, int nthreads) {
    if (db) {
        for (size_t i = 0; i < n; ++i) {
            const float *dyr = dy + i * out;
            for (size_t j = 0; j < out; ++j) db[j] += dyr[j];
        }
    }
    if (dw) {
        if (in <= SMALL_DIM || out <= SMALL_DIM) {
            /* dw[j, :] += sum_i dy[i, j] x[i, :] */
            for (size_t i = 0; i < n; ++i) {
                const float *dyr = dy + i * out;
                const float *xr = x + i * in;
                for (size_t j = 0; j < out; ++j) {
                    float g = dyr[j];
                    float *dwr = dw + j * in;
                    for (size_t k = 0; k < in; ++k) dwr[k] += g * xr[k];
                }
            }
        } else {
            stochflow__sgemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in, nthreads);
        }
    }
    if (dx) {
        if (in <= SMALL_DIM || out <= SMALL_DIM) {
            /* dx[i, :] (+)= sum_j dy[i, j] w[j, :] */
            for (size_t i = 0; i < n; ++i) {
                float *dxr = dx + i * in;
                const float *dyr = dy + i * out;
                if (!dx_accumulate) memset(dxr, 0, in * sizeof *dxr);
                for (size_t j = 0; j < out; ++j) {
                    float g = dyr[j];
                    const float *wr = w + j * in;
                    for (size_t k = 0; k < in; ++k) dxr[k] += g * wr[k];
                }
            }
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

static inline float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

void stochflow__act_forward(float *y, float *deriv, const float *z, size_t count, int act) {
    switch (act) {
    case STOCHFLOW_ACT_TANH:
        for (size_t i = 0; i < count; ++i) {
            float h = tanhf(z[i]);
            if (deriv) deriv[i] = 1.0f - h * h;
            y[i] = h;
        }
        break;
    case STOCHFLOW_ACT_RELU:
        for (size_t i = 0; i < count; ++i) {
            float v = z[i];
            if (deriv) deriv[i] = v > 0.0f ? 1.0f : 0.0f;
            y[i] = v > 0.0f ? v : 0.0f;
        }
        break;
    case STOCHFLOW_ACT_SOFTPLUS:
        for (size_t i = 0; i < count; ++i) {
            float v = z[i];
            if (deriv) deriv[i] = sigmoidf_(v);
            /* log(1 + e^v) = max(v, 0) + log1p(e^-|v|), stable for all v */
            y[i] = fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v)));
        }
        break;
    default: /* STOCHFLOW_ACT_SILU */
        for (size_t i = 0; i < count; ++i) {
            float v = z[i];
            float s = sigmoidf_(v);
            if (deriv) deriv[i] = s * (1.0f + v * (1.0f - s));
            y[i] = v * s;
        }
        break;
    }
}

void stochflow__act_backward(float *dz, const float *dy, const float *deriv, size_t count) {
    for (size_t i = 0; i < count; ++i) dz[i] = dy[i] * deriv[i];
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
