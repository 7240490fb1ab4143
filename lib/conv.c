/* conv.c - image layers of the U-Net: 2-D convolution, GroupNorm, nearest 2x
 * up-sampling and single-head self-attention, each with a naive reference.
 * Contracts: lib/conv.h. Derivations: doc/gradients.md ("Image layers").
 *
 * Threads (lib/parallel.h): element-wise loops are split into contiguous ranges of
 * channels, (image, group) pairs, planes or rows; every reduction runs inside one range
 * in a fixed order, and BLIS does not split the reduction dimension of a GEMM, so
 * results are bitwise identical for every thread count.
 *
 * Convolution: images go one at a time (or a few side by side), each GEMM threaded by
 * BLIS, so the scratch size (stochflow__conv_scratch) does not depend on the thread
 * count (and never decreases with n). Three paths, chosen by the shape only:
 *  - k = 1, stride 1: a plain W[co x ci] . X[ci x HW] product per image, no scratch;
 *  - 3x3, stride 1, W >= 12, ci >= 8: nine shifted GEMMs on a zero-padded copy of the
 *    image (no im2col; 10-25% faster at 28x28, see shift_forward);
 *  - otherwise im2col and GEMM: small outputs (Ho Wo < 256) put several images side by
 *    side in one GEMM of >= 256 columns (batched_forward); larger ones go image by
 *    image in blocks of output rows (<= 128 Ki floats of columns). Backward reuses the
 *    buffer: im2col(x) for dw, then the column gradient W^T dY, scattered back by
 *    col2im.
 *
 * Attention: images are split among threads, each running single-threaded GEMMs on its
 * own image (with fewer images than threads, images run one at a time with BLIS
 * threads inside); backward scratch is one L x L block per thread. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "conv.h"
#include "fastmath.h"
#include "internal.h"
#include "norm.h"
#include "parallel.h"

/* PARALLEL_RANGES with the thread's index (for per-thread scratch): body(lo, hi, tid). */
#ifdef _OPENMP
#define PARALLEL_RANGES_TID(count, work, nthreads, align, body)                            \
    do {                                                                                   \
        const int par_nt_ = (nthreads);                                                    \
        if (par_nt_ > 1 && (work) >= PAR_MIN) {                                            \
            _Pragma("omp parallel num_threads(par_nt_)") {                                 \
                size_t lo_, hi_;                                                           \
                const int tid_ = omp_get_thread_num();                                     \
                stochflow__partition(&lo_, &hi_, (count), tid_, omp_get_num_threads(),    \
                                     (align));                                             \
                body(lo_, hi_, tid_);                                                      \
            }                                                                              \
        } else {                                                                           \
            body((size_t)0, (size_t)(count), 0);                                           \
        }                                                                                  \
    } while (0)
#else
#define PARALLEL_RANGES_TID(count, work, nthreads, align, body) \
    body((size_t)0, (size_t)(count), 0)
#endif

/* Checked product of up to four sizes; SIZE_MAX on overflow. */
static size_t mul4(size_t a, size_t b, size_t c, size_t d) {
    size_t r;
    if (stochflow__mul_size(&r, a, b) || stochflow__mul_size(&r, r, c) ||
        stochflow__mul_size(&r, r, d))
        return SIZE_MAX;
    return r;
}

/* ======================================================================================
 * 2-D convolution
 * ==================================================================================== */

static size_t pad_of(const stochflow__conv_shape *s) { return (s->k - 1) / 2; }

size_t stochflow__conv_out_h(const stochflow__conv_shape *s) {
    return (s->h + 2 * pad_of(s) - s->k) / s->stride + 1;
}

size_t stochflow__conv_out_w(const stochflow__conv_shape *s) {
    return (s->w + 2 * pad_of(s) - s->k) / s->stride + 1;
}

/* Output rows per im2col block: the block's columns (K x rows Wo floats) stay within
 * 512 KiB. This bounds the scratch (one image's columns at 28x28 with 64 channels
 * would be 1.8 MB); speed measured the same as whole-image im2col. */
#define CONV_BLOCK_FLOATS ((size_t)1 << 17)

static size_t conv_block_rows(const stochflow__conv_shape *s, size_t ho, size_t wo) {
    size_t per_row = s->ci * s->k * s->k * wo;
    size_t rb = per_row ? CONV_BLOCK_FLOATS / per_row : ho;
    if (rb < 1) rb = 1;
    return rb < ho ? rb : ho;
}

/* ---- 3x3, stride 1 on wide images: shifted GEMMs on a zero-padded copy -------------
 * With X_pad [ci x (H+2) x (W+2)] (plane PL = (H+2)(W+2)) and Wp = W + 2, output (y, x)
 * is column e = y Wp + x of
 *     Y_pad = sum_{u,v} W_uv X_pad[:, e + u Wp + v]      (W_uv = w[:, :, u, v], co x ci)
 * so each tap is one GEMM (k = ci) on a shifted view of X_pad with N = H Wp columns; the
 * 2 columns per row with x >= W are junk and dropped. No 9x im2col copy. Backward:
 *     dW_uv += dY_pad X_pad[:, e + off]^T,   dX_pad[:, e + off] += W_uv^T dY_pad,
 * with dY_pad's junk columns zero, so they add exact zeros. Scratch (floats):
 *     W_r, dW_r [9 x co x ci] | X_pad, dX_pad [ci PL + SLACK] | Y_pad (= dY_pad) [co H Wp]
 * (the last tap's view reads 2 floats past the last plane: SLACK zeros). */
#ifndef CONV_SHIFT_MIN_W
#define CONV_SHIFT_MIN_W 12 /* narrower images: im2col (equal at 14, im2col wins at 7) */
#endif
#define CONV_SHIFT_MIN_CI 8 /* fewer input channels: im2col (ci = 1: 2.6x faster) */
#define SHIFT_SLACK 16

static int use_shift(const stochflow__conv_shape *s) {
    return s->k == 3 && s->stride == 1 && s->w >= CONV_SHIFT_MIN_W && s->ci >= CONV_SHIFT_MIN_CI;
}

typedef struct {
    size_t wp, pl, np, nw, nxp; /* Wp, plane, GEMM columns, 9 co ci, ci PL + SLACK */
    float *wr, *dwr, *xp, *dxp, *yp;
} shift_buf;

/* Offsets in floats (SIZE_MAX on overflow); bufs filled when scratch is given. */
static size_t shift_layout(const stochflow__conv_shape *s, float *scratch, shift_buf *sb) {
    shift_buf t;
    t.wp = s->w + 2;
    if (stochflow__mul_size(&t.pl, s->h + 2, t.wp) || stochflow__mul_size(&t.np, s->h, t.wp))
        return SIZE_MAX;
    t.nw = mul4(9, s->co, s->ci, 1);
    t.nxp = mul4(s->ci, t.pl, 1, 1);
    size_t ny = mul4(s->co, t.np, 1, 1);
    if (t.nw == SIZE_MAX || t.nxp == SIZE_MAX || ny == SIZE_MAX || t.nxp > SIZE_MAX / 4)
        return SIZE_MAX;
    t.nxp += SHIFT_SLACK;
    if (t.nw > SIZE_MAX / 4 || ny > SIZE_MAX / 4) return SIZE_MAX;
    size_t total = 2 * t.nw + 2 * t.nxp + ny;
    if (sb) {
        t.wr = scratch;
        t.dwr = t.wr + t.nw;
        t.xp = t.dwr + t.nw;
        t.dxp = t.xp + t.nxp;
        t.yp = t.dxp + t.nxp;
        *sb = t;
    }
    return total;
}

/* X_pad planes [j0, j1) from x [ci x h x w] (zero border). */
static void pad_in_range(float *xp, const float *x, size_t h, size_t w, size_t j0, size_t j1) {
    const size_t wp = w + 2, pl = (h + 2) * wp;
    for (size_t j = j0; j < j1; ++j) {
        float *p = xp + j * pl;
        const float *src = x + j * h * w;
        memset(p, 0, wp * sizeof *p);
        for (size_t r = 0; r < h; ++r) {
            float *row = p + (r + 1) * wp;
            row[0] = 0.0f;
            memcpy(row + 1, src + r * w, w * sizeof *row);
            row[w + 1] = 0.0f;
        }
        memset(p + (h + 1) * wp, 0, wp * sizeof *p);
    }
}

