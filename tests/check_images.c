/* check_images.c - image data (issue 8): IDX and PNG-directory loading (hand-made files
 * written here, raw and gzip; every rejection path, hostile headers), dequantization
 * (range, bin membership, prefix property), quantization edges, bits per dimension
 * against closed forms, and PNG grids read back with libpng. Fashion-MNIST from
 * /usr/share/datasets/fashion-mnist when present (skipped with a message otherwise). */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <fcntl.h>
#include <png.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"
#include "internal.h"

static char dir[256];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/sfimg.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tree(const char *p) {
    DIR *d = opendir(p);
    if (d) {
        struct dirent *e;
        char q[1024];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(q, sizeof q, "%s/%s", p, e->d_name);
            struct stat st;
            if (lstat(q, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(q);
            else unlink(q);
        }
        closedir(d);
        rmdir(p);
    }
}

static void teardown(void) { rm_tree(dir); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- IDX helpers ------------------------------------------------------------------- */

/* Header bytes: 00 00 type ndims, then big-endian u32 dims. Returns its length. */
static size_t idx_header(uint8_t *h, int type, int ndims, const uint32_t *dims) {
    h[0] = 0;
    h[1] = 0;
    h[2] = (uint8_t)type;
    h[3] = (uint8_t)ndims;
    for (int k = 0; k < ndims; ++k) {
        h[4 + 4 * k] = (uint8_t)(dims[k] >> 24);
        h[5 + 4 * k] = (uint8_t)(dims[k] >> 16);
        h[6 + 4 * k] = (uint8_t)(dims[k] >> 8);
        h[7 + 4 * k] = (uint8_t)dims[k];
    }
    return 4 + 4 * (size_t)ndims;
}

/* Write header + data to dir/name, gzip-compressed when gz; returns the source string. */
static const char *write_file(const char *name, int gz, const uint8_t *a, size_t na,
                              const uint8_t *b, size_t nb) {
    static char src[600];
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        if (na) ck_assert_int_eq(gzwrite(f, a, (unsigned)na), (int)na);
        if (nb) ck_assert_int_eq(gzwrite(f, b, (unsigned)nb), (int)nb);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        if (na) ck_assert_uint_eq(fwrite(a, 1, na, f), na);
        if (nb) ck_assert_uint_eq(fwrite(b, 1, nb, f), nb);
        ck_assert_int_eq(fclose(f), 0);
    }
    snprintf(src, sizeof src, "idx:%s", path);
    return src;
}

static uint8_t *pattern(size_t n, unsigned mul) {
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; ++i) p[i] = (uint8_t)(i * mul + i / 251);
    return p;
}

#define LOAD(src, maxc) stochflow_images_load(&px, &cnt, &ch, &hh, &ww, (src), (maxc))
#define LOCALS                          \
    uint8_t *px = NULL;                 \
    size_t cnt = 0, ch = 0, hh = 0, ww = 0

static void expect_msg(const char *needle) {
    const char *m = stochflow_last_error_message();
    ck_assert_msg(m && strstr(m, needle), "message \"%s\" lacks \"%s\"", m ? m : "(null)",
                  needle);
}

/* ---- IDX tests --------------------------------------------------------------------- */

START_TEST(test_idx_gray) {
    uint32_t dims[3] = {5, 3, 4};
    uint8_t h[16];
    size_t nh = idx_header(h, 0x08, 3, dims), nd = 5 * 3 * 4;
    uint8_t *data = pattern(nd, 7);
    for (int gz = 0; gz <= 1; ++gz) {
        LOCALS;
        ck_assert_ok(LOAD(write_file(gz ? "g.gz" : "g.idx", gz, h, nh, data, nd), 0));
        ck_assert_uint_eq(cnt, 5);
        ck_assert_uint_eq(ch, 1);
        ck_assert_uint_eq(hh, 3);
        ck_assert_uint_eq(ww, 4);
        ck_assert(memcmp(px, data, nd) == 0);
        stochflow_images_free(px);
        /* max_count: a prefix; larger than N: all */
        ck_assert_ok(LOAD(write_file(gz ? "g.gz" : "g.idx", gz, h, nh, data, nd), 2));
        ck_assert_uint_eq(cnt, 2);
        ck_assert(memcmp(px, data, 2 * 12) == 0);
        stochflow_images_free(px);
        ck_assert_ok(LOAD(write_file(gz ? "g.gz" : "g.idx", gz, h, nh, data, nd), 99));
        ck_assert_uint_eq(cnt, 5);
        stochflow_images_free(px);
    }
    stochflow_images_free(NULL);
    free(data);
}
END_TEST

START_TEST(test_idx_rgb) {
    /* [N, H, W, C] interleaved in the file, planar NCHW out */
    uint32_t dims[4] = {3, 2, 5, 3};
    uint8_t h[20];
    size_t nh = idx_header(h, 0x08, 4, dims), hw = 10, per = 30, nd = 3 * per;
    uint8_t *data = pattern(nd, 13);
    for (int gz = 0; gz <= 1; ++gz) {
        LOCALS;
        ck_assert_ok(LOAD(write_file("c.idx", gz, h, nh, data, nd), 0));
        ck_assert_uint_eq(cnt, 3);
        ck_assert_uint_eq(ch, 3);
        ck_assert_uint_eq(hh, 2);
        ck_assert_uint_eq(ww, 5);
        for (size_t i = 0; i < 3; ++i)
            for (size_t c = 0; c < 3; ++c)
                for (size_t p = 0; p < hw; ++p)
                    ck_assert_uint_eq(px[i * per + c * hw + p], data[i * per + p * 3 + c]);
        stochflow_images_free(px);
    }
    /* 4 dimensions with C = 1 is the same as 3 dimensions */
    dims[3] = 1;
    nh = idx_header(h, 0x08, 4, dims);
    LOCALS;
    ck_assert_ok(LOAD(write_file("c1.idx", 0, h, nh, data, 30), 0));
    ck_assert_uint_eq(ch, 1);
    ck_assert(memcmp(px, data, 30) == 0);
    stochflow_images_free(px);
    /* C = 2 and C = 4 are rejected */
    dims[3] = 2;
    nh = idx_header(h, 0x08, 4, dims);
    ck_assert_status(LOAD(write_file("c2.idx", 0, h, nh, data, 60), 0), STOCHFLOW_E_FORMAT);
    expect_msg("channels");
    ck_assert_ptr_null(px);
    ck_assert_uint_eq(cnt, 0);
    free(data);
}
END_TEST

