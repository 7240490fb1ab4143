/* transport.c - the state of optimizing the transport (lib/transport.h): pairing a
 * batch (x0 materialized, re-paired with x1 by a coupling from lib/coupling.c), the
 * running path-length estimate (EMA of -G over training steps), and the checkpoint
 * section "INTP". The interpolant and its coefficient gradient are lib/interpolant.c's,
 * the coefficients' ascent step lib/optimizer.c's. Conventions: doc/transport.md. */
#include <math.h>
#include <string.h>

#include "bytes.h" /* little-endian helpers of the INTP checkpoint section */
#include "coupling.h"
#include "model.h"
#include "transport.h"

#define PATH_EMA_DECAY 0.99
#define INTP_VERSION 1u

/* ---- pairing a batch -------------------------------------------------------------- */

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

int stochflow__transport_pair(stochflow__pairing *pr, stochflow__transport *tr,
                              const float *x1, const float *x0, size_t n, size_t d, size_t n_in,
                              int mode, double reg, uint64_t seed, uint32_t x0_stream,
                              uint64_t step) {
    size_t nd, b_x0, b_t, b_du, b_perm, b_cpl = 0, nin;
    RETURN_ERROR_IF(stochflow__mul_size(&nd, n, d) != 0 ||
                        stochflow__mul_size(&b_x0, nd, 2 * sizeof(float)) != 0 ||
                        stochflow__mul_size(&b_t, n, sizeof(double)) != 0 ||
                        stochflow__mul_size(&nin, n, n_in) != 0 ||
                        stochflow__mul_size(&b_du, nin, sizeof(float)) != 0 ||
                        stochflow__mul_size(&b_perm, n, sizeof(size_t)) != 0,
                    STOCHFLOW_E_INVALID, "batch of %zu rows is too large", n);
    if (mode != STOCHFLOW_COUPLING_INDEPENDENT) {
        FORWARD_IF_ERROR(stochflow__coupling_check_n(n, mode, "coupling"));
        RETURN_ERROR_IF(stochflow__coupling_bytes(&b_cpl, n) != 0, STOCHFLOW_E_INVALID,
                        "coupling: batch of %zu rows is too large", n);
    }
    size_t total = align64(b_x0) + align64(b_t) + align64(b_du) + align64(b_perm) + b_cpl;
    RETURN_ERROR_IF(total < b_x0, STOCHFLOW_E_INVALID, "batch of %zu rows is too large", n);
    if (total > tr->ws_bytes) {
        void *p = stochflow__malloc(total);
        RETURN_ERROR_IF(p == NULL, STOCHFLOW_E_NOMEM,
                        "cannot allocate a transport workspace of %zu bytes", total);
        stochflow__free(tr->ws);
        tr->ws = p;
        tr->ws_bytes = total;
    }
    char *w = tr->ws;
    float *xa = (float *)w, *xb = xa + nd;
    w += align64(b_x0);
    double *ts = (double *)w;
    w += align64(b_t);
    float *du = (float *)w;
    w += align64(b_du);
    size_t *perm = (size_t *)w;
    w += align64(b_perm);
    void *cw = w;

    /* x0: the caller's rows, or the draws the row-by-row assembly would make */
    if (x0) {
        memcpy(xa, x0, nd * sizeof *xa);
    } else {
        for (size_t i = 0; i < n; ++i) {
            stochflow__rng rx;
            stochflow__rng_init(&rx, seed, x0_stream, step, i);
            for (size_t k = 0; k < d; ++k) xa[i * d + k] = (float)stochflow__rng_normal(&rx);
        }
    }
    const float *out = xa;
    if (mode != STOCHFLOW_COUPLING_INDEPENDENT) {
        FORWARD_IF_ERROR(stochflow__coupling_pair(perm, xa, x1, n, d, mode, reg, seed, step, cw));
        for (size_t i = 0; i < n; ++i) memcpy(xb + i * d, xa + perm[i] * d, d * sizeof *xb);
        out = xb;
    }
    pr->x0 = out;
    pr->t = ts;
    pr->du = du;
    return 0;
}

/* ---- the path-length estimate ------------------------------------------------------ */

void stochflow__transport_record_loss(stochflow__transport *tr, double loss) {
    tr->last_loss = loss;
    tr->loss_valid = 1;
}