/* y rows [o0, o1) = Y_pad without the junk columns (+ b). */
SIMD_CLONES
static void shift_out_range(float *y, const float *yp, const float *b, size_t h, size_t w,
                            size_t o0, size_t o1) {
    const size_t wp = w + 2;
    for (size_t o = o0; o < o1; ++o) {
        const float bo = b ? b[o] : 0.0f;
        for (size_t r = 0; r < h; ++r) {
            const float *src = yp + (o * h + r) * wp;
            float *dst = y + (o * h + r) * w;
            if (b)
                for (size_t c = 0; c < w; ++c) dst[c] = src[c] + bo;
            else
                memcpy(dst, src, w * sizeof *dst);
        }
    }
}

/* dY_pad rows [o0, o1) from dy (junk columns zero). */
static void shift_dy_in_range(float *yp, const float *dy, size_t h, size_t w, size_t o0,
                              size_t o1) {
    const size_t wp = w + 2;
    for (size_t o = o0; o < o1; ++o)
        for (size_t r = 0; r < h; ++r) {
            float *dst = yp + (o * h + r) * wp;
            memcpy(dst, dy + (o * h + r) * w, w * sizeof *dst);
            dst[w] = 0.0f;
            dst[w + 1] = 0.0f;
        }
}

/* dx planes [j0, j1) (+)= interior of dX_pad. */
SIMD_CLONES
static void shift_dx_out_range(float *dx, int accumulate, const float *dxp, size_t h, size_t w,
                               size_t j0, size_t j1) {
    const size_t wp = w + 2, pl = (h + 2) * wp;
    for (size_t j = j0; j < j1; ++j)
        for (size_t r = 0; r < h; ++r) {
            const float *src = dxp + j * pl + (r + 1) * wp + 1;
            float *dst = dx + (j * h + r) * w;
            if (accumulate)
                for (size_t c = 0; c < w; ++c) dst[c] += src[c];
            else
                memcpy(dst, src, w * sizeof *dst);
        }
}

/* W_r[uv][o][j] = w[o][j][uv]. */
static void shift_weights(float *wr, const float *w, size_t co, size_t ci) {
    for (size_t o = 0; o < co; ++o)
        for (size_t j = 0; j < ci; ++j)
            for (size_t uv = 0; uv < 9; ++uv) wr[(uv * co + o) * ci + j] = w[(o * ci + j) * 9 + uv];
}

static void shift_forward(float *y, const float *x, const float *w, const float *b,
                          const stochflow__conv_shape *s, float *scratch, int nthreads) {
    shift_buf sb;
    shift_layout(s, scratch, &sb);
    const size_t h = s->h, wd = s->w, ci = s->ci, co = s->co, HW = h * wd;
    shift_weights(sb.wr, w, co, ci);
    memset(sb.xp + sb.nxp - SHIFT_SLACK, 0, SHIFT_SLACK * sizeof(float));
    for (size_t i = 0; i < s->n; ++i) {
        const float *xi = x + i * ci * HW;
#define BODY(lo, hi) pad_in_range(sb.xp, xi, h, wd, lo, hi)
        PARALLEL_RANGES(ci, ci * sb.pl, nthreads, 1, BODY);
#undef BODY
        for (size_t uv = 0; uv < 9; ++uv)
            stochflow__sgemm(0, 0, co, sb.np, ci, 1.0f, sb.wr + uv * co * ci, ci,
                             sb.xp + (uv / 3) * sb.wp + uv % 3, sb.pl, uv ? 1.0f : 0.0f, sb.yp,
                             sb.np, nthreads);
        float *yi = y + i * co * HW;
#define BODY(lo, hi) shift_out_range(yi, sb.yp, b, h, wd, lo, hi)
        PARALLEL_RANGES(co, co * HW, nthreads, 1, BODY);
#undef BODY
    }
}

static void shift_backward(float *dx, int dx_accumulate, float *dw, const float *dy,
                           const float *x, const float *w, const stochflow__conv_shape *s,
                           float *scratch, int nthreads) {
    shift_buf sb;
    shift_layout(s, scratch, &sb);
    const size_t h = s->h, wd = s->w, ci = s->ci, co = s->co, HW = h * wd;
    if (dx) shift_weights(sb.wr, w, co, ci);
    if (dw) memset(sb.dwr, 0, sb.nw * sizeof(float));
    memset(sb.xp + sb.nxp - SHIFT_SLACK, 0, SHIFT_SLACK * sizeof(float));
    for (size_t i = 0; i < s->n; ++i) {
        const float *dyi = dy + i * co * HW;
#define BODY(lo, hi) shift_dy_in_range(sb.yp, dyi, h, wd, lo, hi)
        PARALLEL_RANGES(co, co * HW, nthreads, 1, BODY);
#undef BODY
        if (dw) {
            const float *xi = x + i * ci * HW;
#define BODY(lo, hi) pad_in_range(sb.xp, xi, h, wd, lo, hi)
            PARALLEL_RANGES(ci, ci * sb.pl, nthreads, 1, BODY);
#undef BODY
            for (size_t uv = 0; uv < 9; ++uv)
                stochflow__sgemm(0, 1, co, ci, sb.np, 1.0f, sb.yp, sb.np,
                                 sb.xp + (uv / 3) * sb.wp + uv % 3, sb.pl, 1.0f,
                                 sb.dwr + uv * co * ci, ci, nthreads);
        }
        if (dx) {
            memset(sb.dxp, 0, sb.nxp * sizeof(float));
            for (size_t uv = 0; uv < 9; ++uv)
                stochflow__sgemm(1, 0, ci, sb.np, co, 1.0f, sb.wr + uv * co * ci, ci, sb.yp,
                                 sb.np, 1.0f, sb.dxp + (uv / 3) * sb.wp + uv % 3, sb.pl,
                                 nthreads);
            float *dxi = dx + i * ci * HW;
#define BODY(lo, hi) shift_dx_out_range(dxi, dx_accumulate, sb.dxp, h, wd, lo, hi)
            PARALLEL_RANGES(ci, ci * HW, nthreads, 1, BODY);
#undef BODY
        }
    }
    if (dw)
        for (size_t o = 0; o < co; ++o)
            for (size_t j = 0; j < ci; ++j)
                for (size_t uv = 0; uv < 9; ++uv)
                    dw[(o * ci + j) * 9 + uv] += sb.dwr[(uv * co + o) * ci + j];
}

/* ---- small outputs: several images per GEMM ------------------------------------------
 * With P = Ho Wo < 256 the im2col columns of G images go side by side into one
 * [K x G P] matrix, so the GEMM has at least 256 columns (49 alone run at ~60% of BLIS's
 * speed, and split badly across threads). The product [co x G P] is staged in scratch
 * and copied out (forward), or dY is gathered into that layout (backward).
 * Scratch: K G P + co G P floats. G depends on the shape only and never decreases with
 * n, so stochflow__conv_scratch is non-decreasing in n (a workspace sized for n images
 * serves every smaller batch; tested). */
#ifndef CONV_BATCH_COLS
#define CONV_BATCH_COLS 256
#endif
#define CONV_BATCH_FLOATS ((size_t)1 << 18)

static size_t conv_batch(const stochflow__conv_shape *s, size_t P) {
    const size_t K = s->ci * s->k * s->k;
    if (P >= CONV_BATCH_COLS || s->n < 2 || K == 0 || P == 0) return 1;
    size_t g = (CONV_BATCH_COLS + P - 1) / P, lim = CONV_BATCH_FLOATS / (K * P);
    if (g > lim) g = lim;
    if (g > s->n) g = s->n;
    return g < 1 ? 1 : g;
}

