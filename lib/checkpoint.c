/* checkpoint.c - versioned, little-endian, CRC-32-checked model files; atomic saves.
 * The byte layout is specified in doc/checkpoint-format.md. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"

#define MAGIC "STOCHFLW"
#define FORMAT_VERSION 1u
#define HEADER_SIZE 24u
#define SECTION_HEADER 16u
#define MAX_FILE_SIZE ((uint64_t)1 << 40)

/* Hyperparameters stored in the HPAR section (all model keys). */
static const int hpar_keys[] = {
    STOCHFLOW_PARAM_LR, STOCHFLOW_PARAM_BETA1, STOCHFLOW_PARAM_BETA2,
    STOCHFLOW_PARAM_ADAM_EPS, STOCHFLOW_PARAM_WEIGHT_DECAY, STOCHFLOW_PARAM_GRAD_CLIP,
    STOCHFLOW_PARAM_EMA_DECAY, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_PARAM_LR_DECAY_EVERY,
    STOCHFLOW_PARAM_LR_DECAY_FACTOR, STOCHFLOW_PARAM_LR_WARMUP, STOCHFLOW_PARAM_LR_TOTAL_STEPS,
    STOCHFLOW_PARAM_LR_MIN, STOCHFLOW_PARAM_THREADS, STOCHFLOW_PARAM_EVAL_WEIGHTS,
    STOCHFLOW_PARAM_INTERP_LR, STOCHFLOW_PARAM_COUPLING, STOCHFLOW_PARAM_SINKHORN_REG, STOCHFLOW_PARAM_EMA_WARMUP};
#define N_HPAR (sizeof hpar_keys / sizeof hpar_keys[0])

/* ---- CRC-32 (IEEE 802.3, reflected, as zlib's crc32) ------------------------------ */

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    crc = ~crc;
    for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

uint32_t stochflow__crc32(const void *p, size_t n) { return crc32_update(0, p, n); }

/* ---- little-endian writer -------------------------------------------------------- */

typedef struct {
    uint8_t *p;  /* NULL: only count */
    size_t len;
} writer;

static void put_bytes(writer *w, const void *src, size_t n) {
    if (w->p) memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void put_u32(writer *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put_bytes(w, b, 4);
}
static void put_u64(writer *w, uint64_t v) {
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}
static void put_f64(writer *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(w, u);
}
static void put_f32s(writer *w, const float *v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_u32(w, u);
    }
}
static void section(writer *w, const char tag[4], uint64_t len) {
    put_bytes(w, tag, 4);
    put_u32(w, 0);
    put_u64(w, len);
}

