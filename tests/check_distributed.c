/* check_distributed.c - the data-parallel seam (doc/distributed.md): with
 * STOCHFLOW_PARAM_GRAD_BLOCK set, the gradient of one process equals, bit for bit, the
 * partial gradients of 2, 3 or 4 row ranges (stochflow_grad_share) combined along the
 * tree of stochflow_grad_tree_split, at 1 and 2 threads; one block equals the unblocked
 * gradient; what cannot be split is refused. */
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

Suite *make_suite(void) {
    Suite *s = suite_create("distributed");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, tree_and_shares);
    tcase_add_test(tc, one_process_equals_split);
    tcase_add_test(tc, uneven_batch_equals_split);
    tcase_add_test(tc, unet_equals_split);
    tcase_add_test(tc, one_block_is_unblocked);
    tcase_add_test(tc, driver_steps_equal_train_step);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, refusals);
    suite_add_tcase(s, te);
    return s;
}
