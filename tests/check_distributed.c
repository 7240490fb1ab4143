/* check_distributed.c - the data-parallel seam (doc/distributed.md): with
 * STOCHFLOW_PARAM_GRAD_BLOCK set, the gradient of one process equals, bit for bit, the
 * partial gradients of 2, 3 or 4 row ranges (stochflow_grad_share) combined along the
 * tree of stochflow_grad_tree_split, at 1 and 2 threads; one block equals the unblocked
 * gradient; what cannot be split is refused; the trainer's data-parallel callbacks
 * (stochflow_trainer_set_parallel) on two threads equal one process's fit. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <string.h>

#include "harness.h"

#define D 2
#define N 64
#define B 8

static stochflow_model *new_model(int threads) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t hidden[] = {128, 128}; /* 17k parameters: the 2-thread loops split */
    ck_assert_ok(stochflow_config_new(&c, D));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, hidden));
    ck_assert_ok(stochflow_config_set_seed(c, 11));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, threads));
    return m;
}

/* A tiny U-Net on 1 x 8 x 8 images (d = 64), attention at the lower level. */
static stochflow_model *new_unet(int threads) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t mult[] = {1, 2};
    ck_assert_ok(stochflow_config_new(&c, 64));
    ck_assert_ok(set_unet_shape(c, 1, 8, 8, 8, 2, mult, 1, 2u, 4));
    ck_assert_ok(stochflow_config_set_seed(c, 12));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, threads));
    return m;
}

static float *batch_d(size_t n, size_t d, uint64_t stream) {
    float *x = malloc(n * d * sizeof *x);
    ck_assert_ptr_nonnull(x);
    ck_assert_ok(stochflow_random_normal(x, n * d, 5, stream));
    for (size_t i = 0; i < n * d; ++i) x[i] = 0.5f * x[i] + (i % 2 ? 1.0f : -1.0f);
    return x;
}

static float *batch(size_t n, uint64_t stream) { return batch_d(n, D, stream); }

/* The gradient and loss numerator of one "process" per range, as a driver holds them. */
typedef struct {
    float *g;
    double loss;
} part;

/* Combine parts [lo, hi) along the tree into parts[lo] (left += right). */
static void combine(part *p, size_t lo, size_t hi, size_t np) {
    if (hi - lo < 2) return;
    size_t mid = stochflow_grad_tree_split(lo, hi);
    combine(p, lo, mid, np);
    combine(p, mid, hi, np);
    for (size_t i = 0; i < np; ++i) p[lo].g[i] += p[mid].g[i];
    p[lo].loss += p[mid].loss;
}

/* The combined gradient of `size` processes over a batch of n rows into out; the loss. */
static double split_gradient(float *out, stochflow_model *m, const float *x1, size_t n,
                             size_t size) {
    size_t np = stochflow_model_num_params(m), active = 0, d = stochflow_model_dim(m);
    double blk;
    ck_assert_ok(stochflow_model_get_param(&blk, m, STOCHFLOW_PARAM_GRAD_BLOCK));
    part p[8];
    ck_assert_uint_le(size, 8);
    for (size_t r = 0; r < size; ++r) {
        size_t row0, rows;
        ck_assert_ok(stochflow_grad_share(&row0, &rows, &active, n, (size_t)blk, r, size));
        p[r].g = calloc(np, sizeof(float));
        p[r].loss = 0;
        if (rows == 0) continue;
        ck_assert_ok(stochflow_model_partial_gradient(&p[r].loss, m, x1 + row0 * d, rows, NULL,
                                                      NULL, row0, n));
        float *g;
        ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
        memcpy(p[r].g, g, np * sizeof(float));
    }
    combine(p, 0, active, np);
    memcpy(out, p[0].g, np * sizeof(float));
    double loss = p[0].loss / (double)n;
    for (size_t r = 0; r < size; ++r) free(p[r].g);
    return loss;
}

