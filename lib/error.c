/* error.c - status strings and the thread-local error message. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_message[512];

int stochflow__error(int status, const char *fmt, ...) {
    /* Format into a copy first: callers may pass the current message as an argument
     * ("...: %s", stochflow_last_error_message()), and vsnprintf must not write the
     * buffer it reads (found by fuzz/fuzz_checkpoint.c: the message came out empty). */
    char tmp[sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(last_message, tmp, sizeof last_message);
    return status;
}


STOCHFLOW_API const char *stochflow_last_error_message(void) { return last_message; }

int stochflow__null_handle(const char *fn, const char *what) {
    stochflow__error(STOCHFLOW_E_INVALID, "%s: %s is NULL", fn, what);
    return 0;
}

STOCHFLOW_API const char *stochflow_status_string(int status) {
    switch (status) {
    case STOCHFLOW_OK: return "ok";
    case STOCHFLOW_E_INVALID: return "invalid argument";
    case STOCHFLOW_E_NOMEM: return "out of memory";
    case STOCHFLOW_E_IO: return "input/output error";
    case STOCHFLOW_E_FORMAT: return "malformed or corrupted data";
    case STOCHFLOW_E_NONFINITE: return "non-finite value";
    case STOCHFLOW_E_STEP_UNDERFLOW: return "step size underflow";
    case STOCHFLOW_E_MAX_STEPS: return "maximum number of steps exceeded";
    case STOCHFLOW_E_CANCELLED: return "cancelled by callback";
    case STOCHFLOW_E_UNSUPPORTED: return "unsupported";
    case STOCHFLOW_E_VERSION: return "unsupported format version";
    case STOCHFLOW_E_CALLBACK: return "callback failed";
    default: return "unknown status";
    }
}

STOCHFLOW_API const char *stochflow_version_string(void) { return STOCHFLOW_VERSION_STRING; }

STOCHFLOW_API int stochflow_version_number(void) { return STOCHFLOW_VERSION_NUMBER; }

int stochflow__check_finite(const float *x, size_t n, const char *what) {
    for (size_t i = 0; i < n; ++i) {
        float v = x[i];
        if (!stochflow__finitef(v))
            return stochflow__error(STOCHFLOW_E_NONFINITE,
                                    "%s contains a non-finite value at index %zu (%g)", what, i,
                                    (double)v);
    }
    return 0;
}
