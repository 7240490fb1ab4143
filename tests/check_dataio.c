/* check_dataio.c - the public .npy and .csv readers: values, strictness, messages that
 * name row, column and token, size bounds, the header-dictionary parser. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static float *X;
static size_t N, D;

static int csv(const char *text) {
    stochflow_data_free(X);
    X = NULL;
    return stochflow_data_parse_csv(&X, &N, &D, text, strlen(text), 0);
}

/* The call fails with FORMAT and the message contains every given fragment. */
static void csv_fails(const char *text, const char *a, const char *b, const char *c) {
    int rc = csv(text);
    ck_assert_msg(rc == STOCHFLOW_E_FORMAT, "accepted or wrong status %d: %s", rc, text);
    ck_assert_ptr_null(X);
    const char *msg = stochflow_last_error_message();
    const char *frag[3] = {a, b, c};
    for (int i = 0; i < 3; ++i)
        if (frag[i]) ck_assert_msg(strstr(msg, frag[i]) != NULL, "'%s' lacks '%s'", msg, frag[i]);
}

START_TEST(csv_values) {
    ck_assert_int_eq(csv("1,2\n3.5,-4e-1\n"), 0);
    ck_assert_uint_eq(N, 2);
    ck_assert_uint_eq(D, 2);
    ck_assert_float_eq(X[0], 1.0f);
    ck_assert_float_eq(X[2], 3.5f);
    ck_assert_float_eq(X[3], -0.4f);
    /* line endings: CRLF, CR, LF, mixed, no final newline */
    ck_assert_int_eq(csv("1,2\r\n3,4\r\n"), 0);
    ck_assert_uint_eq(N, 2);
    ck_assert_int_eq(csv("1,2\r3,4\r5,6"), 0);
    ck_assert_uint_eq(N, 3);
    ck_assert_float_eq(X[5], 6.0f);
    ck_assert_int_eq(csv("1,2\n3,4\r\n5,6\r7,8"), 0);
    ck_assert_uint_eq(N, 4);
    /* empty lines first (a terminator at the very start of the buffer) */
    ck_assert_int_eq(csv("\n\r\n\r1,2\n"), 0);
    ck_assert_uint_eq(N, 1);
    csv_fails("\n\r\n1,2\nx,3\n", "row 4", "column 1", "'x'");
    /* BOM, header, comments, blank lines, blanks around cells */
    ck_assert_int_eq(csv("\xEF\xBB\xBFx,y\n# comment\n\n 1 , 2 \n3,4\n"), 0);
    ck_assert_uint_eq(N, 2);
    ck_assert_float_eq(X[0], 1.0f);
    /* quoted header names (with a separator inside) */
    ck_assert_int_eq(csv("\"a,b\",\"c\"\"d\"\n1,2\n"), 0);
    ck_assert_uint_eq(N, 1);
    ck_assert_uint_eq(D, 2);
    /* pandas' index column has an empty header name */
    ck_assert_int_eq(csv(",a,b\n0,1.5,2\n1,3,4\n"), 0);
    ck_assert_uint_eq(D, 3);
    /* semicolon and tab separators */
    ck_assert_int_eq(csv("1;2;3\n4;5;6\n"), 0);
    ck_assert_uint_eq(D, 3);
    ck_assert_int_eq(csv("1\t2\n3\t4\n"), 0);
    ck_assert_uint_eq(D, 2);
    /* one column */
    ck_assert_int_eq(csv("v\n1\n2\n3\n"), 0);
    ck_assert_uint_eq(N, 3);
    ck_assert_uint_eq(D, 1);
}
END_TEST

