/* posterior.c - posterior estimation with a conditional flow, on simulators whose
 * posterior is known (doc/conditional.md; results in bench/CONDITIONAL.md). Copy it:
 * replace simulate() by your simulator and drop the oracles at the end.
 *
 * --target linear (default): theta ~ N(0, s0^2 I_d), x | theta ~ N(A theta, s^2 I_d)
 * with a fixed random A (entries N(0, 1/d)). The exact posterior is N(mu, S),
 * S = (I/s0^2 + A^T A / s^2)^{-1}, mu = S A^T x / s^2 (/work/shared/reference/method.md).
 *
 * --target mixture: (theta, x) from a fixed joint Gaussian mixture (bench/cond_oracle.h:
 * K components, each a joint Gaussian with a full covariance; theta of dimension --dim,
 * x of --dx), whose conditional p(theta | x) is a Gaussian mixture with closed-form
 * weights, means and covariances (doc/conditional.md, "A mixture whose conditional is
 * known exactly"). Printed beside the KL: KL(p(theta | x) || p(theta)), what a model blind
 * to x (a broken context path) would at best reach.
 *
 * The flow's variable is theta, its context x. Training draws fresh (theta, x) pairs
 * every step through stochflow_model_train_simulator; then, for a few observed x (drawn
 * from a stream training never uses), exact posterior draws are scored by the flow's
 * exact log-density (stochflow_solver_log_prob_ctx: dopri5, rtol = atol = 1e-5, exact
 * trace) and KL(exact posterior || model) is the mean of log p_exact - log q over them.
 *
 * usage: posterior [--target linear|mixture] [--dim D (10; mixture 4)] [--dx D (mixture: 3)]
 *                  [--K K (mixture: 4)] [--key K (mixture: 2026)] [--steps N (3000)]
 *                  [--batch B (512)] [--width W (128)] [--depth L (3)] [--lr LR (2e-3)]
 *                  [--threads T (1)] [--obs K (5; mixture 8)] [--draws M (500)] [--seed S (1)] */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "cond_oracle.h"
#include "stochflow.h"

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

/* The linear-Gaussian oracle at one observation x: KL(N(mu, S) || model) from `draws`
 * exact posterior draws, S = (I/s0^2 + A^T A/s^2)^{-1}, mu = S A^T x / s^2. */
static double linear_kl(stochflow_solver *sv, stochflow_model *m, const simulator *sim,
                        const float *x, size_t draws, uint64_t stream) {
    const size_t d = sim->d;
    double *P = malloc(d * d * sizeof *P), *S = malloc(d * d * sizeof *S);
    double *L = malloc(d * d * sizeof *L), *mu = malloc(d * sizeof *mu), *atx = malloc(d * sizeof *atx);
    float *th = malloc(draws * d * sizeof *th), *z = malloc(draws * d * sizeof *z);
    float *ctx = malloc(draws * d * sizeof *ctx), *lq = malloc(draws * sizeof *lq);
    for (size_t i = 0; i < d; ++i)
        for (size_t j = 0; j < d; ++j) {
            double acc = 0.0;
            for (size_t r = 0; r < d; ++r) acc += sim->A[r * d + i] * sim->A[r * d + j];
            P[i * d + j] = acc / (sim->s * sim->s) + (i == j) / (sim->s0 * sim->s0);
        }
    if (cm_cholesky(P, d) != 0) exit(1);
    spd_inverse(S, P, d);
    memcpy(L, S, d * d * sizeof *L);
    if (cm_cholesky(L, d) != 0) exit(1);
    double logdetL = 0.0;
    for (size_t i = 0; i < d; ++i) logdetL += log(L[i * d + i]);
    for (size_t j = 0; j < d; ++j) {
        double acc = 0.0;
        for (size_t r = 0; r < d; ++r) acc += sim->A[r * d + j] * x[r];
        atx[j] = acc / (sim->s * sim->s);
    }
    for (size_t i = 0; i < d; ++i) {
        double acc = 0.0;
        for (size_t j = 0; j < d; ++j) acc += S[i * d + j] * atx[j];
        mu[i] = acc;
    }
    CHECK(stochflow_random_normal(z, draws * d, 777, stream));
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
        double lp = -0.5 * q - 0.5 * (double)d * CM_LN_2PI - logdetL;
        kl += lp - lq[k];
    }
    free(P);
    free(S);
    free(L);
    free(mu);
    free(atx);
    free(th);
    free(z);
    free(ctx);
    free(lq);
    return kl / (double)draws;
}

