/* checkpoint.c - versioned, little-endian, CRC-32-checked model files.
 * The byte layout is specified in doc/checkpoint-format.md. A file is a header, a
 * sequence of tagged sections and a CRC; each section is one row of the table below
 * (tag, when it is written, its length, its writer, its readers), all built on the byte
 * helpers of lib/bytes.h. File utilities (CRC, atomic write, reading) are lib/fileio.c. */
#include <math.h>
#include <string.h>

#include "bytes.h"
#include "model.h"
#include "objective.h"
#include "params.h"

#define MAGIC "STOCHFLW"
#define FORMAT_VERSION 1u
#define HEADER_SIZE 24u
#define SECTION_HEADER 16u
#define MAX_FILE_SIZE ((uint64_t)1 << 40)

typedef stochflow__writer writer;
typedef stochflow__reader reader;

/* A section's body inside a buffer being loaded (at == NULL: absent). */
typedef struct {
    const uint8_t *at;
    uint64_t len;
} sect;

/* What loading builds: the configuration first (nothing allocated), then the model. */
typedef struct {
    stochflow_config cfg;
    size_t np; /* parameter count the configuration implies */
    int conf_no_hidden; /* CONF lists no hidden widths (a residual MLP) */
    stochflow_model *m;
} load_ctx;

/* ---- HPAR: every model-owned keyed parameter, in the table's order ------------------ */

static int conditional(const stochflow_model *m) { return m->cfg.n_ctx || m->cfg.n_classes; }

/* Model keys in the table's order; a key marked when_set (newer than the original
 * format) only when it is set away from its default, so that a file using none of the
 * newer settings is byte for byte what earlier versions wrote. An absent key reads as its
 * default. */
static int hpar_stored(const stochflow_model *m, const stochflow__param_info *p) {
    if (p->owner != STOCHFLOW__OWNER_MODEL) return 0;
    return !p->when_set ||
           *stochflow__hparams_field((stochflow__hparams *)&m->hp, p->key) != p->def;
}

static uint64_t hpar_count(const stochflow_model *m) {
    size_t n, count = 0;
    const stochflow__param_info *t = stochflow__param_table(&n);
    for (size_t i = 0; i < n; ++i) count += hpar_stored(m, &t[i]);
    return count;
}

/* ---- section lengths, writers and readers -------------------------------------------- */

/* The hidden widths written: none for a residual MLP, whose shape is in RMLP; n_hidden = 0
 * is invalid for the MLP, so a reader that does not know RMLP refuses the file instead of
 * loading it as an MLP whose parameter count happens to match. */
static size_t conf_hidden(const stochflow_model *m) {
    return m->cfg.arch == STOCHFLOW_ARCH_RESMLP ? 0 : m->cfg.n_hidden;
}
static uint64_t conf_len(const stochflow_model *m) { return 32 + 4 * (uint64_t)conf_hidden(m); }
static void conf_write(writer *w, const stochflow_model *m) {
    const stochflow_config *c = &m->cfg;
    const size_t nh = conf_hidden(m);
    stochflow__w_u32(w, (uint32_t)c->dim);
    stochflow__w_u32(w, (uint32_t)nh);
    stochflow__w_u32(w, (uint32_t)c->activation);
    stochflow__w_u32(w, (uint32_t)c->time_kind);
    stochflow__w_u32(w, (uint32_t)c->n_freq);
    stochflow__w_u32(w, (uint32_t)c->interp.kind);
    stochflow__w_u64(w, c->seed);
    for (size_t i = 0; i < nh; ++i) stochflow__w_u32(w, (uint32_t)c->hidden[i]);
}
static int conf_read(load_ctx *c, const sect *s) {
    stochflow_config *cfg = &c->cfg;
    RETURN_ERROR_IF(s->len < 32, STOCHFLOW_E_FORMAT, "checkpoint CONF section too short");
    reader r = {s->at, (size_t)s->len, 0};
    cfg->dim = stochflow__r_u32(&r);
    uint32_t nh = stochflow__r_u32(&r);
    cfg->activation = (int)stochflow__r_u32(&r);
    cfg->time_kind = (int)stochflow__r_u32(&r);
    cfg->n_freq = stochflow__r_u32(&r);
    cfg->interp.kind = (int)stochflow__r_u32(&r);
    cfg->seed = stochflow__r_u64(&r);
    RETURN_ERROR_IF(nh > STOCHFLOW__MAX_HIDDEN || s->len != 32 + 4 * (uint64_t)nh,
                    STOCHFLOW_E_FORMAT, "checkpoint CONF section is inconsistent");
    /* no widths: a residual MLP (RMLP, read next), keeping the default widths; without
     * RMLP the configuration's validation refuses it */
    if (nh == 0) {
        c->conf_no_hidden = 1;
        return 0;
    }
    cfg->n_hidden = nh;
    for (uint32_t i = 0; i < nh; ++i) cfg->hidden[i] = stochflow__r_u32(&r);
    return 0;
}

/* a residual MLP's shape: width, blocks, then the number of linear experts only when
 * there are some (so a model without them is written as before, and a reader that knows
 * no experts refuses a model with them: its section is longer) (absent for the other
 * networks) */
