/* sde.c - SDE sampling and the SDE likelihood estimator for stochastic interpolants
 * (doc/sde.md): the sde handle and its 600s keyed parameters, Euler-Maruyama and a
 * Heun-type predictor-corrector for dX = [b + eps s] dt + sqrt(2 eps) dW, the backward
 * SDE likelihood, the model form (drift / score networks, or the score recovered from
 * a velocity network).
 *
 * Arithmetic mirrors ode.c where eps = 0: the state is kept in double, rounded to float
 * only to evaluate the field, and the increments are formed in the same order, so an
 * eps = 0 run is bit for bit the ODE Euler or Heun sampler. Noise of step k for row r
 * comes from Philox keyed by (seed, stream, k, r): nothing depends on the thread count
 * or on how a batch is split. */
#include <math.h>
#include <string.h>

#include "busy.h"
#include "model.h"
#include "sde.h"

#define LN_2PI 1.8378770664093454835606594728112

struct stochflow_sde {
    /* keyed parameters, resolved (never 0) */
    double method, steps, eps, t_end, denoise, drift, score, paths, lik_avg, guidance, trace;
    stochflow_eps_fn eps_fn;
    void *eps_user;
    int has_si;
    struct stochflow_sinterp si;
    /* statistics of the last call */
    double nfe, accepted, t_reached;
};

/* ---- keyed parameters --------------------------------------------------------------- */

typedef struct {
    int key;
    double lo, hi, def;
    int integral;
    size_t off;
} sde_param;

#define FIELD(f) offsetof(struct stochflow_sde, f)
static const sde_param PARAMS[] = {
    {STOCHFLOW_PARAM_SDE_METHOD, 1, 2, STOCHFLOW_SDE_HEUN, 1, FIELD(method)},
    {STOCHFLOW_PARAM_SDE_STEPS, 1, 1e7, 100, 1, FIELD(steps)},
    {STOCHFLOW_PARAM_SDE_EPS, 0, 1e6, 0, 0, FIELD(eps)},
    {STOCHFLOW_PARAM_SDE_T_END, 0, 1, 1, 0, FIELD(t_end)},
    {STOCHFLOW_PARAM_SDE_DENOISE, 1, 2, 1, 1, FIELD(denoise)},
    {STOCHFLOW_PARAM_SDE_DRIFT, STOCHFLOW_FIELD_VELOCITY, STOCHFLOW_FIELD_DRIFT,
     STOCHFLOW_FIELD_DRIFT, 1, FIELD(drift)},
    {STOCHFLOW_PARAM_SDE_SCORE, STOCHFLOW_FIELD_SCORE, STOCHFLOW_FIELD_SCORE_FROM_VELOCITY,
     STOCHFLOW_FIELD_SCORE, 1, FIELD(score)},
    {STOCHFLOW_PARAM_SDE_PATHS, 1, 1e6, 16, 1, FIELD(paths)},
    {STOCHFLOW_PARAM_SDE_LIK_AVG, 1, 2, 1, 1, FIELD(lik_avg)},
    {STOCHFLOW_PARAM_SDE_GUIDANCE, -1, 1000, 0, 0, FIELD(guidance)},
    {STOCHFLOW_PARAM_SDE_TRACE, STOCHFLOW_TRACE_EXACT, STOCHFLOW_TRACE_HUTCHINSON,
     STOCHFLOW_TRACE_EXACT, 1, FIELD(trace)},
};
#define N_PARAMS (sizeof PARAMS / sizeof PARAMS[0])

static const sde_param *find_param(int key) {
    for (size_t i = 0; i < N_PARAMS; ++i)
        if (PARAMS[i].key == key) return &PARAMS[i];
    return NULL;
}

STOCHFLOW_API int stochflow_sde_param_bounds(double *lo, double *hi, double *def, int key) {
    const sde_param *p = find_param(key);
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_UNSUPPORTED, "sde_param_bounds: unknown key %d", key);
    if (lo) *lo = p->lo;
    if (hi) *hi = p->hi;
    if (def) *def = p->def;
    return 0;
}

STOCHFLOW_API int stochflow_sde_new(stochflow_sde **out) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "sde_new: out is NULL");
    *out = NULL;
    stochflow_sde *s = stochflow__calloc(1, sizeof *s);
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_NOMEM, "sde_new: out of memory");
    for (size_t i = 0; i < N_PARAMS; ++i)
        *(double *)((char *)s + PARAMS[i].off) = PARAMS[i].def;
    *out = s;
    return 0;
}

STOCHFLOW_API void stochflow_sde_free(stochflow_sde *s) { stochflow__free(s); }

