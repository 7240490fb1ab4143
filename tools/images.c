/* images.c - helpers of the stochflow program for image flows: image data sources,
 * U-Net options and shapes, sample grids, chunked solver progress, and the U-Net part of
 * `info`. The commands (train.c, sample.c, logp.c, info.c) call these. Public API only;
 * see doc/cli.md ("Image flows"). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "images.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_TRAIN "idx:" FMNIST_DIR "/train-images-idx3-ubyte.gz"
#define FMNIST_TEST "idx:" FMNIST_DIR "/t10k-images-idx3-ubyte.gz"

const char *const IMG_SOURCES_HELP = "fashion-mnist[:train|:test], idx:PATH, pngdir:PATH";

/* ---- data sources ----------------------------------------------------------------------- */

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

int images_source(const char *cmd, const char *src) {
    if (src == NULL) return 0;
    if (strcmp(src, "fashion-mnist") == 0) return 1;
    if (starts_with(src, "fashion-mnist:")) {
        const char *split = src + strlen("fashion-mnist:");
        if (strcmp(split, "train") == 0 || strcmp(split, "test") == 0) return 1;
        return cli_usage("%s: unknown fashion-mnist split '%s' (train or test)", cmd, split);
    }
    if (starts_with(src, "idx:") || starts_with(src, "pngdir:")) {
        if (strchr(src, ':')[1] == '\0')
            return cli_usage("%s: '%s' needs a path after the colon", cmd, src);
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
            return cli_usage("%s: unknown data source prefix '%.*s:' in '%s' (image data: %s)",
                             cmd, (int)(colon - src), src, src, IMG_SOURCES_HELP);
    }
    return 0;
}

/* SRC -> the library's source string; fashion-mnist without a split gets `test`'s
 * default. Returns 0 or CLI_ERR (printed). */
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
        return cli_fail("%s: '%s' is not image data (%s)", cmd, src, IMG_SOURCES_HELP);
    return 0;
}

int images_open(imageset *im, const char *cmd, const char *src, int test, size_t max) {
    memset(im, 0, sizeof *im);
    if (resolve_source(im->source, sizeof im->source, cmd, src, test) != 0) return CLI_ERR;
    int dir = starts_with(im->source, "pngdir:");
    const char *path = strchr(im->source, ':') + 1;
    struct stat st;
    if (stat(path, &st) != 0)
        return cli_fail("%s: cannot open image data '%s': %s", cmd, path, strerror(errno));
    if (dir && !S_ISDIR(st.st_mode))
        return cli_fail("%s: pngdir: '%s' is not a directory", cmd, path);
    if (!dir && !S_ISREG(st.st_mode))
        return cli_fail("%s: idx: '%s' is not a regular file", cmd, path);
    /* The per-image limit goes to the library, which checks it from the headers (IDX
     * header, every PNG's IHDR) before decoding anything. */
    int rc = stochflow_images_load_limited(&im->px, &im->n, &im->c, &im->h, &im->w,
                                           im->source, max, CLI_MAX_DIM);
    if (rc < 0)
        return cli_fail("%s: cannot load images from '%s': %s (%s)", cmd, path,
                        stochflow_last_error_message(), stochflow_status_string(rc));
    if (im->n == 0) {
        images_close(im);
        return cli_fail("%s: no images in '%s'", cmd, path);
    }
    im->d = im->c * im->h * im->w;
    if (im->d == 0 || im->d > CLI_MAX_DIM) {
        images_close(im);
        return cli_fail("%s: images of %zux%zux%zu = %zu values exceed the limit of %zu", cmd,
                        im->c, im->h, im->w, im->d, (size_t)CLI_MAX_DIM);
    }
    return 0;
}

void images_close(imageset *im) {
    stochflow_images_free(im->px);
    im->px = NULL;
}

/* ---- options --------------------------------------------------------------------------- */

/* Options that only image data / image models use (train's --batch, --outdir and
 * --checkpoint-every serve every kind of data). */
static const char *const IMAGE_ONLY[] = {"--unet-base",  "--unet-mult",  "--unet-blocks",
                                         "--unet-attn",  "--unet-groups", "--max-images",
                                         "--sample-every", "--grid-n",   "--grid-steps",
                                         "--cols",       "--batch",      "--bpd",
                                         "--n-eval"};

