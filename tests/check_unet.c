/* check_unet.c - the U-Net velocity field: configuration, parameter count,
 * finite-difference checks of the whole network (loss gradient, VJP, exact divergence),
 * checkpoints, thread invariance and a tiny model that overfits a few images; review
 * additions: chunked evaluation (more than 64 images), Hutchinson quadratic forms, EMA
 * evaluation weights, a 3-level non-square 3-channel network with attention in the
 * middle, hostile UNET checkpoint sections, n = 0 and non-finite inputs. */
#include <string.h>

#include "harness.h"
#include "internal.h"

/* A tiny U-Net: c x s x s images, base width, 2 levels (1, 2), attention at level 1. */
static stochflow_model *tiny(size_t c, size_t s, size_t base, uint32_t attn, uint64_t seed) {
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, c * s * s));
    const size_t mult[2] = {1, 2};
    ck_assert_ok(set_unet_shape(cfg, c, s, s, base, 2, mult, 1, attn, 2));
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
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 3, m3, 1, 4, 8), 0);
    ck_assert_int_eq(stochflow_config_arch(cfg), STOCHFLOW_ARCH_UNET);
    stochflow_unet_options got;
    memset(&got, 0xAB, sizeof got);
    ck_assert_ok(stochflow_config_unet(&got, cfg));
    ck_assert(got.size == sizeof got && got.channels == 1 && got.height == 28 &&
              got.width == 28 && got.base == 32 && got.n_levels == 3 && got.mult[0] == 1 &&
              got.mult[1] == 2 && got.mult[2] == 2 && got.blocks == 1 && got.attn_mask == 4 &&
              got.groups == 8 && got.reserved32 == 0 && got.reserved[0] == 0 &&
              got.reserved[3] == 0);
    /* the shape read back configures the same U-Net */
    ck_assert_ok(stochflow_config_set_unet(cfg, &got));
    /* dimension mismatch, levels, divisibility, groups, multipliers, attention mask */
    ck_assert_status(set_unet_shape(cfg, 3, 28, 28, 32, 3, m3, 1, 4, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert(strstr(stochflow_last_error_message(), "dimension") != NULL);
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 0, m3, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 7, m3, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    const size_t m4[4] = {1, 1, 1, 1};
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 4, m4, 1, 0, 8),
                     STOCHFLOW_E_INVALID); /* 28 is not divisible by 8 */
    ck_assert(strstr(stochflow_last_error_message(), "divisible") != NULL);
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 3, m3, 1, 0, 5),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 31, 3, m3, 1, 0, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 3, bad, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 3, m3, 0, 0, 8),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(set_unet_shape(cfg, 1, 28, 28, 32, 3, m3, 1, 8, 8),
                     STOCHFLOW_E_INVALID);
    /* attention spans at most 64x64 = 4096 positions: 64x64 at level 0 is fine, 66x64
     * (or 128x128 at level 0) is not, 128x128 with attention at level 1 is */
    {
        stochflow_config *big = NULL;
        const size_t m2[2] = {1, 2};
        ck_assert_ok(stochflow_config_new(&big, 64 * 64));
        ck_assert_ok(set_unet_shape(big, 1, 64, 64, 8, 2, m2, 1, 1u, 4));
        stochflow_config_free(big);
        ck_assert_ok(stochflow_config_new(&big, 66 * 64));
        ck_assert_status(set_unet_shape(big, 1, 66, 64, 8, 2, m2, 1, 1u, 4),
                         STOCHFLOW_E_INVALID);
        ck_assert(strstr(stochflow_last_error_message(), "4224 positions") != NULL);
        stochflow_config_free(big);
        ck_assert_ok(stochflow_config_new(&big, 128 * 128));
        ck_assert_status(set_unet_shape(big, 1, 128, 128, 8, 2, m2, 1, 1u, 4),
                         STOCHFLOW_E_INVALID);
        ck_assert_ok(set_unet_shape(big, 1, 128, 128, 8, 2, m2, 1, 2u, 4));
        stochflow_config_free(big);
    }
    ck_assert_status(set_unet_shape(NULL, 1, 28, 28, 32, 3, m3, 1, 0, 8),
                     STOCHFLOW_E_INVALID);
    /* the options struct: NULL, an unknown size, non-zero reserved fields */
    {
        stochflow_unet_options o;
        ck_assert_status(stochflow_unet_options_init(NULL, sizeof o), STOCHFLOW_E_INVALID);
        ck_assert_status(stochflow_unet_options_init(&o, sizeof o - 8), STOCHFLOW_E_INVALID);
        ck_assert_status(stochflow_unet_options_init(&o, sizeof o + 8), STOCHFLOW_E_INVALID);
        ck_assert_ok(stochflow_unet_options_init(&o, sizeof o));
        ck_assert(o.size == sizeof o && o.channels == 0 && o.base == 32 && o.n_levels == 3 &&
                  o.mult[0] == 1 && o.mult[1] == 2 && o.mult[2] == 2 && o.mult[3] == 0 &&
                  o.blocks == 1 && o.attn_mask == 4 && o.groups == 8);
        ck_assert_status(stochflow_config_set_unet(cfg, &o), STOCHFLOW_E_INVALID); /* 0x0x0 */
        o.channels = 1;
        o.height = o.width = 28;
        o.base = 16;
        o.reserved[2] = 1;
        ck_assert_status(stochflow_config_set_unet(cfg, &o), STOCHFLOW_E_INVALID);
        ck_assert(strstr(stochflow_last_error_message(), "reserved") != NULL);
        o.reserved[2] = 0;
        o.reserved32 = 1;
        ck_assert_status(stochflow_config_set_unet(cfg, &o), STOCHFLOW_E_INVALID);
        o.reserved32 = 0;
        o.size = sizeof o - 1;
        ck_assert_status(stochflow_config_set_unet(cfg, &o), STOCHFLOW_E_INVALID);
        ck_assert(strstr(stochflow_last_error_message(), "size") != NULL);
        ck_assert_status(stochflow_config_set_unet(cfg, NULL), STOCHFLOW_E_INVALID);
        ck_assert_status(stochflow_config_unet(NULL, cfg), STOCHFLOW_E_INVALID);
    }
    /* the failed calls left the valid U-Net in place */
    ck_assert_ok(stochflow_config_unet(&got, cfg));
    ck_assert_uint_eq(got.base, 32);
    /* the learnable interpolant is refused with a U-Net */
    ck_assert_ok(stochflow_config_set_fourier_interpolant(cfg, STOCHFLOW_INTERP_LINEAR, 2));
    stochflow_model *m = NULL;
    ck_assert_status(stochflow_model_new(&m, cfg), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_ptr_null(m);
    stochflow_config_free(cfg);
    ck_assert_ok(stochflow_config_new(&cfg, 4));
    ck_assert_status(stochflow_config_unet(&got, cfg), STOCHFLOW_E_INVALID);
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
    ck_assert_ok(set_unet_shape(cfg, 1, 2, 2, 2, 1, mult, 1, 0, 1));
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

/* Central differences (eps 1e-2 on float weights) of the loss on (x1, x0, t) against the
 * gradient of compute_gradient, for the parameters first, first + stride, ... and the
 * last `tail` ones. Returns how many were checked. */
/* A stride that visits about `count` of the model's parameters. */
static size_t np_stride(const stochflow_model *m, size_t count) {
    return stochflow_model_num_params(m) / count + 1;
}

static size_t check_loss_gradient(stochflow_model *m, const float *x1, const float *x0,
                                  const float *t, size_t n, size_t first, size_t stride,
                                  size_t tail) {
    double loss;
    ck_assert_ok(stochflow_model_compute_gradient(&loss, m, x1, n, x0, t));
    float *p, *g;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    float *gc = malloc(np * sizeof *gc);
    memcpy(gc, g, np * sizeof *gc);
    size_t checked = 0;
    for (size_t i = first; i < np; i += (i + tail >= np ? 1 : stride)) {
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
    free(gc);
    return checked;
}

/* The VJP u^T dv/dx at (t, x) against central differences (h = 1e-2) of u . v along
 * the input coordinates k0, k0 + kstep, ... (n <= 2 images of d <= 96 values). */
static void check_vjp(stochflow_model *m, double t, const float *x, const float *u, size_t n,
                      size_t d, size_t k0, size_t kstep) {
    float vjp[2 * 96], vp[2 * 96], vm[2 * 96], xp[2 * 96], xm[2 * 96];
    ck_assert(n <= 2 && d <= 96);
    ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, t, x, u, n));
    const float h = 1e-2f;
    for (size_t k = k0; k < d; k += kstep) {
        memcpy(xp, x, n * d * sizeof *xp);
        memcpy(xm, x, n * d * sizeof *xm);
        for (size_t i = 0; i < n; ++i) {
            xp[i * d + k] += h;
            xm[i * d + k] -= h;
        }
        ck_assert_ok(stochflow_model_velocity(vp, m, t, xp, n));
        ck_assert_ok(stochflow_model_velocity(vm, m, t, xm, n));
        for (size_t i = 0; i < n; ++i) {
            double fd = 0;
            for (size_t j = 0; j < d; ++j)
                fd += (double)u[i * d + j] * (vp[i * d + j] - vm[i * d + j]) / (2.0 * h);
            ck_assert_msg(fabs(vjp[i * d + k] - fd) <= 3e-3 + 2e-2 * fabs(fd),
                          "vjp[%zu,%zu] %g vs fd %g", i, k, (double)vjp[i * d + k], fd);
        }
    }
}

