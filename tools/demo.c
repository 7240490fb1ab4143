/* demo.c - `stochflow demo`: trains a flow on the checkerboard, evaluates the held-out
 * NLL against the truth ln 32 and draws the pictures (doc/cli.md, "Demo recipe"). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "training.h"

#define LN32 3.4657359027997265
/* Toy streams: training step s draws its batch from stream s; evaluation uses streams
 * at the top of the toy RNG's 2^44 range, which training never reaches. */
#define HELDOUT_STREAM ((((uint64_t)1) << 44) - 1)
#define PICTURE_STREAM ((((uint64_t)1) << 44) - 2)

/* ---- demo ------------------------------------------------------------------------------- */

/* The demo recipe (measured in doc/cli.md): see DEMO_* below. */
#define DEMO_HIDDEN "128,128,128"
#define DEMO_FOURIER 0
#define DEMO_STEPS 25000
#define DEMO_TARGET STOCHFLOW_TRAIN_TARGET_BATCH
#define DEMO_BATCH 256
#define DEMO_LR 2e-3
#define DEMO_EMA 0.998
#define DEMO_EVAL_N 4000
#define DEMO_SAMPLES 20000
#define DEMO_GRID 96
#define DEMO_RANGE 4.5
#define STR_(x) #x
#define STR(x) STR_(x) /* a number above as help text */