size_t stochflow__conv_scratch(const stochflow__conv_shape *s) {
    if (s->k == 1 && s->stride == 1) return 0;
    if (use_shift(s)) return shift_layout(s, NULL, NULL);
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s);
    const size_t G = conv_batch(s, ho * wo);
    if (G > 1) {
        size_t a = mul4(s->ci * s->k * s->k, G, ho, wo), b = mul4(s->co, G, ho, wo);
        return a == SIZE_MAX || b == SIZE_MAX || a > SIZE_MAX - b ? SIZE_MAX : a + b;
    }
    return mul4(s->ci, s->k * s->k, conv_block_rows(s, ho, wo), wo);
}

/* Valid output columns [*lo, *hi) of kernel offset v: 0 <= stride*ox + v - pad < w. */
static void valid_range(size_t *lo, size_t *hi, size_t v, size_t pad, size_t stride, size_t w,
                        size_t wo) {
    /* ox >= ceil((pad - v) / stride) */
    size_t a = pad > v ? (pad - v + stride - 1) / stride : 0;
    /* stride*ox + v - pad <= w - 1  <=>  ox <= (w - 1 + pad - v) / stride */
    size_t b = w - 1 + pad >= v ? (w - 1 + pad - v) / stride + 1 : 0;
    if (b > wo) b = wo;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* Stride 1 (then Ho = H, Wo = W): row (j, u, v) of the columns is plane j shifted by the
 * constant flat offset d = (u - p) W + (v - p), so within a block of output rows
 * [r0, r1) it is one contiguous copy of the flat positions [c0, c1), after which the
 * columns that wrapped around a row edge (ox outside [ox0, ox1)) are zeroed. */
typedef struct {
    size_t y0, y1, ox0, ox1, c0, c1; /* valid rows of the block, valid columns, copy range */
    ptrdiff_t d;
} s1_map;

static size_t clampz(ptrdiff_t v, size_t lo, size_t hi) {
    return v < (ptrdiff_t)lo ? lo : v > (ptrdiff_t)hi ? hi : (size_t)v;
}

static s1_map s1_map_of(size_t u, size_t v, size_t pad, size_t h, size_t w, size_t r0,
                        size_t r1) {
    s1_map m;
    const ptrdiff_t du = (ptrdiff_t)u - (ptrdiff_t)pad, dv = (ptrdiff_t)v - (ptrdiff_t)pad;
    const ptrdiff_t H = (ptrdiff_t)h, W = (ptrdiff_t)w;
    /* valid output rows oy: 0 <= oy + du < H; columns: 0 <= ox + dv < W */
    m.y0 = clampz(-du, r0, r1);
    m.y1 = clampz(H - du, m.y0, r1);
    m.ox0 = clampz(-dv, 0, w);
    m.ox1 = clampz(W - dv, m.ox0, w);
    m.d = du * W + dv;
    /* flat positions e of the block whose source e + d lies in the plane */
    const size_t B0 = r0 * w, B1 = r1 * w;
    ptrdiff_t e0 = (ptrdiff_t)(m.y0 * w), e1 = (ptrdiff_t)(m.y1 * w);
    if (e0 < -m.d) e0 = -m.d;
    if (e1 > H * W - m.d) e1 = H * W - m.d;
    m.c0 = clampz(e0, B0, B1);
    m.c1 = clampz(e1, m.c0, B1);
    return m;
}

SIMD_CLONES
static void im2col_s1(float *col, size_t ld, const float *x, const stochflow__conv_shape *s,
                      size_t r0, size_t r1, size_t j0, size_t j1) {
    const size_t k = s->k, pad = pad_of(s), h = s->h, w = s->w, HW = h * w;
    const size_t B0 = r0 * w, nb = (r1 - r0) * w;
    for (size_t u = 0; u < k; ++u)
        for (size_t v = 0; v < k; ++v) {
            const s1_map m = s1_map_of(u, v, pad, h, w, r0, r1);
            const size_t z0 = m.c0 - B0, z1 = m.c1 - B0; /* copy range within the block */
            for (size_t j = j0; j < j1; ++j) {
                float *row = col + ((j * k + u) * k + v) * ld;
                /* source index j HW + e + d >= 0 for e >= c0 */
                const float *src = x + j * HW + (size_t)((ptrdiff_t)m.c0 + m.d);
                for (size_t e = 0; e < z0; ++e) row[e] = 0.0f;
                for (size_t t = 0; t < z1 - z0; ++t) row[z0 + t] = src[t];
                for (size_t e = z1; e < nb; ++e) row[e] = 0.0f;
                if (m.ox0 > 0 || m.ox1 < w)
                    for (size_t oy = m.y0; oy < m.y1; ++oy) {
                        float *rr = row + (oy - r0) * w;
                        for (size_t ox = 0; ox < m.ox0; ++ox) rr[ox] = 0.0f;
                        for (size_t ox = m.ox1; ox < w; ++ox) rr[ox] = 0.0f;
                    }
            }
        }
}

/* Adjoint of im2col_s1 (dx += scatter); zeroes the wrapped columns of dcol in place. */
SIMD_CLONES
static void col2im_s1(float *dx, float *dcol, size_t ld, const stochflow__conv_shape *s,
                      size_t r0, size_t r1, size_t j0, size_t j1) {
    const size_t k = s->k, pad = pad_of(s), h = s->h, w = s->w, HW = h * w;
    const size_t B0 = r0 * w;
    for (size_t j = j0; j < j1; ++j)
        for (size_t u = 0; u < k; ++u)
            for (size_t v = 0; v < k; ++v) {
                const s1_map m = s1_map_of(u, v, pad, h, w, r0, r1);
                float *row = dcol + ((j * k + u) * k + v) * ld;
                if (m.ox0 > 0 || m.ox1 < w)
                    for (size_t oy = m.y0; oy < m.y1; ++oy) {
                        float *rr = row + (oy - r0) * w;
                        for (size_t ox = 0; ox < m.ox0; ++ox) rr[ox] = 0.0f;
                        for (size_t ox = m.ox1; ox < w; ++ox) rr[ox] = 0.0f;
                    }
                float *dst = dx + j * HW + (size_t)((ptrdiff_t)m.c0 + m.d);
                const float *src = row + (m.c0 - B0);
                for (size_t t = 0; t < m.c1 - m.c0; ++t) dst[t] += src[t];
            }
}

/* im2col of output rows [r0, r1) of one image x [ci x h x w], channels [j0, j1):
 * col [K x ld], row (j k + u) k + v, column (oy - r0) Wo + ox (ld >= (r1 - r0) Wo). */
SIMD_CLONES
static void im2col_rows(float *col, size_t ld, const float *x, const stochflow__conv_shape *s,
                        size_t wo, size_t r0, size_t r1, size_t j0, size_t j1) {
    if (s->stride == 1) {
        im2col_s1(col, ld, x, s, r0, r1, j0, j1);
        return;
    }
    const size_t k = s->k, st = s->stride, pad = pad_of(s), h = s->h, w = s->w;
    for (size_t j = j0; j < j1; ++j)
        for (size_t u = 0; u < k; ++u)
            for (size_t v = 0; v < k; ++v) {
                float *row = col + ((j * k + u) * k + v) * ld;
                size_t lo, hi;
                valid_range(&lo, &hi, v, pad, st, w, wo);
                for (size_t oy = r0; oy < r1; ++oy) {
                    float *dst = row + (oy - r0) * wo;
                    size_t iy = st * oy + u; /* input row + pad */
                    if (iy < pad || iy - pad >= h) {
                        memset(dst, 0, wo * sizeof *dst);
                        continue;
                    }
                    const float *src = x + (j * h + (iy - pad)) * w;
                    for (size_t ox = 0; ox < lo; ++ox) dst[ox] = 0.0f;
                    for (size_t ox = lo; ox < hi; ++ox) dst[ox] = src[st * ox + v - pad];
                    for (size_t ox = hi; ox < wo; ++ox) dst[ox] = 0.0f;
                }
            }
}

/* col2im (adjoint of im2col_rows) for output rows [r0, r1), channels [j0, j1):
 * dx += scatter of dcol (dcol is scratch: the stride-1 path zeroes wrapped columns). */
SIMD_CLONES
static void col2im_rows(float *dx, float *dcol, size_t ld, const stochflow__conv_shape *s,
                        size_t wo, size_t r0, size_t r1, size_t j0, size_t j1) {
    if (s->stride == 1) {
        col2im_s1(dx, dcol, ld, s, r0, r1, j0, j1);
        return;
    }
    const size_t k = s->k, st = s->stride, pad = pad_of(s), h = s->h, w = s->w;
    for (size_t j = j0; j < j1; ++j) {
        float *dxj = dx + j * h * w;
        for (size_t u = 0; u < k; ++u)
            for (size_t v = 0; v < k; ++v) {
                const float *row = dcol + ((j * k + u) * k + v) * ld;
                size_t lo, hi;
                valid_range(&lo, &hi, v, pad, st, w, wo);
                for (size_t oy = r0; oy < r1; ++oy) {
                    size_t iy = st * oy + u;
                    if (iy < pad || iy - pad >= h) continue;
                    float *dst = dxj + (iy - pad) * w;
                    const float *src = row + (oy - r0) * wo;
                    for (size_t ox = lo; ox < hi; ++ox) dst[st * ox + v - pad] += src[ox];
                }
            }
    }
}

/* y rows [o0, o1) of one image = b[o] (P positions each). */
static void fill_bias_range(float *y, const float *b, size_t P, size_t o0, size_t o1) {
    for (size_t o = o0; o < o1; ++o)
        for (size_t p = 0; p < P; ++p) y[o * P + p] = b[o];
}

/* im2col of images [0, gn) of a batch (x: the batch's first image), (image, channel)
 * pairs [q0, q1): image g's columns at col + g P, leading dimension gn P. */
static void im2col_batch(float *col, const float *x, const stochflow__conv_shape *s, size_t wo,
                         size_t ho, size_t gn, size_t q0, size_t q1) {
    const size_t ci = s->ci, P = ho * wo, HW = s->h * s->w;
    for (size_t g = q0 / ci; g < gn && g * ci < q1; ++g) {
        size_t j0 = g * ci > q0 ? 0 : q0 - g * ci, j1 = q1 - g * ci < ci ? q1 - g * ci : ci;
        im2col_rows(col + g * P, gn * P, x + g * ci * HW, s, wo, 0, ho, j0, j1);
    }
}

/* col2im counterpart of im2col_batch: dx of the batch's images (+)= scatter. */
static void col2im_batch(float *dx, float *col, const stochflow__conv_shape *s, size_t wo,
                         size_t ho, size_t gn, size_t q0, size_t q1) {
    const size_t ci = s->ci, P = ho * wo, HW = s->h * s->w;
    for (size_t g = q0 / ci; g < gn && g * ci < q1; ++g) {
        size_t j0 = g * ci > q0 ? 0 : q0 - g * ci, j1 = q1 - g * ci < ci ? q1 - g * ci : ci;
        col2im_rows(dx + g * ci * HW, col + g * P, gn * P, s, wo, 0, ho, j0, j1);
    }
}

/* Rows [o0, o1): y_g[o, :] = ys[o, g P : (g+1) P] (+ b[o]) for the batch's gn images. */
static void batch_out_range(float *y, const float *ys, const float *b, size_t co, size_t P,
                            size_t gn, size_t o0, size_t o1) {
    for (size_t o = o0; o < o1; ++o)
        for (size_t g = 0; g < gn; ++g) {
            const float *src = ys + o * gn * P + g * P;
            float *dst = y + (g * co + o) * P;
            const float bo = b ? b[o] : 0.0f;
            if (b)
                for (size_t p = 0; p < P; ++p) dst[p] = src[p] + bo;
            else
                memcpy(dst, src, P * sizeof *dst);
        }
}

/* Rows [o0, o1): ys[o, g P : (g+1) P] = dy_g[o, :]. */
static void batch_in_range(float *ys, const float *dy, size_t co, size_t P, size_t gn,
                           size_t o0, size_t o1) {
    for (size_t o = o0; o < o1; ++o)
        for (size_t g = 0; g < gn; ++g)
            memcpy(ys + o * gn * P + g * P, dy + (g * co + o) * P, P * sizeof *ys);
}

static void batched_forward(float *y, const float *x, const float *w, const float *b,
                            const stochflow__conv_shape *s, size_t G, float *scratch,
                            int nthreads) {
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s), P = ho * wo;
    const size_t K = s->ci * s->k * s->k, co = s->co, HW = s->h * s->w;
    float *col = scratch, *ys = scratch + K * G * P;
    for (size_t i0 = 0; i0 < s->n; i0 += G) {
        const size_t gn = s->n - i0 < G ? s->n - i0 : G, ld = gn * P;
        const float *xb = x + i0 * s->ci * HW;
#define BODY(lo, hi) im2col_batch(col, xb, s, wo, ho, gn, lo, hi)
        PARALLEL_RANGES(gn * s->ci, K * ld, nthreads, 1, BODY);
#undef BODY
        stochflow__sgemm(0, 0, co, ld, K, 1.0f, w, K, col, ld, 0.0f, ys, ld, nthreads);
        float *yb = y + i0 * co * P;
#define BODY(lo, hi) batch_out_range(yb, ys, b, co, P, gn, lo, hi)
        PARALLEL_RANGES(co, co * ld, nthreads, 1, BODY);
#undef BODY
    }
}