static int rmlp_written(const stochflow_model *m) { return m->cfg.arch == STOCHFLOW_ARCH_RESMLP; }
static uint64_t rmlp_len(const stochflow_model *m) { return m->cfg.res_experts ? 12 : 8; }
static void rmlp_write(writer *w, const stochflow_model *m) {
    stochflow__w_u32(w, (uint32_t)m->cfg.res_width);
    stochflow__w_u32(w, (uint32_t)m->cfg.res_blocks);
    if (m->cfg.res_experts) stochflow__w_u32(w, (uint32_t)m->cfg.res_experts);
}
static int rmlp_read(load_ctx *c, const sect *s) {
    RETURN_ERROR_IF(s->len != 8 && s->len != 12, STOCHFLOW_E_FORMAT,
                    "checkpoint RMLP section malformed");
    RETURN_ERROR_IF(c->cfg.arch == STOCHFLOW_ARCH_UNET, STOCHFLOW_E_FORMAT,
                    "checkpoint has both a UNET and an RMLP section");
    reader r = {s->at, (size_t)s->len, 0};
    c->cfg.res_width = stochflow__r_u32(&r);
    c->cfg.res_blocks = stochflow__r_u32(&r);
    c->cfg.res_experts = s->len == 12 ? stochflow__r_u32(&r) : 0;
    /* one byte form per model: 0 experts is the 8-byte section */
    RETURN_ERROR_IF(s->len == 12 && c->cfg.res_experts == 0, STOCHFLOW_E_FORMAT,
                    "checkpoint RMLP section names 0 linear experts");
    RETURN_ERROR_IF(!c->conf_no_hidden, STOCHFLOW_E_FORMAT,
                    "checkpoint has an RMLP section and hidden widths in CONF");
    c->cfg.arch = STOCHFLOW_ARCH_RESMLP; /* the sizes are validated with the configuration */
    return 0;
}

/* a U-Net's shape (absent for the MLP) */
static int unet_written(const stochflow_model *m) { return m->cfg.arch == STOCHFLOW_ARCH_UNET; }
static uint64_t unet_len(const stochflow_model *m) {
    (void)m;
    return 4 * (8 + STOCHFLOW_UNET_MAX_LEVELS);
}
static void unet_write(writer *w, const stochflow_model *m) {
    const stochflow__unet_cfg *u = &m->cfg.unet;
    stochflow__w_u32(w, (uint32_t)u->channels);
    stochflow__w_u32(w, (uint32_t)u->height);
    stochflow__w_u32(w, (uint32_t)u->width);
    stochflow__w_u32(w, (uint32_t)u->base);
    stochflow__w_u32(w, (uint32_t)u->n_levels);
    stochflow__w_u32(w, (uint32_t)u->blocks);
    stochflow__w_u32(w, (uint32_t)u->groups);
    stochflow__w_u32(w, u->attn_mask);
    for (size_t l = 0; l < STOCHFLOW_UNET_MAX_LEVELS; ++l)
        stochflow__w_u32(w, (uint32_t)(l < u->n_levels ? u->mult[l] : 0));
}
static int unet_read(load_ctx *c, const sect *s) {
    RETURN_ERROR_IF(s->len != 4 * (8 + STOCHFLOW_UNET_MAX_LEVELS), STOCHFLOW_E_FORMAT,
                    "checkpoint UNET section malformed");
    reader r = {s->at, (size_t)s->len, 0};
    stochflow__unet_cfg *u = &c->cfg.unet;
    u->channels = stochflow__r_u32(&r);
    u->height = stochflow__r_u32(&r);
    u->width = stochflow__r_u32(&r);
    u->base = stochflow__r_u32(&r);
    u->n_levels = stochflow__r_u32(&r);
    u->blocks = stochflow__r_u32(&r);
    u->groups = stochflow__r_u32(&r);
    u->attn_mask = stochflow__r_u32(&r);
    for (size_t l = 0; l < STOCHFLOW_UNET_MAX_LEVELS; ++l) u->mult[l] = stochflow__r_u32(&r);
    /* the multipliers of unused levels are written as 0: one byte form per model */
    for (size_t l = u->n_levels; l < STOCHFLOW_UNET_MAX_LEVELS; ++l)
        RETURN_ERROR_IF(u->mult[l] != 0, STOCHFLOW_E_FORMAT,
                        "checkpoint UNET section: multiplier %zu of unused level %zu",
                        u->mult[l], l);
    c->cfg.arch = STOCHFLOW_ARCH_UNET;
    return 0;
}

static uint64_t stat_len(const stochflow_model *m) {
    (void)m;
    return 16;
}
static void stat_write(writer *w, const stochflow_model *m) {
    stochflow__w_u64(w, m->step);
    stochflow__w_u32(w, (uint32_t)m->ema_valid);
    stochflow__w_u32(w, 0);
}
static int stat_check(const load_ctx *c, const sect *s) {
    (void)c;
    RETURN_ERROR_IF(s->len != 16, STOCHFLOW_E_FORMAT, "checkpoint STAT section malformed");
    uint32_t ema_valid = stochflow__le_get32(s->at + 8);
    RETURN_ERROR_IF(ema_valid > 1, STOCHFLOW_E_FORMAT,
                    "checkpoint STAT section: ema_valid is %u, not 0 or 1", ema_valid);
    return 0;
}
static int stat_read(load_ctx *c, const sect *s) {
    reader r = {s->at, 16, 0};
    c->m->step = stochflow__r_u64(&r);
    c->m->ema_valid = stochflow__r_u32(&r) != 0;
    return 0;
}

