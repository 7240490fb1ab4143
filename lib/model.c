/* model.c - the MLP velocity field v(t, x): construction, forward, loss and gradient,
 * input vector-Jacobian products, and the forward-mode Jacobian trace.
 *
 * Network: input u = [x, phi(t)] (n_in = d + n_time), hidden layers
 *   z_l = a_{l-1} W_l^T + b_l,  a_l = f(z_l)     (l = 1..L, a_0 = u)
 * and a linear output v = a_L W_o^T + b_o. Parameters live in one flat block, layer by
 * layer, each layer as W (out x in, row-major) then b (out). How a batch becomes a
 * gradient step: doc/architecture.md; derivations: doc/gradients.md. */
#include <math.h>
#include <string.h>

#include "layers.h"
#include "model.h"
#include "parallel.h"

#define PI 3.14159265358979323846
/* Rows per chunk of an evaluation: rows * (1 + tangents) stays below this, so the
 * workspace of velocity/divergence calls is bounded whatever n is. */
#define EVAL_BUDGET_ROWS 8192
/* Rows (times 1 + tangents) of one block of a velocity/divergence evaluation, and the
 * number of blocks a batch is cut into at least when it has enough rows (so that small
 * batches still give every thread work). Measured: bench/profile.md. */
#define EVAL_BLOCK_ROWS 512
#define EVAL_MIN_BLOCKS 8
#define MAX_BATCH ((size_t)1 << 28)

/* ---- construction --------------------------------------------------------------- */

static size_t time_features(const stochflow_config *c) {
    return c->time_kind == STOCHFLOW_TIME_FOURIER ? 1 + 2 * c->n_freq : 1;
}

/* Layer geometry and parameter count from a validated config (no allocation).
 * Returns -1 if the count overflows. */
static int layout(stochflow_model *m, const stochflow_config *c) {
    m->d = c->dim;
    if (c->arch == STOCHFLOW_ARCH_UNET) { /* issue 8: geometry lives in the U-Net */
        m->n_time = m->n_in = m->n_layers = m->max_width = 0;
        return 0;
    }
    m->n_time = time_features(c);
    m->n_in = m->d + m->n_time;
    m->n_layers = c->n_hidden + 1;
    m->max_width = 0;
    size_t off = 0, in = m->n_in;
    for (size_t l = 0; l < m->n_layers; ++l) {
        size_t out = l < c->n_hidden ? c->hidden[l] : m->d;
        if (l < c->n_hidden && out > m->max_width) m->max_width = out;
        size_t wcount;
        if (stochflow__mul_size(&wcount, in, out) != 0) return -1;
        m->layers[l] = (stochflow__dense){in, out, off, off + wcount};
        if (off + wcount + out < off) return -1;
        off += wcount + out;
        in = out;
    }
    m->n_params = off;
    return 0;
}

int stochflow__model_param_count(size_t *count, const stochflow_config *cfg) {
    stochflow_model tmp;
    FORWARD_IF_ERROR(stochflow__config_validate(cfg));
    if (cfg->arch == STOCHFLOW_ARCH_UNET) {
        stochflow__unet *u = NULL;
        FORWARD_IF_ERROR(stochflow__unet_build(&u, count, &cfg->unet));
        stochflow__unet_free(u);
        return 0;
    }
    RETURN_ERROR_IF(layout(&tmp, cfg) != 0, STOCHFLOW_E_INVALID, "parameter count overflows");
    *count = tmp.n_params;
    return 0;
}

static void init_weights(stochflow_model *m) {
    /* PyTorch's nn.Linear default: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
     * Row j of layer l draws from (seed, INIT stream, step = l, row = j). */
    for (size_t l = 0; l < m->n_layers; ++l) {
        const stochflow__dense *L = &m->layers[l];
        double bound = 1.0 / sqrt((double)L->in);
        for (size_t j = 0; j < L->out; ++j) {
            stochflow__rng r;
            stochflow__rng_init(&r, m->cfg.seed, STOCHFLOW__STREAM_INIT, l, j);
            float *w = m->params + L->w_off + j * L->in;
            for (size_t k = 0; k < L->in; ++k)
                w[k] = (float)((2.0 * stochflow__rng_uniform(&r) - 1.0) * bound);
            m->params[L->b_off + j] = (float)((2.0 * stochflow__rng_uniform(&r) - 1.0) * bound);
        }
    }
}

int stochflow__model_build(stochflow_model **out, const stochflow_config *cfg, int init) {
    FORWARD_IF_ERROR(stochflow__config_validate(cfg));
    stochflow_model *m = stochflow__calloc(1, sizeof *m);
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_NOMEM, "model_new: out of memory");
    m->cfg = *cfg;
    m->interp = (stochflow__interp){
        .kind = cfg->interpolant, .fn = cfg->schedule, .user = cfg->schedule_user};
    m->interp.base = cfg->interp_base; /* issue 9: FOURIER only; coefficients start at 0 */
    m->interp.n_modes = cfg->n_modes;
    if (layout(m, cfg) != 0) {
        stochflow__free(m);
        return stochflow__error(STOCHFLOW_E_INVALID, "model_new: parameter count overflows");
    }
    if (cfg->arch == STOCHFLOW_ARCH_UNET) {
        int rc = stochflow__unet_build(&m->unet, &m->n_params, &cfg->unet);
        if (rc < 0) {
            stochflow__free(m);
            return rc;
        }
    }
    size_t total;
    if (stochflow__mul_size(&total, m->n_params, 5) != 0 ||
        (m->params = stochflow__calloc(total, sizeof(float))) == NULL) {
        size_t np = m->n_params; /* read before the free (ASan: heap-use-after-free) */
        stochflow__unet_free(m->unet);
        stochflow__free(m);
        return stochflow__error(STOCHFLOW_E_NOMEM, "model_new: cannot allocate %zu parameters",
                                np);
    }
    m->grads = m->params + m->n_params;
    m->ema = m->grads + m->n_params;
    m->adam_m = m->ema + m->n_params;
    m->adam_v = m->adam_m + m->n_params;
    stochflow__hparams_defaults(&m->hp);
    if (init) {
        if (m->unet)
            stochflow__unet_init(m->unet, m->params, cfg->seed);
        else
            init_weights(m);
    }
    *out = m;
    return 0;
}

