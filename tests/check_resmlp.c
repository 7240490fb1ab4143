/* check_resmlp.c - the residual MLP velocity field: its configuration, gradients against
 * finite differences (loss, input VJP, exact trace, Hutchinson forms), threads, the
 * checkpoint, conditioning, and learning a Gaussian whose velocity is known in closed
 * form; each with and without the gated linear experts of its output, whose field and
 * divergence are also checked against their closed form. The LayerNorm kernels
 * themselves: check_layers.c. */
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "field_checks.h"

/* The linear experts of the models make_res builds (0: none); set per check. */
static size_t g_experts = 0;

static stochflow_model *make_res(size_t d, size_t w, size_t blocks, int act, int time_kind,
                                 size_t nfreq, size_t n_ctx, size_t n_classes, uint64_t seed) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_config_new(&c, d));
    ck_assert_ok(stochflow_config_set_resmlp(c, w, blocks));
    ck_assert_ok(stochflow_config_set_resmlp_experts(c, g_experts));
    ck_assert_ok(stochflow_config_set_activation(c, act));
    ck_assert_ok(stochflow_config_set_time_embedding(c, time_kind, nfreq));
    ck_assert_ok(stochflow_config_set_context(c, n_ctx, n_classes));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    return m;
}

static void normals(float *x, size_t n, uint64_t stream) { field_normals(x, n, stream); }

/* Recompute a checkpoint's trailing CRC-32 after a byte was changed. */
static void fix_crc(unsigned char *b, size_t len) {
    uint32_t crc = stochflow__crc32(b, len - 4);
    for (int k = 0; k < 4; ++k) b[len - 4 + k] = (unsigned char)(crc >> (8 * k));
}

/* Move every parameter away from its initial value (the blocks' second layers start at
 * zero and the norms at gamma = 1, beta = 0, which would hide their terms). */
static void perturb(stochflow_model *m, float scale) {
    float *p;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    float *z = malloc(np * sizeof *z);
    stochflow_random_normal(z, np, 123, 4);
    for (size_t i = 0; i < np; ++i) p[i] += scale * z[i];
    free(z);
}

/* ---- configuration ---------------------------------------------------------------- */

START_TEST(config_and_count) {
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_config_new(&c, 3));
    size_t w = 0, b = 0, np = 0;
    ck_assert_status(stochflow_config_resmlp(&w, &b, c), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_resmlp(c, 0, 2), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_resmlp(c, 8, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_resmlp(c, 8, 65), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_resmlp(c, 65537, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_resmlp(NULL, 8, 1), STOCHFLOW_E_INVALID);
    ck_assert_int_eq(stochflow_config_arch(c), STOCHFLOW_ARCH_MLP); /* refusals kept it */
    ck_assert_ok(stochflow_config_set_resmlp(c, 8, 2));
    ck_assert_int_eq(stochflow_config_arch(c), STOCHFLOW_ARCH_RESMLP);
    ck_assert_ok(stochflow_config_resmlp(&w, &b, c));
    ck_assert_uint_eq(w, 8);
    ck_assert_uint_eq(b, 2);
    /* in 3 + 1 (raw t) -> 8; per block 2 x 8 (norm) + 2 x (8 x 8 + 8); final norm 2 x 8;
     * out 8 -> 3 */
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_new(&m, c));
    np = stochflow_model_num_params(m);
    ck_assert_uint_eq(np, (4 * 8 + 8) + 2 * (16 + 2 * 72) + 16 + (8 * 3 + 3));
    stochflow_model_free(m);
    stochflow_config_free(c);
}
END_TEST

