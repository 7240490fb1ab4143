/* config.c - the configuration handle. */
#include <string.h>

#include "model.h"

void stochflow__config_defaults(stochflow_config *c, size_t dim) {
    memset(c, 0, sizeof *c);
    c->dim = dim;
    c->n_hidden = 3;
    c->hidden[0] = c->hidden[1] = c->hidden[2] = 256;
    c->activation = STOCHFLOW_ACT_SILU;
    c->time_kind = STOCHFLOW_TIME_RAW;
    c->n_freq = 0;
    c->interp.kind = STOCHFLOW_INTERP_TRIG;
    c->seed = 0;
    c->arch = STOCHFLOW_ARCH_MLP;
}

int stochflow__config_validate(const stochflow_config *c) {
    RETURN_ERROR_IF(c->dim < 1 || c->dim > STOCHFLOW__MAX_DIM, STOCHFLOW_E_INVALID,
                    "dimension %zu out of range 1..%d", c->dim, STOCHFLOW__MAX_DIM);
    RETURN_ERROR_IF(c->n_hidden < 1 || c->n_hidden > STOCHFLOW__MAX_HIDDEN, STOCHFLOW_E_INVALID,
                    "number of hidden layers %zu out of range 1..%d", c->n_hidden,
                    STOCHFLOW__MAX_HIDDEN);
    for (size_t i = 0; i < c->n_hidden; ++i)
        RETURN_ERROR_IF(c->hidden[i] < 1 || c->hidden[i] > STOCHFLOW__MAX_WIDTH,
                        STOCHFLOW_E_INVALID, "hidden width %zu (layer %zu) out of range 1..%d",
                        c->hidden[i], i, STOCHFLOW__MAX_WIDTH);
    RETURN_ERROR_IF(c->activation < STOCHFLOW_ACT_SILU || c->activation > STOCHFLOW_ACT_SOFTPLUS,
                    STOCHFLOW_E_INVALID, "unknown activation %d", c->activation);
    RETURN_ERROR_IF(c->time_kind != STOCHFLOW_TIME_RAW && c->time_kind != STOCHFLOW_TIME_FOURIER,
                    STOCHFLOW_E_INVALID, "unknown time embedding %d", c->time_kind);
    RETURN_ERROR_IF(c->time_kind == STOCHFLOW_TIME_FOURIER &&
                        (c->n_freq < 1 || c->n_freq > STOCHFLOW__MAX_FREQ),
                    STOCHFLOW_E_INVALID, "Fourier frequencies %zu out of range 1..%d", c->n_freq,
                    STOCHFLOW__MAX_FREQ);
    /* raw time has no frequencies: a hostile checkpoint claiming some would overrun the
     * time-feature buffer (found by fuzz/fuzz_checkpoint.c) */
    RETURN_ERROR_IF(c->time_kind == STOCHFLOW_TIME_RAW && c->n_freq != 0, STOCHFLOW_E_INVALID,
                    "raw time embedding with %zu Fourier frequencies", c->n_freq);
    RETURN_ERROR_IF(c->interp.kind < STOCHFLOW_INTERP_TRIG ||
                        c->interp.kind > STOCHFLOW_INTERP_FOURIER,
                    STOCHFLOW_E_INVALID, "unknown interpolant %d", c->interp.kind);
    RETURN_ERROR_IF(c->arch != STOCHFLOW_ARCH_MLP && c->arch != STOCHFLOW_ARCH_UNET,
                    STOCHFLOW_E_INVALID, "unknown architecture %d", c->arch);
    if (c->arch == STOCHFLOW_ARCH_UNET) { /* issue 8 */
        FORWARD_IF_ERROR(stochflow__unet_validate(&c->unet, c->dim));
        RETURN_ERROR_IF(c->interp.kind == STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_UNSUPPORTED,
                        "the learnable Fourier interpolant is not available with the U-Net");
    }
    if (c->interp.kind == STOCHFLOW_INTERP_FOURIER) { /* issue 9 */
        RETURN_ERROR_IF(c->interp.base != STOCHFLOW_INTERP_TRIG &&
                            c->interp.base != STOCHFLOW_INTERP_LINEAR,
                        STOCHFLOW_E_INVALID, "Fourier interpolant: unknown base schedule %d",
                        c->interp.base);
        RETURN_ERROR_IF(c->interp.n_modes < 1 || c->interp.n_modes > STOCHFLOW__MAX_MODES,
                        STOCHFLOW_E_INVALID,
                        "Fourier interpolant: %zu modes, expected 1..%d", c->interp.n_modes,
                        STOCHFLOW__MAX_MODES);
    }
    return 0;
}