static uint64_t hpar_len(const stochflow_model *m) {
    return 8 + 16 * (hpar_count(m) + (uint64_t)m->carried.hpar_count);
}
static void hpar_write(writer *w, const stochflow_model *m) {
    size_t n;
    const stochflow__param_info *t = stochflow__param_table(&n);
    stochflow__w_u32(w, (uint32_t)(hpar_count(m) + m->carried.hpar_count));
    stochflow__w_u32(w, 0);
    for (size_t i = 0; i < n; ++i) {
        if (!hpar_stored(m, &t[i])) continue;
        stochflow__w_u32(w, (uint32_t)t[i].key);
        stochflow__w_u32(w, 0);
        /* runtime resources are not model state: the thread count is written as its
         * default and ignored when read (doc/threading.md) */
        stochflow__w_f64(w, t[i].key == STOCHFLOW_PARAM_THREADS
                                ? t[i].def
                                : *stochflow__hparams_field((stochflow__hparams *)&m->hp,
                                                            t[i].key));
    }
    /* keys of a newer writer, carried verbatim */
    if (m->carried.hpar_count) stochflow__w_bytes(w, m->carried.hpar, 16 * m->carried.hpar_count);
}
static int hpar_read(load_ctx *c, const sect *s) {
    RETURN_ERROR_IF(s->len < 8, STOCHFLOW_E_FORMAT, "checkpoint HPAR section too short");
    reader r = {s->at, (size_t)s->len, 0};
    uint32_t count = stochflow__r_u32(&r);
    (void)stochflow__r_u32(&r);
    RETURN_ERROR_IF(s->len != 8 + 16 * (uint64_t)count, STOCHFLOW_E_FORMAT,
                    "checkpoint HPAR section malformed");
    size_t unknown = 0;
    for (uint32_t i = 0; i < count; ++i) {
        int key = (int)stochflow__r_u32(&r);
        (void)stochflow__r_u32(&r);
        double v = stochflow__r_f64(&r);
        if (stochflow__hparams_field(&c->m->hp, key) == NULL) { /* a newer key: carried */
            ++unknown;
            continue;
        }
        if (key == STOCHFLOW_PARAM_THREADS) continue; /* runtime, not state: default */
        RETURN_ERROR_IF(stochflow_model_set_param(c->m, key, v) < 0, STOCHFLOW_E_FORMAT,
                        "checkpoint parameter %d has invalid value %g", key, v);
    }
    if (unknown == 0) return 0;
    stochflow__carried *k = &c->m->carried;
    k->hpar = stochflow__alloc_array(unknown, 16);
    RETURN_ERROR_IF(k->hpar == NULL, STOCHFLOW_E_NOMEM, "load: out of memory");
    for (uint32_t i = 0; i < count; ++i) {
        const uint8_t *e = s->at + 8 + 16 * (size_t)i;
        if (stochflow__hparams_field(&c->m->hp, (int)stochflow__le_get32(e)) != NULL) continue;
        memcpy(k->hpar + 16 * k->hpar_count++, e, 16);
    }
    return 0;
}

/* WGHT, EMAW, ADAM: u64 count, then count floats per array (ADAM: first then second
 * moments). */
static uint64_t array_len(size_t np, size_t arrays) { return 8 + 4 * (uint64_t)np * arrays; }
static int array_read(float *dst, size_t arrays, const sect *s, const char *name, size_t np) {
    RETURN_ERROR_IF(s->len != array_len(np, arrays), STOCHFLOW_E_FORMAT,
                    "checkpoint section %s has %llu bytes, expected %llu for %zu parameters",
                    name, (unsigned long long)s->len, (unsigned long long)array_len(np, arrays),
                    np);
    reader r = {s->at, (size_t)s->len, 0};
    RETURN_ERROR_IF(stochflow__r_u64(&r) != np, STOCHFLOW_E_FORMAT,
                    "checkpoint section %s: parameter count does not match the configuration",
                    name);
    stochflow__r_f32s(&r, dst, np * arrays);
    return 0;
}

static uint64_t wght_len(const stochflow_model *m) { return array_len(m->n_params, 1); }
static void wght_write(writer *w, const stochflow_model *m) {
    stochflow__w_u64(w, m->n_params);
    stochflow__w_f32s(w, m->params, m->n_params);
}
/* Hostile sizes: the weights must actually be in the file before anything is allocated. */
static int wght_check(const load_ctx *c, const sect *s) {
    RETURN_ERROR_IF(s->len != array_len(c->np, 1), STOCHFLOW_E_FORMAT,
                    "checkpoint holds %llu weight bytes, the configuration needs %llu",
                    (unsigned long long)s->len, (unsigned long long)array_len(c->np, 1));
    return 0;
}
/* The whole state loads finite: weights, EMA weights and Adam moments. */
static int finite_or_format(const float *x, size_t n, const char *what) {
    RETURN_ERROR_IF(stochflow__check_finite(x, n, what) < 0, STOCHFLOW_E_FORMAT, "%s",
                    stochflow_last_error_message());
    return 0;
}
/* Adam second moments are non-negative (a negative one is a square root of < 0). */
static int nonneg_or_format(const float *x, size_t n, const char *what) {
    for (size_t i = 0; i < n; ++i)
        RETURN_ERROR_IF(x[i] < 0.0f, STOCHFLOW_E_FORMAT,
                        "%s: value %g at index %zu is negative", what, (double)x[i], i);
    return 0;
}
static int wght_read(load_ctx *c, const sect *s) {
    FORWARD_IF_ERROR(array_read(c->m->params, 1, s, "WGHT", c->np));
    return finite_or_format(c->m->params, c->np, "checkpoint weights");
}