START_TEST(experts_config_and_count) {
    stochflow_config *c = NULL;
    size_t k = 99;
    ck_assert_ok(stochflow_config_new(&c, 3));
    /* the MLP has no experts: refused, the configuration unchanged */
    ck_assert_status(stochflow_config_set_resmlp_experts(c, 2), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_resmlp_experts(&k, c), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_resmlp_experts(NULL, 2), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_config_set_resmlp(c, 8, 2));
    ck_assert_ok(stochflow_config_resmlp_experts(&k, c));
    ck_assert_uint_eq(k, 0);
    ck_assert_status(stochflow_config_set_resmlp_experts(c, 65), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_config_resmlp_experts(&k, c));
    ck_assert_uint_eq(k, 0);
    ck_assert_ok(stochflow_config_set_resmlp_experts(c, 3));
    ck_assert_ok(stochflow_config_resmlp_experts(&k, c));
    ck_assert_uint_eq(k, 3);
    ck_assert_ok(stochflow_config_resmlp_experts(NULL, c));
    /* the plain count plus W_g [3 x 8], b_g [3], E [3*3 x 7], c [3*3] */
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_new(&m, c));
    ck_assert_uint_eq(stochflow_model_num_params(m),
                      (4 * 8 + 8) + 2 * (16 + 2 * 72) + 16 + (8 * 3 + 3) + 24 + 3 + 63 + 9);
    stochflow_model_free(m);
    stochflow_config_free(c);
    /* a U-Net takes the experts away with the residual MLP */
    ck_assert_ok(stochflow_config_new(&c, 4));
    ck_assert_ok(stochflow_config_set_resmlp(c, 8, 2));
    ck_assert_ok(stochflow_config_set_resmlp_experts(c, 3));
    ck_assert_ok(set_unet_shape(c, 1, 2, 2, 2, 1, (size_t[]){1}, 1, 1u, 1));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_model_free(m);
    stochflow_config_free(c);
}
END_TEST

/* The experts' field in closed form: with the gate layer's weights zero the gates are
 * softmax(b_g) at every point, so v = W_o f(..) + b_o + sum_k g_k (E_k z + c_k) and the
 * divergence adds sum_k g_k (tr E_k[:, :d] + t tr E_k[:, d:2d]) to the plain network's;
 * both against the same model with its experts zeroed (the plain network's field). */
START_TEST(experts_closed_form) {
    const size_t d = 3, w = 20, K = 4, n = 5, B = 2, nz = 2 * d + 1;
    g_experts = K;
    stochflow_model *m = make_res(d, w, B, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 0, 13);
    g_experts = 0;
    perturb(m, 0.2f);
    float *p;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    /* the layout of the module doc: the experts follow b_o, then the label embedding
     * (none here) */
    const size_t e_c = np - K * d, e_w = e_c - K * d * nz, b_g = e_w - K, w_g = b_g - K * w;
    for (size_t i = 0; i < K * w; ++i) p[w_g + i] = 0.0f;
    const double t = 0.35;
    float x[15], v[15], v0[15], dv[5], dv0[5];
    normals(x, n * d, 31);
    ck_assert_ok(stochflow_model_velocity(v, m, t, x, n));
    ck_assert_ok(stochflow_model_divergence(dv, NULL, m, t, x, n));
    double g[4], gs = 0.0, mx = p[b_g];
    for (size_t k = 1; k < K; ++k) mx = p[b_g + k] > mx ? p[b_g + k] : mx;
    for (size_t k = 0; k < K; ++k) gs += g[k] = exp(p[b_g + k] - mx);
    for (size_t k = 0; k < K; ++k) g[k] /= gs;
    /* the plain network: experts zeroed */
    float *keep = malloc((K * d * (nz + 1)) * sizeof *keep);
    memcpy(keep, p + e_w, K * d * (nz + 1) * sizeof *keep);
    memset(p + e_w, 0, K * d * (nz + 1) * sizeof *p);
    ck_assert_ok(stochflow_model_velocity(v0, m, t, x, n));
    ck_assert_ok(stochflow_model_divergence(dv0, NULL, m, t, x, n));
    memcpy(p + e_w, keep, K * d * (nz + 1) * sizeof *keep);
    const float *E = p + e_w, *cb = p + e_c;
    double tr = 0.0;
    for (size_t k = 0; k < K; ++k)
        for (size_t j = 0; j < d; ++j)
            tr += g[k] * (E[(k * d + j) * nz + j] + t * E[(k * d + j) * nz + d + j]);
    for (size_t i = 0; i < n; ++i) {
        double z[7];
        for (size_t j = 0; j < d; ++j) {
            z[j] = x[i * d + j];
            z[d + j] = (float)t * x[i * d + j];
        }
        z[2 * d] = (float)t;
        for (size_t j = 0; j < d; ++j) {
            double ve = v0[i * d + j];
            for (size_t k = 0; k < K; ++k) {
                double ek = cb[k * d + j];
                for (size_t q = 0; q < nz; ++q) ek += E[(k * d + j) * nz + q] * z[q];
                ve += g[k] * ek;
            }
            ck_assert_msg(fabs(v[i * d + j] - ve) <= 1e-5 * (1 + fabs(ve)),
                          "row %zu col %zu: %g against %g", i, j, (double)v[i * d + j], ve);
        }
        ck_assert_msg(fabs(dv[i] - (dv0[i] + tr)) <= 1e-4 * (1 + fabs(tr)),
                      "row %zu divergence %g against %g", i, (double)dv[i], dv0[i] + tr);
    }
    free(keep);
    stochflow_model_free(m);
}
END_TEST