static void zero_range(float *x, size_t lo, size_t hi) {
    memset(x + lo, 0, (hi - lo) * sizeof *x);
}

static void batched_backward(float *dx, int dx_accumulate, float *dw, const float *dy,
                             const float *x, const float *w, const stochflow__conv_shape *s,
                             size_t G, float *scratch, int nthreads) {
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s), P = ho * wo;
    const size_t K = s->ci * s->k * s->k, co = s->co, HW = s->h * s->w;
    float *col = scratch, *ys = scratch + K * G * P;
    if (dx && !dx_accumulate) {
#define BODY(lo, hi) zero_range(dx, lo, hi)
        PARALLEL_RANGES(s->n * s->ci * HW, s->n * s->ci * HW, nthreads, 16, BODY);
#undef BODY
    }
    for (size_t i0 = 0; i0 < s->n; i0 += G) {
        const size_t gn = s->n - i0 < G ? s->n - i0 : G, ld = gn * P;
        const float *dyb = dy + i0 * co * P;
#define BODY(lo, hi) batch_in_range(ys, dyb, co, P, gn, lo, hi)
        PARALLEL_RANGES(co, co * ld, nthreads, 1, BODY);
#undef BODY
        if (dw) {
            const float *xb = x + i0 * s->ci * HW;
#define BODY(lo, hi) im2col_batch(col, xb, s, wo, ho, gn, lo, hi)
            PARALLEL_RANGES(gn * s->ci, K * ld, nthreads, 1, BODY);
#undef BODY
            stochflow__sgemm(0, 1, co, K, ld, 1.0f, ys, ld, col, ld, 1.0f, dw, K, nthreads);
        }
        if (dx) {
            stochflow__sgemm(1, 0, K, ld, co, 1.0f, w, K, ys, ld, 0.0f, col, ld, nthreads);
            float *dxb = dx + i0 * s->ci * HW;
#define BODY(lo, hi) col2im_batch(dxb, col, s, wo, ho, gn, lo, hi)
            PARALLEL_RANGES(gn * s->ci, K * ld, nthreads, 1, BODY);
#undef BODY
        }
    }
}

