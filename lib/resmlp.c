/* resmlp.c - the residual MLP velocity field v(t, x) behind the network interface
 * (network.h): layout, initial weights, forward, backward (parameter gradients and input
 * VJP), and the forward-mode Jacobian trace.
 *
 * Network (width w, B blocks, activation f; the MLP's input row u = [x, phi(t), cond],
 * network.h):
 *   h_0     = u W_in^T + b_in                                          [rows x w]
 *   n_b     = LN_b(h_{b-1}),  a_b = f(n_b W1_b^T + b1_b),
 *   h_b     = h_{b-1} + a_b W2_b^T + b2_b                      (b = 1..B, pre-norm)
 *   v       = f(LN_f(h_B)) W_o^T + b_o                                 [rows x d]
 * LN: LayerNorm over the w columns with its own gamma, beta (lib/layers.h).
 * With K > 0 linear experts (stochflow_config_set_resmlp_experts) the output gains
 *   z = [x, t x, t]                                                [rows x (2d + 1)]
 *   g = softmax(f(LN_f(h_B)) W_g^T + b_g),  e_k = z E_k^T + c_k     [rows x K], [rows x d]
 *   v += sum_k g_k e_k
 * with E_k the rows [k d, (k + 1) d) of E [Kd x (2d + 1)] and c_k those of c [Kd].
 * At the start W2_b = b2_b = 0 (each block the identity), gamma = 1, beta = 0, E = c = 0
 * (no expert adds anything), the dense layers as PyTorch's nn.Linear. Parameters in one
 * flat block, in this order: W_in, b_in; per block gamma, beta, W1, b1, W2, b2; the final
 * gamma, beta; W_o, b_o; with experts W_g, b_g, E, c; the label embedding (with labels).
 * Derivations: doc/gradients.md ("Residual MLP", "Linear experts"). */
#include <math.h>
#include <string.h>

#include "fastmath.h"
#include "layers.h"
#include "model.h"
#include "network.h"
#include "parallel.h"

typedef struct {
    size_t g, be, w1, b1, w2, b2; /* offsets of one block's parameters */
} block;

typedef struct {
    stochflow__fc_input in;
    size_t w, n_blocks;
    int activation;
    size_t w_in, b_in;
    block blk[STOCHFLOW__MAX_RES_BLOCKS];
    size_t fg, fb, w_o, b_o; /* the final norm and the output layer */
    size_t K, n_z;           /* linear experts (0: none); z's width 2d + 1 */
    size_t w_g, b_g, e_w, e_c; /* the gate layer; the experts' E and c */
    size_t emb_off;
    size_t n_params;
} resmlp;

/* ---- layout ----------------------------------------------------------------------- */

/* Offsets and parameter count from a validated config; -1 if the count overflows. */
static int layout(resmlp *m, const stochflow_config *c) {
    stochflow__fc_input_layout(&m->in, c);
    const size_t w = c->res_width, n_in = m->in.n_in, d = m->in.d;
    m->w = w;
    m->n_blocks = c->res_blocks;
    m->activation = c->activation;
    size_t ww, win, wo, per_block;
    if (stochflow__mul_size(&ww, w, w) != 0 || stochflow__mul_size(&win, w, n_in) != 0 ||
        stochflow__mul_size(&wo, d, w) != 0 || ww > (SIZE_MAX - 4 * w) / 2)
        return -1;
    per_block = 2 * ww + 4 * w;
    size_t off = 0;
    m->w_in = off;
    m->b_in = off + win;
    if (win > SIZE_MAX - w) return -1;
    off = win + w;
    for (size_t b = 0; b < m->n_blocks; ++b) {
        if (off > SIZE_MAX - per_block) return -1;
        block *B = &m->blk[b];
        B->g = off;
        B->be = off + w;
        B->w1 = off + 2 * w;
        B->b1 = B->w1 + ww;
        B->w2 = B->b1 + w;
        B->b2 = B->w2 + ww;
        off += per_block;
    }
    const size_t tail = 2 * w + d, emb = stochflow__fc_emb_floats(&m->in);
    if (wo > SIZE_MAX - tail || emb > SIZE_MAX - (wo + tail) || off > SIZE_MAX - (wo + tail) - emb)
        return -1;
    m->fg = off;
    m->fb = off + w;
    m->w_o = off + 2 * w;
    m->b_o = m->w_o + wo;
    off = m->b_o + d;
    /* the experts: W_g [K x w], b_g [K], E [Kd x n_z], c [Kd] */
    m->K = c->res_experts;
    m->n_z = 2 * d + 1;
    size_t kw, kd, ke, head = 0;
    if (stochflow__mul_size(&kw, m->K, w) != 0 || stochflow__mul_size(&kd, m->K, d) != 0 ||
        stochflow__mul_size(&ke, kd, m->n_z) != 0 || ke > SIZE_MAX - kw - m->K - kd)
        return -1;
    head = kw + m->K + ke + kd;
    if (off > SIZE_MAX - head - emb) return -1;
    m->w_g = off;
    m->b_g = off + kw;
    m->e_w = m->b_g + m->K;
    m->e_c = m->e_w + ke;
    m->emb_off = off + head;
    m->n_params = m->emb_off + emb;
    return 0;
}

