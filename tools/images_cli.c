/* images_cli.c - the stochflow program's image flows (issue 8): `train` on image data
 * (a U-Net velocity field, uniform dequantization, periodic checkpoints and sample
 * grids), `sample --png` image grids, `logp --bpd` bits per dimension, and the U-Net
 * shape in `info`. Called from stochflow.c; uses only the public API. See doc/cli.md
 * ("Image flows"). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "images_cli.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_TRAIN "idx:" FMNIST_DIR "/train-images-idx3-ubyte.gz"
#define FMNIST_TEST "idx:" FMNIST_DIR "/t10k-images-idx3-ubyte.gz"

/* Streams of stochflow_random_normal / stochflow_images_dequantize (< 2^32 - 16):
 * training step s dequantizes with stream s and draws its minibatch indices from
 * INDEX_STREAM + s; evaluation and sampling use streams training never reaches. */
#define INDEX_STREAM 0x80000000u
#define EVAL_STREAM 0xFFFFFF00u
#define SAMPLE_STREAM 0xFFFFFF01u
#define GRID_SEED_OFFSET 0x5EEDu

/* Defaults of a fresh image model (doc/cli.md). */
#define IMG_BATCH 64
#define IMG_LR 2e-4
#define IMG_CLIP 1.0

static const char *SOURCES_HELP = "fashion-mnist[:train|:test], idx:PATH, pngdir:PATH";

/* ---- data sources ----------------------------------------------------------------------- */

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

int cli_images_source(const char *cmd, const char *src) {
    if (src == NULL) return 0;
    if (strcmp(src, "fashion-mnist") == 0) return 1;
    if (starts_with(src, "fashion-mnist:")) {
        const char *split = src + strlen("fashion-mnist:");
        if (strcmp(split, "train") == 0 || strcmp(split, "test") == 0) return 1;
        return cli_fail("%s: unknown fashion-mnist split '%s' (train or test)", cmd, split);
    }
    if (starts_with(src, "idx:") || starts_with(src, "pngdir:")) {
        if (strchr(src, ':')[1] == '\0')
            return cli_fail("%s: '%s' needs a path after the colon", cmd, src);
        return 1;
    }
    /* NAME:REST with a plain NAME that is not an existing file: an unknown source kind */
    const char *colon = strchr(src, ':');
    if (colon && colon - src >= 2) {
        int plain = 1;
        for (const char *p = src; p < colon; ++p)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                plain = 0;
        struct stat st;
        if (plain && stat(src, &st) != 0)
            return cli_fail("%s: unknown data source prefix '%.*s:' in '%s' (image data: %s)",
                            cmd, (int)(colon - src), src, src, SOURCES_HELP);
    }
    return 0;
}

/* SRC -> the library's source string; fashion-mnist without a split gets `test`'s
 * default. Returns 0 or -1 (printed). */
static int resolve_source(char *buf, size_t cap, const char *cmd, const char *src, int test) {
    if (strcmp(src, "fashion-mnist") == 0)
        snprintf(buf, cap, "%s", test ? FMNIST_TEST : FMNIST_TRAIN);
    else if (strcmp(src, "fashion-mnist:train") == 0)
        snprintf(buf, cap, "%s", FMNIST_TRAIN);
    else if (strcmp(src, "fashion-mnist:test") == 0)
        snprintf(buf, cap, "%s", FMNIST_TEST);
    else if ((starts_with(src, "idx:") || starts_with(src, "pngdir:")) && strlen(src) < cap)
        snprintf(buf, cap, "%s", src);
    else if (starts_with(src, "idx:") || starts_with(src, "pngdir:"))
        return cli_fail("%s: image data path too long (%zu bytes)", cmd, strlen(src));
    else
        return cli_fail("%s: '%s' is not image data (%s)", cmd, src, SOURCES_HELP);
    return 0;
}

typedef struct {
    uint8_t *px; /* n x c x h x w bytes (NCHW), from stochflow_images_load */
    size_t n, c, h, w, d;
    char source[4200];
} imageset;

/* Load image data SRC (at most max images; 0 = all). */
static int images_open(imageset *im, const char *cmd, const char *src, int test, size_t max) {
    memset(im, 0, sizeof *im);
    if (resolve_source(im->source, sizeof im->source, cmd, src, test) != 0) return -1;
    int dir = starts_with(im->source, "pngdir:");
    const char *path = strchr(im->source, ':') + 1;
    struct stat st;
    if (stat(path, &st) != 0)
        return cli_fail("%s: cannot open image data '%s': %s", cmd, path, strerror(errno));
    if (dir && !S_ISDIR(st.st_mode))
        return cli_fail("%s: pngdir: '%s' is not a directory", cmd, path);
    if (!dir && !S_ISREG(st.st_mode))
        return cli_fail("%s: idx: '%s' is not a regular file", cmd, path);
    int rc = stochflow_images_load(&im->px, &im->n, &im->c, &im->h, &im->w, im->source, max);
    if (rc < 0)
        return cli_fail("%s: cannot load images from '%s': %s (%s)", cmd, path,
                        stochflow_last_error_message(), stochflow_status_string(rc));
    if (im->n == 0) {
        stochflow_images_free(im->px);
        im->px = NULL;
        return cli_fail("%s: no images in '%s'", cmd, path);
    }
    im->d = im->c * im->h * im->w;
    if (im->d == 0 || im->d > CLI_MAX_DIM) {
        stochflow_images_free(im->px);
        im->px = NULL;
        return cli_fail("%s: images of %zux%zux%zu = %zu values exceed the limit of %zu", cmd,
                        im->c, im->h, im->w, im->d, (size_t)CLI_MAX_DIM);
    }
    return 0;
}

static void images_close(imageset *im) {
    stochflow_images_free(im->px);
    im->px = NULL;
}

/* ---- options --------------------------------------------------------------------------- */

static int option_index(const opts *o, const char *name) {
    for (size_t i = 0; i < o->n; ++i)
        if (strcmp(o->defs[i].name, name) == 0) return (int)i;
    return -1;
}