START_TEST(experts_start_at_zero) {
    /* the experts start at zero and the other weights as without them: the same field */
    const size_t d = 3, n = 6;
    float x[18], v[18], v0[18];
    normals(x, n * d, 41);
    stochflow_model *m0 = make_res(d, 24, 2, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 0, 17);
    g_experts = 5;
    stochflow_model *m = make_res(d, 24, 2, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 0, 17);
    g_experts = 0;
    ck_assert_ok(stochflow_model_velocity(v0, m0, 0.6, x, n));
    ck_assert_ok(stochflow_model_velocity(v, m, 0.6, x, n));
    for (size_t i = 0; i < n * d; ++i) ck_assert_float_eq(v[i], v0[i]);
    stochflow_model_free(m0);
    stochflow_model_free(m);
}
END_TEST

START_TEST(initial_blocks_are_identity) {
    /* At the start each block adds zero: v = W_o f(LN_f(W_in u + b_in)) + b_o, checked
     * against that formula computed here from the parameter block. */
    const size_t d = 2, w = 5, n = 4;
    stochflow_model *m = make_res(d, w, 3, STOCHFLOW_ACT_TANH, STOCHFLOW_TIME_RAW, 0, 0, 0, 7);
    float *p, x[8], v[8];
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    normals(x, n * d, 1);
    const double t = 0.3;
    ck_assert_ok(stochflow_model_velocity(v, m, t, x, n));
    const float *w_in = p, *b_in = p + 3 * w;
    const size_t tail = 3 * w + w + 3 * (2 * w + 2 * (w * w + w));
    const float *fg = p + tail, *fb = fg + w, *w_o = fb + w, *b_o = w_o + d * w;
    ck_assert_uint_eq(np, tail + 2 * w + d * w + d);
    for (size_t i = 0; i < n; ++i) {
        double h[5], mu = 0, var = 0;
        for (size_t j = 0; j < w; ++j) {
            h[j] = b_in[j] + w_in[j * 3 + 0] * x[i * d] + w_in[j * 3 + 1] * x[i * d + 1] +
                   w_in[j * 3 + 2] * t;
            mu += h[j] / w;
        }
        for (size_t j = 0; j < w; ++j) var += (h[j] - mu) * (h[j] - mu) / w;
        for (size_t k = 0; k < d; ++k) {
            double o = b_o[k];
            for (size_t j = 0; j < w; ++j)
                o += w_o[k * w + j] * tanh((h[j] - mu) / sqrt(var + 1e-5) * fg[j] + fb[j]);
            ck_assert_double_eq_tol(v[i * d + k], o, 1e-5);
        }
    }
    stochflow_model_free(m);
}
END_TEST

/* ---- gradients ------------------------------------------------------------------ */

/* dG/dparams by central differences for every parameter (eps 1e-2 on float weights,
 * the loss summed in double): tolerance 2e-3 absolute + 2e-2 relative. */
