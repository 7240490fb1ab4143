/* standardize.c - the model's affine map between the user's units and the network's
 * space (doc/data.md, "Standardization"): z = (x - shift) / scale per feature, or with
 * whitening z = L^{-1} ((x - shift) / scale), L the Cholesky factor of the training rows'
 * correlation matrix; fitted on training data or set explicitly, kept in checkpoints
 * (section STDZ, lib/checkpoint.c). Training batches are mapped to z before x_t is formed
 * (lib/model.c); log-densities and samples cross the map in lib/density.c, the
 * log-determinant -(sum log scale + sum log L_kk) included. A conditional model's context
 * columns have a map of their own, c' = (c - shift) / scale, applied wherever a context
 * enters the network (lib/model.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

void stochflow__std_forward(float *z, const stochflow_model *m, const float *x, size_t n) {
    const size_t d = m->d;
    if (m->std_shift == NULL) {
        if (z != x) memcpy(z, x, n * d * sizeof *z);
        return;
    }
    const double *L = m->std_chol;
    for (size_t i = 0; i < n; ++i) {
        const float *xr = x + i * d;
        float *zr = z + i * d;
        for (size_t k = 0; k < d; ++k) {
            double u = ((double)xr[k] - m->std_shift[k]) / m->std_scale[k];
            if (L) { /* forward substitution, row k of L z = u; zr may be xr (x_k read first) */
                const double *Lk = L + k * d;
                for (size_t j = 0; j < k; ++j) u -= Lk[j] * (double)zr[j];
                u /= Lk[k];
            }
            zr[k] = (float)u;
        }
    }
}

void stochflow__std_inverse(float *x, const stochflow_model *m, size_t n) {
    const size_t d = m->d;
    if (m->std_shift == NULL) return;
    const double *L = m->std_chol;
    for (size_t i = 0; i < n; ++i) {
        float *r = x + i * d;
        /* from the last column down: u_k = sum_{j <= k} L_kj z_j reads only z_j, j <= k,
         * which are still in place */
        for (size_t k = d; k-- > 0;) {
            double u = r[k];
            if (L) {
                const double *Lk = L + k * d;
                u = 0.0;
                for (size_t j = 0; j <= k; ++j) u += Lk[j] * (double)r[j];
            }
            r[k] = (float)(m->std_shift[k] + m->std_scale[k] * u);
        }
    }
}

/* The buffer *buf of *cap floats grown to hold nf. */
static int grow(float **buf, size_t *cap, size_t nf, const char *what) {
    if (nf <= *cap) return 0;
    float *p = stochflow__alloc_array(nf, sizeof(float));
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM, "cannot allocate %zu floats for the %s", nf,
                    what);
    stochflow__free(*buf);
    *buf = p;
    *cap = nf;
    return 0;
}

int stochflow__std_batch(const float **out, stochflow_model *m, const float *x1, size_t n) {
    *out = x1;
    if (m->std_shift == NULL) return 0;
    size_t nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, m->d) != 0, STOCHFLOW_E_INVALID,
                    "batch of %zu rows is too large", n);
    FORWARD_IF_ERROR(grow(&m->std_buf, &m->std_buf_floats, nd, "standardized batch"));
    stochflow__std_forward(m->std_buf, m, x1, n);
    *out = m->std_buf;
    return 0;
}

int stochflow__std_ctx(const float **out, stochflow_model *m, const float *ctx, size_t n) {
    *out = ctx;
    if (m->ctx_shift == NULL || ctx == NULL || n == 0) return 0;
    const size_t c = m->cfg.n_ctx;
    size_t nc;
    RETURN_ERROR_IF(stochflow__mul_size(&nc, n, c) != 0, STOCHFLOW_E_INVALID,
                    "context batch of %zu rows is too large", n);
    FORWARD_IF_ERROR(grow(&m->ctx_buf, &m->ctx_buf_floats, nc, "standardized context"));
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < c; ++k)
            m->ctx_buf[i * c + k] =
                (float)(((double)ctx[i * c + k] - m->ctx_shift[k]) / m->ctx_scale[k]);
    *out = m->ctx_buf;
    return 0;
}