void cli_images_alias(opts *o, const char *alias, const char *name) {
    int a = option_index(o, alias), k = option_index(o, name);
    if (a >= 0 && k >= 0 && o->val[a] && !o->val[k]) o->val[k] = o->val[a];
}

/* Options that only image data / image models use. */
static const char *IMAGE_ONLY[] = {"--unet-base",    "--unet-mult",        "--unet-blocks",
                                   "--unet-attn",    "--unet-groups",      "--max-images",
                                   "--outdir",       "--checkpoint-every", "--sample-every",
                                   "--grid-n",       "--grid-steps",       "--cols",
                                   "--batch",        "--bpd",              "--n-eval"};

int cli_images_reject_options(const opts *o) {
    int train = strcmp(o->cmd, "train") == 0;
    for (size_t i = 0; i < sizeof IMAGE_ONLY / sizeof IMAGE_ONLY[0]; ++i) {
        if (train && strcmp(IMAGE_ONLY[i], "--batch") == 0) continue; /* train's own */
        if (option_index(o, IMAGE_ONLY[i]) >= 0 && opt(o, IMAGE_ONLY[i]))
            return cli_fail("%s: %s applies only to %s", o->cmd, IMAGE_ONLY[i],
                            train ? "image data (--data fashion-mnist, idx:PATH, pngdir:PATH)"
                                  : "image models (trained on image data)");
    }
    if (!train && option_index(o, "--data") >= 0 && opt(o, "--data")) {
        int k = cli_images_source(o->cmd, opt(o, "--data"));
        if (k < 0) return -1;
        if (k > 0)
            return cli_fail("%s: --data %s is image data, but %s is not an image model", o->cmd,
                            opt(o, "--data"), opt(o, "--model") ? opt(o, "--model") : "the model");
    }
    return 0;
}

/* Options the image path does not support: refuse them by name. */
static int refuse(const opts *o, const char *const *names, size_t n, const char *why) {
    for (size_t i = 0; i < n; ++i)
        if (option_index(o, names[i]) >= 0 && opt(o, names[i]))
            return cli_fail("%s: %s %s", o->cmd, names[i], why);
    return 0;
}

/* "1,2,2" -> values in [lo, hi]; returns the count or -1 (printed). */
static int parse_list(const char *cmd, const char *name, const char *s, size_t *v, size_t cap,
                      size_t lo, size_t hi) {
    size_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        unsigned long x = strtoul(p, &end, 10);
        if (end == p || errno != 0 || *p == '-' || *p == '+' || x < lo || x > hi)
            return cli_fail("%s: %s expects a comma list of integers in %zu..%zu, got '%s'",
                            cmd, name, lo, hi, s);
        if (k == cap) return cli_fail("%s: %s: at most %zu values, got '%s'", cmd, name, cap, s);
        v[k++] = x;
        if (*end == '\0') break;
        if (*end != ',')
            return cli_fail("%s: %s expects a comma list of integers in %zu..%zu, got '%s'",
                            cmd, name, lo, hi, s);
        p = end + 1;
    }
    return (int)k;
}

static void join(char *buf, size_t cap, const size_t *v, size_t n) {
    buf[0] = '\0';
    for (size_t i = 0; i < n; ++i)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%zu", i ? "," : "", v[i]);
}

static void attn_levels(char *buf, size_t cap, uint32_t mask, size_t levels) {
    buf[0] = '\0';
    for (size_t l = 0; l < levels; ++l)
        if (mask & (1u << l))
            snprintf(buf + strlen(buf), cap - strlen(buf), "%s%zu", buf[0] ? "," : "", l);
    if (buf[0] == '\0') snprintf(buf, cap, "none");
}

/* The grid stochflow_images_write_grid draws for n images of h x w with `cols` columns
 * (0 = ceil(sqrt n)) is at most 10^6 pixels each way; refuse a larger one before any
 * work (the library would refuse it only after every image is integrated). */
#define GRID_MAX_SIDE 1000000u
static size_t grid_cols(size_t n, size_t cols) {
    size_t nc = cols;
    if (nc == 0)
        while (nc * nc < n) ++nc;
    return nc;
}

static int grid_fits(const char *cmd, const char *what, size_t n, size_t cols, size_t h,
                     size_t w) {
    size_t nc = grid_cols(n, cols);
    size_t nr = n / nc + (n % nc != 0);
    if (nc > (GRID_MAX_SIDE - 2) / (w + 2) || nr > (GRID_MAX_SIDE - 2) / (h + 2))
        return cli_fail("%s: a grid of %zu images of %zux%zu in %zu columns (%zu rows) would "
                        "exceed %u pixels on a side; %s",
                        cmd, n, h, w, nc, nr, GRID_MAX_SIDE, what);
    return 0;
}

/* The directory a file PATH is written to must exist: checked before hours of work
 * rather than when the result is saved. */
static int out_dir_exists(const char *cmd, const char *path) {
    char d[4096];
    if (strlen(path) >= sizeof d) return cli_fail("%s: path too long: '%.80s...'", cmd, path);
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    if (slash == NULL) return 0; /* the current directory */
    if (slash == d) slash[1] = '\0';
    else *slash = '\0';
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_fail("%s: cannot write '%s': '%s' is not an existing directory", cmd, path,
                        d);
    return 0;
}

/* ---- models ----------------------------------------------------------------------------- */

/* cli_images_is_model keeps the model it loaded for the command that follows. */
static stochflow_model *cached;
static char cached_path[4096];

static void free_cached(void) {
    stochflow_model_free(cached);
    cached = NULL;
}

