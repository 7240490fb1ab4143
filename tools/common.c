/* common.c - the pieces every command of the stochflow program shares: errors and exit
 * codes, option parsing and keywords, output-file checks, JSON output, signals, and the
 * model and solver set-up. Public API of <stochflow.h> only; see doc/cli.md. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

volatile sig_atomic_t stop_requested;

/* ---- errors and time ------------------------------------------------------------------ */

static void vfail(const char *fmt, va_list ap) {
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    for (char *p = buf; *p; ++p) /* one line, whatever the message holds */
        if (*p == '\n' || *p == '\r') *p = ' ';
    fflush(stdout);
    fprintf(stderr, "stochflow: %s\n", buf);
}

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(fmt, ap);
    va_end(ap);
    return CLI_ERR;
}

int cli_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(fmt, ap);
    va_end(ap);
    return CLI_USAGE;
}

int cli_fail_lib(int status, const char *what) {
    return cli_fail("%s: %s (%s)", what, stochflow_last_error_message(),
                    stochflow_status_string(status));
}

int cli_exit_code(int status) { return status == CLI_USAGE ? EXIT_USAGE : 1; }

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- options ---------------------------------------------------------------------------- */

static int opt_index(const opts *o, const char *name) {
    for (size_t i = 0; i < o->n; ++i)
        if (strcmp(o->defs[i].name, name) == 0) return (int)i;
    return -1;
}

const char *opt(const opts *o, const char *name) {
    int i = opt_index(o, name);
    return i < 0 ? NULL : o->val[i];
}

int has_opt(const opts *o, const char *name) { return opt_index(o, name) >= 0; }

void opt_alias(opts *o, const char *alias, const char *name) {
    int a = opt_index(o, alias), k = opt_index(o, name);
    if (a >= 0 && k >= 0 && o->val[a] && !o->val[k]) o->val[k] = o->val[a];
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

/* Unsigned integers are digits only: strtoull would also take leading spaces and a sign
 * (" -1" is 2^64 - 1). */
static int parse_u64(const char *s, uint64_t *v) {
    if (s[0] < '0' || s[0] > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0) return -1;
    *v = x;
    return 0;
}

/* Reals: no leading space; finite. */
static int parse_real(const char *s, double *v) {
    if (s[0] == '\0' || s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')) return -1;
    char *end;
    double x = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(x)) return -1;
    *v = x;
    return 0;
}

/* A one-letter metavariable marks a number ("X": real; other letters: unsigned). */
static int check_syntax(const char *cmd, const optdef *d, const char *v) {
    if (d->arg == NULL || d->arg[0] == '\0' || d->arg[1] != '\0') return 0;
    uint64_t u;
    double x;
    if (d->arg[0] == 'X')
        return parse_real(v, &x) == 0
                   ? 0
                   : cli_usage("%s: %s expects a finite number, got '%s'", cmd, d->name, v);
    return parse_u64(v, &u) == 0
               ? 0
               : cli_usage("%s: %s expects a non-negative integer, got '%s'", cmd, d->name, v);
}

int cli_parse(opts *o, const char *cmd, const char *synopsis, const optdef *defs, size_t n,
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
        if (s[0] != '-') return cli_usage("%s: unexpected argument '%s'", cmd, s);
        const char *eq = strchr(s, '=');
        size_t len = eq ? (size_t)(eq - s) : strlen(s);
        size_t k = 0;
        while (k < n && !(strlen(defs[k].name) == len && strncmp(defs[k].name, s, len) == 0))
            ++k;
        if (k == n)
            return cli_usage("%s: unknown option '%.*s' (see stochflow %s --help)", cmd,
                             (int)len, s, cmd);
        if (defs[k].arg == NULL) {
            if (eq) return cli_usage("%s: option %s takes no value", cmd, defs[k].name);
            o->val[k] = "1";
        } else if (eq) {
            o->val[k] = eq + 1;
        } else {
            if (a + 1 >= argc)
                return cli_usage("%s: option %s needs a value", cmd, defs[k].name);
            o->val[k] = argv[++a];
        }
    }
    for (size_t k = 0; k < n; ++k) /* malformed numbers: before any file is read */
        if (o->val[k] && check_syntax(cmd, &defs[k], o->val[k]) != 0) return CLI_USAGE;
    return 0;
}