void stochflow__transport_step_done(stochflow__transport *tr) {
    tr->grad_valid = 0;
    if (tr->loss_valid && isfinite(tr->last_loss)) {
        tr->path_ema = PATH_EMA_DECAY * tr->path_ema + (1.0 - PATH_EMA_DECAY) * (-tr->last_loss);
        tr->path_count++;
    }
    tr->loss_valid = 0;
}

void stochflow__transport_free(stochflow__transport *tr) {
    stochflow__free(tr->ws);
    tr->ws = NULL;
    tr->ws_bytes = 0;
}

STOCHFLOW_API int stochflow_model_path_length(double *out, uint64_t *count,
                                              const stochflow_model *m) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "path_length: out is NULL");
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    STOCHFLOW__ENTER(m, "model");
    const stochflow__transport *tr = &m->tr;
    if (count) *count = tr->path_count;
    RETURN_ERROR_IF(tr->path_count == 0, STOCHFLOW_E_INVALID,
                    "path_length: no training step has been taken yet");
    *out = tr->path_ema / (1.0 - pow(PATH_EMA_DECAY, (double)tr->path_count));
    return 0;
}

/* ---- checkpoint section INTP --------------------------------------------------------
 * u32 version (1), u32 base, u32 M, u32 reserved, u64 path_count, f64 path_ema,
 * f64 coef[2M] (alpha then beta), f64 adam_m[2M], f64 adam_v[2M]; little-endian. */

size_t stochflow__transport_section_size(const stochflow__interp *ip) {
    return 32 + 3 * 2 * ip->n_modes * 8;
}

void stochflow__transport_section_write(uint8_t *p, const stochflow__transport *tr,
                                        const stochflow__interp *ip) {
    const size_t M = ip->n_modes;
    p = stochflow__le_put32(p, INTP_VERSION);
    p = stochflow__le_put32(p, (uint32_t)ip->base);
    p = stochflow__le_put32(p, (uint32_t)M);
    p = stochflow__le_put32(p, 0);
    p = stochflow__le_put64(p, tr->path_count);
    p = stochflow__le_putf64(p, tr->path_ema);
    for (size_t k = 0; k < 2 * M; ++k) p = stochflow__le_putf64(p, ip->coef[k]);
    for (size_t k = 0; k < 2 * M; ++k) p = stochflow__le_putf64(p, tr->adam_m[k]);
    for (size_t k = 0; k < 2 * M; ++k) p = stochflow__le_putf64(p, tr->adam_v[k]);
}

int stochflow__transport_section_conf(stochflow__interp *ip, const uint8_t *p, uint64_t len) {
    RETURN_ERROR_IF(len < 32, STOCHFLOW_E_FORMAT, "checkpoint INTP section too short");
    RETURN_ERROR_IF(stochflow__le_get32(p) != INTP_VERSION, STOCHFLOW_E_VERSION,
                    "checkpoint INTP section version %u is not supported", stochflow__le_get32(p));
    uint32_t M = stochflow__le_get32(p + 8);
    RETURN_ERROR_IF(M < 1 || M > STOCHFLOW__MAX_MODES || len != 32 + 48 * (uint64_t)M,
                    STOCHFLOW_E_FORMAT, "checkpoint INTP section is inconsistent");
    ip->base = (int)stochflow__le_get32(p + 4);
    ip->n_modes = M;
    return 0;
}

int stochflow__transport_section_read(stochflow__transport *tr, stochflow__interp *ip,
                                      const uint8_t *p, uint64_t len) {
    const size_t M = ip->n_modes;
    RETURN_ERROR_IF(len != 32 + 48 * (uint64_t)M, STOCHFLOW_E_FORMAT,
                    "checkpoint INTP section is inconsistent");
    tr->path_count = stochflow__le_get64(p + 16);
    tr->path_ema = stochflow__le_getf64(p + 24);
    p += 32;
    for (size_t k = 0; k < 2 * M; ++k, p += 8) ip->coef[k] = stochflow__le_getf64(p);
    for (size_t k = 0; k < 2 * M; ++k, p += 8) tr->adam_m[k] = stochflow__le_getf64(p);
    for (size_t k = 0; k < 2 * M; ++k, p += 8) tr->adam_v[k] = stochflow__le_getf64(p);
    for (size_t k = 0; k < 2 * M; ++k)
        RETURN_ERROR_IF(!isfinite(ip->coef[k]), STOCHFLOW_E_FORMAT,
                        "checkpoint interpolant coefficient %zu is not finite", k);
    return 0;
}
