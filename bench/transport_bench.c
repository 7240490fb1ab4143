/* transport_bench.c - issue 9 measurements on the 2-D toys (bench/TRANSPORT.md).
 *
 *   transport_bench TOY MODE [STEPS] [SEED]
 *     MODE: trig | linear   (fixed interpolant, independent pairing: the paper)
 *           fourier[M][t][+ot]  (learnable Fourier interpolant: M modes, default 4;
 *                           linear base, trig with 't'; '+ot': minibatch OT too)
 *           ot | sinkhorn   (linear interpolant, minibatch OT / Sinkhorn coupling)
 *   transport_bench --assign-timing   (seconds per exact assignment vs batch size)
 *
 * Trains a 3x128 SiLU network (time features F = 4) for STEPS steps (default 4000),
 * batch 256, Adam lr 2e-3 with a cosine schedule, then prints one line of key=value:
 *   path_est   running estimate of the path length (EMA of -G during training)
 *   path_eval  -G on 20 held-out batches of 1024 (evaluation draws; a lower bound on the
 *              path length of the learned interpolant when v is not exactly optimal)
 *   kinetic    int_0^1 mean |v(t, x(t))|^2 dt along the learned flow from 2000 base draws
 *              (RK4, 200 steps, trapezoid in t): the kinetic energy of the sampler
 *   nfe        velocity evaluations of dopri5 sampling 2000 points at rtol = atol = 1e-5
 *   nll        mean -log p of 2000 held-out toy points (dopri5 1e-5, exact trace) and its
 *              standard error; entropy: the toy's true entropy where known (NLL floor)
 *   train_s    training wall time
 * Uses only the public API. Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stochflow.h"
#include "bench_util.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds (not wall: robust to other load on the machine). */
static int assign_timing(void) {
    const size_t sizes[] = {128, 256, 512, 1024, 2048};
    for (size_t q = 0; q < 5; ++q) {
        size_t n = sizes[q];
        float *x0 = malloc(n * 2 * 4), *x1 = malloc(n * 2 * 4);
        size_t *perm = malloc(n * sizeof *perm);
        stochflow_random_normal(x0, n * 2, 1, 0);
        stochflow_toy_sample(x1, "checkerboard", n, 1, 0);
        double ci, co, cs;
        CHECK(stochflow_coupling_assign(perm, &ci, x0, x1, n, 2, STOCHFLOW_COUPLING_INDEPENDENT,
                                        0, 0));
        double t0 = cpu_seconds();
        CHECK(stochflow_coupling_assign(perm, &co, x0, x1, n, 2, STOCHFLOW_COUPLING_OT, 0, 0));
        double t1 = cpu_seconds();
        CHECK(stochflow_coupling_assign(perm, &cs, x0, x1, n, 2, STOCHFLOW_COUPLING_SINKHORN,
                                        0.05, 0));
        double t2 = cpu_seconds();
        printf("n=%zu ot_s=%.4f sinkhorn_s=%.4f cost_indep=%.4f cost_ot=%.4f cost_sinkhorn=%.4f\n",
               n, t1 - t0, t2 - t1, ci, co, cs);
        free(x0);
        free(x1);
        free(perm);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--assign-timing") == 0) return assign_timing();
    if (argc < 3) {
        fprintf(stderr, "usage: transport_bench TOY trig|linear|fourier|ot|sinkhorn [STEPS] "
                        "[SEED]\n       transport_bench --assign-timing\n");
        return 2;
    }
    const char *toy = argv[1], *mode = argv[2];
    const size_t steps = argc > 3 ? (size_t)atol(argv[3]) : 4000;
    const uint64_t seed = argc > 4 ? (uint64_t)atoll(argv[4]) : 0;
    const size_t n = 256, widths[] = {128, 128, 128};

    stochflow_config *cfg = NULL;
    stochflow_model *m = NULL;
    CHECK(stochflow_config_new(&cfg, 2));
    CHECK(stochflow_config_set_hidden(cfg, 3, widths));
    CHECK(stochflow_config_set_time_embedding(cfg, STOCHFLOW_TIME_FOURIER, 4));
    CHECK(stochflow_config_set_seed(cfg, seed));
    int coupling = STOCHFLOW_COUPLING_INDEPENDENT;
    if (strcmp(mode, "trig") == 0) {
        CHECK(stochflow_config_set_interpolant(cfg, STOCHFLOW_INTERP_TRIG));
    } else if (strcmp(mode, "linear") == 0) {
        CHECK(stochflow_config_set_interpolant(cfg, STOCHFLOW_INTERP_LINEAR));
    } else if (strncmp(mode, "fourier", 7) == 0) {
        /* fourier[M][t][+ot]: M modes (default 4), trig base with 't', OT coupling */
        char *end;
        long M = strtol(mode + 7, &end, 10);
        if (end == mode + 7) M = 4;
        int base = STOCHFLOW_INTERP_LINEAR;
        if (*end == 't') base = STOCHFLOW_INTERP_TRIG, ++end;
        if (strcmp(end, "+ot") == 0) coupling = STOCHFLOW_COUPLING_OT;
        CHECK(stochflow_config_set_fourier_interpolant(cfg, base, (size_t)M));
    } else if (strcmp(mode, "ot") == 0 || strcmp(mode, "sinkhorn") == 0) {
        CHECK(stochflow_config_set_interpolant(cfg, STOCHFLOW_INTERP_LINEAR));
        coupling = mode[0] == 'o' ? STOCHFLOW_COUPLING_OT : STOCHFLOW_COUPLING_SINKHORN;
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    CHECK(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_COUPLING, coupling));

    float *x1 = malloc(n * 2 * sizeof *x1);
    double t0 = now();
    for (size_t s = 0; s < steps; ++s) {
        double loss;
        CHECK(stochflow_toy_sample(x1, toy, n, seed + 1, s));
        CHECK(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
    }
    double train_s = now() - t0;
    double path_est = NAN;
    CHECK(stochflow_model_path_length(&path_est, NULL, m));

    /* -G on held-out batches (evaluation streams; the coupling applies as in training) */
    const size_t ne = 1024, N = 2000;
    float *xe = malloc(ne * 2 * sizeof *xe);
    double path_eval = 0;
    for (int b = 0; b < 20; ++b) {
        double loss;
        CHECK(stochflow_toy_sample(xe, toy, ne, seed + 2, (uint64_t)b));
        CHECK(stochflow_model_loss(&loss, m, xe, ne, NULL, NULL));
        path_eval += -loss / 20;
    }

    /* kinetic energy of the learned flow: RK4 with 200 steps from N(0, I) draws */
    float *x = malloc(N * 2 * 4), *k1 = malloc(N * 2 * 4), *k2 = malloc(N * 2 * 4),
          *k3 = malloc(N * 2 * 4), *k4 = malloc(N * 2 * 4), *y = malloc(N * 2 * 4);
    CHECK(stochflow_random_normal(x, N * 2, seed + 3, 0));
    const int K = 200;
    const double h = 1.0 / K;
    double kinetic = 0;
    for (int k = 0; k < K; ++k) {
        double t = k * h;
        CHECK(stochflow_model_velocity(k1, m, t, x, N));
        double e0 = 0;
        for (size_t i = 0; i < 2 * N; ++i) e0 += (double)k1[i] * k1[i];
        kinetic += (k == 0 ? 0.5 : 1.0) * h * e0 / N;
        for (size_t i = 0; i < 2 * N; ++i) y[i] = x[i] + (float)(0.5 * h) * k1[i];
        CHECK(stochflow_model_velocity(k2, m, t + 0.5 * h, y, N));
        for (size_t i = 0; i < 2 * N; ++i) y[i] = x[i] + (float)(0.5 * h) * k2[i];
        CHECK(stochflow_model_velocity(k3, m, t + 0.5 * h, y, N));
        for (size_t i = 0; i < 2 * N; ++i) y[i] = x[i] + (float)h * k3[i];
        CHECK(stochflow_model_velocity(k4, m, t + h > 1 ? 1 : t + h, y, N));
        for (size_t i = 0; i < 2 * N; ++i)
            x[i] += (float)(h / 6) * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    }
    CHECK(stochflow_model_velocity(k1, m, 1.0, x, N));
    double e1 = 0;
    for (size_t i = 0; i < 2 * N; ++i) e1 += (double)k1[i] * k1[i];
    kinetic += 0.5 * h * e1 / N;

    /* NFE of dopri5 sampling and NLL of held-out data */
    stochflow_solver *sv = NULL;
    CHECK(stochflow_solver_new(&sv));
    CHECK(stochflow_solver_set_param(sv, STOCHFLOW_PARAM_RTOL, 1e-5));
    CHECK(stochflow_solver_set_param(sv, STOCHFLOW_PARAM_ATOL, 1e-5));
    CHECK(stochflow_solver_sample(y, NULL, sv, m, N, seed + 4));
    double nfe;
    CHECK(stochflow_solver_stat(&nfe, sv, STOCHFLOW_STAT_NFE));
    float *xt = malloc(N * 2 * 4), *lp = malloc(N * 4);
    CHECK(stochflow_toy_sample(xt, toy, N, seed + 5, 0));
    double t1 = now();
    CHECK(stochflow_solver_log_prob(lp, NULL, sv, m, xt, N, 1.0));
    double nll_s = now() - t1, nfe_nll;
    CHECK(stochflow_solver_stat(&nfe_nll, sv, STOCHFLOW_STAT_NFE));
    double s = 0, s2 = 0;
    for (size_t i = 0; i < N; ++i) s += lp[i];
    double mean = s / N;
    for (size_t i = 0; i < N; ++i) s2 += (lp[i] - mean) * (lp[i] - mean);
    double se = sqrt(s2 / (N - 1) / N), entropy = NAN;
    float dummy;
    if (stochflow_toy_log_density(&dummy, &entropy, toy, xt, 1) < 0) entropy = NAN;

    printf("toy=%s mode=%s steps=%zu seed=%llu path_est=%.4f path_eval=%.4f kinetic=%.4f "
           "nfe=%.0f nll=%.4f nll_se=%.4f entropy=%.4f nfe_nll=%.0f train_s=%.1f nll_s=%.1f\n",
           toy, mode, steps, (unsigned long long)seed, path_est, path_eval, kinetic, nfe, -mean,
           se, entropy, nfe_nll, train_s, nll_s);
    double al[64], be[64];
    size_t M;
    if (stochflow_model_interpolant_coefficients(al, be, &M, m) == 0) {
        printf("  alpha =");
        for (size_t k = 0; k < M; ++k) printf(" %.4f", al[k]);
        printf("  beta =");
        for (size_t k = 0; k < M; ++k) printf(" %.4f", be[k]);
        printf("\n");
    }
    stochflow_solver_free(sv);
    stochflow_model_free(m);
    free(x1); free(xe); free(x); free(k1); free(k2); free(k3); free(k4); free(y); free(xt);
    free(lp);
    return 0;
}
