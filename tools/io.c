/* io.c - data sources and outputs of the stochflow program: toy names, .npy and .csv
 * readers (defensive: hostile headers and sizes are refused before any allocation),
 * atomic .npy/.csv writers. */
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

static int check_finite(const float *x, size_t n, size_t d, const char *path) {
    for (size_t i = 0; i < n * d; ++i)
        if (!isfinite(x[i]))
            return cli_fail("%s: %s value at row %zu, column %zu (data must be finite)", path,
                            isnan(x[i]) ? "NaN" : "infinite", i / d + 1, i % d + 1);
    return 0;
}

/* ---- .npy -------------------------------------------------------------------------- */

/* Find the value text of 'key' in a Python dict literal header; NULL if absent. */
static const char *dict_value(const char *hdr, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (p == NULL) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        p = strstr(hdr, pat);
        if (p == NULL) return NULL;
    }
    p += strlen(pat);
    while (*p == ' ') ++p;
    if (*p != ':') return NULL;
    ++p;
    while (*p == ' ') ++p;
    return p;
}

static int bswap_needed(char order) {
    const uint16_t one = 1;
    int little = *(const uint8_t *)&one == 1;
    if (order == '<') return !little;
    if (order == '>') return little;
    return 0; /* '=' native, '|' not applicable */
}

int npy_read(float **out, size_t *n_out, size_t *d_out, const char *path) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return cli_fail("cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return cli_fail("'%s' is not a regular file", path);
    }
    uint8_t pre[12];
    char *hdr = NULL;
    float *x = NULL;
    void *raw = NULL;
    int rc = -1;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        cli_fail("%s: not a .npy file (bad magic)", path);
        goto done;
    }
    uint32_t hlen;
    size_t pre_len;
    if (pre[6] == 1) {
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
        pre_len = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            cli_fail("%s: truncated .npy header", path);
            goto done;
        }
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 |
               (uint32_t)pre[11] << 24;
        pre_len = 12;
    } else {
        cli_fail("%s: unsupported .npy version %u.%u", path, pre[6], pre[7]);
        goto done;
    }
    if (hlen == 0 || hlen > 65536 || (uint64_t)pre_len + hlen > (uint64_t)st.st_size) {
        cli_fail("%s: .npy header length %u is invalid", path, (unsigned)hlen);
        goto done;
    }
    hdr = malloc((size_t)hlen + 1);
    if (hdr == NULL || fread(hdr, 1, hlen, f) != hlen) {
        cli_fail("%s: truncated .npy header", path);
        goto done;
    }
    hdr[hlen] = '\0';
    if (strlen(hdr) != hlen) {
        cli_fail("%s: .npy header contains a NUL byte", path);
        goto done;
    }
    /* descr: '<f4', '<f8' (also '>' and '=' byte orders) */
    const char *v = dict_value(hdr, "descr");
    char q = v ? *v : 0;
    if (v == NULL || (q != '\'' && q != '"') || strlen(v) < 5 || v[4] != q ||
        strchr("<>=|", v[1]) == NULL || v[2] != 'f' || (v[3] != '4' && v[3] != '8')) {
        cli_fail("%s: unsupported .npy dtype (need float32 '<f4' or float64 '<f8')", path);
        goto done;
    }
    char order = v[1];
    size_t item = v[3] == '4' ? 4 : 8;
    v = dict_value(hdr, "fortran_order");
    if (v == NULL || (strncmp(v, "False", 5) != 0 && strncmp(v, "True", 4) != 0)) {
        cli_fail("%s: .npy header lacks fortran_order", path);
        goto done;
    }
    if (strncmp(v, "True", 4) == 0) {
        cli_fail("%s: Fortran-ordered .npy arrays are not supported (save with C order)", path);
        goto done;
    }
    v = dict_value(hdr, "shape");
    if (v == NULL || *v != '(') {
        cli_fail("%s: .npy header lacks a shape", path);
        goto done;
    }
    /* parse (a, b) strictly: up to 3 dims read to report the wrong shape clearly */
    unsigned long long dims[4];
    int nd = 0;
    const char *p = v + 1;
    for (;;) {
        while (*p == ' ') ++p;
        if (*p == ')') break;
        if (!isdigit((unsigned char)*p) || nd == 4) {
            cli_fail("%s: malformed .npy shape", path);
            goto done;
        }
        errno = 0;
        char *end;
        dims[nd] = strtoull(p, &end, 10);
        if (errno != 0 || dims[nd] > (1ull << 40)) {
            cli_fail("%s: .npy shape entry too large", path);
            goto done;
        }
        ++nd;
        p = end;
        while (*p == ' ') ++p;
        if (*p == ',') ++p;
        else if (*p != ')') {
            cli_fail("%s: malformed .npy shape", path);
            goto done;
        }
    }
    if (nd != 2) {
        cli_fail("%s: wrong shape: need a 2-D array n x d, got %d dimension%s", path, nd,
                 nd == 1 ? "" : "s");
        goto done;
    }
    size_t n = (size_t)dims[0], d = (size_t)dims[1];
    if (n == 0 || d == 0) {
        cli_fail("%s: wrong shape (%zu, %zu): empty data", path, n, d);
        goto done;
    }
    if (d > CLI_MAX_DIM || n > CLI_MAX_ELEMENTS / d) {
        cli_fail("%s: shape (%zu, %zu) too large", path, n, d);
        goto done;
    }
    size_t count = n * d, bytes = count * item;
    uint64_t data_off = (uint64_t)pre_len + hlen;
    if ((uint64_t)st.st_size - data_off < bytes) {
        cli_fail("%s: truncated: the header promises %zu bytes of data, the file has %llu",
                 path, bytes, (unsigned long long)((uint64_t)st.st_size - data_off));
        goto done;
    }
    raw = malloc(bytes);
    x = malloc(count * sizeof(float));
    if (raw == NULL || x == NULL) {
        cli_fail("%s: out of memory for %zu values", path, count);
        goto done;
    }
    if (fread(raw, 1, bytes, f) != bytes) {
        cli_fail("%s: read error", path);
        goto done;
    }
    int swap = bswap_needed(order);
    for (size_t i = 0; i < count; ++i) {
        uint8_t *b = (uint8_t *)raw + i * item;
        if (swap)
            for (size_t k = 0; k < item / 2; ++k) {
                uint8_t t = b[k];
                b[k] = b[item - 1 - k];
                b[item - 1 - k] = t;
            }
        if (item == 4) {
            memcpy(&x[i], b, 4);
        } else {
            double dv;
            memcpy(&dv, b, 8);
            x[i] = (float)dv; /* out of float range becomes inf: rejected below */
        }
    }
    if (check_finite(x, n, d, path) != 0) goto done;
    *out = x;
    x = NULL;
    *n_out = n;
    *d_out = d;
    rc = 0;
