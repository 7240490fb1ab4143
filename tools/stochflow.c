/* stochflow.c - the stochflow command-line program: train / sample / logp / info / demo.
 * Built on the public API of <stochflow.h> only. Usage and behaviour: doc/cli.md.
 *
 * Conventions: results go to stdout (with --json, one JSON object is the last line);
 * errors are one line "stochflow: ..." on stderr and a non-zero exit status (2 for
 * usage errors, 1 for everything else); a progress bar is drawn on stderr only when
 * stderr is a terminal. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "images_cli.h" /* issue 8; also optdef, opts, keyword, json, EXIT_USAGE */

#define LN32 3.4657359027997265
/* Toy streams: training step s draws its batch from stream s; evaluation uses streams
 * at the top of the toy RNG's 2^44 range, which training never reaches. */
#define HELDOUT_STREAM ((((uint64_t)1) << 44) - 1)
#define PICTURE_STREAM ((((uint64_t)1) << 44) - 2)

/* Set by SIGINT/SIGTERM while a command runs (see catch_stop_signals). */
volatile sig_atomic_t stop_requested;

/* ---- errors and time ----------------------------------------------------------------- */

int cli_fail(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; ++p) /* one line, whatever the message holds */
        if (*p == '\n' || *p == '\r') *p = ' ';
    fflush(stdout);
    fprintf(stderr, "stochflow: %s\n", buf);
    return -1;
}

int cli_fail_lib(int status, const char *what) {
    return cli_fail("%s: %s (%s)", what, stochflow_last_error_message(),
                    stochflow_status_string(status));
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- options --------------------------------------------------------------------------- */

const char *opt(const opts *o, const char *name) {
    for (size_t i = 0; i < o->n; ++i)
        if (strcmp(o->defs[i].name, name) == 0) return o->val[i];
    return NULL;
}

static void print_help(const char *cmd, const char *synopsis, const optdef *defs, size_t n) {
    printf("usage: stochflow %s %s\n\noptions:\n", cmd, synopsis);
    for (size_t i = 0; i < n; ++i) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", defs[i].name, defs[i].arg ? " " : "",
                 defs[i].arg ? defs[i].arg : "");
        printf("  %-26s %s\n", left, defs[i].help);
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

/* Returns 0 to continue, 1 when help was printed, -1 on a usage error (printed). */
static int parse(opts *o, const char *cmd, const char *synopsis, const optdef *defs, size_t n,
                 int argc, char **argv) {
    o->cmd = cmd;
    o->defs = defs;
    o->n = n;
    for (size_t i = 0; i < n; ++i) o->val[i] = NULL;
    for (int a = 0; a < argc; ++a) {
        const char *s = argv[a];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            print_help(cmd, synopsis, defs, n);
            return 1;
        }
        if (s[0] != '-') return cli_fail("%s: unexpected argument '%s'", cmd, s);
        const char *eq = strchr(s, '=');
        size_t len = eq ? (size_t)(eq - s) : strlen(s);
        size_t k = 0;
        while (k < n && !(strlen(defs[k].name) == len && strncmp(defs[k].name, s, len) == 0))
            ++k;
        if (k == n)
            return cli_fail("%s: unknown option '%.*s' (see stochflow %s --help)", cmd, (int)len,
                            s, cmd);
        if (defs[k].arg == NULL) {
            if (eq) return cli_fail("%s: option %s takes no value", cmd, defs[k].name);
            o->val[k] = "1";
        } else if (eq) {
            o->val[k] = eq + 1;
        } else {
            if (a + 1 >= argc) return cli_fail("%s: option %s needs a value", cmd, defs[k].name);
            o->val[k] = argv[++a];
        }
    }
    return 0;
}

int need(const opts *o, const char *name) {
    if (opt(o, name) == NULL) return cli_fail("%s: %s is required", o->cmd, name);
    return 0;
}

int get_u64(const opts *o, const char *name, uint64_t def, uint64_t lo, uint64_t hi,
            uint64_t *out) {
    const char *s = opt(o, name);
    if (s == NULL) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] == '-' || end == s || *end != '\0' || errno != 0)
        return cli_fail("%s: %s expects a non-negative integer, got '%s'", o->cmd, name, s);
    if (v < lo || v > hi)
        return cli_fail("%s: %s = %llu is out of range [%llu, %llu]", o->cmd, name, v,
                        (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return 0;
}

int get_double(const opts *o, const char *name, double def, double lo, double hi,
               double *out) {
    const char *s = opt(o, name);
    if (s == NULL) {
        *out = def;
        return 0;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v))
        return cli_fail("%s: %s expects a number, got '%s'", o->cmd, name, s);
    if (v < lo || v > hi)
        return cli_fail("%s: %s = %g is out of range [%g, %g]", o->cmd, name, v, lo, hi);
    *out = v;
    return 0;
}

/* Map a keyword to a code; table is {"name", code, ...} terminated by NULL. */
int get_keyword(const opts *o, const char *name, const keyword *kw, int def, int *out) {
    const char *s = opt(o, name);
    if (s == NULL) {
        *out = def;
        return 0;
    }
    char list[256] = "";
    for (const keyword *k = kw; k->name; ++k) {
        if (strcmp(s, k->name) == 0) {
            *out = k->code;
            return 0;
        }
        strncat(list, k->name, sizeof list - strlen(list) - 1);
        if (k[1].name) strncat(list, "|", sizeof list - strlen(list) - 1);
    }
    return cli_fail("%s: %s must be one of %s, got '%s'", o->cmd, name, list, s);
}

static const keyword ACTIVATIONS[] = {{"silu", STOCHFLOW_ACT_SILU},
                                      {"tanh", STOCHFLOW_ACT_TANH},
                                      {"relu", STOCHFLOW_ACT_RELU},
                                      {"softplus", STOCHFLOW_ACT_SOFTPLUS},
                                      {NULL, 0}};
static const keyword INTERPOLANTS[] = {
    {"trig", STOCHFLOW_INTERP_TRIG}, {"linear", STOCHFLOW_INTERP_LINEAR},
    {"fourier (learned)", STOCHFLOW_INTERP_FOURIER}, {NULL, 0}};
const keyword SOLVERS[] = {{"dopri5", STOCHFLOW_SOLVER_DOPRI5},
                           {"rk4", STOCHFLOW_SOLVER_RK4},
                           {"heun", STOCHFLOW_SOLVER_HEUN},
                           {"euler", STOCHFLOW_SOLVER_EULER},
                           {NULL, 0}};
const keyword TRACES[] = {
    {"exact", STOCHFLOW_TRACE_EXACT}, {"hutchinson", STOCHFLOW_TRACE_HUTCHINSON}, {NULL, 0}};
static const keyword SCHEDULES[] = {{"constant", STOCHFLOW_LR_CONSTANT},
                                    {"step", STOCHFLOW_LR_STEP},
                                    {"cosine", STOCHFLOW_LR_COSINE},
                                    {NULL, 0}};

const char *keyword_name(const keyword *kw, int code) {
    for (const keyword *k = kw; k->name; ++k)
        if (k->code == code) return k->name;
    return "unknown";
}

/* "256,256,256" -> widths; returns the count or -1. */
static int parse_hidden(const char *cmd, const char *s, size_t *w, size_t cap) {
    size_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || errno != 0 || v == 0 || v > 65536 || *p == '-')
            return cli_fail("%s: --hidden expects widths like 256,256,256, got '%s'", cmd, s);
        if (k == cap) return cli_fail("%s: --hidden: at most %zu layers", cmd, cap);
        w[k++] = v;
        if (*end == '\0') break;
        if (*end != ',')
            return cli_fail("%s: --hidden expects widths like 256,256,256, got '%s'", cmd, s);
        p = end + 1;
    }
    return (int)k;
}

int default_threads(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c < 1) c = 1;
    if (c > 8) c = 8;
    return (int)c;
}

/* ---- JSON (one object on one line) ------------------------------------------------------ */

void jraw(json *j, const char *fmt, ...) {
    if (j->len >= sizeof j->buf) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
    va_end(ap);
    if (k > 0) j->len += (size_t)k;
    if (j->len > sizeof j->buf) j->len = sizeof j->buf;
}

void jbegin(json *j) {
    j->len = 0;
    j->first = 1;
    jraw(j, "{");
}

