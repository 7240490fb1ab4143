/* coupling.h - minibatch couplings of x0 and x1 (lib/coupling.c): the exact optimal
 * assignment and entropic OT (Sinkhorn, pairs drawn from the plan). Private to the
 * library; the public entry point is stochflow_coupling_assign. doc/transport.md. */
#ifndef STOCHFLOW_COUPLING_H
#define STOCHFLOW_COUPLING_H

#include <stddef.h>
#include <stdint.h>

/* Most rows a coupled batch may have (the cost matrix is n x n doubles). */
#define STOCHFLOW__MAX_COUPLING_N ((size_t)1 << 16)

/* 0 when a batch of n rows may be coupled with mode, else STOCHFLOW_E_INVALID with a
 * message (who names the caller): the exact assignment (OT) is cubic in n and takes at
 * most STOCHFLOW_COUPLING_OT_MAX_N rows; every mode at most STOCHFLOW__MAX_COUPLING_N. */
int stochflow__coupling_check_n(size_t n, int mode, const char *who);

/* Bytes of work memory stochflow__coupling_pair needs for n rows (mode other than
 * INDEPENDENT); -1 on overflow. */
int stochflow__coupling_bytes(size_t *out, size_t n);

/* perm[i] = the x0 row paired with x1 row i under mode (STOCHFLOW_COUPLING_*); reg is
 * Sinkhorn's regularization relative to the mean cost; Sinkhorn's draws are keyed by
 * (seed, COUPLING stream, step, row). work: stochflow__coupling_bytes(n) bytes,
 * 64-byte aligned. NONFINITE when the cost or Sinkhorn's iteration is not finite. */
int stochflow__coupling_pair(size_t *perm, const float *x0, const float *x1, size_t n, size_t d,
                             int mode, double reg, uint64_t seed, uint64_t step, void *work);

/* Exact assignment: perm[i] = column assigned to row i, minimizing sum_i C[i, perm[i]]
 * for an n x n cost (row-major, double). Work arrays passed in: 3 n doubles, 4 n
 * size_t's, 2 n chars. */
void stochflow__assign_exact(size_t *perm, const double *cost, size_t n, double *dwork,
                             size_t *iwork, char *flags);

#endif
