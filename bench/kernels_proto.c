/*
 * kernels_proto.c - measured prototypes of the element-wise kernels proposed for
 * lib/layers.c (issue 6). Not part of the library; built by bench/meson.build as
 * bench_kernels, run by hand:  build-bench/bench/bench_kernels [rows] [width]
 *
 * Needs -fno-trapping-math (bench/meson.build passes it): without it GCC will not
 * if-convert the clamps of exp_poly and nothing vectorizes.
 *
 * Each prototype is timed against the loop the library had when this was written
 * (copied below as *_current) and checked against it (max relative error printed).
 *
 *  1. silu_fused: y = z*s, f' = s (1 + z (1 - s)), s = 1/(1+exp(-z)), with the bias
 *     added in the same pass (z = acc + b) so the dense layer can call sgemm with
 *     beta = 0 instead of memcpy(bias) + beta = 1. exp by Cody-Waite range reduction,
 *     a degree-6 polynomial and exponent bit assembly: branch-free, so GCC vectorizes
 *     it (SSE2 at the baseline -march=x86-64, AVX2/FMA in the x86-64-v3 clone).
 *  2. silu_fwd_only: the same without the derivative, for pure velocity evaluations
 *     (sampling needs no f').
 *  3. input_fwd: the first layer (in = d+1 <= 16) with W^T in a [in x out] copy so
 *     the inner loop runs over contiguous outputs (the current loop reads W with
 *     stride `in`).
 *  4. adam: the finite check of the gradient as a vectorizable integer reduction
 *     (the current early-return loop with a double sum of squares runs scalar).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- current library loops (copied for reference) -------------------------------- */

static inline float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

static void silu_current(float *y, float *deriv, const float *z, size_t count) {
    for (size_t i = 0; i < count; ++i) {
        float v = z[i];
        float s = sigmoidf_(v);
        if (deriv) deriv[i] = s * (1.0f + v * (1.0f - s));
        y[i] = v * s;
    }
}

static void bias_rows_current(float *y, const float *b, size_t n, size_t out) {
    for (size_t i = 0; i < n; ++i) memcpy(y + i * out, b, out * sizeof *y);
}

static void input_fwd_current(float *y, const float *x, const float *w, const float *b,
                              size_t n, size_t in, size_t out) {
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
}

/* lib/optimizer.c's check + update loops (clip off, no weight decay, no EMA). */
static int adam_current(float *p, float *mm, float *vv, const float *g, size_t n, double lr,
                        double beta1, double beta2, double epsd, uint64_t step) {
    double sq = 0.0;
    for (size_t i = 0; i < n; ++i) {
        if (!(g[i] - g[i] == 0.0f)) return -5;
        sq += (double)g[i] * g[i];
    }
    (void)sq;
    const double t = (double)step;
    const float b1 = (float)beta1, b2 = (float)beta2;
    const float c1 = (float)(1.0 - beta1), c2 = (float)(1.0 - beta2);
    const float inv_bc1 = (float)(1.0 / (1.0 - pow(beta1, t)));
    const float inv_bc2 = (float)(1.0 / (1.0 - pow(beta2, t)));
    const float flr = (float)lr, eps = (float)epsd, wd = 0.0f, fs = 1.0f;
    for (size_t i = 0; i < n; ++i) {
        float gi = g[i] * fs;
        float mi = b1 * mm[i] + c1 * gi;
        float vi = b2 * vv[i] + c2 * gi * gi;
        mm[i] = mi;
        vv[i] = vi;
        float upd = (mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps);
        p[i] = p[i] - flr * upd - wd * p[i];
    }
    return 0;
}

/* ---- prototypes ------------------------------------------------------------------ */

/* exp(x) for x in [-87, 88], rel. error ~2 ulp; branch-free so loops vectorize. */
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: round to nearest integer */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693359375f;       /* ln2 hi (exact in float) */
    r = r - n * -2.12194440e-4f;          /* ln2 lo */
    /* exp(r), |r| <= ln2/2: Taylor/minimax degree 6 */
    float p = 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* z = acc + b (row-wise bias), y = silu(z), deriv = silu'(z). y may alias acc. */
