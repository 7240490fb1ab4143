/* cond_oracle.h - a joint Gaussian mixture over (theta, x) and its exact conditional
 * p(theta | x), a Gaussian mixture with closed-form weights, means and covariances
 * (derivation: doc/conditional.md, "A mixture whose conditional is known exactly").
 * Used by bench/posterior.c (--target mixture) and tests/check_conditional.c. All in double; header only.
 *
 * Component k of the joint: weight pi_k, z = (theta, x) ~ N(m_k, Sigma_k), with the
 * blocks Sigma_tt (dt x dt), Sigma_tx (dt x dx), Sigma_xx (dx x dx). Then
 *
 *   p(theta | x) = sum_k w_k(x) N(theta; mu_k(x), S_k),
 *   w_k(x)  = pi_k N(x; m_xk, Sigma_xx,k) / sum_j pi_j N(x; m_xj, Sigma_xx,j),
 *   mu_k(x) = m_tk + G_k (x - m_xk),   G_k = Sigma_tx,k Sigma_xx,k^{-1},
 *   S_k     = Sigma_tt,k - G_k Sigma_xt,k   (the Schur complement of Sigma_xx,k).
 *
 * cm_joint_logpdf evaluates the joint density from the Cholesky factor of the whole
 * Sigma_k, a code path independent of the blocks above, so the test can check the
 * formula itself: log p(theta, x) - log p(theta | x) must equal log p(x) for every
 * theta. */
#ifndef COND_ORACLE_H
#define COND_ORACLE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stochflow.h"

#define CM_MAXK 8
#define CM_MAXD 16 /* dt + dx */
#define CM_LN_2PI 1.8378770664093454835606594728112

typedef struct {
    size_t dt, dx, K;
    double pi[CM_MAXK];
    double m[CM_MAXK][CM_MAXD];                /* joint means, theta first */
    double sigma[CM_MAXK][CM_MAXD * CM_MAXD];  /* joint covariances, D x D row-major */
    /* derived by cm_prepare */
    double lz[CM_MAXK][CM_MAXD * CM_MAXD];     /* Cholesky factor of Sigma_k */
    double lx[CM_MAXK][CM_MAXD * CM_MAXD];     /* of Sigma_xx,k (dx x dx) */
    double lt[CM_MAXK][CM_MAXD * CM_MAXD];     /* of Sigma_tt,k (dt x dt) */
    double g[CM_MAXK][CM_MAXD * CM_MAXD];      /* G_k (dt x dx) */
    double ls[CM_MAXK][CM_MAXD * CM_MAXD];     /* of S_k (dt x dt) */
} cmix;

/* In-place Cholesky factor (lower; upper triangle zeroed) of an SPD n x n matrix. */
static inline int cm_cholesky(double *a, size_t n) {
    for (size_t j = 0; j < n; ++j) {
        double s = a[j * n + j];
        for (size_t k = 0; k < j; ++k) s -= a[j * n + k] * a[j * n + k];
        if (!(s > 0)) return -1;
        a[j * n + j] = sqrt(s);
        for (size_t i = j + 1; i < n; ++i) {
            double t = a[i * n + j];
            for (size_t k = 0; k < j; ++k) t -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = t / a[j * n + j];
        }
        for (size_t k = j + 1; k < n; ++k) a[j * n + k] = 0.0;
    }
    return 0;
}

/* log N(y; 0, L L^T) for the n x n Cholesky factor L (forward substitution). */
static inline double cm_lognormal(const double *y, const double *L, size_t n) {
    double z[CM_MAXD], q = 0.0, logdet = 0.0;
    for (size_t i = 0; i < n; ++i) {
        double s = y[i];
        for (size_t k = 0; k < i; ++k) s -= L[i * n + k] * z[k];
        z[i] = s / L[i * n + i];
        q += z[i] * z[i];
        logdet += log(L[i * n + i]);
    }
    return -0.5 * q - logdet - 0.5 * (double)n * CM_LN_2PI;
}

static inline double cm_logsumexp(const double *a, size_t n) {
    double mx = -INFINITY, s = 0.0;
    for (size_t i = 0; i < n; ++i)
        if (a[i] > mx) mx = a[i];
    for (size_t i = 0; i < n; ++i) s += exp(a[i] - mx);
    return mx + log(s);
}

