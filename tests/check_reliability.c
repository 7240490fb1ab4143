/* check_reliability.c - the library under hostile conditions (doc/reliability.md):
 *  alloc:    a failing allocator (stochflow__alloc_fail_at) swept over every constructor,
 *            load path and allocating call: each returns STOCHFLOW_E_NOMEM, hands out no
 *            handle, and leaves existing handles usable (leaks: the sanitizer and
 *            valgrind runs of this suite).
 *  crash:    a child saving checkpoints in a loop is SIGKILLed at pseudo-random moments;
 *            the file on disk always loads, is one of the saved states, and resumes
 *            bit-for-bit. A full disk (RLIMIT_FSIZE) or an unwritable directory gives
 *            STOCHFLOW_E_IO and leaves the old checkpoint intact.
 *  nonfinite: NaN/Inf in every caller buffer of every public function is rejected with
 *            STOCHFLOW_E_NONFINITE naming the first bad index; diverging runs stop at the
 *            step that goes bad with the model at its last finite state.
 *  explode:  adaptive and fixed-step integration of exploding or stiff fields ends with a
 *            status and finite partial results within the step budget.
 *  threads:  distinct handles trained in parallel threads agree bitwise with serial runs;
 *            one handle used from two threads at once is refused with STOCHFLOW_E_BUSY.
 *  Saving replaces only regular files (through symbolic links, keeping mode and owner);
 *  the loaded state is validated whole; the thread count is not restored; content of a
 *  newer writer is carried through.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

#define D 2
#define N 8

/* ---- helpers -------------------------------------------------------------------- */

static stochflow_model *new_model(uint64_t seed, size_t width) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t widths[] = {width, width};
    ck_assert_ok(stochflow_config_new(&c, D));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, widths));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 3e-3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.9));
    return m;
}

static unsigned char *add_unknown_content(const unsigned char *b, size_t len, size_t *nlen,
                                          size_t *zat);

/* The training batch of step s: deterministic, so any run can be replayed. */
static void batch(float *x, size_t n, uint64_t s) {
    ck_assert_ok(stochflow_random_normal(x, n * D, 1234, s));
    for (size_t i = 0; i < n * D; ++i) x[i] = 0.5f * x[i] + (i % 2 ? -1.0f : 1.0f);
}

static int train_to(stochflow_model *m, uint64_t target) {
    float x[32 * D];
    while (stochflow_model_step(m) < target) {
        double loss;
        batch(x, 32, stochflow_model_step(m));
        int rc = stochflow_model_train_step(&loss, m, x, 32, NULL, NULL);
        if (rc < 0) return rc;
    }
    return 0;
}

static unsigned char *serialize(const stochflow_model *m, size_t *len) {
    ck_assert_ok(stochflow_model_serialized_size(len, m));
    unsigned char *buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ok(stochflow_model_save_buffer(NULL, buf, *len, m));
    return buf;
}

/* 1 when m serializes to exactly the bytes ref[0..len). */
static int same_state(const stochflow_model *m, const unsigned char *ref, size_t len) {
    size_t l;
    unsigned char *b = serialize(m, &l);
    int same = l == len && memcmp(b, ref, len) == 0;
    free(b);
    return same;
}

static unsigned char *read_all(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    *len = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static char tmpdir[256];
static void make_tmpdir(void) {
    strcpy(tmpdir, "/tmp/stochflow-rel-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}
/* Remove every file of tmpdir and the directory; returns the number of files whose
 * name contains ".tmp." (temporaries left behind). */
static int clean_tmpdir(void) {
    int stray = 0;
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        if (strstr(e->d_name, ".tmp.")) ++stray;
        unlink(p);
    }
    closedir(d);
    ck_assert_int_eq(rmdir(tmpdir), 0);
    return stray;
}
static int count_files(const char *dir) {
    int k = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') ++k;
    closedir(d);
    return k;
}

/* ---- alloc: failing-allocator sweeps --------------------------------------------- */

/*
 * A sweep runs op with the k-th allocation failing, k = 1, 2, ... until op succeeds
 * without reaching allocation k. Every failing run must return NOMEM with a message,
 * after which check_after (if any) verifies that the handles involved still work.
 * setup/teardown run outside the injection, around every attempt.
 */
typedef struct sweep_case sweep_case;
struct sweep_case {
    const char *name;
    void (*setup)(sweep_case *c);
    int (*op)(sweep_case *c);
    void (*after_fail)(sweep_case *c); /* handles usable after NOMEM */
    void (*after_ok)(sweep_case *c);   /* result equals the reference */
    void (*teardown)(sweep_case *c);
    /* state shared by the cases */
    stochflow_config *cfg;
    stochflow_model *m;
    stochflow_solver *s;
    stochflow_model *out_m;
    stochflow_config *out_c;
    stochflow_solver *out_s;
    unsigned char *bytes;
    size_t len;
    float x[N * D], ref[N * D], ref2[N * D], y[N * D], l[N], lref[N];
    char path[300];
    int mode;
    int failures;
};

/* a witness model that lives through all sweeps: must stay usable and unchanged */
static stochflow_model *witness;
static float witness_v[N * D];
static const float pts[N * D] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f, 0.7f, -0.8f,
                                 0.9f, 1.0f,  -1.1f, 1.2f, 1.3f, 1.4f, -1.5f, 0.0f};

static void check_witness(void) {
    float v[N * D];
    ck_assert_ok(stochflow_model_velocity(v, witness, 0.3, pts, N));
    ck_assert_int_eq(memcmp(v, witness_v, sizeof v), 0);
}

static int run_sweep(sweep_case *c) {
    c->failures = 0;
    for (uint64_t k = 1; k < 100000; ++k) {
        if (c->setup) c->setup(c);
        stochflow__alloc_fail_at(k);
        int rc = c->op(c);
        uint64_t used = stochflow__alloc_count();
        stochflow__alloc_fail_at(0);
        if (rc == STOCHFLOW_E_NOMEM) {
            ++c->failures;
            ck_assert_msg(stochflow_last_error_message()[0] != '\0', "%s: NOMEM without message",
                          c->name);
            ck_assert_ptr_null(c->out_m);
            ck_assert_ptr_null(c->out_c);
            ck_assert_ptr_null(c->out_s);
            if (c->after_fail) c->after_fail(c);
            check_witness();
            if (c->teardown) c->teardown(c);
            continue;
        }
        ck_assert_msg(rc == 0, "%s with allocation %llu failing: %d (%s)", c->name,
                      (unsigned long long)k, rc, stochflow_last_error_message());
        ck_assert_msg(used < k, "%s: succeeded although allocation %llu failed", c->name,
                      (unsigned long long)k);
        if (c->after_ok) c->after_ok(c);
        if (c->teardown) c->teardown(c);
        fprintf(stderr, "alloc sweep: %s: %d allocation points failed cleanly\n", c->name,
                c->failures);
        return c->failures;
    }
    ck_abort_msg("%s: never succeeded", c->name);
    return 0;
}

static void free_outs(sweep_case *c) {
    stochflow_model_free(c->out_m);
    stochflow_config_free(c->out_c);
    stochflow_solver_free(c->out_s);
    c->out_m = NULL;
    c->out_c = NULL;
    c->out_s = NULL;
}

/* constructors */
static int op_config_new(sweep_case *c) { return stochflow_config_new(&c->out_c, D); }
static int op_model_new(sweep_case *c) { return stochflow_model_new(&c->out_m, c->cfg); }
static int op_model_config(sweep_case *c) { return stochflow_model_config(&c->out_c, c->m); }
static int op_solver_new(sweep_case *c) { return stochflow_solver_new(&c->out_s); }
static int op_load_buffer(sweep_case *c) {
    return stochflow_model_load_buffer(&c->out_m, c->bytes, c->len);
}
static int op_load(sweep_case *c) { return stochflow_model_load(&c->out_m, c->path); }
static void ok_loaded(sweep_case *c) { ck_assert(same_state(c->out_m, c->bytes, c->len)); }

/* save: the old file stays as it was and no temporary is left */
static int op_save(sweep_case *c) { return stochflow_model_save(c->m, c->path); }
static void fail_save(sweep_case *c) {
    size_t len;
    unsigned char *b = read_all(c->path, &len);
    ck_assert_ptr_nonnull(b);
    ck_assert(len == c->len && memcmp(b, c->bytes, len) == 0);
    free(b);
    ck_assert_int_eq(count_files(tmpdir), 1);
}

/* model calls that grow the workspace: on a fresh copy of the model each time */
static void setup_copy(sweep_case *c) {
    ck_assert_ok(stochflow_model_load_buffer(&c->m, c->bytes, c->len));
    memcpy(c->y, c->x, sizeof c->y);
}
static void teardown_copy(sweep_case *c) {
    stochflow_model_free(c->m);
    c->m = NULL;
}
static void fail_unchanged(sweep_case *c) {
    /* model unchanged, and the same call now works and gives the reference */
    ck_assert(same_state(c->m, c->bytes, c->len));
    memcpy(c->y, c->x, sizeof c->y);
    stochflow__alloc_fail_at(0);
    ck_assert_ok(c->op(c));
    c->after_ok(c);
}
static int op_train(sweep_case *c) {
    double loss;
    return stochflow_model_train_step(&loss, c->m, c->x, N, NULL, NULL);
}
static void ok_train(sweep_case *c) {
    ck_assert_uint_eq(stochflow_model_step(c->m), 3); /* the base was trained 2 steps */
    float v[N * D];
    ck_assert_ok(stochflow_model_velocity(v, c->m, 0.5, pts, N));
    ck_assert_int_eq(memcmp(v, c->ref, sizeof v), 0);
}
static int op_velocity(sweep_case *c) {
    return stochflow_model_velocity(c->y, c->m, 0.5, c->x, N);
}
static int op_divergence(sweep_case *c) {
    return stochflow_model_divergence(c->l, c->y, c->m, 0.5, c->x, N);
}
static int op_vjp(sweep_case *c) {
    return stochflow_model_velocity_vjp(c->y, c->m, 0.5, c->x, pts, N);
}
static void ok_y(sweep_case *c) { ck_assert_int_eq(memcmp(c->y, c->ref, sizeof c->y), 0); }
static void ok_y_l(sweep_case *c) {
    ck_assert_int_eq(memcmp(c->y, c->ref, sizeof c->y), 0);
    ck_assert_int_eq(memcmp(c->l, c->lref, sizeof c->l), 0);
}

/* solver calls: fresh model copy (its workspace allocations are part of the sweep) */
static int op_integrate(sweep_case *c) {
    return stochflow_solver_integrate(c->l, NULL, c->s, c->m, c->y, N, 1.0, 0.0);
}
static int op_log_prob(sweep_case *c) {
    return stochflow_solver_log_prob(c->l, NULL, c->s, c->m, c->x, N, 1.0);
}
static int op_sample(sweep_case *c) {
    return stochflow_solver_sample(c->y, c->l, c->s, c->m, N, 9);
}
static void ok_l(sweep_case *c) { ck_assert_int_eq(memcmp(c->l, c->lref, sizeof c->l), 0); }

/* caller fields: a linear field v = -x/2 (divergence -d/2) */
static int lin_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                     float *div) {
    (void)user;
    (void)t;
    for (size_t i = 0; i < n * d; ++i) v[i] = -0.5f * x[i];
    if (div)
        for (size_t i = 0; i < n; ++i) div[i] = -0.5f * (float)d;
    return 0;
}
static int user_logpdf(void *user, size_t n, size_t d, const float *x, float *logp) {
    (void)user;
    for (size_t i = 0; i < n; ++i) {
        double q = 0;
        for (size_t j = 0; j < d; ++j) q += (double)x[i * d + j] * x[i * d + j];
        logp[i] = (float)(-q);
    }
    return 0;
}
static void setup_y(sweep_case *c) { memcpy(c->y, c->x, sizeof c->y); }
static int op_integrate_fn(sweep_case *c) {
    return stochflow_solver_integrate_fn(c->l, NULL, c->s, lin_field, NULL, D, c->y, N, 0.0, 1.0);
}
static int op_log_prob_fn(sweep_case *c) {
    return stochflow_solver_log_prob_fn(c->l, NULL, c->s, lin_field, NULL, D, c->x, N, 1.0);
}
static int op_sample_fn(sweep_case *c) {
    return stochflow_solver_sample_fn(c->y, c->l, c->s, lin_field, NULL, D, N, 5);
}

