/*
 * bench_c.c - one libstochflow measurement per process, printed as one JSON line.
 *
 * The harness (bench/run.py) alternates this program with bench_torch.py, which does
 * the same computation in PyTorch. A fresh process per measurement makes the peak
 * resident set (VmHWM, see maxrss_kb) belong to that job alone.
 *
 * Jobs:
 *   train   stochflow_model_train_step with library-drawn x0 and t     (steps/s)
 *   sample  stochflow_solver_sample, RK4, --steps fixed steps          (samples/s)
 *           (--solver dopri5: adaptive, rtol = atol = --tol)
 *   logp    stochflow_solver_log_prob at t = 1, RK4, --steps fixed steps,
 *           --trace exact | hutch (1 Rademacher probe)                 (points/s)
 *   parity  write the model's parameters, a batch (x1, x0, t), the loss and gradient of
 *           that batch, the exact log-density (RK4, --steps) and v(0.3, x1) to --out
 *           FILE, for bench_torch.py --job parity to recompute and compare
 *   sgemm   plain BLIS sgemm on the GEMM shapes of one training step:
 *           per dense layer (in -> out) with batch B, the forward
 *           Y[B x out] = X[B x in] W^T, the input gradient dX[B x in] = dY W and the
 *           weight gradient dW[out x in] = dY^T X                        (GFLOP/s)
 *   sgemm-fwd  plain BLIS sgemm Y[B x w] = X[B x w] W^T of one hidden layer: the
 *           rate that bounds a velocity / tangent evaluation from below  (GFLOP/s)
 *
 * Usage: bench_c --job JOB [--d 2] [--width 256] [--layers 3] [--batch 256]
 *                [--threads 1] [--steps 50] [--trace exact|hutch]
 *                [--min-time 1.0] [--min-iters 1] [--seed 1]
 *
 * Not installed; not part of the library. Exit status 0 on success, 1 on a failure
 * (the JSON line then has "ok": false and the library's message).
 */
#define _POSIX_C_SOURCE 200809L
#include <blis.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <stochflow.h>

typedef struct {
    const char *job;
    size_t d, width, layers, batch;
    int threads, steps, hutch, min_iters, dopri5;
    double tol;
    double min_time;
    uint64_t seed;
    const char *out;
} options;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident set of this process in KiB: VmHWM of /proc/self/status, which belongs
 * to the process's own address space. getrusage's ru_maxrss is not used: Linux carries
 * it over fork and exec, so a small job started by a bigger parent (the Python driver)
 * would report the parent's size. Falls back to ru_maxrss without /proc. */
static long maxrss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long kb = -1;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
        fclose(f);
        if (kb >= 0) return kb;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench_c --job train|sample|logp|parity|sgemm|sgemm-fwd [--d N] [--width N] [--layers N]\n"
            "               [--batch N] [--threads N] [--steps N] [--trace exact|hutch]\n"
            "               [--min-time S] [--min-iters N] [--seed N] [--out FILE]\n"
            "               [--solver rk4|dopri5] [--tol T]\n");
}

static int parse(options *o, int argc, char **argv) {
    *o = (options){"", 2, 256, 3, 256, 1, 50, 0, 1, 0, 1e-5, 1.0, 1, NULL};
    for (int i = 1; i < argc; ++i) {
        const char *k = argv[i];
        if (i + 1 >= argc) return -1;
        const char *v = argv[++i];
        if (!strcmp(k, "--job")) o->job = v;
        else if (!strcmp(k, "--d")) o->d = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--width")) o->width = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--layers")) o->layers = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--batch")) o->batch = strtoul(v, NULL, 10);
        else if (!strcmp(k, "--threads")) o->threads = atoi(v);
        else if (!strcmp(k, "--steps")) o->steps = atoi(v);
        else if (!strcmp(k, "--trace")) {
            if (!strcmp(v, "hutch")) o->hutch = 1;
            else if (!strcmp(v, "exact")) o->hutch = 0;
            else return -1;
        } else if (!strcmp(k, "--min-time")) o->min_time = atof(v);
        else if (!strcmp(k, "--min-iters")) o->min_iters = atoi(v);
        else if (!strcmp(k, "--seed")) o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--out")) o->out = v;
        else if (!strcmp(k, "--solver")) {
            if (!strcmp(v, "dopri5")) o->dopri5 = 1;
            else if (!strcmp(v, "rk4")) o->dopri5 = 0;
            else return -1;
        } else if (!strcmp(k, "--tol")) o->tol = atof(v);
        else return -1;
    }
    if (o->d < 1 || o->width < 1 || o->layers < 1 || o->layers > 64 || o->batch < 1 ||
        o->threads < 1 || o->steps < 1 || o->min_iters < 1)
        return -1;
    return 0;
}