static void check_loss_gradient(int act, int time_kind, size_t n_ctx, size_t n_classes, size_t w,
                                size_t stride) {
    const size_t d = 2, n = 6;
    stochflow_model *m = make_res(d, w, 2, act, time_kind, 2, n_ctx, n_classes, 5);
    perturb(m, 0.3f);
    float x1[12], x0[12], t[6], ctx[12];
    int32_t labels[6] = {0, 1, -1, 2, 1, 0};
    normals(x1, 12, 1);
    normals(x0, 12, 2);
    normals(ctx, 12, 3);
    for (size_t i = 0; i < n; ++i) t[i] = 0.05f + 0.15f * (float)i;
    const float *c = n_ctx ? ctx : NULL;
    const int32_t *lab = n_classes ? labels : NULL;
    double loss;
    ck_assert_ok(stochflow_model_compute_gradient_ctx(&loss, m, x1, c, lab, n, x0, t));
    float *p, *g;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    float *g_copy = malloc(np * sizeof *g_copy);
    memcpy(g_copy, g, np * sizeof *g);
    const float eps = 1e-2f;
    size_t nonzero = 0, checked = 0;
    for (size_t i = 0; i < np; i += stride, ++checked) {
        float keep = p[i];
        double lp, lm;
        p[i] = keep + eps;
        ck_assert_ok(stochflow_model_loss_ctx(&lp, m, x1, c, lab, n, x0, t));
        p[i] = keep - eps;
        ck_assert_ok(stochflow_model_loss_ctx(&lm, m, x1, c, lab, n, x0, t));
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        nonzero += fabs(fd) > 1e-3;
        ck_assert_msg(fabs(g_copy[i] - fd) <= 2e-3 + 2e-2 * fabs(fd),
                      "act %d time %d ctx %zu classes %zu: param %zu of %zu analytic %g vs "
                      "finite difference %g",
                      act, time_kind, n_ctx, n_classes, i, np, (double)g_copy[i], fd);
    }
    /* the check reaches the parameters: almost every one has a gradient */
    ck_assert_msg(nonzero > checked * 9 / 10, "%zu of %zu gradients non-zero", nonzero, checked);
    free(g_copy);
    stochflow_model_free(m);
}

START_TEST(loss_gradient_fd) {
    /* every parameter of small networks; every 7th of one wide enough for the BLIS
     * products and the 8-lane sums of the LayerNorm */
    check_loss_gradient(STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 6, 1);
    check_loss_gradient(STOCHFLOW_ACT_TANH, STOCHFLOW_TIME_FOURIER, 0, 0, 6, 1);
    check_loss_gradient(STOCHFLOW_ACT_SOFTPLUS, STOCHFLOW_TIME_RAW, 2, 3, 6, 1);
    check_loss_gradient(STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_FOURIER, 2, 3, 40, 7);
    /* with linear experts (their gate reads the last features, conditioning included) */
    g_experts = 3;
    check_loss_gradient(STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 6, 1);
    check_loss_gradient(STOCHFLOW_ACT_TANH, STOCHFLOW_TIME_FOURIER, 2, 3, 40, 7);
    g_experts = 0;
}
END_TEST

/* A model wide enough for the BLIS paths (w > 16). */
static stochflow_model *wide_res(size_t d, int act) {
    stochflow_model *m = make_res(d, 40, 2, act, STOCHFLOW_TIME_FOURIER, 3, 0, 0, 11);
    perturb(m, 0.05f);
    return m;
}

/* The input VJP, the exact trace and the Hutchinson forms (tests/field_checks.h). */
START_TEST(input_derivatives) {
    check_field_derivatives(wide_res);
    g_experts = 4; /* the experts' paths: z's x and t x, and the gates */
    check_field_derivatives(wide_res);
    /* the exact trace where d is larger than the width (the tangents' rows are d wide) */
    stochflow_model *m = make_res(20, 8, 2, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 0, 29);
    perturb(m, 0.05f);
    check_exact_trace_fd(m, 20);
    stochflow_model_free(m);
    g_experts = 0;
}
END_TEST

/* ---- threads, checkpoint -------------------------------------------------------- */

