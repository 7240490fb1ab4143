/* io.c - data sources and outputs of the stochflow program: toy names, .npy and .csv
 * files read by the library's strict readers (lib/dataio.c), atomic .npy/.csv writers. */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    if (a < b) return 0;
    for (size_t i = 0; i < b; ++i)
        if (tolower((unsigned char)s[a - b + i]) != tolower((unsigned char)suffix[i])) return 0;
    return 1;
}

/* ---- .npy and .csv: the library's readers (lib/dataio.c, doc/data.md) ------------------ */

/* One reader call, its matrix copied into memory the program owns (free()), with the
 * CLI's bounds: at most CLI_MAX_ELEMENTS values and CLI_MAX_DIM columns. The library's
 * message starts with the path and names the row, column or header key. */
static int read_table(float **out, size_t *n_out, size_t *d_out, const char *path, int npy) {
    float *x = NULL;
    size_t n = 0, d = 0;
    *out = NULL;
    int rc = npy ? stochflow_data_read_npy(&x, &n, &d, path, 0, CLI_MAX_ELEMENTS)
                 : stochflow_data_read_csv(&x, &n, &d, path, 0, CLI_MAX_ELEMENTS);
    if (rc < 0) return cli_fail("%s", stochflow_last_error_message());
    if (d > CLI_MAX_DIM) {
        stochflow_data_free(x);
        return cli_fail("%s: wrong shape: %zu columns (at most %zu)", path, d, CLI_MAX_DIM);
    }
    float *copy = malloc(n * d * sizeof *copy);
    if (copy == NULL) {
        stochflow_data_free(x);
        return cli_fail("%s: out of memory for %zu x %zu values", path, n, d);
    }
    memcpy(copy, x, n * d * sizeof *copy);
    stochflow_data_free(x);
    *out = copy;
    *n_out = n;
    *d_out = d;
    return 0;
}

int npy_read(float **out, size_t *n, size_t *d, const char *path) {
    return read_table(out, n, d, path, 1);
}

int csv_read(float **out, size_t *n, size_t *d, const char *path) {
    return read_table(out, n, d, path, 0);
}

/* ---- sources ----------------------------------------------------------------------- */

int dataset_open(dataset *ds, const char *src) {
    memset(ds, 0, sizeof *ds);
    for (size_t i = 0; i < stochflow_toy_count(); ++i)
        if (strcmp(src, stochflow_toy_name(i)) == 0) {
            ds->toy = 1;
            ds->d = 2;
            snprintf(ds->name, sizeof ds->name, "%s", src);
            return 0;
        }
    snprintf(ds->name, sizeof ds->name, "%s", src);
    if (has_suffix(src, ".npy")) return npy_read(&ds->x, &ds->n, &ds->d, src);
    if (has_suffix(src, ".csv")) return csv_read(&ds->x, &ds->n, &ds->d, src);
    char names[256] = "";
    for (size_t i = 0; i < stochflow_toy_count(); ++i) {
        strncat(names, stochflow_toy_name(i), sizeof names - strlen(names) - 1);
        if (i + 1 < stochflow_toy_count()) strncat(names, ", ", sizeof names - strlen(names) - 1);
    }
    return cli_fail("unknown data source '%s': not a toy (%s) and not a .npy or .csv file",
                    src, names);
}

const char *source_file(const char *src) {
    if (src == NULL) return NULL;
    if (strncmp(src, "idx:", 4) == 0) return src + 4;
    if (has_suffix(src, ".npy") || has_suffix(src, ".csv")) return src;
    return NULL;
}

void dataset_free(dataset *ds) {
    free(ds->x);
    ds->x = NULL;
}

/* ---- writers ----------------------------------------------------------------------- */

/* Open a temporary file next to path; *tmp receives its malloc'ed name. */
static FILE *tmp_open(char **tmp, const char *path) {
    size_t len = strlen(path);
    *tmp = malloc(len + 16);
    if (*tmp == NULL) return NULL;
    memcpy(*tmp, path, len);
    memcpy(*tmp + len, ".tmp.XXXXXX", 12);
    int fd = mkstemp(*tmp);
    if (fd < 0) {
        free(*tmp);
        *tmp = NULL;
        return NULL;
    }
    (void)fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return f;
}

static int tmp_commit(FILE *f, char *tmp, const char *path, int ok) {
    if (ok && (fflush(f) != 0 || ferror(f))) ok = 0;
    if (fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    int e = errno;
    if (!ok) unlink(tmp);
    free(tmp);
    if (!ok) return cli_fail("cannot write '%s': %s", path, strerror(e));
    return 0;
}

int npy_write(const char *path, const float *x, size_t n, size_t cols) {
    char *tmp;
    FILE *f = tmp_open(&tmp, path);
    if (f == NULL) return cli_fail("cannot create '%s': %s", path, strerror(errno));
    char dict[128];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                      n, cols);
    size_t total = 10 + (size_t)dl + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)dl + pad + 1;
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xFF),
                       (uint8_t)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)dl, f) == (size_t)dl;
    for (size_t i = 0; ok && i < pad; ++i) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    /* float32 little-endian */
    const uint16_t one = 1;
    if (*(const uint8_t *)&one == 1) {
        ok = ok && fwrite(x, sizeof(float), n * cols, f) == n * cols;
    } else {
        for (size_t i = 0; ok && i < n * cols; ++i) {
            uint8_t b[4];
            memcpy(b, &x[i], 4);
            uint8_t r[4] = {b[3], b[2], b[1], b[0]};
            ok = fwrite(r, 1, 4, f) == 4;
        }
    }
    return tmp_commit(f, tmp, path, ok);
}

int csv_write(const char *path, const float *x, size_t n, size_t cols, const char *header) {
    char *tmp;
    FILE *f = tmp_open(&tmp, path);
    if (f == NULL) return cli_fail("cannot create '%s': %s", path, strerror(errno));
    int ok = 1;
    if (header != NULL) ok = fprintf(f, "%s\n", header) > 0;
    for (size_t i = 0; ok && i < n; ++i) {
        for (size_t j = 0; ok && j < cols; ++j)
            ok = fprintf(f, j + 1 < cols ? "%.9g," : "%.9g\n", (double)x[i * cols + j]) > 0;
    }
    return tmp_commit(f, tmp, path, ok);
}

int matrix_write(const char *path, const float *x, size_t n, size_t cols, const char *header) {
    if (has_suffix(path, ".npy")) return npy_write(path, x, n, cols);
    if (has_suffix(path, ".csv")) return csv_write(path, x, n, cols, header);
    return cli_fail("output '%s': the file name must end in .npy or .csv", path);
}

int make_dirs(const char *path) {
    char buf[4096];
    if (path[0] == '\0') return cli_fail("empty directory name");
    if (strlen(path) >= sizeof buf) return cli_fail("path too long: %s", path);
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; ++p) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return cli_fail("cannot create directory '%s': %s", buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_fail("'%s' is not a directory", path);
    return 0;
}
