/* toys.c - the built-in 2-D toy densities (FFJORD's generators), drawn from the
 * counter-based RNG. Specification: doc/cli.md ("Built-in toys") and
 * ../shared/reference/toy-data.md.
 *
 * Random keys. Every draw is a pure function of (seed, stream, row) through
 *   stochflow__rng_init(&r, seed, TOY_STREAM_*, stream, row)
 * i.e. the user's stream goes into the RNG's 64-bit "step" field and the row into the
 * "row" field; the 8-bit RNG stream id says what the draw is for:
 *   TOY_STREAM_ROW   (17): the per-row draws of a row (uniforms, normals, coin flips)
 *   TOY_STREAM_NOISE (18): the additive noise of output row i (generators that shuffle)
 *   TOY_STREAM_PERM  (19): the Fisher-Yates shuffle (one cursor, row 0)
 * Consequences:
 *  - Per-row generators (8gaussians, checkerboard, swissroll, 2spirals, line, cos) are
 *    prefix-stable: the first k rows of an n-row draw equal a k-row draw.
 *  - Generators that follow the literature's "evenly spaced angles, then shuffle"
 *    construction (rings, circles, moons, pinwheel) depend on n as a whole; they are
 *    still deterministic in (name, seed, stream, n).
 *  - 2spirals places the two arms on alternating rows (row 2j = +d_j, row 2j+1 = -d_j,
 *    each with its own noise) instead of stacking [d; -d], so every prefix holds both
 *    arms equally; the point set has the same distribution as the stacked version.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

#define TOY_STREAM_ROW (STOCHFLOW__STREAM_USER + 1)
#define TOY_STREAM_NOISE (STOCHFLOW__STREAM_USER + 2)
#define TOY_STREAM_PERM (STOCHFLOW__STREAM_USER + 3)


static const char *const toy_names[] = {
    "swissroll", "circles", "rings", "moons", "8gaussians",
    "pinwheel",  "2spirals", "checkerboard", "line", "cos",
};
#define N_TOYS (sizeof toy_names / sizeof toy_names[0])

STOCHFLOW_API size_t stochflow_toy_count(void) { return N_TOYS; }

STOCHFLOW_API const char *stochflow_toy_name(size_t i) {
    return i < N_TOYS ? toy_names[i] : NULL;
}

static int toy_index(const char *name) {
    for (size_t i = 0; i < N_TOYS; ++i)
        if (strcmp(name, toy_names[i]) == 0) return (int)i;
    return -1;
}

static int unknown_toy(const char *fn, const char *name) {
    return stochflow__error(STOCHFLOW_E_INVALID,
                            "%s: unknown toy '%.64s' (valid: swissroll, circles, rings, moons, "
                            "8gaussians, pinwheel, 2spirals, checkerboard, line, cos)",
                            fn, name);
}

/* Deterministic Fisher-Yates shuffle of the n rows (2 floats each) of p. */
static void shuffle_rows(float *p, size_t n, uint64_t seed, uint64_t stream) {
    stochflow__rng r;
    stochflow__rng_init(&r, seed, TOY_STREAM_PERM, stream, 0);
    for (size_t i = n; i > 1; --i) {
        size_t j = (size_t)(stochflow__rng_uniform(&r) * (double)i); /* 0..i-1 */
        if (j >= i) j = i - 1;
        float a = p[2 * (i - 1)], b = p[2 * (i - 1) + 1];
        p[2 * (i - 1)] = p[2 * j];
        p[2 * (i - 1) + 1] = p[2 * j + 1];
        p[2 * j] = a;
        p[2 * j + 1] = b;
    }
}

/* Add sd * N(0, 1) to both coordinates of every row (keyed by output row). */
static void add_noise(float *p, size_t n, double sd, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, TOY_STREAM_NOISE, stream, i);
        double e0 = stochflow__rng_normal(&r), e1 = stochflow__rng_normal(&r);
        p[2 * i] = (float)(p[2 * i] + sd * e0);
        p[2 * i + 1] = (float)(p[2 * i + 1] + sd * e1);
    }
}

/* Points on a circle of radius rad, k angles evenly spaced on [0, 2 pi) (endpoint
 * excluded), written to p[0 .. 2k). */
static void circle(float *p, size_t k, double rad) {
    for (size_t i = 0; i < k; ++i) {
        double a = 2.0 * STOCHFLOW__PI * (double)i / (double)k;
        p[2 * i] = (float)(rad * cos(a));
        p[2 * i + 1] = (float)(rad * sin(a));
    }
}

/* numpy.linspace(0, pi, k)[i] (both endpoints included; k = 1 gives 0). */
static double linspace_pi(size_t i, size_t k) {
    return k > 1 ? STOCHFLOW__PI * (double)i / (double)(k - 1) : 0.0;
}

