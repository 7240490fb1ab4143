/* model.c - the model handle: construction, accessors, and everything the networks
 * share (lib/network.h): batch validation, the draws and the pairing of a batch, the
 * loss and its gradient, the update (optimizer and interpolant ascent), the evaluation
 * weights, and the one blocking policy of evaluations (velocity, divergence, Hutchinson
 * forms, VJP). The networks themselves: lib/mlp.c, lib/unet.c. How a batch becomes a
 * gradient step: doc/architecture.md. */
#include <math.h>
#include <string.h>

#include "model.h"
#include "objective.h"
#include "parallel.h"
#include "target.h"

/* The blocking policy of every evaluation (velocity, divergence, Hutchinson forms,
 * VJP; doc/architecture.md, doc/threading.md): a block holds at most EVAL_BLOCK_ROWS
 * GEMM rows (rows x (1 + tangents) for a network that pushes tangents as extra rows,
 * rows otherwise), at most the network's max_block_rows, and at most EVAL_BLOCK_FLOATS
 * floats of workspace by the network's row_floats (at least one row, whatever one row
 * needs); a batch of a row-parallel network is cut into at least EVAL_MIN_BLOCKS
 * blocks when it has the rows (so that small batches still give every thread work).
 * Set by n, the tangent count and the network, never by the thread count (the U-Net's
 * row_floats counts a scratch sized by it, as before). Measured: bench/profile.md. */
#define EVAL_BLOCK_ROWS 512
#define EVAL_MIN_BLOCKS 8
#define EVAL_BLOCK_FLOATS ((size_t)1 << 26)
#define MAX_BATCH ((size_t)1 << 28)

/* ---- construction --------------------------------------------------------------- */

int stochflow__network_build(stochflow__network *out, const stochflow_config *cfg) {
    if (cfg->arch == STOCHFLOW_ARCH_UNET) return stochflow__unet_network(out, cfg);
    if (cfg->arch == STOCHFLOW_ARCH_RESMLP) return stochflow__resmlp_network(out, cfg);
    return stochflow__mlp_network(out, cfg);
}

void stochflow__network_free(stochflow__network *net) {
    if (net->ops) net->ops->destroy(net->self);
    net->ops = NULL;
    net->self = NULL;
}

int stochflow__network_param_count(size_t *count, const stochflow_config *cfg) {
    if (cfg->arch == STOCHFLOW_ARCH_UNET) { /* the U-Net is compiled to be counted */
        stochflow__network net;
        FORWARD_IF_ERROR(stochflow__unet_network(&net, cfg));
        *count = net.n_params;
        stochflow__network_free(&net);
        return 0;
    }
    if (cfg->arch == STOCHFLOW_ARCH_RESMLP) return stochflow__resmlp_param_count(count, cfg);
    return stochflow__mlp_param_count(count, cfg);
}

int stochflow__model_param_count(size_t *count, const stochflow_config *cfg) {
    FORWARD_IF_ERROR(stochflow__config_validate(cfg));
    return stochflow__network_param_count(count, cfg);
}

int stochflow__model_build(stochflow_model **out, const stochflow_config *cfg, int init) {
    FORWARD_IF_ERROR(stochflow__config_validate(cfg));
    stochflow_model *m = stochflow__calloc(1, sizeof *m);
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_NOMEM, "model_new: out of memory");
    m->cfg = *cfg;
    /* the Fourier interpolant's coefficients start at 0 */
    memset(m->cfg.interp.coef, 0, sizeof m->cfg.interp.coef);
    int rc = stochflow__network_build(&m->net, cfg);
    if (rc < 0) {
        stochflow__free(m);
        return rc;
    }
    m->d = cfg->dim;
    m->n_params = m->net.n_params;
    size_t total;
    if (stochflow__mul_size(&total, m->n_params, 5) != 0 ||
        (m->params = stochflow__calloc(total, sizeof(float))) == NULL) {
        size_t np = m->n_params; /* read before the free (ASan: heap-use-after-free) */
        stochflow__network_free(&m->net);
        stochflow__free(m);
        return stochflow__error(STOCHFLOW_E_NOMEM, "model_new: cannot allocate %zu parameters",
                                np);
    }
    m->grads = m->params + m->n_params;
    m->ema = m->grads + m->n_params;
    m->adam_m = m->ema + m->n_params;
    m->adam_v = m->adam_m + m->n_params;
    stochflow__hparams_defaults(&m->hp);
    if (init) m->net.ops->init(m->net.self, m->params, cfg->seed);
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
    stochflow__free(m->drop);
    stochflow__transport_free(&m->tr);
    stochflow__network_free(&m->net);
    stochflow__free(m->carried.sections);
    stochflow__free(m->carried.hpar);
    stochflow__free(m->std_shift); /* std_scale is its second half */
    stochflow__free(m->std_buf);
    stochflow__free(m->std_chol);
    stochflow__free(m->ctx_shift); /* ctx_scale is its second half */
    stochflow__free(m->ctx_buf);
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
    /* a configuration describes; the learned coefficients are the model's state */
    memset(c->interp.coef, 0, sizeof c->interp.coef);
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
    RETURN_ERROR_IF(m->cfg.interp.kind != STOCHFLOW_INTERP_CUSTOM, STOCHFLOW_E_INVALID,
                    "model_set_schedule: the model's interpolant is not custom");
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "model_set_schedule: callback is NULL");
    stochflow__interp ip = {.kind = STOCHFLOW_INTERP_CUSTOM, .fn = fn, .user = user};
    FORWARD_IF_ERROR(stochflow__interp_check(&ip));
    m->cfg.interp = ip;
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

int stochflow__model_evaluates_ema(const stochflow_model *m) {
    return m->hp.eval_weights == 1 && m->hp.ema_decay > 0;
}

float *stochflow__model_eval_weights(stochflow_model *m) {
    return stochflow__model_evaluates_ema(m) && m->ema_valid ? m->ema : m->params;
}

/* ---- the training step ----------------------------------------------------------
 * draws + pairing (transport.c, coupling.c) -> inputs and targets (interpolant.c) ->
 * network forward (network.h) -> loss and its gradient -> network backward ->
 * coefficient gradient (interpolant.c) -> optimizer and ascent (optimizer.c). */

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

