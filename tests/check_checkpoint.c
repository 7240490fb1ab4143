/* check_checkpoint.c - save/load round trips, bit-for-bit resume, atomic files, and
 * every kind of damaged file: truncated, bit-flipped, wrong version, hostile sizes. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static stochflow_model *small_model(uint64_t seed, int ema) {
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;
    const size_t widths[] = {24, 24};
    ck_assert_ok(stochflow_config_new(&c, 2));
    ck_assert_ok(stochflow_config_set_hidden(c, 2, widths));
    ck_assert_ok(stochflow_config_set_time_embedding(c, STOCHFLOW_TIME_FOURIER, 2));
    ck_assert_ok(stochflow_config_set_seed(c, seed));
    ck_assert_ok(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_STEP));
    ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_DECAY_EVERY, 4));
    if (ema) ck_assert_ok(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.9));
    return m;
}

static void steps(stochflow_model *m, int from, int to) {
    float x1[64 * 2];
    for (int s = from; s < to; ++s) {
        double loss;
        stochflow_random_normal(x1, 128, 31, (uint64_t)s);
        ck_assert_ok(stochflow_model_train_step(&loss, m, x1, 64, NULL, NULL));
    }
}

static unsigned char *serialize(stochflow_model *m, size_t *len) {
    ck_assert_ok(stochflow_model_serialized_size(len, m));
    unsigned char *buf = malloc(*len);
    size_t written = 0;
    ck_assert_ok(stochflow_model_save_buffer(&written, buf, *len, m));
    ck_assert_uint_eq(written, *len);
    return buf;
}

static char tmpdir[256];

static void make_tmpdir(void) {
    strcpy(tmpdir, "/tmp/stochflow-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

START_TEST(resume_is_bitwise) {
    for (int ema = 0; ema < 2; ++ema) {
        stochflow_model *a = small_model(7, ema);
        steps(a, 0, 10);
        make_tmpdir();
        char path[300];
        snprintf(path, sizeof path, "%s/model.sfm", tmpdir);
        ck_assert_ok(stochflow_model_save(a, path));
        stochflow_model *b = NULL;
        ck_assert_ok(stochflow_model_load(&b, path));
        ck_assert_uint_eq(stochflow_model_step(b), 10);
        steps(a, 10, 20);
        steps(b, 10, 20);
        size_t la, lb;
        unsigned char *sa = serialize(a, &la), *sb = serialize(b, &lb);
        ck_assert_uint_eq(la, lb);
        ck_assert_int_eq(memcmp(sa, sb, la), 0);
        /* evaluation (EMA weights when on) agrees too */
        float x[4] = {0.1f, -0.3f, 1.0f, 2.0f}, va[4], vb[4];
        ck_assert_ok(stochflow_model_velocity(va, a, 0.4, x, 2));
        ck_assert_ok(stochflow_model_velocity(vb, b, 0.4, x, 2));
        ck_assert_int_eq(memcmp(va, vb, sizeof va), 0);
        double v;
        ck_assert_ok(stochflow_model_get_param(&v, b, STOCHFLOW_PARAM_LR_DECAY_EVERY));
        ck_assert_double_eq(v, 4);
        free(sa);
        free(sb);
        unlink(path);
        rmdir(tmpdir);
        stochflow_model_free(a);
        stochflow_model_free(b);
    }
}
END_TEST

