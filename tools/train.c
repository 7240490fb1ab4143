/* train.c - `stochflow train`: trains a flow on 2-D/tabular data (a toy or a .npy/.csv
 * file; an MLP velocity field) or on images (a U-Net), opening the data once and
 * branching on its kind. Both kinds share the checks made before any work, the training
 * loop (training.c), periodic checkpoints and the final report. See doc/cli.md. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "context.h"
#include "images.h"
#include "mpi_driver.h"
#include "training.h"
#include "validate.h"

/* A new model on a built-in toy, unless --steps / --hidden / --lr / --train-target say
 * otherwise (doc/cli.md): a narrow network trained for many steps on the batch-posterior
 * target, which at equal CPU time beats 3 x 256 on the 2-D toys, and at equal steps the
 * plain target; in about 355 CPU seconds (180 s on 2 cores) it brought the checkerboard to
 * 0.029 nats of its density (one seed; the plain target: 0.040-0.048 over three seeds in
 * 230000 steps, 320 CPU s, 256 s on 2 cores; bench/RECIPE.md). */
#define TOY_STEPS 120000
#define TOY_HIDDEN "128,128,128,128"
#define TOY_LR 3e-3

/* Defaults of a fresh image model (doc/cli.md): the recipe's cosine to 0 over the run
 * from a peak of IMG_LR, its first IMG_WARMUP steps scaled by a linear warm-up, with the
 * gradient norm clipped at IMG_CLIP. On Fashion-MNIST (U-Net of 1.1 M parameters, 900
 * steps of 64 images) this gave 3.59 bits/dim against 3.87-3.89 for the former constant
 * 2e-4 over two seeds (bench/RECIPE.md). */
#define IMG_BATCH 64
#define IMG_LR 1e-3
#define IMG_WARMUP 50
#define IMG_CLIP 1.0