static int emaw_written(const stochflow_model *m) { return m->ema_valid; }
static void emaw_write(writer *w, const stochflow_model *m) {
    stochflow__w_u64(w, m->n_params);
    stochflow__w_f32s(w, m->ema, m->n_params);
}
/* read when STAT says the EMA is valid (STAT is read first), ignored otherwise */
static int emaw_read(load_ctx *c, const sect *s) {
    if (!c->m->ema_valid) return 0;
    RETURN_ERROR_IF(s->at == NULL, STOCHFLOW_E_FORMAT, "checkpoint lacks its EMA weights");
    FORWARD_IF_ERROR(array_read(c->m->ema, 1, s, "EMAW", c->np));
    return finite_or_format(c->m->ema, c->np, "checkpoint EMA weights");
}

static uint64_t adam_len(const stochflow_model *m) { return array_len(m->n_params, 2); }
static void adam_write(writer *w, const stochflow_model *m) {
    stochflow__w_u64(w, m->n_params);
    stochflow__w_f32s(w, m->adam_m, m->n_params);
    stochflow__w_f32s(w, m->adam_v, m->n_params);
}
static int adam_read(load_ctx *c, const sect *s) {
    FORWARD_IF_ERROR(array_read(c->m->adam_m, 2, s, "ADAM", c->np));
    FORWARD_IF_ERROR(finite_or_format(c->m->adam_m, c->np, "checkpoint ADAM first moments"));
    FORWARD_IF_ERROR(finite_or_format(c->m->adam_v, c->np, "checkpoint ADAM second moments"));
    return nonneg_or_format(c->m->adam_v, c->np, "checkpoint ADAM second moments");
}

/* learned interpolant: body written and read by lib/transport.c */
static int intp_written(const stochflow_model *m) {
    return m->cfg.interp.kind == STOCHFLOW_INTERP_FOURIER;
}
static uint64_t intp_len(const stochflow_model *m) { return stochflow__transport_section_size(&m->cfg.interp); }
static void intp_write(writer *w, const stochflow_model *m) {
    if (w->p) stochflow__transport_section_write(w->p + w->len, &m->tr, &m->cfg.interp);
    w->len += stochflow__transport_section_size(&m->cfg.interp);
}
static int intp_conf(load_ctx *c, const sect *s) {
    if (c->cfg.interp.kind != STOCHFLOW_INTERP_FOURIER) return 0;
    RETURN_ERROR_IF(s->at == NULL, STOCHFLOW_E_FORMAT,
                    "checkpoint of a Fourier interpolant lacks its INTP section");
    return stochflow__transport_section_conf(&c->cfg.interp, s->at, s->len);
}
static int intp_read(load_ctx *c, const sect *s) {
    if (c->cfg.interp.kind != STOCHFLOW_INTERP_FOURIER) return 0;
    FORWARD_IF_ERROR(stochflow__transport_section_read(&c->m->tr, &c->m->cfg.interp, s->at, s->len));
    /* the rest of the ascent's state: finite, second moments non-negative */
    const stochflow__transport *tr = &c->m->tr;
    RETURN_ERROR_IF(!isfinite(tr->path_ema), STOCHFLOW_E_FORMAT,
                    "checkpoint INTP path_ema is not finite");
    for (size_t k = 0; k < 2 * c->m->cfg.interp.n_modes; ++k) {
        RETURN_ERROR_IF(!isfinite(tr->adam_m[k]), STOCHFLOW_E_FORMAT,
                        "checkpoint INTP Adam first moment %zu is not finite", k);
        RETURN_ERROR_IF(!isfinite(tr->adam_v[k]) || !(tr->adam_v[k] >= 0.0), STOCHFLOW_E_FORMAT,
                        "checkpoint INTP Adam second moment %zu is %g (must be finite and >= 0)",
                        k, tr->adam_v[k]);
    }
    return 0;
}

/* COND: the conditioning of a conditional model (absent for an unconditional one):
 * u32 n_ctx, u32 n_classes, u64 reserved (0). */
static uint64_t cond_len(const stochflow_model *m) {
    (void)m;
    return 16;
}
static void cond_write(writer *w, const stochflow_model *m) {
    stochflow__w_u32(w, (uint32_t)m->cfg.n_ctx);
    stochflow__w_u32(w, (uint32_t)m->cfg.n_classes);
    stochflow__w_u64(w, 0);
}
static int cond_read(load_ctx *c, const sect *s) {
    RETURN_ERROR_IF(s->len != 16, STOCHFLOW_E_FORMAT, "checkpoint COND section malformed");
    reader r = {s->at, 16, 0};
    c->cfg.n_ctx = stochflow__r_u32(&r);
    c->cfg.n_classes = stochflow__r_u32(&r);
    RETURN_ERROR_IF(stochflow__r_u64(&r) != 0 || (c->cfg.n_ctx == 0 && c->cfg.n_classes == 0),
                    STOCHFLOW_E_FORMAT, "checkpoint COND section is inconsistent");
    return 0;
}

