/* transport.c - optimizing the transport (issue 9).
 *
 *  - The learnable Fourier interpolant a = a_base + sum alpha_m sin(m pi t),
 *    b = b_base + sum beta_m sin(m pi t): evaluation, the gradient of the loss G with
 *    respect to (alpha, beta), and the Adam ascent step of the max-min game
 *    max_{alpha,beta} min_v G.
 *  - Minibatch couplings of x0 and x1: exact optimal assignment (shortest augmenting
 *    paths with potentials) and entropic OT (log-domain Sinkhorn, pairs drawn from the
 *    plan).
 *  - The running path-length estimate (EMA of -G over training steps).
 *  - The checkpoint section "INTP".
 * Derivations and conventions: doc/transport.md. */
#include <math.h>
#include <string.h>

#include "bytes.h" /* little-endian helpers of the INTP checkpoint section */
#include "model.h"
#include "transport.h"

#define PI 3.14159265358979323846
#define HALF_PI 1.5707963267948966
#define PATH_EMA_DECAY 0.99
#define SINKHORN_MAX_ITERS 1000
#define SINKHORN_TOL 1e-6
#define MAX_COUPLING_N ((size_t)1 << 16)
#define INTP_VERSION 1u

/* ---- the Fourier interpolant ------------------------------------------------------ */

void stochflow__fourier_eval(const stochflow__interp *ip, double t, double out[4]) {
    if (ip->base == STOCHFLOW_INTERP_TRIG) {
        out[0] = cos(HALF_PI * t);
        out[1] = sin(HALF_PI * t);
        out[2] = -HALF_PI * sin(HALF_PI * t);
        out[3] = HALF_PI * cos(HALF_PI * t);
    } else {
        out[0] = 1.0 - t;
        out[1] = t;
        out[2] = -1.0;
        out[3] = 1.0;
    }
    const size_t M = ip->n_modes;
    const double *al = ip->coef, *be = ip->coef + M;
    for (size_t k = 0; k < M; ++k) {
        double w = PI * (double)(k + 1);
        double s = sin(w * t), c = w * cos(w * t);
        out[0] += al[k] * s;
        out[1] += be[k] * s;
        out[2] += al[k] * c;
        out[3] += be[k] * c;
    }
}

int stochflow__transport_active(const stochflow_model *m) {
    return m->interp.kind == STOCHFLOW_INTERP_FOURIER ||
           (int)m->hp.coupling != STOCHFLOW_COUPLING_INDEPENDENT;
}

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

/* Bytes of coupling workspace for n points (mode != INDEPENDENT). */
static int coupling_bytes(size_t *out, size_t n) {
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
        if (!isfinite(err))
            return stochflow__error(STOCHFLOW_E_NONFINITE,
                                    "Sinkhorn iteration diverged (regularization too small?)");
        if (err / (double)n < SINKHORN_TOL) break;
    }
    for (size_t i = 0; i < n; ++i) {
        const double *row = C + i * n;
        double r = 0.0;
        for (size_t j = 0; j < n; ++j) {
            tmp[j] = exp((f[i] + g[j] - row[j]) / eps);
            r += tmp[j];
        }
        stochflow__rng rng;
        stochflow__rng_init(&rng, seed, STOCHFLOW__STREAM_COUPLING, step, i);
        double target = stochflow__rng_uniform(&rng) * r, acc = 0.0;
        size_t pick = n - 1;
        for (size_t j = 0; j < n; ++j) {
            acc += tmp[j];
            if (acc > target) {
                pick = j;
                break;
            }
        }
        perm[i] = pick;
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
        if (!isfinite(err))
            return stochflow__error(STOCHFLOW_E_NONFINITE,
                                    "Sinkhorn iteration diverged (regularization too small?)");
        if (err / (double)n < SINKHORN_TOL) break;
    }
    for (size_t i = 0; i < n; ++i) {
        const double *row = C + i * n;
        double r = 0.0;
        for (size_t j = 0; j < n; ++j) r += row[j] * v[j];
        stochflow__rng rng;
        stochflow__rng_init(&rng, seed, STOCHFLOW__STREAM_COUPLING, step, i);
        double target = stochflow__rng_uniform(&rng) * r, acc = 0.0;
        size_t pick = n - 1;
        for (size_t j = 0; j < n; ++j) {
            acc += row[j] * v[j];
            if (acc > target) {
                pick = j;
                break;
            }
        }
        perm[i] = pick;
    }
    return 0;
}