void stochflow__conv_forward(float *y, const float *x, const float *w, const float *b,
                             const stochflow__conv_shape *s, float *scratch, int nthreads) {
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s);
    const size_t P = ho * wo, HW = s->h * s->w, K = s->ci * s->k * s->k, co = s->co;
    const int direct = s->k == 1 && s->stride == 1;
    if (use_shift(s)) {
        shift_forward(y, x, w, b, s, scratch, nthreads);
        return;
    }
    if (!direct) {
        const size_t G = conv_batch(s, P);
        if (G > 1) {
            batched_forward(y, x, w, b, s, G, scratch, nthreads);
            return;
        }
    }
    const size_t rb = conv_block_rows(s, ho, wo);
    for (size_t i = 0; i < s->n; ++i) {
        const float *xi = x + i * s->ci * HW;
        float *yi = y + i * co * P;
        if (b) {
#define BODY(lo, hi) fill_bias_range(yi, b, P, lo, hi)
            PARALLEL_RANGES(co, co * P, nthreads, 1, BODY);
#undef BODY
        }
        const float beta = b ? 1.0f : 0.0f;
        if (direct) {
            stochflow__sgemm(0, 0, co, P, K, 1.0f, w, K, xi, HW, beta, yi, P, nthreads);
            continue;
        }
        for (size_t r0 = 0; r0 < ho; r0 += rb) {
            const size_t r1 = r0 + rb < ho ? r0 + rb : ho, nb = (r1 - r0) * wo;
#define BODY(lo, hi) im2col_rows(scratch, nb, xi, s, wo, r0, r1, lo, hi)
            PARALLEL_RANGES(s->ci, K * nb, nthreads, 1, BODY);
#undef BODY
            stochflow__sgemm(0, 0, co, nb, K, 1.0f, w, K, scratch, nb, beta, yi + r0 * wo, P,
                             nthreads);
        }
    }
}

/* db[o] += sum_i sum_p dy[i, o, p] for channels [o0, o1) (images in order). */
SIMD_CLONES
static void conv_bias_grad_range(float *db, const float *dy, size_t n, size_t co, size_t P,
                                 size_t o0, size_t o1) {
    for (size_t o = o0; o < o1; ++o) {
        float tot = 0.0f;
        for (size_t i = 0; i < n; ++i) {
            const float *r = dy + (i * co + o) * P;
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            size_t p = 0;
            for (; p + 8 <= P; p += 8)
                for (int l = 0; l < 8; ++l) acc[l] += r[p + l];
            float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                        ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            for (; p < P; ++p) sum += r[p];
            tot += sum;
        }
        db[o] += tot;
    }
}

void stochflow__conv_backward(float *dx, int dx_accumulate, float *dw, float *db,
                              const float *dy, const float *x, const float *w,
                              const stochflow__conv_shape *s, float *scratch, int nthreads) {
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s);
    const size_t P = ho * wo, HW = s->h * s->w, K = s->ci * s->k * s->k, co = s->co;
    const int direct = s->k == 1 && s->stride == 1;
    if (db) {
#define BODY(lo, hi) conv_bias_grad_range(db, dy, s->n, co, P, lo, hi)
        PARALLEL_RANGES(co, s->n * co * P, nthreads, 1, BODY);
#undef BODY
    }
    if (use_shift(s)) {
        if (dx || dw) shift_backward(dx, dx_accumulate, dw, dy, x, w, s, scratch, nthreads);
        return;
    }
    if (!direct) {
        const size_t G = conv_batch(s, P);
        if (G > 1) {
            if (dx || dw) batched_backward(dx, dx_accumulate, dw, dy, x, w, s, G, scratch, nthreads);
            return;
        }
    }
    const size_t rb = conv_block_rows(s, ho, wo);
    for (size_t i = 0; i < s->n; ++i) {
        const float *xi = x + i * s->ci * HW;
        const float *dyi = dy + i * co * P;
        float *dxi = dx ? dx + i * s->ci * HW : NULL;
        if (direct) {
            if (dw) stochflow__sgemm(0, 1, co, K, P, 1.0f, dyi, P, xi, HW, 1.0f, dw, K, nthreads);
            if (dxi)
                stochflow__sgemm(1, 0, K, P, co, 1.0f, w, K, dyi, P, dx_accumulate ? 1.0f : 0.0f,
                                 dxi, HW, nthreads);
            continue;
        }
        if (dxi && !dx_accumulate) {
#define BODY(lo, hi) zero_range(dxi, lo, hi)
            PARALLEL_RANGES(s->ci * HW, s->ci * HW, nthreads, 16, BODY);
#undef BODY
        }
        /* per block of output rows: dw += dY_blk col_blk^T, then dcol_blk = W^T dY_blk
         * scattered into dx (both in block order: fixed whatever the thread count) */
        for (size_t r0 = 0; r0 < ho; r0 += rb) {
            const size_t r1 = r0 + rb < ho ? r0 + rb : ho, nb = (r1 - r0) * wo;
            if (dw) {
#define BODY(lo, hi) im2col_rows(scratch, nb, xi, s, wo, r0, r1, lo, hi)
                PARALLEL_RANGES(s->ci, K * nb, nthreads, 1, BODY);
#undef BODY
                stochflow__sgemm(0, 1, co, K, nb, 1.0f, dyi + r0 * wo, P, scratch, nb, 1.0f, dw,
                                 K, nthreads);
            }
            if (dxi) {
                stochflow__sgemm(1, 0, K, nb, co, 1.0f, w, K, dyi + r0 * wo, P, 0.0f, scratch,
                                 nb, nthreads);
#define BODY(lo, hi) col2im_rows(dxi, scratch, nb, s, wo, r0, r1, lo, hi)
                PARALLEL_RANGES(s->ci, K * nb, nthreads, 1, BODY);
#undef BODY
            }
        }
    }
}

/* x[i, j, r, c] with zero padding (r, c signed). */
static double x_at(const float *x, const stochflow__conv_shape *s, size_t i, size_t j,
                   long r, long c) {
    if (r < 0 || c < 0 || r >= (long)s->h || c >= (long)s->w) return 0.0;
    return x[((i * s->ci + j) * s->h + (size_t)r) * s->w + (size_t)c];
}

void stochflow__conv_forward_naive(float *y, const float *x, const float *w, const float *b,
                                   const stochflow__conv_shape *s) {
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s), k = s->k;
    const long pad = (long)pad_of(s), st = (long)s->stride;
    for (size_t i = 0; i < s->n; ++i)
        for (size_t o = 0; o < s->co; ++o)
            for (size_t r = 0; r < ho; ++r)
                for (size_t c = 0; c < wo; ++c) {
                    double acc = b ? b[o] : 0.0;
                    for (size_t j = 0; j < s->ci; ++j)
                        for (size_t u = 0; u < k; ++u)
                            for (size_t v = 0; v < k; ++v)
                                acc += (double)w[((o * s->ci + j) * k + u) * k + v] *
                                       x_at(x, s, i, j, st * (long)r + (long)u - pad,
                                            st * (long)c + (long)v - pad);
                    y[((i * s->co + o) * ho + r) * wo + c] = (float)acc;
                }
}

void stochflow__conv_backward_naive(float *dx, int dx_accumulate, float *dw, float *db,
                                    const float *dy, const float *x, const float *w,
                                    const stochflow__conv_shape *s) {
    const size_t ho = stochflow__conv_out_h(s), wo = stochflow__conv_out_w(s), k = s->k;
    const size_t P = ho * wo;
    const long pad = (long)pad_of(s), st = (long)s->stride;
    for (size_t o = 0; o < s->co; ++o) {
        if (db) {
            double acc = 0.0;
            for (size_t i = 0; i < s->n; ++i)
                for (size_t p = 0; p < P; ++p) acc += dy[(i * s->co + o) * P + p];
            db[o] += (float)acc;
        }
        if (dw)
            for (size_t j = 0; j < s->ci; ++j)
                for (size_t u = 0; u < k; ++u)
                    for (size_t v = 0; v < k; ++v) {
                        double acc = 0.0;
                        for (size_t i = 0; i < s->n; ++i)
                            for (size_t r = 0; r < ho; ++r)
                                for (size_t c = 0; c < wo; ++c)
                                    acc += (double)dy[((i * s->co + o) * ho + r) * wo + c] *
                                           x_at(x, s, i, j, st * (long)r + (long)u - pad,
                                                st * (long)c + (long)v - pad);
                        dw[((o * s->ci + j) * k + u) * k + v] += (float)acc;
                    }
    }
    if (!dx) return;
    /* dx[i, j, yy, xx] = sum over (o, u, v) with yy = st r + u - pad, xx = st c + v - pad */
    for (size_t i = 0; i < s->n; ++i)
        for (size_t j = 0; j < s->ci; ++j)
            for (size_t yy = 0; yy < s->h; ++yy)
                for (size_t xx = 0; xx < s->w; ++xx) {
                    float *d = dx + ((i * s->ci + j) * s->h + yy) * s->w + xx;
                    double acc = dx_accumulate ? *d : 0.0;
                    for (size_t o = 0; o < s->co; ++o)
                        for (size_t u = 0; u < k; ++u)
                            for (size_t v = 0; v < k; ++v) {
                                long rn = (long)yy + pad - (long)u, cn = (long)xx + pad - (long)v;
                                if (rn < 0 || cn < 0 || rn % st || cn % st) continue;
                                long r = rn / st, c = cn / st;
                                if (r >= (long)ho || c >= (long)wo) continue;
                                acc += (double)w[((o * s->ci + j) * k + u) * k + v] *
                                       dy[((i * s->co + o) * ho + (size_t)r) * wo + (size_t)c];
                            }
                    *d = (float)acc;
                }
}