/* utilities that allocate */
static int op_toy(sweep_case *c) { return stochflow_toy_sample(c->y, "pinwheel", N, 3, 1); }
static int op_coupling(sweep_case *c) {
    size_t perm[N];
    int rc = stochflow_coupling_assign(perm, NULL, pts, c->x, N, D, c->mode, 0, 1);
    for (int i = 0; rc == 0 && i < N; ++i) c->y[i] = (float)perm[i];
    return rc;
}
static int op_png(sweep_case *c) {
    static const uint8_t px[4 * 3 * 3] = {0};
    return stochflow_png_write(c->path, px, 4, 3, 3);
}

/* Run case c and its reference (the op once without injection, into ref/lref). */
static void reference(sweep_case *c, int (*op)(sweep_case *c)) {
    if (c->setup) c->setup(c);
    ck_assert_ok(op(c));
    memcpy(c->ref, c->y, sizeof c->ref);
    memcpy(c->lref, c->l, sizeof c->lref);
    if (c->teardown) c->teardown(c);
}

START_TEST(alloc_constructors) {
    witness = new_model(99, 16);
    ck_assert_ok(stochflow_model_velocity(witness_v, witness, 0.3, pts, N));
    sweep_case c;
    memset(&c, 0, sizeof c);
    ck_assert_ok(stochflow_config_new(&c.cfg, D));
    c.m = new_model(3, 16);
    ck_assert_int_eq(train_to(c.m, 3), 0);
    c.bytes = serialize(c.m, &c.len);
    make_tmpdir();
    snprintf(c.path, sizeof c.path, "%s/model.sfm", tmpdir);
    ck_assert_ok(stochflow_model_save(c.m, c.path));

    struct {
        const char *name;
        int (*op)(sweep_case *);
        void (*after_ok)(sweep_case *);
    } cases[] = {{"config_new", op_config_new, NULL},
                 {"model_new", op_model_new, NULL},
                 {"model_config", op_model_config, NULL},
                 {"solver_new", op_solver_new, NULL},
                 {"model_load_buffer", op_load_buffer, ok_loaded},
                 {"model_load", op_load, ok_loaded}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        c.name = cases[i].name;
        c.op = cases[i].op;
        c.after_ok = cases[i].after_ok;
        c.teardown = free_outs;
        ck_assert_msg(run_sweep(&c) >= 1, "%s: no allocation was ever failed", c.name);
    }
    /* a file with a newer writer's content (loaded once so that it is in the form a save
     * gives: carried content last): its carried copies are allocations too */
    {
        size_t nlen, zat, keep_len = c.len;
        unsigned char *n = add_unknown_content(c.bytes, c.len, &nlen, &zat), *keep = c.bytes;
        stochflow_model *tmp = NULL;
        ck_assert_ok(stochflow_model_load_buffer(&tmp, n, nlen));
        c.bytes = serialize(tmp, &c.len);
        stochflow_model_free(tmp);
        free(n);
        c.name = "model_load_buffer (carried content)";
        c.op = op_load_buffer;
        c.after_ok = ok_loaded;
        c.teardown = free_outs;
        ck_assert_int_ge(run_sweep(&c), 4); /* the handle, the parameters, the carried key
                                               and the carried section */
        ck_assert_uint_eq(c.len, nlen);
        free(c.bytes);
        c.bytes = keep;
        c.len = keep_len;
    }
    /* model_new/model_load allocate more than once: every one of them was failed */
    c.name = "model_load (count)";
    c.op = op_load;
    ck_assert_int_ge(run_sweep(&c), 3);

    /* save allocates its buffer and the temporary name */
    c.name = "model_save";
    c.op = op_save;
    c.after_ok = NULL;
    c.after_fail = fail_save;
    c.teardown = NULL;
    ck_assert_int_ge(run_sweep(&c), 2);
    c.after_fail = NULL;

    /* minibatch couplings: OT and Sinkhorn allocate a workspace */
    memcpy(c.x, pts, sizeof c.x);
    for (int i = 0; i < N * D; ++i) c.x[i] = -c.x[i] + 0.1f * (float)i;
    for (int mode = STOCHFLOW_COUPLING_OT; mode <= STOCHFLOW_COUPLING_SINKHORN; ++mode) {
        c.mode = mode;
        c.name = mode == STOCHFLOW_COUPLING_OT ? "coupling_assign (OT)"
                                               : "coupling_assign (Sinkhorn)";
        c.op = op_coupling;
        ck_assert_int_ge(run_sweep(&c), 1);
    }

    /* utilities */
    c.name = "toy_sample";
    c.op = op_toy;
    ck_assert_int_ge(run_sweep(&c), 1);
    snprintf(c.path, sizeof c.path, "%s/picture.png", tmpdir);
    c.name = "png_write";
    c.op = op_png;
    ck_assert_int_ge(run_sweep(&c), 1);

    /* a U-Net (compiled into its own tensor and operation lists, which are
     * allocated too) through model_new, and its checkpoint (with EMA weights) through
     * both load paths; the loader compiles the network once to count its parameters. */
    {
        stochflow_config_free(c.cfg);
        free(c.bytes);
        stochflow_model_free(c.m);
        ck_assert_ok(stochflow_config_new(&c.cfg, 16));
        const size_t mult[2] = {1, 2};
        ck_assert_ok(set_unet_shape(c.cfg, 1, 4, 4, 4, 2, mult, 1, 2u, 2));
        ck_assert_ok(stochflow_model_new(&c.m, c.cfg));
        ck_assert_ok(stochflow_model_set_param(c.m, STOCHFLOW_PARAM_EMA_DECAY, 0.9));
        float imgs[4 * 16];
        ck_assert_ok(stochflow_random_normal(imgs, 4 * 16, 5, 1));
        for (int step = 0; step < 2; ++step) {
            double loss;
            ck_assert_ok(stochflow_model_train_step(&loss, c.m, imgs, 4, NULL, NULL));
        }
        c.bytes = serialize(c.m, &c.len);
        snprintf(c.path, sizeof c.path, "%s/unet.sfm", tmpdir);
        ck_assert_ok(stochflow_model_save(c.m, c.path));
        const struct {
            const char *name;
            int (*op)(sweep_case *);
            void (*after_ok)(sweep_case *);
        } ucases[] = {{"model_new (U-Net)", op_model_new, NULL},
                      {"model_load_buffer (U-Net)", op_load_buffer, ok_loaded},
                      {"model_load (U-Net)", op_load, ok_loaded}};
        for (size_t i = 0; i < sizeof ucases / sizeof ucases[0]; ++i) {
            c.name = ucases[i].name;
            c.op = ucases[i].op;
            c.after_ok = ucases[i].after_ok;
            c.teardown = free_outs;
            /* model_new: the handle, the two lists, the parameters; loads: twice that
             * (the counting compilation) and the file buffer */
            ck_assert_int_ge(run_sweep(&c), i == 0 ? 4 : 7);
        }
        ck_assert_int_eq(unlink(c.path), 0);
    }

    ck_assert_int_eq(clean_tmpdir(), 0);
    free(c.bytes);
    stochflow_model_free(c.m);
    stochflow_config_free(c.cfg);
    stochflow_model_free(witness);
}
END_TEST

