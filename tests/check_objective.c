/* check_objective.c - training a drift, score, denoiser or velocity-with-gamma model
 * (stochflow_config_set_objective): the configuration and its checks, the loss of the
 * training step against the same arithmetic through the public sinterp calls, the
 * gradient against central differences, the checkpoint section, and a short training
 * run whose learned drift and score are compared with the closed-form fields of a
 * Gaussian target. */
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "sde.h" /* the latent stream, to rebuild the training step's draws */

static stochflow_model *obj_model(size_t d, int field, int kind, int gamma, int flags,
                                  size_t width, uint64_t seed) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t widths[] = {width, width};
    ck_assert_ok(stochflow_config_new(&c, d));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, widths));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_config_set_objective(c, field, kind, gamma, 0.5, flags));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    return m;
}

/* ---- configuration ---------------------------------------------------------------- */

START_TEST(config_objective) {
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_config_new(&c, 2));
    int f, k, g, fl;
    double sc;
    ck_assert_ok(stochflow_config_objective(&f, &k, &g, &sc, &fl, c));
    ck_assert_int_eq(f, STOCHFLOW_FIELD_VELOCITY);
    ck_assert_int_eq(k, STOCHFLOW_SI_TWO_SIDED);
    ck_assert_int_eq(g, STOCHFLOW_GAMMA_ZERO);
    ck_assert_int_eq(fl, 0);
    ck_assert_ok(stochflow_config_set_objective(c, STOCHFLOW_FIELD_SCORE, 0,
                                                STOCHFLOW_GAMMA_BROWNIAN_SCALED, 0.25,
                                                STOCHFLOW_OBJECTIVE_ANTITHETIC));
    /* refused, configuration unchanged */
    ck_assert_status(stochflow_config_set_objective(c, 9, 0, 0, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_objective(c, 0, 7, 0, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_objective(c, 0, 0, STOCHFLOW_GAMMA_CUSTOM, 0, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_objective(c, 0, 0, STOCHFLOW_GAMMA_BROWNIAN_SCALED,
                                                    -1.0, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_objective(c, 0, 0, 0, 0, 4), STOCHFLOW_E_INVALID);
    /* a score of a gamma-free two-sided interpolant, a mirror without gamma */
    ck_assert_status(stochflow_config_set_objective(c, STOCHFLOW_FIELD_SCORE, 0, 0, 0, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_objective(c, STOCHFLOW_FIELD_DENOISER,
                                                    STOCHFLOW_SI_MIRROR, 0, 0, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_config_set_objective(NULL, 0, 0, 0, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_config_objective(&f, &k, &g, &sc, &fl, c));
    ck_assert_int_eq(f, STOCHFLOW_FIELD_SCORE);
    ck_assert_int_eq(g, STOCHFLOW_GAMMA_BROWNIAN_SCALED);
    ck_assert_double_eq(sc, 0.25);
    ck_assert_int_eq(fl, STOCHFLOW_OBJECTIVE_ANTITHETIC);
    /* one-sided needs no gamma for the score */
    ck_assert_ok(stochflow_config_set_objective(c, STOCHFLOW_FIELD_SCORE, STOCHFLOW_SI_ONE_SIDED,
                                                0, 0, 0));
    /* not with the learnable Fourier interpolant */
    ck_assert_ok(stochflow_config_set_fourier_interpolant(c, STOCHFLOW_INTERP_TRIG, 2));
    stochflow_model *m = NULL;
    ck_assert_status(stochflow_model_new(&m, c), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_ptr_null(m);
    stochflow_config_free(c);
}
END_TEST

/* ---- the training step's loss through the public calls ---------------------------------- */

/* The loss of stochflow_model_loss (evaluation streams, step 0) rebuilt with
 * stochflow_sinterp_point / _loss, the model's velocity at each row's own time and the
 * latent draws of the evaluation latent stream: every field, three kinds, both signs. */
static void check_loss_rebuilt(int field, int kind, int gamma, int flags) {
    const size_t d = 3, n = 5;
    const uint64_t seed = 17;
    stochflow_model *m = obj_model(d, field, kind, gamma, flags, 8, seed);
    float x1[15], x0[15], tf[5];
    stochflow_random_normal(x1, n * d, 3, 1);
    stochflow_random_normal(x0, n * d, 3, 2);
    double t[5];
    for (size_t i = 0; i < n; ++i) tf[i] = (float)(0.1 + 0.2 * i), t[i] = tf[i];
    double loss;
    ck_assert_ok(stochflow_model_loss(&loss, m, x1, n, x0, tf));
    float z[15];
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_EVAL_LATENT, 0, i);
        for (size_t k = 0; k < d; ++k) z[i * d + k] = (float)stochflow__rng_normal(&r);
    }
    stochflow_sinterp *si = NULL;
    ck_assert_ok(stochflow_model_sinterp(&si, m));
    const int pairs = flags & STOCHFLOW_OBJECTIVE_ANTITHETIC;
    double want = 0.0;
    for (int sign = 1; sign >= (pairs ? -1 : 1); sign -= 2) {
        float xt[15], o[15];
        ck_assert_ok(stochflow_sinterp_point(xt, NULL, si, field, t, x0, x1, z, n, d, sign));
        for (size_t i = 0; i < n; ++i)
            ck_assert_ok(stochflow_model_velocity(o + i * d, m, t[i], xt + i * d, 1));
        double l;
        ck_assert_ok(stochflow_sinterp_loss(&l, NULL, si, field, t, x0, x1, z, o, n, d, sign,
                                            pairs ? 0.5 : 1.0));
        want += l;
    }
    ck_assert_msg(fabs(loss - want) <= 1e-5 * (1.0 + fabs(want)),
                  "field %d kind %d gamma %d flags %d: model loss %.9g, rebuilt %.9g", field,
                  kind, gamma, flags, loss, want);
    stochflow_sinterp_free(si);
    stochflow_model_free(m);
}

START_TEST(loss_matches_sinterp) {
    for (int field = STOCHFLOW_FIELD_VELOCITY; field <= STOCHFLOW_FIELD_DENOISER; ++field) {
        check_loss_rebuilt(field, STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_GAMMA_BROWNIAN, 0);
        check_loss_rebuilt(field, STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_GAMMA_QUADRATIC,
                           STOCHFLOW_OBJECTIVE_ANTITHETIC);
        check_loss_rebuilt(field, STOCHFLOW_SI_ONE_SIDED, 0, STOCHFLOW_OBJECTIVE_ANTITHETIC);
        check_loss_rebuilt(field, STOCHFLOW_SI_MIRROR, STOCHFLOW_GAMMA_SIN2, 0);
    }
}
END_TEST

/* Three training steps of a and b on the same batch: the same losses, then the same
 * weights (bit for bit). */
static void train_alike(stochflow_model *a, stochflow_model *b, const float *x1, size_t n) {
    for (int s = 0; s < 3; ++s) {
        double la, lb;
        ck_assert_ok(stochflow_model_train_step(&la, a, x1, n, NULL, NULL));
        ck_assert_ok(stochflow_model_train_step(&lb, b, x1, n, NULL, NULL));
        ck_assert(la == lb);
    }
    float *pa, *pb;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&pa, &np, a));
    ck_assert_ok(stochflow_model_parameters(&pb, NULL, b));
    ck_assert(memcmp(pa, pb, np * sizeof *pa) == 0);
}

/* The default objective set explicitly is today's training step, bit for bit. */
START_TEST(plain_objective_unchanged) {
    const size_t d = 2, n = 7;
    stochflow_model *a = obj_model(d, 0, 0, 0, 0, 6, 3);
    stochflow_model *b = obj_model(d, STOCHFLOW_FIELD_VELOCITY, STOCHFLOW_SI_TWO_SIDED,
                                   STOCHFLOW_GAMMA_ZERO, 0, 6, 3);
    float x1[14];
    stochflow_random_normal(x1, n * d, 5, 1);
    train_alike(a, b, x1, n);
    size_t sa, sb;
    ck_assert_ok(stochflow_model_serialized_size(&sa, a));
    ck_assert_ok(stochflow_model_serialized_size(&sb, b));
    ck_assert_uint_eq(sa, sb);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

/* Same seed, same bits whatever the thread count: the latent draws are keyed by row. */
START_TEST(threads_same_bits) {
    const size_t d = 2, n = 300;
    stochflow_model *a = obj_model(d, STOCHFLOW_FIELD_SCORE, STOCHFLOW_SI_TWO_SIDED,
                                   STOCHFLOW_GAMMA_BROWNIAN, STOCHFLOW_OBJECTIVE_ANTITHETIC, 32, 4);
    stochflow_model *b = obj_model(d, STOCHFLOW_FIELD_SCORE, STOCHFLOW_SI_TWO_SIDED,
                                   STOCHFLOW_GAMMA_BROWNIAN, STOCHFLOW_OBJECTIVE_ANTITHETIC, 32, 4);
    ck_assert_ok(stochflow_model_set_param(b, STOCHFLOW_PARAM_THREADS, 3));
    float *x1 = malloc(n * d * sizeof *x1);
    stochflow_random_normal(x1, n * d, 5, 1);
    train_alike(a, b, x1, n);
    free(x1);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

/* ---- gradient by central differences -------------------------------------------------- */

/* dG/dparams of the training step (training streams; compute_gradient does not advance
 * the step, so its loss at perturbed weights is the same draw) by central differences,
 * eps = 1e-2 on float weights, tolerance 2e-3 absolute + 2e-2 relative. */
static void check_gradient(int field, int kind, int gamma, int flags) {
    const size_t d = 2, n = 6;
    stochflow_model *m = obj_model(d, field, kind, gamma, flags, 5, 9);
    float x1[12];
    stochflow_random_normal(x1, n * d, 7, 1);
    double loss;
    ck_assert_ok(stochflow_model_compute_gradient(&loss, m, x1, n, NULL, NULL));
    float *p, *g;
    size_t np;
    ck_assert_ok(stochflow_model_parameters(&p, &np, m));
    ck_assert_ok(stochflow_model_gradients(&g, NULL, m));
    float *g0 = malloc(np * sizeof *g0);
    memcpy(g0, g, np * sizeof *g);
    const float eps = 1e-2f;
    double worst = 0.0;
    for (size_t i = 0; i < np; ++i) {
        float keep = p[i];
        double lp, lm;
        p[i] = keep + eps;
        ck_assert_ok(stochflow_model_compute_gradient(&lp, m, x1, n, NULL, NULL));
        p[i] = keep - eps;
        ck_assert_ok(stochflow_model_compute_gradient(&lm, m, x1, n, NULL, NULL));
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        double err = fabs(g0[i] - fd) / (2e-3 + 2e-2 * fabs(fd));
        if (err > worst) worst = err;
        if (err > 1.0)
            ck_abort_msg("field %d kind %d flags %d: param %zu analytic %g vs fd %g", field,
                         kind, flags, i, (double)g0[i], fd);
    }
    free(g0);
    stochflow_model_free(m);
}

START_TEST(gradient_fd) {
    for (int field = STOCHFLOW_FIELD_VELOCITY; field <= STOCHFLOW_FIELD_DENOISER; ++field) {
        check_gradient(field, STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_GAMMA_BROWNIAN, 0);
        check_gradient(field, STOCHFLOW_SI_ONE_SIDED, 0, STOCHFLOW_OBJECTIVE_ANTITHETIC);
    }
}
END_TEST

/* ---- checkpoints ------------------------------------------------------------------------ */

static int has_tag(const unsigned char *b, size_t n, const char *tag) {
    for (size_t i = 0; i + 4 <= n; ++i)
        if (memcmp(b + i, tag, 4) == 0) return 1;
    return 0;
}

START_TEST(checkpoint_section) {
    stochflow_model *m = obj_model(2, STOCHFLOW_FIELD_DENOISER, STOCHFLOW_SI_TWO_SIDED,
                                   STOCHFLOW_GAMMA_BROWNIAN_SCALED, 0, 4, 1);
    stochflow_model *plain = obj_model(2, 0, 0, 0, 0, 4, 1);
    size_t n, np, w;
    ck_assert_ok(stochflow_model_serialized_size(&n, m));
    ck_assert_ok(stochflow_model_serialized_size(&np, plain));
    ck_assert_uint_eq(n, np + 16 + 24); /* one section: header + body */
    unsigned char *buf = malloc(n);
    ck_assert_ok(stochflow_model_save_buffer(&w, buf, n, plain));
    ck_assert(!has_tag(buf, w, "SINT"));
    ck_assert_ok(stochflow_model_save_buffer(&w, buf, n, m));
    ck_assert(has_tag(buf, w, "SINT"));
    stochflow_model *back = NULL;
    ck_assert_ok(stochflow_model_load_buffer(&back, buf, w));
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_model_config(&c, back));
    int f, k, g, fl;
    double sc;
    ck_assert_ok(stochflow_config_objective(&f, &k, &g, &sc, &fl, c));
    ck_assert_int_eq(f, STOCHFLOW_FIELD_DENOISER);
    ck_assert_int_eq(g, STOCHFLOW_GAMMA_BROWNIAN_SCALED);
    ck_assert_double_eq(sc, 0.5);
    float x1[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    double la, lb;
    ck_assert_ok(stochflow_model_loss(&la, m, x1, 4, NULL, NULL));
    ck_assert_ok(stochflow_model_loss(&lb, back, x1, 4, NULL, NULL));
    ck_assert(la == lb);
    stochflow_config_free(c);
    stochflow_model_free(back);
    stochflow_model_free(m);
    stochflow_model_free(plain);
    free(buf);
}
END_TEST

/* ---- oracle: a short training run on a Gaussian target ------------------------------------ */

/* Base N(0, I), target N(MU, diag V) in d = 2, two-sided trig interpolant with
 * gamma = sqrt(t (1 - t)): x_t ~ N(b MU, C), C = a^2 + b^2 V + gamma^2, and
 *   drift b(t, x) = b' MU + (1/2) C'/C (x - b MU),  score s(t, x) = -(x - b MU) / C. */
static const double MU[2] = {1.0, -0.5}, V[2] = {0.25, 1.5};

static void exact(double t, const double *x, double *drift, double *score) {
    double a = cos(M_PI * t / 2), b = sin(M_PI * t / 2);
    double ad = -M_PI / 2 * b, bd = M_PI / 2 * a;
    double g2 = t * (1 - t), gg = (1 - 2 * t) / 2;
    for (int j = 0; j < 2; ++j) {
        double C = a * a + b * b * V[j] + g2, Cd = 2 * (a * ad + b * bd * V[j] + gg);
        drift[j] = bd * MU[j] + 0.5 * Cd / C * (x[j] - b * MU[j]);
        score[j] = -(x[j] - b * MU[j]) / C;
    }
}

/* Relative RMS error of a model's field against the exact one over x ~ rho_t at
 * t = 0.1 .. 0.9 (which = 0: drift, 1: score). */
static double field_error(stochflow_model *m, int which) {
    const size_t n = 512;
    float *x = malloc(2 * n * sizeof *x), *o = malloc(2 * n * sizeof *o);
    double num = 0, den = 0;
    for (int it = 1; it <= 9; ++it) {
        double t = it / 10.0, a = cos(M_PI * t / 2), b = sin(M_PI * t / 2);
        stochflow_random_normal(x, 2 * n, 77, (uint64_t)it);
        for (size_t i = 0; i < n; ++i)
            for (int j = 0; j < 2; ++j) {
                double C = a * a + b * b * V[j] + t * (1 - t);
                x[2 * i + j] = (float)(b * MU[j] + sqrt(C) * x[2 * i + j]);
            }
        ck_assert_ok(stochflow_model_velocity(o, m, t, x, n));
        for (size_t i = 0; i < n; ++i) {
            double xi[2] = {x[2 * i], x[2 * i + 1]}, dr[2], sc[2];
            exact(t, xi, dr, sc);
            const double *e = which ? sc : dr;
            for (int j = 0; j < 2; ++j) {
                num += (o[2 * i + j] - e[j]) * (o[2 * i + j] - e[j]);
                den += e[j] * e[j];
            }
        }
    }
    free(x);
    free(o);
    return sqrt(num / den);
}

static double train_and_measure(int field, int which, int steps) {
    stochflow_model *m =
        obj_model(2, field, STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_GAMMA_BROWNIAN,
                  STOCHFLOW_OBJECTIVE_ANTITHETIC, 48, 11);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 3e-3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.99));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EVAL_WEIGHTS, 2));
    const size_t n = 256;
    float *x1 = malloc(2 * n * sizeof *x1);
    for (int s = 0; s < steps; ++s) {
        stochflow_random_normal(x1, 2 * n, 5, (uint64_t)s);
        for (size_t i = 0; i < n; ++i)
            for (int j = 0; j < 2; ++j)
                x1[2 * i + j] = (float)(MU[j] + sqrt(V[j]) * x1[2 * i + j]);
        double loss;
        ck_assert_ok(stochflow_model_train_step(&loss, m, x1, n, NULL, NULL));
    }
    double err = field_error(m, which);
    free(x1);
    stochflow_model_free(m);
    return err;
}

START_TEST(oracle_gaussian) {
    double e_drift = train_and_measure(STOCHFLOW_FIELD_DRIFT, 0, 3000);
    double e_score = train_and_measure(STOCHFLOW_FIELD_SCORE, 1, 3000);
    double e_den = train_and_measure(STOCHFLOW_FIELD_DENOISER, 1, 0); /* untrained: a yardstick */
    printf("# oracle: relative RMS error drift %.4f, score %.4f (untrained %.4f)\n", e_drift,
           e_score, e_den);
    ck_assert_msg(e_drift < 0.15, "drift relative RMS error %g", e_drift);
    ck_assert_msg(e_score < 0.2, "score relative RMS error %g", e_score);
    ck_assert_msg(e_den > 0.5, "untrained model error %g: the measure cannot fail", e_den);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("objective");
    TCase *core = tcase_create("core");
    tcase_add_test(core, config_objective);
    tcase_add_test(core, loss_matches_sinterp);
    tcase_add_test(core, plain_objective_unchanged);
    tcase_add_test(core, threads_same_bits);
    tcase_add_test(core, checkpoint_section);
    tcase_add_test(core, oracle_gaussian);
    suite_add_tcase(s, core);
    TCase *grad = tcase_create("gradients");
    tcase_add_test(grad, gradient_fd);
    suite_add_tcase(s, grad);
    return s;
}