/* ======================================================================================
 * GroupNorm (eps and moments: lib/norm.h)
 * ==================================================================================== */

/* Sums of a and of a (b - m) r in double (8 partial sums each). */
SIMD_CLONES
static void dot_sums8(double *sa, double *sab, const float *a, const float *b, size_t n,
                      float m, float r) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; ++l) {
            acc[l] += (double)a[k + l];
            acc2[l] += (double)a[k + l] * (double)((b[k + l] - m) * r);
        }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    double s2 =
        ((acc2[0] + acc2[1]) + (acc2[2] + acc2[3])) + ((acc2[4] + acc2[5]) + (acc2[6] + acc2[7]));
    for (; k < n; ++k) {
        s += a[k];
        s2 += (double)a[k] * (double)((b[k] - m) * r);
    }
    *sa = s;
    *sab = s2;
}

/* (image, group) pairs [q0, q1). */
SIMD_CLONES
static void gn_fwd_range(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                         const float *beta, size_t c, size_t hw, size_t groups, size_t q0,
                         size_t q1) {
    const size_t cg = c / groups, m = cg * hw;
    for (size_t q = q0; q < q1; ++q) {
        const size_t g = q % groups;
        const float *xq = x + q * m; /* the group's channels are contiguous */
        float *yq = y + q * m;
        double mu, var;
        stochflow__moments8(&mu, &var, xq, m);
        const float mf = (float)mu, rf = (float)(1.0 / sqrt(var + STOCHFLOW__NORM_EPS));
        mean[q] = mf;
        rstd[q] = rf;
        for (size_t cc = 0; cc < cg; ++cc) {
            const size_t ch = g * cg + cc;
            /* y = (x - mu) r gamma + beta with mu = mf + (mu - mf): the float mean's
             * rounding error is folded into the shift (matters when mean >> spread) */
            const float a = rf * gamma[ch];
            const float bb = (float)((double)beta[ch] - (mu - (double)mf) * (double)a);
            const float *xr = xq + cc * hw;
            float *yr = yq + cc * hw;
            for (size_t p = 0; p < hw; ++p) yr[p] = (xr[p] - mf) * a + bb;
        }
    }
}

void stochflow__groupnorm_forward(float *y, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, size_t n, size_t c,
                                  size_t hw, size_t groups, int nthreads) {
#define BODY(lo, hi) gn_fwd_range(y, mean, rstd, x, gamma, beta, c, hw, groups, lo, hi)
    PARALLEL_RANGES(n * groups, n * c * hw, nthreads, 1, BODY);
#undef BODY
}

/* dx of one (image, group) of GroupNorm, channels cc of the group (gm: its gammas):
 * dx (+)= rstd (dy gamma - m1 - (x - mean) rstd m2), with m1 = mean of dy gamma and
 * m2 = mean of dy gamma xhat over the group (doc/gradients.md). */
static inline void gn_dx_group(float *dxq, const float *xq, const float *dyq,
                               const float *gm, size_t cg, size_t hw, float mf, float rf,
                               float m1, float m2, int accumulate) {
    for (size_t cc = 0; cc < cg; ++cc) {
        const float *xr = xq + cc * hw, *dyr = dyq + cc * hw;
        float *dxr = dxq + cc * hw;
        const float g = gm[cc];
        if (accumulate) {
            for (size_t p = 0; p < hw; ++p)
                dxr[p] += rf * (dyr[p] * g - m1 - (xr[p] - mf) * rf * m2);
        } else {
            for (size_t p = 0; p < hw; ++p)
                dxr[p] = rf * (dyr[p] * g - m1 - (xr[p] - mf) * rf * m2);
        }
    }
}

/* dx for (image, group) pairs [q0, q1). */
SIMD_CLONES
static void gn_bwd_dx_range(float *dx, int accumulate, const float *dy, const float *x,
                            const float *mean, const float *rstd, const float *gamma, size_t c,
                            size_t hw, size_t groups, size_t q0, size_t q1) {
    const size_t cg = c / groups, m = cg * hw;
    for (size_t q = q0; q < q1; ++q) {
        const size_t g = q % groups;
        const float mf = mean[q], rf = rstd[q];
        const float *xq = x + q * m, *dyq = dy + q * m;
        float *dxq = dx + q * m;
        /* s1 = sum dxhat, s2 = sum dxhat xhat, dxhat = dy gamma */
        double s1 = 0.0, s2 = 0.0;
        for (size_t cc = 0; cc < cg; ++cc) {
            double a, ab;
            dot_sums8(&a, &ab, dyq + cc * hw, xq + cc * hw, hw, mf, rf);
            s1 += a * gamma[g * cg + cc];
            s2 += ab * gamma[g * cg + cc];
        }
        const float m1 = (float)(s1 / (double)m), m2 = (float)(s2 / (double)m);
        gn_dx_group(dxq, xq, dyq, gamma + g * cg, cg, hw, mf, rf, m1, m2, accumulate);
    }
}

/* dgamma, dbeta for channels [c0, c1) (images in order). */
SIMD_CLONES
static void gn_bwd_param_range(float *dgamma, float *dbeta, const float *dy, const float *x,
                               const float *mean, const float *rstd, size_t n, size_t c,
                               size_t hw, size_t groups, size_t c0, size_t c1) {
    const size_t cg = c / groups;
    for (size_t ch = c0; ch < c1; ++ch) {
        double sg = 0.0, sb = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const size_t q = i * groups + ch / cg;
            double a, ab;
            dot_sums8(&a, &ab, dy + (i * c + ch) * hw, x + (i * c + ch) * hw, hw, mean[q],
                      rstd[q]);
            sb += a;
            sg += ab;
        }
        if (dgamma) dgamma[ch] += (float)sg;
        if (dbeta) dbeta[ch] += (float)sb;
    }
}

/* dx, dgamma, dbeta in one sweep for groups [g0, g1), images in order: the per-channel
 * sums that dx needs are the per-image terms of dgamma/dbeta, so x and dy are read twice
 * instead of three times. Same operations in the same order as gn_bwd_param_range and
 * gn_bwd_dx_range, hence the same bits. */
#define GN_FUSED_MAX_CG 256
SIMD_CLONES
static void gn_bwd_fused_range(float *dx, int accumulate, float *dgamma, float *dbeta,
                               const float *dy, const float *x, const float *mean,
                               const float *rstd, const float *gamma, size_t n, size_t c,
                               size_t hw, size_t groups, size_t g0, size_t g1) {
    const size_t cg = c / groups, m = cg * hw;
    double sg[GN_FUSED_MAX_CG], sb[GN_FUSED_MAX_CG];
    for (size_t g = g0; g < g1; ++g) {
        for (size_t cc = 0; cc < cg; ++cc) sg[cc] = sb[cc] = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const size_t q = i * groups + g;
            const float mf = mean[q], rf = rstd[q];
            const float *xq = x + q * m, *dyq = dy + q * m;
            double s1 = 0.0, s2 = 0.0;
            for (size_t cc = 0; cc < cg; ++cc) {
                double a, ab;
                dot_sums8(&a, &ab, dyq + cc * hw, xq + cc * hw, hw, mf, rf);
                sb[cc] += a;
                sg[cc] += ab;
                s1 += a * gamma[g * cg + cc];
                s2 += ab * gamma[g * cg + cc];
            }
            const float m1 = (float)(s1 / (double)m), m2 = (float)(s2 / (double)m);
            float *dxq = dx + q * m;
            gn_dx_group(dxq, xq, dyq, gamma + g * cg, cg, hw, mf, rf, m1, m2, accumulate);
        }
        for (size_t cc = 0; cc < cg; ++cc) {
            if (dgamma) dgamma[g * cg + cc] += (float)sg[cc];
            if (dbeta) dbeta[g * cg + cc] += (float)sb[cc];
        }
    }
}

