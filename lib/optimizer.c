/* optimizer.c - Adam (bias-corrected, decoupled weight decay), gradient clipping,
 * learning-rate schedules and the EMA of the weights. One flat loop over the
 * contiguous parameter block. */
#include <math.h>

#include "model.h"

#define PI 3.14159265358979323846

double stochflow__model_lr(const stochflow_model *m) {
    const stochflow__hparams *hp = &m->hp;
    double step = (double)m->step, lr = hp->lr;
    switch ((int)hp->lr_schedule) {
    case STOCHFLOW_LR_STEP:
        lr *= pow(hp->lr_decay_factor, floor(step / hp->lr_decay_every));
        break;
    case STOCHFLOW_LR_COSINE: {
        double frac = step >= hp->lr_total_steps ? 1.0 : step / hp->lr_total_steps;
        lr = hp->lr_min + 0.5 * (hp->lr - hp->lr_min) * (1.0 + cos(PI * frac));
        break;
    }
    default: break;
    }
    if (hp->lr_warmup > 0 && step < hp->lr_warmup) lr *= (step + 1.0) / hp->lr_warmup;
    return lr;
}

/* Hot loops compiled for x86-64-v3 and the baseline (see layers.c); same results. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(STOCHFLOW_NO_CLONES)
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SIMD_CLONES
#endif

/* Squared L2 norm of g in double (8 partial sums, fixed order); *bad = 1 when some
 * value is NaN or Inf. Branch-free so it vectorizes. */
SIMD_CLONES
static double grad_sq_norm(const float *g, size_t n, int *bad) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int nonfinite = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) {
            float v = g[i + l];
            nonfinite |= !(v - v == 0.0f);
            acc[l] += (double)v * (double)v;
        }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) {
        nonfinite |= !(g[i] - g[i] == 0.0f);
        s += (double)g[i] * g[i];
    }
    *bad = nonfinite;
    return s;
}

typedef struct {
    float fs, b1, b2, c1, c2, inv_bc1, inv_bc2, lr, eps, wd;
} adam_coef;

/* One Adam update of element i (bias-corrected, decoupled weight decay). */
#define ADAM_ELEMENT(c, gi_, m_old, v_old, p_old, m_new, v_new, p_new)                       \
    do {                                                                                     \
        float g_ = (gi_) * (c).fs;                                                           \
        m_new = (c).b1 * (m_old) + (c).c1 * g_;                                              \
        v_new = (c).b2 * (v_old) + (c).c2 * g_ * g_;                                         \
        p_new = (p_old) - (c).lr * ((m_new * (c).inv_bc1) / (sqrtf(v_new * (c).inv_bc2) + (c).eps)) - \
                (c).wd * (p_old);                                                            \
    } while (0)

/* Would the update be finite everywhere? (A finite gradient whose square overflows
 * float in the second moment, or moments already non-finite, would not be.) Returns
 * the first offending index, or n. Branch-free pass, then a scalar search. */
SIMD_CLONES
static size_t adam_first_nonfinite(const float *p, const float *mm, const float *vv,
                                   const float *g, size_t n, adam_coef c) {
    int bad = 0;
    for (size_t i = 0; i < n; ++i) {
        float mi, vi, pi;
        ADAM_ELEMENT(c, g[i], mm[i], vv[i], p[i], mi, vi, pi);
        bad |= !(mi - mi == 0.0f && vi - vi == 0.0f && pi - pi == 0.0f);
    }
    if (!bad) return n;
    for (size_t i = 0; i < n; ++i) {
        float mi, vi, pi;
        ADAM_ELEMENT(c, g[i], mm[i], vv[i], p[i], mi, vi, pi);
        if (!(mi - mi == 0.0f && vi - vi == 0.0f && pi - pi == 0.0f)) return i;
    }
    return n;
}

SIMD_CLONES
static void adam_update(float *p, float *mm, float *vv, const float *g, size_t n, adam_coef c) {
    for (size_t i = 0; i < n; ++i) {
        float mi, vi, pi;
        ADAM_ELEMENT(c, g[i], mm[i], vv[i], p[i], mi, vi, pi);
        mm[i] = mi;
        vv[i] = vi;
        p[i] = pi;
    }
}

int stochflow__optimizer_apply(stochflow_model *m) {
    const size_t n = m->n_params;
    float *p = m->params, *g = m->grads, *mm = m->adam_m, *vv = m->adam_v;
    /* Check everything before touching the state: a failure leaves the model as it was. */
    int bad;
    double sq = grad_sq_norm(g, n, &bad);
    if (bad) {
        size_t i = 0;
        while (i < n && g[i] - g[i] == 0.0f) ++i;
        return stochflow__error(STOCHFLOW_E_NONFINITE,
                                "gradient is not finite at parameter %zu (step %llu); "
                                "model unchanged", i, (unsigned long long)m->step);
    }
    const stochflow__hparams *hp = &m->hp;
    double scale = 1.0;
    if (hp->grad_clip > 0) {
        double norm = sqrt(sq);
        if (norm > hp->grad_clip) scale = hp->grad_clip / norm;
    }
    const double t = (double)m->step + 1.0;
    const double lr = stochflow__model_lr(m);
    adam_coef c;
    c.fs = (float)scale;
    c.b1 = (float)hp->beta1;
    c.b2 = (float)hp->beta2;
    c.c1 = (float)(1.0 - hp->beta1);
    c.c2 = (float)(1.0 - hp->beta2);
    c.inv_bc1 = (float)(1.0 / (1.0 - pow(hp->beta1, t)));
    c.inv_bc2 = (float)(1.0 / (1.0 - pow(hp->beta2, t)));
    c.lr = (float)lr;
    c.eps = (float)hp->eps;
    c.wd = (float)(lr * hp->weight_decay);
    /* Refuse an update that would not be finite: the model stays at its last finite
     * state (issue 7; tests/check_reliability.c). */
    size_t badi = adam_first_nonfinite(p, mm, vv, g, n, c);
    if (badi < n)
        return stochflow__error(STOCHFLOW_E_NONFINITE,
                                "update is not finite at parameter %zu (step %llu, gradient "
                                "%g); model unchanged (STOCHFLOW_PARAM_GRAD_CLIP bounds it)",
                                badi, (unsigned long long)m->step, (double)g[badi]);
    adam_update(p, mm, vv, g, n, c);
    if (hp->ema_decay > 0) {
        if (!m->ema_valid) {
            for (size_t i = 0; i < n; ++i) m->ema[i] = p[i];
            m->ema_valid = 1;
        } else {
            const float a = (float)hp->ema_decay, b = (float)(1.0 - hp->ema_decay);
            for (size_t i = 0; i < n; ++i) m->ema[i] = a * m->ema[i] + b * p[i];
        }
    }
    m->step++;
    return 0;
}
