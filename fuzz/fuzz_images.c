/* fuzz_images.c - the checks shared by fuzz_idx and fuzz_pngdir: one source loaded three
 * ways (everything; max_count 1; a limit on values per image). */
#include <string.h>

#include "fuzz.h"
#include "stochflow.h"

typedef struct {
    int rc;
    uint8_t *px;
    size_t n, c, h, w;
} loaded;

/* On failure: FORMAT (or NOMEM) with a message, NULL pixels and zero sizes. */
static loaded load(const char *src, size_t max_count, size_t max_values) {
    loaded l;
    l.px = (uint8_t *)&l; /* must be overwritten */
    l.n = l.c = l.h = l.w = 7;
    l.rc = stochflow_images_load_limited(&l.px, &l.n, &l.c, &l.h, &l.w, src, max_count,
                                         max_values);
    if (l.rc != 0) {
        FUZZ_CHECK(l.rc == STOCHFLOW_E_FORMAT || l.rc == STOCHFLOW_E_NOMEM);
        FUZZ_CHECK(l.px == NULL && l.n == 0 && l.c == 0 && l.h == 0 && l.w == 0);
        const char *m = stochflow_last_error_message();
        FUZZ_CHECK(m != NULL && m[0] != '\0');
    }
    return l;
}

int fuzz_images_check(const char *src, size_t limit, size_t *count, size_t *per_image) {
    loaded all = load(src, 0, 0);
    if (all.rc != 0) return 0;
    FUZZ_CHECK(all.px != NULL && all.n > 0 && (all.c == 1 || all.c == 3));
    FUZZ_CHECK(all.h > 0 && all.w > 0);
    size_t per = all.c * all.h * all.w;
    FUZZ_CHECK(per <= SIZE_MAX / all.n);
    unsigned sum = 0; /* every byte readable (the sanitizers check) */
    for (size_t i = 0; i < all.n * per; ++i) sum += all.px[i];
    (void)sum;

    loaded one = load(src, 1, 0);
    FUZZ_CHECK(one.rc == 0 && one.n == 1 && one.c == all.c && one.h == all.h &&
               one.w == all.w);
    FUZZ_CHECK(memcmp(one.px, all.px, per) == 0);
    stochflow_images_free(one.px);

    loaded lim = load(src, 0, limit);
    FUZZ_CHECK((lim.rc == 0) == (per <= limit));
    if (lim.rc == 0) FUZZ_CHECK(lim.n == all.n && memcmp(lim.px, all.px, all.n * per) == 0);
    stochflow_images_free(lim.px);
    stochflow_images_free(all.px);
    *count = all.n;
    *per_image = per;
    return 1;
}