void jkey(json *j, const char *k) {
    jraw(j, "%s\"%s\": ", j->first ? "" : ", ", k);
    j->first = 0;
}

void jnum(json *j, const char *k, double v) {
    jkey(j, k);
    if (isfinite(v)) jraw(j, "%.10g", v);
    else jraw(j, "null");
}

void jint(json *j, const char *k, unsigned long long v) {
    jkey(j, k);
    jraw(j, "%llu", v);
}

void jbool(json *j, const char *k, int v) {
    jkey(j, k);
    jraw(j, v ? "true" : "false");
}

void jstr(json *j, const char *k, const char *s) {
    jkey(j, k);
    if (s == NULL) {
        jraw(j, "null");
        return;
    }
    jraw(j, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
        if (*p == '"' || *p == '\\') jraw(j, "\\%c", *p);
        else if (*p < 0x20) jraw(j, "\\u%04x", *p);
        else jraw(j, "%c", *p);
    }
    jraw(j, "\"");
}

void jend(json *j) {
    jraw(j, "}");
    printf("%s\n", j->buf);
    fflush(stdout);
}

/* ---- shared pieces ------------------------------------------------------------------------ */

/* Solver progress: fraction of the time interval covered. */
int on_ode_progress(void *user, double t) {
    ode_progress *p = user;
    double span = p->t1 - p->t0;
    progress_update(p->bar, span != 0 ? (t - p->t0) / span : 1.0, NULL);
    return stop_requested ? 1 : 0; /* Ctrl-C cancels the solve */
}

int load_model(stochflow_model **m, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return cli_fail("cannot open model '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cli_fail("model '%s' is not a regular file", path);
    int rc = stochflow_model_load(m, path);
    if (rc < 0) return cli_fail_lib(rc, path);
    return 0;
}

static const keyword WEIGHTS[] = {{"ema", 1}, {"live", 2}, {NULL, 0}};

/* --threads, and --weights where the command has it. */
int set_threads(stochflow_model *m, const opts *o, int def) {
    uint64_t t;
    if (get_u64(o, "--threads", (uint64_t)def, 1, 256, &t) != 0) return -1;
    int rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, (double)t);
    if (rc < 0) return cli_fail_lib(rc, "--threads");
    for (size_t i = 0; i < o->n; ++i)
        if (strcmp(o->defs[i].name, "--weights") == 0 && o->val[i] != NULL) {
            int w;
            if (get_keyword(o, "--weights", WEIGHTS, 1, &w) != 0) return -1;
            rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, w);
            if (rc < 0) return cli_fail_lib(rc, "--weights");
        }
    return 0;
}

/* Solver settings shared by sample and logp: --solver --steps --rtol --atol. */
static int make_solver(stochflow_solver **s, const opts *o) {
    int kind, rc;
    uint64_t steps;
    double rtol, atol;
    if (get_keyword(o, "--solver", SOLVERS, STOCHFLOW_SOLVER_DOPRI5, &kind) != 0 ||
        get_u64(o, "--steps", 100, 1, 10000000, &steps) != 0 ||
        get_double(o, "--rtol", 1e-5, 1e-12, 1.0, &rtol) != 0 ||
        get_double(o, "--atol", 1e-5, 1e-12, 1.0, &atol) != 0)
        return -1;
    if ((rc = stochflow_solver_new(s)) < 0) return cli_fail_lib(rc, "solver");
    if ((rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_SOLVER, kind)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_STEPS, (double)steps)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_RTOL, rtol)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_ATOL, atol)) < 0)
        return cli_fail_lib(rc, "solver settings");
    return 0;
}

uint64_t model_seed(const stochflow_model *m) {
    stochflow_config *c = NULL;
    uint64_t seed = 0;
    if (stochflow_model_config(&c, m) == 0) seed = stochflow_config_seed(c);
    stochflow_config_free(c);
    return seed;
}

/* Uniform index in [0, n) from a standard normal draw z (u = Phi(z)). */
static size_t normal_to_index(float z, size_t n) {
    double u = 0.5 * erfc(-(double)z / 1.4142135623730951);
    size_t k = (size_t)(u * (double)n);
    return k < n ? k : n - 1;
}

/* Fill a training batch for the model's current step. Toys: a fresh draw from stream =
 * step ("infinite data"). Files: rows drawn uniformly with replacement, indices from the
 * library's counter-based normals keyed by (seed, stream = step, i). */
static int fill_batch(float *batch, float *z, const dataset *ds, size_t b, uint64_t seed,
                      uint64_t step) {
    int rc;
    if (ds->toy) {
        rc = stochflow_toy_sample(batch, ds->name, b, seed, step);
        return rc < 0 ? cli_fail_lib(rc, "toy data") : 0;
    }
    rc = stochflow_random_normal(z, b, seed, step);
    if (rc < 0) return cli_fail_lib(rc, "minibatch indices");
    for (size_t i = 0; i < b; ++i) {
        size_t k = normal_to_index(z[i], ds->n);
        memcpy(batch + i * ds->d, ds->x + k * ds->d, ds->d * sizeof(float));
    }
    return 0;
}

/* Training settings shared by train and demo (only the options given are applied). */
int apply_train_params(stochflow_model *m, const opts *o, int fresh, uint64_t steps) {
    static const struct {
        const char *name;
        int key;
        double lo, hi;
    } P[] = {
        {"--lr", STOCHFLOW_PARAM_LR, 1e-12, 10},
        {"--lr-decay-every", STOCHFLOW_PARAM_LR_DECAY_EVERY, 1, 1e12},
        {"--lr-decay-factor", STOCHFLOW_PARAM_LR_DECAY_FACTOR, 1e-6, 1},
        {"--lr-min", STOCHFLOW_PARAM_LR_MIN, 0, 10},
        {"--warmup", STOCHFLOW_PARAM_LR_WARMUP, 0, 1e12},
        {"--ema", STOCHFLOW_PARAM_EMA_DECAY, 0, 0.999999},
        {"--clip", STOCHFLOW_PARAM_GRAD_CLIP, 0, 1e12},
        {"--weight-decay", STOCHFLOW_PARAM_WEIGHT_DECAY, 0, 10},
    };
    for (size_t i = 0; i < sizeof P / sizeof P[0]; ++i) {
        double v;
        if (opt(o, P[i].name) == NULL) continue;
        if (get_double(o, P[i].name, 0, P[i].lo, P[i].hi, &v) != 0) return -1;
        int rc = stochflow_model_set_param(m, P[i].key, v);
        if (rc < 0) return cli_fail_lib(rc, P[i].name);
    }
    /* --ema-warmup (a flag; only train declares it): Keras-style EMA warm-up */
    if (opt(o, "--ema-warmup") != NULL) {
        int rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_WARMUP, 1);
        if (rc < 0) return cli_fail_lib(rc, "--ema-warmup");
    }
    /* issue 9: --coupling, --interp-lr (tools/transport_cli.c) */
    if (cli_set_coupling(m, o->cmd, opt(o, "--coupling"), opt(o, "--interp-lr")) != 0)
        return -1;
    if (opt(o, "--lr-schedule") != NULL) {
        int sch;
        if (get_keyword(o, "--lr-schedule", SCHEDULES, STOCHFLOW_LR_CONSTANT, &sch) != 0)
            return -1;
        int rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, sch);
        if (rc < 0) return cli_fail_lib(rc, "--lr-schedule");
        /* a fresh cosine schedule spans exactly this run */
        if (sch == STOCHFLOW_LR_COSINE && fresh) {
            rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps);
            if (rc < 0) return cli_fail_lib(rc, "--lr-schedule cosine");
        }
    }
    return 0;
}