START_TEST(csv_strict) {
    csv_fails("x,1\n2,3\n", "row 1", "column 1", "'x'");
    csv_fails("1,2\n3,NA\n", "row 2", "column 2", "'NA'");
    csv_fails("1,2\n3,\n", "row 2", "column 2", "empty");
    csv_fails("1,2\n,4\n", "row 2", "column 1", "empty");
    csv_fails("1,2\n3,\"4\"\n", "row 2", "column 2", "quoted");
    csv_fails("1;2\n3,5;4\n", "row 2", "column 1", "decimal comma");
    csv_fails("1,2\n3,nan\n", "row 2", "column 2", "'nan'");
    csv_fails("1,2\n3,inf\n", "row 2", "column 2", "'inf'");
    csv_fails("1,2\n3,0x10\n", "row 2", "column 2", "'0x10'");
    csv_fails("1,2\n3,1e999\n", "row 2", "column 2", "float32");
    csv_fails("1,2\n3,4,5\n", "row 2", "3 cells", "expected 2");
    csv_fails("1,2\n3\n", "row 2", "1 cells", NULL);
    csv_fails("1,2\n3 4,5\n", "row 2", "column 1", "'3 4'");
    csv_fails("1,2\r\n3,4,\r\n", "row 2", NULL, NULL);
    csv_fails("a,b\n", "no data rows", NULL, NULL);
    csv_fails("", "no data rows", NULL, NULL);
    csv_fails("1,2\n3,\"4\n", "row 2", "unterminated", NULL);
    /* row numbers count physical lines including header, comments and CR endings */
    csv_fails("x,y\r# c\r1,2\rq,4\r", "row 4", "column 1", "'q'");
    /* NUL byte */
    {
        const char t[] = "1,2\n3,\0\n";
        stochflow_data_free(X);
        X = NULL;
        ck_assert_int_eq(stochflow_data_parse_csv(&X, &N, &D, t, sizeof t - 1, 0),
                         STOCHFLOW_E_FORMAT);
        ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "NUL"));
    }
    /* value bound */
    ck_assert_int_eq(stochflow_data_parse_csv(&X, &N, &D, "1,2\n3,4\n5,6\n", 12, 5),
                     STOCHFLOW_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "limit"));
    ck_assert_int_eq(stochflow_data_parse_csv(&X, &N, &D, "1,2\n3,4\n5,6\n", 12, 6), 0);
    ck_assert_uint_eq(N, 3);
    stochflow_data_free(X);
    X = NULL;
    /* invalid arguments */
    ck_assert_int_eq(stochflow_data_parse_csv(NULL, &N, &D, "1", 1, 0), STOCHFLOW_E_INVALID);
    ck_assert_int_eq(stochflow_data_parse_csv(&X, &N, &D, NULL, 3, 0), STOCHFLOW_E_INVALID);
    ck_assert_ptr_null(X);
}
END_TEST

/* Build a .npy image: header dict text (padded as numpy does) + raw data. */
static size_t npy(unsigned char *out, const char *dict, const void *data, size_t bytes) {
    size_t dl = strlen(dict), total = 10 + dl + 1, pad = (64 - total % 64) % 64;
    size_t hlen = dl + pad + 1;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (unsigned char)(hlen & 0xFF);
    out[9] = (unsigned char)(hlen >> 8);
    memcpy(out + 10, dict, dl);
    memset(out + 10 + dl, ' ', pad);
    out[10 + dl + pad] = '\n';
    memcpy(out + 10 + hlen, data, bytes);
    return 10 + hlen + bytes;
}

static int npy_parse(const char *dict, const void *data, size_t bytes) {
    static unsigned char buf[4096];
    size_t len = npy(buf, dict, data, bytes);
    stochflow_data_free(X);
    X = NULL;
    return stochflow_data_parse_npy(&X, &N, &D, buf, len, 0);
}

static void npy_fails(int status, const char *dict, const void *data, size_t bytes,
                      const char *frag) {
    int rc = npy_parse(dict, data, bytes);
    ck_assert_msg(rc == status, "status %d for %s", rc, dict);
    ck_assert_ptr_null(X);
    if (frag)
        ck_assert_msg(strstr(stochflow_last_error_message(), frag) != NULL, "'%s' lacks '%s'",
                      stochflow_last_error_message(), frag);
}

