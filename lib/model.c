/* model.c - the model handle: construction, accessors, and everything the networks
 * share (lib/network.h): batch validation, the draws and the pairing of a batch, the
 * loss and its gradient, the update (optimizer and interpolant ascent), the evaluation
 * weights, and the one blocking policy of evaluations (velocity, divergence, Hutchinson
 * forms, VJP). The networks themselves: lib/mlp.c, lib/unet.c. How a batch becomes a
 * gradient step: doc/architecture.md. */
#include <math.h>
#include <string.h>

#include "model.h"
#include "parallel.h"

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
    stochflow__transport_free(&m->tr);
    stochflow__network_free(&m->net);
    stochflow__free(m);
}

#define CHECK_MODEL(m) RETURN_ERROR_IF((m) == NULL, STOCHFLOW_E_INVALID, "model is NULL")

STOCHFLOW_API int stochflow_model_config(stochflow_config **out, const stochflow_model *m) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "model_config: out is NULL");
    *out = NULL;
    CHECK_MODEL(m);
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
    double *field = stochflow__hparams_field((stochflow__hparams *)&m->hp, key);
    RETURN_ERROR_IF(field == NULL, STOCHFLOW_E_UNSUPPORTED,
                    "model_get_param: key %d is not a model parameter", key);
    *out = *field;
    return 0;
}

STOCHFLOW_API int stochflow_model_set_schedule(stochflow_model *m, stochflow_schedule_fn fn,
                                               void *user) {
    CHECK_MODEL(m);
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
    *params = m->params;
    if (count) *count = m->n_params;
    return 0;
}

