/* check_conv.c - image layers (lib/conv.h): fast kernels against the naive references,
 * backward passes against central finite differences, accumulation semantics, thread
 * count invariance and GroupNorm's normalisation. */
#include <stdint.h>
#include <string.h>

#include "conv.h"
#include "harness.h"
#include "internal.h"

static void fill(float *x, size_t n, uint64_t stream) {
    stochflow_random_normal(x, n, 4321, stream);
}

static float *fmalloc(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; ++i) x[i] = NAN;
}

/* |a - b| <= rel * max(1, |b|) element by element (b: the reference). */
static void assert_close(const float *a, const float *b, size_t n, double rel, const char *what,
                         size_t shape) {
    for (size_t i = 0; i < n; ++i) {
        double tol = rel * (fabs(b[i]) > 1.0 ? fabs(b[i]) : 1.0);
        ck_assert_msg(fabs((double)a[i] - b[i]) <= tol, "%s[%zu] (shape %zu): %.9g vs %.9g", what,
                      i, shape, a[i], b[i]);
    }
}

/* ---- convolution ------------------------------------------------------------------- */

/* {n, ci, h, w, co, k, stride} */
static const size_t conv_shapes[][7] = {
    {2, 3, 7, 7, 5, 3, 1},   {2, 4, 7, 7, 6, 3, 2},  {1, 5, 5, 6, 3, 3, 2},
    {3, 6, 5, 6, 4, 1, 1},   {2, 3, 7, 7, 8, 1, 2},  {2, 16, 8, 8, 24, 3, 1},
    {2, 2, 6, 5, 3, 3, 2},   {1, 1, 1, 1, 1, 3, 1},  {2, 20, 9, 7, 17, 3, 2},
    {2, 33, 6, 6, 40, 1, 1},
    /* 3x3 stride 1 with W >= 12 and ci >= 8 takes the shifted-GEMM path */
    {1, 64, 28, 28, 8, 3, 1}, {1, 130, 26, 25, 3, 3, 1}, {2, 8, 13, 12, 7, 3, 1},
    {2, 3, 13, 12, 5, 3, 1}, /* few input channels: im2col */
    /* several images per GEMM (P < 256), with a partial last batch */
    {7, 3, 7, 7, 4, 3, 1}, {20, 2, 7, 7, 3, 3, 2}, {9, 2, 5, 6, 3, 3, 2},
    /* im2col in several row blocks (512 KiB of columns each) */
    {1, 128, 27, 27, 8, 3, 2}, {1, 600, 10, 10, 3, 3, 1}, {1, 300, 11, 9, 2, 3, 1},
};