STOCHFLOW_API int stochflow_sde_set_param(stochflow_sde *s, int key, double value) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "sde_set_param: sde is NULL");
    const sde_param *p = find_param(key);
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_UNSUPPORTED,
                    "sde_set_param: key %d is not an SDE (600s) parameter", key);
    if (value == 0.0) value = p->def;
    RETURN_ERROR_IF(!(value >= p->lo && value <= p->hi), STOCHFLOW_E_INVALID,
                    "sde_set_param: key %d value %g outside [%g, %g]", key, value, p->lo, p->hi);
    RETURN_ERROR_IF(p->integral && value != floor(value), STOCHFLOW_E_INVALID,
                    "sde_set_param: key %d takes an integer, got %g", key, value);
    *(double *)((char *)s + p->off) = value;
    return 0;
}

STOCHFLOW_API int stochflow_sde_get_param(double *out, const stochflow_sde *s, int key) {
    RETURN_ERROR_IF(out == NULL || s == NULL, STOCHFLOW_E_INVALID, "sde_get_param: NULL argument");
    const sde_param *p = find_param(key);
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_UNSUPPORTED,
                    "sde_get_param: key %d is not an SDE (600s) parameter", key);
    *out = *(const double *)((const char *)s + p->off);
    return 0;
}

STOCHFLOW_API int stochflow_sde_set_eps_schedule(stochflow_sde *s, stochflow_eps_fn fn,
                                                 void *user) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "sde_set_eps_schedule: sde is NULL");
    s->eps_fn = fn;
    s->eps_user = fn ? user : NULL;
    return 0;
}

STOCHFLOW_API int stochflow_sde_set_interpolant(stochflow_sde *s, const stochflow_sinterp *si) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "sde_set_interpolant: sde is NULL");
    if (si == NULL) {
        s->has_si = 0;
        return 0;
    }
    s->si = *si;
    s->has_si = 1;
    return 0;
}

STOCHFLOW_API int stochflow_sde_stat(double *out, const stochflow_sde *s, int key) {
    RETURN_ERROR_IF(out == NULL || s == NULL, STOCHFLOW_E_INVALID, "sde_stat: NULL argument");
    switch (key) {
    case STOCHFLOW_STAT_NFE: *out = s->nfe; return 0;
    case STOCHFLOW_STAT_ACCEPTED: *out = s->accepted; return 0;
    case STOCHFLOW_STAT_REJECTED: *out = 0.0; return 0;
    case STOCHFLOW_STAT_T: *out = s->t_reached; return 0;
    default: return stochflow__error(STOCHFLOW_E_UNSUPPORTED, "sde_stat: unknown key %d", key);
    }
}

/* eps applied at time t of step k (of N): 0 past T_END and, with DENOISE, on the step
 * that ends at the data (forward: the last; backward: the first). */
static int eps_at(double *out, const stochflow_sde *s, double t, int denoise_step) {
    if (!(t < s->t_end) || denoise_step) {
        *out = 0.0;
        return 0;
    }
    double e = s->eps_fn ? s->eps_fn(s->eps_user, t) : s->eps;
    RETURN_ERROR_IF(!(e >= 0.0 && isfinite(e)), STOCHFLOW_E_INVALID,
                    "sde: eps(%.17g) = %g is not a finite value >= 0", t, e);
    *out = e;
    return 0;
}

/* ---- score from a velocity -------------------------------------------------------- */

STOCHFLOW_API int stochflow_score_from_velocity(float *s, float *div_s, const float *x,
                                                const float *v, const float *div_v, size_t n,
                                                size_t d, const double ab[4]) {
    RETURN_ERROR_IF(ab == NULL || (n > 0 && (s == NULL || x == NULL || v == NULL)),
                    STOCHFLOW_E_INVALID, "score_from_velocity: NULL argument");
    double den = ab[0] * (ab[2] * ab[1] - ab[0] * ab[3]);
    /* |a| below 1e-12 is a = 0 up to rounding (trig: cos(pi/2) = 6e-17) */
    RETURN_ERROR_IF(!(fabs(ab[0]) > 1e-12) || !(den != 0.0) || !isfinite(den), STOCHFLOW_E_INVALID,
                    "score_from_velocity: a (a' b - a b') = %g (a = %g): the score is not "
                    "recoverable from the velocity here (t = 1 has a = 0)", den, ab[0]);
    for (size_t q = 0; q < n * d; ++q)
        s[q] = (float)((ab[3] * (double)x[q] - ab[1] * (double)v[q]) / den);
    if (div_s && div_v)
        for (size_t i = 0; i < n; ++i)
            div_s[i] = (float)((ab[3] * (double)d - ab[1] * (double)div_v[i]) / den);
    return 0;
}

/* ---- where the fields come from --------------------------------------------------- */

