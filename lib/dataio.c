/* dataio.c - strict public readers for .npy and .csv matrices (doc/data.md).
 *
 * Both readers parse an in-memory buffer; the path readers load the file first, never
 * more than the caller's byte bound (so a path to /dev/zero or a FIFO fails cleanly).
 * Nothing proportional to a size claimed by the input is allocated before the bytes
 * that back it have been seen. Every error names the place: .npy header problems name
 * the key, value errors name row and column; .csv errors name row (the 1-based line of
 * the file), column (1-based) and the offending token. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#define DATA_DEFAULT_MAX_BYTES ((size_t)1 << 30)  /* 1 GiB */
#define DATA_DEFAULT_MAX_VALUES ((size_t)1 << 28) /* 1 GiB of float32 */

STOCHFLOW_API void stochflow_data_free(float *x) { stochflow__free(x); }

/* Quote a token for a message: at most 24 bytes, non-printable bytes as \xNN. */
static const char *show(char *buf, size_t cap, const char *s, size_t len) {
    size_t o = 0;
    size_t lim = len > 24 ? 24 : len;
    for (size_t i = 0; i < lim && o + 5 < cap; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\'') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02X", c);
    }
    if (len > lim && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o < cap ? o : cap - 1] = '\0';
    return buf;
}

/* Common checks of the two parsers; clears the outputs. */
static int parse_prologue(float **x, size_t *n_out, size_t *d_out, const void *buf, size_t len,
                          size_t *max_values, const char *who) {
    RETURN_ERROR_IF(x == NULL || n_out == NULL || d_out == NULL, STOCHFLOW_E_INVALID,
                    "%s: NULL output", who);
    *x = NULL;
    *n_out = *d_out = 0;
    RETURN_ERROR_IF(buf == NULL && len > 0, STOCHFLOW_E_INVALID, "%s: buf is NULL", who);
    if (*max_values == 0) *max_values = DATA_DEFAULT_MAX_VALUES;
    return 0;
}

/* ================================================================================ */
/* .npy                                                                             */
/* ================================================================================ */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        ++c->p;
}

/* A Python string literal '...' or "..." without escapes; *s, *len its contents. */
static int parse_string(cursor *c, const char **s, size_t *len) {
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char q = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == '\n') return -1;
        ++c->p;
    }
    if (c->p >= c->end) return -1;
    *s = start;
    *len = (size_t)(c->p - start);
    ++c->p;
    return 0;
}

static int match_word(cursor *c, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return 0;
    const char *after = c->p + n;
    if (after < c->end && ((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
                           (*after >= '0' && *after <= '9') || *after == '_'))
        return 0;
    c->p = after;
    return 1;
}

/* A tuple of non-negative integers: "()", "(n,)", "(n, d)", "(n, d, ...)"; a trailing
 * comma is allowed after two or more; "(n)" is an int, not a tuple, and is refused.
 * At most 8 entries are kept; *nd receives the true count. */
static int parse_shape(cursor *c, uint64_t dims[8], int *nd) {
    if (c->p >= c->end || *c->p != '(') return -1;
    ++c->p;
    int k = 0, commas = 0;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') {
            ++c->p;
            break;
        }
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return -1;
        uint64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > ((uint64_t)1 << 53)) return -1;
            v = v * 10 + (uint64_t)(*c->p - '0');
            ++c->p;
        }
        if (c->p < c->end && *c->p == 'L') ++c->p; /* Python 2 long literal */
        if (k < 8) dims[k] = v;
        ++k;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            ++c->p;
            ++commas;
            continue;
        }
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') {
            ++c->p;
            break;
        }
        return -1;
    }
    if (k == 1 && commas == 0) return -1; /* "(3)" is the integer 3 */
    *nd = k;
    return 0;
}

typedef struct {
    int have_descr, have_fortran, have_shape;
    char order; /* '<' or '>' ('|' for one byte) */
    char kind;  /* 'f', 'i', 'u' */
    size_t item;
    int fortran;
    uint64_t dims[8];
    int nd;
} npy_header;