/* Dense layers draw from (seed, INIT, step, row): step 0 the input layer, 1 + 2b block
 * b's first layer, 2 + 2B the output layer, 3 + 2B the label embedding, 4 + 2B the
 * experts' gate layer. */
static void init_weights(const void *self, float *p, uint64_t seed) {
    const resmlp *m = self;
    const size_t w = m->w, B = m->n_blocks;
    stochflow__fc_dense_init(p + m->w_in, p + m->b_in, m->in.n_in, w, seed, 0);
    for (size_t b = 0; b < B; ++b) {
        const block *K = &m->blk[b];
        for (size_t j = 0; j < w; ++j) {
            p[K->g + j] = 1.0f;
            p[K->be + j] = 0.0f;
        }
        stochflow__fc_dense_init(p + K->w1, p + K->b1, w, w, seed, 1 + 2 * b);
        memset(p + K->w2, 0, (w * w + w) * sizeof *p); /* W2 then b2 */
    }
    for (size_t j = 0; j < w; ++j) {
        p[m->fg + j] = 1.0f;
        p[m->fb + j] = 0.0f;
    }
    stochflow__fc_dense_init(p + m->w_o, p + m->b_o, w, m->in.d, seed, 2 + 2 * B);
    stochflow__fc_emb_init(p + m->emb_off, &m->in, seed, 3 + 2 * B);
    if (m->K) {
        stochflow__fc_dense_init(p + m->w_g, p + m->b_g, w, m->K, seed, 4 + 2 * B);
        memset(p + m->e_w, 0, m->K * m->in.d * (m->n_z + 1) * sizeof *p); /* E then c */
    }
}

/* ---- workspace -------------------------------------------------------------------- */

/* A block's workspace: what forward keeps, then one scratch region that backward
 * (g, g1, g2 [rows x w], part [BIAS_BLOCKS x 2w], du [rows x n_in]; with experts de
 * [rows x Kd], dz [rows x n_z], dl [rows x K]) and the tangents (th, t1, t2
 * [rows*T x max(w, d)]; with experts tl [rows*T x K]) use in turn. */
typedef struct {
    float *u;                                  /* [rows x n_in] */
    float *h[STOCHFLOW__MAX_RES_BLOCKS + 1];   /* [rows x w] h_0 .. h_B */
    float *n[STOCHFLOW__MAX_RES_BLOCKS];       /* [rows x w] LN_b(h_{b-1}) */
    float *a[STOCHFLOW__MAX_RES_BLOCKS + 1];   /* [rows x w] a_b; a[B]: f(LN_f(h_B)) */
    float *fd[STOCHFLOW__MAX_RES_BLOCKS + 1];  /* [rows x w] f' at a's pre-activation */
    float *out;                                /* [rows x d] */
    float *mean, *rstd;                        /* [(B + 1) x rows] of each norm */
    float *label;                              /* [rows] (with labels) */
    float *z, *gate, *ex;                      /* experts: [rows x n_z], [rows x K], [rows x Kd] */
    float *scratch;
} acts;

static size_t acts_per_row(const resmlp *m) {
    const size_t w = m->w, B = m->n_blocks;
    return m->in.n_in + (B + 1) * w + B * w + 2 * (B + 1) * w + m->in.d + 2 * (B + 1) +
           (m->in.n_emb ? 1 : 0) + (m->K ? m->n_z + m->K + m->K * m->in.d : 0);
}

