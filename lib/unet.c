/* unet.c - the U-Net velocity field, compiled into a tape of image layers.
 *
 * Compilation (build) turns a configuration into tensors (a shape per image) and
 * operations that read and write them by index; parameters are laid out in one flat
 * block in operation order. forward() runs the operations in order over a batch, with
 * every tensor kept in the forward arena; backward() zeroes a gradient arena of the
 * same layout and runs the operations in reverse, each ACCUMULATING into the gradients
 * of its inputs, so tensors read by several operations (skip connections, residual
 * branches, the time embedding) just work. Layer contracts: lib/conv.h, lib/layers.h;
 * the architecture and its defaults: doc/unet.md. */
#include <math.h>
#include <string.h>

#include "conv.h"
#include "internal.h"
#include "layers.h"
#include "model.h"
#include "network.h"
#include "parallel.h"
#include "unet.h"

enum {
    OP_TEMB,  /* out [n x base] = sinusoidal features of t                        */
    OP_DENSE, /* out [n x fout] = in0 [n x fin] W^T + b                            */
    OP_SILU,  /* out = silu(in0)                                                    */
    OP_CONV,  /* out = conv(in0)                                                    */
    OP_GN,    /* out = groupnorm(in0); aux = [mean | rstd] per image                */
    OP_ADDCH, /* out [c x hw] = in0 [c x hw] + in1 [c] (broadcast over positions)   */
    OP_ADD,   /* out = in0 + in1                                                    */
    OP_CAT,   /* out = [in0; in1] along channels                                    */
    OP_UP,    /* out = nearest 2x up-sampling of in0                                */
    OP_ATTN,  /* out = attention(q = in0, k = in1, v = in2); aux = probabilities    */
    OP_COND   /* out [n x n_cond] = conditioning input; aux [n] = embedding rows used */
};

typedef struct {
    size_t c, h, w; /* shape per image (vectors: c x 1 x 1) */
    size_t size;    /* c * h * w floats per image */
    size_t off;     /* floats per image before this tensor in the arena */
} tensor;

typedef struct {
    int kind;
    int in0, in1, in2, out, aux;
    size_t w_off, b_off;       /* parameters (conv/dense: W, b; GN: gamma, beta) */
    size_t fin, fout;          /* dense sizes */
    size_t k, stride, groups;  /* conv, GN */
    int zero_init;             /* conv initialised to zero (end of residual branches) */
} op;

struct stochflow__unet {
    stochflow__unet_cfg cfg;
    tensor *t;
    op *ops;
    size_t n_t, n_ops, cap_t, cap_ops;
    size_t per_image;   /* floats of all tensors for one image */
    size_t n_params;
    size_t n_cond;      /* conditioning input width (0: unconditional) */
    size_t emb_off;     /* the label embedding's offset in the parameter block */
    int out;            /* output tensor */
    int counting;       /* first pass: count only */
    int overflow;       /* a size overflowed size_t (64-bit: impossible within the limits) */
    int bad_groups;     /* a normalized tensor whose channels groups does not divide */
    op sink;            /* where the counting pass writes its operations */
};

/* Checked size arithmetic of the compilation: an overflow marks u and yields 0. */
static size_t ck_mul(stochflow__unet *u, size_t a, size_t b) {
    size_t r;
    if (stochflow__mul_size(&r, a, b) != 0) {
        u->overflow = 1;
        return 0;
    }
    return r;
}

static size_t ck_add(stochflow__unet *u, size_t a, size_t b) {
    if (a > SIZE_MAX - b) {
        u->overflow = 1;
        return 0;
    }
    return a + b;
}

/* ---- compilation ------------------------------------------------------------------ */

static int new_tensor(stochflow__unet *u, size_t c, size_t h, size_t w) {
    size_t id = u->n_t++;
    if (!u->counting) {
        tensor *t = &u->t[id];
        t->c = c;
        t->h = h;
        t->w = w;
        t->size = ck_mul(u, ck_mul(u, c, h), w);
        t->off = u->per_image;
        u->per_image = ck_add(u, u->per_image, t->size);
    }
    return (int)id;
}

static op *new_op(stochflow__unet *u, int kind) {
    size_t id = u->n_ops++;
    op *o = u->counting ? &u->sink : &u->ops[id];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->in0 = o->in1 = o->in2 = o->aux = -1;
    return o;
}

static const tensor *T(const stochflow__unet *u, int id) { return &u->t[id]; }