static int parse_descr(npy_header *h, const char *s, size_t len) {
    char bad[64];
    if (len < 3 || len > 4) goto fail;
    char o = s[0], k = s[1];
    if (o != '<' && o != '>' && o != '|') goto fail;
    if (k != 'f' && k != 'i' && k != 'u') goto fail;
    size_t item = 0;
    for (size_t i = 2; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9') goto fail;
        item = item * 10 + (size_t)(s[i] - '0');
    }
    if (k == 'f' && item != 4 && item != 8) goto fail;
    if (k != 'f' && item != 1 && item != 2 && item != 4 && item != 8) goto fail;
    if (o == '|' && item != 1) goto fail;
    h->order = item == 1 ? '|' : o;
    h->kind = k;
    h->item = item;
    return 0;
fail:
    return stochflow__error(STOCHFLOW_E_FORMAT,
                            "npy: unsupported dtype '%s' (need float32 '<f4', float64 '<f8', "
                            "or an integer type '<i1'...'<u8'; '>' byte order also read)",
                            show(bad, sizeof bad, s, len));
}

/* Parse the header text [p, end) as a Python literal dict with exactly the keys
 * 'descr', 'fortran_order' and 'shape' (any order, optional trailing comma), followed
 * only by white space (numpy pads with spaces and ends with '\n'). */
static int parse_header(npy_header *h, const char *p, const char *end) {
    cursor c = {p, end};
    char bad[64];
    memset(h, 0, sizeof *h);
    skip_ws(&c);
    RETURN_ERROR_IF(c.p >= c.end || *c.p != '{', STOCHFLOW_E_FORMAT,
                    "npy: the header is not a Python dict literal (no '{')");
    ++c.p;
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') {
            ++c.p;
            break;
        }
        const char *key;
        size_t klen;
        RETURN_ERROR_IF(parse_string(&c, &key, &klen) != 0, STOCHFLOW_E_FORMAT,
                        "npy: header dict: expected a quoted key at byte %zu of the header",
                        (size_t)(c.p - p));
        skip_ws(&c);
        RETURN_ERROR_IF(c.p >= c.end || *c.p != ':', STOCHFLOW_E_FORMAT,
                        "npy: header dict: expected ':' after key '%s'",
                        show(bad, sizeof bad, key, klen));
        ++c.p;
        skip_ws(&c);
        if (klen == 5 && memcmp(key, "descr", 5) == 0) {
            RETURN_ERROR_IF(h->have_descr, STOCHFLOW_E_FORMAT, "npy: key 'descr' appears twice");
            const char *s;
            size_t slen;
            RETURN_ERROR_IF(parse_string(&c, &s, &slen) != 0, STOCHFLOW_E_FORMAT,
                            "npy: 'descr' is not a plain string literal (structured dtypes "
                            "are not supported)");
            FORWARD_IF_ERROR(parse_descr(h, s, slen));
            h->have_descr = 1;
        } else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0) {
            RETURN_ERROR_IF(h->have_fortran, STOCHFLOW_E_FORMAT,
                            "npy: key 'fortran_order' appears twice");
            if (match_word(&c, "True")) h->fortran = 1;
            else if (match_word(&c, "False")) h->fortran = 0;
            else
                return stochflow__error(STOCHFLOW_E_FORMAT,
                                        "npy: 'fortran_order' must be True or False, not '%s'",
                                        show(bad, sizeof bad, c.p, (size_t)(c.end - c.p)));
            h->have_fortran = 1;
        } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
            RETURN_ERROR_IF(h->have_shape, STOCHFLOW_E_FORMAT, "npy: key 'shape' appears twice");
            RETURN_ERROR_IF(parse_shape(&c, h->dims, &h->nd) != 0, STOCHFLOW_E_FORMAT,
                            "npy: 'shape' is not a tuple of integers below 2^53");
            h->have_shape = 1;
        } else {
            return stochflow__error(STOCHFLOW_E_FORMAT,
                                    "npy: unexpected key '%s' in the header (only 'descr', "
                                    "'fortran_order' and 'shape' are allowed)",
                                    show(bad, sizeof bad, key, klen));
        }
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            ++c.p;
            continue;
        }
        skip_ws(&c);
        RETURN_ERROR_IF(c.p >= c.end || *c.p != '}', STOCHFLOW_E_FORMAT,
                        "npy: header dict: expected ',' or '}' at byte %zu of the header",
                        (size_t)(c.p - p));
        ++c.p;
        break;
    }
    skip_ws(&c);
    RETURN_ERROR_IF(c.p != c.end, STOCHFLOW_E_FORMAT,
                    "npy: unexpected text after the header dict: '%s'",
                    show(bad, sizeof bad, c.p, (size_t)(c.end - c.p)));
    RETURN_ERROR_IF(!h->have_descr, STOCHFLOW_E_FORMAT, "npy: the header lacks 'descr'");
    RETURN_ERROR_IF(!h->have_fortran, STOCHFLOW_E_FORMAT, "npy: the header lacks 'fortran_order'");
    RETURN_ERROR_IF(!h->have_shape, STOCHFLOW_E_FORMAT, "npy: the header lacks 'shape'");
    return 0;
}