STOCHFLOW_API int stochflow_model_gradients(float **grads, size_t *count, stochflow_model *m) {
    RETURN_ERROR_IF(grads == NULL, STOCHFLOW_E_INVALID, "model_gradients: grads is NULL");
    CHECK_MODEL(m);
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

static size_t pad16(size_t floats) { return (floats + 15) / 16 * 16; }

static const float *eval_weights(const stochflow_model *m) {
    if (m->hp.eval_weights == 1 && m->hp.ema_decay > 0 && m->ema_valid) return m->ema;
    return m->params;
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

/* Rows [lo, hi) of a training batch: draw t and x0 where not given, write the network
 * input x_t = a x0 + b x1 (rows `stride` floats apart), the time t_rows[i] and the
 * target dI/dt = a' x0 + b' x1. */
static void assemble_rows(const stochflow_model *m, float *xt, size_t stride, double *t_rows,
                          float *target, const float *x1, const float *x0, const float *t,
                          int train, size_t lo, size_t hi) {
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
        t_rows[i] = ti;
        double c[4];
        (void)stochflow__interp_eval(&m->cfg.interp, ti, c); /* checked by the caller */
        if (!x0)
            stochflow__rng_init(&rx, m->cfg.seed, train ? STOCHFLOW__STREAM_X0 : STOCHFLOW__STREAM_EVAL_X0,
                                m->step, i);
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

/* Loss (and, with want_grad, gradient into m->grads) on one batch. Draws use the
 * training streams (train = 1) or the evaluation streams, keyed by the current step. */
static int loss_grad(double *loss_out, stochflow_model *m, const float *x1, size_t n,
                     const float *x0, const float *t, int want_grad, int train) {
    RETURN_ERROR_IF(loss_out == NULL, STOCHFLOW_E_INVALID, "loss output is NULL");
    CHECK_MODEL(m);
    FORWARD_IF_ERROR(check_batch(m, x1, n, x0, t));
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
    /* workspace: the times [n] (doubles), the target then dG/do [n x d], the network's */
    size_t net_f, nd, head;
    RETURN_ERROR_IF(net->ops->ws_floats(&net_f, net->self, n, want_grad, 0, nt) != 0 ||
                        stochflow__mul_size(&nd, n, d) != 0 || nd > SIZE_MAX / 2 - 4 * n ||
                        (head = pad16(2 * n) + pad16(nd)) > SIZE_MAX - net_f,
                    STOCHFLOW_E_INVALID, "batch of %zu rows is too large", n);
    FORWARD_IF_ERROR(ensure_ws(m, head + net_f));
    double *t_rows = pr.t ? pr.t : (double *)m->ws;
    float *target = m->ws + pad16(2 * n), *ws = m->ws + head;

    /* Inputs: rows are independent (draws keyed by row), so they are split across
     * threads, except for a caller's schedule callback, which is only ever called from
     * the calling thread. */
    double c0[4];
    FORWARD_IF_ERROR(stochflow__interp_eval(ip, 0.5, c0)); /* fails only here */
    const int ant = ip->kind == STOCHFLOW_INTERP_CUSTOM ? 1 : nt;
    size_t stride;
    float *xt = net->ops->input(&stride, net->self, ws, n);
#define BODY(lo, hi) assemble_rows(m, xt, stride, t_rows, target, x1, x0, t, train, lo, hi)
    PARALLEL_RANGES(n, n * (d + 8) * 16, ant, 1, BODY);
#undef BODY

    const float *out =
        net->ops->forward(net->self, m->params, ws, n, t_rows, 0.0, NULL, 1, nt);

    /* G = mean |o|^2 - 2 dI.o, and dG/do = 2 (o - dI) / n (overwrites target). */
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
    if (!want_grad) return 0;
    /* zeroed in parallel: one thread alone here would leave the others waiting */
#define BODY(lo, hi) memset(m->grads + (lo), 0, ((hi) - (lo)) * sizeof *m->grads)
    PARALLEL_RANGES(m->n_params, m->n_params, nt, 16, BODY);
#undef BODY
    net->ops->backward(net->self, m->params, ws, n, target, m->grads, fourier ? pr.du : NULL,
                       nt);
    if (fourier) {
        stochflow__interp_coef_grad(m->tr.grad, ip, out, pr.du, d, x0, x1, t_rows, n, d);
        m->tr.grad_valid = 1;
    }
    if (train) stochflow__transport_record_loss(&m->tr, *loss_out);
    return 0;
}

STOCHFLOW_API int stochflow_model_loss(double *loss, stochflow_model *m, const float *x1,
                                       size_t n, const float *x0, const float *t) {
    return loss_grad(loss, m, x1, n, x0, t, 0, 0);
}

STOCHFLOW_API int stochflow_model_compute_gradient(double *loss, stochflow_model *m,
                                                   const float *x1, size_t n, const float *x0,
                                                   const float *t) {
    return loss_grad(loss, m, x1, n, x0, t, 1, 1);
}

STOCHFLOW_API int stochflow_model_apply_gradient(stochflow_model *m) {
    CHECK_MODEL(m);
    FORWARD_IF_ERROR(stochflow__optimizer_apply(m)); /* network Adam + coefficient ascent */
    stochflow__transport_step_done(&m->tr);           /* path-length estimate */
    return 0;
}

STOCHFLOW_API int stochflow_model_train_step(double *loss, stochflow_model *m, const float *x1,
                                             size_t n, const float *x0, const float *t) {
    FORWARD_IF_ERROR(loss_grad(loss, m, x1, n, x0, t, 1, 1));
    return stochflow_model_apply_gradient(m);
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
    size_t stride;
    float *in = net->ops->input(&stride, net->self, ws, rows);
    for (size_t i = 0; i < rows; ++i) memcpy(in + i * stride, J->x + (s + i) * d, d * sizeof *in);
    const float *out = net->ops->forward(net->self, p, ws, rows, NULL, J->t, NULL,
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
    per_block = pad16(net_f + q_f);
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
    CHECK_MODEL(m);
    FORWARD_IF_ERROR(check_eval(m, t, x, n));
    if (n == 0) return 0;
    RETURN_ERROR_IF(div && probes && quad, STOCHFLOW_E_INVALID,
                    "model_eval: ask for the exact divergence or probes, not both");
    const int hutch = probes && quad;
    eval_job J = {t, x, n, v, div, hutch ? probes : NULL, K, quad, NULL, NULL,
                  div ? m->d : (hutch ? K : 0), 0};
    return eval_run(m, &J);
}

STOCHFLOW_API int stochflow_model_velocity(float *v, stochflow_model *m, double t,
                                           const float *x, size_t n) {
    RETURN_ERROR_IF(v == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity: output is NULL");
    return stochflow__model_eval(m, t, x, n, v, NULL, NULL, 0, NULL);
}

STOCHFLOW_API int stochflow_model_divergence(float *div, float *v, stochflow_model *m, double t,
                                             const float *x, size_t n) {
    RETURN_ERROR_IF(div == NULL && n > 0, STOCHFLOW_E_INVALID, "divergence: output is NULL");
    return stochflow__model_eval(m, t, x, n, v, div, NULL, 0, NULL);
}

STOCHFLOW_API int stochflow_model_velocity_vjp(float *out, stochflow_model *m, double t,
                                               const float *x, const float *u, size_t n) {
    RETURN_ERROR_IF(out == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity_vjp: output is NULL");
    RETURN_ERROR_IF(u == NULL && n > 0, STOCHFLOW_E_INVALID, "velocity_vjp: u is NULL");
    CHECK_MODEL(m);
    FORWARD_IF_ERROR(check_eval(m, t, x, n));
    if (n == 0) return 0;
    FORWARD_IF_ERROR(stochflow__check_finite(u, n * m->d, "cotangent u"));
    eval_job J = {t, x, n, NULL, NULL, NULL, 0, NULL, u, out, 0, 1};
    FORWARD_IF_ERROR(eval_run(m, &J));
    return stochflow__check_finite(out, n * m->d, "vector-Jacobian product");
}