static int conv(stochflow__unet *u, int x, size_t co, size_t k, size_t stride, int zero) {
    size_t c = 0, h = 0, w = 0;
    if (!u->counting) {
        c = T(u, x)->c;
        h = T(u, x)->h;
        w = T(u, x)->w;
    }
    size_t ho = stride == 2 ? (h + 1) / 2 : h, wo = stride == 2 ? (w + 1) / 2 : w;
    int y = new_tensor(u, co, ho, wo);
    op *o = new_op(u, OP_CONV);
    o->in0 = x;
    o->out = y;
    o->k = k;
    o->stride = stride;
    o->zero_init = zero;
    o->w_off = u->n_params;
    o->b_off = ck_add(u, u->n_params, ck_mul(u, ck_mul(u, co, c), k * k));
    u->n_params = ck_add(u, o->b_off, co);
    return y;
}

static int dense(stochflow__unet *u, int x, size_t fin, size_t fout) {
    int y = new_tensor(u, fout, 1, 1);
    op *o = new_op(u, OP_DENSE);
    o->in0 = x;
    o->out = y;
    o->fin = fin;
    o->fout = fout;
    o->w_off = u->n_params;
    o->b_off = ck_add(u, u->n_params, ck_mul(u, fin, fout));
    u->n_params = ck_add(u, o->b_off, fout);
    return y;
}

static int unary(stochflow__unet *u, int kind, int x) {
    size_t c = 0, h = 0, w = 0;
    if (!u->counting) {
        c = T(u, x)->c;
        h = T(u, x)->h;
        w = T(u, x)->w;
    }
    int y = new_tensor(u, c, kind == OP_UP ? 2 * h : h,
                       kind == OP_UP ? 2 * w : w);
    op *o = new_op(u, kind);
    o->in0 = x;
    o->out = y;
    return y;
}

static int groupnorm(stochflow__unet *u, int x) {
    size_t c = u->counting ? 0 : T(u, x)->c, h = u->counting ? 0 : T(u, x)->h,
           w = u->counting ? 0 : T(u, x)->w;
    size_t g = u->cfg.groups;
    /* Never true after stochflow__unet_validate (groups divides base, so every
     * base * mult[l], and every tensor normalized here has such a channel count or a
     * sum of two: see the proof there); kept as a check of that argument. */
    if (!u->counting && (g == 0 || c % g != 0)) u->bad_groups = 1;
    int y = new_tensor(u, c, h, w);
    int aux = new_tensor(u, 2 * g, 1, 1);
    op *o = new_op(u, OP_GN);
    o->in0 = x;
    o->out = y;
    o->aux = aux;
    o->groups = g;
    o->w_off = u->n_params;
    o->b_off = ck_add(u, u->n_params, c);
    u->n_params = ck_add(u, o->b_off, c);
    return y;
}

static int binary(stochflow__unet *u, int kind, int a, int b) {
    size_t c = 0, h = 0, w = 0;
    if (!u->counting) {
        c = T(u, a)->c + (kind == OP_CAT ? T(u, b)->c : 0);
        h = T(u, a)->h;
        w = T(u, a)->w;
    }
    int y = new_tensor(u, c, h, w);
    op *o = new_op(u, kind);
    o->in0 = a;
    o->in1 = b;
    o->out = y;
    return y;
}

static int attention(stochflow__unet *u, int x) {
    size_t c = u->counting ? 0 : T(u, x)->c;
    size_t L = u->counting ? 0 : T(u, x)->h * T(u, x)->w;
    int a = groupnorm(u, x);
    int q = conv(u, a, c, 1, 1, 0), k = conv(u, a, c, 1, 1, 0), v = conv(u, a, c, 1, 1, 0);
    size_t h = u->counting ? 0 : T(u, x)->h, w = u->counting ? 0 : T(u, x)->w;
    int o_t = new_tensor(u, c, h, w);
    int probs = new_tensor(u, L, L, 1);
    op *o = new_op(u, OP_ATTN);
    o->in0 = q;
    o->in1 = k;
    o->in2 = v;
    o->out = o_t;
    o->aux = probs;
    int proj = conv(u, o_t, c, 1, 1, 1);
    return binary(u, OP_ADD, x, proj);
}

/* DDPM residual block: GN, SiLU, conv3, + time projection, GN, SiLU, conv3 (zero
 * initialised), plus the input (through a 1x1 convolution when channels change). */
static int resblock(stochflow__unet *u, int x, size_t co, int temb_act) {
    size_t ci = u->counting ? 0 : T(u, x)->c;
    int a = unary(u, OP_SILU, groupnorm(u, x));
    a = conv(u, a, co, 3, 1, 0);
    int p = dense(u, temb_act, 4 * u->cfg.base, co);
    a = binary(u, OP_ADDCH, a, p);
    a = unary(u, OP_SILU, groupnorm(u, a));
    a = conv(u, a, co, 3, 1, 1);
    int s = (u->counting || ci != co) ? conv(u, x, co, 1, 1, 0) : x;
    return binary(u, OP_ADD, s, a);
}