static stochflow__conv_shape mk_shape(const size_t *v) {
    stochflow__conv_shape s = {v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    return s;
}

START_TEST(conv_sizes) {
    const size_t cases[][4] = {{7, 3, 2, 4}, {28, 3, 2, 14}, {28, 3, 1, 28}, {5, 1, 2, 3},
                               {6, 1, 2, 3}, {1, 3, 2, 1},  {14, 3, 2, 7}, {7, 1, 1, 7}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
        stochflow__conv_shape s = {1, 2, cases[c][0], cases[c][0] + 1, 3, cases[c][1], cases[c][2]};
        ck_assert_uint_eq(stochflow__conv_out_h(&s), cases[c][3]);
        size_t pad = (cases[c][1] - 1) / 2;
        ck_assert_uint_eq(stochflow__conv_out_w(&s),
                          (cases[c][0] + 1 + 2 * pad - cases[c][1]) / cases[c][2] + 1);
    }
    stochflow__conv_shape a = {4, 8, 10, 10, 16, 1, 1};
    ck_assert_uint_eq(stochflow__conv_scratch(&a), 0);
    stochflow__conv_shape b = {1, 8, 10, 10, 16, 3, 2}; /* one image: im2col only */
    ck_assert_uint_eq(stochflow__conv_scratch(&b), 8 * 9 * 5 * 5);
    stochflow__conv_shape b4 = {4, 8, 10, 10, 16, 3, 2}; /* 4 images side by side + output */
    ck_assert_uint_eq(stochflow__conv_scratch(&b4), 4 * (8 * 9 + 16) * 5 * 5);
    /* non-decreasing in n: a workspace sized for n images serves any smaller batch */
    const size_t mono[][6] = {{64, 7, 64, 3, 1, 0},  {128, 14, 64, 3, 2, 0}, {3, 5, 4, 3, 1, 0},
                              {32, 28, 32, 3, 1, 0}, {600, 10, 3, 3, 1, 0},  {64, 28, 64, 1, 2, 0}};
    for (size_t m = 0; m < sizeof mono / sizeof mono[0]; ++m)
        for (size_t n = 1; n < 80; ++n) {
            stochflow__conv_shape p1 = {n, mono[m][0], mono[m][1], mono[m][1], mono[m][2],
                                        mono[m][3], mono[m][4]};
            stochflow__conv_shape p2 = p1;
            p2.n = n + 1;
            ck_assert_uint_le(stochflow__conv_scratch(&p1), stochflow__conv_scratch(&p2));
        }
    stochflow__conv_shape c2 = {4, SIZE_MAX / 4, 10, 10, 16, 3, 1};
    ck_assert_uint_eq(stochflow__conv_scratch(&c2), SIZE_MAX);
}
END_TEST

START_TEST(conv_fast_vs_naive) {
    for (size_t t = 0; t < sizeof conv_shapes / sizeof conv_shapes[0]; ++t) {
        stochflow__conv_shape s = mk_shape(conv_shapes[t]);
        size_t ho = stochflow__conv_out_h(&s), wo = stochflow__conv_out_w(&s);
        size_t nx = s.n * s.ci * s.h * s.w, ny = s.n * s.co * ho * wo,
               nw = s.co * s.ci * s.k * s.k, ns = stochflow__conv_scratch(&s);
        float *x = fmalloc(nx), *w = fmalloc(nw), *b = fmalloc(s.co), *dy = fmalloc(ny);
        float *y1 = fmalloc(ny), *y2 = fmalloc(ny), *scr = fmalloc(ns);
        float *dx1 = fmalloc(nx), *dx2 = fmalloc(nx), *dw1 = fmalloc(nw), *dw2 = fmalloc(nw);
        float *db1 = fmalloc(s.co), *db2 = fmalloc(s.co);
        fill(x, nx, 1); fill(w, nw, 2); fill(b, s.co, 3); fill(dy, ny, 4);
        for (int bias = 0; bias < 2; ++bias) {
            fill_nan(y1, ny); fill_nan(scr, ns);
            stochflow__conv_forward(y1, x, w, bias ? b : NULL, &s, scr, 2);
            stochflow__conv_forward_naive(y2, x, w, bias ? b : NULL, &s);
            assert_close(y1, y2, ny, 1e-4, "y", t);
        }
        /* dw, db start from a non-zero value and accumulate over two calls; dx is written
         * by the first call (from NaN) and added to by the second. */
        fill(dw1, nw, 5); memcpy(dw2, dw1, nw * 4);
        fill(db1, s.co, 6); memcpy(db2, db1, s.co * 4);
        fill_nan(dx1, nx); fill_nan(dx2, nx);
        for (int rep = 0; rep < 2; ++rep) {
            fill_nan(scr, ns);
            stochflow__conv_backward(dx1, rep, dw1, db1, dy, x, w, &s, scr, 2);
            stochflow__conv_backward_naive(dx2, rep, dw2, db2, dy, x, w, &s);
        }
        assert_close(dx1, dx2, nx, 1e-4, "dx", t);
        assert_close(dw1, dw2, nw, 1e-4, "dw", t);
        assert_close(db1, db2, s.co, 1e-4, "db", t);
        /* NULL outputs are skipped; dx alone still right */
        float *dx3 = fmalloc(nx);
        fill_nan(scr, ns);
        stochflow__conv_backward(dx3, 0, NULL, NULL, dy, x, w, &s, scr, 1);
        stochflow__conv_backward_naive(dx2, 0, NULL, NULL, dy, x, w, &s);
        assert_close(dx3, dx2, nx, 1e-4, "dx only", t);
        /* dw alone (dx NULL) */
        memset(dw1, 0, nw * 4); memset(dw2, 0, nw * 4);
        stochflow__conv_backward(NULL, 0, dw1, NULL, dy, x, w, &s, scr, 1);
        stochflow__conv_backward_naive(NULL, 0, dw2, NULL, dy, x, w, &s);
        assert_close(dw1, dw2, nw, 1e-4, "dw only", t);
        free(dx3);
        free(x); free(w); free(b); free(dy); free(y1); free(y2); free(scr);
        free(dx1); free(dx2); free(dw1); free(dw2); free(db1); free(db2);
    }
}
END_TEST

/* Accumulation semantics with exact expectations: dw and db double with two calls from
 * zero, dx with dx_accumulate = 1 is the sum of the old content and the new gradient. */
START_TEST(conv_accumulation) {
    stochflow__conv_shape s = {2, 4, 7, 7, 6, 3, 2};
    size_t ho = stochflow__conv_out_h(&s), wo = stochflow__conv_out_w(&s);
    size_t nx = s.n * s.ci * s.h * s.w, ny = s.n * s.co * ho * wo, nw = s.co * s.ci * 9;
    float *x = fmalloc(nx), *w = fmalloc(nw), *dy = fmalloc(ny), *scr = fmalloc(stochflow__conv_scratch(&s));
    float *dx = fmalloc(nx), *dxa = fmalloc(nx), *old = fmalloc(nx);
    float *dw1 = calloc(nw, 4), *dw2 = calloc(nw, 4), *db1 = calloc(s.co, 4), *db2 = calloc(s.co, 4);
    fill(x, nx, 7); fill(w, nw, 8); fill(dy, ny, 9); fill(old, nx, 10);
    stochflow__conv_backward(dx, 0, dw1, db1, dy, x, w, &s, scr, 1);
    memcpy(dw2, dw1, nw * 4); memcpy(db2, db1, s.co * 4);
    memcpy(dxa, old, nx * 4);
    stochflow__conv_backward(dxa, 1, dw2, db2, dy, x, w, &s, scr, 1);
    for (size_t i = 0; i < nw; ++i) ck_assert_float_eq_tol(dw2[i], 2 * dw1[i], 1e-5 * (1 + fabsf(dw1[i])));
    for (size_t i = 0; i < s.co; ++i) ck_assert_float_eq_tol(db2[i], 2 * db1[i], 1e-5 * (1 + fabsf(db1[i])));
    for (size_t i = 0; i < nx; ++i) ck_assert_float_eq_tol(dxa[i], old[i] + dx[i], 1e-5 * (1 + fabsf(dx[i])));
    free(x); free(w); free(dy); free(scr); free(dx); free(dxa); free(old);
    free(dw1); free(dw2); free(db1); free(db2);
}
END_TEST

/* Finite differences in double. Each layer's forward is re-implemented below in double
 * precision (straight from the formula in lib/conv.h, independent of lib/conv.c), the
 * scalar objective is L = sum r . y for a fixed random r, and its gradient is the
 * backward pass with dy = r. Central differences with step h = 1e-5 on double copies of
 * the inputs are accurate to ~1e-9, so the float backward passes (fast and naive) are
 * held to 2e-6 absolute + 1e-5 relative (observed: at most 0.15 of that). */
typedef double (*fd_fn)(const void *ctx, double *const *vars);

static void fd_check(const float *const *fvars, const float *const *grads, const size_t *counts,
                     int nv, fd_fn fn, const void *ctx, const char *what) {
    const double h = 1e-5, abs_tol = 2e-6, rel_tol = 1e-5;
    double *dv[4];
    for (int v = 0; v < nv; ++v) {
        dv[v] = malloc((counts[v] ? counts[v] : 1) * sizeof(double));
        for (size_t i = 0; i < counts[v]; ++i) dv[v][i] = fvars[v][i];
    }
    for (int v = 0; v < nv; ++v)
        for (size_t i = 0; i < counts[v]; ++i) {
            double keep = dv[v][i];
            dv[v][i] = keep + h;
            double lp = fn(ctx, dv);
            dv[v][i] = keep - h;
            double lm = fn(ctx, dv);
            dv[v][i] = keep;
            double fd = (lp - lm) / (2.0 * h), tol = abs_tol + rel_tol * fabs(fd);
            double err = fabs(grads[v][i] - fd);
            ck_assert_msg(err <= tol, "%s: variable %d index %zu: backward %.9g vs FD %.9g", what,
                          v, i, grads[v][i], fd);
        }
    for (int v = 0; v < nv; ++v) free(dv[v]);
}

typedef struct {
    const float *r;
    stochflow__conv_shape s;
} conv_ctx;

/* sum r . conv(x; w, b) in double; vars = {x, w, b} */
static double conv_fn(const void *p, double *const *vars) {
    const conv_ctx *c = p;
    const stochflow__conv_shape *s = &c->s;
    const double *x = vars[0], *w = vars[1], *b = vars[2];
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s), k = s->k;
    const long pad = (long)(k - 1) / 2, st = (long)s->stride;
    double L = 0;
    for (size_t i = 0; i < s->n; ++i)
        for (size_t o = 0; o < s->co; ++o)
            for (size_t r = 0; r < ho; ++r)
                for (size_t q = 0; q < wo; ++q) {
                    double acc = b[o];
                    for (size_t j = 0; j < s->ci; ++j)
                        for (size_t u = 0; u < k; ++u)
                            for (size_t v = 0; v < k; ++v) {
                                long yy = st * (long)r + (long)u - pad, xx = st * (long)q + (long)v - pad;
                                if (yy < 0 || xx < 0 || yy >= (long)s->h || xx >= (long)s->w) continue;
                                acc += w[((o * s->ci + j) * k + u) * k + v] *
                                       x[((i * s->ci + j) * s->h + (size_t)yy) * s->w + (size_t)xx];
                            }
                    L += c->r[((i * s->co + o) * ho + r) * wo + q] * acc;
                }
    return L;
}

