/* transport.c - helpers of the stochflow program for transport options (learnable
 * interpolants, couplings, data-to-data flows) and the transport picture, used by the
 * train, sample and logp commands. Public API only. See doc/transport.md and doc/cli.md. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int cli_set_interpolant(stochflow_config *cfg, const char *cmd, const char *spec) {
    int rc;
    if (spec == NULL || strcmp(spec, "trig") == 0) {
        rc = stochflow_config_set_interpolant(cfg, STOCHFLOW_INTERP_TRIG);
    } else if (strcmp(spec, "linear") == 0) {
        rc = stochflow_config_set_interpolant(cfg, STOCHFLOW_INTERP_LINEAR);
    } else if (strncmp(spec, "fourier:", 8) == 0) {
        const char *p = spec + 8;
        char *end;
        errno = 0;
        unsigned long M = strtoul(p, &end, 10);
        int base = STOCHFLOW_INTERP_LINEAR;
        if (*p < '0' || *p > '9' || errno != 0 || M < 1 || M > 64)
            return cli_usage("%s: --interpolant fourier:M needs M in 1..64, got '%s'", cmd, spec);
        if (*end == ':') {
            if (strcmp(end + 1, "trig") == 0)
                base = STOCHFLOW_INTERP_TRIG;
            else if (strcmp(end + 1, "linear") != 0)
                return cli_usage("%s: --interpolant fourier:M:BASE needs BASE trig|linear, got "
                                "'%s'", cmd, spec);
        } else if (*end != '\0') {
            return cli_usage("%s: --interpolant fourier:M needs M in 1..64, got '%s'", cmd, spec);
        }
        rc = stochflow_config_set_fourier_interpolant(cfg, base, (size_t)M);
    } else {
        return cli_usage("%s: --interpolant must be trig|linear|fourier:M[:trig|:linear], got "
                        "'%s'", cmd, spec);
    }
    return rc < 0 ? cli_fail_lib(rc, "--interpolant") : 0;
}

static const keyword COUPLINGS[] = {{"independent", STOCHFLOW_COUPLING_INDEPENDENT},
                                    {"ot", STOCHFLOW_COUPLING_OT},
                                    {"sinkhorn", STOCHFLOW_COUPLING_SINKHORN},
                                    {NULL, 0}};

int check_coupling(const opts *o) {
    int mode, rc;
    if ((rc = get_keyword(o, "--coupling", COUPLINGS, STOCHFLOW_COUPLING_INDEPENDENT, &mode)) != 0)
        return rc;
    /* the exact assignment is cubic in the batch: refuse it before any work (a resumed
     * model that already holds OT gets the library's refusal at its first step) */
    uint64_t batch;
    if (mode == STOCHFLOW_COUPLING_OT && opt(o, "--batch") &&
        get_u64(o, "--batch", 0, 1, UINT64_MAX, &batch) == 0 &&
        batch > STOCHFLOW_COUPLING_OT_MAX_N)
        return cli_usage("%s: --coupling ot takes batches of at most %d rows (exact assignment, "
                         "cubic cost), got --batch %llu; use --coupling sinkhorn",
                         o->cmd, STOCHFLOW_COUPLING_OT_MAX_N, (unsigned long long)batch);
    const char *s = opt(o, "--interp-lr");
    double v;
    if (s && (get_double(o, "--interp-lr", 0, 0, 10, &v) != 0 || !(v > 0)))
        return cli_usage("%s: --interp-lr expects a number in (0, 10], got '%s'", o->cmd, s);
    return 0;
}

int cli_set_coupling(stochflow_model *m, const opts *o) {
    int rc, mode;
    double v;
    if ((rc = check_coupling(o)) != 0) return rc;
    if (opt(o, "--coupling")) {
        get_keyword(o, "--coupling", COUPLINGS, STOCHFLOW_COUPLING_INDEPENDENT, &mode);
        if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_COUPLING, mode)) < 0)
            return cli_fail_lib(rc, "--coupling");
    }
    if (opt(o, "--interp-lr")) {
        get_double(o, "--interp-lr", 0, 0, 10, &v);
        if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_INTERP_LR, v)) < 0)
            return cli_fail_lib(rc, "--interp-lr");
    }
    return 0;
}

/* Base batch for the model's current step: toys draw a fresh batch from their own
 * stream family (stream = 2^40 + step, independent of the data's draws); files draw rows
 * uniformly with replacement from indices keyed by (seed + 1, step). */
int cli_base_batch(float *x0, double *u, const dataset *base, size_t b, uint64_t seed,
                   uint64_t step) {
    int rc;
    if (base->toy) {
        rc = stochflow_toy_sample(x0, base->name, b, seed, ((uint64_t)1 << 40) + step);
        return rc < 0 ? cli_fail_lib(rc, "base samples") : 0;
    }
    rc = stochflow_random_uniform(u, b, seed + 1, step);
    if (rc < 0) return cli_fail_lib(rc, "base minibatch indices");
    for (size_t i = 0; i < b; ++i) {
        size_t k = uniform_to_index(u[i], base->n);
        memcpy(x0 + i * base->d, base->x + k * base->d, base->d * sizeof(float));
    }
    return 0;
}