START_TEST(loss_gradient_fd) {
    const size_t c = 1, s = 4, d = c * s * s, n = 3;
    stochflow_model *m = tiny(c, s, 4, 2u, 11);
    randomize(m, 0.3f, 5);
    float x1[3 * 16], x0[3 * 16], t[3];
    batch(x1, x0, t, n, d);
    /* every 7th parameter, plus the last 40 (output convolution) */
    ck_assert_uint_gt(check_loss_gradient(m, x1, x0, t, n, 0, 7, 40), 100);
    stochflow_model_free(m);
}
END_TEST

START_TEST(vjp_fd) {
    const size_t c = 2, s = 4, d = c * s * s, n = 2;
    stochflow_model *m = tiny(c, s, 4, 2u, 12);
    randomize(m, 0.3f, 6);
    float x[2 * 32], u[2 * 32];
    ck_assert_ok(stochflow_random_normal(x, n * d, 8, 1));
    ck_assert_ok(stochflow_random_normal(u, n * d, 8, 2));
    check_vjp(m, 0.4, x, u, n, d, 0, 1);
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
    ck_assert_ok(stochflow_model_save_buffer(&written, buf, size, m));
    stochflow_model *r = NULL;
    ck_assert_ok(stochflow_model_load_buffer(&r, buf, written));
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_model_config(&cfg, r));
    ck_assert_int_eq(stochflow_config_arch(cfg), STOCHFLOW_ARCH_UNET);
    stochflow_unet_options u;
    ck_assert_ok(stochflow_config_unet(&u, cfg));
    ck_assert(u.base == 4 && u.mult[0] == 1 && u.mult[1] == 2 && u.attn_mask == 2u);
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


