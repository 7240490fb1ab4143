/* config.c - the configuration handle. */
#include <string.h>

#include "model.h"
#include "objective.h"

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

static int resmlp_check(size_t width, size_t blocks, const char *fn) {
    RETURN_ERROR_IF(width < 1 || width > STOCHFLOW__MAX_WIDTH, STOCHFLOW_E_INVALID,
                    "%s: width %zu out of range 1..%d", fn, width, STOCHFLOW__MAX_WIDTH);
    RETURN_ERROR_IF(blocks < 1 || blocks > STOCHFLOW__MAX_RES_BLOCKS, STOCHFLOW_E_INVALID,
                    "%s: %zu blocks, expected 1..%d", fn, blocks, STOCHFLOW__MAX_RES_BLOCKS);
    return 0;
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
    RETURN_ERROR_IF(c->arch != STOCHFLOW_ARCH_MLP && c->arch != STOCHFLOW_ARCH_UNET &&
                        c->arch != STOCHFLOW_ARCH_RESMLP,
                    STOCHFLOW_E_INVALID, "unknown architecture %d", c->arch);
    if (c->arch == STOCHFLOW_ARCH_RESMLP)
        FORWARD_IF_ERROR(resmlp_check(c->res_width, c->res_blocks, "residual MLP"));
    RETURN_ERROR_IF(c->res_experts > STOCHFLOW__MAX_RES_EXPERTS, STOCHFLOW_E_INVALID,
                    "%zu linear experts, expected 0..%d", c->res_experts,
                    STOCHFLOW__MAX_RES_EXPERTS);
    RETURN_ERROR_IF(c->res_experts > 0 && c->arch != STOCHFLOW_ARCH_RESMLP, STOCHFLOW_E_INVALID,
                    "linear experts belong to the residual MLP");
    if (c->arch == STOCHFLOW_ARCH_UNET) { /* U-Net */
        FORWARD_IF_ERROR(stochflow__unet_validate(&c->unet, c->dim));
        RETURN_ERROR_IF(c->interp.kind == STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_UNSUPPORTED,
                        "the learnable Fourier interpolant is not available with the U-Net");
    }
    RETURN_ERROR_IF(c->n_ctx > STOCHFLOW__MAX_CTX, STOCHFLOW_E_INVALID,
                    "context width %zu out of range 0..%d", c->n_ctx, STOCHFLOW__MAX_CTX);
    RETURN_ERROR_IF(c->n_classes > STOCHFLOW__MAX_CLASSES, STOCHFLOW_E_INVALID,
                    "class count %zu out of range 0..%d", c->n_classes, STOCHFLOW__MAX_CLASSES);
    FORWARD_IF_ERROR(stochflow__objective_validate(c)); /* lib/objective.c */
    if (c->interp.kind == STOCHFLOW_INTERP_FOURIER) { /* learnable interpolant */
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

STOCHFLOW_API int stochflow_config_hidden(size_t *n_layers, size_t *widths, size_t cap,
                                          const stochflow_config *cfg) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(widths == NULL && cap > 0, STOCHFLOW_E_INVALID,
                    "config_hidden: widths is NULL with cap %zu", cap);
    for (size_t i = 0; i < cfg->n_hidden && i < cap; ++i) widths[i] = cfg->hidden[i];
    if (n_layers) *n_layers = cfg->n_hidden;
    return 0;
}

STOCHFLOW_API int stochflow_config_activation(const stochflow_config *cfg) {
    if (cfg == NULL) return null_config("config_activation");
    return cfg->activation;
}

STOCHFLOW_API int stochflow_config_time_embedding(int *kind, size_t *n_freq,
                                                  const stochflow_config *cfg) {
    CHECK_CFG(cfg);
    if (kind) *kind = cfg->time_kind;
    if (n_freq) *n_freq = cfg->n_freq;
    return 0;
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

/* ---- U-Net ------------------------------------------------------------------------ */

/* The options struct of this release; a later release that adds fields takes them from
 * the reserved block (zero = the old behaviour) or accepts every earlier size. */
static int check_unet_options(const stochflow_unet_options *o, const char *fn) {
    RETURN_ERROR_IF(o == NULL, STOCHFLOW_E_INVALID, "%s: options are NULL", fn);
    RETURN_ERROR_IF(o->size != sizeof *o, STOCHFLOW_E_INVALID,
                    "%s: options size %zu, this library knows %zu (call "
                    "stochflow_unet_options_init with sizeof the struct)", fn, o->size,
                    sizeof *o);
    for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; ++i)
        RETURN_ERROR_IF(o->reserved[i] != 0, STOCHFLOW_E_INVALID,
                        "%s: reserved field %zu is %llu, must be 0", fn, i,
                        (unsigned long long)o->reserved[i]);
    RETURN_ERROR_IF(o->reserved32 != 0, STOCHFLOW_E_INVALID,
                    "%s: reserved32 is %u, must be 0", fn, (unsigned)o->reserved32);
    return 0;
}

STOCHFLOW_API int stochflow_unet_options_init(stochflow_unet_options *o, size_t size) {
    RETURN_ERROR_IF(o == NULL, STOCHFLOW_E_INVALID, "unet_options_init: options are NULL");
    RETURN_ERROR_IF(size != sizeof *o, STOCHFLOW_E_INVALID,
                    "unet_options_init: size %zu, this library knows %zu", size, sizeof *o);
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->base = 32;
    o->n_levels = 3;
    o->mult[0] = 1;
    o->mult[1] = 2;
    o->mult[2] = 2;
    o->blocks = 1;
    o->attn_mask = 1u << 2; /* attention at the lowest of the three levels */
    o->groups = 8;
    return 0;
}

STOCHFLOW_API int stochflow_config_set_unet(stochflow_config *cfg,
                                            const stochflow_unet_options *o) {
    CHECK_CFG(cfg);
    FORWARD_IF_ERROR(check_unet_options(o, "set_unet"));
    RETURN_ERROR_IF(o->n_levels < 1 || o->n_levels > STOCHFLOW_UNET_MAX_LEVELS,
                    STOCHFLOW_E_INVALID, "set_unet: %zu levels, expected 1..%d", o->n_levels,
                    STOCHFLOW_UNET_MAX_LEVELS);
    RETURN_ERROR_IF(cfg->interp.kind == STOCHFLOW_INTERP_FOURIER, STOCHFLOW_E_UNSUPPORTED,
                    "set_unet: the learnable Fourier interpolant is not available with the U-Net");
    stochflow__unet_cfg u;
    memset(&u, 0, sizeof u);
    u.channels = o->channels;
    u.height = o->height;
    u.width = o->width;
    u.base = o->base;
    u.n_levels = o->n_levels;
    u.blocks = o->blocks;
    u.groups = o->groups;
    u.attn_mask = o->attn_mask;
    memcpy(u.mult, o->mult, o->n_levels * sizeof *o->mult);
    FORWARD_IF_ERROR(stochflow__unet_validate(&u, cfg->dim));
    cfg->unet = u;
    cfg->arch = STOCHFLOW_ARCH_UNET;
    cfg->res_experts = 0; /* the residual MLP's output experts go with it */
    return 0;
}

STOCHFLOW_API int stochflow_config_set_resmlp(stochflow_config *cfg, size_t width,
                                              size_t blocks) {
    CHECK_CFG(cfg);
    FORWARD_IF_ERROR(resmlp_check(width, blocks, "set_resmlp"));
    cfg->res_width = width;
    cfg->res_blocks = blocks;
    cfg->arch = STOCHFLOW_ARCH_RESMLP;
    return 0;
}

STOCHFLOW_API int stochflow_config_resmlp(size_t *width, size_t *blocks,
                                          const stochflow_config *cfg) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(cfg->arch != STOCHFLOW_ARCH_RESMLP, STOCHFLOW_E_INVALID,
                    "config_resmlp: the configuration is not a residual MLP");
    if (width) *width = cfg->res_width;
    if (blocks) *blocks = cfg->res_blocks;
    return 0;
}