START_TEST(threads_bitwise) {
    /* training steps and evaluations give the same bits on 1, 2 and 3 threads (n = 512
     * rows of width 64: several evaluation blocks and gradient-sum blocks, and enough
     * work for the LayerNorm kernels to split) */
    const size_t d = 3, n = 512;
    float *x1 = malloc(n * d * 4), *p0 = NULL, *v0 = malloc(n * d * 4), *dv0 = malloc(n * 4);
    float *v = malloc(n * d * 4), *dv = malloc(n * 4);
    size_t np = 0;
    for (int k = 0; k < 6; ++k) {
        g_experts = k < 3 ? 0 : 4; /* then the same with linear experts */
        if (k == 3) {
            free(p0);
            p0 = NULL;
        }
        stochflow_model *m = make_res(d, 64, 2, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 0, 3);
        g_experts = 0;
        ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, k % 3 + 1));
        for (int s = 0; s < 4; ++s) {
            double loss;
            stochflow_random_normal(x1, n * d, 77, (uint64_t)s);
            ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
        }
        float *p;
        ck_assert_ok(stochflow_model_parameters(&p, &np, m));
        ck_assert_ok(stochflow_model_velocity(k % 3 ? v : v0, m, 0.3, x1, n));
        ck_assert_ok(stochflow_model_divergence(k % 3 ? dv : dv0, NULL, m, 0.7, x1, n));
        if (k % 3 == 0) {
            p0 = malloc(np * 4);
            memcpy(p0, p, np * 4);
        } else {
            ck_assert_int_eq(memcmp(p, p0, np * 4), 0);
            ck_assert_int_eq(memcmp(v, v0, n * d * 4), 0);
            ck_assert_int_eq(memcmp(dv, dv0, n * 4), 0);
        }
        stochflow_model_free(m);
    }
    free(x1); free(p0); free(v0); free(dv0); free(v); free(dv);
}
END_TEST

/* Train m for 3 steps on the n rows of x, save it, load it back into *r (same velocity at
 * t, bit for bit, and the same bytes when saved again); the file in *buf (*wrote bytes,
 * the caller frees it). Returns the offset of its RMLP section. */
static size_t round_trip(unsigned char **buf, size_t *wrote, stochflow_model **r,
                         stochflow_model *m, const float *x, size_t n, double t) {
    const size_t d = stochflow_model_dim(m);
    for (int s = 0; s < 3; ++s) {
        double loss;
        ck_assert_ok(stochflow_model_train_step(&loss, m, x, n, NULL, NULL));
    }
    size_t len;
    ck_assert_ok(stochflow_model_serialized_size(&len, m));
    unsigned char *b = malloc(len), *b2 = malloc(len);
    float *v = malloc(n * d * sizeof *v), *v2 = malloc(n * d * sizeof *v2);
    ck_assert_ok(stochflow_model_save_buffer(wrote, b, len, m));
    ck_assert_ok(stochflow_model_load_buffer(r, b, *wrote));
    ck_assert_ok(stochflow_model_velocity(v, m, t, x, n));
    ck_assert_ok(stochflow_model_velocity(v2, *r, t, x, n));
    ck_assert_int_eq(memcmp(v, v2, n * d * sizeof *v), 0);
    ck_assert_ok(stochflow_model_save_buffer(NULL, b2, len, *r));
    ck_assert_int_eq(memcmp(b, b2, len), 0);
    size_t at = 0;
    for (size_t i = 24; i + 4 <= *wrote && !at; ++i)
        if (memcmp(b + i, "RMLP", 4) == 0) at = i;
    ck_assert_uint_gt(at, 0);
    free(b2);
    free(v);
    free(v2);
    *buf = b;
    return at;
}

