/* network.h - the one interface behind the model handle: every architecture (the MLP,
 * lib/mlp.c; the U-Net, lib/unet.c) is a table of these operations over its own state.
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
 *  - conditioning: `ctx` [rows x n_ctx] per-row context floats, passed to forward; NULL
 *    today (no network reads it yet). Its gradient, if ever wanted, is one more output
 *    of backward beside dx.
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
     * t_all for every row when t_rows is NULL; ctx: see above (NULL). want_deriv keeps
     * what backward and tangents need. Returns the output [rows x d] (inside ws). */
    const float *(*forward)(const void *self, const float *p, float *ws, size_t rows,
                            const double *t_rows, double t_all, const float *ctx,
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

struct stochflow_config;
/* Build the network a validated configuration describes (MLP or U-Net). */
int stochflow__network_build(stochflow__network *out, const struct stochflow_config *cfg);
void stochflow__network_free(stochflow__network *net);

/* Parameters a validated configuration implies, without allocating for an MLP. */
int stochflow__network_param_count(size_t *count, const struct stochflow_config *cfg);

/* The two implementations' constructors (lib/mlp.c, lib/unet.c). */
int stochflow__mlp_param_count(size_t *count, const struct stochflow_config *cfg);
int stochflow__mlp_network(stochflow__network *out, const struct stochflow_config *cfg);
int stochflow__unet_network(stochflow__network *out, const struct stochflow_config *cfg);

#endif
