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

int stochflow__optimizer_apply(stochflow_model *m) {
    const size_t n = m->n_params;
    float *p = m->params, *g = m->grads, *mm = m->adam_m, *vv = m->adam_v;
    /* Check everything before touching the state: a failure leaves the model as it was. */
    double sq = 0.0;
    for (size_t i = 0; i < n; ++i) {
        if (!(g[i] - g[i] == 0.0f))
            return stochflow__error(STOCHFLOW_E_NONFINITE,
                                    "gradient is not finite at parameter %zu (step %llu); "
                                    "model unchanged", i, (unsigned long long)m->step);
        sq += (double)g[i] * g[i];
    }
    const stochflow__hparams *hp = &m->hp;
    double scale = 1.0;
    if (hp->grad_clip > 0) {
        double norm = sqrt(sq);
        if (norm > hp->grad_clip) scale = hp->grad_clip / norm;
    }
    const double t = (double)m->step + 1.0;
    const double lr = stochflow__model_lr(m);
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    const float c1 = (float)(1.0 - hp->beta1), c2 = (float)(1.0 - hp->beta2);
    const float inv_bc1 = (float)(1.0 / (1.0 - pow(hp->beta1, t)));
    const float inv_bc2 = (float)(1.0 / (1.0 - pow(hp->beta2, t)));
    const float flr = (float)lr, eps = (float)hp->eps, wd = (float)(lr * hp->weight_decay);
    const float fs = (float)scale;
    /* Refuse an update that would not be finite (a finite gradient whose square
     * overflows float in the second moment, or moments already non-finite): the model
     * stays at its last finite state (issue 7; tests/check_reliability.c). */
    for (size_t i = 0; i < n; ++i) {
        float gi = g[i] * fs;
        float mi = b1 * mm[i] + c1 * gi;
        float vi = b2 * vv[i] + c2 * gi * gi;
        float pi = p[i] - flr * ((mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps)) - wd * p[i];
        if (!(mi - mi == 0.0f && vi - vi == 0.0f && pi - pi == 0.0f))
            return stochflow__error(STOCHFLOW_E_NONFINITE,
                                    "update is not finite at parameter %zu (step %llu, gradient "
                                    "%g); model unchanged (STOCHFLOW_PARAM_GRAD_CLIP bounds it)",
                                    i, (unsigned long long)m->step, (double)g[i]);
    }
    for (size_t i = 0; i < n; ++i) {
        float gi = g[i] * fs;
        float mi = b1 * mm[i] + c1 * gi;
        float vi = b2 * vv[i] + c2 * gi * gi;
        mm[i] = mi;
        vv[i] = vi;
        float upd = (mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps);
        p[i] = p[i] - flr * upd - wd * p[i];
    }
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