int cli_images_is_model(const char *path) {
    struct stat st;
    if (path == NULL || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    stochflow_model *m = NULL;
    if (stochflow_model_load(&m, path) < 0) return 0;
    stochflow_config *c = NULL;
    int unet = stochflow_model_config(&c, m) == 0 &&
               stochflow_config_arch(c) == STOCHFLOW_ARCH_UNET;
    stochflow_config_free(c);
    if (!unet || strlen(path) >= sizeof cached_path) {
        stochflow_model_free(m);
        return 0;
    }
    if (cached == NULL) atexit(free_cached); /* a command that stops early leaks nothing */
    stochflow_model_free(cached);
    cached = m;
    snprintf(cached_path, sizeof cached_path, "%s", path);
    return 1;
}

static int load_image_model(stochflow_model **m, const char *path) {
    if (cached && strcmp(path, cached_path) == 0) {
        *m = cached;
        cached = NULL;
        return 0;
    }
    return load_model(m, path);
}

typedef struct {
    size_t c, h, w, base, levels, mult[STOCHFLOW_UNET_MAX_LEVELS], blocks, groups;
    uint32_t attn;
} unet_shape;

/* The model's U-Net shape; -1 (printed) when it is not a U-Net. */
static int model_shape(unet_shape *u, const stochflow_model *m, const char *cmd,
                       const char *path) {
    stochflow_config *c = NULL;
    int rc = stochflow_model_config(&c, m);
    if (rc < 0) return cli_fail_lib(rc, "model configuration");
    if (stochflow_config_arch(c) != STOCHFLOW_ARCH_UNET) {
        stochflow_config_free(c);
        return cli_fail("%s: %s is not an image model (no U-Net); image data needs one", cmd,
                        path);
    }
    rc = stochflow_config_unet(&u->c, &u->h, &u->w, &u->base, &u->levels, u->mult, &u->blocks,
                               &u->attn, &u->groups, c);
    stochflow_config_free(c);
    return rc < 0 ? cli_fail_lib(rc, "U-Net configuration") : 0;
}

static int check_shape(const unet_shape *u, const imageset *im, const char *cmd,
                       const char *path) {
    if (u->c != im->c || u->h != im->h || u->w != im->w)
        return cli_fail("%s: the images are %zux%zux%zu (channels x height x width) but %s "
                        "expects %zux%zux%zu",
                        cmd, im->c, im->h, im->w, path, u->c, u->h, u->w);
    return 0;
}

/* The --unet-* options, --seed and --interpolant of a new model, parsed before any data
 * is read (a malformed value is a usage error, exit 2). */
typedef struct {
    uint64_t base, blocks, groups, seed;
    size_t levels, mult[STOCHFLOW_UNET_MAX_LEVELS];
    uint32_t attn;
} unet_opts;

static int parse_unet(unet_opts *uo, const opts *o) {
    if (get_u64(o, "--unet-base", 32, 1, 4096, &uo->base) ||
        get_u64(o, "--unet-blocks", 1, 1, 8, &uo->blocks) ||
        get_u64(o, "--unet-groups", 8, 1, 4096, &uo->groups) ||
        get_u64(o, "--seed", 0, 0, UINT64_MAX, &uo->seed))
        return -1;
    const char *ms = opt(o, "--unet-mult") ? opt(o, "--unet-mult") : "1,2,2";
    int L = parse_list(o->cmd, "--unet-mult", ms, uo->mult, STOCHFLOW_UNET_MAX_LEVELS, 1, 16);
    if (L < 0) return -1;
    uo->levels = (size_t)L;
    uo->attn = 1u << (uo->levels - 1); /* default: attention at the lowest resolution */
    const char *as = opt(o, "--unet-attn");
    if (as && strcmp(as, "none") == 0) {
        uo->attn = 0;
    } else if (as) {
        size_t lv[STOCHFLOW_UNET_MAX_LEVELS];
        int k = parse_list(o->cmd, "--unet-attn", as, lv, STOCHFLOW_UNET_MAX_LEVELS, 0,
                           uo->levels - 1);
        if (k < 0) return -1;
        uo->attn = 0;
        for (int i = 0; i < k; ++i) uo->attn |= 1u << lv[i];
    }
    /* the interpolant's name, checked on a scratch configuration */
    stochflow_config *cfg = NULL;
    int rc = stochflow_config_new(&cfg, 1);
    if (rc < 0) return cli_fail_lib(rc, "configuration");
    rc = cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant"));
    stochflow_config_free(cfg);
    return rc != 0 ? -1 : 0;
}

/* A new U-Net model for images of im's shape from the parsed options. */
static int build_unet(stochflow_model **m, const opts *o, const unet_opts *uo,
                      const imageset *im) {
    unet_shape u = {.c = im->c, .h = im->h, .w = im->w, .levels = uo->levels, .attn = uo->attn};
    uint64_t base = uo->base, blocks = uo->blocks, groups = uo->groups, seed = uo->seed;
    memcpy(u.mult, uo->mult, sizeof u.mult);
    size_t f = (size_t)1 << (u.levels - 1);
    if (im->h % f != 0 || im->w % f != 0)
        return cli_fail("%s: %zu U-Net levels need height and width divisible by %zu, but the "
                        "images are %zux%zu (use fewer --unet-mult entries)",
                        o->cmd, u.levels, f, im->h, im->w);
    stochflow_config *cfg = NULL;
    int rc = stochflow_config_new(&cfg, im->d);
    if (rc >= 0)
        rc = stochflow_config_set_unet(cfg, im->c, im->h, im->w, (size_t)base, u.levels, u.mult,
                                       (size_t)blocks, u.attn, (size_t)groups);
    if (rc >= 0 && cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant")) != 0) {
        stochflow_config_free(cfg);
        return -1;
    }
    if (rc >= 0) rc = stochflow_config_set_seed(cfg, seed);
    if (rc >= 0) rc = stochflow_model_new(m, cfg);
    stochflow_config_free(cfg);
    return rc < 0 ? cli_fail_lib(rc, "train: U-Net model") : 0;
}

/* --solver/--steps/--rtol/--atol with the given defaults: 0 or -1 (printed; a usage
 * error, checked before the model and data are read). */
static int parse_solver(const opts *o, int def_kind, uint64_t def_steps, int *kind,
                        uint64_t *steps, double *rtol, double *atol) {
    if (get_keyword(o, "--solver", SOLVERS, def_kind, kind) != 0 ||
        get_u64(o, "--steps", def_steps, 1, 10000000, steps) != 0 ||
        get_double(o, "--rtol", 1e-5, 1e-12, 1.0, rtol) != 0 ||
        get_double(o, "--atol", 1e-5, 1e-12, 1.0, atol) != 0)
        return -1;
    return 0;
}

/* Solver for image commands from parse_solver's values. */
static int image_solver(stochflow_solver **s, const int *kind, const uint64_t *steps,
                        const double *rtol, const double *atol) {
    int rc;
    if ((rc = stochflow_solver_new(s)) < 0) return cli_fail_lib(rc, "solver");
    if ((rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_SOLVER, *kind)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_STEPS, (double)*steps)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_RTOL, *rtol)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_ATOL, *atol)) < 0)
        return cli_fail_lib(rc, "solver settings");
    return 0;
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Progress of a chunked solve: images done before this chunk + chunk x fraction of t. */
typedef struct {
    progress *bar;
    double t0, t1, done, chunk;
    char extra[64];
} chunk_progress;