START_TEST(buffer_round_trip) {
    stochflow_model *a = small_model(3, 1);
    steps(a, 0, 3);
    size_t len;
    unsigned char *buf = serialize(a, &len);
    stochflow_model *b = NULL;
    ck_assert_ok(stochflow_model_load_buffer(&b, buf, len));
    size_t len2;
    unsigned char *buf2 = serialize(b, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_int_eq(memcmp(buf, buf2, len), 0);
    stochflow_config *c = NULL;
    ck_assert_ok(stochflow_model_config(&c, b));
    size_t w[4], nh = 0;
    ck_assert_ok(stochflow_config_hidden(&nh, w, 4, c));
    ck_assert_uint_eq(nh, 2);
    ck_assert_uint_eq(w[1], 24);
    size_t nf;
    int kind;
    ck_assert_ok(stochflow_config_time_embedding(&kind, &nf, c));
    ck_assert_int_eq(kind, STOCHFLOW_TIME_FOURIER);
    ck_assert_uint_eq(nf, 2);
    ck_assert_uint_eq(stochflow_config_seed(c), 3);
    stochflow_config_free(c);
    /* too small a buffer */
    ck_assert_status(stochflow_model_save_buffer(NULL, buf2, len - 1, a), STOCHFLOW_E_INVALID);
    free(buf);
    free(buf2);
    stochflow_model_free(a);
    stochflow_model_free(b);
}
END_TEST

/* Files written by an earlier build (tests/make_checkpoint_fixtures.c) load, and saving
 * them again gives the same bytes: the format, every section included, is unchanged. */
START_TEST(stored_files_round_trip) {
    const char *dir = getenv("STOCHFLOW_TEST_DATA");
    ck_assert_ptr_nonnull(dir);
    const struct {
        const char *name;
        uint64_t step;
        int arch, interpolant;
    } files[] = {{"mlp_ema.sfm", 3, STOCHFLOW_ARCH_MLP, STOCHFLOW_INTERP_TRIG},
                 {"unet.sfm", 1, STOCHFLOW_ARCH_UNET, STOCHFLOW_INTERP_TRIG},
                 {"fourier.sfm", 2, STOCHFLOW_ARCH_MLP, STOCHFLOW_INTERP_FOURIER}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; ++i) {
        char path[1024];
        snprintf(path, sizeof path, "%s/checkpoints/%s", dir, files[i].name);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        unsigned char stored[1 << 15];
        size_t len = fread(stored, 1, sizeof stored, f);
        fclose(f);
        ck_assert_uint_gt(len, 0);
        ck_assert_uint_lt(len, sizeof stored);
        stochflow_model *m = NULL;
        ck_assert_ok(stochflow_model_load(&m, path));
        ck_assert_uint_eq(stochflow_model_step(m), files[i].step);
        stochflow_config *c = NULL;
        ck_assert_ok(stochflow_model_config(&c, m));
        ck_assert_int_eq(stochflow_config_arch(c), files[i].arch);
        ck_assert_int_eq(stochflow_config_interpolant(c), files[i].interpolant);
        stochflow_config_free(c);
        size_t len2;
        unsigned char *again = serialize(m, &len2);
        ck_assert_uint_eq(len2, len);
        ck_assert_msg(memcmp(again, stored, len) == 0, "%s saved differently", files[i].name);
        free(again);
        stochflow_model_free(m);
    }
    /* the hyperparameters the MLP was saved with come back */
    char path[1024];
    snprintf(path, sizeof path, "%s/checkpoints/mlp_ema.sfm", dir);
    stochflow_model *m = NULL;
    ck_assert_ok(stochflow_model_load(&m, path));
    double v;
    ck_assert_ok(stochflow_model_get_param(&v, m, STOCHFLOW_PARAM_WEIGHT_DECAY));
    ck_assert_double_eq(v, 0.01);
    ck_assert_ok(stochflow_model_get_param(&v, m, STOCHFLOW_PARAM_EMA_DECAY));
    ck_assert_double_eq(v, 0.9);
    ck_assert_ok(stochflow_model_get_param(&v, m, STOCHFLOW_PARAM_LR_DECAY_EVERY));
    ck_assert_double_eq(v, 4);
    stochflow_model_free(m);
}
END_TEST

START_TEST(damaged_files) {
    stochflow_model *a = small_model(5, 0);
    size_t len;
    unsigned char *buf = serialize(a, &len);
    stochflow_model *b = (stochflow_model *)0x1;
    /* every truncation */
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 97)) {
        int rc = stochflow_model_load_buffer(&b, buf, cut);
        ck_assert_msg(rc == STOCHFLOW_E_FORMAT, "truncated to %zu: %d", cut, rc);
        ck_assert_ptr_null(b);
    }
    /* single bit flips anywhere: checksum (or magic/version) catches them */
    for (size_t pos = 0; pos < len; pos += 13) {
        buf[pos] ^= 0x10;
        int rc = stochflow_model_load_buffer(&b, buf, len);
        ck_assert_msg(rc == STOCHFLOW_E_FORMAT || rc == STOCHFLOW_E_VERSION,
                      "flip at %zu gave %d", pos, rc);
        buf[pos] ^= 0x10;
    }
    /* wrong version with a valid checksum */
    unsigned char *v2 = malloc(len);
    memcpy(v2, buf, len);
    v2[8] = 2;
    uint32_t crc = stochflow__crc32(v2, len - 4);
    for (int k = 0; k < 4; ++k) v2[len - 4 + k] = (unsigned char)(crc >> (8 * k));
    ck_assert_status(stochflow_model_load_buffer(&b, v2, len), STOCHFLOW_E_VERSION);
    /* hostile size: CONF claims a huge width, checksum fixed up: rejected before any
     * allocation of that size (the weights are not in the file) */
    memcpy(v2, buf, len);
    /* CONF body starts at 24 + 16; widths at +32 */
    v2[24 + 16 + 32] = 0xff;
    v2[24 + 16 + 33] = 0xff;
    crc = stochflow__crc32(v2, len - 4);
    for (int k = 0; k < 4; ++k) v2[len - 4 + k] = (unsigned char)(crc >> (8 * k));
    stochflow__alloc_fail_at(0);
    ck_assert_status(stochflow_model_load_buffer(&b, v2, len), STOCHFLOW_E_FORMAT);
    ck_assert_uint_eq(stochflow__alloc_count(), 0);
    /* not a checkpoint at all */
    ck_assert_status(stochflow_model_load_buffer(&b, "hello world, not a model file", 30),
                     STOCHFLOW_E_FORMAT);
    ck_assert_status(stochflow_model_load_buffer(&b, NULL, 30), STOCHFLOW_E_INVALID);
    ck_assert_status(stochflow_model_load_buffer(NULL, buf, len), STOCHFLOW_E_INVALID);
    free(v2);
    free(buf);
    stochflow_model_free(a);
}
END_TEST