int stochflow__model_check_cond(const stochflow_model *m, const float *ctx,
                                const int32_t *labels, size_t n) {
    RETURN_ERROR_IF(ctx && m->cfg.n_ctx == 0, STOCHFLOW_E_INVALID,
                    "context given to a model without context (stochflow_config_set_context)");
    RETURN_ERROR_IF(labels && m->cfg.n_classes == 0, STOCHFLOW_E_INVALID,
                    "labels given to a model without classes (stochflow_config_set_context)");
    if (ctx) FORWARD_IF_ERROR(stochflow__check_finite(ctx, n * m->cfg.n_ctx, "context"));
    for (size_t i = 0; labels && i < n; ++i)
        RETURN_ERROR_IF(labels[i] < -1 || (int64_t)labels[i] >= (int64_t)m->cfg.n_classes,
                        STOCHFLOW_E_INVALID, "label[%zu] = %d outside -1..%zu", i,
                        (int)labels[i], m->cfg.n_classes - 1);
    return 0;
}

/* Context dropout of a training batch (classifier-free guidance): row i's conditioning
 * is dropped with probability STOCHFLOW_PARAM_CTX_DROPOUT, from (seed, CTX_DROP, step,
 * row i). NULL (nothing dropped) when the rate is 0 or the model is unconditional. */
static int draw_drop(const uint8_t **out, stochflow_model *m, size_t n) {
    *out = NULL;
    const double p = m->hp.ctx_dropout;
    if (p <= 0.0 || (m->cfg.n_ctx == 0 && m->cfg.n_classes == 0)) return 0;
    if (n > m->drop_cap) {
        uint8_t *b = stochflow__malloc(n);
        RETURN_ERROR_IF(b == NULL, STOCHFLOW_E_NOMEM, "context dropout: out of memory");
        stochflow__free(m->drop);
        m->drop = b;
        m->drop_cap = n;
    }
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, m->cfg.seed, STOCHFLOW__STREAM_CTX_DROP, m->step, i);
        m->drop[i] = stochflow__rng_uniform(&r) < p;
    }
    *out = m->drop;
    return 0;
}

/* Rows [lo, hi) of a training batch: draw t and x0 where not given, write the network
 * input x_t = a x0 + b x1 (rows `stride` floats apart), the time t_rows[i] and the
 * target dI/dt = a' x0 + b' x1. Row i's draws are keyed by key0 + i (its global row). */
static void assemble_rows(const stochflow_model *m, float *xt, size_t stride, double *t_rows,
                          float *target, const float *x1, const float *x0, const float *t,
                          int train, size_t key0, size_t lo, size_t hi) {
    const size_t d = m->d;
    for (size_t i = lo; i < hi; ++i) {
        stochflow__rng rt, rx;
        double ti;
        if (t) {
            ti = t[i];
        } else {
            stochflow__rng_init(&rt, m->cfg.seed, train ? STOCHFLOW__STREAM_T : STOCHFLOW__STREAM_EVAL_T,
                                m->step, key0 + i);
            ti = stochflow__rng_uniform(&rt);
        }
        t_rows[i] = ti;
        double c[4];
        (void)stochflow__interp_eval(&m->cfg.interp, ti, c); /* checked by the caller */
        if (!x0)
            stochflow__rng_init(&rx, m->cfg.seed, train ? STOCHFLOW__STREAM_X0 : STOCHFLOW__STREAM_EVAL_X0,
                                m->step, key0 + i);
        float *u = xt + i * stride;
        float *tg = target + i * d;
        const float *x1r = x1 + i * d;
        for (size_t k = 0; k < d; ++k) {
            double z = x0 ? (double)x0[i * d + k] : stochflow__rng_normal(&rx);
            u[k] = (float)(c[0] * z + c[1] * x1r[k]);
            tg[k] = (float)(c[2] * z + c[3] * x1r[k]);
        }
    }
}

static int blocked_gradient(double *loss_sum, double *loss_mean, stochflow_model *m,
                            const float *x1, size_t n, const float *x0, const float *t,
                            size_t row0, size_t n_global);

/* STOCHFLOW_TRAIN_TARGET_BATCH's assumptions (lib/target.c): x0 ~ N(0, I) independent of
 * x1, every row the same plain velocity objective and no conditioning. */
static int check_batch_target(const stochflow_model *m) {
    const char *why = m->cfg.interp.kind == STOCHFLOW_INTERP_FOURIER
                          ? "the learnable Fourier interpolant"
                      : (int)m->hp.coupling != STOCHFLOW_COUPLING_INDEPENDENT
                          ? "a coupling other than INDEPENDENT"
                      : !stochflow__objective_plain(&m->cfg.obj)
                          ? "a stochastic-interpolant objective (drift, score or denoiser)"
                      : m->cfg.n_ctx || m->cfg.n_classes ? "a conditional model"
                      : m->hp.grad_block > 0 ? "gradient blocks (STOCHFLOW_PARAM_GRAD_BLOCK)"
                                             : NULL;
    RETURN_ERROR_IF(why != NULL, STOCHFLOW_E_UNSUPPORTED,
                    "the batch-posterior training target (STOCHFLOW_PARAM_TRAIN_TARGET) is not "
                    "available with %s", why);
    return 0;
}

/* Loss (and, with want_grad, gradient into m->grads) on one batch. Draws use the
 * training streams (train = 1) or the evaluation streams, keyed by the current step. */
