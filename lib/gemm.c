/* gemm.c - the one file that includes <blis.h>.
 *
 * BLIS's typed API takes non-const pointers and calls abort() on bad arguments, so
 * every size is validated here first and the casts live in this file only. The
 * thread count goes through a per-call runtime object (rntm_t); BLIS's global thread
 * state belongs to the host program and is never touched. */
#include <blis.h>

#include "internal.h"

void stochflow__sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                      const float *a, size_t lda, const float *b, size_t ldb, float beta,
                      float *c, size_t ldc, int nthreads) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        /* BLIS handles k = 0, but be explicit: C = beta C. */
        for (size_t i = 0; i < m; ++i)
            for (size_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(nthreads > 0 ? nthreads : 1, &rntm);
    float al = alpha, be = beta;
    /* Row-major: element (i, j) of A (not transposed) at a[i*lda + j]: rs = lda, cs = 1.
     * A transposed operand is read with swapped strides. */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)m, (dim_t)n, (dim_t)k, &al, (float *)a, (inc_t)lda, 1, (float *)b,
                 (inc_t)ldb, 1, &be, c, (inc_t)ldc, 1, NULL, &rntm);
}

void stochflow__sgemm_naive(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                            const float *a, size_t lda, const float *b, size_t ldb,
                            float beta, float *c, size_t ldc) {
    for (size_t i = 0; i < m; ++i) {
        for (size_t j = 0; j < n; ++j) {
            double acc = 0.0;
            for (size_t p = 0; p < k; ++p) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            double prev = beta == 0.0f ? 0.0 : (double)beta * c[i * ldc + j];
            c[i * ldc + j] = (float)(alpha * acc + prev);
        }
    }
}