START_TEST(tree_and_shares) {
    ck_assert_uint_eq(stochflow_grad_tree_split(0, 1), 0);
    ck_assert_uint_eq(stochflow_grad_tree_split(0, 2), 1);
    ck_assert_uint_eq(stochflow_grad_tree_split(0, 5), 4);
    ck_assert_uint_eq(stochflow_grad_tree_split(4, 7), 6);
    ck_assert_uint_eq(stochflow_grad_tree_split(8, 16), 12);
    size_t row0, rows, active;
    /* 64 rows, 8 blocks, 4 processes: 2 blocks each */
    ck_assert_ok(stochflow_grad_share(&row0, &rows, &active, 64, 8, 3, 4));
    ck_assert_uint_eq(row0, 48);
    ck_assert_uint_eq(rows, 16);
    ck_assert_uint_eq(active, 4);
    /* 50 rows, 7 blocks, 3 processes: 4 blocks each (a power of two), so 2 active */
    ck_assert_ok(stochflow_grad_share(&row0, &rows, &active, 50, 8, 1, 3));
    ck_assert_uint_eq(row0, 32);
    ck_assert_uint_eq(rows, 18);
    ck_assert_uint_eq(active, 2);
    ck_assert_ok(stochflow_grad_share(&row0, &rows, &active, 50, 8, 2, 3));
    ck_assert_uint_eq(rows, 0);
    ck_assert_status(stochflow_grad_share(&row0, &rows, NULL, 50, 8, 3, 3),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_grad_share(&row0, &rows, NULL, 50, 0, 0, 1),
                     STOCHFLOW_E_INVALID);
}
END_TEST

/* One process = 2 = 3 = 4 processes, bit for bit, at 1 and 2 threads; the loss too. */
static void check_splits(stochflow_model *(*make)(int), size_t n, size_t block) {
    stochflow_model *m = make(1);
    float *x1 = batch_d(n, stochflow_model_dim(m), 3);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, (double)block));
    size_t np = stochflow_model_num_params(m);
    float *g1 = malloc(np * sizeof(float)), *gs = malloc(np * sizeof(float)), *g;
    double loss1, loss_s;
    ck_assert_ok(stochflow_model_compute_gradient(&loss1, m, x1, n, NULL, NULL));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    memcpy(g1, g, np * sizeof(float));
    for (size_t size = 1; size <= 4; ++size) {
        loss_s = split_gradient(gs, m, x1, n, size);
        ck_assert_msg(memcmp(g1, gs, np * sizeof(float)) == 0,
                      "gradient of %zu processes differs from one process (n = %zu)", size, n);
        ck_assert_msg(memcmp(&loss1, &loss_s, sizeof loss1) == 0,
                      "loss of %zu processes %.17g != %.17g", size, loss_s, loss1);
    }
    /* 2 threads: the same bits, one process and split */
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 2));
    double loss2;
    ck_assert_ok(stochflow_model_compute_gradient(&loss2, m, x1, n, NULL, NULL));
    ck_assert_msg(memcmp(g1, g, np * sizeof(float)) == 0, "2 threads differ from 1");
    ck_assert_msg(loss2 == loss1, "loss at 2 threads differs");
    loss_s = split_gradient(gs, m, x1, n, 4);
    ck_assert_msg(memcmp(g1, gs, np * sizeof(float)) == 0, "4 processes x 2 threads differ");
    /* the blocked gradient is the gradient: close to the unblocked one */
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, 0));
    double loss0;
    ck_assert_ok(stochflow_model_compute_gradient(&loss0, m, x1, n, NULL, NULL));
    ck_assert_double_eq_tol(loss0, loss1, 1e-12 * fabs(loss1) + 1e-12);
    double num = 0, den = 0;
    for (size_t i = 0; i < np; ++i) {
        num += ((double)g[i] - g1[i]) * ((double)g[i] - g1[i]);
        den += (double)g[i] * g[i];
    }
    ck_assert_msg(sqrt(num) <= 1e-5 * sqrt(den), "blocked gradient off by %g of %g",
                  sqrt(num), sqrt(den));
    free(g1);
    free(gs);
    free(x1);
    stochflow_model_free(m);
}