/* One pass over the architecture (counting or filling). In the counting pass shapes
 * are unknown, so every block reserves the larger variant (the 1x1 skip). */
static void compile(stochflow__unet *u) {
    const stochflow__unet_cfg *c = &u->cfg;
    u->n_t = u->n_ops = u->per_image = u->n_params = 0;
    u->overflow = u->bad_groups = 0;
    int x = new_tensor(u, c->channels, c->height, c->width); /* tensor 0: the input */
    size_t B = c->base;
    int te = new_tensor(u, B, 1, 1);
    op *o = new_op(u, OP_TEMB);
    o->out = te;
    te = unary(u, OP_SILU, dense(u, te, B, 4 * B));
    if (u->n_cond) {
        /* conditioning: a linear map of [context, null flag, label embedding] added to
         * the time embedding, which feeds every residual block (doc/conditional.md) */
        int cv = new_tensor(u, u->n_cond, 1, 1);
        int lab = new_tensor(u, 1, 1, 1);
        op *oc = new_op(u, OP_COND);
        oc->out = cv;
        oc->aux = lab;
        te = binary(u, OP_ADD, te, dense(u, cv, u->n_cond, 4 * B));
    }
    int temb_act = unary(u, OP_SILU, dense(u, te, 4 * B, 4 * B));

    int skips[STOCHFLOW_UNET_MAX_LEVELS * 9 + 2];
    size_t ns = 0;
    int h = conv(u, x, B, 3, 1, 0);
    skips[ns++] = h;
    const size_t L = c->n_levels;
    for (size_t l = 0; l < L; ++l) {
        int attn = (c->attn_mask >> l) & 1u;
        for (size_t b = 0; b < c->blocks; ++b) {
            h = resblock(u, h, B * c->mult[l], temb_act);
            if (attn) h = attention(u, h);
            skips[ns++] = h;
        }
        if (l + 1 < L) {
            h = conv(u, h, B * c->mult[l], 3, 2, 0);
            skips[ns++] = h;
        }
    }
    h = resblock(u, h, B * c->mult[L - 1], temb_act);
    if ((c->attn_mask >> (L - 1)) & 1u) h = attention(u, h);
    h = resblock(u, h, B * c->mult[L - 1], temb_act);
    for (size_t l = L; l-- > 0;) {
        int attn = (c->attn_mask >> l) & 1u;
        for (size_t b = 0; b <= c->blocks; ++b) {
            h = binary(u, OP_CAT, h, skips[--ns]);
            h = resblock(u, h, B * c->mult[l], temb_act);
            if (attn) h = attention(u, h);
        }
        if (l > 0) {
            h = unary(u, OP_UP, h);
            h = conv(u, h, B * c->mult[l], 3, 1, 0);
        }
    }
    h = unary(u, OP_SILU, groupnorm(u, h));
    u->out = conv(u, h, c->channels, 3, 1, 1);
    /* the label embedding [(n_classes + 1) x n_emb] ends the block */
    u->emb_off = u->n_params;
    u->n_params = ck_add(u, u->n_params,
                         ck_mul(u, c->n_classes + 1, stochflow__cond_emb_width(c->n_classes)));
}

