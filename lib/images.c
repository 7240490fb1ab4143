/* images.c - 8-bit image data for image flows: loading IDX and PNG-directory data sets,
 * dequantization to [-1, 1], quantization back to bytes, bits per dimension, and PNG
 * sample grids. Formats, formulas and layouts: doc/images.md.
 *
 * Reading PNG files needs libpng's decoder, so this is the second file of the library
 * that includes <png.h> (png_io.c holds the encoder). Both install an error function
 * that records libpng's message and longjmps back; warnings are dropped; libpng never
 * prints and never aborts.
 *
 * Hostile input. An IDX header can claim any size (2^32 images of 2^32 x 2^32 pixels).
 * Nothing proportional to the claimed size is allocated before the data is shown to
 * exist: a raw file is first checked against its size on disk; gzip (or unsized) data
 * is read into a buffer that doubles only while data keeps coming (so memory stays
 * within twice the bytes actually decompressed, three times while it is copied), an
 * early end of data is FORMAT, and so is any byte after the data. In a PNG directory
 * every file's header is checked before any file is decoded: what decoding it would
 * allocate (after expansion to 8-bit gray or RGB) against what its file size can
 * inflate to (deflate <= 1032:1), and against the caller's limit on values per image;
 * libpng's chunk limits are set and the ancillary chunks not needed are skipped unread.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

/* RNG stream id of dequantization noise (toys.c uses USER + 1..3). The user's stream
 * goes into the RNG's step field, the block index i / DEQ_BLOCK into the row field. */
#define DEQ_STREAM (STOCHFLOW__STREAM_USER + 4)
#define DEQ_BLOCK 1024u

#define LN2 0.69314718055994530942

/* ==================================================================================== */
/* Planar conversion                                                                    */
/* ==================================================================================== */

/* in [hw x c] interleaved -> out [c x hw] planar. */
static void to_planar(uint8_t *out, const uint8_t *in, size_t hw, size_t c) {
    if (c == 1) {
        memcpy(out, in, hw);
        return;
    }
    for (size_t k = 0; k < c; ++k)
        for (size_t i = 0; i < hw; ++i) out[k * hw + i] = in[i * c + k];
}

/* ==================================================================================== */
/* IDX (raw or gzip)                                                                    */
/* ==================================================================================== */

/* The file is read through one input buffer; gzip data is inflated with zlib's inflate
 * (gzip wrapper, several members allowed) rather than gzread, which silently ignores
 * whatever follows the last member: here that is FORMAT. */
#define IDX_IN_BUF ((size_t)1 << 17)

/* Everything of the IDX loader that owns resources, so one cleanup path frees it. */
typedef struct {
    int fd;
    int gz;     /* 1: gzip data, inflated; 0: raw bytes */
    int zinit;  /* zs initialised (inflateEnd needed) */
    int at_end; /* gzip: the last member ended and nothing follows it */
    int cut;    /* gzip: the file ended inside a member */
    z_stream zs; /* next_in / avail_in: unread bytes of in[], in both modes */
    uint8_t *in;
    uint8_t *data;
    uint8_t *scratch;
} idx_res;

static void idx_release(idx_res *r) {
    if (r->zinit) inflateEnd(&r->zs);
    if (r->fd >= 0) close(r->fd);
    stochflow__free(r->in);
    stochflow__free(r->data);
    stochflow__free(r->scratch);
}

/* zlib's allocations go through the library's allocator (failure-injection tests). */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    return stochflow__alloc_array(items, size);
}

static void z_free(voidpf opaque, voidpf p) {
    (void)opaque;
    stochflow__free(p);
}

/* Append what one read() gives to the unread input (which is moved to the front of the
 * buffer first); *eof = 1 when the file has nothing more. */
static int idx_fill(idx_res *r, const char *path, int *eof) {
    if (r->zs.avail_in > 0 && r->zs.next_in != r->in) memmove(r->in, r->zs.next_in, r->zs.avail_in);
    r->zs.next_in = r->in;
    ssize_t k;
    do {
        k = read(r->fd, r->in + r->zs.avail_in, IDX_IN_BUF - r->zs.avail_in);
    } while (k < 0 && errno == EINTR);
    RETURN_ERROR_IF(k < 0, STOCHFLOW_E_IO, "images_load: idx:%s: read error: %s", path,
                    strerror(errno));
    r->zs.avail_in += (uInt)k;
    *eof = k == 0;
    return 0;
}

/* Fill until at least `want` bytes are unread or the file ends. */
static int idx_fill_to(idx_res *r, const char *path, uInt want) {
    int eof = 0;
    while (r->zs.avail_in < want && !eof) FORWARD_IF_ERROR(idx_fill(r, path, &eof));
    return 0;
}

static int raw_read(idx_res *r, uint8_t *buf, size_t len, size_t *got, const char *path) {
    size_t done = 0;
    while (done < len) {
        if (r->zs.avail_in == 0) {
            int eof = 0;
            FORWARD_IF_ERROR(idx_fill(r, path, &eof));
            if (eof) break;
        }
        size_t k = r->zs.avail_in < len - done ? r->zs.avail_in : len - done;
        memcpy(buf + done, r->zs.next_in, k);
        r->zs.next_in += k;
        r->zs.avail_in -= (uInt)k;
        done += k;
    }
    *got = done;
    return 0;
}