int images_reject_options(const opts *o) {
    int train = strcmp(o->cmd, "train") == 0;
    for (size_t i = 0; i < sizeof IMAGE_ONLY / sizeof IMAGE_ONLY[0]; ++i) {
        if (train && strcmp(IMAGE_ONLY[i], "--batch") == 0) continue; /* train's own */
        if (opt(o, IMAGE_ONLY[i]))
            return cli_usage("%s: %s applies only to %s", o->cmd, IMAGE_ONLY[i],
                             train ? "image data (--data fashion-mnist, idx:PATH, pngdir:PATH)"
                                   : "image models (trained on image data)");
    }
    if (!train && opt(o, "--data")) {
        int k = images_source(o->cmd, opt(o, "--data"));
        if (k < 0) return k;
        if (k > 0)
            return cli_usage("%s: --data %s is image data, but %s is not an image model",
                             o->cmd, opt(o, "--data"),
                             opt(o, "--model") ? opt(o, "--model") : "the model");
    }
    return 0;
}

int unet_parse(unet_opts *uo, const opts *o) {
    int rc;
    if ((rc = get_u64(o, "--unet-base", 32, 1, 4096, &uo->base)) != 0 ||
        (rc = get_u64(o, "--unet-blocks", 1, 1, 8, &uo->blocks)) != 0 ||
        (rc = get_u64(o, "--unet-groups", 8, 1, 4096, &uo->groups)) != 0 ||
        (rc = get_u64(o, "--seed", 0, 0, UINT64_MAX, &uo->seed)) != 0)
        return rc;
    const char *ms = opt(o, "--unet-mult") ? opt(o, "--unet-mult") : "1,2,2";
    int L = parse_list(o->cmd, "--unet-mult", ms, uo->mult, STOCHFLOW_UNET_MAX_LEVELS, 1, 16);
    if (L < 0) return L;
    uo->levels = (size_t)L;
    uo->attn = 1u << (uo->levels - 1); /* default: attention at the lowest resolution */
    const char *as = opt(o, "--unet-attn");
    if (as && strcmp(as, "none") == 0) {
        uo->attn = 0;
    } else if (as) {
        size_t lv[STOCHFLOW_UNET_MAX_LEVELS];
        int k = parse_list(o->cmd, "--unet-attn", as, lv, STOCHFLOW_UNET_MAX_LEVELS, 0,
                           uo->levels - 1);
        if (k < 0) return k;
        uo->attn = 0;
        for (int i = 0; i < k; ++i) uo->attn |= 1u << lv[i];
    }
    /* the interpolant's name, checked on a scratch configuration */
    stochflow_config *cfg = NULL;
    rc = stochflow_config_new(&cfg, 1);
    if (rc < 0) return cli_fail_lib(rc, "configuration");
    rc = cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant"));
    stochflow_config_free(cfg);
    return rc;
}

int unet_build(stochflow_model **m, const opts *o, const unet_opts *uo, const imageset *im,
               size_t n_classes) {
    size_t f = (size_t)1 << (uo->levels - 1);
    if (im->h % f != 0 || im->w % f != 0)
        return cli_fail("%s: %zu U-Net levels need height and width divisible by %zu, but the "
                        "images are %zux%zu (use fewer --unet-mult entries)",
                        o->cmd, uo->levels, f, im->h, im->w);
    stochflow_config *cfg = NULL;
    int rc = stochflow_config_new(&cfg, im->d);
    stochflow_unet_options u;
    if (rc >= 0) rc = stochflow_unet_options_init(&u, sizeof u);
    if (rc >= 0) {
        u.channels = im->c;
        u.height = im->h;
        u.width = im->w;
        u.base = (size_t)uo->base;
        u.n_levels = uo->levels;
        memcpy(u.mult, uo->mult, sizeof u.mult);
        u.blocks = (size_t)uo->blocks;
        u.attn_mask = uo->attn;
        u.groups = (size_t)uo->groups;
        rc = stochflow_config_set_unet(cfg, &u);
    }
    if (rc >= 0 && cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant")) != 0) {
        stochflow_config_free(cfg);
        return CLI_ERR;
    }
    if (rc >= 0) rc = stochflow_config_set_seed(cfg, uo->seed);
    if (rc >= 0 && n_classes > 0) rc = stochflow_config_set_context(cfg, 0, n_classes);
    if (rc >= 0) rc = stochflow_model_new(m, cfg);
    stochflow_config_free(cfg);
    return rc < 0 ? cli_fail_lib(rc, "train: U-Net model") : 0;
}

