/* gamma.c - latent-noise schedules gamma(t) and the stochastic interpolant
 * x_t = c0 x0 + c1 x1 + c2 z (two-sided, one-sided, mirror): coefficients, the
 * per-sample regression targets of the drift, score, denoiser and velocity, and their
 * quadratic losses with the gradient in the network output (doc/sde.md). */
#include <math.h>
#include <string.h>

#include "sde.h"

#define PI 3.14159265358979323846

/* ---- gamma schedules -------------------------------------------------------------- */

int stochflow__gamma_eval(const stochflow__gamma *g, double t, double out[3]) {
    double u = t * (1.0 - t);
    switch (g->kind) {
    case STOCHFLOW_GAMMA_ZERO:
        out[0] = out[1] = out[2] = 0.0;
        return 0;
    case STOCHFLOW_GAMMA_BROWNIAN:
    case STOCHFLOW_GAMMA_BROWNIAN_SCALED: {
        double c = g->kind == STOCHFLOW_GAMMA_BROWNIAN ? 1.0 : g->scale;
        double r = sqrt(c * u);
        out[0] = r;
        /* gamma' = c (1 - 2t) / (2 gamma): infinite at the ends (t = 1/2 gives 0) */
        out[1] = r > 0.0 ? c * (1.0 - 2.0 * t) / (2.0 * r) : (t < 0.5 ? INFINITY : -INFINITY);
        out[2] = c * (1.0 - 2.0 * t) / 2.0;
        return 0;
    }
    case STOCHFLOW_GAMMA_QUADRATIC:
        out[0] = u;
        out[1] = 1.0 - 2.0 * t;
        out[2] = u * (1.0 - 2.0 * t);
        return 0;
    case STOCHFLOW_GAMMA_SIN2: {
        double sn = sin(PI * t), cs = cos(PI * t);
        out[0] = sn * sn;
        out[1] = 2.0 * PI * sn * cs;
        out[2] = out[0] * out[1];
        return 0;
    }
    case STOCHFLOW_GAMMA_CUSTOM:
        RETURN_ERROR_IF(g->fn == NULL, STOCHFLOW_E_INVALID,
                        "custom gamma schedule has no callback attached");
        g->fn(g->user, t, out);
        return 0;
    default:
        return stochflow__error(STOCHFLOW_E_INVALID, "unknown gamma schedule %d", g->kind);
    }
}

STOCHFLOW_API int stochflow_gamma_eval(double out[3], int kind, double scale, double t) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "gamma_eval: out is NULL");
    RETURN_ERROR_IF(kind < STOCHFLOW_GAMMA_ZERO || kind > STOCHFLOW_GAMMA_SIN2,
                    STOCHFLOW_E_INVALID, "gamma_eval: kind %d is not a built-in schedule", kind);
    RETURN_ERROR_IF(!(t >= 0.0 && t <= 1.0), STOCHFLOW_E_INVALID,
                    "gamma_eval: t = %g is not in [0, 1]", t);
    RETURN_ERROR_IF(kind == STOCHFLOW_GAMMA_BROWNIAN_SCALED && !(scale > 0.0 && isfinite(scale)),
                    STOCHFLOW_E_INVALID, "gamma_eval: scale %g must be positive and finite",
                    scale);
    stochflow__gamma g = {kind, scale, NULL, NULL};
    return stochflow__gamma_eval(&g, t, out);
}

/* ---- the interpolant handle ------------------------------------------------------- */

int stochflow__sinterp_eval(const stochflow_sinterp *si, double t, double out[7]) {
    double ab[4] = {0, 1, 0, 0}, g[3] = {0, 0, 0};
    if (si->kind != STOCHFLOW_SI_MIRROR) FORWARD_IF_ERROR(stochflow__interp_eval(&si->ab, t, ab));
    if (si->kind != STOCHFLOW_SI_ONE_SIDED) FORWARD_IF_ERROR(stochflow__gamma_eval(&si->g, t, g));
    switch (si->kind) {
    case STOCHFLOW_SI_ONE_SIDED: /* x_t = alpha z + beta x1 */
        out[0] = 0.0, out[1] = ab[1], out[2] = ab[0];
        out[3] = 0.0, out[4] = ab[3], out[5] = ab[2], out[6] = ab[0] * ab[2];
        break;
    case STOCHFLOW_SI_MIRROR: /* x_t = x1 + gamma z */
        out[0] = 0.0, out[1] = 1.0, out[2] = g[0];
        out[3] = 0.0, out[4] = 0.0, out[5] = g[1], out[6] = g[2];
        break;
    default:
        out[0] = ab[0], out[1] = ab[1], out[2] = g[0];
        out[3] = ab[2], out[4] = ab[3], out[5] = g[1], out[6] = g[2];
        break;
    }
    return 0;
}