/* A new model from the architecture options (train and demo). */
static int build_model(stochflow_model **m, const opts *o, size_t dim, const char *def_hidden,
                       int def_fourier) {
    size_t widths[64];
    int nh = parse_hidden(o->cmd, opt(o, "--hidden") ? opt(o, "--hidden") : def_hidden, widths, 64);
    int act;
    uint64_t seed, nfreq;
    if (nh < 0 || get_keyword(o, "--activation", ACTIVATIONS, STOCHFLOW_ACT_SILU, &act) != 0 ||
        get_u64(o, "--seed", 0, 0, UINT64_MAX, &seed) != 0 ||
        get_u64(o, "--time-fourier", (uint64_t)def_fourier, 0, 64, &nfreq) != 0)
        return -1;
    stochflow_config *cfg = NULL;
    int rc = stochflow_config_new(&cfg, dim);
    if (rc >= 0) rc = stochflow_config_set_hidden(cfg, (size_t)nh, widths);
    if (rc >= 0) rc = stochflow_config_set_activation(cfg, act);
    /* --interpolant trig|linear|fourier:M[:base] (issue 9: tools/transport_cli.c) */
    if (rc >= 0 && cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant")) != 0) {
        stochflow_config_free(cfg);
        return -1;
    }
    if (rc >= 0) rc = stochflow_config_set_seed(cfg, seed);
    if (rc >= 0 && nfreq > 0)
        rc = stochflow_config_set_time_embedding(cfg, STOCHFLOW_TIME_FOURIER, (size_t)nfreq);
    if (rc >= 0) rc = stochflow_model_new(m, cfg);
    stochflow_config_free(cfg);
    return rc < 0 ? cli_fail_lib(rc, "model") : 0;
}

/* The architecture options' syntax, checked before any data is read, so that a malformed
 * value is a usage error (exit 2) like every other one (doc/cli.md). build_model parses
 * them again to build; only library errors are left for it. */
static int check_arch_options(const opts *o) {
    size_t widths[64];
    int act;
    uint64_t v;
    if (opt(o, "--hidden") && parse_hidden(o->cmd, opt(o, "--hidden"), widths, 64) < 0)
        return -1;
    if (get_keyword(o, "--activation", ACTIVATIONS, STOCHFLOW_ACT_SILU, &act) != 0 ||
        get_u64(o, "--seed", 0, 0, UINT64_MAX, &v) != 0 ||
        get_u64(o, "--time-fourier", 0, 0, 64, &v) != 0)
        return -1;
    stochflow_config *cfg = NULL;
    if (opt(o, "--interpolant") && stochflow_config_new(&cfg, 2) >= 0) {
        int bad = cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant")) != 0;
        stochflow_config_free(cfg);
        if (bad) return -1;
    }
    return 0;
}

typedef struct {
    uint64_t steps_run;
    double seconds, last_loss, mean_loss;
    double *losses; /* steps_run values (caller frees) */
    int interrupted; /* SIGINT/SIGTERM arrived: the loop stopped after a whole step */
} train_result;

/* Ctrl-C: training finishes the current step, then stops (train saves a resumable
 * checkpoint); an ODE solve is cancelled from its progress callback. The program then
 * exits 130. The handler stays installed for the whole command, so a signal delivered
 * twice (timeout(1) signals both the process and its group) still stops cleanly. */
static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Installed when train/demo start, so a signal during set-up also stops cleanly. */
static void catch_stop_signals(void) {
    stop_requested = 0;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
}

/* The training loop shared by train and demo. */
static int train_loop(train_result *res, stochflow_model *m, const dataset *ds,
                      const dataset *base, uint64_t steps, size_t batch, const char *label) {
    memset(res, 0, sizeof *res);
    size_t d = stochflow_model_dim(m);
    float *x = malloc(batch * d * sizeof(float)), *z = malloc(batch * sizeof(float));
    /* issue 9: base samples of a data-to-data flow (--base), else x0 ~ N(0, I) */
    float *x0 = base ? malloc(batch * d * sizeof(float)) : NULL;
    res->losses = malloc((steps ? steps : 1) * sizeof(double));
    if (x == NULL || z == NULL || res->losses == NULL || (base && x0 == NULL)) {
        free(x);
        free(z);
        free(x0);
        return cli_fail("out of memory for a batch of %zu", batch);
    }
    uint64_t seed = model_seed(m);
    progress bar;
    progress_start(&bar, label, (double)steps, "steps");
    double t0 = cli_now(), run = NAN;
    int rc = 0;
    for (uint64_t s = 0; s < steps; ++s) {
        if (stop_requested) {
            res->interrupted = 1;
            break;
        }
        uint64_t global = stochflow_model_step(m);
        if ((rc = fill_batch(x, z, ds, batch, seed, global)) != 0) break;
        if (base && (rc = cli_base_batch(x0, z, base, batch, seed, global)) != 0) break;
        double loss;
        int st = stochflow_model_train_step(&loss, m, x, batch, x0, NULL);
        if (st < 0) {
            progress_end(&bar);
            rc = cli_fail_lib(st, "training step");
            break;
        }
        res->losses[s] = loss;
        res->steps_run = s + 1;
        run = isnan(run) ? loss : 0.98 * run + 0.02 * loss;
        char extra[64];
        double pl; /* issue 9: the path-length estimate as training goes */
        if (stochflow_model_path_length(&pl, NULL, m) == 0)
            snprintf(extra, sizeof extra, "loss %.4f path %.3f", run, pl);
        else
            snprintf(extra, sizeof extra, "loss %.4f", run);
        progress_update(&bar, (double)(s + 1), extra);
    }
    progress_end(&bar);
    res->seconds = cli_now() - t0;
    if (res->steps_run > 0) {
        size_t k = res->steps_run < 100 ? res->steps_run : 100;
        double acc = 0;
        for (size_t i = res->steps_run - k; i < res->steps_run; ++i) acc += res->losses[i];
        res->mean_loss = acc / (double)k;
        res->last_loss = res->losses[res->steps_run - 1];
    } else {
        res->mean_loss = res->last_loss = NAN;
    }
    free(x);
    free(z);
    free(x0);
    return rc;
}

/* Mean and standard error of -logp. */
void nll_stats(double *nll, double *se, const float *lp, size_t n) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; ++i) s += lp[i];
    double mean = s / (double)n;
    for (size_t i = 0; i < n; ++i) s2 += (lp[i] - mean) * (lp[i] - mean);
    *nll = -mean;
    *se = n > 1 ? sqrt(s2 / (double)(n - 1) / (double)n) : NAN;
}

/* ---- train ---------------------------------------------------------------------------- */

