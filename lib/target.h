/* target.h - private interface of lib/target.c: the batch-posterior training target of
 * the plain velocity (STOCHFLOW_PARAM_TRAIN_TARGET = STOCHFLOW_TRAIN_TARGET_BATCH). */
#ifndef STOCHFLOW_TARGET_H
#define STOCHFLOW_TARGET_H

#include <stddef.h>

#include "internal.h"

/* Floats of scratch stochflow__batch_target needs for n rows of d; -1 on overflow. */
int stochflow__batch_target_floats(size_t *out, size_t n, size_t d);
/* target [n x d] (dI/dt of each row's own draws) replaced by the posterior mean of dI/dt
 * given x_t over the batch's data rows x1 ([n x d], the network's space); x_t rows are
 * `stride` floats apart, t_rows the rows' times. scratch: the floats above, 16-aligned.
 * nt threads for the rows, ant for the interpolant (1 when it is a caller's callback);
 * the result does not depend on either (the two matrix products run on one thread). Formula: doc/gradients.md, "The
 * batch-posterior target". */
void stochflow__batch_target(float *target, float *scratch, const float *xt, size_t stride,
                             const double *t_rows, const float *x1,
                             const stochflow__interp *ip, size_t n, size_t d, int nt,
                             int ant);

#endif
