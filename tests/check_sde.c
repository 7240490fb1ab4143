/* check_sde.c - stochastic interpolants with latent noise and SDE sampling: gamma
 * schedules (derivatives, products at the ends), the Gaussian-mixture oracle with gamma
 * (score against finite differences of log rho_t, drift against the transport equation,
 * rho_t against Monte Carlo draws of x_t), regression targets (signs and minimizers),
 * loss gradients by finite differences, weak orders of Euler-Maruyama and Heun, eps = 0
 * against the ODE sampler bit for bit, thread-count and batch-split independence, the
 * score recovered from a velocity, the SDE likelihood on a Gaussian case, and the
 * sampler and likelihood with a U-Net and with conditional models (the _ctx twins,
 * guidance, Hutchinson divergences). */
#include <string.h>

#include "gmix_oracle.h"
#include "harness.h"
#include "sde.h"

/* ---- Gaussian-mixture oracle with gamma (method.md) ------------------------------- */

#define OK_ 4  /* components per side */
#define OD_ 64 /* dimensions */

typedef struct {
    size_t d, K0, K1;
    double p[OK_], mu0[OK_][OD_], v0[OK_][OD_]; /* base: weights, means, variances */
    double q[OK_], mu1[OK_][OD_], v1[OK_][OD_]; /* target */
    const stochflow_sinterp *si;
    double s_scale; /* 1, or a deliberately wrong score scale */
} orc;

/* log rho_t(x); b, s (may be NULL) and their divergences (single component only). */
static double orc_eval(const orc *o, double t, const double *x, double *b, double *s,
                       double *divb, double *divs) {
    double c[7];
    /* no ck_assert on the hot path: each one reports its location to the test runner */
    if (stochflow_sinterp_eval(c, o->si, t) != 0) ck_abort_msg("%s", stochflow_last_error_message());
    size_t K = o->K0 * o->K1, d = o->d;
    double lw[OK_ * OK_], mx = -INFINITY;
    static double m[OK_ * OK_][OD_], C[OK_ * OK_][OD_], md[OK_ * OK_][OD_], Cd[OK_ * OK_][OD_];
    for (size_t i = 0; i < o->K0; ++i)
        for (size_t jj = 0; jj < o->K1; ++jj) {
            size_t k = i * o->K1 + jj;
            double l = log(o->p[i] * o->q[jj]);
            for (size_t j = 0; j < d; ++j) {
                m[k][j] = c[0] * o->mu0[i][j] + c[1] * o->mu1[jj][j];
                C[k][j] = c[0] * c[0] * o->v0[i][j] + c[1] * c[1] * o->v1[jj][j] + c[2] * c[2];
                md[k][j] = c[3] * o->mu0[i][j] + c[4] * o->mu1[jj][j];
                Cd[k][j] = 2 * (c[0] * c[3] * o->v0[i][j] + c[1] * c[4] * o->v1[jj][j] + c[6]);
                l += -0.5 * (x[j] - m[k][j]) * (x[j] - m[k][j]) / C[k][j] -
                     0.5 * log(2 * M_PI * C[k][j]);
            }
            lw[k] = l;
            if (l > mx) mx = l;
        }
    double sum = 0;
    for (size_t k = 0; k < K; ++k) sum += exp(lw[k] - mx);
    for (size_t j = 0; j < d; ++j) {
        if (b) b[j] = 0;
        if (s) s[j] = 0;
    }
    double db = 0, ds = 0;
    for (size_t k = 0; k < K; ++k) {
        double w = exp(lw[k] - mx) / sum;
        for (size_t j = 0; j < d; ++j) {
            if (b) b[j] += w * (md[k][j] + 0.5 * Cd[k][j] / C[k][j] * (x[j] - m[k][j]));
            if (s) s[j] += -w * (x[j] - m[k][j]) / C[k][j] * o->s_scale;
            db += w * 0.5 * Cd[k][j] / C[k][j];
            ds += -w / C[k][j] * o->s_scale;
        }
    }
    if (divb) *divb = db; /* exact for one component */
    if (divs) *divs = ds;
    return mx + log(sum);
}

/* stochflow_sde_field_fn over the oracle */
static int orc_field(void *user, double t, size_t n, size_t d, const float *x, float *b,
                     float *s, float *db, float *ds) {
    const orc *o = user;
    double xd[OD_], bd[OD_], sd[OD_], dvb, dvs;
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < d; ++j) xd[j] = x[i * d + j];
        orc_eval(o, t, xd, bd, sd, &dvb, &dvs);
        for (size_t j = 0; j < d; ++j) {
            b[i * d + j] = (float)bd[j];
            if (s) s[i * d + j] = (float)sd[j];
        }
        if (db) db[i] = (float)dvb;
        if (ds) ds[i] = (float)dvs;
    }
    return 0;
}

/* the drift as a stochflow_velocity_fn (for the ODE sampler) */
static int orc_velocity(void *user, double t, size_t n, size_t d, const float *x, float *v,
                        float *div) {
    return orc_field(user, t, n, d, x, v, NULL, div, NULL);
}

static stochflow_sinterp *new_si(int kind, int sched, int gamma, double scale) {
    stochflow_sinterp *si = NULL;
    ck_assert_ok(stochflow_sinterp_new(&si, kind, sched, gamma, scale));
    return si;
}

/* base N(0, I), target N(mu, diag v) replicated over d coordinates */
static void orc_gauss(orc *o, const stochflow_sinterp *si, size_t d, double mu, double v) {
    memset(o, 0, sizeof *o);
    o->d = d, o->K0 = 1, o->K1 = 1, o->p[0] = 1, o->q[0] = 1, o->si = si, o->s_scale = 1;
    for (size_t j = 0; j < d; ++j) o->v0[0][j] = 1, o->mu1[0][j] = mu, o->v1[0][j] = v;
}

/* a two-component base and a three-component target in d = 2 */
static void orc_mix(orc *o, const stochflow_sinterp *si) {
    *o = (orc){.d = 2, .K0 = 2, .K1 = 3, .p = {0.4, 0.6},
               .mu0 = {{-0.5, 0.3}, {0.8, -0.2}}, .v0 = {{1.0, 0.6}, {0.5, 1.2}},
               .q = {0.2, 0.5, 0.3}, .mu1 = {{-1.5, 1}, {1, 1.5}, {0.5, -2}},
               .v1 = {{0.36, 0.25}, {0.16, 0.49}, {0.64, 0.09}}, .si = si, .s_scale = 1};
}

/* ---- gamma schedules ---------------------------------------------------------------- */

START_TEST(gamma_derivatives) {
    const int kinds[] = {STOCHFLOW_GAMMA_ZERO, STOCHFLOW_GAMMA_BROWNIAN,
                         STOCHFLOW_GAMMA_BROWNIAN_SCALED, STOCHFLOW_GAMMA_QUADRATIC,
                         STOCHFLOW_GAMMA_SIN2};
    for (size_t k = 0; k < 5; ++k) {
        double c = 2.5, g0[3], g1[3];
        ck_assert_ok(stochflow_gamma_eval(g0, kinds[k], c, 0.0));
        ck_assert_ok(stochflow_gamma_eval(g1, kinds[k], c, 1.0));
        ck_assert_double_eq_tol(g0[0], 0.0, 1e-15);
        ck_assert_double_eq_tol(g1[0], 0.0, 1e-15);
        /* interior: gamma' by central differences (h = 1e-6, tol 1e-7), product */
        for (int i = 1; i < 40; ++i) {
            double t = i / 40.0, h = 1e-6, g[3], gp[3], gm[3];
            ck_assert_ok(stochflow_gamma_eval(g, kinds[k], c, t));
            ck_assert_ok(stochflow_gamma_eval(gp, kinds[k], c, t + h));
            ck_assert_ok(stochflow_gamma_eval(gm, kinds[k], c, t - h));
            ck_assert_double_eq_tol(g[1], (gp[0] - gm[0]) / (2 * h), 1e-7);
            ck_assert_double_eq_tol(g[2], g[0] * g[1], 1e-14);
            ck_assert(g[0] >= 0 && (kinds[k] == STOCHFLOW_GAMMA_ZERO || g[0] > 0));
        }
        /* the ends: gamma gamma' = (1/2) d(gamma^2)/dt, one-sided differences (h = 1e-7) */
        double h = 1e-7, a[3], bq[3];
        ck_assert_ok(stochflow_gamma_eval(a, kinds[k], c, h));
        ck_assert_ok(stochflow_gamma_eval(bq, kinds[k], c, 1 - h));
        ck_assert(isfinite(g0[2]) && isfinite(g1[2]));
        ck_assert_double_eq_tol(g0[2], 0.5 * (a[0] * a[0] - g0[0] * g0[0]) / h, 1e-6);
        ck_assert_double_eq_tol(g1[2], 0.5 * (g1[0] * g1[0] - bq[0] * bq[0]) / h, 1e-6);
    }
    double g[3];
    ck_assert_ok(stochflow_gamma_eval(g, STOCHFLOW_GAMMA_BROWNIAN, 0, 0.0));
    ck_assert_double_eq(g[2], 0.5);
    ck_assert(isinf(g[1]) && g[1] > 0);
    ck_assert_ok(stochflow_gamma_eval(g, STOCHFLOW_GAMMA_BROWNIAN_SCALED, 3.0, 1.0));
    ck_assert_double_eq(g[2], -1.5);
    ck_assert(isinf(g[1]) && g[1] < 0);
    ck_assert_ok(stochflow_gamma_eval(g, STOCHFLOW_GAMMA_BROWNIAN, 0, 0.3));
    ck_assert_double_eq_tol(g[0], sqrt(0.21), 1e-15);
    ck_assert_status(stochflow_gamma_eval(g, STOCHFLOW_GAMMA_BROWNIAN_SCALED, 0.0, 0.5),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_gamma_eval(g, STOCHFLOW_GAMMA_CUSTOM, 1, 0.5), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_gamma_eval(g, STOCHFLOW_GAMMA_SIN2, 1, 1.5), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_gamma_eval(NULL, STOCHFLOW_GAMMA_SIN2, 1, 0.5), STOCHFLOW_E_INVALID);
}
END_TEST

