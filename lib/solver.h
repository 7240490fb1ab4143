/* solver.h - private interface between density.c (the solver handle and the public
 * integration / log-density API) and ode.c (the integrators). Private to the library;
 * tests may include it to reach the probe-field hook below. */
#ifndef STOCHFLOW_SOLVER_H
#define STOCHFLOW_SOLVER_H

#include "busy.h"
#include "internal.h"

/*
 * Internal field with Hutchinson support, used by tests to exercise the probe code on
 * closed-form fields: write v(t, x) [n x d] and, when quad is non-NULL, the quadratic
 * forms quad[i*K + k] = p_ik . (dv/dx (x_i) p_ik) for probes [n x K x d]. Non-zero
 * return -> STOCHFLOW_E_CALLBACK.
 */
typedef int (*stochflow__probe_fn)(void *user, double t, size_t n, size_t d, const float *x,
                                   float *v, const float *probes, size_t K, float *quad);

/* Where velocities come from: exactly one of model, fn, probe_fn is set. */
typedef struct {
    stochflow_model *model;       /* trained network (lib/model.c) */
    stochflow_velocity_fn fn;     /* caller field, exact divergence only */
    stochflow__probe_fn probe_fn; /* internal field with probe quadratic forms */
    void *user;
    size_t d;
    const float *ctx;      /* model only: [n x n_ctx] context, or NULL */
    const int32_t *labels; /* model only: [n] labels, or NULL */
} stochflow__vsrc;

struct stochflow_solver {
    /* keyed parameters, resolved (never 0) */
    double solver, steps, rtol, atol, h_init, h_min, max_steps, logp_error;
    double trace, probes, probe_dist;
    double guidance; /* STOCHFLOW_PARAM_GUIDANCE */
    uint64_t seed;
    stochflow_logpdf_fn base_fn;
    void *base_user;
    stochflow_progress_fn progress;
    void *progress_user;
    /* statistics of the last call */
    double nfe, accepted, rejected, t_reached;
    stochflow__busy busy; /* lib/busy.h: the thread inside a public call, or 0 */
};

/*
 * Integrate x [n x d] (float, in place) from t0 to t1 with the solver's method.
 * acc: NULL (no log-density), or [n x K] doubles receiving the accumulators
 *   l(t1) - l(t0) with l' = -div v (exact: K must be 1, probes NULL) or
 *   l_k' = -p_k . (dv/dx p_k) (Hutchinson: probes [n x K x d], fixed along the path).
 * On any failure x and acc hold the last accepted state, at s->t_reached.
 * Statistics are reset at entry. Arguments are assumed validated by the caller.
 */
int stochflow__ode_integrate(stochflow_solver *s, const stochflow__vsrc *src, float *x,
                             size_t n, double t0, double t1, double *acc, size_t K,
                             const float *probes);

/*
 * Full integrate path with Hutchinson support for any source (used by the public
 * functions and, with a probe_fn source, by tests):
 * dlogp / se as in stochflow_solver_integrate (both may be NULL).
 */
int stochflow__solver_integrate_src(float *dlogp, float *se, stochflow_solver *s,
                                    const stochflow__vsrc *src, float *x, size_t n, double t0,
                                    double t1);
/* log rho_t(x) for any source (as stochflow_solver_log_prob). */
int stochflow__solver_log_prob_src(float *logp, float *se, stochflow_solver *s,
                                   const stochflow__vsrc *src, const float *x, size_t n,
                                   double t);

#endif
