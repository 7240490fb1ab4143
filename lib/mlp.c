/* mlp.c - the MLP velocity field v(t, x) behind the network interface (network.h):
 * layout, initial weights, forward, backward (parameter gradients and input VJP), and
 * the forward-mode Jacobian trace.
 *
 * Network: input u = [x, phi(t), cond] (n_in = d + n_time + n_cond), hidden layers
 *   z_l = a_{l-1} W_l^T + b_l,  a_l = f(z_l)     (l = 1..L, a_0 = u)
 * and a linear output v = a_L W_o^T + b_o. Parameters live in one flat block, layer by
 * layer, each layer as W (out x in, row-major) then b (out). Derivations:
 * doc/gradients.md; the layout: doc/architecture.md.
 *
 * Conditioning (doc/conditional.md): cond = [c (n_ctx), null flag (1 when n_ctx > 0),
 * E[label] (n_emb when n_classes > 0)], absent for an unconditional model, whose layout
 * and bits are unchanged. A row without context (or whose context training drops) has
 * c = 0 and flag 1, otherwise flag 0. The label embedding E [(n_classes + 1) x n_emb]
 * follows the last layer in the block; its row n_classes is the learned "no label"
 * embedding (label -1, or a dropped label). */
#include <math.h>
#include <string.h>

#include "layers.h"
#include "model.h"
#include "network.h"
#include "parallel.h"

/* A dense layer y = x W^T + b; W is out x in (row-major), both inside the flat block. */
typedef struct {
    size_t in, out;
    size_t w_off, b_off;
} dense;

typedef struct {
    stochflow__fc_input in; /* the input row [x, phi(t), cond] (network.h) */
    size_t emb_off;    /* the label embedding's offset in the parameter block */
    size_t n_layers;   /* dense layers = n_hidden + 1 */
    size_t max_width;  /* max over hidden widths */
    int activation;
    dense layers[STOCHFLOW__MAX_HIDDEN + 1];
    size_t n_params;
} mlp;

/* ---- layout ----------------------------------------------------------------------- */

/* Label embedding width: as many as the embedding has rows (n_classes + 1), at most 32. */
static size_t emb_width(size_t n_classes) {
    return n_classes == 0 ? 0 : (n_classes + 1 < 32 ? n_classes + 1 : 32);
}

void stochflow__fc_input_layout(stochflow__fc_input *in, const stochflow_config *c) {
    in->d = c->dim;
    in->n_freq = c->n_freq;
    in->n_time = c->time_kind == STOCHFLOW_TIME_FOURIER ? 1 + 2 * c->n_freq : 1;
    in->n_ctx = c->n_ctx;
    in->n_classes = c->n_classes;
    in->n_emb = emb_width(c->n_classes);
    in->n_cond = (in->n_ctx ? in->n_ctx + 1 : 0) + in->n_emb;
    in->n_in = in->d + in->n_time + in->n_cond;
}

/* Layer geometry and parameter count from a validated config (no allocation).
 * Returns -1 if the count overflows. */
static int layout(mlp *m, const stochflow_config *c) {
    stochflow__fc_input_layout(&m->in, c);
    m->activation = c->activation;
    m->n_layers = c->n_hidden + 1;
    m->max_width = 0;
    size_t off = 0, in = m->in.n_in;
    for (size_t l = 0; l < m->n_layers; ++l) {
        size_t out = l < c->n_hidden ? c->hidden[l] : m->in.d;
        if (l < c->n_hidden && out > m->max_width) m->max_width = out;
        size_t wcount;
        if (stochflow__mul_size(&wcount, in, out) != 0) return -1;
        m->layers[l] = (dense){in, out, off, off + wcount};
        if (off + wcount + out < off) return -1;
        off += wcount + out;
        in = out;
    }
    m->emb_off = off;
    off += stochflow__fc_emb_floats(&m->in); /* bounded by the configuration's limits */
    m->n_params = off;
    return 0;
}

size_t stochflow__fc_emb_floats(const stochflow__fc_input *in) {
    return in->n_emb ? (in->n_classes + 1) * in->n_emb : 0;
}

/* The label embedding: standard normal, row j from (seed, INIT, step, row j). */
void stochflow__fc_emb_init(float *emb, const stochflow__fc_input *in, uint64_t seed,
                            uint64_t step) {
    for (size_t j = 0; in->n_emb && j <= in->n_classes; ++j) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_INIT, step, j);
        for (size_t k = 0; k < in->n_emb; ++k)
            emb[j * in->n_emb + k] = (float)stochflow__rng_normal(&r);
    }
}