int need(const opts *o, const char *name) {
    if (opt(o, name) == NULL) return cli_usage("%s: %s is required", o->cmd, name);
    return 0;
}

int refuse(const opts *o, const char *const *names, size_t n, const char *why) {
    for (size_t i = 0; i < n; ++i)
        if (opt(o, names[i])) return cli_usage("%s: %s %s", o->cmd, names[i], why);
    return 0;
}

int get_u64(const opts *o, const char *name, uint64_t def, uint64_t lo, uint64_t hi,
            uint64_t *out) {
    const char *s = opt(o, name);
    uint64_t v;
    if (s == NULL) {
        *out = def;
        return 0;
    }
    if (parse_u64(s, &v) != 0)
        return cli_usage("%s: %s expects a non-negative integer, got '%s'", o->cmd, name, s);
    if (v < lo || v > hi)
        return cli_usage("%s: %s = %llu is out of range [%llu, %llu]", o->cmd, name,
                         (unsigned long long)v, (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return 0;
}

int get_double(const opts *o, const char *name, double def, double lo, double hi,
               double *out) {
    const char *s = opt(o, name);
    double v;
    if (s == NULL) {
        *out = def;
        return 0;
    }
    if (parse_real(s, &v) != 0)
        return cli_usage("%s: %s expects a finite number, got '%s'", o->cmd, name, s);
    if (v < lo || v > hi)
        return cli_usage("%s: %s = %g is out of range [%g, %g]", o->cmd, name, v, lo, hi);
    *out = v;
    return 0;
}

int get_param_option(const opts *o, const char *name, const char *param, double def, int *key,
                     double *out) {
    int k;
    double lo, hi;
    if (stochflow_param_key(&k, param) < 0 || stochflow_param_bounds(&lo, &hi, NULL, k) < 0)
        return cli_fail("%s: the library has no parameter %s", o->cmd, param);
    if (key) *key = k;
    return get_double(o, name, def, lo, hi, out);
}

int parse_list(const char *cmd, const char *name, const char *s, size_t *v, size_t cap,
               size_t lo, size_t hi) {
    size_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        unsigned long x = *p >= '0' && *p <= '9' ? strtoul(p, &end, 10) : 0;
        if (*p < '0' || *p > '9' || errno != 0 || x < lo || x > hi)
            return cli_usage("%s: %s expects a comma list of integers in %zu..%zu, got '%s'",
                             cmd, name, lo, hi, s);
        if (k == cap) return cli_usage("%s: %s: at most %zu values, got '%s'", cmd, name, cap, s);
        v[k++] = x;
        if (*end == '\0') break;
        if (*end != ',')
            return cli_usage("%s: %s expects a comma list of integers in %zu..%zu, got '%s'",
                             cmd, name, lo, hi, s);
        p = end + 1;
    }
    return (int)k;
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
    return cli_usage("%s: %s must be one of %s, got '%s'", o->cmd, name, list, s);
}

const keyword ACTIVATIONS[] = {{"silu", STOCHFLOW_ACT_SILU},
                               {"tanh", STOCHFLOW_ACT_TANH},
                               {"relu", STOCHFLOW_ACT_RELU},
                               {"softplus", STOCHFLOW_ACT_SOFTPLUS},
                               {NULL, 0}};
const keyword INTERPOLANTS[] = {{"trig", STOCHFLOW_INTERP_TRIG},
                                {"linear", STOCHFLOW_INTERP_LINEAR},
                                {"fourier (learned)", STOCHFLOW_INTERP_FOURIER},
                                {NULL, 0}};
const keyword SOLVERS[] = {{"dopri5", STOCHFLOW_SOLVER_DOPRI5},
                           {"rk4", STOCHFLOW_SOLVER_RK4},
                           {"heun", STOCHFLOW_SOLVER_HEUN},
                           {"euler", STOCHFLOW_SOLVER_EULER},
                           {NULL, 0}};
const keyword TRACES[] = {
    {"exact", STOCHFLOW_TRACE_EXACT}, {"hutchinson", STOCHFLOW_TRACE_HUTCHINSON}, {NULL, 0}};
const keyword SCHEDULES[] = {{"constant", STOCHFLOW_LR_CONSTANT},
                             {"step", STOCHFLOW_LR_STEP},
                             {"cosine", STOCHFLOW_LR_COSINE},
                             {NULL, 0}};
const keyword TRAIN_TARGETS[] = {{"draw", STOCHFLOW_TRAIN_TARGET_DRAW},
                                 {"batch", STOCHFLOW_TRAIN_TARGET_BATCH},
                                 {NULL, 0}};
static const keyword WEIGHTS[] = {{"ema", 1}, {"live", 2}, {NULL, 0}};

const char *keyword_name(const keyword *kw, int code) {
    for (const keyword *k = kw; k->name; ++k)
        if (k->code == code) return k->name;
    return "unknown";
}

int default_threads(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c < 1) c = 1;
    if (c > 8) c = 8;
    return (int)c;
}

