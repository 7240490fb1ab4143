/* check_png.c - stochflow_png_write: pixels read back with libpng's simplified API equal
 * what was written (gray, RGB, RGBA); argument errors; I/O errors leave no file behind;
 * the write is atomic (an existing target is replaced whole, never half-written). */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <sys/stat.h>
#include <png.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static char dir[256];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/sfpng.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int count_entries(void) {
    DIR *d = opendir(dir);
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) ++k;
    closedir(d);
    return k;
}

/* Write, read back with png_image (libpng simplified API), compare. */
static void roundtrip(int channels, uint32_t w, uint32_t h) {
    size_t n = (size_t)w * h * channels;
    uint8_t *px = malloc(n);
    for (size_t i = 0; i < n; ++i) px[i] = (uint8_t)(i * 37 + i / 7);
    char path[300];
    snprintf(path, sizeof path, "%s/img%d.png", dir, channels);
    ck_assert_ok(stochflow_png_write(path, px, w, h, channels));
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "read: %s", img.message);
    ck_assert_uint_eq(img.width, w);
    ck_assert_uint_eq(img.height, h);
    img.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    uint8_t *back = malloc(PNG_IMAGE_SIZE(img));
    ck_assert_msg(png_image_finish_read(&img, NULL, back, 0, NULL), "read: %s", img.message);
    ck_assert_uint_eq(PNG_IMAGE_SIZE(img), n);
    ck_assert_msg(memcmp(px, back, n) == 0, "pixels differ after the round trip");
    free(back);
    free(px);
}

START_TEST(test_roundtrip) {
    roundtrip(1, 17, 5);
    roundtrip(3, 64, 48);
    roundtrip(4, 1, 1);
    roundtrip(3, 1000, 3);
    /* no temporary files are left behind */
    ck_assert_int_eq(count_entries(), 3); /* img1, img3 (written twice), img4 */
}
END_TEST

START_TEST(test_replace) {
    char path[300];
    snprintf(path, sizeof path, "%s/r.png", dir);
    uint8_t a[12] = {0}, b[12];
    memset(b, 200, sizeof b);
    ck_assert_ok(stochflow_png_write(path, a, 2, 2, 3));
    ck_assert_ok(stochflow_png_write(path, b, 2, 2, 3));
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert(png_image_begin_read_from_file(&img, path));
    img.format = PNG_FORMAT_RGB;
    uint8_t back[12];
    ck_assert(png_image_finish_read(&img, NULL, back, 0, NULL));
    ck_assert(memcmp(back, b, 12) == 0);
    ck_assert_int_eq(count_entries(), 1);
}
END_TEST

START_TEST(test_errors) {
    uint8_t px[16] = {0};
    char path[300];
    snprintf(path, sizeof path, "%s/e.png", dir);
    ck_assert_status(stochflow_png_write(NULL, px, 2, 2, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_png_write("", px, 2, 2, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_png_write(path, NULL, 2, 2, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_png_write(path, px, 2, 2, 2), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_png_write(path, px, 0, 2, 1), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_png_write(path, px, 2, 2000000, 1), STOCHFLOW_E_INVALID);
    /* a directory that does not exist: I/O error, nothing created */
    char bad[320];
    snprintf(bad, sizeof bad, "%s/no/such/dir.png", dir);
    ck_assert_status(stochflow_png_write(bad, px, 2, 2, 1), STOCHFLOW_E_IO);
    ck_assert_ptr_nonnull(strstr(stochflow_last_error_message(), "no/such"));
    /* the target is a directory: rename fails, the temporary file is removed */
    char sub[320];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    char inside[340];
    snprintf(inside, sizeof inside, "%s/x", sub);
    ck_assert_int_eq(mkdir(inside, 0755), 0);
    ck_assert_status(stochflow_png_write(sub, px, 2, 2, 1), STOCHFLOW_E_IO);
    ck_assert_int_eq(count_entries(), 1); /* only sub/ */
    rmdir(inside);
    rmdir(sub);
    /* out of memory on the temporary name */
    stochflow__alloc_fail_at(1);
    ck_assert_status(stochflow_png_write(path, px, 2, 2, 1), STOCHFLOW_E_NOMEM);
    stochflow__alloc_fail_at(0);
    ck_assert_int_eq(count_entries(), 0);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("png");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_roundtrip);
    tcase_add_test(core, test_replace);
    suite_add_tcase(s, core);
    TCase *err = tcase_create("errors");
    tcase_add_checked_fixture(err, setup, teardown);
    tcase_add_test(err, test_errors);
    suite_add_tcase(s, err);
    return s;
}
