/* images.h - helpers of the stochflow program for image data and U-Net models
 * (images.c): data sources, the U-Net options and shape, sample grids, and the chunked
 * solver progress. Used by the train, sample, logp and info commands. Public API only. */
#ifndef STOCHFLOW_TOOLS_IMAGES_H
#define STOCHFLOW_TOOLS_IMAGES_H

#include "common.h"

/* Streams of stochflow_random_normal / stochflow_images_dequantize (< 2^32 - 16):
 * training step s dequantizes with stream s and draws its minibatch indices from
 * INDEX_STREAM + s; evaluation and sampling use streams training never reaches. */
#define IMG_INDEX_STREAM 0x80000000u
#define IMG_EVAL_STREAM 0xFFFFFF00u
#define IMG_SAMPLE_STREAM 0xFFFFFF01u
#define IMG_GRID_SEED_OFFSET 0x5EEDu

extern const char *const IMG_SOURCES_HELP; /* "fashion-mnist[:train|:test], idx:PATH, ..." */

/* Is SRC an image source? 1: "fashion-mnist[:train|:test]", "idx:PATH", "pngdir:PATH";
 * 0: anything else (a toy, a .npy/.csv file); CLI_USAGE (printed): an unknown "NAME:"
 * prefix, an unknown split, an empty path. */
int images_source(const char *cmd, const char *src);

typedef struct {
    uint8_t *px; /* n x c x h x w bytes (NCHW), from stochflow_images_load */
    size_t n, c, h, w, d;
    char source[4200];
} imageset;

/* Load image data SRC (test: fashion-mnist defaults to its test split; at most max
 * images, 0 = all). 0 or CLI_ERR (printed). */
int images_open(imageset *im, const char *cmd, const char *src, int test, size_t max);
void images_close(imageset *im);

/* Refuse the options of image data / image models (--unet-*, --bpd, ...) on a command
 * line for 2-D data and models, and image --data with a 2-D model: 0 or CLI_USAGE. */
int images_reject_options(const opts *o);

typedef struct {
    size_t c, h, w, base, levels, mult[STOCHFLOW_UNET_MAX_LEVELS], blocks, groups;
    uint32_t attn;
} unet_shape;

/* The model's U-Net shape; CLI_ERR (printed) when it is not a U-Net. */
int unet_model_shape(unet_shape *u, const stochflow_model *m, const char *cmd,
                     const char *path);
/* The images have the U-Net's C x H x W: 0 or CLI_ERR (printed). */
int unet_check_images(const unet_shape *u, const imageset *im, const char *cmd,
                      const char *path);

/* The --unet-* options, --seed and --interpolant of a new model, parsed before any data
 * is read: 0 or CLI_USAGE. */
typedef struct {
    uint64_t base, blocks, groups, seed;
    size_t levels, mult[STOCHFLOW_UNET_MAX_LEVELS];
    uint32_t attn;
} unet_opts;
int unet_parse(unet_opts *uo, const opts *o);
/* A new U-Net model for images of im's shape, class-conditional when n_classes > 0:
 * 0 or CLI_ERR. */
int unet_build(stochflow_model **m, const opts *o, const unet_opts *uo, const imageset *im,
               size_t n_classes);

/* The class labels of the images of im, for `--labels dataset`: the IDX label file next to
 * an idx: image file (NAME-images-idx3-ubyte[.gz] -> NAME-labels-idx1-ubyte[.gz]; raw or
 * gzip), the first im->n labels of it. A pngdir: source has no labels of its own (give a
 * .npy/.csv file). *labels (im->n values in 0..255, caller frees) and *n_classes (largest
 * + 1). 0 or CLI_ERR (printed). */
int images_dataset_labels(int32_t **labels, size_t *n_classes, const imageset *im,
                          const char *cmd);

/* The grid's columns (cols, or ceil(sqrt n) when 0), and whether the grid of n images of
 * h x w fits in 10^6 pixels a side (0, or CLI_ERR naming `what` to change). */
size_t grid_cols(size_t n, size_t cols);
int grid_fits(const char *cmd, const char *what, size_t n, size_t cols, size_t h, size_t w);
/* A PNG grid of n samples (RK4, `steps` steps, base draws keyed by seed), sample i of
 * class labels[i] when labels is not NULL (a conditional model, guidance 0). 0 or a
 * negative status (nothing printed; *what names the failing part). */
int grid_write(const char *path, stochflow_model *m, const unet_shape *u, size_t n,
               const int32_t *labels, uint64_t steps, uint64_t seed, size_t cols,
               const char **what);

/* Progress of a chunked solve: images done before this chunk + chunk x fraction of t. */
typedef struct {
    progress *bar;
    double t0, t1, done, chunk;
    char extra[64];
} chunk_progress;
int on_chunk_progress(void *user, double t);

/* splitmix64's finaliser: per-chunk probe seeds. */
uint64_t mix64(uint64_t x);

/* "1,2,2" and the attention levels ("2", "0,1" or "none") of a U-Net shape. */
void unet_describe(char *mult, size_t mcap, char *attn, size_t acap, const unet_shape *u);
/* info: for a U-Net configuration print its shape (j == NULL) or add its JSON keys;
 * returns 1 for a U-Net, 0 otherwise (then JSON gets "arch": "mlp"). */
int unet_info(const stochflow_config *c, json *j);

#endif