STOCHFLOW_API int stochflow_model_new(stochflow_model **out, const stochflow_config *cfg) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "model_new: out is NULL");
    *out = NULL;
    RETURN_ERROR_IF(cfg == NULL, STOCHFLOW_E_INVALID, "model_new: config is NULL");
    return stochflow__model_build(out, cfg, 1);
}

STOCHFLOW_API void stochflow_model_free(stochflow_model *m) {
    if (m == NULL) return;
    stochflow__free(m->params);
    stochflow__free(m->ws);
    stochflow__transport_free(m); /* issue 9 */
    stochflow__unet_free(m->unet); /* issue 8 */
    stochflow__free(m->carried.sections);
    stochflow__free(m->carried.hpar);
    stochflow__free(m);
}

#define CHECK_MODEL(m) RETURN_ERROR_IF((m) == NULL, STOCHFLOW_E_INVALID, "model is NULL")

STOCHFLOW_API int stochflow_model_config(stochflow_config **out, const stochflow_model *m) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "model_config: out is NULL");
    *out = NULL;
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    stochflow_config *c = stochflow__malloc(sizeof *c);
    RETURN_ERROR_IF(c == NULL, STOCHFLOW_E_NOMEM, "model_config: out of memory");
    *c = m->cfg;
    *out = c;
    return 0;
}

/* value getters: 0 and the thread's message for a NULL model (doc/errors.md) */
STOCHFLOW_API size_t stochflow_model_dim(const stochflow_model *m) {
    return m ? m->d : (size_t)stochflow__null_handle("model_dim", "model");
}
STOCHFLOW_API size_t stochflow_model_num_params(const stochflow_model *m) {
    return m ? m->n_params : (size_t)stochflow__null_handle("model_num_params", "model");
}
STOCHFLOW_API uint64_t stochflow_model_step(const stochflow_model *m) {
    return m ? m->step : (uint64_t)stochflow__null_handle("model_step", "model");
}
int stochflow__model_threads(const stochflow_model *m) { return (int)m->hp.threads; }

STOCHFLOW_API int stochflow_model_set_param(stochflow_model *m, int key, double value) {
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    double *field = stochflow__hparams_field(&m->hp, key);
    RETURN_ERROR_IF(field == NULL, STOCHFLOW_E_UNSUPPORTED,
                    "model_set_param: key %d is not a model parameter", key);
    double resolved;
    FORWARD_IF_ERROR(stochflow__param_resolve(&resolved, key, value));
    *field = resolved;
    return 0;
}

STOCHFLOW_API int stochflow_model_get_param(double *out, const stochflow_model *m, int key) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "model_get_param: out is NULL");
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    double *field = stochflow__hparams_field((stochflow__hparams *)&m->hp, key);
    RETURN_ERROR_IF(field == NULL, STOCHFLOW_E_UNSUPPORTED,
                    "model_get_param: key %d is not a model parameter", key);
    *out = *field;
    return 0;
}

STOCHFLOW_API int stochflow_model_set_schedule(stochflow_model *m, stochflow_schedule_fn fn,
                                               void *user) {
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF(m->cfg.interpolant != STOCHFLOW_INTERP_CUSTOM, STOCHFLOW_E_INVALID,
                    "model_set_schedule: the model's interpolant is not custom");
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "model_set_schedule: callback is NULL");
    stochflow__interp ip = {.kind = STOCHFLOW_INTERP_CUSTOM, .fn = fn, .user = user};
    FORWARD_IF_ERROR(stochflow__interp_check(&ip));
    m->interp = ip;
    m->cfg.schedule = fn;
    m->cfg.schedule_user = user;
    return 0;
}

STOCHFLOW_API int stochflow_model_parameters(float **params, size_t *count, stochflow_model *m) {
    RETURN_ERROR_IF(params == NULL, STOCHFLOW_E_INVALID, "model_parameters: params is NULL");
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    *params = m->params;
    if (count) *count = m->n_params;
    return 0;
}

STOCHFLOW_API int stochflow_model_gradients(float **grads, size_t *count, stochflow_model *m) {
    RETURN_ERROR_IF(grads == NULL, STOCHFLOW_E_INVALID, "model_gradients: grads is NULL");
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    *grads = m->grads;
    if (count) *count = m->n_params;
    return 0;
}

/* ---- workspace ------------------------------------------------------------------ */

static int ensure_ws(stochflow_model *m, size_t floats) {
    if (floats <= m->ws_floats) return 0;
    float *p = stochflow__alloc_array(floats, sizeof(float));
    RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM, "cannot allocate a workspace of %zu floats",
                    floats);
    stochflow__free(m->ws);
    m->ws = p;
    m->ws_floats = floats;
    return 0;
}

