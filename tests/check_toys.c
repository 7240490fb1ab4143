/* check_toys.c - the built-in 2-D toys against their defining statistics, their
 * determinism, and the closed-form densities. Sample sizes and tolerances are stated
 * beside each assertion (tolerances are >= 5 standard errors unless noted). */
#include <string.h>

#include "harness.h"
#include "internal.h"

double stochflow__toy_entropy_8gaussians(double h);

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define N_BIG 200000

static float *draw(const char *name, size_t n, uint64_t seed, uint64_t stream) {
    float *x = malloc(n * 2 * sizeof(float));
    ck_assert_ptr_nonnull(x);
    ck_assert_ok(stochflow_toy_sample(x, name, n, seed, stream));
    for (size_t i = 0; i < 2 * n; ++i) ck_assert_msg(isfinite(x[i]), "%s: non-finite", name);
    return x;
}

static double radius(const float *p) { return hypot(p[0], p[1]); }

START_TEST(test_8gaussians) {
    float *x = draw("8gaussians", N_BIG, 1, 0);
    double cnt[8] = {0}, rsum = 0, ss = 0;
    for (size_t i = 0; i < N_BIG; ++i) {
        /* nearest centre: angle rounded to a multiple of 45 degrees */
        double a = atan2(x[2 * i + 1], x[2 * i]);
        int k = (int)lround(a / (M_PI / 4));
        k = (k % 8 + 8) % 8;
        double cx = 4.0 / 1.414 * cos(k * M_PI / 4), cy = 4.0 / 1.414 * sin(k * M_PI / 4);
        double dx = x[2 * i] - cx, dy = x[2 * i + 1] - cy;
        ss += dx * dx + dy * dy;
        cnt[k] += 1;
        rsum += hypot(cx, cy);
    }
    double sd = sqrt(ss / (2.0 * N_BIG));
    /* per-coordinate std 0.5/1.414 = 0.35361; SE of sd ~ 0.35/sqrt(4e5) = 6e-4 */
    ck_assert_msg(fabs(sd - 0.35361) < 0.004, "std %g", sd);
    ck_assert_msg(fabs(rsum / N_BIG - 2.8289) < 1e-3, "centre radius %g", rsum / N_BIG);
    /* each component 1/8: count SE = sqrt(N p (1-p)) = 148 */
    for (int k = 0; k < 8; ++k)
        ck_assert_msg(fabs(cnt[k] - N_BIG / 8.0) < 800, "component %d count %g", k, cnt[k]);
    free(x);
}
END_TEST

START_TEST(test_checkerboard) {
    float *x = draw("checkerboard", N_BIG, 2, 5);
    double cell[4][4] = {{0}};
    for (size_t i = 0; i < N_BIG; ++i) {
        float a = x[2 * i], b = x[2 * i + 1];
        ck_assert(a >= -4.0f && a < 4.0f && b >= -4.0f && b < 4.0f);
        int ci = (int)floor(a / 2.0), cj = (int)floor(b / 2.0);
        ck_assert_msg(((ci + cj) % 2 + 2) % 2 == 0, "point (%g, %g) in an empty cell", a, b);
        cell[ci + 2][cj + 2] += 1;
    }
    /* 8 cells with mass 1/8 each: count SE 148, tolerance 800 */
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
            if ((i + j) % 2 == 0)
                ck_assert_msg(fabs(cell[i][j] - N_BIG / 8.0) < 800, "cell %d,%d: %g", i, j,
                              cell[i][j]);
    /* uniform within cells: the fractional position has mean 1 (of 2), var 1/3 */
    double m = 0, v = 0;
    for (size_t i = 0; i < N_BIG; ++i) {
        double f = x[2 * i] - 2.0 * floor(x[2 * i] / 2.0);
        m += f;
        v += (f - 1) * (f - 1);
    }
    ck_assert_msg(fabs(m / N_BIG - 1.0) < 0.01, "in-cell mean %g", m / N_BIG);
    ck_assert_msg(fabs(v / N_BIG - 1.0 / 3.0) < 0.01, "in-cell var %g", v / N_BIG);
    /* the true log-density is -ln 32 on every sample; entropy ln 32 */
    float *lp = malloc(N_BIG * sizeof(float));
    double h = 0;
    ck_assert_ok(stochflow_toy_log_density(lp, &h, "checkerboard", x, N_BIG));
    for (size_t i = 0; i < N_BIG; ++i) ck_assert(lp[i] == (float)-log(32.0));
    ck_assert(fabs(h - log(32.0)) < 1e-12);
    float off[4] = {0.5f, 2.5f, 4.0f, 0.0f}; /* (0.5, 2.5): empty cell; (4, 0): outside */
    ck_assert_ok(stochflow_toy_log_density(lp, NULL, "checkerboard", off, 2));
    ck_assert(isinf(lp[0]) && lp[0] < 0);
    ck_assert(isinf(lp[1]) && lp[1] < 0);
    free(lp);
    free(x);
}
END_TEST

