/* check_layers.c - dense layer, activations and LayerNorm: fast kernels against the
 * naive references, and backward passes against central finite differences. */
#include <math.h>
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "conv.h" /* GroupNorm: the LayerNorm's reference */
#include "layers.h"
#include "parallel.h"

static void fill(float *x, size_t n, uint64_t stream) {
    stochflow_random_normal(x, n, 1234, stream);
}

/* Shapes covering the small-dimension loops and the BLIS path. */
static const size_t shapes[][3] = {{5, 3, 32}, {7, 40, 2}, {9, 33, 48}, {4, 17, 17}, {1, 1, 1}};

START_TEST(dense_fast_vs_naive) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
        size_t n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = malloc(n * in * 4), *w = malloc(out * in * 4), *b = malloc(out * 4);
        float *y1 = malloc(n * out * 4), *y2 = malloc(n * out * 4), *dy = malloc(n * out * 4);
        float *dx1 = malloc(n * in * 4), *dx2 = malloc(n * in * 4);
        float *dw1 = calloc(out * in, 4), *dw2 = calloc(out * in, 4);
        float *db1 = calloc(out, 4), *db2 = calloc(out, 4);
        fill(x, n * in, 1); fill(w, out * in, 2); fill(b, out, 3); fill(dy, n * out, 4);
        stochflow__dense_forward(y1, x, w, b, n, in, out, 2);
        stochflow__dense_forward_naive(y2, x, w, b, n, in, out);
        for (size_t i = 0; i < n * out; ++i) ck_assert_float_eq_tol(y1[i], y2[i], 1e-4f);
        /* accumulate twice into dw/db, and dx with accumulation on the second call */
        for (int rep = 0; rep < 2; ++rep) {
            stochflow__dense_backward(dx1, rep, dw1, db1, dy, x, w, n, in, out, 2);
            stochflow__dense_backward_naive(dx2, rep, dw2, db2, dy, x, w, n, in, out);
        }
        for (size_t i = 0; i < n * in; ++i) ck_assert_float_eq_tol(dx1[i], dx2[i], 1e-4f);
        for (size_t i = 0; i < out * in; ++i) ck_assert_float_eq_tol(dw1[i], dw2[i], 1e-4f);
        for (size_t i = 0; i < out; ++i) ck_assert_float_eq_tol(db1[i], db2[i], 1e-4f);
        free(x); free(w); free(b); free(y1); free(y2); free(dy); free(dx1); free(dx2);
        free(dw1); free(dw2); free(db1); free(db2);
    }
}
END_TEST

/* L(x, w, b) = sum r . dense(x) for a fixed r; its gradient is the backward pass with
 * dy = r. Central differences on the naive (double-accumulating) forward,
 * eps = 1e-2 in float inputs, tolerance 2e-3 absolute + 1e-3 relative. */
static double functional(const float *r, const float *x, const float *w, const float *b,
                         size_t n, size_t in, size_t out) {
    float *y = malloc(n * out * 4);
    stochflow__dense_forward_naive(y, x, w, b, n, in, out);
    double s = 0;
    for (size_t i = 0; i < n * out; ++i) s += (double)r[i] * y[i];
    free(y);
    return s;
}

START_TEST(dense_gradient_fd) {
    const size_t n = 3, in = 5, out = 4;
    float x[15], w[20], b[4], r[12], dx[15], dw[20] = {0}, db[4] = {0};
    fill(x, 15, 5); fill(w, 20, 6); fill(b, 4, 7); fill(r, 12, 8);
    stochflow__dense_backward(dx, 0, dw, db, r, x, w, n, in, out, 1);
    const float eps = 1e-2f;
    float *vars[3] = {x, w, b};
    float *grads[3] = {dx, dw, db};
    size_t counts[3] = {15, 20, 4};
    for (int v = 0; v < 3; ++v)
        for (size_t i = 0; i < counts[v]; ++i) {
            float keep = vars[v][i];
            vars[v][i] = keep + eps;
            double lp = functional(r, x, w, b, n, in, out);
            vars[v][i] = keep - eps;
            double lm = functional(r, x, w, b, n, in, out);
            vars[v][i] = keep;
            double fd = (lp - lm) / (2.0 * eps);
            ck_assert_double_eq_tol(grads[v][i], fd, 2e-3 + 1e-3 * fabs(fd));
        }
}
END_TEST