/* Activations of one forward pass over `rows` rows, carved from the workspace. */
typedef struct {
    float *u;                               /* [rows x n_in] input [x, phi(t)] */
    float *a[STOCHFLOW__MAX_HIDDEN];        /* [rows x H_l] post-activation */
    float *fd[STOCHFLOW__MAX_HIDDEN];       /* [rows x H_l] f'(z_l) */
    float *out;                             /* [rows x d] */
} acts;

/* Floats needed by carve_acts for `rows` rows. */
static int acts_floats(size_t *out, const stochflow_model *m, size_t rows) {
    size_t per_row = m->n_in + m->d;
    for (size_t l = 0; l + 1 < m->n_layers; ++l) per_row += 2 * m->layers[l].out;
    if (stochflow__mul_size(out, per_row, rows) != 0) return -1;
    return 0;
}

static float *carve_acts(acts *A, const stochflow_model *m, float *p, size_t rows) {
    A->u = p;
    p += rows * m->n_in;
    for (size_t l = 0; l + 1 < m->n_layers; ++l) {
        A->a[l] = p;
        p += rows * m->layers[l].out;
        A->fd[l] = p;
        p += rows * m->layers[l].out;
    }
    A->out = p;
    p += rows * m->d;
    return p;
}

static void time_embed(float *phi, const stochflow_model *m, double t) {
    phi[0] = (float)t;
    for (size_t k = 1; k <= m->cfg.n_freq; ++k) {
        phi[2 * k - 1] = (float)sin(PI * (double)k * t);
        phi[2 * k] = (float)cos(PI * (double)k * t);
    }
}

/* Forward pass over rows rows whose inputs A->u are filled; weights p. The activation
 * derivatives f'(z) are stored only when want_deriv (backward and the trace need them;
 * plain velocity evaluations do not). */
static void forward(const stochflow_model *m, const float *p, const acts *A, size_t rows,
                    int want_deriv, int nt) {
    const float *in = A->u;
    for (size_t l = 0; l < m->n_layers; ++l) {
        const stochflow__dense *L = &m->layers[l];
        if (l + 1 < m->n_layers) {
            stochflow__dense_act_forward(A->a[l], want_deriv ? A->fd[l] : NULL, in,
                                         p + L->w_off, p + L->b_off, rows, L->in, L->out,
                                         m->cfg.activation, nt);
            in = A->a[l];
        } else {
            stochflow__dense_forward(A->out, in, p + L->w_off, p + L->b_off, rows, L->in, L->out,
                                     nt);
        }
    }
}

/* Backward pass from dout [rows x d] through the network of weights p.
 * grads != NULL: accumulate parameter gradients into it. dx != NULL: write the
 * gradient with respect to the input u ([rows x n_in]). g1, g2: [rows x max_width];
 * part: [STOCHFLOW__BIAS_BLOCKS x max_width] block sums of the bias gradients (only
 * read when grads is not NULL). */
static void backward(const stochflow_model *m, const float *p, const acts *A, size_t rows,
                     const float *dout, float *grads, float *dx, float *g1, float *g2,
                     float *part) {
    int nt = (int)m->hp.threads;
    const float *dy = dout;
    int db_done = 0; /* layer l's bias gradient was summed in the activation pass */
    for (size_t l = m->n_layers; l-- > 0;) {
        const stochflow__dense *L = &m->layers[l];
        const float *x = l == 0 ? A->u : A->a[l - 1];
        float *dxl = l == 0 ? dx : g1;
        stochflow__dense_backward(dxl, 0, grads ? grads + L->w_off : NULL,
                                  grads && !db_done ? grads + L->b_off : NULL, dy, x,
                                  p + L->w_off, rows, L->in, L->out, nt);
        if (l > 0) {
            /* through the activation of hidden layer l-1, and its bias gradient */
            const stochflow__dense *P = &m->layers[l - 1];
            stochflow__act_backward_bias(g1, grads ? grads + P->b_off : NULL, part, g1,
                                         A->fd[l - 1], rows, L->in, nt);
            db_done = 1;
            dy = g1;
            float *tmp = g1;
            g1 = g2;
            g2 = tmp;
        }
    }
}

static const float *eval_weights(const stochflow_model *m) {
    if (m->hp.eval_weights == 1 && m->hp.ema_decay > 0 && m->ema_valid) return m->ema;
    return m->params;
}

/* ---- loss and gradient ---------------------------------------------------------- */

static int check_batch(const stochflow_model *m, const float *x1, size_t n, const float *x0,
                       const float *t) {
    RETURN_ERROR_IF(x1 == NULL, STOCHFLOW_E_INVALID, "data x1 is NULL");
    RETURN_ERROR_IF(n == 0, STOCHFLOW_E_INVALID, "batch size is 0");
    RETURN_ERROR_IF(n > MAX_BATCH, STOCHFLOW_E_INVALID, "batch size %zu exceeds %zu", n,
                    MAX_BATCH);
    FORWARD_IF_ERROR(stochflow__check_finite(x1, n * m->d, "data x1"));
    if (x0) FORWARD_IF_ERROR(stochflow__check_finite(x0, n * m->d, "base samples x0"));
    if (t) {
        FORWARD_IF_ERROR(stochflow__check_finite(t, n, "times t"));
        for (size_t i = 0; i < n; ++i)
            RETURN_ERROR_IF(t[i] < 0.0f || t[i] > 1.0f, STOCHFLOW_E_INVALID,
                            "time t[%zu] = %g outside [0, 1]", i, (double)t[i]);
    }
    return 0;
}