/* Small xorshift generator for benchmark data and GEMM operands (not the library's). */
static uint64_t xs_state = 88172645463325252ull;
static double xs_uniform(void) {
    xs_state ^= xs_state << 13;
    xs_state ^= xs_state >> 7;
    xs_state ^= xs_state << 17;
    return (double)(xs_state >> 11) * (1.0 / 9007199254740992.0);
}
static double xs_normal(void) {
    double u1 = xs_uniform(), u2 = xs_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* n x d data: the FFJORD checkerboard for d = 2 (the library's generator when it works,
 * else the same formula here), standard normal otherwise. */
static void make_data(float *out, size_t n, size_t d, uint64_t seed, uint64_t stream) {
    if (d == 2 && stochflow_toy_sample(out, "checkerboard", n, seed, stream) == 0) return;
    for (size_t i = 0; i < n; ++i) {
        if (d == 2) {
            double x1 = xs_uniform() * 4 - 2;
            double x2 = xs_uniform() - (xs_uniform() < 0.5 ? 0.0 : 2.0);
            x2 += fmod(floor(x1), 2.0) != 0.0 ? 1.0 : 0.0;
            out[2 * i] = (float)(2 * x1);
            out[2 * i + 1] = (float)(2 * x2);
        } else {
            for (size_t j = 0; j < d; ++j) out[i * d + j] = (float)xs_normal();
        }
    }
}

/* ---- the sgemm reference ---------------------------------------------------------- */

typedef struct {
    int ta, tb;
    size_t m, n, k;
    const float *a, *b;
    float *c;
    size_t lda, ldb, ldc;
    int hidden; /* both dimensions of the layer are hidden widths */
} gemm_call;

static void run_sgemm(const gemm_call *g, int threads) {
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(threads, &rntm);
    float one = 1.0f, zero = 0.0f;
    bli_sgemm_ex(g->ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 g->tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)g->m, (dim_t)g->n,
                 (dim_t)g->k, &one, (float *)g->a, (inc_t)g->lda, 1, (float *)g->b,
                 (inc_t)g->ldb, 1, &zero, g->c, (inc_t)g->ldc, 1, NULL, &rntm);
}