/* A gzip member ended: another member (1f 8b) continues the data, the end of the file
 * ends it, anything else is FORMAT. */
static int gz_next_member(idx_res *r, const char *path) {
    FORWARD_IF_ERROR(idx_fill_to(r, path, 2));
    if (r->zs.avail_in == 0) {
        r->at_end = 1;
        return 0;
    }
    if (r->zs.avail_in >= 2 && r->zs.next_in[0] == 0x1F && r->zs.next_in[1] == 0x8B) {
        RETURN_ERROR_IF(inflateReset(&r->zs) != Z_OK, STOCHFLOW_E_FORMAT,
                        "images_load: idx:%s: corrupt gzip data", path);
        return 0;
    }
    struct stat st;
    off_t pos = lseek(r->fd, 0, SEEK_CUR);
    if (fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode) && pos >= 0 && st.st_size >= pos)
        return stochflow__error(STOCHFLOW_E_FORMAT,
                                "images_load: idx:%s: %llu bytes after the gzip data (trailing "
                                "data is not allowed)",
                                path,
                                (unsigned long long)(st.st_size - pos) + r->zs.avail_in);
    return stochflow__error(STOCHFLOW_E_FORMAT,
                            "images_load: idx:%s: bytes after the gzip data (trailing data is "
                            "not allowed)",
                            path);
}

static int gz_read(idx_res *r, uint8_t *buf, size_t len, size_t *got, const char *path) {
    size_t done = 0;
    while (done < len && !r->at_end && !r->cut) {
        if (r->zs.avail_in == 0) {
            int eof = 0;
            FORWARD_IF_ERROR(idx_fill(r, path, &eof));
            if (eof) {
                r->cut = 1; /* reported by the caller: truncated data or stream */
                break;
            }
        }
        size_t room = len - done;
        if (room > ((size_t)1 << 30)) room = (size_t)1 << 30;
        r->zs.next_out = buf + done;
        r->zs.avail_out = (uInt)room;
        int ret = inflate(&r->zs, Z_NO_FLUSH);
        done += room - r->zs.avail_out;
        if (ret == Z_STREAM_END) {
            FORWARD_IF_ERROR(gz_next_member(r, path));
        } else if (ret == Z_MEM_ERROR) {
            return stochflow__error(STOCHFLOW_E_NOMEM, "images_load: idx:%s: zlib out of memory",
                                    path);
        } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
            return stochflow__error(STOCHFLOW_E_FORMAT,
                                    "images_load: idx:%s: corrupt gzip data (%s)", path,
                                    r->zs.msg ? r->zs.msg : "zlib error");
        }
    }
    *got = done;
    return 0;
}

/* Read up to len bytes of IDX data; *got < len only at the end of the data. */
static int idx_read(idx_res *r, uint8_t *buf, size_t len, size_t *got, const char *path) {
    return r->gz ? gz_read(r, buf, len, got, path) : raw_read(r, buf, len, got, path);
}

static const char *idx_type_name(int t) {
    switch (t) {
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown type";
    }
}

