/* optimizer.c - Adam (bias-corrected, decoupled weight decay), gradient clipping,
 * learning-rate schedules and the EMA of the weights: one flat loop over the
 * contiguous parameter block. The same Adam (one set of step coefficients, one moment
 * update) also takes the ascent step of the learnable interpolant's coefficients
 * (double, no clipping or weight decay, sign reversed: the interpolant maximizes the
 * loss the network minimizes). */
#include <math.h>

#include "model.h"
#include "parallel.h"


double stochflow__model_lr(const stochflow_model *m) {
    const stochflow__hparams *hp = &m->hp;
    double step = (double)m->step, lr = hp->lr;
    switch ((int)hp->lr_schedule) {
    case STOCHFLOW_LR_STEP:
        lr *= pow(hp->lr_decay_factor, floor(step / hp->lr_decay_every));
        break;
    case STOCHFLOW_LR_COSINE: {
        double frac = step >= hp->lr_total_steps ? 1.0 : step / hp->lr_total_steps;
        lr = hp->lr_min + 0.5 * (hp->lr - hp->lr_min) * (1.0 + cos(STOCHFLOW__PI * frac));
        break;
    }
    default: break;
    }
    if (hp->lr_warmup > 0 && step < hp->lr_warmup) lr *= (step + 1.0) / hp->lr_warmup;
    return lr;
}

/* 1 when some value of g[lo, hi) is NaN or Inf (branch-free, vectorizes). */
SIMD_CLONES
static int any_nonfinite(const float *g, size_t lo, size_t hi) {
    int bad = 0;
    for (size_t i = lo; i < hi; ++i) bad |= !stochflow__finitef(g[i]);
    return bad;
}

/* Squared L2 norm of g in double (8 partial sums, fixed order, one thread). */
SIMD_CLONES
static double sq_norm(const float *g, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += (double)g[i + l] * (double)g[i + l];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) s += (double)g[i] * g[i];
    return s;
}

/* The coefficients of Adam step t (counting from 1), in double: both updates below are
 * written with them, the float one rounding each once. */
typedef struct {
    double b1, b2, c1, c2; /* beta1, beta2, 1 - beta1, 1 - beta2 */
    double bc1, bc2;       /* bias corrections 1 - beta^t */
    double eps;
} adam_step;

static adam_step adam_step_at(const stochflow__hparams *hp, double t) {
    return (adam_step){hp->beta1, hp->beta2, 1.0 - hp->beta1, 1.0 - hp->beta2,
                       1.0 - pow(hp->beta1, t), 1.0 - pow(hp->beta2, t), hp->eps};
}

/* The moment update shared by both forms: m = b1 m + c1 g, v = b2 v + c2 g^2. */
#define ADAM_MOMENTS(c, g_, m_old, v_old, m_new, v_new)  \
    do {                                                 \
        m_new = (c).b1 * (m_old) + (c).c1 * (g_);        \
        v_new = (c).b2 * (v_old) + (c).c2 * (g_) * (g_); \
    } while (0)

/* The float weight block's step: adam_step rounded to float, plus the clipping factor
 * fs, the learning rate and the decoupled weight decay. */
typedef struct {
    float fs, b1, b2, c1, c2, inv_bc1, inv_bc2, lr, eps, wd;
} adam_coef;

/* One Adam update of element i (bias-corrected, decoupled weight decay). */
#define ADAM_ELEMENT(c, gi_, m_old, v_old, p_old, m_new, v_new, p_new)                       \
    do {                                                                                     \
        float g_ = (gi_) * (c).fs;                                                           \
        ADAM_MOMENTS(c, g_, m_old, v_old, m_new, v_new);                                     \
        p_new = (p_old) - (c).lr * ((m_new * (c).inv_bc1) / (sqrtf(v_new * (c).inv_bc2) + (c).eps)) - \
                (c).wd * (p_old);                                                            \
    } while (0)

/* Would the update of [lo, hi) be finite? (A finite gradient whose square overflows
 * float in the second moment, or moments already non-finite, would not be.) Returns 1
 * when it would not. Branch-free, vectorizes. */