/* PyTorch's nn.Linear default: W [out x in] and b ~ U(-1/sqrt(in), 1/sqrt(in)); row j
 * draws from (seed, INIT stream, step, row = j). */
void stochflow__fc_dense_init(float *w, float *b, size_t in, size_t out, uint64_t seed,
                              uint64_t step) {
    double bound = 1.0 / sqrt((double)in);
    for (size_t j = 0; j < out; ++j) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_INIT, step, j);
        float *wr = w + j * in;
        for (size_t k = 0; k < in; ++k)
            wr[k] = (float)((2.0 * stochflow__rng_uniform(&r) - 1.0) * bound);
        b[j] = (float)((2.0 * stochflow__rng_uniform(&r) - 1.0) * bound);
    }
}

static void init_weights(const void *self, float *p, uint64_t seed) {
    const mlp *m = self;
    for (size_t l = 0; l < m->n_layers; ++l) {
        const dense *L = &m->layers[l];
        stochflow__fc_dense_init(p + L->w_off, p + L->b_off, L->in, L->out, seed, l);
    }
    stochflow__fc_emb_init(p + m->emb_off, &m->in, seed, m->n_layers);
}

/* ---- workspace -------------------------------------------------------------------- */

/* A block's workspace: the activations of one forward pass, then one scratch region
 * that backward (g1, g2 [rows x H], part [BIAS_BLOCKS x H], du [rows x n_in]) and the
 * tangents (tan1, tan2 [rows*T x max(H, d)]) use in turn (never in the same pass). */
typedef struct {
    float *u;                               /* [rows x n_in] input [x, phi(t)] */
    float *a[STOCHFLOW__MAX_HIDDEN];        /* [rows x H_l] post-activation */
    float *fd[STOCHFLOW__MAX_HIDDEN];       /* [rows x H_l] f'(z_l) */
    float *out;                             /* [rows x d] */
    float *label;                           /* [rows] embedding row used (with labels) */
    float *scratch;
} acts;

static int acts_floats(size_t *out, const mlp *m, size_t rows) {
    size_t per_row = m->in.n_in + m->in.d + (m->in.n_emb ? 1 : 0);
    for (size_t l = 0; l + 1 < m->n_layers; ++l) per_row += 2 * m->layers[l].out;
    if (stochflow__mul_size(out, per_row, rows) != 0) return -1;
    return 0;
}

static void carve(acts *A, const mlp *m, float *p, size_t rows) {
    A->u = p;
    p += rows * m->in.n_in;
    for (size_t l = 0; l + 1 < m->n_layers; ++l) {
        A->a[l] = p;
        p += rows * m->layers[l].out;
        A->fd[l] = p;
        p += rows * m->layers[l].out;
    }
    A->out = p;
    p += rows * m->in.d;
    A->label = p;
    if (m->in.n_emb) p += rows;
    A->scratch = p;
}

static int ws_floats(size_t *out, const void *self, size_t rows, int backward, size_t T,
                     int nthreads) {
    (void)nthreads;
    const mlp *m = self;
    const size_t H = m->max_width, W = H > m->in.d ? H : m->in.d;
    size_t act_f, back_f = 0, tan_f = 0, x;
    if (acts_floats(&act_f, m, rows) != 0) return -1;
    if (backward) {
        if (stochflow__mul_size(&x, rows, 2 * H + m->in.n_in) != 0) return -1;
        back_f = x + STOCHFLOW__BIAS_BLOCKS * H;
        if (back_f < x) return -1;
    }
    if (T) {
        if (stochflow__mul_size(&x, rows, T) != 0 || stochflow__mul_size(&tan_f, x, 2 * W) != 0)
            return -1;
    }
    size_t scratch = back_f > tan_f ? back_f : tan_f;
    if (act_f > SIZE_MAX - scratch) return -1;
    *out = act_f + scratch;
    return 0;
}

static size_t row_floats(const void *self, int nthreads) {
    size_t f = 0;
    (void)ws_floats(&f, self, 1, 1, 0, nthreads); /* cannot overflow for one row */
    return f;
}

static float *input(size_t *stride, const void *self, float *ws, size_t rows) {
    (void)rows;
    const mlp *m = self;
    *stride = m->in.n_in;
    return ws; /* A.u comes first */
}