static uint64_t load_uint(const unsigned char *b, size_t item, int big) {
    uint64_t v = 0;
    for (size_t k = 0; k < item; ++k) v |= (uint64_t)b[big ? item - 1 - k : k] << (8 * k);
    return v;
}

static double load_value(const unsigned char *b, const npy_header *h) {
    uint64_t u = load_uint(b, h->item, h->order == '>');
    if (h->kind == 'f') {
        if (h->item == 4) {
            uint32_t w = (uint32_t)u;
            float f;
            memcpy(&f, &w, 4);
            return (double)f;
        }
        double dv;
        memcpy(&dv, &u, 8);
        return dv;
    }
    if (h->kind == 'u') return (double)u;
    /* signed: sign-extend from item bytes */
    if (h->item < 8 && (u >> (8 * h->item - 1)) & 1) u |= ~(uint64_t)0 << (8 * h->item);
    return (double)(int64_t)u;
}

STOCHFLOW_API int stochflow_data_parse_npy(float **x, size_t *n_out, size_t *d_out,
                                           const void *buf, size_t len, size_t max_values) {
    FORWARD_IF_ERROR(parse_prologue(x, n_out, d_out, buf, len, &max_values, "data_parse_npy"));
    const unsigned char *b = buf;
    RETURN_ERROR_IF(len < 10 || memcmp(b, "\x93NUMPY", 6) != 0, STOCHFLOW_E_FORMAT,
                    "npy: not a .npy file (bad magic)");
    size_t pre, hlen;
    if (b[6] == 1 && b[7] == 0) {
        pre = 10;
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
    } else if ((b[6] == 2 || b[6] == 3) && b[7] == 0) {
        RETURN_ERROR_IF(len < 12, STOCHFLOW_E_FORMAT, "npy: truncated preamble");
        pre = 12;
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    } else {
        return stochflow__error(STOCHFLOW_E_FORMAT, "npy: unsupported format version %u.%u",
                                b[6], b[7]);
    }
    RETURN_ERROR_IF(hlen > len - pre, STOCHFLOW_E_FORMAT,
                    "npy: the header length %zu runs past the end of the data (%zu bytes)",
                    hlen, len);
    for (size_t i = 0; i < hlen; ++i) {
        unsigned char ch = b[pre + i];
        RETURN_ERROR_IF(ch == 0 || ch >= 0x80, STOCHFLOW_E_FORMAT,
                        "npy: byte 0x%02X at byte %zu of the header (the header must be "
                        "ASCII text)", ch, i);
    }
    npy_header h;
    FORWARD_IF_ERROR(parse_header(&h, (const char *)b + pre, (const char *)b + pre + hlen));
    RETURN_ERROR_IF(h.nd == 0, STOCHFLOW_E_FORMAT,
                    "npy: shape () is a scalar; need a 2-D array (n, d) or a 1-D array (n,)");
    RETURN_ERROR_IF(h.nd > 2, STOCHFLOW_E_FORMAT,
                    "npy: %d-dimensional array; need a 2-D array (n, d) or a 1-D array (n,)",
                    h.nd);
    uint64_t n = h.dims[0], d = h.nd == 2 ? h.dims[1] : 1;
    RETURN_ERROR_IF(n == 0 || d == 0, STOCHFLOW_E_FORMAT,
                    "npy: shape (%llu, %llu) holds no values", (unsigned long long)n,
                    (unsigned long long)d);
    RETURN_ERROR_IF(n > max_values / d, STOCHFLOW_E_FORMAT,
                    "npy: shape (%llu, %llu) exceeds the limit of %zu values",
                    (unsigned long long)n, (unsigned long long)d, max_values);
    size_t count = (size_t)(n * d), data_len = len - pre - hlen, need;
    RETURN_ERROR_IF(stochflow__mul_size(&need, count, h.item) != 0, STOCHFLOW_E_FORMAT,
                    "npy: shape too large");
    RETURN_ERROR_IF(data_len < need, STOCHFLOW_E_FORMAT,
                    "npy: truncated: shape (%llu, %llu) needs %zu bytes of data, the file "
                    "holds %zu", (unsigned long long)n, (unsigned long long)d, need, data_len);
    RETURN_ERROR_IF(data_len > need, STOCHFLOW_E_FORMAT,
                    "npy: %zu bytes of data beyond shape (%llu, %llu) (%zu bytes): the "
                    "header's shape is smaller than the data", data_len - need,
                    (unsigned long long)n, (unsigned long long)d, need);
    float *out = stochflow__alloc_array(count, sizeof(float));
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_NOMEM, "npy: out of memory for %zu values", count);
    const unsigned char *data = b + pre + hlen;
    for (size_t k = 0; k < count; ++k) {
        size_t row = h.fortran ? k % (size_t)n : k / (size_t)d;
        size_t col = h.fortran ? k / (size_t)n : k % (size_t)d;
        double v = load_value(data + k * h.item, &h);
        if (!isfinite(v) || fabs(v) > FLT_MAX) {
            stochflow__free(out);
            return stochflow__error(STOCHFLOW_E_NONFINITE,
                                    "npy: row %zu, column %zu: %s (data must be finite float32)",
                                    row + 1, col + 1,
                                    isnan(v) ? "NaN" : isinf(v) ? "infinite value"
                                                                : "value beyond float32 range");
        }
        out[row * (size_t)d + col] = (float)v;
    }
    *x = out;
    *n_out = (size_t)n;
    *d_out = (size_t)d;
    return 0;
}