/* ---- labels ------------------------------------------------------------------------------ */

/* The label file's name from the image file's: the last "images" of the file name becomes
 * "labels" and the "idx3" after it "idx1". 0, or -1 when the name has neither. */
static int label_path(char *buf, size_t cap, const char *img) {
    const char *base = strrchr(img, '/') ? strrchr(img, '/') + 1 : img;
    const char *p = NULL, *q;
    for (q = strstr(base, "images"); q; q = strstr(q + 1, "images")) p = q;
    if (p == NULL || strstr(p, "idx3") == NULL || strlen(img) >= cap) return -1;
    snprintf(buf, cap, "%s", img);
    char *b = buf + (p - img);
    memcpy(b, "labels", 6);
    memcpy(strstr(b, "idx3"), "idx1", 4);
    return 0;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int images_dataset_labels(int32_t **labels, size_t *n_classes, const imageset *im,
                          const char *cmd) {
    *labels = NULL;
    *n_classes = 0;
    if (starts_with(im->source, "pngdir:"))
        return cli_fail("%s: --labels dataset: a pngdir: source has no labels of its own; give "
                        "--labels FILE (.npy/.csv, one integer per image in file-name order)",
                        cmd);
    const char *img = strchr(im->source, ':') + 1;
    char path[sizeof im->source];
    if (label_path(path, sizeof path, img) != 0)
        return cli_fail("%s: --labels dataset: cannot name the label file of '%s' (expected "
                        "NAME-images-idx3-ubyte[.gz] beside NAME-labels-idx1-ubyte[.gz]); give "
                        "--labels FILE", cmd, img);
    gzFile f = gzopen(path, "rb"); /* raw files are read as they are */
    if (f == NULL)
        return cli_fail("%s: --labels dataset: cannot open the label file '%s' of '%s'", cmd,
                        path, img);
    unsigned char h[8];
    uint8_t *b = NULL;
    int32_t *l = NULL;
    int ret = CLI_ERR;
    if (gzread(f, h, 8) != 8 || h[0] != 0 || h[1] != 0 || h[2] != 0x08 || h[3] != 1) {
        cli_fail("%s: '%s' is not an IDX label file (unsigned bytes, one dimension)", cmd, path);
        goto out;
    }
    size_t nl = be32(h + 4);
    if (nl < im->n) {
        cli_fail("%s: '%s' has %zu labels for %zu images", cmd, path, nl, im->n);
        goto out;
    }
    b = malloc(im->n ? im->n : 1);
    l = malloc((im->n ? im->n : 1) * sizeof *l);
    if (b == NULL || l == NULL) {
        cli_fail("%s: out of memory for %zu labels", cmd, im->n);
        goto out;
    }
    if (gzread(f, b, (unsigned)im->n) != (int)im->n) {
        cli_fail("%s: '%s' is truncated (the header says %zu labels)", cmd, path, nl);
        goto out;
    }
    for (size_t i = 0; i < im->n; ++i) {
        l[i] = b[i];
        if ((size_t)b[i] + 1 > *n_classes) *n_classes = (size_t)b[i] + 1;
    }
    *labels = l;
    l = NULL;
    ret = 0;
out:
    gzclose(f);
    free(b);
    free(l);
    return ret;
}

/* ---- shapes --------------------------------------------------------------------------- */

static int config_shape(unet_shape *u, const stochflow_config *c) {
    if (stochflow_config_arch(c) != STOCHFLOW_ARCH_UNET) return STOCHFLOW_E_INVALID;
    stochflow_unet_options o;
    int rc = stochflow_config_unet(&o, c);
    if (rc < 0) return rc;
    u->c = o.channels;
    u->h = o.height;
    u->w = o.width;
    u->base = o.base;
    u->levels = o.n_levels;
    memcpy(u->mult, o.mult, sizeof u->mult);
    u->blocks = o.blocks;
    u->attn = o.attn_mask;
    u->groups = o.groups;
    return 0;
}

int unet_model_shape(unet_shape *u, const stochflow_model *m, const char *cmd,
                     const char *path) {
    stochflow_config *c = NULL;
    int rc = stochflow_model_config(&c, m);
    if (rc < 0) return cli_fail_lib(rc, "model configuration");
    if (stochflow_config_arch(c) != STOCHFLOW_ARCH_UNET) {
        stochflow_config_free(c);
        return cli_fail("%s: %s is not an image model (no U-Net); image data needs one", cmd,
                        path);
    }
    rc = config_shape(u, c);
    stochflow_config_free(c);
    return rc < 0 ? cli_fail_lib(rc, "U-Net configuration") : 0;
}

int unet_check_images(const unet_shape *u, const imageset *im, const char *cmd,
                      const char *path) {
    if (u->c != im->c || u->h != im->h || u->w != im->w)
        return cli_fail("%s: the images are %zux%zux%zu (channels x height x width) but %s "
                        "expects %zux%zux%zu",
                        cmd, im->c, im->h, im->w, path, u->c, u->h, u->w);
    return 0;
}

void unet_describe(char *mult, size_t mcap, char *attn, size_t acap, const unet_shape *u) {
    mult[0] = attn[0] = '\0';
    for (size_t i = 0; i < u->levels; ++i)
        snprintf(mult + strlen(mult), mcap - strlen(mult), "%s%zu", i ? "," : "", u->mult[i]);
    for (size_t l = 0; l < u->levels; ++l)
        if (u->attn & (1u << l))
            snprintf(attn + strlen(attn), acap - strlen(attn), "%s%zu", attn[0] ? "," : "", l);
    if (attn[0] == '\0') snprintf(attn, acap, "none");
}

int unet_info(const stochflow_config *c, json *j) {
    unet_shape u;
    if (config_shape(&u, c) < 0) {
        if (j)
            jstr(j, "arch",
                 stochflow_config_arch(c) == STOCHFLOW_ARCH_RESMLP ? "resmlp" : "mlp");
        return 0;
    }
    char mult[128], attn[64];
    unet_describe(mult, sizeof mult, attn, sizeof attn, &u);
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

/* ---- grids ------------------------------------------------------------------------------ */

/* The grid stochflow_images_write_grid draws is at most 10^6 pixels each way; a larger
 * one is refused before any work (the library would refuse it only after every image is
 * integrated). */
#define GRID_MAX_SIDE 1000000u

size_t grid_cols(size_t n, size_t cols) {
    size_t nc = cols;
    if (nc == 0)
        while (nc * nc < n) ++nc;
    return nc;
}

int grid_fits(const char *cmd, const char *what, size_t n, size_t cols, size_t h, size_t w) {
    size_t nc = grid_cols(n, cols);
    size_t nr = n / nc + (n % nc != 0);
    if (nc > (GRID_MAX_SIDE - 2) / (w + 2) || nr > (GRID_MAX_SIDE - 2) / (h + 2))
        return cli_fail("%s: a grid of %zu images of %zux%zu in %zu columns (%zu rows) would "
                        "exceed %u pixels on a side; %s",
                        cmd, n, h, w, nc, nr, GRID_MAX_SIDE, what);
    return 0;
}

static int cancel_only(void *user, double t) {
    (void)user;
    return solve_cancels(stop_requested, t, 1.0); /* grids sample 0 -> 1 */
}

int grid_write(const char *path, stochflow_model *m, const unet_shape *u, size_t n,
               const int32_t *labels, uint64_t steps, uint64_t seed, size_t cols,
               const char **what) {
    stochflow_solver *s = NULL;
    float *x = malloc(n * u->c * u->h * u->w * sizeof(float));
    int rc;
    *what = "sample grid";
    if (x == NULL) return STOCHFLOW_E_NOMEM;
    if ((rc = stochflow_solver_new(&s)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_RK4)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_STEPS, (double)steps)) < 0 ||
        (rc = stochflow_solver_set_progress(s, cancel_only, NULL)) < 0 ||
        (rc = stochflow_solver_sample_ctx(x, NULL, s, m, NULL, labels, n, seed)) < 0)
        goto out;
    *what = path;
    rc = stochflow_images_write_grid(path, x, n, u->c, u->h, u->w, cols);
out:
    stochflow_solver_free(s);
    free(x);
    return rc < 0 ? rc : 0;
}

/* ---- chunked solves ------------------------------------------------------------------------ */

int on_chunk_progress(void *user, double t) {
    chunk_progress *p = user;
    double span = p->t1 - p->t0, f = span != 0 ? (t - p->t0) / span : 1.0;
    progress_update(p->bar, p->done + p->chunk * f, p->extra[0] ? p->extra : NULL);
    return solve_cancels(stop_requested, t, p->t1);
}

uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