START_TEST(one_process_equals_split) { check_splits(new_model, N, B); }
END_TEST

/* 7 blocks, the last of 2 rows */
START_TEST(uneven_batch_equals_split) { check_splits(new_model, 50, B); }
END_TEST

/* The U-Net threads its own kernels: 12 images in blocks of 2 (6 blocks) */
START_TEST(unet_equals_split) { check_splits(new_unet, 12, 2); }
END_TEST

/* One block (GRAD_BLOCK >= n) is the unblocked gradient, bit for bit. */
START_TEST(one_block_is_unblocked) {
    float *x1 = batch(N, 4);
    stochflow_model *m = new_model(1);
    size_t np = stochflow_model_num_params(m);
    float *g, *g0 = malloc(np * sizeof(float));
    double l0, l1;
    ck_assert_ok(stochflow_model_compute_gradient(&l0, m, x1, N, NULL, NULL));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    memcpy(g0, g, np * sizeof(float));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, N));
    ck_assert_ok(stochflow_model_compute_gradient(&l1, m, x1, N, NULL, NULL));
    ck_assert_msg(memcmp(g0, g, np * sizeof(float)) == 0, "one block differs from unblocked");
    ck_assert_msg(l0 == l1, "loss differs");
    free(g0);
    free(x1);
    stochflow_model_free(m);
}
END_TEST

/* A driver's steps (partials, combine, install, record, apply) = train_step's. */
START_TEST(driver_steps_equal_train_step) {
    stochflow_model *a = new_model(1), *b = new_model(1);
    ck_assert_ok(stochflow_model_set_param(a, STOCHFLOW_PARAM_GRAD_BLOCK, B));
    ck_assert_ok(stochflow_model_set_param(b, STOCHFLOW_PARAM_GRAD_BLOCK, B));
    size_t np = stochflow_model_num_params(a);
    float *g = malloc(np * sizeof(float)), *gb, *pa, *pb;
    for (int s = 0; s < 3; ++s) {
        float *x1 = batch(N, 10 + (uint64_t)s);
        double la, lb;
        ck_assert_ok(stochflow_model_train_step(&la, a, x1, N, NULL, NULL));
        lb = split_gradient(g, b, x1, N, 4);
        ck_assert_ok(stochflow_model_gradients(&gb, NULL, b));
        memcpy(gb, g, np * sizeof(float));
        ck_assert_ok(stochflow_model_record_loss(b, lb));
        ck_assert_ok(stochflow_model_apply_gradient(b));
        ck_assert_msg(la == lb, "step %d: loss %.17g != %.17g", s, la, lb);
        free(x1);
    }
    ck_assert_ok(stochflow_model_parameters(&pa, NULL, a));
    ck_assert_ok(stochflow_model_parameters(&pb, NULL, b));
    ck_assert_msg(memcmp(pa, pb, np * sizeof(float)) == 0, "weights differ after 3 steps");
    double ea, eb;
    ck_assert_ok(stochflow_model_path_length(&ea, NULL, a));
    ck_assert_ok(stochflow_model_path_length(&eb, NULL, b));
    ck_assert_msg(ea == eb, "path-length estimates differ");
    free(g);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

START_TEST(refusals) {
    float *x1 = batch(N, 6);
    stochflow_model *m = new_model(1);
    double l;
    /* no GRAD_BLOCK: a partial gradient has no tree */
    ck_assert_status(stochflow_model_partial_gradient(&l, m, x1, 16, NULL, NULL, 0, N),
                     STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, B));
    size_t np = stochflow_model_num_params(m);
    float *g, *keep = malloc(np * sizeof(float));
    ck_assert_ok(stochflow_model_compute_gradient(&l, m, x1, N, NULL, NULL));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    memcpy(keep, g, np * sizeof(float));
    /* ranges that are not one node: misaligned, straddling, past the end */
    ck_assert_status(stochflow_model_partial_gradient(&l, m, x1, 16, NULL, NULL, 4, N),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_partial_gradient(&l, m, x1, 16, NULL, NULL, 8, N),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_partial_gradient(&l, m, x1, 24, NULL, NULL, 0, N),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_partial_gradient(&l, m, x1, 16, NULL, NULL, 56, N),
                     STOCHFLOW_E_INVALID);
    /* a bad row: refused, the gradient buffer untouched */
    x1[2 * D + 1] = NAN;
    ck_assert_status(stochflow_model_partial_gradient(&l, m, x1, 16, NULL, NULL, 0, N),
                     STOCHFLOW_E_NONFINITE);
    ck_assert_msg(memcmp(keep, g, np * sizeof(float)) == 0, "gradient changed on failure");
    x1[2 * D + 1] = 0.5f;
    /* a coupling pairs the whole batch */
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_COUPLING, STOCHFLOW_COUPLING_OT));
    ck_assert_status(stochflow_model_compute_gradient(&l, m, x1, N, NULL, NULL),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_model_record_loss(m, NAN), STOCHFLOW_E_INVALID);
    stochflow_model_free(m);
    /* the learnable interpolant's coefficient gradient is not reduced */
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_config_new(&c, D));
    ck_assert_ok(stochflow_config_set_fourier_interpolant(c, STOCHFLOW_INTERP_TRIG, 2));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, B));
    ck_assert_status(stochflow_model_train_step(&l, m, x1, N, NULL, NULL),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_uint_eq(stochflow_model_step(m), 0);
    stochflow_model_free(m);
    free(keep);
    free(x1);
}
END_TEST

