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

/* Branch-free exp for x <= 0 (Cody-Waite reduction, Cephes polynomial, max rel. error
 * ~2 ulp; clamped below at -87). Only a lower clamp: an upper one makes GCC emit a
 * blend and a division that cost ~3x on Zen 4 (bench/profile.md). */
static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    /* n = round(x / ln 2) as trunc(x/ln2 - 0.5 + 128) - 128, exact for x in [-87, 0].
     * From a NaN-free copy: converting NaN to int is undefined (UBSan, fuzz/ replay of a
     * checkpoint with NaN weights); the NaN itself still propagates through r. */
    float xi = x >= -87.0f ? x : -87.0f;
    int32_t ni = (int32_t)(xi * 1.44269504088896341f + 128.5f) - 128;
    float fn = (float)ni;
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)(ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