/* ================================================================================ */
/* .csv                                                                             */
/* ================================================================================ */

typedef struct {
    const char *s; /* cell text without surrounding blanks (and quotes, if quoted) */
    size_t len;
    int quoted;
} cell;

typedef struct {
    const char *p, *end;
    size_t line; /* 1-based line of the current row */
    char sep;
    locale_t cloc;
} csv_state;

/* The next physical line [*ls, *le); advances past its terminator (LF, CRLF or CR).
 * Returns 0 at the end of input. */
static int next_line(csv_state *st, const char **ls, const char **le) {
    if (st->p >= st->end) return 0;
    const char *q = st->p;
    while (q < st->end && *q != '\n' && *q != '\r') ++q;
    *ls = st->p;
    *le = q;
    if (q < st->end) { /* the terminator: LF, CR, or CR LF */
        if (*q++ == '\r' && q < st->end && *q == '\n') ++q;
    }
    st->p = q;
    ++st->line;
    return 1;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

/* Split a line into cells. A cell may be quoted ("..."; "" is a literal quote; a quoted
 * cell cannot span lines). Returns the cell count, or a negative status. At most cap
 * cells are stored (all are counted). */
static long split_cells(csv_state *st, const char *ls, const char *le, cell *cells, size_t cap) {
    long k = 0;
    const char *p = ls;
    char bad[64];
    for (;;) {
        while (p < le && is_blank(*p) && *p != st->sep) ++p;
        cell c = {p, 0, 0};
        if (p < le && *p == '"') {
            const char *q = ++p;
            for (;;) {
                if (q >= le)
                    return stochflow__error(STOCHFLOW_E_FORMAT,
                                            "csv: row %zu, column %ld: unterminated quoted "
                                            "cell '%s'", st->line, k + 1,
                                            show(bad, sizeof bad, c.s, (size_t)(le - c.s)));
                if (*q == '"') {
                    if (q + 1 < le && q[1] == '"') {
                        q += 2;
                        continue;
                    }
                    break;
                }
                ++q;
            }
            c.s = p;
            c.len = (size_t)(q - p);
            c.quoted = 1;
            p = q + 1;
            while (p < le && is_blank(*p) && *p != st->sep) ++p;
            if (p < le && *p != st->sep)
                return stochflow__error(STOCHFLOW_E_FORMAT,
                                        "csv: row %zu, column %ld: text after a quoted cell: "
                                        "'%s'", st->line, k + 1,
                                        show(bad, sizeof bad, p, (size_t)(le - p)));
        } else {
            const char *q = p;
            while (q < le && *q != st->sep) ++q;
            const char *e = q;
            while (e > p && is_blank(e[-1]) && e[-1] != st->sep) --e;
            c.len = (size_t)(e - p);
            p = q;
        }
        if ((size_t)k < cap) cells[k] = c;
        ++k;
        if (p < le && *p == st->sep) {
            ++p;
            continue;
        }
        break;
    }
    return k;
}

/* Strict decimal number: [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)? */
static int numeric_syntax(const char *s, size_t len) {
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) ++i;
    while (i < len && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
    if (i < len && s[i] == '.') {
        ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
    }
    if (digits == 0) return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < len && (s[i] == '+' || s[i] == '-')) ++i;
        size_t ed = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') ++i, ++ed;
        if (ed == 0) return 0;
    }
    return i == len;
}