START_TEST(test_circles_rings) {
    size_t n = 100001; /* odd: the inner circle takes the remainder */
    float *x = draw("circles", n, 3, 0);
    double s_out = 0, s_in = 0, c_out = 0, c_in = 0;
    for (size_t i = 0; i < n; ++i) {
        double r = radius(x + 2 * i);
        if (r > 2.25) s_out += r, c_out++;
        else s_in += r, c_in++;
    }
    /* the radius-2.25 threshold is 3.1 noise sds from both: ~0.1% cross over */
    ck_assert_msg(fabs(c_out - (double)(n / 2)) < 300, "split %g / %g", c_out, c_in);
    /* noise std 0.24 radially: radius means 3 and 1.5 (+ a small curvature bias) */
    ck_assert_msg(fabs(s_out / c_out - 3.0) < 0.02, "outer %g", s_out / c_out);
    ck_assert_msg(fabs(s_in / c_in - 1.5) < 0.03, "inner %g", s_in / c_in);
    free(x);

    n = 100003;
    x = draw("rings", n, 3, 1);
    const double radii[4] = {3.0, 2.25, 1.5, 0.75};
    double sum[4] = {0}, cnt[4] = {0};
    for (size_t i = 0; i < n; ++i) {
        double r = radius(x + 2 * i);
        int best = 0;
        for (int k = 1; k < 4; ++k)
            if (fabs(r - radii[k]) < fabs(r - radii[best])) best = k;
        sum[best] += r;
        cnt[best] += 1;
    }
    for (int k = 0; k < 4; ++k) {
        /* noise 0.08 vs ring spacing 0.75: misassignment is negligible */
        double want = k == 3 ? (double)(n - 3 * (n / 4)) : (double)(n / 4);
        ck_assert_msg(cnt[k] == want, "ring %d count %g, want %g", k, cnt[k], want);
        ck_assert_msg(fabs(sum[k] / cnt[k] - radii[k]) < 0.01, "ring %d radius %g", k,
                      sum[k] / cnt[k]);
    }
    /* shuffled: the first quarter is not one ring */
    double r0 = 0;
    for (size_t i = 0; i < n / 4; ++i) r0 += radius(x + 2 * i);
    ck_assert_msg(fabs(r0 / (n / 4) - 1.875) < 0.05, "first quarter mean radius %g",
                  r0 / (n / 4));
    free(x);
}
END_TEST

START_TEST(test_moons) {
    size_t n = N_BIG;
    float *x = draw("moons", n, 4, 0);
    /* undo the affine map and classify: outer moon has centre (0,0), inner (1, 0.5),
     * both radius 1 (noise 0.1, scaled by 2 to 0.2 in output units) */
    double mx = 0, my = 0, r_out = 0, r_in = 0, c_out = 0, c_in = 0;
    for (size_t i = 0; i < n; ++i) {
        double u = (x[2 * i] + 1.0) / 2.0, v = (x[2 * i + 1] + 0.2) / 2.0;
        mx += x[2 * i];
        my += x[2 * i + 1];
        double d_out = hypot(u, v), d_in = hypot(u - 1.0, v - 0.5);
        if (fabs(d_out - 1.0) < fabs(d_in - 1.0)) r_out += d_out, c_out++;
        else r_in += d_in, c_in++;
    }
    /* mean of the noiseless point set: x = 2*0.5 - 1 = 0; y = 2*(2/pi - ... )/2 -> 2*0.25-0.2 */
    ck_assert_msg(fabs(mx / n - 0.0) < 0.01, "mean x %g", mx / n);
    ck_assert_msg(fabs(my / n - 0.3) < 0.01, "mean y %g", my / n);
    ck_assert_msg(fabs(r_out / c_out - 1.0) < 0.03, "outer radius %g", r_out / c_out);
    ck_assert_msg(fabs(r_in / c_in - 1.0) < 0.03, "inner radius %g", r_in / c_in);
    free(x);
}
END_TEST