static int on_chunk_progress(void *user, double t) {
    chunk_progress *p = user;
    double span = p->t1 - p->t0, f = span != 0 ? (t - p->t0) / span : 1.0;
    progress_update(p->bar, p->done + p->chunk * f, p->extra[0] ? p->extra : NULL);
    return stop_requested ? 1 : 0;
}

static int cancel_only(void *user, double t) {
    (void)user;
    (void)t;
    return stop_requested ? 1 : 0;
}

/* ---- train ------------------------------------------------------------------------------ */

/* A grid of n samples of the model: RK4 with `steps` steps, base draws keyed by seed.
 * Returns 0 or a negative status (nothing printed; the library's message is set, except
 * for the CLI's own allocation, NOMEM with *what "grid samples"). */
static int write_grid(const char *path, stochflow_model *m, const unet_shape *u, size_t n,
                      uint64_t steps, uint64_t seed, size_t cols, const char **what) {
    stochflow_solver *s = NULL;
    float *x = malloc(n * u->c * u->h * u->w * sizeof(float));
    int rc;
    *what = "sample grid";
    if (x == NULL) return STOCHFLOW_E_NOMEM;
    if ((rc = stochflow_solver_new(&s)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, (double)steps)) < 0 ||
        (rc = stochflow_solver_set_progress(s, cancel_only, NULL)) < 0 ||
        (rc = stochflow_solver_sample(x, NULL, s, m, n, seed)) < 0)
        goto out;
    *what = path;
    rc = stochflow_images_write_grid(path, x, n, u->c, u->h, u->w, cols);
out:
    stochflow_solver_free(s);
    free(x);
    return rc < 0 ? rc : 0;
}