START_TEST(conv_gradient_fd) {
    const size_t shapes[][7] = {{2, 2, 5, 4, 3, 3, 2}, {1, 2, 4, 5, 3, 3, 1}, {2, 3, 3, 3, 2, 1, 1},
                                {1, 2, 5, 5, 2, 1, 2}, {1, 8, 3, 12, 2, 3, 1}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; ++t) {
        stochflow__conv_shape s = mk_shape(shapes[t]);
        size_t ho = stochflow__conv_out_h(&s), wo = stochflow__conv_out_w(&s);
        size_t nx = s.n * s.ci * s.h * s.w, ny = s.n * s.co * ho * wo, nw = s.co * s.ci * s.k * s.k;
        float *x = fmalloc(nx), *w = fmalloc(nw), *b = fmalloc(s.co), *r = fmalloc(ny);
        float *scr = fmalloc(stochflow__conv_scratch(&s));
        fill(x, nx, 11); fill(w, nw, 12); fill(b, s.co, 13); fill(r, ny, 14);
        for (int naive = 0; naive < 2; ++naive) {
            float *dx = fmalloc(nx), *dw = calloc(nw, 4), *db = calloc(s.co, 4);
            if (naive)
                stochflow__conv_backward_naive(dx, 0, dw, db, r, x, w, &s);
            else
                stochflow__conv_backward(dx, 0, dw, db, r, x, w, &s, scr, 1);
            conv_ctx ctx = {r, s};
            const float *vars[3] = {x, w, b}, *grads[3] = {dx, dw, db};
            size_t counts[3] = {nx, nw, s.co};
            fd_check(vars, grads, counts, 3, conv_fn, &ctx, naive ? "conv naive" : "conv fast");
            free(dx); free(dw); free(db);
        }
        free(x); free(w); free(b); free(r); free(scr);
    }
}
END_TEST