START_TEST(alloc_model_calls) {
    witness = new_model(99, 16);
    ck_assert_ok(stochflow_model_velocity(witness_v, witness, 0.3, pts, N));
    sweep_case c;
    memset(&c, 0, sizeof c);
    stochflow_model *base = new_model(5, 16);
    ck_assert_int_eq(train_to(base, 2), 0);
    c.bytes = serialize(base, &c.len);
    stochflow_model_free(base);
    memcpy(c.x, pts, sizeof c.x);
    c.setup = setup_copy;
    c.teardown = teardown_copy;
    c.after_fail = fail_unchanged;

    /* train_step: reference = velocity after one step */
    setup_copy(&c);
    ck_assert_ok(op_train(&c));
    ck_assert_ok(stochflow_model_velocity(c.ref, c.m, 0.5, pts, N));
    teardown_copy(&c);
    c.name = "train_step";
    c.op = op_train;
    c.after_ok = ok_train;
    ck_assert_int_ge(run_sweep(&c), 1);

    /* the same for a learnable Fourier interpolant trained with OT couplings:
     * its coefficient gradient and coupling workspaces allocate too */
    {
        stochflow_config *cf = NULL;
        stochflow_model *tm = NULL;
        const size_t w[] = {16};
        ck_assert_ok(stochflow_config_new(&cf, D));
        ck_assert_ok(stochflow_config_set_hidden(cf, 1, w));
        ck_assert_ok(stochflow_config_set_fourier_interpolant(cf, STOCHFLOW_INTERP_TRIG, 2));
        ck_assert_ok(stochflow_model_new(&tm, cf));
        stochflow_config_free(cf);
        ck_assert_ok(stochflow_model_set_param(tm, STOCHFLOW_PARAM_COUPLING,
                                               STOCHFLOW_COUPLING_OT));
        ck_assert_int_eq(train_to(tm, 2), 0);
        unsigned char *keep = c.bytes;
        size_t keep_len = c.len;
        c.bytes = serialize(tm, &c.len);
        stochflow_model_free(tm);
        setup_copy(&c);
        ck_assert_ok(op_train(&c));
        ck_assert_ok(stochflow_model_velocity(c.ref, c.m, 0.5, pts, N));
        teardown_copy(&c);
        c.name = "train_step (Fourier interpolant, OT coupling)";
        ck_assert_int_ge(run_sweep(&c), 1);
        free(c.bytes);
        c.bytes = keep;
        c.len = keep_len;
    }

    struct {
        const char *name;
        int (*op)(sweep_case *);
        void (*after_ok)(sweep_case *);
    } cases[] = {{"velocity", op_velocity, ok_y},
                 {"divergence", op_divergence, ok_y_l},
                 {"velocity_vjp", op_vjp, ok_y}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        c.name = cases[i].name;
        c.op = cases[i].op;
        c.after_ok = cases[i].after_ok;
        reference(&c, c.op);
        ck_assert_msg(run_sweep(&c) >= 1, "%s: no allocation was ever failed", c.name);
    }
    free(c.bytes);
    stochflow_model_free(witness);
}
END_TEST

START_TEST(alloc_solver_calls) {
    witness = new_model(99, 16);
    ck_assert_ok(stochflow_model_velocity(witness_v, witness, 0.3, pts, N));
    sweep_case c;
    memset(&c, 0, sizeof c);
    stochflow_model *base = new_model(6, 16);
    ck_assert_int_eq(train_to(base, 2), 0);
    c.bytes = serialize(base, &c.len);
    stochflow_model_free(base);
    memcpy(c.x, pts, sizeof c.x);
    ck_assert_ok(stochflow_solver_new(&c.s));
    ck_assert_ok(stochflow_solver_set_param(c.s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(c.s, STOCHFLOW_PARAM_STEPS, 4));
    c.setup = setup_copy;
    c.teardown = teardown_copy;
    c.after_fail = fail_unchanged;

    /* exact trace, then Hutchinson with 3 probes (probe buffers and standard errors) */
    for (int trace = STOCHFLOW_TRACE_EXACT; trace <= STOCHFLOW_TRACE_HUTCHINSON; ++trace) {
        ck_assert_ok(stochflow_solver_set_param(c.s, STOCHFLOW_PARAM_TRACE, trace));
        ck_assert_ok(stochflow_solver_set_param(c.s, STOCHFLOW_PARAM_PROBES, 3));
        struct {
            const char *name;
            int (*op)(sweep_case *);
            void (*after_ok)(sweep_case *);
        } cases[] = {{"solver_integrate", op_integrate, ok_y_l},
                     {"solver_log_prob", op_log_prob, ok_l},
                     {"solver_sample", op_sample, ok_y_l}};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
            c.name = cases[i].name;
            c.op = cases[i].op;
            c.after_ok = cases[i].after_ok;
            reference(&c, c.op);
            ck_assert_msg(run_sweep(&c) >= 2, "%s: too few allocations failed", c.name);
        }
    }
    /* caller fields, with and without a caller base density (its buffer allocates) */
    ck_assert_ok(stochflow_solver_set_param(c.s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_EXACT));
    ck_assert_ok(stochflow_solver_set_param(c.s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_DOPRI5));
    c.setup = setup_y;
    c.teardown = NULL;
    c.after_fail = NULL;
    for (int base_fn = 0; base_fn < 2; ++base_fn) {
        ck_assert_ok(stochflow_solver_set_base_logpdf(c.s, base_fn ? user_logpdf : NULL, NULL));
        struct {
            const char *name;
            int (*op)(sweep_case *);
            void (*after_ok)(sweep_case *);
        } cases[] = {{"solver_integrate_fn", op_integrate_fn, ok_y_l},
                     {"solver_log_prob_fn", op_log_prob_fn, ok_l},
                     {"solver_sample_fn", op_sample_fn, ok_y_l}};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
            c.name = cases[i].name;
            c.op = cases[i].op;
            c.after_ok = cases[i].after_ok;
            reference(&c, c.op);
            ck_assert_msg(run_sweep(&c) >= 2, "%s: too few allocations failed", c.name);
        }
    }
    /* the solver handle itself is still fine */
    setup_y(&c);
    ck_assert_ok(op_integrate_fn(&c));
    stochflow_solver_free(c.s);
    free(c.bytes);
    stochflow_model_free(witness);
}
END_TEST

/* ---- hostile sizes ---------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
/* Recompute the payload length and CRC-32 of a (patched) checkpoint buffer. */
static void reseal(unsigned char *b, size_t len) {
    put64(b + 16, (uint64_t)(len - 28));
    put32(b + len - 4, stochflow__crc32(b, len - 4));
}

/* Offset of the body of section tag in a checkpoint buffer (0 when absent). */
static size_t find_section(const unsigned char *b, size_t len, const char *tag) {
    size_t pos = 24;
    while (pos + 16 <= len - 4) {
        uint64_t slen = 0;
        for (int i = 0; i < 8; ++i) slen |= (uint64_t)b[pos + 8 + i] << (8 * i);
        if (memcmp(b + pos, tag, 4) == 0) return pos + 16;
        pos += 16 + (size_t)slen;
    }
    return 0;
}

/* A checkpoint loads into a finite state or not at all: NaN/Inf in the weights, the EMA
 * weights or either Adam moment (CRC-valid file) is FORMAT. */
START_TEST(nonfinite_checkpoint_state_rejected) {
    stochflow_model *m = new_model(41, 8); /* EMA on */
    ck_assert_int_eq(train_to(m, 2), 0);
    size_t len, np = stochflow_model_num_params(m);
    unsigned char *good = serialize(m, &len);
    stochflow_model_free(m);
    unsigned char *b = malloc(len);
    const struct {
        const char *tag;
        size_t at; /* float index after the section's 8-byte count */
    } cases[] = {{"WGHT", 3}, {"EMAW", np - 1}, {"ADAM", 5}, {"ADAM", np + 7}};
    const uint32_t bad[2] = {0x7FC00000u, 0xFF800000u}; /* NaN, -Inf */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
        for (int k = 0; k < 2; ++k) {
            memcpy(b, good, len);
            size_t at = find_section(b, len, cases[i].tag);
            ck_assert_msg(at != 0, "no %s section", cases[i].tag);
            put32(b + at + 8 + 4 * cases[i].at, bad[k]);
            reseal(b, len);
            stochflow_model *out = NULL;
            ck_assert_status(stochflow_model_load_buffer(&out, b, len), STOCHFLOW_E_FORMAT);
            ck_assert_ptr_null(out);
        }
    free(b);
    free(good);
}
END_TEST

/* Header fields claiming huge sizes are rejected before anything is allocated: a small,
 * CRC-valid file claiming a network of 2^38 parameters, a section longer than the file,
 * or a weight count beyond its section makes load_buffer return FORMAT after zero
 * allocations (counted by the allocation hook). */
START_TEST(hostile_sizes_rejected_before_allocating) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t w[] = {4};
    ck_assert_ok(stochflow_config_new(&c, D));
    ck_assert_ok(stochflow_config_set_hidden(c, 1, w));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    size_t len;
    unsigned char *good = serialize(m, &len);
    stochflow_model_free(m);
    unsigned char *b = malloc(len);
    ck_assert(memcmp(good + 24, "CONF", 4) == 0);
    const size_t conf = 40; /* CONF body: dim, n_hidden, act, time, n_freq, interp, seed, widths */
    struct {
        const char *what;
        size_t at;
        uint64_t value;
        int width;
    } cases[] = {
        {"dim 65536", conf + 0, 65536, 4},
        {"hidden width 65536", conf + 32, 65536, 4},
        {"dim 2^32-1", conf + 0, 0xFFFFFFFFu, 4},
        {"64 hidden layers", conf + 4, 64, 4},
        {"2^32-1 hidden layers", conf + 4, 0xFFFFFFFFu, 4},
        {"CONF section length 2^62", 32, 1ULL << 62, 8},
        {"CONF section length 2^64-1", 32, ~0ULL, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        memcpy(b, good, len);
        if (cases[i].width == 4)
            put32(b + cases[i].at, (uint32_t)cases[i].value);
        else
            put64(b + cases[i].at, cases[i].value);
        reseal(b, len);
        stochflow_model *out = NULL;
        stochflow__alloc_fail_at(0);
        int rc = stochflow_model_load_buffer(&out, b, len);
        uint64_t allocs = stochflow__alloc_count();
        ck_assert_msg(rc == STOCHFLOW_E_FORMAT, "%s: status %d (%s)", cases[i].what, rc,
                      stochflow_last_error_message());
        ck_assert_ptr_null(out);
        ck_assert_msg(allocs == 0, "%s: %llu allocations before the rejection", cases[i].what,
                      (unsigned long long)allocs);
    }
    /* the same on a file: only the file's own bytes are read, nothing else allocated */
    make_tmpdir();
    char path[300];
    snprintf(path, sizeof path, "%s/hostile.sfm", tmpdir);
    memcpy(b, good, len);
    put32(b + conf + 32, 65536);
    put32(b + conf + 0, 65536);
    reseal(b, len);
    FILE *f = fopen(path, "wb");
    ck_assert(f && fwrite(b, 1, len, f) == len && fclose(f) == 0);
    stochflow_model *out = NULL;
    stochflow__alloc_fail_at(0);
    ck_assert_status(stochflow_model_load(&out, path), STOCHFLOW_E_FORMAT);
    ck_assert_uint_eq(stochflow__alloc_count(), 1); /* the file buffer, len bytes */
    ck_assert_int_eq(clean_tmpdir(), 0);
    free(b);
    free(good);
}
END_TEST

