/* posterior.c - posterior estimation with a conditional flow, on a simulator whose
 * posterior is known (doc/conditional.md; results in bench/CONDITIONAL.md). Copy it:
 * replace simulate() by your simulator and drop the oracle at the end.
 *
 * Simulator (linear-Gaussian): theta ~ N(0, s0^2 I_d), x | theta ~ N(A theta, s^2 I_d)
 * with a fixed random A (entries N(0, 1/d)). The exact posterior is N(mu, S),
 * S = (I/s0^2 + A^T A / s^2)^{-1}, mu = S A^T x / s^2 (/work/shared/reference/method.md).
 *
 * The flow's variable is theta (dimension d), its context x (n_ctx = d). Training draws
 * fresh (theta, x) pairs every step through stochflow_model_train_simulator; then, for a
 * few observed x, the exact posterior's draws are scored by the flow's exact
 * log-density (stochflow_solver_log_prob_ctx) and KL(exact || model) is estimated as the
 * mean of log p_exact - log q over those draws.
 *
 * usage: posterior [--dim D (10)] [--steps N (3000)] [--batch B (512)] [--width W (128)] [--lr LR (2e-3)]
 *                  [--threads T (1)] [--obs K (5)] [--draws M (500)] [--seed S (1)] */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stochflow.h"

#define LN_2PI 1.8378770664093454835606594728112

typedef struct {
    size_t d;
    double s0, s;
    double *A; /* [d x d] */
} simulator;

/* n fresh pairs keyed by (seed, step): theta ~ N(0, s0^2 I), x = A theta + s e. */
static int simulate(void *user, size_t n, uint64_t seed, uint64_t step, float *theta,
                    float *x) {
    const simulator *sim = user;
    const size_t d = sim->d;
    float *e = malloc(n * d * sizeof *e);
    if (e == NULL) return 1;
    if (stochflow_random_normal(theta, n * d, seed, 1000 + 2 * step) != 0 ||
        stochflow_random_normal(e, n * d, seed, 1001 + 2 * step) != 0) {
        free(e);
        return 1;
    }
    for (size_t i = 0; i < n; ++i) {
        float *th = theta + i * d;
        for (size_t j = 0; j < d; ++j) th[j] = (float)(sim->s0 * th[j]);
        for (size_t r = 0; r < d; ++r) {
            double acc = sim->s * e[i * d + r];
            for (size_t j = 0; j < d; ++j) acc += sim->A[r * d + j] * th[j];
            x[i * d + r] = (float)acc;
        }
    }
    free(e);
    return 0;
}

/* In-place Cholesky of a symmetric positive definite [d x d] matrix (lower triangle). */
static int cholesky(double *a, size_t d) {
    for (size_t j = 0; j < d; ++j) {
        double s = a[j * d + j];
        for (size_t k = 0; k < j; ++k) s -= a[j * d + k] * a[j * d + k];
        if (!(s > 0)) return -1;
        a[j * d + j] = sqrt(s);
        for (size_t i = j + 1; i < d; ++i) {
            double t = a[i * d + j];
            for (size_t k = 0; k < j; ++k) t -= a[i * d + k] * a[j * d + k];
            a[i * d + j] = t / a[j * d + j];
        }
        for (size_t k = j + 1; k < d; ++k) a[j * d + k] = 0.0;
    }
    return 0;
}

/* Inverse of an SPD matrix from its Cholesky factor L: out = (L L^T)^{-1}. */
static void spd_inverse(double *out, const double *L, size_t d) {
    double *col = malloc(d * sizeof *col);
    for (size_t c = 0; c < d; ++c) {
        for (size_t i = 0; i < d; ++i) { /* L y = e_c */
            double s = i == c;
            for (size_t k = 0; k < i; ++k) s -= L[i * d + k] * col[k];
            col[i] = s / L[i * d + i];
        }
        for (size_t i = d; i-- > 0;) { /* L^T z = y */
            double s = col[i];
            for (size_t k = i + 1; k < d; ++k) s -= L[k * d + i] * col[k];
            col[i] = s / L[i * d + i];
        }
        for (size_t i = 0; i < d; ++i) out[i * d + c] = col[i];
    }
    free(col);
}

