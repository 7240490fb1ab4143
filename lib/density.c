/* density.c - the solver handle, its keyed parameters, and the public integration,
 * log-density and sampling functions (doc/log-density.md). The integrators live in
 * ode.c; velocities come from a model (stochflow__model_eval) or a caller callback. */
#include <math.h>
#include <string.h>

#include "model.h"
#include "params.h" /* fields, bounds and defaults of the keyed parameters */
#include "solver.h"

#define LN_2PI 1.8378770664093454835606594728112

/* ---- handle and parameters -------------------------------------------------------- */

STOCHFLOW_API int stochflow_solver_new(stochflow_solver **out) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "solver_new: out is NULL");
    *out = NULL;
    stochflow_solver *s = stochflow__calloc(1, sizeof *s);
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_NOMEM, "solver_new: out of memory");
    stochflow__solver_defaults(s);
    *out = s;
    return 0;
}

STOCHFLOW_API void stochflow_solver_free(stochflow_solver *s) { stochflow__free(s); }

STOCHFLOW_API int stochflow_solver_set_param(stochflow_solver *s, int key, double value) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "solver_set_param: solver is NULL");
    STOCHFLOW__ENTER(s, "solver");
    double *f = stochflow__solver_field(s, key);
    RETURN_ERROR_IF(f == NULL, STOCHFLOW_E_UNSUPPORTED,
                    "solver_set_param: key %d is not a solver (200s/300s) parameter", key);
    double r;
    FORWARD_IF_ERROR(stochflow__param_resolve(&r, key, value));
    *f = r;
    return 0;
}

STOCHFLOW_API int stochflow_solver_get_param(double *out, const stochflow_solver *s, int key) {
    RETURN_ERROR_IF(out == NULL || s == NULL, STOCHFLOW_E_INVALID,
                    "solver_get_param: NULL argument");
    STOCHFLOW__ENTER(s, "solver");
    double *f = stochflow__solver_field((stochflow_solver *)s, key);
    RETURN_ERROR_IF(f == NULL, STOCHFLOW_E_UNSUPPORTED,
                    "solver_get_param: key %d is not a solver (200s/300s) parameter", key);
    *out = *f;
    return 0;
}

STOCHFLOW_API int stochflow_solver_set_seed(stochflow_solver *s, uint64_t seed) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "solver_set_seed: solver is NULL");
    STOCHFLOW__ENTER(s, "solver");
    s->seed = seed;
    return 0;
}

STOCHFLOW_API int stochflow_solver_set_base_logpdf(stochflow_solver *s, stochflow_logpdf_fn fn,
                                                   void *user) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "solver_set_base_logpdf: solver is NULL");
    STOCHFLOW__ENTER(s, "solver");
    s->base_fn = fn;
    s->base_user = fn ? user : NULL;
    return 0;
}

STOCHFLOW_API int stochflow_solver_set_progress(stochflow_solver *s, stochflow_progress_fn fn,
                                                void *user) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "solver_set_progress: solver is NULL");
    STOCHFLOW__ENTER(s, "solver");
    s->progress = fn;
    s->progress_user = fn ? user : NULL;
    return 0;
}

STOCHFLOW_API int stochflow_solver_stat(double *out, const stochflow_solver *s, int key) {
    RETURN_ERROR_IF(out == NULL || s == NULL, STOCHFLOW_E_INVALID, "solver_stat: NULL argument");
    STOCHFLOW__ENTER(s, "solver");
    switch (key) {
    case STOCHFLOW_STAT_NFE: *out = s->nfe; return 0;
    case STOCHFLOW_STAT_ACCEPTED: *out = s->accepted; return 0;
    case STOCHFLOW_STAT_REJECTED: *out = s->rejected; return 0;
    case STOCHFLOW_STAT_T: *out = s->t_reached; return 0;
    default: return stochflow__error(STOCHFLOW_E_UNSUPPORTED, "solver_stat: unknown key %d", key);
    }
}

/* ---- shared validation and helpers ------------------------------------------------ */

static int check_time(double t, const char *what) {
    RETURN_ERROR_IF(!(t >= 0.0 && t <= 1.0), STOCHFLOW_E_INVALID,
                    "%s = %g is not a time in [0, 1]", what, t);
    return 0;
}