/* digits ',' digits: a number written with a decimal comma. */
static int decimal_comma(const char *s, size_t len) {
    size_t i = 0, a = 0, b = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) ++i;
    while (i < len && s[i] >= '0' && s[i] <= '9') ++i, ++a;
    if (i >= len || s[i] != ',') return 0;
    ++i;
    while (i < len && s[i] >= '0' && s[i] <= '9') ++i, ++b;
    return a > 0 && b > 0 && i == len;
}

/* Convert a data cell to float or fail naming row, column and token. */
static int cell_value(float *out, const csv_state *st, const cell *c, size_t col) {
    char bad[64];
    const char *tok = show(bad, sizeof bad, c->s, c->len);
    RETURN_ERROR_IF(c->quoted, STOCHFLOW_E_FORMAT,
                    "csv: row %zu, column %zu: quoted cell \"%s\" (numbers must not be quoted)",
                    st->line, col, tok);
    RETURN_ERROR_IF(c->len == 0, STOCHFLOW_E_FORMAT, "csv: row %zu, column %zu: empty cell",
                    st->line, col);
    if (!numeric_syntax(c->s, c->len)) {
        RETURN_ERROR_IF(decimal_comma(c->s, c->len), STOCHFLOW_E_FORMAT,
                        "csv: row %zu, column %zu: '%s' has a decimal comma (write a decimal "
                        "point)", st->line, col, tok);
        return stochflow__error(STOCHFLOW_E_FORMAT,
                                "csv: row %zu, column %zu: '%s' is not a number", st->line, col,
                                tok);
    }
    char num[128];
    RETURN_ERROR_IF(c->len >= sizeof num, STOCHFLOW_E_FORMAT,
                    "csv: row %zu, column %zu: number '%s' longer than %zu characters",
                    st->line, col, tok, sizeof num - 1);
    memcpy(num, c->s, c->len);
    num[c->len] = '\0';
    double v;
    if (st->cloc != (locale_t)0) {
        locale_t old = uselocale(st->cloc);
        v = strtod(num, NULL);
        uselocale(old);
    } else {
        v = strtod(num, NULL);
    }
    RETURN_ERROR_IF(!isfinite(v) || fabs(v) > FLT_MAX, STOCHFLOW_E_FORMAT,
                    "csv: row %zu, column %zu: '%s' is beyond the float32 range", st->line, col,
                    tok);
    *out = (float)v;
    return 0;
}

/* One pass over the table. With x == NULL: validate and count (rows, cols, header);
 * else fill x (n x d, sized by the first pass). */