START_TEST(activation_derivatives) {
    const int acts[] = {STOCHFLOW_ACT_SILU, STOCHFLOW_ACT_TANH, STOCHFLOW_ACT_RELU,
                        STOCHFLOW_ACT_SOFTPLUS};
    const float zs[] = {-30.0f, -4.0f, -1.3f, -0.2f, 0.3f, 1.1f, 3.7f, 25.0f};
    for (size_t a = 0; a < 4; ++a) {
        float y[8], dv[8];
        stochflow__act_forward(y, dv, zs, 8, acts[a], 1);
        for (int i = 0; i < 8; ++i) {
            double dref, yref = stochflow__act_ref(zs[i], acts[a], &dref);
            ck_assert_double_eq_tol(y[i], yref, 1e-5 * (1 + fabs(yref)));
            ck_assert_double_eq_tol(dv[i], dref, 1e-5);
            /* central difference in double on the reference (away from ReLU's kink) */
            double h = 1e-5, d1, d2;
            double fd = (stochflow__act_ref(zs[i] + h, acts[a], &d1) -
                         stochflow__act_ref(zs[i] - h, acts[a], &d2)) / (2 * h);
            ck_assert_double_eq_tol(dref, fd, 1e-6);
        }
        /* in place, and backward = dy * f' */
        float z2[8], dz[8], dy[8];
        memcpy(z2, zs, sizeof z2);
        for (int i = 0; i < 8; ++i) dy[i] = 0.5f * (float)i - 1.0f;
        stochflow__act_forward(z2, dv, z2, 8, acts[a], 1);
        for (int i = 0; i < 8; ++i) ck_assert_float_eq(z2[i], y[i]);
        stochflow__act_backward(dz, dy, dv, 8, 1);
        for (int i = 0; i < 8; ++i) ck_assert_float_eq(dz[i], dy[i] * dv[i]);
    }
}
END_TEST

START_TEST(gemm_fast_vs_naive) {
    /* all four transpose combinations through the BLIS wrapper, beta 0 and 1 */
    const size_t m = 13, n = 21, k = 37;
    float *a = malloc(m * k * 4), *b = malloc(k * n * 4), *c1 = malloc(m * n * 4),
          *c2 = malloc(m * n * 4);
    fill(a, m * k, 9); fill(b, k * n, 10);
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
            for (int beta = 0; beta < 2; ++beta) {
                fill(c1, m * n, 11);
                memcpy(c2, c1, m * n * 4);
                size_t lda = ta ? m : k, ldb = tb ? k : n;
                stochflow__sgemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, (float)beta, c1, n, 2);
                stochflow__sgemm_naive(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, (float)beta, c2, n);
                for (size_t i = 0; i < m * n; ++i) ck_assert_float_eq_tol(c1[i], c2[i], 1e-4f);
            }
    free(a); free(b); free(c1); free(c2);
}
END_TEST

/* stochflow__sgemm checks its arguments (BLIS would abort on them): a leading
 * dimension shorter than a stored row, a NULL operand, a size beyond BLIS's signed
 * range give STOCHFLOW_E_INVALID and leave C untouched; empty products are fine. */