STOCHFLOW_API int stochflow_config_new(stochflow_config **out, size_t dim) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "config_new: out is NULL");
    *out = NULL;
    RETURN_ERROR_IF(dim < 1 || dim > STOCHFLOW__MAX_DIM, STOCHFLOW_E_INVALID,
                    "config_new: dimension %zu out of range 1..%d", dim, STOCHFLOW__MAX_DIM);
    stochflow_config *c = stochflow__malloc(sizeof *c);
    RETURN_ERROR_IF(c == NULL, STOCHFLOW_E_NOMEM, "config_new: out of memory");
    stochflow__config_defaults(c, dim);
    *out = c;
    return 0;
}

STOCHFLOW_API void stochflow_config_free(stochflow_config *cfg) { stochflow__free(cfg); }

#define CHECK_CFG(cfg) RETURN_ERROR_IF((cfg) == NULL, STOCHFLOW_E_INVALID, "config is NULL")

STOCHFLOW_API int stochflow_config_set_hidden(stochflow_config *cfg, size_t n_layers,
                                              const size_t *widths) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(widths == NULL, STOCHFLOW_E_INVALID, "set_hidden: widths is NULL");
    RETURN_ERROR_IF(n_layers < 1 || n_layers > STOCHFLOW__MAX_HIDDEN, STOCHFLOW_E_INVALID,
                    "set_hidden: %zu layers, expected 1..%d", n_layers, STOCHFLOW__MAX_HIDDEN);
    for (size_t i = 0; i < n_layers; ++i)
        RETURN_ERROR_IF(widths[i] < 1 || widths[i] > STOCHFLOW__MAX_WIDTH, STOCHFLOW_E_INVALID,
                        "set_hidden: width %zu of layer %zu out of range 1..%d", widths[i], i,
                        STOCHFLOW__MAX_WIDTH);
    cfg->n_hidden = n_layers;
    memcpy(cfg->hidden, widths, n_layers * sizeof *widths);
    return 0;
}

STOCHFLOW_API int stochflow_config_set_activation(stochflow_config *cfg, int activation) {
    CHECK_CFG(cfg);
    if (activation == 0) activation = STOCHFLOW_ACT_SILU;
    RETURN_ERROR_IF(activation < STOCHFLOW_ACT_SILU || activation > STOCHFLOW_ACT_SOFTPLUS,
                    STOCHFLOW_E_INVALID, "set_activation: unknown activation %d", activation);
    cfg->activation = activation;
    return 0;
}

STOCHFLOW_API int stochflow_config_set_time_embedding(stochflow_config *cfg, int kind,
                                                      size_t n_freq) {
    CHECK_CFG(cfg);
    if (kind == 0) kind = STOCHFLOW_TIME_RAW;
    RETURN_ERROR_IF(kind != STOCHFLOW_TIME_RAW && kind != STOCHFLOW_TIME_FOURIER,
                    STOCHFLOW_E_INVALID, "set_time_embedding: unknown kind %d", kind);
    RETURN_ERROR_IF(kind == STOCHFLOW_TIME_FOURIER && (n_freq < 1 || n_freq > STOCHFLOW__MAX_FREQ),
                    STOCHFLOW_E_INVALID, "set_time_embedding: %zu frequencies, expected 1..%d",
                    n_freq, STOCHFLOW__MAX_FREQ);
    cfg->time_kind = kind;
    cfg->n_freq = kind == STOCHFLOW_TIME_FOURIER ? n_freq : 0;
    return 0;
}

STOCHFLOW_API int stochflow_config_set_interpolant(stochflow_config *cfg, int kind) {
    CHECK_CFG(cfg);
    if (kind == 0) kind = STOCHFLOW_INTERP_TRIG;
    RETURN_ERROR_IF(kind == STOCHFLOW_INTERP_CUSTOM, STOCHFLOW_E_INVALID,
                    "set_interpolant: use stochflow_config_set_schedule for a custom schedule");
    RETURN_ERROR_IF(kind == STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_INVALID,
                    "set_interpolant: use stochflow_config_set_fourier_interpolant for a "
                    "learnable interpolant");
    RETURN_ERROR_IF(kind != STOCHFLOW_INTERP_TRIG && kind != STOCHFLOW_INTERP_LINEAR,
                    STOCHFLOW_E_INVALID, "set_interpolant: unknown interpolant %d", kind);
    cfg->interp = (stochflow__interp){.kind = kind};
    return 0;
}

STOCHFLOW_API int stochflow_config_set_schedule(stochflow_config *cfg, stochflow_schedule_fn fn,
                                                void *user) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(fn == NULL, STOCHFLOW_E_INVALID, "set_schedule: callback is NULL");
    stochflow__interp ip = {.kind = STOCHFLOW_INTERP_CUSTOM, .fn = fn, .user = user};
    FORWARD_IF_ERROR(stochflow__interp_check(&ip));
    cfg->interp = ip;
    return 0;
}