static void cubic_gamma(void *user, double t, double out[3]) { /* gamma = t (1-t)^2 */
    (void)user;
    out[0] = t * (1 - t) * (1 - t);
    out[1] = (1 - t) * (1 - t) - 2 * t * (1 - t);
    out[2] = out[0] * out[1];
}
static void bad_gamma(void *user, double t, double out[3]) { /* gamma(1) != 0 */
    (void)user;
    out[0] = t, out[1] = 1, out[2] = t;
}
static void quad_sched(void *user, double t, double out[4]) {
    (void)user;
    out[0] = (1 - t) * (1 - t), out[1] = t * t, out[2] = -2 * (1 - t), out[3] = 2 * t;
}

START_TEST(interpolant_kinds) {
    double c[7], ab[4], g[3];
    stochflow_sinterp *two = new_si(0, 0, 0, 0); /* trig, brownian */
    ck_assert_ok(stochflow_sinterp_eval(c, two, 0.3));
    ck_assert_ok(stochflow_gamma_eval(g, STOCHFLOW_GAMMA_BROWNIAN, 0, 0.3));
    ck_assert_double_eq_tol(c[0], cos(M_PI * 0.15), 1e-15);
    ck_assert_double_eq_tol(c[1], sin(M_PI * 0.15), 1e-15);
    ck_assert_double_eq(c[2], g[0]);
    ck_assert_double_eq(c[5], g[1]);
    ck_assert_double_eq(c[6], g[2]);
    stochflow_sinterp *one = new_si(STOCHFLOW_SI_ONE_SIDED, STOCHFLOW_INTERP_LINEAR, 0, 0);
    ck_assert_ok(stochflow_sinterp_eval(c, one, 0.25));
    const double want1[7] = {0, 0.25, 0.75, 0, 1, -1, -0.75};
    for (int k = 0; k < 7; ++k) ck_assert_double_eq(c[k], want1[k]);
    stochflow_sinterp *mir = new_si(STOCHFLOW_SI_MIRROR, 0, STOCHFLOW_GAMMA_QUADRATIC, 0);
    ck_assert_ok(stochflow_sinterp_eval(c, mir, 0.25));
    const double want2[7] = {0, 1, 0.1875, 0, 0, 0.5, 0.09375};
    for (int k = 0; k < 7; ++k) ck_assert_double_eq(c[k], want2[k]);
    /* custom schedule and gamma through callbacks */
    ck_assert_ok(stochflow_sinterp_set_schedule(two, quad_sched, NULL));
    ck_assert_ok(stochflow_sinterp_set_gamma(two, cubic_gamma, NULL));
    ck_assert_ok(stochflow_sinterp_eval(c, two, 0.4));
    quad_sched(NULL, 0.4, ab);
    cubic_gamma(NULL, 0.4, g);
    ck_assert_double_eq(c[0], ab[0]);
    ck_assert_double_eq(c[4], ab[3]);
    ck_assert_double_eq(c[2], g[0]);
    ck_assert_double_eq(c[6], g[2]);
    /* a bad gamma is refused and the interpolant unchanged */
    ck_assert_status(stochflow_sinterp_set_gamma(two, bad_gamma, NULL), STOCHFLOW_E_INVALID);
    double c2[7];
    ck_assert_ok(stochflow_sinterp_eval(c2, two, 0.4));
    ck_assert_double_eq(c2[2], c[2]);
    stochflow_sinterp_free(mir);
    ck_assert_status(stochflow_sinterp_new(&mir, 9, 0, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sinterp_new(&mir, 0, 0, STOCHFLOW_GAMMA_BROWNIAN_SCALED, -1),
                     STOCHFLOW_E_INVALID);
    ck_assert_ptr_null(mir);
    ck_assert_status(stochflow_sinterp_eval(c, two, -0.1), STOCHFLOW_E_INVALID);
    stochflow_sinterp_free(NULL);
    stochflow_sinterp_free(two);
    stochflow_sinterp_free(one);
}
END_TEST

/* ---- the oracle ----------------------------------------------------------------------- */

/* s = grad log rho_t (central differences, h = 1e-5) and the transport equation
 * d/dt log rho + div b + b . grad log rho = 0 (differences in t and x). */
static void check_oracle(const orc *o, double t) {
    double x[2] = {0.3, -0.4}, b[2], s[2], h = 1e-5;
    for (int pt = 0; pt < 3; ++pt) {
        x[0] = 0.3 + 0.9 * pt, x[1] = -0.4 + 0.5 * pt;
        orc_eval(o, t, x, b, s, NULL, NULL);
        double divb = 0, dlt;
        for (size_t j = 0; j < 2; ++j) {
            double xp[2] = {x[0], x[1]}, xm[2] = {x[0], x[1]}, bp[2], bm[2];
            xp[j] += h, xm[j] -= h;
            double lp = orc_eval(o, t, xp, bp, NULL, NULL, NULL);
            double lm = orc_eval(o, t, xm, bm, NULL, NULL, NULL);
            ck_assert_double_eq_tol(s[j], (lp - lm) / (2 * h), 1e-6 * (1 + fabs(s[j])));
            divb += (bp[j] - bm[j]) / (2 * h);
        }
        dlt = (orc_eval(o, t + h, x, NULL, NULL, NULL, NULL) -
               orc_eval(o, t - h, x, NULL, NULL, NULL, NULL)) / (2 * h);
        double res = dlt + divb + b[0] * s[0] + b[1] * s[1];
        ck_assert_msg(fabs(res) < 1e-5 * (1 + fabs(dlt)), "transport residual %g at t = %g", res, t);
    }
}

START_TEST(oracle_fields) {
    const int kinds[] = {STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_SI_ONE_SIDED, STOCHFLOW_SI_MIRROR};
    const int gammas[] = {STOCHFLOW_GAMMA_BROWNIAN, STOCHFLOW_GAMMA_SIN2,
                          STOCHFLOW_GAMMA_QUADRATIC};
    for (int k = 0; k < 3; ++k)
        for (int gk = 0; gk < 3; ++gk) {
            stochflow_sinterp *si = new_si(kinds[k], STOCHFLOW_INTERP_LINEAR, gammas[gk], 0);
            orc o;
            orc_mix(&o, si);
            for (int i = 1; i < 10; ++i) check_oracle(&o, i / 10.0);
            stochflow_sinterp_free(si);
        }
}
END_TEST

/* x_t from stochflow_sinterp_point on mixture draws has the oracle's rho_t: mean and
 * second moment per coordinate, and the mean of log rho_t against the oracle's entropy
 * estimate from its own draws (n = 200000: tolerances about 5 standard errors). */
START_TEST(oracle_density_mc) {
    stochflow_sinterp *si = new_si(STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_INTERP_TRIG,
                                   STOCHFLOW_GAMMA_BROWNIAN, 0);
    orc o;
    orc_mix(&o, si);
    size_t n = 200000, d = 2;
    float *x0 = malloc(n * d * 4), *x1 = malloc(n * d * 4), *z = malloc(n * d * 4),
          *xt = malloc(n * d * 4), *u = malloc(n * 4), *u2 = malloc(n * 4);
    double *t = malloc(n * sizeof *t);
    ck_assert_ok(stochflow_random_normal(x0, n * d, 7, 1));
    ck_assert_ok(stochflow_random_normal(x1, n * d, 7, 2));
    ck_assert_ok(stochflow_random_normal(z, n * d, 7, 3));
    ck_assert_ok(stochflow_random_normal(u, n, 7, 4));
    ck_assert_ok(stochflow_random_normal(u2, n, 7, 5));
    double tt = 0.6;
    for (size_t i = 0; i < n; ++i) { /* component choice from a uniform built from u */
        double uu = 0.5 * (1 + erf(u[i] / sqrt(2.0)));
        size_t ci = uu < o.p[0] ? 0 : 1;
        double v = 0.5 * (1 + erf(u2[i] / sqrt(2.0)));
        size_t cj = v < o.q[0] ? 0 : v < o.q[0] + o.q[1] ? 1 : 2;
        for (size_t j = 0; j < d; ++j) {
            x0[i * d + j] = (float)(o.mu0[ci][j] + sqrt(o.v0[ci][j]) * x0[i * d + j]);
            x1[i * d + j] = (float)(o.mu1[cj][j] + sqrt(o.v1[cj][j]) * x1[i * d + j]);
        }
        t[i] = tt;
    }
    ck_assert_ok(stochflow_sinterp_point(xt, NULL, si, STOCHFLOW_FIELD_DRIFT, t, x0, x1, z, n, d, 1));
    double c[7];
    ck_assert_ok(stochflow_sinterp_eval(c, si, tt));
    for (size_t j = 0; j < d; ++j) {
        double m = 0, m2 = 0, em = 0, em2 = 0;
        for (size_t i = 0; i < n; ++i) m += xt[i * d + j], m2 += (double)xt[i * d + j] * xt[i * d + j];
        m /= n, m2 /= n;
        for (size_t i = 0; i < 2; ++i)
            for (size_t k = 0; k < 3; ++k) {
                double mk = c[0] * o.mu0[i][j] + c[1] * o.mu1[k][j];
                double Ck = c[0] * c[0] * o.v0[i][j] + c[1] * c[1] * o.v1[k][j] + c[2] * c[2];
                em += o.p[i] * o.q[k] * mk, em2 += o.p[i] * o.q[k] * (Ck + mk * mk);
            }
        ck_assert_double_eq_tol(m, em, 0.01);
        ck_assert_double_eq_tol(m2, em2, 0.02);
    }
    /* the oracle density integrates the draws' histogram: a box probability */
    double box = 0, xs[2];
    size_t hits = 0;
    for (size_t i = 0; i < n; ++i)
        if (xt[i * d] > 0 && xt[i * d] < 1 && xt[i * d + 1] > 0 && xt[i * d + 1] < 1) ++hits;
    for (int a = 0; a < 100; ++a)
        for (int b = 0; b < 100; ++b) {
            xs[0] = (a + 0.5) / 100, xs[1] = (b + 0.5) / 100;
            box += exp(orc_eval(&o, tt, xs, NULL, NULL, NULL, NULL)) * 1e-4;
        }
    ck_assert_double_eq_tol((double)hits / n, box, 0.005);
    free(x0), free(x1), free(z), free(xt), free(u), free(u2), free(t);
    stochflow_sinterp_free(si);
}
END_TEST

/* Regression of the targets on x_t at a fixed t (1-D Gaussian, n = 400000): the least-
 * squares line is the conditional mean, which the oracle gives (the fields are linear
 * in x for one Gaussian to one Gaussian). Checks every sign of the targets. */
START_TEST(targets_regress_to_fields) {
    const int kinds[] = {STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_SI_ONE_SIDED, STOCHFLOW_SI_MIRROR};
    size_t n = 400000;
    float *x0 = malloc(n * 4), *x1 = malloc(n * 4), *z = malloc(n * 4), *xt = malloc(n * 4),
          *y = malloc(n * 4);
    double *t = malloc(n * sizeof *t);
    ck_assert_ok(stochflow_random_normal(x0, n, 11, 1));
    ck_assert_ok(stochflow_random_normal(x1, n, 11, 2));
    ck_assert_ok(stochflow_random_normal(z, n, 11, 3));
    for (size_t i = 0; i < n; ++i) x1[i] = 1.5f + 0.5f * x1[i], t[i] = 0.35;
    for (int k = 0; k < 3; ++k) {
        stochflow_sinterp *si = new_si(kinds[k], STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_SIN2, 0);
        orc o;
        orc_gauss(&o, si, 1, 1.5, 0.25);
        if (kinds[k] != STOCHFLOW_SI_TWO_SIDED) o.v0[0][0] = 0; /* no x0 in x_t */
        for (int field = STOCHFLOW_FIELD_VELOCITY; field <= STOCHFLOW_FIELD_DENOISER; ++field)
            for (int sign = -1; sign <= 1; sign += 2) {
                ck_assert_ok(stochflow_sinterp_point(xt, y, si, field, t, x0, x1, z, n, 1, sign));
                double mx = 0, my = 0, sxx = 0, sxy = 0;
                for (size_t i = 0; i < n; ++i) mx += xt[i], my += y[i];
                mx /= n, my /= n;
                for (size_t i = 0; i < n; ++i)
                    sxx += (xt[i] - mx) * (xt[i] - mx), sxy += (xt[i] - mx) * (y[i] - my);
                double slope = sxy / sxx;
                /* oracle field at x = mx and mx + 1 */
                double c[7], xa = mx, xb = mx + 1, ba, bb, sa, sb;
                ck_assert_ok(stochflow_sinterp_eval(c, si, 0.35));
                orc_eval(&o, 0.35, &xa, &ba, &sa, NULL, NULL);
                orc_eval(&o, 0.35, &xb, &bb, &sb, NULL, NULL);
                double fa, fb;
                switch (field) {
                case STOCHFLOW_FIELD_VELOCITY: fa = ba + c[6] * sa, fb = bb + c[6] * sb; break;
                case STOCHFLOW_FIELD_DRIFT: fa = ba, fb = bb; break;
                case STOCHFLOW_FIELD_SCORE: fa = sa, fb = sb; break;
                default: fa = sa * c[2], fb = sb * c[2]; break;
                }
                ck_assert_msg(fabs(my - fa) < 0.02 * (1 + fabs(fa)) && fabs(slope - (fb - fa)) <
                                  0.03 * (1 + fabs(fb - fa)),
                              "kind %d field %d sign %d: line %g + %g (x - mx), oracle %g + %g",
                              kinds[k], field, sign, my, slope, fa, fb - fa);
            }
        stochflow_sinterp_free(si);
    }
    free(x0), free(x1), free(z), free(xt), free(y), free(t);
}
END_TEST

/* ---- losses ------------------------------------------------------------------------- */

START_TEST(loss_gradients) {
    const int kinds[] = {STOCHFLOW_SI_TWO_SIDED, STOCHFLOW_SI_ONE_SIDED, STOCHFLOW_SI_MIRROR};
    size_t n = 5, d = 3;
    float x0[15], x1[15], z[15], o[15], grad[15], y[15];
    double t[5] = {0.1, 0.3, 0.5, 0.77, 0.95};
    ck_assert_ok(stochflow_random_normal(x0, 15, 3, 1));
    ck_assert_ok(stochflow_random_normal(x1, 15, 3, 2));
    ck_assert_ok(stochflow_random_normal(z, 15, 3, 3));
    ck_assert_ok(stochflow_random_normal(o, 15, 3, 4));
    for (int k = 0; k < 3; ++k) {
        stochflow_sinterp *si = new_si(kinds[k], STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_BROWNIAN, 0);
        for (int field = STOCHFLOW_FIELD_VELOCITY; field <= STOCHFLOW_FIELD_DENOISER; ++field)
            for (int sign = -1; sign <= 1; sign += 2) {
                double L, Lp, Lm, w = 0.5;
                ck_assert_ok(stochflow_sinterp_loss(&L, grad, si, field, t, x0, x1, z, o, n, d,
                                                    sign, w));
                /* L = w mean |o - y|^2 - |y|^2 with the target of sinterp_point */
                ck_assert_ok(stochflow_sinterp_point(NULL, y, si, field, t, x0, x1, z, n, d, sign));
                double ref = 0;
                for (size_t q = 0; q < 15; ++q)
                    ref += ((double)o[q] - y[q]) * ((double)o[q] - y[q]) - (double)y[q] * y[q];
                ck_assert_double_eq_tol(L, w * ref / n, 1e-5 * (1 + fabs(L)));
                /* central differences in double on a perturbed copy, h = 1e-3 */
                for (size_t q = 0; q < 15; ++q) {
                    float op[15], om[15];
                    memcpy(op, o, sizeof op), memcpy(om, o, sizeof om);
                    double h = 1e-3;
                    op[q] = (float)(o[q] + h), om[q] = (float)(o[q] - h);
                    double hh = ((double)op[q] - om[q]) / 2;
                    ck_assert_ok(stochflow_sinterp_loss(&Lp, NULL, si, field, t, x0, x1, z, op,
                                                        n, d, sign, w));
                    ck_assert_ok(stochflow_sinterp_loss(&Lm, NULL, si, field, t, x0, x1, z, om,
                                                        n, d, sign, w));
                    ck_assert_double_eq_tol(grad[q], (Lp - Lm) / (2 * hh), 1e-4);
                }
            }
        stochflow_sinterp_free(si);
    }
}
END_TEST

START_TEST(loss_errors) {
    stochflow_sinterp *si = new_si(0, 0, STOCHFLOW_GAMMA_BROWNIAN, 0);
    float x0[2] = {1, 2}, x1[2] = {3, 4}, z[2] = {0.5, -0.5}, o[2] = {0, 0}, y[2] = {7, 7};
    double t0[1] = {0.0}, th[1] = {0.5}, tbad[1] = {1.5};
    double L = 42;
    /* score and drift targets undefined where gamma = 0 (gamma' infinite): refused,
     * outputs untouched */
    ck_assert_status(stochflow_sinterp_point(NULL, y, si, STOCHFLOW_FIELD_SCORE, t0, x0, x1, z, 1,
                                             2, 1), STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_sinterp_point(NULL, y, si, STOCHFLOW_FIELD_DRIFT, t0, x0, x1, z, 1,
                                             2, 1), STOCHFLOW_E_NONFINITE);
    ck_assert(y[0] == 7 && y[1] == 7);
    ck_assert_status(stochflow_sinterp_loss(&L, NULL, si, STOCHFLOW_FIELD_SCORE, t0, x0, x1, z, o,
                                            1, 2, 1, 1), STOCHFLOW_E_NONFINITE);
    ck_assert_double_eq(L, 42);
    /* the denoiser and the velocity are fine there */
    ck_assert_ok(stochflow_sinterp_point(NULL, y, si, STOCHFLOW_FIELD_DENOISER, t0, x0, x1, z, 1,
                                         2, 1));
    ck_assert_ok(stochflow_sinterp_point(NULL, y, si, STOCHFLOW_FIELD_VELOCITY, t0, x0, x1, z, 1,
                                         2, 1));
    ck_assert_status(stochflow_sinterp_point(NULL, y, si, STOCHFLOW_FIELD_DRIFT, tbad, x0, x1, z,
                                             1, 2, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sinterp_point(NULL, y, si, STOCHFLOW_FIELD_DRIFT, th, NULL, x1, z,
                                             1, 2, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sinterp_point(NULL, y, si, STOCHFLOW_FIELD_DRIFT, th, x0, x1, z,
                                             1, 2, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sinterp_point(NULL, y, si, 9, th, x0, x1, z, 1, 2, 1),
                     STOCHFLOW_E_INVALID);
    o[1] = NAN;
    ck_assert_status(stochflow_sinterp_loss(&L, NULL, si, STOCHFLOW_FIELD_DRIFT, th, x0, x1, z, o,
                                            1, 2, 1, 1), STOCHFLOW_E_NONFINITE);
    stochflow_sinterp_free(si);
}
END_TEST

/* ---- SDE integrators ---------------------------------------------------------------- */

static stochflow_sde *new_sde(int method, double steps, double eps) {
    stochflow_sde *s = NULL;
    ck_assert_ok(stochflow_sde_new(&s));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_METHOD, method));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_STEPS, steps));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_EPS, eps));
    return s;
}