/* ---- forward ---------------------------------------------------------------------- */

static void time_embed(float *phi, size_t n_freq, double t) {
    phi[0] = (float)t;
    for (size_t k = 1; k <= n_freq; ++k) {
        phi[2 * k - 1] = (float)sin(STOCHFLOW__PI * (double)k * t);
        phi[2 * k] = (float)cos(STOCHFLOW__PI * (double)k * t);
    }
}

/* The time features of rows [lo, hi): each row's own time. */
static void embed_rows(const stochflow__fc_input *in, float *u, const double *t, size_t lo,
                       size_t hi) {
    for (size_t i = lo; i < hi; ++i) time_embed(u + i * in->n_in + in->d, in->n_freq, t[i]);
}

void stochflow__fc_input_fill(const stochflow__fc_input *in, float *u, float *label,
                              const float *emb, const double *t_rows, double t_all,
                              const stochflow__cond *cond, size_t rows, int nt) {
    if (t_rows) {
        /* per-row times (training): rows are independent, split across threads */
#define BODY(lo, hi) embed_rows(in, u, t_rows, lo, hi)
        PARALLEL_RANGES(rows, rows * (in->n_time + 8) * 16, nt, 1, BODY);
#undef BODY
    } else {
        float phi[1 + 2 * STOCHFLOW__MAX_FREQ];
        time_embed(phi, in->n_freq, t_all);
        for (size_t i = 0; i < rows; ++i)
            memcpy(u + i * in->n_in + in->d, phi, in->n_time * sizeof *phi);
    }
    if (in->n_cond)
        stochflow__cond_fill(u + in->d + in->n_time, in->n_in, label, emb, in->n_ctx,
                             in->n_classes, cond, rows);
}

void stochflow__fc_input_grad(float *dx, float *gemb, const stochflow__fc_input *in,
                              const float *du, const float *label, size_t rows) {
    if (dx)
        for (size_t i = 0; i < rows; ++i)
            memcpy(dx + i * in->d, du + i * in->n_in, in->d * sizeof *dx);
    if (gemb && in->n_emb) /* rows in order: bitwise whatever nt */
        stochflow__cond_emb_grad(gemb, du, in->n_in, label, in->n_classes, rows);
}

size_t stochflow__cond_emb_width(size_t n_classes) { return emb_width(n_classes); }

size_t stochflow__cond_width(size_t n_ctx, size_t n_classes) {
    return (n_ctx ? n_ctx + 1 : 0) + emb_width(n_classes);
}

void stochflow__cond_fill(float *u, size_t stride, float *label, const float *emb,
                          size_t n_ctx, size_t n_classes, const stochflow__cond *cond,
                          size_t rows) {
    const size_t n_emb = emb_width(n_classes);
    for (size_t i = 0; i < rows; ++i) {
        float *uc = u + i * stride;
        const int drop = cond && cond->drop && cond->drop[i];
        if (n_ctx) {
            const int have = cond && cond->ctx && !drop;
            if (have) {
                memcpy(uc, cond->ctx + i * n_ctx, n_ctx * sizeof *uc);
            } else {
                memset(uc, 0, n_ctx * sizeof *uc);
            }
            uc[n_ctx] = have ? 0.0f : 1.0f; /* the null flag */
            uc += n_ctx + 1;
        }
        if (n_emb) {
            int32_t lab = cond && cond->labels && !drop ? cond->labels[i] : -1;
            size_t row = lab < 0 ? n_classes : (size_t)lab; /* validated by model.c */
            memcpy(uc, emb + row * n_emb, n_emb * sizeof *uc);
            label[i] = (float)row;
        }
    }
}

void stochflow__cond_emb_grad(float *gemb, const float *g, size_t stride, const float *label,
                              size_t n_classes, size_t rows) {
    const size_t n_emb = emb_width(n_classes);
    for (size_t i = 0; i < rows; ++i) {
        float *ge = gemb + (size_t)label[i] * n_emb;
        const float *s = g + i * stride + stride - n_emb;
        for (size_t k = 0; k < n_emb; ++k) ge[k] += s[k];
    }
}

/* Forward pass over rows rows whose inputs A->u are filled; weights p. The activation
 * derivatives f'(z) are stored only when want_deriv (backward and the trace need them;
 * plain velocity evaluations do not). */
