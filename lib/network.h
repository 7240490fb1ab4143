/* network.h - the one interface behind the model handle: every architecture (the MLP,
 * lib/mlp.c; the residual MLP, lib/resmlp.c; the U-Net, lib/unet.c) is a table of these
 * operations over its own state.
 * lib/model.c holds everything they share: validation, draws and pairing, the loss,
 * the optimizer calls, the evaluation weights and the blocking policy of evaluations.
 * Private to the library; doc/architecture.md.
 *
 * A pass over a block of `rows` rows works in one caller-provided workspace `ws` of
 * ws_floats(rows, ...) floats (64-byte aligned), carved by the network as a function
 * of rows only, so the calls of one pass (input, forward, backward, tangents) must use
 * the same rows and ws. Parameters p are the flat block (weights, EMA copy); gradients
 * accumulate into grads (the caller zeroes them).
 *
 * Planned extensions have their place here, so that they change the table, not every
 * call site:
 *  - conditioning: `cond` (below) per-row context floats and class labels, passed to
 *    forward; NULL for an unconditional model or an unconditional evaluation. The MLP
 *    reads it (more input columns, doc/conditional.md); the gradient of its label
 *    embedding is accumulated by backward with the other parameter gradients.
 *  - a second output head (the score of a stochastic interpolant beside the drift):
 *    n_out > 1 heads of d columns each in forward's output [rows x n_out*d]; backward's
 *    dout takes the same shape. n_out is 1 today.
 *  - a precision mode (bf16 matrix products): a field of the network state read by
 *    its own kernels (lib/gemm.c would gain the bf16 product), invisible here. */
#ifndef STOCHFLOW_NETWORK_H
#define STOCHFLOW_NETWORK_H

#include <stddef.h>
#include <stdint.h>

typedef struct stochflow__network_ops stochflow__network_ops;

/* The conditioning of a block of rows (doc/conditional.md): rows [0, rows) of each array.
 * ctx [rows x n_ctx] context floats (NULL: no context for any row), labels [rows] in
 * [0, n_classes) or -1 = no label (NULL: no label for any row), drop [rows] (NULL: none)
 * 1 where training drops the row's conditioning (classifier-free guidance). A dropped or
 * absent context is a zero vector with the null flag 1; a dropped or absent label is the
 * learned "no label" embedding. */
typedef struct {
    const float *ctx;
    const int32_t *labels;
    const uint8_t *drop;
} stochflow__cond;

/* One network: its operations and its state (layout or compiled program). */
typedef struct {
    const stochflow__network_ops *ops;
    void *self;
    size_t d;        /* input and output width (the data dimension) */
    size_t n_params; /* floats in the parameter block */
} stochflow__network;

struct stochflow__network_ops {
    const char *name;
    /* Evaluation blocking (the one policy is model.c's, these two facts feed it):
     * tangents_as_rows: 1 when T tangents travel as T extra rows of the same GEMMs
     * (then a block of r rows costs r (1 + T) GEMM rows), 0 when each tangent is a
     * separate pass over the block. row_parallel: 1 when whole blocks may run one per
     * thread with single-threaded kernels; 0 when the network's kernels thread
     * internally and blocks run in order. max_block_rows: the most rows of one block
     * (0: no limit of the network's own). */
    int tangents_as_rows, row_parallel;
    size_t max_block_rows;
    /* Workspace floats one row costs, for the policy's workspace budget. */
    size_t (*row_floats)(const void *self, int nthreads);

    void (*destroy)(void *self);
    /* Initial weights into p [n_params] from (seed, INIT stream). */
    void (*init)(const void *self, float *p, uint64_t seed);
    /* Workspace floats for a block of rows: forward only (backward = 0) or with
     * backward, and T forward-mode tangents or probes (0: none). -1 on overflow. */
    int (*ws_floats)(size_t *out, const void *self, size_t rows, int backward, size_t T,
                     int nthreads);
    /* Where forward reads its inputs x_t: rows of d floats, *stride floats apart. */
    float *(*input)(size_t *stride, const void *self, float *ws, size_t rows);
    /* Forward over the block whose inputs are filled: times t_rows [rows] (per row), or
     * t_all for every row when t_rows is NULL; cond: the rows' conditioning (NULL: none).
     * want_deriv keeps what backward and tangents need. Returns the output [rows x d]
     * (inside ws). */
    const float *(*forward)(const void *self, const float *p, float *ws, size_t rows,
                            const double *t_rows, double t_all, const stochflow__cond *cond,
                            int want_deriv, int nthreads);
    /* Backward from dout [rows x d] after forward(want_deriv = 1): grads != NULL:
     * accumulate the parameter gradients; dx != NULL: write the input gradient
     * dout^T dv/dx_t [rows x d]. */
    void (*backward)(const void *self, const float *p, float *ws, size_t rows,
                     const float *dout, float *grads, float *dx, int nthreads);
    /* After forward(want_deriv = 1), quad [rows x T]: e_k . (dv/dx e_k) for each row's T
     * probes e_k (probes [rows x T x d]), or, with probes NULL, the Jacobian's diagonal
     * (T = d, e_k the unit vectors). */
    void (*tangents)(const void *self, const float *p, float *ws, size_t rows,
                     const float *probes, size_t T, float *quad, int nthreads);
};

/* The conditioning input of a row (doc/conditional.md), shared by the networks:
 * [c (n_ctx), null flag (with n_ctx > 0), E[label] (n_emb with n_classes > 0)]. */
