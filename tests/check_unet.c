/* check_unet.c - the U-Net velocity field (issue 8): configuration, parameter count,
 * finite-difference checks of the whole network (loss gradient, VJP, exact divergence),
 * checkpoints, thread invariance and a tiny model that overfits a few images. */
#include <string.h>

#include "harness.h"

/* A tiny U-Net: c x s x s images, base width, 2 levels (1, 2), attention at level 1. */
static stochflow_model *tiny(size_t c, size_t s, size_t base, uint32_t attn, uint64_t seed) {
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, c * s * s));
    const size_t mult[2] = {1, 2};
    ck_assert_ok(stochflow_config_set_unet(cfg, c, s, s, base, 2, mult, 1, attn, 2));
    ck_assert_ok(stochflow_config_set_seed(cfg, seed));
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    return m;
}

/* Replace the (partly zero) initial weights by random ones, so that every parameter
 * influences the output and the finite-difference checks see every path. */
static void randomize(stochflow_model *m, float scale, uint64_t seed) {
    float *p;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_random_normal(p, np, seed, 1));
    for (size_t i = 0; i < np; ++i) p[i] *= scale;
}

START_TEST(config_errors) {
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, 784));
    ck_assert_int_eq(stochflow_config_arch(cfg), STOCHFLOW_ARCH_MLP);
    const size_t m3[3] = {1, 2, 2}, bad[3] = {1, 0, 2};
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 3, m3, 1, 4, 8), 0);
    ck_assert_int_eq(stochflow_config_arch(cfg), STOCHFLOW_ARCH_UNET);
    size_t c, h, w, base, lv, mult[6], blocks, groups;
    uint32_t attn;
    ck_assert_ok(stochflow_config_unet(&c, &h, &w, &base, &lv, mult, &blocks, &attn, &groups, cfg));
    ck_assert(c == 1 && h == 28 && w == 28 && base == 32 && lv == 3 && mult[1] == 2 &&
              blocks == 1 && attn == 4 && groups == 8);
    /* dimension mismatch, levels, divisibility, groups, multipliers, attention mask */
    ck_assert_status(stochflow_config_set_unet(cfg, 3, 28, 28, 32, 3, m3, 1, 4, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert(strstr(stochflow_last_error_message(), "dimension") != NULL);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 0, m3, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 7, m3, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    const size_t m4[4] = {1, 1, 1, 1};
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 4, m4, 1, 0, 8),
                     STOCHFLOW_E_INVALID); /* 28 is not divisible by 8 */
    ck_assert(strstr(stochflow_last_error_message(), "divisible") != NULL);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 3, m3, 1, 0, 5),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 31, 3, m3, 1, 0, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 3, bad, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 3, m3, 0, 0, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 3, m3, 1, 8, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_unet(cfg, 1, 28, 28, 32, 3, NULL, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_unet(NULL, 1, 28, 28, 32, 3, m3, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    /* the failed calls left the valid U-Net in place */
    ck_assert_ok(stochflow_config_unet(NULL, NULL, NULL, &base, NULL, NULL, NULL, NULL, NULL, cfg));
    ck_assert_uint_eq(base, 32);
    /* the learnable interpolant is refused with a U-Net */
    ck_assert_ok(stochflow_config_set_fourier_interpolant(cfg, STOCHFLOW_INTERP_LINEAR, 2));
    stochflow_model *m = NULL;
    ck_assert_status(stochflow_model_new(&m, cfg), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_ptr_null(m);
    stochflow_config_free(cfg);
    ck_assert_ok(stochflow_config_new(&cfg, 4));
    ck_assert_status(stochflow_config_unet(&c, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, cfg),
                     STOCHFLOW_E_INVALID);
    stochflow_config_free(cfg);
}
END_TEST

/* Parameter count of the smallest U-Net, counted by hand (doc/unet.md):
 *   time MLP 2->8->8: 24 + 72; input conv 1->2 (3x3): 20;
 *   residual block 2->2: GN 4 + conv 38 + time projection 18 + GN 4 + conv 38 = 102;
 *   one down block + two middle blocks: 3 x 102;
 *   two up blocks 4->2 (after concatenation): GN 8 + conv 74 + 18 + GN 4 + conv 38 +
 *   1x1 skip 10 = 152 each; output GN 4 + conv 2->1 19.  Total 749. */
START_TEST(param_count) {
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, 4));
    const size_t mult[1] = {1};
    ck_assert_ok(stochflow_config_set_unet(cfg, 1, 2, 2, 2, 1, mult, 1, 0, 1));
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_new(&m, cfg));
    ck_assert_uint_eq(stochflow_model_num_params(m), 749);
    /* zero-initialised output: the initial velocity is exactly 0 */
    float x[4] = {0.1f, -0.2f, 0.3f, 0.4f}, v[4];
    ck_assert_ok(stochflow_model_velocity(v, m, 0.5, x, 1));
    for (int i = 0; i < 4; ++i) ck_assert(v[i] == 0.0f);
    stochflow_model_free(m);
    stochflow_config_free(cfg);
}
END_TEST