static int check_src(const stochflow__vsrc *src) {
    int count = (src->model != NULL) + (src->fn != NULL) + (src->probe_fn != NULL);
    RETURN_ERROR_IF(count != 1, STOCHFLOW_E_INVALID,
                    "no velocity field given (model or callback is NULL)");
    RETURN_ERROR_IF(src->d < 1 || src->d > STOCHFLOW__MAX_DIM, STOCHFLOW_E_INVALID,
                    "dimension %zu out of range 1..%d", src->d, STOCHFLOW__MAX_DIM);
    return 0;
}

/* Hutchinson probes [n x K x d]; row i keyed by (seed, PROBE stream, row i), so a
 * point's probes do not depend on the batch it is in. */
static void draw_probes(float *p, const stochflow_solver *s, size_t n, size_t K, size_t d) {
    size_t per = K * d;
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, s->seed, STOCHFLOW__STREAM_PROBE, 0, i);
        float *row = p + i * per;
        if ((int)s->probe_dist == STOCHFLOW_PROBE_GAUSSIAN) {
            for (size_t j = 0; j < per; ++j) row[j] = (float)stochflow__rng_normal(&r);
        } else {
            for (size_t j = 0; j < per; ++j)
                row[j] = (stochflow__rng_u32(&r) & 1u) ? 1.0f : -1.0f;
        }
    }
}

/* Base log-density at x [n x d] into out (double). */
static int base_logpdf(double *out, stochflow_solver *s, const float *x, size_t n, size_t d) {
    if (s->base_fn == NULL) {
        for (size_t i = 0; i < n; ++i) {
            double q = 0.0;
            for (size_t j = 0; j < d; ++j) q += (double)x[i * d + j] * x[i * d + j];
            out[i] = -0.5 * q - 0.5 * (double)d * LN_2PI;
        }
        return 0;
    }
    float *tmp = stochflow__alloc_array(n, sizeof(float));
    RETURN_ERROR_IF(tmp == NULL, STOCHFLOW_E_NOMEM, "base log-density: out of memory");
    int rc = s->base_fn(s->base_user, n, d, x, tmp);
    if (rc != 0) {
        stochflow__free(tmp);
        return stochflow__error(STOCHFLOW_E_CALLBACK, "base log-density callback returned %d",
                                rc);
    }
    for (size_t i = 0; i < n; ++i) out[i] = tmp[i];
    rc = stochflow__check_finite(tmp, n, "base log-density");
    stochflow__free(tmp);
    return rc;
}

/*
 * Core: integrate x from t0 to t1; mean (double [n], may be NULL) receives the
 * probe-averaged accumulator -int div v dt and se (may be NULL) its standard error.
 * *ran is set once the integrator has started: x, mean and se are then written also
 * on failure (the partial state, at time STOCHFLOW_STAT_T).
 */
static int integrate_core(int *ran, double *mean, float *se, stochflow_solver *s,
                          const stochflow__vsrc *src, float *x, size_t n, double t0,
                          double t1) {
    *ran = 0;
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "solver is NULL");
    FORWARD_IF_ERROR(check_src(src));
    FORWARD_IF_ERROR(check_time(t0, "t0"));
    FORWARD_IF_ERROR(check_time(t1, "t1"));
    s->nfe = s->accepted = s->rejected = 0;
    s->t_reached = t0;
    if (n == 0) {
        s->t_reached = t1;
        return 0;
    }
    RETURN_ERROR_IF(x == NULL, STOCHFLOW_E_INVALID, "x is NULL");
    size_t d = src->d, nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, d) != 0, STOCHFLOW_E_INVALID,
                    "batch %zu x %zu overflows", n, d);
    FORWARD_IF_ERROR(stochflow__check_finite(x, nd, "x"));

    int want_l = mean != NULL || se != NULL;
    int hutch = want_l && (int)s->trace == STOCHFLOW_TRACE_HUTCHINSON;
    RETURN_ERROR_IF(hutch && src->fn != NULL, STOCHFLOW_E_UNSUPPORTED,
                    "Hutchinson trace needs Jacobian-vector products, which a caller velocity "
                    "callback does not provide; use STOCHFLOW_TRACE_EXACT with callbacks");
    RETURN_ERROR_IF(want_l && !hutch && src->probe_fn != NULL, STOCHFLOW_E_UNSUPPORTED,
                    "the probe field has no exact divergence; use STOCHFLOW_TRACE_HUTCHINSON");
    if (!want_l) {
        *ran = 1;
        return stochflow__ode_integrate(s, src, x, n, t0, t1, NULL, 0, NULL);
    }

    size_t K = hutch ? (size_t)s->probes : 1, nk, nkd;
    RETURN_ERROR_IF(stochflow__mul_size(&nk, n, K) != 0 ||
                        (hutch && stochflow__mul_size(&nkd, nk, d) != 0),
                    STOCHFLOW_E_INVALID, "batch %zu x %zu probes overflows", n, K);
    double *acc = stochflow__alloc_array(nk, sizeof(double));
    float *probes = hutch ? stochflow__alloc_array(nkd, sizeof(float)) : NULL;
    if (acc == NULL || (hutch && probes == NULL)) {
        stochflow__free(acc);
        stochflow__free(probes);
        return stochflow__error(STOCHFLOW_E_NOMEM, "integrate: out of memory");
    }
    if (hutch) draw_probes(probes, s, n, K, d);
    int rc = stochflow__ode_integrate(s, src, x, n, t0, t1, acc, K, probes);
    /* the integrator hands back consistent accumulators on every path */
    *ran = 1;
    {
        for (size_t i = 0; i < n; ++i) {
            const double *a = acc + i * K;
            double mu = 0.0;
            for (size_t k = 0; k < K; ++k) mu += a[k];
            mu /= (double)K;
            if (mean) mean[i] = mu;
            if (se) {
                if (!hutch) {
                    se[i] = 0.0f;
                } else if (K == 1) {
                    se[i] = NAN;
                } else {
                    double ss = 0.0;
                    for (size_t k = 0; k < K; ++k) ss += (a[k] - mu) * (a[k] - mu);
                    se[i] = (float)sqrt(ss / (double)(K - 1) / (double)K);
                }
            }
        }
    }
    stochflow__free(acc);
    stochflow__free(probes);
    return rc;
}