/* Time-1 mean and variance error of the sampler on a Gaussian target, pooled over
 * n rows x d coordinates (all coordinates share the law). */
static double weak_error(int method, size_t steps, double eps, const orc *o, size_t n) {
    size_t d = o->d;
    float *x = malloc(n * d * sizeof *x);
    stochflow_sde *s = new_sde(method, (double)steps, eps);
    ck_assert_ok(stochflow_sde_sample_fn(x, s, orc_field, (void *)o, d, n, 5));
    double nfe;
    ck_assert_ok(stochflow_sde_stat(&nfe, s, STOCHFLOW_STAT_NFE));
    ck_assert_double_eq(nfe, (double)steps * (method == STOCHFLOW_SDE_HEUN ? 2 : 1));
    double m = 0, m2 = 0;
    for (size_t q = 0; q < n * d; ++q) m += x[q], m2 += (double)x[q] * x[q];
    m /= (double)(n * d), m2 /= (double)(n * d);
    double var = m2 - m * m;
    free(x);
    stochflow_sde_free(s);
    return fabs(m - o->mu1[0][0]) + fabs(var - o->v1[0][0]);
}

START_TEST(weak_order) {
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_BROWNIAN, 0);
    orc o;
    orc_gauss(&o, si, 64, 1.5, 0.25);
    size_t n = 8192; /* 5 10^5 samples: standard error of the variance about 5e-4 */
    double em[4], he[3];
    for (int k = 0; k < 4; ++k) em[k] = weak_error(STOCHFLOW_SDE_EULER_MARUYAMA, 4u << k, 1.0, &o, n);
    for (int k = 0; k < 3; ++k) he[k] = weak_error(STOCHFLOW_SDE_HEUN, 2u << k, 1.0, &o, n);
    printf("# weak errors EM (4, 8, 16, 32 steps): %.4g %.4g %.4g %.4g\n", em[0], em[1], em[2],
           em[3]);
    printf("# weak errors Heun (2, 4, 8 steps): %.4g %.4g %.4g\n", he[0], he[1], he[2]);
    /* first order: halving the step about halves the error */
    for (int k = 0; k < 3; ++k)
        ck_assert_msg(em[k] / em[k + 1] > 1.6 && em[k] / em[k + 1] < 2.6, "EM ratio %g",
                      em[k] / em[k + 1]);
    /* second order: about a quarter */
    for (int k = 0; k < 2; ++k)
        ck_assert_msg(he[k] / he[k + 1] > 3.0, "Heun ratio %g", he[k] / he[k + 1]);
    stochflow_sinterp_free(si);
}
END_TEST

