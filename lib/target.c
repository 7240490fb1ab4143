/* target.c - the batch-posterior training target of the plain velocity.
 *
 * With x_t = a x0 + b x1, x0 ~ N(0, I) independent of x1, the velocity is the posterior
 * mean v*(t, x) = E[a' x0 + b' x1 | x_t = x]. The plain loss regresses on one draw of
 * a' x0 + b' x1; this target averages it over the batch's data rows instead, each
 * weighted by the likelihood of x_t under it (a self-normalized estimate, the "stable
 * target field" of Xu et al., 2023):
 *   w_ij ∝ N(x_t,i; b x1_j, a^2 I),   y_i = sum_j w_ij (a' x0_ij + b' x1_j),
 *   x0_ij = (x_t,i - b x1_j) / a,
 * which, with kappa = b' - a' b / a and W_i = sum_j w_ij, is the row's own target plus
 *   kappa (sum_j w_ij x1_j - W_i x1_i) / W_i
 * (the own row's term cancels exactly, so a weight that collapses onto it, as t -> 1,
 * leaves the plain target bit for bit). Log-weights up to a constant in j:
 *   l_ij = s_i x_t,i . x1_j - s2_i |x1_j|^2,   s_i = b / a^2,  s2_i = b s_i / 2;
 * weights below e^-40 of a row's largest are 0. For a block of rows the products
 * x_t . x1_j and sum_j w_ij x1_j are two matrix products; the rest is per row. Close
 * to the data end (a -> 0), where the products' rounding could decide between two
 * nearby rows, a row keeps its own target (coefs).
 * doc/gradients.md, "The batch-posterior target". */
#include <float.h>
#include <math.h>
#include <string.h>

#include "fastmath.h"
#include "layers.h"
#include "parallel.h"
#include "target.h"

#define CHUNK 128 /* rows per block: its weights are CHUNK x n floats */

typedef struct {
    double s, s2, kappa; /* kappa NAN: the row keeps its own target */
} coef;

int stochflow__batch_target_floats(size_t *out, size_t n, size_t d) {
    const size_t rows = n < CHUNK ? n : CHUNK;
    size_t wn, ad;
    if (stochflow__mul_size(&wn, rows, n) != 0 || stochflow__mul_size(&ad, rows, d) != 0 ||
        n > SIZE_MAX / 16 || wn > SIZE_MAX / 4 || ad > SIZE_MAX / 4)
        return -1;
    const size_t f = stochflow__pad16(6 * n) + stochflow__pad16(n) + stochflow__pad16(2 * rows) +
                     stochflow__pad16(wn) + stochflow__pad16(ad);
    if (f < wn) return -1;
    *out = f;
    return 0;
}

/* Row i's coefficients. The log-weights come from float products, whose rounding is
 * about eps (|x_t,i| M + b M^2) with M the largest |x1_j|; scaled by s = b / a^2 it grows
 * without bound as a -> 0, where it could pick the wrong one of two nearby rows. Where it
 * could reach 0.1 the row keeps its own target (always an unbiased one; by then the
 * weights have collapsed onto it anyway unless another row is almost the same). */
static void coefs(coef *c, const double *t_rows, const stochflow__interp *ip, const float *xt,
                  size_t stride, size_t d, double max_norm, size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) {
        double v[4];
        (void)stochflow__interp_eval(ip, t_rows[i], v); /* checked by the caller */
        const double a = v[0], b = v[1];
        const float *xi = xt + i * stride;
        const double xn = sqrt((double)stochflow__dot(xi, xi, d));
        c[i].s = b / (a * a);
        c[i].s2 = 0.5 * b * c[i].s;
        c[i].kappa = v[3] - v[2] * b / a;
        const double noise =
            fabs(c[i].s) * 4.0 * FLT_EPSILON * (xn * max_norm + fabs(b) * max_norm * max_norm);
        if (!(a != 0.0) || !isfinite(c[i].kappa) || !isfinite(c[i].s2) || !(noise <= 0.1))
            c[i].kappa = NAN;
    }
}

/* Rows [lo, hi) of a block starting at row r0: w [rows x n] holds x_t . x1_j on entry and
 * the weights on return; tot[i - r0] their sum. The exponentials go eight at a time
 * (exp_nonpos8: bitwise exp_nonpos), the sum in the order of j. */