/* training objective of a stochastic interpolant: body in lib/objective.c; written only
 * for a non-default objective, so files of plain models are unchanged */
static int sint_written(const stochflow_model *m) {
    return stochflow__objective_section_size(&m->cfg) != 0;
}
static uint64_t sint_len(const stochflow_model *m) {
    return stochflow__objective_section_size(&m->cfg);
}
static void sint_write(writer *w, const stochflow_model *m) {
    stochflow__objective_section_write(w, &m->cfg);
}
static int sint_conf(load_ctx *c, const sect *s) {
    return stochflow__objective_section_read(&c->cfg, s->at, s->len);
}

/* STDZ: the standardization (lib/standardize.c), written only when set: u64 d, then d
 * f64 shifts and d f64 scales (the original form, still written for a per-column map
 * alone). With whitening or a context map, an extension follows: u32 flags (1: the
 * whitening factor, 2: the context map, 4: no per-column data map, its shifts 0 and
 * scales 1 ignored), u32 n_ctx (0 without a context map), then with flag 1 the lower
 * triangle of the factor row by row (d (d + 1) / 2 f64), with flag 2 n_ctx f64 context
 * shifts and n_ctx f64 context scales. A reader older than the extension refuses such a
 * section (its length), rather than load a model whose map it would apply wrongly. */
#define STDZ_CHOL 1u
#define STDZ_CTX 2u
#define STDZ_NO_DATA 4u
static uint32_t stdz_flags(const stochflow_model *m) {
    return (m->std_chol ? STDZ_CHOL : 0u) | (m->ctx_shift ? STDZ_CTX : 0u) |
           (m->std_shift ? 0u : STDZ_NO_DATA);
}
static uint64_t stdz_body_len(uint64_t d, uint32_t flags, uint64_t n_ctx) {
    if (flags == 0) return 8 + 16 * d;
    return 8 + 16 * d + 8 + ((flags & STDZ_CHOL) ? 4 * d * (d + 1) : 0) +
           ((flags & STDZ_CTX) ? 16 * n_ctx : 0);
}
static int stdz_written(const stochflow_model *m) {
    return m->std_shift != NULL || m->ctx_shift != NULL;
}
static uint64_t stdz_len(const stochflow_model *m) {
    return stdz_body_len(m->d, stdz_flags(m), m->cfg.n_ctx);
}
static void stdz_write(writer *w, const stochflow_model *m) {
    const size_t d = m->d;
    const uint32_t flags = stdz_flags(m);
    stochflow__w_u64(w, d);
    for (size_t k = 0; k < d; ++k) stochflow__w_f64(w, m->std_shift ? m->std_shift[k] : 0.0);
    for (size_t k = 0; k < d; ++k) stochflow__w_f64(w, m->std_shift ? m->std_scale[k] : 1.0);
    if (flags == 0) return;
    stochflow__w_u32(w, flags);
    stochflow__w_u32(w, (flags & STDZ_CTX) ? (uint32_t)m->cfg.n_ctx : 0u);
    if (flags & STDZ_CHOL)
        for (size_t k = 0; k < d; ++k)
            for (size_t j = 0; j <= k; ++j) stochflow__w_f64(w, m->std_chol[k * d + j]);
    if (flags & STDZ_CTX) {
        for (size_t k = 0; k < m->cfg.n_ctx; ++k) stochflow__w_f64(w, m->ctx_shift[k]);
        for (size_t k = 0; k < m->cfg.n_ctx; ++k) stochflow__w_f64(w, m->ctx_scale[k]);
    }
}
static int stdz_check(const load_ctx *c, const sect *s) {
    const uint64_t d = c->cfg.dim, base = 8 + 16 * d;
    RETURN_ERROR_IF(s->len < base || stochflow__le_get64(s->at) != d, STOCHFLOW_E_FORMAT,
                    "checkpoint STDZ section does not hold %zu shifts and scales", c->cfg.dim);
    if (s->len == base) return 0;
    RETURN_ERROR_IF(s->len < base + 8, STOCHFLOW_E_FORMAT,
                    "checkpoint STDZ section: %llu bytes after the shifts and scales, not an "
                    "extension",
                    (unsigned long long)(s->len - base));
    const uint32_t flags = stochflow__le_get32(s->at + base);
    const uint32_t n_ctx = stochflow__le_get32(s->at + base + 4);
    RETURN_ERROR_IF(flags == 0 || (flags & ~(STDZ_CHOL | STDZ_CTX | STDZ_NO_DATA)) != 0 ||
                        ((flags & STDZ_NO_DATA) && (flags & STDZ_CHOL)) ||
                        flags == STDZ_NO_DATA,
                    STOCHFLOW_E_FORMAT, "checkpoint STDZ section: unknown flags %u", flags);
    RETURN_ERROR_IF((flags & STDZ_CTX) ? n_ctx != c->cfg.n_ctx || n_ctx == 0 : n_ctx != 0,
                    STOCHFLOW_E_FORMAT,
                    "checkpoint STDZ section: a context map of %u columns for a model with %zu",
                    n_ctx, c->cfg.n_ctx);
    RETURN_ERROR_IF((flags & STDZ_CHOL) && d > 1024, STOCHFLOW_E_FORMAT,
                    "checkpoint STDZ section: whitening of %zu columns (at most 1024)",
                    c->cfg.dim);
    RETURN_ERROR_IF(s->len != stdz_body_len(d, flags, n_ctx), STOCHFLOW_E_FORMAT,
                    "checkpoint STDZ section: length %llu does not match its flags %u",
                    (unsigned long long)s->len, flags);
    return 0;
}
static int stdz_read(load_ctx *c, const sect *s) {
    const size_t d = c->cfg.dim, nc = c->cfg.n_ctx;
    const uint32_t flags = s->len == 8 + 16 * (uint64_t)d
                               ? 0u
                               : stochflow__le_get32(s->at + 8 + 16 * (uint64_t)d);
    const size_t nchol = (flags & STDZ_CHOL) ? d * d : 0, nctx = (flags & STDZ_CTX) ? 2 * nc : 0;
    double *v = stochflow__calloc(2 * d + nchol + nctx, sizeof(double));
    RETURN_ERROR_IF(v == NULL, STOCHFLOW_E_NOMEM, "load: out of memory");
    double *L = nchol ? v + 2 * d : NULL, *cv = v + 2 * d + nchol;
    reader r = {s->at, (size_t)s->len, 8};
    for (size_t k = 0; k < 2 * d; ++k) v[k] = stochflow__r_f64(&r);
    r.pos += flags ? 8 : 0;
    for (size_t k = 0; L && k < d; ++k)
        for (size_t j = 0; j <= k; ++j) L[k * d + j] = stochflow__r_f64(&r);
    for (size_t k = 0; k < nctx; ++k) cv[k] = stochflow__r_f64(&r);
    int rc = 0;
    for (size_t k = 0; k < d && rc == 0 && !(flags & STDZ_NO_DATA); ++k)
        if (!isfinite(v[k]) || !isfinite(v[d + k]) || !(v[d + k] > 0.0))
            rc = stochflow__error(STOCHFLOW_E_FORMAT,
                                  "checkpoint STDZ: column %zu has shift %g, scale %g", k + 1,
                                  v[k], v[d + k]);
    for (size_t k = 0; k < d && L && rc == 0; ++k)
        for (size_t j = 0; j <= k && rc == 0; ++j)
            if (!isfinite(L[k * d + j]) || (j == k && !(L[k * d + k] > 0.0)))
                rc = stochflow__error(STOCHFLOW_E_FORMAT,
                                      "checkpoint STDZ: whitening factor [%zu][%zu] is %g", k, j,
                                      L[k * d + j]);
    for (size_t k = 0; k < nc && nctx && rc == 0; ++k)
        if (!isfinite(cv[k]) || !isfinite(cv[nc + k]) || !(cv[nc + k] > 0.0))
            rc = stochflow__error(STOCHFLOW_E_FORMAT,
                                  "checkpoint STDZ: context column %zu has shift %g, scale %g",
                                  k + 1, cv[k], cv[nc + k]);
    if (rc == 0 && !(flags & STDZ_NO_DATA)) rc = stochflow__std_install(c->m, v, v + d, L);
    if (rc == 0 && nctx) rc = stochflow__std_ctx_install(c->m, cv, cv + nc);
    stochflow__free(v);
    return rc;
}