static int csv_pass(csv_state *st, const char *buf, size_t len, float *x, size_t *n_out,
                    size_t *d_out, size_t max_values, cell *cells, size_t cap) {
    char bad[64];
    st->p = buf;
    st->end = buf + len;
    st->line = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) st->p += 3; /* UTF-8 BOM */
    size_t n = 0, d = 0, first_line = 0;
    int seen_first = 0;
    const char *ls, *le;
    while (next_line(st, &ls, &le)) {
        const char *q = ls;
        for (const char *z = ls; z < le; ++z)
            RETURN_ERROR_IF(*z == '\0', STOCHFLOW_E_FORMAT,
                            "csv: row %zu: NUL byte at character %zu (binary data in a .csv)",
                            st->line, (size_t)(z - ls) + 1);
        while (q < le && is_blank(*q)) ++q;
        if (q == le || *q == '#') continue; /* blank line or comment */
        if (st->sep == 0) { /* separator: ';' if the first row has one, else tab, else ',' */
            st->sep = ',';
            if (memchr(ls, ';', (size_t)(le - ls))) st->sep = ';';
            else if (memchr(ls, '\t', (size_t)(le - ls))) st->sep = '\t';
        }
        long k = split_cells(st, ls, le, cells, cap);
        if (k < 0) return (int)k;
        if (!seen_first) {
            seen_first = 1;
            first_line = st->line;
            size_t numeric = 0, textual = 0, first_text = 0;
            for (long j = 0; j < k && (size_t)j < cap; ++j) {
                int num = !cells[j].quoted && numeric_syntax(cells[j].s, cells[j].len);
                if (num) ++numeric;
                else if (textual++ == 0) first_text = (size_t)j;
            }
            RETURN_ERROR_IF((size_t)k > cap, STOCHFLOW_E_FORMAT,
                            "csv: row %zu: %ld columns, more than the limit of %zu", st->line,
                            k, cap);
            if (numeric == 0) { /* header: every cell non-numeric */
                d = (size_t)k;
                continue;
            }
            if (textual > 0) {
                const cell *c = &cells[first_text];
                return stochflow__error(STOCHFLOW_E_FORMAT,
                                        "csv: row %zu, column %zu: '%s' is not a number (the "
                                        "first row mixes numbers and text: neither a header "
                                        "nor data)", st->line, first_text + 1,
                                        show(bad, sizeof bad, c->s, c->len));
            }
        }
        if (d == 0) d = (size_t)k;
        RETURN_ERROR_IF((size_t)k != d, STOCHFLOW_E_FORMAT,
                        "csv: row %zu has %ld cells, expected %zu (as in row %zu)", st->line, k,
                        d, first_line);
        RETURN_ERROR_IF(n + 1 > max_values / d, STOCHFLOW_E_FORMAT,
                        "csv: row %zu: more than the limit of %zu values", st->line, max_values);
        for (size_t j = 0; j < d; ++j) {
            float v = 0;
            FORWARD_IF_ERROR(cell_value(&v, st, &cells[j], j + 1));
            if (x != NULL) x[n * d + j] = v;
        }
        ++n;
    }
    RETURN_ERROR_IF(n == 0, STOCHFLOW_E_FORMAT, "csv: no data rows");
    *n_out = n;
    *d_out = d;
    return 0;
}

#define CSV_MAX_COLS 65536

STOCHFLOW_API int stochflow_data_parse_csv(float **x, size_t *n_out, size_t *d_out,
                                           const void *buf, size_t len, size_t max_values) {
    FORWARD_IF_ERROR(parse_prologue(x, n_out, d_out, buf, len, &max_values, "data_parse_csv"));
    /* cells of one row: bounded by the line length and CSV_MAX_COLS */
    size_t cap = len / 2 + 2 < CSV_MAX_COLS ? len / 2 + 2 : CSV_MAX_COLS;
    cell *cells = stochflow__alloc_array(cap, sizeof(cell));
    RETURN_ERROR_IF(cells == NULL, STOCHFLOW_E_NOMEM, "csv: out of memory");
    csv_state st;
    memset(&st, 0, sizeof st);
    st.cloc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    size_t n = 0, d = 0;
    int rc = csv_pass(&st, buf, len, NULL, &n, &d, max_values, cells, cap);
    float *out = NULL;
    if (rc == 0) {
        out = stochflow__alloc_array(n * d, sizeof(float));
        if (out == NULL) rc = stochflow__error(STOCHFLOW_E_NOMEM, "csv: out of memory");
    }
    if (rc == 0) {
        size_t n2, d2;
        st.sep = 0;
        rc = csv_pass(&st, buf, len, out, &n2, &d2, max_values, cells, cap);
    }
    if (st.cloc != (locale_t)0) freelocale(st.cloc);
    stochflow__free(cells);
    if (rc != 0) {
        stochflow__free(out);
        return rc;
    }
    *x = out;
    *n_out = n;
    *d_out = d;
    return 0;
}