static const optdef TRAIN_OPTS[] = {
    {"--data", "SRC", "toy, .npy/.csv file (n x d), or images: fashion-mnist, idx:P, pngdir:P"},
    {"--out", "MODEL", "checkpoint to write"},
    {"--steps", "N", "optimizer steps to run (default 1000; with --resume: more steps)"},
    {"--batch", "B", "batch size (default 512; images 64)"},
    {"--hidden", "W,W,...", "hidden widths (default 256,256,256)"},
    {"--activation", "NAME", "silu|tanh|relu|softplus (default silu)"},
    {"--interpolant", "NAME", "trig|linear|fourier:M[:trig] (default trig; fourier: learned)"},
    {"--time-fourier", "F", "time features (t, sin/cos(k pi t), k=1..F); 0 = raw t"},
    {"--coupling", "NAME", "independent|ot|sinkhorn pairing of x0 and x1 (default independent)"},
    {"--interp-lr", "X", "ascent rate of the fourier coefficients (default 1e-3)"},
    {"--base", "SRC", "base samples x0 (toy or file) instead of N(0, I): data-to-data"},
    {"--transport-png", "PICTURE", "draw trajectories from base to target (first 2 coords)"},
    {"--lr", "X", "Adam learning rate (default 1e-3; new image models 2e-4)"},
    {"--lr-schedule", "NAME", "constant|step|cosine (cosine spans --steps)"},
    {"--lr-decay-every", "N", "step schedule period"},
    {"--lr-decay-factor", "X", "step schedule factor"},
    {"--lr-min", "X", "cosine floor"},
    {"--warmup", "N", "linear warm-up steps"},
    {"--ema", "X", "EMA decay of the weights (0 = off)"},
    {"--ema-warmup", NULL, "EMA decay min(X, (1+s)/(10+s)) at step s (on with --ema for images)"},
    {"--clip", "X", "gradient norm clip (0 = off; new image models 1)"},
    {"--weight-decay", "X", "decoupled weight decay"},
    {"--seed", "S", "seed of every random draw (default 0)"},
    {"--threads", "T", "threads for matrix work (default: CPUs, at most 8)"},
    {"--resume", "MODEL", "continue training from a checkpoint"},
    /* issue 8: image data and the U-Net (tools/images_cli.c) */
    {"--unet-base", "B", "images: U-Net base channels (default 32)"},
    {"--unet-mult", "M,M,...", "images: channel multiplier per level (default 1,2,2)"},
    {"--unet-blocks", "N", "images: residual blocks per level (default 1)"},
    {"--unet-attn", "L,L,...", "images: levels with attention (default the lowest; none)"},
    {"--unet-groups", "G", "images: GroupNorm groups (default 8)"},
    {"--max-images", "N", "images: use the first N images of --data (default all)"},
    {"--outdir", "DIR", "images: checkpoints and sample grids (default: --out's directory)"},
    {"--checkpoint-every", "N", "images: save DIR/checkpoint.sfm every N steps"},
    {"--sample-every", "N", "images: write DIR/samples-STEP.png every N steps"},
    {"--grid-n", "N", "images: samples per grid (default 16)"},
    {"--grid-steps", "K", "images: RK4 steps of the grid samples (default 20)"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

static int cmd_train(int argc, char **argv) {
    opts o;
    catch_stop_signals();
    int p = parse(&o, "train", "--data SRC --out MODEL [options]", TRAIN_OPTS,
                  sizeof TRAIN_OPTS / sizeof TRAIN_OPTS[0], argc, argv);
    if (p != 0) return p > 0 ? 0 : EXIT_USAGE;
    /* issue 8: image data trains a U-Net (tools/images_cli.c) */
    int img = need(&o, "--data") ? -1 : cli_images_source("train", opt(&o, "--data"));
    if (img != 0) return img > 0 ? cli_images_train(&o) : EXIT_USAGE;
    if (need(&o, "--out") || cli_images_reject_options(&o)) return EXIT_USAGE;
    uint64_t steps, batch;
    if (get_u64(&o, "--steps", 1000, 0, 1000000000, &steps) ||
        get_u64(&o, "--batch", 512, 1, 1 << 22, &batch))
        return EXIT_USAGE;
    const char *resume = opt(&o, "--resume");
    if (resume) {
        static const char *arch[] = {"--hidden", "--activation", "--interpolant",
                                     "--time-fourier", "--seed"};
        for (size_t i = 0; i < 5; ++i)
            if (opt(&o, arch[i]))
                return cli_fail("train: %s cannot change when resuming (it is in the checkpoint)",
                                arch[i]),
                       EXIT_USAGE;
    }
    if (!resume && check_arch_options(&o) != 0) return EXIT_USAGE;
    dataset ds, base_ds;
    if (dataset_open(&ds, opt(&o, "--data")) != 0) return 1;
    /* issue 9: --base SRC, a data-to-data flow (tools/transport_cli.c) */
    const char *base_src = opt(&o, "--base");
    if (base_src && dataset_open(&base_ds, base_src) != 0) {
        dataset_free(&ds);
        return 1;
    }
    if (base_src && base_ds.toy) base_ds.d = 2;
    if (base_src && base_ds.d != ds.d) {
        cli_fail("train: --base has %zu columns but --data has %zu", base_ds.d, ds.d);
        dataset_free(&base_ds);
        dataset_free(&ds);
        return 1;
    }
    stochflow_model *m = NULL;
    train_result tr = {0};
    int ret = 1;
    if (resume) {
        if (load_model(&m, resume) != 0) goto out;
    } else if (build_model(&m, &o, ds.d, "256,256,256", 0) != 0) {
        goto out;
    }
    if (stochflow_model_dim(m) != ds.d) {
        cli_fail("train: the data has %zu columns but the model has dimension %zu", ds.d,
                 stochflow_model_dim(m));
        goto out;
    }
    if (set_threads(m, &o, default_threads()) || apply_train_params(m, &o, !resume, steps))
        goto out;
    uint64_t step0 = stochflow_model_step(m);
    if (train_loop(&tr, m, &ds, base_src ? &base_ds : NULL, steps, (size_t)batch, "train") != 0)
        goto out;
    int rc = stochflow_model_save(m, opt(&o, "--out"));
    if (rc < 0) {
        cli_fail_lib(rc, opt(&o, "--out"));
        goto out;
    }
    if (tr.interrupted) {
        cli_fail("train: interrupted after %llu steps (model step %llu); saved %s, continue "
                 "with --resume",
                 (unsigned long long)tr.steps_run, (unsigned long long)stochflow_model_step(m),
                 opt(&o, "--out"));
        ret = 130;
        goto out;
    }
    double sps = tr.seconds > 0 ? (double)tr.steps_run / tr.seconds : 0;
    printf("trained %llu steps (model step %llu -> %llu) on %s in %.2f s (%.1f steps/s)\n",
           (unsigned long long)tr.steps_run, (unsigned long long)step0,
           (unsigned long long)stochflow_model_step(m), ds.name, tr.seconds, sps);
    printf("loss %.5f (mean of the last %llu steps; last %.5f)\n", tr.mean_loss,
           (unsigned long long)(tr.steps_run < 100 ? tr.steps_run : 100), tr.last_loss);
    printf("saved %s (%zu parameters)\n", opt(&o, "--out"), stochflow_model_num_params(m));
    cli_transport_report(m); /* issue 9: path length, learned coefficients */
    if (base_src)
        printf("base: %s (data-to-data flow: the checkpoint does not record the base; pass "
               "--base %s to `stochflow sample` and `stochflow logp`)\n", base_ds.name,
               base_ds.name);
    if (opt(&o, "--transport-png")) {
        if (cli_transport_picture(opt(&o, "--transport-png"), m, base_src ? &base_ds : NULL,
                                  &ds, model_seed(m)) != 0)
            goto out;
        printf("wrote %s\n", opt(&o, "--transport-png"));
    }
    if (opt(&o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "steps", tr.steps_run);
        jint(&j, "model_step", stochflow_model_step(m));
        jnum(&j, "loss", tr.mean_loss);
        jnum(&j, "last_loss", tr.last_loss);
        jnum(&j, "seconds", tr.seconds);
        jnum(&j, "steps_per_second", sps);
        jint(&j, "batch", batch);
        jint(&j, "params", stochflow_model_num_params(m));
        jstr(&j, "data", ds.name);
        jstr(&j, "model", opt(&o, "--out"));
        double pl; /* issue 9 */
        if (stochflow_model_path_length(&pl, NULL, m) == 0) jnum(&j, "path_length", pl);
        jend(&j);
    }
    ret = 0;
out:
    free(tr.losses);
    stochflow_model_free(m);
    if (base_src) dataset_free(&base_ds);
    dataset_free(&ds);
    return ret;
}

/* ---- sample ----------------------------------------------------------------------------- */

static const optdef SAMPLE_OPTS[] = {
    {"--model", "MODEL", "checkpoint"},
    {"-n", "N", "number of samples"},
    {"--out", "FILE", "output .npy or .csv (n x d; n x (d+1) with --with-logp)"},
    {"--solver", "NAME", "dopri5|rk4|heun|euler (default dopri5; image models rk4)"},
    {"--steps", "K", "steps of the fixed-step solvers (default 100; image models 50)"},
    {"--rtol", "X", "dopri5 relative tolerance (default 1e-5)"},
    {"--atol", "X", "dopri5 absolute tolerance (default 1e-5)"},
    {"--png", "PICTURE", "also draw a 2-D histogram (first two coordinates); image model: the sample grid"},
    {"--with-logp", NULL, "append log p(x) as the last column"},
    {"--seed", "S", "seed of the base draws (default 0)"},
    {"--base", "SRC", "data-to-data model: draw x0 from SRC instead of N(0, I)"},
    {"--weights", "NAME", "ema|live: which weights to use (default ema when trained with EMA)"},
    {"--threads", "T", "threads for matrix work"},
    /* issue 8: image models (tools/images_cli.c) */
    {"--n", "N", "same as -n"},
    {"--cols", "C", "image model: images per row of the --png grid (default ceil(sqrt n))"},
    {"--batch", "B", "image model: images integrated per solver call (default 64)"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

static int cmd_sample(int argc, char **argv) {
    opts o;
    catch_stop_signals();
    int p = parse(&o, "sample", "--model MODEL -n N --out FILE [options]", SAMPLE_OPTS,
                  sizeof SAMPLE_OPTS / sizeof SAMPLE_OPTS[0], argc, argv);
    if (p != 0) return p > 0 ? 0 : EXIT_USAGE;
    /* issue 8: a U-Net model draws an image grid (tools/images_cli.c) */
    cli_images_alias(&o, "--n", "-n");
    if (opt(&o, "--model") && cli_images_is_model(opt(&o, "--model"))) return cli_images_sample(&o);
    if (cli_images_reject_options(&o)) return EXIT_USAGE;
    if (need(&o, "--model") || need(&o, "-n") || need(&o, "--out")) return EXIT_USAGE;
    uint64_t n, seed;
    if (get_u64(&o, "-n", 0, 1, (uint64_t)CLI_MAX_ELEMENTS / 2, &n) ||
        get_u64(&o, "--seed", 0, 0, UINT64_MAX, &seed))
        return EXIT_USAGE;
    const char *out = opt(&o, "--out"), *png = opt(&o, "--png");
    if (!has_suffix(out, ".npy") && !has_suffix(out, ".csv"))
        return cli_fail("sample: --out '%s' must end in .npy or .csv", out), EXIT_USAGE;
    if (png && !has_suffix(png, ".png"))
        return cli_fail("sample: --png '%s' must end in .png", png), EXIT_USAGE;
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    float *x = NULL, *lp = NULL, *cat = NULL;
    int ret = 1, with_logp = opt(&o, "--with-logp") != NULL;
    /* issue 9: --base SRC for data-to-data models (tools/transport_cli.c) */
    const char *base_src = opt(&o, "--base");
    dataset base_ds;
    if (base_src && dataset_open(&base_ds, base_src) != 0) return 1;
    if (base_src && base_ds.toy) base_ds.d = 2;
    if (load_model(&m, opt(&o, "--model")) != 0) goto out;
    if (set_threads(m, &o, default_threads()) || make_solver(&s, &o)) goto out;
    size_t d = stochflow_model_dim(m);
    if (n > CLI_MAX_ELEMENTS / (d + 1)) {
        cli_fail("sample: n = %llu is too large for dimension %zu", (unsigned long long)n, d);
        goto out;
    }
    x = malloc((size_t)n * d * sizeof(float));
    lp = with_logp ? malloc((size_t)n * sizeof(float)) : NULL;
    if (x == NULL || (with_logp && lp == NULL)) {
        cli_fail("sample: out of memory for %llu samples", (unsigned long long)n);
        goto out;
    }
    progress bar;
    progress_start(&bar, "sample", 1.0, "t");
    ode_progress op = {&bar, 0.0, 1.0};
    stochflow_solver_set_progress(s, on_ode_progress, &op);
    double t0 = cli_now();
    int rc = base_src ? (cli_sample_from_base(x, lp, s, m, &base_ds, (size_t)n, seed) != 0
                             ? -1000 : 0)
                      : stochflow_solver_sample(x, lp, s, m, (size_t)n, seed);
    progress_end(&bar);
    if (rc == -1000) goto out; /* message printed */
    double secs = cli_now() - t0, nfe = 0;
    if (rc < 0) {
        cli_fail_lib(rc, "sampling");
        goto out;
    }
    stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE);
    char header[256] = "";
    for (size_t j = 0; j < d && strlen(header) < 200; ++j)
        snprintf(header + strlen(header), sizeof header - strlen(header), "%sx%zu",
                 j ? "," : "", j + 1);
    if (with_logp) {
        cat = malloc((size_t)n * (d + 1) * sizeof(float));
        if (cat == NULL) {
            cli_fail("sample: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; ++i) {
            memcpy(cat + i * (d + 1), x + i * d, d * sizeof(float));
            cat[i * (d + 1) + d] = lp[i];
        }
        strncat(header, ",logp", sizeof header - strlen(header) - 1);
        if (matrix_write(out, cat, (size_t)n, d + 1, header) != 0) goto out;
    } else if (matrix_write(out, x, (size_t)n, d, header) != 0) {
        goto out;
    }
    if (png) {
        double lo, hi;
        plot_auto_range(&lo, &hi, x, (size_t)n, d);
        canvas c;
        char title[64];
        snprintf(title, sizeof title, "%llu SAMPLES", (unsigned long long)n);
        if (plot_histogram(&c, title, x, (size_t)n, d, lo, hi, 384) != 0) goto out;
        int prc = canvas_save(&c, png);
        canvas_free(&c);
        if (prc != 0) goto out;
    }
    printf("sampled %llu points (d = %zu) in %.2f s, %.0f velocity evaluations\n",
           (unsigned long long)n, d, secs, nfe);
    printf("wrote %s%s%s\n", out, png ? " and " : "", png ? png : "");
    if (opt(&o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jint(&j, "d", d);
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "out", out);
        jstr(&j, "png", png);
        if (with_logp) {
            double nll, se;
            nll_stats(&nll, &se, lp, (size_t)n);
            jnum(&j, "mean_logp", -nll);
        }
        jend(&j);
    }
    ret = 0;
out:
    free(x);
    free(lp);
    free(cat);
    if (base_src) dataset_free(&base_ds);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    return ret;
}

/* ---- logp ------------------------------------------------------------------------------- */

static const optdef LOGP_OPTS[] = {
    {"--model", "MODEL", "checkpoint"},
    {"--data", "SRC", "toy (held-out draws), .npy/.csv, or images (fashion-mnist:test)"},
    {"-n", "N", "points (toy: default 5000; file: the first N rows, default all)"},
    {"--trace", "NAME", "exact|hutchinson (default exact; image models hutchinson)"},
    {"--probes", "K", "Hutchinson probes per point (default 1)"},
    {"--solver", "NAME", "dopri5|rk4|heun|euler (default dopri5)"},
    {"--steps", "K", "steps of the fixed-step solvers (default 100)"},
    {"--rtol", "X", "dopri5 relative tolerance (default 1e-5)"},
    {"--atol", "X", "dopri5 absolute tolerance (default 1e-5)"},
    {"--seed", "S", "seed of the Hutchinson probes (default 0); images: also the dequantization"},
    {"--out", "FILE", "also write the per-point log p (.npy or .csv, n x 1; images: logp,bpd n x 2)"},
    {"--base", "SRC", "data-to-data model: SRC's closed-form log-density as the base"},
    {"--weights", "NAME", "ema|live: which weights to use (default ema when trained with EMA)"},
    {"--threads", "T", "threads for matrix work"},
    /* issue 8: image models (tools/images_cli.c) */
    {"--bpd", NULL, "image model: bits/dim of dequantized test images (always for images)"},
    {"--n-eval", "N", "image model: test images to evaluate (default 256)"},
    {"--batch", "B", "image model: images per solver call (default 64)"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

static int cmd_logp(int argc, char **argv) {
    opts o;
    catch_stop_signals();
    int p = parse(&o, "logp", "--model MODEL --data SRC [options]", LOGP_OPTS,
                  sizeof LOGP_OPTS / sizeof LOGP_OPTS[0], argc, argv);
    if (p != 0) return p > 0 ? 0 : EXIT_USAGE;
    /* issue 8: bits/dim of a U-Net model (tools/images_cli.c) */
    if (opt(&o, "--model") && cli_images_is_model(opt(&o, "--model"))) return cli_images_logp(&o);
    if (cli_images_reject_options(&o)) return EXIT_USAGE;
    if (need(&o, "--model") || need(&o, "--data")) return EXIT_USAGE;
    int trace;
    uint64_t probes, seed, nreq;
    if (get_keyword(&o, "--trace", TRACES, STOCHFLOW_TRACE_EXACT, &trace) ||
        get_u64(&o, "--probes", 1, 1, 4096, &probes) ||
        get_u64(&o, "--seed", 0, 0, UINT64_MAX, &seed) ||
        get_u64(&o, "-n", 0, 1, (uint64_t)CLI_MAX_ELEMENTS / 2, &nreq))
        return EXIT_USAGE;
    const char *outp = opt(&o, "--out");
    if (outp && !has_suffix(outp, ".npy") && !has_suffix(outp, ".csv"))
        return cli_fail("logp: --out '%s' must end in .npy or .csv", outp), EXIT_USAGE;
    dataset ds;
    if (dataset_open(&ds, opt(&o, "--data")) != 0) return 1;
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    float *lp = NULL, *se = NULL, *lt = NULL;
    int ret = 1;
    if (load_model(&m, opt(&o, "--model")) != 0) goto out;
    size_t d = stochflow_model_dim(m);
    if (ds.d != d) {
        cli_fail("logp: the data has %zu columns but the model has dimension %zu", ds.d, d);
        goto out;
    }
    if (set_threads(m, &o, default_threads()) || make_solver(&s, &o)) goto out;
    int rc;
    if ((rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, trace)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, (double)probes)) < 0 ||
        (rc = stochflow_solver_set_seed(s, seed)) < 0) {
        cli_fail_lib(rc, "logp settings");
        goto out;
    }
    if (opt(&o, "--base")) { /* issue 9: data-to-data model (tools/transport_cli.c) */
        dataset base_ds;
        if (dataset_open(&base_ds, opt(&o, "--base")) != 0) goto out;
        int brc = cli_set_base_logpdf(s, &base_ds, "logp");
        dataset_free(&base_ds); /* toys keep no data; the callback holds the static name */
        if (brc != 0) goto out;
    }
    size_t n;
    if (ds.toy) {
        n = nreq ? (size_t)nreq : 5000;
        ds.x = malloc(n * 2 * sizeof(float));
        if (ds.x == NULL) {
            cli_fail("logp: out of memory");
            goto out;
        }
        ds.n = n;
        /* held-out points: a stream training never uses, keyed by the model's seed */
        if ((rc = stochflow_toy_sample(ds.x, ds.name, n, model_seed(m), HELDOUT_STREAM)) < 0) {
            cli_fail_lib(rc, "toy data");
            goto out;
        }
    } else {
        if (nreq > ds.n) {
            cli_fail("logp: -n %llu but '%s' has only %zu rows", (unsigned long long)nreq,
                     ds.name, ds.n);
            goto out;
        }
        n = nreq ? (size_t)nreq : ds.n;
    }
    lp = malloc(n * sizeof(float));
    se = malloc(n * sizeof(float));
    if (lp == NULL || se == NULL) {
        cli_fail("logp: out of memory");
        goto out;
    }
    progress bar;
    progress_start(&bar, "logp", 1.0, "t");
    ode_progress op = {&bar, 1.0, 0.0};
    stochflow_solver_set_progress(s, on_ode_progress, &op);
    double t0 = cli_now();
    rc = stochflow_solver_log_prob(lp, trace == STOCHFLOW_TRACE_HUTCHINSON ? se : NULL, s, m,
                                   ds.x, n, 1.0);
    progress_end(&bar);
    double secs = cli_now() - t0, nfe = 0;
    if (rc < 0) {
        cli_fail_lib(rc, "log-density");
        goto out;
    }
    stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE);
    for (size_t i = 0; i < n; ++i)
        if (!isfinite(lp[i])) {
            cli_fail("logp: non-finite log-density at point %zu", i + 1);
            goto out;
        }
    double nll, nse;
    nll_stats(&nll, &nse, lp, n);
    /* truth where known: entropy, gap = NLL - H, and the paired KL estimate */
    double entropy = NAN, gap = NAN, kl = NAN, kl_se = NAN;
    if (ds.toy) {
        lt = malloc(n * sizeof(float));
        if (lt && stochflow_toy_log_density(lt, &entropy, ds.name, ds.x, n) == 0) {
            gap = nll - entropy;
            float *diff = malloc(n * sizeof(float));
            if (diff) {
                for (size_t i = 0; i < n; ++i) diff[i] = lp[i] - lt[i];
                nll_stats(&kl, &kl_se, diff, n);
                free(diff);
            }
        }
    }
    if (outp && matrix_write(outp, lp, n, 1, "logp") != 0) goto out;
    printf("NLL %.4f +- %.4f nats (mean -log p over %zu %s points; %s trace; %.0f evaluations; "
           "%.2f s)\n",
           nll, nse, n, ds.toy ? "held-out" : "data",
           trace == STOCHFLOW_TRACE_EXACT ? "exact" : "Hutchinson", nfe, secs);
    if (isfinite(entropy)) {
        printf("true entropy %.4f nats; gap NLL - entropy %.4f nats (paired KL estimate %.4f "
               "+- %.4f)\n",
               entropy, gap, kl, kl_se);
    }
    if (opt(&o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jnum(&j, "nll", nll);
        jnum(&j, "se", nse);
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "trace", trace == STOCHFLOW_TRACE_EXACT ? "exact" : "hutchinson");
        jstr(&j, "data", ds.name);
        if (isfinite(entropy)) {
            jnum(&j, "entropy", entropy);
            jnum(&j, "gap", gap);
            jnum(&j, "kl", kl);
            jnum(&j, "kl_se", kl_se);
        }
        jend(&j);
    }
    ret = 0;
out:
    free(lp);
    free(se);
    free(lt);
    dataset_free(&ds);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    return ret;
}

/* ---- info ----------------------------------------------------------------------------- */

static const optdef INFO_OPTS[] = {
    {"--model", "MODEL", "checkpoint"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

static int cmd_info(int argc, char **argv) {
    opts o;
    int p = parse(&o, "info", "--model MODEL [--json]", INFO_OPTS,
                  sizeof INFO_OPTS / sizeof INFO_OPTS[0], argc, argv);
    if (p != 0) return p > 0 ? 0 : EXIT_USAGE;
    if (need(&o, "--model")) return EXIT_USAGE;
    stochflow_model *m = NULL;
    stochflow_config *c = NULL;
    if (load_model(&m, opt(&o, "--model")) != 0) return 1;
    int rc = stochflow_model_config(&c, m);
    if (rc < 0) {
        stochflow_model_free(m);
        return cli_fail_lib(rc, "config"), 1;
    }
    size_t widths[64], nh = stochflow_config_hidden(c, widths, 64);
    size_t nfreq = 0;
    int temb = stochflow_config_time_embedding(c, &nfreq);
    char hid[512] = "";
    for (size_t i = 0; i < nh && i < 64; ++i)
        snprintf(hid + strlen(hid), sizeof hid - strlen(hid), "%s%zu", i ? "," : "", widths[i]);
    static const struct {
        const char *name;
        int key;
    } P[] = {{"lr", STOCHFLOW_PARAM_LR},
             {"lr_schedule", STOCHFLOW_PARAM_LR_SCHEDULE},
             {"ema_decay", STOCHFLOW_PARAM_EMA_DECAY},
             {"grad_clip", STOCHFLOW_PARAM_GRAD_CLIP},
             {"weight_decay", STOCHFLOW_PARAM_WEIGHT_DECAY},
             {"threads", STOCHFLOW_PARAM_THREADS}};
    double pv[6];
    for (size_t i = 0; i < 6; ++i)
        if (stochflow_model_get_param(&pv[i], m, P[i].key) < 0) pv[i] = NAN;
    struct stat st;
    long long bytes = stat(opt(&o, "--model"), &st) == 0 ? (long long)st.st_size : -1;
    const char *act = keyword_name(ACTIVATIONS, stochflow_config_activation(c));
    const char *interp = stochflow_config_interpolant(c) == STOCHFLOW_INTERP_CUSTOM
                             ? "custom"
                             : keyword_name(INTERPOLANTS, stochflow_config_interpolant(c));
    printf("model        %s (%lld bytes, libstochflow %s)\n", opt(&o, "--model"), bytes,
           stochflow_version_string());
    printf("dimension    %zu\n", stochflow_model_dim(m));
    if (!cli_images_info(c, NULL)) { /* issue 8: a U-Net prints its shape instead */
        printf("hidden       %s (%s)\n", hid, act);
        if (temb == STOCHFLOW_TIME_FOURIER)
            printf("time input   fourier, %zu frequencies\n", nfreq);
        else printf("time input   raw t\n");
    }
    printf("interpolant  %s\n", interp);
    printf("parameters   %zu\n", stochflow_model_num_params(m));
    printf("step         %llu\n", (unsigned long long)stochflow_model_step(m));
    printf("seed         %llu\n", (unsigned long long)stochflow_config_seed(c));
    printf("lr           %g (schedule %s), ema %g, clip %g, weight decay %g\n", pv[0],
           keyword_name(SCHEDULES, (int)pv[1]), pv[2], pv[3], pv[4]);
    if (opt(&o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "dim", stochflow_model_dim(m));
        cli_images_info(c, &j); /* issue 8: "arch", and the U-Net shape */
        jkey(&j, "hidden");
        jraw(&j, "[%s]", hid);
        jstr(&j, "activation", act);
        jstr(&j, "time_embedding", temb == STOCHFLOW_TIME_FOURIER ? "fourier" : "raw");
        jint(&j, "n_freq", temb == STOCHFLOW_TIME_FOURIER ? nfreq : 0);
        jstr(&j, "interpolant", interp);
        jint(&j, "params", stochflow_model_num_params(m));
        jint(&j, "step", stochflow_model_step(m));
        jint(&j, "seed", stochflow_config_seed(c));
        for (size_t i = 0; i < 6; ++i) jnum(&j, P[i].name, pv[i]);
        jnum(&j, "bytes", (double)bytes);
        jstr(&j, "lr_schedule_name", keyword_name(SCHEDULES, (int)pv[1]));
        jend(&j);
    }
    stochflow_config_free(c);
    stochflow_model_free(m);
    return 0;
}

/* ---- demo ------------------------------------------------------------------------------- */

/* The demo recipe (measured in doc/cli.md): see DEMO_* below. */
#define DEMO_HIDDEN "256,256,256"
#define DEMO_FOURIER 0
#define DEMO_STEPS 28000
#define DEMO_BATCH 500
#define DEMO_LR 2e-3
#define DEMO_EMA 0.998
#define DEMO_EVAL_N 4000
#define DEMO_SAMPLES 20000
#define DEMO_GRID 96
#define DEMO_RANGE 4.5

static const optdef DEMO_OPTS[] = {
    {"--outdir", "DIR", "where the pictures and the model go (default stochflow-demo)"},
    {"--threads", "T", "threads for matrix work (default 2)"},
    {"--steps", "N", "training steps (default 28000)"},
    {"--batch", "B", "batch size (default 500)"},
    {"--hidden", "W,W,...", "hidden widths (default " DEMO_HIDDEN ")"},
    {"--time-fourier", "F", "Fourier time features (default 0 = raw t)"},
    {"--lr", "X", "peak learning rate"},
    {"--ema", "X", "EMA decay (0 = off)"},
    {"--eval-n", "N", "held-out points for the NLL (default 4000)"},
    {"--samples", "N", "model samples for the picture (default 20000)"},
    {"--grid", "G", "density picture grid G x G (default 96)"},
    {"--seed", "S", "seed (default 0)"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

static int cmd_demo(int argc, char **argv) {
    opts o;
    catch_stop_signals();
    int p = parse(&o, "demo", "[--outdir DIR] [--json] [options]", DEMO_OPTS,
                  sizeof DEMO_OPTS / sizeof DEMO_OPTS[0], argc, argv);
    if (p != 0) return p > 0 ? 0 : EXIT_USAGE;
    uint64_t steps, batch, eval_n, n_samp, grid;
    double lr, ema;
    if (get_u64(&o, "--steps", DEMO_STEPS, 1, 100000000, &steps) ||
        get_u64(&o, "--batch", DEMO_BATCH, 1, 1 << 22, &batch) ||
        get_u64(&o, "--eval-n", DEMO_EVAL_N, 2, 10000000, &eval_n) ||
        get_u64(&o, "--samples", DEMO_SAMPLES, 1, 10000000, &n_samp) ||
        get_u64(&o, "--grid", DEMO_GRID, 8, 1024, &grid) ||
        get_double(&o, "--lr", DEMO_LR, 1e-8, 1.0, &lr) ||
        get_double(&o, "--ema", DEMO_EMA, 0.0, 0.999999, &ema))
        return EXIT_USAGE;
    const char *dir = opt(&o, "--outdir") ? opt(&o, "--outdir") : "stochflow-demo";
    if (make_dirs(dir) != 0) return 1;
    char path_model[4200], path_data[4200], path_samp[4200], path_dens[4200], path_loss[4200],
        path_all[4200];
    snprintf(path_model, sizeof path_model, "%s/model.sfm", dir);
    snprintf(path_data, sizeof path_data, "%s/data.png", dir);
    snprintf(path_samp, sizeof path_samp, "%s/samples.png", dir);
    snprintf(path_dens, sizeof path_dens, "%s/density.png", dir);
    snprintf(path_loss, sizeof path_loss, "%s/loss.png", dir);
    snprintf(path_all, sizeof path_all, "%s/demo.png", dir);

    double t_start = cli_now();
    dataset ds = {.toy = 1, .d = 2};
    snprintf(ds.name, sizeof ds.name, "checkerboard");
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    train_result tr = {0};
    float *xe = NULL, *lp = NULL, *xs = NULL, *xd = NULL, *gx = NULL, *gl = NULL;
    canvas cv[4] = {{0}}, all = {0};
    int ret = 1, rc;
    if (build_model(&m, &o, 2, DEMO_HIDDEN, DEMO_FOURIER) != 0) goto out;
    if (set_threads(m, &o, 2) != 0) goto out;
    if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, lr)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_MIN, lr * 0.02)) < 0 ||
        (ema > 0 && (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, ema)) < 0)) {
        cli_fail_lib(rc, "demo settings");
        goto out;
    }
    printf("demo: training a flow on the checkerboard (trig interpolant, %llu steps, batch "
           "%llu, %zu parameters)\n",
           (unsigned long long)steps, (unsigned long long)batch, stochflow_model_num_params(m));
    fflush(stdout);
    if (train_loop(&tr, m, &ds, NULL, steps, (size_t)batch, "demo: train") != 0) goto out;
    if (tr.interrupted) {
        cli_fail("demo: interrupted during training");
        ret = 130;
        goto out;
    }
    if ((rc = stochflow_model_save(m, path_model)) < 0) {
        cli_fail_lib(rc, path_model);
        goto out;
    }
    printf("demo: trained in %.1f s (final loss %.4f)\n", tr.seconds, tr.mean_loss);
    fflush(stdout);

    /* held-out NLL: exact trace, dopri5 at rtol = atol = 1e-5 */
    double t_eval = cli_now(), nfe = 0;
    if ((rc = stochflow_solver_new(&s)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_DOPRI5)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, 1e-5)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, 1e-5)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_EXACT)) < 0) {
        cli_fail_lib(rc, "solver");
        goto out;
    }
    xe = malloc((size_t)eval_n * 2 * sizeof(float));
    lp = malloc((size_t)eval_n * sizeof(float));
    if (xe == NULL || lp == NULL) {
        cli_fail("demo: out of memory");
        goto out;
    }
    uint64_t seed = model_seed(m);
    if ((rc = stochflow_toy_sample(xe, "checkerboard", (size_t)eval_n, seed, HELDOUT_STREAM)) < 0) {
        cli_fail_lib(rc, "toy data");
        goto out;
    }
    progress bar;
    progress_start(&bar, "demo: held-out NLL", 1.0, "t");
    ode_progress op = {&bar, 1.0, 0.0};
    stochflow_solver_set_progress(s, on_ode_progress, &op);
    rc = stochflow_solver_log_prob(lp, NULL, s, m, xe, (size_t)eval_n, 1.0);
    progress_end(&bar);
    if (rc < 0) {
        cli_fail_lib(rc, "held-out log-density");
        goto out;
    }
    stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE);
    double nll, se;
    nll_stats(&nll, &se, lp, (size_t)eval_n);
    double eval_secs = cli_now() - t_eval;
    printf("demo: held-out NLL %.4f +- %.4f nats on %llu points (%.1f s, %.0f evaluations)\n",
           nll, se, (unsigned long long)eval_n, eval_secs, nfe);
    fflush(stdout);

    /* pictures: data histogram, model samples, model density on a grid, loss curve */
    double t_pic = cli_now();
    xd = malloc((size_t)n_samp * 2 * sizeof(float));
    xs = malloc((size_t)n_samp * 2 * sizeof(float));
    size_t gg = (size_t)grid * (size_t)grid;
    gx = malloc(gg * 2 * sizeof(float));
    gl = malloc(gg * sizeof(float));
    if (xd == NULL || xs == NULL || gx == NULL || gl == NULL) {
        cli_fail("demo: out of memory");
        goto out;
    }
    if ((rc = stochflow_toy_sample(xd, "checkerboard", (size_t)n_samp, seed, PICTURE_STREAM)) < 0) {
        cli_fail_lib(rc, "toy data");
        goto out;
    }
    /* the pictures need less precision than the NLL */
    stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, 1e-3);
    stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, 1e-3);
    progress_start(&bar, "demo: samples", 1.0, "t");
    op = (ode_progress){&bar, 0.0, 1.0};
    rc = stochflow_solver_sample(xs, NULL, s, m, (size_t)n_samp, seed + 1);
    progress_end(&bar);
    if (rc < 0) {
        cli_fail_lib(rc, "sampling");
        goto out;
    }
    double w = 2.0 * DEMO_RANGE / (double)grid;
    for (size_t i = 0; i < grid; ++i)
        for (size_t j = 0; j < grid; ++j) {
            gx[2 * (i * grid + j)] = (float)(-DEMO_RANGE + w * ((double)j + 0.5));
            gx[2 * (i * grid + j) + 1] = (float)(-DEMO_RANGE + w * ((double)i + 0.5));
        }
    progress_start(&bar, "demo: density grid", 1.0, "t");
    op = (ode_progress){&bar, 1.0, 0.0};
    rc = stochflow_solver_log_prob(gl, NULL, s, m, gx, gg, 1.0);
    progress_end(&bar);
    if (rc < 0) {
        cli_fail_lib(rc, "density grid");
        goto out;
    }
    for (size_t i = 0; i < gg; ++i) gl[i] = expf(gl[i]);
    char title[64];
    snprintf(title, sizeof title, "DATA (%llu)", (unsigned long long)n_samp);
    if (plot_histogram(&cv[0], title, xd, (size_t)n_samp, 2, -DEMO_RANGE, DEMO_RANGE, 256) ||
        plot_histogram(&cv[1], "MODEL SAMPLES", xs, (size_t)n_samp, 2, -DEMO_RANGE, DEMO_RANGE,
                       256) ||
        /* density colour scale: 0 .. 1.5 x the true density 1/32 */
        plot_heatmap(&cv[2], "MODEL DENSITY", gl, (int)grid, 1.5 / 32.0, 256) ||
        plot_curve(&cv[3], "TRAINING LOSS", tr.losses, (size_t)tr.steps_run, 384, 256))
        goto out;
    if (canvas_save(&cv[0], path_data) || canvas_save(&cv[1], path_samp) ||
        canvas_save(&cv[2], path_dens) || canvas_save(&cv[3], path_loss))
        goto out;
    const int gap_px = 12, foot = 34;
    int total_w = cv[0].w + cv[1].w + cv[2].w + cv[3].w + 5 * gap_px;
    if (canvas_new(&all, total_w, cv[0].h + 2 * gap_px + foot, 255) != 0) goto out;
    for (int k = 0, x = gap_px; k < 4; x += cv[k].w + gap_px, ++k) canvas_blit(&all, &cv[k], x, gap_px);
    char foot_text[160];
    snprintf(foot_text, sizeof foot_text,
             "CHECKERBOARD  HELD-OUT NLL %.3f +- %.3f NATS   TRUTH LN 32 = 3.466   GAP %+.3f",
             nll, se, nll - LN32);
    static const uint8_t ink[3] = {30, 30, 30};
    int fs = canvas_text_width(foot_text, 2) <= total_w - 2 * gap_px ? 2 : 1;
    canvas_text(&all, gap_px, cv[0].h + gap_px + (foot + gap_px - 7 * fs) / 2, foot_text, fs, ink);
    if (canvas_save(&all, path_all) != 0) goto out;
    double pic_secs = cli_now() - t_pic, total = cli_now() - t_start;
    double gap = nll - LN32;
    int ok = fabs(gap) <= 0.15;
    printf("demo: pictures in %.1f s\n", pic_secs);
    printf("\n");
    printf("held-out NLL   %.4f +- %.4f nats  (%llu points, exact divergence, dopri5 1e-5)\n",
           nll, se, (unsigned long long)eval_n);
    printf("truth ln 32    %.4f nats  (the checkerboard is uniform on area 32)\n", LN32);
    printf("gap            %+.4f nats  (target |gap| <= 0.15: %s)\n", gap, ok ? "met" : "NOT met");
    double threads = 0;
    stochflow_model_get_param(&threads, m, STOCHFLOW_PARAM_THREADS);
    printf("time           %.1f s  (train %.1f, NLL %.1f, pictures %.1f; %.0f threads)\n", total,
           tr.seconds, eval_secs, pic_secs, threads);
    printf("pictures       %s  (%s, %s, %s, %s)\n", path_all, path_data, path_samp, path_dens,
           path_loss);
    printf("model          %s\n", path_model);
    if (opt(&o, "--json")) {
        json j;
        jbegin(&j);
        jnum(&j, "nll", nll);
        jnum(&j, "se", se);
        jnum(&j, "entropy", LN32);
        jnum(&j, "gap", gap);
        jbool(&j, "target_met", ok);
        jnum(&j, "seconds", total);
        jnum(&j, "train_seconds", tr.seconds);
        jnum(&j, "eval_seconds", eval_secs);
        jnum(&j, "picture_seconds", pic_secs);
        jint(&j, "steps", tr.steps_run);
        jint(&j, "eval_n", eval_n);
        jnum(&j, "nfe", nfe);
        jnum(&j, "loss", tr.mean_loss);
        jstr(&j, "picture", path_all);
        jstr(&j, "data_png", path_data);
        jstr(&j, "samples_png", path_samp);
        jstr(&j, "density_png", path_dens);
        jstr(&j, "loss_png", path_loss);
        jstr(&j, "model", path_model);
        jend(&j);
    }
    ret = 0;