/* ---- the trainer across "processes": two threads, each with its own model ------------- */
/* The callbacks of stochflow_trainer_set_parallel over shared memory and a barrier: each
 * thread computes its share; sums are left + right as the tree over two ranks says. */
typedef struct {
    pthread_barrier_t bar;
    size_t np, d;
    float *g[2];
    double loss[2], *v[2];
    int status[2], flag[2];
    size_t lo[2], hi[2];
    const float *x; /* the data the rows callback hands out */
    size_t reads[2];
} world;

typedef struct {
    world *w;
    int rank, rc;
    stochflow_model *m;
    stochflow_trainer *tr;
    const float *x;
    size_t n;
} proc;

static int par_step(void *user, int status, double *loss, stochflow_model *m, const float *x,
                    size_t rows, size_t row0, size_t n) {
    proc *p = user;
    world *w = p->w;
    double sum = 0;
    int st = status;
    float *g;
    stochflow_model_gradients(&g, NULL, m);
    if (st == 0 && rows > 0)
        st = stochflow_model_partial_gradient(&sum, m, x, rows, NULL, NULL, row0, n);
    w->g[p->rank] = rows > 0 && st == 0 ? g : NULL;
    w->loss[p->rank] = sum;
    w->status[p->rank] = st;
    pthread_barrier_wait(&w->bar);
    int fail = w->status[0] < 0 || w->status[1] < 0;
    float *tot = malloc(w->np * sizeof *tot);
    double l = w->loss[0] + (w->g[1] ? w->loss[1] : 0.0);
    for (size_t i = 0; !fail && i < w->np; ++i)
        tot[i] = w->g[1] ? w->g[0][i] + w->g[1][i] : w->g[0][i];
    pthread_barrier_wait(&w->bar); /* everyone has read both buffers */
    if (!fail) memcpy(g, tot, w->np * sizeof *g);
    free(tot);
    if (fail) return -1;
    *loss = l / (double)n;
    if (stochflow_model_record_loss(m, *loss) < 0 || stochflow_model_apply_gradient(m) < 0)
        return -1;
    return 0;
}

static int par_share(void *user, int status, double *v, size_t n, size_t lo, size_t hi) {
    proc *p = user;
    world *w = p->w;
    (void)n;
    w->v[p->rank] = v;
    w->lo[p->rank] = lo;
    w->hi[p->rank] = hi;
    w->status[p->rank] = status;
    pthread_barrier_wait(&w->bar);
    int o = 1 - p->rank;
    if (w->status[0] == 0 && w->status[1] == 0)
        memcpy(v + w->lo[o], w->v[o] + w->lo[o], (w->hi[o] - w->lo[o]) * sizeof *v);
    pthread_barrier_wait(&w->bar);
    return w->status[0] < 0 || w->status[1] < 0 ? -1 : 0;
}

