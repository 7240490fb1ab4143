/* fileio.c - whole-file utilities shared by checkpoints (lib/checkpoint.c) and PNG
 * output (lib/png_io.c): CRC-32, atomic writes, reading a regular file into memory. */
#define _DEFAULT_SOURCE /* realpath, fchown */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* Create a new file beside target, named TARGET.tmp.XXXXXX, with mode 0666 so that the
 * umask (and a default ACL) apply as for fopen. Returns the descriptor, or -1 (errno). */
static int create_temp(char *tmp, size_t tlen) {
    static _Atomic unsigned long counter;
    const char *digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                 ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&ts;
    for (int attempt = 0; attempt < 100; ++attempt) {
        x += 0x9E3779B97F4A7C15ull * (1 + atomic_fetch_add(&counter, 1));
        uint64_t y = x;
        for (size_t i = tlen - 6; i < tlen; ++i, y /= 62) tmp[i] = digits[y % 62];
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Which file a write to path replaces (doc/reliability.md): a symbolic link is followed
 * to its target, which is written in place of the link's name; anything that exists and
 * is not a regular file (device, FIFO, socket, directory) is refused; a dangling link is
 * refused. *target: a heap copy of the path to replace (free with free()); *st: the
 * existing file's status when *exists. */
static int resolve_target(char **target, struct stat *st, int *exists, const char *path) {
    *target = NULL;
    *exists = 0;
    if (lstat(path, st) != 0) {
        RETURN_ERROR_IF(errno != ENOENT, STOCHFLOW_E_IO, "cannot write %s: %s", path,
                        strerror(errno));
        *target = strdup(path);
        RETURN_ERROR_IF(*target == NULL, STOCHFLOW_E_NOMEM, "out of memory");
        return 0;
    }
    if (S_ISLNK(st->st_mode)) {
        *target = realpath(path, NULL);
        RETURN_ERROR_IF(*target == NULL && errno == ENOMEM, STOCHFLOW_E_NOMEM, "out of memory");
        RETURN_ERROR_IF(*target == NULL, STOCHFLOW_E_IO,
                        "cannot write %s: the symbolic link cannot be followed (%s)", path,
                        strerror(errno));
        if (stat(*target, st) != 0) {
            int e = errno;
            free(*target);
            *target = NULL;
            return stochflow__error(STOCHFLOW_E_IO, "cannot write %s: %s", path, strerror(e));
        }
    } else {
        *target = strdup(path);
        RETURN_ERROR_IF(*target == NULL, STOCHFLOW_E_NOMEM, "out of memory");
    }
    if (!S_ISREG(st->st_mode)) {
        free(*target);
        *target = NULL;
        return stochflow__error(STOCHFLOW_E_IO,
                                "cannot write %s: it exists and is not a regular file (a "
                                "device, FIFO, socket or directory); refusing to replace it",
                                path);
    }
    *exists = 1;
    return 0;
}

int stochflow__atomic_write(const char *path, const void *data, size_t len) {
    RETURN_ERROR_IF(path == NULL || path[0] == '\0', STOCHFLOW_E_INVALID, "path is empty");
    char *target;
    struct stat st;
    int exists;
    FORWARD_IF_ERROR(resolve_target(&target, &st, &exists, path));
    size_t plen = strlen(target);
    char *tmp = stochflow__malloc(plen + 16);
    if (tmp == NULL) {
        free(target);
        return stochflow__error(STOCHFLOW_E_NOMEM, "out of memory");
    }
    memcpy(tmp, target, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = create_temp(tmp, plen + 11);
    if (fd < 0) {
        int e = errno;
        stochflow__free(tmp);
        free(target);
        return stochflow__error(STOCHFLOW_E_IO, "cannot create a temporary file next to %s: %s",
                                path, strerror(e));
    }
    int rc = 0, e = 0;
    if (exists) {
        /* the replacement keeps the file's owner (where permitted: root, or a group the
         * caller is in) and its permission bits; chown first, as it clears set-id bits */
        if (fchown(fd, st.st_uid, st.st_gid) != 0) (void)!fchown(fd, (uid_t)-1, st.st_gid);
        if (fchmod(fd, st.st_mode & 07777) != 0) {
            e = errno;
            rc = -1;
        }
    }
    if (rc == 0 && (write_all(fd, data, len) != 0 || fsync(fd) != 0)) {
        e = errno;
        rc = -1;
    }
    if (close(fd) != 0 && rc == 0) {
        e = errno;
        rc = -1;
    }
    if (rc == 0 && rename(tmp, target) != 0) {
        e = errno;
        rc = -1;
    }
    free(target);
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