START_TEST(io_errors_keep_old_file) {
    stochflow_model *a = small_model(9, 0), *b = NULL;
    make_tmpdir();
    char path[300];
    snprintf(path, sizeof path, "%s/keep.sfm", tmpdir);
    ck_assert_ok(stochflow_model_save(a, path));
    ck_assert_status(stochflow_model_load(&b, "/nonexistent/dir/x.sfm"), STOCHFLOW_E_IO);
    ck_assert_status(stochflow_model_save(a, "/nonexistent/dir/x.sfm"), STOCHFLOW_E_IO);
    ck_assert_status(stochflow_model_load(&b, tmpdir), STOCHFLOW_E_IO); /* a directory */
    if (geteuid() != 0) {
        /* unwritable directory: save fails with IO, the old file is intact */
        chmod(tmpdir, 0500);
        steps(a, 0, 1);
        ck_assert_status(stochflow_model_save(a, path), STOCHFLOW_E_IO);
        chmod(tmpdir, 0700);
        ck_assert_ok(stochflow_model_load(&b, path));
        ck_assert_uint_eq(stochflow_model_step(b), 0);
        stochflow_model_free(b);
    }
    /* a directory as the target path: rename fails, nothing is left behind */
    char sub[320];
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert_status(stochflow_model_save(a, sub), STOCHFLOW_E_IO);
    rmdir(sub);
    unlink(path);
    ck_assert_int_eq(rmdir(tmpdir), 0); /* empty: no temporary file left */
    stochflow_model_free(a);
}
END_TEST

START_TEST(load_out_of_memory) {
    stochflow_model *a = small_model(4, 1);
    steps(a, 0, 2);
    size_t len;
    unsigned char *buf = serialize(a, &len);
    int saw = 0;
    for (uint64_t k = 1; k < 10; ++k) {
        stochflow_model *b = NULL;
        stochflow__alloc_fail_at(k);
        int rc = stochflow_model_load_buffer(&b, buf, len);
        stochflow__alloc_fail_at(0);
        if (rc == STOCHFLOW_E_NOMEM) {
            saw = 1;
            ck_assert_ptr_null(b);
            continue;
        }
        ck_assert_ok(rc);
        stochflow_model_free(b);
        break;
    }
    ck_assert(saw);
    /* the existing model is still usable */
    steps(a, 2, 3);
    free(buf);
    stochflow_model_free(a);
}
END_TEST

Suite *make_suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, resume_is_bitwise);
    tcase_add_test(tc, buffer_round_trip);
    tcase_add_test(tc, stored_files_round_trip);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, damaged_files);
    tcase_add_test(te, io_errors_keep_old_file);
    tcase_add_test(te, load_out_of_memory);
    suite_add_tcase(s, te);
    return s;
}