static const float *forward(const void *self, const float *p, float *ws, size_t rows,
                            const double *t_rows, double t_all, const stochflow__cond *cond,
                            int want_deriv, int nt) {
    const mlp *m = self;
    acts A;
    carve(&A, m, ws, rows);
    stochflow__fc_input_fill(&m->in, A.u, A.label, p + m->emb_off, t_rows, t_all, cond, rows, nt);
    const float *in = A.u;
    for (size_t l = 0; l < m->n_layers; ++l) {
        const dense *L = &m->layers[l];
        if (l + 1 < m->n_layers) {
            stochflow__dense_act_forward(A.a[l], want_deriv ? A.fd[l] : NULL, in,
                                         p + L->w_off, p + L->b_off, rows, L->in, L->out,
                                         m->activation, nt);
            in = A.a[l];
        } else {
            stochflow__dense_forward(A.out, in, p + L->w_off, p + L->b_off, rows, L->in, L->out,
                                     nt);
        }
    }
    return A.out;
}

/* ---- backward --------------------------------------------------------------------- */

/* Backward pass from dout [rows x d] through the network of weights p.
 * grads != NULL: accumulate parameter gradients into it. dx != NULL: the gradient with
 * respect to x ([rows x d], the first d columns of the input gradient du). */
static void backward(const void *self, const float *p, float *ws, size_t rows,
                     const float *dout, float *grads, float *dx, int nt) {
    const mlp *m = self;
    const size_t H = m->max_width;
    acts A;
    carve(&A, m, ws, rows);
    float *g1 = A.scratch, *g2 = g1 + rows * H, *part = g2 + rows * H;
    /* the input gradient also feeds the label embedding's gradient */
    float *du = dx || (grads && m->in.n_emb) ? part + STOCHFLOW__BIAS_BLOCKS * H : NULL;
    const float *dy = dout;
    int db_done = 0; /* layer l's bias gradient was summed in the activation pass */
    for (size_t l = m->n_layers; l-- > 0;) {
        const dense *L = &m->layers[l];
        const float *x = l == 0 ? A.u : A.a[l - 1];
        float *dxl = l == 0 ? du : g1;
        stochflow__dense_backward(dxl, 0, grads ? grads + L->w_off : NULL,
                                  grads && !db_done ? grads + L->b_off : NULL, dy, x,
                                  p + L->w_off, rows, L->in, L->out, nt);
        if (l > 0) {
            /* through the activation of hidden layer l-1, and its bias gradient */
            const dense *P = &m->layers[l - 1];
            stochflow__act_backward_bias(g1, grads ? grads + P->b_off : NULL, part, g1,
                                         A.fd[l - 1], rows, L->in, nt);
            db_done = 1;
            dy = g1;
            float *tmp = g1;
            g1 = g2;
            g2 = tmp;
        }
    }
    stochflow__fc_input_grad(dx, grads ? grads + m->emb_off : NULL, &m->in, du, A.label, rows);
}

/* ---- forward-mode tangents -------------------------------------------------------- */

/*
 * Forward-mode propagation of T tangents per row (see doc/gradients.md):
 *   tangent of z_1 = W_1[:, :d] e        (e: the input tangent, zero in the t part)
 *   tangent of a_l = f'(z_l) * tangent of z_l
 *   tangent of z_{l+1} = (tangent of a_l) W_{l+1}^T,    tangent of v = ... W_o^T
 * The T tangents of a row are T extra rows of a batched GEMM. For the exact trace the
 * tangents are the unit vectors e_j and only the diagonal (e_j . J e_j) of the output
 * is formed; for Hutchinson they are the probes and quad_k = e_k . (J e_k).
 */
void stochflow__fc_tangents_in(float *tan, const float *w0, size_t in, size_t out, size_t d,
                               const float *probes, size_t rows, size_t T, int nt) {
    if (probes == NULL) {
        /* e_k: column k of W_0 */
        for (size_t i = 0; i < rows; ++i)
            for (size_t k = 0; k < T; ++k) {
                float *tz = tan + (i * T + k) * out;
                for (size_t j = 0; j < out; ++j) tz[j] = w0[j * in + k];
            }
    } else {
        /* probes [rows*T x d] times W_0[:, :d]^T (row stride in) */
        (void)stochflow__sgemm(0, 1, rows * T, out, d, 1.0f, probes, d, w0, in, 0.0f, tan, out,
                               nt);
    }
}