/* Loss (and, with want_grad, gradient into m->grads) on one batch. Draws use the
 * training streams (train = 1) or the evaluation streams, keyed by the current step. */
/* Rows [lo, hi) of a training batch: draw t and x0 where not given, write the network
 * input u = [x_t, phi(t)] and the target dI/dt. */
static void assemble_rows(const stochflow_model *m, float *ubase, size_t stride, float *tvec,
                          float *target, const float *x1, const float *x0, const float *t,
                          double *t_save, int train, size_t lo, size_t hi) {
    const size_t d = m->d;
    for (size_t i = lo; i < hi; ++i) {
        stochflow__rng rt, rx;
        double ti;
        if (t) {
            ti = t[i];
        } else {
            stochflow__rng_init(&rt, m->cfg.seed, train ? STOCHFLOW__STREAM_T : STOCHFLOW__STREAM_EVAL_T,
                                m->step, i);
            ti = stochflow__rng_uniform(&rt);
        }
        if (t_save) t_save[i] = ti; /* issue 9 */
        double c[4];
        (void)stochflow__interp_eval(&m->interp, ti, c); /* checked by the caller */
        if (!x0)
            stochflow__rng_init(&rx, m->cfg.seed, train ? STOCHFLOW__STREAM_X0 : STOCHFLOW__STREAM_EVAL_X0,
                                m->step, i);
        float *u = ubase + i * stride;
        float *tg = target + i * d;
        const float *x1r = x1 + i * d;
        for (size_t k = 0; k < d; ++k) {
            double z = x0 ? (double)x0[i * d + k] : stochflow__rng_normal(&rx);
            u[k] = (float)(c[0] * z + c[1] * x1r[k]);
            tg[k] = (float)(c[2] * z + c[3] * x1r[k]);
        }
        if (tvec)
            tvec[i] = (float)ti; /* U-Net: the time goes in separately */
        else
            time_embed(u + d, m, ti);
    }
}

/* issue 8: the loss (and gradient) of the U-Net on a batch whose x0 (if any) is final.
 * Workspace: x_t [n x d], dI/dt then dL/dv [n x d], t [n], then the U-Net's arenas. */
static int unet_loss_grad(double *loss_out, stochflow_model *m, const float *x1, size_t n,
                          const float *x0, const float *t, int want_grad, int train) {
    const size_t d = m->d;
    const int nt = (int)m->hp.threads;
    size_t unet_f, nd;
    RETURN_ERROR_IF(stochflow__unet_ws_floats(&unet_f, m->unet, n, want_grad, nt) != 0 ||
                        stochflow__mul_size(&nd, n, d) != 0 || unet_f + 2 * nd + n + 16 < unet_f,
                    STOCHFLOW_E_INVALID, "batch of %zu images is too large", n);
    size_t head = (2 * nd + n + 15) / 16 * 16; /* keep the arenas 64-byte aligned */
    FORWARD_IF_ERROR(ensure_ws(m, head + unet_f));
    float *xt = m->ws, *target = xt + nd, *tv = target + nd, *ws = m->ws + head;
    double c0[4];
    FORWARD_IF_ERROR(stochflow__interp_eval(&m->interp, 0.5, c0));
    const int ant = m->interp.kind == STOCHFLOW_INTERP_CUSTOM ? 1 : nt;
#define BODY(lo, hi) assemble_rows(m, xt, d, tv, target, x1, x0, t, NULL, train, lo, hi)
    PARALLEL_RANGES(n, n * (d + 8) * 16, ant, 1, BODY);
#undef BODY
    const float *out = stochflow__unet_forward(m->unet, m->params, xt, tv, n, ws, nt);
    double total = 0.0;
    const float scale = 2.0f / (float)n;
    for (size_t i = 0; i < nd; ++i) {
        float o = out[i], g = target[i];
        total += (double)o * o - 2.0 * (double)g * o;
        target[i] = scale * (o - g);
    }
    *loss_out = total / (double)n;
    RETURN_ERROR_IF(!isfinite(*loss_out), STOCHFLOW_E_NONFINITE,
                    "loss is not finite (%g) at step %llu", *loss_out,
                    (unsigned long long)m->step);
    if (want_grad) {
        memset(m->grads, 0, m->n_params * sizeof *m->grads);
        stochflow__unet_backward(m->unet, m->params, target, n, ws, m->grads, NULL, nt);
        if (train) stochflow__transport_record_loss(m, *loss_out);
    }
    return 0;
}

