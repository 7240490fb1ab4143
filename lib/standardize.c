/* standardize.c - the model's affine map between the user's units and the network's
 * space (doc/data.md, "Standardization"): z = (x - shift) / scale per feature, fitted on
 * training data or set explicitly, kept in checkpoints (section STDZ, lib/checkpoint.c).
 * Training batches are mapped to z before x_t is formed (lib/model.c); log-densities and
 * samples cross the map in lib/density.c, the log-determinant -sum log scale included. */
#include <math.h>
#include <string.h>

#include "model.h"

void stochflow__std_forward(float *z, const stochflow_model *m, const float *x, size_t n) {
    const size_t d = m->d;
    if (m->std_shift == NULL) {
        if (z != x) memcpy(z, x, n * d * sizeof *z);
        return;
    }
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < d; ++k)
            z[i * d + k] = (float)(((double)x[i * d + k] - m->std_shift[k]) / m->std_scale[k]);
}

void stochflow__std_inverse(float *x, const stochflow_model *m, size_t n) {
    const size_t d = m->d;
    if (m->std_shift == NULL) return;
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < d; ++k)
            x[i * d + k] = (float)(m->std_shift[k] + m->std_scale[k] * (double)x[i * d + k]);
}

int stochflow__std_batch(const float **out, stochflow_model *m, const float *x1, size_t n) {
    *out = x1;
    if (m->std_shift == NULL) return 0;
    size_t nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, m->d) != 0, STOCHFLOW_E_INVALID,
                    "batch of %zu rows is too large", n);
    if (nd > m->std_buf_floats) {
        float *p = stochflow__alloc_array(nd, sizeof(float));
        RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM,
                        "cannot allocate %zu floats for the standardized batch", nd);
        stochflow__free(m->std_buf);
        m->std_buf = p;
        m->std_buf_floats = nd;
    }
    stochflow__std_forward(m->std_buf, m, x1, n);
    *out = m->std_buf;
    return 0;
}

int stochflow__std_install(stochflow_model *m, const double *shift, const double *scale) {
    const size_t d = m->d;
    double *p = stochflow__alloc_array(2 * d, sizeof(double)); /* d <= MAX_DIM: no overflow */
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM, "standardization: out of memory");
    memcpy(p, shift, d * sizeof *p);
    memcpy(p + d, scale, d * sizeof *p);
    double logdet = 0.0;
    for (size_t k = 0; k < d; ++k) logdet += log(scale[k]);
    stochflow__free(m->std_shift); /* the one allocation holds both */
    m->std_shift = p;
    m->std_scale = p + d;
    m->std_logdet = logdet;
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

STOCHFLOW_API int stochflow_model_set_standardization(stochflow_model *m, const double *shift,
                                                      const double *scale) {
    CHECK_MODEL(m, "set_standardization");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF((shift == NULL) != (scale == NULL), STOCHFLOW_E_INVALID,
                    "set_standardization: give both shift and scale, or neither (to remove)");
    FORWARD_IF_ERROR(check_untrained(m, "set_standardization"));
    if (shift == NULL) {
        stochflow__free(m->std_shift);
        m->std_shift = m->std_scale = NULL;
        m->std_logdet = 0.0;
        return 0;
    }
    for (size_t k = 0; k < m->d; ++k) {
        RETURN_ERROR_IF(!isfinite(shift[k]), STOCHFLOW_E_NONFINITE,
                        "set_standardization: shift of column %zu is %g", k + 1, shift[k]);
        RETURN_ERROR_IF(!(isfinite(scale[k]) && scale[k] > 0.0), STOCHFLOW_E_INVALID,
                        "set_standardization: scale of column %zu is %g (must be finite and "
                        "> 0)",
                        k + 1, scale[k]);
    }
    return stochflow__std_install(m, shift, scale);
}

STOCHFLOW_API int stochflow_model_fit_standardization(stochflow_model *m, const float *x,
                                                      size_t n) {
    CHECK_MODEL(m, "fit_standardization");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF(x == NULL, STOCHFLOW_E_INVALID, "fit_standardization: x is NULL");
    RETURN_ERROR_IF(n < 2, STOCHFLOW_E_INVALID,
                    "fit_standardization: %zu rows; at least 2 are needed", n);
    FORWARD_IF_ERROR(check_untrained(m, "fit_standardization"));
    const size_t d = m->d;
    size_t nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, d) != 0, STOCHFLOW_E_INVALID,
                    "fit_standardization: %zu x %zu overflows", n, d);
    FORWARD_IF_ERROR(stochflow__check_finite(x, nd, "fit_standardization: data"));
    double *acc = stochflow__calloc(2 * d, sizeof(double));
    RETURN_ERROR_IF(acc == NULL, STOCHFLOW_E_NOMEM, "fit_standardization: out of memory");
    double *mean = acc, *sd = acc + d;
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < d; ++k) mean[k] += x[i * d + k];
    for (size_t k = 0; k < d; ++k) mean[k] /= (double)n;
    /* two passes: the centred sum of squares, so a large offset costs no precision */
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < d; ++k) {
            double e = (double)x[i * d + k] - mean[k];
            sd[k] += e * e;
        }
    int rc = 0;
    for (size_t k = 0; k < d && rc == 0; ++k) {
        sd[k] = sqrt(sd[k] / (double)n);
        /* zero, or at the float resolution of the column's magnitude (the rounding of
         * the mean of equal values): constant as stored */
        if (!(sd[k] > 0.0) || sd[k] <= 1e-7 * fabs(mean[k]))
            rc = stochflow__error(STOCHFLOW_E_INVALID,
                                  "fit_standardization: column %zu is constant (every value "
                                  "%g): it has no density; drop it",
                                  k + 1, mean[k]);
    }
    if (rc == 0) rc = stochflow__std_install(m, mean, sd);
    stochflow__free(acc);
    return rc;
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
