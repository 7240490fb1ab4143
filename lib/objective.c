/* objective.c - the training objective of a model: which field of which stochastic
 * interpolant the training step regresses (stochflow_config_set_objective), the rows of
 * a training batch for it (called by model.c's assemble_rows when the objective is not
 * the plain ODE velocity), and its checkpoint section SINT. Formulas: doc/sde.md,
 * "Training a drift, score or denoiser model". */
#include <math.h>
#include <string.h>

#include "objective.h"

int stochflow__objective_plain(const stochflow__objective *o) {
    return (o->field == 0 || o->field == STOCHFLOW_FIELD_VELOCITY) &&
           (o->kind == 0 || o->kind == STOCHFLOW_SI_TWO_SIDED) &&
           (o->gamma == 0 || o->gamma == STOCHFLOW_GAMMA_ZERO) && o->flags == 0;
}

/* o with the defaults resolved */
static stochflow__objective resolved(const stochflow__objective *o) {
    stochflow__objective r = *o;
    if (r.field == 0) r.field = STOCHFLOW_FIELD_VELOCITY;
    if (r.kind == 0) r.kind = STOCHFLOW_SI_TWO_SIDED;
    if (r.gamma == 0) r.gamma = STOCHFLOW_GAMMA_ZERO;
    if (r.gamma != STOCHFLOW_GAMMA_BROWNIAN_SCALED) r.scale = 0.0;
    return r;
}

static int check_objective(const stochflow__objective *raw) {
    stochflow__objective o = resolved(raw);
    RETURN_ERROR_IF(o.field < STOCHFLOW_FIELD_VELOCITY || o.field > STOCHFLOW_FIELD_DENOISER,
                    STOCHFLOW_E_INVALID, "objective: unknown field %d", o.field);
    RETURN_ERROR_IF(o.kind < STOCHFLOW_SI_TWO_SIDED || o.kind > STOCHFLOW_SI_MIRROR,
                    STOCHFLOW_E_INVALID, "objective: unknown interpolant kind %d", o.kind);
    RETURN_ERROR_IF(o.gamma < STOCHFLOW_GAMMA_ZERO || o.gamma > STOCHFLOW_GAMMA_SIN2,
                    STOCHFLOW_E_INVALID,
                    "objective: gamma %d is not a built-in schedule (ZERO .. SIN2)", o.gamma);
    RETURN_ERROR_IF(o.gamma == STOCHFLOW_GAMMA_BROWNIAN_SCALED &&
                        !(o.scale > 0.0 && isfinite(o.scale) && o.scale <= 1e6),
                    STOCHFLOW_E_INVALID, "objective: gamma scale %g must be in (0, 1e6]",
                    o.scale);
    RETURN_ERROR_IF((o.flags & ~STOCHFLOW_OBJECTIVE_ANTITHETIC) != 0, STOCHFLOW_E_INVALID,
                    "objective: unknown flags %#x", (unsigned)o.flags);
    int noise = o.kind == STOCHFLOW_SI_ONE_SIDED || o.gamma != STOCHFLOW_GAMMA_ZERO;
    RETURN_ERROR_IF(!noise && (o.field == STOCHFLOW_FIELD_SCORE ||
                               o.field == STOCHFLOW_FIELD_DENOISER ||
                               o.kind == STOCHFLOW_SI_MIRROR),
                    STOCHFLOW_E_INVALID,
                    "objective: field %d of interpolant kind %d needs a gamma schedule "
                    "(the latent noise term is zero)", o.field, o.kind);
    return 0;
}

int stochflow__objective_validate(const stochflow_config *c) {
    FORWARD_IF_ERROR(check_objective(&c->obj));
    RETURN_ERROR_IF(!stochflow__objective_plain(&c->obj) &&
                        c->interp.kind == STOCHFLOW_INTERP_FOURIER,
                    STOCHFLOW_E_UNSUPPORTED,
                    "a stochastic-interpolant objective is not available with the learnable "
                    "Fourier interpolant");
    RETURN_ERROR_IF(!stochflow__objective_plain(&c->obj) && (c->n_ctx || c->n_classes),
                    STOCHFLOW_E_UNSUPPORTED,
                    "a stochastic-interpolant objective is not available for a conditional "
                    "model yet (train the velocity, and sample it with an SDE through the "
                    "score from the velocity)");
    return 0;
}

STOCHFLOW_API int stochflow_config_set_objective(stochflow_config *cfg, int field, int kind,
                                                 int gamma, double gamma_scale, int flags) {
    RETURN_ERROR_IF(cfg == NULL, STOCHFLOW_E_INVALID, "config_set_objective: config is NULL");
    stochflow__objective o = {field, kind, gamma, gamma_scale, flags};
    FORWARD_IF_ERROR(check_objective(&o));
    o = resolved(&o);
    if (stochflow__objective_plain(&o)) memset(&o, 0, sizeof o); /* one form of "plain" */
    cfg->obj = o;
    return 0;
}

STOCHFLOW_API int stochflow_config_objective(int *field, int *kind, int *gamma,
                                             double *gamma_scale, int *flags,
                                             const stochflow_config *cfg) {
    RETURN_ERROR_IF(cfg == NULL, STOCHFLOW_E_INVALID, "config_objective: config is NULL");
    stochflow__objective o = resolved(&cfg->obj);
    if (field) *field = o.field;
    if (kind) *kind = o.kind;
    if (gamma) *gamma = o.gamma;
    if (gamma_scale) *gamma_scale = o.scale;
    if (flags) *flags = o.flags;
    return 0;
}