static int loss_grad(double *loss_out, stochflow_model *m, const float *x1, const float *ctx,
                     const int32_t *labels, size_t n, const float *x0, const float *t,
                     int want_grad, int train) {
    RETURN_ERROR_IF(loss_out == NULL, STOCHFLOW_E_INVALID, "loss output is NULL");
    CHECK_MODEL(m);
    const int batch_target = train && (int)m->hp.train_target == STOCHFLOW_TRAIN_TARGET_BATCH;
    if (batch_target) FORWARD_IF_ERROR(check_batch_target(m));
    if (want_grad && train && m->hp.grad_block > 0) /* blocks along the tree (below) */
        return blocked_gradient(NULL, loss_out, m, x1, n, x0, t, 0, n);
    FORWARD_IF_ERROR(check_batch(m, x1, n, x0, t));
    /* data in the user's units: mapped to the network's space before x_t is formed */
    FORWARD_IF_ERROR(stochflow__std_batch(&x1, m, x1, n));
    FORWARD_IF_ERROR(stochflow__model_check_cond(m, ctx, labels, n));
    FORWARD_IF_ERROR(stochflow__std_ctx(&ctx, m, ctx, n)); /* context in the user's units */
    stochflow__cond cond = {ctx, labels, NULL};
    if (train) FORWARD_IF_ERROR(draw_drop(&cond.drop, m, n));
    const stochflow__network *net = &m->net;
    const size_t d = m->d;
    const int nt = (int)m->hp.threads;
    const stochflow__interp *ip = &m->cfg.interp;
    const int fourier = ip->kind == STOCHFLOW_INTERP_FOURIER;
    /* With a Fourier interpolant or a coupling, x0 is materialized (and re-paired), the
     * times are recorded, and the input gradient is kept for the coefficients. */
    stochflow__pairing pr = {NULL, NULL, NULL};
    if (fourier || (int)m->hp.coupling != STOCHFLOW_COUPLING_INDEPENDENT) {
        FORWARD_IF_ERROR(stochflow__transport_pair(
            &pr, &m->tr, x1, x0, n, d, d, (int)m->hp.coupling, m->hp.sinkhorn_reg, m->cfg.seed,
            train ? STOCHFLOW__STREAM_X0 : STOCHFLOW__STREAM_EVAL_X0, m->step));
        x0 = pr.x0;
    }
    /* A stochastic-interpolant objective (lib/objective.c) assembles its own rows: nr
     * network rows (2n with antithetic pairs); the plain velocity has nr = n. */
    const int plain = stochflow__objective_plain(&m->cfg.obj);
    struct stochflow_sinterp si;
    if (!plain) stochflow__objective_sinterp(&si, &m->cfg);
    const size_t nr = plain ? n : stochflow__objective_rows(&m->cfg.obj, n);
    /* workspace: the times [nr] (doubles), the target then dG/do [nr x d], the batch
     * target's scratch (lib/target.h), then the network's */
    size_t net_f, nd, head, bt_f = 0;
    RETURN_ERROR_IF(nr < n || net->ops->ws_floats(&net_f, net->self, nr, want_grad, 0, nt) != 0 ||
                        stochflow__mul_size(&nd, nr, d) != 0 || nd > SIZE_MAX / 4 - 4 * nr ||
                        (batch_target && (stochflow__batch_target_floats(&bt_f, n, d) != 0 ||
                                          bt_f > SIZE_MAX / 4)) ||
                        (head = stochflow__pad16(2 * nr) + stochflow__pad16(nd) +
                                stochflow__pad16(bt_f)) > SIZE_MAX - net_f,
                    STOCHFLOW_E_INVALID, "batch of %zu rows is too large", n);
    FORWARD_IF_ERROR(ensure_ws(m, head + net_f));
    double *t_rows = pr.t && plain ? pr.t : (double *)m->ws;
    float *target = m->ws + stochflow__pad16(2 * nr), *ws = m->ws + head;

    /* Inputs: rows are independent (draws keyed by row), so they are split across
     * threads, except for a caller's schedule callback, which is only ever called from
     * the calling thread. */
    double c0[4];
    FORWARD_IF_ERROR(stochflow__interp_eval(ip, 0.5, c0)); /* fails only here */
    const int ant = ip->kind == STOCHFLOW_INTERP_CUSTOM ? 1 : nt;
    size_t stride;
    float *xt = net->ops->input(&stride, net->self, ws, nr);
#define BODY(lo, hi)                                                                         \
    if (plain)                                                                               \
        assemble_rows(m, xt, stride, t_rows, target, x1, x0, t, train, 0, lo, hi);           \
    else                                                                                     \
        stochflow__objective_assemble(m, &si, xt, stride, t_rows, target, x1, x0, t, train, n, \
                                      lo, hi)
    PARALLEL_RANGES(nr, nr * (d + 8) * 16, ant, 1, BODY);
#undef BODY
    if (batch_target) /* lib/target.c */
        stochflow__batch_target(target, target + stochflow__pad16(nd), xt, stride, t_rows, x1,
                                ip, n, d, nt, ant);

    const float *out =
        net->ops->forward(net->self, m->params, ws, nr, t_rows, 0.0, &cond, 1, nt);

    /* G = mean |o|^2 - 2 y.o (y = dI/dt, or the objective's target), and
     * dG/do = 2 (o - y) / nr (overwrites target). */
    double total = 0.0;
    const float scale = 2.0f / (float)nr;
    for (size_t i = 0; i < nd; ++i) {
        float o = out[i], g = target[i];
        total += (double)o * o - 2.0 * (double)g * o;
        target[i] = scale * (o - g);
    }
    *loss_out = total / (double)nr;
    RETURN_ERROR_IF(!isfinite(*loss_out), STOCHFLOW_E_NONFINITE,
                    "loss is not finite (%g) at step %llu", *loss_out,
                    (unsigned long long)m->step);
    if (!want_grad) return 0;
    /* zeroed in parallel: one thread alone here would leave the others waiting */
#define BODY(lo, hi) memset(m->grads + (lo), 0, ((hi) - (lo)) * sizeof *m->grads)
    PARALLEL_RANGES(m->n_params, m->n_params, nt, 16, BODY);
#undef BODY
    net->ops->backward(net->self, m->params, ws, nr, target, m->grads, fourier ? pr.du : NULL,
                       nt);
    if (fourier) {
        stochflow__interp_coef_grad(m->tr.grad, ip, out, pr.du, d, x0, x1, t_rows, n, d);
        m->tr.grad_valid = 1;
    }
    if (train) stochflow__transport_record_loss(&m->tr, *loss_out);
    return 0;
}