/* Fixed batch: images x1, base samples x0 and times t. */
static void batch(float *x1, float *x0, float *t, size_t n, size_t d) {
    ck_assert_ok(stochflow_random_normal(x1, n * d, 7, 2));
    ck_assert_ok(stochflow_random_normal(x0, n * d, 7, 3));
    for (size_t i = 0; i < n; ++i) t[i] = 0.15f + 0.3f * (float)i;
}

START_TEST(loss_gradient_fd) {
    const size_t c = 1, s = 4, d = c * s * s, n = 3;
    stochflow_model *m = tiny(c, s, 4, 2u, 11);
    randomize(m, 0.3f, 5);
    float x1[3 * 16], x0[3 * 16], t[3];
    batch(x1, x0, t, n, d);
    double loss;
    ck_assert_ok(stochflow_model_compute_gradient(&loss, m, x1, n, x0, t));
    float *p, *g;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    float *gc = malloc(np * sizeof *gc);
    memcpy(gc, g, np * sizeof *gc);
    /* every 7th parameter, plus the last ones (output convolution) */
    size_t checked = 0;
    for (size_t i = 0; i < np; i += (i + 40 > np ? 1 : 7)) {
        const float keep = p[i], eps = 1e-2f;
        double lp, lm;
        p[i] = keep + eps;
        ck_assert_ok(stochflow_model_loss(&lp, m, x1, n, x0, t));
        p[i] = keep - eps;
        ck_assert_ok(stochflow_model_loss(&lm, m, x1, n, x0, t));
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        ck_assert_msg(fabs(gc[i] - fd) <= 3e-3 + 2e-2 * fabs(fd),
                      "param %zu of %zu: gradient %g vs finite difference %g", i, np,
                      (double)gc[i], fd);
        ++checked;
    }
    ck_assert_uint_gt(checked, 100);
    free(gc);
    stochflow_model_free(m);
}
END_TEST

START_TEST(vjp_fd) {
    const size_t c = 2, s = 4, d = c * s * s, n = 2;
    stochflow_model *m = tiny(c, s, 4, 2u, 12);
    randomize(m, 0.3f, 6);
    float x[2 * 32], u[2 * 32], vjp[2 * 32], vp[2 * 32], vm[2 * 32];
    ck_assert_ok(stochflow_random_normal(x, n * d, 8, 1));
    ck_assert_ok(stochflow_random_normal(u, n * d, 8, 2));
    ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, 0.4, x, u, n));
    const float h = 1e-2f;
    for (size_t k = 0; k < d; ++k) {
        float xp[2 * 32], xm[2 * 32];
        memcpy(xp, x, sizeof xp);
        memcpy(xm, x, sizeof xm);
        for (size_t i = 0; i < n; ++i) {
            xp[i * d + k] += h;
            xm[i * d + k] -= h;
        }
        ck_assert_ok(stochflow_model_velocity(vp, m, 0.4, xp, n));
        ck_assert_ok(stochflow_model_velocity(vm, m, 0.4, xm, n));
        for (size_t i = 0; i < n; ++i) {
            double fd = 0;
            for (size_t j = 0; j < d; ++j)
                fd += (double)u[i * d + j] * (vp[i * d + j] - vm[i * d + j]) / (2.0 * h);
            ck_assert_msg(fabs(vjp[i * d + k] - fd) <= 3e-3 + 2e-2 * fabs(fd),
                          "vjp[%zu,%zu] %g vs fd %g", i, k, (double)vjp[i * d + k], fd);
        }
    }
    stochflow_model_free(m);
}
END_TEST