/* perm[i] = x0 row paired with x1 row i. work: coupling_bytes(n) bytes, 64-aligned. */
static int couple(size_t *perm, const float *x0, const float *x1, size_t n, size_t d, int mode,
                  double reg, uint64_t seed, uint64_t step, void *work) {
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
    RETURN_ERROR_IF(n == 0 || n > MAX_COUPLING_N, STOCHFLOW_E_INVALID,
                    "coupling_assign: n = %zu out of range 1..%zu", n, MAX_COUPLING_N);
    RETURN_ERROR_IF(d == 0 || d > STOCHFLOW__MAX_DIM, STOCHFLOW_E_INVALID,
                    "coupling_assign: d = %zu out of range 1..%d", d, STOCHFLOW__MAX_DIM);
    if (mode == 0) mode = STOCHFLOW_COUPLING_INDEPENDENT;
    RETURN_ERROR_IF(mode < STOCHFLOW_COUPLING_INDEPENDENT || mode > STOCHFLOW_COUPLING_SINKHORN,
                    STOCHFLOW_E_INVALID, "coupling_assign: unknown mode %d", mode);
    if (!(reg > 0)) reg = 0.05;
    FORWARD_IF_ERROR(stochflow__check_finite(x0, n * d, "coupling x0"));
    FORWARD_IF_ERROR(stochflow__check_finite(x1, n * d, "coupling x1"));
    void *work = NULL;
    if (mode != STOCHFLOW_COUPLING_INDEPENDENT) {
        size_t bytes;
        RETURN_ERROR_IF(coupling_bytes(&bytes, n) != 0, STOCHFLOW_E_INVALID,
                        "coupling_assign: n = %zu too large", n);
        work = stochflow__malloc(bytes);
        RETURN_ERROR_IF(work == NULL, STOCHFLOW_E_NOMEM,
                        "coupling_assign: cannot allocate %zu bytes", bytes);
    }
    int rc = couple(perm, x0, x1, n, d, mode, reg, seed, 0, work);
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

/* ---- training integration --------------------------------------------------------- */

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

int stochflow__transport_prepare(stochflow_model *m, const float *x1, size_t n,
                                 const float *x0, int train, const float **x0_out,
                                 double **t_save, float **dx_out) {
    const size_t d = m->d;
    const int mode = (int)m->hp.coupling;
    size_t nd, b_x0, b_t, b_du, b_perm, b_cpl = 0, nin;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, d) != 0 ||
                        stochflow__mul_size(&b_x0, nd, 2 * sizeof(float)) != 0 ||
                        stochflow__mul_size(&b_t, n, sizeof(double)) != 0 ||
                        stochflow__mul_size(&nin, n, m->n_in) != 0 ||
                        stochflow__mul_size(&b_du, nin, sizeof(float)) != 0 ||
                        stochflow__mul_size(&b_perm, n, sizeof(size_t)) != 0,
                    STOCHFLOW_E_INVALID, "batch of %zu rows is too large", n);
    if (mode != STOCHFLOW_COUPLING_INDEPENDENT) {
        RETURN_ERROR_IF(n > MAX_COUPLING_N || coupling_bytes(&b_cpl, n) != 0,
                        STOCHFLOW_E_INVALID, "coupling: batch of %zu rows exceeds %zu", n,
                        MAX_COUPLING_N);
    }
    size_t total = align64(b_x0) + align64(b_t) + align64(b_du) + align64(b_perm) + b_cpl;
    RETURN_ERROR_IF(total < b_x0, STOCHFLOW_E_INVALID, "batch of %zu rows is too large", n);
    if (total > m->tr.ws_bytes) {
        void *p = stochflow__malloc(total);
        RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM,
                        "cannot allocate a transport workspace of %zu bytes", total);
        stochflow__free(m->tr.ws);
        m->tr.ws = p;
        m->tr.ws_bytes = total;
    }
    char *w = m->tr.ws;
    float *xa = (float *)w, *xb = xa + nd;
    w += align64(b_x0);
    double *ts = (double *)w;
    w += align64(b_t);
    float *du = (float *)w;
    w += align64(b_du);
    size_t *perm = (size_t *)w;
    w += align64(b_perm);
    void *cw = w;

    /* x0: the caller's rows, or the draws model.c would make (same keys) */
    if (x0) {
        memcpy(xa, x0, nd * sizeof *xa);
    } else {
        for (size_t i = 0; i < n; ++i) {
            stochflow__rng rx;
            stochflow__rng_init(&rx, m->cfg.seed,
                                train ? STOCHFLOW__STREAM_X0 : STOCHFLOW__STREAM_EVAL_X0, m->step,
                                i);
            for (size_t k = 0; k < d; ++k) xa[i * d + k] = (float)stochflow__rng_normal(&rx);
        }
    }
    const float *out = xa;
    if (mode != STOCHFLOW_COUPLING_INDEPENDENT) {
        FORWARD_IF_ERROR(couple(perm, xa, x1, n, d, mode, m->hp.sinkhorn_reg, m->cfg.seed,
                                m->step, cw));
        for (size_t i = 0; i < n; ++i) memcpy(xb + i * d, xa + perm[i] * d, d * sizeof *xb);
        out = xb;
    }
    *x0_out = out;
    *t_save = ts;
    *dx_out = du;
    return 0;
}