static void carve(acts *A, const resmlp *m, float *p, size_t rows) {
    const size_t w = m->w, B = m->n_blocks;
    A->u = p;
    p += rows * m->in.n_in;
    for (size_t b = 0; b <= B; ++b) {
        A->h[b] = p;
        p += rows * w;
        A->a[b] = p;
        p += rows * w;
        A->fd[b] = p;
        p += rows * w;
        if (b < B) {
            A->n[b] = p;
            p += rows * w;
        }
    }
    A->out = p;
    p += rows * m->in.d;
    A->mean = p;
    p += rows * (B + 1);
    A->rstd = p;
    p += rows * (B + 1);
    A->label = p;
    if (m->in.n_emb) p += rows;
    A->z = A->gate = A->ex = NULL;
    if (m->K) {
        A->z = p;
        p += rows * m->n_z;
        A->gate = p;
        p += rows * m->K;
        A->ex = p;
        p += rows * m->K * m->in.d;
    }
    A->scratch = p;
}

static int ws_floats(size_t *out, const void *self, size_t rows, int backward, size_t T,
                     int nthreads) {
    (void)nthreads;
    const resmlp *m = self;
    const size_t w = m->w, W = w > m->in.d ? w : m->in.d;
    size_t act_f, back_f = 0, tan_f = 0, x;
    if (stochflow__mul_size(&act_f, acts_per_row(m), rows) != 0) return -1;
    /* the experts' extra scratch per row (backward) and per tangent row */
    const size_t kd = m->K * m->in.d;
    const size_t head_back = m->K ? kd + m->n_z + m->K : 0;
    const size_t head_tan = m->K;
    if (backward) {
        if (stochflow__mul_size(&x, rows, 3 * w + m->in.n_in + head_back) != 0) return -1;
        back_f = x + STOCHFLOW__BIAS_BLOCKS * 2 * w;
        if (back_f < x) return -1;
    }
    if (T) {
        if (stochflow__mul_size(&x, rows, T) != 0 ||
            stochflow__mul_size(&tan_f, x, 3 * W + head_tan) != 0)
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
    const resmlp *m = self;
    *stride = m->in.n_in;
    return ws; /* A.u comes first */
}

/* ---- forward ---------------------------------------------------------------------- */

/* y [rows x w] = x + b (b added to each row), the residual stream's next value before
 * the branch's product is accumulated into it: one pass instead of a copy and a sum. */
static void copy_add_bias(float *y, const float *x, const float *b, size_t rows, size_t w) {
    for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < w; ++j) y[i * w + j] = x[i * w + j] + b[j];
}

/* The experts' forward (module doc), after the output layer wrote out: z, the gates and
 * each expert's output are kept for backward and the tangents. Each row's softmax and
 * blend run in a fixed order (the bits do not depend on the threads). */
static void experts_forward(const resmlp *m, const float *p, acts *A, size_t rows,
                            const double *t_rows, double t_all, int nt) {
    const size_t d = m->in.d, K = m->K, nz = m->n_z, n_in = m->in.n_in, B = m->n_blocks;
    for (size_t i = 0; i < rows; ++i) {
        const float t = (float)(t_rows ? t_rows[i] : t_all), *x = A->u + i * n_in;
        float *z = A->z + i * nz;
        for (size_t j = 0; j < d; ++j) {
            z[j] = x[j];
            z[d + j] = t * x[j];
        }
        z[2 * d] = t;
    }
    stochflow__dense_forward(A->gate, A->a[B], p + m->w_g, p + m->b_g, rows, m->w, K, nt);
    for (size_t i = 0; i < rows; ++i) { /* softmax of each row's K logits */
        float *g = A->gate + i * K, mx = g[0];
        for (size_t k = 1; k < K; ++k) mx = g[k] > mx ? g[k] : mx;
        double sum = 0.0;
        for (size_t k = 0; k < K; ++k) {
            g[k] = exp_nonpos(g[k] - mx);
            sum += g[k];
        }
        for (size_t k = 0; k < K; ++k) g[k] = (float)(g[k] / sum);
    }
    stochflow__dense_forward(A->ex, A->z, p + m->e_w, p + m->e_c, rows, nz, K * d, nt);
    for (size_t i = 0; i < rows; ++i) {
        const float *g = A->gate + i * K, *e = A->ex + i * K * d;
        float *o = A->out + i * d;
        for (size_t j = 0; j < d; ++j) {
            float acc = 0.0f;
            for (size_t k = 0; k < K; ++k) acc += g[k] * e[k * d + j];
            o[j] += acc;
        }
    }
}