/* A float strictly below the (exactly representable) upper cell bound hi: the double
 * value v < hi may round up to hi when converted. */
static float below(double v, double hi) {
    float f = (float)v;
    if ((double)f >= hi) f = nextafterf((float)hi, -INFINITY);
    return f;
}

static void gen_8gaussians(float *out, size_t n, uint64_t seed, uint64_t stream) {
    static const double cx[8] = {1, -1, 0, 0, 0.70710678118654752440, 0.70710678118654752440,
                                 -0.70710678118654752440, -0.70710678118654752440};
    static const double cy[8] = {0, 0, 1, -1, 0.70710678118654752440, -0.70710678118654752440,
                                 0.70710678118654752440, -0.70710678118654752440};
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, TOY_STREAM_ROW, stream, i);
        unsigned k = (unsigned)(stochflow__rng_u32(&r) >> 29); /* uniform 0..7 */
        double e0 = stochflow__rng_normal(&r), e1 = stochflow__rng_normal(&r);
        out[2 * i] = (float)((4.0 * cx[k] + 0.5 * e0) / 1.414);
        out[2 * i + 1] = (float)((4.0 * cy[k] + 0.5 * e1) / 1.414);
    }
}

static void gen_checkerboard(float *out, size_t n, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, TOY_STREAM_ROW, stream, i);
        double x1 = 4.0 * stochflow__rng_uniform(&r) - 2.0;
        double u = stochflow__rng_uniform(&r);
        double b = (double)(stochflow__rng_u32(&r) >> 31);
        double x2 = u - 2.0 * b;
        double fl = floor(x1);
        double m = fmod(fl, 2.0);
        if (m < 0) m += 2.0;
        x2 += m;
        /* scale by 2 and keep each coordinate inside its half-open 2 x 2 cell */
        out[2 * i] = below(2.0 * x1, 2.0 * fl + 2.0);
        out[2 * i + 1] = below(2.0 * x2, 2.0 * floor(x2) + 2.0);
    }
}

static void gen_swissroll(float *out, size_t n, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, TOY_STREAM_ROW, stream, i);
        double t = 1.5 * STOCHFLOW__PI * (1.0 + 2.0 * stochflow__rng_uniform(&r));
        double e0 = stochflow__rng_normal(&r), e1 = stochflow__rng_normal(&r);
        out[2 * i] = (float)((t * cos(t) + e0) / 5.0);
        out[2 * i + 1] = (float)((t * sin(t) + e1) / 5.0);
    }
}

static void gen_2spirals(float *out, size_t n, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; ++i) {
        size_t j = i / 2;
        double sign = (i % 2) ? -1.0 : 1.0;
        stochflow__rng r;
        stochflow__rng_init(&r, seed, TOY_STREAM_ROW, stream, j); /* shared by the pair */
        double rad = sqrt(stochflow__rng_uniform(&r)) * 3.0 * STOCHFLOW__PI;
        double dx = -cos(rad) * rad + 0.5 * stochflow__rng_uniform(&r);
        double dy = sin(rad) * rad + 0.5 * stochflow__rng_uniform(&r);
        stochflow__rng q;
        stochflow__rng_init(&q, seed, TOY_STREAM_NOISE, stream, i);
        double e0 = stochflow__rng_normal(&q), e1 = stochflow__rng_normal(&q);
        out[2 * i] = (float)(sign * dx / 3.0 + 0.1 * e0);
        out[2 * i + 1] = (float)(sign * dy / 3.0 + 0.1 * e1);
    }
}

static void gen_line_cos(float *out, size_t n, uint64_t seed, uint64_t stream, int is_cos) {
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, TOY_STREAM_ROW, stream, i);
        double x = 5.0 * stochflow__rng_uniform(&r) - 2.5;
        out[2 * i] = (float)x;
        out[2 * i + 1] = (float)(is_cos ? 2.5 * sin(x) : x);
    }
}

static void gen_rings(float *out, size_t n, uint64_t seed, uint64_t stream) {
    size_t q = n / 4, rest = n - 3 * q;
    circle(out, q, 3.0);
    circle(out + 2 * q, q, 2.25);
    circle(out + 4 * q, q, 1.5);
    circle(out + 6 * q, rest, 0.75);
    shuffle_rows(out, n, seed, stream);
    add_noise(out, n, 0.08, seed, stream);
}

static void gen_circles(float *out, size_t n, uint64_t seed, uint64_t stream) {
    size_t n_out = n / 2, n_in = n - n_out;
    circle(out, n_out, 1.0);
    circle(out + 2 * n_out, n_in, 0.5);
    shuffle_rows(out, n, seed, stream);
    add_noise(out, n, 0.08, seed, stream);
    for (size_t i = 0; i < 2 * n; ++i) out[i] *= 3.0f;
}