int cli_images_train(const opts *o) {
    static const char *mlp_only[] = {"--hidden", "--activation", "--time-fourier", "--base",
                                     "--transport-png"};
    if (refuse(o, mlp_only, 5, "does not apply to image data (the U-Net has --unet-* options)"))
        return EXIT_USAGE;
    const char *resume = opt(o, "--resume");
    if (resume) {
        static const char *arch[] = {"--unet-base", "--unet-mult", "--unet-blocks",
                                     "--unet-attn", "--unet-groups", "--interpolant", "--seed"};
        if (refuse(o, arch, 7, "cannot change when resuming (it is in the checkpoint)"))
            return EXIT_USAGE;
    }
    uint64_t steps, batch, maxim, ck_every, smp_every, grid_n, grid_steps;
    if (get_u64(o, "--steps", 1000, 0, 1000000000, &steps) ||
        get_u64(o, "--batch", IMG_BATCH, 1, 1 << 16, &batch) ||
        get_u64(o, "--max-images", 0, 0, 1u << 30, &maxim) ||
        get_u64(o, "--checkpoint-every", 0, 0, 1000000000, &ck_every) ||
        get_u64(o, "--sample-every", 0, 0, 1000000000, &smp_every) ||
        get_u64(o, "--grid-n", 16, 1, 1024, &grid_n) ||
        get_u64(o, "--grid-steps", 20, 1, 100000, &grid_steps))
        return EXIT_USAGE;
    if (!opt(o, "--out") && !opt(o, "--outdir"))
        return cli_fail("train: --out MODEL (or --outdir DIR) is required"), EXIT_USAGE;
    unet_opts uo; /* before anything is created or read */
    if (!resume && parse_unet(&uo, o) != 0) return EXIT_USAGE;
    /* periodic files go to --outdir, by default the directory of --out */
    char dir[4096], out_default[4200], ck_path[4200], grid_path[4200] = "";
    if (strlen(opt(o, "--outdir") ? opt(o, "--outdir") : opt(o, "--out")) >= sizeof dir)
        return cli_fail("train: --outdir/--out path too long"), EXIT_USAGE;
    snprintf(dir, sizeof dir, "%s", opt(o, "--outdir") ? opt(o, "--outdir") : opt(o, "--out"));
    if (!opt(o, "--outdir")) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL) snprintf(dir, sizeof dir, ".");
        else if (slash == dir) dir[1] = '\0';
        else *slash = '\0';
    }
    const char *outdir = dir;
    snprintf(out_default, sizeof out_default, "%s/model.sfm", outdir);
    snprintf(ck_path, sizeof ck_path, "%s/checkpoint.sfm", outdir);
    const char *out = opt(o, "--out") ? opt(o, "--out") : out_default;
    if (opt(o, "--outdir") && make_dirs(outdir) != 0) return 1;
    if (out_dir_exists("train", out) != 0) return 1;

    imageset im;
    if (images_open(&im, "train", opt(o, "--data"), 0, (size_t)maxim) != 0) return 1;
    stochflow_model *m = NULL;
    unet_shape u;
    float *x = NULL, *z = NULL;
    double losses[100]; /* the last 100 losses, a ring indexed by step % 100 */
    uint8_t *pb = NULL;
    int ret = 1, rc;
    if (resume) {
        if (load_model(&m, resume) != 0 || model_shape(&u, m, "train", resume) != 0 ||
            check_shape(&u, &im, "train", resume) != 0)
            goto out;
    } else {
        if (build_unet(&m, o, &uo, &im) != 0 || model_shape(&u, m, "train", "the model") != 0)
            goto out;
        if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, IMG_LR)) < 0 ||
            (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_CLIP, IMG_CLIP)) < 0 ||
            /* --ema on a new image model warms up (STOCHFLOW_PARAM_EMA_WARMUP, doc/cli.md) */
            (opt(o, "--ema") != NULL &&
             (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_WARMUP, 1)) < 0)) {
            cli_fail_lib(rc, "image training defaults");
            goto out;
        }
    }
    if (set_threads(m, o, default_threads()) || apply_train_params(m, o, !resume, steps)) goto out;
    if (smp_every && grid_fits("train", "use a smaller --grid-n", (size_t)grid_n, 0, im.h,
                               im.w) != 0)
        goto out;
    size_t d = im.d, B = (size_t)batch;
    x = malloc(B * d * sizeof(float));
    z = malloc(B * sizeof(float));
    pb = malloc(B * d);
    if (x == NULL || z == NULL || pb == NULL) {
        cli_fail("train: out of memory for a batch of %zu images", B);
        goto out;
    }
    uint64_t seed = model_seed(m), step0 = stochflow_model_step(m), run_steps = 0;
    uint64_t n_ck = 0, n_grid = 0;
    int interrupted = 0;
    /* a failing periodic file (checkpoint or grid) stops training, but --out is still
     * saved, so the steps done are not lost: one error line names both */
    char fail_msg[6144] = "";
    printf("train: U-Net on %zu images %zux%zux%zu from %s (%zu parameters, batch %zu)\n",
           im.n, im.c, im.h, im.w, opt(o, "--data"), stochflow_model_num_params(m), B);
    fflush(stdout);
    progress bar;
    progress_start(&bar, "train", (double)steps, "steps");
    double t0 = cli_now(), run = NAN;
    for (uint64_t s = 0; s < steps; ++s) {
        if (stop_requested) {
            interrupted = 1;
            break;
        }
        uint64_t g = stochflow_model_step(m);
        if (g >= (uint64_t)INDEX_STREAM - 16) {
            cli_fail("train: model step %llu exceeds the image streams' range",
                     (unsigned long long)g);
            goto out_bar;
        }
        /* minibatch: B images uniformly with replacement, indices keyed by (seed, step) */
        if ((rc = stochflow_random_normal(z, B, seed, INDEX_STREAM + g)) < 0) {
            cli_fail_lib(rc, "minibatch indices");
            goto out_bar;
        }
        for (size_t i = 0; i < B; ++i) {
            double uu = 0.5 * erfc(-(double)z[i] / 1.4142135623730951);
            size_t k = (size_t)(uu * (double)im.n);
            if (k >= im.n) k = im.n - 1;
            memcpy(pb + i * d, im.px + k * d, d);
        }
        /* fresh dequantization noise every step: stream = step */
        if ((rc = stochflow_images_dequantize(x, pb, B * d, seed, g)) < 0) {
            cli_fail_lib(rc, "dequantization");
            goto out_bar;
        }
        double loss;
        if ((rc = stochflow_model_train_step(&loss, m, x, B, NULL, NULL)) < 0) {
            progress_end(&bar);
            cli_fail_lib(rc, "training step");
            goto out;
        }
        losses[s % 100] = loss;
        run_steps = s + 1;
        run = isnan(run) ? loss : 0.98 * run + 0.02 * loss;
        uint64_t now = stochflow_model_step(m);
        if (ck_every && now % ck_every == 0) {
            if ((rc = stochflow_model_save(m, ck_path)) < 0) {
                snprintf(fail_msg, sizeof fail_msg, "%s: %s (%s)", ck_path,
                         stochflow_last_error_message(), stochflow_status_string(rc));
                break;
            }
            ++n_ck;
        }
        if (smp_every && now % smp_every == 0) {
            char gp[sizeof grid_path];
            const char *what = "";
            snprintf(gp, sizeof gp, "%s/samples-%07llu.png", outdir, (unsigned long long)now);
            rc = write_grid(gp, m, &u, (size_t)grid_n, grid_steps, seed + GRID_SEED_OFFSET, 0,
                            &what);
            if (rc == STOCHFLOW_E_CANCELLED && stop_requested) {
                interrupted = 1; /* cancelled: stop like a signal between steps */
                break;
            }
            if (rc < 0) {
                snprintf(fail_msg, sizeof fail_msg, "%s: %s (%s)", what,
                         stochflow_last_error_message(), stochflow_status_string(rc));
                break;
            }
            snprintf(grid_path, sizeof grid_path, "%s", gp);
            ++n_grid;
        }
        char extra[64];
        snprintf(extra, sizeof extra, "loss %.4f", run);
        progress_update(&bar, (double)(s + 1), extra);
    }
    progress_end(&bar);
    double secs = cli_now() - t0;
    if ((rc = stochflow_model_save(m, out)) < 0) {
        if (fail_msg[0])
            cli_fail("train: %s; saving %s failed too: %s (%s)", fail_msg, out,
                     stochflow_last_error_message(), stochflow_status_string(rc));
        else
            cli_fail_lib(rc, out);
        goto out;
    }
    if (fail_msg[0]) {
        cli_fail("train: %s; stopped after %llu steps (model step %llu), saved %s, continue "
                 "with --resume",
                 fail_msg, (unsigned long long)run_steps,
                 (unsigned long long)stochflow_model_step(m), out);
        goto out;
    }
    if (interrupted) {
        cli_fail("train: interrupted after %llu steps (model step %llu); saved %s, continue "
                 "with --resume",
                 (unsigned long long)run_steps, (unsigned long long)stochflow_model_step(m), out);
        ret = 130;
        goto out;
    }
    double mean = NAN, last = NAN;
    size_t k = run_steps < 100 ? (size_t)run_steps : 100;
    if (run_steps > 0) {
        double acc = 0;
        for (size_t i = 0; i < k; ++i) acc += losses[i];
        mean = acc / (double)k;
        last = losses[(run_steps - 1) % 100];
    }
    double sps = secs > 0 ? (double)run_steps / secs : 0;
    char mult[128], attn[64];
    join(mult, sizeof mult, u.mult, u.levels);
    attn_levels(attn, sizeof attn, u.attn, u.levels);
    printf("trained %llu steps (model step %llu -> %llu) in %.2f s (%.2f steps/s)\n",
           (unsigned long long)run_steps, (unsigned long long)step0,
           (unsigned long long)stochflow_model_step(m), secs, sps);
    printf("loss %.5f (mean of the last %zu steps; last %.5f)\n", mean, k, last);
    printf("U-Net base %zu, mult %s, %zu block(s) per level, attention at %s, %zu groups\n",
           u.base, mult, u.blocks, attn, u.groups);
    printf("saved %s (%zu parameters)", out, stochflow_model_num_params(m));
    if (n_ck) printf("; %llu periodic checkpoint(s) to %s", (unsigned long long)n_ck, ck_path);
    printf("\n");
    if (n_grid)
        printf("wrote %llu sample grid(s), the last %s\n", (unsigned long long)n_grid, grid_path);
    if (opt(o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "steps", run_steps);
        jint(&j, "model_step", stochflow_model_step(m));
        jnum(&j, "loss", mean);
        jnum(&j, "last_loss", last);
        jnum(&j, "seconds", secs);
        jnum(&j, "steps_per_second", sps);
        jint(&j, "batch", batch);
        jint(&j, "params", stochflow_model_num_params(m));
        jstr(&j, "data", opt(o, "--data"));
        jint(&j, "images", im.n);
        jint(&j, "channels", im.c);
        jint(&j, "height", im.h);
        jint(&j, "width", im.w);
        jstr(&j, "model", out);
        jint(&j, "checkpoints", n_ck);
        jstr(&j, "checkpoint", n_ck ? ck_path : NULL);
        jint(&j, "grids", n_grid);
        jstr(&j, "last_grid", n_grid ? grid_path : NULL);
        jend(&j);
    }
    ret = 0;
    goto out;