/* |a - b| <= abs + rel |b| for n floats, with a message naming the first failure. */
static void close_to(const float *a, const float *b, size_t n, double abs, double rel,
                     const char *what) {
    for (size_t i = 0; i < n; ++i)
        ck_assert_msg(fabs((double)a[i] - b[i]) <= abs + rel * fabs((double)b[i]),
                      "%s[%zu]: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

/* Evaluation of more images than one chunk (64): the velocity, exact divergence and VJP
 * of 70 images equal those of each image alone (to float rounding: BLIS may pick other
 * kernels for other batch sizes; measured differences ~2e-7). */
START_TEST(chunked_eval) {
    const size_t c = 1, s = 4, d = 16, n = 70;
    stochflow_model *m = tiny(c, s, 4, 2u, 21);
    randomize(m, 0.3f, 9);
    float *x = malloc(n * d * sizeof *x), *u = malloc(n * d * sizeof *u);
    float *v = malloc(n * d * sizeof *v), *vjp = malloc(n * d * sizeof *vjp), div[70];
    ck_assert_ok(stochflow_random_normal(x, n * d, 10, 1));
    ck_assert_ok(stochflow_random_normal(u, n * d, 10, 2));
    ck_assert_ok(stochflow_model_velocity(v, m, 0.6, x, n));
    ck_assert_ok(stochflow_model_divergence(div, NULL, m, 0.6, x, n));
    ck_assert_ok(stochflow_model_velocity_vjp(vjp, m, 0.6, x, u, n));
    for (size_t i = 0; i < n; ++i) {
        float v1[16], d1, g1[16];
        ck_assert_ok(stochflow_model_velocity(v1, m, 0.6, x + i * d, 1));
        ck_assert_ok(stochflow_model_divergence(&d1, NULL, m, 0.6, x + i * d, 1));
        ck_assert_ok(stochflow_model_velocity_vjp(g1, m, 0.6, x + i * d, u + i * d, 1));
        close_to(v + i * d, v1, d, 1e-5, 1e-5, "velocity");
        close_to(div + i, &d1, 1, 1e-5, 1e-5, "divergence");
        close_to(vjp + i * d, g1, d, 1e-5, 1e-5, "vjp");
    }
    free(x);
    free(u);
    free(v);
    free(vjp);
    stochflow_model_free(m);
}
END_TEST

/* The Hutchinson path of the evaluation (what the solver's HUTCHINSON trace calls):
 * quad_k = e_k . (J e_k). With the d unit vectors as probes their sum is the exact
 * divergence; with Gaussian probes each equals a central difference of the velocity
 * along e_k. Also over more than one chunk (70 images, unit probes). */
START_TEST(hutchinson_quadratic_forms) {
    const size_t d = 16, n = 70, K = 2, nf = 3;
    stochflow_model *m = tiny(1, 4, 4, 2u, 22);
    randomize(m, 0.3f, 10);
    float *x = malloc(n * d * sizeof *x), *probes = calloc(n * d * d, sizeof *probes);
    float *quad = malloc(n * d * sizeof *quad), div[70];
    ck_assert_ok(stochflow_random_normal(x, n * d, 11, 1));
    for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < d; ++k) probes[(i * d + k) * d + k] = 1.0f;
    ck_assert_ok(stochflow__model_eval(m, 0.35, x, n, NULL, NULL, probes, d, quad));
    ck_assert_ok(stochflow_model_divergence(div, NULL, m, 0.35, x, n));
    for (size_t i = 0; i < n; ++i) {
        double sum = 0;
        for (size_t k = 0; k < d; ++k) sum += quad[i * d + k];
        ck_assert_msg(fabs(sum - div[i]) <= 1e-5 + 1e-5 * fabs(div[i]),
                      "image %zu: sum of unit-probe quads %g, divergence %g", i, sum,
                      (double)div[i]);
    }
    /* Gaussian probes against central differences (h = 1e-2, as the other FD checks) */
    float e[3 * 2 * 16], q2[3 * 2], v[3 * 16];
    ck_assert_ok(stochflow_random_normal(e, nf * K * d, 11, 2));
    ck_assert_ok(stochflow__model_eval(m, 0.35, x, nf, v, NULL, e, K, q2));
    const float h = 1e-2f;
    for (size_t i = 0; i < nf; ++i)
        for (size_t k = 0; k < K; ++k) {
            const float *ek = e + (i * K + k) * d;
            float xp[16], xm[16], vp[16], vm[16];
            for (size_t j = 0; j < d; ++j) {
                xp[j] = x[i * d + j] + h * ek[j];
                xm[j] = x[i * d + j] - h * ek[j];
            }
            ck_assert_ok(stochflow_model_velocity(vp, m, 0.35, xp, 1));
            ck_assert_ok(stochflow_model_velocity(vm, m, 0.35, xm, 1));
            double fd = 0;
            for (size_t j = 0; j < d; ++j) fd += (double)ek[j] * (vp[j] - vm[j]) / (2.0 * h);
            ck_assert_msg(fabs(q2[i * K + k] - fd) <= 5e-3 + 2e-2 * fabs(fd),
                          "image %zu probe %zu: quad %g vs finite difference %g", i, k,
                          (double)q2[i * K + k], fd);
        }
    free(x);
    free(probes);
    free(quad);
    stochflow_model_free(m);
}
END_TEST

/* Evaluation uses the EMA weights (STOCHFLOW_PARAM_EVAL_WEIGHTS = 1, the default) and
 * training the live ones: after two steps with decay a, the EMA is a p1 + (1 - a) p2
 * (optimizer.c; the first update copies). A second model holding exactly those weights
 * must evaluate bitwise like the first, for velocity, divergence and VJP; with
 * EVAL_WEIGHTS = 2 the first model evaluates like its live weights. */
START_TEST(eval_uses_ema_weights) {
    const size_t d = 16, n = 4;
    stochflow_model *m = tiny(1, 4, 4, 2u, 23), *w = tiny(1, 4, 4, 2u, 23);
    randomize(m, 0.3f, 11);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.75));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-2));
    float x1[4 * 16];
    ck_assert_ok(stochflow_random_normal(x1, n * d, 12, 1));
    float *p, *q;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_model_parameters(&q, NULL, w));
    float *ema = malloc(np * sizeof *ema);
    double loss;
    ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
    memcpy(ema, p, np * sizeof *ema);
    ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
    const float a = 0.75f, b = (float)(1.0 - 0.75);
    for (size_t i = 0; i < np; ++i) ema[i] = a * ema[i] + b * p[i];
    float vm[4 * 16], vw[4 * 16], dm[4], dw[4], gm[4 * 16], gw[4 * 16];
    for (int mode = 0; mode < 2; ++mode) {
        /* mode 0: w holds the EMA, m evaluates with EMA; mode 1: w holds the live weights */
        memcpy(q, mode == 0 ? ema : p, np * sizeof *q);
        if (mode == 1) ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, 2));
        ck_assert_ok(stochflow_model_divergence(dm, vm, m, 0.5, x1, n));
        ck_assert_ok(stochflow_model_divergence(dw, vw, w, 0.5, x1, n));
        ck_assert_ok(stochflow_model_velocity_vjp(gm, m, 0.5, x1, x1, n));
        ck_assert_ok(stochflow_model_velocity_vjp(gw, w, 0.5, x1, x1, n));
        ck_assert_msg(memcmp(vm, vw, sizeof vm) == 0 && memcmp(dm, dw, sizeof dm) == 0 &&
                          memcmp(gm, gw, sizeof gm) == 0,
                      "mode %d: evaluation does not use the %s weights", mode,
                      mode == 0 ? "EMA" : "live");
    }
    /* and the two differ (the test can fail) */
    ck_assert(memcmp(ema, p, np * sizeof *p) != 0);
    free(ema);
    stochflow_model_free(m);
    stochflow_model_free(w);
}
END_TEST

