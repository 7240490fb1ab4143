/* image_curve.c - issue 8: held-out interpolant loss of a series of image checkpoints
 * (the training curve of bench/IMAGES.md). Every checkpoint is scored on the same
 * dequantized test images with the same base samples and times (common random numbers),
 * so differences between checkpoints are not sampling noise. Run by hand:
 *
 *   ./build/bench/image_curve fashion-mnist-test 1024 ckpt-*.sfm > curve.csv
 *
 * The first argument is an image source as stochflow_images_load takes it
 * ("idx:PATH", "pngdir:PATH"); "fashion-mnist-test" is Debian's Fashion-MNIST test set.
 * Output: CSV "step,loss" (loss = E|v|^2 - 2 dI/dt . v per image, with the live weights:
 * stochflow_model_loss does not use the EMA), in the order given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stochflow.h"

#define FMNIST_TEST "idx:/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: image_curve SOURCE N CHECKPOINT...\n");
        return 2;
    }
    const char *src = strcmp(argv[1], "fashion-mnist-test") == 0 ? FMNIST_TEST : argv[1];
    size_t want = strtoul(argv[2], NULL, 10);
    uint8_t *px = NULL;
    size_t count, c, h, w;
    if (stochflow_images_load(&px, &count, &c, &h, &w, src, want) < 0) {
        fprintf(stderr, "%s: %s\n", src, stochflow_last_error_message());
        return 1;
    }
    const size_t d = c * h * w, n = count;
    float *x1 = malloc(n * d * sizeof *x1), *x0 = malloc(n * d * sizeof *x0);
    float *t = malloc(n * sizeof *t);
    if (!x1 || !x0 || !t) return 1;
    stochflow_images_dequantize(x1, px, n * d, 12345, 1);
    stochflow_random_normal(x0, n * d, 12345, 2);
    for (size_t i = 0; i < n; ++i) { /* t in (0, 1): a fixed, spread set of times */
        t[i] = (float)((double)(i % 1000) / 1000.0 + 0.0005);
    }
    printf("step,loss\n");
    for (int a = 3; a < argc; ++a) {
        stochflow_model *m = NULL;
        if (stochflow_model_load(&m, argv[a]) < 0) {
            fprintf(stderr, "%s: %s\n", argv[a], stochflow_last_error_message());
            return 1;
        }
        if (stochflow_model_dim(m) != d) {
            fprintf(stderr, "%s: model dimension %zu, images have %zu values\n", argv[a],
                    stochflow_model_dim(m), d);
            return 1;
        }
        stochflow_model_set_param(m, STOCHFLOW_PARAM_THREADS, 2);
        double total = 0.0;
        const size_t chunk = 64;
        for (size_t s = 0; s < n; s += chunk) {
            size_t rows = n - s < chunk ? n - s : chunk;
            double loss;
            if (stochflow_model_loss(&loss, m, x1 + s * d, rows, x0 + s * d, t + s) < 0) {
                fprintf(stderr, "%s: %s\n", argv[a], stochflow_last_error_message());
                return 1;
            }
            total += loss * (double)rows;
        }
        printf("%llu,%.6f\n", (unsigned long long)stochflow_model_step(m), total / (double)n);
        fflush(stdout);
        stochflow_model_free(m);
    }
    stochflow_images_free(px);
    free(x1);
    free(x0);
    free(t);
    return 0;
}
