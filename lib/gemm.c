/* gemm.c - the one file that includes <blis.h>.
 *
 * BLIS's typed API takes non-const pointers and calls abort() on bad arguments, so
 * stochflow__sgemm checks its arguments itself (sizes representable as BLIS's signed
 * dim_t, leading dimensions covering a row, no NULL operand) and returns
 * STOCHFLOW_E_INVALID instead of calling BLIS when one is wrong; the casts live in this
 * file only. The
 * thread count goes through a per-call runtime object (rntm_t); BLIS's global thread
 * state belongs to the host program and is never touched. */
#include <blis.h>

#include "internal.h"

/* Largest size or stride handed to BLIS (dim_t and inc_t are signed 64-bit). */
#define MAX_DIM ((size_t)INT64_MAX)

int stochflow__sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                     const float *a, size_t lda, const float *b, size_t ldb, float beta,
                     float *c, size_t ldc, int nthreads) {
    if (m == 0 || n == 0) return 0;
    RETURN_ERROR_IF(m > MAX_DIM || n > MAX_DIM || k > MAX_DIM || lda > MAX_DIM ||
                        ldb > MAX_DIM || ldc > MAX_DIM,
                    STOCHFLOW_E_INVALID, "sgemm: size beyond BLIS's range");
    RETURN_ERROR_IF(c == NULL || ldc < n, STOCHFLOW_E_INVALID,
                    "sgemm: C is NULL or its leading dimension %zu < %zu", ldc, n);
    if (k == 0) {
        /* BLIS handles k = 0, but be explicit: C = beta C. */
        for (size_t i = 0; i < m; ++i)
            for (size_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return 0;
    }
    RETURN_ERROR_IF(a == NULL || b == NULL, STOCHFLOW_E_INVALID, "sgemm: A or B is NULL");
    RETURN_ERROR_IF(lda < (ta ? m : k) || ldb < (tb ? k : n), STOCHFLOW_E_INVALID,
                    "sgemm: leading dimension of A (%zu) or B (%zu) shorter than a row", lda,
                    ldb);
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(nthreads > 0 ? nthreads : 1, &rntm);
    float al = alpha, be = beta;
    /* Row-major: element (i, j) of A (not transposed) at a[i*lda + j]: rs = lda, cs = 1.
     * A transposed operand is read with swapped strides. */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)m, (dim_t)n, (dim_t)k, &al, (float *)a, (inc_t)lda, 1, (float *)b,
                 (inc_t)ldb, 1, &be, c, (inc_t)ldc, 1, NULL, &rntm);
    return 0;
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