int stochflow__solver_integrate_src(float *dlogp, float *se, stochflow_solver *s,
                                    const stochflow__vsrc *src, float *x, size_t n, double t0,
                                    double t1) {
    double *mean = NULL;
    if (dlogp && n > 0) {
        mean = stochflow__alloc_array(n, sizeof(double));
        RETURN_ERROR_IF(mean == NULL, STOCHFLOW_E_NOMEM, "integrate: out of memory");
    }
    int ran;
    int rc = integrate_core(&ran, mean, se, s, src, x, n, t0, t1);
    if (mean && ran)
        for (size_t i = 0; i < n; ++i) dlogp[i] = (float)mean[i];
    stochflow__free(mean);
    return rc;
}

int stochflow__solver_log_prob_src(float *logp, float *se, stochflow_solver *s,
                                   const stochflow__vsrc *src, const float *x, size_t n,
                                   double t) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "log_prob: solver is NULL");
    FORWARD_IF_ERROR(check_src(src));
    FORWARD_IF_ERROR(check_time(t, "t"));
    if (n == 0) {
        s->nfe = s->accepted = s->rejected = 0;
        s->t_reached = 0.0;
        return 0;
    }
    RETURN_ERROR_IF(logp == NULL || x == NULL, STOCHFLOW_E_INVALID, "log_prob: NULL argument");
    size_t d = src->d, nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, d) != 0, STOCHFLOW_E_INVALID,
                    "log_prob: batch %zu x %zu overflows", n, d);
    float *xb = stochflow__alloc_array(nd, sizeof(float));
    double *mean = stochflow__alloc_array(n, sizeof(double));
    double *base = stochflow__alloc_array(n, sizeof(double));
    int rc;
    if (xb == NULL || mean == NULL || base == NULL) {
        rc = stochflow__error(STOCHFLOW_E_NOMEM, "log_prob: out of memory");
        goto done;
    }
    memcpy(xb, x, nd * sizeof(float));
    /* backward from t to 0: mean = l(0) - l(t) = +int_0^t div v dt */
    int ran;
    rc = integrate_core(&ran, mean, se, s, src, xb, n, t, 0.0);
    if (rc < 0) goto done;
    rc = base_logpdf(base, s, xb, n, d);
    if (rc < 0) goto done;
    for (size_t i = 0; i < n; ++i) logp[i] = (float)(base[i] - mean[i]);
done:
    stochflow__free(xb);
    stochflow__free(mean);
    stochflow__free(base);
    return rc;
}

