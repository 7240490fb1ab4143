/* replay.c - the fuzz smoke run of the normal test suite, without libFuzzer.
 *
 *   replay_<target> CORPUS_DIR [MUTATIONS [SEED]]
 *
 * Feeds every file of CORPUS_DIR (sorted by name: the seeds and the regression inputs
 * of past crashes) to the target's LLVMFuzzerTestOneInput, then MUTATIONS inputs made
 * from them by a deterministic mutator (xorshift64*, seeded by SEED): bit flips,
 * random and boundary bytes, 32/64-bit boundary integers (huge sizes and counts),
 * insertions, deletions, truncations and chunk copies, one to six at a time. A broken
 * invariant aborts, which fails the test; with the sanitizer build (.ci/sanitize) any
 * memory or UB error does too. Prints the number of inputs tried. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

typedef struct {
    uint8_t *data;
    size_t size;
} blob;

/* The input being run, written to ./replay-crash-<pid> if the target crashes, so that it
 * can be turned into a corpus regression file. */
static const uint8_t *current;
static size_t current_size;

static void on_crash(int sig) {
    char name[64];
    snprintf(name, sizeof name, "replay-crash-%d", (int)getpid());
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (current_size) (void)!write(fd, current, current_size);
        close(fd);
        static const char msg[] = "replay: crashing input saved as ./replay-crash-<pid>\n";
        (void)!write(2, msg, sizeof msg - 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void run_one(const uint8_t *data, size_t size) {
    current = data;
    current_size = size;
    LLVMFuzzerTestOneInput(data, size);
}

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_file(blob *out, const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return -1;
    }
    out->size = (size_t)st.st_size;
    out->data = malloc(out->size ? out->size : 1);
    size_t got = out->data ? fread(out->data, 1, out->size, f) : 0;
    fclose(f);
    if (out->data == NULL || got != out->size) {
        free(out->data);
        return -1;
    }
    return 0;
}

/* Mutate buf[0..*len) in place; cap is the buffer's capacity. */
static void mutate(uint8_t *buf, size_t *len, size_t cap) {
    static const uint64_t boundary[] = {0,          1,          0x7F,       0x80,
                                        0xFF,       0x7FFF,     0xFFFF,     0x10000,
                                        0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000ULL,
                                        1ULL << 40, 1ULL << 62, ~0ULL,      65537};
    int ops = 1 + (int)below(6);
    for (int o = 0; o < ops; ++o) {
        size_t n = *len;
        switch (below(9)) {
        case 0: /* flip a bit */
            if (n) buf[below(n)] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* random byte */
            if (n) buf[below(n)] = (uint8_t)rnd();
            break;
        case 2: /* boundary byte */
            if (n) buf[below(n)] = (uint8_t)boundary[below(5)];
            break;
        case 3:   /* 32-bit boundary integer, little-endian */
        case 4: { /* 64-bit boundary integer */
            size_t w = below(9) == 0 ? 8 : 4, at;
            if (n < w) break;
            at = below(n - w + 1);
            uint64_t v = boundary[below(sizeof boundary / sizeof boundary[0])];
            if (rnd() & 1) v = v + (uint64_t)below(3) - 1;
            for (size_t i = 0; i < w; ++i) buf[at + i] = (uint8_t)(v >> (8 * i));
            break;
        }
        case 5: { /* insert random bytes */
            size_t k = 1 + below(8), at = below(n + 1);
            if (n + k > cap) break;
            memmove(buf + at + k, buf + at, n - at);
            for (size_t i = 0; i < k; ++i) buf[at + i] = (uint8_t)rnd();
            *len = n + k;
            break;
        }
        case 6: { /* delete a range */
            if (!n) break;
            size_t at = below(n), k = 1 + below(n - at < 16 ? n - at : 16);
            memmove(buf + at, buf + at + k, n - at - k);
            *len = n - k;
            break;
        }
        case 7: /* truncate */
            if (n) *len = below(n);
            break;
        default: { /* copy a chunk over another place */
            if (n < 2) break;
            size_t k = 1 + below(n / 2), from = below(n - k + 1), to = below(n - k + 1);
            memmove(buf + to, buf + from, k);
            break;
        }
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS [SEED]]\n", argv[0]);
        return 2;
    }
    long mutations = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 0x5EED5EEDULL;
    if (rng_state == 0) rng_state = 1;

    signal(SIGABRT, on_crash);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);

    DIR *dir = opendir(argv[1]);
    if (dir == NULL) {
        fprintf(stderr, "cannot open corpus directory %s\n", argv[1]);
        return 1;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
            if (names == NULL) return 1;
        }
        names[count++] = strdup(e->d_name);
    }
    closedir(dir);
    qsort(names, count, sizeof *names, by_name);

    blob *seeds = calloc(count ? count : 1, sizeof *seeds);
    size_t nseeds = 0, maxlen = 1;
    for (size_t i = 0; i < count; ++i) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        if (read_file(&seeds[nseeds], path) != 0) {
            fprintf(stderr, "cannot read %s\n", path);
            return 1;
        }
        run_one(seeds[nseeds].data, seeds[nseeds].size);
        if (seeds[nseeds].size > maxlen) maxlen = seeds[nseeds].size;
        ++nseeds;
        free(names[i]);
    }
    free(names);
    if (nseeds == 0) {
        fprintf(stderr, "corpus %s is empty\n", argv[1]);
        return 1;
    }

    size_t bufcap = maxlen + 64;
    uint8_t *buf = malloc(bufcap);
    if (buf == NULL) return 1;
    for (long k = 0; k < mutations; ++k) {
        const blob *s = &seeds[below(nseeds)];
        memcpy(buf, s->data, s->size);
        size_t len = s->size;
        mutate(buf, &len, bufcap);
        run_one(buf, len);
    }
    printf("%s: %zu corpus files and %ld mutations, no failure\n", argv[1], nseeds, mutations);
    free(buf);
    for (size_t i = 0; i < nseeds; ++i) free(seeds[i].data);
    free(seeds);
    return 0;
}