START_TEST(test_swissroll_pinwheel_spirals) {
    size_t n = N_BIG;
    float *x = draw("swissroll", n, 5, 0);
    double mr = 0;
    for (size_t i = 0; i < n; ++i) mr += 5.0 * radius(x + 2 * i);
    /* t ~ U[1.5 pi, 4.5 pi]: E|t (cos t, sin t) + N| ~ E t = 3 pi (+ small noise bias) */
    ck_assert_msg(fabs(mr / n - 3.0 * M_PI) < 0.1, "swissroll mean radius %g", mr / n);
    free(x);

    n = 100002; /* not a multiple of 5: generated in excess and trimmed */
    x = draw("pinwheel", n, 6, 0);
    double cnt[5] = {0}, rad = 0;
    for (size_t i = 0; i < n; ++i) {
        /* the radial feature f0 ~ 1 + 0.3 N sits at angle 2 pi k/5 + 0.25 exp(f0)
         * clockwise; undo it to find the arm */
        double r = radius(x + 2 * i) / 2.0;
        double ang = -atan2(x[2 * i + 1], x[2 * i]) - 0.25 * exp(r);
        int k = (int)lround(ang / (2 * M_PI / 5));
        cnt[(k % 5 + 5) % 5] += 1;
        rad += r;
    }
    /* E sqrt(f0^2 + f1^2) ~ 1.005 (f0 ~ N(1, 0.09), f1 ~ N(0, 0.01)); SE 0.001 */
    ck_assert_msg(fabs(rad / n - 1.005) < 0.01, "pinwheel radius %g", rad / n);
    for (int k = 0; k < 5; ++k)
        ck_assert_msg(fabs(cnt[k] - n / 5.0) < 0.03 * n, "arm %d: %g", k, cnt[k]);
    free(x);

    n = 100001;
    x = draw("2spirals", n, 7, 0);
    /* rows 2j and 2j+1 are +d and -d with independent noise 0.1: their sum ~ N(0, 0.02) */
    double s2 = 0, rr = 0;
    for (size_t j = 0; 2 * j + 1 < n; ++j) {
        double a = x[4 * j] + x[4 * j + 2], b = x[4 * j + 1] + x[4 * j + 3];
        s2 += a * a + b * b;
    }
    for (size_t i = 0; i < n; ++i) rr += radius(x + 2 * i);
    double var = s2 / (2.0 * (n / 2));
    ck_assert_msg(fabs(var - 0.02) < 0.001, "pair-sum variance %g", var);
    /* |d| ~ r/3 with r = 3 pi sqrt(U): E r/3 = 2 pi / 3 ~ 2.09 (+ jitter) */
    ck_assert_msg(rr / n > 1.9 && rr / n < 2.4, "spiral radius %g", rr / n);
    free(x);
}
END_TEST

START_TEST(test_line_cos) {
    size_t n = 10000;
    float *x = draw("line", n, 8, 0);
    double mn = 1e9, mxx = -1e9;
    for (size_t i = 0; i < n; ++i) {
        ck_assert(x[2 * i] == x[2 * i + 1]);
        ck_assert(x[2 * i] >= -2.5f && x[2 * i] <= 2.5f);
        mn = fmin(mn, x[2 * i]);
        mxx = fmax(mxx, x[2 * i]);
    }
    ck_assert(mn < -2.4 && mxx > 2.4);
    free(x);
    x = draw("cos", n, 8, 0);
    for (size_t i = 0; i < n; ++i) {
        ck_assert(x[2 * i] >= -2.5f && x[2 * i] <= 2.5f);
        ck_assert(fabs(x[2 * i + 1] - 2.5 * sin(x[2 * i])) < 1e-5);
    }
    free(x);
}
END_TEST

START_TEST(test_determinism) {
    size_t n = 1003;
    for (size_t k = 0; k < stochflow_toy_count(); ++k) {
        const char *nm = stochflow_toy_name(k);
        float *a = draw(nm, n, 11, 3), *b = draw(nm, n, 11, 3);
        float *c = draw(nm, n, 11, 4), *d = draw(nm, n, 12, 3);
        ck_assert_msg(memcmp(a, b, n * 2 * sizeof(float)) == 0, "%s not deterministic", nm);
        ck_assert_msg(memcmp(a, c, n * 2 * sizeof(float)) != 0, "%s ignores stream", nm);
        ck_assert_msg(memcmp(a, d, n * 2 * sizeof(float)) != 0, "%s ignores seed", nm);
        free(a), free(b), free(c), free(d);
    }
    /* per-row generators are prefix-stable */
    const char *rowwise[] = {"8gaussians", "checkerboard", "swissroll", "2spirals", "line",
                             "cos"};
    for (size_t k = 0; k < 6; ++k) {
        float *a = draw(rowwise[k], 1000, 9, 9), *b = draw(rowwise[k], 77, 9, 9);
        ck_assert_msg(memcmp(a, b, 77 * 2 * sizeof(float)) == 0, "%s not prefix-stable",
                      rowwise[k]);
        free(a), free(b);
    }
    /* tiny n works for every toy, n = 0 is a no-op */
    for (size_t k = 0; k < stochflow_toy_count(); ++k) {
        float one[2] = {NAN, NAN};
        ck_assert_ok(stochflow_toy_sample(one, stochflow_toy_name(k), 1, 0, 0));
        ck_assert(isfinite(one[0]) && isfinite(one[1]));
        ck_assert_ok(stochflow_toy_sample(NULL, stochflow_toy_name(k), 0, 0, 0));
    }
}
END_TEST