START_TEST(divergence_fd) {
    const size_t c = 1, s = 4, d = c * s * s, n = 2;
    stochflow_model *m = tiny(c, s, 4, 2u, 13);
    randomize(m, 0.3f, 7);
    float x[2 * 16], div[2], v[2 * 16], vp[2 * 16], vm[2 * 16];
    ck_assert_ok(stochflow_random_normal(x, n * d, 9, 1));
    ck_assert_ok(stochflow_model_divergence(div, v, m, 0.7, x, n));
    double fd[2] = {0, 0};
    const float h = 1e-2f;
    for (size_t k = 0; k < d; ++k) {
        float xp[2 * 16], xm[2 * 16];
        memcpy(xp, x, sizeof xp);
        memcpy(xm, x, sizeof xm);
        for (size_t i = 0; i < n; ++i) {
            xp[i * d + k] += h;
            xm[i * d + k] -= h;
        }
        ck_assert_ok(stochflow_model_velocity(vp, m, 0.7, xp, n));
        ck_assert_ok(stochflow_model_velocity(vm, m, 0.7, xm, n));
        for (size_t i = 0; i < n; ++i) fd[i] += (vp[i * d + k] - vm[i * d + k]) / (2.0 * h);
    }
    for (size_t i = 0; i < n; ++i)
        ck_assert_msg(fabs(div[i] - fd[i]) <= 5e-3 + 2e-2 * fabs(fd[i]), "div[%zu] %g vs fd %g",
                      i, (double)div[i], fd[i]);
    stochflow_model_free(m);
}
END_TEST

START_TEST(checkpoint_roundtrip) {
    const size_t c = 1, s = 4, d = 16, n = 2;
    stochflow_model *m = tiny(c, s, 4, 2u, 14);
    randomize(m, 0.3f, 8);
    float x1[32], x0[32], t[2];
    batch(x1, x0, t, n, d);
    double loss;
    ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, x0, t));
    size_t size, written;
    ck_assert_ok(stochflow_model_serialized_size(&size, m));
    unsigned char *buf = malloc(size);
    ck_assert_ok(stochflow_model_save_buffer(&written, m, buf, size));
    stochflow_model *r = NULL;
    ck_assert_ok(stochflow_model_load_buffer(&r, buf, written));
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_model_config(&cfg, r));
    ck_assert_int_eq(stochflow_config_arch(cfg), STOCHFLOW_ARCH_UNET);
    size_t base, mult[6];
    uint32_t attn;
    ck_assert_ok(stochflow_config_unet(NULL, NULL, NULL, &base, NULL, mult, NULL, &attn, NULL, cfg));
    ck_assert(base == 4 && mult[0] == 1 && mult[1] == 2 && attn == 2u);
    stochflow_config_free(cfg);
    float v1[32], v2[32];
    ck_assert_ok(stochflow_model_velocity(v1, m, 0.3, x1, n));
    ck_assert_ok(stochflow_model_velocity(v2, r, 0.3, x1, n));
    ck_assert(memcmp(v1, v2, sizeof v1) == 0);
    /* the next step continues bit for bit */
    double l1, l2;
    ck_assert_ok(stochflow_model_train_step(&l1, m, x1, n, x0, t));
    ck_assert_ok(stochflow_model_train_step(&l2, r, x1, n, x0, t));
    ck_assert(l1 == l2);
    /* a flipped bit is refused (checksum) */
    buf[40] ^= 1;
    stochflow_model *bad = NULL;
    ck_assert_status(stochflow_model_load_buffer(&bad, buf, written), STOCHFLOW_E_FORMAT);
    free(buf);
    stochflow_model_free(r);
    stochflow_model_free(m);
}
END_TEST

START_TEST(threads_bitwise) {
    const size_t c = 1, s = 8, d = 64, n = 8;
    float x1[8 * 64];
    ck_assert_ok(stochflow_random_normal(x1, n * d, 3, 3));
    float *p[2];
    size_t np = 0;
    stochflow_model *m[2];
    for (int k = 0; k < 2; ++k) {
        m[k] = tiny(c, s, 8, 2u, 15);
        ck_assert_ok(stochflow_model_set_param(m[k], STOCHFLOW_PARAM_THREADS, k + 1));
        for (int step = 0; step < 3; ++step) {
            double loss;
            ck_assert_ok(stochflow_model_train_step(&loss, m[k], x1, n, NULL, NULL));
        }
        ck_assert_ok(stochflow_model_parameters(&p[k], &np, m[k]));
    }
    ck_assert(memcmp(p[0], p[1], np * sizeof(float)) == 0);
    stochflow_model_free(m[0]);
    stochflow_model_free(m[1]);
}
END_TEST