CLONES
static void silu_fused(float *y, float *deriv, const float *acc, const float *b, size_t n,
                       size_t out) {
    for (size_t i = 0; i < n; ++i) {
        const float *ar = acc + i * out;
        float *yr = y + i * out, *dr = deriv + i * out;
        for (size_t j = 0; j < out; ++j) {
            float z = ar[j] + b[j];
            float s = 1.0f / (1.0f + exp_poly(-z));
            dr[j] = s * (1.0f + z * (1.0f - s));
            yr[j] = z * s;
        }
    }
}

CLONES
static void silu_fwd_only(float *y, const float *acc, const float *b, size_t n, size_t out) {
    for (size_t i = 0; i < n; ++i) {
        const float *ar = acc + i * out;
        float *yr = y + i * out;
        for (size_t j = 0; j < out; ++j) {
            float z = ar[j] + b[j];
            yr[j] = z / (1.0f + exp_poly(-z));
        }
    }
}

/* exp for x <= 0 only: just the lower clamp. (The upper clamp x > 88 ? 88 : x costs
 * ~4x on this Zen 4: GCC turns it into an extra division by a constant and blends.) */
static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float magic = 12582912.0f;
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* Sign-symmetric sigmoid: e = exp(-|z|) never overflows, s = 1/(1+e) for z >= 0 and
 * e/(1+e) for z < 0. */
CLONES
static void silu_sym(float *y, float *deriv, const float *acc, const float *b, size_t n,
                     size_t out) {
    for (size_t i = 0; i < n; ++i) {
        const float *ar = acc + i * out;
        float *yr = y + i * out, *dr = deriv + i * out;
        for (size_t j = 0; j < out; ++j) {
            float z = ar[j] + b[j];
            float e = exp_neg(-fabsf(z));
            float r = 1.0f / (1.0f + e);
            float s = z >= 0.0f ? r : e * r;
            dr[j] = s * (1.0f + z * (1.0f - s));
            yr[j] = z * s;
        }
    }
}

/* wt: [in x out] = W^T, made once per call (in*out floats, tiny). */
CLONES
static void input_fwd(float *y, const float *x, const float *wt, const float *b, size_t n,
                      size_t in, size_t out) {
    for (size_t i = 0; i < n; ++i) {
        float *yr = y + i * out;
        const float *xr = x + i * in;
        for (size_t j = 0; j < out; ++j) yr[j] = b[j];
        for (size_t k = 0; k < in; ++k) {
            const float xk = xr[k], *wk = wt + k * out;
            for (size_t j = 0; j < out; ++j) yr[j] += xk * wk[j];
        }
    }
}

/* Finite check as an integer OR-reduction of "exponent all ones" (vectorizes; the
 * early-return loop does not), the squared norm only when clipping is on, and the
 * same update loop compiled for AVX2 too. */
CLONES
static int all_finite(const float *g, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &g[i], sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    return !bad;
}

CLONES
static int adam_fast(float *p, float *mm, float *vv, const float *g, size_t n, double lr,
                     double beta1, double beta2, double epsd, uint64_t step) {
    if (!all_finite(g, n)) return -5;
    const double t = (double)step;
    const float b1 = (float)beta1, b2 = (float)beta2;
    const float c1 = (float)(1.0 - beta1), c2 = (float)(1.0 - beta2);
    const float inv_bc1 = (float)(1.0 / (1.0 - pow(beta1, t)));
    const float inv_bc2 = (float)(1.0 / (1.0 - pow(beta2, t)));
    const float flr = (float)lr, eps = (float)epsd;
    for (size_t i = 0; i < n; ++i) {
        float gi = g[i];
        float mi = b1 * mm[i] + c1 * gi;
        float vi = b2 * vv[i] + c2 * gi * gi;
        mm[i] = mi;
        vv[i] = vi;
        p[i] -= flr * ((mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps));
    }
    return 0;
}

/* ---- driver ---------------------------------------------------------------------- */