static void gen_moons(float *out, size_t n, uint64_t seed, uint64_t stream) {
    size_t n_out = n / 2, n_in = n - n_out;
    for (size_t i = 0; i < n_out; ++i) {
        double a = linspace_pi(i, n_out);
        out[2 * i] = (float)cos(a);
        out[2 * i + 1] = (float)sin(a);
    }
    for (size_t i = 0; i < n_in; ++i) {
        double a = linspace_pi(i, n_in);
        out[2 * (n_out + i)] = (float)(1.0 - cos(a));
        out[2 * (n_out + i) + 1] = (float)(1.0 - sin(a) - 0.5);
    }
    shuffle_rows(out, n, seed, stream);
    add_noise(out, n, 0.1, seed, stream);
    for (size_t i = 0; i < n; ++i) {
        out[2 * i] = 2.0f * out[2 * i] - 1.0f;
        out[2 * i + 1] = 2.0f * out[2 * i + 1] - 0.2f;
    }
}

/* pinwheel on m = 5 * (n_gen / 5) rows written to buf (m x 2), then permuted. */
static void gen_pinwheel_rows(float *buf, size_t per_class, uint64_t seed, uint64_t stream) {
    size_t m = 5 * per_class;
    for (size_t i = 0; i < m; ++i) {
        size_t k = i / per_class;
        stochflow__rng r;
        stochflow__rng_init(&r, seed, TOY_STREAM_ROW, stream, i);
        double f0 = 0.3 * stochflow__rng_normal(&r) + 1.0;
        double f1 = 0.1 * stochflow__rng_normal(&r);
        double ang = 2.0 * STOCHFLOW__PI * (double)k / 5.0 + 0.25 * exp(f0);
        double c = cos(ang), s = sin(ang);
        buf[2 * i] = (float)(2.0 * (f0 * c + f1 * s));
        buf[2 * i + 1] = (float)(2.0 * (-f0 * s + f1 * c));
    }
    shuffle_rows(buf, m, seed, stream);
}

STOCHFLOW_API int stochflow_toy_sample(float *out, const char *name, size_t n, uint64_t seed,
                                       uint64_t stream) {
    RETURN_ERROR_IF(name == NULL, STOCHFLOW_E_INVALID, "toy_sample: name is NULL");
    int k = toy_index(name);
    if (k < 0) return unknown_toy("toy_sample", name);
    RETURN_ERROR_IF(out == NULL && n > 0, STOCHFLOW_E_INVALID, "toy_sample: out is NULL");
    size_t bytes;
    RETURN_ERROR_IF(stochflow__mul_size(&bytes, n, 2 * sizeof(float)) != 0, STOCHFLOW_E_INVALID,
                    "toy_sample: n = %zu too large", n);
    RETURN_ERROR_IF(stream >= ((uint64_t)1 << 44), STOCHFLOW_E_INVALID,
                    "toy_sample: stream %llu too large (limit 2^44)",
                    (unsigned long long)stream);
    if (n == 0) return 0;
    const char *nm = toy_names[k];
    if (strcmp(nm, "8gaussians") == 0) gen_8gaussians(out, n, seed, stream);
    else if (strcmp(nm, "checkerboard") == 0) gen_checkerboard(out, n, seed, stream);
    else if (strcmp(nm, "swissroll") == 0) gen_swissroll(out, n, seed, stream);
    else if (strcmp(nm, "2spirals") == 0) gen_2spirals(out, n, seed, stream);
    else if (strcmp(nm, "line") == 0) gen_line_cos(out, n, seed, stream, 0);
    else if (strcmp(nm, "cos") == 0) gen_line_cos(out, n, seed, stream, 1);
    else if (strcmp(nm, "rings") == 0) gen_rings(out, n, seed, stream);
    else if (strcmp(nm, "circles") == 0) gen_circles(out, n, seed, stream);
    else if (strcmp(nm, "moons") == 0) gen_moons(out, n, seed, stream);
    else { /* pinwheel: 5 * ceil(n / 5) rows generated, the first n kept */
        size_t per_class = n / 5 + (n % 5 != 0);
        if (5 * per_class == n) {
            gen_pinwheel_rows(out, per_class, seed, stream);
        } else {
            float *buf = stochflow__alloc_array(5 * per_class, 2 * sizeof(float));
            RETURN_ERROR_IF(buf == NULL, STOCHFLOW_E_NOMEM, "toy_sample: out of memory");
            gen_pinwheel_rows(buf, per_class, seed, stream);
            memcpy(out, buf, bytes);
            stochflow__free(buf);
        }
    }
    return 0;
}

/* ---- true densities ----------------------------------------------------------- */