static int loss_grad(double *loss_out, stochflow_model *m, const float *x1, size_t n,
                     const float *x0, const float *t, int want_grad, int train) {
    RETURN_ERROR_IF(loss_out == NULL, STOCHFLOW_E_INVALID, "loss output is NULL");
    CHECK_MODEL(m);
    FORWARD_IF_ERROR(check_batch(m, x1, n, x0, t));
    /* issue 9 (lib/transport.c): with a Fourier interpolant or a coupling, x0 is
     * materialized (and re-paired), the times are recorded, and the input gradient is
     * kept for the coefficients' gradient. */
    double *t_save = NULL;
    float *du = NULL;
    if (stochflow__transport_active(m))
        FORWARD_IF_ERROR(stochflow__transport_prepare(m, x1, n, x0, train, &x0, &t_save, &du));
    if (m->unet) return unet_loss_grad(loss_out, m, x1, n, x0, t, want_grad, train);
    const size_t d = m->d, H = m->max_width;
    size_t act_f, extra;
    RETURN_ERROR_IF(acts_floats(&act_f, m, n) != 0 || stochflow__mul_size(&extra, n, d + 2 * H) != 0 ||
                        act_f + extra + STOCHFLOW__BIAS_BLOCKS * H < act_f,
                    STOCHFLOW_E_INVALID, "batch of %zu rows is too large", n);
    FORWARD_IF_ERROR(ensure_ws(m, act_f + extra + STOCHFLOW__BIAS_BLOCKS * H));
    acts A;
    float *target = carve_acts(&A, m, m->ws, n); /* [n x d] dI/dt, then dL/dout */
    float *g1 = target + n * d, *g2 = g1 + n * H, *part = g2 + n * H;

    /* Inputs: x_t = a x0 + b x1 and the target dI/dt = a' x0 + b' x1 per row. Rows are
     * independent (draws keyed by row), so they are split across threads, except for a
     * caller's schedule callback, which is only ever called from the calling thread. */
    double c0[4];
    FORWARD_IF_ERROR(stochflow__interp_eval(&m->interp, 0.5, c0)); /* fails only here */
    const int nt = m->interp.kind == STOCHFLOW_INTERP_CUSTOM ? 1 : (int)m->hp.threads;
#define BODY(lo, hi) assemble_rows(m, A.u, m->n_in, NULL, target, x1, x0, t, t_save, train, lo, hi)
    PARALLEL_RANGES(n, n * (d + 8) * 16, nt, 1, BODY);
#undef BODY

    forward(m, m->params, &A, n, 1, (int)m->hp.threads);

    /* G = mean |o|^2 - 2 dI.o, and dG/do = 2 (o - dI) / n (overwrites target). */
    double total = 0.0;
    const float scale = 2.0f / (float)n;
    for (size_t i = 0; i < n * d; ++i) {
        float o = A.out[i], g = target[i];
        total += (double)o * o - 2.0 * (double)g * o;
        target[i] = scale * (o - g);
    }
    *loss_out = total / (double)n;
    RETURN_ERROR_IF(!isfinite(*loss_out), STOCHFLOW_E_NONFINITE,
                    "loss is not finite (%g) at step %llu", *loss_out,
                    (unsigned long long)m->step);
    if (want_grad) {
        /* zeroed in parallel: one thread alone here would leave the others waiting */
#define BODY(lo, hi) memset(m->grads + (lo), 0, ((hi) - (lo)) * sizeof *m->grads)
        PARALLEL_RANGES(m->n_params, m->n_params, (int)m->hp.threads, 16, BODY);
#undef BODY
        int fourier = m->interp.kind == STOCHFLOW_INTERP_FOURIER;
        backward(m, m->params, &A, n, target, m->grads, fourier ? du : NULL, g1, g2, part);
        /* issue 9: gradient of G with respect to the Fourier coefficients */
        if (fourier) stochflow__transport_coef_grad(m, A.out, du, x0, x1, t_save, n);
        if (train) stochflow__transport_record_loss(m, *loss_out);
    }
    return 0;
}

STOCHFLOW_API int stochflow_model_loss(double *loss, stochflow_model *m, const float *x1,
                                       size_t n, const float *x0, const float *t) {
    STOCHFLOW__ENTER(m, "model");
    return loss_grad(loss, m, x1, n, x0, t, 0, 0);
}

STOCHFLOW_API int stochflow_model_compute_gradient(double *loss, stochflow_model *m,
                                                   const float *x1, size_t n, const float *x0,
                                                   const float *t) {
    STOCHFLOW__ENTER(m, "model");
    return loss_grad(loss, m, x1, n, x0, t, 1, 1);
}

STOCHFLOW_API int stochflow_model_apply_gradient(stochflow_model *m) {
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    return stochflow__transport_apply(m); /* optimizer + issue 9's ascent step */
}

STOCHFLOW_API int stochflow_model_train_step(double *loss, stochflow_model *m, const float *x1,
                                             size_t n, const float *x0, const float *t) {
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(loss_grad(loss, m, x1, n, x0, t, 1, 1));
    return stochflow__transport_apply(m); /* optimizer + issue 9's ascent step */
}

/* ---- evaluation: velocity, VJP, divergence -------------------------------------- */

static int check_eval(const stochflow_model *m, double t, const float *x, size_t n) {
    RETURN_ERROR_IF(x == NULL && n > 0, STOCHFLOW_E_INVALID, "points x are NULL");
    RETURN_ERROR_IF(!(t >= 0.0 && t <= 1.0), STOCHFLOW_E_INVALID, "time %g outside [0, 1]", t);
    RETURN_ERROR_IF(n > MAX_BATCH, STOCHFLOW_E_INVALID, "batch size %zu exceeds %zu", n,
                    MAX_BATCH);
    return stochflow__check_finite(x, n * m->d, "points x");
}

static void fill_inputs(const stochflow_model *m, const acts *A, double t, const float *x,
                        size_t rows) {
    float phi[1 + 2 * STOCHFLOW__MAX_FREQ];
    time_embed(phi, m, t);
    for (size_t i = 0; i < rows; ++i) {
        float *u = A->u + i * m->n_in;
        memcpy(u, x + i * m->d, m->d * sizeof *u);
        memcpy(u + m->d, phi, m->n_time * sizeof *u);
    }
}