static float *randv(size_t n, float scale) {
    float *a = malloc(n * sizeof *a);
    uint64_t s = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        a[i] = scale * ((float)(s >> 40) / 16777216.0f - 0.5f);
    }
    return a;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double m = 0, ref = 0;
    for (size_t i = 0; i < n; ++i) {
        double e = fabs((double)a[i] - b[i]);
        if (e > m) m = e;
        if (fabs(b[i]) > ref) ref = fabs(b[i]);
    }
    return ref > 0 ? m / ref : m;
}

#define TIME(label, reps, stmt)                                                        \
    do {                                                                               \
        stmt;                                                                          \
        double best_ = 1e30;                                                           \
        for (int r_ = 0; r_ < (reps); ++r_) {                                          \
            double t0_ = now_s();                                                      \
            stmt;                                                                      \
            double dt_ = now_s() - t0_;                                                \
            if (dt_ < best_) best_ = dt_;                                              \
        }                                                                              \
        printf("  %-44s %9.3f ms\n", label, best_ * 1e3);                            \
    } while (0)

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2048;
    size_t w = argc > 2 ? strtoul(argv[2], NULL, 10) : 256;
    size_t cnt = n * w, in = 3;
    float *z = randv(cnt, 16.0f), *b = randv(w, 1.0f);
    float *y1 = malloc(cnt * 4), *d1 = malloc(cnt * 4), *y2 = malloc(cnt * 4),
          *d2 = malloc(cnt * 4), *acc = malloc(cnt * 4);
    printf("rows %zu, width %zu (%zu elements), best of 20\n", n, w, cnt);

    /* 1+2: bias + SiLU (+ derivative) */
    TIME("current: memcpy bias rows (before beta=1 GEMM)", 20, bias_rows_current(y1, b, n, w));
    for (size_t i = 0; i < cnt; ++i) acc[i] = z[i] + b[i % w];
    TIME("current: silu + deriv (libm expf)", 20, silu_current(y1, d1, acc, cnt));
    TIME("proto: fused bias + silu + deriv", 20, silu_fused(y2, d2, z, b, n, w));
    printf("    max rel diff: y %.2e, deriv %.2e\n", max_rel(y2, y1, cnt), max_rel(d2, d1, cnt));
    TIME("proto: sign-symmetric sigmoid (lower clamp only)", 20, silu_sym(y2, d2, z, b, n, w));
    printf("    max rel diff: y %.2e, deriv %.2e\n", max_rel(y2, y1, cnt), max_rel(d2, d1, cnt));
    TIME("current: silu forward only (deriv = NULL)", 20, silu_current(y1, NULL, acc, cnt));
    TIME("proto: fused bias + silu, no deriv", 20, silu_fwd_only(y2, z, b, n, w));
    printf("    max rel diff: y %.2e\n", max_rel(y2, y1, cnt));

    /* 3: input layer */
    float *x = randv(n * in, 4.0f), *W = randv(w * in, 1.0f), *Wt = malloc(w * in * 4);
    for (size_t j = 0; j < w; ++j)
        for (size_t k = 0; k < in; ++k) Wt[k * w + j] = W[j * in + k];
    TIME("current: input layer (in = 3), strided W", 20, input_fwd_current(y1, x, W, b, n, in, w));
    TIME("proto: input layer with W^T copy", 20, input_fwd(y2, x, Wt, b, n, in, w));
    printf("    max rel diff: %.2e\n", max_rel(y2, y1, cnt));

    /* 4: Adam over a 3x256 d=2 model's parameters (133122) */
    size_t P = 133122;
    float *p1 = randv(P, 1.0f), *g = randv(P, 1e-3f), *m1 = calloc(P, 4), *v1 = calloc(P, 4);
    float *p2 = malloc(P * 4), *m2 = calloc(P, 4), *v2 = calloc(P, 4);
    memcpy(p2, p1, P * 4);
    TIME("current: Adam check + update (133122 params)", 20,
         adam_current(p1, m1, v1, g, P, 1e-3, 0.9, 0.999, 1e-8, 5));
    TIME("proto: Adam, vector finite check + update", 20, adam_fast(p2, m2, v2, g, P, 1e-3, 0.9, 0.999, 1e-8, 5));
    printf("    max rel diff (params after 21 updates): %.2e\n", max_rel(p2, p1, P));
    return 0;
}