done:
    free(hdr);
    free(raw);
    free(x);
    fclose(f);
    return rc;
}

/* ---- .csv -------------------------------------------------------------------------- */

/* End of a line: NUL, LF, or CR followed by LF or NUL (a lone CR is not a separator). */
static int line_end(const char *p) {
    return *p == '\0' || *p == '\n' || (*p == '\r' && (p[1] == '\n' || p[1] == '\0'));
}

/* Parse a line into values; returns the field count, or -1 if a field is not a number.
 * Separators: comma, semicolon, tab or spaces. vals may be NULL (count only). */
static long parse_fields(char *line, float *vals, size_t cap) {
    long k = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') ++p;
        if (line_end(p)) break;
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p) return -1;
        if (vals != NULL && (size_t)k < cap) vals[k] = (float)v;
        if (errno == ERANGE && fabs(v) > 1.0) { /* overflow: keep inf, rejected later */
            if (vals != NULL && (size_t)k < cap) vals[k] = v > 0 ? INFINITY : -INFINITY;
        }
        ++k;
        p = end;
        while (*p == ' ' || *p == '\t') ++p;
        if (*p == ',' || *p == ';') {
            ++p;
            continue;
        }
        if (line_end(p)) break;
        if (p > line && (p[-1] == ' ' || p[-1] == '\t')) continue; /* space separated */
        return -1;
    }
    return k;
}

static int blank(const char *s) {
    for (; *s; ++s)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

int csv_read(float **out, size_t *n_out, size_t *d_out, const char *path) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return cli_fail("cannot open '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, n = 0, d = 0, rows_cap = 0, lineno = 0;
    float *x = NULL;
    int rc = -1, first = 1;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        ++lineno;
        if (strlen(line) != (size_t)len) {
            cli_fail("%s:%zu: binary data (NUL byte) in a .csv file", path, lineno);
            goto done;
        }
        if (blank(line) || line[0] == '#') continue;
        long k = parse_fields(line, NULL, 0);
        if (k <= 0) { /* k == 0: no field at all (e.g. a line of control characters) */
            if (first) { /* an optional header line */
                first = 0;
                continue;
            }
            cli_fail("%s:%zu: not a number", path, lineno);
            goto done;
        }
        first = 0;
        if (d == 0) {
            d = (size_t)k;
            if (d > CLI_MAX_DIM) {
                cli_fail("%s:%zu: %zu columns, too many", path, lineno, d);
                goto done;
            }
        } else if ((size_t)k != d) {
            cli_fail("%s:%zu: wrong shape: %ld columns, expected %zu", path, lineno, k, d);
            goto done;
        }
        if (n == rows_cap) {
            size_t nc = rows_cap ? 2 * rows_cap : 1024;
            if (nc > CLI_MAX_ELEMENTS / d) {
                cli_fail("%s: too many rows", path);
                goto done;
            }
            float *nx = realloc(x, nc * d * sizeof(float));
            if (nx == NULL) {
                cli_fail("%s: out of memory", path);
                goto done;
            }
            x = nx;
            rows_cap = nc;
        }
        parse_fields(line, x + n * d, d);
        for (size_t j = 0; j < d; ++j)
            if (!isfinite(x[n * d + j])) {
                cli_fail("%s:%zu: %s value in column %zu (data must be finite)", path, lineno,
                         isnan(x[n * d + j]) ? "NaN" : "infinite", j + 1);
                goto done;
            }
        ++n;
    }
    if (ferror(f)) {
        cli_fail("%s: read error", path);
        goto done;
    }
    if (n == 0) {
        cli_fail("%s: no data rows", path);
        goto done;
    }
    *out = x;
    x = NULL;
    *n_out = n;
    *d_out = d;
    rc = 0;
done:
    free(line);
    free(x);
    fclose(f);
    return rc;
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