/* eps = 0: bit for bit the ODE Euler and Heun samplers on the same drift */
START_TEST(eps_zero_is_ode) {
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_LINEAR, STOCHFLOW_GAMMA_SIN2, 0);
    orc o;
    orc_mix(&o, si);
    size_t n = 33, d = 2;
    float xs[66], xo[66];
    const int m_sde[2] = {STOCHFLOW_SDE_EULER_MARUYAMA, STOCHFLOW_SDE_HEUN};
    const int m_ode[2] = {STOCHFLOW_SOLVER_EULER, STOCHFLOW_SOLVER_HEUN};
    for (int k = 0; k < 2; ++k) {
        stochflow_sde *s = new_sde(m_sde[k], 37, 0.0);
        stochflow_solver *ode = NULL;
        ck_assert_ok(stochflow_solver_new(&ode));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_SOLVER, m_ode[k]));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_STEPS, 37));
        ck_assert_ok(stochflow_sde_sample_fn(xs, s, orc_field, &o, d, n, 99));
        ck_assert_ok(stochflow_solver_sample_fn(xo, NULL, ode, orc_velocity, &o, d, n, 99));
        ck_assert_mem_eq(xs, xo, sizeof xs);
        double a, b;
        ck_assert_ok(stochflow_sde_stat(&a, s, STOCHFLOW_STAT_NFE));
        ck_assert_ok(stochflow_solver_stat(&b, ode, STOCHFLOW_STAT_NFE));
        ck_assert_double_eq(a, b);
        /* with noise the result differs (the comparison can fail) */
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_EPS, 0.3));
        ck_assert_ok(stochflow_sde_sample_fn(xs, s, orc_field, &o, d, n, 99));
        ck_assert(memcmp(xs, xo, sizeof xs) != 0);
        stochflow_sde_free(s);
        stochflow_solver_free(ode);
    }
    stochflow_sinterp_free(si);
}
END_TEST

/* Noise keyed by (seed, step, row): a sub-batch gives the same rows; T_END and DENOISE
 * switch the noise off where they say (same as eps = 0 there). */
START_TEST(batch_split_and_windows) {
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_BROWNIAN, 0);
    orc o;
    orc_gauss(&o, si, 3, 1.0, 0.5);
    float a[30], b[12], c[30];
    for (int method = 1; method <= 2; ++method) {
        stochflow_sde *s = new_sde(method, 20, 0.7);
        ck_assert_ok(stochflow_sde_sample_fn(a, s, orc_field, &o, 3, 10, 4));
        ck_assert_ok(stochflow_sde_sample_fn(b, s, orc_field, &o, 3, 4, 4));
        ck_assert_mem_eq(a, b, sizeof b);
        /* T_END = 0.5: from t = 0.5 on the sampler is the ODE; compare with an eps
         * schedule that is zero there */
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.5));
        ck_assert_ok(stochflow_sde_sample_fn(c, s, orc_field, &o, 3, 10, 4));
        ck_assert(memcmp(a, c, sizeof a) != 0);
        stochflow_sde_free(s);
    }
    stochflow_sinterp_free(si);
}
END_TEST

static double eps_half(void *user, double t) {
    (void)user;
    return t < 0.5 ? 0.7 : 0.0;
}

START_TEST(eps_schedule_matches_window) {
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_BROWNIAN, 0);
    orc o;
    orc_gauss(&o, si, 3, 1.0, 0.5);
    float a[30], c[30];
    for (int method = 1; method <= 2; ++method) {
        stochflow_sde *s = new_sde(method, 20, 0.7);
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.5));
        ck_assert_ok(stochflow_sde_sample_fn(a, s, orc_field, &o, 3, 10, 4));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0));
        ck_assert_ok(stochflow_sde_set_eps_schedule(s, eps_half, NULL));
        ck_assert_ok(stochflow_sde_sample_fn(c, s, orc_field, &o, 3, 10, 4));
        ck_assert_mem_eq(a, c, sizeof a);
        stochflow_sde_free(s);
    }
    stochflow_sinterp_free(si);
}
END_TEST

/* ---- score from a velocity ----------------------------------------------------------- */

START_TEST(score_from_velocity_oracle) {
    /* gamma-free interpolant: the oracle with gamma ZERO gives the exact score; the
     * velocity of gmix_oracle.h (the same rho_t) gives it back through the formula */
    for (int lin = 0; lin <= 1; ++lin) {
        gmix g;
        gm_mix2(&g);
        g.linear = lin;
        stochflow_sinterp *si = new_si(0, lin ? STOCHFLOW_INTERP_LINEAR : STOCHFLOW_INTERP_TRIG,
                                       STOCHFLOW_GAMMA_ZERO, 0);
        orc o = {.d = 2, .K0 = 1, .K1 = 2, .p = {1}, .v0 = {{1, 1}}, .q = {0.3, 0.7},
                 .mu1 = {{-2, 1}, {2, -0.5}}, .v1 = {{0.25, 0.64}, {0.49, 0.16}}, .si = si,
                 .s_scale = 1};
        for (int i = 0; i < 10; ++i) {
            double t = i / 10.0, ab[4];
            gm_sched(&g, t, ab);
            float x[6] = {0.3f, -0.2f, 1.5f, 0.4f, -1.0f, 2.0f}, v[6], s[6], dv[3], ds[3];
            ck_assert_int_eq(gm_field(&g, t, 3, 2, x, v, dv), 0);
            ck_assert_ok(stochflow_score_from_velocity(s, ds, x, v, dv, 3, 2, ab));
            for (int p = 0; p < 3; ++p) {
                double xd[2] = {x[2 * p], x[2 * p + 1]}, se[2];
                orc_eval(&o, t, xd, NULL, se, NULL, NULL);
                for (int j = 0; j < 2; ++j)
                    ck_assert_msg(fabs(s[2 * p + j] - se[j]) < 2e-5 * (1 + fabs(se[j])),
                                  "t = %g: score %g, exact %g", t, s[2 * p + j], se[j]);
                /* div s against central differences of the recovered score */
                double h = 1e-3, dsum = 0;
                for (int j = 0; j < 2; ++j) {
                    double xp[2] = {xd[0], xd[1]}, xm[2] = {xd[0], xd[1]}, sp[2], sm[2];
                    xp[j] += h, xm[j] -= h;
                    orc_eval(&o, t, xp, NULL, sp, NULL, NULL);
                    orc_eval(&o, t, xm, NULL, sm, NULL, NULL);
                    dsum += (sp[j] - sm[j]) / (2 * h);
                }
                ck_assert_double_eq_tol(ds[p], dsum, 1e-3 * (1 + fabs(dsum)));
            }
        }
        /* t = 1: a = 0, the formula divides by zero: refused */
        double ab1[4];
        float x[2] = {0, 0}, v[2] = {1, 1}, s[2];
        gm_sched(&g, 1.0, ab1); /* trig: a(1) = cos(pi/2) = 6e-17, zero up to rounding */
        ck_assert_status(stochflow_score_from_velocity(s, NULL, x, v, NULL, 1, 2, ab1),
                         STOCHFLOW_E_INVALID);
        stochflow_sinterp_free(si);
    }
}
END_TEST

/* ---- likelihood ----------------------------------------------------------------------- */