/* ---- the blocked gradient: blocks of rows summed along one tree -----------------------
 * With STOCHFLOW_PARAM_GRAD_BLOCK = B the rows of a batch of n_global rows are cut into
 * blocks of B rows; each block is its own forward/backward pass (draws keyed by the
 * global row, dG/do scaled by 1 / n_global) into a zeroed buffer, and the blocks are
 * summed along the tree of stochflow_grad_tree_split: node = left + right, in float for
 * the gradient and in double for the loss numerator. A process holding one node of that
 * tree (stochflow_grad_share) computes exactly that node's value, so any split of the
 * batch across processes, combined along the same tree, gives the bits of one process.
 * doc/distributed.md. */

STOCHFLOW_API size_t stochflow_grad_tree_split(size_t lo, size_t hi) {
    if (hi <= lo || hi - lo < 2) return 0;
    size_t p = 1;
    while (p < (hi - lo) - p) p *= 2; /* largest power of two < hi - lo */
    return lo + p;
}

/* 1 when [b0, b1) is a node of the tree over [0, nb). */
static int tree_node(size_t b0, size_t b1, size_t nb) {
    size_t lo = 0, hi = nb;
    for (;;) {
        if (lo == b0 && hi == b1) return 1;
        if (hi - lo < 2) return 0;
        size_t mid = stochflow_grad_tree_split(lo, hi);
        if (b1 <= mid) hi = mid;
        else if (b0 >= mid) lo = mid;
        else return 0;
    }
}

STOCHFLOW_API int stochflow_grad_share(size_t *row0, size_t *rows, size_t *active,
                                       size_t n_global, size_t block, size_t rank,
                                       size_t size) {
    RETURN_ERROR_IF(row0 == NULL || rows == NULL, STOCHFLOW_E_INVALID,
                    "grad_share: row0 or rows is NULL");
    RETURN_ERROR_IF(n_global == 0 || block == 0 || size == 0 || rank >= size,
                    STOCHFLOW_E_INVALID,
                    "grad_share: n_global %zu, block %zu, rank %zu of %zu", n_global, block,
                    rank, size);
    const size_t nb = n_global / block + (n_global % block != 0);
    const size_t per = nb / size + (nb % size != 0);
    size_t S = 1;
    while (S < per) S *= 2;
    const size_t act = nb / S + (nb % S != 0);
    if (active) *active = act;
    if (rank >= act) {
        *row0 = n_global;
        *rows = 0;
        return 0;
    }
    const size_t b0 = rank * S, b1 = b0 + S < nb ? b0 + S : nb;
    *row0 = b0 * block;
    *rows = (b1 * block < n_global ? b1 * block : n_global) - *row0;
    return 0;
}

/* What every block of one blocked gradient shares. */
typedef struct {
    stochflow_model *m;
    const float *x1, *x0, *t; /* the caller's rows */
    size_t n, row0, B, Bw;    /* rows held, their first global row, rows per block,
                                 rows the workspace was carved for (min(B, n)) */
    float scale;              /* 2 / n_global */
    float *head;              /* times [2B floats] then target/dG/do [B x d] */
    float *net_ws;            /* the network's workspace for B rows */
    float **buf;              /* one gradient buffer per tree level */
} block_job;

/* Block b (local index) into g (overwritten); its loss numerator into *sum. */
static void block_pass(double *sum, const block_job *J, size_t b, float *g) {
    stochflow_model *m = J->m;
    const stochflow__network *net = &m->net;
    const size_t d = m->d, s = b * J->B, rows = J->n - s < J->B ? J->n - s : J->B;
    const int nt = (int)m->hp.threads;
    const int ant = m->cfg.interp.kind == STOCHFLOW_INTERP_CUSTOM ? 1 : nt;
    double *t_rows = (double *)J->head;
    float *target = J->head + stochflow__pad16(2 * J->Bw);
    size_t stride;
    float *xt = net->ops->input(&stride, net->self, J->net_ws, rows);
    const float *x1 = J->x1 + s * d, *x0 = J->x0 ? J->x0 + s * d : NULL;
    const float *t = J->t ? J->t + s : NULL;
#define BODY(lo, hi) \
    assemble_rows(m, xt, stride, t_rows, target, x1, x0, t, 1, J->row0 + s, lo, hi)
    PARALLEL_RANGES(rows, rows * (d + 8) * 16, ant, 1, BODY);
#undef BODY
    const float *out =
        net->ops->forward(net->self, m->params, J->net_ws, rows, t_rows, 0.0, NULL, 1, nt);
    double total = 0.0;
    for (size_t i = 0; i < rows * d; ++i) {
        float o = out[i], tg = target[i];
        total += (double)o * o - 2.0 * (double)tg * o;
        target[i] = J->scale * (o - tg);
    }
    *sum = total;
#define BODY(lo, hi) memset(g + (lo), 0, ((hi) - (lo)) * sizeof *g)
    PARALLEL_RANGES(m->n_params, m->n_params, nt, 16, BODY);
#undef BODY
    net->ops->backward(net->self, m->params, J->net_ws, rows, target, g, NULL, nt);
}

/* The tree node [lo, hi) (local block indices) into g; level: the depth, whose buffer
 * holds right children. */
static void tree_pass(double *sum, const block_job *J, size_t lo, size_t hi, float *g,
                      size_t level) {
    if (hi - lo == 1) {
        block_pass(sum, J, lo, g);
        return;
    }
    const size_t mid = stochflow_grad_tree_split(lo, hi);
    double left, right;
    tree_pass(&left, J, lo, mid, g, level + 1);
    float *r = J->buf[level];
    tree_pass(&right, J, mid, hi, r, level + 1);
    const size_t np = J->m->n_params;
    const int nt = (int)J->m->hp.threads;
#define BODY(a, b)                                  \
    do {                                            \
        for (size_t i_ = (a); i_ < (b); ++i_) g[i_] += r[i_]; \
    } while (0)
    PARALLEL_RANGES(np, np, nt, 16, BODY);
#undef BODY
    *sum = left + right;
}

/* The tree sum of rows [row0, row0 + n) into m->grads (untouched on failure); the loss
 * numerator into *loss_sum and, for a whole batch, the mean into *loss_mean (either may
 * be NULL), recorded for the path-length estimate. */