static const float *forward(const void *self, const float *p, float *ws, size_t rows,
                            const double *t_rows, double t_all, const stochflow__cond *cond,
                            int want_deriv, int nt) {
    const resmlp *m = self;
    const size_t w = m->w, B = m->n_blocks;
    acts A;
    carve(&A, m, ws, rows);
    stochflow__fc_input_fill(&m->in, A.u, A.label, p + m->emb_off, t_rows, t_all, cond, rows, nt);
    stochflow__dense_forward(A.h[0], A.u, p + m->w_in, p + m->b_in, rows, m->in.n_in, w, nt);
    for (size_t b = 0; b < B; ++b) {
        const block *K = &m->blk[b];
        stochflow__layernorm_forward(A.n[b], A.mean + b * rows, A.rstd + b * rows, A.h[b],
                                     p + K->g, p + K->be, rows, w, nt);
        stochflow__dense_act_forward(A.a[b], want_deriv ? A.fd[b] : NULL, A.n[b], p + K->w1,
                                     p + K->b1, rows, w, w, m->activation, nt);
        /* h_{b+1} = (h_b + b2) + a_b W2^T */
        copy_add_bias(A.h[b + 1], A.h[b], p + K->b2, rows, w);
        (void)stochflow__sgemm(0, 1, rows, w, w, 1.0f, A.a[b], w, p + K->w2, w, 1.0f, A.h[b + 1],
                               w, nt);
    }
    stochflow__layernorm_forward(A.a[B], A.mean + B * rows, A.rstd + B * rows, A.h[B], p + m->fg,
                                 p + m->fb, rows, w, nt);
    stochflow__act_forward(A.a[B], want_deriv ? A.fd[B] : NULL, A.a[B], rows * w, m->activation,
                           nt);
    stochflow__dense_forward(A.out, A.a[B], p + m->w_o, p + m->b_o, rows, w, m->in.d, nt);
    if (m->K) experts_forward(m, p, &A, rows, t_rows, t_all, nt);
    return A.out;
}

/* ---- backward --------------------------------------------------------------------- */

/* The experts' backward from dout [rows x d] (doc/gradients.md, "Linear experts"):
 *   de_k = g_k dout  -> E, c gradients, and dz = sum_k de_k E_k (with dz != NULL);
 *   dl_k = g_k (dout . e_k - sum_j g_j dout . e_j)  -> W_g, b_g gradients, and the
 *   gradient of the last features, added to df [rows x w]. */
static void experts_backward(const resmlp *m, const float *p, const acts *A, size_t rows,
                             const float *dout, float *grads, float *df, float *de, float *dz,
                             float *dl, int nt) {
    const size_t d = m->in.d, K = m->K, B = m->n_blocks;
    for (size_t i = 0; i < rows; ++i) {
        const float *g = A->gate + i * K, *e = A->ex + i * K * d, *o = dout + i * d;
        float *dei = de + i * K * d, *dli = dl + i * K;
        double dg[STOCHFLOW__MAX_RES_EXPERTS], mean = 0.0;
        for (size_t k = 0; k < K; ++k) {
            double acc = 0.0;
            for (size_t j = 0; j < d; ++j) {
                dei[k * d + j] = g[k] * o[j];
                acc += (double)o[j] * e[k * d + j];
            }
            dg[k] = acc;
            mean += g[k] * acc;
        }
        for (size_t k = 0; k < K; ++k) dli[k] = (float)(g[k] * (dg[k] - mean));
    }
    stochflow__dense_backward(dz, 0, grads ? grads + m->e_w : NULL, grads ? grads + m->e_c : NULL,
                              de, A->z, p + m->e_w, rows, m->n_z, K * d, nt);
    stochflow__dense_backward(df, 1, grads ? grads + m->w_g : NULL, grads ? grads + m->b_g : NULL,
                              dl, A->a[B], p + m->w_g, rows, m->w, K, nt);
}

/* From dout [rows x d]: the residual stream's gradient g = dL/dh_b runs from h_B down to
 * h_0, each block adding its branch's gradient through LN_b to it. */