int stochflow__unet_validate(const stochflow__unet_cfg *c, size_t dim) {
    RETURN_ERROR_IF(c->channels < 1 || c->channels > 64, STOCHFLOW_E_INVALID,
                    "U-Net: %zu image channels, expected 1..64", c->channels);
    RETURN_ERROR_IF(c->height < 1 || c->width < 1 || c->height > 4096 || c->width > 4096,
                    STOCHFLOW_E_INVALID, "U-Net: image size %zu x %zu out of range",
                    c->height, c->width);
    RETURN_ERROR_IF(c->channels * c->height * c->width != dim, STOCHFLOW_E_INVALID,
                    "U-Net: %zu x %zu x %zu images have %zu values, the dimension is %zu",
                    c->channels, c->height, c->width, c->channels * c->height * c->width, dim);
    RETURN_ERROR_IF(c->n_levels < 1 || c->n_levels > STOCHFLOW_UNET_MAX_LEVELS,
                    STOCHFLOW_E_INVALID, "U-Net: %zu levels, expected 1..%d", c->n_levels,
                    STOCHFLOW_UNET_MAX_LEVELS);
    size_t div = (size_t)1 << (c->n_levels - 1);
    RETURN_ERROR_IF(c->height % div || c->width % div, STOCHFLOW_E_INVALID,
                    "U-Net: %zu levels need height and width divisible by %zu (got %zu x %zu)",
                    c->n_levels, div, c->height, c->width);
    RETURN_ERROR_IF(c->base < 2 || c->base > 1024 || c->base % 2, STOCHFLOW_E_INVALID,
                    "U-Net: base width %zu, expected an even number in 2..1024", c->base);
    RETURN_ERROR_IF(c->blocks < 1 || c->blocks > 8, STOCHFLOW_E_INVALID,
                    "U-Net: %zu blocks per level, expected 1..8", c->blocks);
    RETURN_ERROR_IF(c->groups < 1 || c->groups > c->base, STOCHFLOW_E_INVALID,
                    "U-Net: %zu GroupNorm groups, expected 1..base width %zu", c->groups,
                    c->base);
    /* groups | base is all GroupNorm needs: every normalized tensor has base * m
     * channels or (up path) the concatenation of two such tensors, base * (m1 + m2), with
     * m, m1, m2 in {1, mult[0..L-1]} (convolutions output base or base * mult[l] channels,
     * additions keep channels, and neither the input image nor the output is
     * normalized). The per-level check below is therefore implied; it stays for the
     * message. compile() re-checks every GroupNorm (bad_groups). */
    RETURN_ERROR_IF(c->base % c->groups, STOCHFLOW_E_INVALID,
                    "U-Net: %zu groups do not divide the base width %zu", c->groups, c->base);
    for (size_t l = 0; l < c->n_levels; ++l) {
        RETURN_ERROR_IF(c->mult[l] < 1 || c->mult[l] > 16, STOCHFLOW_E_INVALID,
                        "U-Net: multiplier %zu of level %zu, expected 1..16", c->mult[l], l);
        RETURN_ERROR_IF((c->base * c->mult[l]) % c->groups, STOCHFLOW_E_INVALID,
                        "U-Net: %zu groups do not divide the %zu channels of level %zu",
                        c->groups, c->base * c->mult[l], l);
    }
    RETURN_ERROR_IF(c->attn_mask >> c->n_levels, STOCHFLOW_E_INVALID,
                    "U-Net: attention mask 0x%x names levels beyond %zu", c->attn_mask,
                    c->n_levels);
    /* Attention keeps L^2 probabilities per image and block: at most 64x64 positions
     * (2^24 floats, 64 MiB). Without a bound a 14 KB checkpoint (1x256x256, base 2, one
     * level, attention) asked 86 GB of workspace per image of the first velocity call. */
    for (size_t l = 0; l < c->n_levels; ++l) {
        size_t L = (c->height >> l) * (c->width >> l);
        RETURN_ERROR_IF((c->attn_mask >> l) & 1u && L > STOCHFLOW__UNET_MAX_ATTN,
                        STOCHFLOW_E_INVALID,
                        "U-Net: attention at level %zu would span %zu x %zu = %zu positions, "
                        "at most %d (attention at a lower resolution, or more levels)",
                        l, c->height >> l, c->width >> l, L, STOCHFLOW__UNET_MAX_ATTN);
    }
    return 0;
}

int stochflow__unet_build(stochflow__unet **out, size_t *n_params, const stochflow__unet_cfg *c) {
    *out = NULL;
    stochflow__unet *u = stochflow__calloc(1, sizeof *u);
    RETURN_ERROR_IF(u == NULL, STOCHFLOW_E_NOMEM, "U-Net: out of memory");
    u->cfg = *c;
    u->n_cond = stochflow__cond_width(c->n_ctx, c->n_classes);
    u->counting = 1;
    compile(u);
    u->cap_t = u->n_t;
    u->cap_ops = u->n_ops;
    u->t = stochflow__alloc_array(u->cap_t, sizeof *u->t);
    u->ops = stochflow__alloc_array(u->cap_ops, sizeof *u->ops);
    if (u->t == NULL || u->ops == NULL) {
        stochflow__unet_free(u);
        return stochflow__error(STOCHFLOW_E_NOMEM, "U-Net: out of memory");
    }
    u->counting = 0;
    compile(u);
    if (u->overflow || u->bad_groups) {
        int groups = u->bad_groups;
        stochflow__unet_free(u);
        return groups ? stochflow__error(STOCHFLOW_E_INVALID,
                                         "U-Net: %zu GroupNorm groups do not divide the channels "
                                         "of a normalized tensor", c->groups)
                      : stochflow__error(STOCHFLOW_E_INVALID,
                                         "U-Net: the network's sizes overflow");
    }
    *n_params = u->n_params;
    *out = u;
    return 0;
}