static int par_agree(void *user, int flag) {
    proc *p = user;
    world *w = p->w;
    w->flag[p->rank] = flag;
    pthread_barrier_wait(&w->bar);
    int f = w->flag[0] > w->flag[1] ? w->flag[0] : w->flag[1];
    pthread_barrier_wait(&w->bar);
    return f;
}

static int par_rows(void *user, float *dst, const size_t *idx, size_t k, int from_val) {
    proc *p = user;
    if (from_val) return -1; /* a fraction split: every row comes from the data */
    for (size_t j = 0; j < k; ++j)
        memcpy(dst + j * p->w->d, p->w->x + idx[j] * p->w->d, p->w->d * sizeof *dst);
    p->w->reads[p->rank] += k;
    return 0;
}

static stochflow_trainer *table_trainer(void) {
    stochflow_trainer *tr = NULL;
    ck_assert_ok(stochflow_trainer_new(&tr));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_BATCH_SIZE, 64));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_MAX_STEPS, 400));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_EVAL_EVERY, 5));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_PATIENCE, 2));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_FRACTION, 0.2));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_SUBSET, 100));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_VAL_BLOCK, 16));
    ck_assert_ok(stochflow_trainer_set_param(tr, STOCHFLOW_TRAINER_STANDARDIZE, 1));
    return tr;
}

static stochflow_model *table_model(void) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t hidden[] = {16, 16};
    ck_assert_ok(stochflow_config_new(&c, D));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, hidden));
    ck_assert_ok(stochflow_config_set_seed(c, 3));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_BLOCK, 16));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 0.02));
    return m;
}

static void *run_proc(void *arg) {
    proc *p = arg;
    p->rc = stochflow_trainer_fit(p->tr, p->m, p->x, p->n, NULL, 0);
    return NULL;
}

/* Two processes (threads) fitting with the parallel callbacks = one process fitting alone,
 * bit for bit: weights (the best, installed), the standardization, the validation numbers,
 * the best step and the early stop; the rows callback asked only for a process's rows. */