int stochflow__std_install(stochflow_model *m, const double *shift, const double *scale,
                           const double *chol) {
    const size_t d = m->d;
    double *p = stochflow__alloc_array(2 * d, sizeof(double)); /* d <= MAX_DIM: no overflow */
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM, "standardization: out of memory");
    double *L = NULL;
    if (chol) {
        L = stochflow__calloc(d * d, sizeof(double)); /* d <= STOCHFLOW__MAX_WHITEN_DIM */
        if (L == NULL) {
            stochflow__free(p);
            return stochflow__error(STOCHFLOW_E_NOMEM, "whitening: out of memory");
        }
        for (size_t k = 0; k < d; ++k) memcpy(L + k * d, chol + k * d, (k + 1) * sizeof *L);
    }
    memcpy(p, shift, d * sizeof *p);
    memcpy(p + d, scale, d * sizeof *p);
    double logdet = 0.0;
    for (size_t k = 0; k < d; ++k) logdet += log(scale[k]) + (L ? log(L[k * d + k]) : 0.0);
    stochflow__free(m->std_shift); /* the one allocation holds both */
    stochflow__free(m->std_chol);
    m->std_shift = p;
    m->std_scale = p + d;
    m->std_chol = L;
    m->std_logdet = logdet;
    return 0;
}

int stochflow__std_ctx_install(stochflow_model *m, const double *shift, const double *scale) {
    const size_t c = m->cfg.n_ctx;
    double *p = stochflow__alloc_array(2 * c, sizeof(double)); /* c <= MAX_CTX */
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM, "context standardization: out of memory");
    memcpy(p, shift, c * sizeof *p);
    memcpy(p + c, scale, c * sizeof *p);
    stochflow__free(m->ctx_shift);
    m->ctx_shift = p;
    m->ctx_scale = p + c;
    return 0;
}

#define CHECK_MODEL(m, fn) RETURN_ERROR_IF((m) == NULL, STOCHFLOW_E_INVALID, fn ": model is NULL")

/* Changing the map under trained weights would silently change the density they define. */
static int check_untrained(const stochflow_model *m, const char *fn) {
    RETURN_ERROR_IF(m->step > 0, STOCHFLOW_E_INVALID,
                    "%s: the model has trained %llu steps in its current space; set the "
                    "standardization before training",
                    fn, (unsigned long long)m->step);
    return 0;
}

/* Check a diagonal map: d finite shifts, d finite scales > 0 (what names the columns). */
static int check_diag(const double *shift, const double *scale, size_t d, const char *fn,
                      const char *what) {
    for (size_t k = 0; k < d; ++k) {
        RETURN_ERROR_IF(!isfinite(shift[k]), STOCHFLOW_E_NONFINITE, "%s: shift of %s %zu is %g",
                        fn, what, k + 1, shift[k]);
        RETURN_ERROR_IF(!(isfinite(scale[k]) && scale[k] > 0.0), STOCHFLOW_E_INVALID,
                        "%s: scale of %s %zu is %g (must be finite and > 0)", fn, what, k + 1,
                        scale[k]);
    }
    return 0;
}

static void remove_map(stochflow_model *m) {
    stochflow__free(m->std_shift);
    stochflow__free(m->std_chol);
    m->std_shift = m->std_scale = m->std_chol = NULL;
    m->std_logdet = 0.0;
}

STOCHFLOW_API int stochflow_model_set_standardization(stochflow_model *m, const double *shift,
                                                      const double *scale) {
    CHECK_MODEL(m, "set_standardization");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF((shift == NULL) != (scale == NULL), STOCHFLOW_E_INVALID,
                    "set_standardization: give both shift and scale, or neither (to remove)");
    FORWARD_IF_ERROR(check_untrained(m, "set_standardization"));
    if (shift == NULL) {
        remove_map(m);
        return 0;
    }
    FORWARD_IF_ERROR(check_diag(shift, scale, m->d, "set_standardization", "column"));
    return stochflow__std_install(m, shift, scale, NULL);
}

/* mean[k] and sd[k] (divisor n) of the columns of x (n x d), in double with two passes
 * (the centred sum of squares, so a large offset costs no precision); a constant column
 * is an error naming it. x has been checked finite. */
static int moments(double *mean, double *sd, const float *x, size_t n, size_t d, const char *fn,
                   const char *what) {
    memset(mean, 0, d * sizeof *mean);
    memset(sd, 0, d * sizeof *sd);
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < d; ++k) mean[k] += x[i * d + k];
    for (size_t k = 0; k < d; ++k) mean[k] /= (double)n;
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < d; ++k) {
            double e = (double)x[i * d + k] - mean[k];
            sd[k] += e * e;
        }
    for (size_t k = 0; k < d; ++k) {
        sd[k] = sqrt(sd[k] / (double)n);
        /* zero, or at the float resolution of the column's magnitude (the rounding of
         * the mean of equal values): constant as stored */
        RETURN_ERROR_IF(!(sd[k] > 0.0) || sd[k] <= 1e-7 * fabs(mean[k]), STOCHFLOW_E_INVALID,
                        "%s: %s %zu is constant (every value %g): it has no density; drop it",
                        fn, what, k + 1, mean[k]);
    }
    return 0;
}