/* The derived blocks: Cholesky factors of Sigma_k, Sigma_xx,k, Sigma_tt,k, then
 * G_k = Sigma_tx Sigma_xx^{-1} (row by row, two triangular solves) and the Cholesky
 * factor of S_k = Sigma_tt - G_k Sigma_xt. 0, or -1 when a matrix is not SPD. */
static inline int cm_prepare(cmix *c) {
    const size_t dt = c->dt, dx = c->dx, D = dt + dx;
    if (dt == 0 || dx == 0 || D > CM_MAXD || c->K == 0 || c->K > CM_MAXK) return -1;
    for (size_t k = 0; k < c->K; ++k) {
        const double *S = c->sigma[k];
        memcpy(c->lz[k], S, D * D * sizeof(double));
        if (cm_cholesky(c->lz[k], D) != 0) return -1;
        for (size_t i = 0; i < dx; ++i)
            for (size_t j = 0; j < dx; ++j) c->lx[k][i * dx + j] = S[(dt + i) * D + dt + j];
        for (size_t i = 0; i < dt; ++i)
            for (size_t j = 0; j < dt; ++j) c->lt[k][i * dt + j] = S[i * D + j];
        if (cm_cholesky(c->lx[k], dx) != 0 || cm_cholesky(c->lt[k], dt) != 0) return -1;
        const double *Lx = c->lx[k];
        for (size_t r = 0; r < dt; ++r) { /* row r of G solves Sigma_xx g = Sigma_xt[:, r] */
            double y[CM_MAXD];
            for (size_t i = 0; i < dx; ++i) {
                double s = S[r * D + dt + i];
                for (size_t q = 0; q < i; ++q) s -= Lx[i * dx + q] * y[q];
                y[i] = s / Lx[i * dx + i];
            }
            for (size_t i = dx; i-- > 0;) {
                double s = y[i];
                for (size_t q = i + 1; q < dx; ++q) s -= Lx[q * dx + i] * y[q];
                y[i] = s / Lx[i * dx + i];
            }
            for (size_t i = 0; i < dx; ++i) c->g[k][r * dx + i] = y[i];
        }
        for (size_t i = 0; i < dt; ++i)
            for (size_t j = 0; j < dt; ++j) {
                double s = S[i * D + j];
                for (size_t q = 0; q < dx; ++q) s -= c->g[k][i * dx + q] * S[(dt + q) * D + j];
                c->ls[k][i * dt + j] = s;
            }
        if (cm_cholesky(c->ls[k], dt) != 0) return -1;
    }
    return 0;
}

/* A fixed random mixture keyed by `key`: weights proportional to exp(0.5 N(0, 1)),
 * theta-means 2.5 N(0, I) (separated components), x-means 0.7 N(0, I)
 * (overlapping in x, so p(theta | x) keeps several modes for most x), and
 * Sigma_k = A A^T / D + diag(0.05 + 0.25 u) with A of N(0, 1) entries: a full
 * covariance, so x informs theta inside each component as well as through the weights.
 * Then cm_prepare. */
static inline int cm_make(cmix *c, size_t dt, size_t dx, size_t K, uint64_t key) {
    memset(c, 0, sizeof *c);
    c->dt = dt, c->dx = dx, c->K = K;
    const size_t D = dt + dx;
    if (D > CM_MAXD || K == 0 || K > CM_MAXK) return -1;
    float z[CM_MAXK * (1 + CM_MAXD + CM_MAXD * CM_MAXD)];
    double u[CM_MAXK * CM_MAXD];
    if (stochflow_random_normal(z, K * (1 + D + D * D), key, 0) != 0 ||
        stochflow_random_uniform(u, K * D, key, 1) != 0)
        return -1;
    const float *p = z;
    double tot = 0.0;
    for (size_t k = 0; k < K; ++k) tot += (c->pi[k] = exp(0.5 * *p++));
    for (size_t k = 0; k < K; ++k) {
        c->pi[k] /= tot;
        for (size_t j = 0; j < D; ++j) c->m[k][j] = (j < dt ? 2.5 : 0.7) * *p++;
        const float *A = p;
        p += D * D;
        for (size_t i = 0; i < D; ++i)
            for (size_t j = 0; j < D; ++j) {
                double s = 0.0;
                for (size_t q = 0; q < D; ++q) s += (double)A[i * D + q] * A[j * D + q];
                c->sigma[k][i * D + j] = s / (double)D + (i == j ? 0.05 + 0.25 * u[k * D + i] : 0.0);
            }
    }
    return cm_prepare(c);
}