START_TEST(test_8gaussians_density) {
    /* the mixture integrates to 1: midpoint rule on [-6, 6]^2, h = 0.02 */
    size_t m = 600, cnt = m * m;
    float *g = malloc(cnt * 2 * sizeof(float)), *lp = malloc(cnt * sizeof(float));
    for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < m; ++j) {
            g[2 * (i * m + j)] = (float)(-6.0 + 0.02 * (i + 0.5));
            g[2 * (i * m + j) + 1] = (float)(-6.0 + 0.02 * (j + 0.5));
        }
    ck_assert_ok(stochflow_toy_log_density(lp, NULL, "8gaussians", g, cnt));
    double mass = 0;
    for (size_t i = 0; i < cnt; ++i) mass += exp(lp[i]) * 0.02 * 0.02;
    ck_assert_msg(fabs(mass - 1.0) < 1e-4, "mass %g", mass);
    free(g), free(lp);

    /* quadrature entropy: converged in h, and equal to the Monte Carlo -E log p */
    double h1 = stochflow__toy_entropy_8gaussians(0.25), h2 = stochflow__toy_entropy_8gaussians(0.125);
    ck_assert_msg(fabs(h1 - h2) < 1e-9, "quadrature not converged: %.12f vs %.12f", h1, h2);
    double h = 0;
    float *x = draw("8gaussians", N_BIG, 21, 0);
    lp = malloc(N_BIG * sizeof(float));
    ck_assert_ok(stochflow_toy_log_density(lp, &h, "8gaussians", x, N_BIG));
    ck_assert(fabs(h - h2) < 1e-12);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < N_BIG; ++i) s += lp[i], s2 += (double)lp[i] * lp[i];
    double mean = -s / N_BIG, se = sqrt((s2 / N_BIG - mean * mean) / N_BIG);
    ck_assert_msg(fabs(mean - h) < 5 * se + 1e-4, "MC entropy %g +- %g vs quadrature %g", mean,
                  se, h);
    /* close to, and below, the no-overlap value ln 8 + 1 + ln(2 pi sd^2) */
    double sd = 0.5 / 1.414, ideal = log(8.0) + 1.0 + log(2 * M_PI * sd * sd);
    ck_assert_msg(h < ideal && h > ideal - 0.01, "entropy %g vs %g", h, ideal);
    free(x), free(lp);
}
END_TEST

START_TEST(test_errors) {
    float buf[8];
    ck_assert_status(stochflow_toy_sample(buf, "nosuchtoy", 4, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "checkerboard"));
    ck_assert_status(stochflow_toy_sample(buf, NULL, 4, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_toy_sample(NULL, "moons", 4, 0, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_toy_sample(buf, "moons", SIZE_MAX / 4, 0, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_ptr_null(stochflow_toy_name(stochflow_toy_count()));
    ck_assert_uint_eq(stochflow_toy_count(), 10);
    float lp[4];
    ck_assert_status(stochflow_toy_log_density(lp, NULL, "moons", buf, 2),
                     STOCHFLOW_E_UNSUPPORTED);
    ck_assert_status(stochflow_toy_log_density(lp, NULL, "bogus", buf, 2), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_toy_log_density(NULL, NULL, "checkerboard", buf, 2),
                     STOCHFLOW_E_INVALID);
    float bad[2] = {NAN, 0};
    ck_assert_status(stochflow_toy_log_density(lp, NULL, "8gaussians", bad, 1),
                     STOCHFLOW_E_NONFINITE);
    double h = 0;
    ck_assert_ok(stochflow_toy_log_density(NULL, &h, "checkerboard", NULL, 0));
    ck_assert(fabs(h - log(32.0)) < 1e-12);
    /* pinwheel's trim buffer reports out of memory */
    stochflow__alloc_fail_at(1);
    ck_assert_status(stochflow_toy_sample(buf, "pinwheel", 4, 0, 0), STOCHFLOW_E_NOMEM);
    stochflow__alloc_fail_at(0);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("toys");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 120);
    tcase_add_test(core, test_8gaussians);
    tcase_add_test(core, test_checkerboard);
    tcase_add_test(core, test_circles_rings);
    tcase_add_test(core, test_moons);
    tcase_add_test(core, test_swissroll_pinwheel_spirals);
    tcase_add_test(core, test_line_cos);
    tcase_add_test(core, test_determinism);
    suite_add_tcase(s, core);
    TCase *dens = tcase_create("density");
    tcase_set_timeout(dens, 120);
    tcase_add_test(dens, test_8gaussians_density);
    suite_add_tcase(s, dens);
    TCase *err = tcase_create("errors");
    tcase_add_test(err, test_errors);
    suite_add_tcase(s, err);
    return s;
}