size_t stochflow__cond_emb_width(size_t n_classes);
size_t stochflow__cond_width(size_t n_ctx, size_t n_classes);
/* Write rows [0, rows) of the conditioning input, row i at u + i * stride, from cond (NULL:
 * none) and the embedding table emb [(n_classes + 1) x n_emb]; label[i] receives the
 * embedding row used (as a float; with n_classes > 0). */
void stochflow__cond_fill(float *u, size_t stride, float *label, const float *emb,
                          size_t n_ctx, size_t n_classes, const stochflow__cond *cond,
                          size_t rows);
/* The embedding's gradient: gemb[label[i]] += g_i[last n_emb columns of the input], row i
 * of the input gradient at g + i * stride, rows in order. */
void stochflow__cond_emb_grad(float *gemb, const float *g, size_t stride, const float *label,
                              size_t n_classes, size_t rows);

struct stochflow_config;

/* ---- what the two fully connected networks share (lib/mlp.c) --------------------------
 * The MLP (lib/mlp.c) and the residual MLP (lib/resmlp.c) read one input row
 * u = [x (d), phi(t) (n_time), cond (n_cond)] of n_in floats: phi(t) = t, then
 * sin/cos(k pi t) for k = 1..n_freq with Fourier features; cond as above. Their first
 * dense layer reads u and their last writes d outputs. */
typedef struct {
    size_t d, n_time, n_freq;           /* data columns, time features, frequencies */
    size_t n_ctx, n_classes, n_emb;     /* context floats, labels, embedding width */
    size_t n_cond, n_in;                /* conditioning columns; the whole row */
} stochflow__fc_input;
void stochflow__fc_input_layout(stochflow__fc_input *in, const struct stochflow_config *cfg);
/* Floats of the label embedding [(n_classes + 1) x n_emb] (0 without labels). */
size_t stochflow__fc_emb_floats(const stochflow__fc_input *in);
/* Initial values: the embedding standard normal (row j from (seed, INIT, step, j)); a
 * dense layer W [out x in], b [out] as PyTorch's nn.Linear, U(-1/sqrt(in), 1/sqrt(in)),
 * row j from (seed, INIT, step, j). */
void stochflow__fc_emb_init(float *emb, const stochflow__fc_input *in, uint64_t seed,
                            uint64_t step);
void stochflow__fc_dense_init(float *w, float *b, size_t in, size_t out, uint64_t seed,
                              uint64_t step);
/* Fill the time features and conditioning of rows [0, rows) of u (row stride n_in, the
 * x columns already written): t_rows per row, or t_all for every row when NULL; label,
 * emb as stochflow__cond_fill. */
void stochflow__fc_input_fill(const stochflow__fc_input *in, float *u, float *label,
                              const float *emb, const double *t_rows, double t_all,
                              const stochflow__cond *cond, size_t rows, int nthreads);
/* From the input gradient du [rows x n_in]: dx [rows x d] (skipped when NULL) and the
 * embedding's gradient gemb += (skipped when NULL or without labels). */
void stochflow__fc_input_grad(float *dx, float *gemb, const stochflow__fc_input *in,
                              const float *du, const float *label, size_t rows);
/* Tangents of the first dense layer's output (its weights w0 [out x in], no bias):
 * tan [rows*T x out] = e W_0[:, :d]^T for each row's T probes e [rows x T x d], or with
 * probes NULL the unit vectors (T = d). */
void stochflow__fc_tangents_in(float *tan, const float *w0, size_t in, size_t out, size_t d,
                               const float *probes, size_t rows, size_t T, int nthreads);
/* Through the last dense layer (wo [d x in]) from the tangents tan [rows*T x in] of its
 * input: quad [rows x T] = e_k . (W_o tan_k), with scratch [rows*T x d] for probes; with
 * probes NULL, the diagonal (T = d, e_k the unit vectors). */
void stochflow__fc_tangents_out(float *quad, float *scratch, const float *wo, size_t in,
                                size_t d, const float *tan, const float *probes, size_t rows,
                                size_t T, int nthreads);

/* A fully connected network's handle: its state (size bytes at state, whose layout was
 * computed without allocating) copied into a new allocation, freed by
 * stochflow__fc_destroy. */
int stochflow__fc_network_new(stochflow__network *out, const stochflow__network_ops *ops,
                              const void *state, size_t size, size_t d, size_t n_params);
void stochflow__fc_destroy(void *self);

/* Build the network a validated configuration describes (MLP, residual MLP or U-Net). */
int stochflow__network_build(stochflow__network *out, const struct stochflow_config *cfg);
void stochflow__network_free(stochflow__network *net);

/* Parameters a validated configuration implies, without allocating for an MLP. */
int stochflow__network_param_count(size_t *count, const struct stochflow_config *cfg);

/* The implementations' constructors (lib/mlp.c, lib/resmlp.c, lib/unet.c). */
int stochflow__mlp_param_count(size_t *count, const struct stochflow_config *cfg);
int stochflow__mlp_network(stochflow__network *out, const struct stochflow_config *cfg);
int stochflow__resmlp_param_count(size_t *count, const struct stochflow_config *cfg);
int stochflow__resmlp_network(stochflow__network *out, const struct stochflow_config *cfg);
int stochflow__unet_network(stochflow__network *out, const struct stochflow_config *cfg);

#endif