/* log p(theta, x): the joint mixture through the factors of the whole Sigma_k. */
static inline double cm_joint_logpdf(const cmix *c, const double *theta, const double *x) {
    const size_t dt = c->dt, D = dt + c->dx;
    double l[CM_MAXK], y[CM_MAXD];
    for (size_t k = 0; k < c->K; ++k) {
        for (size_t j = 0; j < D; ++j) y[j] = (j < dt ? theta[j] : x[j - dt]) - c->m[k][j];
        l[k] = log(c->pi[k]) + cm_lognormal(y, c->lz[k], D);
    }
    return cm_logsumexp(l, c->K);
}

/* log p(x), and the conditional's log-weights log w_k(x) into lw (may be NULL). */
static inline double cm_marginal_x(const cmix *c, const double *x, double *lw) {
    const size_t dt = c->dt, dx = c->dx;
    double l[CM_MAXK], y[CM_MAXD];
    for (size_t k = 0; k < c->K; ++k) {
        for (size_t j = 0; j < dx; ++j) y[j] = x[j] - c->m[k][dt + j];
        l[k] = log(c->pi[k]) + cm_lognormal(y, c->lx[k], dx);
    }
    double lse = cm_logsumexp(l, c->K);
    if (lw)
        for (size_t k = 0; k < c->K; ++k) lw[k] = l[k] - lse;
    return lse;
}

/* mu_k(x) = m_tk + G_k (x - m_xk) into mu (dt). */
static inline void cm_cond_mean(const cmix *c, size_t k, const double *x, double *mu) {
    const size_t dt = c->dt, dx = c->dx;
    for (size_t i = 0; i < dt; ++i) {
        double s = c->m[k][i];
        for (size_t q = 0; q < dx; ++q) s += c->g[k][i * dx + q] * (x[q] - c->m[k][dt + q]);
        mu[i] = s;
    }
}

/* log p(theta | x) by the closed form above. */
static inline double cm_cond_logpdf(const cmix *c, const double *theta, const double *x) {
    double lw[CM_MAXK], l[CM_MAXK], mu[CM_MAXD], y[CM_MAXD];
    cm_marginal_x(c, x, lw);
    for (size_t k = 0; k < c->K; ++k) {
        cm_cond_mean(c, k, x, mu);
        for (size_t j = 0; j < c->dt; ++j) y[j] = theta[j] - mu[j];
        l[k] = lw[k] + cm_lognormal(y, c->ls[k], c->dt);
    }
    return cm_logsumexp(l, c->K);
}

/* log p(theta): the marginal of theta (what a model blind to x can at best learn). */
static inline double cm_marginal_theta(const cmix *c, const double *theta) {
    double l[CM_MAXK], y[CM_MAXD];
    for (size_t k = 0; k < c->K; ++k) {
        for (size_t j = 0; j < c->dt; ++j) y[j] = theta[j] - c->m[k][j];
        l[k] = log(c->pi[k]) + cm_lognormal(y, c->lt[k], c->dt);
    }
    return cm_logsumexp(l, c->K);
}

/* Pick k from log-weights lw by the uniform u in (0, 1). */
static inline size_t cm_pick(const double *lw, size_t K, double u) {
    double acc = 0.0;
    for (size_t k = 0; k + 1 < K; ++k)
        if (u < (acc += exp(lw[k]))) return k;
    return K - 1;
}

/* The randomness of n draws keyed by (seed, stream): n x dim normals e and n uniforms u
 * (one picks the component). Both allocated (the caller frees them, also on failure). */
static inline int cm_draws(float **e, double **u, size_t n, size_t dim, uint64_t seed,
                           uint64_t stream) {
    *e = malloc(n * dim * sizeof **e);
    *u = malloc(n * sizeof **u);
    if (*e == NULL || *u == NULL || stochflow_random_normal(*e, n * dim, seed, 2 * stream) != 0 ||
        stochflow_random_uniform(*u, n, seed, 2 * stream + 1) != 0)
        return -1;
    return 0;
}

/* n joint draws keyed by (seed, stream): theta [n x dt] and x [n x dx]. Component from
 * one uniform per row, z = m_k + L_k e. 0, or -1 when out of memory. */