SIMD_CLONES
static int adam_any_nonfinite(const float *p, const float *mm, const float *vv, const float *g,
                              size_t lo, size_t hi, adam_coef c) {
    int bad = 0;
    for (size_t i = lo; i < hi; ++i) {
        float mi, vi, pi;
        ADAM_ELEMENT(c, g[i], mm[i], vv[i], p[i], mi, vi, pi);
        bad |= !(stochflow__finitef(mi) && stochflow__finitef(vi) && stochflow__finitef(pi));
    }
    return bad;
}

/* Index of the first element whose update is not finite (scalar search, only run
 * once adam_any_nonfinite found one). */
static size_t adam_first_nonfinite(const float *p, const float *mm, const float *vv,
                                   const float *g, size_t n, adam_coef c) {
    for (size_t i = 0; i < n; ++i) {
        float mi, vi, pi;
        ADAM_ELEMENT(c, g[i], mm[i], vv[i], p[i], mi, vi, pi);
        if (!(stochflow__finitef(mi) && stochflow__finitef(vi) && stochflow__finitef(pi))) return i;
    }
    return n;
}

SIMD_CLONES
static void adam_update(float *p, float *mm, float *vv, const float *g, size_t lo, size_t hi,
                        adam_coef c) {
    for (size_t i = lo; i < hi; ++i) {
        float mi, vi, pi;
        ADAM_ELEMENT(c, g[i], mm[i], vv[i], p[i], mi, vi, pi);
        mm[i] = mi;
        vv[i] = vi;
        p[i] = pi;
    }
}

/* The error for a gradient with a NaN or Inf (the first one's index). */
static int gradient_error(const stochflow_model *m, const float *g, size_t n) {
    size_t i = 0;
    while (i < n && stochflow__finitef(g[i])) ++i;
    return stochflow__error(STOCHFLOW_E_NONFINITE,
                            "gradient is not finite at parameter %zu (step %llu); "
                            "model unchanged", i, (unsigned long long)m->step);
}

/* 0 when every gradient value is finite, else gradient_error's status. */
static int gradient_check_serial(const stochflow_model *m, const float *g, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (!stochflow__finitef(g[i])) return gradient_error(m, g, n);
    return 0;
}

/* The learnable interpolant's coefficients: one Adam ASCENT step (the interpolant
 * maximizes min_v G, the shortest path), at the network's schedule scaled to
 * interp_lr: lr_interp * (lr(step) / lr). In double, dividing by the bias corrections. */
static void coef_ascent(stochflow__interp *ip, stochflow__transport *tr,
                        const stochflow__hparams *hp, const adam_step *as, double lr_now) {
    const double lr = hp->interp_lr * (lr_now / hp->lr);
    for (size_t k = 0; k < 2 * ip->n_modes; ++k) {
        double mk, vk;
        ADAM_MOMENTS(*as, tr->grad[k], tr->adam_m[k], tr->adam_v[k], mk, vk);
        tr->adam_m[k] = mk;
        tr->adam_v[k] = vk;
        ip->coef[k] += lr * (mk / as->bc1) / (sqrt(vk / as->bc2) + as->eps);
    }
}