/* Sampling from any source (public: model, and the _fn variant below). */
static int sample_src(float *x, float *logp, stochflow_solver *s, const stochflow__vsrc *src,
                      size_t n, uint64_t seed) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "sample: solver is NULL");
    FORWARD_IF_ERROR(check_src(src));
    if (n == 0) {
        s->nfe = s->accepted = s->rejected = 0;
        s->t_reached = 1.0;
        return 0;
    }
    RETURN_ERROR_IF(x == NULL, STOCHFLOW_E_INVALID, "sample: x is NULL");
    size_t d = src->d, nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, d) != 0, STOCHFLOW_E_INVALID,
                    "sample: batch %zu x %zu overflows", n, d);
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_SAMPLE, 0, i);
        for (size_t j = 0; j < d; ++j) x[i * d + j] = (float)stochflow__rng_normal(&r);
    }
    int ran;
    if (logp == NULL) return integrate_core(&ran, NULL, NULL, s, src, x, n, 0.0, 1.0);
    double *mean = stochflow__alloc_array(n, sizeof(double));
    double *base = stochflow__alloc_array(n, sizeof(double));
    int rc;
    if (mean == NULL || base == NULL) {
        rc = stochflow__error(STOCHFLOW_E_NOMEM, "sample: out of memory");
        goto done;
    }
    rc = base_logpdf(base, s, x, n, d);
    if (rc < 0) goto done;
    /* forward from 0 to 1: mean = l(1) - l(0) = -int_0^1 div v dt */
    rc = integrate_core(&ran, mean, NULL, s, src, x, n, 0.0, 1.0);
    if (rc < 0) goto done;
    for (size_t i = 0; i < n; ++i) logp[i] = (float)(base[i] + mean[i]);
done:
    stochflow__free(mean);
    stochflow__free(base);
    return rc;
}

/* ---- public wrappers -------------------------------------------------------------- */

static stochflow__vsrc model_src(stochflow_model *m) {
    stochflow__vsrc src;
    memset(&src, 0, sizeof src);
    src.model = m;
    src.d = m ? m->d : 0;
    return src;
}

/* A model source with each row's conditioning, validated up front (nothing runs on a
 * bad context). The solver's guidance scale applies to model sources only. */
static int model_src_ctx(stochflow__vsrc *src, stochflow_model *m, const float *ctx,
                         const int32_t *labels, size_t n) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    FORWARD_IF_ERROR(stochflow__model_check_cond(m, ctx, labels, n));
    *src = model_src(m);
    src->ctx = ctx;
    src->labels = labels;
    return 0;
}

static stochflow__vsrc fn_src(stochflow_velocity_fn fn, void *user, size_t d) {
    stochflow__vsrc src;
    memset(&src, 0, sizeof src);
    src.fn = fn;
    src.user = user;
    src.d = d;
    return src;
}

STOCHFLOW_API int stochflow_solver_integrate(float *dlogp, float *dlogp_se, stochflow_solver *s,
                                             stochflow_model *m, float *x, size_t n, double t0,
                                             double t1) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "integrate: model is NULL");
    STOCHFLOW__ENTER(s, "solver");
    STOCHFLOW__ENTER(m, "model");
    stochflow__vsrc src = model_src(m);
    return stochflow__solver_integrate_src(dlogp, dlogp_se, s, &src, x, n, t0, t1);
}

STOCHFLOW_API int stochflow_solver_integrate_fn(float *dlogp, float *dlogp_se, stochflow_solver *s,
                                                stochflow_velocity_fn fn, void *user, size_t d,
                                                float *x, size_t n, double t0, double t1) {
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "integrate_fn: velocity callback is NULL");
    STOCHFLOW__ENTER(s, "solver");
    stochflow__vsrc src = fn_src(fn, user, d);
    return stochflow__solver_integrate_src(dlogp, dlogp_se, s, &src, x, n, t0, t1);
}

/* log rho_t of points x in the user's units: with a standardization (doc/data.md), the
 * density of z = (x - shift) / scale times |dz/dx| = exp(-sum log scale). */
static int log_prob_user(float *logp, float *se, stochflow_solver *s, stochflow_model *m,
                         const stochflow__vsrc *src, const float *x, size_t n, double t) {
    if (m->std_shift == NULL || n == 0 || x == NULL || logp == NULL)
        return stochflow__solver_log_prob_src(logp, se, s, src, x, n, t);
    size_t nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, m->d) != 0, STOCHFLOW_E_INVALID,
                    "log_prob: batch %zu x %zu overflows", n, m->d);
    float *z = stochflow__alloc_array(nd, sizeof(float));
    RETURN_ERROR_IF(z == NULL, STOCHFLOW_E_NOMEM, "log_prob: out of memory");
    stochflow__std_forward(z, m, x, n);
    int rc = stochflow__solver_log_prob_src(logp, se, s, src, z, n, t);
    stochflow__free(z);
    if (rc < 0) return rc;
    for (size_t i = 0; i < n; ++i) logp[i] = (float)((double)logp[i] - m->std_logdet);
    return 0;
}

