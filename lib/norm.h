/* norm.h - what the two normalizations share: GroupNorm over image channels (lib/conv.c)
 * and LayerNorm over the columns of a row (lib/layers.c). Private.
 *
 * Both normalize a group of m values by its mean and biased variance,
 *   rstd = 1 / sqrt(var + STOCHFLOW__NORM_EPS),
 * with the moments from stochflow__moments8 (the same operations in the same order, so a
 * LayerNorm row and a one-group GroupNorm of one position give the same bits). */
#ifndef STOCHFLOW_NORM_H
#define STOCHFLOW_NORM_H

#include <stddef.h>

#define STOCHFLOW__NORM_EPS 1e-5

/* Mean and biased variance of n > 0 floats in one pass: sums of d = x - x[0] and d^2 in
 * double (8 partial sums each); the shift by x[0] keeps E[d^2] - E[d]^2 accurate when
 * the mean is large against the spread. Inlined into the callers' SIMD clones. */
static inline void stochflow__moments8(double *mean, double *var, const float *a, size_t n) {
    const double k0 = a[0];
    double s1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; ++l) {
            double d = (double)a[k + l] - k0;
            s1[l] += d;
            s2[l] += d * d;
        }
    double t1 = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]));
    double t2 = ((s2[0] + s2[1]) + (s2[2] + s2[3])) + ((s2[4] + s2[5]) + (s2[6] + s2[7]));
    for (; k < n; ++k) {
        double d = (double)a[k] - k0;
        t1 += d;
        t2 += d * d;
    }
    const double m1 = t1 / (double)n, v = t2 / (double)n - m1 * m1;
    *mean = k0 + m1;
    *var = v > 0.0 ? v : 0.0;
}

#endif