STOCHFLOW_API int stochflow_sinterp_new(stochflow_sinterp **out, int kind, int schedule,
                                        int gamma, double scale) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "sinterp_new: out is NULL");
    *out = NULL;
    if (kind == 0) kind = STOCHFLOW_SI_TWO_SIDED;
    if (schedule == 0) schedule = STOCHFLOW_INTERP_TRIG;
    if (gamma == 0) gamma = STOCHFLOW_GAMMA_BROWNIAN;
    RETURN_ERROR_IF(kind < STOCHFLOW_SI_TWO_SIDED || kind > STOCHFLOW_SI_MIRROR,
                    STOCHFLOW_E_INVALID, "sinterp_new: unknown kind %d", kind);
    RETURN_ERROR_IF(schedule != STOCHFLOW_INTERP_TRIG && schedule != STOCHFLOW_INTERP_LINEAR,
                    STOCHFLOW_E_INVALID,
                    "sinterp_new: schedule %d is not TRIG or LINEAR (attach a custom one "
                    "with stochflow_sinterp_set_schedule)", schedule);
    RETURN_ERROR_IF(gamma < STOCHFLOW_GAMMA_ZERO || gamma > STOCHFLOW_GAMMA_SIN2,
                    STOCHFLOW_E_INVALID,
                    "sinterp_new: gamma %d is not a built-in schedule (attach a custom one "
                    "with stochflow_sinterp_set_gamma)", gamma);
    RETURN_ERROR_IF(gamma == STOCHFLOW_GAMMA_BROWNIAN_SCALED && !(scale > 0.0 && isfinite(scale)),
                    STOCHFLOW_E_INVALID, "sinterp_new: scale %g must be positive and finite",
                    scale);
    stochflow_sinterp *si = stochflow__calloc(1, sizeof *si);
    RETURN_ERROR_IF(si == NULL, STOCHFLOW_E_NOMEM, "sinterp_new: out of memory");
    si->kind = kind;
    si->ab.kind = schedule;
    si->g.kind = gamma;
    si->g.scale = scale;
    *out = si;
    return 0;
}

STOCHFLOW_API void stochflow_sinterp_free(stochflow_sinterp *si) { stochflow__free(si); }

STOCHFLOW_API int stochflow_sinterp_set_schedule(stochflow_sinterp *si,
                                                 stochflow_schedule_fn fn, void *user) {
    RETURN_ERROR_IF(si == NULL || fn == NULL, STOCHFLOW_E_INVALID,
                    "sinterp_set_schedule: NULL argument");
    stochflow__interp ip;
    memset(&ip, 0, sizeof ip);
    ip.kind = STOCHFLOW_INTERP_CUSTOM;
    ip.fn = fn;
    ip.user = user;
    FORWARD_IF_ERROR(stochflow__interp_check(&ip));
    si->ab = ip;
    return 0;
}

STOCHFLOW_API int stochflow_sinterp_set_gamma(stochflow_sinterp *si, stochflow_gamma_fn fn,
                                              void *user) {
    RETURN_ERROR_IF(si == NULL || fn == NULL, STOCHFLOW_E_INVALID,
                    "sinterp_set_gamma: NULL argument");
    stochflow__gamma g = {STOCHFLOW_GAMMA_CUSTOM, 0.0, fn, user};
    double e0[3], e1[3];
    FORWARD_IF_ERROR(stochflow__gamma_eval(&g, 0.0, e0));
    FORWARD_IF_ERROR(stochflow__gamma_eval(&g, 1.0, e1));
    RETURN_ERROR_IF(!isfinite(e0[0]) || !isfinite(e1[0]) || !isfinite(e0[2]) || !isfinite(e1[2]),
                    STOCHFLOW_E_NONFINITE,
                    "gamma schedule: gamma or gamma gamma' not finite at t = 0 or t = 1");
    RETURN_ERROR_IF(fabs(e0[0]) > 1e-6 || fabs(e1[0]) > 1e-6, STOCHFLOW_E_INVALID,
                    "gamma schedule violates gamma(0) = gamma(1) = 0 (got %g and %g)", e0[0],
                    e1[0]);
    si->g = g;
    return 0;
}