/* Checks common to the fits: a model, n >= 2 finite rows of width w, untrained. */
static int check_fit(const stochflow_model *m, const float *x, size_t n, size_t w,
                     const char *fn) {
    RETURN_ERROR_IF(x == NULL, STOCHFLOW_E_INVALID, "%s: x is NULL", fn);
    RETURN_ERROR_IF(n < 2, STOCHFLOW_E_INVALID, "%s: %zu rows; at least 2 are needed", fn, n);
    FORWARD_IF_ERROR(check_untrained(m, fn));
    size_t nw;
    RETURN_ERROR_IF(stochflow__mul_size(&nw, n, w) != 0, STOCHFLOW_E_INVALID,
                    "%s: %zu x %zu overflows", fn, n, w);
    return stochflow__check_finite(x, nw, fn);
}

STOCHFLOW_API int stochflow_model_fit_standardization(stochflow_model *m, const float *x,
                                                      size_t n) {
    CHECK_MODEL(m, "fit_standardization");
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(check_fit(m, x, n, m->d, "fit_standardization"));
    const size_t d = m->d;
    double *acc = stochflow__calloc(2 * d, sizeof(double));
    RETURN_ERROR_IF(acc == NULL, STOCHFLOW_E_NOMEM, "fit_standardization: out of memory");
    int rc = moments(acc, acc + d, x, n, d, "fit_standardization", "column");
    if (rc == 0) rc = stochflow__std_install(m, acc, acc + d, NULL);
    stochflow__free(acc);
    return rc;
}

/* ---- whitening --------------------------------------------------------------------- */

/* Residual standard deviation (relative to the column's own) below which a column counts
 * as a linear combination of the columns before it: 1 - R^2 < 1e-8. Float data carry
 * about 7 digits, so such a residual is mostly rounding, and whitening would scale it up
 * by 1e4 or more. */
#define WHITEN_MIN_PIVOT 1e-4

/* Lower-triangular Cholesky factor L (d x d, row-major) of the correlation matrix R
 * (overwritten by L). A pivot below WHITEN_MIN_PIVOT is an error naming the column and the
 * earlier columns it is (nearly) a combination of: the coefficients b solve
 * R[0:k, 0:k] b = R[0:k, k], i.e. L[0:k, 0:k]^T b = L[k, 0:k] (work: k doubles). */
static int cholesky(double *R, size_t d, double *work, const char *fn) {
    for (size_t k = 0; k < d; ++k) {
        double *Lk = R + k * d;
        for (size_t j = 0; j < k; ++j) {
            const double *Lj = R + j * d;
            double s = Lk[j];
            for (size_t i = 0; i < j; ++i) s -= Lk[i] * Lj[i];
            Lk[j] = s / Lj[j];
        }
        double p = Lk[k];
        for (size_t i = 0; i < k; ++i) p -= Lk[i] * Lk[i];
        double piv = p > 0.0 ? sqrt(p) : 0.0;
        if (piv >= WHITEN_MIN_PIVOT) {
            Lk[k] = piv;
            for (size_t j = k + 1; j < d; ++j) Lk[j] = 0.0;
            continue;
        }
        /* back substitution for the regression coefficients, then name the columns */
        double bmax = 0.0;
        for (size_t j = k; j-- > 0;) {
            double s = Lk[j];
            for (size_t i = j + 1; i < k; ++i) s -= R[i * d + j] * work[i];
            work[j] = s / R[j * d + j];
            if (fabs(work[j]) > bmax) bmax = fabs(work[j]);
        }
        char cols[160];
        size_t len = 0, listed = 0;
        cols[0] = '\0';
        for (size_t j = 0; j < k && len + 24 < sizeof cols; ++j)
            if (fabs(work[j]) > 1e-3 * bmax) {
                int w = snprintf(cols + len, sizeof cols - len, "%s%zu", listed ? ", " : "",
                                 j + 1);
                len += w > 0 ? (size_t)w : 0;
                ++listed;
            }
        return stochflow__error(STOCHFLOW_E_INVALID,
                                "%s: column %zu is (nearly) a linear combination of column%s "
                                "%s (residual standard deviation %.3g of its own): the "
                                "covariance is singular; drop one of these columns or use the "
                                "per-column standardization",
                                fn, k + 1, listed == 1 ? "" : "s", listed ? cols : "?",
                                piv);
    }
    return 0;
}