/* Evaluation is bitwise the same on 1 and 2 threads, also with fewer images than
 * threads (attention then runs its images one at a time with BLIS threads inside). */
START_TEST(threads_eval_bitwise) {
    const size_t d = 64;
    float x[3 * 64], u[3 * 64];
    ck_assert_ok(stochflow_random_normal(x, 3 * d, 4, 1));
    ck_assert_ok(stochflow_random_normal(u, 3 * d, 4, 2));
    float v[2][3 * 64], dv[2][3], g[2][3 * 64];
    for (size_t n = 1; n <= 3; n += 2) {
        for (int k = 0; k < 2; ++k) {
            stochflow_model *m = tiny(1, 8, 8, 3u, 16); /* attention at both levels */
            randomize(m, 0.3f, 12);
            ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, k + 1));
            ck_assert_ok(stochflow_model_divergence(dv[k], v[k], m, 0.45, x, n));
            ck_assert_ok(stochflow_model_velocity_vjp(g[k], m, 0.45, x, u, n));
            stochflow_model_free(m);
        }
        ck_assert_msg(memcmp(v[0], v[1], n * d * sizeof(float)) == 0, "velocity, n = %zu", n);
        ck_assert_msg(memcmp(dv[0], dv[1], n * sizeof(float)) == 0, "divergence, n = %zu", n);
        ck_assert_msg(memcmp(g[0], g[1], n * d * sizeof(float)) == 0, "vjp, n = %zu", n);
    }
}
END_TEST

