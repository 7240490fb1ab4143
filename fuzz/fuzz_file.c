/* fuzz_file.c - an in-memory regular file (memfd) that the path-based CLI readers can
 * open, rewritten for every fuzz input; and quiet stand-ins for the CLI's error
 * printers (tools/stochflow.c is not linked into the fuzz targets). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "fuzz.h"

const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("stochflow-fuzz", 0);
        if (fd < 0) return NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) return NULL;
    size_t done = 0;
    while (done < size) {
        ssize_t k = pwrite(fd, data + done, size - done, (off_t)done);
        if (k <= 0) return NULL;
        done += (size_t)k;
    }
    return path;
}

/* The messages are formatted (so format bugs still show under the sanitizers) but not
 * printed: the fuzzer would drown in them. */
int cli_fail(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return -1;
}

int cli_fail_lib(int status, const char *what) {
    return cli_fail("%s: %s (%s)", what, stochflow_last_error_message(),
                    stochflow_status_string(status));
}

double cli_now(void) { return 0.0; }