/* ---- crash safety ---------------------------------------------------------------- */

#define CRASH_KILLS 50
#define CRASH_WIDTH 48

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Child: resume from the checkpoint if there is one, then train and save forever. */
static void crash_child(const char *path) {
    stochflow_model *m = NULL;
    if (stochflow_model_load(&m, path) != 0) m = new_model(11, CRASH_WIDTH);
    for (;;) {
        if (train_to(m, stochflow_model_step(m) + 1) != 0) _exit(3);
        if (stochflow_model_save(m, path) != 0) _exit(4);
    }
}

START_TEST(sigkill_during_saves) {
    make_tmpdir();
    char path[300];
    snprintf(path, sizeof path, "%s/run.sfm", tmpdir);
    /* Calibrate: one train+save iteration takes T here (sanitizers, valgrind and slow
     * disks change T tenfold); kills land uniformly in [T, 6T] after the fork, so every
     * phase of the loop gets hit and the run still makes progress. */
    stochflow_model *ref = new_model(11, CRASH_WIDTH); /* the uninterrupted run */
    double t_start = now_s();
    for (int i = 0; i < 5; ++i) {
        ck_assert_int_eq(train_to(ref, (uint64_t)i + 1), 0);
        ck_assert_ok(stochflow_model_save(ref, path));
    }
    const double T = (now_s() - t_start) / 5;
    ck_assert_int_eq(unlink(path), 0);
    stochflow_model_free(ref);
    ref = new_model(11, CRASH_WIDTH);
    uint64_t last = 0, rng = 0x9E3779B97F4A7C15ULL;
    int loads = 0, distinct = 0;
    for (int k = 0; k < CRASH_KILLS; ++k) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) crash_child(path);
        /* the first child runs until its first save is on disk (forking is slow under
         * sanitizers), so that every kill is checked against a file */
        for (int w = 0; k == 0 && w < 60000 && access(path, F_OK) != 0; ++w) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        double wait = T * (1.0 + 5.0 * (double)(rng % 1000000) / 1e6);
        if (wait < 1e-3) wait = 1e-3;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                      "child ended by itself (status %d): training or saving failed", st);
        stochflow_model *m = NULL;
        int rc = stochflow_model_load(&m, path);
        ck_assert_msg(rc == 0, "kill %d: checkpoint does not load: %s", k,
                      stochflow_last_error_message());
        ++loads;
        /* one of the saved states: exactly the uninterrupted run at that step */
        uint64_t s = stochflow_model_step(m);
        ck_assert_uint_ge(s, last);
        distinct += s > last;
        last = s;
        ck_assert_int_eq(train_to(ref, s), 0);
        size_t len;
        unsigned char *want = serialize(ref, &len);
        ck_assert_msg(same_state(m, want, len), "kill %d: state at step %llu differs", k,
                      (unsigned long long)s);
        free(want);
        stochflow_model_free(m);
    }
    ck_assert_int_eq(loads, CRASH_KILLS);
    ck_assert_uint_ge(last, 10);
    /* resuming from the last file continues bit-for-bit */
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_load(&m, path));
    ck_assert_int_eq(train_to(m, last + 5), 0);
    ck_assert_int_eq(train_to(ref, last + 5), 0);
    size_t len;
    unsigned char *want = serialize(ref, &len);
    ck_assert(same_state(m, want, len));
    free(want);
    stochflow_model_free(m);
    stochflow_model_free(ref);
    int stray = clean_tmpdir();
    fprintf(stderr,
            "crash safety: %d SIGKILLs, checkpoint loaded and verified after %d, %d distinct "
            "saved states (last step %llu), %d temporaries left by killed saves; "
            "%.2f ms per train+save\n",
            CRASH_KILLS, loads, distinct, (unsigned long long)last, stray, 1e3 * T);
}
END_TEST

/* Save a new state under a hostile condition in a child; the old file must survive. */
static void save_in_child(stochflow_model *m, const char *path, int how) {
    const int root = geteuid() == 0;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (how == 0) { /* full disk: 4 KiB file size limit, SIGXFSZ ignored */
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {4096, 4096};
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(20);
        } else if (root) { /* unwritable directory: as root, drop to nobody first */
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(21);
        } else if (chmod(tmpdir, 0555) != 0) {
            _exit(22);
        }
        int rc = stochflow_model_save(m, path);
        if (how == 1 && !root) chmod(tmpdir, 0700);
        int named = strstr(stochflow_last_error_message(), path) != NULL;
        stochflow_model_free(m); /* the child's copy: keeps valgrind's leak check quiet */
        if (rc != STOCHFLOW_E_IO) _exit(30 - rc);
        _exit(named ? 0 : 40);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d (how %d)",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, how);
}

START_TEST(full_disk_and_unwritable_dir) {
    make_tmpdir();
    char path[300];
    snprintf(path, sizeof path, "%s/model.sfm", tmpdir);
    stochflow_model *m = new_model(12, 48); /* about 40 KB: over the 4 KiB limit */
    ck_assert_int_eq(train_to(m, 2), 0);
    ck_assert_ok(stochflow_model_save(m, path));
    size_t old_len;
    unsigned char *old = read_all(path, &old_len);
    ck_assert_uint_gt(old_len, 4096);
    ck_assert_int_eq(train_to(m, 3), 0);
    for (int how = 0; how < 2; ++how) {
        save_in_child(m, path, how);
        size_t len;
        unsigned char *now = read_all(path, &len);
        ck_assert(len == old_len && memcmp(now, old, len) == 0);
        free(now);
        ck_assert_int_eq(count_files(tmpdir), 1); /* no temporary left */
        stochflow_model *back = NULL;
        ck_assert_ok(stochflow_model_load(&back, path));
        ck_assert_uint_eq(stochflow_model_step(back), 2);
        stochflow_model_free(back);
    }
    /* a missing directory and a directory in place of the file: IO, nothing left */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/missing/model.sfm", tmpdir);
    ck_assert_status(stochflow_model_save(m, bad), STOCHFLOW_E_IO);
    snprintf(bad, sizeof bad, "%s/adir", tmpdir);
    ck_assert_int_eq(mkdir(bad, 0755), 0);
    ck_assert_status(stochflow_model_save(m, bad), STOCHFLOW_E_IO);
    ck_assert_int_eq(rmdir(bad), 0);
    ck_assert_int_eq(count_files(tmpdir), 1);
    /* and the model can still be saved normally */
    ck_assert_ok(stochflow_model_save(m, path));
    ck_assert_int_eq(clean_tmpdir(), 0);
    free(old);
    stochflow_model_free(m);
}
END_TEST

/* ---- non-finite input ------------------------------------------------------------ */

static const float bad_values[3] = {NAN, INFINITY, -INFINITY};
#define BAD_AT 5

/* Expect NONFINITE with "index 5" in the message (the first bad index). */
#define ck_assert_nonfinite(expr)                                                         \
    do {                                                                                  \
        ck_assert_status((expr), STOCHFLOW_E_NONFINITE);                                  \
        ck_assert_msg(strstr(stochflow_last_error_message(), "index 5") != NULL,          \
                      "%s: message lacks the index: %s", #expr,                           \
                      stochflow_last_error_message());                                    \
    } while (0)

START_TEST(nonfinite_inputs) {
    stochflow_model *m = new_model(21, 16);
    ck_assert_int_eq(train_to(m, 2), 0);
    size_t len;
    unsigned char *before = serialize(m, &len);
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 2));
    float x1[N * D], x0[N * D], t[N], u[N * D], out[N * D], lp[N];
    double loss;
    for (int b = 0; b < 3; ++b) {
        /* a second bad value later: the message names the first one */
#define FRESH()                                                                 \
    do {                                                                        \
        memcpy(x1, pts, sizeof x1);                                             \
        memcpy(x0, pts, sizeof x0);                                             \
        memcpy(u, pts, sizeof u);                                               \
        for (int i = 0; i < N; ++i) t[i] = (float)(i + 1) / (N + 1);            \
    } while (0)
#define POISON(buf)                  \
    do {                             \
        FRESH();                     \
        (buf)[BAD_AT] = bad_values[b]; \
        (buf)[BAD_AT + 2] = NAN;     \
    } while (0)
        POISON(x1);
        ck_assert_nonfinite(stochflow_model_loss(&loss, m, x1, N, x0, t));
        ck_assert_nonfinite(stochflow_model_train_step(&loss, m, x1, N, x0, t));
        ck_assert_nonfinite(stochflow_model_compute_gradient(&loss, m, x1, N, NULL, NULL));
        ck_assert_nonfinite(stochflow_model_velocity(out, m, 0.5, x1, N));
        ck_assert_nonfinite(stochflow_model_divergence(lp, out, m, 0.5, x1, N));
        ck_assert_nonfinite(stochflow_model_velocity_vjp(out, m, 0.5, x1, u, N));
        ck_assert_nonfinite(stochflow_solver_integrate(lp, NULL, s, m, x1, N, 0.0, 1.0));
        POISON(x1);
        ck_assert_nonfinite(stochflow_solver_integrate_fn(lp, NULL, s, lin_field, NULL, D, x1, N,
                                                          0.0, 1.0));
        POISON(x1);
        ck_assert_nonfinite(stochflow_solver_log_prob(lp, NULL, s, m, x1, N, 1.0));
        ck_assert_nonfinite(stochflow_solver_log_prob_fn(lp, NULL, s, lin_field, NULL, D, x1, N, 1.0));
        ck_assert_nonfinite(stochflow_toy_log_density(lp, NULL, "checkerboard", x1, N));
        POISON(x0);
        ck_assert_nonfinite(stochflow_model_loss(&loss, m, x1, N, x0, t));
        ck_assert_nonfinite(stochflow_model_train_step(&loss, m, x1, N, x0, NULL));
        POISON(t);
        ck_assert_nonfinite(stochflow_model_loss(&loss, m, x1, N, NULL, t));
        ck_assert_nonfinite(stochflow_model_train_step(&loss, m, x1, N, x0, t));
        ck_assert_nonfinite(stochflow_model_compute_gradient(&loss, m, x1, N, x0, t));
        POISON(u);
        ck_assert_nonfinite(stochflow_model_velocity_vjp(out, m, 0.5, x1, u, N));
        /* minibatch couplings */
        size_t perm[N];
        for (int mode = STOCHFLOW_COUPLING_INDEPENDENT; mode <= STOCHFLOW_COUPLING_SINKHORN;
             ++mode) {
            POISON(x0);
            ck_assert_nonfinite(stochflow_coupling_assign(perm, NULL, x0, x1, N, D, mode, 0, 1));
            POISON(x1);
            ck_assert_nonfinite(stochflow_coupling_assign(perm, NULL, x0, x1, N, D, mode, 0, 1));
        }
#undef POISON
    }
    /* nothing was touched by the rejected calls */
    ck_assert(same_state(m, before, len));
    ck_assert_uint_eq(stochflow_model_step(m), 2);
    free(before);
    stochflow_solver_free(s);
    stochflow_model_free(m);
}
END_TEST