STOCHFLOW_API int stochflow_config_set_resmlp_experts(stochflow_config *cfg, size_t experts) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(cfg->arch != STOCHFLOW_ARCH_RESMLP, STOCHFLOW_E_INVALID,
                    "set_resmlp_experts: the configuration is not a residual MLP "
                    "(stochflow_config_set_resmlp first)");
    RETURN_ERROR_IF(experts > STOCHFLOW__MAX_RES_EXPERTS, STOCHFLOW_E_INVALID,
                    "set_resmlp_experts: %zu experts, expected 0..%d", experts,
                    STOCHFLOW__MAX_RES_EXPERTS);
    cfg->res_experts = experts;
    return 0;
}

STOCHFLOW_API int stochflow_config_resmlp_experts(size_t *experts, const stochflow_config *cfg) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(cfg->arch != STOCHFLOW_ARCH_RESMLP, STOCHFLOW_E_INVALID,
                    "config_resmlp_experts: the configuration is not a residual MLP");
    if (experts) *experts = cfg->res_experts;
    return 0;
}

STOCHFLOW_API int stochflow_config_arch(const stochflow_config *cfg) {
    if (cfg == NULL) return null_config("config_arch");
    return cfg->arch;
}

STOCHFLOW_API int stochflow_config_unet(stochflow_unet_options *out,
                                        const stochflow_config *cfg) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "config_unet: out is NULL");
    RETURN_ERROR_IF(cfg->arch != STOCHFLOW_ARCH_UNET, STOCHFLOW_E_INVALID,
                    "config_unet: the configuration is not a U-Net");
    const stochflow__unet_cfg *u = &cfg->unet;
    stochflow_unet_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.channels = u->channels;
    o.height = u->height;
    o.width = u->width;
    o.base = u->base;
    o.n_levels = u->n_levels;
    memcpy(o.mult, u->mult, u->n_levels * sizeof *o.mult);
    o.blocks = u->blocks;
    o.attn_mask = u->attn_mask;
    o.groups = u->groups;
    *out = o;
    return 0;
}

/* ---- conditional models (doc/conditional.md) -------------------------------------- */

STOCHFLOW_API int stochflow_config_set_context(stochflow_config *cfg, size_t n_ctx,
                                               size_t n_classes) {
    CHECK_CFG(cfg);
    RETURN_ERROR_IF(n_ctx > STOCHFLOW__MAX_CTX, STOCHFLOW_E_INVALID,
                    "set_context: context width %zu out of range 0..%d", n_ctx,
                    STOCHFLOW__MAX_CTX);
    RETURN_ERROR_IF(n_classes > STOCHFLOW__MAX_CLASSES, STOCHFLOW_E_INVALID,
                    "set_context: class count %zu out of range 0..%d", n_classes,
                    STOCHFLOW__MAX_CLASSES);
    cfg->n_ctx = n_ctx;
    cfg->n_classes = n_classes;
    return 0;
}

STOCHFLOW_API int stochflow_config_context(size_t *n_ctx, size_t *n_classes,
                                           const stochflow_config *cfg) {
    CHECK_CFG(cfg);
    if (n_ctx) *n_ctx = cfg->n_ctx;
    if (n_classes) *n_classes = cfg->n_classes;
    return 0;
}