START_TEST(gemm_rejects_bad_arguments) {
    float a[12], b[12], c[12], keep[12];
    fill(a, 12, 1); fill(b, 12, 2); fill(c, 12, 3);
    memcpy(keep, c, sizeof c);
    /* 3x4 = (3x2)(2x4): lda 2, ldb 4, ldc 4 are the tight values */
    ck_assert_int_eq(stochflow__sgemm(0, 0, 3, 4, 2, 1.0f, a, 2, b, 4, 0.0f, c, 4, 1), 0);
    memcpy(c, keep, sizeof c);
    ck_assert_int_eq(stochflow__sgemm(0, 0, 3, 4, 2, 1.0f, a, 1, b, 4, 0.0f, c, 4, 1),
                     STOCHFLOW_E_INVALID); /* lda < k */
    ck_assert_int_eq(stochflow__sgemm(1, 0, 3, 4, 2, 1.0f, a, 2, b, 4, 0.0f, c, 4, 1),
                     STOCHFLOW_E_INVALID); /* transposed A: lda < m */
    ck_assert_int_eq(stochflow__sgemm(0, 1, 3, 4, 2, 1.0f, a, 2, b, 1, 0.0f, c, 4, 1),
                     STOCHFLOW_E_INVALID); /* transposed B: ldb < k */
    ck_assert_int_eq(stochflow__sgemm(0, 0, 3, 4, 2, 1.0f, a, 2, b, 4, 0.0f, c, 3, 1),
                     STOCHFLOW_E_INVALID); /* ldc < n */
    ck_assert_int_eq(stochflow__sgemm(0, 0, 3, 4, 2, 1.0f, NULL, 2, b, 4, 0.0f, c, 4, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_int_eq(stochflow__sgemm(0, 0, 3, 4, 2, 1.0f, a, 2, b, 4, 0.0f, NULL, 4, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_int_eq(stochflow__sgemm(0, 0, 3, (size_t)1 << 63, 2, 1.0f, a, 2, b,
                                      (size_t)1 << 63, 0.0f, c, (size_t)1 << 63, 1),
                     STOCHFLOW_E_INVALID); /* beyond dim_t */
    ck_assert(memcmp(c, keep, sizeof c) == 0);
    ck_assert_int_eq(stochflow__sgemm(0, 0, 0, 4, 2, 1.0f, NULL, 0, NULL, 0, 0.0f, NULL, 0, 1), 0);
}
END_TEST

/* The library's own loops split work by rows/columns, never across a sum: 1, 2 and 3
 * threads give bitwise identical results, on shapes large enough to be split. */
START_TEST(simd_paths_bitwise) {
    /* The hand-vectorized kernels (8-lane SiLU, four-row output layer) give exactly the
     * bits of their scalar tails: a long array against one element (or row) at a time,
     * over values that reach every branch (the exp clamp at -87, signs, zeros, huge,
     * subnormal, NaN). */
    enum { N = 16 * 9 + 5 };
    float z[N], y[N], dd[N], y1, d1;
    const float special[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 86.9f, -86.9f, 87.0f, -87.0f,
                             87.5f, -87.5f, 88.7f, -88.8f, 1e30f, -1e30f, 3.4e38f, -3.4e38f};
    for (int i = 0; i < N; ++i)
        z[i] = i < 16 ? special[i] : (float)((i * 7919 % 2001) - 1000) * 0.11f;
    z[N - 3] = NAN;
    z[40] = NAN;
    for (int act = STOCHFLOW_ACT_SILU; act <= STOCHFLOW_ACT_SOFTPLUS; ++act)
        for (int with_d = 0; with_d < 2; ++with_d) {
            stochflow__act_forward(y, with_d ? dd : NULL, z, N, act, 1);
            for (int i = 0; i < N; ++i) {
                stochflow__act_forward(&y1, with_d ? &d1 : NULL, &z[i], 1, act, 1);
                if (isnan(y[i]) && isnan(y1)) continue; /* NaN payloads may differ */
                ck_assert_msg(memcmp(&y[i], &y1, 4) == 0, "act %d z %g: %a vs %a", act,
                              (double)z[i], (double)y[i], (double)y1);
                if (with_d && !(isnan(dd[i]) && isnan(d1)))
                    ck_assert_msg(memcmp(&dd[i], &d1, 4) == 0, "act %d z %g: f' %a vs %a", act,
                                  (double)z[i], (double)dd[i], (double)d1);
            }
        }
    /* output layer (out <= 16), 11 rows (two groups of four and a tail of three) and
     * in = 37 (a tail after the 8-lane blocks) */
    enum { R = 11, IN = 37, OUT = 3 };
    float x[R * IN], w[OUT * IN], b[OUT], yo[R * OUT], yr[OUT];
    for (int i = 0; i < R * IN; ++i) x[i] = (float)((i * 2654435761u >> 9) % 2001) * 1e-3f - 1.0f;
    for (int i = 0; i < OUT * IN; ++i) w[i] = (float)((i * 40503u >> 3) % 2001) * 1e-3f - 1.0f;
    for (int j = 0; j < OUT; ++j) b[j] = 0.1f * (float)j;
    stochflow__dense_forward(yo, x, w, b, R, IN, OUT, 1);
    for (int i = 0; i < R; ++i) {
        stochflow__dense_forward(yr, x + i * IN, w, b, 1, IN, OUT, 1);
        ck_assert_int_eq(memcmp(yr, yo + i * OUT, sizeof yr), 0);
    }
}
END_TEST

START_TEST(fused_layers_match_unfused) {
    /* dense_act_forward = dense_forward then act_forward, bit for bit, on 1-3 threads and
     * for every kernel path (thin input, wide, thin output), for each activation. A
     * wide layer's GEMM adds the bias after the product instead of starting from it,
     * which is the same float sum while K fits in one BLIS block (K <= 256 here).
     * act_backward_bias: dz = act_backward's bit for bit; db = the documented order
     * (row-order sums over blocks of act_backward_bias_rows(n) rows, added in block
     * order) bit for bit, whatever the thread count, and within 1e-4 of the plain
     * row-order sum. */
    const size_t shapes3[][3] = {{300, 3, 64}, {300, 64, 48}, {77, 200, 256}, {50, 64, 5},
                                 {2000, 17, 34}};
    for (size_t s = 0; s < 5; ++s) {
        size_t n = shapes3[s][0], in = shapes3[s][1], out = shapes3[s][2];
        float *x = malloc(n * in * 4), *w = malloc(out * in * 4), *b = malloc(out * 4);
        float *part = malloc(STOCHFLOW__BIAS_BLOCKS * out * 4), *db3 = malloc(out * 4);
        float *y1 = malloc(n * out * 4), *f1 = malloc(n * out * 4);
        float *y2 = malloc(n * out * 4), *f2 = malloc(n * out * 4);
        float *g1 = malloc(n * out * 4), *g2 = malloc(n * out * 4);
        float *db1 = calloc(out, 4), *db2 = calloc(out, 4);
        fill(x, n * in, 31); fill(w, out * in, 32); fill(b, out, 33);
        for (int act = STOCHFLOW_ACT_SILU; act <= STOCHFLOW_ACT_SOFTPLUS; ++act)
            for (int nt = 1; nt <= 3; ++nt) {
                stochflow__dense_forward(y1, x, w, b, n, in, out, 1);
                stochflow__act_forward(y1, f1, y1, n * out, act, 1);
                stochflow__dense_act_forward(y2, f2, x, w, b, n, in, out, act, nt);
                ck_assert_msg(memcmp(y1, y2, n * out * 4) == 0, "shape %zu act %d nt %d: y", s,
                              act, nt);
                ck_assert_msg(memcmp(f1, f2, n * out * 4) == 0, "shape %zu act %d nt %d: f'", s,
                              act, nt);
                fill(g1, n * out, 34 + (uint64_t)nt);
                memcpy(g2, g1, n * out * 4);
                memset(db1, 0, out * 4);
                memset(db2, 0, out * 4);
                db1[0] = db2[0] = 0.5f; /* accumulates */
                stochflow__act_backward(g1, g1, f1, n * out, 1);
                stochflow__dense_backward(NULL, 0, NULL, db1, g1, x, w, n, in, out, 1);
                stochflow__act_backward_bias(g2, db2, part, g2, f2, n, out, nt);
                ck_assert_int_eq(memcmp(g1, g2, n * out * 4), 0);
                const size_t rb = stochflow__act_backward_bias_rows(n);
                ck_assert(rb % 16 == 0 && (n + rb - 1) / rb <= STOCHFLOW__BIAS_BLOCKS);
                for (size_t j = 0; j < out; ++j) {
                    db3[j] = j == 0 ? 0.5f : 0.0f;
                    for (size_t r0 = 0; r0 < n; r0 += rb) {
                        float blk = 0.0f;
                        for (size_t i = r0; i < n && i < r0 + rb; ++i) blk += g1[i * out + j];
                        db3[j] += blk;
                    }
                    ck_assert_float_eq_tol(db2[j], db1[j], 1e-4f * (1.0f + fabsf(db1[j])));
                }
                ck_assert_int_eq(memcmp(db3, db2, out * 4), 0);
                /* no bias gradient: the activation backward alone */
                fill(g2, n * out, 34 + (uint64_t)nt);
                stochflow__act_backward_bias(g2, NULL, NULL, g2, f2, n, out, nt);
                ck_assert_int_eq(memcmp(g1, g2, n * out * 4), 0);
            }
        free(x); free(w); free(b); free(y1); free(f1); free(y2); free(f2); free(g1); free(g2);
        free(db1); free(db2); free(db3); free(part);
    }
}
END_TEST

START_TEST(threads_bitwise) {
    const size_t shapes2[][3] = {{700, 3, 256}, {700, 256, 2}, {300, 17, 64}};
    for (size_t s = 0; s < 3; ++s) {
        size_t n = shapes2[s][0], in = shapes2[s][1], out = shapes2[s][2];
        float *x = malloc(n * in * 4), *w = malloc(out * in * 4), *b = malloc(out * 4);
        float *dy = malloc(n * out * 4);
        fill(x, n * in, 21); fill(w, out * in, 22); fill(b, out, 23); fill(dy, n * out, 24);
        float *ref[5] = {0};
        for (int nt = 1; nt <= 3; ++nt) {
            float *y = malloc(n * out * 4), *dx = malloc(n * in * 4), *dw = calloc(out * in, 4),
                  *db = calloc(out, 4), *a = malloc(n * out * 4), *fd = malloc(n * out * 4);
            stochflow__dense_forward(y, x, w, b, n, in, out, nt);
            stochflow__dense_backward(dx, 0, dw, db, dy, x, w, n, in, out, nt);
            stochflow__act_forward(a, fd, y, n * out, STOCHFLOW_ACT_SILU, nt);
            stochflow__act_backward(a, a, fd, n * out, nt);
            float *got[5] = {y, dx, dw, db, a};
            size_t len[5] = {n * out, n * in, out * in, out, n * out};
            for (int q = 0; q < 5; ++q) {
                if (nt == 1) {
                    ref[q] = malloc(len[q] * 4);
                    memcpy(ref[q], got[q], len[q] * 4);
                } else {
                    ck_assert_msg(memcmp(ref[q], got[q], len[q] * 4) == 0,
                                  "shape %zu output %d differs with %d threads", s, q, nt);
                }
            }
            free(y); free(dx); free(dw); free(db); free(a); free(fd);
        }
        for (int q = 0; q < 5; ++q) free(ref[q]);
        free(x); free(w); free(b); free(dy);
    }
    size_t lo, hi, prev = 0;
    for (int p = 0; p < 3; ++p) {
        stochflow__partition(&lo, &hi, 1000, p, 3, 16);
        ck_assert_uint_eq(lo, prev);
        ck_assert(lo % 16 == 0 && hi >= lo);
        prev = hi;
    }
    ck_assert_uint_eq(prev, 1000);
}
END_TEST

/* ---- LayerNorm ------------------------------------------------------------------ */

/* Against a one-group GroupNorm of one position (c = w, hw = 1): the fast forward gives
 * its bits, backward matches its naive reference (dx written and accumulated, dgamma,
 * dbeta), the tangents match their naive reference and central differences of the
 * forward, and every output is the same on 1, 2 and 3 threads (n = 700: several
 * gradient-sum blocks). Rows with a large mean against their spread included. */
START_TEST(layernorm_vs_groupnorm) {
    const size_t ws[] = {1, 5, 37, 256}, ns[] = {3, 700};
    for (size_t a = 0; a < 4; ++a)
        for (size_t b = 0; b < 2; ++b) {
            const size_t w = ws[a], n = ns[b], T = 3;
            float *x = malloc(n * w * 4), *g = malloc(w * 4), *be = malloc(w * 4);
            float *dy = malloc(n * w * 4), *t = malloc(n * T * w * 4);
            fill(x, n * w, 31); fill(g, w, 32); fill(be, w, 33); fill(dy, n * w, 34);
            fill(t, n * T * w, 35);
            for (size_t j = 0; j < w; ++j) x[w + j] = 100.0f + 0.01f * x[w + j]; /* row 1 */
            float *y = malloc(n * w * 4), *mu = malloc(n * 4), *rs = malloc(n * 4);
            float *yg = malloc(n * w * 4), *mug = malloc(n * 4), *rsg = malloc(n * 4);
            stochflow__groupnorm_forward(yg, mug, rsg, x, g, be, n, w, 1, 1, 1);
            float *dxn = malloc(n * w * 4), *dgn = calloc(w, 4), *dbn = calloc(w, 4);
            for (size_t i = 0; i < n * w; ++i) dxn[i] = 0.5f;
            stochflow__groupnorm_backward_naive(dxn, 1, dgn, dbn, dy, x, mug, rsg, g, n, w, 1, 1);
            float *tn = malloc(n * T * w * 4);
            stochflow__layernorm_tangents_naive(tn, t, x, mug, rsg, g, n, T, w);
            float *ref[6] = {0};
            float *part = malloc(STOCHFLOW__BIAS_BLOCKS * 2 * w * 4);
            for (int nt = 1; nt <= 3; ++nt) {
                float *dx = malloc(n * w * 4), *dx0 = malloc(n * w * 4), *dg = calloc(w, 4);
                float *db = calloc(w, 4), *to = malloc(n * T * w * 4);
                stochflow__layernorm_forward(y, mu, rs, x, g, be, n, w, nt);
                ck_assert_int_eq(memcmp(y, yg, n * w * 4), 0);
                ck_assert_int_eq(memcmp(mu, mug, n * 4), 0);
                ck_assert_int_eq(memcmp(rs, rsg, n * 4), 0);
                for (size_t i = 0; i < n * w; ++i) dx[i] = 0.5f;
                stochflow__layernorm_backward(dx, 1, dg, db, part, dy, x, mu, rs, g, n, w, nt);
                stochflow__layernorm_backward(dx0, 0, NULL, NULL, NULL, dy, x, mu, rs, g, n, w, nt);
                stochflow__layernorm_tangents(to, t, x, mu, rs, g, n, T, w, nt);
                /* the largest error relative to 1 + |reference| of each output */
                double e[4] = {0, 0, 0, 0};
                for (size_t i = 0; i < n * w; ++i) {
                    e[0] = fmax(e[0], fabs(dx[i] - dxn[i]) / (1 + fabs(dxn[i])));
                    e[0] = fmax(e[0], fabs(dx0[i] - (dxn[i] - 0.5)) / (1 + fabs(dxn[i])));
                }
                for (size_t j = 0; j < w; ++j) {
                    e[1] = fmax(e[1], fabs(dg[j] - dgn[j]) / (1 + fabs(dgn[j])));
                    e[2] = fmax(e[2], fabs(db[j] - dbn[j]) / (1 + fabs(dbn[j])));
                }
                for (size_t i = 0; i < n * T * w; ++i)
                    e[3] = fmax(e[3], fabs(to[i] - tn[i]) / (1 + fabs(tn[i])));
                for (int q = 0; q < 4; ++q)
                    ck_assert_msg(e[q] < 1e-4, "w %zu n %zu: output %d off by %g", w, n, q, e[q]);
                float *got[6] = {y, dx, dx0, dg, db, to};
                const size_t len[6] = {n * w, n * w, n * w, w, w, n * T * w};
                for (int q = 0; q < 6; ++q) {
                    if (nt == 1) {
                        ref[q] = malloc(len[q] * 4);
                        memcpy(ref[q], got[q], len[q] * 4);
                    } else {
                        ck_assert_msg(memcmp(ref[q], got[q], len[q] * 4) == 0,
                                      "w %zu n %zu output %d differs with %d threads", w, n, q, nt);
                    }
                }
                free(dx); free(dx0); free(dg); free(db); free(to);
            }
            /* the tangent of the first row against central differences of the forward */
            if (w > 1) {
                const size_t r = 0;
                float *xp = malloc(w * 4), *xm = malloc(w * 4), *yp = malloc(w * 4),
                      *ym = malloc(w * 4), m1, r1;
                const float h = 1e-2f;
                for (size_t j = 0; j < w; ++j) {
                    xp[j] = x[r * w + j] + h * t[(r * T) * w + j];
                    xm[j] = x[r * w + j] - h * t[(r * T) * w + j];
                }
                stochflow__layernorm_forward(yp, &m1, &r1, xp, g, be, 1, w, 1);
                stochflow__layernorm_forward(ym, &m1, &r1, xm, g, be, 1, w, 1);
                for (size_t j = 0; j < w; ++j) {
                    const double fd = ((double)yp[j] - ym[j]) / (2.0 * h);
                    ck_assert_double_eq_tol(tn[j], fd, 2e-3 * (1 + fabs(fd)));
                }
                free(xp); free(xm); free(yp); free(ym);
            }
            for (int q = 0; q < 6; ++q) free(ref[q]);
            free(x); free(g); free(be); free(dy); free(t); free(y); free(mu); free(rs);
            free(yg); free(mug); free(rsg); free(dxn); free(dgn); free(dbn); free(tn); free(part);
        }
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dense_fast_vs_naive);
    tcase_add_test(tc, gemm_fast_vs_naive);
    tcase_add_test(tc, gemm_rejects_bad_arguments);
    tcase_add_test(tc, threads_bitwise);
    tcase_add_test(tc, simd_paths_bitwise);
    tcase_add_test(tc, fused_layers_match_unfused);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, dense_gradient_fd);
    tcase_add_test(tg, activation_derivatives);
    tcase_add_test(tg, layernorm_vs_groupnorm);
    suite_add_tcase(s, tg);
    return s;
}