void stochflow__unet_free(stochflow__unet *u) {
    if (u == NULL) return;
    stochflow__free(u->t);
    stochflow__free(u->ops);
    stochflow__free(u);
}

/* Weights of operation i: rows from (seed, INIT stream, step = i, row = output unit),
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as PyTorch's Conv2d/Linear defaults; convolutions
 * ending a residual branch and the output convolution start at zero (DDPM); GroupNorm
 * starts as gamma = 1, beta = 0. */
void stochflow__unet_init(const stochflow__unet *u, float *p, uint64_t seed) {
    for (size_t i = 0; i < u->n_ops; ++i) {
        const op *o = &u->ops[i];
        size_t fin, fout;
        if (o->kind == OP_CONV) {
            fin = T(u, o->in0)->c * o->k * o->k;
            fout = T(u, o->out)->c;
        } else if (o->kind == OP_DENSE) {
            fin = o->fin;
            fout = o->fout;
        } else if (o->kind == OP_GN) {
            size_t c = T(u, o->in0)->c;
            for (size_t j = 0; j < c; ++j) {
                p[o->w_off + j] = 1.0f;
                p[o->b_off + j] = 0.0f;
            }
            continue;
        } else {
            continue;
        }
        double bound = 1.0 / sqrt((double)fin);
        for (size_t j = 0; j < fout; ++j) {
            stochflow__rng r;
            stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_INIT, i, j);
            for (size_t k = 0; k < fin; ++k)
                p[o->w_off + j * fin + k] =
                    o->zero_init ? 0.0f : (float)((2.0 * stochflow__rng_uniform(&r) - 1.0) * bound);
            p[o->b_off + j] =
                o->zero_init ? 0.0f : (float)((2.0 * stochflow__rng_uniform(&r) - 1.0) * bound);
        }
    }
    /* label embedding: standard normal, row j from (seed, INIT, step = n_ops, row j) */
    const size_t n_emb = stochflow__cond_emb_width(u->cfg.n_classes);
    for (size_t j = 0; n_emb && j <= u->cfg.n_classes; ++j) {
        stochflow__rng r;
        stochflow__rng_init(&r, seed, STOCHFLOW__STREAM_INIT, u->n_ops, j);
        for (size_t k = 0; k < n_emb; ++k)
            p[u->emb_off + j * n_emb + k] = (float)stochflow__rng_normal(&r);
    }
}

/* ---- execution -------------------------------------------------------------------- */

static stochflow__conv_shape conv_shape(const stochflow__unet *u, const op *o, size_t n) {
    const tensor *x = T(u, o->in0);
    return (stochflow__conv_shape){n, x->c, x->h, x->w, T(u, o->out)->c, o->k, o->stride};
}

/* Scratch floats: convolution im2col, attention, and two tensors' worth for SiLU. */
static int scratch_floats(size_t *out, const stochflow__unet *u, size_t n, int nt) {
    size_t s = 0;
    for (size_t i = 0; i < u->n_ops; ++i) {
        const op *o = &u->ops[i];
        size_t need = 0;
        if (o->kind == OP_CONV) {
            stochflow__conv_shape sh = conv_shape(u, o, n);
            need = stochflow__conv_scratch(&sh);
        } else if (o->kind == OP_ATTN) {
            const tensor *q = T(u, o->in0);
            need = stochflow__attention_scratch(n, q->c, q->h * q->w, nt);
        } else if (o->kind == OP_SILU) {
            if (stochflow__mul_size(&need, T(u, o->out)->size, 2 * n) != 0) return -1;
        }
        if (need > s) s = need;
    }
    *out = s;
    return 0;
}

int stochflow__unet_ws_floats(size_t *out, const stochflow__unet *u, size_t n, int backward,
                              int nthreads) {
    size_t arena, scratch;
    if (stochflow__mul_size(&arena, u->per_image, n) != 0) return -1;
    if (scratch_floats(&scratch, u, n, nthreads) != 0) return -1;
    size_t total = arena + scratch;
    if (total < arena) return -1;
    if (backward) {
        if (total + arena < total) return -1;
        total += arena;
    }
    *out = total;
    return 0;
}


/* ws layout: [forward arena | scratch | gradient arena] */
static float *fwd_of(const stochflow__unet *u, float *ws, size_t n, int id) {
    return ws + n * T(u, id)->off;
}

