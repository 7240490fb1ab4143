/* fastmath.h - the library's own exp for x <= 0, shared by the activations
 * (lib/layers.c) and the attention softmax (lib/conv.c). Private.
 *
 * Pure IEEE operations in a fixed order, so results are bitwise identical on every
 * x86-64 machine and in both SIMD clones (unlike libm's expf, whose FMA variant is
 * picked at load time). */
#ifndef STOCHFLOW_FASTMATH_H
#define STOCHFLOW_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* Constants shared by the scalar and the 8-lane exp: Cody-Waite split of ln 2 and
 * the Cephes polynomial, so the two cannot drift apart. */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* Branch-free exp for x <= 0 (Cody-Waite reduction, Cephes polynomial, max rel. error
 * ~2 ulp; clamped below at -87). Only a lower clamp: an upper one makes GCC emit a
 * blend and a division that cost ~3x on Zen 4 (bench/profile.md). */
static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    /* n = round(x / ln 2) as trunc(x/ln2 - 0.5 + 128) - 128, exact for x in [-87, 0].
     * From a NaN-free copy: converting NaN to int is undefined (UBSan, fuzz/ replay of a
     * checkpoint with NaN weights); the NaN itself still propagates through r. */
    float xi = x >= -87.0f ? x : -87.0f;
    int32_t ni = (int32_t)(xi * EXP_LOG2E + 128.5f) - 128;
    float fn = (float)ni;
    float r = x - fn * EXP_LN2_HI;
    r = r - fn * EXP_LN2_LO;
    float p = EXP_P0;
    p = p * r + EXP_P1;
    p = p * r + EXP_P2;
    p = p * r + EXP_P3;
    p = p * r + EXP_P4;
    p = p * r + EXP_P5;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)(ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Eight lanes of exp_nonpos with GNU vector types: lane for lane the same IEEE
 * operations in the same order as the scalar function (selects as bit masks), so the
 * results are bitwise the scalar's. GCC's own vectorization of the scalar loop splits
 * it into paths (clamped, NaN, ordinary) and evaluates the polynomial twice; this form
 * evaluates it once. Memory in and out (no vector arguments: their ABI differs between
 * the SIMD clones). Eight lanes, one 256-bit register: with sixteen (512 bits) the AVX2
 * clone lowered the float-to-int conversion to scalar instructions, which made SiLU 16%
 * of a training step on Zen 3 (6% with eight lanes; bench/profile.md). Zen 4 splits
 * 512-bit operations into two 256-bit halves, so eight lanes should cost it what
 * sixteen did (not measured). */
#ifdef __GNUC__
#define STOCHFLOW_HAVE_V8 1
typedef float stochflow__v8sf __attribute__((vector_size(32)));
typedef int32_t stochflow__v8si __attribute__((vector_size(32)));

/* m ? a : b, lane by lane, for a mask m of all-ones / all-zeros lanes. */
#define STOCHFLOW__V8_SELECT(m, a, b)                                                       \
    ((stochflow__v8sf)(((stochflow__v8si)(a) & (m)) | ((stochflow__v8si)(b) & ~(m))))

static inline void exp_nonpos8(float *out, const float *in) {
    stochflow__v8sf x, lo = {0};
    memcpy(&x, in, sizeof x);
    lo += -87.0f;
    x = STOCHFLOW__V8_SELECT(x < -87.0f, lo, x);
    stochflow__v8sf xi = STOCHFLOW__V8_SELECT(x >= -87.0f, x, lo);
    stochflow__v8si ni = __builtin_convertvector(xi * EXP_LOG2E + 128.5f,
                                                 stochflow__v8si) - 128;
    stochflow__v8sf fn = __builtin_convertvector(ni, stochflow__v8sf);
    stochflow__v8sf r = x - fn * EXP_LN2_HI;
    r = r - fn * EXP_LN2_LO;
    stochflow__v8sf p = r * EXP_P0; /* p = c0; p = p * r + c1 ... */
    p = p + EXP_P1;
    p = p * r + EXP_P2;
    p = p * r + EXP_P3;
    p = p * r + EXP_P4;
    p = p * r + EXP_P5;
    p = p * r * r + r + 1.0f;
    stochflow__v8si bits = (ni + 127) << 23;
    p = p * (stochflow__v8sf)bits;
    memcpy(out, &p, sizeof p);
}
#endif

#endif
