/* interpolant.c - the interpolant x_t = a(t) x0 + b(t) x1: the fixed schedules (TRIG,
 * LINEAR), a caller's schedule (CUSTOM), and the learnable Fourier interpolant
 *   a = a_base + sum_m alpha_m sin(m pi t),  b = b_base + sum_m beta_m sin(m pi t)
 * (FOURIER, on a TRIG or LINEAR base) with the gradient of the loss with respect to
 * its coefficients. The coefficients' ascent step is the optimizer's (lib/optimizer.c);
 * derivations: doc/transport.md. */
#include <math.h>
#include <string.h>

#include "model.h"

/* {a, b, a', b'} of the fixed schedule kind (TRIG or LINEAR) at t. */
static void base_eval(int kind, double t, double out[4]) {
    if (kind == STOCHFLOW_INTERP_TRIG) {
        out[0] = cos(STOCHFLOW__HALF_PI * t);
        out[1] = sin(STOCHFLOW__HALF_PI * t);
        out[2] = -STOCHFLOW__HALF_PI * sin(STOCHFLOW__HALF_PI * t);
        out[3] = STOCHFLOW__HALF_PI * cos(STOCHFLOW__HALF_PI * t);
    } else {
        out[0] = 1.0 - t;
        out[1] = t;
        out[2] = -1.0;
        out[3] = 1.0;
    }
}

int stochflow__interp_eval(const stochflow__interp *ip, double t, double out[4]) {
    switch (ip->kind) {
    case STOCHFLOW_INTERP_TRIG:
    case STOCHFLOW_INTERP_LINEAR:
        base_eval(ip->kind, t, out);
        return 0;
    case STOCHFLOW_INTERP_FOURIER: {
        base_eval(ip->base, t, out);
        const size_t M = ip->n_modes;
        const double *al = ip->coef, *be = ip->coef + M;
        for (size_t k = 0; k < M; ++k) {
            double w = STOCHFLOW__PI * (double)(k + 1);
            double s = sin(w * t), c = w * cos(w * t);
            out[0] += al[k] * s;
            out[1] += be[k] * s;
            out[2] += al[k] * c;
            out[3] += be[k] * c;
        }
        return 0;
    }
    case STOCHFLOW_INTERP_CUSTOM:
        RETURN_ERROR_IF(ip->fn == NULL, STOCHFLOW_E_INVALID,
                        "custom interpolant has no schedule callback attached "
                        "(call stochflow_model_set_schedule after loading)");
        ip->fn(ip->user, t, out);
        return 0;
    default:
        return stochflow__error(STOCHFLOW_E_INVALID, "unknown interpolant kind %d", ip->kind);
    }
}

int stochflow__interp_check(const stochflow__interp *ip) {
    double e0[4], e1[4];
    FORWARD_IF_ERROR(stochflow__interp_eval(ip, 0.0, e0));
    FORWARD_IF_ERROR(stochflow__interp_eval(ip, 1.0, e1));
    for (int i = 0; i < 4; ++i)
        RETURN_ERROR_IF(!isfinite(e0[i]) || !isfinite(e1[i]), STOCHFLOW_E_NONFINITE,
                        "interpolant schedule returned a non-finite value at t=0 or t=1");
    RETURN_ERROR_IF(fabs(e0[0] - 1.0) > 1e-6 || fabs(e0[1]) > 1e-6 || fabs(e1[0]) > 1e-6 ||
                        fabs(e1[1] - 1.0) > 1e-6,
                    STOCHFLOW_E_INVALID,
                    "interpolant schedule violates a(0)=1, b(0)=0, a(1)=0, b(1)=1 "
                    "(got a(0)=%g b(0)=%g a(1)=%g b(1)=%g)", e0[0], e0[1], e1[0], e1[1]);
    return 0;
}