/* ---- output files ---------------------------------------------------------------------- */

int check_output(const char *cmd, const char *path, const char *const *inputs, size_t n) {
    size_t len = strlen(path);
    char *dir = malloc(len + 2);
    if (dir == NULL) return cli_fail("%s: out of memory", cmd);
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) snprintf(dir, len + 2, ".");
    else if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    struct stat st, in;
    int bad = stat(dir, &st) != 0 || !S_ISDIR(st.st_mode);
    if (bad) cli_fail("%s: cannot write '%s': '%s' is not an existing directory", cmd, path, dir);
    free(dir);
    if (bad) return CLI_ERR;
    if (stat(path, &st) != 0) return 0; /* a new file */
    if (S_ISDIR(st.st_mode))
        return cli_fail("%s: cannot write '%s': it is a directory", cmd, path);
    for (size_t i = 0; i < n; ++i)
        if (inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == st.st_dev &&
            in.st_ino == st.st_ino)
            return cli_fail("%s: the output '%s' is the same file as the input '%s'", cmd, path,
                            inputs[i]);
    return 0;
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void jreserve(json *j, size_t more) {
    if (j->oom || j->len + more + 1 <= j->cap) return;
    size_t cap = j->cap ? j->cap : 1024;
    while (cap < j->len + more + 1) cap *= 2;
    char *b = realloc(j->buf, cap);
    if (b == NULL) {
        j->oom = 1;
        return;
    }
    j->buf = b;
    j->cap = cap;
}

void jraw(json *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k <= 0) return;
    jreserve(j, (size_t)k);
    if (j->oom) return;
    va_start(ap, fmt);
    vsnprintf(j->buf + j->len, j->cap - j->len, fmt, ap);
    va_end(ap);
    j->len += (size_t)k;
}