static const optdef DEMO_OPTS[] = {
    {"--outdir", "DIR", "where the pictures and the model go (default stochflow-demo)"},
    {"--threads", "T", "threads for matrix work (default 2)"},
    {"--steps", "N", "training steps (default " STR(DEMO_STEPS) ")"},
    {"--batch", "B", "batch size (default " STR(DEMO_BATCH) ")"},
    {"--hidden", "W,W,...", "hidden widths (default " DEMO_HIDDEN ")"},
    {"--time-fourier", "F", "Fourier time features (default 0 = raw t)"},
    {"--lr", "X", "peak learning rate"},
    {"--train-target", "NAME", "batch|draw: regress on the posterior mean of dI/dt over the batch "
                               "(default) or on each row's own draw"},
    {"--ema", "X", "EMA decay (0 = off)"},
    {"--eval-n", "N", "held-out points for the NLL (default 4000)"},
    {"--samples", "N", "model samples for the picture (default 20000)"},
    {"--grid", "G", "density picture grid G x G (default 96)"},
    {"--seed", "S", "seed (default 0)"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

int cmd_demo(int argc, char **argv) {
    opts o;
    catch_signals();
    int p = cli_parse(&o, "demo", "[--outdir DIR] [--json] [options]", DEMO_OPTS,
                      sizeof DEMO_OPTS / sizeof DEMO_OPTS[0], argc, argv);
    if (p != 0) return p > 0 ? 0 : EXIT_USAGE;
    uint64_t steps, batch, eval_n, n_samp, grid, batch_check;
    double lr, ema;
    int target;
    if (get_u64(&o, "--steps", DEMO_STEPS, 1, 100000000, &steps) ||
        get_u64(&o, "--batch", DEMO_BATCH, 1, 1 << 22, &batch) ||
        get_u64(&o, "--eval-n", DEMO_EVAL_N, 2, 10000000, &eval_n) ||
        get_u64(&o, "--samples", DEMO_SAMPLES, 1, 10000000, &n_samp) ||
        get_u64(&o, "--grid", DEMO_GRID, 8, 1024, &grid) ||
        get_param_option(&o, "--lr", "lr", DEMO_LR, NULL, &lr) ||
        get_param_option(&o, "--ema", "ema_decay", DEMO_EMA, NULL, &ema) ||
        get_keyword(&o, "--train-target", TRAIN_TARGETS, DEMO_TARGET, &target) ||
        get_u64(&o, "--threads", 2, 1, 256, &batch_check) || check_mlp_options(&o))
        return EXIT_USAGE;
    const char *dir = opt(&o, "--outdir") ? opt(&o, "--outdir") : "stochflow-demo";
    if (make_dirs(dir) != 0) return 1;
    char path_model[4200], path_data[4200], path_samp[4200], path_dens[4200], path_loss[4200],
        path_all[4200];
    snprintf(path_model, sizeof path_model, "%s/model.sfm", dir);
    snprintf(path_data, sizeof path_data, "%s/data.png", dir);
    snprintf(path_samp, sizeof path_samp, "%s/samples.png", dir);
    snprintf(path_dens, sizeof path_dens, "%s/density.png", dir);
    snprintf(path_loss, sizeof path_loss, "%s/loss.png", dir);
    snprintf(path_all, sizeof path_all, "%s/demo.png", dir);

    double t_start = cli_now();
    dataset ds = {.toy = 1, .d = 2};
    snprintf(ds.name, sizeof ds.name, "checkerboard");
    points_batch pb = {.ds = &ds, .b = (size_t)batch};
    stochflow_model *m = NULL;
    stochflow_solver *s = NULL;
    train_result tr = {0};
    float *xe = NULL, *lp = NULL, *xs = NULL, *xd = NULL, *gx = NULL, *gl = NULL;
    canvas cv[4] = {{0}}, all = {0};
    int ret = 1, rc;
    if ((rc = build_mlp(&m, &o, 2, DEMO_HIDDEN, DEMO_FOURIER)) != 0 ||
        (rc = set_threads(m, &o, 2)) != 0) {
        ret = cli_exit_code(rc);
        goto out;
    }
    if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, lr)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_MIN, lr * 0.02)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_TRAIN_TARGET, target)) < 0 ||
        (ema > 0 && (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_DECAY, ema)) < 0)) {
        cli_fail_lib(rc, "demo settings");
        goto out;
    }
    printf("demo: training a flow on the checkerboard (trig interpolant, %s target, %llu steps, "
           "batch %llu, %zu parameters)\n",
           target == STOCHFLOW_TRAIN_TARGET_BATCH ? "batch-posterior" : "plain",
           (unsigned long long)steps, (unsigned long long)batch, stochflow_model_num_params(m));
    fflush(stdout);
    pb.seed = model_seed(m);
    pb.x = malloc((size_t)batch * 2 * sizeof(float));
    pb.u = malloc((size_t)batch * sizeof(double));
    if (pb.x == NULL || pb.u == NULL) {
        cli_fail("demo: out of memory for a batch of %llu", (unsigned long long)batch);
        goto out;
    }
    train_spec sp = {.steps = steps, .batch = (size_t)batch, .label = "demo: train",
                     .fill = fill_points, .fill_user = &pb, .keep_history = 1};
    if (train_run(&tr, m, &sp) != 0) goto out;
    if (tr.interrupted) {
        cli_fail("demo: interrupted during training");
        ret = EXIT_INTERRUPTED;
        goto out;
    }
    if ((rc = stochflow_model_save(m, path_model)) < 0) {
        cli_fail_lib(rc, path_model);
        goto out;
    }
    printf("demo: trained in %.1f s (final loss %.4f)\n", tr.seconds, tr.mean_loss);
    fflush(stdout);

    /* held-out NLL: exact trace, dopri5 at rtol = atol = 1e-5 */
    double t_eval = cli_now(), nfe = 0;
    if ((rc = stochflow_solver_new(&s)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_DOPRI5)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, 1e-5)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, 1e-5)) < 0 ||
        (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_TRACE, STOCHFLOW_TRACE_EXACT)) < 0) {
        cli_fail_lib(rc, "solver");
        goto out;
    }
    xe = malloc((size_t)eval_n * 2 * sizeof(float));
    lp = malloc((size_t)eval_n * sizeof(float));
    if (xe == NULL || lp == NULL) {
        cli_fail("demo: out of memory");
        goto out;
    }
    uint64_t seed = model_seed(m);
    if ((rc = stochflow_toy_sample(xe, "checkerboard", (size_t)eval_n, seed, HELDOUT_STREAM)) < 0) {
        cli_fail_lib(rc, "toy data");
        goto out;
    }
    progress bar;
    progress_start(&bar, "demo: held-out NLL", 1.0, "t");
    ode_progress op = {&bar, 1.0, 0.0};
    stochflow_solver_set_progress(s, on_ode_progress, &op);
    rc = stochflow_solver_log_prob(lp, NULL, s, m, xe, (size_t)eval_n, 1.0);
    progress_end(&bar);
    if (rc < 0) {
        cli_fail_lib(rc, "held-out log-density");
        goto out;
    }
    stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE);
    double nll, se;
    nll_stats(&nll, &se, lp, (size_t)eval_n);
    double eval_secs = cli_now() - t_eval;
    printf("demo: held-out NLL %.4f +- %.4f nats on %llu points (%.1f s, %.0f evaluations)\n",
           nll, se, (unsigned long long)eval_n, eval_secs, nfe);
    fflush(stdout);

    /* pictures: data histogram, model samples, model density on a grid, loss curve */
    double t_pic = cli_now();
    xd = malloc((size_t)n_samp * 2 * sizeof(float));
    xs = malloc((size_t)n_samp * 2 * sizeof(float));
    size_t gg = (size_t)grid * (size_t)grid;
    gx = malloc(gg * 2 * sizeof(float));
    gl = malloc(gg * sizeof(float));
    if (xd == NULL || xs == NULL || gx == NULL || gl == NULL) {
        cli_fail("demo: out of memory");
        goto out;
    }
    if ((rc = stochflow_toy_sample(xd, "checkerboard", (size_t)n_samp, seed, PICTURE_STREAM)) < 0) {
        cli_fail_lib(rc, "toy data");
        goto out;
    }
    /* the pictures need less precision than the NLL */
    stochflow_solver_set_param(s, STOCHFLOW_PARAM_RTOL, 1e-3);
    stochflow_solver_set_param(s, STOCHFLOW_PARAM_ATOL, 1e-3);
    progress_start(&bar, "demo: samples", 1.0, "t");
    op = (ode_progress){&bar, 0.0, 1.0};
    rc = stochflow_solver_sample(xs, NULL, s, m, (size_t)n_samp, seed + 1);
    progress_end(&bar);
    if (rc < 0) {
        cli_fail_lib(rc, "sampling");
        goto out;
    }
    double w = 2.0 * DEMO_RANGE / (double)grid;
    for (size_t i = 0; i < grid; ++i)
        for (size_t j = 0; j < grid; ++j) {
            gx[2 * (i * grid + j)] = (float)(-DEMO_RANGE + w * ((double)j + 0.5));
            gx[2 * (i * grid + j) + 1] = (float)(-DEMO_RANGE + w * ((double)i + 0.5));
        }
    progress_start(&bar, "demo: density grid", 1.0, "t");
    op = (ode_progress){&bar, 1.0, 0.0};
    rc = stochflow_solver_log_prob(gl, NULL, s, m, gx, gg, 1.0);
    progress_end(&bar);
    if (rc < 0) {
        cli_fail_lib(rc, "density grid");
        goto out;
    }
    for (size_t i = 0; i < gg; ++i) gl[i] = expf(gl[i]);
    char title[64];
    snprintf(title, sizeof title, "DATA (%llu)", (unsigned long long)n_samp);
    if (plot_histogram(&cv[0], title, xd, (size_t)n_samp, 2, -DEMO_RANGE, DEMO_RANGE, 256) ||
        plot_histogram(&cv[1], "MODEL SAMPLES", xs, (size_t)n_samp, 2, -DEMO_RANGE, DEMO_RANGE,
                       256) ||
        /* density colour scale: 0 .. 1.5 x the true density 1/32 */
        plot_heatmap(&cv[2], "MODEL DENSITY", gl, (int)grid, 1.5 / 32.0, 256) ||
        plot_curve(&cv[3], "TRAINING LOSS", tr.history, (size_t)tr.steps_run, 384, 256))
        goto out;
    if (canvas_save(&cv[0], path_data) || canvas_save(&cv[1], path_samp) ||
        canvas_save(&cv[2], path_dens) || canvas_save(&cv[3], path_loss))
        goto out;
    const int gap_px = 12, foot = 34;
    int total_w = cv[0].w + cv[1].w + cv[2].w + cv[3].w + 5 * gap_px;
    if (canvas_new(&all, total_w, cv[0].h + 2 * gap_px + foot, 255) != 0) goto out;
    for (int k = 0, x = gap_px; k < 4; x += cv[k].w + gap_px, ++k) canvas_blit(&all, &cv[k], x, gap_px);
    char foot_text[160];
    snprintf(foot_text, sizeof foot_text,
             "CHECKERBOARD  HELD-OUT NLL %.3f +- %.3f NATS   TRUTH LN 32 = 3.466   GAP %+.3f",
             nll, se, nll - LN32);
    static const uint8_t ink[3] = {30, 30, 30};
    int fs = canvas_text_width(foot_text, 2) <= total_w - 2 * gap_px ? 2 : 1;
    canvas_text(&all, gap_px, cv[0].h + gap_px + (foot + gap_px - 7 * fs) / 2, foot_text, fs, ink);
    if (canvas_save(&all, path_all) != 0) goto out;
    double pic_secs = cli_now() - t_pic, total = cli_now() - t_start;
    double gap = nll - LN32;
    int ok = fabs(gap) <= 0.15;
    printf("demo: pictures in %.1f s\n", pic_secs);
    printf("\n");
    printf("held-out NLL   %.4f +- %.4f nats  (%llu points, exact divergence, dopri5 1e-5)\n",
           nll, se, (unsigned long long)eval_n);
    printf("truth ln 32    %.4f nats  (the checkerboard is uniform on area 32)\n", LN32);
    printf("gap            %+.4f nats  (target |gap| <= 0.15: %s)\n", gap, ok ? "met" : "NOT met");
    double threads = 0;
    stochflow_model_get_param(&threads, m, STOCHFLOW_PARAM_THREADS);
    printf("time           %.1f s  (train %.1f, NLL %.1f, pictures %.1f; %.0f threads)\n", total,
           tr.seconds, eval_secs, pic_secs, threads);
    printf("pictures       %s  (%s, %s, %s, %s)\n", path_all, path_data, path_samp, path_dens,
           path_loss);
    printf("model          %s\n", path_model);
    if (opt(&o, "--json")) {
        json j;
        jbegin(&j);
        jnum(&j, "nll", nll);
        jnum(&j, "se", se);
        jnum(&j, "entropy", LN32);
        jnum(&j, "gap", gap);
        jbool(&j, "target_met", ok);
        jnum(&j, "seconds", total);
        jnum(&j, "train_seconds", tr.seconds);
        jnum(&j, "eval_seconds", eval_secs);
        jnum(&j, "picture_seconds", pic_secs);
        jint(&j, "steps", tr.steps_run);
        jstr(&j, "train_target", keyword_name(TRAIN_TARGETS, target));
        jint(&j, "eval_n", eval_n);
        jnum(&j, "nfe", nfe);
        jnum(&j, "loss", tr.mean_loss);
        const char *const keys[] = {"picture", "data_png", "samples_png", "density_png",
                                    "loss_png", "model"};
        const char *const paths[] = {path_all, path_data, path_samp, path_dens, path_loss,
                                     path_model};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; ++k) jstr(&j, keys[k], paths[k]);
        jend(&j);
    }
    ret = 0;
out:
    for (int k = 0; k < 4; ++k) canvas_free(&cv[k]);
    canvas_free(&all);
    free(tr.history);
    free(pb.x);
    free(pb.u);
    free(xe);
    free(lp);
    free(xs);
    free(xd);
    free(gx);
    free(gl);
    stochflow_solver_free(s);
    stochflow_model_free(m);
    return ret;
}

