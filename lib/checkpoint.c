/* checkpoint.c - versioned, little-endian, CRC-32-checked model files.
 * The byte layout is specified in doc/checkpoint-format.md. A file is a header, a
 * sequence of tagged sections and a CRC; each section is one row of the table below
 * (tag, when it is written, its length, its writer, its readers), all built on the byte
 * helpers of lib/bytes.h. File utilities (CRC, atomic write, reading) are lib/fileio.c. */
#include <string.h>

#include "bytes.h"
#include "model.h"
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
    stochflow_model *m;
} load_ctx;

/* ---- HPAR: every model-owned keyed parameter, in the table's order ------------------ */

static uint64_t hpar_count(void) {
    size_t n, count = 0;
    const stochflow__param_info *t = stochflow__param_table(&n);
    for (size_t i = 0; i < n; ++i) count += t[i].owner == STOCHFLOW__OWNER_MODEL;
    return count;
}

/* ---- section lengths, writers and readers -------------------------------------------- */

static uint64_t conf_len(const stochflow_model *m) { return 32 + 4 * (uint64_t)m->cfg.n_hidden; }
static void conf_write(writer *w, const stochflow_model *m) {
    const stochflow_config *c = &m->cfg;
    stochflow__w_u32(w, (uint32_t)c->dim);
    stochflow__w_u32(w, (uint32_t)c->n_hidden);
    stochflow__w_u32(w, (uint32_t)c->activation);
    stochflow__w_u32(w, (uint32_t)c->time_kind);
    stochflow__w_u32(w, (uint32_t)c->n_freq);
    stochflow__w_u32(w, (uint32_t)c->interp.kind);
    stochflow__w_u64(w, c->seed);
    for (size_t i = 0; i < c->n_hidden; ++i) stochflow__w_u32(w, (uint32_t)c->hidden[i]);
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
    RETURN_ERROR_IF(nh < 1 || nh > STOCHFLOW__MAX_HIDDEN || s->len != 32 + 4 * (uint64_t)nh,
                    STOCHFLOW_E_FORMAT, "checkpoint CONF section is inconsistent");
    cfg->n_hidden = nh;
    for (uint32_t i = 0; i < nh; ++i) cfg->hidden[i] = stochflow__r_u32(&r);
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
    return 0;
}
static int stat_read(load_ctx *c, const sect *s) {
    reader r = {s->at, 16, 0};
    c->m->step = stochflow__r_u64(&r);
    c->m->ema_valid = stochflow__r_u32(&r) != 0;
    return 0;
}

static uint64_t hpar_len(const stochflow_model *m) {
    (void)m;
    return 8 + 16 * hpar_count();
}
static void hpar_write(writer *w, const stochflow_model *m) {
    size_t n;
    const stochflow__param_info *t = stochflow__param_table(&n);
    stochflow__w_u32(w, (uint32_t)hpar_count());
    stochflow__w_u32(w, 0);
    for (size_t i = 0; i < n; ++i) {
        if (t[i].owner != STOCHFLOW__OWNER_MODEL) continue;
        stochflow__w_u32(w, (uint32_t)t[i].key);
        stochflow__w_u32(w, 0);
        stochflow__w_f64(w, *stochflow__hparams_field((stochflow__hparams *)&m->hp, t[i].key));
    }
}
static int hpar_read(load_ctx *c, const sect *s) {
    RETURN_ERROR_IF(s->len < 8, STOCHFLOW_E_FORMAT, "checkpoint HPAR section too short");
    reader r = {s->at, (size_t)s->len, 0};
    uint32_t count = stochflow__r_u32(&r);
    (void)stochflow__r_u32(&r);
    RETURN_ERROR_IF(s->len != 8 + 16 * (uint64_t)count, STOCHFLOW_E_FORMAT,
                    "checkpoint HPAR section malformed");
    for (uint32_t i = 0; i < count; ++i) {
        int key = (int)stochflow__r_u32(&r);
        (void)stochflow__r_u32(&r);
        double v = stochflow__r_f64(&r);
        if (stochflow__hparams_field(&c->m->hp, key) == NULL) continue; /* newer key */
        RETURN_ERROR_IF(stochflow_model_set_param(c->m, key, v) < 0, STOCHFLOW_E_FORMAT,
                        "checkpoint parameter %d has invalid value %g", key, v);
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
    return finite_or_format(c->m->adam_m, 2 * c->np, "checkpoint Adam moments");
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
    return stochflow__transport_section_read(&c->m->tr, &c->m->cfg.interp, s->at, s->len);
}

/* ---- the section table ----------------------------------------------------------------
 * Written in this order. Loading runs, in this order: conf (configuration, before any
 * allocation; called only for present sections unless the row has call_absent), then
 * check (sizes the configuration implies, still before allocation), then read (into the
 * built model). Unknown tags are skipped: later minor versions may add sections. */
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
    {"STAT", 1, 0, NULL, stat_len, stat_write, NULL, stat_check, stat_read},
    {"HPAR", 1, 0, NULL, hpar_len, hpar_write, NULL, NULL, hpar_read},
    {"WGHT", 1, 0, NULL, wght_len, wght_write, NULL, wght_check, wght_read},
    {"EMAW", 0, 1, emaw_written, wght_len, emaw_write, NULL, NULL, emaw_read},
    {"ADAM", 1, 0, NULL, adam_len, adam_write, NULL, NULL, adam_read},
    {"INTP", 0, 1, intp_written, intp_len, intp_write, intp_conf, NULL, intp_read},
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
    writer w = {NULL, 0};
    serialize(&w, m);
    *size = w.len;
    return 0;
}

STOCHFLOW_API int stochflow_model_save_buffer(size_t *written, const stochflow_model *m,
                                              void *buf, size_t cap) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    RETURN_ERROR_IF(buf == NULL, STOCHFLOW_E_INVALID, "save_buffer: buffer is NULL");
    size_t need;
    FORWARD_IF_ERROR(stochflow_model_serialized_size(&need, m));
    RETURN_ERROR_IF(cap < need, STOCHFLOW_E_INVALID,
                    "save_buffer: buffer of %zu bytes is too small (%zu needed)", cap, need);
    writer w = {buf, 0};
    serialize(&w, m);
    if (written) *written = w.len;
    return 0;
}

STOCHFLOW_API int stochflow_model_save(stochflow_model *m, const char *path) {
    RETURN_ERROR_IF(m == NULL, STOCHFLOW_E_INVALID, "model is NULL");
    RETURN_ERROR_IF(path == NULL, STOCHFLOW_E_INVALID, "save: path is NULL");
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

/* Find every known section (out[i] for sections[i]); unknown tags are skipped. */
static int index_sections(sect out[N_SECTIONS], const uint8_t *p, size_t len) {
    memset(out, 0, N_SECTIONS * sizeof *out);
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
        for (size_t i = 0; i < N_SECTIONS; ++i) {
            if (memcmp(tag, sections[i].tag, 4) != 0) continue;
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

/* The configuration and its parameter count, validated before anything is allocated. */
static int load_config(load_ctx *c, const sect found[N_SECTIONS]) {
    stochflow__config_defaults(&c->cfg, 1);
    for (size_t i = 0; i < N_SECTIONS; ++i)
        if (sections[i].conf && (found[i].at || sections[i].call_absent))
            FORWARD_IF_ERROR(sections[i].conf(c, &found[i]));
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
    FORWARD_IF_ERROR(index_sections(found, buf, len));
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