/*
 * Forward-mode propagation of T tangents per row (see doc/gradients.md):
 *   tangent of z_1 = W_1[:, :d] e        (e: the input tangent, zero in the t part)
 *   tangent of a_l = f'(z_l) * tangent of z_l
 *   tangent of z_{l+1} = (tangent of a_l) W_{l+1}^T,    tangent of v = ... W_o^T
 * The T tangents of a row are T extra rows of a batched GEMM. For the exact trace the
 * tangents are the unit vectors e_j and only the diagonal (e_j . J e_j) of the output
 * is formed; for Hutchinson they are the probes and quad_k = e_k . (J e_k).
 * probes == NULL means unit vectors (T = d). tan1, tan2: [rows*T x max(max_width, d)]. */
static void jvp_trace(const stochflow_model *m, const float *p, const acts *A, size_t rows,
                      const float *probes, size_t T, float *quad, float *tan1, float *tan2,
                      int nt) {
    const size_t d = m->d;
    const stochflow__dense *L0 = &m->layers[0];
    const float *W0 = p + L0->w_off;
    /* first layer tangent: [rows*T x H_0] */
    if (probes == NULL) {
        /* e_k: column k of W_0 */
        for (size_t i = 0; i < rows; ++i)
            for (size_t k = 0; k < T; ++k) {
                float *tz = tan1 + (i * T + k) * L0->out;
                for (size_t j = 0; j < L0->out; ++j) tz[j] = W0[j * L0->in + k];
            }
    } else {
        /* probes [rows*T x d] times W_0[:, :d]^T (row stride n_in) */
        stochflow__sgemm(0, 1, rows * T, L0->out, d, 1.0f, probes, d, W0, L0->in, 0.0f, tan1,
                         L0->out, nt);
    }
    /* hidden layers */
    for (size_t l = 0; l + 1 < m->n_layers; ++l) {
        const size_t H = m->layers[l].out;
        stochflow__scale_tangents(tan1, A->fd[l], rows, T, H, nt);
        const stochflow__dense *N = &m->layers[l + 1];
        if (l + 2 < m->n_layers) {
            /* tangent of z_{l+1} = tan1 W^T (no bias): a dense layer with zero bias */
            stochflow__sgemm(0, 1, rows * T, N->out, N->in, 1.0f, tan1, N->in, p + N->w_off,
                             N->in, 0.0f, tan2, N->out, nt);
            float *tmp = tan1;
            tan1 = tan2;
            tan2 = tmp;
            continue;
        }
        /* output layer: only e_k . (W_o tan) is needed */
        const float *Wo = p + N->w_off;
        if (probes == NULL) {
            /* exact trace: the diagonal W_o[k, :] . tan_k */
            for (size_t i = 0; i < rows; ++i)
                for (size_t k = 0; k < T; ++k)
                    quad[i * T + k] = stochflow__dot(Wo + k * N->in, tan1 + (i * T + k) * N->in, N->in);
        } else {
            /* y = tan W_o^T [rows*T x d] (into tan2), then quad = e . y */
            if (d <= 16) {
                for (size_t r = 0; r < rows * T; ++r)
                    for (size_t j = 0; j < d; ++j)
                        tan2[r * d + j] = stochflow__dot(Wo + j * N->in, tan1 + r * N->in, N->in);
            } else {
                stochflow__sgemm(0, 1, rows * T, d, N->in, 1.0f, tan1, N->in, Wo, N->in, 0.0f,
                                 tan2, d, nt);
            }
            for (size_t r = 0; r < rows * T; ++r) {
                double acc = 0.0;
                for (size_t j = 0; j < d; ++j) acc += (double)probes[r * d + j] * tan2[r * d + j];
                quad[r] = (float)acc;
            }
        }
    }
}

/* ---- issue 8: U-Net evaluation ----------------------------------------------------- */

/* Images per chunk of a U-Net evaluation: the workspace of a chunk (both arenas and the
 * scratch, about chunk times that of one image) stays near 2^26 floats (256 MiB), and
 * at most 64 images (UNET_EVAL_CHUNK); at least 1, whatever one image needs. */
#define UNET_EVAL_CHUNK 64
static size_t unet_chunk(const stochflow_model *m, size_t n) {
    size_t one = 0;
    (void)stochflow__unet_ws_floats(&one, m->unet, 1, 1, (int)m->hp.threads);
    size_t c = one ? ((size_t)1 << 26) / one : 1;
    if (c < 1) c = 1;
    if (c > UNET_EVAL_CHUNK) c = UNET_EVAL_CHUNK;
    return c < n ? c : n;
}

/* Velocity, and optionally the exact divergence (d vector-Jacobian products with the
 * unit vectors) or Hutchinson quadratic forms (K products with the probes: e . J e =
 * (J^T e) . e), or the VJP with cotangents cot [n x d] into vjp. */