static int idx_load(idx_res *r, size_t *count, size_t *channels, size_t *height,
                    size_t *width, const char *path, size_t max_count, size_t max_values) {
    r->fd = open(path, O_RDONLY);
    RETURN_ERROR_IF(r->fd < 0, STOCHFLOW_E_IO, "images_load: idx:%s: cannot open: %s", path,
                    strerror(errno));
    struct stat st;
    RETURN_ERROR_IF(fstat(r->fd, &st) != 0, STOCHFLOW_E_IO, "images_load: idx:%s: %s", path,
                    strerror(errno));
    RETURN_ERROR_IF(S_ISDIR(st.st_mode), STOCHFLOW_E_IO,
                    "images_load: idx:%s: is a directory (use pngdir: for PNG directories)",
                    path);
    r->in = stochflow__malloc(IDX_IN_BUF);
    RETURN_ERROR_IF(r->in == NULL, STOCHFLOW_E_NOMEM, "images_load: idx:%s: out of memory",
                    path);
    r->zs.next_in = r->in;
    FORWARD_IF_ERROR(idx_fill_to(r, path, 2));
    /* gzip magic 1f 8b; an IDX file starts with 00 00 */
    r->gz = r->zs.avail_in >= 2 && r->in[0] == 0x1F && r->in[1] == 0x8B;
    if (r->gz) {
        r->zs.zalloc = z_alloc;
        r->zs.zfree = z_free;
        int zr = inflateInit2(&r->zs, 16 + MAX_WBITS); /* gzip wrapper only */
        RETURN_ERROR_IF(zr == Z_MEM_ERROR, STOCHFLOW_E_NOMEM,
                        "images_load: idx:%s: zlib out of memory", path);
        RETURN_ERROR_IF(zr != Z_OK, STOCHFLOW_E_FORMAT, "images_load: idx:%s: zlib error %d",
                        path, zr);
        r->zinit = 1;
    }
    int raw = !r->gz;

    uint8_t head[4 + 4 * 4];
    size_t got = 0;
    FORWARD_IF_ERROR(idx_read(r, head, 4, &got, path));
    RETURN_ERROR_IF(got < 4, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: %zu bytes, too short for an IDX header", path, got);
    RETURN_ERROR_IF(head[0] != 0 || head[1] != 0, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: not an IDX file (starts with %02x %02x %02x %02x, "
                    "expected 00 00 08 03 or 00 00 08 04)",
                    path, head[0], head[1], head[2], head[3]);
    RETURN_ERROR_IF(head[2] != 0x08, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: element type 0x%02x (%s) is not supported; images "
                    "must be unsigned bytes (0x08)",
                    path, head[2], idx_type_name(head[2]));
    size_t ndims = head[3];
    RETURN_ERROR_IF(ndims == 1, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: 1-dimensional IDX data (a label file?); images "
                    "need 3 dimensions [N, H, W] or 4 [N, H, W, C]",
                    path);
    RETURN_ERROR_IF(ndims != 3 && ndims != 4, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: %zu dimensions; images need 3 [N, H, W] or "
                    "4 [N, H, W, C]",
                    path, ndims);
    FORWARD_IF_ERROR(idx_read(r, head + 4, 4 * ndims, &got, path));
    RETURN_ERROR_IF(got < 4 * ndims, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: truncated header (%zu of %zu dimension bytes)", path,
                    got, 4 * ndims);
    size_t dims[4] = {0, 0, 0, 1};
    for (size_t k = 0; k < ndims; ++k) {
        const uint8_t *b = head + 4 + 4 * k;
        dims[k] = (size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | (size_t)b[3];
        RETURN_ERROR_IF(dims[k] == 0, STOCHFLOW_E_FORMAT,
                        "images_load: idx:%s: dimension %zu is 0", path, k);
    }
    RETURN_ERROR_IF(dims[3] != 1 && dims[3] != 3, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: %zu channels; only 1 (gray) or 3 (RGB) are supported",
                    path, dims[3]);
    size_t n = dims[0], h = dims[1], w = dims[2], c = dims[3];
    size_t hw, per, all;
    RETURN_ERROR_IF(stochflow__mul_size(&hw, h, w) || stochflow__mul_size(&per, hw, c) ||
                        stochflow__mul_size(&all, n, per),
                    STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: header sizes %zu x %zu x %zu x %zu overflow", path,
                    n, h, w, c);
    RETURN_ERROR_IF(max_values != 0 && per > max_values, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: images of %zu x %zu x %zu = %zu values exceed the "
                    "caller's limit of %zu",
                    path, c, h, w, per, max_values);
    size_t header_bytes = 4 + 4 * ndims;
    int sized = raw && S_ISREG(st.st_mode);
    if (sized) {
        /* The whole file is on disk: its size must match the header exactly. */
        unsigned long long on_disk = (unsigned long long)st.st_size;
        RETURN_ERROR_IF(all > SIZE_MAX - header_bytes ||
                            on_disk < (unsigned long long)(header_bytes + all),
                        STOCHFLOW_E_FORMAT,
                        "images_load: idx:%s: truncated: the header says %zu images of "
                        "%zu x %zu x %zu = %zu bytes of data, the file holds %llu",
                        path, n, h, w, c, all,
                        on_disk > header_bytes ? on_disk - header_bytes : 0);
        RETURN_ERROR_IF(on_disk > (unsigned long long)(header_bytes + all), STOCHFLOW_E_FORMAT,
                        "images_load: idx:%s: %llu bytes after the %zu bytes of data the "
                        "header announces",
                        path, on_disk - header_bytes - all, all);
    }
    size_t cnt = (max_count != 0 && max_count < n) ? max_count : n;
    size_t need = cnt * per; /* <= all: no overflow */

    /* Read the data: all at once for a raw file whose size was checked; otherwise into a
     * buffer that doubles only while data keeps arriving. */
    const size_t first_chunk = (size_t)4 << 20;
    size_t cap = sized ? need : (need < first_chunk ? need : first_chunk);
    r->data = stochflow__malloc(cap);
    RETURN_ERROR_IF(r->data == NULL, STOCHFLOW_E_NOMEM,
                    "images_load: idx:%s: out of memory (%zu bytes)", path, cap);
    size_t have = 0;
    for (;;) {
        FORWARD_IF_ERROR(idx_read(r, r->data + have, cap - have, &got, path));
        have += got;
        if (have < cap || cap == need) break;
        size_t ncap = cap > need / 2 ? need : 2 * cap;
        uint8_t *nd = stochflow__malloc(ncap);
        RETURN_ERROR_IF(nd == NULL, STOCHFLOW_E_NOMEM,
                        "images_load: idx:%s: out of memory (%zu bytes)", path, ncap);
        memcpy(nd, r->data, have);
        stochflow__free(r->data);
        r->data = nd;
        cap = ncap;
    }
    RETURN_ERROR_IF(have < need, STOCHFLOW_E_FORMAT,
                    "images_load: idx:%s: truncated: the header says %zu images of "
                    "%zu x %zu x %zu, the data ends after %zu of the %zu bytes needed",
                    path, n, h, w, c, have, need);
    if (cnt == n && !sized) {
        /* Everything was read and the size was not known up front: the data must end
         * here. For gzip, reaching the end of the last member also checks its CRC. */
        uint8_t extra;
        FORWARD_IF_ERROR(idx_read(r, &extra, 1, &got, path));
        RETURN_ERROR_IF(got != 0, STOCHFLOW_E_FORMAT,
                        "images_load: idx:%s: data continues after the %zu bytes the header "
                        "announces",
                        path, all);
        RETURN_ERROR_IF(r->gz && r->cut, STOCHFLOW_E_FORMAT,
                        "images_load: idx:%s: truncated gzip data (the file ends before the "
                        "end of the stream and its CRC)",
                        path);
    }
    if (c > 1) {
        r->scratch = stochflow__malloc(per);
        RETURN_ERROR_IF(r->scratch == NULL, STOCHFLOW_E_NOMEM,
                        "images_load: idx:%s: out of memory", path);
        for (size_t i = 0; i < cnt; ++i) {
            memcpy(r->scratch, r->data + i * per, per);
            to_planar(r->data + i * per, r->scratch, hw, c);
        }
    }
    *count = cnt;
    *channels = c;
    *height = h;
    *width = w;
    return 0;
}

/* ==================================================================================== */
/* PNG directory                                                                        */
/* ==================================================================================== */

/* libpng's default user limit on width and height (PNG_USER_WIDTH_MAX), set explicitly. */
#define PNG_SIZE_CAP 1000000u
/* Decompression bombs: deflate expands at most ~1032:1, so a file of S bytes can hold at
 * most ~1032 S bytes of rows. A file whose decoded pixels (after expansion to 8-bit gray
 * or RGB: a 1-bit palette pixel becomes 3 bytes) and row pointers would take more than
 * PNG_RATIO S + PNG_SLACK bytes is FORMAT, from its header. */
#define PNG_RATIO 1100u
#define PNG_SLACK 4096u
/* libpng limits: bytes one ancillary chunk may allocate, and how many such chunks are
 * kept. The chunks the loader has no use for (text, ICC profile, palettes of
 * suggestions, EXIF, calibration, unknown chunks) are skipped without being stored. */
#define PNG_CHUNK_MALLOC ((png_alloc_size_t)1 << 20)
#define PNG_CHUNK_CACHE 64u
static const png_byte png_skipped[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf\0pCAL\0sCAL\0hIST\0";
#define PNG_N_SKIPPED 9

/* What a file's IHDR says, and what loading it costs. */
typedef struct {
    size_t w, h;
    size_t c;   /* channels after conversion: 1 (gray, gray + alpha) or 3 */
    size_t per; /* decoded bytes, w h c */
} png_head;

typedef struct {
    jmp_buf jb;
    char msg[256];
    FILE *fp;
    png_structp png;
    png_infop info;
    uint8_t *inter; /* [h x w x c] interleaved pixels of the current file (c = 3) */
    png_bytep *rows;
    png_head first; /* of the first file */
    const char *first_name;
    char **names;   /* sorted .png names */
    size_t n_names, cap_names;
    char *file;     /* path buffer */
    size_t file_cap;
    uint8_t *out;
} pngdir_res;

static void on_read_error(png_structp png, png_const_charp msg) {
    pngdir_res *x = (pngdir_res *)png_get_error_ptr(png);
    snprintf(x->msg, sizeof x->msg, "%s", msg ? msg : "unknown libpng error");
    longjmp(x->jb, 1);
}

static void on_read_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* warnings (e.g. a bad ancillary chunk) are dropped; never printed */
}

static void png_close(pngdir_res *x) {
    if (x->png) png_destroy_read_struct(&x->png, x->info ? &x->info : NULL, NULL);
    x->png = NULL;
    x->info = NULL;
    if (x->fp) fclose(x->fp);
    x->fp = NULL;
}

static void pngdir_release(pngdir_res *x) {
    png_close(x);
    for (size_t i = 0; i < x->n_names; ++i) stochflow__free(x->names[i]);
    stochflow__free(x->names);
    stochflow__free(x->inter);
    stochflow__free(x->rows);
    stochflow__free(x->file);
    stochflow__free(x->out);
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Read the signature and IHDR of x->file (33 bytes, nothing decoded) and check what
 * loading it would cost: against the file's size (bombs) and the caller's limit. */
static int png_peek(pngdir_res *x, png_head *hd, size_t max_values) {
    const char *file = x->file;
    int fd = open(file, O_RDONLY);
    RETURN_ERROR_IF(fd < 0, STOCHFLOW_E_IO, "images_load: pngdir: cannot open %s: %s", file,
                    strerror(errno));
    uint8_t b[33];
    size_t got = 0;
    struct stat st;
    int ok = fstat(fd, &st) == 0;
    while (ok && got < sizeof b) {
        ssize_t k = read(fd, b + got, sizeof b - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            ok = k == 0;
            break;
        }
        got += (size_t)k;
    }
    int err = errno;
    close(fd);
    RETURN_ERROR_IF(!ok, STOCHFLOW_E_IO, "images_load: pngdir: cannot read %s: %s", file,
                    strerror(err));
    RETURN_ERROR_IF(got < 8 || png_sig_cmp(b, 0, 8) != 0, STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s is not a PNG file (bad signature)", file);
    RETURN_ERROR_IF(got < 33, STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s: truncated file (%zu bytes, no complete IHDR)",
                    file, got);
    RETURN_ERROR_IF(be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4) != 0, STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s: the first chunk is not a 13-byte IHDR", file);
    RETURN_ERROR_IF((uint32_t)crc32(0L, b + 12, 17) != be32(b + 29), STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s: IHDR CRC error", file);
    size_t w = be32(b + 16), h = be32(b + 20);
    int depth = b[24], ctype = b[25];
    size_t spp = 0; /* samples per pixel in the file */
    switch (ctype) {
    case 0: spp = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16; break;
    case 2: spp = depth == 8 || depth == 16 ? 3 : 0; break;
    case 3: spp = depth == 1 || depth == 2 || depth == 4 || depth == 8; break;
    case 4: spp = depth == 8 || depth == 16 ? 2 : 0; break;
    case 6: spp = depth == 8 || depth == 16 ? 4 : 0; break;
    default: break;
    }
    RETURN_ERROR_IF(spp == 0, STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s: invalid IHDR (bit depth %d, colour type %d)",
                    file, depth, ctype);
    RETURN_ERROR_IF(w == 0 || h == 0 || w > PNG_SIZE_CAP || h > PNG_SIZE_CAP,
                    STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s claims %zu x %zu pixels (1 to %u on a side are "
                    "read)",
                    file, w, h, PNG_SIZE_CAP);
    hd->w = w;
    hd->h = h;
    hd->c = ctype == 0 || ctype == 4 ? 1 : 3;
    hd->per = w * h * hd->c;                    /* < 3 * 10^12: no overflow */
    size_t rows = h * (1 + (w * spp * (size_t)depth + 7) / 8); /* filtered rows */
    size_t cost = (hd->per > rows ? hd->per : rows) + h * sizeof(png_bytep);
    size_t fsize = (size_t)st.st_size;
    size_t most = fsize > (SIZE_MAX - PNG_SLACK) / PNG_RATIO ? SIZE_MAX
                                                             : fsize * PNG_RATIO + PNG_SLACK;
    RETURN_ERROR_IF(cost > most, STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s claims %zu x %zu pixels (%zu bytes decoded), more "
                    "than its %zu bytes can hold (at most %u times its size + %u)",
                    file, w, h, cost, fsize, PNG_RATIO, PNG_SLACK);
    RETURN_ERROR_IF(max_values != 0 && hd->per > max_values, STOCHFLOW_E_FORMAT,
                    "images_load: pngdir: %s: images of %zu x %zu x %zu = %zu values exceed "
                    "the caller's limit of %zu",
                    file, hd->c, h, w, hd->per, max_values);
    return 0;
}

/* Decode x->file, whose header png_peek read as x->first, into dst (planar, x->first.per
 * bytes). Locals are not used after a longjmp; everything that must survive lives in *x. */
static int png_decode(pngdir_res *x, uint8_t *dst) {
    const char *file = x->file;
    x->fp = fopen(file, "rb");
    RETURN_ERROR_IF(x->fp == NULL, STOCHFLOW_E_IO, "images_load: pngdir: cannot open %s: %s",
                    file, strerror(errno));
    x->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, x, on_read_error, on_read_warning);
    if (x->png) x->info = png_create_info_struct(x->png);
    if (x->png == NULL || x->info == NULL) {
        png_close(x);
        return stochflow__error(STOCHFLOW_E_NOMEM, "images_load: pngdir: out of memory");
    }
    x->msg[0] = '\0';
    if (setjmp(x->jb)) {
        png_close(x);
        /* libpng's reader says only "Read Error" when the file ends early */
        int eof = strcmp(x->msg, "Read Error") == 0;
        return stochflow__error(STOCHFLOW_E_FORMAT, "images_load: pngdir: %s: %slibpng: %s%s",
                                x->file, eof ? "truncated file (" : "", x->msg, eof ? ")" : "");
    }
    png_set_user_limits(x->png, PNG_SIZE_CAP, PNG_SIZE_CAP);
    png_set_chunk_malloc_max(x->png, PNG_CHUNK_MALLOC);
    png_set_chunk_cache_max(x->png, PNG_CHUNK_CACHE);
    png_set_keep_unknown_chunks(x->png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(x->png, PNG_HANDLE_CHUNK_NEVER, png_skipped, PNG_N_SKIPPED);
    png_init_io(x->png, x->fp);
    png_read_info(x->png, x->info);
    /* palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha; then 16 -> 8 bits and
     * alpha dropped: the rows are 8-bit gray or RGB. */
    png_set_expand(x->png);
    png_set_strip_16(x->png);
    png_set_strip_alpha(x->png);
    (void)png_set_interlace_handling(x->png);
    png_read_update_info(x->png, x->info);
    size_t w = png_get_image_width(x->png, x->info);
    size_t h = png_get_image_height(x->png, x->info);
    size_t c = png_get_channels(x->png, x->info);
    size_t rowbytes = png_get_rowbytes(x->png, x->info);
    int bits = png_get_bit_depth(x->png, x->info);
    if (w != x->first.w || h != x->first.h || c != x->first.c || bits != 8 ||
        rowbytes != w * c) {
        /* png_peek read the same header: the file changed in between */
        png_close(x);
        return stochflow__error(STOCHFLOW_E_FORMAT,
                                "images_load: pngdir: %s changed while being read (now %zu x "
                                "%zu, %zu channel(s), %d bits)",
                                file, w, h, c, bits);
    }
    /* gray rows go straight to their place; RGB is decoded interleaved, then made planar */
    uint8_t *base = c == 1 ? dst : x->inter;
    for (size_t r = 0; r < h; ++r) x->rows[r] = base + r * w * c;
    png_read_image(x->png, x->rows);
    png_read_end(x->png, NULL);
    png_close(x);
    if (c > 1) to_planar(dst, x->inter, h * w, c);
    return 0;
}

static int has_png_suffix(const char *name) {
    size_t n = strlen(name);
    if (n < 4) return 0;
    const char *s = name + n - 4;
    return s[0] == '.' && (s[1] == 'p' || s[1] == 'P') && (s[2] == 'n' || s[2] == 'N') &&
           (s[3] == 'g' || s[3] == 'G');
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Path buffer x->file: dir + "/" + name, grown as needed. */
static int join_path(pngdir_res *x, const char *dir, const char *name) {
    size_t ld = strlen(dir), ln = strlen(name);
    size_t need = ld + ln + 2;
    if (need > x->file_cap) {
        stochflow__free(x->file);
        x->file = stochflow__malloc(need);
        x->file_cap = x->file ? need : 0;
        RETURN_ERROR_IF(x->file == NULL, STOCHFLOW_E_NOMEM, "images_load: out of memory");
    }
    memcpy(x->file, dir, ld);
    x->file[ld] = '/';
    memcpy(x->file + ld + 1, name, ln + 1);
    return 0;
}

static int list_pngs(pngdir_res *x, const char *dir) {
    DIR *d = opendir(dir);
    RETURN_ERROR_IF(d == NULL, STOCHFLOW_E_IO, "images_load: pngdir:%s: cannot open: %s", dir,
                    strerror(errno));
    int rc = 0;
    for (;;) {
        /* errno is reset before every readdir: only readdir's own failure may be left in
         * it at the end (a stat of a dangling link in between sets ENOENT). */
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0)
                rc = stochflow__error(STOCHFLOW_E_IO, "images_load: pngdir:%s: cannot list: %s",
                                      dir, strerror(errno));
            break;
        }
        if (!has_png_suffix(e->d_name)) continue;
        rc = join_path(x, dir, e->d_name);
        if (rc < 0) break;
        struct stat st;
        if (stat(x->file, &st) != 0 || !S_ISREG(st.st_mode)) continue; /* not a regular file */
        if (x->n_names == x->cap_names) {
            size_t nc = x->cap_names ? 2 * x->cap_names : 64;
            char **nn = stochflow__alloc_array(nc, sizeof *nn);
            if (nn == NULL) {
                rc = stochflow__error(STOCHFLOW_E_NOMEM, "images_load: out of memory");
                break;
            }
            if (x->n_names) memcpy(nn, x->names, x->n_names * sizeof *nn);
            stochflow__free(x->names);
            x->names = nn;
            x->cap_names = nc;
        }
        size_t len = strlen(e->d_name) + 1;
        char *copy = stochflow__malloc(len);
        if (copy == NULL) {
            rc = stochflow__error(STOCHFLOW_E_NOMEM, "images_load: out of memory");
            break;
        }
        memcpy(copy, e->d_name, len);
        x->names[x->n_names++] = copy;
    }
    closedir(d);
    if (rc < 0) return rc;
    RETURN_ERROR_IF(x->n_names == 0, STOCHFLOW_E_FORMAT,
                    "images_load: pngdir:%s: no .png files in the directory", dir);
    qsort(x->names, x->n_names, sizeof *x->names, cmp_names);
    return 0;
}

static int pngdir_load(pngdir_res *x, size_t *count, size_t *channels, size_t *height,
                       size_t *width, const char *dir, size_t max_count, size_t max_values) {
    FORWARD_IF_ERROR(list_pngs(x, dir));
    size_t n = (max_count != 0 && max_count < x->n_names) ? max_count : x->n_names;
    /* Every header first: sizes, bombs and the caller's limit are checked for all the
     * files before anything is decoded or any buffer of the result is allocated. */
    for (size_t i = 0; i < n; ++i) {
        png_head hd;
        FORWARD_IF_ERROR(join_path(x, dir, x->names[i]));
        FORWARD_IF_ERROR(png_peek(x, &hd, max_values));
        if (i == 0) {
            x->first = hd;
            x->first_name = x->names[0];
        } else if (hd.w != x->first.w || hd.h != x->first.h || hd.c != x->first.c) {
            return stochflow__error(STOCHFLOW_E_FORMAT,
                                    "images_load: pngdir: %s is %zu x %zu with %zu channel(s), "
                                    "but the first file (%s) is %zu x %zu with %zu",
                                    x->file, hd.w, hd.h, hd.c, x->first_name, x->first.w,
                                    x->first.h, x->first.c);
        }
    }
    /* n per <= sum over the files of PNG_RATIO size + PNG_SLACK (png_peek) */
    size_t per = x->first.per;
    x->out = stochflow__alloc_array(n, per);
    x->rows = stochflow__alloc_array(x->first.h, sizeof *x->rows);
    if (x->first.c > 1) x->inter = stochflow__malloc(per);
    RETURN_ERROR_IF(x->out == NULL || x->rows == NULL || (x->first.c > 1 && x->inter == NULL),
                    STOCHFLOW_E_NOMEM,
                    "images_load: pngdir:%s: out of memory for %zu images of %zu bytes", dir, n,
                    per);
    for (size_t i = 0; i < n; ++i) {
        FORWARD_IF_ERROR(join_path(x, dir, x->names[i]));
        FORWARD_IF_ERROR(png_decode(x, x->out + i * per));
    }
    *count = n;
    *channels = x->first.c;
    *height = x->first.h;
    *width = x->first.w;
    return 0;
}

/* ==================================================================================== */
/* Public functions                                                                     */
/* ==================================================================================== */

STOCHFLOW_API int stochflow_images_load_limited(uint8_t **pixels, size_t *count,
                                                size_t *channels, size_t *height,
                                                size_t *width, const char *source,
                                                size_t max_count, size_t max_values) {
    RETURN_ERROR_IF(pixels == NULL || count == NULL || channels == NULL || height == NULL ||
                        width == NULL,
                    STOCHFLOW_E_INVALID, "images_load: an output pointer is NULL");
    *pixels = NULL;
    *count = *channels = *height = *width = 0;
    RETURN_ERROR_IF(source == NULL, STOCHFLOW_E_INVALID, "images_load: source is NULL");
    int rc;
    size_t n = 0, c = 0, h = 0, w = 0;
    if (strncmp(source, "idx:", 4) == 0) {
        RETURN_ERROR_IF(source[4] == '\0', STOCHFLOW_E_INVALID, "images_load: empty idx: path");
        idx_res r = {.fd = -1};
        rc = idx_load(&r, &n, &c, &h, &w, source + 4, max_count, max_values);
        if (rc == 0) {
            *pixels = r.data;
            r.data = NULL;
        }
        idx_release(&r);
    } else if (strncmp(source, "pngdir:", 7) == 0) {
        RETURN_ERROR_IF(source[7] == '\0', STOCHFLOW_E_INVALID,
                        "images_load: empty pngdir: path");
        pngdir_res *x = stochflow__calloc(1, sizeof *x);
        RETURN_ERROR_IF(x == NULL, STOCHFLOW_E_NOMEM, "images_load: out of memory");
        rc = pngdir_load(x, &n, &c, &h, &w, source + 7, max_count, max_values);
        if (rc == 0) {
            *pixels = x->out;
            x->out = NULL;
        }
        pngdir_release(x);
        stochflow__free(x);
    } else {
        return stochflow__error(STOCHFLOW_E_INVALID,
                                "images_load: unknown source \"%.60s\"; expected \"idx:PATH\" "
                                "(IDX file, raw or gzip) or \"pngdir:PATH\" (directory of PNG "
                                "files)",
                                source);
    }
    if (rc < 0) return rc;
    *count = n;
    *channels = c;
    *height = h;
    *width = w;
    return 0;
}

STOCHFLOW_API int stochflow_images_load(uint8_t **pixels, size_t *count, size_t *channels,
                                        size_t *height, size_t *width, const char *source,
                                        size_t max_count) {
    return stochflow_images_load_limited(pixels, count, channels, height, width, source,
                                         max_count, 0);
}

STOCHFLOW_API void stochflow_images_free(uint8_t *pixels) { stochflow__free(pixels); }

/* p = clamp(floor((x + 1) * 128), 0, 255), computed exactly: x * 128 is exact in float
 * (a power-of-two scaling), floorf is exact, and (x + 1) * 128 = 128 + x * 128. */
static inline uint8_t quantize1(float x) {
    if (isnan(x)) return 0;
    float t = x * 128.0f;
    if (t < -128.0f) return 0;
    if (t >= 128.0f) return 255;
    return (uint8_t)(128 + (int)floorf(t));
}

STOCHFLOW_API int stochflow_images_dequantize(float *out, const uint8_t *pixels, size_t n,
                                              uint64_t seed, uint64_t stream) {
    RETURN_ERROR_IF(n > 0 && (out == NULL || pixels == NULL), STOCHFLOW_E_INVALID,
                    "images_dequantize: out or pixels is NULL");
    RETURN_ERROR_IF(stream > 0xFFFFFFFFull, STOCHFLOW_E_INVALID,
                    "images_dequantize: stream %llu too large (at most 2^32 - 1)",
                    (unsigned long long)stream);
    for (size_t b = 0; b < n; b += DEQ_BLOCK) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, DEQ_STREAM, stream, b / DEQ_BLOCK);
        size_t e = n - b < DEQ_BLOCK ? n : b + DEQ_BLOCK;
        for (size_t i = b; i < e; ++i) {
            double u = stochflow__rng_uniform(&r);
            int p = pixels[i];
            /* 128 x = p - 128 + u, rounded to float; rounding can only reach the upper
             * bin edge p - 127 (never below p - 128, which is representable). */
            float t = (float)((double)(p - 128) + u);
            float x = t / 128.0f;
            if (t >= (float)(p - 127)) x = nextafterf((float)(p - 127) / 128.0f, -2.0f);
            out[i] = x;
        }
    }
    return 0;
}

STOCHFLOW_API int stochflow_images_to_float(float *out, const uint8_t *pixels, size_t n) {
    RETURN_ERROR_IF(n > 0 && (out == NULL || pixels == NULL), STOCHFLOW_E_INVALID,
                    "images_to_float: out or pixels is NULL");
    for (size_t i = 0; i < n; ++i) out[i] = ((float)pixels[i] - 127.5f) / 128.0f;
    return 0;
}

STOCHFLOW_API int stochflow_images_quantize(uint8_t *out, const float *x, size_t n) {
    RETURN_ERROR_IF(n > 0 && (out == NULL || x == NULL), STOCHFLOW_E_INVALID,
                    "images_quantize: out or x is NULL");
    for (size_t i = 0; i < n; ++i) out[i] = quantize1(x[i]);
    return 0;
}

STOCHFLOW_API double stochflow_bits_per_dim(double logp, size_t dim) {
    if (dim == 0) return NAN;
    return -logp / ((double)dim * LN2) + 7.0;
}

#define GRID_BORDER 2u
#define GRID_FILL 128u /* border and empty cells: mid-gray (the value 0.0) */
#define GRID_MAX 1000000u /* stochflow_png_write's size limit */

STOCHFLOW_API int stochflow_images_write_grid(const char *path, const float *images, size_t n,
                                              size_t channels, size_t height, size_t width,
                                              size_t ncols) {
    RETURN_ERROR_IF(path == NULL || path[0] == '\0', STOCHFLOW_E_INVALID,
                    "images_write_grid: path is NULL or empty");
    RETURN_ERROR_IF(images == NULL, STOCHFLOW_E_INVALID, "images_write_grid: images is NULL");
    RETURN_ERROR_IF(n == 0, STOCHFLOW_E_INVALID, "images_write_grid: n is 0");
    RETURN_ERROR_IF(channels != 1 && channels != 3, STOCHFLOW_E_INVALID,
                    "images_write_grid: channels must be 1 or 3 (got %zu)", channels);
    RETURN_ERROR_IF(height == 0 || width == 0 || height > GRID_MAX || width > GRID_MAX,
                    STOCHFLOW_E_INVALID, "images_write_grid: image size %zu x %zu out of range",
                    height, width);
    if (ncols == 0) {
        ncols = (size_t)ceil(sqrt((double)n));
        while (ncols * ncols < n) ++ncols; /* guard against sqrt rounding */
        while (ncols > 1 && (ncols - 1) * (ncols - 1) >= n) --ncols;
    }
    RETURN_ERROR_IF(ncols > GRID_MAX, STOCHFLOW_E_INVALID, "images_write_grid: ncols %zu too large",
                    ncols);
    size_t nrows = n / ncols + (n % ncols != 0);
    /* grid = border + cells of (image + border): width ncols (W + 2) + 2 */
    size_t cw = width + GRID_BORDER, ch = height + GRID_BORDER;
    RETURN_ERROR_IF(nrows > GRID_MAX || ncols > (GRID_MAX - GRID_BORDER) / cw ||
                        nrows > (GRID_MAX - GRID_BORDER) / ch,
                    STOCHFLOW_E_INVALID,
                    "images_write_grid: the grid (%zu x %zu images of %zu x %zu) exceeds %u "
                    "pixels on a side",
                    nrows, ncols, height, width, GRID_MAX);
    size_t gw = ncols * cw + GRID_BORDER, gh = nrows * ch + GRID_BORDER;
    size_t hw = height * width, per = hw * channels, total;
    RETURN_ERROR_IF(stochflow__mul_size(&total, n, per), STOCHFLOW_E_INVALID,
                    "images_write_grid: n x image size overflows");
    uint8_t *grid = stochflow__alloc_array(gw * gh, channels);
    RETURN_ERROR_IF(grid == NULL, STOCHFLOW_E_NOMEM,
                    "images_write_grid: out of memory for a %zu x %zu grid", gw, gh);
    memset(grid, GRID_FILL, gw * gh * channels);
    for (size_t k = 0; k < n; ++k) {
        size_t oy = GRID_BORDER + (k / ncols) * ch, ox = GRID_BORDER + (k % ncols) * cw;
        const float *img = images + k * per;
        for (size_t y = 0; y < height; ++y) {
            uint8_t *row = grid + ((oy + y) * gw + ox) * channels;
            for (size_t xx = 0; xx < width; ++xx)
                for (size_t c = 0; c < channels; ++c)
                    row[xx * channels + c] = quantize1(img[c * hw + y * width + xx]);
        }
    }
    int rc = stochflow_png_write(path, grid, (uint32_t)gw, (uint32_t)gh, (int)channels);
    stochflow__free(grid);
    return rc;
}
