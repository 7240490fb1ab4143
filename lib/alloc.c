/* alloc.c - every allocation of the library, with a failure-injection hook for tests. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ALIGN 64

/* Atomic (relaxed): handles used from several threads at once allocate concurrently, and
 * a plain counter would be a data race (ThreadSanitizer, tests/check_reliability.c). */
static _Atomic uint64_t alloc_count; /* allocations attempted since the last fail_at() */
static _Atomic uint64_t fail_at;     /* 0 = off; else the 1-based allocation that fails */

void stochflow__alloc_fail_at(uint64_t n) {
    atomic_store_explicit(&alloc_count, 0, memory_order_relaxed);
    atomic_store_explicit(&fail_at, n, memory_order_relaxed);
}

uint64_t stochflow__alloc_count(void) {
    return atomic_load_explicit(&alloc_count, memory_order_relaxed);
}

void *stochflow__malloc(size_t size) {
    uint64_t k = atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed) + 1;
    uint64_t f = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (f != 0 && k == f) return NULL;
    if (size == 0) size = 1;
    size_t rounded = (size + ALIGN - 1) / ALIGN * ALIGN;
    if (rounded < size) return NULL;
    return aligned_alloc(ALIGN, rounded);
}

void *stochflow__alloc_array(size_t n, size_t size) {
    size_t total;
    if (stochflow__mul_size(&total, n, size) != 0) return NULL;
    return stochflow__malloc(total);
}

void *stochflow__calloc(size_t n, size_t size) {
    size_t total;
    if (stochflow__mul_size(&total, n, size) != 0) return NULL;
    void *p = stochflow__malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void stochflow__free(void *p) { free(p); }