START_TEST(checkpoint_round_trip) {
    const size_t d = 4, n = 7;
    stochflow_model *m = make_res(d, 12, 3, STOCHFLOW_ACT_TANH, STOCHFLOW_TIME_FOURIER, 2, 0, 0, 9);
    float x[28];
    normals(x, n * d, 8);
    size_t wrote;
    unsigned char *buf;
    stochflow_model *r = NULL;
    const size_t at = round_trip(&buf, &wrote, &r, m, x, n, 0.4);
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_model_config(&c, r));
    size_t w = 0, b = 0;
    ck_assert_int_eq(stochflow_config_arch(c), STOCHFLOW_ARCH_RESMLP);
    ck_assert_ok(stochflow_config_resmlp(&w, &b, c));
    ck_assert_uint_eq(w, 12);
    ck_assert_uint_eq(b, 3);
    stochflow_config_free(c);
    ck_assert_uint_eq(buf[at + 8], 8); /* the section's length */
    /* malformed RMLP sections, each with its checksum fixed up so that the section's
     * own validation is what refuses it */
    const struct {
        size_t off;
        uint32_t value;
        const char *msg;
    } bad[] = {{16, 0, "width 0"},             /* width */
               {16, 65537, "width 65537"},     /* width */
               {20, 0, "0 blocks"},            /* blocks */
               {20, 65, "65 blocks"},          /* blocks */
               {0, 0x504c4d58, "no RMLP section"}}; /* tag "XMLP": what a reader
                                                          without RMLP sees */
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
        unsigned char *fb = malloc(wrote);
        memcpy(fb, buf, wrote);
        for (int q = 0; q < 4; ++q)
            fb[at + bad[k].off + q] = (unsigned char)(bad[k].value >> (8 * q));
        fix_crc(fb, wrote);
        stochflow_model *bad_m = NULL;
        ck_assert_status(stochflow_model_load_buffer(&bad_m, fb, wrote), STOCHFLOW_E_FORMAT);
        ck_assert_ptr_null(bad_m);
        ck_assert_msg(strstr(stochflow_last_error_message(), bad[k].msg) != NULL,
                      "case %zu: %s", k, stochflow_last_error_message());
        free(fb);
    }
    /* a UNET section beside RMLP: refused */
    stochflow_config *uc = NULL;
    stochflow_model *um = NULL;
    ck_assert_ok(stochflow_config_new(&uc, 4));
    ck_assert_ok(set_unet_shape(uc, 1, 2, 2, 2, 1, (size_t[]){1}, 1, 1u, 1));
    ck_assert_ok(stochflow_model_new(&um, uc));
    stochflow_config_free(uc);
    size_t ulen, uat = 0;
    ck_assert_ok(stochflow_model_serialized_size(&ulen, um));
    unsigned char *ub = malloc(ulen);
    ck_assert_ok(stochflow_model_save_buffer(NULL, ub, ulen, um));
    stochflow_model_free(um);
    for (size_t i = 24; i + 4 <= ulen && !uat; ++i)
        if (memcmp(ub + i, "UNET", 4) == 0) uat = i;
    ck_assert_uint_gt(uat, 0);
    const size_t slen = 16 + (size_t)ub[uat + 8]; /* header + body (56 bytes) */
    unsigned char *both = malloc(wrote + slen);
    memcpy(both, buf, wrote - 4); /* everything but the checksum */
    memcpy(both + wrote - 4, ub + uat, slen);
    uint64_t payload = 0;
    for (int q = 0; q < 8; ++q) payload |= (uint64_t)both[16 + q] << (8 * q);
    payload += slen;
    for (int q = 0; q < 8; ++q) both[16 + q] = (unsigned char)(payload >> (8 * q));
    fix_crc(both, wrote + slen);
    stochflow_model *bad_m = NULL;
    ck_assert_status(stochflow_model_load_buffer(&bad_m, both, wrote + slen), STOCHFLOW_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "both a UNET and an RMLP"));
    free(both);
    free(ub);
    free(buf);
    stochflow_model_free(r);
    stochflow_model_free(m);
}
END_TEST