/* ---- the section table ----------------------------------------------------------------
 * Written in this order. Loading runs, in this order: conf (configuration, before any
 * allocation; called only for present sections unless the row has call_absent), then
 * check (sizes the configuration implies, still before allocation), then read (into the
 * built model). Sections of unknown tags are carried to the next save (carry_unknown):
 * later minor versions may add sections. */
typedef struct {
    char tag[4];
    int required;    /* a file without it is malformed */
    int call_absent; /* conf/read are called with at == NULL when the section is absent */
    int (*written)(const stochflow_model *m); /* NULL: always written */
    uint64_t (*len)(const stochflow_model *m);
    void (*write)(writer *w, const stochflow_model *m);
    int (*conf)(load_ctx *c, const sect *s);
    int (*check)(const load_ctx *c, const sect *s);
    int (*read)(load_ctx *c, const sect *s);
} section_def;

static const section_def sections[] = {
    {"CONF", 1, 0, NULL, conf_len, conf_write, conf_read, NULL, NULL},
    {"UNET", 0, 0, unet_written, unet_len, unet_write, unet_read, NULL, NULL},
    {"RMLP", 0, 0, rmlp_written, rmlp_len, rmlp_write, rmlp_read, NULL, NULL},
    {"STAT", 1, 0, NULL, stat_len, stat_write, NULL, stat_check, stat_read},
    {"HPAR", 1, 0, NULL, hpar_len, hpar_write, NULL, NULL, hpar_read},
    {"WGHT", 1, 0, NULL, wght_len, wght_write, NULL, wght_check, wght_read},
    {"EMAW", 0, 1, emaw_written, wght_len, emaw_write, NULL, NULL, emaw_read},
    {"ADAM", 1, 0, NULL, adam_len, adam_write, NULL, NULL, adam_read},
    {"INTP", 0, 1, intp_written, intp_len, intp_write, intp_conf, NULL, intp_read},
    {"COND", 0, 0, conditional, cond_len, cond_write, cond_read, NULL, NULL},
    {"SINT", 0, 0, sint_written, sint_len, sint_write, sint_conf, NULL, NULL},
    {"STDZ", 0, 0, stdz_written, stdz_len, stdz_write, NULL, stdz_check, stdz_read},
};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