out:
    for (int k = 0; k < 4; ++k) canvas_free(&cv[k]);
    canvas_free(&all);
    free(tr.losses);
    free(xe);
    free(lp);
    free(xs);
    free(xd);
    free(gx);
    free(gl);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    return ret;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void) {
    printf(
            "usage: stochflow COMMAND [options]   (libstochflow %s)\n"
            "\n"
            "commands:\n"
            "  train   train a flow:       stochflow train --data SRC --out MODEL [--steps N]\n"
            "  sample  draw samples:       stochflow sample --model MODEL -n N --out FILE\n"
            "  logp    log-likelihood:     stochflow logp --model MODEL --data SRC\n"
            "  info    describe a model:   stochflow info --model MODEL\n"
            "  demo    the checkerboard demo with pictures: stochflow demo [--outdir DIR]\n"
            "\n"
            "SRC is a toy (swissroll circles rings moons 8gaussians pinwheel 2spirals\n"
            "checkerboard line cos) or a .npy/.csv file of shape n x d; image data\n"
            "(fashion-mnist[:test], idx:PATH, pngdir:PATH) trains a U-Net.\n"
            "Every command takes --json and --help. See doc/cli.md.\n",
            stochflow_version_string());
}

int main(int argc, char **argv) {
    /* The OpenMP wait policy is left to the environment: libgomp's default was 1.7x
     * (2-D) to 5.5x (small U-Net) faster than PASSIVE on an otherwise idle machine, and
     * no policy saves a machine with more busy threads than cores (doc/threading.md). */
    if (argc < 2) {
        cli_fail("missing command (train, sample, logp, info, demo; see stochflow --help)");
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage();
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("stochflow %s\n", stochflow_version_string());
        return 0;
    }
    int rc = -1;
    if (strcmp(cmd, "train") == 0) rc = cmd_train(argc - 2, argv + 2);
    else if (strcmp(cmd, "sample") == 0) rc = cmd_sample(argc - 2, argv + 2);
    else if (strcmp(cmd, "logp") == 0) rc = cmd_logp(argc - 2, argv + 2);
    else if (strcmp(cmd, "info") == 0) rc = cmd_info(argc - 2, argv + 2);
    else if (strcmp(cmd, "demo") == 0) rc = cmd_demo(argc - 2, argv + 2);
    if (rc >= 0) return rc != 0 && stop_requested ? 130 : rc; /* 130: interrupted */
    cli_fail("unknown command '%s' (train, sample, logp, info, demo; see stochflow --help)", cmd);
    return EXIT_USAGE;
}