out_bar:
    progress_end(&bar);
out:
    free(x);
    free(z);
    free(pb);
    images_close(&im);
    stochflow_model_free(m);
    return ret;
}

/* ---- sample ----------------------------------------------------------------------------- */

int cli_images_sample(const opts *o) {
    static const char *no[] = {"--base", "--with-logp"};
    if (refuse(o, no, 2, "is not supported for image models (see logp --bpd)")) return EXIT_USAGE;
    uint64_t n, cols, batch, seed;
    if (get_u64(o, "-n", 16, 1, 1000000, &n) || get_u64(o, "--cols", 0, 0, 1000000, &cols) ||
        get_u64(o, "--batch", 64, 1, 1 << 16, &batch) ||
        get_u64(o, "--seed", 0, 0, UINT64_MAX, &seed))
        return EXIT_USAGE;
    const char *png = opt(o, "--png"), *out = opt(o, "--out");
    if (!png && !out)
        return cli_fail("sample: an image model needs --png GRID.png (and/or --out FILE)"),
               EXIT_USAGE;
    if (png && !has_suffix(png, ".png"))
        return cli_fail("sample: --png '%s' must end in .png", png), EXIT_USAGE;
    if (out && !has_suffix(out, ".npy") && !has_suffix(out, ".csv"))
        return cli_fail("sample: --out '%s' must end in .npy or .csv", out), EXIT_USAGE;
    int kind;
    uint64_t ksteps;
    double rtol, atol;
    if (parse_solver(o, STOCHFLOW_SOLVER_RK4, 50, &kind, &ksteps, &rtol, &atol) != 0)
        return EXIT_USAGE;
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    float *x = NULL;
    int ret = 1, rc;
    double nfe = 0;
    unet_shape u;
    if (load_image_model(&m, opt(o, "--model")) != 0 ||
        model_shape(&u, m, "sample", opt(o, "--model")) != 0)
        goto out;
    if (set_threads(m, o, default_threads()) ||
        image_solver(&s, &kind, &ksteps, &rtol, &atol))
        goto out;
    if (png && (grid_fits("sample", "use fewer images or another --cols", (size_t)n,
                          (size_t)cols, u.h, u.w) != 0 ||
                out_dir_exists("sample", png) != 0))
        goto out;
    if (out && out_dir_exists("sample", out) != 0) goto out;
    size_t d = stochflow_model_dim(m);
    if (n > CLI_MAX_ELEMENTS / d) {
        cli_fail("sample: n = %llu images of %zu values is too many", (unsigned long long)n, d);
        goto out;
    }
    x = malloc((size_t)n * d * sizeof(float));
    if (x == NULL) {
        cli_fail("sample: out of memory for %llu images", (unsigned long long)n);
        goto out;
    }
    /* base draws x0 ~ N(0, I): image i's noise depends only on (seed, i), not on --batch */
    if ((rc = stochflow_random_normal(x, (size_t)n * d, seed, SAMPLE_STREAM)) < 0) {
        cli_fail_lib(rc, "base draws");
        goto out;
    }
    progress bar;
    progress_start(&bar, "sample", (double)n, "images");
    chunk_progress cp = {.bar = &bar, .t0 = 0.0, .t1 = 1.0};
    stochflow_solver_set_progress(s, on_chunk_progress, &cp);
    double t0 = cli_now();
    for (size_t off = 0; off < n; off += (size_t)batch) {
        size_t cnt = n - off < batch ? (size_t)n - off : (size_t)batch;
        cp.done = (double)off;
        cp.chunk = (double)cnt;
        rc = stochflow_solver_integrate(NULL, NULL, s, m, x + off * d, cnt, 0.0, 1.0);
        if (rc < 0) {
            progress_end(&bar);
            cli_fail_lib(rc, "sampling");
            goto out;
        }
        double f = 0;
        stochflow_solver_stat(&f, s, STOCHFLOW_STAT_NFE);
        nfe += f;
    }
    progress_end(&bar);
    double secs = cli_now() - t0;
    if (png && (rc = stochflow_images_write_grid(png, x, (size_t)n, u.c, u.h, u.w,
                                                 (size_t)cols)) < 0) {
        cli_fail_lib(rc, png);
        goto out;
    }
    if (out && matrix_write(out, x, (size_t)n, d, NULL) != 0) goto out;
    printf("sampled %llu images %zux%zux%zu in %.2f s (%s, %.0f velocity evaluations)\n",
           (unsigned long long)n, u.c, u.h, u.w, secs, keyword_name(SOLVERS, kind), nfe);
    printf("wrote %s%s%s\n", png ? png : "", png && out ? " and " : "", out ? out : "");
    if (opt(o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jint(&j, "d", d);
        jint(&j, "channels", u.c);
        jint(&j, "height", u.h);
        jint(&j, "width", u.w);
        jint(&j, "cols", grid_cols((size_t)n, (size_t)cols)); /* the grid's columns */
        jstr(&j, "solver", keyword_name(SOLVERS, kind));
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "png", png);
        jstr(&j, "out", out);
        jend(&j);
    }
    ret = 0;
out:
    free(x);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    return ret;
}