void stochflow__fc_tangents_out(float *quad, float *scratch, const float *wo, size_t in,
                                size_t d, const float *tan, const float *probes, size_t rows,
                                size_t T, int nt) {
    if (probes == NULL) {
        /* exact trace: the diagonal W_o[k, :] . tan_k */
        for (size_t i = 0; i < rows; ++i)
            for (size_t k = 0; k < T; ++k)
                quad[i * T + k] = stochflow__dot(wo + k * in, tan + (i * T + k) * in, in);
        return;
    }
    /* y = tan W_o^T [rows*T x d] (into scratch), then quad = e . y */
    if (d <= 16) {
        for (size_t r = 0; r < rows * T; ++r)
            for (size_t j = 0; j < d; ++j)
                scratch[r * d + j] = stochflow__dot(wo + j * in, tan + r * in, in);
    } else {
        (void)stochflow__sgemm(0, 1, rows * T, d, in, 1.0f, tan, in, wo, in, 0.0f, scratch, d,
                               nt);
    }
    for (size_t r = 0; r < rows * T; ++r) {
        double acc = 0.0;
        for (size_t j = 0; j < d; ++j) acc += (double)probes[r * d + j] * scratch[r * d + j];
        quad[r] = (float)acc;
    }
}

static void tangents(const void *self, const float *p, float *ws, size_t rows,
                     const float *probes, size_t T, float *quad, int nt) {
    const mlp *m = self;
    const size_t d = m->in.d, W = m->max_width > d ? m->max_width : d;
    acts A;
    carve(&A, m, ws, rows);
    float *tan1 = A.scratch, *tan2 = tan1 + rows * T * W;
    const dense *L0 = &m->layers[0];
    /* first layer tangent: [rows*T x H_0] */
    stochflow__fc_tangents_in(tan1, p + L0->w_off, L0->in, L0->out, d, probes, rows, T, nt);
    /* hidden layers */
    for (size_t l = 0; l + 1 < m->n_layers; ++l) {
        const size_t H = m->layers[l].out;
        stochflow__scale_tangents(tan1, A.fd[l], rows, T, H, nt);
        const dense *N = &m->layers[l + 1];
        if (l + 2 < m->n_layers) {
            /* tangent of z_{l+1} = tan1 W^T (no bias): a dense layer with zero bias */
            (void)stochflow__sgemm(0, 1, rows * T, N->out, N->in, 1.0f, tan1, N->in,
                                   p + N->w_off, N->in, 0.0f, tan2, N->out, nt);
            float *tmp = tan1;
            tan1 = tan2;
            tan2 = tmp;
            continue;
        }
        /* output layer: only e_k . (W_o tan) is needed */
        stochflow__fc_tangents_out(quad, tan2, p + N->w_off, N->in, d, tan1, probes, rows, T, nt);
    }
}

/* ---- the table -------------------------------------------------------------------- */

void stochflow__fc_destroy(void *self) { stochflow__free(self); }

int stochflow__fc_network_new(stochflow__network *out, const stochflow__network_ops *ops,
                              const void *state, size_t size, size_t d, size_t n_params) {
    void *self = stochflow__malloc(size);
    RETURN_ERROR_IF(self == NULL, STOCHFLOW_E_NOMEM, "model_new: out of memory");
    memcpy(self, state, size);
    *out = (stochflow__network){ops, self, d, n_params};
    return 0;
}

static const stochflow__network_ops mlp_ops = {
    .name = "mlp",
    .tangents_as_rows = 1,
    .row_parallel = 1,
    .max_block_rows = 0,
    .row_floats = row_floats,
    .destroy = stochflow__fc_destroy,
    .init = init_weights,
    .ws_floats = ws_floats,
    .input = input,
    .forward = forward,
    .backward = backward,
    .tangents = tangents,
};

int stochflow__mlp_param_count(size_t *count, const stochflow_config *cfg) {
    mlp tmp;
    RETURN_ERROR_IF(layout(&tmp, cfg) != 0, STOCHFLOW_E_INVALID, "parameter count overflows");
    *count = tmp.n_params;
    return 0;
}

int stochflow__mlp_network(stochflow__network *out, const stochflow_config *cfg) {
    mlp tmp;
    RETURN_ERROR_IF(layout(&tmp, cfg) != 0, STOCHFLOW_E_INVALID, "parameter count overflows");
    return stochflow__fc_network_new(out, &mlp_ops, &tmp, sizeof tmp, tmp.in.d, tmp.n_params);
}