/* Samples (and their log-density) back in the user's units (doc/data.md). */
static void samples_user(float *x, float *logp, const stochflow_model *m, size_t n) {
    if (m->std_shift == NULL || n == 0) return;
    stochflow__std_inverse(x, m, n);
    if (logp)
        for (size_t i = 0; i < n; ++i) logp[i] = (float)((double)logp[i] - m->std_logdet);
}

STOCHFLOW_API int stochflow_solver_log_prob(float *logp, float *se, stochflow_solver *s,
                                            stochflow_model *m, const float *x, size_t n,
                                            double t) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "log_prob: model is NULL");
    STOCHFLOW__ENTER(s, "solver");
    STOCHFLOW__ENTER(m, "model");
    stochflow__vsrc src = model_src(m);
    return log_prob_user(logp, se, s, m, &src, x, n, t);
}

STOCHFLOW_API int stochflow_solver_log_prob_fn(float *logp, float *se, stochflow_solver *s,
                                               stochflow_velocity_fn fn, void *user, size_t d,
                                               const float *x, size_t n, double t) {
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "log_prob_fn: velocity callback is NULL");
    STOCHFLOW__ENTER(s, "solver");
    stochflow__vsrc src = fn_src(fn, user, d);
    return stochflow__solver_log_prob_src(logp, se, s, &src, x, n, t);
}

STOCHFLOW_API int stochflow_solver_sample(float *x, float *logp, stochflow_solver *s,
                                          stochflow_model *m, size_t n, uint64_t seed) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "sample: model is NULL");
    STOCHFLOW__ENTER(s, "solver");
    STOCHFLOW__ENTER(m, "model");
    stochflow__vsrc src = model_src(m);
    FORWARD_IF_ERROR(sample_src(x, logp, s, &src, n, seed));
    samples_user(x, logp, m, n);
    return 0;
}

STOCHFLOW_API int stochflow_solver_sample_fn(float *x, float *logp, stochflow_solver *s,
                                             stochflow_velocity_fn fn, void *user, size_t d,
                                             size_t n, uint64_t seed) {
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "sample_fn: velocity callback is NULL");
    STOCHFLOW__ENTER(s, "solver");
    stochflow__vsrc src = fn_src(fn, user, d);
    return sample_src(x, logp, s, &src, n, seed);
}

/* ---- conditional models (doc/conditional.md) -------------------------------------- */

STOCHFLOW_API int stochflow_solver_integrate_ctx(float *dlogp, float *dlogp_se,
                                                 stochflow_solver *s, stochflow_model *m,
                                                 float *x, const float *ctx,
                                                 const int32_t *labels, size_t n, double t0,
                                                 double t1) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "integrate: model is NULL");
    STOCHFLOW__ENTER(s, "solver");
    STOCHFLOW__ENTER(m, "model");
    stochflow__vsrc src;
    FORWARD_IF_ERROR(model_src_ctx(&src, m, ctx, labels, n));
    return stochflow__solver_integrate_src(dlogp, dlogp_se, s, &src, x, n, t0, t1);
}

STOCHFLOW_API int stochflow_solver_log_prob_ctx(float *logp, float *se, stochflow_solver *s,
                                                stochflow_model *m, const float *x,
                                                const float *ctx, const int32_t *labels,
                                                size_t n, double t) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "log_prob: model is NULL");
    STOCHFLOW__ENTER(s, "solver");
    STOCHFLOW__ENTER(m, "model");
    stochflow__vsrc src;
    FORWARD_IF_ERROR(model_src_ctx(&src, m, ctx, labels, n));
    return log_prob_user(logp, se, s, m, &src, x, n, t);
}

STOCHFLOW_API int stochflow_solver_sample_ctx(float *x, float *logp, stochflow_solver *s,
                                              stochflow_model *m, const float *ctx,
                                              const int32_t *labels, size_t n, uint64_t seed) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "sample: model is NULL");
    STOCHFLOW__ENTER(s, "solver");
    STOCHFLOW__ENTER(m, "model");
    stochflow__vsrc src;
    FORWARD_IF_ERROR(model_src_ctx(&src, m, ctx, labels, n));
    FORWARD_IF_ERROR(sample_src(x, logp, s, &src, n, seed));
    samples_user(x, logp, m, n);
    return 0;
}