void stochflow__objective_sinterp(struct stochflow_sinterp *si, const stochflow_config *c) {
    stochflow__objective o = resolved(&c->obj);
    memset(si, 0, sizeof *si);
    si->kind = o.kind;
    si->ab = c->interp;
    si->g.kind = o.gamma;
    si->g.scale = o.scale;
}

STOCHFLOW_API int stochflow_model_sinterp(stochflow_sinterp **out, const stochflow_model *m) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "model_sinterp: out is NULL");
    *out = NULL;
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    RETURN_ERROR_IF(m->cfg.interp.kind == STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_INVALID,
                    "model_sinterp: the learnable Fourier interpolant has no stochastic form");
    stochflow_sinterp *si = stochflow__calloc(1, sizeof *si);
    RETURN_ERROR_IF(si == NULL, STOCHFLOW_E_NOMEM, "model_sinterp: out of memory");
    stochflow__objective_sinterp(si, &m->cfg);
    *out = si;
    return 0;
}

size_t stochflow__objective_rows(const stochflow__objective *o, size_t n) {
    return (o->flags & STOCHFLOW_OBJECTIVE_ANTITHETIC) ? 2 * n : n;
}

/* Network row i of a batch of n data rows: data row r = i mod n, sign +1 for the first
 * n rows, -1 for the antithetic partners (rows n .. 2n-1, same draws as row i - n).
 * Draws: t (STREAM_T), x0 (STREAM_X0) exactly as the plain path draws them, and the
 * latent z from its own stream (STREAM_LATENT), each keyed by (seed, step, r); t is
 * clamped to [T_MIN, 1 - T_MIN] for SCORE and DRIFT. */
void stochflow__objective_assemble(const stochflow_model *m, const struct stochflow_sinterp *si,
                                   float *xt, size_t stride, double *t_rows, float *target,
                                   const float *x1, const float *x0, const float *t, int train,
                                   size_t n, size_t lo, size_t hi) {
    const size_t d = m->d;
    const int field = m->cfg.obj.field ? m->cfg.obj.field : STOCHFLOW_FIELD_VELOCITY;
    const int clamp = field == STOCHFLOW_FIELD_SCORE || field == STOCHFLOW_FIELD_DRIFT;
    const int two_sided = si->kind == STOCHFLOW_SI_TWO_SIDED;
    for (size_t i = lo; i < hi; ++i) {
        const size_t r = i < n ? i : i - n;
        const int sign = i < n ? 1 : -1;
        stochflow__rng rt, rx, rz;
        double ti;
        if (t) {
            ti = t[r];
        } else {
            stochflow__rng_init(&rt, m->cfg.seed,
                                train ? STOCHFLOW__STREAM_T : STOCHFLOW__STREAM_EVAL_T, m->step, r);
            ti = stochflow__rng_uniform(&rt);
        }
        if (clamp) ti = fmin(fmax(ti, STOCHFLOW_OBJECTIVE_T_MIN), 1.0 - STOCHFLOW_OBJECTIVE_T_MIN);
        t_rows[i] = ti;
        double c[7];
        (void)stochflow__sinterp_eval(si, ti, c); /* the schedule was checked by the caller */
        if (two_sided && !x0)
            stochflow__rng_init(&rx, m->cfg.seed,
                                train ? STOCHFLOW__STREAM_X0 : STOCHFLOW__STREAM_EVAL_X0, m->step, r);
        stochflow__rng_init(&rz, m->cfg.seed,
                            train ? STOCHFLOW__STREAM_LATENT : STOCHFLOW__STREAM_EVAL_LATENT,
                            m->step, r);
        float *u = xt + i * stride;
        float *tg = target + i * d;
        const float *x1r = x1 + r * d;
        for (size_t k = 0; k < d; ++k) {
            double a0 = !two_sided ? 0.0 : x0 ? (double)x0[r * d + k] : stochflow__rng_normal(&rx);
            double z = stochflow__rng_normal(&rz);
            u[k] = (float)(c[0] * a0 + c[1] * (double)x1r[k] + sign * c[2] * z);
            tg[k] = (float)stochflow__sinterp_target(c, field, a0, x1r[k], z, sign);
        }
    }
}

/* ---- checkpoint section SINT: u32 field, kind, gamma, flags; f64 gamma scale ---------- */

uint64_t stochflow__objective_section_size(const stochflow_config *c) {
    return stochflow__objective_plain(&c->obj) ? 0 : 24;
}

void stochflow__objective_section_write(stochflow__writer *w, const stochflow_config *c) {
    stochflow__objective o = resolved(&c->obj);
    stochflow__w_u32(w, (uint32_t)o.field);
    stochflow__w_u32(w, (uint32_t)o.kind);
    stochflow__w_u32(w, (uint32_t)o.gamma);
    stochflow__w_u32(w, (uint32_t)o.flags);
    stochflow__w_f64(w, o.scale);
}

int stochflow__objective_section_read(stochflow_config *c, const uint8_t *p, uint64_t len) {
    RETURN_ERROR_IF(len != 24, STOCHFLOW_E_FORMAT, "checkpoint SINT section malformed");
    stochflow__reader r = {p, (size_t)len, 0};
    uint32_t v[4];
    for (int k = 0; k < 4; ++k) {
        v[k] = stochflow__r_u32(&r);
        RETURN_ERROR_IF(v[k] > 64, STOCHFLOW_E_FORMAT, "checkpoint SINT value %u", v[k]);
    }
    stochflow__objective o = {(int)v[0], (int)v[1], (int)v[2], stochflow__r_f64(&r), (int)v[3]};
    RETURN_ERROR_IF(check_objective(&o) != 0 || stochflow__objective_plain(&o),
                    STOCHFLOW_E_FORMAT, "checkpoint SINT section: invalid objective");
    c->obj = resolved(&o);
    return 0;
}