int cli_is_fourier(const stochflow_model *m) {
    stochflow_config *c = NULL;
    int f = stochflow_model_config(&c, m) == 0 &&
            stochflow_config_interpolant(c) == STOCHFLOW_INTERP_FOURIER;
    stochflow_config_free(c);
    return f;
}

void cli_transport_report(const stochflow_model *m) {
    if (!cli_is_fourier(m)) return;
    double pl;
    uint64_t count;
    if (stochflow_model_path_length(&pl, &count, m) == 0)
        printf("path length estimate %.4f (EMA of -loss over %llu steps)\n", pl,
               (unsigned long long)count);
    double al[64], be[64];
    size_t M;
    if (stochflow_model_interpolant_coefficients(al, be, &M, m) == 0) {
        printf("interpolant coefficients (M = %zu):\n  alpha", M);
        for (size_t k = 0; k < M; ++k) printf(" %.4f", al[k]);
        printf("\n  beta ");
        for (size_t k = 0; k < M; ++k) printf(" %.4f", be[k]);
        printf("\n");
    }
}

/* ---- the transport picture ---------------------------------------------------------- */

static void put_px(canvas *c, int x, int y, const uint8_t rgb[3], double alpha) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    for (int k = 0; k < 3; ++k) p[k] = (uint8_t)(p[k] + alpha * ((double)rgb[k] - p[k]) + 0.5);
}