START_TEST(trainer_parallel_equals_one_process) {
    const size_t n = 1000;
    float *x = batch(n, 21);
    for (size_t i = 0; i < n; ++i) x[i * D + 1] = 3.0f * x[i * D + 1] + 7.0f; /* map fitted */
    stochflow_model *one = table_model();
    stochflow_trainer *t1 = table_trainer();
    ck_assert_ok(stochflow_trainer_fit(t1, one, x, n, NULL, 0));
    world w = {.np = stochflow_model_num_params(one), .d = D, .x = x};
    pthread_barrier_init(&w.bar, NULL, 2);
    proc p[2];
    pthread_t th[2];
    for (int r = 0; r < 2; ++r) {
        p[r] = (proc){.w = &w, .rank = r, .m = table_model(), .tr = table_trainer(), .n = n,
                      /* rank 0 holds the rows, rank 1 reads by the callback */
                      .x = r == 0 ? x : NULL};
        stochflow_trainer_parallel cb = {.rank = (size_t)r, .size = 2, .step = par_step,
                                         .share = par_share, .agree = par_agree,
                                         .rows = par_rows};
        ck_assert_ok(stochflow_trainer_set_parallel(p[r].tr, &cb, &p[r]));
    }
    for (int r = 0; r < 2; ++r) pthread_create(&th[r], NULL, run_proc, &p[r]);
    for (int r = 0; r < 2; ++r) pthread_join(th[r], NULL);
    const int keys[] = {STOCHFLOW_TRAINER_STAT_FINAL_NLL, STOCHFLOW_TRAINER_STAT_FINAL_SE,
                        STOCHFLOW_TRAINER_STAT_BEST_NLL,  STOCHFLOW_TRAINER_STAT_BEST_STEP,
                        STOCHFLOW_TRAINER_STAT_STOP,      STOCHFLOW_TRAINER_STAT_STEPS,
                        STOCHFLOW_TRAINER_STAT_LAST_LOSS};
    double a, b, stop, best, steps;
    ck_assert_ok(stochflow_trainer_stat(&stop, t1, STOCHFLOW_TRAINER_STAT_STOP));
    ck_assert_ok(stochflow_trainer_stat(&best, t1, STOCHFLOW_TRAINER_STAT_BEST_STEP));
    ck_assert_ok(stochflow_trainer_stat(&steps, t1, STOCHFLOW_TRAINER_STAT_STEPS));
    ck_assert_msg(stop == STOCHFLOW_TRAINER_STOP_PATIENCE && best < steps,
                  "the run should stop early with an earlier best (stop %g, best %g of %g)",
                  stop, best, steps);
    float *pa, *pb;
    double sa[2 * D], sb[2 * D];
    ck_assert_ok(stochflow_model_parameters(&pa, NULL, one));
    ck_assert_int_eq(stochflow_model_standardization(sa, sa + D, one), 1);
    for (int r = 0; r < 2; ++r) {
        ck_assert_msg(p[r].rc == 0, "rank %d: fit returned %d", r, p[r].rc);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; ++k) {
            ck_assert_ok(stochflow_trainer_stat(&a, t1, keys[k]));
            ck_assert_ok(stochflow_trainer_stat(&b, p[r].tr, keys[k]));
            ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "rank %d: stat %d %.17g != %.17g", r,
                          keys[k], b, a);
        }
        ck_assert_ok(stochflow_model_parameters(&pb, NULL, p[r].m));
        ck_assert_msg(memcmp(pa, pb, w.np * sizeof(float)) == 0, "rank %d: weights differ", r);
        ck_assert_int_eq(stochflow_model_standardization(sb, sb + D, p[r].m), 1);
        ck_assert_msg(memcmp(sa, sb, sizeof sa) == 0, "rank %d: standardization differs", r);
    }
    /* rank 1 read its half of each batch and its validation solves, not the data */
    ck_assert_uint_eq(w.reads[0], 0);
    ck_assert_msg(w.reads[1] > 0 && w.reads[1] < (size_t)steps * 32 + 200 * 10,
                  "rank 1 read %zu rows", w.reads[1]);
    /* a non-finite row that only rank 0 sees (rank 1 reads through the callback): both
     * fail, neither waits for the other in a later call */
    x[7 * D + 1] = NAN;
    for (int r = 0; r < 2; ++r) pthread_create(&th[r], NULL, run_proc, &p[r]);
    for (int r = 0; r < 2; ++r) pthread_join(th[r], NULL);
    ck_assert_int_eq(p[0].rc, STOCHFLOW_E_NONFINITE);
    ck_assert_int_eq(p[1].rc, STOCHFLOW_E_CALLBACK);
    x[7 * D + 1] = 0.0f;
    /* without GRAD_BLOCK the processes have no blocks to share */
    ck_assert_ok(stochflow_model_set_param(p[1].m, STOCHFLOW_PARAM_GRAD_BLOCK, 0));
    ck_assert_status(stochflow_trainer_fit(p[1].tr, p[1].m, x, n, NULL, 0), STOCHFLOW_E_INVALID);
    pthread_barrier_destroy(&w.bar);
    for (int r = 0; r < 2; ++r) {
        stochflow_model_free(p[r].m);
        stochflow_trainer_free(p[r].tr);
    }
    stochflow_model_free(one);
    stochflow_trainer_free(t1);
    free(x);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("distributed");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, tree_and_shares);
    tcase_add_test(tc, one_process_equals_split);
    tcase_add_test(tc, uneven_batch_equals_split);
    tcase_add_test(tc, unet_equals_split);
    tcase_add_test(tc, one_block_is_unblocked);
    tcase_add_test(tc, driver_steps_equal_train_step);
    tcase_add_test(tc, trainer_parallel_equals_one_process);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, refusals);
    suite_add_tcase(s, te);
    return s;
}