void jbegin(json *j) {
    j->buf = NULL;
    j->len = j->cap = 0;
    j->oom = 0;
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

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when p starts none (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; ++i)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

void jstr(json *j, const char *k, const char *s) {
    jkey(j, k);
    if (s == NULL) {
        jraw(j, "null");
        return;
    }
    jraw(j, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (*p == '"' || *p == '\\') jraw(j, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7F || n == 0) jraw(j, "\\u%04x", *p);
        else jraw(j, "%.*s", (int)n, (const char *)p);
        p += n ? n : 1;
    }
    jraw(j, "\"");
}

void jend(json *j) {
    jraw(j, "}");
    if (j->oom) cli_fail("out of memory for the JSON summary");
    else printf("%s\n", j->buf);
    fflush(stdout);
    free(j->buf);
    j->buf = NULL;
}

/* ---- signals ------------------------------------------------------------------------------ */

/* Ctrl-C: training finishes the current step, then stops (train saves a resumable
 * checkpoint); an ODE solve is cancelled from its progress callback. The program then
 * exits 130. The handler stays installed for the whole command, so a signal delivered
 * twice (timeout(1) signals both the process and its group) still stops cleanly. */
static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

void catch_signals(void) {
    stop_requested = 0;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
#ifdef SIGXFSZ
    signal(SIGXFSZ, SIG_IGN); /* past `ulimit -f` write() fails with EFBIG instead */
#endif
}

/* ---- models and solvers -------------------------------------------------------------------- */

int load_model(stochflow_model **m, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return cli_fail("cannot open model '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cli_fail("model '%s' is not a regular file", path);
    int rc = stochflow_model_load(m, path);
    if (rc < 0) return cli_fail_lib(rc, path);
    return 0;
}

int model_is_unet(const stochflow_model *m) {
    stochflow_config *c = NULL;
    int unet = stochflow_model_config(&c, m) == 0 &&
               stochflow_config_arch(c) == STOCHFLOW_ARCH_UNET;
    stochflow_config_free(c);
    return unet;
}

int set_threads(stochflow_model *m, const opts *o, int def) {
    uint64_t t;
    int w = 0, rc;
    if ((rc = get_u64(o, "--threads", (uint64_t)def, 1, 256, &t)) != 0) return rc;
    if (opt(o, "--weights") && (rc = get_keyword(o, "--weights", WEIGHTS, 1, &w)) != 0) return rc;
    if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, (double)t)) < 0)
        return cli_fail_lib(rc, "--threads");
    if (w && (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, w)) < 0)
        return cli_fail_lib(rc, "--weights");
    return 0;
}

uint64_t model_seed(const stochflow_model *m) {
    stochflow_config *c = NULL;
    uint64_t seed = 0;
    if (stochflow_model_config(&c, m) == 0) seed = stochflow_config_seed(c);
    stochflow_config_free(c);
    return seed;
}

int parse_solver(solver_opts *so, const opts *o, int def_kind, uint64_t def_steps) {
    int rc;
    if ((rc = get_keyword(o, "--solver", SOLVERS, def_kind, &so->kind)) != 0 ||
        (rc = get_u64(o, "--steps", def_steps, 1, 10000000, &so->steps)) != 0 ||
        (rc = get_double(o, "--rtol", 1e-5, 1e-12, 1.0, &so->rtol)) != 0 ||
        (rc = get_double(o, "--atol", 1e-5, 1e-12, 1.0, &so->atol)) != 0)
        return rc;
    return 0;
}

int make_solver(stochflow_solver **s, const solver_opts *so) {
    int rc;
    if ((rc = stochflow_solver_new(s)) < 0) return cli_fail_lib(rc, "solver");
    if ((rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_SOLVER, so->kind)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_STEPS, (double)so->steps)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_RTOL, so->rtol)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_ATOL, so->atol)) < 0)
        return cli_fail_lib(rc, "solver settings");
    return 0;
}

void nll_stats(double *nll, double *se, const float *lp, size_t n) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; ++i) s += lp[i];
    double mean = s / (double)n;
    for (size_t i = 0; i < n; ++i) s2 += (lp[i] - mean) * (lp[i] - mean);
    *nll = -mean;
    *se = n > 1 ? sqrt(s2 / (double)(n - 1) / (double)n) : NAN;
}

size_t uniform_to_index(double u, size_t n) {
    size_t k = (size_t)(u * (double)n);
    return k < n ? k : n - 1;
}