/* Caller callbacks that produce NaN are caught too. */
static int nan_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                     float *div) {
    (void)user;
    for (size_t i = 0; i < n * d; ++i) v[i] = -x[i];
    if (t > 0.5) v[3 * d + 1] = NAN; /* point 3, component 1 */
    if (div)
        for (size_t i = 0; i < n; ++i) div[i] = -(float)d;
    return 0;
}
static int nan_logpdf(void *user, size_t n, size_t d, const float *x, float *logp) {
    (void)user;
    (void)d;
    (void)x;
    for (size_t i = 0; i < n; ++i) logp[i] = i == 4 ? NAN : -1.0f;
    return 0;
}

START_TEST(nonfinite_callbacks) {
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_EULER));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 10));
    float x[N * D], lp[N];
    memcpy(x, pts, sizeof x);
    ck_assert_status(stochflow_solver_integrate_fn(lp, NULL, s, nan_field, NULL, D, x, N, 0.0, 1.0),
                     STOCHFLOW_E_NONFINITE);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "point 3"));
    /* partial result: the last accepted state, finite, at t = 0.6 (the step from 0.5
     * used the last good evaluation; Euler on x' = -x multiplies by 0.9 per step) */
    double tr;
    ck_assert_ok(stochflow_solver_stat(&tr, s, STOCHFLOW_STAT_T));
    ck_assert_double_eq_tol(tr, 0.6, 1e-12);
    for (int i = 0; i < N * D; ++i) {
        ck_assert(isfinite(x[i]));
        ck_assert_float_eq_tol(x[i], pts[i] * powf(0.9f, 6.0f), 1e-6f);
    }
    ck_assert_ok(stochflow_solver_set_base_logpdf(s, nan_logpdf, NULL));
    ck_assert_status(stochflow_solver_log_prob_fn(lp, NULL, s, lin_field, NULL, D, pts, N, 1.0),
                     STOCHFLOW_E_NONFINITE);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "index 4"));
    stochflow_solver_free(s);
}
END_TEST

/* ---- diverging training ---------------------------------------------------------- */

START_TEST(diverging_huge_weights) {
    stochflow_model *m = new_model(31, 16);
    ck_assert_int_eq(train_to(m, 3), 0);
    float *p;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    for (size_t i = 0; i < np; ++i) p[i] *= 1e15f; /* finite, absurd */
    /* evaluate with the live weights (the EMA copy was not scaled) */
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, 2));
    size_t len;
    unsigned char *before = serialize(m, &len);
    ck_assert_status(train_to(m, 4), STOCHFLOW_E_NONFINITE);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "step 3"));
    ck_assert(same_state(m, before, len));
    float v[N * D];
    ck_assert_status(stochflow_model_velocity(v, m, 0.5, pts, N), STOCHFLOW_E_NONFINITE);
    /* a NaN planted in the gradient buffer: apply_gradient refuses, nothing moves */
    float *g;
    ck_assert_ok(stochflow_model_gradients(&g, &np, m));
    memset(g, 0, np * sizeof *g);
    g[np / 2] = NAN;
    ck_assert_status(stochflow_model_apply_gradient(m), STOCHFLOW_E_NONFINITE);
    ck_assert(same_state(m, before, len));
    free(before);
    stochflow_model_free(m);
}
END_TEST

/* A finite but enormous gradient whose square overflows float: the update is refused
 * and the model unchanged (no Inf creeps into the Adam moments). */
START_TEST(diverging_overflowing_update) {
    stochflow_model *m = new_model(32, 16);
    ck_assert_int_eq(train_to(m, 2), 0);
    size_t len, np;
    unsigned char *before = serialize(m, &len);
    float *g;
    ck_assert_ok(stochflow_model_gradients(&g, &np, m));
    for (size_t i = 0; i < np; ++i) g[i] = (i % 3 ? 1e30f : -3e38f);
    /* refused: Adam's second moment (g^2) would overflow to Inf */
    ck_assert_status(stochflow_model_apply_gradient(m), STOCHFLOW_E_NONFINITE);
    ck_assert(same_state(m, before, len));
    /* with gradient clipping on, the same gradient is fine */
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_CLIP, 1.0));
    ck_assert_ok(stochflow_model_apply_gradient(m));
    ck_assert_uint_eq(stochflow_model_step(m), 3);
    free(before);
    stochflow_model_free(m);
}
END_TEST

/* An absurd learning rate (10) and a data stream that grows tenfold every step (a broken
 * input pipeline): the run blows up after a few steps; the step that goes bad returns
 * NONFINITE and the model keeps its last finite state, which still evaluates. */
START_TEST(diverging_learning_rate) {
    stochflow_model *m = new_model(33, 16);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 10.0));
    float x[32 * D];
    int bad_step = -1;
    float scale = 1.0f;
    for (int s = 0; s < 60 && bad_step < 0; ++s, scale *= 10.0f) {
        batch(x, 32, (uint64_t)s);
        for (int i = 0; i < 32 * D; ++i) x[i] *= scale;
        size_t len;
        unsigned char *before = serialize(m, &len);
        double loss;
        int rc = stochflow_model_train_step(&loss, m, x, 32, NULL, NULL);
        if (rc == STOCHFLOW_E_NONFINITE) {
            bad_step = s;
            ck_assert(same_state(m, before, len));
            ck_assert_uint_eq(stochflow_model_step(m), (uint64_t)s);
            float *p, v[N * D];
            size_t np;
            ck_assert_ok(stochflow_model_parameters(&p, &np, m));
            for (size_t i = 0; i < np; ++i) ck_assert(isfinite(p[i]));
            ck_assert_ok(stochflow_model_velocity(v, m, 0.5, pts, N));
        } else {
            ck_assert_ok(rc);
            ck_assert(isfinite(loss));
        }
        free(before);
    }
    ck_assert_msg(bad_step >= 3, "diverged at step %d", bad_step);
    stochflow_model_free(m);
}
END_TEST

/* ---- exploding and stiff fields -------------------------------------------------- */

static int square_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                        float *div) {
    (void)user;
    (void)t;
    for (size_t i = 0; i < n * d; ++i) v[i] = x[i] * x[i];
    if (div)
        for (size_t i = 0; i < n; ++i) {
            float acc = 0;
            for (size_t j = 0; j < d; ++j) acc += 2 * x[i * d + j];
            div[i] = acc;
        }
    return 0;
}
static int stiff_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                       float *div) {
    (void)user;
    for (size_t i = 0; i < n * d; ++i) v[i] = -1e5f * (x[i] - (float)cos(t));
    if (div)
        for (size_t i = 0; i < n; ++i) div[i] = -1e5f * (float)d;
    return 0;
}

START_TEST(exploding_adaptive) {
    /* x' = x^2 blows up at t = 1/x0: x0 = 2 at t = 0.5 */
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    float x[3] = {0.5f, 1.0f, 2.0f}, lp[3];
    const float x0[3] = {0.5f, 1.0f, 2.0f};
    int rc = stochflow_solver_integrate_fn(lp, NULL, s, square_field, NULL, 1, x, 3, 0.0, 1.0);
    ck_assert_msg(rc == STOCHFLOW_E_STEP_UNDERFLOW || rc == STOCHFLOW_E_MAX_STEPS ||
                      rc == STOCHFLOW_E_NONFINITE,
                  "status %d (%s)", rc, stochflow_last_error_message());
    double tr, acc, rej, nfe;
    ck_assert_ok(stochflow_solver_stat(&tr, s, STOCHFLOW_STAT_T));
    ck_assert_ok(stochflow_solver_stat(&acc, s, STOCHFLOW_STAT_ACCEPTED));
    ck_assert_ok(stochflow_solver_stat(&rej, s, STOCHFLOW_STAT_REJECTED));
    ck_assert_ok(stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE));
    /* the computed blow-up time is 0.5 to within the float precision of the field */
    ck_assert_msg(tr > 0.4 && tr < 0.5001, "stopped at t = %.17g", tr);
    ck_assert(acc + rej <= 100000 && nfe <= 6 * (acc + rej) + 2);
    /* partial results: the solution at the time reached, finite */
    for (int i = 0; i < 3; ++i) ck_assert(isfinite(x[i]) && isfinite(lp[i]));
    ck_assert_double_eq_tol(x[0], 1.0 / (1.0 / x0[0] - tr), 1e-3);
    ck_assert_double_eq_tol(x[1], 1.0 / (1.0 / x0[1] - tr), 1e-3);
    /* log-density change: -int 2 x dt = 2 log(1 - x0 t) */
    ck_assert_double_eq_tol(lp[0], 2.0 * log(1.0 - x0[0] * tr), 1e-3);
    stochflow_solver_free(s);
}
END_TEST

