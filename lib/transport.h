/* transport.h - optimizing the transport (issue 9): the learnable Fourier interpolant
 * (coefficients, their gradient and the ascent step of the max-min game), minibatch
 * couplings of x0 and x1 (exact optimal assignment, Sinkhorn), and the running
 * path-length estimate. Private to the library; public API in stochflow.h (issue 9
 * section); description in doc/transport.md. */
#ifndef STOCHFLOW_TRANSPORT_H
#define STOCHFLOW_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Learned state of the transport, embedded by value in the model handle. The Fourier
 * coefficients themselves live in the model's stochflow__interp (interp.coef), so that
 * stochflow__interp_eval sees them. */
typedef struct {
    double grad[2 * STOCHFLOW__MAX_MODES];   /* dG/d(alpha, beta) of the last batch */
    double adam_m[2 * STOCHFLOW__MAX_MODES]; /* Adam moments of the ascent */
    double adam_v[2 * STOCHFLOW__MAX_MODES];
    int grad_valid;        /* grad holds the gradient of the last compute_gradient */
    double last_loss;      /* loss of the last training batch */
    int loss_valid;        /* last_loss not yet folded into path_ema */
    double path_ema;       /* EMA (decay PATH_EMA_DECAY) of -loss, not bias-corrected */
    uint64_t path_count;   /* training steps folded into path_ema */
    /* Workspace (grown on demand, freed with the model). */
    void *ws;
    size_t ws_bytes;
} stochflow__transport;

struct stochflow_model;

/* {a, b, a', b'} of a FOURIER interpolant at t. */
void stochflow__fourier_eval(const stochflow__interp *ip, double t, double out[4]);

/* Whether loss_grad must materialize x0 and record times (Fourier interpolant or a
 * non-independent coupling). */
int stochflow__transport_active(const struct stochflow_model *m);

/*
 * Prepare a batch: x0 (caller rows, or drawn from the model's stream with the same keys
 * as model.c uses: (seed, X0 or EVAL_X0, step, row)) copied into the transport
 * workspace and re-paired with the rows of x1 according to the coupling mode.
 * *x0_out points into the workspace; *t_save receives n doubles where loss_grad records
 * the times; *dx_out receives n * n_in floats for the input gradient.
 */
int stochflow__transport_prepare(struct stochflow_model *m, const float *x1, size_t n,
                                 const float *x0, int train, const float **x0_out,
                                 double **t_save, float **dx_out);

/*
 * Gradient of the batch loss with respect to the Fourier coefficients, given the
 * network output o [n x d], the input gradient du [n x n_in] of the loss (backward()
 * with upstream 2 (o - dI) / n), the (coupled) x0 and x1 and the times. Stores it in
 * m->tr.grad and sets grad_valid.
 */
void stochflow__transport_coef_grad(struct stochflow_model *m, const float *o, const float *du,
                                    const float *x0, const float *x1, const double *t,
                                    size_t n);

/* Record the loss of a training batch (for the path-length estimate). */
void stochflow__transport_record_loss(struct stochflow_model *m, double loss);

/*
 * The update half of a training step: check the coefficient gradient, apply the
 * network's optimizer (stochflow__optimizer_apply), then one Adam ascent step on the
 * Fourier coefficients, and fold the batch loss into the path-length estimate.
 * Nothing changes on failure.
 */
int stochflow__transport_apply(struct stochflow_model *m);

void stochflow__transport_free(struct stochflow_model *m);

/* Checkpoint section "INTP" (doc/checkpoint-format.md). */
size_t stochflow__transport_section_size(const struct stochflow_model *m);
void stochflow__transport_section_write(uint8_t *dst, const struct stochflow_model *m);
/* Read the base schedule and mode count into cfg (before validation). */
int stochflow__transport_section_conf(struct stochflow_config *cfg, const uint8_t *p,
                                      uint64_t len);
/* Read coefficients, ascent moments and the path-length estimate into m. */
int stochflow__transport_section_read(struct stochflow_model *m, const uint8_t *p, uint64_t len);

/* Exact assignment: perm[i] = column assigned to row i, minimizing sum_i C[i, perm[i]]
 * for an n x n cost (row-major, double). Work arrays passed in: 3 n doubles, 4 n
 * size_t's, 2 n chars. */
void stochflow__assign_exact(size_t *perm, const double *cost, size_t n, double *dwork,
                             size_t *iwork, char *flags);

#endif