/* ---- GroupNorm ----------------------------------------------------------------------- */

/* {n, c, hw, groups} */
static const size_t gn_shapes[][4] = {{2, 8, 49, 4}, {3, 6, 30, 3}, {1, 4, 7, 1},
                                      {2, 32, 196, 8}, {2, 5, 9, 5}, {3, 12, 13, 4}};

START_TEST(groupnorm_fast_vs_naive) {
    for (size_t t = 0; t < sizeof gn_shapes / sizeof gn_shapes[0]; ++t) {
        size_t n = gn_shapes[t][0], c = gn_shapes[t][1], hw = gn_shapes[t][2], G = gn_shapes[t][3];
        size_t nx = n * c * hw;
        float *x = fmalloc(nx), *g = fmalloc(c), *be = fmalloc(c), *dy = fmalloc(nx);
        float *y1 = fmalloc(nx), *y2 = fmalloc(nx), *m1 = fmalloc(n * G), *m2 = fmalloc(n * G);
        float *r1 = fmalloc(n * G), *r2 = fmalloc(n * G);
        float *dx1 = fmalloc(nx), *dx2 = fmalloc(nx), *dg1 = fmalloc(c), *dg2 = fmalloc(c);
        float *db1 = fmalloc(c), *db2 = fmalloc(c);
        fill(x, nx, 21); fill(g, c, 22); fill(be, c, 23); fill(dy, nx, 24);
        for (size_t i = 0; i < nx; ++i) x[i] = 3.0f + 2.0f * x[i]; /* offset: cancellation */
        for (size_t i = 0; i < c; ++i) g[i] = 1.0f + 0.3f * g[i];
        stochflow__groupnorm_forward(y1, m1, r1, x, g, be, n, c, hw, G, 2);
        stochflow__groupnorm_forward_naive(y2, m2, r2, x, g, be, n, c, hw, G);
        assert_close(y1, y2, nx, 1e-4, "gn y", t);
        assert_close(m1, m2, n * G, 1e-5, "gn mean", t);
        assert_close(r1, r2, n * G, 1e-5, "gn rstd", t);
        fill(dg1, c, 25); memcpy(dg2, dg1, c * 4);
        fill(db1, c, 26); memcpy(db2, db1, c * 4);
        fill_nan(dx1, nx); fill_nan(dx2, nx);
        for (int rep = 0; rep < 2; ++rep) {
            stochflow__groupnorm_backward(dx1, rep, dg1, db1, dy, x, m2, r2, g, n, c, hw, G, 2);
            stochflow__groupnorm_backward_naive(dx2, rep, dg2, db2, dy, x, m2, r2, g, n, c, hw, G);
        }
        assert_close(dx1, dx2, nx, 1e-4, "gn dx", t);
        assert_close(dg1, dg2, c, 1e-4, "gn dgamma", t);
        assert_close(db1, db2, c, 1e-4, "gn dbeta", t);
        /* parameter gradients only / dx only */
        float *dg3 = calloc(c, 4), *dg4 = calloc(c, 4);
        stochflow__groupnorm_backward(NULL, 0, dg3, NULL, dy, x, m2, r2, g, n, c, hw, G, 1);
        stochflow__groupnorm_backward_naive(NULL, 0, dg4, NULL, dy, x, m2, r2, g, n, c, hw, G);
        assert_close(dg3, dg4, c, 1e-4, "gn dgamma only", t);
        stochflow__groupnorm_backward(dx1, 0, NULL, NULL, dy, x, m2, r2, g, n, c, hw, G, 1);
        stochflow__groupnorm_backward_naive(dx2, 0, NULL, NULL, dy, x, m2, r2, g, n, c, hw, G);
        assert_close(dx1, dx2, nx, 1e-4, "gn dx only", t);
        /* all three outputs at once (fused sweep when groups >= 4) = one at a time */
        float *dg5 = calloc(c, 4), *db5 = calloc(c, 4), *dx5 = fmalloc(nx);
        float *dg6 = calloc(c, 4), *db6 = calloc(c, 4), *dx6 = fmalloc(nx);
        stochflow__groupnorm_backward(dx5, 0, dg5, db5, dy, x, m2, r2, g, n, c, hw, G, 2);
        stochflow__groupnorm_backward(dx6, 0, NULL, NULL, dy, x, m2, r2, g, n, c, hw, G, 2);
        stochflow__groupnorm_backward(NULL, 0, dg6, db6, dy, x, m2, r2, g, n, c, hw, G, 2);
        ck_assert(memcmp(dx5, dx6, nx * 4) == 0 && memcmp(dg5, dg6, c * 4) == 0 &&
                  memcmp(db5, db6, c * 4) == 0);
        free(dg5); free(db5); free(dx5); free(dg6); free(db6); free(dx6);
        free(dg3); free(dg4);
        free(x); free(g); free(be); free(dy); free(y1); free(y2); free(m1); free(m2);
        free(r1); free(r2); free(dx1); free(dx2); free(dg1); free(dg2); free(db1); free(db2);
    }
}
END_TEST