/* A less regular network: 3-channel 4x8 images, 3 levels (1, 2, 3), 2 blocks per level,
 * attention at levels 0 and 2 (so also in the middle), 4 groups (the up path normalizes
 * concatenations of 8 + 8, 16 + 8, 24 + 16, ... channels). Loss gradient and VJP
 * against central differences on a sample of coordinates. */
START_TEST(irregular_network_fd) {
    const size_t c = 3, H = 4, W = 8, d = c * H * W, n = 2;
    stochflow_config *cfg = NULL;
    ck_assert_ok(stochflow_config_new(&cfg, d));
    const size_t mult[3] = {1, 2, 3};
    ck_assert_ok(set_unet_shape(cfg, c, H, W, 8, 3, mult, 2, 5u, 4));
    ck_assert_ok(stochflow_config_set_seed(cfg, 17));
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    randomize(m, 0.15f, 13);
    float x1[2 * 96], x0[2 * 96], t[2] = {0.2f, 0.7f};
    ck_assert_ok(stochflow_random_normal(x1, n * d, 14, 1));
    ck_assert_ok(stochflow_random_normal(x0, n * d, 14, 2));
    ck_assert_uint_ge(check_loss_gradient(m, x1, x0, t, n, 5, np_stride(m, 97), 0), 90);
    float u[2 * 96];
    ck_assert_ok(stochflow_random_normal(u, n * d, 14, 3));
    check_vjp(m, 0.4, x1, u, n, d, 1, 7);
    stochflow_model_free(m);
}
END_TEST

