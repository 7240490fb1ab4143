/* parallel.h - how the library's own loops use SIMD and threads. Private.
 *
 * SIMD: hot loops are compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the
 * baseline, and picked at load time (GCC function multiversioning). All clones do the
 * same IEEE operations in the same order (C11 mode: no FMA contraction), so results are
 * bitwise identical on every x86-64 machine.
 *
 * Threads: work is split into contiguous ranges of rows (or of output columns for
 * weight gradients), never across a reduction: every value is computed by the same
 * operations in the same order whatever the thread count. */
#ifndef STOCHFLOW_PARALLEL_H
#define STOCHFLOW_PARALLEL_H

#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(STOCHFLOW_NO_CLONES)
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SIMD_CLONES
#endif

#define PAR_MIN 16384 /* elements below which one thread does it all */

/* [lo, hi) = part `part` of `parts` of [0, count), boundaries multiples of align. */
void stochflow__partition(size_t *lo, size_t *hi, size_t count, int part, int parts,
                          size_t align);

#ifdef _OPENMP
#include <omp.h>
/* Run body(lo, hi) over [0, count) on up to nthreads threads when work is large. */
#define PARALLEL_RANGES(count, work, nthreads, align, body)                                 \
    do {                                                                                    \
        const int par_nt_ = (nthreads);                                                     \
        if (par_nt_ > 1 && (work) >= PAR_MIN) {                                             \
            _Pragma("omp parallel num_threads(par_nt_)") {                                  \
                size_t lo_, hi_;                                                            \
                stochflow__partition(&lo_, &hi_, (count), omp_get_thread_num(),            \
                                     omp_get_num_threads(), (align));                       \
                body(lo_, hi_);                                                             \
            }                                                                               \
        } else {                                                                            \
            body((size_t)0, (size_t)(count));                                               \
        }                                                                                   \
    } while (0)
#else
#define PARALLEL_RANGES(count, work, nthreads, align, body) body((size_t)0, (size_t)(count))
#endif

#endif
