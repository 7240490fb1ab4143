/* unet_scaling.c - issue 8: time and peak memory of U-Net training steps as the image
 * size grows (same U-Net family at every size), and an end-to-end sample at that size.
 * Run by hand, one size per process so that peak memory is that size's alone:
 *
 *   for s in 32 64 128; do ./build/bench/unet_scaling $s 8 5 2; done
 *
 * Arguments: size (square RGB images), batch, timed steps, threads. The U-Net: base 32,
 * multipliers 1,2,2,2 (4 levels), 1 block per level, attention at the lowest level,
 * 8 groups. Data: random images in [-1, 1] (the cost does not depend on the values).
 * Prints one line: size, pixels, params, wall seconds per step (median), CPU seconds
 * per step (mean; robust to other load on a shared machine) and per megapixel of batch,
 * peak RSS (MiB), sampling seconds (RK4, 4 steps, 2 images). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "stochflow.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of this process (all threads): robust to other load on the machine. */
static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define CHECK(call)                                                                  \
    do {                                                                             \
        int rc_ = (call);                                                            \
        if (rc_ < 0) {                                                               \
            fprintf(stderr, "%s: %s\n", #call, stochflow_last_error_message());      \
            return 1;                                                                \
        }                                                                            \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: unet_scaling SIZE BATCH STEPS THREADS\n");
        return 2;
    }
    size_t s = strtoul(argv[1], NULL, 10), n = strtoul(argv[2], NULL, 10);
    int steps = atoi(argv[3]), threads = atoi(argv[4]);
    if (s < 8 || n < 1 || steps < 1 || steps > 1000 || threads < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    const size_t c = 3, d = c * s * s;
    stochflow_unet_options u;
    CHECK(stochflow_unet_options_init(&u, sizeof u)); /* base 32, groups 8, 1 block */
    u.channels = c;
    u.height = u.width = (size_t)s;
    u.n_levels = 4;
    u.mult[3] = 2; /* 1, 2, 2, 2 */
    u.attn_mask = 1u << 3;
    stochflow_config *cfg;
    CHECK(stochflow_config_new(&cfg, d));
    CHECK(stochflow_config_set_unet(cfg, &u));
    stochflow_model *m;
    CHECK(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, threads));
    float *x = malloc(n * d * sizeof *x);
    if (!x) return 1;
    CHECK(stochflow_random_normal(x, n * d, 1, 1));
    for (size_t i = 0; i < n * d; ++i) x[i] = x[i] > 1 ? 1 : x[i] < -1 ? -1 : x[i];
    double loss, times[1000];
    CHECK(stochflow_model_train_step(&loss, m, x, n, NULL, NULL)); /* warm-up */
    double c0 = cpu_now();
    for (int k = 0; k < steps; ++k) {
        double t0 = now();
        CHECK(stochflow_model_train_step(&loss, m, x, n, NULL, NULL));
        times[k] = now() - t0;
    }
    double cpu = (cpu_now() - c0) / steps;
    qsort(times, (size_t)steps, sizeof *times, cmp);
    double med = times[steps / 2];
    /* end to end: two samples with RK4 */
    stochflow_solver *sol;
    CHECK(stochflow_solver_new(&sol));
    CHECK(stochflow_solver_set_param(sol, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    CHECK(stochflow_solver_set_param(sol, STOCHFLOW_PARAM_STEPS, 4));
    double t0 = now();
    CHECK(stochflow_solver_sample(x, NULL, sol, m, 2, 7));
    double ts = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mpix = (double)(n * s * s) / 1e6;
    printf("size %zu  pixels %zu  params %zu  batch %zu  threads %d  s/step %.3f  "
           "cpu_s/step %.3f  cpu_s/step/Mpix %.3f  peak_rss_MiB %.0f  sample2_rk4x4_s %.2f  "
           "loss %.4f\n",
           s, s * s, stochflow_model_num_params(m), n, threads, med, cpu, cpu / mpix,
           (double)ru.ru_maxrss / 1024.0, ts, loss);
    stochflow_solver_free(sol);
    stochflow_model_free(m);
    free(x);
    return 0;
}
