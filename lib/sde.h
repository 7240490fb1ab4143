/* sde.h - private interface of the stochastic-interpolant code: gamma schedules and
 * the stochastic interpolant handle (gamma.c), SDE sampler and likelihood (sde.c).
 * Private to the library; tests include it. */
#ifndef STOCHFLOW_SDE_H
#define STOCHFLOW_SDE_H

#include "internal.h"

/* Random streams of the SDE code. They must stay distinct from the enum in
 * internal.h (which ends at STOCHFLOW__STREAM_CTX_DROP = 9, user streams from 16). */
#define STOCHFLOW__STREAM_SDE_NOISE 10 /* forward-SDE increments: (seed, step, row) */
#define STOCHFLOW__STREAM_SDE_LIK 11   /* likelihood paths: (seed, step, row*P + p) */
#define STOCHFLOW__STREAM_LATENT 12    /* training latent z: (seed, step, row) */
#define STOCHFLOW__STREAM_EVAL_LATENT 13 /* loss evaluation latent z: (seed, step, row) */
#define STOCHFLOW__STREAM_SDE_PROBE 14 /* likelihood Hutchinson probes: (seed, 0, row*P + p) */

typedef struct {
    int kind;                   /* STOCHFLOW_GAMMA_* */
    double scale;               /* BROWNIAN_SCALED */
    stochflow_gamma_fn fn;      /* CUSTOM */
    void *user;
} stochflow__gamma;

struct stochflow_sinterp {
    int kind;                   /* STOCHFLOW_SI_* */
    stochflow__interp ab;       /* (a, b) or (alpha, beta) */
    stochflow__gamma g;
};

/* {gamma, gamma', gamma gamma'} at t; error for CUSTOM without callback. */
int stochflow__gamma_eval(const stochflow__gamma *g, double t, double out[3]);
/* {c0, c1, c2, c0', c1', c2', c2 c2'} (stochflow_sinterp_eval without the checks). */
int stochflow__sinterp_eval(const struct stochflow_sinterp *si, double t, double out[7]);

/* Target y of one component for field (gamma.c; c from stochflow__sinterp_eval). */
double stochflow__sinterp_target(const double c[7], int field, double x0, double x1, double z,
                                 int sign);

#endif