START_TEST(npy_values) {
    const float f[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(npy_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f,
                               sizeof f), 0);
    ck_assert_uint_eq(N, 2);
    ck_assert_uint_eq(D, 3);
    for (int i = 0; i < 6; ++i) ck_assert_float_eq(X[i], f[i]);
    /* Fortran order: the file holds columns; the matrix is still row-major */
    ck_assert_int_eq(npy_parse("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f,
                               sizeof f), 0);
    const float fo[6] = {1, 3, 5, 2, 4, 6};
    for (int i = 0; i < 6; ++i) ck_assert_float_eq(X[i], fo[i]);
    /* keys in any order, double quotes, no trailing comma */
    const double g[2] = {0.25, -1.5};
    ck_assert_int_eq(npy_parse("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f8\"}",
                               g, sizeof g), 0);
    ck_assert_uint_eq(N, 2);
    ck_assert_uint_eq(D, 1);
    ck_assert_float_eq(X[1], -1.5f);
    /* integers converted */
    const int32_t iv[4] = {-3, 7, 100000, 0};
    ck_assert_int_eq(npy_parse("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
                               iv, sizeof iv), 0);
    ck_assert_float_eq(X[0], -3.0f);
    ck_assert_float_eq(X[2], 100000.0f);
    const uint8_t u8[3] = {0, 200, 255};
    ck_assert_int_eq(npy_parse("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 1), }",
                               u8, sizeof u8), 0);
    ck_assert_float_eq(X[2], 255.0f);
    const int16_t i16[2] = {-32768, 5};
    ck_assert_int_eq(npy_parse("{'descr': '<i2', 'fortran_order': False, 'shape': (1, 2), }",
                               i16, sizeof i16), 0);
    ck_assert_float_eq(X[0], -32768.0f);
    /* big-endian float32 1.0 = 3F 80 00 00 */
    const unsigned char be[4] = {0x3F, 0x80, 0, 0};
    ck_assert_int_eq(npy_parse("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1), }",
                               be, 4), 0);
    ck_assert_float_eq(X[0], 1.0f);
}
END_TEST

START_TEST(npy_strict) {
    const float f[6] = {1, 2, 3, 4, 5, 6};
    /* a decoy "'fortran_order': False" inside the descr value must not be taken for the key */
    npy_fails(STOCHFLOW_E_FORMAT,
              "{'descr': \"<f4', 'fortran_order': False, 'x': '\", 'fortran_order': True, "
              "'shape': (2, 3), }", f, sizeof f, "dtype");
    /* a decoy key inside a string value: the real key is missing */
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'shape': (2, 3), 'x': \"'fortran_order': False\"}",
              f, sizeof f, "unexpected key");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'shape': (2, 3)}", f, sizeof f,
              "lacks 'fortran_order'");
    npy_fails(STOCHFLOW_E_FORMAT,
              "{'descr': '<f4', 'fortran_order': False, 'fortran_order': True, 'shape': (2, 3)}",
              f, sizeof f, "twice");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", f,
              sizeof f, "True or False");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}",
              f, sizeof f, "True or False");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<c8', 'fortran_order': False, 'shape': (1, 1)}",
              f, 8, "dtype");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", f,
              sizeof f, "shape");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3)}",
              f, sizeof f, "3-dimensional");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", f, 4,
              "scalar");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3)}", f,
              0, "no values");
    /* a shape smaller than the data is an error, as is a truncated file */
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3)}", f,
              sizeof f, "smaller than the data");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3)}", f,
              sizeof f, "truncated");
    npy_fails(STOCHFLOW_E_FORMAT, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x",
              f, sizeof f, "after the header");
    /* non-finite values name row and column (Fortran order too) */
    float g[6] = {1, 2, 3, 4, NAN, 6};
    npy_fails(STOCHFLOW_E_NONFINITE, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
              g, sizeof g, "row 2, column 2");
    npy_fails(STOCHFLOW_E_NONFINITE, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}",
              g, sizeof g, "row 1, column 3");
    const double big[1] = {1e300};
    npy_fails(STOCHFLOW_E_NONFINITE, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1)}",
              big, sizeof big, "float32");
    /* value bound before any allocation */
    unsigned char buf[256];
    size_t len = npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", f, sizeof f);
    ck_assert_int_eq(stochflow_data_parse_npy(&X, &N, &D, buf, len, 5), STOCHFLOW_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "limit"));
    /* bad magic, truncated preamble, header past the end */
    ck_assert_int_eq(stochflow_data_parse_npy(&X, &N, &D, "\x93NUMPX\x01\x00\x10\x00", 10, 0),
                     STOCHFLOW_E_FORMAT);
    ck_assert_int_eq(stochflow_data_parse_npy(&X, &N, &D, "\x93NUMPY\x01\x00\xFF\x00{", 11, 0),
                     STOCHFLOW_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "past the end"));
    ck_assert_ptr_null(X);
}
END_TEST

