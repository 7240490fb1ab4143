/* busy.h - misuse detection for handles used from two threads at once (doc/threading.md).
 * A model or solver handle holds an atomic owner word: 0 when free, else the address of
 * a thread-local byte of the thread inside a public call on it. Every public call that
 * uses a handle takes it at entry with STOCHFLOW__ENTER(h) and gives it back when the
 * call returns, on every path (a cleanup attribute); a call from another thread while
 * it is held returns STOCHFLOW_E_BUSY at once and changes nothing. Nested calls on the
 * same thread (a public call calling another, a callback calling back into the library)
 * pass. This detects misuse, it is not a lock: nothing ever waits. */
#ifndef STOCHFLOW_BUSY_H
#define STOCHFLOW_BUSY_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"

typedef _Atomic(uintptr_t) stochflow__busy;

/* one per thread: its address names the thread */
extern _Thread_local char stochflow__busy_token;

typedef struct {
    stochflow__busy *flag; /* NULL: nothing taken (free handle, nested call, or failure) */
} stochflow__busy_guard;

/* Take *flag for this thread (g->flag set), or pass a nested call, or return BUSY. */
static inline int stochflow__enter(stochflow__busy_guard *g, const stochflow__busy *cflag,
                                   const char *what) {
    g->flag = NULL;
    if (cflag == NULL) return 0; /* NULL handle: the call reports it itself */
    stochflow__busy *flag = (stochflow__busy *)cflag; /* the handle itself is never const */
    const uintptr_t me = (uintptr_t)&stochflow__busy_token;
    uintptr_t expected = 0;
    if (atomic_compare_exchange_strong_explicit(flag, &expected, me, memory_order_acquire,
                                                memory_order_relaxed)) {
        g->flag = flag;
        return 0;
    }
    if (expected == me) return 0; /* nested call on the same thread */
    return stochflow__error(STOCHFLOW_E_BUSY, "%s handle in use by another thread", what);
}

static inline void stochflow__leave(stochflow__busy_guard *g) {
    if (g->flag) atomic_store_explicit(g->flag, 0, memory_order_release);
}

#if defined(__GNUC__)
/* At the entry of a public call using handle h (an identifier naming a model or a
 * solver; what: "model" or "solver" for the message); a NULL handle passes. */
#define STOCHFLOW__ENTER(h, what)                                                        \
    stochflow__busy_guard busy_guard_##h __attribute__((cleanup(stochflow__leave)));     \
    FORWARD_IF_ERROR(stochflow__enter(&busy_guard_##h, (h) ? &(h)->busy : NULL, what))
#else
/* without a cleanup attribute, detection is off (doc/threading.md) */
#define STOCHFLOW__ENTER(h, what) ((void)0)
#endif

#endif
