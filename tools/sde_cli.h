/* sde_cli.h - the stochastic-interpolant options of the tool (sde_cli.c): the training
 * objective (train --objective --gamma --antithetic) and the SDE sampler of sample and
 * logp (--sde --sde-method --score --paths). doc/cli.md. */
#ifndef STOCHFLOW_TOOLS_SDE_CLI_H
#define STOCHFLOW_TOOLS_SDE_CLI_H

#include "common.h"

/* --objective velocity|drift|score|denoiser, --gamma KIND[:SCALE], --antithetic on cfg
 * (nothing when none is given). 0 or CLI_USAGE (printed). */
int cli_set_objective(stochflow_config *cfg, const opts *o);
/* The SDE sampler of --sde EPS (with --sde-method, --steps, --paths, --score MODEL,
 * --guidance W of a conditional model, --trace exact|hutchinson of the likelihood,
 * default def_trace) for the drift model m; *score: the loaded --score model or NULL.
 * 0 or CLI_ERR/CLI_USAGE (printed); on failure nothing is left allocated. */
int cli_sde_setup(stochflow_sde **sde, stochflow_model **score, stochflow_model *m,
                  const opts *o, uint64_t def_steps, int def_trace);
/* x [n x d] sampled with the SDE (conditioning ctx/labels may be NULL) and *nfe its
 * evaluation count; 0 or CLI_ERR (printed). */
int cli_sde_sample(float *x, double *nfe, stochflow_sde *sde, stochflow_model *m,
                   stochflow_model *score, const float *ctx, const int32_t *labels, size_t n,
                   uint64_t seed);

/* The training objective of a model's configuration: one "objective" line on stdout
 * (j NULL), or the JSON keys objective, gamma, gamma_scale, antithetic. */
void cli_objective_info(const stochflow_config *c, json *j);

#endif