static const optdef TRAIN_OPTS[] = {
    {"--data", "SRC", "toy, .npy/.csv file (n x d), or images: fashion-mnist, idx:P, pngdir:P"},
    {"--out", "MODEL", "checkpoint to write (default DIR/model.sfm with --outdir)"},
    {"--steps", "N", "optimizer steps to run (default 1000; a new toy model 120000; a table 30000 with early stopping; with --resume: more steps)"},
    {"--batch", "B", "batch size (default 256; images 64)"},
    {"--hidden", "W,W,...", "hidden widths (default 256,256,256; a new toy model 128,128,128,128)"},
    {"--resmlp", "W,B[,K]", "residual MLP of width W with B pre-norm blocks instead of --hidden, "
                            "and K gated linear experts on its output (e.g. 256,2 or 256,3,8)"},
    {"--activation", "NAME", "silu|tanh|relu|softplus (default silu)"},
    {"--interpolant", "NAME", "trig|linear|fourier:M[:trig] (default trig; fourier: learned)"},
    {"--objective", "NAME", "velocity|drift|score|denoiser: the field learned (default velocity)"},
    {"--gamma", "KIND[:C]", "zero|brownian[:C]|quadratic|sin2 latent noise (default brownian "
                            "for drift/score/denoiser, zero for velocity)"},
    {"--antithetic", NULL, "antithetic pairs of the latent noise (2 x batch network rows)"},
    {"--time-fourier", "F", "time features (t, sin/cos(k pi t), k=1..F); 0 = raw t"},
    {"--coupling", "NAME", "independent|ot|sinkhorn pairing of x0 and x1 (default independent)"},
    {"--interp-lr", "X", "ascent rate of the fourier coefficients (default 1e-3)"},
    {"--base", "SRC", "base samples x0 (toy or file) instead of N(0, I): data-to-data"},
    {"--train-target", "NAME", "draw|batch: regress on each row's own dI/dt, or on its posterior "
                               "mean over the batch (lower variance; default draw, a new toy "
                               "model batch)"},
    {"--transport-png", "PICTURE", "draw trajectories from base to target (first 2 coords)"},
    {"--lr", "X", "Adam (peak) learning rate (default 2e-3; new toy models 3e-3; new image models 1e-3)"},
    {"--lr-schedule", "NAME", "constant|step|cosine (cosine spans --steps or --time; default "
                              "cosine to 0)"},
    {"--lr-decay-every", "N", "step schedule period"},
    {"--lr-decay-factor", "X", "step schedule factor"},
    {"--lr-min", "X", "cosine floor"},
    {"--warmup", "N", "linear warm-up steps (new image models 50)"},
    {"--ema", "X", "EMA decay of the weights (0 = off; default off, a new table model 0.999 with warm-up)"},
    {"--ema-warmup", NULL, "EMA decay min(X, (1+s)/(10+s)) at step s (on with --ema for images)"},
    {"--clip", "X", "gradient norm clip (0 = off; new image models 1)"},
    {"--weight-decay", "X", "decoupled weight decay"},
    {"--seed", "S", "seed of every random draw (default 0)"},
    {"--threads", "T", "threads for matrix work (default: CPUs, at most 8)"},
    {"--resume", "MODEL", "continue training from a checkpoint"},
    {"--outdir", "DIR", "periodic files: checkpoints, sample grids (default: --out's directory)"},
    {"--checkpoint-every", "N", "save DIR/checkpoint.sfm every N model steps (atomic)"},
    {"--unet-base", "B", "images: U-Net base channels (default 32)"},
    {"--unet-mult", "M,M,...", "images: channel multiplier per level (default 1,2,2)"},
    {"--unet-blocks", "N", "images: residual blocks per level (default 1)"},
    {"--unet-attn", "L,L,...", "images: levels with attention (default the lowest; none)"},
    {"--unet-groups", "G", "images: GroupNorm groups (default 8)"},
    {"--max-images", "N", "images: use the first N images of --data (default all)"},
    {"--sample-every", "N", "images: write DIR/samples-STEP.png every N steps"},
    {"--grid-n", "N", "images: samples per grid (default 16; with --labels: per class, default 8)"},
    {"--grid-steps", "K", "images: RK4 steps of the grid samples (default 20)"},
    {"--context", "FILE", "conditional model: context rows (.npy/.csv, one per --data row)"},
    {"--context-columns", "LIST", "conditional model: columns of --data (1-based) that are context"},
    {"--labels", "FILE|COLUMN", "conditional model: integer class labels (-1 = none); images: "
                                "'dataset' (the data's own labels) or a .npy/.csv file"},
    {"--ctx-dropout", "X", "conditional model: drop a row's conditioning with probability P"},
    {"--grad-block", "B", "rows per gradient block summed along a fixed tree (needed under mpirun)"},
    {"--mpi-timeout", "S", "under mpirun: longest wait for another process, seconds (default 600)"},
    {"--val", "FILE|FRACTION", "tables: held-out rows (a file, or a fraction of --data; default 0.1, 0: none)"},
    {"--eval-every", "N", "tables: validation NLL every N steps (default ~100 per run)"},
    {"--patience", "N", "tables: stop after N evaluations without improvement (default 50)"},
    {"--time", "X", "tables, images: wall-clock budget in seconds (the LR schedule spans it)"},
    {"--standardize", "MODE", "tables: diag (per column, default), whiten (full covariance) or none"},
    {"--no-standardize", NULL, "tables: train in the data's units (= --standardize none)"},
    {"--val-block", "R", "tables: rows per validation solve (default 256; the solves are split "
                         "across processes under mpirun)"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

/* ---- batches ---------------------------------------------------------------------------- */

/* Images: B images uniformly with replacement (indices keyed by (seed, INDEX_STREAM +
 * step)), dequantized with fresh noise (stream = step). */
typedef struct {
    const imageset *im;
    size_t b;
    uint64_t seed;
    float *x;
    double *u; /* row indices */
    uint8_t *pb;
    const int32_t *labels; /* im->n class labels, or NULL; the batch's in lb */
    int32_t *lb;
} images_batch;

static int fill_images(void *user, const float **x, const float **x0, uint64_t step) {
    images_batch *p = user;
    const imageset *im = p->im;
    size_t d = im->d;
    int rc;
    if (step >= (uint64_t)IMG_INDEX_STREAM - 16)
        return cli_fail("train: model step %llu exceeds the image streams' range",
                        (unsigned long long)step);
    if ((rc = stochflow_random_uniform(p->u, p->b, p->seed, IMG_INDEX_STREAM + step)) < 0)
        return cli_fail_lib(rc, "minibatch indices");
    for (size_t i = 0; i < p->b; ++i) {
        size_t r = uniform_to_index(p->u[i], im->n);
        memcpy(p->pb + i * d, im->px + r * d, d);
        if (p->labels) p->lb[i] = p->labels[r];
    }
    if ((rc = stochflow_images_dequantize(p->x, p->pb, p->b * d, p->seed, step)) < 0)
        return cli_fail_lib(rc, "dequantization");
    *x = p->x;
    *x0 = NULL;
    return 0;
}

/* Image sample grids every --sample-every model steps; a class-conditional model's grid
 * has one row of n images per class (labels: n_classes x n, row-major). */
typedef struct {
    uint64_t every, n, steps, seed, written;
    const char *dir;
    unet_shape u;
    size_t n_classes;
    int32_t *labels;
    char last[4200];
} grid_hook;

static int write_grids(void *user, stochflow_model *m, uint64_t step, char *fail, size_t cap) {
    grid_hook *g = user;
    if (g->every == 0 || step % g->every != 0) return 0;
    char path[sizeof g->last];
    const char *what = "";
    snprintf(path, sizeof path, "%s/samples-%07llu.png", g->dir, (unsigned long long)step);
    size_t rows = g->n_classes ? g->n_classes : 1;
    int rc = grid_write(path, m, &g->u, rows * (size_t)g->n, g->labels, g->steps, g->seed,
                        g->n_classes ? (size_t)g->n : 0, &what);
    if (rc == STOCHFLOW_E_CANCELLED && stop_requested) return 1; /* as a signal between steps */
    if (rc < 0) {
        snprintf(fail, cap, "%s: %s (%s)", what, stochflow_last_error_message(),
                 stochflow_status_string(rc));
        return CLI_ERR;
    }
    snprintf(g->last, sizeof g->last, "%s", path);
    ++g->written;
    return 0;
}

/* ---- the command -------------------------------------------------------------------------- */

/* Whether the library takes the batch-posterior target for m (lib/target.c): the plain
 * velocity of an unconditional model, a non-Fourier interpolant, the independent
 * coupling, no gradient blocks. A new toy model gets it unless one of these says no. */
static int batch_target_applies(const stochflow_model *m) {
    stochflow_config *c = NULL;
    int field = 0, kind = 0, gamma = 0, flags = 0, ok = 0;
    double coupling = 0, block = 0;
    size_t n_ctx = 0, n_classes = 0;
    if (stochflow_model_config(&c, m) == 0 &&
        stochflow_config_objective(&field, &kind, &gamma, NULL, &flags, c) == 0 &&
        stochflow_model_get_param(&coupling, m, STOCHFLOW_PARAM_COUPLING) == 0 &&
        stochflow_model_get_param(&block, m, STOCHFLOW_PARAM_GRAD_BLOCK) == 0) {
        stochflow_model_context(&n_ctx, &n_classes, m);
        ok = field == STOCHFLOW_FIELD_VELOCITY && kind == STOCHFLOW_SI_TWO_SIDED &&
             gamma == STOCHFLOW_GAMMA_ZERO && flags == 0 &&
             stochflow_config_interpolant(c) != STOCHFLOW_INTERP_FOURIER &&
             (int)coupling == STOCHFLOW_COUPLING_INDEPENDENT && block == 0 && !n_ctx &&
             !n_classes;
    }
    stochflow_config_free(c);
    return ok;
}

/* Options that only one kind of data takes. */
static const char *const MLP_ONLY[] = {"--hidden", "--resmlp", "--activation",
                                       "--time-fourier", "--base", "--transport-png",
                                       "--context", "--context-columns", "--objective",
                                       "--gamma", "--antithetic"};
static const char *const MLP_ARCH[] = {"--hidden",    "--resmlp", "--activation",
                                       "--interpolant", "--time-fourier", "--seed",
                                       "--objective", "--gamma", "--antithetic"};
static const char *const UNET_ARCH[] = {"--unet-base", "--unet-mult",   "--unet-blocks",
                                        "--unet-attn", "--unet-groups", "--interpolant",
                                        "--seed"};

/* Every option value, checked before anything is read or created (usage errors, 2). */
static int check_options(const opts *o, int img, int toy, uint64_t *steps, uint64_t *batch,
                         uint64_t *ck_every, unet_opts *uo, grid_hook *g, uint64_t *maxim) {
    const char *resume = opt(o, "--resume");
    uint64_t v;
    int rc;
    if (img && (rc = refuse(o, MLP_ONLY, sizeof MLP_ONLY / sizeof MLP_ONLY[0],
                            "does not apply to image data (the U-Net has --unet-* options)")) != 0)
        return rc;
    if (!img && (rc = images_reject_options(o)) != 0) return rc;
    if (!opt(o, "--out") && !opt(o, "--outdir"))
        return cli_usage("train: --out is required (--out MODEL, or --outdir DIR for "
                         "DIR/model.sfm)");
    if (resume && (rc = refuse(o, img ? UNET_ARCH : MLP_ARCH,
                               img ? sizeof UNET_ARCH / sizeof *UNET_ARCH
                                   : sizeof MLP_ARCH / sizeof *MLP_ARCH,
                               "cannot change when resuming (it is in the checkpoint)")) != 0)
        return rc;
    if ((rc = get_u64(o, "--steps", toy ? TOY_STEPS : 1000, 0, 1000000000, steps)) != 0 ||
        (rc = get_u64(o, "--batch", img ? IMG_BATCH : RECIPE_BATCH, 1, img ? 1 << 16 : 1 << 22, batch)) ||
        (rc = get_u64(o, "--checkpoint-every", 0, 0, 1000000000, ck_every)) != 0 ||
        (rc = get_u64(o, "--threads", 1, 1, 256, &v)) != 0 || (rc = check_train_params(o)) != 0)
        return rc;
    double tmo;
    if ((rc = get_double(o, "--mpi-timeout", 600, 1, 1e6, &tmo)) != 0) return rc;
    if (img && opt(o, "--ctx-dropout") && !opt(o, "--labels"))
        return cli_usage("train: --ctx-dropout needs --labels (a class-conditional image model)");
    if (img && ((rc = get_u64(o, "--max-images", 0, 0, 1u << 30, maxim)) != 0 ||
                (rc = get_u64(o, "--sample-every", 0, 0, 1000000000, &g->every)) != 0 ||
                (rc = get_u64(o, "--grid-n", opt(o, "--labels") ? 8 : 16, 1, 1024, &g->n)) != 0 ||
                (rc = get_u64(o, "--grid-steps", 20, 1, 100000, &g->steps)) != 0))
        return rc;
    if (!resume) return img ? unet_parse(uo, o) : check_mlp_options(o);
    return 0;
}

/* --outdir, or the directory of --out. */
static void periodic_dir(char *dir, size_t cap, const opts *o) {
    snprintf(dir, cap, "%s", opt(o, "--outdir") ? opt(o, "--outdir") : opt(o, "--out"));
    if (opt(o, "--outdir")) return;
    char *slash = strrchr(dir, '/');
    if (slash == NULL) snprintf(dir, cap, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
}

static void report(const opts *o, const char *out, stochflow_model *m, const train_result *tr,
                   uint64_t step0, uint64_t batch, int table, json *j) {
    double sps = tr->seconds > 0 ? (double)tr->steps_run / tr->seconds : 0;
    size_t k = tr->steps_run < 100 ? (size_t)tr->steps_run : 100;
    printf("trained %llu steps (model step %llu -> %llu) on %s in %.2f s (%.2f steps/s)\n",
           (unsigned long long)tr->steps_run, (unsigned long long)step0,
           (unsigned long long)stochflow_model_step(m), opt(o, "--data"), tr->seconds, sps);
    /* a table's summary is its held-out NLL (table_report), not a training loss */
    if (!table)
        printf("loss %.5f (mean of the last %zu steps; last %.5f)\n", tr->mean_loss, k,
               tr->last_loss);
    if (!opt(o, "--json")) return;
    jbegin(j);
    jint(j, "steps", tr->steps_run);
    jint(j, "model_step", stochflow_model_step(m));
    jnum(j, "loss", tr->mean_loss);
    jnum(j, "last_loss", tr->last_loss);
    jnum(j, "seconds", tr->seconds);
    jnum(j, "steps_per_second", sps);
    jint(j, "batch", batch);
    jint(j, "params", stochflow_model_num_params(m));
    jstr(j, "data", opt(o, "--data"));
    jstr(j, "model", out);
    jint(j, "checkpoints", tr->checkpoints);
}

/* Under mpirun: whether every process got as far as agreeing on its setup (after that,
 * failures are agreed step by step), and the timeout of that agreement. */
static int setup_agreed;

static int train_main(int argc, char **argv) {
    opts o;
    catch_signals();
    int rc = cli_parse(&o, "train", "--data SRC --out MODEL [options]", TRAIN_OPTS,
                       sizeof TRAIN_OPTS / sizeof TRAIN_OPTS[0], argc, argv);
    if (rc != 0) return rc > 0 ? 0 : EXIT_USAGE;
    if ((rc = need(&o, "--data")) != 0) return EXIT_USAGE;
    const char *src = opt(&o, "--data"), *resume = opt(&o, "--resume");
    const char *base_src = opt(&o, "--base"), *tpng = opt(&o, "--transport-png");
    int img = images_source("train", src);
    if (img < 0) return cli_exit_code(img);
    uint64_t steps, batch, ck_every, maxim = 0;
    unet_opts uo;
    grid_hook g = {0};
    /* a new model on a built-in toy (no --base): its own defaults (a resumed one: 1000 steps) */
    const int toy = !img && source_file(src) == NULL && resume == NULL && base_src == NULL;
    if ((rc = check_options(&o, img, toy, &steps, &batch, &ck_every, &uo, &g, &maxim)) != 0)
        return cli_exit_code(rc);
    /* a .npy/.csv table trains through the library's trainer (validate.c), under mpirun
     * too (the trainer's data-parallel callbacks, doc/distributed.md); conditional
     * training (the trainer carries no context) keeps the step loop */
    const int table = !img && source_file(src) != NULL && base_src == NULL &&
                      !opt(&o, "--context") && !opt(&o, "--context-columns") &&
                      !opt(&o, "--labels");
    /* a conditional model on a table: the step loop, with the data and context maps */
    const int cond_table = !img && source_file(src) != NULL && base_src == NULL && !table &&
                           dist_size() == 1;
    table_opts to;
    double img_seconds = 0; /* images: --time, the training loop's budget */
    if (img) {
        opts ot = o; /* the tables' check without --time, which images take too */
        for (size_t k = 0; k < ot.n; ++k)
            if (strcmp(ot.defs[k].name, "--time") == 0) ot.val[k] = NULL;
        if ((rc = table_check_options(&ot, 0, 0, &to)) != 0 ||
            (rc = get_double(&o, "--time", 0, 1e-3, 1e9, &img_seconds)) != 0)
            return cli_exit_code(rc);
        if (img_seconds > 0 && dist_size() > 1) /* each process would stop at its own step */
            return cli_exit_code(cli_usage("train: --time does not apply under mpirun (use "
                                           "--steps)"));
        if (img_seconds > 0 && !opt(&o, "--steps")) steps = 1000000000; /* the time alone */
    } else if ((rc = table_check_options(&o, table, cond_table, &to)) != 0) {
        return cli_exit_code(rc);
    }

    /* output locations, before any work: directories exist, no output is an input */
    char dir[4096], out_default[4200], ck_path[4200];
    if (strlen(opt(&o, "--outdir") ? opt(&o, "--outdir") : opt(&o, "--out")) >= sizeof dir)
        return cli_usage("train: --outdir/--out path too long"), EXIT_USAGE;
    periodic_dir(dir, sizeof dir, &o);
    snprintf(out_default, sizeof out_default, "%s/model.sfm", dir);
    snprintf(ck_path, sizeof ck_path, "%s/checkpoint.sfm", dir);
    const char *out = opt(&o, "--out") ? opt(&o, "--out") : out_default;
    /* (--out may be the --resume checkpoint: it is read whole before anything is written;
     * DIR/checkpoint.sfm too, and its directory is --out's or the created --outdir) */
    const char *inputs[] = {source_file(src), source_file(base_src), to.val_file};
    const int writer = dist_rank() == 0; /* under mpirun only rank 0 writes */
    if (writer && opt(&o, "--outdir") && make_dirs(dir) != 0) return 1;
    if (writer && (check_output("train", out, inputs, 3) != 0 ||
                   (tpng && check_output("train", tpng, inputs, 3) != 0)))
        return 1;

    /* the data, once */
    dataset ds = {0}, base_ds = {0};
    imageset im = {0};
    stochflow_model *m = NULL;
    train_result tr = {0};
    table_result tab = {0};
    points_batch pb = {0};
    cond_data cd = {0};
    images_batch ib = {0};
    /* under mpirun a .npy table is read by rows: each process reads only those it uses */
    dist_table rows = {.fd = -1};
    int by_rows = 0, ret = 1;
    if (img) {
        if (images_open(&im, "train", src, 0, (size_t)maxim) != 0) goto out;
        const char *lab = opt(&o, "--labels");
        if (lab && strcmp(lab, "dataset") == 0 &&
            images_dataset_labels(&cd.labels, &cd.n_classes, &im, "train") != 0)
            goto out;
        if (lab && strcmp(lab, "dataset") != 0 &&
            (rc = cond_read_labels(&cd.labels, &cd.n_classes, "train", lab, im.n)) != 0)
            goto fail;
        if (cd.labels && cd.n_classes < 2) {
            cli_fail("train: --labels %s: %zu class(es) in the labels, a conditional model "
                     "needs at least 2", lab, cd.n_classes);
            goto out;
        }
    } else if (table && dist_size() > 1 && !tpng && (by_rows = dist_table_open(&rows, src)) != 0) {
        if (by_rows < 0) goto out;
        ds.n = rows.n;
        ds.d = rows.d;
        snprintf(ds.name, sizeof ds.name, "%s", src);
    } else {
        if (dataset_open(&ds, src) != 0) goto out;
        if (base_src && dataset_open(&base_ds, base_src) != 0) goto out;
        if (base_src && base_ds.toy) base_ds.d = 2;
        if ((rc = cond_train(&cd, &ds, &o)) != 0) goto fail;
        if (base_src && base_ds.d != ds.d) {
            cli_fail("train: --base has %zu columns but --data has %zu", base_ds.d, ds.d);
            goto out;
        }
    }
    size_t d = img ? im.d : ds.d;

    /* the model: resumed, or new for the data's kind */
    if (resume) {
        if (load_model(&m, resume) != 0) goto out;
        if (img && (unet_model_shape(&g.u, m, "train", resume) != 0 ||
                    unet_check_images(&g.u, &im, "train", resume) != 0))
            goto out;
    } else if (img) {
        if ((rc = unet_build(&m, &o, &uo, &im, cd.n_classes)) != 0 ||
            (rc = unet_model_shape(&g.u, m, "train", "the model")) != 0)
            goto fail;
        if ((rc = apply_recipe(m, steps)) != 0) goto fail;
        if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, IMG_LR)) < 0 ||
            (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_WARMUP, IMG_WARMUP)) < 0 ||
            (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_GRAD_CLIP, IMG_CLIP)) < 0 ||
            /* --ema on a new image model warms up (STOCHFLOW_PARAM_EMA_WARMUP, doc/cli.md) */
            (opt(&o, "--ema") != NULL &&
             (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_WARMUP, 1)) < 0)) {
            cli_fail_lib(rc, "image training defaults");
            goto out;
        }
    } else if ((rc = build_mlp_cond(&m, &o, ds.d, toy ? TOY_HIDDEN : "256,256,256", 0, cd.k,
                                    cd.n_classes)) != 0 ||
               (rc = apply_recipe(m, steps)) != 0 || (table && (rc = table_recipe(m)) != 0)) {
        goto fail;
    } else if (toy && (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, TOY_LR)) < 0) {
        cli_fail_lib(rc, "toy defaults");
        goto out;
    }
    { /* the conditioning of the data matches the model's */
        size_t mk = 0, mc = 0;
        stochflow_model_context(&mk, &mc, m);
        if (mk != cd.k || (cd.labels && cd.n_classes > mc) || (!cd.labels && mc)) {
            cli_fail("train: the data has %zu context column(s) and %s labels but the model "
                     "takes %zu context value(s) and %zu classes", cd.k,
                     cd.labels ? "class" : "no", mk, mc);
            goto out;
        }
        double p;
        if ((rc = get_double(&o, "--ctx-dropout", -1.0, 0.0, 1.0, &p)) != 0) goto fail;
        if (p >= 0.0 && (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_CTX_DROPOUT, p)) < 0) {
            cli_fail_lib(rc, "--ctx-dropout");
            goto out;
        }
    }
    if (stochflow_model_dim(m) != d) {
        cli_fail("train: the data has %zu columns but the model has dimension %zu", d,
                 stochflow_model_dim(m));
        goto out;
    }
    /* a new conditional model: x and its context in their units, as tables (doc/data.md) */
    if (cond_table && !resume && cond_table_standardize(m, &to, ds.x, cd.ctx, ds.n) != 0)
        goto out;
    if ((rc = set_threads(m, &o, default_threads())) != 0 ||
        (rc = apply_train_params(m, &o, !resume, steps)) != 0)
        goto fail;
    if (toy && !opt(&o, "--train-target") && batch_target_applies(m) &&
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_TRAIN_TARGET,
                                        STOCHFLOW_TRAIN_TARGET_BATCH)) < 0) {
        cli_fail_lib(rc, "toy defaults");
        goto out;
    }
    { /* a batch-target model (given now, or resumed) only where its assumptions hold */
        double tt = 0;
        if (stochflow_model_get_param(&tt, m, STOCHFLOW_PARAM_TRAIN_TARGET) == 0 &&
            (int)tt == STOCHFLOW_TRAIN_TARGET_BATCH && (base_src || !batch_target_applies(m))) {
            rc = cli_usage("train: the batch-posterior target (--train-target batch%s) needs "
                           "N(0, I) base draws paired as given, the plain velocity and no "
                           "conditioning or --grad-block; %s",
                           opt(&o, "--train-target") ? "" : ", in the model",
                           base_src ? "it does not apply with --base"
                                    : "give --train-target draw or drop the option that rules "
                                      "it out");
            goto fail;
        }
    }
    stochflow_model_context(NULL, &g.n_classes, m);
    if (img && g.every && grid_fits("train", "use a smaller --grid-n",
                                    (g.n_classes ? g.n_classes : 1) * (size_t)g.n,
                                    g.n_classes ? (size_t)g.n : 0, im.h, im.w) != 0)
        goto out;
    if (img && g.every && g.n_classes) { /* grid row k: class k */
        if ((g.labels = malloc(g.n_classes * (size_t)g.n * sizeof(int32_t))) == NULL) {
            cli_fail("train: out of memory for the grid labels");
            goto out;
        }
        for (size_t i = 0; i < g.n_classes * (size_t)g.n; ++i) g.labels[i] = (int32_t)(i / g.n);
    }

    uint64_t seed = model_seed(m), step0 = stochflow_model_step(m);
    size_t B = (size_t)batch;
    train_spec sp = {.steps = steps, .batch = B, .label = "train",
                     .checkpoint = ck_every ? ck_path : NULL, .checkpoint_every = ck_every,
                     .seconds = img_seconds};
    if (img) {
        ib = (images_batch){.im = &im, .b = B, .seed = seed, .x = malloc(B * d * sizeof(float)),
                            .u = malloc(B * sizeof(double)), .pb = malloc(B * d),
                            .labels = cd.labels,
                            .lb = cd.labels ? malloc(B * sizeof(int32_t)) : NULL};
        sp.labels = ib.lb;
        if (img_seconds > 0) { /* a fresh cosine schedule spans the budget */
            double sched = 0;
            stochflow_model_get_param(&sched, m, STOCHFLOW_PARAM_LR_SCHEDULE);
            sp.time_schedule = !resume && (int)sched == STOCHFLOW_LR_COSINE;
        }
        if (ib.x == NULL || ib.u == NULL || ib.pb == NULL || (cd.labels && ib.lb == NULL)) {
            cli_fail("train: out of memory for a batch of %zu images", B);
            goto out;
        }
        g.dir = dir;
        g.seed = seed + IMG_GRID_SEED_OFFSET;
        sp.fill = fill_images;
        sp.fill_user = &ib;
        sp.hook = write_grids;
        sp.hook_user = &g;
        printf("train: U-Net on %zu images %zux%zux%zu from %s (%zu parameters, batch %zu)\n",
               im.n, im.c, im.h, im.w, src, stochflow_model_num_params(m), B);
        if (cd.labels)
            printf("train: class-conditional on %zu classes (labels: %s)\n", g.n_classes,
                   opt(&o, "--labels"));
        fflush(stdout);
    } else {
        pb = (points_batch){.ds = &ds, .base = base_src ? &base_ds : NULL, .b = B, .seed = seed,
                            .x = malloc(B * d * sizeof(float)), .u = malloc(B * sizeof(double)),
                            .x0 = base_src ? malloc(B * d * sizeof(float)) : NULL,
                            .ctx = cd.ctx, .k = cd.k, .labels = cd.labels,
                            .cb = cd.ctx ? malloc(B * cd.k * sizeof(float)) : NULL,
                            .lb = cd.labels ? malloc(B * sizeof(int32_t)) : NULL};
        sp.ctx = pb.cb;
        sp.labels = pb.lb;
        if (pb.x == NULL || pb.u == NULL || (base_src && pb.x0 == NULL) ||
            (cd.ctx && pb.cb == NULL) || (cd.labels && pb.lb == NULL)) {
            cli_fail("train: out of memory for a batch of %zu rows of %zu values", B, d);
            goto out;
        }
        sp.fill = fill_points;
        sp.fill_user = &pb;
    }
    if (dist_size() > 1) {
        double blk = 0;
        stochflow_model_get_param(&blk, m, STOCHFLOW_PARAM_GRAD_BLOCK);
        if (blk == 0) {
            if (writer) /* the same on every process: said once */
                cli_usage("train: under mpirun with %d processes --grad-block B is required (B "
                          "rows per block; one process with the same B gives the same bits)",
                          dist_size());
            ret = EXIT_USAGE;
            goto out;
        }
        char why[512];
        if (dist_agree(DIST_OK, NULL, why, sizeof why) != DIST_OK) { /* every one set up */
            setup_agreed = 1;
            if (writer) cli_fail("train: %s", why);
            goto out;
        }
        setup_agreed = 1;
    }
    if (table) {
        if (table_train(&tab, m, &ds, &o, &to, steps, B, ck_every, ck_path, resume != NULL,
                        by_rows ? &rows : NULL) != 0)
            goto out;
        /* the same result fields as the loop's (the trainer reports the last loss) */
        tr.steps_run = tab.steps_run;
        tr.checkpoints = tab.checkpoints;
        tr.seconds = tab.seconds;
        tr.last_loss = tr.mean_loss = tab.last_loss;
        tr.interrupted = tab.interrupted;
        snprintf(tr.fail, sizeof tr.fail, "%s", tab.fail);
    } else if (train_run(&tr, m, &sp) != 0) {
        goto out;
    }

    /* --out is saved whatever stopped the loop, so the steps done are not lost */
    rc = writer ? stochflow_model_save(m, out) : 0;
    if (dist_size() > 1) { /* rank 0's save, agreed by every process */
        char why[512], msg[512];
        snprintf(msg, sizeof msg, "%.200s: %.240s (%s)", out, stochflow_last_error_message(),
                 stochflow_status_string(rc));
        if (dist_agree(rc < 0 ? DIST_FAIL : DIST_OK, msg, why, sizeof why) != DIST_OK &&
            !writer)
            goto out;
    }
    if (!writer) { /* the others stop here, as rank 0 reports */
        ret = tr.fail[0] ? 1 : tr.interrupted ? EXIT_INTERRUPTED : 0;
        goto out;
    }
    if (rc < 0) {
        if (tr.fail[0])
            cli_fail("train: %s; saving %s failed too: %s (%s)", tr.fail, out,
                     stochflow_last_error_message(), stochflow_status_string(rc));
        else
            cli_fail_lib(rc, out);
        goto out;
    }
    if (tr.fail[0]) {
        cli_fail("train: %s; stopped after %llu steps (model step %llu), saved %s, continue "
                 "with --resume",
                 tr.fail, (unsigned long long)tr.steps_run,
                 (unsigned long long)stochflow_model_step(m), out);
        goto out;
    }
    if (tr.interrupted) {
        cli_fail("train: interrupted after %llu steps (model step %llu); saved %s, continue "
                 "with --resume",
                 (unsigned long long)tr.steps_run, (unsigned long long)stochflow_model_step(m),
                 out);
        ret = EXIT_INTERRUPTED;
        goto out;
    }
    json j;
    report(&o, out, m, &tr, step0, batch, table, &j);
    if (opt(&o, "--json")) {
        double blk = 0;
        stochflow_model_get_param(&blk, m, STOCHFLOW_PARAM_GRAD_BLOCK);
        jint(&j, "ranks", (uint64_t)dist_size());
        jint(&j, "grad_block", (uint64_t)blk);
    }
    if (table) table_report(&tab, &j, opt(&o, "--json") != NULL);
    if (img) {
        char mult[128], attn[64];
        unet_describe(mult, sizeof mult, attn, sizeof attn, &g.u);
        printf("U-Net base %zu, mult %s, %zu block(s) per level, attention at %s, %zu groups\n",
               g.u.base, mult, g.u.blocks, attn, g.u.groups);
    }
    printf("saved %s (%zu parameters)", out, stochflow_model_num_params(m));
    if (tr.checkpoints)
        printf("; %llu periodic checkpoint(s) to %s", (unsigned long long)tr.checkpoints, ck_path);
    printf("\n");
    if (g.written)
        printf("wrote %llu sample grid(s), the last %s\n", (unsigned long long)g.written, g.last);
    cli_transport_report(m); /* the learnable interpolant: path length, coefficients */
    if (base_src)
        printf("base: %s (data-to-data flow: the checkpoint does not record the base; pass "
               "--base %s to `stochflow sample` and `stochflow logp`)\n", base_src, base_src);
    if (tpng) {
        if (cli_transport_picture(tpng, m, base_src ? &base_ds : NULL, &ds, seed) != 0) {
            if (opt(&o, "--json")) free(j.buf);
            goto out;
        }
        printf("wrote %s\n", tpng);
    }
    if (opt(&o, "--json")) {
        jstr(&j, "checkpoint", tr.checkpoints ? ck_path : NULL);
        double pl;
        if (cli_is_fourier(m) && stochflow_model_path_length(&pl, NULL, m) == 0)
            jnum(&j, "path_length", pl);
        if (img) {
            jint(&j, "images", im.n);
            jint(&j, "channels", im.c);
            jint(&j, "height", im.h);
            jint(&j, "width", im.w);
            jint(&j, "grids", g.written);
            jstr(&j, "last_grid", g.written ? g.last : NULL);
        }
        jend(&j);
    }
    ret = 0;
    goto out;
fail:
    ret = cli_exit_code(rc);
out:
    free(tr.history);
    free(pb.x);
    free(pb.u);
    free(pb.x0);
    free(pb.cb);
    free(pb.lb);
    cond_free(&cd);
    free(ib.x);
    free(ib.u);
    free(ib.pb);
    free(ib.lb);
    free(g.labels);
    stochflow_model_free(m);
    images_close(&im);
    dataset_free(&base_ds);
    dataset_free(&ds);
    dist_table_close(&rows);
    return ret;
}

int cmd_train(int argc, char **argv) {
    /* under mpirun (built with -Dmpi): MPI_Init; only rank 0 prints (doc/distributed.md) */
    dist_start(argc, argv);
    if (dist_rank() > 0 && freopen("/dev/null", "w", stdout) == NULL) return 1;
    int rc = train_main(argc, argv);
    if (dist_size() > 1 && !setup_agreed) {
        /* this process stopped before the others heard from it: tell them */
        char why[512];
        dist_agree(rc == 0 ? DIST_OK : DIST_FAIL,
                   "setting up failed (its message above)", why, sizeof why);
    }
    dist_finish();
    return rc;
}