int stochflow__optimizer_apply(stochflow_model *m) {
    const size_t n = m->n_params;
    stochflow__interp *ip = &m->cfg.interp;
    const int ascent = ip->kind == STOCHFLOW_INTERP_FOURIER && m->tr.grad_valid;
    if (ascent)
        for (size_t k = 0; k < 2 * ip->n_modes; ++k)
            RETURN_ERROR_IF(!isfinite(m->tr.grad[k]), STOCHFLOW_E_NONFINITE,
                            "interpolant coefficient gradient is not finite (step %llu); "
                            "model unchanged", (unsigned long long)m->step);
    float *p = m->params, *g = m->grads, *mm = m->adam_m, *vv = m->adam_v;
    /* Check everything before touching the state: a failure leaves the model as it was.
     * A non-finite gradient makes the update non-finite, so one vectorized pass
     * (adam_any_nonfinite below) catches both; the messages tell them apart. */
    const int nt = (int)m->hp.threads;
    int bad = 0;
    const stochflow__hparams *hp = &m->hp;
    double scale = 1.0;
    if (hp->grad_clip > 0) {
        /* the norm of a non-finite gradient is not finite: check it first */
        int bad_g = 0;
#define BODY(lo, hi)                                    \
    do {                                                \
        int b_ = any_nonfinite(g, lo, hi);              \
        if (b_) {                                       \
            _Pragma("omp atomic write") bad_g = 1;      \
        }                                               \
    } while (0)
        PARALLEL_RANGES(n, n, nt, 16, BODY);
#undef BODY
        if (bad_g) return gradient_error(m, g, n);
        double norm = sqrt(sq_norm(g, n));
        if (norm > hp->grad_clip) scale = hp->grad_clip / norm;
    }
    const adam_step as = adam_step_at(hp, (double)m->step + 1.0);
    const double lr = stochflow__model_lr(m);
    adam_coef c;
    c.fs = (float)scale;
    c.b1 = (float)as.b1;
    c.b2 = (float)as.b2;
    c.c1 = (float)as.c1;
    c.c2 = (float)as.c2;
    c.inv_bc1 = (float)(1.0 / as.bc1);
    c.inv_bc2 = (float)(1.0 / as.bc2);
    c.lr = (float)lr;
    c.eps = (float)as.eps;
    c.wd = (float)(lr * hp->weight_decay);
    /* Refuse an update that would not be finite: the model stays at its last finite
     * state (tests/check_reliability.c). */
    bad = 0;
#define BODY(lo, hi)                                             \
    do {                                                         \
        int b_ = adam_any_nonfinite(p, mm, vv, g, lo, hi, c);    \
        if (b_) {                                                \
            _Pragma("omp atomic write") bad = 1;                 \
        }                                                        \
    } while (0)
    PARALLEL_RANGES(n, n, nt, 16, BODY);
#undef BODY
    if (bad) FORWARD_IF_ERROR(gradient_check_serial(m, g, n));
    size_t badi = bad ? adam_first_nonfinite(p, mm, vv, g, n, c) : n;
    if (badi < n)
        return stochflow__error(STOCHFLOW_E_NONFINITE,
                                "update is not finite at parameter %zu (step %llu, gradient "
                                "%g); model unchanged (STOCHFLOW_PARAM_GRAD_CLIP bounds it)",
                                badi, (unsigned long long)m->step, (double)g[badi]);
    /* EMA warm-up (STOCHFLOW_PARAM_EMA_WARMUP = 1), the rule of TensorFlow's
     * ExponentialMovingAverage with num_updates: at step s (the counter before this
     * update) the decay is min(ema_decay, (1 + s) / (10 + s)), and the EMA starts from
     * the weights before its first update (the shadow variable's initial value), so a
     * model trained with EMA from step 0 blends them with decay 0.1. Nothing can fail
     * past the checks above, so starting the EMA here keeps a failed step harmless.
     * With the default (2) the EMA starts as a copy of the weights after its first
     * update and decays at the constant rate ema_decay, exactly as before. */
    const int ema_warm = hp->ema_decay > 0 && hp->ema_warmup == 1.0;
    if (ema_warm && !m->ema_valid) {
        for (size_t i = 0; i < n; ++i) m->ema[i] = p[i];
        m->ema_valid = 1;
    }
#define BODY(lo, hi) adam_update(p, mm, vv, g, lo, hi, c)
    PARALLEL_RANGES(n, n, nt, 16, BODY);
#undef BODY
    if (hp->ema_decay > 0) {
        if (!m->ema_valid) {
            for (size_t i = 0; i < n; ++i) m->ema[i] = p[i];
            m->ema_valid = 1;
        } else {
            double decay = hp->ema_decay;
            if (ema_warm) {
                const double s = (double)m->step, w = (1.0 + s) / (10.0 + s);
                if (w < decay) decay = w;
            }
            const float a = (float)decay, b = (float)(1.0 - decay);
            for (size_t i = 0; i < n; ++i) m->ema[i] = a * m->ema[i] + b * p[i];
        }
    }
    if (ascent) coef_ascent(ip, &m->tr, hp, &as, lr);
    m->step++;
    return 0;
}
