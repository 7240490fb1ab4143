/* make_corpus.c - writes the checkpoint seed corpus (fuzz/corpus/checkpoint/), by hand:
 *   cc -Iinclude -Ibuild-rel/include fuzz/make_corpus.c build-rel/lib/libstochflow.a \
 *      -lblis -lpng16 -lm -lpthread -o /tmp/make_corpus && /tmp/make_corpus fuzz/corpus
 * Small models (a few hundred bytes each) covering every section and option: EMA on and
 * off, raw and Fourier time, each activation and interpolant, 1 to 3 hidden layers, and
 * the smallest U-Net with attention, a residual MLP with labels and one with linear experts.
 * Each file is written twice: mode byte 0x01 (CRC fixed up by the target) and 0x00. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stochflow.h"

static void emit(const char *dir, const char *name, stochflow_model *m) {
    size_t len;
    stochflow_model_serialized_size(&len, m);
    unsigned char *buf = malloc(len + 1);
    stochflow_model_save_buffer(NULL, buf + 1, len, m);
    for (int mode = 0; mode < 2; ++mode) {
        char path[512];
        snprintf(path, sizeof path, "%s/checkpoint/seed-%s-%d", dir, name, mode);
        buf[0] = (unsigned char)(mode ? 1 : 0);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, len + 1, f) != len + 1 || fclose(f) != 0) {
            perror(path);
            exit(1);
        }
    }
    free(buf);
}

static stochflow_model *make(size_t dim, size_t nh, const size_t *w, int act, int tk, size_t nf,
                             int interp, double ema, int steps) {
    stochflow_config *c;
    stochflow_model *m;
    stochflow_config_new(&c, dim);
    stochflow_config_set_hidden(c, nh, w);
    stochflow_config_set_activation(c, act);
    stochflow_config_set_time_embedding(c, tk, nf);
    stochflow_config_set_interpolant(c, interp);
    stochflow_config_set_seed(c, 42);
    if (stochflow_model_new(&m, c) != 0) exit(1);
    stochflow_config_free(c);
    if (ema > 0) stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, ema);
    stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-2);
    float x[8 * 3];
    for (int s = 0; s < steps; ++s) {
        double loss;
        stochflow_random_normal(x, 8 * dim, 1, (uint64_t)s);
        stochflow_model_train_step(&loss, m, x, 8, NULL, NULL);
    }
    return m;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "fuzz/corpus";
    const size_t w4[] = {4}, w33[] = {3, 3}, w232[] = {2, 3, 2};
    stochflow_model *m;
    m = make(2, 1, w4, 1, 1, 0, 1, 0.0, 0);
    emit(dir, "plain", m);
    stochflow_model_free(m);
    m = make(2, 1, w4, 2, 2, 1, 2, 0.9, 3);
    emit(dir, "ema-fourier", m);
    stochflow_model_free(m);
    m = make(1, 2, w33, 3, 1, 0, 1, 0.0, 2);
    emit(dir, "relu-d1", m);
    stochflow_model_free(m);
    m = make(3, 3, w232, 4, 2, 2, 2, 0.5, 1);
    emit(dir, "softplus-d3", m);
    stochflow_model_free(m);
    /* learnable Fourier interpolant (INTP section), OT coupling */
    {
        stochflow_config *c;
        stochflow_config_new(&c, 2);
        stochflow_config_set_hidden(c, 1, w4);
        stochflow_config_set_fourier_interpolant(c, STOCHFLOW_INTERP_TRIG, 3);
        if (stochflow_model_new(&m, c) != 0) return 1;
        stochflow_config_free(c);
        stochflow_model_set_param(m, STOCHFLOW_PARAM_COUPLING, STOCHFLOW_COUPLING_OT);
        stochflow_model_set_param(m, STOCHFLOW_PARAM_INTERP_LR, 1e-2);
        float x[8 * 2];
        for (int s = 0; s < 2; ++s) {
            double loss;
            stochflow_random_normal(x, 16, 1, (uint64_t)s);
            if (stochflow_model_train_step(&loss, m, x, 8, NULL, NULL) != 0) return 1;
        }
        emit(dir, "fourier-interp-ot", m);
        stochflow_model_free(m);
    }
    /* the smallest U-Net (1x2x2 images, base 2, one level, one block, one
     * group) with attention at its level, EMA on: UNET section, all of the model's ops */
    {
        stochflow_config *c;
        stochflow_unet_options u;
        if (stochflow_unet_options_init(&u, sizeof u) != 0) return 1;
        u.channels = 1;
        u.height = u.width = 2;
        u.base = 2;
        u.n_levels = 1;
        u.mult[0] = 1;
        u.blocks = 1;
        u.attn_mask = 1u;
        u.groups = 1;
        stochflow_config_new(&c, 4);
        if (stochflow_config_set_unet(c, &u) != 0) return 1;
        stochflow_config_set_seed(c, 42);
        if (stochflow_model_new(&m, c) != 0) return 1;
        stochflow_config_free(c);
        stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.9);
        stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 1e-2);
        float x[8 * 4];
        for (int s = 0; s < 2; ++s) {
            double loss;
            stochflow_random_normal(x, 32, 1, (uint64_t)s);
            if (stochflow_model_train_step(&loss, m, x, 8, NULL, NULL) != 0) return 1;
        }
        emit(dir, "unet", m);
        stochflow_model_free(m);
    }
    /* a small residual MLP (width 4, 2 blocks) with labels, EMA on: RMLP and COND */
    {
        stochflow_config *c;
        stochflow_config_new(&c, 2);
        if (stochflow_config_set_resmlp(c, 4, 2) != 0) return 1;
        stochflow_config_set_context(c, 0, 3);
        if (stochflow_model_new(&m, c) != 0) return 1;
        stochflow_config_free(c);
        stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, 0.9);
        float x[8 * 2];
        const int32_t lab[8] = {0, 1, 2, -1, 0, 1, 2, -1};
        for (int s = 0; s < 2; ++s) {
            double loss;
            stochflow_random_normal(x, 16, 1, (uint64_t)s);
            if (stochflow_model_train_step_ctx(&loss, m, x, NULL, lab, 8, NULL, NULL) != 0)
                return 1;
        }
        emit(dir, "resmlp-labels", m);
        stochflow_model_free(m);
    }
    /* a residual MLP with 2 linear experts: the 12-byte RMLP section */
    {
        stochflow_config *c;
        stochflow_config_new(&c, 2);
        if (stochflow_config_set_resmlp(c, 4, 1) != 0 ||
            stochflow_config_set_resmlp_experts(c, 2) != 0)
            return 1;
        if (stochflow_model_new(&m, c) != 0) return 1;
        stochflow_config_free(c);
        float x[8 * 2];
        double loss;
        stochflow_random_normal(x, 16, 2, 0);
        if (stochflow_model_train_step(&loss, m, x, 8, NULL, NULL) != 0) return 1;
        emit(dir, "resmlp-experts", m);
        stochflow_model_free(m);
    }
    return 0;
}