static inline int cm_sample_joint(const cmix *c, size_t n, uint64_t seed, uint64_t stream,
                                  float *theta, float *x) {
    const size_t dt = c->dt, dx = c->dx, D = dt + dx;
    float *e;
    double *u;
    int rc = -1;
    if (cm_draws(&e, &u, n, D, seed, stream) != 0) goto done;
    double lw[CM_MAXK];
    for (size_t k = 0; k < c->K; ++k) lw[k] = log(c->pi[k]);
    for (size_t i = 0; i < n; ++i) {
        const size_t k = cm_pick(lw, c->K, u[i]);
        for (size_t r = 0; r < D; ++r) {
            double s = c->m[k][r];
            for (size_t q = 0; q <= r; ++q) s += c->lz[k][r * D + q] * e[i * D + q];
            if (r < dt) theta[i * dt + r] = (float)s;
            else x[i * dx + r - dt] = (float)s;
        }
    }
    rc = 0;
done:
    free(e);
    free(u);
    return rc;
}

/* n draws of theta ~ p(theta | x) for one x, keyed by (seed, stream), by the closed form;
 * their exact log p(theta | x) into lp (double, computed from the float draws). */
static inline int cm_sample_cond(const cmix *c, const double *x, size_t n, uint64_t seed,
                                 uint64_t stream, float *theta, double *lp) {
    const size_t dt = c->dt;
    float *e;
    double *u;
    int rc = -1;
    if (cm_draws(&e, &u, n, dt, seed, stream) != 0) goto done;
    double lw[CM_MAXK], mu[CM_MAXK][CM_MAXD];
    cm_marginal_x(c, x, lw);
    for (size_t k = 0; k < c->K; ++k) cm_cond_mean(c, k, x, mu[k]);
    for (size_t i = 0; i < n; ++i) {
        const size_t k = cm_pick(lw, c->K, u[i]);
        double th[CM_MAXD];
        for (size_t r = 0; r < dt; ++r) {
            double s = mu[k][r];
            for (size_t q = 0; q <= r; ++q) s += c->ls[k][r * dt + q] * e[i * dt + q];
            theta[i * dt + r] = (float)s;
            th[r] = (double)theta[i * dt + r];
        }
        lp[i] = cm_cond_logpdf(c, th, x);
    }
    rc = 0;
done:
    free(e);
    free(u);
    return rc;
}

/* stochflow_simulator_fn: n fresh joint pairs keyed by (seed, step), theta the flow's
 * variable and x its context (user: the cmix). */
static inline int cm_simulate(void *user, size_t n, uint64_t seed, uint64_t step, float *theta,
                              float *x) {
    return cm_sample_joint(user, n, seed, 1000 + step, theta, x) == 0 ? 0 : 1;
}

/* KL(p(theta | x) || model) at one observation x (dx floats): M draws from the closed
 * form keyed by (777, stream), scored by the solver's log-density given x (or, when
 * with_ctx is 0, without context: the model's "none" input); *blind gets
 * KL(p(theta | x) || p(theta)) on the same draws (the best a model blind to x can do on
 * average over x). 0, or the library's status (negative), or -1 when out of memory. */
static inline int cm_kl_at(double *kl, double *blind, stochflow_solver *sv, stochflow_model *m,
                           const cmix *c, const float *x, size_t M, uint64_t stream,
                           int with_ctx) {
    const size_t dt = c->dt, dx = c->dx;
    float *th = malloc(M * dt * sizeof *th), *ctx = malloc(M * dx * sizeof *ctx);
    float *lq = malloc(M * sizeof *lq);
    double *lp = malloc(M * sizeof *lp), xd[CM_MAXD];
    int rc = -1;
    for (size_t j = 0; j < dx; ++j) xd[j] = x[j];
    if (!th || !ctx || !lq || !lp || cm_sample_cond(c, xd, M, 777, stream, th, lp) != 0) goto done;
    for (size_t i = 0; i < M; ++i) memcpy(ctx + i * dx, x, dx * sizeof *ctx);
    rc = stochflow_solver_log_prob_ctx(lq, NULL, sv, m, th, with_ctx ? ctx : NULL, NULL, M, 1.0);
    if (rc != 0) goto done;
    double s = 0.0, b = 0.0;
    for (size_t i = 0; i < M; ++i) {
        double t[CM_MAXD];
        for (size_t j = 0; j < dt; ++j) t[j] = th[i * dt + j];
        s += lp[i] - lq[i];
        b += lp[i] - cm_marginal_theta(c, t);
    }
    *kl = s / (double)M;
    *blind = b / (double)M;
done:
    free(th);
    free(ctx);
    free(lq);
    free(lp);
    return rc;
}

#endif