/* ---- logp ------------------------------------------------------------------------------- */

int cli_images_logp(opts *o) {
    static const char *no[] = {"--base"};
    if (refuse(o, no, 1, "is not supported for image models")) return EXIT_USAGE;
    int trace;
    uint64_t probes, seed, n_eval, batch;
    cli_images_alias(o, "-n", "--n-eval");
    if (get_keyword(o, "--trace", TRACES, STOCHFLOW_TRACE_HUTCHINSON, &trace) ||
        get_u64(o, "--probes", 1, 1, 4096, &probes) ||
        get_u64(o, "--seed", 0, 0, UINT64_MAX, &seed) ||
        get_u64(o, "--n-eval", 256, 1, 1u << 30, &n_eval) ||
        get_u64(o, "--batch", 64, 1, 1 << 16, &batch))
        return EXIT_USAGE;
    int kind;
    uint64_t ksteps;
    double rtol, atol;
    if (parse_solver(o, STOCHFLOW_SOLVER_DOPRI5, 100, &kind, &ksteps, &rtol, &atol) != 0)
        return EXIT_USAGE;
    const char *outp = opt(o, "--out");
    if (outp && !has_suffix(outp, ".npy") && !has_suffix(outp, ".csv"))
        return cli_fail("logp: --out '%s' must end in .npy or .csv", outp), EXIT_USAGE;
    const char *src = opt(o, "--data") ? opt(o, "--data") : "fashion-mnist:test";
    int k = cli_images_source("logp", src);
    if (k < 0) return EXIT_USAGE;
    if (k == 0)
        return cli_fail("logp: %s is an image model: --data must be image data (%s), got '%s'",
                        opt(o, "--model"), SOURCES_HELP, src),
               EXIT_USAGE;
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    imageset im = {0};
    float *x = NULL, *lp = NULL, *se = NULL, *res = NULL;
    int ret = 1, rc;
    double nfe = 0;
    unet_shape u;
    if (load_image_model(&m, opt(o, "--model")) != 0 ||
        model_shape(&u, m, "logp", opt(o, "--model")) != 0)
        goto out;
    if (outp && out_dir_exists("logp", outp) != 0) goto out;
    if (images_open(&im, "logp", src, 1, (size_t)n_eval) != 0) goto out;
    if (check_shape(&u, &im, "logp", opt(o, "--model")) != 0) goto out;
    if (opt(o, "--n-eval") && im.n < n_eval) {
        cli_fail("logp: --n-eval %llu but %s has only %zu images", (unsigned long long)n_eval,
                 src, im.n);
        goto out;
    }
    size_t n = im.n, d = im.d;
    if (set_threads(m, o, default_threads()) ||
        image_solver(&s, &kind, &ksteps, &rtol, &atol))
        goto out;
    if ((rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, trace)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_PROBES, (double)probes)) < 0) {
        cli_fail_lib(rc, "logp settings");
        goto out;
    }
    x = malloc(n * d * sizeof(float));
    lp = malloc(n * sizeof(float));
    se = malloc(n * sizeof(float));
    if (x == NULL || lp == NULL || se == NULL) {
        cli_fail("logp: out of memory for %zu images", n);
        goto out;
    }
    /* fixed dequantization: keyed by (--seed, a stream training never uses) */
    if ((rc = stochflow_images_dequantize(x, im.px, n * d, seed, EVAL_STREAM)) < 0) {
        cli_fail_lib(rc, "dequantization");
        goto out;
    }
    progress bar;
    progress_start(&bar, "logp", (double)n, "images");
    chunk_progress cp = {.bar = &bar, .t0 = 1.0, .t1 = 0.0};
    stochflow_solver_set_progress(s, on_chunk_progress, &cp);
    double t0 = cli_now();
    for (size_t off = 0, c = 0; off < n; off += (size_t)batch, ++c) {
        size_t cnt = n - off < batch ? n - off : (size_t)batch;
        cp.done = (double)off;
        cp.chunk = (double)cnt;
        /* Hutchinson probes are keyed by (solver seed, row): a new seed per chunk */
        if ((rc = stochflow_solver_set_seed(s, mix64(seed + c))) < 0) break;
        rc = stochflow_solver_log_prob(lp + off, se + off, s, m, x + off * d, cnt, 1.0);
        if (rc < 0) break;
        double f = 0;
        stochflow_solver_stat(&f, s, STOCHFLOW_STAT_NFE);
        nfe += f;
        double sum = 0;
        for (size_t i = 0; i < off + cnt; ++i) sum += stochflow_bits_per_dim(lp[i], d);
        snprintf(cp.extra, sizeof cp.extra, "bpd %.4f", sum / (double)(off + cnt));
    }
    progress_end(&bar);
    double secs = cli_now() - t0;
    if (rc < 0) {
        cli_fail_lib(rc, "log-density");
        goto out;
    }
    for (size_t i = 0; i < n; ++i)
        if (!isfinite(lp[i])) {
            cli_fail("logp: non-finite log-density at image %zu", i + 1);
            goto out;
        }
    /* bits/dim per image, then the mean and its standard error over images */
    double sb = 0, sb2 = 0, mse = 0;
    for (size_t i = 0; i < n; ++i) sb += stochflow_bits_per_dim(lp[i], d);
    double bpd = sb / (double)n;
    for (size_t i = 0; i < n; ++i) {
        double e = stochflow_bits_per_dim(lp[i], d) - bpd;
        sb2 += e * e;
        if (trace == STOCHFLOW_TRACE_HUTCHINSON && probes > 1)
            mse += se[i] / ((double)d * 0.6931471805599453);
    }
    double bpd_se = n > 1 ? sqrt(sb2 / (double)(n - 1) / (double)n) : NAN;
    double probe_se = trace == STOCHFLOW_TRACE_HUTCHINSON && probes > 1 ? mse / (double)n : NAN;
    double nll, nll_se;
    nll_stats(&nll, &nll_se, lp, n);
    if (outp) {
        res = malloc(n * 2 * sizeof(float));
        if (res == NULL) {
            cli_fail("logp: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; ++i) {
            res[2 * i] = lp[i];
            res[2 * i + 1] = (float)stochflow_bits_per_dim(lp[i], d);
        }
        if (matrix_write(outp, res, n, 2, "logp,bpd") != 0) goto out;
    }
    const char *tname = trace == STOCHFLOW_TRACE_EXACT ? "exact" : "hutchinson";
    char how[160];
    if (kind == STOCHFLOW_SOLVER_DOPRI5)
        snprintf(how, sizeof how, "dopri5 rtol %g atol %g", rtol, atol);
    else
        snprintf(how, sizeof how, "%s %llu steps", keyword_name(SOLVERS, kind),
                 (unsigned long long)ksteps);
    if (n > 1) {
        printf("bits/dim %.4f +- %.4f (mean and standard error over %zu dequantized images of "
               "%s, %zux%zux%zu)\n",
               bpd, bpd_se, n, src, im.c, im.h, im.w);
        printf("NLL %.2f +- %.2f nats per image; %s trace", nll, nll_se,
               trace == STOCHFLOW_TRACE_EXACT ? "exact" : "Hutchinson");
    } else { /* no standard error from one image (JSON: null) */
        printf("bits/dim %.4f (one dequantized image of %s, %zux%zux%zu: no standard error)\n",
               bpd, src, im.c, im.h, im.w);
        printf("NLL %.2f nats; %s trace", nll,
               trace == STOCHFLOW_TRACE_EXACT ? "exact" : "Hutchinson");
    }
    if (trace == STOCHFLOW_TRACE_HUTCHINSON) printf(" (%llu probe(s))", (unsigned long long)probes);
    printf(", %s, dequantization seed %llu, %.0f evaluations, %.2f s\n", how,
           (unsigned long long)seed, nfe, secs);
    if (isfinite(probe_se))
        printf("Hutchinson noise: mean per-image standard error %.4f bits/dim\n", probe_se);
    if (outp) printf("wrote %s (logp, bpd per image)\n", outp);
    if (opt(o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jnum(&j, "bpd", bpd);
        jnum(&j, "bpd_se", bpd_se);
        jnum(&j, "nll", nll);
        jnum(&j, "se", nll_se);
        jstr(&j, "trace", tname);
        jint(&j, "probes", trace == STOCHFLOW_TRACE_HUTCHINSON ? probes : 0);
        jstr(&j, "solver", keyword_name(SOLVERS, kind));
        jnum(&j, "rtol", rtol);
        jnum(&j, "atol", atol);
        jint(&j, "dequant_seed", seed);
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "data", src);
        jint(&j, "channels", im.c);
        jint(&j, "height", im.h);
        jint(&j, "width", im.w);
        if (isfinite(probe_se)) jnum(&j, "probe_se_bpd", probe_se);
        jend(&j);
    }
    ret = 0;
out:
    free(x);
    free(lp);
    free(se);
    free(res);
    images_close(&im);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    return ret;
}

