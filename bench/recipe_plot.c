/* recipe_plot.c - accuracy-per-CPU-second curves for bench/RECIPE.md, drawn with the
 * stochflow program's own raster plots (tools/plot.c: canvas, 5x7 font, PNG through
 * stochflow_png_write); matplotlib is not needed.
 *
 *   recipe_plot OUT.png < points
 *
 * Input: one point per line, tab-separated: PANEL SERIES X Y (e.g. "gmm21  new  312.5
 * 0.018"); lines starting with '#' are skipped. One panel per distinct PANEL (in order of
 * first appearance), log-log axes (X = training CPU seconds, Y = KL in nats), one line
 * per SERIES (points sorted by X), a legend, and a dashed horizontal line at the value
 * given by a point of the reserved series "target". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/common.h"

#define MAXP 4096
#define MAXPANEL 12
#define MAXSER 8

typedef struct {
    char panel[32], series[32];
    double x, y;
} point;

static point pts[MAXP];
static size_t npts;

static const uint8_t COLORS[MAXSER][3] = {{200, 60, 40},  {31, 90, 200},  {40, 150, 60},
                                          {150, 60, 170}, {230, 140, 20}, {90, 90, 90},
                                          {0, 160, 160},  {160, 120, 60}};
static const uint8_t INKC[3] = {30, 30, 30}, GRID[3] = {225, 225, 225};

static void put(canvas *c, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3, rgb, 3);
}

/* Thick line (3 px) from (x0, y0) to (x1, y1); dashed when dash > 0. */
static void seg(canvas *c, double x0, double y0, double x1, double y1, const uint8_t rgb[3],
                int thick, int dash) {
    double len = hypot(x1 - x0, y1 - y0);
    int n = (int)len + 1;
    for (int i = 0; i <= n; ++i) {
        if (dash && (i / dash) % 2) continue;
        double f = (double)i / n;
        int x = (int)lround(x0 + f * (x1 - x0)), y = (int)lround(y0 + f * (y1 - y0));
        for (int a = -thick / 2; a <= thick / 2; ++a)
            for (int b = -thick / 2; b <= thick / 2; ++b) put(c, x + a, y + b, rgb);
    }
}

static int index_of(char names[][32], size_t *n, size_t cap, const char *s) {
    for (size_t i = 0; i < *n; ++i)
        if (strcmp(names[i], s) == 0) return (int)i;
    if (*n >= cap) return -1;
    snprintf(names[*n], 32, "%s", s);
    return (int)(*n)++;
}

static int cmp_x(const void *a, const void *b) {
    double d = ((const point *)a)->x - ((const point *)b)->x;
    return d < 0 ? -1 : d > 0;
}

static void panel(canvas *c, const char *name, char series[][32], size_t ns) {
    const int W = c->w, H = c->h, L = 56, R = 10, T = 24, Bm = 30;
    int pw = W - L - R, ph = H - T - Bm;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t i = 0; i < npts; ++i) {
        if (strcmp(pts[i].panel, name) != 0 || !(pts[i].y > 0)) continue;
        if (strcmp(pts[i].series, "target") != 0) {
            xlo = fmin(xlo, pts[i].x);
            xhi = fmax(xhi, pts[i].x);
        }
        ylo = fmin(ylo, pts[i].y);
        yhi = fmax(yhi, pts[i].y);
    }
    if (!(xhi > 0)) return;
    /* whole decades on y, powers of 2 on x */
    double lx0 = floor(log2(xlo)), lx1 = ceil(log2(xhi)), ly0 = floor(log10(ylo)),
           ly1 = ceil(log10(yhi));
    if (lx1 <= lx0) lx1 = lx0 + 1;
    if (ly1 <= ly0) ly1 = ly0 + 1;