void stochflow__transport_coef_grad(stochflow_model *m, const float *o, const float *du,
                                    const float *x0, const float *x1, const double *t,
                                    size_t n) {
    const size_t d = m->d, nin = m->n_in, M = m->interp.n_modes;
    double *ga = m->tr.grad, *gb = m->tr.grad + M;
    for (size_t k = 0; k < 2 * M; ++k) m->tr.grad[k] = 0.0;
    const double two_over_n = 2.0 / (double)n;
    for (size_t i = 0; i < n; ++i) {
        const float *g = du + i * nin, *oi = o + i * d, *a = x0 + i * d, *b = x1 + i * d;
        double gx0 = 0, gx1 = 0, ox0 = 0, ox1 = 0;
        for (size_t k = 0; k < d; ++k) {
            gx0 += (double)g[k] * a[k];
            gx1 += (double)g[k] * b[k];
            ox0 += (double)oi[k] * a[k];
            ox1 += (double)oi[k] * b[k];
        }
        /* dG/dalpha_m = sin(m pi t) (dG/dx_t . x0) - (2/n) m pi cos(m pi t) (o . x0) */
        for (size_t q = 0; q < M; ++q) {
            double w = PI * (double)(q + 1);
            double s = sin(w * t[i]), c = w * cos(w * t[i]);
            ga[q] += s * gx0 - two_over_n * c * ox0;
            gb[q] += s * gx1 - two_over_n * c * ox1;
        }
    }
    m->tr.grad_valid = 1;
}

void stochflow__transport_record_loss(stochflow_model *m, double loss) {
    m->tr.last_loss = loss;
    m->tr.loss_valid = 1;
}