static int job_sgemm(const options *o) {
    size_t L = o->layers + 1, B = o->batch;
    size_t dims[66];
    dims[0] = o->d + 1;
    for (size_t l = 1; l <= o->layers; ++l) dims[l] = o->width;
    dims[L] = o->d;
    size_t maxw = o->width > o->d + 1 ? o->width : o->d + 1;
    /* One activation buffer per layer input, one upstream-gradient buffer, weights. */
    float *acts = malloc(sizeof(float) * (L + 1) * B * maxw);
    float *dy = malloc(sizeof(float) * B * maxw);
    float *dx = malloc(sizeof(float) * B * maxw);
    float *w = malloc(sizeof(float) * L * maxw * maxw);
    float *dw = malloc(sizeof(float) * L * maxw * maxw);
    if (!acts || !dy || !dx || !w || !dw) {
        printf("{\"impl\": \"c\", \"ok\": false, \"error\": \"out of memory\"}\n");
        return 1;
    }
    for (size_t i = 0; i < (L + 1) * B * maxw; ++i) acts[i] = (float)(xs_uniform() - 0.5);
    for (size_t i = 0; i < B * maxw; ++i) dy[i] = (float)(xs_uniform() - 0.5);
    for (size_t i = 0; i < L * maxw * maxw; ++i) w[i] = (float)(xs_uniform() - 0.5) * 0.1f;
    gemm_call calls[3 * 65];
    size_t nc = 0;
    double flops = 0, flops_hidden = 0;
    for (size_t l = 0; l < L; ++l) {
        size_t in = dims[l], out = dims[l + 1];
        const float *x = acts + l * B * maxw;
        float *y = acts + (l + 1) * B * maxw;
        const float *wl = w + l * maxw * maxw;
        float *dwl = dw + l * maxw * maxw;
        int hid = l > 0 && l + 1 < L;
        /* forward: Y[B x out] = X[B x in] W^T, W is out x in */
        calls[nc++] = (gemm_call){0, 1, B, out, in, x, wl, y, in, in, out, hid};
        /* input gradient: dX[B x in] = dY[B x out] W[out x in] */
        calls[nc++] = (gemm_call){0, 0, B, in, out, dy, wl, dx, out, in, in, hid};
        /* weight gradient: dW[out x in] = dY^T X */
        calls[nc++] = (gemm_call){1, 0, out, in, B, dy, x, dwl, out, in, in, hid};
        flops += 3.0 * 2.0 * (double)B * (double)in * (double)out;
        if (hid) flops_hidden += 3.0 * 2.0 * (double)B * (double)in * (double)out;
    }
    long rss_setup = maxrss_kb();
    /* Warm up, then time the whole step's GEMM sequence, and separately the hidden
     * (width x width) layers only. */
    for (size_t i = 0; i < nc; ++i) run_sgemm(&calls[i], o->threads);
    double *times = malloc(sizeof(double) * 100000), *times_h = malloc(sizeof(double) * 100000);
    size_t it = 0;
    double t_start = now_s();
    while (it < 100000) {
        double t0 = now_s();
        for (size_t i = 0; i < nc; ++i) run_sgemm(&calls[i], o->threads);
        double t1 = now_s();
        for (size_t i = 0; i < nc; ++i)
            if (calls[i].hidden) run_sgemm(&calls[i], o->threads);
        double t2 = now_s();
        times[it] = t1 - t0;
        times_h[it] = t2 - t1;
        ++it;
        if ((int)it >= o->min_iters && t2 - t_start >= o->min_time) break;
    }
    double med = median(times, it), med_h = median(times_h, it);
    printf("{\"impl\": \"c\", \"ok\": true, \"job\": \"sgemm\", \"d\": %zu, \"width\": %zu, "
           "\"layers\": %zu, \"batch\": %zu, \"threads\": %d, \"iters\": %zu, "
           "\"median_iter_s\": %.9g, \"rate\": %.6g, \"unit\": \"GFLOP/s\", "
           "\"gflops\": %.6g, \"gflops_hidden\": %.6g, \"flops_per_step\": %.6g, "
           "\"maxrss_kb\": %ld, \"rss_setup_kb\": %ld}\n",
           o->d, o->width, o->layers, B, o->threads, it, med, flops / med / 1e9,
           flops / med / 1e9, flops_hidden > 0 ? flops_hidden / med_h / 1e9 : 0.0, flops,
           maxrss_kb(), rss_setup);
    free(times);
    free(times_h);
    free(acts);
    free(dy);
    free(dx);
    free(w);
    free(dw);
    return 0;
}

static int job_sgemm_fwd(const options *o) {
    size_t B = o->batch, w = o->width;
    float *x = malloc(sizeof(float) * B * w), *y = malloc(sizeof(float) * B * w);
    float *wt = malloc(sizeof(float) * w * w);
    if (!x || !y || !wt) {
        printf("{\"impl\": \"c\", \"ok\": false, \"error\": \"out of memory\"}\n");
        return 1;
    }
    for (size_t i = 0; i < B * w; ++i) x[i] = (float)(xs_uniform() - 0.5);
    for (size_t i = 0; i < w * w; ++i) wt[i] = (float)(xs_uniform() - 0.5) * 0.1f;
    gemm_call g = {0, 1, B, w, w, x, wt, y, w, w, w, 1};
    long rss_setup = maxrss_kb();
    run_sgemm(&g, o->threads);
    double *times = malloc(sizeof(double) * 100000);
    size_t it = 0;
    double t_start = now_s();
    while (it < 100000) {
        double t0 = now_s();
        run_sgemm(&g, o->threads);
        double t1 = now_s();
        times[it++] = t1 - t0;
        if ((int)it >= o->min_iters && t1 - t_start >= o->min_time) break;
    }
    double med = median(times, it), flops = 2.0 * (double)B * (double)w * (double)w;
    printf("{\"impl\": \"c\", \"ok\": true, \"job\": \"sgemm-fwd\", \"width\": %zu, "
           "\"batch\": %zu, \"threads\": %d, \"iters\": %zu, \"median_iter_s\": %.9g, "
           "\"rate\": %.6g, \"unit\": \"GFLOP/s\", \"gflops\": %.6g, \"maxrss_kb\": %ld, "
           "\"rss_setup_kb\": %ld}\n",
           w, B, o->threads, it, med, flops / med / 1e9, flops / med / 1e9, maxrss_kb(),
           rss_setup);
    free(times);
    free(x);
    free(y);
    free(wt);
    return 0;
}