START_TEST(stiff_hits_max_steps) {
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_MAX_STEPS, 200));
    float x[4] = {3.0f, -2.0f, 0.0f, 1.0f};
    int rc = stochflow_solver_integrate_fn(NULL, NULL, s, stiff_field, NULL, 2, x, 2, 0.0, 1.0);
    ck_assert_status(rc, STOCHFLOW_E_MAX_STEPS);
    double tr, acc, rej, nfe;
    ck_assert_ok(stochflow_solver_stat(&tr, s, STOCHFLOW_STAT_T));
    ck_assert_ok(stochflow_solver_stat(&acc, s, STOCHFLOW_STAT_ACCEPTED));
    ck_assert_ok(stochflow_solver_stat(&rej, s, STOCHFLOW_STAT_REJECTED));
    ck_assert_ok(stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE));
    ck_assert(tr > 0.0 && tr < 1.0);
    ck_assert(acc + rej <= 200);
    ck_assert(nfe <= 6 * 200 + 2);
    /* the partial state sits on the slow manifold x = cos(t) */
    for (int i = 0; i < 4; ++i) ck_assert_double_eq_tol(x[i], cos(tr), 1e-3);
    stochflow_solver_free(s);
}
END_TEST

START_TEST(exploding_fixed_step) {
    /* Euler on x' = x^2 from x0 = 10: blows up long before t = 1; the velocity
     * overflows float before the state does, so the partial state is finite */
    stochflow_solver *s = NULL;
    ck_assert_ok(stochflow_solver_new(&s));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_EULER));
    ck_assert_ok(stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 1000));
    float x[2] = {10.0f, 0.1f};
    ck_assert_status(stochflow_solver_integrate_fn(NULL, NULL, s, square_field, NULL, 1, x, 2, 0.0, 1.0),
                     STOCHFLOW_E_NONFINITE);
    double tr;
    ck_assert_ok(stochflow_solver_stat(&tr, s, STOCHFLOW_STAT_T));
    ck_assert(tr > 0.0 && tr < 0.2);
    ck_assert(isfinite(x[0]) && x[0] > 1e6f);
    ck_assert(isfinite(x[1]) && x[1] > 0.1f && x[1] < 0.2f);
    stochflow_solver_free(s);
}
END_TEST

/* ---- concurrency ----------------------------------------------------------------- */

#define THREADS 4
#define THREAD_STEPS 25

typedef struct {
    uint64_t seed;
    unsigned char *state;
    size_t len;
    float samples[16 * D];
    int rc;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    j->rc = -100;
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    const size_t widths[] = {48, 48};
    if (stochflow_config_new(&c, D) || stochflow_config_set_hidden(c, 2, widths) ||
        stochflow_config_set_seed(c, j->seed) || stochflow_model_new(&m, c) ||
        stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.99) ||
        stochflow_solver_new(&s))
        goto done;
    float x[64 * D];
    for (int k = 0; k < THREAD_STEPS; ++k) {
        double loss;
        stochflow_toy_sample(x, "moons", 64, j->seed, (uint64_t)k);
        if ((j->rc = stochflow_model_train_step(&loss, m, x, 64, NULL, NULL)) != 0) goto done;
    }
    stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4);
    stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, 8);
    if ((j->rc = stochflow_solver_sample(j->samples, NULL, s, m, 16, 7)) != 0) goto done;
    if ((j->rc = stochflow_model_serialized_size(&j->len, m)) != 0) goto done;
    j->state = malloc(j->len);
    j->rc = stochflow_model_save_buffer(NULL, j->state, j->len, m);
done:
    stochflow_solver_free(s);
    stochflow_model_free(m);
    stochflow_config_free(c);
    return NULL;
}

START_TEST(parallel_equals_serial) {
    job serial[THREADS], par[THREADS];
    memset(serial, 0, sizeof serial);
    memset(par, 0, sizeof par);
    for (int i = 0; i < THREADS; ++i) {
        serial[i].seed = par[i].seed = 100 + (uint64_t)i;
        run_job(&serial[i]);
        ck_assert_int_eq(serial[i].rc, 0);
    }
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; ++i)
        ck_assert_int_eq(pthread_create(&th[i], NULL, run_job, &par[i]), 0);
    for (int i = 0; i < THREADS; ++i) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < THREADS; ++i) {
        ck_assert_int_eq(par[i].rc, 0);
        ck_assert_uint_eq(par[i].len, serial[i].len);
        ck_assert_int_eq(memcmp(par[i].state, serial[i].state, par[i].len), 0);
        ck_assert_int_eq(memcmp(par[i].samples, serial[i].samples, sizeof par[i].samples), 0);
        free(par[i].state);
        free(serial[i].state);
    }
}
END_TEST

/* ---- what a save replaces ------------------------------------------------------------ */

/* A save never replaces something that is not a regular file: a FIFO, a device node (as
 * root: a copy of /dev/null made with mknod), a directory and a dangling symbolic link
 * give STOCHFLOW_E_IO naming the path, and the node is still there, of the same kind. */
START_TEST(save_refuses_non_regular_files) {
    make_tmpdir();
    stochflow_model *m = new_model(61, 8);
    char p[400];
    struct stat st;
    snprintf(p, sizeof p, "%s/fifo", tmpdir);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    ck_assert_status(stochflow_model_save(m, p), STOCHFLOW_E_IO);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), p));
    ck_assert_int_eq(lstat(p, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    if (geteuid() == 0) {
        snprintf(p, sizeof p, "%s/null", tmpdir);
        ck_assert_int_eq(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
        ck_assert_status(stochflow_model_save(m, p), STOCHFLOW_E_IO);
        ck_assert_int_eq(lstat(p, &st), 0);
        ck_assert(S_ISCHR(st.st_mode));
        ck_assert_int_eq(major(st.st_rdev), 1);
        /* the same through a symbolic link to the node */
        char link[400];
        snprintf(link, sizeof link, "%s/null-link", tmpdir);
        ck_assert_int_eq(symlink(p, link), 0);
        ck_assert_status(stochflow_model_save(m, link), STOCHFLOW_E_IO);
        ck_assert_int_eq(lstat(link, &st), 0);
        ck_assert(S_ISLNK(st.st_mode));
        ck_assert_int_eq(lstat(p, &st), 0);
        ck_assert(S_ISCHR(st.st_mode));
    }
    snprintf(p, sizeof p, "%s/dangling", tmpdir);
    ck_assert_int_eq(symlink("no-such-target", p), 0);
    ck_assert_status(stochflow_model_save(m, p), STOCHFLOW_E_IO);
    ck_assert_int_eq(lstat(p, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_int_eq(clean_tmpdir(), 0); /* no temporary left */
    stochflow_model_free(m);
}
END_TEST

/* A save through a symbolic link (absolute or relative) writes the link's target and
 * keeps the link; the target holds the new state. */
START_TEST(save_through_symlink_writes_target) {
    make_tmpdir();
    stochflow_model *m = new_model(62, 8);
    char real[400], abs_link[400], rel_link[400];
    snprintf(real, sizeof real, "%s/real.sfm", tmpdir);
    snprintf(abs_link, sizeof abs_link, "%s/abs.sfm", tmpdir);
    snprintf(rel_link, sizeof rel_link, "%s/rel.sfm", tmpdir);
    ck_assert_ok(stochflow_model_save(m, real));
    ck_assert_int_eq(symlink(real, abs_link), 0);
    ck_assert_int_eq(symlink("real.sfm", rel_link), 0);
    const char *links[2] = {abs_link, rel_link};
    for (int k = 0; k < 2; ++k) {
        ck_assert_int_eq(train_to(m, (uint64_t)k + 1), 0);
        ck_assert_ok(stochflow_model_save(m, links[k]));
        struct stat st;
        ck_assert_int_eq(lstat(links[k], &st), 0);
        ck_assert_msg(S_ISLNK(st.st_mode), "the link %s was replaced", links[k]);
        size_t len;
        unsigned char *b = read_all(real, &len);
        ck_assert_msg(same_state(m, b, len), "the target does not hold the saved state");
        free(b);
    }
    ck_assert_int_eq(count_files(tmpdir), 3);
    ck_assert_int_eq(clean_tmpdir(), 0);
    stochflow_model_free(m);
}
END_TEST

/* Re-saving keeps the file's permission bits and, as root, its owner and group; a new
 * file gets 0666 minus the umask, as fopen gives. */
START_TEST(save_keeps_mode_and_owner) {
    make_tmpdir();
    stochflow_model *m = new_model(63, 8);
    char p[400];
    snprintf(p, sizeof p, "%s/model.sfm", tmpdir);
    mode_t old_mask = umask(027);
    ck_assert_ok(stochflow_model_save(m, p));
    umask(old_mask);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0640);
    ck_assert_int_eq(chmod(p, 0600), 0);
    const int root = geteuid() == 0;
    if (root) ck_assert_int_eq(chown(p, 4242, 4343), 0);
    ck_assert_int_eq(train_to(m, 1), 0);
    ck_assert_ok(stochflow_model_save(m, p));
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    if (root) {
        ck_assert_int_eq(st.st_uid, 4242);
        ck_assert_int_eq(st.st_gid, 4343);
    }
    stochflow_model *back = NULL;
    ck_assert_ok(stochflow_model_load(&back, p));
    ck_assert_uint_eq(stochflow_model_step(back), 1);
    stochflow_model_free(back);
    ck_assert_int_eq(clean_tmpdir(), 0);
    stochflow_model_free(m);
}
END_TEST

/* ---- the loaded state, validated whole ---------------------------------------------- */

static stochflow_model *fourier_model(uint64_t seed) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t widths[] = {8, 8};
    ck_assert_ok(stochflow_config_new(&c, D));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, widths));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_config_set_fourier_interpolant(c, STOCHFLOW_INTERP_TRIG, 2));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    return m;
}
static void putf64(unsigned char *p, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put64(p, u);
}
static void putf32(unsigned char *p, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put32(p, u);
}

