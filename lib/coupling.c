/* coupling.c - minibatch couplings of x0 and x1: exact optimal assignment (shortest
 * augmenting paths with potentials) and entropic OT (Sinkhorn, pairs drawn from the
 * plan), and stochflow_coupling_assign. Conventions: doc/transport.md. */
#include <math.h>
#include <string.h>

#include "coupling.h"
#include "model.h"

#define SINKHORN_MAX_ITERS 1000
#define SINKHORN_TOL 1e-6

/* ---- exact assignment ------------------------------------------------------------- */

/* Shortest augmenting paths with row/column potentials (Jonker-Volgenant / Crouse's
 * form, as in SciPy's linear_sum_assignment): rows are inserted one at a time; each
 * insertion runs Dijkstra over the columns not yet scanned (one pass over a shrinking
 * list per scanned column, ties broken toward free columns), then updates the dual
 * potentials lazily and augments. O(n^3) worst case, exact for any real costs.
 * dwork: 3 n doubles; iwork: 4 n size_t; flags: 2 n chars. */
void stochflow__assign_exact(size_t *perm, const double *cost, size_t n, double *dwork,
                             size_t *iwork, char *flags) {
    const size_t NONE = (size_t)-1;
    double *u = dwork, *v = dwork + n, *spc = dwork + 2 * n;
    size_t *path = iwork, *col4row = iwork + n, *row4col = iwork + 2 * n,
           *remaining = iwork + 3 * n;
    char *SR = flags, *SC = flags + n;
    for (size_t k = 0; k < n; ++k) {
        u[k] = v[k] = 0.0;
        col4row[k] = row4col[k] = path[k] = NONE;
    }
    for (size_t cur = 0; cur < n; ++cur) {
        /* Dijkstra from row cur */
        double minval = 0.0;
        size_t nrem = n, i = cur, sink = NONE;
        for (size_t k = 0; k < n; ++k) {
            remaining[k] = n - 1 - k;
            SR[k] = SC[k] = 0;
            spc[k] = INFINITY;
        }
        while (sink == NONE) {
            size_t index = NONE;
            double lowest = INFINITY;
            SR[i] = 1;
            const double *row = cost + i * n;
            const double base = minval - u[i];
            for (size_t it = 0; it < nrem; ++it) {
                size_t j = remaining[it];
                double r = base + row[j] - v[j];
                if (r < spc[j]) {
                    path[j] = i;
                    spc[j] = r;
                }
                if (spc[j] < lowest || (spc[j] == lowest && row4col[j] == NONE)) {
                    lowest = spc[j];
                    index = it;
                }
            }
            minval = lowest;
            size_t j = remaining[index];
            if (row4col[j] == NONE)
                sink = j;
            else
                i = row4col[j];
            SC[j] = 1;
            remaining[index] = remaining[--nrem];
        }
        /* dual update */
        u[cur] += minval;
        for (size_t r = 0; r < n; ++r)
            if (SR[r] && r != cur) u[r] += minval - spc[col4row[r]];
        for (size_t c = 0; c < n; ++c)
            if (SC[c]) v[c] -= minval - spc[c];
        /* augment along the path back to cur */
        size_t j = sink;
        for (;;) {
            size_t r = path[j];
            row4col[j] = r;
            size_t tmp = col4row[r];
            col4row[r] = j;
            j = tmp;
            if (r == cur) break;
        }
    }
    for (size_t r = 0; r < n; ++r) perm[r] = col4row[r];
}

/* ---- couplings -------------------------------------------------------------------- */

int stochflow__coupling_bytes(size_t *out, size_t n) {
    size_t nn, b1, b2;
    if (stochflow__mul_size(&nn, n, n) != 0 || stochflow__mul_size(&b1, nn, sizeof(double)) != 0)
        return -1;
    /* dwork 3 (n+1) doubles (Sinkhorn: f, g, tmp n each), iwork 4 (n+1) size_t, flags */
    b2 = 3 * (n + 1) * sizeof(double) + 4 * (n + 1) * sizeof(size_t) + 2 * (n + 1) + 64;
    if (b1 > SIZE_MAX - b2) return -1;
    *out = b1 + b2;
    return 0;
}