static int unet_eval(stochflow_model *m, double t, const float *x, size_t n, float *v,
                     float *div, const float *probes, size_t K, float *quad, const float *cot,
                     float *vjp) {
    const size_t d = m->d;
    const int nt = (int)m->hp.threads;
    const int back = div != NULL || (probes && quad) || cot != NULL;
    const size_t chunk = unet_chunk(m, n);
    size_t unet_f;
    size_t head = (chunk + 2 * chunk * d + 15) / 16 * 16; /* chunk <= 64, d <= 65536 */
    RETURN_ERROR_IF(stochflow__unet_ws_floats(&unet_f, m->unet, chunk, back, nt) != 0 ||
                        unet_f > SIZE_MAX - head,
                    STOCHFLOW_E_INVALID, "U-Net: the workspace of %zu images overflows", chunk);
    FORWARD_IF_ERROR(ensure_ws(m, head + unet_f));
    float *tv = m->ws, *cb = tv + chunk, *dx = cb + chunk * d, *ws = m->ws + head;
    const float *p = eval_weights(m);
    for (size_t i = 0; i < chunk; ++i) tv[i] = (float)t;
    for (size_t s = 0; s < n; s += chunk) {
        size_t rows = n - s < chunk ? n - s : chunk;
        const float *out = stochflow__unet_forward(m->unet, p, x + s * d, tv, rows, ws, nt);
        FORWARD_IF_ERROR(stochflow__check_finite(out, rows * d, "velocity"));
        if (v) memcpy(v + s * d, out, rows * d * sizeof *v);
        if (cot) {
            stochflow__unet_backward(m->unet, p, cot + s * d, rows, ws, NULL, vjp + s * d, nt);
        } else if (div) {
            double acc[UNET_EVAL_CHUNK] = {0}; /* the trace in double, as the MLP's */
            memset(cb, 0, rows * d * sizeof *cb);
            for (size_t j = 0; j < d; ++j) {
                for (size_t i = 0; i < rows; ++i) cb[i * d + j] = 1.0f;
                stochflow__unet_backward(m->unet, p, cb, rows, ws, NULL, dx, nt);
                for (size_t i = 0; i < rows; ++i) {
                    acc[i] += dx[i * d + j];
                    cb[i * d + j] = 0.0f;
                }
            }
            for (size_t i = 0; i < rows; ++i) div[s + i] = (float)acc[i];
        } else if (probes && quad) {
            for (size_t k = 0; k < K; ++k) {
                for (size_t i = 0; i < rows; ++i)
                    memcpy(cb + i * d, probes + ((s + i) * K + k) * d, d * sizeof *cb);
                stochflow__unet_backward(m->unet, p, cb, rows, ws, NULL, dx, nt);
                for (size_t i = 0; i < rows; ++i) {
                    double acc = 0.0;
                    for (size_t j = 0; j < d; ++j) acc += (double)cb[i * d + j] * dx[i * d + j];
                    quad[(s + i) * K + k] = (float)acc;
                }
            }
        }
    }
    return 0;
}

/* One block of an evaluation: rows [s, s + block) of x (fewer for the last block).
 * ws: the block's workspace (acts, then two tangent buffers and the quadratic forms).
 * Returns the index (in v's numbering, s*d + i) of the first non-finite velocity
 * element of the block, or SIZE_MAX. Writes no error message: it may run on a worker
 * thread, whose thread-local message the caller would never see. */
static size_t eval_block(const stochflow_model *m, const float *p, double t, const float *x,
                         size_t n, size_t s, size_t block, float *v, float *div,
                         const float *probes, size_t K, float *quad, size_t T, float *ws,
                         int nt) {
    const size_t d = m->d, W = m->max_width > d ? m->max_width : d;
    const size_t rows = n - s < block ? n - s : block;
    acts A;
    float *tan1 = carve_acts(&A, m, ws, block);
    float *tan2 = tan1 + block * T * W;
    float *qbuf = tan2 + block * T * W;
    fill_inputs(m, &A, t, x + s * d, rows);
    forward(m, p, &A, rows, T > 0, nt);
    if (v) memcpy(v + s * d, A.out, rows * d * sizeof *v);
    for (size_t i = 0; i < rows * d; ++i)
        if (!(A.out[i] - A.out[i] == 0.0f)) return s * d + i;
    if (T == 0) return SIZE_MAX;
    jvp_trace(m, p, &A, rows, div ? NULL : probes + s * K * d, T, div ? qbuf : quad + s * K,
              tan1, tan2, nt);
    if (div)
        for (size_t i = 0; i < rows; ++i) {
            double acc = 0.0;
            for (size_t k = 0; k < d; ++k) acc += qbuf[i * d + k];
            div[s + i] = (float)acc;
        }
    return SIZE_MAX;
}