STOCHFLOW_API int stochflow_sinterp_eval(double out[7], const stochflow_sinterp *si, double t) {
    RETURN_ERROR_IF(out == NULL || si == NULL, STOCHFLOW_E_INVALID, "sinterp_eval: NULL argument");
    RETURN_ERROR_IF(!(t >= 0.0 && t <= 1.0), STOCHFLOW_E_INVALID,
                    "sinterp_eval: t = %g is not in [0, 1]", t);
    return stochflow__sinterp_eval(si, t, out);
}

/* ---- targets and losses ----------------------------------------------------------- */

static int check_batch(const stochflow_sinterp *si, int field, const double *t, const float *x0,
                       const float *x1, const float *z, size_t n, size_t d, int sign) {
    RETURN_ERROR_IF(si == NULL, STOCHFLOW_E_INVALID, "sinterp: interpolant is NULL");
    RETURN_ERROR_IF(field < STOCHFLOW_FIELD_VELOCITY || field > STOCHFLOW_FIELD_DENOISER,
                    STOCHFLOW_E_INVALID, "sinterp: unknown field %d", field);
    RETURN_ERROR_IF(sign != 1 && sign != -1, STOCHFLOW_E_INVALID,
                    "sinterp: sign %d is not +1 or -1", sign);
    size_t nd;
    RETURN_ERROR_IF(d == 0 || stochflow__mul_size(&nd, n, d) != 0 ||
                        stochflow__mul_size(&nd, nd, sizeof(float)) != 0,
                    STOCHFLOW_E_INVALID, "sinterp: batch %zu x %zu is invalid", n, d);
    if (n == 0) return 0;
    RETURN_ERROR_IF(t == NULL || x1 == NULL || z == NULL, STOCHFLOW_E_INVALID,
                    "sinterp: t, x1 or z is NULL");
    RETURN_ERROR_IF(x0 == NULL && si->kind == STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_E_INVALID,
                    "sinterp: x0 is NULL for a two-sided interpolant");
    for (size_t i = 0; i < n; ++i)
        RETURN_ERROR_IF(!(t[i] >= 0.0 && t[i] <= 1.0), STOCHFLOW_E_INVALID,
                        "sinterp: t[%zu] = %g is not in [0, 1]", i, t[i]);
    if (x0) FORWARD_IF_ERROR(stochflow__check_finite(x0, n * d, "sinterp: x0"));
    FORWARD_IF_ERROR(stochflow__check_finite(x1, n * d, "sinterp: x1"));
    FORWARD_IF_ERROR(stochflow__check_finite(z, n * d, "sinterp: z"));
    return 0;
}

/* Coefficients of row i, with the field's target well defined there. */
static int row_coef(double c[7], const stochflow_sinterp *si, int field, double t, size_t i) {
    FORWARD_IF_ERROR(stochflow__sinterp_eval(si, t, c));
    RETURN_ERROR_IF(field == STOCHFLOW_FIELD_SCORE && !(c[2] != 0.0), STOCHFLOW_E_NONFINITE,
                    "sinterp: score target -z/gamma is undefined where gamma = 0 (row %zu, "
                    "t = %.17g); draw t inside (0, 1) or learn the denoiser", i, t);
    RETURN_ERROR_IF(field == STOCHFLOW_FIELD_DRIFT && c[2] == 0.0 && !isfinite(c[5]),
                    STOCHFLOW_E_NONFINITE,
                    "sinterp: drift target has gamma' = %g at row %zu (t = %.17g); draw t "
                    "inside (0, 1)", c[5], i, t);
    for (int k = 0; k < 7; ++k)
        RETURN_ERROR_IF(!isfinite(c[k]) && !(k == 5 && field != STOCHFLOW_FIELD_DRIFT),
                        STOCHFLOW_E_NONFINITE,
                        "sinterp: schedule coefficient %d is %g at row %zu (t = %.17g)", k,
                        c[k], i, t);
    return 0;
}