static int blocked_gradient(double *loss_sum, double *loss_mean, stochflow_model *m,
                            const float *x1, size_t n, const float *x0, const float *t,
                            size_t row0, size_t n_global) {
    const size_t B = (size_t)m->hp.grad_block;
    RETURN_ERROR_IF(B == 0, STOCHFLOW_E_INVALID,
                    "partial gradient: STOCHFLOW_PARAM_GRAD_BLOCK is not set");
    RETURN_ERROR_IF((int)m->hp.coupling != STOCHFLOW_COUPLING_INDEPENDENT,
                    STOCHFLOW_E_UNSUPPORTED,
                    "blocked gradient (STOCHFLOW_PARAM_GRAD_BLOCK): a coupling pairs rows "
                    "across the whole batch; only the independent coupling splits");
    RETURN_ERROR_IF(m->cfg.interp.kind == STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_UNSUPPORTED,
                    "blocked gradient (STOCHFLOW_PARAM_GRAD_BLOCK): the learnable Fourier "
                    "interpolant's coefficient gradient is not reduced across blocks");
    RETURN_ERROR_IF(!stochflow__objective_plain(&m->cfg.obj), STOCHFLOW_E_UNSUPPORTED,
                    "blocked gradient (STOCHFLOW_PARAM_GRAD_BLOCK): not available for a "
                    "stochastic-interpolant objective (drift, score or denoiser)");
    RETURN_ERROR_IF(m->cfg.n_ctx || m->cfg.n_classes, STOCHFLOW_E_UNSUPPORTED,
                    "blocked gradient (STOCHFLOW_PARAM_GRAD_BLOCK): not available for a "
                    "conditional model (the blocks carry no context)");
    if ((int)m->hp.train_target == STOCHFLOW_TRAIN_TARGET_BATCH)
        FORWARD_IF_ERROR(check_batch_target(m)); /* refuses the blocks */
    FORWARD_IF_ERROR(check_batch(m, x1, n, x0, t));
    /* a standardization maps each row on its own: the rows held, mapped to the network's
     * space, are the same bits as those rows of the whole batch mapped */
    FORWARD_IF_ERROR(stochflow__std_batch(&x1, m, x1, n));
    RETURN_ERROR_IF(n_global > MAX_BATCH || row0 > n_global || n > n_global - row0,
                    STOCHFLOW_E_INVALID, "partial gradient: rows [%zu, %zu) outside a batch of %zu",
                    row0, row0 + n, n_global);
    const size_t nb_all = n_global / B + (n_global % B != 0);
    const size_t b0 = row0 / B, b1 = (row0 + n) / B + ((row0 + n) % B != 0);
    RETURN_ERROR_IF(row0 % B != 0 || ((row0 + n) % B != 0 && row0 + n != n_global) ||
                        !tree_node(b0, b1, nb_all),
                    STOCHFLOW_E_INVALID,
                    "partial gradient: rows [%zu, %zu) are not one node of the block tree "
                    "(block %zu, batch %zu; stochflow_grad_share gives such ranges)",
                    row0, row0 + n, B, n_global);
    double c0[4];
    FORWARD_IF_ERROR(stochflow__interp_eval(&m->cfg.interp, 0.5, c0)); /* fails only here */
    const stochflow__network *net = &m->net;
    const int nt = (int)m->hp.threads;
    const size_t nb = b1 - b0, d = m->d, Bn = B < n ? B : n;
    size_t levels = 0;
    while (((size_t)1 << levels) < nb) ++levels;
    /* workspace: times and target for Bn rows, the network's, then levels + 1 gradient
     * buffers (the root is copied into m->grads only once everything succeeded) */
    size_t net_f, net_last, bd, np16 = stochflow__pad16(m->n_params), head, total;
    const size_t last = n - (nb - 1) * B;
    RETURN_ERROR_IF(net->ops->ws_floats(&net_f, net->self, Bn, 1, 0, nt) != 0 ||
                        net->ops->ws_floats(&net_last, net->self, last, 1, 0, nt) != 0 ||
                        stochflow__mul_size(&bd, Bn, d) != 0 || bd > SIZE_MAX / 4,
                    STOCHFLOW_E_INVALID, "block of %zu rows is too large", Bn);
    if (net_last > net_f) net_f = net_last;
    head = stochflow__pad16(2 * Bn) + stochflow__pad16(bd);
    RETURN_ERROR_IF(np16 > (SIZE_MAX - head - stochflow__pad16(net_f)) / (levels + 1),
                    STOCHFLOW_E_INVALID, "gradient tree of %zu levels is too large", levels);
    total = head + stochflow__pad16(net_f) + (levels + 1) * np16;
    FORWARD_IF_ERROR(ensure_ws(m, total));
    float *bufs[64];
    for (size_t l = 0; l <= levels; ++l)
        bufs[l] = m->ws + head + stochflow__pad16(net_f) + l * np16;
    block_job J = {m, x1, x0, t, n, row0, B, Bn, 2.0f / (float)n_global, m->ws,
                   m->ws + head, bufs + 1};
    double sum;
    tree_pass(&sum, &J, 0, nb, bufs[0], 0);
    RETURN_ERROR_IF(!isfinite(sum), STOCHFLOW_E_NONFINITE,
                    "loss is not finite (%g) at step %llu (rows [%zu, %zu))", sum / (double)n_global,
                    (unsigned long long)m->step, row0, row0 + n);
    memcpy(m->grads, bufs[0], m->n_params * sizeof *m->grads);
    if (loss_sum) *loss_sum = sum;
    if (row0 == 0 && n == n_global) {
        const double mean = sum / (double)n_global;
        if (loss_mean) *loss_mean = mean;
        stochflow__transport_record_loss(&m->tr, mean);
    }
    return 0;
}

STOCHFLOW_API int stochflow_model_partial_gradient(double *loss_sum, stochflow_model *m,
                                                   const float *x1, size_t n,
                                                   const float *x0, const float *t,
                                                   size_t row0, size_t n_global) {
    RETURN_ERROR_IF(loss_sum == NULL, STOCHFLOW_E_INVALID, "loss output is NULL");
    CHECK_MODEL(m);
    return blocked_gradient(loss_sum, NULL, m, x1, n, x0, t, row0, n_global);
}

