/* bytes.h - little-endian byte helpers shared by the checkpoint (lib/checkpoint.c) and
 * its sections written elsewhere (lib/transport.c). One set for the whole library.
 *
 * Pointer level: stochflow__le_put32(p, v) stores v at p and returns p + 4;
 * stochflow__le_get32(p) loads. Cursor level: a writer that only counts when its
 * buffer is NULL (so one serializer both sizes and writes), and a reader whose caller
 * has checked the length first. */
#ifndef STOCHFLOW_BYTES_H
#define STOCHFLOW_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint8_t *stochflow__le_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}
static inline uint8_t *stochflow__le_put64(uint8_t *p, uint64_t v) {
    return stochflow__le_put32(stochflow__le_put32(p, (uint32_t)v), (uint32_t)(v >> 32));
}
static inline uint8_t *stochflow__le_putf64(uint8_t *p, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    return stochflow__le_put64(p, u);
}
static inline uint32_t stochflow__le_get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t stochflow__le_get64(const uint8_t *p) {
    return stochflow__le_get32(p) | (uint64_t)stochflow__le_get32(p + 4) << 32;
}
static inline double stochflow__le_getf64(const uint8_t *p) {
    uint64_t u = stochflow__le_get64(p);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* ---- cursors ---------------------------------------------------------------------- */

typedef struct {
    uint8_t *p; /* NULL: only count */
    size_t len;
} stochflow__writer;

static inline void stochflow__w_bytes(stochflow__writer *w, const void *src, size_t n) {
    if (w->p) memcpy(w->p + w->len, src, n);
    w->len += n;
}
static inline void stochflow__w_u32(stochflow__writer *w, uint32_t v) {
    if (w->p) stochflow__le_put32(w->p + w->len, v);
    w->len += 4;
}
static inline void stochflow__w_u64(stochflow__writer *w, uint64_t v) {
    if (w->p) stochflow__le_put64(w->p + w->len, v);
    w->len += 8;
}
static inline void stochflow__w_f64(stochflow__writer *w, double v) {
    if (w->p) stochflow__le_putf64(w->p + w->len, v);
    w->len += 8;
}
static inline void stochflow__w_f32s(stochflow__writer *w, const float *v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        stochflow__w_u32(w, u);
    }
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;
} stochflow__reader;

static inline uint32_t stochflow__r_u32(stochflow__reader *r) {
    uint32_t v = stochflow__le_get32(r->p + r->pos);
    r->pos += 4;
    return v;
}
static inline uint64_t stochflow__r_u64(stochflow__reader *r) {
    uint64_t v = stochflow__le_get64(r->p + r->pos);
    r->pos += 8;
    return v;
}
static inline double stochflow__r_f64(stochflow__reader *r) {
    double v = stochflow__le_getf64(r->p + r->pos);
    r->pos += 8;
    return v;
}
static inline void stochflow__r_f32s(stochflow__reader *r, float *out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        uint32_t u = stochflow__r_u32(r);
        memcpy(&out[i], &u, 4);
    }
}

#endif /* STOCHFLOW_BYTES_H */
