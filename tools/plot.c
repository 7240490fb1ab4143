/* plot.c - small raster plots for the stochflow program: 2-D histograms, density heat
 * maps and loss curves on an RGB canvas, titled with a built-in 5x7 bitmap font, and
 * written with stochflow_png_write(). No plotting library needed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* ---- canvas ------------------------------------------------------------------------ */

int canvas_new(canvas *c, int w, int h, uint8_t gray) {
    c->w = w;
    c->h = h;
    c->px = malloc((size_t)w * (size_t)h * 3);
    if (c->px == NULL) return cli_fail("out of memory for a %dx%d picture", w, h);
    memset(c->px, gray, (size_t)w * (size_t)h * 3);
    return 0;
}

void canvas_free(canvas *c) {
    free(c->px);
    c->px = NULL;
}

static void put(canvas *c, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = rgb[0];
    p[1] = rgb[1];
    p[2] = rgb[2];
}

void canvas_blit(canvas *dst, const canvas *src, int x0, int y0) {
    for (int y = 0; y < src->h; ++y)
        for (int x = 0; x < src->w; ++x)
            put(dst, x0 + x, y0 + y, src->px + ((size_t)y * (size_t)src->w + (size_t)x) * 3);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        put(c, x0, y0, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

int canvas_save(const canvas *c, const char *path) {
    int rc = stochflow_png_write(path, c->px, (uint32_t)c->w, (uint32_t)c->h, 3);
    if (rc < 0) return cli_fail_lib(rc, path);
    return 0;
}

/* ---- 5x7 font ---------------------------------------------------------------------- */

typedef struct {
    char ch;
    uint8_t rows[7]; /* bit 4 = leftmost column */
} glyph;

static const glyph font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},
    {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
    {'[', {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}},
    {']', {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'\'', {0x04, 0x04, 0x08, 0, 0, 0, 0}},
    {'*', {0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0}},
    {'^', {0x04, 0x0A, 0x11, 0, 0, 0, 0}},
};

static const uint8_t *glyph_rows(char ch) {
    static const uint8_t box[7] = {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F};
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
    for (size_t i = 0; i < sizeof font / sizeof font[0]; ++i)
        if (font[i].ch == ch) return font[i].rows;
    return box;
}

int canvas_text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale; }

void canvas_text(canvas *c, int x, int y, const char *s, int scale, const uint8_t rgb[3]) {
    for (; *s; ++s, x += 6 * scale) {
        const uint8_t *g = glyph_rows(*s);
        for (int r = 0; r < 7; ++r)
            for (int col = 0; col < 5; ++col)
                if (g[r] >> (4 - col) & 1)
                    for (int a = 0; a < scale; ++a)
                        for (int b = 0; b < scale; ++b)
                            put(c, x + col * scale + b, y + r * scale + a, rgb);
    }
}

/* ---- colour map (viridis, 9 control points, linear in between) --------------------- */

static void colormap(uint8_t rgb[3], double v) {
    static const uint8_t cm[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                     {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                     {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(v > 0)) v = 0;
    if (v > 1) v = 1;
    double s = v * 8.0;
    int i = (int)s;
    if (i >= 8) i = 7;
    double f = s - i;
    for (int k = 0; k < 3; ++k) rgb[k] = (uint8_t)lround(cm[i][k] * (1 - f) + cm[i + 1][k] * f);
}

static const uint8_t INK[3] = {30, 30, 30};
#define TITLE_H 26

static int panel_new(canvas *out, const char *title, int w, int h) {
    if (canvas_new(out, w, h + TITLE_H, 255) != 0) return -1;
    int scale = canvas_text_width(title, 2) <= w - 8 ? 2 : 1;
    int tx = (w - canvas_text_width(title, scale)) / 2;
    canvas_text(out, tx > 0 ? tx : 2, (TITLE_H - 7 * scale) / 2, title, scale, INK);
    return 0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* q-quantile of n values (copied and sorted); NaN when n == 0 or out of memory. */
static double quantile(const float *v, size_t n, size_t stride, double q) {
    if (n == 0) return NAN;
    float *c = malloc(n * sizeof(float));
    if (c == NULL) return NAN;
    for (size_t i = 0; i < n; ++i) c[i] = v[i * stride];
    qsort(c, n, sizeof(float), cmp_float);
    size_t k = (size_t)(q * (double)(n - 1));
    double r = c[k];
    free(c);
    return r;
}

void plot_auto_range(double *lo, double *hi, const float *x, size_t n, size_t d) {
    double cx = 0, half = 1;
    if (n > 0) {
        double x0 = quantile(x, n, d, 0.005), x1 = quantile(x, n, d, 0.995);
        double y0 = d > 1 ? quantile(x + 1, n, d, 0.005) : 0;
        double y1 = d > 1 ? quantile(x + 1, n, d, 0.995) : 0;
        if (isfinite(x0) && isfinite(x1) && isfinite(y0) && isfinite(y1)) {
            double wx = x1 - x0, wy = y1 - y0, w = wx > wy ? wx : wy;
            half = 0.55 * w;
            if (!(half > 1e-6)) half = 1;
            cx = 0.5 * (x0 + x1);
            double cy = 0.5 * (y0 + y1);
            /* one square range centred on the data: use the larger span for both */
            double lo_ = fmin(cx, cy) - half, hi_ = fmax(cx, cy) + half;
            *lo = lo_;
            *hi = hi_;
            return;
        }
    }
    *lo = cx - half;
    *hi = cx + half;
}

int plot_histogram(canvas *out, const char *title, const float *x, size_t n, size_t d,
                   double lo, double hi, int size) {
    int bins = (int)sqrt((double)n / 8.0);
    if (bins < 16) bins = 16;
    if (bins > size / 2) bins = size / 2;
    double *cnt = calloc((size_t)bins * (size_t)bins, sizeof(double));
    if (cnt == NULL) return cli_fail("out of memory");
    double w = (hi - lo) / bins, mx = 0;
    for (size_t i = 0; i < n; ++i) {
        double a = x[i * d], b = d > 1 ? x[i * d + 1] : 0.0;
        int bx = (int)floor((a - lo) / w), by = (int)floor((b - lo) / w);
        if (bx < 0 || by < 0 || bx >= bins || by >= bins) continue;
        double v = ++cnt[(size_t)by * bins + bx];
        if (v > mx) mx = v;
    }
    /* colour scale: 0 .. the 99th percentile of non-empty bins (robust to spikes) */
    float *nz = malloc((size_t)bins * (size_t)bins * sizeof(float));
    size_t k = 0;
    for (int i = 0; nz && i < bins * bins; ++i)
        if (cnt[i] > 0) nz[k++] = (float)cnt[i];
    double vmax = k ? quantile(nz, k, 1, 0.99) : 1.0;
    free(nz);
    if (!(vmax > 0)) vmax = mx > 0 ? mx : 1;
    if (panel_new(out, title, size, size) != 0) {
        free(cnt);
        return -1;
    }
    for (int py = 0; py < size; ++py)
        for (int px = 0; px < size; ++px) {
            int bx = px * bins / size, by = bins - 1 - py * bins / size;
            uint8_t rgb[3];
            colormap(rgb, cnt[(size_t)by * bins + bx] / vmax);
            put(out, px, TITLE_H + py, rgb);
        }
    free(cnt);
    return 0;
}

int plot_heatmap(canvas *out, const char *title, const float *val, int g, double vmax, int size) {
    if (!(vmax > 0)) {
        vmax = quantile(val, (size_t)g * (size_t)g, 1, 0.995);
        if (!(vmax > 0)) vmax = 1;
    }
    if (panel_new(out, title, size, size) != 0) return -1;
    for (int py = 0; py < size; ++py)
        for (int px = 0; px < size; ++px) {
            /* bilinear interpolation between grid nodes (node centres at (i + 0.5)) */
            double gx = (px + 0.5) * g / size - 0.5, gy = (size - py - 0.5) * g / size - 0.5;
            int ix = (int)floor(gx), iy = (int)floor(gy);
            double fx = gx - ix, fy = gy - iy;
            double acc = 0;
            for (int a = 0; a < 2; ++a)
                for (int b = 0; b < 2; ++b) {
                    int jx = ix + b, jy = iy + a;
                    if (jx < 0) jx = 0;
                    if (jy < 0) jy = 0;
                    if (jx >= g) jx = g - 1;
                    if (jy >= g) jy = g - 1;
                    double wgt = (b ? fx : 1 - fx) * (a ? fy : 1 - fy);
                    double v = val[(size_t)jy * g + jx];
                    acc += wgt * (isfinite(v) ? v : 0.0);
                }
            uint8_t rgb[3];
            colormap(rgb, acc / vmax);
            put(out, px, TITLE_H + py, rgb);
        }
    return 0;
}

int plot_curve(canvas *out, const char *title, const double *y, size_t n, int w, int h) {
    if (panel_new(out, title, w, h) != 0) return -1;
    const int left = 62, right = 10, top = 8, bottom = 22;
    int pw = w - left - right, ph = h - top - bottom;
    int oy = TITLE_H + top;
    static const uint8_t axis[3] = {90, 90, 90}, raw[3] = {200, 200, 215},
                         avg[3] = {31, 90, 200};
    line(out, left, oy, left, oy + ph, axis);
    line(out, left, oy + ph, left + pw, oy + ph, axis);
    if (n == 0) return 0;
    /* moving average over a window of ~2% of the run */
    size_t win = n / 50 + 1;
    double *ma = malloc(n * sizeof(double));
    float *tmp = malloc(n * sizeof(float));
    if (ma == NULL || tmp == NULL) {
        free(ma);
        free(tmp);
        return cli_fail("out of memory");
    }
    double run = 0;
    for (size_t i = 0; i < n; ++i) {
        run += y[i];
        if (i >= win) run -= y[i - win];
        ma[i] = run / (double)(i + 1 < win ? i + 1 : win);
        tmp[i] = (float)y[i];
    }
    /* y range: the raw values' 1% .. 99% (the early transient is clipped) widened */
    double ylo = quantile(tmp, n, 1, 0.01), yhi = quantile(tmp, n, 1, 0.99);
    for (size_t i = n / 20; i < n; ++i) ylo = fmin(ylo, ma[i]), yhi = fmax(yhi, ma[i]);
    free(tmp);
    if (!(yhi > ylo)) yhi = ylo + 1;
    double pad = 0.05 * (yhi - ylo);
    ylo -= pad;
    yhi += pad;
#define YPIX(v) (oy + ph - (int)lround(((v) - ylo) / (yhi - ylo) * ph))
#define CLAMPY(p) ((p) < oy ? oy : ((p) > oy + ph ? oy + ph : (p)))
    for (size_t i = 0; i < n; ++i) {
        int px = left + (int)((double)i * pw / (double)n), py = YPIX(y[i]);
        if (py >= oy && py <= oy + ph) put(out, px, py, raw); /* outliers are not drawn */
    }
    int prevx = -1, prevy = 0;
    for (size_t i = 0; i < n; ++i) {
        int px = left + (int)((double)i * pw / (double)n), py = CLAMPY(YPIX(ma[i]));
        if (prevx >= 0) {
            line(out, prevx, prevy, px, py, avg);
            line(out, prevx, prevy + 1, px, py + 1, avg);
        }
        prevx = px;
        prevy = py;
    }
    free(ma);
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", yhi);
    canvas_text(out, 4, oy, buf, 1, INK);
    snprintf(buf, sizeof buf, "%.3g", ylo);
    canvas_text(out, 4, oy + ph - 7, buf, 1, INK);
    canvas_text(out, left, oy + ph + 6, "0", 1, INK);
    snprintf(buf, sizeof buf, "%zu STEPS", n);
    canvas_text(out, left + pw - canvas_text_width(buf, 1), oy + ph + 6, buf, 1, INK);
#undef YPIX
#undef CLAMPY
    return 0;
}