/* n = 0 is a no-op for evaluations and an error for training; non-finite inputs and
 * out-of-range times are refused with the model unchanged. */
START_TEST(edge_inputs) {
    stochflow_model *m = tiny(1, 4, 4, 2u, 24);
    randomize(m, 0.3f, 14);
    size_t len;
    ck_assert_ok(stochflow_model_serialized_size(&len, m));
    unsigned char *before = malloc(len), *after = malloc(len);
    ck_assert_ok(stochflow_model_save_buffer(NULL, before, len, m));
    float x[2 * 16], v[2 * 16], div[2];
    ck_assert_ok(stochflow_random_normal(x, 2 * 16, 15, 1));
    ck_assert_ok(stochflow_model_velocity(NULL, m, 0.5, NULL, 0));
    ck_assert_ok(stochflow_model_divergence(NULL, NULL, m, 0.5, NULL, 0));
    ck_assert_ok(stochflow_model_velocity_vjp(NULL, m, 0.5, NULL, NULL, 0));
    double loss;
    ck_assert_status(stochflow_model_train_step(&loss, m, x, 0, NULL, NULL), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_velocity(v, m, 1.5, x, 2), STOCHFLOW_E_INVALID);
    x[21] = NAN;
    ck_assert_status(stochflow_model_velocity(v, m, 0.5, x, 2), STOCHFLOW_E_NONFINITE);
    ck_assert(strstr(stochflow_last_error_message(), "21") != NULL);
    ck_assert_status(stochflow_model_divergence(div, v, m, 0.5, x, 2), STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_model_train_step(&loss, m, x, 2, NULL, NULL),
                     STOCHFLOW_E_NONFINITE);
    x[21] = INFINITY;
    ck_assert_status(stochflow_model_velocity_vjp(v, m, 0.5, x, x, 2), STOCHFLOW_E_NONFINITE);
    ck_assert_ok(stochflow_model_save_buffer(NULL, after, len, m));
    ck_assert(memcmp(before, after, len) == 0);
    /* non-finite weights: the velocity (and so the loss) is reported, not returned */
    float *p;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    p[np - 1] = NAN;
    x[21] = 0.0f;
    ck_assert_status(stochflow_model_velocity(v, m, 0.5, x, 2), STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_model_loss(&loss, m, x, 2, NULL, NULL), STOCHFLOW_E_NONFINITE);
    free(before);
    free(after);
    stochflow_model_free(m);
}
END_TEST