/* Every field of the state is checked on load: negative Adam second moments of the
 * weights; non-finite or negative Adam moments of the Fourier coefficients and a
 * non-finite path_ema (INTP: M = 2, so first moments at byte 32 + 8*4, second moments at
 * 32 + 8*8); an ema_valid flag other than 0 or 1. Each is FORMAT naming the field. */
START_TEST(loaded_state_validated_whole) {
    stochflow_model *m = fourier_model(64);
    ck_assert_int_eq(train_to(m, 2), 0);
    size_t len, np = stochflow_model_num_params(m);
    unsigned char *good = serialize(m, &len);
    stochflow_model_free(m);
    unsigned char *b = malloc(len);
    for (int k = 0; k < 7; ++k) {
        memcpy(b, good, len);
        const char *field;
        if (k == 0) {
            putf32(b + find_section(b, len, "ADAM") + 8 + 4 * (np + 3), -1.0f);
            field = "ADAM second";
        } else if (k == 1) {
            putf32(b + find_section(b, len, "ADAM") + 8 + 4 * (np + 3), NAN);
            field = "ADAM second";
        } else if (k == 2) {
            putf64(b + find_section(b, len, "INTP") + 32 + 8 * 8 + 8 * 1, -1.0);
            field = "INTP Adam second";
        } else if (k == 3) {
            putf64(b + find_section(b, len, "INTP") + 32 + 8 * 8, INFINITY);
            field = "INTP Adam second";
        } else if (k == 4) {
            putf64(b + find_section(b, len, "INTP") + 32 + 8 * 4 + 8 * 2, NAN);
            field = "INTP Adam first";
        } else if (k == 5) {
            putf64(b + find_section(b, len, "INTP") + 24, NAN);
            field = "path_ema";
        } else {
            put32(b + find_section(b, len, "STAT") + 8, 2);
            field = "ema_valid";
        }
        reseal(b, len);
        stochflow_model *out = NULL;
        ck_assert_status(stochflow_model_load_buffer(&out, b, len), STOCHFLOW_E_FORMAT);
        ck_assert_ptr_null(out);
        ck_assert_msg(strstr(stochflow_last_error_message(), field) != NULL,
                      "case %d: message \"%s\" does not name %s", k,
                      stochflow_last_error_message(), field);
    }
    free(b);
    free(good);
}
END_TEST

/* A step whose coefficient update would overflow (a finite but huge Adam first moment of
 * a coefficient, as a file may hold) fails with NONFINITE and leaves the whole model as
 * it was (network included); every save loads again. */
START_TEST(coefficient_update_keeps_finite_state) {
    stochflow_model *m = fourier_model(65);
    size_t len;
    unsigned char *b = serialize(m, &len);
    stochflow_model_free(m);
    putf64(b + find_section(b, len, "INTP") + 32 + 8 * 4 + 8 * 1, 1e308);
    reseal(b, len);
    ck_assert_ok(stochflow_model_load_buffer(&m, b, len));
    ck_assert_status(train_to(m, 1), STOCHFLOW_E_NONFINITE);
    ck_assert_msg(same_state(m, b, len), "a failing step changed the model");
    size_t l2;
    unsigned char *again = serialize(m, &l2);
    stochflow_model *back = NULL;
    ck_assert_ok(stochflow_model_load_buffer(&back, again, l2));
    stochflow_model_free(back);
    free(again);
    free(b);
    stochflow_model_free(m);
}
END_TEST

/* ---- what a checkpoint carries ----------------------------------------------------- */

/* Offset of the 16-byte HPAR entry of key in a checkpoint buffer (0 when absent). */
static size_t hpar_entry(const unsigned char *b, size_t len, uint32_t key) {
    size_t at = find_section(b, len, "HPAR");
    ck_assert_uint_ne(at, 0);
    uint32_t count = 0;
    for (int i = 0; i < 4; ++i) count |= (uint32_t)b[at + i] << (8 * i);
    for (uint32_t e = 0; e < count; ++e) {
        size_t off = at + 8 + 16 * (size_t)e;
        uint32_t k = 0;
        for (int i = 0; i < 4; ++i) k |= (uint32_t)b[off + i] << (8 * i);
        if (k == key) return off;
    }
    return 0;
}
static double entry_value(const unsigned char *b, size_t off) {
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u |= (uint64_t)b[off + 8 + i] << (8 * i);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* The thread count is a runtime resource, not model state: a model using 2 threads
 * saves the default (1), and a file holding 256 loads with the default. */
START_TEST(thread_count_not_restored) {
    stochflow_model *m = new_model(66, 8);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 2));
    size_t len;
    unsigned char *b = serialize(m, &len);
    stochflow_model_free(m);
    size_t off = hpar_entry(b, len, STOCHFLOW_PARAM_THREADS);
    ck_assert_uint_ne(off, 0);
    ck_assert_double_eq(entry_value(b, off), 1.0);
    putf64(b + off + 8, 256.0);
    reseal(b, len);
    ck_assert_ok(stochflow_model_load_buffer(&m, b, len));
    double threads = 0;
    ck_assert_ok(stochflow_model_get_param(&threads, m, STOCHFLOW_PARAM_THREADS));
    ck_assert_double_eq(threads, 1.0);
    stochflow_model_free(m);
    free(b);
}
END_TEST

/* The checkpoint b with a newer writer's content added after CONF: a ZZZZ section of 13
 * bytes (its header at *zat) and an HPAR entry (key 999, value 1.5). */
static const unsigned char zbody[13] = "newer state!";
static unsigned char *add_unknown_content(const unsigned char *b, size_t len, size_t *nlen,
                                          size_t *zat) {
    size_t hp = find_section(b, len, "HPAR"), conf = find_section(b, len, "CONF");
    uint64_t hlen = 0, clen = 0;
    for (int i = 0; i < 8; ++i) hlen |= (uint64_t)b[hp - 8 + i] << (8 * i);
    for (int i = 0; i < 8; ++i) clen |= (uint64_t)b[conf - 8 + i] << (8 * i);
    size_t hend = hp + (size_t)hlen;
    *zat = conf + (size_t)clen;
    ck_assert_uint_le(*zat, hp);
    *nlen = len + 16 + sizeof zbody + 16;
    unsigned char *n = calloc(1, *nlen), *q = n;
    memcpy(q, b, *zat), q += *zat;
    memcpy(q, "ZZZZ", 4), put64(q + 8, sizeof zbody), memcpy(q + 16, zbody, sizeof zbody);
    q += 16 + sizeof zbody;
    memcpy(q, b + *zat, hend - *zat), q += hend - *zat;
    put32(q, 999), putf64(q + 8, 1.5), q += 16;
    memcpy(q, b + hend, len - hend);
    size_t nhp = hp + 16 + sizeof zbody;
    put64(n + nhp - 8, hlen + 16);
    uint32_t count = 0;
    for (int i = 0; i < 4; ++i) count |= (uint32_t)n[nhp + i] << (8 * i);
    put32(n + nhp, count + 1);
    reseal(n, *nlen);
    return n;
}

/* A newer writer's content survives a resume by this version: an unknown section (in the
 * middle of the file) and an unknown HPAR key are written back verbatim by the next save,
 * and saving the reloaded file gives the same bytes again. */
START_TEST(unknown_content_carried) {
    stochflow_model *m = new_model(67, 8);
    ck_assert_int_eq(train_to(m, 1), 0);
    size_t len, nlen, zat;
    unsigned char *b = serialize(m, &len);
    stochflow_model_free(m);
    unsigned char *n = add_unknown_content(b, len, &nlen, &zat);
    ck_assert_ok(stochflow_model_load_buffer(&m, n, nlen));
    size_t l2;
    unsigned char *again = serialize(m, &l2);
    ck_assert_uint_eq(l2, nlen);
    size_t z = find_section(again, l2, "ZZZZ");
    ck_assert_msg(z != 0, "the unknown section was dropped");
    ck_assert_int_eq(memcmp(again + z - 16, n + zat, 16 + sizeof zbody), 0);
    size_t e = hpar_entry(again, l2, 999);
    ck_assert_msg(e != 0, "the unknown HPAR key was dropped");
    ck_assert_double_eq(entry_value(again, e), 1.5);
    stochflow_model *m2 = NULL;
    ck_assert_ok(stochflow_model_load_buffer(&m2, again, l2));
    ck_assert(same_state(m2, again, l2));
    stochflow_model_free(m2);
    stochflow_model_free(m);
    free(again);
    free(n);
    free(b);
}
END_TEST

/* ---- one handle, two threads --------------------------------------------------------- */

/* A thread blocked inside a call on a handle (in a schedule or velocity callback) holds
 * it: calls on it from another thread return STOCHFLOW_E_BUSY and change nothing, a
 * nested call from the holding thread passes, and the handle is free once the call
 * returns. */
static sem_t cb_inside, cb_release;
static atomic_int cb_armed;
static stochflow_model *cb_model;
static int cb_nested_rc = 1;
static void block_once(void) {
    if (atomic_exchange(&cb_armed, 0)) {
        double v;
        cb_nested_rc = stochflow_model_get_param(&v, cb_model, STOCHFLOW_PARAM_LR);
        sem_post(&cb_inside);
        while (sem_wait(&cb_release) != 0) continue;
    }
}
static void linear_schedule(void *user, double t, double out[4]) {
    (void)user;
    block_once();
    out[0] = 1.0 - t, out[1] = t, out[2] = -1.0, out[3] = 1.0;
}
static int zero_field(void *user, double t, size_t n, size_t d, const float *x, float *v,
                      float *div) {
    (void)user, (void)t, (void)x;
    block_once();
    memset(v, 0, n * d * sizeof *v);
    if (div) memset(div, 0, n * sizeof *div);
    return 0;
}
typedef struct {
    stochflow_model *m;
    stochflow_solver *s;
    int rc;
} holder;
static void *hold_model(void *arg) {
    holder *h = arg;
    float x[32 * D];
    double loss;
    batch(x, 32, 0);
    h->rc = stochflow_model_train_step(&loss, h->m, x, 32, NULL, NULL);
    return NULL;
}
static void *hold_solver(void *arg) {
    holder *h = arg;
    float x[N * D];
    memcpy(x, pts, sizeof x);
    h->rc = stochflow_solver_integrate_fn(NULL, NULL, h->s, zero_field, NULL, D, x, N, 0.0, 1.0);
    return NULL;
}