SIMD_CLONES
static void weights(float *w, double *tot, const coef *c, const float *sq, size_t n,
                    size_t r0, size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) {
        float *wi = w + (i - r0) * n;
        const coef *ci = &c[i];
        if (isnan(ci->kappa)) continue;
        /* the largest log-weight, in eight lanes (a maximum is exact in any order) */
        double m8[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                        -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        size_t j = 0;
        for (; j + 8 <= n; j += 8)
            for (size_t k = 0; k < 8; ++k) {
                const double l = ci->s * wi[j + k] - ci->s2 * sq[j + k];
                m8[k] = l > m8[k] ? l : m8[k];
            }
        double mx = -INFINITY;
        for (size_t k = 0; k < 8; ++k) mx = m8[k] > mx ? m8[k] : mx;
        for (; j < n; ++j) {
            const double l = ci->s * wi[j] - ci->s2 * sq[j];
            mx = l > mx ? l : mx;
        }
        /* exponents into the row (below -40: the marker -87, whose weight is 0), then
         * the exponentials in place, eight at a time, then the sum in the order of j */
        for (j = 0; j < n; ++j) {
            const double e = ci->s * wi[j] - ci->s2 * sq[j] - mx;
            wi[j] = e < -40.0 ? -87.0f : (float)e;
        }
        j = 0;
#ifdef STOCHFLOW_HAVE_V8
        for (; j + 8 <= n; j += 8) {
            float y[8];
            exp_nonpos8(y, wi + j);
            for (size_t k = 0; k < 8; ++k) wi[j + k] = wi[j + k] == -87.0f ? 0.0f : y[k];
        }
#endif
        for (; j < n; ++j) wi[j] = wi[j] == -87.0f ? 0.0f : exp_nonpos(wi[j]);
        double sum = 0.0;
        for (j = 0; j < n; ++j) sum += wi[j];
        tot[i - r0] = sum;
    }
}

static void correct(float *target, const float *acc, const double *tot, const coef *c,
                    const float *x1, size_t d, size_t r0, size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i) {
        if (isnan(c[i].kappa)) continue;
        const double sum = tot[i - r0], f = c[i].kappa / sum;
        const float *ai = acc + (i - r0) * d, *x1i = x1 + i * d;
        float *ti = target + i * d;
        for (size_t k = 0; k < d; ++k)
            ti[k] = (float)((double)ti[k] + f * ((double)ai[k] - sum * (double)x1i[k]));
    }
}

void stochflow__batch_target(float *target, float *scratch, const float *xt, size_t stride,
                             const double *t_rows, const float *x1,
                             const stochflow__interp *ip, size_t n, size_t d, int nt,
                             int ant) {
    if (n < 2) return;
    const size_t R = n < CHUNK ? n : CHUNK;
    coef *c = (coef *)scratch; /* 3 doubles = 6 floats per row */
    float *sq = scratch + stochflow__pad16(6 * n);
    double *tot = (double *)(sq + stochflow__pad16(n));
    float *w = (float *)(tot + stochflow__pad16(2 * R) / 2), *acc = w + stochflow__pad16(R * n);
#define BODY(lo, hi)                                                                      \
    do {                                                                                  \
        for (size_t j_ = (lo); j_ < (hi); ++j_)                                           \
            sq[j_] = stochflow__dot(x1 + j_ * d, x1 + j_ * d, d);                         \
    } while (0)
    PARALLEL_RANGES(n, n * d, nt, 1, BODY);
#undef BODY
    float max_sq = 0.0f;
    for (size_t j = 0; j < n; ++j) max_sq = sq[j] > max_sq ? sq[j] : max_sq;
    const double max_norm = sqrt((double)max_sq);
#define BODY(lo, hi) coefs(c, t_rows, ip, xt, stride, d, max_norm, lo, hi)
    PARALLEL_RANGES(n, n * (64 + d), ant, 1, BODY);
#undef BODY
    /* The two products run on one thread: BLIS 0.9 is not bitwise thread-invariant for
     * every output width (doc/threading.md), and they are a small part of the step. */
    for (size_t r0 = 0; r0 < n; r0 += R) {
        const size_t rows = n - r0 < R ? n - r0 : R;
        (void)stochflow__sgemm(0, 1, rows, n, d, 1.0f, xt + r0 * stride, stride, x1, d, 0.0f,
                               w, n, 1); /* sizes from the caller's checked batch */
#define BODY(lo, hi) weights(w, tot, c, sq, n, r0, r0 + (lo), r0 + (hi))
        PARALLEL_RANGES(rows, rows * n * 8, nt, 1, BODY);
#undef BODY
        (void)stochflow__sgemm(0, 0, rows, d, n, 1.0f, w, n, x1, d, 0.0f, acc, d, 1);
#define BODY(lo, hi) correct(target, acc, tot, c, x1, d, r0, r0 + (lo), r0 + (hi))
        PARALLEL_RANGES(rows, rows * d * 4, nt, 1, BODY);
#undef BODY
    }
}