int stochflow__model_eval(stochflow_model *m, double t, const float *x, size_t n, float *v,
                          float *div, const float *probes, size_t K, float *quad) {
    CHECK_MODEL(m);
    FORWARD_IF_ERROR(check_eval(m, t, x, n));
    if (n == 0) return 0;
    RETURN_ERROR_IF(div && probes && quad, STOCHFLOW_E_INVALID,
                    "model_eval: ask for the exact divergence or probes, not both");
    if (m->unet) return unet_eval(m, t, x, n, v, div, probes, K, quad, NULL, NULL);
    const size_t d = m->d;
    const size_t T = div ? d : (probes && quad ? K : 0);
    /* Rows are independent, so the batch is cut into blocks of a fixed size (set by T
     * and n only, never by the thread count) and each thread evaluates whole blocks with
     * single-threaded kernels: one parallel region per call instead of several per
     * layer, and a block's activations stay in cache. A batch of one block runs that
     * block with threaded kernels instead. Either way every row's result is the same
     * whatever the thread count (doc/threading.md). */
    size_t block = EVAL_BLOCK_ROWS / (1 + T);
    if (block > (n + EVAL_MIN_BLOCKS - 1) / EVAL_MIN_BLOCKS)
        block = (n + EVAL_MIN_BLOCKS - 1) / EVAL_MIN_BLOCKS;
    if (block < 1) block = 1;
    if (block > n) block = n;
    const size_t nblocks = (n + block - 1) / block;
    int outer = (int)m->hp.threads;
    if ((size_t)outer > nblocks) outer = (int)nblocks;
    if (outer < 1) outer = 1;
#ifndef _OPENMP
    outer = 1; /* no OpenMP: the blocks run in order */
#endif
    size_t act_f, tan_f = 0, per_block;
    const size_t W = m->max_width > d ? m->max_width : d;
    RETURN_ERROR_IF(acts_floats(&act_f, m, block) != 0, STOCHFLOW_E_INVALID, "batch too large");
    if (T) { /* two tangent buffers [block*T x W] and the quadratic forms [block*T] */
        size_t bt;
        RETURN_ERROR_IF(stochflow__mul_size(&bt, block, T) != 0 ||
                            stochflow__mul_size(&tan_f, bt, 2 * W + 1) != 0,
                        STOCHFLOW_E_INVALID, "too many tangents");
    }
    RETURN_ERROR_IF(act_f > SIZE_MAX - 15 - tan_f, STOCHFLOW_E_INVALID, "batch too large");
    per_block = (act_f + tan_f + 15) / 16 * 16; /* each thread's slice 64-byte aligned */
    RETURN_ERROR_IF(per_block > SIZE_MAX / (size_t)outer, STOCHFLOW_E_INVALID, "batch too large");
    FORWARD_IF_ERROR(ensure_ws(m, per_block * (size_t)outer));
    const float *p = eval_weights(m);
    size_t bad = SIZE_MAX; /* first non-finite velocity element, over all blocks */
    if (outer > 1) {
#ifdef _OPENMP
#pragma omp parallel num_threads(outer)
        {
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
            size_t my_bad = SIZE_MAX;
            for (size_t b = (size_t)tid; b < nblocks; b += (size_t)nth) {
                size_t e = eval_block(m, p, t, x, n, b * block, block, v, div, probes, K, quad, T,
                                      m->ws + (size_t)tid * per_block, 1);
                if (e < my_bad) my_bad = e;
            }
#pragma omp critical(stochflow_eval_bad)
            if (my_bad < bad) bad = my_bad;
        }
#endif
    } else {
        for (size_t b = 0; b < nblocks; ++b) {
            size_t e = eval_block(m, p, t, x, n, b * block, block, v, div, probes, K, quad, T,
                                  m->ws, (int)m->hp.threads);
            if (e < bad) bad = e;
        }
    }
    if (bad != SIZE_MAX && v)
        return stochflow__error(STOCHFLOW_E_NONFINITE,
                                "velocity contains a non-finite value at index %zu (%g)", bad,
                                (double)v[bad]);
    RETURN_ERROR_IF(bad != SIZE_MAX, STOCHFLOW_E_NONFINITE,
                    "velocity contains a non-finite value at index %zu", bad);
    return 0;
}

STOCHFLOW_API int stochflow_model_velocity(float *v, stochflow_model *m, double t,
                                           const float *x, size_t n) {
    RETURN_ERROR_IF(v == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity: output is NULL");
    STOCHFLOW__ENTER(m, "model");
    return stochflow__model_eval(m, t, x, n, v, NULL, NULL, 0, NULL);
}

STOCHFLOW_API int stochflow_model_divergence(float *div, float *v, stochflow_model *m, double t,
                                             const float *x, size_t n) {
    RETURN_ERROR_IF(div == NULL && n > 0, STOCHFLOW_E_INVALID, "divergence: output is NULL");
    STOCHFLOW__ENTER(m, "model");
    return stochflow__model_eval(m, t, x, n, v, div, NULL, 0, NULL);
}

STOCHFLOW_API int stochflow_model_velocity_vjp(float *out, stochflow_model *m, double t,
                                               const float *x, const float *u, size_t n) {
    RETURN_ERROR_IF(out == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity_vjp: output is NULL");
    RETURN_ERROR_IF(u == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity_vjp: u is NULL");
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(check_eval(m, t, x, n));
    if (n == 0) return 0;
    FORWARD_IF_ERROR(stochflow__check_finite(u, n * m->d, "cotangent u"));
    if (m->unet) {
        FORWARD_IF_ERROR(unet_eval(m, t, x, n, NULL, NULL, NULL, 0, NULL, u, out));
        return stochflow__check_finite(out, n * m->d, "vector-Jacobian product");
    }
    const size_t d = m->d, H = m->max_width;
    size_t chunk = n < EVAL_BUDGET_ROWS ? n : EVAL_BUDGET_ROWS;
    size_t act_f;
    RETURN_ERROR_IF(acts_floats(&act_f, m, chunk) != 0, STOCHFLOW_E_INVALID, "batch too large");
    FORWARD_IF_ERROR(ensure_ws(m, act_f + chunk * (2 * H + m->n_in)));
    const float *p = eval_weights(m);
    acts A;
    float *g1 = carve_acts(&A, m, m->ws, chunk);
    float *g2 = g1 + chunk * H, *du = g2 + chunk * H;
    for (size_t s = 0; s < n; s += chunk) {
        size_t rows = n - s < chunk ? n - s : chunk;
        fill_inputs(m, &A, t, x + s * d, rows);
        forward(m, p, &A, rows, 1, (int)m->hp.threads);
        backward(m, p, &A, rows, u + s * d, NULL, du, g1, g2, NULL);
        for (size_t i = 0; i < rows; ++i)
            memcpy(out + (s + i) * d, du + i * m->n_in, d * sizeof *out);
    }
    return stochflow__check_finite(out, n * d, "vector-Jacobian product");
}