void stochflow__interp_coef_grad(double *grad, const stochflow__interp *ip, const float *o,
                                 const float *du, size_t du_stride, const float *x0,
                                 const float *x1, const double *t, size_t n, size_t d) {
    const size_t M = ip->n_modes;
    double *ga = grad, *gb = grad + M;
    for (size_t k = 0; k < 2 * M; ++k) grad[k] = 0.0;
    const double two_over_n = 2.0 / (double)n;
    for (size_t i = 0; i < n; ++i) {
        const float *g = du + i * du_stride, *oi = o + i * d, *a = x0 + i * d, *b = x1 + i * d;
        double gx0 = 0, gx1 = 0, ox0 = 0, ox1 = 0;
        for (size_t k = 0; k < d; ++k) {
            gx0 += (double)g[k] * a[k];
            gx1 += (double)g[k] * b[k];
            ox0 += (double)oi[k] * a[k];
            ox1 += (double)oi[k] * b[k];
        }
        /* dG/dalpha_m = sin(m pi t) (dG/dx_t . x0) - (2/n) m pi cos(m pi t) (o . x0) */
        for (size_t q = 0; q < M; ++q) {
            double w = STOCHFLOW__PI * (double)(q + 1);
            double s = sin(w * t[i]), c = w * cos(w * t[i]);
            ga[q] += s * gx0 - two_over_n * c * ox0;
            gb[q] += s * gx1 - two_over_n * c * ox1;
        }
    }
}

/* ---- public accessors ------------------------------------------------------------- */

STOCHFLOW_API int stochflow_config_set_fourier_interpolant(stochflow_config *cfg, int base,
                                                           size_t n_modes) {
    RETURN_ERROR_IF(cfg == NULL, STOCHFLOW_E_INVALID, "config is NULL");
    if (base == 0) base = STOCHFLOW_INTERP_LINEAR;
    RETURN_ERROR_IF(base != STOCHFLOW_INTERP_TRIG && base != STOCHFLOW_INTERP_LINEAR,
                    STOCHFLOW_E_INVALID,
                    "set_fourier_interpolant: base %d is not TRIG (1) or LINEAR (2)", base);
    RETURN_ERROR_IF(n_modes < 1 || n_modes > STOCHFLOW__MAX_MODES, STOCHFLOW_E_INVALID,
                    "set_fourier_interpolant: %zu modes, expected 1..%d", n_modes,
                    STOCHFLOW__MAX_MODES);
    cfg->interp = (stochflow__interp){
        .kind = STOCHFLOW_INTERP_FOURIER, .base = base, .n_modes = n_modes};
    return 0;
}

STOCHFLOW_API int stochflow_config_fourier_interpolant(const stochflow_config *cfg, int *base,
                                                       size_t *n_modes) {
    RETURN_ERROR_IF(cfg == NULL, STOCHFLOW_E_INVALID, "config is NULL");
    RETURN_ERROR_IF(cfg->interp.kind != STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_INVALID,
                    "config_fourier_interpolant: the interpolant is not FOURIER");
    if (base) *base = cfg->interp.base;
    if (n_modes) *n_modes = cfg->interp.n_modes;
    return 0;
}

STOCHFLOW_API int stochflow_model_interpolant_coefficients(double *alpha, double *beta,
                                                           size_t *n_modes,
                                                           const stochflow_model *m) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    const stochflow__interp *ip = &m->cfg.interp;
    RETURN_ERROR_IF(ip->kind != STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_INVALID,
                    "interpolant_coefficients: the model's interpolant is not FOURIER");
    const size_t M = ip->n_modes;
    if (alpha) memcpy(alpha, ip->coef, M * sizeof *alpha);
    if (beta) memcpy(beta, ip->coef + M, M * sizeof *beta);
    if (n_modes) *n_modes = M;
    return 0;
}

STOCHFLOW_API int stochflow_model_interpolant_eval(double out[4], const stochflow_model *m,
                                                   double t) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "interpolant_eval: out is NULL");
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    RETURN_ERROR_IF(!(t >= 0.0 && t <= 1.0), STOCHFLOW_E_INVALID,
                    "interpolant_eval: time %g outside [0, 1]", t);
    return stochflow__interp_eval(&m->cfg.interp, t, out);
}