START_TEST(likelihood_gaussian) {
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_BROWNIAN, 0);
    orc o;
    orc_gauss(&o, si, 2, 0.0, 0.0);
    o.mu1[0][0] = 1.0, o.mu1[0][1] = -0.5, o.v1[0][0] = 0.5, o.v1[0][1] = 2.0;
    size_t n = 4, d = 2;
    float x[8] = {1.2f, -0.3f, 0.1f, 1.0f, 2.0f, -2.0f, 1.0f, -0.5f};
    double exact[4];
    for (size_t i = 0; i < n; ++i) {
        double xd[2] = {x[2 * i], x[2 * i + 1]};
        exact[i] = orc_eval(&o, 1.0, xd, NULL, NULL, NULL, NULL);
    }
    float lp[4], se[4], lo[4];
    /* eps = 0: the ODE formula (Euler backward, same grid) */
    stochflow_sde *s = new_sde(STOCHFLOW_SDE_EULER_MARUYAMA, 400, 0.0);
    ck_assert_ok(stochflow_sde_log_prob_fn(lp, se, s, orc_field, &o, d, x, n, 1));
    stochflow_solver *ode = NULL;
    ck_assert_ok(stochflow_solver_new(&ode));
    ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_EULER));
    ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_STEPS, 400));
    ck_assert_ok(stochflow_solver_log_prob_fn(lo, NULL, ode, orc_velocity, &o, d, x, n, 1.0));
    for (size_t i = 0; i < n; ++i) {
        ck_assert_double_eq_tol(lp[i], lo[i], 2e-5 * (1 + fabs(lo[i])));
        ck_assert_double_eq_tol(se[i], 0.0, 1e-6); /* deterministic paths */
        ck_assert_double_eq_tol(lp[i], exact[i], 0.02);
    }
    /* eps > 0: with the exact fields every path estimates log rho1 (the martingale term
     * cancels the path noise), so the mean is close and the standard error small */
    for (int k = 0; k < 2; ++k) {
        double eps = k ? 2.0 : 0.5;
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_EPS, eps));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 32));
        ck_assert_ok(stochflow_sde_log_prob_fn(lp, se, s, orc_field, &o, d, x, n, 1));
        for (size_t i = 0; i < n; ++i) {
            printf("# eps %g point %zu: SDE %.5f +- %.5f, exact %.5f\n", eps, i, lp[i], se[i],
                   exact[i]);
            ck_assert_double_eq_tol(lp[i], exact[i], 0.03 + 3 * se[i]);
            ck_assert(se[i] > 0 && se[i] < 0.05);
        }
    }
    double nfe;
    ck_assert_ok(stochflow_sde_stat(&nfe, s, STOCHFLOW_STAT_NFE));
    ck_assert_double_eq(nfe, 400);
    stochflow_sde_free(s);
    stochflow_solver_free(ode);
    stochflow_sinterp_free(si);
}
END_TEST

/* log-density at x of the time-1 law of the forward SDE dX = [b + eps s^] dt +
 * sqrt(2 eps) dW from N(0, 1), for the 1-D Gaussian oracle whose score is scaled by
 * o->s_scale (linear in x, so the law stays Gaussian: mean and variance by RK4 on
 * their ODEs, 20000 steps). */
static double sde_model_logpdf(const orc *o, double eps, double x) {
    double mu = 0, V = 1, h = 1.0 / 20000, sc = o->s_scale;
    for (int k = 0; k < 20000; ++k) {
        double A[3], B[3];
        for (int q = 0; q < 3; ++q) {
            double c[7], t = (k + 0.5 * q) * h;
            if (stochflow_sinterp_eval(c, o->si, t) != 0) ck_abort();
            double m = c[1] * o->mu1[0][0], md = c[4] * o->mu1[0][0];
            double C = c[0] * c[0] + c[1] * c[1] * o->v1[0][0] + c[2] * c[2];
            double Cd = 2 * (c[0] * c[3] + c[1] * c[4] * o->v1[0][0] + c[6]);
            A[q] = 0.5 * Cd / C - sc * eps / C; /* drift = A (x - m) + md */
            B[q] = md - A[q] * m;
        }
        double km[4], kv[4], mm = mu, vv = V;
        for (int st = 0; st < 4; ++st) {
            int q = st == 0 ? 0 : st == 3 ? 2 : 1;
            km[st] = A[q] * mm + B[q];
            kv[st] = 2 * A[q] * vv + 2 * eps;
            double f = st < 2 ? 0.5 * h : h;
            mm = mu + f * km[st], vv = V + f * kv[st];
        }
        mu += h / 6 * (km[0] + 2 * km[1] + 2 * km[2] + km[3]);
        V += h / 6 * (kv[0] + 2 * kv[1] + 2 * kv[2] + kv[3]);
    }
    return -0.5 * (x - mu) * (x - mu) / V - 0.5 * log(2 * M_PI * V);
}

/* With a wrong score the path values are log importance weights of the sampler's own
 * SDE: their mean is a lower bound of its log-density (strictly below here), their
 * log-mean-exp estimates it. With the exact score both agree with log rho1. */
START_TEST(likelihood_bound) {
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_BROWNIAN, 0);
    orc o;
    orc_gauss(&o, si, 1, 1.0, 0.5);
    stochflow_sde *s = new_sde(STOCHFLOW_SDE_EULER_MARUYAMA, 400, 1.0);
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 4000));
    const double scales[3] = {1.0, 0.7, 1.4};
    float x[2] = {0.2f, 2.2f}, mean[2], se_m[2], lme[2], se_l[2];
    for (int k = 0; k < 3; ++k) {
        o.s_scale = scales[k];
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_LIK_AVG, STOCHFLOW_SDE_LIK_MEAN));
        ck_assert_ok(stochflow_sde_log_prob_fn(mean, se_m, s, orc_field, &o, 1, x, 2, 6));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_LIK_AVG,
                                             STOCHFLOW_SDE_LIK_LOGMEANEXP));
        ck_assert_ok(stochflow_sde_log_prob_fn(lme, se_l, s, orc_field, &o, 1, x, 2, 6));
        for (int i = 0; i < 2; ++i) {
            double model = sde_model_logpdf(&o, 1.0, x[i]);
            printf("# score x %.1f, x = %.1f: mean %.4f +- %.4f, log-mean-exp %.4f +- %.4f, "
                   "SDE model %.4f\n", scales[k], x[i], mean[i], se_m[i], lme[i], se_l[i], model);
            ck_assert_double_eq_tol(lme[i], model, 0.015 + 3 * se_l[i]);
            if (k == 0)
                ck_assert_double_eq_tol(mean[i], model, 0.015 + 3 * se_m[i]);
            else
                ck_assert_msg(mean[i] < model - 3 * se_m[i], "no gap: %g +- %g vs %g", mean[i], se_m[i],
                              model);
            ck_assert(mean[i] <= lme[i]);
        }
    }
    stochflow_sde_free(s);
    stochflow_sinterp_free(si);
}
END_TEST

/* ---- model form ----------------------------------------------------------------------- */

static stochflow_model *small_model(int threads) {
    stochflow_config *cfg = NULL;
    stochflow_model *m = NULL;
    size_t w[2] = {32, 32};
    ck_assert_ok(stochflow_config_new(&cfg, 2));
    ck_assert_ok(stochflow_config_set_hidden(cfg, 2, w));
    ck_assert_ok(stochflow_config_set_seed(cfg, 3));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, threads));
    stochflow_config_free(cfg);
    /* a few steps so the field is not the initial one */
    float x1[256 * 2];
    double loss;
    for (int step = 0; step < 20; ++step) {
        ck_assert_ok(stochflow_toy_sample(x1, "moons", 256, 1, (uint64_t)step));
        ck_assert_ok(stochflow_model_train_step(&loss, m, x1, 256, NULL, NULL));
    }
    return m;
}

static double eps_const(void *user, double t) {
    (void)user, (void)t;
    return 0.5;
}

START_TEST(model_form) {
    stochflow_model *m1 = small_model(1), *m2 = small_model(2);
    size_t n = 300;
    float *a = malloc(n * 2 * 4), *b = malloc(n * 2 * 4), *c = malloc(n * 2 * 4);
    /* eps = 0, drift only: the ODE sampler on the model, bit for bit */
    for (int method = 1; method <= 2; ++method) {
        stochflow_sde *s = new_sde(method, 25, 0.0);
        stochflow_solver *ode = NULL;
        ck_assert_ok(stochflow_solver_new(&ode));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_SOLVER, method));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_STEPS, 25));
        ck_assert_ok(stochflow_sde_sample(a, s, m1, NULL, n, 8));
        ck_assert_ok(stochflow_solver_sample(b, NULL, ode, m1, n, 8));
        ck_assert_mem_eq(a, b, n * 2 * 4);
        stochflow_solver_free(ode);
        /* eps > 0 with the score recovered from the velocity, stopping the noise at
         * t = 0.9: same bits on 1 and 2 threads */
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_EPS, 0.5));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.9));
        ck_assert_status(stochflow_sde_sample(a, s, m1, NULL, n, 8), STOCHFLOW_E_INVALID);
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE,
                                             STOCHFLOW_FIELD_SCORE_FROM_VELOCITY));
        ck_assert_ok(stochflow_sde_sample(a, s, m1, NULL, n, 8));
        ck_assert_ok(stochflow_sde_sample(c, s, m2, NULL, n, 8));
        ck_assert_mem_eq(a, c, n * 2 * 4);
        ck_assert(memcmp(a, b, n * 2 * 4) != 0);
        for (size_t q = 0; q < n * 2; ++q) ck_assert(isfinite(a[q]));
        double nfe;
        ck_assert_ok(stochflow_sde_stat(&nfe, s, STOCHFLOW_STAT_NFE));
        ck_assert_double_eq(nfe, method == 2 ? 50 : 25);
        /* the score at t = 1 is not recoverable from v, and never asked for: the noise
         * window [0, T_END) excludes t = 1 even for an eps schedule (Heun's last
         * corrector evaluates at t = 1) */
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 1.0));
        ck_assert_ok(stochflow_sde_set_eps_schedule(s, eps_const, NULL));
        ck_assert_ok(stochflow_sde_sample(a, s, m1, NULL, n, 8));
        for (size_t q = 0; q < n * 2; ++q) ck_assert(isfinite(a[q]));
        ck_assert_ok(stochflow_sde_set_eps_schedule(s, NULL, NULL));
        /* likelihood through the models, thread-invariant as well */
        float lp1[5], lp2[5], se1[5];
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.9));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 4));
        ck_assert_ok(stochflow_sde_log_prob(lp1, se1, s, m1, NULL, b, 5, 1));
        ck_assert_ok(stochflow_sde_log_prob(lp2, NULL, s, m2, NULL, b, 5, 1));
        ck_assert_mem_eq(lp1, lp2, sizeof lp1);
        for (int i = 0; i < 5; ++i) ck_assert(isfinite(lp1[i]) && se1[i] > 0);
        stochflow_sde_free(s);
    }
    free(a), free(b), free(c);
    stochflow_model_free(m1);
    stochflow_model_free(m2);
}
END_TEST