int stochflow__transport_apply(stochflow_model *m) {
    const int fourier = m->interp.kind == STOCHFLOW_INTERP_FOURIER && m->tr.grad_valid;
    const size_t M = m->interp.n_modes;
    if (fourier)
        for (size_t k = 0; k < 2 * M; ++k)
            RETURN_ERROR_IF(!isfinite(m->tr.grad[k]), STOCHFLOW_E_NONFINITE,
                            "interpolant coefficient gradient is not finite (step %llu); "
                            "model unchanged", (unsigned long long)m->step);
    /* the ascent follows the network's schedule: lr_interp * (lr(step) / lr) */
    const double factor = stochflow__model_lr(m) / m->hp.lr;
    const double loss = m->tr.last_loss;
    const int have_loss = m->tr.loss_valid;
    /* the ascent is computed first and committed after the network's update, so that a
     * non-finite coefficient or moment leaves the whole model unchanged */
    double nm[2 * STOCHFLOW__MAX_MODES], nv[2 * STOCHFLOW__MAX_MODES];
    double nc[2 * STOCHFLOW__MAX_MODES];
    if (fourier) {
        const stochflow__hparams *hp = &m->hp;
        const double t = (double)m->step + 1.0; /* the step being taken: 1 on the first */
        const double bc1 = 1.0 - pow(hp->beta1, t), bc2 = 1.0 - pow(hp->beta2, t);
        const double lr = hp->interp_lr * factor;
        for (size_t k = 0; k < 2 * M; ++k) {
            double g = m->tr.grad[k];
            nm[k] = hp->beta1 * m->tr.adam_m[k] + (1.0 - hp->beta1) * g;
            nv[k] = hp->beta2 * m->tr.adam_v[k] + (1.0 - hp->beta2) * g * g;
            /* gradient ASCENT: the interpolant maximizes min_v G (shortest path) */
            nc[k] = m->interp.coef[k] + lr * (nm[k] / bc1) / (sqrt(nv[k] / bc2) + hp->eps);
            RETURN_ERROR_IF(!isfinite(nc[k]) || !isfinite(nm[k]) || !isfinite(nv[k]),
                            STOCHFLOW_E_NONFINITE,
                            "interpolant coefficient %zu would become non-finite (step %llu); "
                            "model unchanged", k, (unsigned long long)m->step);
        }
    }
    FORWARD_IF_ERROR(stochflow__optimizer_apply(m));
    if (fourier) {
        memcpy(m->tr.adam_m, nm, 2 * M * sizeof *nm);
        memcpy(m->tr.adam_v, nv, 2 * M * sizeof *nv);
        memcpy(m->interp.coef, nc, 2 * M * sizeof *nc);
    }
    m->tr.grad_valid = 0;
    if (have_loss && isfinite(loss)) {
        m->tr.path_ema = PATH_EMA_DECAY * m->tr.path_ema + (1.0 - PATH_EMA_DECAY) * (-loss);
        m->tr.path_count++;
    }
    m->tr.loss_valid = 0;
    return 0;
}

void stochflow__transport_free(stochflow_model *m) {
    stochflow__free(m->tr.ws);
    m->tr.ws = NULL;
    m->tr.ws_bytes = 0;
}

/* ---- public accessors ------------------------------------------------------------- */

STOCHFLOW_API int stochflow_config_set_fourier_interpolant(stochflow_config *cfg, int base,
                                                           size_t n_modes) {
    RETURN_ERROR_IF(cfg == NULL, STOCHFLOW_E_INVALID, "config is NULL");
    if (base == 0) base = STOCHFLOW_INTERP_LINEAR;
    RETURN_ERROR_IF(base != STOCHFLOW_INTERP_TRIG && base != STOCHFLOW_INTERP_LINEAR,
                    STOCHFLOW_E_INVALID,
                    "set_fourier_interpolant: base %d is not TRIG (1) or LINEAR (2)", base);
    RETURN_ERROR_IF(n_modes < 1 || n_modes > STOCHFLOW__MAX_MODES, STOCHFLOW_E_INVALID,
                    "set_fourier_interpolant: %zu modes, expected 1..%d", n_modes,
                    STOCHFLOW__MAX_MODES);
    cfg->interpolant = STOCHFLOW_INTERP_FOURIER;
    cfg->interp_base = base;
    cfg->n_modes = n_modes;
    cfg->schedule = NULL;
    cfg->schedule_user = NULL;
    return 0;
}

STOCHFLOW_API int stochflow_config_fourier_interpolant(const stochflow_config *cfg, int *base,
                                                       size_t *n_modes) {
    RETURN_ERROR_IF(cfg == NULL, STOCHFLOW_E_INVALID, "config is NULL");
    RETURN_ERROR_IF(cfg->interpolant != STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_INVALID,
                    "config_fourier_interpolant: the interpolant is not FOURIER");
    if (base) *base = cfg->interp_base;
    if (n_modes) *n_modes = cfg->n_modes;
    return 0;
}

STOCHFLOW_API int stochflow_model_interpolant_coefficients(double *alpha, double *beta,
                                                           size_t *n_modes,
                                                           const stochflow_model *m) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF(m->interp.kind != STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_INVALID,
                    "interpolant_coefficients: the model's interpolant is not FOURIER");
    const size_t M = m->interp.n_modes;
    if (alpha) memcpy(alpha, m->interp.coef, M * sizeof *alpha);
    if (beta) memcpy(beta, m->interp.coef + M, M * sizeof *beta);
    if (n_modes) *n_modes = M;
    return 0;
}