#define PX(v) (L + (log2(v) - lx0) / (lx1 - lx0) * pw)
#define PY(v) (T + ph - (log10(v) - ly0) / (ly1 - ly0) * ph)
    char buf[64];
    for (double e = ly0; e <= ly1 + 1e-9; e += 1) {
        for (int k = 1; k <= 9; ++k) {
            double v = pow(10, e) * k;
            if (log10(v) > ly1 + 1e-9) break;
            seg(c, L, PY(v), L + pw, PY(v), GRID, 1, 0);
        }
        snprintf(buf, sizeof buf, "%g", pow(10, e));
        canvas_text(c, L - 4 - canvas_text_width(buf, 1), (int)PY(pow(10, e)) - 3, buf, 1, INKC);
    }
    for (double e = lx0; e <= lx1 + 1e-9; e += 1) {
        double v = pow(2, e);
        seg(c, PX(v), T, PX(v), T + ph, GRID, 1, 0);
        snprintf(buf, sizeof buf, "%g", v);
        canvas_text(c, (int)PX(v) - canvas_text_width(buf, 1) / 2, T + ph + 5, buf, 1, INKC);
    }
    seg(c, L, T, L, T + ph, INKC, 1, 0);
    seg(c, L, T + ph, L + pw, T + ph, INKC, 1, 0);
    for (size_t i = 0; i < npts; ++i) /* the target line */
        if (strcmp(pts[i].panel, name) == 0 && strcmp(pts[i].series, "target") == 0)
            seg(c, L, PY(pts[i].y), L + pw, PY(pts[i].y), INKC, 1, 6);
    for (size_t s = 0; s < ns; ++s) {
        double px = NAN, py = NAN;
        for (size_t i = 0; i < npts; ++i) {
            if (strcmp(pts[i].panel, name) != 0 || strcmp(pts[i].series, series[s]) != 0 ||
                !(pts[i].y > 0))
                continue;
            double x = PX(pts[i].x), y = PY(pts[i].y);
            if (!isnan(px)) seg(c, px, py, x, y, COLORS[s % MAXSER], 3, 0);
            seg(c, x - 3, y, x + 3, y, COLORS[s % MAXSER], 3, 0);
            px = x, py = y;
        }
    }
    snprintf(buf, sizeof buf, "%s: KL (NATS) VS TRAINING CPU SECONDS", name);
    for (char *p = buf; *p; ++p)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    canvas_text(c, L, 6, buf, 1, INKC);
#undef PX
#undef PY
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: recipe_plot OUT.png < points\n");
        return 2;
    }
    char line[512], panels[MAXPANEL][32], series[MAXSER][32];
    size_t np = 0, ns = 0;
    while (fgets(line, sizeof line, stdin) && npts < MAXP) {
        point *p = &pts[npts];
        if (line[0] == '#' || sscanf(line, "%31s %31s %lf %lf", p->panel, p->series, &p->x,
                                     &p->y) != 4)
            continue;
        if (index_of(panels, &np, MAXPANEL, p->panel) < 0) continue;
        if (strcmp(p->series, "target") != 0 && index_of(series, &ns, MAXSER, p->series) < 0)
            continue;
        ++npts;
    }
    qsort(pts, npts, sizeof pts[0], cmp_x);
    const int PW = 360, PH = 260, cols = np < 3 ? (int)np : 3, legend = 24;
    int rows = ((int)np + cols - 1) / cols;
    canvas all = {0};
    if (np == 0 || canvas_new(&all, cols * PW, rows * PH + legend, 255) != 0) return 1;
    for (size_t k = 0; k < np; ++k) {
        canvas c = {0};
        if (canvas_new(&c, PW, PH, 255) != 0) return 1;
        panel(&c, panels[k], series, ns);
        canvas_blit(&all, &c, (int)(k % cols) * PW, (int)(k / cols) * PH);
        canvas_free(&c);
    }
    int x = 10, y = rows * PH + 8;
    for (size_t s = 0; s < ns; ++s) {
        seg(&all, x, y + 3, x + 20, y + 3, COLORS[s % MAXSER], 3, 0);
        char up[32];
        snprintf(up, sizeof up, "%s", series[s]);
        for (char *p = up; *p; ++p)
            if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
        canvas_text(&all, x + 26, y, up, 1, INKC);
        x += 26 + canvas_text_width(up, 1) + 24;
    }
    seg(&all, x, y + 3, x + 20, y + 3, INKC, 1, 6);
    canvas_text(&all, x + 26, y, "TARGET", 1, INKC);
    int rc = canvas_save(&all, argv[1]);
    canvas_free(&all);
    return rc != 0;
}