typedef struct {
    stochflow_sde *s;
    stochflow_model *drift, *score;
    size_t rows; /* capacity of the buffers */
    float *v, *dv, *e, *de; /* [rows x d], [rows], [rows x d], [rows] */
    /* conditioning of the rows (NULL: none), guidance scale, and for the Hutchinson
     * likelihood one probe per row [rows x d] (NULL: exact divergences) */
    const float *ctx;
    const int32_t *labels;
    double w;
    const float *probes;
    float *own_ctx, *own_probes; /* allocations behind ctx and probes, or NULL */
    int32_t *own_labels;
} model_ctx;

static void model_ctx_free(model_ctx *c) {
    stochflow__free(c->v);
    stochflow__free(c->e);
    stochflow__free(c->dv);
    stochflow__free(c->de);
    stochflow__free(c->own_ctx);
    stochflow__free(c->own_labels);
    stochflow__free(c->own_probes);
}

/* One network's field v [n x d] (or NULL) and divergence div [n] (or NULL) at t: guided
 * with the sampler's scale, given the rows' conditioning; with probes, div is the
 * Hutchinson estimate p . (dv/dx) p of the row's probe (one per row). */
static int net_eval(const model_ctx *c, stochflow_model *m, double t, const float *x, size_t n,
                    float *v, float *div) {
    if (c->probes && div)
        return stochflow__model_eval_ctx(m, t, x, c->ctx, c->labels, c->w, n, v, NULL, c->probes,
                                         1, div);
    return stochflow__model_eval_ctx(m, t, x, c->ctx, c->labels, c->w, n, v, div, NULL, 0, NULL);
}

/* The model form as a stochflow_sde_field_fn. */
static int model_field(void *user, double t, size_t n, size_t d, const float *x, float *b,
                       float *s, float *db, float *ds) {
    model_ctx *c = user;
    stochflow_sde *sd = c->s;
    int kind_b = (int)sd->drift, kind_s = (int)sd->score;
    double gg = 0.0, g = 0.0;
    if (sd->has_si) {
        double co[7];
        FORWARD_IF_ERROR(stochflow__sinterp_eval(&sd->si, t, co));
        g = co[2];
        gg = co[6];
    }
    int need_s = s != NULL || (kind_b == STOCHFLOW_FIELD_VELOCITY && gg != 0.0);
    int need_ds = need_s && (ds != NULL || (db != NULL && kind_b == STOCHFLOW_FIELD_VELOCITY));
    /* drift (or velocity) network */
    FORWARD_IF_ERROR(net_eval(c, c->drift, t, x, n, c->v, db ? c->dv : NULL));
    if (need_s) {
        if (kind_s == STOCHFLOW_FIELD_SCORE_FROM_VELOCITY) {
            double ab[4];
            FORWARD_IF_ERROR(stochflow_model_interpolant_eval(ab, c->drift, t));
            if (need_ds && !db)
                FORWARD_IF_ERROR(net_eval(c, c->drift, t, x, n, NULL, c->dv));
            FORWARD_IF_ERROR(stochflow_score_from_velocity(c->e, need_ds ? c->de : NULL, x, c->v,
                                                           need_ds ? c->dv : NULL, n, d, ab));
        } else {
            FORWARD_IF_ERROR(net_eval(c, c->score, t, x, n, c->e, need_ds ? c->de : NULL));
            if (kind_s == STOCHFLOW_FIELD_DENOISER) {
                RETURN_ERROR_IF(!(g != 0.0), STOCHFLOW_E_NONFINITE,
                                "sde: score eta / gamma undefined where gamma = 0 (t = %.17g); "
                                "lower STOCHFLOW_PARAM_SDE_T_END or use a score model", t);
                for (size_t q = 0; q < n * d; ++q) c->e[q] = (float)((double)c->e[q] / g);
                if (need_ds)
                    for (size_t i = 0; i < n; ++i) c->de[i] = (float)((double)c->de[i] / g);
            }
        }
    }
    /* b = v - gamma gamma' s for a velocity network, else the network's output */
    int shift = kind_b == STOCHFLOW_FIELD_VELOCITY && gg != 0.0;
    for (size_t q = 0; q < n * d; ++q)
        b[q] = shift ? (float)((double)c->v[q] - gg * (double)c->e[q]) : c->v[q];
    if (db)
        for (size_t i = 0; i < n; ++i)
            db[i] = shift ? (float)((double)c->dv[i] - gg * (double)c->de[i]) : c->dv[i];
    if (s) memcpy(s, c->e, n * d * sizeof *s);
    if (ds) memcpy(ds, c->de, n * sizeof *ds);
    return 0;
}

/* The model form for rows = n * P rows (P = 1 for sampling, the paths per point for the
 * likelihood): row r carries the conditioning of point r / P. Validates the models, the
 * conditioning of the n points against each model, and the guidance. */