/* ---- saving ---------------------------------------------------------------------------- */

/* Serialize into w (counting only when w->p is NULL). */
static void serialize(writer *w, const stochflow_model *m) {
    stochflow__w_bytes(w, MAGIC, 8);
    stochflow__w_u32(w, FORMAT_VERSION);
    stochflow__w_u32(w, 0); /* flags, reserved */
    size_t payload_at = w->len;
    stochflow__w_u64(w, 0); /* payload length, patched below */
    size_t start = w->len;
    for (size_t i = 0; i < N_SECTIONS; ++i) {
        const section_def *d = &sections[i];
        if (d->written && !d->written(m)) continue;
        stochflow__w_bytes(w, d->tag, 4);
        stochflow__w_u32(w, 0);
        stochflow__w_u64(w, d->len(m));
        d->write(w, m);
    }
    /* sections of a newer writer, carried verbatim from the file this model was loaded
     * from */
    if (m->carried.sections_len)
        stochflow__w_bytes(w, m->carried.sections, m->carried.sections_len);
    if (w->p) {
        stochflow__le_put64(w->p + payload_at, w->len - start);
        stochflow__w_u32(w, stochflow__crc32(w->p, w->len));
    } else {
        w->len += 4;
    }
}

STOCHFLOW_API int stochflow_model_serialized_size(size_t *size, const stochflow_model *m) {
    RETURN_ERROR_IF(size == NULL, STOCHFLOW_E_INVALID, "serialized_size: size is NULL");
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    STOCHFLOW__ENTER(m, "model");
    writer w = {NULL, 0};
    serialize(&w, m);
    *size = w.len;
    return 0;
}

STOCHFLOW_API int stochflow_model_save_buffer(size_t *written, void *buf, size_t cap,
                                              const stochflow_model *m) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    RETURN_ERROR_IF(buf == NULL, STOCHFLOW_E_INVALID, "save_buffer: buffer is NULL");
    STOCHFLOW__ENTER(m, "model");
    size_t need;
    FORWARD_IF_ERROR(stochflow_model_serialized_size(&need, m));
    RETURN_ERROR_IF(cap < need, STOCHFLOW_E_INVALID,
                    "save_buffer: buffer of %zu bytes is too small (%zu needed)", cap, need);
    writer w = {buf, 0};
    serialize(&w, m);
    if (written) *written = w.len;
    return 0;
}

STOCHFLOW_API int stochflow_model_save(const stochflow_model *m, const char *path) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    RETURN_ERROR_IF(path == NULL, STOCHFLOW_E_INVALID, "save: path is NULL");
    STOCHFLOW__ENTER(m, "model");
    size_t len;
    FORWARD_IF_ERROR(stochflow_model_serialized_size(&len, m));
    uint8_t *buf = stochflow__malloc(len);
    RETURN_ERROR_IF(buf == NULL, STOCHFLOW_E_NOMEM, "save: cannot allocate %zu bytes", len);
    writer w = {buf, 0};
    serialize(&w, m);
    int rc = stochflow__atomic_write(path, buf, len);
    stochflow__free(buf);
    return rc;
}

/* ---- loading --------------------------------------------------------------------------- */

/* Magic, format version, payload length and CRC of a whole file in memory. */
static int check_header(const uint8_t *p, size_t len) {
    RETURN_ERROR_IF(len < HEADER_SIZE + 4 || memcmp(p, MAGIC, 8) != 0, STOCHFLOW_E_FORMAT,
                    "not a stochflow checkpoint (bad magic or too short: %zu bytes)", len);
    uint32_t version = stochflow__le_get32(p + 8);
    RETURN_ERROR_IF(version != FORMAT_VERSION, STOCHFLOW_E_VERSION,
                    "checkpoint format version %u is not supported (this library reads %u)",
                    version, FORMAT_VERSION);
    /* p + 12: flags, reserved */
    uint64_t payload = stochflow__le_get64(p + 16);
    RETURN_ERROR_IF(payload != len - HEADER_SIZE - 4, STOCHFLOW_E_FORMAT,
                    "checkpoint is truncated or has trailing bytes (payload %llu, file %zu)",
                    (unsigned long long)payload, len);
    RETURN_ERROR_IF(stochflow__crc32(p, len - 4) != stochflow__le_get32(p + len - 4),
                    STOCHFLOW_E_FORMAT, "checkpoint checksum mismatch (file corrupted)");
    return 0;
}

/* Find every known section (out[i] for sections[i]); *unknown_bytes: the size of the
 * sections of unknown tags, headers included (copied by carry_unknown). */
