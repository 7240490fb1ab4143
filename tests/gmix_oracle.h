/* gmix_oracle.h - closed-form stochastic-interpolant velocity field, divergence and
 * log-density for base N(0, I) and a diagonal Gaussian-mixture target (method.md,
 * "Closed-form oracles"). Used by check_ode.c and check_density.c. All in double.
 *
 * Interpolant x_t = a(t) x0 + b(t) x1. Component k of rho_t is N(m_k, diag C_k) with
 *   m_k = b mu_k,  C_k = a^2 + b^2 s_k^2,  m_k' = b' mu_k,  C_k' = 2 (a a' + b b' s_k^2),
 * u_k(x) = m_k' + (1/2) C_k'/C_k (x - m_k) (elementwise),
 * w_k(x) = q_k N_k(x) / rho_t(x),   v = sum_k w_k u_k.
 * Divergence: grad w_k = w_k (g_k - gbar) with g_k = -(x - m_k)/C_k, gbar = sum w_j g_j:
 *   div v = sum_k w_k [ (1/2) sum_j C_kj'/C_kj + (g_k - gbar) . u_k ].
 * For one component the flow map is x(t) = m(t) + sqrt(C(t)/C(s)) (x(s) - m(s)). */
#ifndef GMIX_ORACLE_H
#define GMIX_ORACLE_H

#include <math.h>
#include <stddef.h>

#define GM_PI 3.14159265358979323846
#define GM_MAXK 4
#define GM_MAXD 8

typedef struct {
    size_t d, K;
    double q[GM_MAXK];
    double mu[GM_MAXK][GM_MAXD];
    double s[GM_MAXK][GM_MAXD];
    int linear;       /* 0: trig interpolant, 1: linear */
    long calls;       /* callback invocations */
    long fail_at;     /* > 0: the fail_at-th call returns an error */
    double nan_after; /* > 0: v = NaN for t > nan_after */
} gmix;

static inline void gm_sched(const gmix *g, double t, double ab[4]) {
    if (g->linear) {
        ab[0] = 1 - t, ab[1] = t, ab[2] = -1, ab[3] = 1;
    } else {
        const double h = GM_PI / 2;
        ab[0] = cos(h * t), ab[1] = sin(h * t), ab[2] = -h * sin(h * t), ab[3] = h * cos(h * t);
    }
}

/* log rho_t(x) */
static inline double gm_logpdf(const gmix *g, double t, const double *x) {
    double ab[4], lw[GM_MAXK], mx = -INFINITY;
    gm_sched(g, t, ab);
    for (size_t k = 0; k < g->K; ++k) {
        double l = log(g->q[k]);
        for (size_t j = 0; j < g->d; ++j) {
            double m = ab[1] * g->mu[k][j];
            double C = ab[0] * ab[0] + ab[1] * ab[1] * g->s[k][j] * g->s[k][j];
            l += -0.5 * (x[j] - m) * (x[j] - m) / C - 0.5 * log(2 * GM_PI * C);
        }
        lw[k] = l;
        if (l > mx) mx = l;
    }
    double sum = 0;
    for (size_t k = 0; k < g->K; ++k) sum += exp(lw[k] - mx);
    return mx + log(sum);
}

/* v(t, x) into v[d]; returns div v. */
static inline double gm_velocity(const gmix *g, double t, const double *x, double *v) {
    double ab[4], w[GM_MAXK], mx = -INFINITY;
    double u[GM_MAXK][GM_MAXD], gr[GM_MAXK][GM_MAXD], divu[GM_MAXK];
    gm_sched(g, t, ab);
    double a = ab[0], b = ab[1], ad = ab[2], bd = ab[3];
    for (size_t k = 0; k < g->K; ++k) {
        double l = log(g->q[k]);
        divu[k] = 0;
        for (size_t j = 0; j < g->d; ++j) {
            double s2 = g->s[k][j] * g->s[k][j];
            double m = b * g->mu[k][j], md = bd * g->mu[k][j];
            double C = a * a + b * b * s2, Cd = 2 * (a * ad + b * bd * s2);
            l += -0.5 * (x[j] - m) * (x[j] - m) / C - 0.5 * log(2 * GM_PI * C);
            u[k][j] = md + 0.5 * Cd / C * (x[j] - m);
            gr[k][j] = -(x[j] - m) / C;
            divu[k] += 0.5 * Cd / C;
        }
        w[k] = l;
        if (l > mx) mx = l;
    }
    double sum = 0;
    for (size_t k = 0; k < g->K; ++k) sum += (w[k] = exp(w[k] - mx));
    for (size_t k = 0; k < g->K; ++k) w[k] /= sum;
    double gbar[GM_MAXD] = {0};
    for (size_t j = 0; j < g->d; ++j) {
        v[j] = 0;
        for (size_t k = 0; k < g->K; ++k) {
            v[j] += w[k] * u[k][j];
            gbar[j] += w[k] * gr[k][j];
        }
    }
    double div = 0;
    for (size_t k = 0; k < g->K; ++k) {
        double dot = 0;
        for (size_t j = 0; j < g->d; ++j) dot += (gr[k][j] - gbar[j]) * u[k][j];
        div += w[k] * (divu[k] + dot);
    }
    return div;
}

/* stochflow_velocity_fn */
static inline int gm_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                    float *div) {
    gmix *g = user;
    g->calls++;
    if (g->fail_at > 0 && g->calls >= g->fail_at) return 42;
    double xd[GM_MAXD], vd[GM_MAXD];
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < d; ++j) xd[j] = x[i * d + j];
        double dv = gm_velocity(g, t, xd, vd);
        for (size_t j = 0; j < d; ++j) v[i * d + j] = (float)vd[j];
        if (div) div[i] = (float)dv;
        if (g->nan_after > 0 && t > g->nan_after) v[i * d] = NAN;
    }
    return 0;
}

/* single-component flow map from (s, xs) to time t, per dimension */
static inline void gm_flow1(const gmix *g, double s, const double *xs, double t, double *xt) {
    double as[4], at[4];
    gm_sched(g, s, as);
    gm_sched(g, t, at);
    for (size_t j = 0; j < g->d; ++j) {
        double s2 = g->s[0][j] * g->s[0][j];
        double ms = as[1] * g->mu[0][j], mt = at[1] * g->mu[0][j];
        double Cs = as[0] * as[0] + as[1] * as[1] * s2, Ct = at[0] * at[0] + at[1] * at[1] * s2;
        xt[j] = mt + sqrt(Ct / Cs) * (xs[j] - ms);
    }
}

/* A few fixed test problems. */
static inline void gm_single2(gmix *g) { /* N((2, -1), diag(3^2, 0.5^2)), trig */
    *g = (gmix){.d = 2, .K = 1, .q = {1}, .mu = {{2, -1}}, .s = {{3, 0.5}}};
}
static inline void gm_mix2(gmix *g) { /* two well-separated components in d = 2 */
    *g = (gmix){.d = 2, .K = 2, .q = {0.3, 0.7}, .mu = {{-2, 1}, {2, -0.5}},
                .s = {{0.5, 0.8}, {0.7, 0.4}}};
}
static inline void gm_mix3(gmix *g) { /* three components in d = 3, linear interpolant */
    *g = (gmix){.d = 3, .K = 3, .q = {0.2, 0.5, 0.3},
                .mu = {{-1.5, 0, 1}, {1, 1.5, -0.5}, {0.5, -2, 0}},
                .s = {{0.6, 0.5, 0.9}, {0.4, 0.7, 0.5}, {0.8, 0.3, 0.6}}, .linear = 1};
}

#endif