STOCHFLOW_API int stochflow_config_set_seed(stochflow_config *cfg, uint64_t seed) {
    CHECK_CFG(cfg);
    cfg->seed = seed;
    return 0;
}

/* Value getters return the value itself, not a status. Errors are reported one way
 * (doc/errors.md): a NULL handle gives 0, which is never a valid value, and the thread's
 * message says which call got it. */
#define null_config(fn) stochflow__null_handle(fn, "config")

STOCHFLOW_API size_t stochflow_config_dim(const stochflow_config *cfg) {
    if (cfg == NULL) return null_config("config_dim");
    return cfg->dim;
}

STOCHFLOW_API size_t stochflow_config_hidden(const stochflow_config *cfg, size_t *widths_out,
                                             size_t cap) {
    if (cfg == NULL) return null_config("config_hidden");
    for (size_t i = 0; i < cfg->n_hidden && i < cap && widths_out; ++i)
        widths_out[i] = cfg->hidden[i];
    return cfg->n_hidden;
}

STOCHFLOW_API int stochflow_config_activation(const stochflow_config *cfg) {
    if (cfg == NULL) return null_config("config_activation");
    return cfg->activation;
}

STOCHFLOW_API int stochflow_config_time_embedding(const stochflow_config *cfg, size_t *n_freq) {
    if (n_freq) *n_freq = cfg ? cfg->n_freq : 0;
    if (cfg == NULL) return null_config("config_time_embedding");
    return cfg->time_kind;
}

STOCHFLOW_API int stochflow_config_interpolant(const stochflow_config *cfg) {
    if (cfg == NULL) return null_config("config_interpolant");
    return cfg->interp.kind;
}

STOCHFLOW_API uint64_t stochflow_config_seed(const stochflow_config *cfg) {
    /* 0 is also a valid seed: check cfg first where that matters */
    if (cfg == NULL) return null_config("config_seed");
    return cfg->seed;
}

/* ---- U-Net (issue 8) -------------------------------------------------------------- */

STOCHFLOW_API int stochflow_config_set_unet(stochflow_config *cfg, size_t channels,
                                            size_t height, size_t width, size_t base,
                                            size_t n_levels, const size_t *mult, size_t blocks,
                                            uint32_t attn_mask, size_t groups) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(mult == NULL, STOCHFLOW_E_INVALID, "set_unet: mult is NULL");
    RETURN_ERROR_IF(n_levels < 1 || n_levels > STOCHFLOW_UNET_MAX_LEVELS, STOCHFLOW_E_INVALID,
                    "set_unet: %zu levels, expected 1..%d", n_levels, STOCHFLOW_UNET_MAX_LEVELS);
    RETURN_ERROR_IF(cfg->interp.kind == STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_UNSUPPORTED,
                    "set_unet: the learnable Fourier interpolant is not available with the U-Net");
    stochflow__unet_cfg u;
    memset(&u, 0, sizeof u);
    u.channels = channels;
    u.height = height;
    u.width = width;
    u.base = base;
    u.n_levels = n_levels;
    u.blocks = blocks;
    u.groups = groups;
    u.attn_mask = attn_mask;
    memcpy(u.mult, mult, n_levels * sizeof *mult);
    FORWARD_IF_ERROR(stochflow__unet_validate(&u, cfg->dim));
    cfg->unet = u;
    cfg->arch = STOCHFLOW_ARCH_UNET;
    return 0;
}

STOCHFLOW_API int stochflow_config_arch(const stochflow_config *cfg) {
    if (cfg == NULL) return null_config("config_arch");
    return cfg->arch;
}

STOCHFLOW_API int stochflow_config_unet(size_t *channels, size_t *height, size_t *width,
                                        size_t *base, size_t *n_levels, size_t *mult,
                                        size_t *blocks, uint32_t *attn_mask, size_t *groups,
                                        const stochflow_config *cfg) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(cfg->arch != STOCHFLOW_ARCH_UNET, STOCHFLOW_E_INVALID,
                    "config_unet: the configuration is not a U-Net");
    const stochflow__unet_cfg *u = &cfg->unet;
    if (channels) *channels = u->channels;
    if (height) *height = u->height;
    if (width) *width = u->width;
    if (base) *base = u->base;
    if (n_levels) *n_levels = u->n_levels;
    if (mult) memcpy(mult, u->mult, u->n_levels * sizeof *mult);
    if (blocks) *blocks = u->blocks;
    if (attn_mask) *attn_mask = u->attn_mask;
    if (groups) *groups = u->groups;
    return 0;
}