#define CHECK(call)                                                                      \
    do {                                                                                 \
        int rc__ = (call);                                                               \
        if (rc__ != 0) {                                                                 \
            fprintf(stderr, "%s failed: %s\n", #call, stochflow_last_error_message());  \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

int main(int argc, char **argv) {
    size_t d = 10, steps = 3000, batch = 512, width = 128, n_obs = 5, draws = 500;
    double lr = 2e-3;
    int threads = 1;
    uint64_t seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--dim")) d = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--steps")) steps = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--batch")) batch = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--width")) width = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--lr")) lr = strtod(v, NULL);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--obs")) n_obs = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--draws")) draws = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--seed")) seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "unknown option %s\n", k);
            return 2;
        }
    }
    simulator sim = {d, 1.0, 0.5, malloc(d * d * sizeof(double))};
    float *tmp = malloc(d * d * sizeof *tmp);
    CHECK(stochflow_random_normal(tmp, d * d, 12345, 0));
    for (size_t i = 0; i < d * d; ++i) sim.A[i] = tmp[i] / sqrt((double)d);
    free(tmp);

    /* the conditional flow: theta in R^d given x in R^d */
    stochflow_config *cfg;
    CHECK(stochflow_config_new(&cfg, d));
    const size_t widths[3] = {width, width, width};
    CHECK(stochflow_config_set_hidden(cfg, 3, widths));
    CHECK(stochflow_config_set_context(cfg, d, 0));
    CHECK(stochflow_config_set_seed(cfg, seed));
    stochflow_model *m;
    CHECK(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, lr));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, threads));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double loss = 0.0, avg = 0.0;
    for (size_t s = 0; s < steps; ++s) {
        CHECK(stochflow_model_train_simulator(&loss, m, simulate, &sim, batch));
        avg += loss;
        if ((s + 1) % 1000 == 0) {
            printf("step %zu mean loss %.4f\n", s + 1, avg / 1000.0);
            avg = 0.0;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double train_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    /* oracle: S = (I/s0^2 + A^T A/s^2)^{-1}, its Cholesky factor L, mu = S A^T x / s^2 */
    double *P = malloc(d * d * sizeof *P), *S = malloc(d * d * sizeof *S);
    for (size_t i = 0; i < d; ++i)
        for (size_t j = 0; j < d; ++j) {
            double acc = 0.0;
            for (size_t r = 0; r < d; ++r) acc += sim.A[r * d + i] * sim.A[r * d + j];
            P[i * d + j] = acc / (sim.s * sim.s) + (i == j) / (sim.s0 * sim.s0);
        }
    if (cholesky(P, d) != 0) return 1;
    spd_inverse(S, P, d);
    double *L = malloc(d * d * sizeof *L);
    memcpy(L, S, d * d * sizeof *L);
    if (cholesky(L, d) != 0) return 1;
    double logdetL = 0.0;
    for (size_t i = 0; i < d; ++i) logdetL += log(L[i * d + i]);

    stochflow_solver *sv;
    CHECK(stochflow_solver_new(&sv));
    float *th = malloc(draws * d * sizeof *th), *z = malloc(draws * d * sizeof *z);
    float *ctx = malloc(draws * d * sizeof *ctx), *lq = malloc(draws * sizeof *lq);
    float *obs_theta = malloc(n_obs * d * sizeof *obs_theta), *obs_x = malloc(n_obs * d * sizeof *obs_x);
    /* observations: simulated from the prior (a step number training never reaches) */
    CHECK(simulate(&sim, n_obs, seed + 1, 1u << 30, obs_theta, obs_x));
    double kl_sum = 0.0;
    for (size_t o = 0; o < n_obs; ++o) {
        const float *x = obs_x + o * d;
        double *mu = malloc(d * sizeof *mu), *atx = malloc(d * sizeof *atx);
        for (size_t j = 0; j < d; ++j) {
            double acc = 0.0;
            for (size_t r = 0; r < d; ++r) acc += sim.A[r * d + j] * x[r];
            atx[j] = acc / (sim.s * sim.s);
        }
        for (size_t i = 0; i < d; ++i) {
            double acc = 0.0;
            for (size_t j = 0; j < d; ++j) acc += S[i * d + j] * atx[j];
            mu[i] = acc;
        }
        CHECK(stochflow_random_normal(z, draws * d, 777, o));
        for (size_t k = 0; k < draws; ++k) {
            for (size_t i = 0; i < d; ++i) {
                double acc = mu[i];
                for (size_t j = 0; j <= i; ++j) acc += L[i * d + j] * z[k * d + j];
                th[k * d + i] = (float)acc;
            }
            memcpy(ctx + k * d, x, d * sizeof *ctx);
        }
        CHECK(stochflow_solver_log_prob_ctx(lq, NULL, sv, m, th, ctx, NULL, draws, 1.0));
        double kl = 0.0;
        for (size_t k = 0; k < draws; ++k) {
            double q = 0.0;
            for (size_t j = 0; j < d; ++j) q += (double)z[k * d + j] * z[k * d + j];
            double lp = -0.5 * q - 0.5 * (double)d * LN_2PI - logdetL;
            kl += lp - lq[k];
        }
        kl /= (double)draws;
        printf("observation %zu: KL(exact || model) = %.4f nats\n", o, kl);
        kl_sum += kl;
        free(mu);
        free(atx);
    }
    printf("d = %zu, %zu steps of %zu pairs, width %zu, %d threads: training %.1f s, "
           "mean KL(exact || model) over %zu observations = %.4f nats\n",
           d, steps, batch, width, threads, train_s, n_obs, kl_sum / (double)n_obs);
    free(th);
    free(z);
    free(ctx);
    free(lq);
    free(obs_theta);
    free(obs_x);
    free(P);
    free(S);
    free(L);
    free(sim.A);
    stochflow_solver_free(sv);
    stochflow_model_free(m);
    return 0;
}