static void temb_features(float *out, const float *t, size_t n, size_t base) {
    size_t half = base / 2;
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < half; ++j) {
            double f = exp(-log(10000.0) * (double)j / (double)half);
            double a = 1000.0 * (double)t[i] * f;
            out[i * base + j] = (float)sin(a);
            out[i * base + half + j] = (float)cos(a);
        }
}

const float *stochflow__unet_forward(const stochflow__unet *u, const float *p, const float *x,
                                     const float *t, const stochflow__cond *cond, size_t n,
                                     float *ws, int nt) {
    size_t scratch_at = n * u->per_image;
    float *scratch = ws + scratch_at;
    float *x_in = fwd_of(u, ws, n, 0);
    if (x != x_in) memcpy(x_in, x, n * T(u, 0)->size * sizeof *x);
    for (size_t i = 0; i < u->n_ops; ++i) {
        const op *o = &u->ops[i];
        float *y = fwd_of(u, ws, n, o->out);
        const float *a = o->in0 >= 0 ? fwd_of(u, ws, n, o->in0) : NULL;
        const float *b = o->in1 >= 0 ? fwd_of(u, ws, n, o->in1) : NULL;
        const tensor *ty = T(u, o->out);
        switch (o->kind) {
        case OP_TEMB:
            temb_features(y, t, n, ty->c);
            break;
        case OP_COND:
            stochflow__cond_fill(y, u->n_cond, fwd_of(u, ws, n, o->aux), p + u->emb_off,
                                 u->cfg.n_ctx, u->cfg.n_classes, cond, n);
            break;
        case OP_DENSE:
            stochflow__dense_forward(y, a, p + o->w_off, p + o->b_off, n, o->fin, o->fout, nt);
            break;
        case OP_SILU:
            stochflow__act_forward(y, NULL, a, n * ty->size, STOCHFLOW_ACT_SILU, nt);
            break;
        case OP_CONV: {
            stochflow__conv_shape sh = conv_shape(u, o, n);
            stochflow__conv_forward(y, a, p + o->w_off, p + o->b_off, &sh, scratch, nt);
            break;
        }
        case OP_GN: {
            float *aux = fwd_of(u, ws, n, o->aux);
            stochflow__groupnorm_forward(y, aux, aux + n * o->groups, a, p + o->w_off,
                                         p + o->b_off, n, ty->c, ty->h * ty->w, o->groups, nt);
            break;
        }
        case OP_ADDCH: {
            size_t hw = ty->h * ty->w;
            for (size_t r = 0; r < n * ty->c; ++r) {
                float add = b[r];
                const float *ar = a + r * hw;
                float *yr = y + r * hw;
                for (size_t q = 0; q < hw; ++q) yr[q] = ar[q] + add;
            }
            break;
        }
        case OP_ADD:
            for (size_t q = 0; q < n * ty->size; ++q) y[q] = a[q] + b[q];
            break;
        case OP_CAT: {
            size_t sa = T(u, o->in0)->size, sb = T(u, o->in1)->size;
            for (size_t r = 0; r < n; ++r) {
                memcpy(y + r * ty->size, a + r * sa, sa * sizeof *y);
                memcpy(y + r * ty->size + sa, b + r * sb, sb * sizeof *y);
            }
            break;
        }
        case OP_UP: {
            const tensor *tx = T(u, o->in0);
            stochflow__upsample2_forward(y, a, n, tx->c, tx->h, tx->w, nt);
            break;
        }
        case OP_ATTN: {
            const tensor *tq = T(u, o->in0);
            stochflow__attention_forward(y, fwd_of(u, ws, n, o->aux), a, b,
                                         fwd_of(u, ws, n, o->in2), n, tq->c, tq->h * tq->w, nt);
            break;
        }
        }
    }
    return fwd_of(u, ws, n, u->out);
}

static void add_into(float *dst, const float *src, size_t count) {
    for (size_t q = 0; q < count; ++q) dst[q] += src[q];
}