static void backward(const void *self, const float *p, float *ws, size_t rows,
                     const float *dout, float *grads, float *dx, int nt) {
    const resmlp *m = self;
    const size_t w = m->w, B = m->n_blocks;
    acts A;
    carve(&A, m, ws, rows);
    float *g = A.scratch, *g1 = g + rows * w, *g2 = g1 + rows * w, *part = g2 + rows * w;
    float *du = dx || (grads && m->in.n_emb) ? part + STOCHFLOW__BIAS_BLOCKS * 2 * w : NULL;
    float *de = part + STOCHFLOW__BIAS_BLOCKS * 2 * w + rows * m->in.n_in; /* after du */
    float *dz = de + rows * m->K * m->in.d, *dl = dz + rows * m->n_z;
#define GP(off) (grads ? grads + (off) : NULL)
    /* output layer (and the experts, into the same last features), its activation, the
     * final norm */
    stochflow__dense_backward(g1, 0, GP(m->w_o), GP(m->b_o), dout, A.a[B], p + m->w_o, rows, w,
                              m->in.d, nt);
    if (m->K) experts_backward(m, p, &A, rows, dout, grads, g1, de, dx ? dz : NULL, dl, nt);
    stochflow__act_backward(g1, g1, A.fd[B], rows * w, nt);
    stochflow__layernorm_backward(g, 0, GP(m->fg), GP(m->fb), part, g1, A.h[B],
                                  A.mean + B * rows, A.rstd + B * rows, p + m->fg, rows, w, nt);
    for (size_t b = B; b-- > 0;) {
        const block *K = &m->blk[b];
        /* the branch: a_b W2^T + b2, then f(n_b W1^T + b1), then LN_b, added to g */
        stochflow__dense_backward(g1, 0, GP(K->w2), GP(K->b2), g, A.a[b], p + K->w2, rows, w,
                                  w, nt);
        stochflow__act_backward_bias(g1, GP(K->b1), part, g1, A.fd[b], rows, w, nt);
        stochflow__dense_backward(g2, 0, GP(K->w1), NULL, g1, A.n[b], p + K->w1, rows, w, w, nt);
        stochflow__layernorm_backward(g, 1, GP(K->g), GP(K->be), part, g2, A.h[b],
                                      A.mean + b * rows, A.rstd + b * rows, p + K->g, rows, w,
                                      nt);
    }
    stochflow__dense_backward(du, 0, GP(m->w_in), GP(m->b_in), g, A.u, p + m->w_in, rows,
                              m->in.n_in, w, nt);
    if (du) stochflow__fc_input_grad(dx, GP(m->emb_off), &m->in, du, A.label, rows);
    if (dx && m->K) /* the experts' path from x: z = [x, t x, t] */
        for (size_t i = 0; i < rows; ++i) {
            const float *dzi = dz + i * m->n_z, t = A.z[i * m->n_z + 2 * m->in.d];
            for (size_t j = 0; j < m->in.d; ++j)
                dx[i * m->in.d + j] += dzi[j] + t * dzi[m->in.d + j];
        }
#undef GP
}

/* ---- forward-mode tangents -------------------------------------------------------- */

/* The experts' term of each quad (doc/gradients.md, "Linear experts"), added to quad:
 * for a probe e of row i, with tf the tangent of the last features (t1 [rows*T x w]),
 *   dl = tf W_g^T,  dg_k = g_k (dl_k - sum_j g_j dl_j),
 *   quad += sum_k dg_k (e . e_k) + sum_k g_k e . (E_k [e, t e, 0]).
 * With probes NULL, e is the unit vector of coordinate tau and the last sum reads
 * E_k's two diagonal entries; with probes, each row of E_k meets [e, t e] in turn (no
 * scratch beyond tl [rows*T x K]). */