static int model_ctx_init(model_ctx *c, stochflow_sde *s, stochflow_model *drift,
                          stochflow_model *score, const float *ctx, const int32_t *labels,
                          size_t n, size_t P, size_t *d) {
    memset(c, 0, sizeof *c);
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "sde: sde is NULL");
    RETURN_ERROR_IF(drift == NULL, STOCHFLOW_E_INVALID, "sde: drift model is NULL");
    int from_v = (int)s->score == STOCHFLOW_FIELD_SCORE_FROM_VELOCITY;
    RETURN_ERROR_IF(from_v && score != NULL, STOCHFLOW_E_INVALID,
                    "sde: SCORE_FROM_VELOCITY takes no score model (pass NULL)");
    RETURN_ERROR_IF(!from_v && score == NULL &&
                        (s->eps > 0.0 || s->eps_fn ||
                         ((int)s->drift == STOCHFLOW_FIELD_VELOCITY && s->has_si)),
                    STOCHFLOW_E_INVALID,
                    "sde: a score model is needed (or STOCHFLOW_FIELD_SCORE_FROM_VELOCITY)");
    *d = stochflow_model_dim(drift);
    RETURN_ERROR_IF(score && stochflow_model_dim(score) != *d, STOCHFLOW_E_INVALID,
                    "sde: drift and score models have dimensions %zu and %zu", *d,
                    stochflow_model_dim(score));
    FORWARD_IF_ERROR(stochflow__model_check_cond(drift, ctx, labels, n));
    if (score) {
        /* one context matrix feeds both networks: the same row width */
        size_t kd_drift = 0, kd_score = 0;
        stochflow_model_context(&kd_drift, NULL, drift);
        stochflow_model_context(&kd_score, NULL, score);
        RETURN_ERROR_IF(kd_drift != kd_score, STOCHFLOW_E_INVALID,
                        "sde: the drift model takes %zu context value(s) per row, the score "
                        "model %zu; they must take the same context", kd_drift, kd_score);
        FORWARD_IF_ERROR(stochflow__model_check_cond(score, ctx, labels, n));
    }
    size_t kd = 0, kc = 0;
    stochflow_model_context(&kd, &kc, drift);
    RETURN_ERROR_IF(s->guidance != 0.0 && kd == 0 && kc == 0, STOCHFLOW_E_INVALID,
                    "sde: guidance %g needs a conditional drift model", s->guidance);
    if (score) {
        stochflow_model_context(&kd, &kc, score);
        RETURN_ERROR_IF(s->guidance != 0.0 && kd == 0 && kc == 0, STOCHFLOW_E_INVALID,
                        "sde: guidance %g needs a conditional score model", s->guidance);
    }
    stochflow_model_context(&kd, NULL, drift);
    size_t rows, nd, nk = 0;
    RETURN_ERROR_IF(stochflow__mul_size(&rows, n, P) != 0 ||
                        stochflow__mul_size(&nd, rows, *d) != 0 ||
                        (ctx && stochflow__mul_size(&nk, rows, kd) != 0),
                    STOCHFLOW_E_INVALID, "sde: batch %zu x %zu x %zu overflows", n, P, *d);
    c->s = s;
    c->drift = drift;
    c->score = score;
    c->rows = rows;
    c->w = s->guidance;
    c->ctx = ctx;
    c->labels = labels;
    if (rows == 0) return 0;
    c->v = stochflow__alloc_array(nd, sizeof(float));
    c->e = stochflow__calloc(nd, sizeof(float));
    c->dv = stochflow__alloc_array(rows, sizeof(float));
    c->de = stochflow__calloc(rows, sizeof(float));
    int bad = !c->v || !c->e || !c->dv || !c->de;
    /* the likelihood's rows: point i's conditioning repeated on its P paths */
    float *rctx = NULL;
    int32_t *rlab = NULL;
    if (!bad && P > 1 && ctx) {
        rctx = stochflow__alloc_array(nk, sizeof(float));
        if (rctx)
            for (size_t r = 0; r < rows; ++r) memcpy(rctx + r * kd, ctx + (r / P) * kd, kd * sizeof *ctx);
        c->ctx = rctx;
        bad = rctx == NULL;
    }
    if (!bad && P > 1 && labels) {
        rlab = stochflow__alloc_array(rows, sizeof(int32_t));
        if (rlab)
            for (size_t r = 0; r < rows; ++r) rlab[r] = labels[r / P];
        c->labels = rlab;
        bad = rlab == NULL;
    }
    c->own_ctx = rctx;
    c->own_labels = rlab;
    if (bad) {
        model_ctx_free(c);
        memset(c, 0, sizeof *c);
        return stochflow__error(STOCHFLOW_E_NOMEM, "sde: out of memory");
    }
    return 0;
}