START_TEST(groupnorm_normalises) {
    const size_t n = 3, c = 12, hw = 25, G = 4, cg = 3, m = cg * hw;
    float *x = fmalloc(n * c * hw), *y = fmalloc(n * c * hw), *g = fmalloc(c), *be = fmalloc(c);
    float mean[12], rstd[12];
    fill(x, n * c * hw, 31);
    for (size_t i = 0; i < n * c * hw; ++i) x[i] = 5.0f + 2.0f * x[i] + (float)(i / m); /* group offsets */
    for (size_t i = 0; i < c; ++i) { g[i] = 1.0f; be[i] = 0.0f; }
    stochflow__groupnorm_forward(y, mean, rstd, x, g, be, n, c, hw, G, 1);
    for (size_t q = 0; q < n * G; ++q) {
        double mu = 0, var = 0, xm = 0, xv = 0;
        for (size_t e = 0; e < m; ++e) { mu += y[q * m + e]; xm += x[q * m + e]; }
        mu /= m; xm /= m;
        for (size_t e = 0; e < m; ++e) {
            var += (y[q * m + e] - mu) * (y[q * m + e] - mu);
            xv += (x[q * m + e] - xm) * (x[q * m + e] - xm);
        }
        var /= m; xv /= m;
        ck_assert_double_eq_tol(mu, 0.0, 1e-5);
        /* var(y) = var(x) / (var(x) + eps) */
        ck_assert_double_eq_tol(var, xv / (xv + 1e-5), 1e-5);
        ck_assert_double_eq_tol(mean[q], xm, 1e-5 * fabs(xm));
        ck_assert_double_eq_tol(rstd[q], 1.0 / sqrt(xv + 1e-5), 1e-5 / sqrt(xv));
    }
    /* a mean far above the spread (1000 +- 0.1): statistics still match the two-pass
     * double reference */
    float y2[300], mean2[12], rstd2[12];
    for (size_t i = 0; i < n * c * hw; ++i) x[i] = 1000.0f + 0.1f * (x[i] - 5.0f) / 2.0f;
    stochflow__groupnorm_forward(y, mean, rstd, x, g, be, n, c, hw, G, 1);
    for (size_t q = 0; q < n * G; q += 4) {
        stochflow__groupnorm_forward_naive(y2, mean2, rstd2, x + q * m, g, be, 1, c, hw, G);
        ck_assert_double_eq_tol(mean[q], mean2[0], 1e-7 * 1000);
        ck_assert_double_eq_tol(rstd[q], rstd2[0], 1e-5 * rstd2[0]);
        for (size_t e = 0; e < m; ++e) ck_assert_double_eq_tol(y[q * m + e], y2[e], 1e-4);
    }
    free(x); free(y); free(g); free(be);
}
END_TEST

typedef struct {
    const float *r;
    size_t n, c, hw, G;
} gn_ctx;

/* sum r . groupnorm(x; gamma, beta) in double; vars = {x, gamma, beta} */
static double gn_fn(const void *p, double *const *vars) {
    const gn_ctx *g = p;
    const double *x = vars[0], *gm = vars[1], *be = vars[2];
    const size_t cg = g->c / g->G, m = cg * g->hw;
    double L = 0;
    for (size_t q = 0; q < g->n * g->G; ++q) {
        double mu = 0, var = 0;
        for (size_t e = 0; e < m; ++e) mu += x[q * m + e];
        mu /= (double)m;
        for (size_t e = 0; e < m; ++e) var += (x[q * m + e] - mu) * (x[q * m + e] - mu);
        var /= (double)m;
        double rs = 1.0 / sqrt(var + 1e-5);
        for (size_t e = 0; e < m; ++e) {
            size_t ch = (q % g->G) * cg + e / g->hw;
            L += g->r[q * m + e] * ((x[q * m + e] - mu) * rs * gm[ch] + be[ch]);
        }
    }
    return L;
}

START_TEST(groupnorm_gradient_fd) {
    const size_t shapes[][4] = {{2, 4, 5, 2}, {1, 3, 6, 1}, {2, 6, 4, 3}};
    for (size_t t = 0; t < 3; ++t) {
        size_t n = shapes[t][0], c = shapes[t][1], hw = shapes[t][2], G = shapes[t][3];
        size_t nx = n * c * hw;
        float *x = fmalloc(nx), *g = fmalloc(c), *be = fmalloc(c), *r = fmalloc(nx);
        float *y = fmalloc(nx), *mu = fmalloc(n * G), *rs = fmalloc(n * G);
        fill(x, nx, 41); fill(g, c, 42); fill(be, c, 43); fill(r, nx, 44);
        for (size_t i = 0; i < c; ++i) g[i] = 1.0f + 0.5f * g[i];
        stochflow__groupnorm_forward_naive(y, mu, rs, x, g, be, n, c, hw, G);
        for (int naive = 0; naive < 2; ++naive) {
            float *dx = fmalloc(nx), *dg = calloc(c, 4), *db = calloc(c, 4);
            if (naive)
                stochflow__groupnorm_backward_naive(dx, 0, dg, db, r, x, mu, rs, g, n, c, hw, G);
            else
                stochflow__groupnorm_backward(dx, 0, dg, db, r, x, mu, rs, g, n, c, hw, G, 1);
            gn_ctx ctx = {r, n, c, hw, G};
            const float *vars[3] = {x, g, be}, *grads[3] = {dx, dg, db};
            size_t counts[3] = {nx, c, c};
            fd_check(vars, grads, counts, 3, gn_fn, &ctx,
                     naive ? "groupnorm naive" : "groupnorm fast");
            free(dx); free(dg); free(db);
        }
        free(x); free(g); free(be); free(r); free(y); free(mu); free(rs);
    }
}
END_TEST