/* The model form's combinations against the same arithmetic written out here with the
 * public model calls: drift network = velocity v (b = v - gamma gamma' s), score
 * network = denoiser eta (s = eta / gamma), noise only inside [0.05, 0.95). */
typedef struct {
    stochflow_model *v, *eta;
    const stochflow_sinterp *si;
} combo;

static int combo_field(void *user, double t, size_t n, size_t d, const float *x, float *b,
                       float *s, float *db, float *ds) {
    const combo *c = user;
    double co[7];
    ck_assert_ok(stochflow_sinterp_eval(co, c->si, t));
    double g = co[2], gg = co[6];
    int need_s = s != NULL || gg != 0.0;
    float *v = malloc(n * d * 4), *e = calloc(n * d, 4), *dv = malloc(n * 4), *de = calloc(n, 4);
    if (db)
        ck_assert_ok(stochflow_model_divergence(dv, v, c->v, t, x, n));
    else
        ck_assert_ok(stochflow_model_velocity(v, c->v, t, x, n));
    if (need_s) {
        if (db)
            ck_assert_ok(stochflow_model_divergence(de, e, c->eta, t, x, n));
        else
            ck_assert_ok(stochflow_model_velocity(e, c->eta, t, x, n));
        for (size_t q = 0; q < n * d; ++q) e[q] = (float)((double)e[q] / g);
        for (size_t i = 0; i < n && db; ++i) de[i] = (float)((double)de[i] / g);
    }
    for (size_t q = 0; q < n * d; ++q)
        b[q] = gg != 0.0 ? (float)((double)v[q] - gg * (double)e[q]) : v[q];
    for (size_t i = 0; i < n && db; ++i)
        db[i] = gg != 0.0 ? (float)((double)dv[i] - gg * (double)de[i]) : dv[i];
    if (s) memcpy(s, e, n * d * 4);
    if (ds) memcpy(ds, de, n * 4);
    free(v), free(e), free(dv), free(de);
    return 0;
}

static double eps_inside(void *user, double t) {
    (void)user;
    return t >= 0.05 && t < 0.95 ? 0.4 : 0.0;
}

START_TEST(model_form_combinations) {
    stochflow_model *mv = small_model(1), *me = small_model(1);
    ck_assert_ok(stochflow_model_set_param(me, STOCHFLOW_PARAM_LR, 5e-2)); /* differ from mv */
    float x1[64 * 2];
    double loss;
    ck_assert_ok(stochflow_toy_sample(x1, "moons", 64, 9, 0));
    ck_assert_ok(stochflow_model_train_step(&loss, me, x1, 64, NULL, NULL));
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_QUADRATIC, 0);
    combo c = {mv, me, si};
    size_t n = 40;
    float a[80], b[80], lpa[6], lpb[6], sea[6], seb[6];
    for (int method = 1; method <= 2; ++method) {
        stochflow_sde *s = new_sde(method, 30, 0.0);
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_DRIFT, STOCHFLOW_FIELD_VELOCITY));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE, STOCHFLOW_FIELD_DENOISER));
        ck_assert_ok(stochflow_sde_set_eps_schedule(s, eps_inside, NULL));
        /* without the interpolant there is no gamma to divide by: refused at t = 0.05 */
        ck_assert_status(stochflow_sde_sample(a, s, mv, me, n, 2), STOCHFLOW_E_NONFINITE);
        ck_assert_ok(stochflow_sde_set_interpolant(s, si));
        ck_assert_ok(stochflow_sde_sample(a, s, mv, me, n, 2));
        ck_assert_ok(stochflow_sde_sample_fn(b, s, combo_field, &c, 2, n, 2));
        ck_assert_mem_eq(a, b, sizeof a);
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 3));
        ck_assert_ok(stochflow_sde_log_prob(lpa, sea, s, mv, me, a, 6, 4));
        ck_assert_ok(stochflow_sde_log_prob_fn(lpb, seb, s, combo_field, &c, 2, a, 6, 4));
        ck_assert_mem_eq(lpa, lpb, sizeof lpa);
        ck_assert_mem_eq(sea, seb, sizeof sea);
        stochflow_sde_free(s);
    }
    stochflow_sinterp_free(si);
    stochflow_model_free(mv);
    stochflow_model_free(me);
}
END_TEST

/* ---- U-Net and conditional models --------------------------------------------------- */

/* A tiny U-Net on 1 x 4 x 4 images (base 4, one level; n_ctx / classes 0 for none),
 * after a few large Adam steps on random images so that its zero-initialised output
 * layers carry signal. */
static stochflow_model *tiny_unet(size_t k, size_t classes, uint64_t seed) {
    stochflow_config *c;
    stochflow_model *m;
    const size_t mult[1] = {1};
    ck_assert_ok(stochflow_config_new(&c, 16));
    ck_assert_ok(set_unet_shape(c, 1, 4, 4, 4, 1, mult, 1, 0, 2));
    if (k || classes) ck_assert_ok(stochflow_config_set_context(c, k, classes));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 3e-2));
    float x1[32 * 16];
    double loss;
    for (uint64_t step = 0; step < 6; ++step) {
        ck_assert_ok(stochflow_random_normal(x1, 32 * 16, seed, 40 + step));
        ck_assert_ok(stochflow_model_train_step(&loss, m, x1, 32, NULL, NULL));
    }
    return m;
}

/* The field written out with the public model calls: v (guided by hand, as
 * doc/conditional.md's (1 + w) v(c) - w v(none)), and the score from the velocity by
 * the formula s = (b' x - b v) / (a (a' b - a b')) of doc/sde.md, computed here. */
typedef struct {
    stochflow_model *m;
    const float *ctx;
    const int32_t *labels;
    double w;
    size_t P; /* rows per point (the likelihood's paths) */
    size_t checked; /* score values compared with stochflow_score_from_velocity */
} vfield;

static void guided(float *out, const float *other, size_t len, double w) {
    for (size_t i = 0; i < len; ++i)
        out[i] = (float)((1.0 + w) * (double)out[i] - w * (double)other[i]);
}

static int vfield_fn(void *user, double t, size_t n, size_t d, const float *x, float *b,
                     float *s, float *db, float *ds) {
    vfield *f = user;
    size_t kc = 0;
    stochflow_model_context(&kc, NULL, f->m);
    float *ctx = f->ctx ? malloc(n * kc * 4 + 4) : NULL;
    int32_t *lab = f->labels ? malloc(n * 4) : NULL;
    for (size_t r = 0; r < n; ++r) {
        if (ctx) memcpy(ctx + r * kc, f->ctx + (r / f->P) * kc, kc * 4);
        if (lab) lab[r] = f->labels[r / f->P];
    }
    float *v0 = malloc(n * d * 4), *dv0 = malloc(n * 4), *dv = malloc(n * 4);
    if (db || ds)
        ck_assert_ok(stochflow_model_divergence_ctx(dv, b, f->m, t, x, ctx, lab, n));
    else
        ck_assert_ok(stochflow_model_velocity_ctx(b, f->m, t, x, ctx, lab, n));
    if (f->w != 0.0) {
        if (db || ds) {
            ck_assert_ok(stochflow_model_divergence(dv0, v0, f->m, t, x, n));
            guided(dv, dv0, n, f->w);
        } else {
            ck_assert_ok(stochflow_model_velocity(v0, f->m, t, x, n));
        }
        guided(b, v0, n * d, f->w);
    }
    if (db) memcpy(db, dv, n * 4);
    if (s) {
        double ab[4];
        ck_assert_ok(stochflow_model_interpolant_eval(ab, f->m, t));
        double den = ab[0] * (ab[2] * ab[1] - ab[0] * ab[3]);
        for (size_t q = 0; q < n * d; ++q)
            s[q] = (float)((ab[3] * (double)x[q] - ab[1] * (double)b[q]) / den);
        if (ds)
            for (size_t i = 0; i < n; ++i)
                ds[i] = (float)((ab[3] * (double)d - ab[1] * (double)dv[i]) / den);
        /* a few pixels against the library's score_from_velocity, and finite */
        float s3[3];
        ck_assert_ok(stochflow_score_from_velocity(s3, NULL, x, b, NULL, 1, 3, ab));
        for (int j = 0; j < 3; ++j) {
            ck_assert(isfinite(s[j]));
            ck_assert_float_eq_tol(s3[j], s[j], 1e-5f * (1.0f + fabsf(s[j])));
            f->checked++;
        }
    }
    free(ctx), free(lab), free(v0), free(dv0), free(dv);
    return 0;
}