/* ---- info ------------------------------------------------------------------------------- */

int cli_images_info(const stochflow_config *c, json *j) {
    unet_shape u;
    if (stochflow_config_arch(c) != STOCHFLOW_ARCH_UNET ||
        stochflow_config_unet(&u.c, &u.h, &u.w, &u.base, &u.levels, u.mult, &u.blocks, &u.attn,
                              &u.groups, c) < 0) {
        if (j) jstr(j, "arch", "mlp");
        return 0;
    }
    char mult[128], attn[64];
    join(mult, sizeof mult, u.mult, u.levels);
    attn_levels(attn, sizeof attn, u.attn, u.levels);
    if (j == NULL) {
        printf("network      U-Net on %zux%zux%zu images (channels x height x width)\n", u.c,
               u.h, u.w);
        printf("unet         base %zu, mult %s, %zu block(s) per level, attention at level(s) "
               "%s, %zu groups\n",
               u.base, mult, u.blocks, attn, u.groups);
        return 1;
    }
    jstr(j, "arch", "unet");
    jint(j, "channels", u.c);
    jint(j, "height", u.h);
    jint(j, "width", u.w);
    jint(j, "unet_base", u.base);
    jkey(j, "unet_mult");
    jraw(j, "[%s]", mult);
    jint(j, "unet_blocks", u.blocks);
    jkey(j, "unet_attn");
    jraw(j, "[%s]", strcmp(attn, "none") == 0 ? "" : attn);
    jint(j, "unet_groups", u.groups);
    return 1;
}