START_TEST(test_idx_malformed) {
    LOCALS;
    uint32_t dims[3] = {4, 2, 2};
    uint8_t h[20];
    size_t nh = idx_header(h, 0x08, 3, dims);
    uint8_t *data = pattern(16, 3);
    const char *src;
    for (int gz = 0; gz <= 1; ++gz) {
        /* truncated data: FORMAT naming the file */
        src = write_file("t.idx", gz, h, nh, data, 15);
        ck_assert_status(LOAD(src, 0), STOCHFLOW_E_FORMAT);
        expect_msg("truncated");
        expect_msg(src + 4);
        ck_assert_ptr_null(px);
        /* with max_count 3 the raw file is still checked whole (its size is known);
         * a gzip file is read only as far as needed */
        ck_assert_status(LOAD(src, 3), gz ? STOCHFLOW_OK : STOCHFLOW_E_FORMAT);
        stochflow_images_free(px);
        px = NULL;
        /* trailing data */
        uint8_t more[20];
        memcpy(more, data, 16);
        memset(more + 16, 1, 4);
        ck_assert_status(LOAD(write_file("x.idx", gz, h, nh, more, 17), 0), STOCHFLOW_E_FORMAT);
        /* wrong element type (float32) */
        uint8_t hb[24];
        memcpy(hb, h, nh);
        hb[2] = 0x0D;
        ck_assert_status(LOAD(write_file("f.idx", gz, hb, nh, data, 16), 0), STOCHFLOW_E_FORMAT);
        expect_msg("0x0d");
        /* wrong magic */
        memcpy(hb, h, nh);
        hb[0] = 1;
        ck_assert_status(LOAD(write_file("m.idx", gz, hb, nh, data, 16), 0), STOCHFLOW_E_FORMAT);
        expect_msg("not an IDX file");
        /* a label file: 1 dimension */
        uint32_t d1 = 16;
        size_t n1 = idx_header(hb, 0x08, 1, &d1);
        ck_assert_status(LOAD(write_file("l.idx", gz, hb, n1, data, 16), 0), STOCHFLOW_E_FORMAT);
        expect_msg("label");
        /* 2 and 5 dimensions */
        hb[3] = 2;
        ck_assert_status(LOAD(write_file("d2.idx", gz, hb, 12, data, 16), 0), STOCHFLOW_E_FORMAT);
        uint32_t d5[5] = {1, 1, 1, 1, 1};
        size_t n5 = idx_header(hb, 0x08, 5, d5);
        ck_assert_status(LOAD(write_file("d5.idx", gz, hb, n5, data, 1), 0), STOCHFLOW_E_FORMAT);
        /* a zero dimension */
        uint32_t dz[3] = {4, 0, 2};
        nh = idx_header(hb, 0x08, 3, dz);
        ck_assert_status(LOAD(write_file("z.idx", gz, hb, nh, data, 0), 0), STOCHFLOW_E_FORMAT);
        expect_msg("is 0");
        /* header cut short */
        ck_assert_status(LOAD(write_file("s.idx", gz, h, 9, NULL, 0), 0), STOCHFLOW_E_FORMAT);
        ck_assert_status(LOAD(write_file("s2.idx", gz, h, 3, NULL, 0), 0), STOCHFLOW_E_FORMAT);
        ck_assert_status(LOAD(write_file("e.idx", gz, NULL, 0, NULL, 0), 0), STOCHFLOW_E_FORMAT);
        nh = idx_header(h, 0x08, 3, dims);
    }
    /* a gzip stream cut in half, and one with a flipped byte (CRC or inflate error) */
    char path[512];
    uint8_t *big = pattern(4000, 1);
    uint32_t db[3] = {10, 20, 20};
    nh = idx_header(h, 0x08, 3, db);
    write_file("full.gz", 1, h, nh, big, 4000);
    snprintf(path, sizeof path, "%s/full.gz", dir);
    FILE *f = fopen(path, "rb");
    uint8_t buf[8192];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(len, 40);
    src = write_file("cut.gz", 0, buf, len / 2, NULL, 0);
    ck_assert_status(LOAD(src, 0), STOCHFLOW_E_FORMAT);
    buf[len - 6] ^= 0x55; /* inside the CRC-32 trailer */
    src = write_file("crc.gz", 0, buf, len, NULL, 0);
    ck_assert_status(LOAD(src, 0), STOCHFLOW_E_FORMAT);
    expect_msg("gzip");
    free(big);
    /* missing file, directory */
    char miss[600];
    snprintf(miss, sizeof miss, "idx:%s/none.idx", dir);
    ck_assert_status(LOAD(miss, 0), STOCHFLOW_E_IO);
    expect_msg("none.idx");
    snprintf(miss, sizeof miss, "idx:%s", dir);
    ck_assert_status(LOAD(miss, 0), STOCHFLOW_E_IO);
    free(data);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

#ifndef UNDER_SANITIZER
/* Current address-space size in bytes (Linux /proc/self/statm), 0 if unknown. */
static size_t address_space(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

/* Limit the address space to its current size + 512 MiB (not under sanitizers, whose
 * shadow memory needs the room). Returns 1 when a limit was set; undo with as_restore. */
static struct rlimit as_old;
static int as_limit(void) {
#ifndef UNDER_SANITIZER
    size_t as = address_space();
    if (as > 0 && getrlimit(RLIMIT_AS, &as_old) == 0) {
        struct rlimit lim = as_old;
        lim.rlim_cur = (rlim_t)(as + ((size_t)512 << 20));
        if (as_old.rlim_max == RLIM_INFINITY || lim.rlim_cur <= as_old.rlim_max)
            return setrlimit(RLIMIT_AS, &lim) == 0;
    }
#endif
    return 0;
}
static void as_restore(int limited) {
    if (limited) setrlimit(RLIMIT_AS, &as_old);
}

START_TEST(test_idx_hostile) {
    LOCALS;
    uint8_t h[16], data[64];
    memset(data, 7, sizeof data);
    /* products overflow size_t: FORMAT before anything is allocated */
    uint32_t huge[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    size_t nh = idx_header(h, 0x08, 3, huge);
    for (int gz = 0; gz <= 1; ++gz) {
        ck_assert_status(LOAD(write_file("o.idx", gz, h, nh, data, 64), 0), STOCHFLOW_E_FORMAT);
        expect_msg("overflow");
    }
    /* ~8 GiB claimed (8M images of 32x32), 64 bytes present. Under an address-space
     * limit of current + 512 MiB, an up-front allocation of the claimed size would fail
     * with NOMEM; the loader must instead find the data missing: FORMAT, quickly. */
    uint32_t big[3] = {8u << 20, 32, 32};
    nh = idx_header(h, 0x08, 3, big);
    const char *srcs[2];
    char keep[2][600];
    for (int gz = 0; gz <= 1; ++gz) {
        snprintf(keep[gz], sizeof keep[gz], "%s", write_file(gz ? "b.gz" : "b.idx", gz, h, nh,
                                                             data, 64));
        srcs[gz] = keep[gz];
    }
    int limited = as_limit();
    double t0 = now_s();
    int rc_raw = LOAD(srcs[0], 0);
    int rc_gz = LOAD(srcs[1], 0);
    /* max_count caps the count: 2 images are wanted but 64 bytes hold only 0 */
    int rc_cap = LOAD(srcs[1], 2);
    double dt = now_s() - t0;
    as_restore(limited);
    ck_assert_int_eq(rc_raw, STOCHFLOW_E_FORMAT);
    ck_assert_int_eq(rc_gz, STOCHFLOW_E_FORMAT);
    ck_assert_int_eq(rc_cap, STOCHFLOW_E_FORMAT);
    ck_assert_msg(dt < 2.0, "hostile headers took %.2f s", dt);
    /* max_count 1 of the claimed 8M: 64 bytes < 1024 needed, still FORMAT; with 1024
     * bytes present and max_count 1 the gzip file loads (the rest is never read) */
    uint8_t one[1024];
    memset(one, 9, sizeof one);
    ck_assert_ok(LOAD(write_file("b1.gz", 1, h, nh, one, 1024), 1));
    ck_assert_uint_eq(cnt, 1);
    ck_assert_uint_eq(px[1023], 9);
    stochflow_images_free(px);
}
END_TEST

START_TEST(test_fashion_mnist) {
    const char *base = "/usr/share/datasets/fashion-mnist";
    char src[512];
    snprintf(src, sizeof src, "%s/t10k-images-idx3-ubyte.gz", base);
    if (access(src, R_OK) != 0) {
        printf("# SKIP Fashion-MNIST not found at %s\n", base);
        return;
    }
    LOCALS;
    char s2[600];
    snprintf(s2, sizeof s2, "idx:%s", src);
    double t0 = now_s();
    ck_assert_ok(LOAD(s2, 0));
    double dt = now_s() - t0;
    ck_assert_uint_eq(cnt, 10000);
    ck_assert_uint_eq(ch, 1);
    ck_assert_uint_eq(hh, 28);
    ck_assert_uint_eq(ww, 28);
    double sum = 0;
    size_t n = cnt * 28 * 28, zeros = 0;
    for (size_t i = 0; i < n; ++i) {
        sum += px[i];
        zeros += px[i] == 0;
    }
    double mean = sum / (double)n;
    printf("# Fashion-MNIST t10k: %zu images, mean pixel %.2f, %.1f%% zeros, %.3f s\n", cnt,
           mean, 100.0 * (double)zeros / (double)n, dt);
    ck_assert_msg(mean > 60 && mean < 90, "mean pixel %.2f outside [60, 90]", mean);
    /* the first 100 by max_count equal the prefix of the full load */
    uint8_t *all = px;
    ck_assert_ok(LOAD(s2, 100));
    ck_assert_uint_eq(cnt, 100);
    ck_assert(memcmp(px, all, 100 * 784) == 0);
    stochflow_images_free(px);
    stochflow_images_free(all);
    /* the labels file is IDX with 1 dimension: rejected with a clear message */
    snprintf(s2, sizeof s2, "idx:%s/t10k-labels-idx1-ubyte.gz", base);
    if (access(s2 + 4, R_OK) == 0) {
        ck_assert_status(LOAD(s2, 0), STOCHFLOW_E_FORMAT);
        expect_msg("label");
    }
}
END_TEST

/* ---- PNG helpers ------------------------------------------------------------------- */

/* Write a PNG with libpng's full API (any colour type and depth). rows: h rows of
 * packed samples as PNG stores them (16-bit big-endian). */
static void write_png(const char *sub, const char *name, uint32_t w, uint32_t h, int type,
                      int depth, const uint8_t *samples, const png_color *pal, int npal,
                      const uint8_t *trns, int ntrns, int interlace) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert(setjmp(png_jmpbuf(png)) == 0);
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, depth, type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    int spp = type == PNG_COLOR_TYPE_RGB          ? 3
              : type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
              : type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                  : 1;
    size_t rowbytes = ((size_t)w * spp * depth + 7) / 8;
    int passes = interlace ? png_set_interlace_handling(png) : 1;
    for (int p = 0; p < passes; ++p)
        for (uint32_t y = 0; y < h; ++y)
            png_write_row(png, (png_const_bytep)(samples + y * rowbytes));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static const char *pngsrc(const char *sub) {
    static char s[600];
    snprintf(s, sizeof s, "pngdir:%s/%s", dir, sub);
    return s;
}

START_TEST(test_png_gray) {
    LOCALS;
    /* 8-bit gray, one interlaced; order by name (strcmp): a.PNG, b.png, c.png */
    uint8_t img[3][12];
    for (int k = 0; k < 3; ++k)
        for (int i = 0; i < 12; ++i) img[k][i] = (uint8_t)(20 * k + 7 * i);
    write_png("g", "b.png", 4, 3, PNG_COLOR_TYPE_GRAY, 8, img[1], NULL, 0, NULL, 0, 0);
    write_png("g", "a.PNG", 4, 3, PNG_COLOR_TYPE_GRAY, 8, img[0], NULL, 0, NULL, 0, 1);
    write_png("g", "c.png", 4, 3, PNG_COLOR_TYPE_GRAY, 8, img[2], NULL, 0, NULL, 0, 0);
    /* ignored: other suffixes, and a directory named like a PNG */
    char p[600];
    snprintf(p, sizeof p, "%s/g/notes.txt", dir);
    FILE *f = fopen(p, "w");
    fputs("not an image", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/g/d.png", dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    ck_assert_ok(LOAD(pngsrc("g"), 0));
    ck_assert_uint_eq(cnt, 3);
    ck_assert_uint_eq(ch, 1);
    ck_assert_uint_eq(hh, 3);
    ck_assert_uint_eq(ww, 4);
    for (int k = 0; k < 3; ++k) ck_assert_msg(memcmp(px + 12 * k, img[k], 12) == 0, "image %d", k);
    stochflow_images_free(px);
    ck_assert_ok(LOAD(pngsrc("g"), 2));
    ck_assert_uint_eq(cnt, 2);
    ck_assert(memcmp(px + 12, img[1], 12) == 0);
    stochflow_images_free(px);

    /* 16-bit gray -> high byte; 1-bit gray -> 0 / 255; gray + alpha -> gray */
    uint8_t g16[2 * 12], g1[3] = {0xA0, 0x50, 0xF0}, ga[24];
    for (int i = 0; i < 12; ++i) {
        g16[2 * i] = img[0][i];
        g16[2 * i + 1] = img[0][i];
        ga[2 * i] = img[2][i];
        ga[2 * i + 1] = (uint8_t)(i * 20);
    }
    write_png("g16", "x.png", 4, 3, PNG_COLOR_TYPE_GRAY, 16, g16, NULL, 0, NULL, 0, 0);
    write_png("g16", "y.png", 4, 3, PNG_COLOR_TYPE_GRAY, 1, g1, NULL, 0, NULL, 0, 0);
    write_png("g16", "z.png", 4, 3, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, NULL, 0, NULL, 0, 0);
    ck_assert_ok(LOAD(pngsrc("g16"), 0));
    ck_assert_uint_eq(cnt, 3);
    ck_assert_uint_eq(ch, 1);
    ck_assert(memcmp(px, img[0], 12) == 0);
    /* rows of 4 pixels from the high nibble of each byte: A0 = 1010, 50 = 0101, F0 */
    const uint8_t bits[12] = {255, 0, 255, 0, 0, 255, 0, 255, 255, 255, 255, 255};
    ck_assert(memcmp(px + 12, bits, 12) == 0);
    ck_assert(memcmp(px + 24, img[2], 12) == 0);
    stochflow_images_free(px);
}
END_TEST

START_TEST(test_png_color) {
    LOCALS;
    /* RGB 8-bit, RGBA (alpha dropped), palette (with tRNS): 3 planar channels */
    const uint32_t w = 3, h = 2;
    uint8_t rgb[18], rgba[24], idx[6];
    for (int i = 0; i < 18; ++i) rgb[i] = (uint8_t)(11 * i + 3);
    for (int i = 0; i < 6; ++i) {
        for (int c = 0; c < 3; ++c) rgba[4 * i + c] = (uint8_t)(200 - 9 * i - c);
        rgba[4 * i + 3] = (uint8_t)(40 * i);
        idx[i] = (uint8_t)(i % 4);
    }
    png_color pal[4] = {{10, 20, 30}, {40, 50, 60}, {70, 80, 90}, {255, 0, 128}};
    uint8_t trns[4] = {0, 128, 255, 255};
    write_png("c", "1.png", w, h, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, NULL, 0, 0);
    write_png("c", "2.png", w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, NULL, 0, NULL, 0, 0);
    write_png("c", "3.png", w, h, PNG_COLOR_TYPE_PALETTE, 8, idx, pal, 4, trns, 4, 0);
    ck_assert_ok(LOAD(pngsrc("c"), 0));
    ck_assert_uint_eq(cnt, 3);
    ck_assert_uint_eq(ch, 3);
    ck_assert_uint_eq(hh, h);
    ck_assert_uint_eq(ww, w);
    for (size_t p = 0; p < 6; ++p)
        for (size_t c = 0; c < 3; ++c) {
            ck_assert_uint_eq(px[0 * 18 + c * 6 + p], rgb[3 * p + c]);
            ck_assert_uint_eq(px[1 * 18 + c * 6 + p], rgba[4 * p + c]);
            const png_color *e = &pal[idx[p]];
            uint8_t want = c == 0 ? e->red : c == 1 ? e->green : e->blue;
            ck_assert_uint_eq(px[2 * 18 + c * 6 + p], want);
        }
    stochflow_images_free(px);
}
END_TEST

START_TEST(test_png_errors) {
    LOCALS;
    uint8_t g[64] = {0}, rgb[192] = {0};
    /* mixed sizes: the second file is named */
    write_png("ms", "a.png", 4, 4, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    write_png("ms", "b.png", 4, 5, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    ck_assert_status(LOAD(pngsrc("ms"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("b.png");
    expect_msg("a.png");
    ck_assert_ptr_null(px);
    ck_assert_ok(LOAD(pngsrc("ms"), 1)); /* only a.png is read */
    stochflow_images_free(px);
    /* gray and RGB mixed */
    write_png("mc", "a.png", 4, 4, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    write_png("mc", "b.png", 4, 4, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, NULL, 0, 0);
    ck_assert_status(LOAD(pngsrc("mc"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("channel");
    /* corrupt data after a valid signature and header: libpng's error, file named */
    write_png("bad", "a.png", 8, 8, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    char p[600];
    snprintf(p, sizeof p, "%s/bad/a.png", dir);
    FILE *f = fopen(p, "rb");
    uint8_t buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    buf[len - 20] ^= 0xFF; /* inside the IDAT data / CRC */
    snprintf(p, sizeof p, "%s/bad/b.png", dir);
    f = fopen(p, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    ck_assert_status(LOAD(pngsrc("bad"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("b.png");
    expect_msg("libpng");
    /* truncated after the header */
    f = fopen(p, "wb");
    buf[len - 20] ^= 0xFF;
    fwrite(buf, 1, 40, f);
    fclose(f);
    ck_assert_status(LOAD(pngsrc("bad"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("b.png");
    expect_msg("truncated file (libpng: Read Error)");
    /* not a PNG at all */
    f = fopen(p, "wb");
    fputs("GIF89a not really", f);
    fclose(f);
    ck_assert_status(LOAD(pngsrc("bad"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("not a PNG");
    /* empty directory, directory without PNGs, missing directory */
    snprintf(p, sizeof p, "%s/empty", dir);
    mkdir(p, 0755);
    ck_assert_status(LOAD(pngsrc("empty"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("no .png");
    ck_assert_status(LOAD(pngsrc("missing"), 0), STOCHFLOW_E_IO);
    expect_msg("missing");
}
END_TEST

START_TEST(test_png_hostile) {
    LOCALS;
    /* a valid 8x8 gray PNG whose IHDR is patched to claim 30000 x 30000 (900 MB of
     * pixels) with a correct CRC: rejected from the file size, before any allocation
     * of that size (under an address-space limit that would turn one into NOMEM) */
    uint8_t g[64] = {0};
    write_png("bomb", "a.png", 8, 8, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    char p[600];
    snprintf(p, sizeof p, "%s/bomb/a.png", dir);
    FILE *f = fopen(p, "rb");
    uint8_t buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(len, 33);
    ck_assert(memcmp(buf + 12, "IHDR", 4) == 0);
    const uint32_t big = 30000;
    for (int k = 0; k < 2; ++k) {
        buf[16 + 4 * k] = (uint8_t)(big >> 24);
        buf[17 + 4 * k] = (uint8_t)(big >> 16);
        buf[18 + 4 * k] = (uint8_t)(big >> 8);
        buf[19 + 4 * k] = (uint8_t)big;
    }
    uint32_t crc = (uint32_t)crc32(0L, buf + 12, 17);
    buf[29] = (uint8_t)(crc >> 24);
    buf[30] = (uint8_t)(crc >> 16);
    buf[31] = (uint8_t)(crc >> 8);
    buf[32] = (uint8_t)crc;
    f = fopen(p, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    int limited = as_limit();
    int rc = LOAD(pngsrc("bomb"), 0);
    as_restore(limited);
    ck_assert_int_eq(rc, STOCHFLOW_E_FORMAT);
    expect_msg("claims 30000 x 30000");

    /* a 4000 x 4000 first image (16 MB, compressed to kilobytes) followed by 40 files
     * named *.png that are not PNGs: every header is read before the result (41 x 16 MB
     * = 656 MB) is allocated, so this is FORMAT naming the second file under the
     * address-space limit, not NOMEM */
    const uint32_t side = 4000;
    uint8_t *zero = calloc((size_t)side * side, 1);
    ck_assert_ptr_nonnull(zero);
    write_png("many", "a000.png", side, side, PNG_COLOR_TYPE_GRAY, 8, zero, NULL, 0, NULL, 0, 0);
    free(zero);
    for (int k = 1; k <= 40; ++k) {
        snprintf(p, sizeof p, "%s/many/a%03d.png", dir, k);
        f = fopen(p, "wb");
        fputs("not a PNG", f);
        fclose(f);
    }
    limited = as_limit();
    rc = LOAD(pngsrc("many"), 0);
    as_restore(limited);
    ck_assert_int_eq(rc, STOCHFLOW_E_FORMAT);
    expect_msg("a001.png is not a PNG");
    /* and a real directory of several images still loads */
    uint8_t g5[5][6];
    for (int k = 0; k < 5; ++k) {
        for (int i = 0; i < 6; ++i) g5[k][i] = (uint8_t)(k * 50 + i);
        char nm[16];
        snprintf(nm, sizeof nm, "i%d.png", k);
        write_png("five", nm, 3, 2, PNG_COLOR_TYPE_GRAY, 8, g5[k], NULL, 0, NULL, 0, 0);
    }
    ck_assert_ok(LOAD(pngsrc("five"), 0));
    ck_assert_uint_eq(cnt, 5);
    ck_assert(memcmp(px, g5, sizeof g5) == 0);
    stochflow_images_free(px);
    ck_assert_ok(LOAD(pngsrc("five"), 3));
    ck_assert_uint_eq(cnt, 3);
    ck_assert(memcmp(px, g5, 18) == 0);
    stochflow_images_free(px);
}
END_TEST

/* Non-regular entries named *.png: a dangling symbolic link, a FIFO and a directory are
 * ignored; a link to a PNG is followed. Many dangling links around one real file make
 * one of them the last entry readdir returns in practically every order (a stat of a
 * dangling link once left ENOENT in errno and was reported as "cannot list"). */
START_TEST(test_png_links) {
    LOCALS;
    uint8_t g[12];
    for (int i = 0; i < 12; ++i) g[i] = (uint8_t)(9 * i);
    write_png("links", "m.png", 4, 3, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    char p[600], t[600];
    for (int k = 0; k < 24; ++k) {
        snprintf(p, sizeof p, "%s/links/dangling%02d.png", dir, k);
        snprintf(t, sizeof t, "%s/links/missing%02d", dir, k);
        ck_assert_int_eq(symlink(t, p), 0);
    }
    snprintf(p, sizeof p, "%s/links/fifo.png", dir);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    snprintf(p, sizeof p, "%s/links/sub.png", dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/links/n.png", dir);
    snprintf(t, sizeof t, "%s/links/m.png", dir);
    ck_assert_int_eq(symlink(t, p), 0);
    int rc = LOAD(pngsrc("links"), 0);
    ck_assert_msg(rc == 0, "rc %d: %s", rc, stochflow_last_error_message());
    ck_assert_uint_eq(cnt, 2); /* m.png and the link n.png */
    ck_assert(memcmp(px, g, 12) == 0 && memcmp(px + 12, g, 12) == 0);
    stochflow_images_free(px);
    /* only dangling links: no .png files (FORMAT), not an I/O error */
    snprintf(p, sizeof p, "%s/links/m.png", dir);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(LOAD(pngsrc("links"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("no .png files");
}
END_TEST

START_TEST(test_load_args) {
    LOCALS;
    ck_assert_status(LOAD("jpeg:/tmp", 0), STOCHFLOW_E_INVALID);
    expect_msg("idx:");
    expect_msg("pngdir:");
    ck_assert_status(LOAD(NULL, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(LOAD("idx:", 0), STOCHFLOW_E_INVALID);
    ck_assert_status(LOAD("pngdir:", 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_load(NULL, &cnt, &ch, &hh, &ww, "idx:x", 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_load(&px, &cnt, NULL, &hh, &ww, "idx:x", 0),
                     STOCHFLOW_E_INVALID);
    /* allocation failures: NOMEM, nothing leaked (valgrind / ASan builds check) */
    uint32_t dims[4] = {3, 2, 2, 3};
    uint8_t h[20], data[36];
    memset(data, 5, sizeof data);
    size_t nh = idx_header(h, 0x08, 4, dims);
    const char *src = write_file("a.gz", 1, h, nh, data, 36);
    char keep[600];
    snprintf(keep, sizeof keep, "%s", src);
    for (uint64_t k = 1; k <= 3; ++k) {
        stochflow__alloc_fail_at(k);
        int rc = LOAD(keep, 0);
        uint64_t made = stochflow__alloc_count();
        stochflow__alloc_fail_at(0);
        if (made >= k) ck_assert_int_eq(rc, STOCHFLOW_E_NOMEM);
        else ck_assert_int_eq(rc, 0);
        if (rc == 0) stochflow_images_free(px);
    }
    write_png("al", "a.png", 2, 2, PNG_COLOR_TYPE_GRAY, 8, data, NULL, 0, NULL, 0, 0);
    write_png("al", "b.png", 2, 2, PNG_COLOR_TYPE_GRAY, 8, data, NULL, 0, NULL, 0, 0);
    snprintf(keep, sizeof keep, "%s", pngsrc("al"));
    for (uint64_t k = 1; k <= 12; ++k) {
        stochflow__alloc_fail_at(k);
        int rc = LOAD(keep, 0);
        uint64_t made = stochflow__alloc_count();
        stochflow__alloc_fail_at(0);
        if (made >= k) ck_assert_int_eq(rc, STOCHFLOW_E_NOMEM);
        else ck_assert_int_eq(rc, 0);
        if (rc == 0) stochflow_images_free(px);
    }
}
END_TEST

/* ---- hostile PNG and IDX bytes: memory bounded from the headers ------------------- */

/* A PNG written byte by byte: chunk = length (as given, so it can lie), type, data, CRC
 * over type + data (zlib's crc32). Appends to a growing buffer. */
typedef struct {
    uint8_t *b;
    size_t n, cap;
} bytes;

static void put(bytes *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        o->cap = 2 * (o->n + n) + 64;
        o->b = realloc(o->b, o->cap);
        ck_assert_ptr_nonnull(o->b);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put_u32(bytes *o, uint32_t v) {
    uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(o, be, 4);
}

static void put_chunk(bytes *o, const char *type, const uint8_t *d, size_t n, uint32_t len) {
    put_u32(o, len);
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)type, 4);
    if (n) crc = (uint32_t)crc32(crc, d, (uInt)n);
    put(o, type, 4);
    if (n) put(o, d, n);
    put_u32(o, crc);
}

/* Signature and IHDR (w, h, depth, colour type, not interlaced). */
static void put_head(bytes *o, uint32_t w, uint32_t h, int depth, int ctype) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    put(o, sig, 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        (uint8_t)depth,     (uint8_t)ctype,     0, 0, 0};
    put_chunk(o, "IHDR", ihdr, 13, 13);
}

/* IDAT of h rows of rowbytes zero bytes (filter byte 0 each), deflated at level 9. */
static void put_zero_idat(bytes *o, size_t rowbytes, uint32_t h) {
    uint8_t *row = calloc(rowbytes + 1, 1);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(deflateInit(&zs, 9), Z_OK);
    bytes z = {0};
    uint8_t out[65536];
    for (uint32_t y = 0; y <= h; ++y) {
        zs.next_in = row;
        zs.avail_in = y < h ? (uInt)(rowbytes + 1) : 0;
        int flush = y < h ? Z_NO_FLUSH : Z_FINISH, ret;
        do {
            zs.next_out = out;
            zs.avail_out = sizeof out;
            ret = deflate(&zs, flush);
            put(&z, out, sizeof out - zs.avail_out);
        } while (zs.avail_out == 0 || (flush == Z_FINISH && ret != Z_STREAM_END));
    }
    deflateEnd(&zs);
    put_chunk(o, "IDAT", z.b, z.n, (uint32_t)z.n);
    free(z.b);
    free(row);
}

static void save(const char *sub, const char *name, const bytes *o) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(o->b, 1, o->n, f), o->n);
    ck_assert_int_eq(fclose(f), 0);
}

/* Run one load in a forked child (so that its peak memory is its own): status, seconds,
 * growth of the peak resident size (getrusage ru_maxrss) during the call, message.
 * as_cap_mb > 0 also caps the child's address space at its size + that much, so that a
 * regression costs the machine at most that (it then shows as NOMEM or a libpng
 * failure instead of a large resident size). */
typedef struct {
    int rc;
    double secs;
    long grow_kb;
    size_t cnt;
    char msg[400];
} probe;

static probe load_in_child(const char *src, size_t max_count, size_t max_values,
                           size_t as_cap_mb) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        probe p;
        memset(&p, 0, sizeof p);
#ifndef UNDER_SANITIZER
        if (as_cap_mb) {
            struct rlimit lim;
            size_t as = address_space();
            lim.rlim_cur = lim.rlim_max = (rlim_t)(as + (as_cap_mb << 20));
            setrlimit(RLIMIT_AS, &lim);
        }
#else
        (void)as_cap_mb;
#endif
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        uint8_t *px = NULL;
        size_t c = 0, h = 0, w = 0;
        double t0 = now_s();
        p.rc = stochflow_images_load_limited(&px, &p.cnt, &c, &h, &w, src, max_count,
                                             max_values);
        p.secs = now_s() - t0;
        getrusage(RUSAGE_SELF, &r1);
        p.grow_kb = r1.ru_maxrss - r0.ru_maxrss;
        snprintf(p.msg, sizeof p.msg, "%s", p.rc ? stochflow_last_error_message() : "");
        stochflow_images_free(px);
        (void)!write(fds[1], &p, sizeof p);
        _exit(0);
    }
    close(fds[1]);
    probe p;
    memset(&p, 0, sizeof p);
    ssize_t k = read(fds[0], &p, sizeof p);
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    ck_assert_msg(k == (ssize_t)sizeof p && WIFEXITED(st), "the loading child died (%d)", st);
    return p;
}

/* Loading directory sub (max_count, in a child with as_cap_mb) is FORMAT with a message
 * containing needle, within a second, and the peak resident size grows by < max_mb. */
static void expect_cheap_format(const char *sub, size_t max_count, size_t as_cap_mb,
                                const char *needle, long max_mb) {
    char src[600];
    snprintf(src, sizeof src, "%s", pngsrc(sub));
    probe p = load_in_child(src, max_count, 0, as_cap_mb);
    ck_assert_msg(p.rc == STOCHFLOW_E_FORMAT, "%s: rc %d (%s)", sub, p.rc, p.msg);
    ck_assert_msg(strstr(p.msg, needle), "message \"%s\" lacks \"%s\"", p.msg, needle);
    ck_assert_msg(p.grow_kb < max_mb * 1024, "%s: peak memory grew by %ld KB", sub, p.grow_kb);
    ck_assert_msg(p.secs < 1.0, "%s: took %.2f s", sub, p.secs);
}

/* A 190-byte PNG whose tEXt chunk claims 2^31 - 1 bytes: libpng used to allocate that
 * much for it (2 GiB resident, 10 s) before finding the file short. Now the ancillary
 * chunks the loader has no use for are skipped without being stored, and libpng's
 * per-chunk allocation limit is set. */
START_TEST(test_png_huge_chunk) {
    bytes o = {0};
    put_head(&o, 8, 8, 8, PNG_COLOR_TYPE_GRAY);
    put_u32(&o, 0x7FFFFFFFu);
    put(&o, "tEXtComment\0hello", 17);
    uint8_t pad[100] = {0};
    put(&o, pad, sizeof pad);
    save("text", "a.png", &o);
    o.n = 0;
    /* the same claim in a zTXt, an iCCP and an unknown ancillary chunk */
    const char *types[3] = {"zTXt", "iCCP", "quIt"};
    for (int k = 0; k < 3; ++k) {
        o.n = 0;
        put_head(&o, 8, 8, 8, PNG_COLOR_TYPE_GRAY);
        put_u32(&o, 0x7FFFFFFFu);
        put(&o, types[k], 4);
        put(&o, "name\0\0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 40);
        char nm[16];
        snprintf(nm, sizeof nm, "%c.png", 'b' + k);
        save("text", nm, &o);
    }
    free(o.b);
    expect_cheap_format("text", 0, 0, "a.png: truncated file", 64);
    /* each of the other three alone (max_count 1 after removing a.png) */
    char path[600];
    for (int k = 0; k < 3; ++k) {
        snprintf(path, sizeof path, "%s/text/%c.png", dir, 'a' + k);
        ck_assert_int_eq(unlink(path), 0);
        expect_cheap_format("text", 1, 0, "truncated file", 64);
    }
}
END_TEST

/* Expansion counts: a 48.7 KB 1-bit palette PNG of 20000 x 20000 pixels (50 MB of rows,
 * within deflate's ratio for its size) expands to 1.2 GB of RGB; it used to load with
 * 2.3 GB resident. The bound is on the bytes the loader allocates (decoded pixels), so
 * it is FORMAT from the header. Likewise 100 files of 566 bytes, 2000 x 2000 1-bit gray
 * each (4 MB decoded per file, 400 MB in all): rejected at the first header. */
START_TEST(test_png_expansion_bomb) {
    bytes o = {0};
    put_head(&o, 20000, 20000, 1, PNG_COLOR_TYPE_PALETTE);
    const uint8_t pal[6] = {0, 0, 0, 255, 255, 255};
    put_chunk(&o, "PLTE", pal, 6, 6);
    put_zero_idat(&o, (20000 + 7) / 8, 20000);
    put_chunk(&o, "IEND", NULL, 0, 0);
    ck_assert_uint_lt(o.n, 60000);
    save("pal", "a.png", &o);
    expect_cheap_format("pal", 0, 1024, "claims 20000 x 20000", 64);

    o.n = 0;
    put_head(&o, 2000, 2000, 1, PNG_COLOR_TYPE_GRAY);
    put_zero_idat(&o, 250, 2000);
    put_chunk(&o, "IEND", NULL, 0, 0);
    ck_assert_uint_lt(o.n, 1000);
    for (int k = 0; k < 100; ++k) {
        char nm[16];
        snprintf(nm, sizeof nm, "%03d.png", k);
        save("hundred", nm, &o);
    }
    free(o.b);
    expect_cheap_format("hundred", 0, 1024, "000.png claims 2000 x 2000", 32);
}
END_TEST

/* Flip the bits of one byte of a file: at offset `at`, or -at bytes before its end. */
static void corrupt_byte(const char *path, long at) {
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, at, at < 0 ? SEEK_END : SEEK_SET), 0);
    int c = fgetc(f);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(f, -1, SEEK_CUR), 0);
    fputc(c ^ 0xFF, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Every header of a directory is read before any file is decoded: a size mismatch in
 * the third file is found before the second file's corrupt pixel data, and the caller's
 * limit on values per image stops a directory of images too large for it before any
 * pixel is decoded or any buffer of the result is allocated. */
START_TEST(test_png_headers_first) {
    LOCALS;
    uint8_t g[64];
    for (int i = 0; i < 64; ++i) g[i] = (uint8_t)(3 * i);
    write_png("hf", "a.png", 8, 8, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    write_png("hf", "b.png", 8, 8, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    write_png("hf", "c.png", 8, 7, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0, NULL, 0, 0);
    char p[600];
    snprintf(p, sizeof p, "%s/hf/b.png", dir);
    corrupt_byte(p, -20); /* IDAT data / CRC: only decoding finds it */
    ck_assert_status(LOAD(pngsrc("hf"), 0), STOCHFLOW_E_FORMAT);
    expect_msg("c.png is 8 x 7");
    ck_assert_status(LOAD(pngsrc("hf"), 2), STOCHFLOW_E_FORMAT); /* c.png not wanted */
    expect_msg("b.png");
    expect_msg("libpng");
    ck_assert_ok(LOAD(pngsrc("hf"), 1));
    ck_assert(memcmp(px, g, 64) == 0);
    stochflow_images_free(px);
    px = NULL;

    /* 300 x 300 gray (90,000 values) with pseudo-random pixels, so no bomb. A caller
     * allowing 65,536 values per image gets FORMAT naming the limit from the header,
     * not the corrupt pixel data of the same file that decoding would report. */
    const uint32_t side = 300;
    uint8_t *noise = malloc((size_t)side * side);
    uint32_t s = 12345;
    for (size_t i = 0; i < (size_t)side * side; ++i) {
        s = s * 1103515245u + 12345u;
        noise[i] = (uint8_t)(s >> 24);
    }
    write_png("lim", "a.png", side, side, PNG_COLOR_TYPE_GRAY, 8, noise, NULL, 0, NULL, 0, 0);
    write_png("lim", "b.png", side, side, PNG_COLOR_TYPE_GRAY, 8, noise, NULL, 0, NULL, 0, 0);
    snprintf(p, sizeof p, "%s/lim/a.png", dir);
    corrupt_byte(p, 2000); /* inside the IDAT data */
    int rc = stochflow_images_load_limited(&px, &cnt, &ch, &hh, &ww, pngsrc("lim"), 0, 65536);
    ck_assert_int_eq(rc, STOCHFLOW_E_FORMAT);
    expect_msg("a.png");
    expect_msg("90000 values");
    expect_msg("65536");
    ck_assert_ptr_null(px);
    ck_assert_uint_eq(cnt + ch + hh + ww, 0);
    /* without the limit, decoding finds the damage */
    ck_assert_status(stochflow_images_load_limited(&px, &cnt, &ch, &hh, &ww, pngsrc("lim"), 0,
                                                   0),
                     STOCHFLOW_E_FORMAT);
    expect_msg("a.png: libpng");
    /* a limit the images fit (and 0, no limit) loads them */
    snprintf(p, sizeof p, "%s/lim/a.png", dir);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_ok(stochflow_images_load_limited(&px, &cnt, &ch, &hh, &ww, pngsrc("lim"), 0,
                                               90000));
    ck_assert_uint_eq(cnt, 1);
    ck_assert(memcmp(px, noise, (size_t)side * side) == 0);
    stochflow_images_free(px);
    free(noise);
}
END_TEST

/* IDX: trailing bytes that are not gzip data after a gzip stream (zlib's gzread ignores
 * them silently), data continuing past the header's size in a stream whose size is not
 * known up front (a FIFO), and the caller's limit checked before allocation. */
START_TEST(test_idx_trailing) {
    LOCALS;
    uint32_t dims[3] = {4, 2, 2};
    uint8_t h[20];
    size_t nh = idx_header(h, 0x08, 3, dims);
    uint8_t *data = pattern(16, 3);
    const char *src = write_file("g.gz", 1, h, nh, data, 16);
    char path[600];
    snprintf(path, sizeof path, "%s", src + 4);
    ck_assert_ok(LOAD(src, 0));
    stochflow_images_free(px);
    px = NULL;
    FILE *f = fopen(path, "ab");
    fputs("garbage", f);
    fclose(f);
    ck_assert_status(LOAD(src, 0), STOCHFLOW_E_FORMAT);
    expect_msg("7 bytes after the gzip data");
    ck_assert_ptr_null(px);
    /* with max_count below N the rest (and what follows it) is not read */
    ck_assert_ok(LOAD(src, 3));
    stochflow_images_free(px);
    px = NULL;
    /* a second gzip member is gzip data: read, and its bytes are data too many */
    src = write_file("g2.gz", 1, h, nh, data, 16);
    snprintf(path, sizeof path, "%s", src + 4);
    gzFile gz = gzopen(path, "ab");
    gzwrite(gz, data, 3);
    gzclose(gz);
    ck_assert_status(LOAD(src, 0), STOCHFLOW_E_FORMAT);
    expect_msg("data continues");
    /* two members splitting the data exactly: fine */
    src = write_file("g3.gz", 1, h, nh, data, 10);
    snprintf(path, sizeof path, "%s", src + 4);
    gz = gzopen(path, "ab");
    gzwrite(gz, data + 10, 6);
    gzclose(gz);
    ck_assert_ok(LOAD(src, 0));
    ck_assert(memcmp(px, data, 16) == 0);
    stochflow_images_free(px);
    px = NULL;

    /* raw and gzip data through a FIFO (no size to check up front): 3 bytes too many */
    for (int gzmode = 0; gzmode <= 1; ++gzmode) {
        uint8_t more[19];
        memcpy(more, data, 16);
        memset(more + 16, 1, 3);
        src = write_file("fifo-src", gzmode, h, nh, more, 19);
        snprintf(path, sizeof path, "%s", src + 4);
        f = fopen(path, "rb");
        uint8_t bytes_in[512];
        size_t nb = fread(bytes_in, 1, sizeof bytes_in, f);
        fclose(f);
        char fifo[600];
        snprintf(fifo, sizeof fifo, "%s/fifo%d", dir, gzmode);
        ck_assert_int_eq(mkfifo(fifo, 0644), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            signal(SIGPIPE, SIG_IGN);
            int fd = open(fifo, O_WRONLY);
            if (fd >= 0) {
                (void)!write(fd, bytes_in, nb);
                close(fd);
            }
            _exit(0);
        }
        char fsrc[620];
        snprintf(fsrc, sizeof fsrc, "idx:%s", fifo);
        int rc = LOAD(fsrc, 0);
        int st;
        waitpid(pid, &st, 0);
        ck_assert_msg(rc == STOCHFLOW_E_FORMAT, "%s FIFO: rc %d", gzmode ? "gzip" : "raw", rc);
        expect_msg("data continues");
        ck_assert_ptr_null(px);
    }

    /* the caller's limit on values per image, from the header, before allocating */
    uint32_t big[3] = {2, 1000, 1000};
    nh = idx_header(h, 0x08, 3, big);
    for (int gzmode = 0; gzmode <= 1; ++gzmode) {
        src = write_file(gzmode ? "l.gz" : "l.idx", gzmode, h, nh, data, 16);
        uint64_t a0 = stochflow__alloc_count();
        int rc = stochflow_images_load_limited(&px, &cnt, &ch, &hh, &ww, src, 0, 65536);
        ck_assert_int_eq(rc, STOCHFLOW_E_FORMAT);
        ck_assert_msg(stochflow__alloc_count() - a0 <= 3, "%llu allocations",
                      (unsigned long long)(stochflow__alloc_count() - a0));
        expect_msg("1000000 values");
        expect_msg("65536");
    }
    /* within the limit: the normal checks apply (here: truncated) */
    ck_assert_status(stochflow_images_load_limited(&px, &cnt, &ch, &hh, &ww, src, 0, 1000000),
                     STOCHFLOW_E_FORMAT);
    expect_msg("truncated");
    free(data);
}
END_TEST

/* ---- numeric ----------------------------------------------------------------------- */

START_TEST(test_quantize_edges) {
    uint8_t q[16];
    const float nan = NAN, inf = INFINITY;
    float x[16] = {-1.0f, 1.0f, 0.0f, -0.0f, nextafterf(0.0f, -1.0f), -1e-30f, 1e-30f, nan,
                   inf, -inf, -2.0f, 5.0f, nextafterf(1.0f, 0.0f), nextafterf(-1.0f, 0.0f),
                   -1.0f + 1.0f / 128.0f, nextafterf(-1.0f + 1.0f / 128.0f, -2.0f)};
    const uint8_t want[16] = {0, 255, 128, 128, 127, 127, 128, 0, 255, 0, 0, 255, 255, 0, 1, 0};
    ck_assert_ok(stochflow_images_quantize(q, x, 16));
    for (int i = 0; i < 16; ++i) ck_assert_msg(q[i] == want[i], "x[%d] = %g -> %u, want %u", i,
                                               (double)x[i], q[i], want[i]);
    /* every bin's lower edge maps to the bin, the float just below it to the bin below */
    for (int p = 0; p < 256; ++p) {
        float lo = (float)(p - 128) / 128.0f, below = nextafterf(lo, -2.0f);
        ck_assert_ok(stochflow_images_quantize(q, &lo, 1));
        ck_assert_uint_eq(q[0], (unsigned)p);
        ck_assert_ok(stochflow_images_quantize(q, &below, 1));
        ck_assert_uint_eq(q[0], p == 0 ? 0u : (unsigned)(p - 1));
    }
    /* bin centres */
    uint8_t all[256];
    float c[256];
    for (int p = 0; p < 256; ++p) all[p] = (uint8_t)p;
    ck_assert_ok(stochflow_images_to_float(c, all, 256));
    ck_assert_float_eq(c[0], -1.0f + 1.0f / 256.0f);
    ck_assert_float_eq(c[255], 1.0f - 1.0f / 256.0f);
    for (int p = 0; p < 256; ++p)
        ck_assert_double_eq_tol(c[p], 2.0 * (p + 0.5) / 256.0 - 1.0, 1e-7);
    ck_assert_ok(stochflow_images_quantize(q, c, 16));
    for (int p = 0; p < 16; ++p) ck_assert_uint_eq(q[p], (unsigned)p);
    ck_assert_status(stochflow_images_quantize(NULL, x, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_quantize(q, NULL, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_to_float(NULL, all, 1), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_images_to_float(NULL, NULL, 0));
}
END_TEST

START_TEST(test_dequantize) {
    const size_t reps = 400, n = 256 * reps;
    uint8_t *p = malloc(n), *q = malloc(n);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; ++i) p[i] = (uint8_t)(i * 31 % 256);
    ck_assert_ok(stochflow_images_dequantize(x, p, n, 42, 3));
    double offset = 0;
    for (size_t i = 0; i < n; ++i) {
        ck_assert_msg(x[i] >= -1.0f && x[i] < 1.0f, "x[%zu] = %.9g out of [-1, 1)", i,
                      (double)x[i]);
        offset += ((double)x[i] + 1.0) * 128.0 - p[i]; /* = u_i */
    }
    ck_assert_ok(stochflow_images_quantize(q, x, n));
    ck_assert_msg(memcmp(p, q, n) == 0, "quantize(dequantize(p)) != p");
    /* mean of u ~ 1/2 (standard error 0.29 / sqrt(n) = 9e-4) */
    offset /= (double)n;
    ck_assert_msg(fabs(offset - 0.5) < 0.005, "mean offset %.4f", offset);
    /* prefix property across the 1024-value blocks; seed and stream matter */
    float *y = malloc(n * sizeof *y);
    size_t ms[4] = {1, 1023, 1025, 5000};
    for (int k = 0; k < 4; ++k) {
        ck_assert_ok(stochflow_images_dequantize(y, p, ms[k], 42, 3));
        ck_assert(memcmp(x, y, ms[k] * sizeof *y) == 0);
    }
    ck_assert_ok(stochflow_images_dequantize(y, p, 2048, 42, 4));
    size_t same = 0;
    for (size_t i = 0; i < 2048; ++i) same += x[i] == y[i];
    ck_assert_uint_lt(same, 20);
    ck_assert_ok(stochflow_images_dequantize(y, p, 2048, 43, 3));
    same = 0;
    for (size_t i = 0; i < 2048; ++i) same += x[i] == y[i];
    ck_assert_uint_lt(same, 20);
    /* the upper bin edge: p - 128 + u rounds up to p - 127 in float when u >= 1 - 2^-18
     * for p = 0 and 255 (|value| in [64, 128], ulp 2^-17): about 16 of 2^22 draws each,
     * which must come out as the largest float below the edge, still in bin p */
    {
        const size_t big = (size_t)1 << 22;
        uint8_t *pe = malloc(big), *qe = malloc(big);
        float *xe = malloc(big * sizeof *xe);
        for (int v = 0; v < 2; ++v) {
            const uint8_t pv = v ? 255 : 0;
            memset(pe, pv, big);
            ck_assert_ok(stochflow_images_dequantize(xe, pe, big, 7, 11));
            ck_assert_ok(stochflow_images_quantize(qe, xe, big));
            const float edge = nextafterf((float)(pv - 127) / 128.0f, -2.0f);
            size_t at_edge = 0, wrong = 0, first = big;
            for (size_t i = 0; i < big; ++i) {
                at_edge += xe[i] == edge;
                if (qe[i] != pv && wrong++ == 0) first = i;
            }
            ck_assert_msg(wrong == 0, "p = %u: %zu values leave the bin, first x[%zu] = %.9g",
                          pv, wrong, first, first < big ? (double)xe[first] : 0.0);
            /* Poisson(16): P(0) = 1e-7, P(> 60) negligible */
            ck_assert_msg(at_edge >= 1 && at_edge < 60, "p = %u: %zu values at the edge", pv,
                          at_edge);
        }
        free(pe);
        free(qe);
        free(xe);
    }
    ck_assert_status(stochflow_images_dequantize(y, p, 1, 1, 1ull << 32), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_dequantize(NULL, p, 1, 1, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_dequantize(y, NULL, 1, 1, 1), STOCHFLOW_E_INVALID);
    ck_assert_ok(stochflow_images_dequantize(NULL, NULL, 0, 1, 1));
    free(p);
    free(q);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_bits_per_dim) {
    const double ln2 = log(2.0);
    size_t dims[4] = {1, 784, 3072, 1000000};
    for (int k = 0; k < 4; ++k) {
        double D = (double)dims[k];
        /* uniform on [-1, 1]^D: density 2^-D -> 8 bits (one byte, no information) */
        ck_assert_double_eq_tol(stochflow_bits_per_dim(-D * ln2, dims[k]), 8.0, 1e-12);
        /* uniform on one bin per dimension (width 2/256): density 128^D -> 0 bits */
        ck_assert_double_eq_tol(stochflow_bits_per_dim(D * log(128.0), dims[k]), 0.0, 1e-12);
        /* standard normal at its mode: logp = -D/2 log(2 pi) -> 7 + log2(2 pi)/2 */
        ck_assert_double_eq_tol(stochflow_bits_per_dim(-0.5 * D * log(2 * M_PI), dims[k]),
                                7.0 + 0.5 * log2(2 * M_PI), 1e-12);
    }
    ck_assert(isnan(stochflow_bits_per_dim(-1.0, 0)));
}
END_TEST

/* ---- grid -------------------------------------------------------------------------- */

static uint8_t *read_png(const char *path, int channels, uint32_t *w, uint32_t *h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "read: %s", img.message);
    img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
    ck_assert_msg(png_image_finish_read(&img, NULL, buf, 0, NULL), "read: %s", img.message);
    *w = img.width;
    *h = img.height;
    return buf;
}

START_TEST(test_grid) {
    /* 5 gray 3x4 images, ncols 0 -> 3 columns, 2 rows */
    const size_t n = 5, H = 3, W = 4, hw = 12;
    uint8_t p[5 * 12];
    for (size_t i = 0; i < n * hw; ++i) p[i] = (uint8_t)(i * 4 + 1);
    float x[5 * 12];
    ck_assert_ok(stochflow_images_to_float(x, p, n * hw));
    char path[600];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    ck_assert_ok(stochflow_images_write_grid(path, x, n, 1, H, W, 0));
    uint32_t gw, gh;
    uint8_t *g = read_png(path, 1, &gw, &gh);
    ck_assert_uint_eq(gw, 3 * (W + 2) + 2);
    ck_assert_uint_eq(gh, 2 * (H + 2) + 2);
    for (size_t k = 0; k < n; ++k) {
        size_t oy = 2 + (k / 3) * (H + 2), ox = 2 + (k % 3) * (W + 2);
        for (size_t y = 0; y < H; ++y)
            for (size_t xx = 0; xx < W; ++xx)
                ck_assert_uint_eq(g[(oy + y) * gw + ox + xx], p[k * hw + y * W + xx]);
    }
    ck_assert_uint_eq(g[0], 128);                           /* corner border */
    ck_assert_uint_eq(g[2 * gw + 2 + W], 128);              /* between columns */
    ck_assert_uint_eq(g[(2 + H + 2 + 1) * gw + 2 + 2 * (W + 2)], 128); /* empty cell */
    free(g);

    /* RGB: planar in, interleaved in the file; explicit ncols wider than n */
    float c[2 * 3 * 2 * 2];
    uint8_t pc[24];
    for (int i = 0; i < 24; ++i) pc[i] = (uint8_t)(10 * i);
    ck_assert_ok(stochflow_images_to_float(c, pc, 24));
    ck_assert_ok(stochflow_images_write_grid(path, c, 2, 3, 2, 2, 4));
    g = read_png(path, 3, &gw, &gh);
    ck_assert_uint_eq(gw, 4 * 4 + 2);
    ck_assert_uint_eq(gh, 1 * 4 + 2);
    for (size_t k = 0; k < 2; ++k)
        for (size_t y = 0; y < 2; ++y)
            for (size_t xx = 0; xx < 2; ++xx)
                for (size_t ch = 0; ch < 3; ++ch)
                    ck_assert_uint_eq(g[((2 + y) * gw + 2 + k * 4 + xx) * 3 + ch],
                                      pc[k * 12 + ch * 4 + y * 2 + xx]);
    free(g);

    /* errors */
    ck_assert_status(stochflow_images_write_grid(NULL, x, 1, 1, 3, 4, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_write_grid(path, NULL, 1, 1, 3, 4, 0),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_write_grid(path, x, 0, 1, 3, 4, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_write_grid(path, x, 1, 2, 3, 4, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_write_grid(path, x, 1, 1, 0, 4, 0), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_write_grid(path, x, 1, 1, 3, 4, 1u << 20),
                     STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_images_write_grid(path, x, SIZE_MAX / 2, 1, 3, 4, 1),
                     STOCHFLOW_E_INVALID);
    snprintf(path, sizeof path, "%s/no/such/grid.png", dir);
    ck_assert_status(stochflow_images_write_grid(path, x, 1, 1, 3, 4, 0), STOCHFLOW_E_IO);
}
END_TEST

START_TEST(test_grid_square) {
    /* ncols 0 = ceil(sqrt(n)) for n = 1..50 */
    float x[50 * 4];
    memset(x, 0, sizeof x);
    char path[600];
    snprintf(path, sizeof path, "%s/sq.png", dir);
    for (size_t n = 1; n <= 50; n += 7) {
        ck_assert_ok(stochflow_images_write_grid(path, x, n, 1, 2, 2, 0));
        uint32_t gw, gh;
        uint8_t *g = read_png(path, 1, &gw, &gh);
        size_t cols = (size_t)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
        ck_assert_uint_eq(gw, cols * 4 + 2);
        ck_assert_uint_eq(gh, rows * 4 + 2);
        free(g);
    }
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("images");
    TCase *tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_idx_gray);
    tcase_add_test(tc, test_idx_rgb);
    tcase_add_test(tc, test_idx_malformed);
    tcase_add_test(tc, test_idx_hostile);
    tcase_add_test(tc, test_idx_trailing);
    tcase_add_test(tc, test_fashion_mnist);
    suite_add_tcase(s, tc);
    tc = tcase_create("pngdir");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_png_gray);
    tcase_add_test(tc, test_png_color);
    tcase_add_test(tc, test_png_errors);
    tcase_add_test(tc, test_png_hostile);
    tcase_add_test(tc, test_png_links);
    tcase_add_test(tc, test_png_huge_chunk);
    tcase_add_test(tc, test_png_expansion_bomb);
    tcase_add_test(tc, test_png_headers_first);
    tcase_add_test(tc, test_load_args);
    suite_add_tcase(s, tc);
    tc = tcase_create("core");
    tcase_add_test(tc, test_quantize_edges);
    tcase_add_test(tc, test_dequantize);
    tcase_add_test(tc, test_bits_per_dim);
    suite_add_tcase(s, tc);
    tc = tcase_create("grid");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_grid);
    tcase_add_test(tc, test_grid_square);
    suite_add_tcase(s, tc);
    return s;
}