/* Recompute the payload length and CRC-32 of a patched checkpoint. */
static void reseal(unsigned char *b, size_t len) {
    uint64_t pl = len - 28;
    for (int i = 0; i < 8; ++i) b[16 + i] = (unsigned char)(pl >> (8 * i));
    uint32_t crc = stochflow__crc32(b, len - 4);
    for (int i = 0; i < 4; ++i) b[len - 4 + i] = (unsigned char)(crc >> (8 * i));
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

/* Hostile UNET sections (CRC-valid): out-of-range fields, a multiplier on an unused
 * level, attention over more than 64x64 positions (the smallest U-Net on 1x256x256
 * images with attention at level 0 would be a 14 KB file asking 86 GB of workspace per
 * image), and a valid but enormous network (1x256x256, base 1024, 6 levels of
 * multiplier 16, 8 blocks, attention at levels 2..5: ~10^11 parameters) whose weights
 * are not in the file. All FORMAT, the field errors after no allocation, the enormous
 * network after at most the three small allocations of compiling its operation list
 * (counted by the allocation hook), never anything sized by the claimed network. */
START_TEST(hostile_unet_section) {
    stochflow_model *m = tiny(1, 4, 4, 2u, 25);
    size_t len;
    ck_assert_ok(stochflow_model_serialized_size(&len, m));
    unsigned char *good = malloc(len), *b = malloc(len);
    ck_assert_ok(stochflow_model_save_buffer(NULL, good, len, m));
    stochflow_model_free(m);
    size_t at = 0; /* body of the UNET section */
    for (size_t pos = 24; pos + 16 <= len - 4;) {
        uint64_t sl = 0;
        for (int i = 0; i < 8; ++i) sl |= (uint64_t)good[pos + 8 + i] << (8 * i);
        if (memcmp(good + pos, "UNET", 4) == 0) at = pos + 16;
        pos += 16 + (size_t)sl;
    }
    ck_assert_uint_ne(at, 0);
    enum { CH, HT, WD, BASE, LEV, BLK, GRP, ATTN, MULT };
    const struct {
        const char *what;
        int field;
        uint32_t value;
    } cases[] = {
        {"channels 2^32-1", CH, 0xFFFFFFFFu}, {"height 0", HT, 0},
        {"base 2^32-1", BASE, 0xFFFFFFFFu},   {"levels 2^32-1", LEV, 0xFFFFFFFFu},
        {"levels 0", LEV, 0},                 {"blocks 2^31", BLK, 0x80000000u},
        {"groups 0", GRP, 0},                 {"groups 3", GRP, 3},
        {"attention mask 2^31", ATTN, 0x80000000u},
        {"multiplier 0", MULT + 1, 0},        {"multiplier 2^32-1", MULT, 0xFFFFFFFFu},
        {"multiplier of unused level 2", MULT + 2, 1},
        {"multiplier of unused level 5", MULT + 5, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        memcpy(b, good, len);
        put32(b + at + 4 * cases[i].field, cases[i].value);
        reseal(b, len);
        stochflow_model *out = NULL;
        stochflow__alloc_fail_at(0);
        ck_assert_status(stochflow_model_load_buffer(&out, b, len), STOCHFLOW_E_FORMAT);
        ck_assert_msg(stochflow__alloc_count() == 0, "%s: %llu allocations", cases[i].what,
                      (unsigned long long)stochflow__alloc_count());
        ck_assert_ptr_null(out);
    }
    /* the enormous valid network: CONF's dimension too */
    memcpy(b, good, len);
    put32(b + 40, 65536);
    const uint32_t big[14] = {1, 256, 256, 1024, 6, 8, 1024, 0x3C, 16, 16, 16, 16, 16, 16};
    for (int f = 0; f < 14; ++f) put32(b + at + 4 * f, big[f]);
    reseal(b, len);
    stochflow_model *out = NULL;
    stochflow__alloc_fail_at(0);
    ck_assert_status(stochflow_model_load_buffer(&out, b, len), STOCHFLOW_E_FORMAT);
    ck_assert(strstr(stochflow_last_error_message(), "weight bytes") != NULL);
    ck_assert_uint_le(stochflow__alloc_count(), 3);
    ck_assert_ptr_null(out);
    /* attention at 256x256 (level 0) or 128x128 (level 1): refused by validation */
    for (uint32_t mask = 1; mask <= 2; ++mask) {
        put32(b + at + 4 * ATTN, mask | 0x3C);
        reseal(b, len);
        stochflow__alloc_fail_at(0);
        ck_assert_status(stochflow_model_load_buffer(&out, b, len), STOCHFLOW_E_FORMAT);
        ck_assert(strstr(stochflow_last_error_message(), "positions") != NULL);
        ck_assert_uint_eq(stochflow__alloc_count(), 0);
        ck_assert_ptr_null(out);
    }
    /* and the unpatched file still loads */
    ck_assert_ok(stochflow_model_load_buffer(&out, good, len));
    stochflow_model_free(out);
    free(good);
    free(b);
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
    ck_assert_ok(set_unet_shape(cfg, 1, s, s, 8, 2, mult, 1, 0, 2));
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
    tcase_add_test(tc, threads_eval_bitwise);
    tcase_add_test(tc, chunked_eval);
    tcase_add_test(tc, eval_uses_ema_weights);
    tcase_add_test(tc, edge_inputs);
    tcase_add_test(tc, hostile_unet_section);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, loss_gradient_fd);
    tcase_add_test(tg, vjp_fd);
    tcase_add_test(tg, divergence_fd);
    tcase_add_test(tg, hutchinson_quadratic_forms);
    tcase_add_test(tg, irregular_network_fd);
    suite_add_tcase(s, tg);
    TCase *tl = tcase_create("learning");
    tcase_add_test(tl, overfit_four_images);
    tcase_set_timeout(tl, 120);
    suite_add_tcase(s, tl);
    return s;
}