/* One Hutchinson probe per likelihood row r (Rademacher), keyed by (seed, the SDE probe
 * stream, r) and fixed along the path. */
static int model_ctx_probes(model_ctx *c, size_t d, uint64_t seed) {
    size_t nd = c->rows * d; /* checked in model_ctx_init */
    float *p = stochflow__alloc_array(nd ? nd : 1, sizeof(float));
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM, "sde_log_prob: out of memory for probes");
    for (size_t r = 0; r < c->rows; ++r) {
        stochflow__rng g;
        stochflow__rng_init(&g, seed, STOCHFLOW__STREAM_SDE_PROBE, 0, r);
        for (size_t j = 0; j < d; ++j) p[r * d + j] = (stochflow__rng_u32(&g) & 1u) ? 1.0f : -1.0f;
    }
    c->own_probes = p;
    c->probes = p;
    return 0;
}

/* ---- integrators -------------------------------------------------------------------- */

static size_t first_nonfinite(const float *a, size_t len) {
    for (size_t i = 0; i < len; ++i)
        if (!(a[i] - a[i] == 0.0f)) return i;
    return len;
}

/* One field evaluation (one NFE): b always, s only when want_s, divergences when
 * db/ds are non-NULL. Outputs are checked for finiteness. */
static int eval(stochflow_sde *s, stochflow_sde_field_fn fn, void *user, double t, size_t n,
                size_t d, const float *x, float *b, float *sc, float *db, float *ds) {
    s->nfe += 1;
    int rc = fn(user, t, n, d, x, b, sc, db, ds);
    if (rc < 0 && fn == model_field) return rc; /* the library set the message */
    RETURN_ERROR_IF(rc != 0, STOCHFLOW_E_CALLBACK, "sde field callback returned %d at t = %.17g",
                    rc, t);
    size_t bad = first_nonfinite(b, n * d);
    RETURN_ERROR_IF(bad < n * d, STOCHFLOW_E_NONFINITE,
                    "sde: drift not finite at t = %.17g (point %zu, component %zu)", t, bad / d,
                    bad % d);
    if (sc) {
        bad = first_nonfinite(sc, n * d);
        RETURN_ERROR_IF(bad < n * d, STOCHFLOW_E_NONFINITE,
                        "sde: score not finite at t = %.17g (point %zu, component %zu)", t,
                        bad / d, bad % d);
    }
    if (db) {
        bad = first_nonfinite(db, n);
        RETURN_ERROR_IF(bad < n, STOCHFLOW_E_NONFINITE,
                        "sde: drift divergence not finite at t = %.17g (point %zu)", t, bad);
    }
    if (ds) {
        bad = first_nonfinite(ds, n);
        RETURN_ERROR_IF(bad < n, STOCHFLOW_E_NONFINITE,
                        "sde: score divergence not finite at t = %.17g (point %zu)", t, bad);
    }
    return 0;
}

/* Grid time k of N between t0 and t1, as ode.c's fixed-step grid. */
static double grid(double t0, double t1, size_t k, size_t N) {
    return k == N ? t1 : t0 + (t1 - t0) * ((double)k / (double)N);
}