/* ---- library jobs ------------------------------------------------------------------ */

#define CHECK(expr)                                                                    \
    do {                                                                               \
        int rc_ = (expr);                                                              \
        if (rc_ < 0) {                                                                 \
            const char *msg_ = stochflow_last_error_message();                         \
            printf("{\"impl\": \"c\", \"ok\": false, \"job\": \"%s\", \"error\": \"", \
                   o->job);                                                            \
            for (const char *p_ = #expr ": "; *p_; ++p_)                               \
                if (*p_ != '"' && *p_ != '\\') putchar(*p_);                           \
            for (const char *p_ = stochflow_status_string(rc_); *p_; ++p_)              \
                if (*p_ != '"' && *p_ != '\\') putchar(*p_);                           \
            fputs(": ", stdout);                                                       \
            for (const char *p_ = msg_; *p_; ++p_)                                     \
                if (*p_ != '"' && *p_ != '\\' && (unsigned char)*p_ >= 32) putchar(*p_); \
            printf("\"}\n");                                                           \
            return 1;                                                                  \
        }                                                                              \
    } while (0)

enum { N_POOL = 4 };

static int job_lib(const options *o) {
    stochflow_config *cfg = NULL;
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    size_t d = o->d, B = o->batch;
    int is_train = !strcmp(o->job, "train"), is_sample = !strcmp(o->job, "sample");
    int is_logp = !strcmp(o->job, "logp"), is_parity = !strcmp(o->job, "parity");
    if ((!is_train && !is_sample && !is_logp && !is_parity) || (is_parity && !o->out)) {
        usage();
        return 2;
    }
    size_t widths[64];
    for (size_t l = 0; l < o->layers; ++l) widths[l] = o->width;
    CHECK(stochflow_config_new(&cfg, d));
    CHECK(stochflow_config_set_hidden(cfg, o->layers, widths));
    CHECK(stochflow_config_set_seed(cfg, o->seed));
    CHECK(stochflow_model_new(&m, cfg));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, o->threads));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-3));
    CHECK(stochflow_solver_new(&s));
    CHECK(stochflow_solver_set_param(
        s, STOCHFLOW_PARAM_SOLVER, o->dopri5 ? STOCHFLOW_SOLVER_DOPRI5 : STOCHFLOW_SOLVER_RK4));
    CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, o->steps));
    if (o->dopri5) {
        CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, o->tol));
        CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, o->tol));
    }
    CHECK(stochflow_solver_set_param(
        s, STOCHFLOW_PARAM_TRACE, o->hutch ? STOCHFLOW_TRACE_HUTCHINSON : STOCHFLOW_TRACE_EXACT));
    if (o->hutch) {
        CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, 1));
        CHECK(stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBE_DIST,
                                         STOCHFLOW_PROBE_RADEMACHER));
    }
    CHECK(stochflow_solver_set_seed(s, o->seed + 7));
    size_t n_params = stochflow_model_num_params(m);

    float *pool = malloc(sizeof(float) * N_POOL * B * d);
    float *out = malloc(sizeof(float) * B * (d > 1 ? d : 1));
    if (!pool || !out) {
        printf("{\"impl\": \"c\", \"ok\": false, \"error\": \"out of memory\"}\n");
        return 1;
    }
    for (size_t k = 0; k < N_POOL; ++k) make_data(pool + k * B * d, B, d, o->seed, 100 + k);

    if (is_parity) {
        /* Everything the PyTorch side needs to recompute the same numbers. */
        float *x0 = malloc(sizeof(float) * B * d), *t = malloc(sizeof(float) * B);
        float *lp = malloc(sizeof(float) * B), *v = malloc(sizeof(float) * B * d);
        float *params = NULL, *grads = NULL;
        size_t count = 0;
        double l = 0;
        if (!x0 || !t || !lp || !v) return 1;
        CHECK(stochflow_random_normal(x0, B * d, o->seed, 1));
        for (size_t i = 0; i < B; ++i) t[i] = (float)xs_uniform();
        CHECK(stochflow_model_parameters(&params, &count, m));
        CHECK(stochflow_model_gradients(&grads, &count, m));
        FILE *f = fopen(o->out, "wb");
        if (!f) return 1;
        uint64_t hdr[6] = {d, o->width, o->layers, B, (uint64_t)o->steps, count};
        fwrite(hdr, sizeof hdr, 1, f);
        fwrite(params, sizeof(float), count, f);
        fwrite(pool, sizeof(float), B * d, f);
        fwrite(x0, sizeof(float), B * d, f);
        fwrite(t, sizeof(float), B, f);
        CHECK(stochflow_model_compute_gradient(&l, m, pool, B, x0, t));
        float lf = (float)l;
        fwrite(&lf, sizeof lf, 1, f);
        fwrite(grads, sizeof(float), count, f);
        CHECK(stochflow_solver_log_prob(lp, NULL, s, m, pool, B, 1.0));
        fwrite(lp, sizeof(float), B, f);
        CHECK(stochflow_model_velocity(v, m, 0.3, pool, B));
        fwrite(v, sizeof(float), B * d, f);
        int bad = fclose(f) != 0;
        printf("{\"impl\": \"c\", \"ok\": %s, \"job\": \"parity\", \"file\": \"%s\", "
               "\"params\": %zu, \"loss\": %.9g}\n", bad ? "false" : "true", o->out, count, l);
        free(x0);
        free(t);
        free(lp);
        free(v);
        return bad;
    }

    double check = 0.0, loss = 0.0;
    size_t kpool = 0, per_iter = is_train ? 1 : B;
    size_t warm_n = B < 256 ? B : 256;
    long rss_setup = maxrss_kb();
    /* Warm-up: 3 training steps and at least 0.3 s, or one call on min(B, 256) points. */
    if (is_train) {
        double tw = now_s();
        for (int i = 0; i < 3 || now_s() - tw < 0.3; ++i)
            CHECK(stochflow_model_train_step(&loss, m, pool + (kpool++ % N_POOL) * B * d, B,
                                             NULL, NULL));
    } else if (is_sample) {
        CHECK(stochflow_solver_sample(out, NULL, s, m, warm_n, o->seed));
    } else {
        CHECK(stochflow_solver_log_prob(out, NULL, s, m, pool, warm_n, 1.0));
    }
    size_t cap = 1000000, it = 0;
    double *times = malloc(sizeof(double) * cap);
    if (!times) return 1;
    double t_start = now_s();
    while (it < cap) {
        double t0 = now_s();
        const float *x1 = pool + (kpool++ % N_POOL) * B * d;
        if (is_train) {
            CHECK(stochflow_model_train_step(&loss, m, x1, B, NULL, NULL));
            check = loss;
        } else if (is_sample) {
            CHECK(stochflow_solver_sample(out, NULL, s, m, B, o->seed + it));
            check = out[0];
        } else {
            CHECK(stochflow_solver_log_prob(out, NULL, s, m, x1, B, 1.0));
            double acc = 0;
            for (size_t i = 0; i < B; ++i) acc += out[i];
            check = acc / (double)B;
        }
        double t1 = now_s();
        times[it++] = t1 - t0;
        if ((int)it >= o->min_iters && t1 - t_start >= o->min_time) break;
    }
    double nfe = 0;
    if (!is_train) CHECK(stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE));
    double med = median(times, it);
    printf("{\"impl\": \"c\", \"ok\": true, \"job\": \"%s\", \"d\": %zu, \"width\": %zu, "
           "\"layers\": %zu, \"batch\": %zu, \"threads\": %d, \"steps\": %d, "
           "\"trace\": \"%s\", \"params\": %zu, \"iters\": %zu, \"median_iter_s\": %.9g, "
           "\"rate\": %.6g, \"unit\": \"%s\", \"maxrss_kb\": %ld, \"rss_setup_kb\": %ld, "
           "\"check\": %.9g",
           o->job, d, o->width, o->layers, B, o->threads, o->steps,
           o->hutch ? "hutch" : "exact", n_params, it, med, (double)per_iter / med,
           is_train ? "steps/s" : is_sample ? "samples/s" : "points/s", maxrss_kb(),
           rss_setup, check);
    if (is_train) printf(", \"gflops\": %.6g", 6.0 * (double)B * (double)n_params / med / 1e9);
    if (!is_train)
        printf(", \"nfe\": %.0f, \"solver\": \"%s\"", nfe, o->dopri5 ? "dopri5" : "rk4");
    printf("}\n");
    free(times);
    free(pool);
    free(out);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    stochflow_config_free(cfg);
    return 0;
}

int main(int argc, char **argv) {
    options o;
    if (parse(&o, argc, argv) < 0) {
        usage();
        return 2;
    }
    if (!strcmp(o.job, "sgemm")) return job_sgemm(&o);
    if (!strcmp(o.job, "sgemm-fwd")) return job_sgemm_fwd(&o);
    return job_lib(&o);
}