#define G8_SD (0.5 / 1.414)

/* log density of the 8gaussians mixture at (x, y), in double. */
static double log_8gaussians(double x, double y) {
    static const double u[8][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1},
                                   {0.70710678118654752440, 0.70710678118654752440},
                                   {0.70710678118654752440, -0.70710678118654752440},
                                   {-0.70710678118654752440, 0.70710678118654752440},
                                   {-0.70710678118654752440, -0.70710678118654752440}};
    const double var = G8_SD * G8_SD;
    double e[8], mx = -INFINITY;
    for (int k = 0; k < 8; ++k) {
        double dx = x - 4.0 * u[k][0] / 1.414, dy = y - 4.0 * u[k][1] / 1.414;
        e[k] = -(dx * dx + dy * dy) / (2.0 * var);
        if (e[k] > mx) mx = e[k];
    }
    double s = 0.0;
    for (int k = 0; k < 8; ++k) s += exp(e[k] - mx);
    return mx + log(s) - log(8.0) - log(2.0 * STOCHFLOW__PI * var);
}

/*
 * Entropy of 8gaussians, H = -E[log p(X)]. The dihedral symmetry of the centres makes
 * every component contribute the same, so H = -E_{Z ~ N(0, I)}[log p(mu_0 + sd Z)].
 * That 2-D Gaussian expectation is computed by the tensor trapezoid rule in z with
 * step h = 0.125 on [-10, 10]^2 (161^2 nodes), weights normalised to sum to one. For
 * a smooth integrand against a Gaussian weight the trapezoid rule converges
 * exponentially in 1/h; tests/check_toys.c checks h = 0.125 against h = 0.25 (they
 * agree to better than 1e-9) and against Monte Carlo. Result: 2.8362... nats (the
 * non-overlapping value would be ln 8 + 1 + ln(2 pi sd^2) = 2.8379).
 */
static double entropy_8gaussians_h(double h) {
    const double mu0x = 4.0 / 1.414, mu0y = 0.0;
    int half = (int)floor(10.0 / h + 0.5);
    double wsum = 0.0, acc = 0.0;
    for (int i = -half; i <= half; ++i) {
        double zi = h * i, wi = exp(-0.5 * zi * zi);
        for (int j = -half; j <= half; ++j) {
            double zj = h * j, w = wi * exp(-0.5 * zj * zj);
            acc += w * log_8gaussians(mu0x + G8_SD * zi, mu0y + G8_SD * zj);
            wsum += w;
        }
    }
    return -acc / wsum;
}

/* Exposed to the tests (not exported from the shared library). */
double stochflow__toy_entropy_8gaussians(double h);
double stochflow__toy_entropy_8gaussians(double h) { return entropy_8gaussians_h(h); }

STOCHFLOW_API int stochflow_toy_log_density(float *logp, double *entropy, const char *name,
                                            const float *x, size_t n) {
    RETURN_ERROR_IF(name == NULL, STOCHFLOW_E_INVALID, "toy_log_density: name is NULL");
    int k = toy_index(name);
    if (k < 0) return unknown_toy("toy_log_density", name);
    int is_cb = strcmp(name, "checkerboard") == 0, is_g8 = strcmp(name, "8gaussians") == 0;
    RETURN_ERROR_IF(!is_cb && !is_g8, STOCHFLOW_E_UNSUPPORTED,
                    "toy_log_density: the density of '%s' is not known in closed form "
                    "(only checkerboard and 8gaussians)", name);
    RETURN_ERROR_IF(n > 0 && (x == NULL || logp == NULL), STOCHFLOW_E_INVALID,
                    "toy_log_density: x or logp is NULL");
    size_t cnt;
    RETURN_ERROR_IF(stochflow__mul_size(&cnt, n, 2) != 0, STOCHFLOW_E_INVALID,
                    "toy_log_density: n = %zu too large", n);
    FORWARD_IF_ERROR(stochflow__check_finite(x, cnt, "toy_log_density: x"));
    for (size_t i = 0; i < n; ++i) {
        double a = x[2 * i], b = x[2 * i + 1];
        if (is_cb) {
            /* inside iff in [-4, 4)^2 and the 2 x 2 cell indices have an even sum */
            int in = a >= -4.0 && a < 4.0 && b >= -4.0 && b < 4.0;
            if (in) {
                long ci = (long)floor(a / 2.0), cj = (long)floor(b / 2.0);
                in = ((ci + cj) % 2 + 2) % 2 == 0;
            }
            logp[i] = in ? (float)-log(32.0) : -INFINITY;
        } else {
            logp[i] = (float)log_8gaussians(a, b);
        }
    }
    if (entropy != NULL) *entropy = is_cb ? log(32.0) : entropy_8gaussians_h(0.125);
    return 0;
}