void stochflow__groupnorm_backward(float *dx, int dx_accumulate, float *dgamma, float *dbeta,
                                   const float *dy, const float *x, const float *mean,
                                   const float *rstd, const float *gamma, size_t n, size_t c,
                                   size_t hw, size_t groups, int nthreads) {
    /* enough groups to share among threads (the choice depends on the shape only) */
    if (dx && (dgamma || dbeta) && groups >= 4 && c / groups <= GN_FUSED_MAX_CG) {
#define BODY(lo, hi)                                                                          \
    gn_bwd_fused_range(dx, dx_accumulate, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, hw, \
                       groups, lo, hi)
        PARALLEL_RANGES(groups, n * c * hw, nthreads, 1, BODY);
#undef BODY
        return;
    }
    if (dgamma || dbeta) {
#define BODY(lo, hi) gn_bwd_param_range(dgamma, dbeta, dy, x, mean, rstd, n, c, hw, groups, lo, hi)
        PARALLEL_RANGES(c, n * c * hw, nthreads, 1, BODY);
#undef BODY
    }
    if (dx) {
#define BODY(lo, hi) \
    gn_bwd_dx_range(dx, dx_accumulate, dy, x, mean, rstd, gamma, c, hw, groups, lo, hi)
        PARALLEL_RANGES(n * groups, n * c * hw, nthreads, 1, BODY);
#undef BODY
    }
}

void stochflow__groupnorm_forward_naive(float *y, float *mean, float *rstd, const float *x,
                                        const float *gamma, const float *beta, size_t n,
                                        size_t c, size_t hw, size_t groups) {
    const size_t cg = c / groups, m = cg * hw;
    for (size_t q = 0; q < n * groups; ++q) {
        const float *xq = x + q * m;
        double mu = 0.0, var = 0.0;
        for (size_t e = 0; e < m; ++e) mu += xq[e];
        mu /= (double)m;
        for (size_t e = 0; e < m; ++e) var += ((double)xq[e] - mu) * ((double)xq[e] - mu);
        var /= (double)m;
        double r = 1.0 / sqrt(var + STOCHFLOW__NORM_EPS);
        mean[q] = (float)mu;
        rstd[q] = (float)r;
        for (size_t e = 0; e < m; ++e) {
            size_t ch = (q % groups) * cg + e / hw;
            y[q * m + e] = (float)(((double)xq[e] - mu) * r * gamma[ch] + beta[ch]);
        }
    }
}

void stochflow__groupnorm_backward_naive(float *dx, int dx_accumulate, float *dgamma,
                                         float *dbeta, const float *dy, const float *x,
                                         const float *mean, const float *rstd,
                                         const float *gamma, size_t n, size_t c, size_t hw,
                                         size_t groups) {
    const size_t cg = c / groups, m = cg * hw;
    for (size_t ch = 0; ch < c; ++ch) {
        double sg = 0.0, sb = 0.0;
        for (size_t i = 0; i < n; ++i) {
            size_t q = i * groups + ch / cg;
            for (size_t p = 0; p < hw; ++p) {
                size_t e = (i * c + ch) * hw + p;
                sb += dy[e];
                sg += (double)dy[e] * ((double)x[e] - mean[q]) * rstd[q];
            }
        }
        if (dgamma) dgamma[ch] += (float)sg;
        if (dbeta) dbeta[ch] += (float)sb;
    }
    if (!dx) return;
    for (size_t q = 0; q < n * groups; ++q) {
        const double mu = mean[q], r = rstd[q];
        double s1 = 0.0, s2 = 0.0;
        for (size_t e = 0; e < m; ++e) {
            size_t ch = (q % groups) * cg + e / hw;
            double dxh = (double)dy[q * m + e] * gamma[ch];
            s1 += dxh;
            s2 += dxh * ((double)x[q * m + e] - mu) * r;
        }
        s1 /= (double)m;
        s2 /= (double)m;
        for (size_t e = 0; e < m; ++e) {
            size_t ch = (q % groups) * cg + e / hw;
            double dxh = (double)dy[q * m + e] * gamma[ch];
            double xh = ((double)x[q * m + e] - mu) * r;
            double v = r * (dxh - s1 - xh * s2);
            dx[q * m + e] = (float)(dx_accumulate ? dx[q * m + e] + v : v);
        }
    }
}

/* ======================================================================================
 * nearest 2x up-sampling
 * ==================================================================================== */

SIMD_CLONES
static void up_fwd_range(float *y, const float *x, size_t h, size_t w, size_t p0, size_t p1) {
    for (size_t pl = p0; pl < p1; ++pl) {
        const float *xp = x + pl * h * w;
        float *yp = y + pl * 4 * h * w;
        for (size_t r = 0; r < h; ++r) {
            float *y0 = yp + 2 * r * 2 * w, *y1 = y0 + 2 * w;
            const float *xr = xp + r * w;
            for (size_t q = 0; q < w; ++q) {
                y0[2 * q] = xr[q];
                y0[2 * q + 1] = xr[q];
            }
            memcpy(y1, y0, 2 * w * sizeof *y1);
        }
    }
}

void stochflow__upsample2_forward(float *y, const float *x, size_t n, size_t c, size_t h,
                                  size_t w, int nthreads) {
#define BODY(lo, hi) up_fwd_range(y, x, h, w, lo, hi)
    PARALLEL_RANGES(n * c, n * c * h * w * 4, nthreads, 1, BODY);
#undef BODY
}

SIMD_CLONES
static void up_bwd_range(float *dx, int accumulate, const float *dy, size_t h, size_t w,
                         size_t p0, size_t p1) {
    for (size_t pl = p0; pl < p1; ++pl) {
        float *dxp = dx + pl * h * w;
        const float *dyp = dy + pl * 4 * h * w;
        for (size_t r = 0; r < h; ++r) {
            const float *d0 = dyp + 2 * r * 2 * w, *d1 = d0 + 2 * w;
            float *dr = dxp + r * w;
            for (size_t q = 0; q < w; ++q) {
                float sum = (d0[2 * q] + d0[2 * q + 1]) + (d1[2 * q] + d1[2 * q + 1]);
                dr[q] = accumulate ? dr[q] + sum : sum;
            }
        }
    }
}

void stochflow__upsample2_backward(float *dx, int dx_accumulate, const float *dy, size_t n,
                                   size_t c, size_t h, size_t w, int nthreads) {
#define BODY(lo, hi) up_bwd_range(dx, dx_accumulate, dy, h, w, lo, hi)
    PARALLEL_RANGES(n * c, n * c * h * w * 4, nthreads, 1, BODY);
#undef BODY
}

/* ======================================================================================
 * single-head self-attention
 * ==================================================================================== */

/* In-place softmax of rows [r0, r1) of s [rows x L]. */
SIMD_CLONES
static void softmax_rows(float *s, size_t L, size_t r0, size_t r1) {
    for (size_t a = r0; a < r1; ++a) {
        float *row = s + a * L;
        float mx = row[0];
        for (size_t j = 1; j < L; ++j) mx = row[j] > mx ? row[j] : mx;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t j = 0;
        for (; j + 8 <= L; j += 8)
            for (int l = 0; l < 8; ++l) {
                float e = exp_nonpos(row[j + l] - mx);
                row[j + l] = e;
                acc[l] += e;
            }
        float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; j < L; ++j) {
            float e = exp_nonpos(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
        for (j = 0; j < L; ++j) row[j] *= inv;
    }
}

/* dS = P * (dP - rowsum(P * dP)) * scale, rows [r0, r1), in place in dp. */
SIMD_CLONES
static void softmax_bwd_rows(float *dp, const float *pr, size_t L, float scale, size_t r0,
                             size_t r1) {
    for (size_t a = r0; a < r1; ++a) {
        float *d = dp + a * L;
        const float *p = pr + a * L;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t j = 0;
        for (; j + 8 <= L; j += 8)
            for (int l = 0; l < 8; ++l) acc[l] += p[j + l] * d[j + l];
        float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; j < L; ++j) sum += p[j] * d[j];
        for (j = 0; j < L; ++j) d[j] = p[j] * (d[j] - sum) * scale;
    }
}