START_TEST(experts_checkpoint) {
    /* the number of experts travels in a 12-byte RMLP section; 0 there is refused (a
     * model without experts writes the 8-byte section, checkpoint_round_trip) */
    const size_t d = 3, n = 9;
    g_experts = 3;
    stochflow_model *m = make_res(d, 12, 2, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_RAW, 0, 0, 0, 19);
    g_experts = 0;
    float x[27];
    normals(x, n * d, 23);
    size_t wrote, k = 0;
    unsigned char *buf;
    stochflow_model *r = NULL;
    const size_t at = round_trip(&buf, &wrote, &r, m, x, n, 0.8);
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_model_config(&c, r));
    ck_assert_ok(stochflow_config_resmlp_experts(&k, c));
    ck_assert_uint_eq(k, 3);
    stochflow_config_free(c);
    ck_assert_uint_eq(buf[at + 8], 12); /* the section's length */
    ck_assert_uint_eq(buf[at + 24], 3);
    buf[at + 24] = 0;
    fix_crc(buf, wrote);
    stochflow_model *bad = NULL;
    ck_assert_status(stochflow_model_load_buffer(&bad, buf, wrote), STOCHFLOW_E_FORMAT);
    ck_assert_ptr_null(bad);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "0 linear experts"));
    buf[at + 24] = 65; /* out of range: the configuration's validation */
    fix_crc(buf, wrote);
    ck_assert_status(stochflow_model_load_buffer(&bad, buf, wrote), STOCHFLOW_E_FORMAT);
    ck_assert_ptr_null(bad);
    free(buf);
    stochflow_model_free(r);
    stochflow_model_free(m);
}
END_TEST

/* ---- learning ------------------------------------------------------------------- */

/* N(mu, diag(sd^2)) with the trig interpolant x_t = cos(pi t / 2) x0 + sin(pi t / 2) x1:
 * v*(t, x) = b' mu + k (x - b mu), k = (a a' + b b' s^2) / (a^2 + b^2 s^2). */
START_TEST(learns_gaussian_velocity) {
    const double MU[2] = {1.0, -0.5}, SD[2] = {0.5, 1.5};
    stochflow_model *m =
        make_res(2, 64, 2, STOCHFLOW_ACT_SILU, STOCHFLOW_TIME_FOURIER, 4, 0, 0, 21);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, 2000));
    const size_t n = 256;
    float *x1 = malloc(n * 2 * 4);
    for (int s = 0; s < 2000; ++s) {
        double loss;
        stochflow_random_normal(x1, n * 2, 5, (uint64_t)s);
        for (size_t i = 0; i < n; ++i)
            for (int k = 0; k < 2; ++k) x1[i * 2 + k] = (float)(MU[k] + SD[k] * x1[i * 2 + k]);
        ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
    }
    double err2 = 0, ref2 = 0;
    float x[800], v[800];
    for (int it = 0; it < 10; ++it) {
        const double t = 0.05 + 0.1 * it, h = M_PI / 2;
        const double a = cos(h * t), b = sin(h * t), da = -h * sin(h * t), db = h * cos(h * t);
        stochflow_random_normal(x, 800, 6, (uint64_t)it);
        for (int i = 0; i < 400; ++i)
            for (int k = 0; k < 2; ++k) {
                const double sd = sqrt(a * a + b * b * SD[k] * SD[k]);
                x[i * 2 + k] = (float)(b * MU[k] + sd * x[i * 2 + k]);
            }
        ck_assert_ok(stochflow_model_velocity(v, m, t, x, 400));
        for (int i = 0; i < 400; ++i)
            for (int k = 0; k < 2; ++k) {
                const double s2 = SD[k] * SD[k], kk = (a * da + b * db * s2) / (a * a + b * b * s2);
                const double ve = db * MU[k] + kk * (x[i * 2 + k] - b * MU[k]);
                err2 += pow(v[i * 2 + k] - ve, 2);
                ref2 += ve * ve;
            }
    }
    const double rel = sqrt(err2 / ref2);
    ck_assert_msg(rel < 0.05, "relative RMS velocity error %g (tolerance 0.05)", rel);
    free(x1);
    stochflow_model_free(m);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("resmlp");
    TCase *tc = tcase_create("resmlp");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, config_and_count);
    tcase_add_test(tc, experts_config_and_count);
    tcase_add_test(tc, experts_closed_form);
    tcase_add_test(tc, experts_start_at_zero);
    tcase_add_test(tc, initial_blocks_are_identity);
    tcase_add_test(tc, loss_gradient_fd);
    tcase_add_test(tc, input_derivatives);
    tcase_add_test(tc, threads_bitwise);
    tcase_add_test(tc, checkpoint_round_trip);
    tcase_add_test(tc, experts_checkpoint);
    tcase_add_test(tc, learns_gaussian_velocity);
    suite_add_tcase(s, tc);
    return s;
}