/* Forward SDE from the base draws of seed to t = 1 into x [n x d]. */
static int forward(float *x, stochflow_sde *s, stochflow_sde_field_fn fn, void *user, size_t d,
                   size_t n, uint64_t seed) {
    size_t nd = n * d, N = (size_t)s->steps;
    int heun = (int)s->method == STOCHFLOW_SDE_HEUN;
    double *y = stochflow__alloc_array(nd, sizeof(double));
    double *xi = stochflow__alloc_array(nd, sizeof(double));
    float *xs = stochflow__alloc_array(nd, sizeof(float));
    float *k0 = stochflow__alloc_array(nd, sizeof(float));
    float *s0 = stochflow__alloc_array(nd, sizeof(float));
    float *k1 = heun ? stochflow__alloc_array(nd, sizeof(float)) : NULL;
    float *s1 = heun ? stochflow__alloc_array(nd, sizeof(float)) : NULL;
    int rc = 0;
    if (!y || !xi || !xs || !k0 || !s0 || (heun && (!k1 || !s1))) {
        rc = stochflow__error(STOCHFLOW_E_NOMEM, "sde_sample: out of memory (%zu x %zu)", n, d);
        goto done;
    }
    /* the base draws of stochflow_solver_sample */
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_SAMPLE, 0, i);
        for (size_t j = 0; j < d; ++j) y[i * d + j] = (double)(float)stochflow__rng_normal(&r);
    }
    for (size_t k = 0; k < N; ++k) {
        double ta = grid(0.0, 1.0, k, N), tb = grid(0.0, 1.0, k + 1, N), h = tb - ta;
        int last = k + 1 == N && s->denoise == 2;
        double ea = 0.0, eb = 0.0;
        if ((rc = eps_at(&ea, s, ta, last)) < 0) goto done;
        if (heun && (rc = eps_at(&eb, s, tb, last)) < 0) goto done;
        /* noise amplitude over the step: sqrt(2 int eps dt), trapezoid for Heun */
        double sig = heun ? sqrt((ea + eb) * h) : sqrt(2.0 * ea * h);
        if (sig > 0.0)
            for (size_t i = 0; i < n; ++i) {
                stochflow__rng r;
                stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_SDE_NOISE, k, i);
                for (size_t j = 0; j < d; ++j) xi[i * d + j] = sig * stochflow__rng_normal(&r);
            }
        for (size_t q = 0; q < nd; ++q) xs[q] = (float)y[q];
        if ((rc = eval(s, fn, user, ta, n, d, xs, k0, ea > 0.0 ? s0 : NULL, NULL, NULL)) < 0)
            goto done;
        if (!heun) {
            for (size_t q = 0; q < nd; ++q) {
                double acc = 0.0;
                acc += 1.0 * (double)k0[q];
                if (ea > 0.0) acc += ea * (double)s0[q];
                y[q] = y[q] + h * acc;
                if (sig > 0.0) y[q] += xi[q];
            }
        } else {
            for (size_t q = 0; q < nd; ++q) {
                double acc = 0.0;
                acc += 1.0 * (double)k0[q];
                if (ea > 0.0) acc += ea * (double)s0[q];
                double p = y[q] + h * acc;
                if (sig > 0.0) p += xi[q];
                xs[q] = (float)p;
            }
            if ((rc = eval(s, fn, user, tb, n, d, xs, k1, eb > 0.0 ? s1 : NULL, NULL, NULL)) < 0)
                goto done;
            for (size_t q = 0; q < nd; ++q) {
                double f0 = (double)k0[q], f1 = (double)k1[q];
                if (ea > 0.0) f0 += ea * (double)s0[q];
                if (eb > 0.0) f1 += eb * (double)s1[q];
                double acc = 0.0;
                acc += 0.5 * f0;
                acc += 0.5 * f1;
                y[q] = y[q] + h * acc;
                if (sig > 0.0) y[q] += xi[q];
            }
        }
        s->accepted += 1;
        s->t_reached = tb;
    }
    for (size_t q = 0; q < nd; ++q) x[q] = (float)y[q];
done:
    stochflow__free(y), stochflow__free(xi), stochflow__free(xs), stochflow__free(k0);
    stochflow__free(s0), stochflow__free(k1), stochflow__free(s1);
    return rc;
}