static void seg(canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3], double alpha) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (int guard = 0; guard < 100000; ++guard) {
        put_px(c, x0, y0, rgb, alpha);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

static void dot(canvas *c, int x, int y, const uint8_t rgb[3]) {
    for (int a = -1; a <= 1; ++a)
        for (int b = -1; b <= 1; ++b) put_px(c, x + a, y + b, rgb, 1.0);
}

/* Trajectories of n base points integrated 0 -> 1 in K segments (dopri5, the solver's
 * defaults), drawn as lines shading from blue (t = 0) to red (t = 1), over the target's
 * samples in light gray. Base points: the base data set's draws, or N(0, I). */
int cli_transport_picture(const char *path, stochflow_model *m, const dataset *base,
                          const dataset *data, uint64_t seed) {
    const size_t n = 400, nd = 3000, d = stochflow_model_dim(m);
    const int K = 32, size = 512, title_h = 28;
    if (d < 2) return cli_fail("--transport-png needs at least 2 dimensions");
    float *traj = malloc((size_t)(K + 1) * n * d * sizeof(float));
    float *tgt = malloc(nd * d * sizeof(float));
    double *u = malloc(n * sizeof(double));
    stochflow_solver *s = NULL;
    canvas c = {0};
    int ret = -1, rc;
    if (traj == NULL || tgt == NULL || u == NULL) {
        cli_fail("out of memory for the transport picture");
        goto out;
    }
    if (base) {
        if (cli_base_batch(traj, u, base, n, seed + 7, 0) != 0) goto out;
    } else if ((rc = stochflow_random_normal(traj, n * d, seed + 7, 0)) < 0) {
        cli_fail_lib(rc, "base draws");
        goto out;
    }
    if (data->toy) {
        if ((rc = stochflow_toy_sample(tgt, data->name, nd, seed + 8, 0)) < 0) {
            cli_fail_lib(rc, "target samples");
            goto out;
        }
    } else {
        for (size_t i = 0; i < nd; ++i)
            memcpy(tgt + i * d, data->x + (i % data->n) * d, d * sizeof(float));
    }
    if ((rc = stochflow_solver_new(&s)) < 0) {
        cli_fail_lib(rc, "solver");
        goto out;
    }
    for (int k = 0; k < K; ++k) {
        float *next = traj + (size_t)(k + 1) * n * d;
        memcpy(next, traj + (size_t)k * n * d, n * d * sizeof(float));
        rc = stochflow_solver_integrate(NULL, NULL, s, m, next, n, (double)k / K,
                                        (double)(k + 1) / K);
        if (rc < 0) {
            cli_fail_lib(rc, "integrating the trajectories");
            goto out;
        }
    }
    /* the flow runs in the model's standardized space (doc/data.md): drawn in the data's
     * units, beside the target points (the identity for a model without a map) */
    if ((rc = stochflow_model_standardize(traj, m, traj, (size_t)(K + 1) * n, 1)) < 0) {
        cli_fail_lib(rc, "mapping the trajectories to the data's units");
        goto out;
    }
    /* square range covering the bulk of start, end and target points */
    double lo = INFINITY, hi = -INFINITY;
    double l1, h1;
    plot_auto_range(&l1, &h1, traj, n, d);
    lo = fmin(lo, l1), hi = fmax(hi, h1);
    plot_auto_range(&l1, &h1, traj + (size_t)K * n * d, n, d);
    lo = fmin(lo, l1), hi = fmax(hi, h1);
    plot_auto_range(&l1, &h1, tgt, nd, d);
    lo = fmin(lo, l1), hi = fmax(hi, h1);
    if (canvas_new(&c, size, size + title_h, 255) != 0) goto out;
    const uint8_t ink[3] = {0, 0, 0}, gray[3] = {170, 170, 170}, blue[3] = {30, 70, 220},
                  red[3] = {220, 40, 30};
    canvas_text(&c, 8, 8, "TRANSPORT: BLUE T=0 TO RED T=1", 2, ink);
    double scale = (size - 1) / (hi - lo);
#define PX(v) ((int)lround(((v) - lo) * scale))
#define PY(v) (title_h + size - 1 - (int)lround(((v) - lo) * scale))
    for (size_t i = 0; i < nd; ++i) put_px(&c, PX(tgt[i * d]), PY(tgt[i * d + 1]), gray, 1.0);
    for (int k = 0; k < K; ++k) {
        double f = (k + 0.5) / K;
        uint8_t col[3];
        for (int q = 0; q < 3; ++q) col[q] = (uint8_t)((1 - f) * blue[q] + f * red[q]);
        const float *a = traj + (size_t)k * n * d, *b = a + n * d;
        for (size_t i = 0; i < n; ++i)
            seg(&c, PX(a[i * d]), PY(a[i * d + 1]), PX(b[i * d]), PY(b[i * d + 1]), col, 0.35);
    }
    for (size_t i = 0; i < n; ++i) {
        const float *a = traj + i * d, *b = traj + (size_t)K * n * d + i * d;
        dot(&c, PX(a[0]), PY(a[1]), blue);
        dot(&c, PX(b[0]), PY(b[1]), red);
    }
#undef PX
#undef PY
    if (canvas_save(&c, path) != 0) goto out;
    ret = 0;
out:
    canvas_free(&c);
    stochflow_solver_free(s);
    free(traj);
    free(tgt);
    free(u);
    return ret;
}

/* ---- data-to-data models in sample / logp ------------------------------------------ */

static int toy_logpdf(void *user, size_t n, size_t d, const float *x, float *logp) {
    (void)d;
    return stochflow_toy_log_density(logp, NULL, (const char *)user, x, n) < 0 ? -1 : 0;
}

int cli_set_base_logpdf(stochflow_solver *s, const dataset *base, const char *cmd) {
    float probe[2] = {0.0f, 0.0f}, lp;
    if (!base->toy || stochflow_toy_log_density(&lp, NULL, base->name, probe, 1) < 0)
        return cli_fail("%s: no base log-density available for --base %s: log-densities of a "
                        "data-to-data flow need the base's density in closed form (toys "
                        "checkerboard, 8gaussians; or stochflow_solver_set_base_logpdf in the "
                        "library)", cmd, base->name);
    /* the callback keeps the library's static copy of the name, not base's buffer */
    const char *name = NULL;
    for (size_t i = 0; i < stochflow_toy_count(); ++i)
        if (strcmp(stochflow_toy_name(i), base->name) == 0) name = stochflow_toy_name(i);
    if (name == NULL) return cli_fail("%s: unknown toy %s", cmd, base->name);
    int rc = stochflow_solver_set_base_logpdf(s, toy_logpdf, (void *)name);
    return rc < 0 ? cli_fail_lib(rc, "--base") : 0;
}

int cli_sample_from_base(float *x, float *lp, stochflow_solver *s, stochflow_model *m,
                         const dataset *base, size_t n, uint64_t seed) {
    size_t d = stochflow_model_dim(m);
    if (base->d != d)
        return cli_fail("sample: --base has %zu columns but the model has dimension %zu",
                        base->d, d);
    if (lp && cli_set_base_logpdf(s, base, "sample") != 0) return -1;
    double *u = malloc(n * sizeof(double));
    if (u == NULL) return cli_fail("sample: out of memory");
    /* stream family 2^41 + seed: disjoint from the training draws of cli_base_batch */
    int rc = cli_base_batch(x, u, base, n, seed, ((uint64_t)1 << 41));
    free(u);
    if (rc != 0) return -1;
    if (lp) {
        float *l0 = malloc(n * sizeof(float));
        if (l0 == NULL) return cli_fail("sample: out of memory");
        if (toy_logpdf((void *)base->name, n, d, x, l0) != 0) {
            free(l0);
            return cli_fail("sample: base log-density failed");
        }
        rc = stochflow_solver_integrate(lp, NULL, s, m, x, n, 0.0, 1.0);
        for (size_t i = 0; rc >= 0 && i < n; ++i) lp[i] += l0[i];
        free(l0);
    } else {
        rc = stochflow_solver_integrate(NULL, NULL, s, m, x, n, 0.0, 1.0);
    }
    return rc < 0 ? cli_fail_lib(rc, "sampling from the base") : 0;
}