static float max_abs_diff(const float *a, const float *b, size_t len) {
    float m = 0;
    for (size_t i = 0; i < len; ++i) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

/* The SDE sampler and likelihood with a U-Net: eps = 0 is the ODE sampler's bits, the
 * same bits on 1 and 2 threads, the score from the velocity matches the formula, and the
 * Hutchinson likelihood averages to the exact one. */
START_TEST(unet_model_form) {
    stochflow_model *m = tiny_unet(0, 0, 5);
    const size_t n = 12, d = 16;
    float a[12 * 16], b[12 * 16], c[12 * 16];
    for (int method = 1; method <= 2; ++method) {
        stochflow_sde *s = new_sde(method, 8, 0.0);
        stochflow_solver *ode = NULL;
        ck_assert_ok(stochflow_solver_new(&ode));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_SOLVER, method));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_STEPS, 8));
        ck_assert_ok(stochflow_sde_sample(a, s, m, NULL, n, 3));
        ck_assert_ok(stochflow_solver_sample(b, NULL, ode, m, n, 3));
        ck_assert_mem_eq(a, b, sizeof a);
        stochflow_solver_free(ode);
        /* eps > 0, score from the velocity: 1 and 2 threads give the same bits */
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_EPS, 0.5));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.9));
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE,
                                             STOCHFLOW_FIELD_SCORE_FROM_VELOCITY));
        ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1));
        ck_assert_ok(stochflow_sde_sample(a, s, m, NULL, n, 3));
        ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 2));
        ck_assert_ok(stochflow_sde_sample(c, s, m, NULL, n, 3));
        ck_assert_mem_eq(a, c, sizeof a);
        ck_assert(memcmp(a, b, sizeof a) != 0);
        /* against the field written out (formula in the test; float rounding apart) */
        vfield f = {m, NULL, NULL, 0.0, 1, 0};
        ck_assert_ok(stochflow_sde_sample_fn(c, s, vfield_fn, &f, d, n, 3));
        ck_assert(f.checked > 0);
        ck_assert_float_lt(max_abs_diff(a, c, n * d), 1e-3f);
        /* likelihood: thread-invariant, finite, and equal to the written-out field's */
        float l1[3], l2[3], e1[3], l3[3];
        ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 4));
        ck_assert_ok(stochflow_sde_log_prob(l1, e1, s, m, NULL, b, 3, 7));
        ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1));
        ck_assert_ok(stochflow_sde_log_prob(l2, NULL, s, m, NULL, b, 3, 7));
        ck_assert_mem_eq(l1, l2, sizeof l1);
        f.P = 4;
        ck_assert_ok(stochflow_sde_log_prob_fn(l3, NULL, s, vfield_fn, &f, d, b, 3, 7));
        for (int i = 0; i < 3; ++i) {
            ck_assert(isfinite(l1[i]) && e1[i] > 0);
            ck_assert_float_eq_tol(l1[i], l3[i], 1e-3f * (1.0f + fabsf(l1[i])));
        }
        stochflow_sde_free(s);
    }
    /* Hutchinson divergences (one probe per path): unbiased for the exact trace. With
     * eps = 0 the paths differ only by their probes: the mean over 400 paths agrees with
     * the exact value within 4 standard errors, and the spread is not zero. */
    stochflow_sde *s = new_sde(STOCHFLOW_SDE_EULER_MARUYAMA, 10, 0.0);
    float ex[2], hu[2], hse[2], ese[2];
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 2));
    ck_assert_ok(stochflow_sde_log_prob(ex, ese, s, m, NULL, b, 2, 1));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_TRACE, STOCHFLOW_TRACE_HUTCHINSON));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 400));
    ck_assert_ok(stochflow_sde_log_prob(hu, hse, s, m, NULL, b, 2, 1));
    for (int i = 0; i < 2; ++i) {
        ck_assert_float_eq(ese[i], 0.0f);
        ck_assert(hse[i] > 0);
        ck_assert_msg(fabsf(hu[i] - ex[i]) < 4 * hse[i], "Hutchinson %g +- %g, exact %g", hu[i],
                      hse[i], ex[i]);
    }
    /* the callback form has exact divergences only */
    ck_assert_status(stochflow_sde_log_prob_fn(hu, NULL, s, vfield_fn, NULL, d, b, 1, 1),
                     STOCHFLOW_E_UNSUPPORTED);
    stochflow_sde_free(s);
    stochflow_model_free(m);
}
END_TEST

/* The _ctx twins on a conditional U-Net: w = 0 and no conditioning give the plain bits;
 * eps = 0 with labels and guidance is the guided ODE sampler bit for bit; eps > 0 and
 * the likelihood equal the field written out with the public _ctx calls and the
 * guidance by hand (each likelihood path takes its point's label); errors. */
START_TEST(conditional_twins) {
    const size_t k = 2, classes = 3, n = 6, d = 16;
    stochflow_model *m = tiny_unet(k, classes, 6), *plain = tiny_unet(0, 0, 5);
    float ctx[6 * 2];
    ck_assert_ok(stochflow_random_normal(ctx, n * k, 4, 0));
    const int32_t labels[6] = {0, 1, 2, -1, 1, 0};
    float a[6 * 16], b[6 * 16], c[6 * 16];
    stochflow_sde *s = new_sde(STOCHFLOW_SDE_HEUN, 6, 0.4);
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE,
                                         STOCHFLOW_FIELD_SCORE_FROM_VELOCITY));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.9));
    /* plain == twin with NULL conditioning (an unconditional and a conditional model) */
    ck_assert_ok(stochflow_sde_sample(a, s, plain, NULL, n, 2));
    ck_assert_ok(stochflow_sde_sample_ctx(b, s, plain, NULL, NULL, NULL, n, 2));
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_ok(stochflow_sde_sample(a, s, m, NULL, n, 2));
    ck_assert_ok(stochflow_sde_sample_ctx(b, s, m, NULL, NULL, NULL, n, 2));
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_ok(stochflow_sde_sample_ctx(c, s, m, NULL, ctx, labels, n, 2));
    ck_assert(memcmp(a, c, sizeof a) != 0); /* the conditioning reaches the field */
    /* eps = 0, guided: the solver's guided samples */
    const double w = 1.5;
    for (int method = 1; method <= 2; ++method) {
        stochflow_sde *z = new_sde(method, 6, 0.0);
        ck_assert_ok(stochflow_sde_set_param(z, STOCHFLOW_PARAM_SDE_GUIDANCE, w));
        stochflow_solver *ode = NULL;
        ck_assert_ok(stochflow_solver_new(&ode));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_SOLVER, method));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_STEPS, 6));
        ck_assert_ok(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_GUIDANCE, w));
        ck_assert_ok(stochflow_sde_sample_ctx(a, z, m, NULL, ctx, labels, n, 9));
        ck_assert_ok(stochflow_solver_sample_ctx(b, NULL, ode, m, ctx, labels, n, 9));
        ck_assert_mem_eq(a, b, sizeof a);
        stochflow_solver_free(ode);
        stochflow_sde_free(z);
    }
    /* eps > 0, guided, against the field by hand; 1 and 2 threads */
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_GUIDANCE, w));
    vfield f = {m, ctx, labels, w, 1, 0};
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 2));
    ck_assert_ok(stochflow_sde_sample_ctx(a, s, m, NULL, ctx, labels, n, 2));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 1));
    ck_assert_ok(stochflow_sde_sample_ctx(b, s, m, NULL, ctx, labels, n, 2));
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_ok(stochflow_sde_sample_fn(c, s, vfield_fn, &f, d, n, 2));
    ck_assert_float_lt(max_abs_diff(a, c, n * d), 1e-3f);
    float l1[6], l2[6], e1[6];
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 3));
    ck_assert_ok(stochflow_sde_log_prob_ctx(l1, e1, s, m, NULL, a, ctx, labels, n, 5));
    f.P = 3;
    ck_assert_ok(stochflow_sde_log_prob_fn(l2, NULL, s, vfield_fn, &f, d, a, n, 5));
    for (size_t i = 0; i < n; ++i) {
        ck_assert(isfinite(l1[i]) && e1[i] > 0);
        ck_assert_float_eq_tol(l1[i], l2[i], 1e-3f * (1.0f + fabsf(l1[i])));
    }
    /* errors: nothing runs */
    const int32_t bad[6] = {0, 3, 0, 0, 0, 0};
    ck_assert_status(stochflow_sde_sample_ctx(a, s, m, NULL, ctx, bad, n, 2), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sde_log_prob_ctx(l1, NULL, s, m, NULL, a, ctx, bad, n, 5),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sde_sample_ctx(a, s, plain, NULL, NULL, labels, n, 2),
                     STOCHFLOW_E_INVALID); /* labels to a model without classes */
    ck_assert_status(stochflow_sde_sample(a, s, plain, NULL, n, 2),
                     STOCHFLOW_E_INVALID); /* guidance on an unconditional model */
    ck_assert_status(stochflow_sde_sample_ctx(a, s, m, plain, ctx, labels, n, 2),
                     STOCHFLOW_E_INVALID); /* a score model given with SCORE_FROM_VELOCITY */
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_GUIDANCE, 0));
    ck_assert_ok(stochflow_sde_sample(a, s, plain, NULL, n, 2));
    stochflow_sde_free(s);
    stochflow_model_free(m);
    stochflow_model_free(plain);
}
END_TEST

static double eps_but_last(void *user, double t) { /* 20 steps: the last starts at 0.95 */
    (void)user;
    return t < 0.949 ? 0.7 : 0.0;
}

/* DENOISE: the last forward step without noise, as an eps schedule that vanishes on it
 * (Euler-Maruyama, whose step uses eps at its start only) */
/* A model holding a data map (doc/data.md): the SDE samples and its likelihood are in the
 * user's units, as the ODE solver's, i.e. the unmapped model's samples mapped back by hand
 * and its log-density at z = (x - shift) / scale minus sum log scale; a score model with
 * another map is refused. Untrained models of one seed have the same weights. */
