/* fileio.c - whole-file utilities shared by checkpoints (lib/checkpoint.c) and PNG
 * output (lib/png_io.c): CRC-32, atomic writes, reading a regular file into memory. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ---- CRC-32 (IEEE 802.3, reflected, as zlib's crc32) ------------------------------ */

uint32_t stochflow__crc32(const void *data, size_t n) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

/* ---- atomic write ----------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* fsync the directory holding path (best effort: makes a rename durable). */
static void sync_parent_dir(char *path) {
    char *slash = strrchr(path, '/');
    const char *dir = ".";
    if (slash) {
        *slash = '\0';
        dir = slash == path ? "/" : path;
    }
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

int stochflow__atomic_write(const char *path, const void *data, size_t len) {
    RETURN_ERROR_IF(path == NULL || path[0] == '\0', STOCHFLOW_E_INVALID, "path is empty");
    size_t plen = strlen(path);
    char *tmp = stochflow__malloc(plen + 16);
    RETURN_ERROR_IF(tmp == NULL, STOCHFLOW_E_NOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        stochflow__free(tmp);
        return stochflow__error(STOCHFLOW_E_IO, "cannot create a temporary file next to %s: %s",
                                path, strerror(e));
    }
    int rc = 0, e = 0;
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        e = errno;
        rc = -1;
    }
    if (close(fd) != 0 && rc == 0) {
        e = errno;
        rc = -1;
    }
    if (rc == 0) {
        /* mkstemp creates 0600; give the file the usual 0644 minus the umask. */
        mode_t mask = umask(0);
        umask(mask);
        chmod(tmp, 0666 & ~mask);
        if (rename(tmp, path) != 0) {
            e = errno;
            rc = -1;
        }
    }
    if (rc != 0) {
        unlink(tmp);
        stochflow__free(tmp);
        return stochflow__error(STOCHFLOW_E_IO, "cannot write %s: %s", path, strerror(e));
    }
    sync_parent_dir(tmp);
    stochflow__free(tmp);
    return 0;
}

/* ---- whole-file read -------------------------------------------------------------- */

int stochflow__read_file(uint8_t **data, size_t *len, const char *path, uint64_t max_size) {
    RETURN_ERROR_IF(path == NULL, STOCHFLOW_E_INVALID, "path is NULL");
    FILE *f = fopen(path, "rb");
    RETURN_ERROR_IF(f == NULL, STOCHFLOW_E_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max_size) {
        fclose(f);
        return stochflow__error(STOCHFLOW_E_IO, "%s is not a regular file of sane size", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = stochflow__malloc(n ? n : 1);
    if (buf == NULL) {
        fclose(f);
        return stochflow__error(STOCHFLOW_E_NOMEM, "cannot allocate %zu bytes to read %s", n,
                                path);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        stochflow__free(buf);
        return stochflow__error(STOCHFLOW_E_IO, "cannot read %s", path);
    }
    *data = buf;
    *len = n;
    return 0;
}