/* ---- up-sampling ----------------------------------------------------------------------- */

typedef struct {
    const float *r;
    size_t planes, h, w;
} up_ctx;

/* sum r . up2(x) in double; vars = {x} */
static double up_fn(const void *p, double *const *vars) {
    const up_ctx *u = p;
    double L = 0;
    for (size_t pl = 0; pl < u->planes; ++pl)
        for (size_t r = 0; r < 2 * u->h; ++r)
            for (size_t q = 0; q < 2 * u->w; ++q)
                L += u->r[(pl * 2 * u->h + r) * 2 * u->w + q] *
                     vars[0][(pl * u->h + r / 2) * u->w + q / 2];
    return L;
}

START_TEST(upsample_exact) {
    const size_t n = 2, c = 3, h = 5, w = 4, nx = n * c * h * w, ny = 4 * nx;
    float *x = fmalloc(nx), *y = fmalloc(ny), *dy = fmalloc(ny), *dx = fmalloc(nx),
          *old = fmalloc(nx);
    fill(x, nx, 51); fill(dy, ny, 52); fill(old, nx, 53);
    stochflow__upsample2_forward(y, x, n, c, h, w, 2);
    for (size_t p = 0; p < n * c; ++p)
        for (size_t r = 0; r < 2 * h; ++r)
            for (size_t q = 0; q < 2 * w; ++q)
                ck_assert_float_eq(y[(p * 2 * h + r) * 2 * w + q], x[(p * h + r / 2) * w + q / 2]);
    for (int acc = 0; acc < 2; ++acc) {
        memcpy(dx, old, nx * 4);
        stochflow__upsample2_backward(dx, acc, dy, n, c, h, w, 2);
        for (size_t p = 0; p < n * c; ++p)
            for (size_t r = 0; r < h; ++r)
                for (size_t q = 0; q < w; ++q) {
                    const float *d = dy + (p * 2 * h + 2 * r) * 2 * w + 2 * q;
                    double s = (double)d[0] + d[1] + d[2 * w] + d[2 * w + 1];
                    size_t e = (p * h + r) * w + q;
                    ck_assert_double_eq_tol(dx[e], (acc ? old[e] : 0.0) + s, 1e-5);
                }
    }
    /* central differences of sum r . up(x) in double, r = dy */
    stochflow__upsample2_backward(dx, 0, dy, n, c, h, w, 1);
    up_ctx ctx = {dy, n * c, h, w};
    const float *vars[1] = {x}, *grads[1] = {dx};
    size_t counts[1] = {nx};
    fd_check(vars, grads, counts, 1, up_fn, &ctx, "upsample");
    free(x); free(y); free(dy); free(dx); free(old);
}
END_TEST

/* ---- attention ------------------------------------------------------------------------ */

/* {n, c, L} */
static const size_t at_shapes[][3] = {{2, 4, 9}, {3, 8, 49}, {1, 16, 30}, {2, 3, 7},
                                      {2, 16, 49}, {1, 1, 1}, {3, 5, 17}};

START_TEST(attention_fast_vs_naive) {
    for (size_t t = 0; t < sizeof at_shapes / sizeof at_shapes[0]; ++t) {
        size_t n = at_shapes[t][0], c = at_shapes[t][1], L = at_shapes[t][2];
        size_t nq = n * c * L, np = n * L * L;
        float *q = fmalloc(nq), *k = fmalloc(nq), *v = fmalloc(nq), *dout = fmalloc(nq);
        float *o1 = fmalloc(nq), *o2 = fmalloc(nq), *p1 = fmalloc(np), *p2 = fmalloc(np);
        float *dq1 = fmalloc(nq), *dk1 = fmalloc(nq), *dv1 = fmalloc(nq);
        float *dq2 = fmalloc(nq), *dk2 = fmalloc(nq), *dv2 = fmalloc(nq);
        float *scr = fmalloc(stochflow__attention_scratch(n, c, L, 2));
        fill(q, nq, 61); fill(k, nq, 62); fill(v, nq, 63); fill(dout, nq, 64);
        fill_nan(o1, nq); fill_nan(p1, np);
        stochflow__attention_forward(o1, p1, q, k, v, n, c, L, 2);
        stochflow__attention_forward_naive(o2, p2, q, k, v, n, c, L);
        assert_close(o1, o2, nq, 1e-4, "attn o", t);
        assert_close(p1, p2, np, 1e-5, "attn probs", t);
        fill_nan(dq1, nq); fill_nan(dk1, nq); fill_nan(dv1, nq);
        stochflow__attention_backward(dq1, dk1, dv1, dout, q, k, v, p2, n, c, L, scr, 2);
        stochflow__attention_backward_naive(dq2, dk2, dv2, dout, q, k, v, p2, n, c, L);
        assert_close(dq1, dq2, nq, 1e-4, "attn dq", t);
        assert_close(dk1, dk2, nq, 1e-4, "attn dk", t);
        assert_close(dv1, dv2, nq, 1e-4, "attn dv", t);
        free(q); free(k); free(v); free(dout); free(o1); free(o2); free(p1); free(p2);
        free(dq1); free(dk1); free(dv1); free(dq2); free(dk2); free(dv2); free(scr);
    }
}
END_TEST