/* Backward Euler-Maruyama likelihood estimate: P paths per point. */
static int likelihood(float *logp, float *se, stochflow_sde *s, stochflow_sde_field_fn fn,
                      void *user, size_t d, const float *x, size_t n, uint64_t seed) {
    size_t P = (size_t)s->paths, R, Rd, N = (size_t)s->steps;
    RETURN_ERROR_IF(stochflow__mul_size(&R, n, P) != 0 || stochflow__mul_size(&Rd, R, d) != 0,
                    STOCHFLOW_E_INVALID, "sde_log_prob: %zu points x %zu paths overflows", n, P);
    double *y = stochflow__alloc_array(Rd, sizeof(double));
    double *L = stochflow__calloc(R, sizeof(double));
    float *xs = stochflow__alloc_array(Rd, sizeof(float));
    float *b = stochflow__alloc_array(Rd, sizeof(float));
    float *sc = stochflow__alloc_array(Rd, sizeof(float));
    float *db = stochflow__alloc_array(R, sizeof(float));
    float *ds = stochflow__alloc_array(R, sizeof(float));
    int rc = 0;
    if (!y || !L || !xs || !b || !sc || !db || !ds) {
        rc = stochflow__error(STOCHFLOW_E_NOMEM, "sde_log_prob: out of memory (%zu paths)", R);
        goto done;
    }
    for (size_t r = 0; r < R; ++r)
        for (size_t j = 0; j < d; ++j) y[r * d + j] = x[(r / P) * d + j];
    for (size_t k = 0; k < N; ++k) {
        double ta = grid(1.0, 0.0, k, N), tb = grid(1.0, 0.0, k + 1, N), h = tb - ta; /* h < 0 */
        double e = 0.0;
        if ((rc = eps_at(&e, s, ta, k == 0 && s->denoise == 2)) < 0) goto done;
        for (size_t q = 0; q < Rd; ++q) xs[q] = (float)y[q];
        if ((rc = eval(s, fn, user, ta, R, d, xs, b, e > 0.0 ? sc : NULL, db, e > 0.0 ? ds : NULL)) <
            0)
            goto done;
        double sq = sqrt(-h), amp = sqrt(2.0 * e);
        for (size_t r = 0; r < R; ++r) {
            double G = db[r];
            double *yr = y + r * d;
            if (e > 0.0) {
                stochflow__rng g;
                stochflow__rng_init(&g, seed, STOCHFLOW__STREAM_SDE_LIK, k, r);
                double s2 = 0.0, mart = 0.0;
                for (size_t j = 0; j < d; ++j) {
                    double sj = sc[r * d + j], dw = sq * stochflow__rng_normal(&g);
                    s2 += sj * sj;
                    mart += sj * dw;
                    yr[j] += h * ((double)b[r * d + j] - e * sj) + amp * dw;
                }
                G += e * ((double)ds[r] + s2);
                L[r] -= amp * mart;
            } else {
                for (size_t j = 0; j < d; ++j) yr[j] += h * (double)b[r * d + j];
            }
            L[r] += h * G; /* h < 0: subtracts int G dt */
        }
        s->accepted += 1;
        s->t_reached = tb;
    }
    /* per point: the P path values A_p = log rho0(Y_p(0)) + L_p, then their mean
     * (MEAN) or log-mean-exp (LOGMEANEXP), with a standard error over paths */
    for (size_t i = 0; i < n; ++i) {
        double *A = L + i * P, mx = -INFINITY;
        for (size_t p = 0; p < P; ++p) {
            size_t r = i * P + p;
            double q2 = 0.0;
            for (size_t j = 0; j < d; ++j) q2 += y[r * d + j] * y[r * d + j];
            A[p] += -0.5 * q2 - 0.5 * (double)d * LN_2PI;
            if (A[p] > mx) mx = A[p];
        }
        int lme = (int)s->lik_avg == STOCHFLOW_SDE_LIK_LOGMEANEXP;
        double sum = 0.0, sum2 = 0.0;
        for (size_t p = 0; p < P; ++p) {
            double v = lme ? exp(A[p] - mx) : A[p];
            sum += v;
            sum2 += v * v;
        }
        double mean = sum / (double)P;
        double var = P > 1 ? fmax((sum2 - (double)P * mean * mean) / (double)(P - 1), 0.0) : NAN;
        double sem = sqrt(var / (double)P);
        /* log-mean-exp: delta method, se(log w) = se(w) / mean(w) */
        logp[i] = (float)(lme ? mx + log(mean) : mean);
        if (se) se[i] = (float)(lme ? sem / mean : sem);
    }
done:
    stochflow__free(y), stochflow__free(L), stochflow__free(xs), stochflow__free(b);
    stochflow__free(sc), stochflow__free(db), stochflow__free(ds);
    return rc;
}

/* ---- public entry points ------------------------------------------------------------ */

static int check_common(stochflow_sde *s, size_t d, size_t n, const void *buf) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "sde: sde is NULL");
    s->nfe = s->accepted = 0;
    s->t_reached = 0;
    RETURN_ERROR_IF(d < 1 || d > 65536, STOCHFLOW_E_INVALID, "sde: dimension %zu out of 1..65536",
                    d);
    size_t nd;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, d) != 0 ||
                        stochflow__mul_size(&nd, nd, sizeof(double)) != 0,
                    STOCHFLOW_E_INVALID, "sde: batch %zu x %zu overflows", n, d);
    RETURN_ERROR_IF(n > 0 && buf == NULL, STOCHFLOW_E_INVALID, "sde: points buffer is NULL");
    return 0;
}

/* The drift model's data map (doc/data.md) holds for the SDE: samples come back in the
 * user's units and log-densities are of x, not of the network's z. A score model must
 * hold the same map (or none when the drift has none). */
static int same_map(const stochflow_model *drift, const stochflow_model *score) {
    if (score == NULL) return 0;
    const size_t d = drift->d;
    int same = (drift->std_shift == NULL) == (score->std_shift == NULL) &&
               (drift->std_chol == NULL) == (score->std_chol == NULL);
    if (same && drift->std_shift)
        same = memcmp(drift->std_shift, score->std_shift, d * sizeof(double)) == 0 &&
               memcmp(drift->std_scale, score->std_scale, d * sizeof(double)) == 0 &&
               (drift->std_chol == NULL ||
                memcmp(drift->std_chol, score->std_chol, d * d * sizeof(double)) == 0);
    RETURN_ERROR_IF(!same, STOCHFLOW_E_INVALID,
                    "sde: the drift and score models hold different standardizations "
                    "(doc/data.md); fit both on the same data map");
    return 0;
}

STOCHFLOW_API int stochflow_sde_sample_fn(float *x, stochflow_sde *s, stochflow_sde_field_fn fn,
                                          void *user, size_t d, size_t n, uint64_t seed) {
    FORWARD_IF_ERROR(check_common(s, d, n, x));
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "sde_sample_fn: field callback is NULL");
    if (n == 0) return 0;
    return forward(x, s, fn, user, d, n, seed);
}