static stochflow_model *untrained_model(const double *shift, const double *scale) {
    stochflow_config *cfg = NULL;
    stochflow_model *m = NULL;
    size_t w[2] = {32, 32};
    ck_assert_ok(stochflow_config_new(&cfg, 2));
    ck_assert_ok(stochflow_config_set_hidden(cfg, 2, w));
    ck_assert_ok(stochflow_config_set_seed(cfg, 5));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    if (shift) ck_assert_ok(stochflow_model_set_standardization(m, shift, scale));
    return m;
}

START_TEST(standardized_model) {
    const double shift[2] = {3.0, -2.0}, scale[2] = {2.0, 0.25};
    stochflow_model *plain = untrained_model(NULL, NULL), *mapped = untrained_model(shift, scale);
    stochflow_sde *s = new_sde(2, 20, 0.5);
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE,
                                         STOCHFLOW_FIELD_SCORE_FROM_VELOCITY));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.9));
    enum { N = 64 };
    float z[N * 2], x[N * 2];
    ck_assert_ok(stochflow_sde_sample(z, s, plain, NULL, N, 4));
    ck_assert_ok(stochflow_sde_sample(x, s, mapped, NULL, N, 4));
    double spread = 0;
    for (int q = 0; q < N * 2; ++q) {
        double want = shift[q % 2] + scale[q % 2] * (double)z[q];
        ck_assert_double_eq_tol(x[q], want, 1e-5 * (1 + fabs(want)));
        spread += fabs((double)x[q] - (double)z[q]);
    }
    ck_assert(spread > N); /* the map is not the identity on these points */
    /* log p(x) = log p_z((x - shift) / scale) - sum log scale */
    float lpx[8], lpz[8], zz[8 * 2];
    for (int q = 0; q < 8 * 2; ++q)
        zz[q] = (float)(((double)x[q] - shift[q % 2]) / scale[q % 2]);
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 3));
    ck_assert_ok(stochflow_sde_log_prob(lpx, NULL, s, mapped, NULL, x, 8, 2));
    ck_assert_ok(stochflow_sde_log_prob(lpz, NULL, s, plain, NULL, zz, 8, 2));
    const double logdet = log(2.0) + log(0.25);
    for (int i = 0; i < 8; ++i)
        ck_assert_double_eq_tol(lpx[i], (double)lpz[i] - logdet, 1e-4 * (1 + fabs(lpx[i])));
    /* a score model with another map (here: none) is refused, nothing written */
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE, STOCHFLOW_FIELD_SCORE));
    float keep[N * 2];
    memcpy(keep, x, sizeof keep);
    ck_assert_status(stochflow_sde_sample(x, s, mapped, plain, N, 4), STOCHFLOW_E_INVALID);
    ck_assert_mem_eq(keep, x, sizeof keep);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "standardization"));
    stochflow_sde_free(s);
    stochflow_model_free(plain);
    stochflow_model_free(mapped);
}
END_TEST

/* One context matrix feeds the drift and the score model: they must take the same
 * context width (a wider score model would read past each row). */
static stochflow_model *ctx_model(size_t k) {
    stochflow_config *cfg = NULL;
    stochflow_model *m = NULL;
    size_t w[1] = {16};
    ck_assert_ok(stochflow_config_new(&cfg, 2));
    ck_assert_ok(stochflow_config_set_hidden(cfg, 1, w));
    ck_assert_ok(stochflow_config_set_context(cfg, k, 0));
    ck_assert_ok(stochflow_model_new(&m, cfg));
    stochflow_config_free(cfg);
    return m;
}

START_TEST(context_widths_must_agree) {
    stochflow_model *drift = ctx_model(2), *score = ctx_model(3), *same = ctx_model(2);
    stochflow_sde *s = new_sde(1, 4, 0.5);
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_DRIFT, STOCHFLOW_FIELD_DRIFT));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE, STOCHFLOW_FIELD_SCORE));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 4));
    enum { N = 6 };
    float x[N * 2] = {0}, lp[N], ctx[N * 3];
    for (int i = 0; i < N * 3; ++i) ctx[i] = 0.1f * (float)i;
    ck_assert_status(stochflow_sde_sample_ctx(x, s, drift, score, ctx, NULL, N, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "same context"));
    ck_assert_status(stochflow_sde_log_prob_ctx(lp, NULL, s, drift, score, x, ctx, NULL, N, 1),
                     STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_sde_sample_ctx(x, s, drift, same, ctx, NULL, N, 1));
    ck_assert_ok(stochflow_sde_log_prob_ctx(lp, NULL, s, drift, same, x, ctx, NULL, N, 1));
    stochflow_sde_free(s);
    stochflow_model_free(drift);
    stochflow_model_free(score);
    stochflow_model_free(same);
}
END_TEST

START_TEST(denoise_last_step) {
    stochflow_sinterp *si = new_si(0, STOCHFLOW_INTERP_TRIG, STOCHFLOW_GAMMA_BROWNIAN, 0);
    orc o;
    orc_gauss(&o, si, 3, 1.0, 0.5);
    float a[30], b[30], c[30];
    stochflow_sde *s = new_sde(STOCHFLOW_SDE_EULER_MARUYAMA, 20, 0.7);
    ck_assert_ok(stochflow_sde_sample_fn(c, s, orc_field, &o, 3, 10, 4));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_DENOISE, 2));
    ck_assert_ok(stochflow_sde_sample_fn(a, s, orc_field, &o, 3, 10, 4));
    ck_assert_ok(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_DENOISE, 0));
    ck_assert_ok(stochflow_sde_set_eps_schedule(s, eps_but_last, NULL));
    ck_assert_ok(stochflow_sde_sample_fn(b, s, orc_field, &o, 3, 10, 4));
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    stochflow_sde_free(s);
    stochflow_sinterp_free(si);
}
END_TEST

static int failing_field(void *user, double t, size_t n, size_t d, const float *x, float *b,
                         float *s, float *db, float *ds) {
    (void)user, (void)t, (void)n, (void)d, (void)x, (void)b, (void)s, (void)db, (void)ds;
    return 3;
}

START_TEST(params_and_errors) {
    stochflow_sde *s = NULL;
    double v, lo, hi, def;
    ck_assert_ok(stochflow_sde_new(&s));
    ck_assert_ok(stochflow_sde_get_param(&v, s, STOCHFLOW_PARAM_SDE_METHOD));
    ck_assert_double_eq(v, STOCHFLOW_SDE_HEUN);
    ck_assert_ok(stochflow_sde_get_param(&v, s, STOCHFLOW_PARAM_SDE_EPS));
    ck_assert_double_eq(v, 0);
    for (int key = STOCHFLOW_PARAM_SDE_METHOD; key <= STOCHFLOW_PARAM_SDE_TRACE; ++key) {
        ck_assert_ok(stochflow_sde_param_bounds(&lo, &hi, &def, key));
        ck_assert(lo <= def && def <= hi);
        ck_assert_status(stochflow_sde_set_param(s, key, hi + 1), STOCHFLOW_E_INVALID);
        ck_assert_status(stochflow_sde_set_param(s, key, NAN), STOCHFLOW_E_INVALID);
        ck_assert_ok(stochflow_sde_get_param(&v, s, key));
        ck_assert_double_eq(v, def); /* unchanged by the failures */
    }
    ck_assert_status(stochflow_sde_set_param(s, 509, 1), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_sde_param_bounds(NULL, NULL, NULL, 499), STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_STEPS, 2.5),
                     STOCHFLOW_E_INVALID);
    float x[4];
    ck_assert_status(stochflow_sde_sample_fn(x, s, NULL, NULL, 2, 2, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sde_sample_fn(NULL, s, failing_field, NULL, 2, 2, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sde_sample_fn(x, s, failing_field, NULL, 2, 2, 0),
                     STOCHFLOW_E_CALLBACK);
    ck_assert_status(stochflow_sde_sample(x, s, NULL, NULL, 2, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_sde_stat(&v, s, 99), STOCHFLOW_E_UNSUPPORTED);
    float xn[2] = {NAN, 0}, lp[1];
    ck_assert_status(stochflow_sde_log_prob_fn(lp, NULL, s, failing_field, NULL, 2, xn, 1, 0),
                     STOCHFLOW_E_NONFINITE);
    ck_assert_status(stochflow_score_from_velocity(NULL, NULL, x, x, NULL, 1, 2,
                                                   (double[4]){1, 0, -1, 1}),
                     STOCHFLOW_E_INVALID);
    stochflow_sde_free(NULL);
    stochflow_sde_free(s);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("sde");
    TCase *core = tcase_create("core");
    tcase_add_test(core, gamma_derivatives);
    tcase_add_test(core, interpolant_kinds);
    tcase_add_test(core, oracle_fields);
    tcase_add_test(core, oracle_density_mc);
    tcase_add_test(core, targets_regress_to_fields);
    tcase_add_test(core, weak_order);
    tcase_add_test(core, eps_zero_is_ode);
    tcase_add_test(core, batch_split_and_windows);
    tcase_add_test(core, eps_schedule_matches_window);
    tcase_add_test(core, score_from_velocity_oracle);
    tcase_add_test(core, likelihood_gaussian);
    tcase_add_test(core, likelihood_bound);
    tcase_add_test(core, model_form);
    tcase_add_test(core, model_form_combinations);
    tcase_add_test(core, denoise_last_step);
    tcase_add_test(core, unet_model_form);
    tcase_add_test(core, conditional_twins);
    tcase_add_test(core, standardized_model);
    tcase_add_test(core, context_widths_must_agree);
    suite_add_tcase(s, core);
    TCase *grads = tcase_create("gradients");
    tcase_add_test(grads, loss_gradients);
    suite_add_tcase(s, grads);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, loss_errors);
    tcase_add_test(errors, params_and_errors);
    suite_add_tcase(s, errors);
    return s;
}