int main(int argc, char **argv) {
    const char *target = "linear";
    size_t d = 0, dx = 3, K = 4, steps = 3000, batch = 512, width = 128, depth = 3;
    size_t n_obs = 0, draws = 500;
    double lr = 2e-3;
    int threads = 1;
    uint64_t seed = 1, key = 2026;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--target")) target = v;
        else if (!strcmp(k, "--dim")) d = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--dx")) dx = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--K")) K = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--key")) key = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--steps")) steps = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--batch")) batch = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--width")) width = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--depth")) depth = strtoul(v, NULL, 10);
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
    const int mixture = !strcmp(target, "mixture");
    if (!mixture && strcmp(target, "linear") != 0) {
        fprintf(stderr, "--target linear|mixture\n");
        return 2;
    }
    if (d == 0) d = mixture ? 4 : 10;
    if (n_obs == 0) n_obs = mixture ? 8 : 5;
    if (!mixture) dx = d;
    if (depth == 0 || depth > 16 || draws == 0) {
        fprintf(stderr, "depth in 1..16, draws > 0\n");
        return 2;
    }
    static cmix mix;
    simulator sim = {d, 1.0, 0.5, NULL};
    if (mixture && cm_make(&mix, d, dx, K, key) != 0) {
        fprintf(stderr, "mixture: dim + dx <= %d and K in 1..%d\n", CM_MAXD, CM_MAXK);
        return 2;
    }
    if (!mixture) {
        sim.A = malloc(d * d * sizeof(double));
        float *tmp = malloc(d * d * sizeof *tmp);
        CHECK(stochflow_random_normal(tmp, d * d, 12345, 0));
        for (size_t i = 0; i < d * d; ++i) sim.A[i] = tmp[i] / sqrt((double)d);
        free(tmp);
    }
    stochflow_simulator_fn fn = mixture ? cm_simulate : simulate;
    void *user = mixture ? (void *)&mix : (void *)&sim;

    /* the conditional flow: theta in R^d given x in R^dx */
    stochflow_config *cfg;
    CHECK(stochflow_config_new(&cfg, d));
    size_t widths[16];
    for (size_t l = 0; l < depth; ++l) widths[l] = width;
    CHECK(stochflow_config_set_hidden(cfg, depth, widths));
    CHECK(stochflow_config_set_context(cfg, dx, 0));
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
    const double c0 = cpu_seconds();
    double loss = 0.0, avg = 0.0;
    for (size_t s = 0; s < steps; ++s) {
        CHECK(stochflow_model_train_simulator(&loss, m, fn, user, batch));
        avg += loss;
        if ((s + 1) % 1000 == 0) {
            printf("step %zu mean loss %.4f\n", s + 1, avg / 1000.0);
            avg = 0.0;
        }
    }
    const double train_cpu = cpu_seconds() - c0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double train_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    stochflow_solver *sv;
    CHECK(stochflow_solver_new(&sv)); /* defaults: dopri5, rtol = atol = 1e-5, exact trace */
    float *obs_theta = malloc(n_obs * d * sizeof *obs_theta), *obs_x = malloc(n_obs * dx * sizeof *obs_x);
    /* observations: simulated (a step number training never reaches) */
    CHECK(fn(user, n_obs, seed + 1, 1u << 30, obs_theta, obs_x) == 0 ? 0 : STOCHFLOW_E_CALLBACK);
    double kl_sum = 0.0, blind_sum = 0.0;
    for (size_t o = 0; o < n_obs; ++o) {
        const float *x = obs_x + o * dx;
        double kl = NAN, blind = NAN;
        if (mixture) {
            double xd[CM_MAXD], lw[CM_MAXK], wmax = 0.0;
            for (size_t j = 0; j < dx; ++j) xd[j] = x[j];
            cm_marginal_x(&mix, xd, lw);
            for (size_t k = 0; k < K; ++k) wmax = fmax(wmax, exp(lw[k]));
            CHECK(cm_kl_at(&kl, &blind, sv, m, &mix, x, draws, o, 1));
            printf("observation %zu: largest weight %.3f, KL(exact || model) = %.4f nats, "
                   "context-blind KL = %.4f nats\n", o, wmax, kl, blind);
            blind_sum += blind;
        } else {
            kl = linear_kl(sv, m, &sim, x, draws, o);
            printf("observation %zu: KL(exact || model) = %.4f nats\n", o, kl);
        }
        kl_sum += kl;
    }
    printf("%s, d = %zu, context %zu, %zu steps of %zu pairs, %zu x %zu, %d threads: training "
           "%.1f s (%.1f CPU s), mean KL(exact || model) over %zu observations = %.4f nats",
           target, d, dx, steps, batch, depth, width, threads, train_s, train_cpu, n_obs,
           kl_sum / (double)n_obs);
    if (mixture) printf("; context-blind %.4f nats (K = %zu)", blind_sum / (double)n_obs, K);
    printf("\n");
    free(obs_theta);
    free(obs_x);
    free(sim.A);
    stochflow_solver_free(sv);
    stochflow_model_free(m);
    return 0;
}