/* ================================================================================ */
/* Files                                                                            */
/* ================================================================================ */

/* Read at most max_bytes bytes of path into a new buffer (the file must end within the
 * bound). Works on regular files, pipes and devices alike. */
static int read_bounded(unsigned char **out, size_t *len, const char *path, size_t max_bytes) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    RETURN_ERROR_IF(f == NULL, STOCHFLOW_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return stochflow__error(STOCHFLOW_E_IO, "'%s' is a directory", path);
    }
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > max_bytes) {
        fclose(f);
        return stochflow__error(STOCHFLOW_E_FORMAT,
                                "'%s' has %llu bytes, more than the limit of %zu", path,
                                (unsigned long long)sb.st_size, max_bytes);
    }
    size_t cap = S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : 65536;
    if (cap > max_bytes + 1) cap = max_bytes + 1;
    unsigned char *b = stochflow__malloc(cap);
    size_t got = 0;
    int rc = 0;
    if (b == NULL) rc = stochflow__error(STOCHFLOW_E_NOMEM, "'%s': out of memory", path);
    while (rc == 0) {
        if (got == cap) {
            if (cap > max_bytes) {
                rc = stochflow__error(STOCHFLOW_E_FORMAT,
                                      "'%s' holds more than the limit of %zu bytes", path,
                                      max_bytes);
                break;
            }
            size_t nc = cap > (max_bytes + 1) / 2 ? max_bytes + 1 : 2 * cap;
            unsigned char *nb = stochflow__malloc(nc);
            if (nb == NULL) {
                rc = stochflow__error(STOCHFLOW_E_NOMEM, "'%s': out of memory", path);
                break;
            }
            memcpy(nb, b, got);
            stochflow__free(b);
            b = nb;
            cap = nc;
        }
        size_t r = fread(b + got, 1, cap - got, f);
        got += r;
        if (r == 0) {
            if (ferror(f)) rc = stochflow__error(STOCHFLOW_E_IO, "cannot read '%s'", path);
            break;
        }
    }
    if (rc == 0 && got > max_bytes)
        rc = stochflow__error(STOCHFLOW_E_FORMAT, "'%s' holds more than the limit of %zu bytes",
                              path, max_bytes);
    fclose(f);
    if (rc != 0) {
        stochflow__free(b);
        return rc;
    }
    *out = b;
    *len = got;
    return 0;
}

typedef int (*parse_fn)(float **, size_t *, size_t *, const void *, size_t, size_t);

static int read_with(parse_fn parse, float **x, size_t *n, size_t *d, const char *path,
                     size_t max_bytes, size_t max_values) {
    RETURN_ERROR_IF(x == NULL || n == NULL || d == NULL || path == NULL, STOCHFLOW_E_INVALID,
                    "data_read: NULL argument");
    *x = NULL;
    *n = *d = 0;
    if (max_bytes == 0) max_bytes = DATA_DEFAULT_MAX_BYTES;
    unsigned char *b;
    size_t len;
    FORWARD_IF_ERROR(read_bounded(&b, &len, path, max_bytes));
    int rc = parse(x, n, d, b, len, max_values);
    stochflow__free(b);
    if (rc != 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", stochflow_last_error_message());
        return stochflow__error(rc, "%s: %s", path, msg);
    }
    return 0;
}

STOCHFLOW_API int stochflow_data_read_npy(float **x, size_t *n, size_t *d, const char *path,
                                          size_t max_bytes, size_t max_values) {
    return read_with(stochflow_data_parse_npy, x, n, d, path, max_bytes, max_values);
}

STOCHFLOW_API int stochflow_data_read_csv(float **x, size_t *n, size_t *d, const char *path,
                                          size_t max_bytes, size_t max_values) {
    return read_with(stochflow_data_parse_csv, x, n, d, path, max_bytes, max_values);
}