static int check_chol(const double *chol, size_t d, const char *fn) {
    for (size_t k = 0; k < d; ++k)
        for (size_t j = 0; j < d; ++j) {
            double v = chol[k * d + j];
            RETURN_ERROR_IF(j > k && v != 0.0, STOCHFLOW_E_INVALID,
                            "%s: chol[%zu][%zu] = %g above the diagonal (a lower-triangular "
                            "factor, row-major, is expected)",
                            fn, k, j, v);
            RETURN_ERROR_IF(!isfinite(v), STOCHFLOW_E_NONFINITE, "%s: chol[%zu][%zu] is %g", fn,
                            k, j, v);
            RETURN_ERROR_IF(j == k && !(v > 0.0), STOCHFLOW_E_INVALID,
                            "%s: chol[%zu][%zu] = %g (the diagonal must be > 0)", fn, k, k, v);
        }
    return 0;
}

static int check_whiten_dim(const stochflow_model *m, const char *fn) {
    RETURN_ERROR_IF(m->d > STOCHFLOW__MAX_WHITEN_DIM, STOCHFLOW_E_INVALID,
                    "%s: dimension %zu; whitening is limited to %d columns (use the "
                    "per-column standardization)",
                    fn, m->d, STOCHFLOW__MAX_WHITEN_DIM);
    return 0;
}

STOCHFLOW_API int stochflow_model_set_whitening(stochflow_model *m, const double *shift,
                                                const double *scale, const double *chol) {
    CHECK_MODEL(m, "set_whitening");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF(shift == NULL || scale == NULL || chol == NULL, STOCHFLOW_E_INVALID,
                    "set_whitening: shift, scale and chol are all needed (remove a map with "
                    "stochflow_model_set_standardization(m, NULL, NULL))");
    FORWARD_IF_ERROR(check_untrained(m, "set_whitening"));
    FORWARD_IF_ERROR(check_whiten_dim(m, "set_whitening"));
    FORWARD_IF_ERROR(check_diag(shift, scale, m->d, "set_whitening", "column"));
    FORWARD_IF_ERROR(check_chol(chol, m->d, "set_whitening"));
    return stochflow__std_install(m, shift, scale, chol);
}

STOCHFLOW_API int stochflow_model_fit_whitening(stochflow_model *m, const float *x, size_t n) {
    CHECK_MODEL(m, "fit_whitening");
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(check_whiten_dim(m, "fit_whitening"));
    FORWARD_IF_ERROR(check_fit(m, x, n, m->d, "fit_whitening"));
    const size_t d = m->d;
    double *acc = stochflow__calloc(3 * d + d * d, sizeof(double));
    RETURN_ERROR_IF(acc == NULL, STOCHFLOW_E_NOMEM, "fit_whitening: out of memory");
    double *mean = acc, *sd = acc + d, *work = acc + 2 * d, *R = acc + 3 * d;
    int rc = moments(mean, sd, x, n, d, "fit_whitening", "column");
    if (rc == 0) {
        /* the correlation of the scaled rows u = (x - mean) / sd (lower triangle) */
        for (size_t i = 0; i < n; ++i) {
            const float *xr = x + i * d;
            for (size_t k = 0; k < d; ++k) work[k] = ((double)xr[k] - mean[k]) / sd[k];
            for (size_t k = 0; k < d; ++k)
                for (size_t j = 0; j <= k; ++j) R[k * d + j] += work[k] * work[j];
        }
        for (size_t k = 0; k < d; ++k)
            for (size_t j = 0; j <= k; ++j) R[k * d + j] /= (double)n;
        rc = cholesky(R, d, work, "fit_whitening");
    }
    if (rc == 0) rc = stochflow__std_install(m, mean, sd, R);
    stochflow__free(acc);
    return rc;
}

STOCHFLOW_API int stochflow_model_whitening(double *chol, const stochflow_model *m) {
    CHECK_MODEL(m, "whitening");
    STOCHFLOW__ENTER(m, "model");
    const size_t d = m->d;
    if (chol)
        for (size_t k = 0; k < d; ++k)
            for (size_t j = 0; j < d; ++j)
                chol[k * d + j] = m->std_chol ? m->std_chol[k * d + j] : (j == k ? 1.0 : 0.0);
    return m->std_chol != NULL;
}