typedef struct {
    const float *r;
    size_t n, c, L;
} at_ctx;

/* sum r . attention(q, k, v) in double; vars = {q, k, v} */
static double at_fn(const void *p, double *const *vars) {
    const at_ctx *a = p;
    const size_t c = a->c, L = a->L;
    double *sc = malloc(L * sizeof *sc), tot = 0;
    for (size_t i = 0; i < a->n; ++i) {
        const double *q = vars[0] + i * c * L, *k = vars[1] + i * c * L, *v = vars[2] + i * c * L;
        for (size_t r = 0; r < L; ++r) {
            double mx = -HUGE_VAL, sum = 0;
            for (size_t j = 0; j < L; ++j) {
                double d = 0;
                for (size_t cc = 0; cc < c; ++cc) d += q[cc * L + r] * k[cc * L + j];
                sc[j] = d / sqrt((double)c);
                if (sc[j] > mx) mx = sc[j];
            }
            for (size_t j = 0; j < L; ++j) sum += (sc[j] = exp(sc[j] - mx));
            for (size_t cc = 0; cc < c; ++cc) {
                double o = 0;
                for (size_t j = 0; j < L; ++j) o += sc[j] / sum * v[cc * L + j];
                tot += a->r[i * c * L + cc * L + r] * o;
            }
        }
    }
    free(sc);
    return tot;
}

START_TEST(attention_gradient_fd) {
    const size_t shapes[][3] = {{2, 3, 5}, {1, 4, 7}, {1, 1, 3}};
    for (size_t t = 0; t < 3; ++t) {
        size_t n = shapes[t][0], c = shapes[t][1], L = shapes[t][2], nq = n * c * L;
        float *q = fmalloc(nq), *k = fmalloc(nq), *v = fmalloc(nq), *r = fmalloc(nq);
        float *o = fmalloc(nq), *pr = fmalloc(n * L * L), *scr = fmalloc(stochflow__attention_scratch(n, c, L, 1));
        fill(q, nq, 71); fill(k, nq, 72); fill(v, nq, 73); fill(r, nq, 74);
        for (int naive = 0; naive < 2; ++naive) {
            float *dq = fmalloc(nq), *dk = fmalloc(nq), *dv = fmalloc(nq);
            if (naive) {
                stochflow__attention_forward_naive(o, pr, q, k, v, n, c, L);
                stochflow__attention_backward_naive(dq, dk, dv, r, q, k, v, pr, n, c, L);
            } else {
                stochflow__attention_forward(o, pr, q, k, v, n, c, L, 1);
                stochflow__attention_backward(dq, dk, dv, r, q, k, v, pr, n, c, L, scr, 1);
            }
            at_ctx ctx = {r, n, c, L};
            const float *vars[3] = {q, k, v}, *grads[3] = {dq, dk, dv};
            size_t counts[3] = {nq, nq, nq};
            fd_check(vars, grads, counts, 3, at_fn, &ctx,
                     naive ? "attention naive" : "attention fast");
            free(dq); free(dk); free(dv);
        }
        free(q); free(k); free(v); free(r); free(o); free(pr); free(scr);
    }
}
END_TEST

/* ---- threads ---------------------------------------------------------------------------- */

/* Run f for 1 and 2 threads into fresh buffers and compare bitwise. */
static void same_bits(const float *a, const float *b, size_t n, const char *what) {
    ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "%s differs between 1 and 2 threads", what);
}