START_TEST(busy_handle_refused) {
    stochflow_config *c = NULL;
    const size_t widths[] = {8};
    ck_assert_ok(stochflow_config_new(&c, D));
    ck_assert_ok(stochflow_config_set_hidden(c, 1, widths));
    ck_assert_ok(stochflow_config_set_schedule(c, linear_schedule, NULL));
    holder h = {NULL, NULL, 1};
    ck_assert_ok(stochflow_model_new(&h.m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_solver_new(&h.s));
    cb_model = h.m;
    ck_assert_int_eq(sem_init(&cb_inside, 0, 0), 0);
    ck_assert_int_eq(sem_init(&cb_release, 0, 0), 0);
    float v[N * D], ref[N * D], lp[N];
    ck_assert_ok(stochflow_model_velocity(ref, h.m, 0.5, pts, N));

    /* the model, held by a training step */
    pthread_t th;
    atomic_store(&cb_armed, 1);
    ck_assert_int_eq(pthread_create(&th, NULL, hold_model, &h), 0);
    while (sem_wait(&cb_inside) != 0) continue;
    ck_assert_status(stochflow_model_velocity(v, h.m, 0.5, pts, N), STOCHFLOW_E_BUSY);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "another thread"));
    ck_assert_status(stochflow_model_set_param(h.m, STOCHFLOW_PARAM_LR, 0.5), STOCHFLOW_E_BUSY);
    double lr;
    ck_assert_status(stochflow_model_get_param(&lr, h.m, STOCHFLOW_PARAM_LR), STOCHFLOW_E_BUSY);
    size_t sz;
    ck_assert_status(stochflow_model_serialized_size(&sz, h.m), STOCHFLOW_E_BUSY);
    ck_assert_status(stochflow_solver_log_prob(lp, NULL, h.s, h.m, pts, N, 0.5),
                     STOCHFLOW_E_BUSY);
    double loss;
    float x[32 * D];
    batch(x, 32, 0);
    ck_assert_status(stochflow_model_train_step(&loss, h.m, x, 32, NULL, NULL),
                     STOCHFLOW_E_BUSY);
    /* the solver, not the model, was refused there: the solver is free */
    ck_assert_ok(stochflow_solver_set_param(h.s, STOCHFLOW_PARAM_STEPS, 10));
    sem_post(&cb_release);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_ok(h.rc);
    ck_assert_ok(cb_nested_rc); /* the holding thread's nested call */
    ck_assert_uint_eq(stochflow_model_step(h.m), 1); /* one step: the held one */
    ck_assert_ok(stochflow_model_get_param(&lr, h.m, STOCHFLOW_PARAM_LR));
    ck_assert_double_eq(lr, 1e-3);
    ck_assert_ok(stochflow_model_velocity(v, h.m, 0.5, pts, N)); /* free again */

    /* the solver, held by an integration */
    atomic_store(&cb_armed, 1);
    ck_assert_int_eq(pthread_create(&th, NULL, hold_solver, &h), 0);
    while (sem_wait(&cb_inside) != 0) continue;
    ck_assert_status(stochflow_solver_set_param(h.s, STOCHFLOW_PARAM_STEPS, 20),
                     STOCHFLOW_E_BUSY);
    double nfe;
    ck_assert_status(stochflow_solver_stat(&nfe, h.s, STOCHFLOW_STAT_NFE), STOCHFLOW_E_BUSY);
    ck_assert_status(stochflow_solver_log_prob(lp, NULL, h.s, h.m, pts, N, 0.5),
                     STOCHFLOW_E_BUSY);
    ck_assert_ok(stochflow_model_velocity(v, h.m, 0.5, pts, N)); /* the model is free */
    sem_post(&cb_release);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_ok(h.rc);
    double steps;
    ck_assert_ok(stochflow_solver_get_param(&steps, h.s, STOCHFLOW_PARAM_STEPS));
    ck_assert_double_eq(steps, 10);
    ck_assert_str_eq(stochflow_status_string(STOCHFLOW_E_BUSY), "handle in use by another thread");
    sem_destroy(&cb_inside);
    sem_destroy(&cb_release);
    stochflow_solver_free(h.s);
    stochflow_model_free(h.m);
}
END_TEST

/* Two threads hammering one model: every velocity call either gives the single-threaded
 * answer bit for bit or is refused with BUSY (and refusals are seen); two threads
 * training one model lose no update (the step counter equals the accepted steps). */
#define HAMMER_N 256
static atomic_long hammer_busy; /* refusals seen by either thread in this round */
typedef struct {
    stochflow_model *m;
    const float *x, *ref;
    pthread_barrier_t *go;
    int train;
    long ok, busy, wrong, other;
} hammer;
static void *hammer_run(void *arg) {
    hammer *h = arg;
    float *v = malloc(HAMMER_N * D * sizeof *v);
    pthread_barrier_wait(h->go);
    const double t0 = now_s();
    /* on until this thread had 100 calls accepted (so the handle passes from one thread
     * to the other) and a refusal has been seen, 20 s at most */
    while ((h->ok < 100 || atomic_load(&hammer_busy) == 0) && now_s() - t0 < 20) {
        int rc;
        if (h->train) {
            double loss;
            rc = stochflow_model_train_step(&loss, h->m, h->x, 32, NULL, NULL);
        } else {
            rc = stochflow_model_velocity(v, h->m, 0.25, h->x, HAMMER_N);
        }
        if (rc == STOCHFLOW_E_BUSY) {
            ++h->busy;
            atomic_fetch_add(&hammer_busy, 1);
        } else if (rc != 0) {
            ++h->other;
        } else {
            ++h->ok;
            if (!h->train && memcmp(v, h->ref, HAMMER_N * D * sizeof *v) != 0) ++h->wrong;
        }
    }
    free(v);
    return NULL;
}

START_TEST(hammered_handle_refused) {
    stochflow_model *m = new_model(68, 64);
    ck_assert_int_eq(train_to(m, 3), 0);
    float *x = malloc(HAMMER_N * D * sizeof *x), *ref = malloc(HAMMER_N * D * sizeof *ref);
    batch(x, HAMMER_N, 99);
    ck_assert_ok(stochflow_model_velocity(ref, m, 0.25, x, HAMMER_N));
    for (int train = 0; train < 2; ++train) {
        const uint64_t step0 = stochflow_model_step(m);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        atomic_store(&hammer_busy, 0);
        hammer h[2] = {{m, x, ref, &go, train, 0, 0, 0, 0}, {m, x, ref, &go, train, 0, 0, 0, 0}};
        pthread_t th[2];
        for (int k = 0; k < 2; ++k) ck_assert_int_eq(pthread_create(&th[k], NULL, hammer_run, &h[k]), 0);
        for (int k = 0; k < 2; ++k) ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        pthread_barrier_destroy(&go);
        long ok = h[0].ok + h[1].ok, busy = h[0].busy + h[1].busy;
        fprintf(stderr, "hammer (%s, one model, two threads): %ld calls accepted, %ld refused\n",
                train ? "train_step" : "velocity", ok, busy);
        ck_assert_msg(h[0].wrong + h[1].wrong == 0, "%ld wrong velocities of %ld",
                      h[0].wrong + h[1].wrong, ok);
        ck_assert_int_eq(h[0].other + h[1].other, 0);
        ck_assert(h[0].ok >= 100 && h[1].ok >= 100);
        ck_assert_msg(busy > 0, "no refusal seen (%s)", train ? "training" : "velocity");
        if (train)
            ck_assert_msg(stochflow_model_step(m) - step0 == (uint64_t)ok,
                          "%ld accepted steps, the counter moved by %llu", ok,
                          (unsigned long long)(stochflow_model_step(m) - step0));
    }
    free(x);
    free(ref);
    stochflow_model_free(m);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("reliability");
    TCase *tc = tcase_create("alloc");
    tcase_add_test(tc, alloc_constructors);
    tcase_add_test(tc, alloc_model_calls);
    tcase_add_test(tc, alloc_solver_calls);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_test(tc, hostile_sizes_rejected_before_allocating);
    tcase_add_test(tc, nonfinite_checkpoint_state_rejected);
    tcase_add_test(tc, loaded_state_validated_whole);
    tcase_add_test(tc, coefficient_update_keeps_finite_state);
    tcase_add_test(tc, thread_count_not_restored);
    tcase_add_test(tc, unknown_content_carried);
    suite_add_tcase(s, tc);
    tc = tcase_create("crash");
    tcase_add_test(tc, sigkill_during_saves);
    tcase_add_test(tc, full_disk_and_unwritable_dir);
    tcase_add_test(tc, save_refuses_non_regular_files);
    tcase_add_test(tc, save_through_symlink_writes_target);
    tcase_add_test(tc, save_keeps_mode_and_owner);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("nonfinite");
    tcase_add_test(tc, nonfinite_inputs);
    tcase_add_test(tc, nonfinite_callbacks);
    tcase_add_test(tc, diverging_huge_weights);
    tcase_add_test(tc, diverging_overflowing_update);
    tcase_add_test(tc, diverging_learning_rate);
    suite_add_tcase(s, tc);
    tc = tcase_create("explode");
    tcase_add_test(tc, exploding_adaptive);
    tcase_add_test(tc, stiff_hits_max_steps);
    tcase_add_test(tc, exploding_fixed_step);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_add_test(tc, parallel_equals_serial);
    tcase_add_test(tc, busy_handle_refused);
    tcase_add_test(tc, hammered_handle_refused);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