STOCHFLOW_API int stochflow_model_standardization(double *shift, double *scale,
                                                  const stochflow_model *m) {
    CHECK_MODEL(m, "standardization");
    STOCHFLOW__ENTER(m, "model");
    for (size_t k = 0; k < m->d; ++k) {
        if (shift) shift[k] = m->std_shift ? m->std_shift[k] : 0.0;
        if (scale) scale[k] = m->std_shift ? m->std_scale[k] : 1.0;
    }
    return m->std_shift != NULL;
}

/* x -> z (inverse = 0) or z -> x (inverse = 1) for n rows; out may be x. */
STOCHFLOW_API int stochflow_model_standardize(float *out, const stochflow_model *m,
                                              const float *x, size_t n, int inverse) {
    CHECK_MODEL(m, "standardize");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF(n > 0 && (out == NULL || x == NULL), STOCHFLOW_E_INVALID,
                    "standardize: NULL buffer");
    RETURN_ERROR_IF(inverse != 0 && inverse != 1, STOCHFLOW_E_INVALID,
                    "standardize: inverse is %d, not 0 or 1", inverse);
    size_t nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, m->d) != 0, STOCHFLOW_E_INVALID,
                    "standardize: %zu x %zu overflows", n, m->d);
    if (n == 0) return 0;
    if (inverse) {
        if (out != x) memmove(out, x, nd * sizeof *out);
        stochflow__std_inverse(out, m, n);
    } else {
        stochflow__std_forward(out, m, x, n);
    }
    return 0;
}

/* ---- the context map ---------------------------------------------------------------- */

static int check_has_ctx(const stochflow_model *m, const char *fn) {
    RETURN_ERROR_IF(m->cfg.n_ctx == 0, STOCHFLOW_E_INVALID,
                    "%s: the model has no context columns (stochflow_config_set_context)", fn);
    return 0;
}

STOCHFLOW_API int stochflow_model_set_context_standardization(stochflow_model *m,
                                                              const double *shift,
                                                              const double *scale) {
    CHECK_MODEL(m, "set_context_standardization");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF((shift == NULL) != (scale == NULL), STOCHFLOW_E_INVALID,
                    "set_context_standardization: give both shift and scale, or neither (to "
                    "remove)");
    FORWARD_IF_ERROR(check_has_ctx(m, "set_context_standardization"));
    FORWARD_IF_ERROR(check_untrained(m, "set_context_standardization"));
    if (shift == NULL) {
        stochflow__free(m->ctx_shift);
        m->ctx_shift = m->ctx_scale = NULL;
        return 0;
    }
    FORWARD_IF_ERROR(
        check_diag(shift, scale, m->cfg.n_ctx, "set_context_standardization", "context column"));
    return stochflow__std_ctx_install(m, shift, scale);
}

STOCHFLOW_API int stochflow_model_fit_context_standardization(stochflow_model *m,
                                                              const float *ctx, size_t n) {
    CHECK_MODEL(m, "fit_context_standardization");
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(check_has_ctx(m, "fit_context_standardization"));
    const size_t c = m->cfg.n_ctx;
    FORWARD_IF_ERROR(check_fit(m, ctx, n, c, "fit_context_standardization"));
    double *acc = stochflow__calloc(2 * c, sizeof(double));
    RETURN_ERROR_IF(acc == NULL, STOCHFLOW_E_NOMEM,
                    "fit_context_standardization: out of memory");
    int rc = moments(acc, acc + c, ctx, n, c, "fit_context_standardization", "context column");
    if (rc == 0) rc = stochflow__std_ctx_install(m, acc, acc + c);
    stochflow__free(acc);
    return rc;
}

STOCHFLOW_API int stochflow_model_context_standardization(double *shift, double *scale,
                                                          const stochflow_model *m) {
    CHECK_MODEL(m, "context_standardization");
    STOCHFLOW__ENTER(m, "model");
    for (size_t k = 0; k < m->cfg.n_ctx; ++k) {
        if (shift) shift[k] = m->ctx_shift ? m->ctx_shift[k] : 0.0;
        if (scale) scale[k] = m->ctx_shift ? m->ctx_scale[k] : 1.0;
    }
    return m->ctx_shift != NULL;
}