/* Cost C[i, j] = |x1_i - x0_j|^2 (rows: x1, columns: x0); returns the mean. */
static double cost_matrix(double *C, const float *x0, const float *x1, size_t n, size_t d) {
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const float *a = x1 + i * d;
        double *row = C + i * n;
        for (size_t j = 0; j < n; ++j) {
            const float *b = x0 + j * d;
            double acc = 0.0;
            for (size_t k = 0; k < d; ++k) {
                double e = (double)a[k] - (double)b[k];
                acc += e * e;
            }
            row[j] = acc;
            total += acc;
        }
    }
    return total / ((double)n * (double)n);
}

/* After a Sinkhorn iteration with row error err: NONFINITE when it diverged, 1 when
 * converged, else 0. */
static int sinkhorn_done(double err, size_t n) {
    if (!isfinite(err))
        return stochflow__error(STOCHFLOW_E_NONFINITE,
                                "Sinkhorn iteration diverged (regularization too small?)");
    return err / (double)n < SINKHORN_TOL;
}

/* Row i's partner drawn from its plan weights w [n] (sum r), keyed by (seed, COUPLING
 * stream, step, i). */
static size_t draw_column(const double *w, double r, size_t n, uint64_t seed, uint64_t step,
                          size_t i) {
    stochflow__rng rng;
    stochflow__rng_init(&rng, seed, STOCHFLOW__STREAM_COUPLING, step, i);
    double target = stochflow__rng_uniform(&rng) * r, acc = 0.0;
    for (size_t j = 0; j < n; ++j) {
        acc += w[j];
        if (acc > target) return j;
    }
    return n - 1;
}

/* Log-domain Sinkhorn with uniform marginals, then perm[i] drawn from row i of the
 * plan (rows: x1). f, g, tmp: n doubles each. */
static int sinkhorn_draw(size_t *perm, const double *C, size_t n, double eps, double *f,
                         double *g, double *tmp, uint64_t seed, uint64_t step) {
    const double logn = log((double)n);
    for (size_t i = 0; i < n; ++i) f[i] = g[i] = 0.0;
    for (int it = 0; it < SINKHORN_MAX_ITERS; ++it) {
        /* f_i = -eps LSE_j((g_j - C_ij)/eps) - eps log n */
        for (size_t i = 0; i < n; ++i) {
            const double *row = C + i * n;
            double mx = -INFINITY;
            for (size_t j = 0; j < n; ++j) {
                double z = (g[j] - row[j]) / eps;
                if (z > mx) mx = z;
            }
            double s = 0.0;
            for (size_t j = 0; j < n; ++j) s += exp((g[j] - row[j]) / eps - mx);
            f[i] = -eps * (mx + log(s)) - eps * logn;
        }
        /* g_j = -eps LSE_i((f_i - C_ij)/eps) - eps log n, column-wise via tmp */
        for (size_t j = 0; j < n; ++j) tmp[j] = -INFINITY;
        for (size_t i = 0; i < n; ++i) {
            const double *row = C + i * n;
            for (size_t j = 0; j < n; ++j) {
                double z = (f[i] - row[j]) / eps;
                if (z > tmp[j]) tmp[j] = z;
            }
        }
        double *s = g; /* reuse g as the accumulator after reading it (g not needed) */
        for (size_t j = 0; j < n; ++j) s[j] = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const double *row = C + i * n;
            for (size_t j = 0; j < n; ++j) s[j] += exp((f[i] - row[j]) / eps - tmp[j]);
        }
        for (size_t j = 0; j < n; ++j) g[j] = -eps * (tmp[j] + log(s[j])) - eps * logn;
        /* column marginals are exact now; check the rows: sum_j P_ij = 1/n */
        double err = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const double *row = C + i * n;
            double r = 0.0;
            for (size_t j = 0; j < n; ++j) r += exp((f[i] + g[j] - row[j]) / eps);
            err += fabs(r * (double)n - 1.0);
        }
        int done = sinkhorn_done(err, n);
        if (done != 0) {
            if (done < 0) return done;
            break;
        }
    }
    for (size_t i = 0; i < n; ++i) {
        const double *row = C + i * n;
        double r = 0.0;
        for (size_t j = 0; j < n; ++j) {
            tmp[j] = exp((f[i] + g[j] - row[j]) / eps);
            r += tmp[j];
        }
        perm[i] = draw_column(tmp, r, n, seed, step, i);
    }
    return 0;
}