/* A tiny U-Net overfits four 8x8 images: after training, samples from the flow land on
 * the training images (median RMS distance to the nearest one below 0.08 and at least
 * 12 of 16 within 0.15, while the images are >= 0.8 apart and untrained samples ~1
 * away), and each image is reached by some sample. Measured here: median 0.05, 14 of
 * 16 within 0.15, the two others between images (0.17, 0.22). */
START_TEST(overfit_four_images) {
    const size_t s = 8, d = 64, K = 4;
    float img[4 * 64];
    for (size_t k = 0; k < K; ++k)
        for (size_t r = 0; r < s; ++r)
            for (size_t c = 0; c < s; ++c) {
                int on = k == 0 ? r < 4 : k == 1 ? c < 4 : k == 2 ? (r + c) % 2 == 0
                                                                 : (r >= 2 && r < 6 && c >= 2 && c < 6);
                img[k * d + r * s + c] = on ? 0.8f : -0.8f;
            }
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, d));
    const size_t mult[2] = {1, 2};
    ck_assert_ok(stochflow_config_set_unet(cfg, 1, s, s, 8, 2, mult, 1, 0, 2));
    ck_assert_ok(stochflow_config_set_seed(cfg, 3));
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.95));
    const size_t n = 32;
    float batch[32 * 64];
    for (size_t i = 0; i < n; ++i) memcpy(batch + i * d, img + (i % K) * d, d * sizeof *img);
    double loss = 0;
    for (int step = 0; step < 800; ++step)
        ck_assert_ok(stochflow_model_train_step(&loss, m, batch, n, NULL, NULL));
    stochflow_solver *sol = NULL;
    ck_assert_ok(stochflow_solver_new(&sol));
    ck_assert_ok(stochflow_solver_set_param(sol, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4));
    ck_assert_ok(stochflow_solver_set_param(sol, STOCHFLOW_PARAM_STEPS, 100));
    const size_t ns = 16;
    float x[16 * 64];
    ck_assert_ok(stochflow_solver_sample(x, NULL, sol, m, ns, 9));
    int hit[4] = {0, 0, 0, 0}, close = 0;
    double dist[16];
    for (size_t i = 0; i < ns; ++i) {
        double best = 1e9;
        size_t arg = 0;
        for (size_t k = 0; k < K; ++k) {
            double e = 0;
            for (size_t j = 0; j < d; ++j) {
                double q = x[i * d + j] - img[k * d + j];
                e += q * q;
            }
            e = sqrt(e / (double)d);
            if (e < best) {
                best = e;
                arg = k;
            }
        }
        hit[arg] = 1;
        close += best < 0.15;
        dist[i] = best;
    }
    /* median distance (insertion sort of 16) */
    for (size_t i = 1; i < ns; ++i)
        for (size_t j = i; j > 0 && dist[j] < dist[j - 1]; --j) {
            double q = dist[j];
            dist[j] = dist[j - 1];
            dist[j - 1] = q;
        }
    ck_assert_msg(dist[ns / 2] < 0.08 && close >= 12,
                  "median distance to the nearest training image %g (RMS), %d of 16 within "
                  "0.15 (loss %g)", dist[ns / 2], close, loss);
    ck_assert_msg(hit[0] + hit[1] + hit[2] + hit[3] == 4,
                  "samples reach only %d of the 4 images", hit[0] + hit[1] + hit[2] + hit[3]);
    stochflow_solver_free(sol);
    stochflow_model_free(m);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("unet");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, param_count);
    tcase_add_test(tc, checkpoint_roundtrip);
    tcase_add_test(tc, threads_bitwise);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, loss_gradient_fd);
    tcase_add_test(tg, vjp_fd);
    tcase_add_test(tg, divergence_fd);
    suite_add_tcase(s, tg);
    TCase *tl = tcase_create("learning");
    tcase_add_test(tl, overfit_four_images);
    tcase_set_timeout(tl, 120);
    suite_add_tcase(s, tl);
    return s;
}