size_t stochflow__attention_scratch(size_t n, size_t c, size_t L, int nthreads) {
    (void)n;
    (void)c;
    return mul4(L, L, nthreads > 1 ? (size_t)nthreads : 1, 1);
}

static float attn_scale(size_t c) { return (float)(1.0 / sqrt((double)c)); }

/* One image: scores, softmax, output; GEMMs on gt threads, softmax rows on st threads. */
static void attn_fwd_image(float *o, float *pr, const float *q, const float *k, const float *v,
                           size_t c, size_t L, int gt) {
    stochflow__sgemm(1, 0, L, L, c, attn_scale(c), q, L, k, L, 0.0f, pr, L, gt);
#define BODY(lo, hi) softmax_rows(pr, L, lo, hi)
    PARALLEL_RANGES(L, L * L, gt, 1, BODY);
#undef BODY
    stochflow__sgemm(0, 1, c, L, L, 1.0f, v, L, pr, L, 0.0f, o, L, gt);
}

static void attn_fwd_images(float *o, float *probs, const float *q, const float *k,
                            const float *v, size_t c, size_t L, size_t i0, size_t i1, int gt) {
    for (size_t i = i0; i < i1; ++i)
        attn_fwd_image(o + i * c * L, probs + i * L * L, q + i * c * L, k + i * c * L,
                       v + i * c * L, c, L, gt);
}

void stochflow__attention_forward(float *o, float *probs, const float *q, const float *k,
                                  const float *v, size_t n, size_t c, size_t L, int nthreads) {
    if (nthreads > 1 && n < (size_t)nthreads) {
        attn_fwd_images(o, probs, q, k, v, c, L, 0, n, nthreads);
        return;
    }
#define BODY(lo, hi) attn_fwd_images(o, probs, q, k, v, c, L, lo, hi, 1)
    PARALLEL_RANGES(n, n * c * L * L, nthreads, 1, BODY);
#undef BODY
}

static void attn_bwd_image(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *pr, size_t c, size_t L,
                           float *dp, int gt) {
    /* dv = dout P;  dP = dout^T v;  dS = P (dP - rowsum) / sqrt(c);  dq = k dS^T;  dk = q dS */
    stochflow__sgemm(0, 0, c, L, L, 1.0f, dout, L, pr, L, 0.0f, dv, L, gt);
    stochflow__sgemm(1, 0, L, L, c, 1.0f, dout, L, v, L, 0.0f, dp, L, gt);
    const float sc = attn_scale(c);
#define BODY(lo, hi) softmax_bwd_rows(dp, pr, L, sc, lo, hi)
    PARALLEL_RANGES(L, L * L, gt, 1, BODY);
#undef BODY
    stochflow__sgemm(0, 1, c, L, L, 1.0f, k, L, dp, L, 0.0f, dq, L, gt);
    stochflow__sgemm(0, 0, c, L, L, 1.0f, q, L, dp, L, 0.0f, dk, L, gt);
}

static void attn_bwd_images(float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *probs, size_t c,
                            size_t L, float *dp, size_t i0, size_t i1, int gt) {
    for (size_t i = i0; i < i1; ++i) {
        const size_t off = i * c * L;
        attn_bwd_image(dq + off, dk + off, dv + off, dout + off, q + off, k + off, v + off,
                       probs + i * L * L, c, L, dp, gt);
    }
}

void stochflow__attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *probs, size_t n, size_t c, size_t L,
                                   float *scratch, int nthreads) {
    if (nthreads > 1 && n < (size_t)nthreads) {
        attn_bwd_images(dq, dk, dv, dout, q, k, v, probs, c, L, scratch, 0, n, nthreads);
        return;
    }
#define BODY(lo, hi, tid) \
    attn_bwd_images(dq, dk, dv, dout, q, k, v, probs, c, L, scratch + (size_t)(tid) * L * L, lo, hi, 1)
    PARALLEL_RANGES_TID(n, n * c * L * L, nthreads, 1, BODY);
#undef BODY
}

void stochflow__attention_forward_naive(float *o, float *probs, const float *q, const float *k,
                                        const float *v, size_t n, size_t c, size_t L) {
    const double sc = 1.0 / sqrt((double)c);
    for (size_t i = 0; i < n; ++i) {
        const float *qi = q + i * c * L, *ki = k + i * c * L, *vi = v + i * c * L;
        float *pr = probs + i * L * L;
        for (size_t a = 0; a < L; ++a) {
            double mx = -HUGE_VAL;
            for (size_t j = 0; j < L; ++j) {
                double sv = 0.0;
                for (size_t cc = 0; cc < c; ++cc) sv += (double)qi[cc * L + a] * ki[cc * L + j];
                sv *= sc;
                mx = sv > mx ? sv : mx;
            }
            double sum = 0.0;
            for (size_t j = 0; j < L; ++j) {
                double sv = 0.0;
                for (size_t cc = 0; cc < c; ++cc) sv += (double)qi[cc * L + a] * ki[cc * L + j];
                sum += exp(sv * sc - mx);
            }
            for (size_t j = 0; j < L; ++j) {
                double sv = 0.0;
                for (size_t cc = 0; cc < c; ++cc) sv += (double)qi[cc * L + a] * ki[cc * L + j];
                pr[a * L + j] = (float)(exp(sv * sc - mx) / sum);
            }
            for (size_t cc = 0; cc < c; ++cc) {
                double acc = 0.0;
                for (size_t j = 0; j < L; ++j) acc += (double)pr[a * L + j] * vi[cc * L + j];
                o[i * c * L + cc * L + a] = (float)acc;
            }
        }
    }
}

/* dS[a, j] of one image in double, from the saved probabilities (reference only). */
static double attn_ds_naive(const float *dout, const float *v, const float *pr, size_t c,
                            size_t L, size_t a, size_t j) {
    double rowsum = 0.0, dpj = 0.0;
    for (size_t jj = 0; jj < L; ++jj) {
        double dp = 0.0;
        for (size_t cc = 0; cc < c; ++cc) dp += (double)dout[cc * L + a] * v[cc * L + jj];
        rowsum += (double)pr[a * L + jj] * dp;
        if (jj == j) dpj = dp;
    }
    return pr[a * L + j] * (dpj - rowsum);
}

void stochflow__attention_backward_naive(float *dq, float *dk, float *dv, const float *dout,
                                         const float *q, const float *k, const float *v,
                                         const float *probs, size_t n, size_t c, size_t L) {
    const double sc = 1.0 / sqrt((double)c);
    for (size_t i = 0; i < n; ++i) {
        const size_t off = i * c * L;
        const float *pr = probs + i * L * L, *di = dout + off, *vi = v + off;
        for (size_t cc = 0; cc < c; ++cc)
            for (size_t j = 0; j < L; ++j) {
                double acc = 0.0;
                for (size_t a = 0; a < L; ++a) acc += (double)di[cc * L + a] * pr[a * L + j];
                dv[off + cc * L + j] = (float)acc;
            }
        for (size_t cc = 0; cc < c; ++cc)
            for (size_t a = 0; a < L; ++a) {
                double acc = 0.0;
                for (size_t j = 0; j < L; ++j)
                    acc += attn_ds_naive(di, vi, pr, c, L, a, j) * k[off + cc * L + j];
                dq[off + cc * L + a] = (float)(acc * sc);
            }
        for (size_t cc = 0; cc < c; ++cc)
            for (size_t j = 0; j < L; ++j) {
                double acc = 0.0;
                for (size_t a = 0; a < L; ++a)
                    acc += attn_ds_naive(di, vi, pr, c, L, a, j) * q[off + cc * L + a];
                dk[off + cc * L + j] = (float)(acc * sc);
            }
    }
}