START_TEST(threads_bitwise) {
    /* convolution: 3x3 s1 (shifted GEMMs, im2col, batched im2col), 3x3 s2, 1x1 s1,
     * 1x1 s2, at sizes where the loops split */
    const size_t cs[][7] = {{3, 16, 28, 28, 16, 3, 1}, {3, 16, 28, 28, 24, 3, 2},
                            {3, 32, 14, 14, 16, 1, 1}, {2, 16, 14, 14, 8, 1, 2},
                            {2, 64, 28, 28, 16, 3, 1}, {4, 4, 28, 28, 16, 3, 1},
                            {8, 32, 7, 7, 32, 3, 1}, {9, 16, 14, 14, 32, 3, 2}};
    for (size_t t = 0; t < sizeof cs / sizeof cs[0]; ++t) {
        stochflow__conv_shape s = mk_shape(cs[t]);
        size_t ny = s.n * s.co * stochflow__conv_out_h(&s) * stochflow__conv_out_w(&s);
        size_t nx = s.n * s.ci * s.h * s.w, nw = s.co * s.ci * s.k * s.k;
        float *x = fmalloc(nx), *w = fmalloc(nw), *b = fmalloc(s.co), *dy = fmalloc(ny);
        float *scr = fmalloc(stochflow__conv_scratch(&s));
        fill(x, nx, 81); fill(w, nw, 82); fill(b, s.co, 83); fill(dy, ny, 84);
        float *y[2], *dx[2], *dw[2], *db[2];
        for (int nt = 1; nt <= 2; ++nt) {
            y[nt - 1] = fmalloc(ny); dx[nt - 1] = fmalloc(nx);
            dw[nt - 1] = calloc(nw, 4); db[nt - 1] = calloc(s.co, 4);
            stochflow__conv_forward(y[nt - 1], x, w, b, &s, scr, nt);
            stochflow__conv_backward(dx[nt - 1], 0, dw[nt - 1], db[nt - 1], dy, x, w, &s, scr, nt);
        }
        same_bits(y[0], y[1], ny, "conv y");
        same_bits(dx[0], dx[1], nx, "conv dx");
        same_bits(dw[0], dw[1], nw, "conv dw");
        same_bits(db[0], db[1], s.co, "conv db");
        for (int i = 0; i < 2; ++i) { free(y[i]); free(dx[i]); free(dw[i]); free(db[i]); }
        free(x); free(w); free(b); free(dy); free(scr);
    }
    /* GroupNorm and up-sampling */
    {
        const size_t n = 6, c = 32, hw = 196, G = 8, nx = n * c * hw;
        float *x = fmalloc(nx), *g = fmalloc(c), *be = fmalloc(c), *dy = fmalloc(4 * nx);
        fill(x, nx, 85); fill(g, c, 86); fill(be, c, 87); fill(dy, 4 * nx, 88);
        float *y[2], *mu[2], *rs[2], *dx[2], *dg[2], *db[2], *up[2], *dup[2];
        for (int nt = 1; nt <= 2; ++nt) {
            int k = nt - 1;
            y[k] = fmalloc(nx); mu[k] = fmalloc(n * G); rs[k] = fmalloc(n * G);
            dx[k] = fmalloc(nx); dg[k] = calloc(c, 4); db[k] = calloc(c, 4);
            up[k] = fmalloc(4 * nx); dup[k] = fmalloc(nx);
            stochflow__groupnorm_forward(y[k], mu[k], rs[k], x, g, be, n, c, hw, G, nt);
            stochflow__groupnorm_backward(dx[k], 0, dg[k], db[k], dy, x, mu[k], rs[k], g, n, c,
                                          hw, G, nt);
            stochflow__upsample2_forward(up[k], x, n, c, 14, 14, nt);
            stochflow__upsample2_backward(dup[k], 0, dy, n, c, 14, 14, nt);
        }
        same_bits(y[0], y[1], nx, "gn y");
        same_bits(mu[0], mu[1], n * G, "gn mean");
        same_bits(rs[0], rs[1], n * G, "gn rstd");
        same_bits(dx[0], dx[1], nx, "gn dx");
        same_bits(dg[0], dg[1], c, "gn dgamma");
        same_bits(db[0], db[1], c, "gn dbeta");
        same_bits(up[0], up[1], 4 * nx, "upsample y");
        same_bits(dup[0], dup[1], nx, "upsample dx");
        for (int k = 0; k < 2; ++k) {
            free(y[k]); free(mu[k]); free(rs[k]); free(dx[k]); free(dg[k]); free(db[k]);
            free(up[k]); free(dup[k]);
        }
        free(x); free(g); free(be); free(dy);
    }
    /* attention: images split among threads (n = 5), and one image with BLIS threads */
    const size_t as[][3] = {{5, 32, 49}, {1, 32, 196}};
    for (size_t t = 0; t < 2; ++t) {
        size_t n = as[t][0], c = as[t][1], L = as[t][2], nq = n * c * L, np = n * L * L;
        float *q = fmalloc(nq), *k = fmalloc(nq), *v = fmalloc(nq), *dout = fmalloc(nq);
        float *scr = fmalloc(stochflow__attention_scratch(n, c, L, 2));
        fill(q, nq, 91); fill(k, nq, 92); fill(v, nq, 93); fill(dout, nq, 94);
        float *o[2], *p[2], *dq[2], *dk[2], *dv[2];
        for (int nt = 1; nt <= 2; ++nt) {
            int i = nt - 1;
            o[i] = fmalloc(nq); p[i] = fmalloc(np);
            dq[i] = fmalloc(nq); dk[i] = fmalloc(nq); dv[i] = fmalloc(nq);
            stochflow__attention_forward(o[i], p[i], q, k, v, n, c, L, nt);
            stochflow__attention_backward(dq[i], dk[i], dv[i], dout, q, k, v, p[i], n, c, L, scr, nt);
        }
        same_bits(o[0], o[1], nq, "attn o");
        same_bits(p[0], p[1], np, "attn probs");
        same_bits(dq[0], dq[1], nq, "attn dq");
        same_bits(dk[0], dk[1], nq, "attn dk");
        same_bits(dv[0], dv[1], nq, "attn dv");
        for (int i = 0; i < 2; ++i) { free(o[i]); free(p[i]); free(dq[i]); free(dk[i]); free(dv[i]); }
        free(q); free(k); free(v); free(dout); free(scr);
    }
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, conv_sizes);
    tcase_add_test(tc, conv_fast_vs_naive);
    tcase_add_test(tc, conv_accumulation);
    tcase_add_test(tc, groupnorm_fast_vs_naive);
    tcase_add_test(tc, groupnorm_normalises);
    tcase_add_test(tc, upsample_exact);
    tcase_add_test(tc, attention_fast_vs_naive);
    tcase_add_test(tc, threads_bitwise);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, conv_gradient_fd);
    tcase_add_test(tg, groupnorm_gradient_fd);
    tcase_add_test(tg, attention_gradient_fd);
    suite_add_tcase(s, tg);
    return s;
}