/* Target y of one component (double): x0 term only where c0 or c0' is used. */
double stochflow__sinterp_target(const double c[7], int field, double x0, double x1, double z,
                                 int sign) {
    switch (field) {
    case STOCHFLOW_FIELD_VELOCITY: return c[3] * x0 + c[4] * x1;
    case STOCHFLOW_FIELD_DRIFT: return c[3] * x0 + c[4] * x1 + sign * c[5] * z;
    case STOCHFLOW_FIELD_SCORE: return -sign * z / c[2];
    default: return -sign * z;
    }
}

/* Row by row (rows already validated): xt, target (NULL or n x d) and, with o, the
 * gradient g (o - y) into grad (NULL or n x d). */
static int fill_rows(float *xt, float *target, float *grad, const float *o, double g,
                     const stochflow_sinterp *si, int field, const double *t, const float *x0,
                     const float *x1, const float *z, size_t n, size_t d, int sign) {
    for (size_t i = 0; i < n; ++i) {
        double c[7];
        FORWARD_IF_ERROR(row_coef(c, si, field, t[i], i));
        for (size_t j = 0; j < d; ++j) {
            size_t q = i * d + j;
            double a0 = x0 ? (double)x0[q] : 0.0;
            double y = stochflow__sinterp_target(c, field, a0, x1[q], z[q], sign);
            if (xt) xt[q] = (float)(c[0] * a0 + c[1] * (double)x1[q] + sign * c[2] * (double)z[q]);
            if (target) target[q] = (float)y;
            if (grad) grad[q] = (float)(g * ((double)o[q] - y));
        }
    }
    return 0;
}

STOCHFLOW_API int stochflow_sinterp_point(float *xt, float *target, const stochflow_sinterp *si,
                                          int field, const double *t, const float *x0,
                                          const float *x1, const float *z, size_t n, size_t d,
                                          int sign) {
    FORWARD_IF_ERROR(check_batch(si, field, t, x0, x1, z, n, d, sign));
    for (size_t i = 0; i < n; ++i) { /* validate every row before writing any */
        double c[7];
        FORWARD_IF_ERROR(row_coef(c, si, field, t[i], i));
    }
    return fill_rows(xt, target, NULL, NULL, 0.0, si, field, t, x0, x1, z, n, d, sign);
}

STOCHFLOW_API int stochflow_sinterp_loss(double *loss, float *grad, const stochflow_sinterp *si,
                                         int field, const double *t, const float *x0,
                                         const float *x1, const float *z, const float *o,
                                         size_t n, size_t d, int sign, double weight) {
    FORWARD_IF_ERROR(check_batch(si, field, t, x0, x1, z, n, d, sign));
    RETURN_ERROR_IF(!isfinite(weight), STOCHFLOW_E_INVALID, "sinterp_loss: weight %g", weight);
    if (n == 0) {
        if (loss) *loss = 0.0;
        return 0;
    }
    RETURN_ERROR_IF(o == NULL, STOCHFLOW_E_INVALID, "sinterp_loss: o is NULL");
    FORWARD_IF_ERROR(stochflow__check_finite(o, n * d, "sinterp_loss: network output"));
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        double c[7];
        FORWARD_IF_ERROR(row_coef(c, si, field, t[i], i));
        double li = 0.0;
        for (size_t j = 0; j < d; ++j) {
            size_t q = i * d + j;
            double oq = o[q], zq = z[q], a0 = x0 ? (double)x0[q] : 0.0;
            /* the losses as written in doc/sde.md (not through the target) */
            switch (field) {
            case STOCHFLOW_FIELD_SCORE: li += oq * oq + (2.0 * sign / c[2]) * zq * oq; break;
            case STOCHFLOW_FIELD_DENOISER: li += oq * oq + 2.0 * sign * zq * oq; break;
            default:
                li += oq * oq - 2.0 * stochflow__sinterp_target(c, field, a0, x1[q], zq, sign) * oq;
                break;
            }
        }
        sum += li;
    }
    double l = weight * sum / (double)n;
    RETURN_ERROR_IF(!isfinite(l), STOCHFLOW_E_NONFINITE, "sinterp_loss: loss is %g", l);
    if (grad)
        FORWARD_IF_ERROR(fill_rows(NULL, NULL, grad, o, 2.0 * weight / (double)n, si, field, t,
                                   x0, x1, z, n, d, sign));
    if (loss) *loss = l;
    return 0;
}
