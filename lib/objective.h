/* objective.h - private interface of lib/objective.c: the training objective of a model
 * (which field it regresses, on which stochastic interpolant), its rows of a training
 * batch and its checkpoint section. doc/sde.md, "Training". */
#ifndef STOCHFLOW_OBJECTIVE_H
#define STOCHFLOW_OBJECTIVE_H

#include "bytes.h"
#include "model.h"
#include "sde.h"

/* 1 when the objective is the plain ODE velocity (today's training path). */
int stochflow__objective_plain(const stochflow__objective *o);
int stochflow__objective_validate(const stochflow_config *c);
/* The model's stochastic interpolant (its schedule, the objective's kind and gamma). */
void stochflow__objective_sinterp(struct stochflow_sinterp *si, const stochflow_config *c);
/* Network rows of a batch of n data rows (2n with antithetic pairs). */
size_t stochflow__objective_rows(const stochflow__objective *o, size_t n);
/* Rows [lo, hi) of the network batch: x_t (rows stride floats apart), t and target. */
void stochflow__objective_assemble(const stochflow_model *m, const struct stochflow_sinterp *si,
                                   float *xt, size_t stride, double *t_rows, float *target,
                                   const float *x1, const float *x0, const float *t, int train,
                                   size_t n, size_t lo, size_t hi);
/* Checkpoint section SINT (written only for a non-plain objective). */
uint64_t stochflow__objective_section_size(const stochflow_config *c);
void stochflow__objective_section_write(stochflow__writer *w, const stochflow_config *c);
int stochflow__objective_section_read(stochflow_config *c, const uint8_t *p, uint64_t len);

#endif