/* Sinkhorn with a precomputed kernel K = exp(-C / eps) (in place of C) when no entry
 * underflows (max C / eps <= 600): O(n^2) multiply-adds per iteration instead of
 * exponentials. Falls back to the log-domain version otherwise. */
static int sinkhorn_scaled(size_t *perm, double *C, size_t n, double eps, double *u, double *v,
                           double *tmp, uint64_t seed, uint64_t step) {
    double cmax = 0.0;
    for (size_t i = 0; i < n * n; ++i)
        if (C[i] > cmax) cmax = C[i];
    if (cmax / eps > 600.0) return sinkhorn_draw(perm, C, n, eps, u, v, tmp, seed, step);
    for (size_t i = 0; i < n * n; ++i) C[i] = exp(-C[i] / eps);
    const double a = 1.0 / (double)n;
    for (size_t i = 0; i < n; ++i) u[i] = v[i] = 1.0;
    for (int it = 0; it < SINKHORN_MAX_ITERS; ++it) {
        for (size_t i = 0; i < n; ++i) {
            const double *row = C + i * n;
            double r = 0.0;
            for (size_t j = 0; j < n; ++j) r += row[j] * v[j];
            u[i] = a / r;
        }
        for (size_t j = 0; j < n; ++j) tmp[j] = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const double *row = C + i * n;
            const double ui = u[i];
            for (size_t j = 0; j < n; ++j) tmp[j] += row[j] * ui;
        }
        for (size_t j = 0; j < n; ++j) v[j] = a / tmp[j];
        if (it % 5 != 4) continue;
        /* columns are exact after the v update; check the rows */
        double err = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const double *row = C + i * n;
            double r = 0.0;
            for (size_t j = 0; j < n; ++j) r += row[j] * v[j];
            err += fabs(u[i] * r * (double)n - 1.0);
        }
        int done = sinkhorn_done(err, n);
        if (done != 0) {
            if (done < 0) return done;
            break;
        }
    }
    for (size_t i = 0; i < n; ++i) {
        const double *row = C + i * n;
        double r = 0.0;
        for (size_t j = 0; j < n; ++j) {
            tmp[j] = row[j] * v[j];
            r += tmp[j];
        }
        perm[i] = draw_column(tmp, r, n, seed, step, i);
    }
    return 0;
}

int stochflow__coupling_check_n(size_t n, int mode, const char *who) {
    if (mode == STOCHFLOW_COUPLING_INDEPENDENT) return 0;
    RETURN_ERROR_IF(mode == STOCHFLOW_COUPLING_OT && n > STOCHFLOW_COUPLING_OT_MAX_N,
                    STOCHFLOW_E_INVALID,
                    "%s: the exact OT coupling takes at most %d rows (its cost is cubic in the "
                    "batch), got %zu; use STOCHFLOW_COUPLING_SINKHORN or a smaller batch",
                    who, STOCHFLOW_COUPLING_OT_MAX_N, n);
    RETURN_ERROR_IF(n > STOCHFLOW__MAX_COUPLING_N, STOCHFLOW_E_INVALID,
                    "%s: batch of %zu rows exceeds %zu", who, n, STOCHFLOW__MAX_COUPLING_N);
    return 0;
}