STOCHFLOW_API int stochflow_model_record_loss(stochflow_model *m, double loss) {
    CHECK_MODEL(m);
    RETURN_ERROR_IF(!isfinite(loss), STOCHFLOW_E_INVALID, "record_loss: loss %g is not finite",
                    loss);
    stochflow__transport_record_loss(&m->tr, loss);
    return 0;
}

STOCHFLOW_API int stochflow_model_loss(double *loss, stochflow_model *m, const float *x1,
                                       size_t n, const float *x0, const float *t) {
    STOCHFLOW__ENTER(m, "model");
    return loss_grad(loss, m, x1, NULL, NULL, n, x0, t, 0, 0);
}

STOCHFLOW_API int stochflow_model_loss_ctx(double *loss, stochflow_model *m, const float *x1,
                                           const float *ctx, const int32_t *labels, size_t n,
                                           const float *x0, const float *t) {
    STOCHFLOW__ENTER(m, "model");
    return loss_grad(loss, m, x1, ctx, labels, n, x0, t, 0, 0);
}

STOCHFLOW_API int stochflow_model_compute_gradient(double *loss, stochflow_model *m,
                                                   const float *x1, size_t n, const float *x0,
                                                   const float *t) {
    STOCHFLOW__ENTER(m, "model");
    return loss_grad(loss, m, x1, NULL, NULL, n, x0, t, 1, 1);
}

STOCHFLOW_API int stochflow_model_compute_gradient_ctx(double *loss, stochflow_model *m,
                                                       const float *x1, const float *ctx,
                                                       const int32_t *labels, size_t n,
                                                       const float *x0, const float *t) {
    STOCHFLOW__ENTER(m, "model");
    return loss_grad(loss, m, x1, ctx, labels, n, x0, t, 1, 1);
}

STOCHFLOW_API int stochflow_model_apply_gradient(stochflow_model *m) {
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(stochflow__optimizer_apply(m)); /* network Adam + coefficient ascent */
    stochflow__transport_step_done(&m->tr);           /* path-length estimate */
    return 0;
}

STOCHFLOW_API int stochflow_model_train_step(double *loss, stochflow_model *m, const float *x1,
                                             size_t n, const float *x0, const float *t) {
    STOCHFLOW__ENTER(m, "model");
    return stochflow_model_train_step_ctx(loss, m, x1, NULL, NULL, n, x0, t);
}

STOCHFLOW_API int stochflow_model_train_step_ctx(double *loss, stochflow_model *m,
                                                 const float *x1, const float *ctx,
                                                 const int32_t *labels, size_t n,
                                                 const float *x0, const float *t) {
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(loss_grad(loss, m, x1, ctx, labels, n, x0, t, 1, 1));
    return stochflow_model_apply_gradient(m);
}

STOCHFLOW_API int stochflow_model_train_simulator(double *loss, stochflow_model *m,
                                                  stochflow_simulator_fn fn, void *user,
                                                  size_t n) {
    RETURN_ERROR_IF(loss == NULL, STOCHFLOW_E_INVALID, "train_simulator: loss is NULL");
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "train_simulator: simulator is NULL");
    RETURN_ERROR_IF(m->cfg.n_ctx == 0, STOCHFLOW_E_INVALID,
                    "train_simulator: the model has no context (stochflow_config_set_context)");
    RETURN_ERROR_IF(n == 0 || n > MAX_BATCH, STOCHFLOW_E_INVALID,
                    "train_simulator: batch size %zu outside 1..%zu", n, MAX_BATCH);
    float *theta = stochflow__alloc_array(n, m->d * sizeof(float));
    float *x = stochflow__alloc_array(n, m->cfg.n_ctx * sizeof(float));
    int rc = 0;
    if (theta == NULL || x == NULL) {
        rc = stochflow__error(STOCHFLOW_E_NOMEM, "train_simulator: out of memory");
    } else {
        int urc = fn(user, n, m->cfg.seed, m->step, theta, x);
        if (urc != 0)
            rc = stochflow__error(STOCHFLOW_E_CALLBACK, "simulator callback returned %d", urc);
        else
            rc = stochflow_model_train_step_ctx(loss, m, theta, x, NULL, n, NULL, NULL);
    }
    stochflow__free(theta);
    stochflow__free(x);
    return rc;
}

/* ---- evaluation: velocity, divergence, Hutchinson forms, VJP --------------------- */

static int check_eval(const stochflow_model *m, double t, const float *x, size_t n) {
    RETURN_ERROR_IF(x == NULL && n > 0, STOCHFLOW_E_INVALID, "points x are NULL");
    RETURN_ERROR_IF(!(t >= 0.0 && t <= 1.0), STOCHFLOW_E_INVALID, "time %g outside [0, 1]", t);
    RETURN_ERROR_IF(n > MAX_BATCH, STOCHFLOW_E_INVALID, "batch size %zu exceeds %zu", n,
                    MAX_BATCH);
    return stochflow__check_finite(x, n * m->d, "points x");
}

/* What an evaluation computes, block by block. */
typedef struct {
    double t;
    const float *x;      /* [n x d] */
    size_t n;
    float *v;            /* [n x d] velocity, or NULL */
    float *div;          /* [n] exact divergence, or NULL */
    const float *probes; /* [n x K x d] Hutchinson probes (with quad), or NULL */
    size_t K;
    float *quad;         /* [n x K] */
    const float *cot;    /* [n x d] cotangents of a VJP, or NULL */
    float *vjp;          /* [n x d] */
    size_t T;            /* tangents per row: d (div), K (probes) or 0 */
    int back;            /* backward needed (VJP) */
    const float *ctx;    /* [n x n_ctx] context, or NULL (doc/conditional.md) */
    const int32_t *labels; /* [n] labels, or NULL */
    size_t n_ctx;
} eval_job;