void stochflow__unet_backward(const stochflow__unet *u, const float *p, const float *dout,
                              size_t n, float *ws, float *grads, float *dx, int nt) {
    float *scratch = ws + n * u->per_image;
    size_t sf = 0;
    (void)scratch_floats(&sf, u, n, nt); /* cannot fail: the caller sized ws with it */
    float *g = scratch + sf;
    memset(g, 0, n * u->per_image * sizeof *g);
    memcpy(g + n * T(u, u->out)->off, dout, n * T(u, u->out)->size * sizeof *g);
#define GRAD(id) (g + n * T(u, (id))->off)
#define FWD(id) fwd_of(u, ws, n, (id))
    for (size_t i = u->n_ops; i-- > 0;) {
        const op *o = &u->ops[i];
        const tensor *ty = T(u, o->out);
        const float *gy = GRAD(o->out);
        /* the input image needs a gradient only for the VJP */
        float *ga = o->in0 >= 0 && (o->in0 != 0 || dx != NULL) ? GRAD(o->in0) : NULL;
        switch (o->kind) {
        case OP_TEMB:
            break;
        case OP_COND: /* the label embedding's gradient (rows in order) */
            if (grads && u->cfg.n_classes)
                stochflow__cond_emb_grad(grads + u->emb_off, gy, u->n_cond, FWD(o->aux),
                                         u->cfg.n_classes, n);
            break;
        case OP_DENSE:
            stochflow__dense_backward(ga, 1, grads ? grads + o->w_off : NULL,
                                      grads ? grads + o->b_off : NULL, gy, FWD(o->in0),
                                      p + o->w_off, n, o->fin, o->fout, nt);
            break;
        case OP_SILU: {
            size_t cnt = n * ty->size;
            float *yb = scratch, *d = scratch + cnt;
            stochflow__act_forward(yb, d, FWD(o->in0), cnt, STOCHFLOW_ACT_SILU, nt);
            for (size_t q = 0; q < cnt; ++q) ga[q] += gy[q] * d[q];
            break;
        }
        case OP_CONV: {
            stochflow__conv_shape sh = conv_shape(u, o, n);
            stochflow__conv_backward(ga, 1, grads ? grads + o->w_off : NULL,
                                     grads ? grads + o->b_off : NULL, gy, FWD(o->in0),
                                     p + o->w_off, &sh, scratch, nt);
            break;
        }
        case OP_GN: {
            const float *aux = FWD(o->aux);
            stochflow__groupnorm_backward(ga, 1, grads ? grads + o->w_off : NULL,
                                          grads ? grads + o->b_off : NULL, gy, FWD(o->in0), aux,
                                          aux + n * o->groups, p + o->w_off, n, ty->c,
                                          ty->h * ty->w, o->groups, nt);
            break;
        }
        case OP_ADDCH: {
            size_t hw = ty->h * ty->w;
            float *gb = GRAD(o->in1);
            add_into(ga, gy, n * ty->size);
            for (size_t r = 0; r < n * ty->c; ++r) {
                double s = 0.0;
                for (size_t q = 0; q < hw; ++q) s += gy[r * hw + q];
                gb[r] += (float)s;
            }
            break;
        }
        case OP_ADD:
            add_into(ga, gy, n * ty->size);
            add_into(GRAD(o->in1), gy, n * ty->size);
            break;
        case OP_CAT: {
            size_t sa = T(u, o->in0)->size, sb = T(u, o->in1)->size;
            float *gb = GRAD(o->in1);
            for (size_t r = 0; r < n; ++r) {
                add_into(ga + r * sa, gy + r * ty->size, sa);
                add_into(gb + r * sb, gy + r * ty->size + sa, sb);
            }
            break;
        }
        case OP_UP: {
            const tensor *tx = T(u, o->in0);
            stochflow__upsample2_backward(ga, 1, gy, n, tx->c, tx->h, tx->w, nt);
            break;
        }
        case OP_ATTN: {
            /* q, k and v feed only this operation: their gradients are written */
            const tensor *tq = T(u, o->in0);
            stochflow__attention_backward(GRAD(o->in0), GRAD(o->in1), GRAD(o->in2), gy,
                                          FWD(o->in0), FWD(o->in1), FWD(o->in2), FWD(o->aux), n,
                                          tq->c, tq->h * tq->w, scratch, nt);
            break;
        }
        }
    }
    if (dx) memcpy(dx, GRAD(0), n * T(u, 0)->size * sizeof *dx);
#undef GRAD
#undef FWD
}

/* ---- the network interface (network.h) --------------------------------------------
 * A block's workspace: the times [rows] (as floats, padded to 16), two image buffers
 * [rows x dim] for the tangents (a cotangent and its VJP), then the U-Net's arenas. The
 * U-Net takes each tangent as one more backward pass over the block (reverse mode:
 * e . J e = (J^T e) . e), and its kernels thread internally. */

static int head_floats(size_t *out, const stochflow__unet *u, size_t rows) {
    size_t img;
    if (stochflow__mul_size(&img, rows, 2 * T(u, 0)->size) != 0 || rows > SIZE_MAX / 2) return -1;
    size_t h = stochflow__pad16(rows);
    if (h > SIZE_MAX - img - 16) return -1;
    *out = stochflow__pad16(h + img);
    return 0;
}