int stochflow__coupling_pair(size_t *perm, const float *x0, const float *x1, size_t n, size_t d,
                             int mode, double reg, uint64_t seed, uint64_t step, void *work) {
    if (mode == STOCHFLOW_COUPLING_INDEPENDENT) {
        for (size_t i = 0; i < n; ++i) perm[i] = i;
        return 0;
    }
    double *C = work;
    double *dwork = C + n * n;
    size_t *iwork = (size_t *)(dwork + 3 * (n + 1));
    char *used = (char *)(iwork + 4 * (n + 1));
    double mean = cost_matrix(C, x0, x1, n, d);
    RETURN_ERROR_IF(!isfinite(mean), STOCHFLOW_E_NONFINITE, "coupling cost is not finite");
    if (mode == STOCHFLOW_COUPLING_OT) {
        stochflow__assign_exact(perm, C, n, dwork, iwork, used);
        return 0;
    }
    double eps = reg * (mean > 0 ? mean : 1.0);
    return sinkhorn_scaled(perm, C, n, eps, dwork, dwork + n, dwork + 2 * n, seed, step);
}

STOCHFLOW_API int stochflow_coupling_assign(size_t *perm, double *cost, const float *x0,
                                            const float *x1, size_t n, size_t d, int mode,
                                            double reg, uint64_t seed) {
    RETURN_ERROR_IF(perm == NULL || x0 == NULL || x1 == NULL, STOCHFLOW_E_INVALID,
                    "coupling_assign: perm, x0 or x1 is NULL");
    RETURN_ERROR_IF(n == 0 || n > STOCHFLOW__MAX_COUPLING_N, STOCHFLOW_E_INVALID,
                    "coupling_assign: n = %zu out of range 1..%zu", n, STOCHFLOW__MAX_COUPLING_N);
    RETURN_ERROR_IF(d == 0 || d > STOCHFLOW__MAX_DIM, STOCHFLOW_E_INVALID,
                    "coupling_assign: d = %zu out of range 1..%d", d, STOCHFLOW__MAX_DIM);
    if (mode == 0) mode = STOCHFLOW_COUPLING_INDEPENDENT;
    RETURN_ERROR_IF(mode < STOCHFLOW_COUPLING_INDEPENDENT || mode > STOCHFLOW_COUPLING_SINKHORN,
                    STOCHFLOW_E_INVALID, "coupling_assign: unknown mode %d", mode);
    FORWARD_IF_ERROR(stochflow__coupling_check_n(n, mode, "coupling_assign"));
    if (!(reg > 0)) reg = 0.05;
    FORWARD_IF_ERROR(stochflow__check_finite(x0, n * d, "coupling x0"));
    FORWARD_IF_ERROR(stochflow__check_finite(x1, n * d, "coupling x1"));
    void *work = NULL;
    if (mode != STOCHFLOW_COUPLING_INDEPENDENT) {
        size_t bytes;
        RETURN_ERROR_IF(stochflow__coupling_bytes(&bytes, n) != 0, STOCHFLOW_E_INVALID,
                        "coupling_assign: n = %zu too large", n);
        work = stochflow__malloc(bytes);
        RETURN_ERROR_IF(work == NULL, STOCHFLOW_E_NOMEM,
                        "coupling_assign: cannot allocate %zu bytes", bytes);
    }
    int rc = stochflow__coupling_pair(perm, x0, x1, n, d, mode, reg, seed, 0, work);
    stochflow__free(work);
    FORWARD_IF_ERROR(rc);
    if (cost) {
        double total = 0.0;
        for (size_t i = 0; i < n; ++i)
            for (size_t k = 0; k < d; ++k) {
                double e = (double)x1[i * d + k] - (double)x0[perm[i] * d + k];
                total += e * e;
            }
        *cost = total / (double)n;
    }
    return 0;
}

