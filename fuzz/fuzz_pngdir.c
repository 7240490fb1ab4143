/* fuzz_pngdir.c - stochflow_images_load_limited("pngdir:DIR") on arbitrary bytes.
 * The input is cut into files at each PNG signature (89 50 4E 47 0D 0A 1A 0A), at most
 * 8, written as f0.png, f1.png, ... into a directory of this process (bytes before the
 * first signature form a file of their own); so a seed is one PNG file or several
 * concatenated. The shared checks of fuzz_images_check (limit 64 values), one image
 * per file, and each image within the decompression-bomb bound of the smallest file
 * (1100 x its size + 4096 bytes). */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#define MAX_FILES 8

static char dir[64];
static size_t n_written;

static void remove_dir(void) {
    char p[96];
    for (size_t i = 0; i < MAX_FILES; ++i) {
        snprintf(p, sizeof p, "%s/f%zu.png", dir, i);
        unlink(p);
    }
    rmdir(dir);
}

static int write_all(const char *path, const uint8_t *d, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, d + done, n - done);
        if (k <= 0) break;
        done += (size_t)k;
    }
    close(fd);
    return done == n ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (dir[0] == '\0') {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/sf-fuzz-png.XXXXXX", base);
        if (mkdtemp(dir) == NULL) {
            dir[0] = '\0';
            return 0;
        }
        atexit(remove_dir);
    }
    /* cut points: 0 and every signature after it */
    size_t start[MAX_FILES + 1], nf = 0;
    start[nf++] = 0;
    for (size_t i = 1; i + 8 <= size && nf < MAX_FILES; ++i)
        if (memcmp(data + i, sig, 8) == 0) start[nf++] = i;
    start[nf] = size;
    char p[96];
    size_t smallest = SIZE_MAX;
    for (size_t i = 0; i < nf; ++i) {
        snprintf(p, sizeof p, "%s/f%zu.png", dir, i);
        size_t len = start[i + 1] - start[i];
        if (write_all(p, data + start[i], len) != 0) return 0;
        if (len < smallest) smallest = len;
    }
    for (size_t i = nf; i < n_written; ++i) {
        snprintf(p, sizeof p, "%s/f%zu.png", dir, i);
        unlink(p);
    }
    n_written = nf;

    char src[96];
    snprintf(src, sizeof src, "pngdir:%s", dir);
    size_t n = 0, per = 0;
    if (!fuzz_images_check(src, 64, &n, &per)) return 0;
    FUZZ_CHECK(n == nf);                         /* one image per file */
    FUZZ_CHECK(per <= 1100 * smallest + 4096);   /* the decompression-bomb bound */
    return 0;
}
