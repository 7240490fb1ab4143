/* rng.c - counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * A draw is a pure function of (seed, stream, step, row, block): results never depend
 * on the batch split or the thread count. Counter layout:
 *   ctr[0] = block (advances within one row), ctr[1] = row (low 32 bits),
 *   ctr[2] = step (low 32 bits), ctr[3] = stream | (row >> 32) << 8 | (step >> 32) << 20
 * key = seed (64 bits). */
#include <math.h>

#include "internal.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void stochflow__philox(uint32_t out[4], const uint32_t ctr[4], uint64_t key) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; ++r) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void stochflow__rng_init(stochflow__rng *r, uint64_t seed, uint32_t stream, uint64_t step,
                         uint64_t row) {
    r->key = seed;
    r->ctr[0] = 0;
    r->ctr[1] = (uint32_t)row;
    r->ctr[2] = (uint32_t)step;
    r->ctr[3] = (stream & 0xFFu) | (uint32_t)((row >> 32) & 0xFFFu) << 8 |
                (uint32_t)((step >> 32) & 0xFFFu) << 20;
    r->avail = 0;
}

uint32_t stochflow__rng_u32(stochflow__rng *r) {
    if (r->avail == 0) {
        stochflow__philox(r->buf, r->ctr, r->key);
        r->ctr[0]++;
        r->avail = 4;
    }
    return r->buf[4 - r->avail--];
}

double stochflow__rng_uniform(stochflow__rng *r) {
    uint64_t hi = stochflow__rng_u32(r) >> 5; /* 27 bits */
    uint64_t lo = stochflow__rng_u32(r) >> 6; /* 26 bits */
    return (double)(hi << 26 | lo) * (1.0 / 9007199254740992.0);
}

double stochflow__rng_normal(stochflow__rng *r) {
    /* Box-Muller; u1 in (0, 1] so the log is finite. One normal per call: simple and
     * the order of draws never depends on how many were asked for. */
    double u1 = 1.0 - stochflow__rng_uniform(r);
    double u2 = stochflow__rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Arguments of the public draws: out may be NULL only when n is 0; a user stream fits
 * the 32-bit step field. Each value i is its own row keyed by (seed, internal stream, user
 * stream in the step field, i), so all 2^32 user streams are distinct and value i never
 * depends on n. */
static int check_user_draw(const void *out, size_t n, uint64_t stream, const char *fn) {
    RETURN_ERROR_IF(out == NULL && n > 0, STOCHFLOW_E_INVALID, "%s: out is NULL", fn);
    RETURN_ERROR_IF(stream > 0xFFFFFFFFull - STOCHFLOW__STREAM_USER, STOCHFLOW_E_INVALID,
                    "%s: stream %llu too large", fn, (unsigned long long)stream);
    return 0;
}

STOCHFLOW_API int stochflow_random_normal(float *out, size_t n, uint64_t seed, uint64_t stream) {
    FORWARD_IF_ERROR(check_user_draw(out, n, stream, "random_normal"));
    stochflow__rng r;
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_USER, stream, i);
        out[i] = (float)stochflow__rng_normal(&r);
    }
    return 0;
}

/* Its own internal stream, so the normal and the uniform draw of one (seed, stream, i) are
 * independent; 53 random bits: a multiple of 2^-53 in [0, 1). */
STOCHFLOW_API int stochflow_random_uniform(double *out, size_t n, uint64_t seed,
                                           uint64_t stream) {
    FORWARD_IF_ERROR(check_user_draw(out, n, stream, "random_uniform"));
    stochflow__rng r;
    for (size_t i = 0; i < n; ++i) {
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_USER_UNIFORM, stream, i);
        out[i] = stochflow__rng_uniform(&r);
    }
    return 0;
}