static void experts_tangents(const resmlp *m, const float *p, const acts *A, size_t rows,
                             const float *probes, size_t T, const float *tf, float *tl,
                             float *quad, int nt) {
    const size_t d = m->in.d, K = m->K, nz = m->n_z, kd = K * d;
    const float *E = p + m->e_w;
    (void)stochflow__sgemm(0, 1, rows * T, K, m->w, 1.0f, tf, m->w, p + m->w_g, m->w, 0.0f, tl, K,
                           nt);
    for (size_t i = 0; i < rows; ++i) {
        const float *g = A->gate + i * K, *ex = A->ex + i * kd, t = A->z[i * nz + 2 * d];
        for (size_t tau = 0; tau < T; ++tau) {
            const size_t r = i * T + tau;
            const float *dl = tl + r * K, *e = probes ? probes + r * d : NULL;
            double mean = 0.0, acc = 0.0;
            for (size_t k = 0; k < K; ++k) mean += (double)g[k] * dl[k];
            for (size_t k = 0; k < K; ++k) {
                const double dg = g[k] * ((double)dl[k] - mean);
                double ee = 0.0, ej = 0.0;
                if (e) {
                    for (size_t j = 0; j < d; ++j) {
                        const float *row = E + (k * d + j) * nz;
                        double ye = 0.0;
                        for (size_t q = 0; q < d; ++q)
                            ye += (double)row[q] * e[q] + (double)t * row[d + q] * e[q];
                        ee += (double)e[j] * ex[k * d + j];
                        ej += (double)e[j] * ye;
                    }
                } else {
                    const float *row = E + (k * d + tau) * nz;
                    ee = ex[k * d + tau];
                    ej = (double)row[tau] + (double)t * row[d + tau];
                }
                acc += dg * ee + g[k] * ej;
            }
            quad[r] = (float)((double)quad[r] + acc);
        }
    }
}

/*
 * Each row's T tangents travel as T extra rows (doc/gradients.md):
 *   tangent of h_0 = e W_in[:, :d]^T
 *   tangent of h_b = tangent of h_{b-1} + (f' * (J_LN_b th) W1^T) W2^T
 *   tangent of v   = (f' * J_LN_f th) W_o^T,  and quad = e . tangent of v
 * J_LN the LayerNorm's Jacobian (lib/layers.h, stochflow__layernorm_tangents).
 */
static void tangents(const void *self, const float *p, float *ws, size_t rows,
                     const float *probes, size_t T, float *quad, int nt) {
    const resmlp *m = self;
    const size_t w = m->w, B = m->n_blocks, d = m->in.d, W = w > d ? w : d;
    acts A;
    carve(&A, m, ws, rows);
    float *th = A.scratch, *t1 = th + rows * T * W, *t2 = t1 + rows * T * W;
    stochflow__fc_tangents_in(th, p + m->w_in, m->in.n_in, w, d, probes, rows, T, nt);
    for (size_t b = 0; b < B; ++b) {
        const block *K = &m->blk[b];
        stochflow__layernorm_tangents(t1, th, A.h[b], A.mean + b * rows, A.rstd + b * rows,
                                      p + K->g, rows, T, w, nt);
        (void)stochflow__sgemm(0, 1, rows * T, w, w, 1.0f, t1, w, p + K->w1, w, 0.0f, t2, w, nt);
        stochflow__scale_tangents(t2, A.fd[b], rows, T, w, nt);
        (void)stochflow__sgemm(0, 1, rows * T, w, w, 1.0f, t2, w, p + K->w2, w, 1.0f, th, w, nt);
    }
    stochflow__layernorm_tangents(t1, th, A.h[B], A.mean + B * rows, A.rstd + B * rows,
                                  p + m->fg, rows, T, w, nt);
    stochflow__scale_tangents(t1, A.fd[B], rows, T, w, nt);
    stochflow__fc_tangents_out(quad, t2, p + m->w_o, w, d, t1, probes, rows, T, nt);
    if (m->K) {
        experts_tangents(m, p, &A, rows, probes, T, t1, t2 + rows * T * W, quad, nt);
    }
}

/* ---- the table -------------------------------------------------------------------- */

static const stochflow__network_ops resmlp_ops = {
    .name = "resmlp",
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

int stochflow__resmlp_param_count(size_t *count, const stochflow_config *cfg) {
    resmlp tmp;
    RETURN_ERROR_IF(layout(&tmp, cfg) != 0, STOCHFLOW_E_INVALID, "parameter count overflows");
    *count = tmp.n_params;
    return 0;
}

int stochflow__resmlp_network(stochflow__network *out, const stochflow_config *cfg) {
    resmlp tmp;
    RETURN_ERROR_IF(layout(&tmp, cfg) != 0, STOCHFLOW_E_INVALID, "parameter count overflows");
    return stochflow__fc_network_new(out, &resmlp_ops, &tmp, sizeof tmp, tmp.in.d,
                                     tmp.n_params);
}