STOCHFLOW_API int stochflow_sde_sample(float *x, stochflow_sde *s, stochflow_model *drift,
                                       stochflow_model *score, size_t n, uint64_t seed) {
    return stochflow_sde_sample_ctx(x, s, drift, score, NULL, NULL, n, seed);
}

STOCHFLOW_API int stochflow_sde_sample_ctx(float *x, stochflow_sde *s, stochflow_model *drift,
                                           stochflow_model *score, const float *ctx,
                                           const int32_t *labels, size_t n, uint64_t seed) {
    STOCHFLOW__ENTER(drift, "model");
    STOCHFLOW__ENTER(score, "model");
    model_ctx c;
    size_t d = 0;
    FORWARD_IF_ERROR(model_ctx_init(&c, s, drift, score, ctx, labels, n, 1, &d));
    int rc = check_common(s, d, n, x);
    if (rc == 0) rc = same_map(drift, score);
    if (rc == 0 && n > 0) rc = forward(x, s, model_field, &c, d, n, seed);
    if (rc == 0 && n > 0) stochflow__std_inverse(x, drift, n); /* the user's units */
    model_ctx_free(&c);
    return rc;
}

static int check_points(const float *x, size_t n, size_t d, float *logp) {
    RETURN_ERROR_IF(n > 0 && logp == NULL, STOCHFLOW_E_INVALID, "sde_log_prob: logp is NULL");
    return stochflow__check_finite(x, n * d, "sde_log_prob: x");
}

STOCHFLOW_API int stochflow_sde_log_prob_fn(float *logp, float *se, stochflow_sde *s,
                                            stochflow_sde_field_fn fn, void *user, size_t d,
                                            const float *x, size_t n, uint64_t seed) {
    FORWARD_IF_ERROR(check_common(s, d, n, x));
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "sde_log_prob_fn: field callback is NULL");
    RETURN_ERROR_IF((int)s->trace == STOCHFLOW_TRACE_HUTCHINSON, STOCHFLOW_E_UNSUPPORTED,
                    "sde_log_prob_fn: the callback gives exact divergences; "
                    "STOCHFLOW_PARAM_SDE_TRACE = HUTCHINSON applies to models");
    FORWARD_IF_ERROR(check_points(x, n, d, logp));
    if (n == 0) return 0;
    return likelihood(logp, se, s, fn, user, d, x, n, seed);
}

STOCHFLOW_API int stochflow_sde_log_prob(float *logp, float *se, stochflow_sde *s,
                                         stochflow_model *drift, stochflow_model *score,
                                         const float *x, size_t n, uint64_t seed) {
    return stochflow_sde_log_prob_ctx(logp, se, s, drift, score, x, NULL, NULL, n, seed);
}

STOCHFLOW_API int stochflow_sde_log_prob_ctx(float *logp, float *se, stochflow_sde *s,
                                             stochflow_model *drift, stochflow_model *score,
                                             const float *x, const float *ctx,
                                             const int32_t *labels, size_t n, uint64_t seed) {
    RETURN_ERROR_IF(s == NULL, STOCHFLOW_E_INVALID, "sde: sde is NULL");
    STOCHFLOW__ENTER(drift, "model");
    STOCHFLOW__ENTER(score, "model");
    model_ctx c;
    size_t d = 0;
    FORWARD_IF_ERROR(model_ctx_init(&c, s, drift, score, ctx, labels, n, (size_t)s->paths, &d));
    int rc = check_common(s, d, n, x);
    if (rc == 0) rc = check_points(x, n, d, logp);
    if (rc == 0) rc = same_map(drift, score);
    if (rc == 0 && n > 0 && (int)s->trace == STOCHFLOW_TRACE_HUTCHINSON)
        rc = model_ctx_probes(&c, d, seed);
    /* with a data map: the density of z = map(x) times |dz/dx| = exp(-std_logdet) */
    float *z = NULL;
    if (rc == 0 && n > 0 && drift->std_shift) {
        z = stochflow__alloc_array(n * d, sizeof(float));
        if (z == NULL) rc = stochflow__error(STOCHFLOW_E_NOMEM, "sde_log_prob: out of memory");
        else stochflow__std_forward(z, drift, x, n);
    }
    if (rc == 0 && n > 0) rc = likelihood(logp, se, s, model_field, &c, d, z ? z : x, n, seed);
    if (rc == 0 && z)
        for (size_t i = 0; i < n; ++i) logp[i] = (float)((double)logp[i] - drift->std_logdet);
    stochflow__free(z);
    model_ctx_free(&c);
    return rc;
}