static int net_ws_floats(size_t *out, const void *self, size_t rows, int backward, size_t T,
                         int nthreads) {
    const stochflow__unet *u = self;
    size_t head, uf;
    if (head_floats(&head, u, rows) != 0 ||
        stochflow__unet_ws_floats(&uf, u, rows, backward || T > 0, nthreads) != 0 ||
        uf > SIZE_MAX - head)
        return -1;
    *out = head + uf;
    return 0;
}

/* The budget counts an image's arenas and scratch (forward and backward). */
static size_t net_row_floats(const void *self, int nthreads) {
    size_t f = 0;
    (void)stochflow__unet_ws_floats(&f, self, 1, 1, nthreads);
    return f;
}

static float *arenas(const stochflow__unet *u, float *ws, size_t rows) {
    size_t head = 0;
    (void)head_floats(&head, u, rows); /* cannot fail: ws was sized with it */
    return ws + head;
}

static float *net_input(size_t *stride, const void *self, float *ws, size_t rows) {
    const stochflow__unet *u = self;
    *stride = T(u, 0)->size;
    return fwd_of(u, arenas(u, ws, rows), rows, 0);
}

static const float *net_forward(const void *self, const float *p, float *ws, size_t rows,
                                const double *t_rows, double t_all, const stochflow__cond *cond,
                                int want_deriv, int nt) {
    (void)want_deriv; /* the forward arena always keeps every tensor */
    const stochflow__unet *u = self;
    float *tv = ws, *uws = arenas(u, ws, rows);
    for (size_t i = 0; i < rows; ++i) tv[i] = (float)(t_rows ? t_rows[i] : t_all);
    return stochflow__unet_forward(u, p, fwd_of(u, uws, rows, 0), tv, cond, rows, uws, nt);
}

static void net_backward(const void *self, const float *p, float *ws, size_t rows,
                         const float *dout, float *grads, float *dx, int nt) {
    const stochflow__unet *u = self;
    stochflow__unet_backward(u, p, dout, rows, arenas(u, ws, rows), grads, dx, nt);
}

static void net_tangents(const void *self, const float *p, float *ws, size_t rows,
                         const float *probes, size_t K, float *quad, int nt) {
    const stochflow__unet *u = self;
    const size_t d = T(u, 0)->size;
    float *cb = ws + stochflow__pad16(rows), *dx = cb + rows * d, *uws = arenas(u, ws, rows);
    if (probes == NULL) {
        /* the diagonal: one backward pass per unit cotangent e_j */
        memset(cb, 0, rows * d * sizeof *cb);
        for (size_t j = 0; j < d; ++j) {
            for (size_t i = 0; i < rows; ++i) cb[i * d + j] = 1.0f;
            stochflow__unet_backward(u, p, cb, rows, uws, NULL, dx, nt);
            for (size_t i = 0; i < rows; ++i) {
                quad[i * d + j] = dx[i * d + j];
                cb[i * d + j] = 0.0f;
            }
        }
        return;
    }
    for (size_t k = 0; k < K; ++k) {
        for (size_t i = 0; i < rows; ++i)
            memcpy(cb + i * d, probes + (i * K + k) * d, d * sizeof *cb);
        stochflow__unet_backward(u, p, cb, rows, uws, NULL, dx, nt);
        for (size_t i = 0; i < rows; ++i) {
            double acc = 0.0;
            for (size_t j = 0; j < d; ++j) acc += (double)cb[i * d + j] * dx[i * d + j];
            quad[i * K + k] = (float)acc;
        }
    }
}

static void net_destroy(void *self) { stochflow__unet_free(self); }

static void net_init(const void *self, float *p, uint64_t seed) {
    stochflow__unet_init(self, p, seed);
}

static const stochflow__network_ops unet_ops = {
    .name = "unet",
    .tangents_as_rows = 0,
    .row_parallel = 0,
    .max_block_rows = 64, /* an image's workspace is large: blocks of at most 64 */
    .row_floats = net_row_floats,
    .destroy = net_destroy,
    .init = net_init,
    .ws_floats = net_ws_floats,
    .input = net_input,
    .forward = net_forward,
    .backward = net_backward,
    .tangents = net_tangents,
};

int stochflow__unet_network(stochflow__network *out, const stochflow_config *cfg) {
    stochflow__unet *u = NULL;
    size_t np = 0;
    stochflow__unet_cfg uc = cfg->unet;
    uc.n_ctx = cfg->n_ctx;
    uc.n_classes = cfg->n_classes;
    FORWARD_IF_ERROR(stochflow__unet_build(&u, &np, &uc));
    *out = (stochflow__network){&unet_ops, u, cfg->dim, np};
    return 0;
}