STOCHFLOW_API int stochflow_model_interpolant_eval(double out[4], const stochflow_model *m,
                                                   double t) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "interpolant_eval: out is NULL");
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    STOCHFLOW__ENTER(m, "model");
    RETURN_ERROR_IF(!(t >= 0.0 && t <= 1.0), STOCHFLOW_E_INVALID,
                    "interpolant_eval: time %g outside [0, 1]", t);
    return stochflow__interp_eval(&m->interp, t, out);
}

STOCHFLOW_API int stochflow_model_path_length(double *out, uint64_t *count,
                                              const stochflow_model *m) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "path_length: out is NULL");
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    STOCHFLOW__ENTER(m, "model");
    if (count) *count = m->tr.path_count;
    RETURN_ERROR_IF(m->tr.path_count == 0, STOCHFLOW_E_INVALID,
                    "path_length: no training step has been taken yet");
    *out = m->tr.path_ema / (1.0 - pow(PATH_EMA_DECAY, (double)m->tr.path_count));
    return 0;
}

/* ---- checkpoint section INTP --------------------------------------------------------
 * u32 version (1), u32 base, u32 M, u32 reserved, u64 path_count, f64 path_ema,
 * f64 coef[2M] (alpha then beta), f64 adam_m[2M], f64 adam_v[2M]; little-endian. */

size_t stochflow__transport_section_size(const stochflow_model *m) {
    return 32 + 3 * 2 * m->interp.n_modes * 8;
}

void stochflow__transport_section_write(uint8_t *p, const stochflow_model *m) {
    const size_t M = m->interp.n_modes;
    p = stochflow__le_put32(p, INTP_VERSION);
    p = stochflow__le_put32(p, (uint32_t)m->interp.base);
    p = stochflow__le_put32(p, (uint32_t)M);
    p = stochflow__le_put32(p, 0);
    p = stochflow__le_put64(p, m->tr.path_count);
    p = stochflow__le_putf64(p, m->tr.path_ema);
    for (size_t k = 0; k < 2 * M; ++k) p = stochflow__le_putf64(p, m->interp.coef[k]);
    for (size_t k = 0; k < 2 * M; ++k) p = stochflow__le_putf64(p, m->tr.adam_m[k]);
    for (size_t k = 0; k < 2 * M; ++k) p = stochflow__le_putf64(p, m->tr.adam_v[k]);
}

int stochflow__transport_section_conf(stochflow_config *cfg, const uint8_t *p, uint64_t len) {
    RETURN_ERROR_IF(len < 32, STOCHFLOW_E_FORMAT, "checkpoint INTP section too short");
    RETURN_ERROR_IF(stochflow__le_get32(p) != INTP_VERSION, STOCHFLOW_E_VERSION,
                    "checkpoint INTP section version %u is not supported", stochflow__le_get32(p));
    uint32_t M = stochflow__le_get32(p + 8);
    RETURN_ERROR_IF(M < 1 || M > STOCHFLOW__MAX_MODES || len != 32 + 48 * (uint64_t)M,
                    STOCHFLOW_E_FORMAT, "checkpoint INTP section is inconsistent");
    cfg->interp_base = (int)stochflow__le_get32(p + 4);
    cfg->n_modes = M;
    return 0;
}

int stochflow__transport_section_read(stochflow_model *m, const uint8_t *p, uint64_t len) {
    const size_t M = m->interp.n_modes;
    RETURN_ERROR_IF(len != 32 + 48 * (uint64_t)M, STOCHFLOW_E_FORMAT,
                    "checkpoint INTP section is inconsistent");
    m->tr.path_count = stochflow__le_get64(p + 16);
    m->tr.path_ema = stochflow__le_getf64(p + 24);
    p += 32;
    for (size_t k = 0; k < 2 * M; ++k, p += 8) m->interp.coef[k] = stochflow__le_getf64(p);
    for (size_t k = 0; k < 2 * M; ++k, p += 8) m->tr.adam_m[k] = stochflow__le_getf64(p);
    for (size_t k = 0; k < 2 * M; ++k, p += 8) m->tr.adam_v[k] = stochflow__le_getf64(p);
    for (size_t k = 0; k < 2 * M; ++k)
        RETURN_ERROR_IF(!isfinite(m->interp.coef[k]), STOCHFLOW_E_FORMAT,
                        "checkpoint interpolant coefficient %zu is not finite", k);
    return 0;
}