/* One block of an evaluation: rows [s, s + block) (fewer for the last block), in ws
 * (the network's block workspace, then the block's quadratic forms [block x T]).
 * Returns the index (in v's numbering, s*d + i) of the first non-finite velocity
 * element of the block, or SIZE_MAX. Writes no error message: it may run on a worker
 * thread, whose thread-local message the caller would never see. */
static size_t eval_block(const stochflow__network *net, const float *p, const eval_job *J,
                         size_t s, size_t block, float *ws, size_t net_f, int nt) {
    const size_t d = net->d;
    const size_t rows = J->n - s < block ? J->n - s : block;
    const stochflow__cond cond = {J->ctx ? J->ctx + s * J->n_ctx : NULL,
                                  J->labels ? J->labels + s : NULL, NULL};
    size_t stride;
    float *in = net->ops->input(&stride, net->self, ws, rows);
    for (size_t i = 0; i < rows; ++i) memcpy(in + i * stride, J->x + (s + i) * d, d * sizeof *in);
    const float *out = net->ops->forward(net->self, p, ws, rows, NULL, J->t, &cond,
                                         J->T > 0 || J->back, nt);
    if (J->v) memcpy(J->v + s * d, out, rows * d * sizeof *out);
    for (size_t i = 0; i < rows * d; ++i)
        if (!stochflow__finitef(out[i])) return s * d + i;
    if (J->back) {
        net->ops->backward(net->self, p, ws, rows, J->cot + s * d, NULL, J->vjp + s * d, nt);
    } else if (J->div) {
        float *qbuf = ws + net_f;
        net->ops->tangents(net->self, p, ws, rows, NULL, d, qbuf, nt);
        for (size_t i = 0; i < rows; ++i) {
            double acc = 0.0;
            for (size_t k = 0; k < d; ++k) acc += qbuf[i * d + k];
            J->div[s + i] = (float)acc;
        }
    } else if (J->T) {
        net->ops->tangents(net->self, p, ws, rows, J->probes + s * J->K * d, J->K,
                           J->quad + s * J->K, nt);
    }
    return SIZE_MAX;
}

/* Run an evaluation in blocks (the policy above). Rows are independent, so a
 * row-parallel network's blocks run one per thread with single-threaded kernels: one
 * parallel region per call instead of several per layer, and a block's activations stay
 * in cache. A batch of one block, or a network that threads its own kernels, runs the
 * blocks in order with threaded kernels instead. Either way every row's result is the
 * same whatever the thread count (doc/threading.md). */
static int eval_run(stochflow_model *m, const eval_job *J) {
    const stochflow__network *net = &m->net;
    const size_t n = J->n, T = J->T;
    const int nt = (int)m->hp.threads;
    size_t block = EVAL_BLOCK_ROWS / (net->ops->tangents_as_rows ? 1 + T : 1);
    if (net->ops->max_block_rows && block > net->ops->max_block_rows)
        block = net->ops->max_block_rows;
    const size_t one = net->ops->row_floats(net->self, nt);
    if (one && block > EVAL_BLOCK_FLOATS / one) block = EVAL_BLOCK_FLOATS / one;
    if (net->ops->row_parallel && block > (n + EVAL_MIN_BLOCKS - 1) / EVAL_MIN_BLOCKS)
        block = (n + EVAL_MIN_BLOCKS - 1) / EVAL_MIN_BLOCKS;
    if (block < 1) block = 1;
    if (block > n) block = n;
    const size_t nblocks = (n + block - 1) / block;
    int outer = net->ops->row_parallel ? nt : 1;
    if ((size_t)outer > nblocks) outer = (int)nblocks;
    if (outer < 1) outer = 1;
#ifndef _OPENMP
    outer = 1; /* no OpenMP: the blocks run in order */
#endif
    /* each thread's slice: the network's workspace, then the quadratic forms of the
     * exact trace [block x d]; 64-byte aligned */
    size_t net_f, q_f = 0, per_block;
    RETURN_ERROR_IF(net->ops->ws_floats(&net_f, net->self, block, J->back, T,
                                        outer > 1 ? 1 : nt) != 0 ||
                        (J->div && stochflow__mul_size(&q_f, block, T) != 0),
                    STOCHFLOW_E_INVALID, "batch too large");
    RETURN_ERROR_IF(net_f > SIZE_MAX - 15 - q_f, STOCHFLOW_E_INVALID, "batch too large");
    per_block = stochflow__pad16(net_f + q_f);
    RETURN_ERROR_IF(per_block > SIZE_MAX / (size_t)outer, STOCHFLOW_E_INVALID, "batch too large");
    FORWARD_IF_ERROR(ensure_ws(m, per_block * (size_t)outer));
    const float *p = stochflow__model_eval_weights(m);
    size_t bad = SIZE_MAX; /* first non-finite velocity element, over all blocks */
    if (outer > 1) {
#ifdef _OPENMP
#pragma omp parallel num_threads(outer)
        {
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
            size_t my_bad = SIZE_MAX;
            for (size_t b = (size_t)tid; b < nblocks; b += (size_t)nth) {
                size_t e = eval_block(net, p, J, b * block, block,
                                      m->ws + (size_t)tid * per_block, net_f, 1);
                if (e < my_bad) my_bad = e;
            }
#pragma omp critical(stochflow_eval_bad)
            if (my_bad < bad) bad = my_bad;
        }
#endif
    } else {
        for (size_t b = 0; b < nblocks; ++b) {
            size_t e = eval_block(net, p, J, b * block, block, m->ws, net_f, nt);
            if (e < bad) bad = e;
        }
    }
    if (bad != SIZE_MAX && J->v)
        return stochflow__error(STOCHFLOW_E_NONFINITE,
                                "velocity contains a non-finite value at index %zu (%g)", bad,
                                (double)J->v[bad]);
    RETURN_ERROR_IF(bad != SIZE_MAX, STOCHFLOW_E_NONFINITE,
                    "velocity contains a non-finite value at index %zu", bad);
    return 0;
}

int stochflow__model_eval(stochflow_model *m, double t, const float *x, size_t n, float *v,
                          float *div, const float *probes, size_t K, float *quad) {
    return stochflow__model_eval_ctx(m, t, x, NULL, NULL, 0.0, n, v, div, probes, K, quad);
}

