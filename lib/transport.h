/* transport.h - the state of optimizing the transport, kept beside the network in the
 * model handle: the Fourier coefficients' gradient and ascent moments, the batch
 * pairing (x0 materialized and re-paired with x1 by a coupling), and the running
 * path-length estimate; the checkpoint section "INTP". Private to the library;
 * description in doc/transport.md.
 *
 * This header knows nothing of the model handle: model.h includes it, never the
 * reverse. The interpolant itself lives in lib/interpolant.c, the couplings in
 * lib/coupling.c, the coefficients' Adam step in lib/optimizer.c. */
#ifndef STOCHFLOW_TRANSPORT_H
#define STOCHFLOW_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

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

/* The batch of one loss evaluation once x0 is final. */
typedef struct {
    const float *x0; /* [n x d] the paired base samples, or NULL: drawn row by row */
    double *t;       /* [n] where the times are recorded, or NULL */
    float *du;       /* [n x n_in] room for the loss's input gradient, or NULL */
} stochflow__pairing;

/*
 * Pair a batch: x0 (the caller's rows, or drawn with the keys (seed, x0_stream, step,
 * row) that the row-by-row draws use) copied into tr's workspace and re-paired with the
 * rows of x1 by coupling mode (stochflow__coupling_pair). Writes out->x0 (into the
 * workspace), out->t (n doubles) and out->du (n * n_in floats).
 */
int stochflow__transport_pair(stochflow__pairing *out, stochflow__transport *tr,
                              const float *x1, const float *x0, size_t n, size_t d, size_t n_in,
                              int mode, double reg, uint64_t seed, uint32_t x0_stream,
                              uint64_t step);

/* Record the loss of a training batch (for the path-length estimate). */
void stochflow__transport_record_loss(stochflow__transport *tr, double loss);
/* After a successful update: fold the recorded loss into the path-length estimate and
 * mark the coefficient gradient as used. */
void stochflow__transport_step_done(stochflow__transport *tr);

void stochflow__transport_free(stochflow__transport *tr);

/* Checkpoint section "INTP" (doc/checkpoint-format.md). */
size_t stochflow__transport_section_size(const stochflow__interp *ip);
void stochflow__transport_section_write(uint8_t *dst, const stochflow__transport *tr,
                                        const stochflow__interp *ip);
/* Read the base schedule and mode count into ip (before validation). */
int stochflow__transport_section_conf(stochflow__interp *ip, const uint8_t *p, uint64_t len);
/* Read coefficients (into ip), ascent moments and the path-length estimate (into tr). */
int stochflow__transport_section_read(stochflow__transport *tr, stochflow__interp *ip,
                                      const uint8_t *p, uint64_t len);

#endif