START_TEST(files) {
    char dir[] = "/tmp/check_dataio_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/a.csv", dir);
    FILE *f = fopen(path, "wb");
    fputs("x,y\n1,2\n3,4\n", f);
    fclose(f);
    ck_assert_int_eq(stochflow_data_read_csv(&X, &N, &D, path, 0, 0), 0);
    ck_assert_uint_eq(N, 2);
    stochflow_data_free(X);
    X = NULL;
    /* byte bound on a regular file: refused before reading */
    ck_assert_int_eq(stochflow_data_read_csv(&X, &N, &D, path, 8, 0), STOCHFLOW_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "limit"));
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), path));
    /* an endless device fails cleanly at the bound */
    ck_assert_int_eq(stochflow_data_read_npy(&X, &N, &D, "/dev/zero", 1 << 20, 0),
                     STOCHFLOW_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "limit"));
    ck_assert_int_eq(stochflow_data_read_csv(&X, &N, &D, "/dev/zero", 1 << 20, 0),
                     STOCHFLOW_E_FORMAT);
    ck_assert_int_eq(stochflow_data_read_csv(&X, &N, &D, dir, 0, 0), STOCHFLOW_E_IO);
    ck_assert_int_eq(stochflow_data_read_csv(&X, &N, &D, "/nonexistent/x.csv", 0, 0),
                     STOCHFLOW_E_IO);
    /* messages of the path readers name the file and the cell */
    f = fopen(path, "wb");
    fputs("1,2\n3,NA\n", f);
    fclose(f);
    ck_assert_int_eq(stochflow_data_read_csv(&X, &N, &D, path, 0, 0), STOCHFLOW_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "row 2, column 2: 'NA'"));
    ck_assert_ptr_null(X);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(alloc_failures) {
    /* every allocation failing in turn gives NOMEM and no leak (ASan build) */
    const char *t = "x,y\n1,2\n3,4\n";
    for (uint64_t k = 1; k < 10; ++k) {
        stochflow__alloc_fail_at(k);
        int rc = stochflow_data_parse_csv(&X, &N, &D, t, strlen(t), 0);
        stochflow__alloc_fail_at(0);
        if (rc == 0) {
            stochflow_data_free(X);
            X = NULL;
            break;
        }
        ck_assert_int_eq(rc, STOCHFLOW_E_NOMEM);
        ck_assert_ptr_null(X);
    }
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("dataio");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, csv_values);
    tcase_add_test(tc, npy_values);
    tcase_add_test(tc, files);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, csv_strict);
    tcase_add_test(te, npy_strict);
    tcase_add_test(te, alloc_failures);
    suite_add_tcase(s, te);
    return s;
}
