/* make_checkpoint_fixtures.c - writes the checkpoint files of tests/data/checkpoints/,
 * which check_checkpoint loads and saves again byte for byte (the file format must not
 * change). Run it only when the format deliberately changes (a new format version):
 *     build/tests/make_checkpoint_fixtures tests/data/checkpoints
 * Three small models cover every section: an MLP trained with EMA (CONF, STAT, HPAR,
 * WGHT, EMAW, ADAM), a U-Net (UNET) and a learnable Fourier interpolant (INTP). */
#include <stdio.h>
#include <stdlib.h>

#include "stochflow.h"

#define CHECK(expr)                                                                  \
    do {                                                                             \
        if ((expr) != 0) {                                                           \
            fprintf(stderr, "%s failed: %s\n", #expr, stochflow_last_error_message()); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static void train(stochflow_model *m, size_t d, int n_steps) {
    float x1[16 * 16];
    for (int s = 0; s < n_steps; ++s) {
        double loss;
        CHECK(stochflow_random_normal(x1, 16 * d, 77, (uint64_t)s));
        CHECK(stochflow_model_train_step(&loss, m, x1, 16, NULL, NULL));
    }
}

static void save(stochflow_model *m, const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(stochflow_model_save(m, path));
    stochflow_model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
        return 2;
    }
    stochflow_config *c = NULL;
    stochflow_model *m = NULL;

    /* MLP, Fourier time features, step schedule, EMA on: 3 steps */
    const size_t widths[] = {6, 5};
    CHECK(stochflow_config_new(&c, 2));
    CHECK(stochflow_config_set_hidden(c, 2, widths));
    CHECK(stochflow_config_set_time_embedding(c, STOCHFLOW_TIME_FOURIER, 2));
    CHECK(stochflow_config_set_seed(c, 11));
    CHECK(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_STEP));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_DECAY_EVERY, 4));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_WEIGHT_DECAY, 0.01));
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.9));
    train(m, 2, 3);
    save(m, argv[1], "mlp_ema.sfm");

    /* U-Net on 1 x 4 x 4 images, one level of width 2: 1 step */
    stochflow_unet_options u;
    CHECK(stochflow_unet_options_init(&u, sizeof u));
    u.channels = 1;
    u.height = u.width = 4;
    u.base = 2;
    u.n_levels = 1;
    u.mult[0] = 1;
    u.blocks = 1;
    u.attn_mask = 0;
    u.groups = 1;
    CHECK(stochflow_config_new(&c, 16));
    CHECK(stochflow_config_set_unet(c, &u));
    CHECK(stochflow_config_set_seed(c, 12));
    CHECK(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    train(m, 16, 1);
    save(m, argv[1], "unet.sfm");

    /* learnable Fourier interpolant, 2 modes, Sinkhorn coupling: 2 steps */
    const size_t w1[] = {5};
    CHECK(stochflow_config_new(&c, 2));
    CHECK(stochflow_config_set_hidden(c, 1, w1));
    CHECK(stochflow_config_set_fourier_interpolant(c, STOCHFLOW_INTERP_TRIG, 2));
    CHECK(stochflow_config_set_seed(c, 13));
    CHECK(stochflow_model_new(&m, c));
    stochflow_config_free(c);
    CHECK(stochflow_model_set_param(m, STOCHFLOW_PARAM_COUPLING, STOCHFLOW_COUPLING_SINKHORN));
    train(m, 2, 2);
    save(m, argv[1], "fourier.sfm");
    return 0;
}