/* out = (1 + w) out - w other, element by element (guidance, doc/conditional.md) */
static void guide(float *out, const float *other, size_t len, double w) {
    for (size_t i = 0; i < len; ++i)
        out[i] = (float)((1.0 + w) * (double)out[i] - w * (double)other[i]);
}

int stochflow__model_eval_ctx(stochflow_model *m, double t, const float *x, const float *ctx,
                              const int32_t *labels, double w, size_t n, float *v, float *div,
                              const float *probes, size_t K, float *quad) {
    CHECK_MODEL(m);
    FORWARD_IF_ERROR(check_eval(m, t, x, n));
    FORWARD_IF_ERROR(stochflow__model_check_cond(m, ctx, labels, n));
    FORWARD_IF_ERROR(stochflow__std_ctx(&ctx, m, ctx, n)); /* context in the user's units */
    RETURN_ERROR_IF(!isfinite(w), STOCHFLOW_E_INVALID, "guidance scale %g is not finite", w);
    RETURN_ERROR_IF(w != 0.0 && m->cfg.n_ctx == 0 && m->cfg.n_classes == 0,
                    STOCHFLOW_E_INVALID, "guidance needs a conditional model");
    if (n == 0) return 0;
    RETURN_ERROR_IF(div && probes && quad, STOCHFLOW_E_INVALID,
                    "model_eval: ask for the exact divergence or probes, not both");
    const int hutch = probes && quad;
    eval_job J = {t, x, n, v, div, hutch ? probes : NULL, K, quad, NULL, NULL,
                  div ? m->d : (hutch ? K : 0), 0, ctx, labels, m->cfg.n_ctx};
    FORWARD_IF_ERROR(eval_run(m, &J));
    if (w == 0.0) return 0; /* unguided: exactly the conditional field */
    /* the same outputs without conditioning, then (1 + w) f(c) - w f(none) */
    size_t nd = n * m->d, nq = hutch ? n * K : (div ? n : 0); /* sizes checked by eval_run */
    float *buf = stochflow__alloc_array((v ? nd : 0) + nq + 1, sizeof(float));
    RETURN_ERROR_IF(buf == NULL, STOCHFLOW_E_NOMEM, "guided evaluation: out of memory");
    float *v0 = v ? buf : NULL, *q0 = buf + (v ? nd : 0);
    eval_job U = J;
    U.v = v0;
    U.div = div ? q0 : NULL;
    U.quad = hutch ? q0 : NULL;
    U.ctx = NULL;
    U.labels = NULL;
    int rc = eval_run(m, &U);
    if (rc == 0) {
        if (v) guide(v, v0, nd, w);
        if (div) guide(div, q0, n, w);
        if (hutch) guide(quad, q0, n * K, w);
    }
    stochflow__free(buf);
    return rc;
}

STOCHFLOW_API int stochflow_model_velocity(float *v, stochflow_model *m, double t,
                                           const float *x, size_t n) {
    return stochflow_model_velocity_ctx(v, m, t, x, NULL, NULL, n);
}

STOCHFLOW_API int stochflow_model_velocity_ctx(float *v, stochflow_model *m, double t,
                                               const float *x, const float *ctx,
                                               const int32_t *labels, size_t n) {
    RETURN_ERROR_IF(v == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity: output is NULL");
    STOCHFLOW__ENTER(m, "model");
    return stochflow__model_eval_ctx(m, t, x, ctx, labels, 0.0, n, v, NULL, NULL, 0, NULL);
}

STOCHFLOW_API int stochflow_model_divergence(float *div, float *v, stochflow_model *m, double t,
                                             const float *x, size_t n) {
    return stochflow_model_divergence_ctx(div, v, m, t, x, NULL, NULL, n);
}

STOCHFLOW_API int stochflow_model_divergence_ctx(float *div, float *v, stochflow_model *m,
                                                 double t, const float *x, const float *ctx,
                                                 const int32_t *labels, size_t n) {
    RETURN_ERROR_IF(div == NULL && n > 0, STOCHFLOW_E_INVALID, "divergence: output is NULL");
    STOCHFLOW__ENTER(m, "model");
    return stochflow__model_eval_ctx(m, t, x, ctx, labels, 0.0, n, v, div, NULL, 0, NULL);
}

STOCHFLOW_API int stochflow_model_velocity_vjp(float *out, stochflow_model *m, double t,
                                               const float *x, const float *u, size_t n) {
    return stochflow_model_velocity_vjp_ctx(out, m, t, x, NULL, NULL, u, n);
}

STOCHFLOW_API int stochflow_model_velocity_vjp_ctx(float *out, stochflow_model *m, double t,
                                                   const float *x, const float *ctx,
                                                   const int32_t *labels, const float *u,
                                                   size_t n) {
    RETURN_ERROR_IF(out == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity_vjp: output is NULL");
    RETURN_ERROR_IF(u == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity_vjp: u is NULL");
    CHECK_MODEL(m);
    STOCHFLOW__ENTER(m, "model");
    FORWARD_IF_ERROR(check_eval(m, t, x, n));
    FORWARD_IF_ERROR(stochflow__model_check_cond(m, ctx, labels, n));
    FORWARD_IF_ERROR(stochflow__std_ctx(&ctx, m, ctx, n)); /* context in the user's units */
    if (n == 0) return 0;
    FORWARD_IF_ERROR(stochflow__check_finite(u, n * m->d, "cotangent u"));
    eval_job J = {t, x, n, NULL, NULL, NULL, 0, NULL, u, out, 0, 1, ctx, labels, m->cfg.n_ctx};
    FORWARD_IF_ERROR(eval_run(m, &J));
    return stochflow__check_finite(out, n * m->d, "vector-Jacobian product");
}

STOCHFLOW_API int stochflow_model_context(size_t *n_ctx, size_t *n_classes,
                                          const stochflow_model *m) {
    CHECK_MODEL(m);
    if (n_ctx) *n_ctx = m->cfg.n_ctx;
    if (n_classes) *n_classes = m->cfg.n_classes;
    return 0;
}
