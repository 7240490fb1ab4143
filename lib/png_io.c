/* png_io.c - PNG output; the one file of the library that includes <png.h>.
 *
 * libpng reports errors by calling an error function that must not return; by default
 * it prints to stderr and longjmps (or aborts). Here both the error and the warning
 * handler only record libpng's message in a context struct; the error handler then
 * longjmps back to stochflow_png_write, which cleans up and returns STOCHFLOW_E_IO
 * with that message. libpng never prints and never aborts.
 *
 * The image is encoded into memory, then written atomically by lib/fileio.c, as
 * checkpoints are (stochflow__atomic_write: temporary file in the same directory, fsync,
 * rename); on any failure the target is untouched and no temporary is left.
 */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

typedef struct {
    jmp_buf jb;
    char msg[256];
    uint8_t *buf; /* encoded bytes, grown by doubling */
    size_t len, cap;
    int oom;
} png_ctx;

static void on_png_write(png_structp png, png_bytep data, size_t n) {
    png_ctx *c = (png_ctx *)png_get_io_ptr(png);
    if (n > c->cap - c->len) {
        if (n > SIZE_MAX - c->len) {
            c->oom = 1;
            png_error(png, "encoded image too large");
        }
        size_t need = c->len + n, cap = c->cap ? c->cap : 4096;
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : 2 * cap;
        uint8_t *nb = stochflow__malloc(cap);
        if (nb == NULL) {
            c->oom = 1;
            png_error(png, "out of memory for the encoded image");
        }
        if (c->len) memcpy(nb, c->buf, c->len);
        stochflow__free(c->buf);
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
}

static void on_png_flush(png_structp png) { (void)png; }

static void on_png_error(png_structp png, png_const_charp msg) {
    png_ctx *c = (png_ctx *)png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
    longjmp(c->jb, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    png_ctx *c = (png_ctx *)png_get_error_ptr(png);
    /* keep the first warning as context for a later error; never print */
    if (c->msg[0] == '\0') snprintf(c->msg, sizeof c->msg, "warning: %s", msg ? msg : "");
}

/* Encode the image into ctx->buf. Returns 0 or a negative status. Kept in its own
 * function so that the locals live across setjmp safely (all set before setjmp). */
static int encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                  int channels, png_ctx *ctx) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_png_error,
                                              on_png_warning);
    if (png == NULL) return stochflow__error(STOCHFLOW_E_NOMEM, "png_write: out of memory");
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        return stochflow__error(STOCHFLOW_E_NOMEM, "png_write: out of memory");
    }
    if (setjmp(ctx->jb)) {
        png_destroy_write_struct(&png, &info);
        return stochflow__error(ctx->oom ? STOCHFLOW_E_NOMEM : STOCHFLOW_E_IO,
                                "png_write: libpng: %s", ctx->msg);
    }
    int type = channels == 1   ? PNG_COLOR_TYPE_GRAY
               : channels == 3 ? PNG_COLOR_TYPE_RGB
                               : PNG_COLOR_TYPE_RGBA;
    png_set_write_fn(png, ctx, on_png_write, on_png_flush);
    png_set_IHDR(png, info, width, height, 8, type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * (size_t)channels;
    for (uint32_t y = 0; y < height; ++y)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * stride));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

STOCHFLOW_API int stochflow_png_write(const char *path, const uint8_t *pixels, uint32_t width,
                                      uint32_t height, int channels) {
    RETURN_ERROR_IF(path == NULL || path[0] == '\0', STOCHFLOW_E_INVALID,
                    "png_write: path is NULL or empty");
    RETURN_ERROR_IF(pixels == NULL, STOCHFLOW_E_INVALID, "png_write: pixels is NULL");
    RETURN_ERROR_IF(channels != 1 && channels != 3 && channels != 4, STOCHFLOW_E_INVALID,
                    "png_write: channels must be 1, 3 or 4 (got %d)", channels);
    /* PNG_USER_WIDTH_MAX / HEIGHT_MAX default to 1e6; also keep a row in size_t. */
    RETURN_ERROR_IF(width == 0 || height == 0 || width > 1000000u || height > 1000000u,
                    STOCHFLOW_E_INVALID, "png_write: size %ux%u out of range 1..1000000",
                    (unsigned)width, (unsigned)height);
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int rc = encode(pixels, width, height, channels, &ctx);
    if (rc == 0) rc = stochflow__atomic_write(path, ctx.buf, ctx.len);
    stochflow__free(ctx.buf);
    return rc;
}