/* Serialize into w (counting only when w->p is NULL). */
static void serialize(writer *w, const stochflow_model *m) {
    const stochflow_config *c = &m->cfg;
    const uint64_t np = m->n_params;
    put_bytes(w, MAGIC, 8);
    put_u32(w, FORMAT_VERSION);
    put_u32(w, 0); /* flags, reserved */
    size_t payload_at = w->len;
    put_u64(w, 0); /* payload length, patched below */
    size_t start = w->len;

    section(w, "CONF", 32 + 4 * (uint64_t)c->n_hidden);
    put_u32(w, (uint32_t)c->dim);
    put_u32(w, (uint32_t)c->n_hidden);
    put_u32(w, (uint32_t)c->activation);
    put_u32(w, (uint32_t)c->time_kind);
    put_u32(w, (uint32_t)c->n_freq);
    put_u32(w, (uint32_t)c->interp.kind);
    put_u64(w, c->seed);
    for (size_t i = 0; i < c->n_hidden; ++i) put_u32(w, (uint32_t)c->hidden[i]);

    /* issue 8: a U-Net's shape (absent for the MLP) */
    if (c->arch == STOCHFLOW_ARCH_UNET) {
        const stochflow__unet_cfg *u = &c->unet;
        section(w, "UNET", 4 * (8 + STOCHFLOW_UNET_MAX_LEVELS));
        put_u32(w, (uint32_t)u->channels);
        put_u32(w, (uint32_t)u->height);
        put_u32(w, (uint32_t)u->width);
        put_u32(w, (uint32_t)u->base);
        put_u32(w, (uint32_t)u->n_levels);
        put_u32(w, (uint32_t)u->blocks);
        put_u32(w, (uint32_t)u->groups);
        put_u32(w, u->attn_mask);
        for (size_t l = 0; l < STOCHFLOW_UNET_MAX_LEVELS; ++l)
            put_u32(w, (uint32_t)(l < u->n_levels ? u->mult[l] : 0));
    }

    section(w, "STAT", 16);
    put_u64(w, m->step);
    put_u32(w, (uint32_t)m->ema_valid);
    put_u32(w, 0);

    section(w, "HPAR", 8 + 16 * (uint64_t)N_HPAR);
    put_u32(w, (uint32_t)N_HPAR);
    put_u32(w, 0);
    for (size_t i = 0; i < N_HPAR; ++i) {
        put_u32(w, (uint32_t)hpar_keys[i]);
        put_u32(w, 0);
        put_f64(w, *stochflow__hparams_field((stochflow__hparams *)&m->hp, hpar_keys[i]));
    }

    section(w, "WGHT", 8 + 4 * np);
    put_u64(w, np);
    put_f32s(w, m->params, np);
    if (m->ema_valid) {
        section(w, "EMAW", 8 + 4 * np);
        put_u64(w, np);
        put_f32s(w, m->ema, np);
    }
    section(w, "ADAM", 8 + 8 * np);
    put_u64(w, np);
    put_f32s(w, m->adam_m, np);
    put_f32s(w, m->adam_v, np);

    /* issue 9: learned interpolant (lib/transport.c) */
    if (c->interp.kind == STOCHFLOW_INTERP_FOURIER) {
        size_t ilen = stochflow__transport_section_size(&c->interp);
        section(w, "INTP", ilen);
        if (w->p) stochflow__transport_section_write(w->p + w->len, &m->tr, &c->interp);
        w->len += ilen;
    }

    uint64_t payload = w->len - start;
    if (w->p) {
        writer patch = {w->p, payload_at};
        put_u64(&patch, payload);
        put_u32(w, stochflow__crc32(w->p, w->len));
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

/* ---- saving to a file, atomically ------------------------------------------------ */

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int stochflow__atomic_write(const char *path, const void *data, size_t len) {
    RETURN_ERROR_IF(path == NULL || path[0] == '\0', STOCHFLOW_E_INVALID, "path is empty");
    size_t plen = strlen(path);
    char *tmp = stochflow__malloc(plen + 16);
    RETURN_ERROR_IF(tmp == NULL, STOCHFLOW_E_NOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        stochflow__free(tmp);
        return stochflow__error(STOCHFLOW_E_IO, "cannot create a temporary file next to %s: %s",
                                path, strerror(e));
    }
    int rc = 0, e = 0;
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        e = errno;
        rc = -1;
    }
    if (close(fd) != 0 && rc == 0) {
        e = errno;
        rc = -1;
    }
    if (rc == 0) {
        /* mkstemp creates 0600; give the file the usual 0644 minus the umask. */
        mode_t mask = umask(0);
        umask(mask);
        chmod(tmp, 0666 & ~mask);
        if (rename(tmp, path) != 0) {
            e = errno;
            rc = -1;
        }
    }
    if (rc != 0) {
        unlink(tmp);
        stochflow__free(tmp);
        return stochflow__error(STOCHFLOW_E_IO, "cannot write %s: %s", path, strerror(e));
    }
    /* Make the rename itself durable: fsync the directory (best effort). */
    char *slash = strrchr(tmp, '/');
    if (slash) {
        *slash = '\0';
        int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        int dfd = open(".", O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    stochflow__free(tmp);
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

/* ---- loading --------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
} reader;

static uint32_t get_u32(reader *r) {
    const uint8_t *b = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t get_u64(reader *r) {
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}
static double get_f64(reader *r) {
    uint64_t u = get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}
static void get_f32s(reader *r, float *out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        uint32_t u = get_u32(r);
        memcpy(&out[i], &u, 4);
    }
}

typedef struct {
    const uint8_t *at; /* section body, NULL when absent */
    uint64_t len;
} sect;

static int read_array_section(float *dst, size_t count, const sect *s, const char *name,
                              size_t n_params) {
    reader r = {s->at, (size_t)s->len, 0};
    RETURN_ERROR_IF(s->len != 8 + 4 * (uint64_t)n_params * count, STOCHFLOW_E_FORMAT,
                    "checkpoint section %s has %llu bytes, expected %llu for %zu parameters",
                    name, (unsigned long long)s->len,
                    (unsigned long long)(8 + 4 * (uint64_t)n_params * count), n_params);
    RETURN_ERROR_IF(get_u64(&r) != n_params, STOCHFLOW_E_FORMAT,
                    "checkpoint section %s: parameter count does not match the configuration",
                    name);
    get_f32s(&r, dst, n_params * count);
    return 0;
}

STOCHFLOW_API int stochflow_model_load_buffer(stochflow_model **out, const void *buf,
                                              size_t len) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "load: out is NULL");
    *out = NULL;
    RETURN_ERROR_IF(buf == NULL, STOCHFLOW_E_INVALID, "load: buffer is NULL");
    const uint8_t *p = buf;
    RETURN_ERROR_IF(len < HEADER_SIZE + 4 || memcmp(p, MAGIC, 8) != 0, STOCHFLOW_E_FORMAT,
                    "not a stochflow checkpoint (bad magic or too short: %zu bytes)", len);
    reader r = {p, len, 8};
    uint32_t version = get_u32(&r);
    RETURN_ERROR_IF(version != FORMAT_VERSION, STOCHFLOW_E_VERSION,
                    "checkpoint format version %u is not supported (this library reads %u)",
                    version, FORMAT_VERSION);
    (void)get_u32(&r); /* flags */
    uint64_t payload = get_u64(&r);
    RETURN_ERROR_IF(payload != len - HEADER_SIZE - 4, STOCHFLOW_E_FORMAT,
                    "checkpoint is truncated or has trailing bytes (payload %llu, file %zu)",
                    (unsigned long long)payload, len);
    uint32_t stored = (uint32_t)p[len - 4] | (uint32_t)p[len - 3] << 8 |
                      (uint32_t)p[len - 2] << 16 | (uint32_t)p[len - 1] << 24;
    RETURN_ERROR_IF(stochflow__crc32(p, len - 4) != stored, STOCHFLOW_E_FORMAT,
                    "checkpoint checksum mismatch (file corrupted)");

    sect conf = {0}, stat = {0}, hpar = {0}, wght = {0}, emaw = {0}, adam = {0}, intp = {0}, unet = {0};
    const size_t end = len - 4;
    while (r.pos < end) {
        RETURN_ERROR_IF(end - r.pos < SECTION_HEADER, STOCHFLOW_E_FORMAT,
                        "checkpoint section header truncated at byte %zu", r.pos);
        char tag[4];
        memcpy(tag, p + r.pos, 4);
        r.pos += 8;
        uint64_t slen = get_u64(&r);
        RETURN_ERROR_IF(slen > end - r.pos, STOCHFLOW_E_FORMAT,
                        "checkpoint section %.4s claims %llu bytes, only %zu left", tag,
                        (unsigned long long)slen, end - r.pos);
        sect s = {p + r.pos, slen};
        sect *dst = !memcmp(tag, "CONF", 4)   ? &conf
                    : !memcmp(tag, "STAT", 4) ? &stat
                    : !memcmp(tag, "HPAR", 4) ? &hpar
                    : !memcmp(tag, "WGHT", 4) ? &wght
                    : !memcmp(tag, "EMAW", 4) ? &emaw
                    : !memcmp(tag, "ADAM", 4) ? &adam
                    : !memcmp(tag, "INTP", 4) ? &intp
                    : !memcmp(tag, "UNET", 4) ? &unet
                                              : NULL;
        if (dst) {
            RETURN_ERROR_IF(dst->at != NULL, STOCHFLOW_E_FORMAT,
                            "checkpoint has two %.4s sections", tag);
            *dst = s;
        } /* unknown sections are skipped: later minor versions may add some */
        r.pos += (size_t)slen;
    }
    RETURN_ERROR_IF(!conf.at || !stat.at || !hpar.at || !wght.at || !adam.at,
                    STOCHFLOW_E_FORMAT, "checkpoint lacks a required section");

    /* Configuration: validated before anything is allocated. */
    stochflow_config cfg;
    RETURN_ERROR_IF(conf.len < 32, STOCHFLOW_E_FORMAT, "checkpoint CONF section too short");
    reader cr = {conf.at, (size_t)conf.len, 0};
    stochflow__config_defaults(&cfg, 1);
    cfg.dim = get_u32(&cr);
    uint32_t nh = get_u32(&cr);
    cfg.activation = (int)get_u32(&cr);
    cfg.time_kind = (int)get_u32(&cr);
    cfg.n_freq = get_u32(&cr);
    cfg.interp.kind = (int)get_u32(&cr);
    cfg.seed = get_u64(&cr);
    RETURN_ERROR_IF(nh < 1 || nh > STOCHFLOW__MAX_HIDDEN || conf.len != 32 + 4 * (uint64_t)nh,
                    STOCHFLOW_E_FORMAT, "checkpoint CONF section is inconsistent");
    cfg.n_hidden = nh;
    for (uint32_t i = 0; i < nh; ++i) cfg.hidden[i] = get_u32(&cr);
    if (unet.at) { /* issue 8 */
        RETURN_ERROR_IF(unet.len != 4 * (8 + STOCHFLOW_UNET_MAX_LEVELS), STOCHFLOW_E_FORMAT,
                        "checkpoint UNET section malformed");
        reader ur = {unet.at, (size_t)unet.len, 0};
        stochflow__unet_cfg *u = &cfg.unet;
        u->channels = get_u32(&ur);
        u->height = get_u32(&ur);
        u->width = get_u32(&ur);
        u->base = get_u32(&ur);
        u->n_levels = get_u32(&ur);
        u->blocks = get_u32(&ur);
        u->groups = get_u32(&ur);
        u->attn_mask = get_u32(&ur);
        for (size_t l = 0; l < STOCHFLOW_UNET_MAX_LEVELS; ++l) u->mult[l] = get_u32(&ur);
        /* the multipliers of unused levels are written as 0: one byte form per model */
        for (size_t l = u->n_levels; l < STOCHFLOW_UNET_MAX_LEVELS; ++l)
            RETURN_ERROR_IF(u->mult[l] != 0, STOCHFLOW_E_FORMAT,
                            "checkpoint UNET section: multiplier %zu of unused level %zu",
                            u->mult[l], l);
        cfg.arch = STOCHFLOW_ARCH_UNET;
    }
    if (cfg.interp.kind == STOCHFLOW_INTERP_FOURIER) { /* issue 9 */
        RETURN_ERROR_IF(!intp.at, STOCHFLOW_E_FORMAT,
                        "checkpoint of a Fourier interpolant lacks its INTP section");
        FORWARD_IF_ERROR(stochflow__transport_section_conf(&cfg.interp, intp.at, intp.len));
    }
    int rc = stochflow__config_validate(&cfg);
    RETURN_ERROR_IF(rc < 0, STOCHFLOW_E_FORMAT, "checkpoint configuration is invalid: %s",
                    stochflow_last_error_message());
    size_t np;
    rc = stochflow__model_param_count(&np, &cfg);
    /* a U-Net is compiled to count its parameters: out of memory is not a format error */
    if (rc == STOCHFLOW_E_NOMEM) return rc;
    RETURN_ERROR_IF(rc < 0, STOCHFLOW_E_FORMAT, "checkpoint configuration is invalid: %s",
                    stochflow_last_error_message());
    /* Hostile sizes: the weights must actually be in the file before we allocate. */
    RETURN_ERROR_IF(wght.len != 8 + 4 * (uint64_t)np, STOCHFLOW_E_FORMAT,
                    "checkpoint holds %llu weight bytes, the configuration needs %llu",
                    (unsigned long long)wght.len, (unsigned long long)(8 + 4 * (uint64_t)np));
    RETURN_ERROR_IF(stat.len != 16, STOCHFLOW_E_FORMAT, "checkpoint STAT section malformed");

    stochflow_model *m = NULL;
    FORWARD_IF_ERROR(stochflow__model_build(&m, &cfg, 0));
    reader sr = {stat.at, 16, 0};
    m->step = get_u64(&sr);
    m->ema_valid = get_u32(&sr) != 0;

    reader hr = {hpar.at, (size_t)hpar.len, 0};
    rc = 0;
    if (hpar.len < 8) {
        rc = stochflow__error(STOCHFLOW_E_FORMAT, "checkpoint HPAR section too short");
    } else {
        uint32_t count = get_u32(&hr);
        (void)get_u32(&hr);
        if (hpar.len != 8 + 16 * (uint64_t)count) {
            rc = stochflow__error(STOCHFLOW_E_FORMAT, "checkpoint HPAR section malformed");
        } else {
            for (uint32_t i = 0; i < count && rc == 0; ++i) {
                int key = (int)get_u32(&hr);
                (void)get_u32(&hr);
                double v = get_f64(&hr);
                if (stochflow__hparams_field(&m->hp, key) == NULL) continue; /* newer key */
                if (stochflow_model_set_param(m, key, v) < 0)
                    rc = stochflow__error(STOCHFLOW_E_FORMAT,
                                          "checkpoint parameter %d has invalid value %g", key, v);
            }
        }
    }
    if (rc == 0) rc = read_array_section(m->params, 1, &wght, "WGHT", np);
    if (rc == 0 && m->ema_valid) {
        if (!emaw.at)
            rc = stochflow__error(STOCHFLOW_E_FORMAT, "checkpoint lacks its EMA weights");
        else
            rc = read_array_section(m->ema, 1, &emaw, "EMAW", np);
    }
    if (rc == 0) rc = read_array_section(m->adam_m, 2, &adam, "ADAM", np);
    if (rc == 0 && cfg.interp.kind == STOCHFLOW_INTERP_FOURIER)
        rc = stochflow__transport_section_read(&m->tr, &m->cfg.interp, intp.at, intp.len);
    if (rc == 0) {
        rc = stochflow__check_finite(m->params, np, "checkpoint weights");
        /* the whole state loads finite: EMA weights and Adam moments too (issue 7) */
        if (rc == 0 && m->ema_valid)
            rc = stochflow__check_finite(m->ema, np, "checkpoint EMA weights");
        if (rc == 0) rc = stochflow__check_finite(m->adam_m, 2 * np, "checkpoint Adam moments");
        if (rc < 0) rc = stochflow__error(STOCHFLOW_E_FORMAT, "%s", stochflow_last_error_message());
    }
    if (rc < 0) {
        stochflow_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

STOCHFLOW_API int stochflow_model_load(stochflow_model **out, const char *path) {
    RETURN_ERROR_IF(out == NULL, STOCHFLOW_E_INVALID, "load: out is NULL");
    *out = NULL;
    RETURN_ERROR_IF(path == NULL, STOCHFLOW_E_INVALID, "load: path is NULL");
    FILE *f = fopen(path, "rb");
    RETURN_ERROR_IF(f == NULL, STOCHFLOW_E_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_FILE_SIZE) {
        fclose(f);
        return stochflow__error(STOCHFLOW_E_IO, "%s is not a regular file of sane size", path);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = stochflow__malloc(len);
    if (buf == NULL) {
        fclose(f);
        return stochflow__error(STOCHFLOW_E_NOMEM, "cannot allocate %zu bytes to read %s", len,
                                path);
    }
    size_t got = fread(buf, 1, len, f);
    int err = ferror(f);
    fclose(f);
    if (got != len || err) {
        stochflow__free(buf);
        return stochflow__error(STOCHFLOW_E_IO, "cannot read %s", path);
    }
    int rc = stochflow_model_load_buffer(out, buf, len);
    stochflow__free(buf);
    return rc;
}