static int index_sections(sect out[N_SECTIONS], size_t *unknown_bytes, const uint8_t *p,
                          size_t len) {
    memset(out, 0, N_SECTIONS * sizeof *out);
    *unknown_bytes = 0;
    const size_t end = len - 4;
    size_t pos = HEADER_SIZE;
    while (pos < end) {
        RETURN_ERROR_IF(end - pos < SECTION_HEADER, STOCHFLOW_E_FORMAT,
                        "checkpoint section header truncated at byte %zu", pos);
        const uint8_t *tag = p + pos;
        uint64_t slen = stochflow__le_get64(p + pos + 8);
        pos += SECTION_HEADER;
        RETURN_ERROR_IF(slen > end - pos, STOCHFLOW_E_FORMAT,
                        "checkpoint section %.4s claims %llu bytes, only %zu left", tag,
                        (unsigned long long)slen, end - pos);
        size_t i = 0;
        while (i < N_SECTIONS && memcmp(tag, sections[i].tag, 4) != 0) ++i;
        if (i == N_SECTIONS) {
            *unknown_bytes += SECTION_HEADER + (size_t)slen;
        } else {
            RETURN_ERROR_IF(out[i].at != NULL, STOCHFLOW_E_FORMAT,
                            "checkpoint has two %.4s sections", tag);
            out[i].at = p + pos;
            out[i].len = slen;
        }
        pos += (size_t)slen;
    }
    for (size_t i = 0; i < N_SECTIONS; ++i)
        RETURN_ERROR_IF(sections[i].required && out[i].at == NULL, STOCHFLOW_E_FORMAT,
                        "checkpoint lacks a required section (%.4s)", sections[i].tag);
    return 0;
}

/* Copy the sections of unknown tags (headers included, in file order) into m->carried,
 * so that the next save writes them back (the file was walked by index_sections). */
static int carry_unknown(stochflow_model *m, const uint8_t *p, size_t len, size_t bytes) {
    stochflow__carried *k = &m->carried;
    k->sections = stochflow__malloc(bytes);
    RETURN_ERROR_IF(k->sections == NULL, STOCHFLOW_E_NOMEM, "load: out of memory");
    for (size_t pos = HEADER_SIZE; pos < len - 4;) {
        size_t whole = SECTION_HEADER + (size_t)stochflow__le_get64(p + pos + 8);
        size_t i = 0;
        while (i < N_SECTIONS && memcmp(p + pos, sections[i].tag, 4) != 0) ++i;
        if (i == N_SECTIONS) {
            memcpy(k->sections + k->sections_len, p + pos, whole);
            k->sections_len += whole;
        }
        pos += whole;
    }
    return 0;
}

/* The configuration and its parameter count, validated before anything is allocated. */
static int load_config(load_ctx *c, const sect found[N_SECTIONS]) {
    stochflow__config_defaults(&c->cfg, 1);
    for (size_t i = 0; i < N_SECTIONS; ++i)
        if (sections[i].conf && (found[i].at || sections[i].call_absent))
            FORWARD_IF_ERROR(sections[i].conf(c, &found[i]));
    RETURN_ERROR_IF(c->conf_no_hidden && c->cfg.arch != STOCHFLOW_ARCH_RESMLP,
                    STOCHFLOW_E_FORMAT,
                    "checkpoint CONF lists no hidden widths and the file has no RMLP section");
    int rc = stochflow__config_validate(&c->cfg);
    RETURN_ERROR_IF(rc < 0, STOCHFLOW_E_FORMAT, "checkpoint configuration is invalid: %s",
                    stochflow_last_error_message());
    rc = stochflow__model_param_count(&c->np, &c->cfg);
    /* a U-Net is compiled to count its parameters: out of memory is not a format error */
    if (rc == STOCHFLOW_E_NOMEM) return rc;
    RETURN_ERROR_IF(rc < 0, STOCHFLOW_E_FORMAT, "checkpoint configuration is invalid: %s",
                    stochflow_last_error_message());
    for (size_t i = 0; i < N_SECTIONS; ++i)
        if (sections[i].check && found[i].at) FORWARD_IF_ERROR(sections[i].check(c, &found[i]));
    return 0;
}

STOCHFLOW_API int stochflow_model_load_buffer(stochflow_model **out, const void *buf,
                                              size_t len) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "load: out is NULL");
    *out = NULL;
    RETURN_ERROR_IF(buf == NULL, STOCHFLOW_E_INVALID, "load: buffer is NULL");
    FORWARD_IF_ERROR(check_header(buf, len));
    sect found[N_SECTIONS];
    size_t unknown_bytes;
    FORWARD_IF_ERROR(index_sections(found, &unknown_bytes, buf, len));
    load_ctx c;
    memset(&c, 0, sizeof c);
    FORWARD_IF_ERROR(load_config(&c, found));
    FORWARD_IF_ERROR(stochflow__model_build(&c.m, &c.cfg, 0));
    for (size_t i = 0; i < N_SECTIONS; ++i) {
        if (!sections[i].read || !(found[i].at || sections[i].call_absent)) continue;
        int rc = sections[i].read(&c, &found[i]);
        if (rc < 0) {
            stochflow_model_free(c.m);
            return rc;
        }
    }
    if (unknown_bytes > 0 && carry_unknown(c.m, buf, len, unknown_bytes) < 0) {
        stochflow_model_free(c.m);
        return STOCHFLOW_E_NOMEM;
    }
    *out = c.m;
    return 0;
}

STOCHFLOW_API int stochflow_model_load(stochflow_model **out, const char *path) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "load: out is NULL");
    *out = NULL;
    RETURN_ERROR_IF(path == NULL, STOCHFLOW_E_INVALID, "load: path is NULL");
    uint8_t *buf;
    size_t len;
    FORWARD_IF_ERROR(stochflow__read_file(&buf, &len, path, MAX_FILE_SIZE));
    int rc = stochflow_model_load_buffer(out, buf, len);
    stochflow__free(buf);
    return rc;
}
