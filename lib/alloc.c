/* alloc.c - every allocation of the library, with a failure-injection hook for tests. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ALIGN 64

static uint64_t alloc_count; /* allocations attempted since the last fail_at() */
static uint64_t fail_at;     /* 0 = off; else the 1-based allocation that fails */

void stochflow__alloc_fail_at(uint64_t n) {
    alloc_count = 0;
    fail_at = n;
}

uint64_t stochflow__alloc_count(void) { return alloc_count; }

void *stochflow__malloc(size_t size) {
    ++alloc_count;
    if (fail_at != 0 && alloc_count == fail_at) return NULL;
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
