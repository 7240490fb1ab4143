/* sample.c - `stochflow sample`: draws from a model, opening it once and branching on its
 * architecture: points of a 2-D/tabular (MLP) model to .npy/.csv (optionally with log p,
 * a histogram, or from a data-to-data base), or images of a U-Net model as a PNG grid.
 * See doc/cli.md. */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "context.h"
#include "images.h"
#include "sde_cli.h"

static const optdef SAMPLE_OPTS[] = {
    {"--model", "MODEL", "checkpoint"},
    {"-n", "N", "number of samples"},
    {"--out", "FILE", "output .npy or .csv (n x d; n x (d+1) with --with-logp)"},
    {"--solver", "NAME", "dopri5|rk4|heun|euler (default dopri5; image models rk4)"},
    {"--steps", "K", "steps of the fixed-step solvers (default 100; image models 50)"},
    {"--rtol", "X", "dopri5 relative tolerance (default 1e-5)"},
    {"--atol", "X", "dopri5 absolute tolerance (default 1e-5)"},
    {"--png", "PICTURE", "also draw a 2-D histogram (first two coordinates); image model: the sample grid"},
    {"--with-logp", NULL, "append log p(x) as the last column"},
    {"--seed", "S", "seed of the base draws (default 0)"},
    {"--sde", "EPS", "sample with the SDE of diffusion EPS (--steps steps; 0: the probability-flow ODE)"},
    {"--sde-method", "NAME", "em|heun SDE integrator (default heun)"},
    {"--score", "MODEL", "score (or denoiser) model for --sde (default: the score from the velocity)"},
    {"--base", "SRC", "data-to-data model: draw x0 from SRC instead of N(0, I)"},
    {"--weights", "NAME", "ema|live: which weights to use (default ema when trained with EMA)"},
    {"--threads", "T", "threads for matrix work"},
    {"--n", "N", "same as -n"},
    {"--cols", "C", "image model: images per row of the --png grid (default ceil(sqrt n))"},
    {"--batch", "B", "image model: images integrated per solver call (default 64)"},
    {"--context", "ROW|FILE", "conditional model: context of every sample (x,y,...) or per row"},
    {"--labels", "L|FILE", "conditional model: class label of every sample, or per row; image "
                           "model: 'all' = -n samples of every class, one grid row per class"},
    {"--guidance", "W", "conditional model: guidance (1+W) v(c) - W v(none) (default 0)"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

/* ---- points (an MLP model) ----------------------------------------------------------------- */

static int sample_points(stochflow_model *m, const opts *o) {
    const char *out = opt(o, "--out"), *png = opt(o, "--png"), *base_src = opt(o, "--base");
    uint64_t n, seed;
    solver_opts so;
    int rc, with_logp = opt(o, "--with-logp") != NULL;
    if ((rc = images_reject_options(o)) != 0 || (rc = need(o, "-n")) != 0 ||
        (rc = need(o, "--out")) != 0 ||
        (rc = get_u64(o, "-n", 0, 1, (uint64_t)CLI_MAX_ELEMENTS / 2, &n)) != 0 ||
        (rc = get_u64(o, "--seed", 0, 0, UINT64_MAX, &seed)) != 0 ||
        (rc = parse_solver(&so, o, STOCHFLOW_SOLVER_DOPRI5, 100)) != 0)
        return rc;
    if (!has_suffix(out, ".npy") && !has_suffix(out, ".csv"))
        return cli_usage("sample: --out '%s' must end in .npy or .csv", out);
    if (png && !has_suffix(png, ".png"))
        return cli_usage("sample: --png '%s' must end in .png", png);
    static const char *const sde_no[] = {"--with-logp", "--base"};
    if (opt(o, "--sde") && (rc = refuse(o, sde_no, 2, "does not apply with --sde (see logp "
                                                      "--sde)")) != 0)
        return rc;
    const char *inputs[] = {opt(o, "--model"), source_file(base_src)};
    if (check_output("sample", out, inputs, 2) != 0 ||
        (png && check_output("sample", png, inputs, 2) != 0))
        return CLI_ERR;
    stochflow_solver *s = NULL;
    stochflow_sde *sde = NULL;
    stochflow_model *score = NULL;
    float *x = NULL, *lp = NULL, *cat = NULL;
    dataset base_ds = {0};
    cond_data cd = {0};
    int ret = CLI_ERR;
    if ((rc = set_threads(m, o, default_threads())) != 0) return rc;
    if (opt(o, "--sde") &&
        (rc = cli_sde_setup(&sde, &score, m, o, so.steps, STOCHFLOW_TRACE_EXACT)) != 0)
        return rc;
    if (base_src && dataset_open(&base_ds, base_src) != 0) goto out;
    if (base_src && base_ds.toy) base_ds.d = 2;
    if (make_solver(&s, &so) != 0) goto out;
    size_t d = stochflow_model_dim(m);
    if (n > CLI_MAX_ELEMENTS / (d + 1)) {
        cli_fail("sample: n = %llu is too large for dimension %zu", (unsigned long long)n, d);
        goto out;
    }
    size_t mk = 0, mc = 0;
    stochflow_model_context(&mk, &mc, m);
    if (base_src && (opt(o, "--context") || opt(o, "--labels") || opt(o, "--guidance"))) {
        ret = cli_usage("sample: --context, --labels and --guidance do not apply with --base");
        goto out;
    }
    if ((rc = cond_points(&cd, o, "sample", (size_t)n, mk, mc)) != 0 ||
        (rc = cond_guidance(s, o, "sample")) != 0) {
        ret = rc;
        goto out;
    }
    x = malloc((size_t)n * d * sizeof(float));
    lp = with_logp ? malloc((size_t)n * sizeof(float)) : NULL;
    if (x == NULL || (with_logp && lp == NULL)) {
        cli_fail("sample: out of memory for %llu samples", (unsigned long long)n);
        goto out;
    }
    progress bar;
    progress_start(&bar, "sample", 1.0, "t");
    ode_progress op = {&bar, 0.0, 1.0};
    stochflow_solver_set_progress(s, on_ode_progress, &op);
    double t0 = cli_now();
    if (sde) {
        rc = stochflow_sde_sample_ctx(x, sde, m, score, cd.ctx, cd.labels, (size_t)n, seed);
        progress_end(&bar);
        if (rc < 0) {
            cli_fail_lib(rc, "SDE sampling");
            goto out;
        }
    } else if (base_src) {
        rc = cli_sample_from_base(x, lp, s, m, &base_ds, (size_t)n, seed);
        progress_end(&bar);
        if (rc != 0) goto out; /* printed */
    } else {
        rc = stochflow_solver_sample_ctx(x, lp, s, m, cd.ctx, cd.labels, (size_t)n, seed);
        progress_end(&bar);
        if (rc < 0) {
            cli_fail_lib(rc, "sampling");
            goto out;
        }
    }
    solve_finished_despite_stop(0, stop_requested, "sample");
    double secs = cli_now() - t0, nfe = 0;
    if (sde) stochflow_sde_stat(&nfe, sde, STOCHFLOW_STAT_NFE);
    else stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE);
    char header[256] = "";
    for (size_t j = 0; j < d && strlen(header) < 200; ++j)
        snprintf(header + strlen(header), sizeof header - strlen(header), "%sx%zu",
                 j ? "," : "", j + 1);
    if (with_logp) {
        cat = malloc((size_t)n * (d + 1) * sizeof(float));
        if (cat == NULL) {
            cli_fail("sample: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; ++i) {
            memcpy(cat + i * (d + 1), x + i * d, d * sizeof(float));
            cat[i * (d + 1) + d] = lp[i];
        }
        strncat(header, ",logp", sizeof header - strlen(header) - 1);
        if (matrix_write(out, cat, (size_t)n, d + 1, header) != 0) goto out;
    } else if (matrix_write(out, x, (size_t)n, d, header) != 0) {
        goto out;
    }
    if (png) {
        double lo, hi;
        plot_auto_range(&lo, &hi, x, (size_t)n, d);
        canvas c;
        char title[64];
        snprintf(title, sizeof title, "%llu SAMPLES", (unsigned long long)n);
        if (plot_histogram(&c, title, x, (size_t)n, d, lo, hi, 384) != 0) goto out;
        int prc = canvas_save(&c, png);
        canvas_free(&c);
        if (prc != 0) goto out;
    }
    printf("sampled %llu points (d = %zu) in %.2f s, %.0f velocity evaluations\n",
           (unsigned long long)n, d, secs, nfe);
    printf("wrote %s%s%s\n", out, png ? " and " : "", png ? png : "");
    if (opt(o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jint(&j, "d", d);
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "sampler", sde ? "sde" : "ode");
        if (sde) {
            double eps = 0;
            stochflow_sde_get_param(&eps, sde, STOCHFLOW_PARAM_SDE_EPS);
            jnum(&j, "sde_eps", eps);
        }
        jstr(&j, "out", out);
        jstr(&j, "png", png);
        if (with_logp) {
            double nll, se;
            nll_stats(&nll, &se, lp, (size_t)n);
            jnum(&j, "mean_logp", -nll);
        }
        jend(&j);
    }
    ret = 0;
out:
    free(x);
    free(lp);
    free(cat);
    cond_free(&cd);
    dataset_free(&base_ds);
    stochflow_solver_free(s);
    stochflow_sde_free(sde);
    stochflow_model_free(score);
    return ret;
}

/* ---- images (a U-Net model) --------------------------------------------------------------- */

/* The labels (and context) of the *n images of a conditional U-Net: --labels all makes *n
 * images of every class (class-major, so the grid has one row per class: *cols = *n) and
 * sets *per_class; otherwise as for points (cond_points). --guidance needs a conditional
 * model. 0, CLI_USAGE or CLI_ERR (printed). */
static int image_conditioning(cond_data *cd, uint64_t *n, uint64_t *cols, size_t *per_class,
                              stochflow_model *m, const opts *o) {
    size_t mk = 0, mc = 0;
    stochflow_model_context(&mk, &mc, m);
    const char *lab = opt(o, "--labels");
    if (opt(o, "--guidance") && mk == 0 && mc == 0)
        return cli_usage("sample: --guidance needs a conditional model (train it with --labels "
                         "and --ctx-dropout)");
    if (!lab || strcmp(lab, "all") != 0) return cond_points(cd, o, "sample", (size_t)*n, mk, mc);
    if (mc == 0)
        return cli_usage("sample: --labels all given but the model has no classes (train it "
                         "with --labels)");
    if (opt(o, "--cols")) return cli_usage("sample: --cols does not apply with --labels all "
                                           "(one row of -n images per class)");
    if (*n > 1000000 / mc)
        return cli_usage("sample: -n %llu images of each of %zu classes is too many",
                         (unsigned long long)*n, mc);
    opts lo = *o; /* the context, if any, through cond_points; the labels here */
    for (size_t k = 0; k < lo.n; ++k)
        if (strcmp(lo.defs[k].name, "--labels") == 0) lo.val[k] = NULL;
    int rc = cond_points(cd, &lo, "sample", (size_t)*n * mc, mk, mc);
    if (rc != 0) return rc;
    if ((cd->labels = malloc((size_t)*n * mc * sizeof(int32_t))) == NULL) {
        cond_free(cd);
        return cli_fail("sample: out of memory for the labels");
    }
    for (size_t i = 0; i < (size_t)*n * mc; ++i) cd->labels[i] = (int32_t)(i / *n);
    *per_class = (size_t)*n;
    *cols = *n;
    *n *= mc;
    return 0;
}

static int sample_images(stochflow_model *m, const opts *o) {
    static const char *const no[] = {"--base", "--with-logp"};
    const char *png = opt(o, "--png"), *out = opt(o, "--out");
    uint64_t n, cols, batch, seed;
    solver_opts so;
    unet_shape u;
    int rc;
    if ((rc = refuse(o, no, sizeof no / sizeof no[0],
                     "is not supported for image models (see logp --bpd)")) != 0 ||
        (rc = get_u64(o, "-n", 16, 1, 1000000, &n)) != 0 ||
        (rc = get_u64(o, "--cols", 0, 0, 1000000, &cols)) != 0 ||
        (rc = get_u64(o, "--batch", 64, 1, 1 << 16, &batch)) != 0 ||
        (rc = get_u64(o, "--seed", 0, 0, UINT64_MAX, &seed)) != 0 ||
        (rc = parse_solver(&so, o, STOCHFLOW_SOLVER_RK4, 50)) != 0)
        return rc;
    if (!png && !out)
        return cli_usage("sample: an image model needs --png GRID.png (and/or --out FILE)");
    if (png && !has_suffix(png, ".png"))
        return cli_usage("sample: --png '%s' must end in .png", png);
    if (out && !has_suffix(out, ".npy") && !has_suffix(out, ".csv"))
        return cli_usage("sample: --out '%s' must end in .npy or .csv", out);
    if ((rc = unet_model_shape(&u, m, "sample", opt(o, "--model"))) != 0 ||
        (rc = set_threads(m, o, default_threads())) != 0)
        return rc;
    const char *inputs[] = {opt(o, "--model")};
    size_t d = stochflow_model_dim(m);
    stochflow_solver *s = NULL;
    stochflow_sde *sde = NULL;
    stochflow_model *score = NULL;
    float *x = NULL;
    double nfe = 0;
    int ret = CLI_ERR;
    cond_data cd = {0};
    size_t per_class = 0;
    if ((rc = image_conditioning(&cd, &n, &cols, &per_class, m, o)) != 0) return rc;
    if (png && (grid_fits("sample", "use fewer images or another --cols", (size_t)n,
                          (size_t)cols, u.h, u.w) != 0 ||
                check_output("sample", png, inputs, 1) != 0))
        goto out;
    if (out && check_output("sample", out, inputs, 1) != 0) goto out;
    if (n > CLI_MAX_ELEMENTS / d) {
        cli_fail("sample: n = %llu images of %zu values is too many", (unsigned long long)n, d);
        goto out;
    }
    if ((x = malloc((size_t)n * d * sizeof(float))) == NULL) {
        cli_fail("sample: out of memory for %llu images", (unsigned long long)n);
        goto out;
    }
    if (opt(o, "--sde") &&
        (ret = cli_sde_setup(&sde, &score, m, o, so.steps, STOCHFLOW_TRACE_EXACT)) != 0)
        goto out;
    ret = CLI_ERR;
    if (make_solver(&s, &so) != 0) goto out;
    if ((rc = cond_guidance(s, o, "sample")) != 0) {
        ret = rc;
        goto out;
    }
    /* base draws x0 ~ N(0, I): image i's noise depends only on (seed, i), not on --batch */
    if ((rc = stochflow_random_normal(x, (size_t)n * d, seed, IMG_SAMPLE_STREAM)) < 0) {
        cli_fail_lib(rc, "base draws");
        goto out;
    }
    progress bar;
    progress_start(&bar, "sample", (double)n, "images");
    chunk_progress cp = {.bar = &bar, .t0 = 0.0, .t1 = 1.0};
    stochflow_solver_set_progress(s, on_chunk_progress, &cp);
    double t0 = cli_now();
    /* --sde: all images in one call (image i's noise keyed by (seed, i), not by --batch) */
    if (sde && (rc = cli_sde_sample(x, &nfe, sde, m, score, cd.ctx, cd.labels, (size_t)n,
                                    seed)) != 0) {
        progress_end(&bar);
        ret = rc;
        goto out;
    }
    for (size_t off = 0; off < n && !sde; off += (size_t)batch) {
        size_t cnt = n - off < batch ? (size_t)n - off : (size_t)batch;
        cp.done = (double)off;
        cp.chunk = (double)cnt;
        rc = stochflow_solver_integrate_ctx(NULL, NULL, s, m, x + off * d,
                                            cd.ctx ? cd.ctx + off * cd.k : NULL,
                                            cd.labels ? cd.labels + off : NULL, cnt, 0.0, 1.0);
        if (rc < 0) {
            progress_end(&bar);
            cli_fail_lib(rc, "sampling");
            goto out;
        }
        double f = 0;
        stochflow_solver_stat(&f, s, STOCHFLOW_STAT_NFE);
        nfe += f;
    }
    progress_end(&bar);
    solve_finished_despite_stop(0, stop_requested, "sample");
    double secs = cli_now() - t0;
    if (png && (rc = stochflow_images_write_grid(png, x, (size_t)n, u.c, u.h, u.w,
                                                 (size_t)cols)) < 0) {
        cli_fail_lib(rc, png);
        goto out;
    }
    if (out && matrix_write(out, x, (size_t)n, d, NULL) != 0) goto out;
    double w = 0;
    stochflow_solver_get_param(&w, s, STOCHFLOW_PARAM_GUIDANCE);
    const char *how = sde ? "SDE" : keyword_name(SOLVERS, so.kind);
    printf("sampled %llu images %zux%zux%zu in %.2f s (%s, %.0f velocity evaluations)\n",
           (unsigned long long)n, u.c, u.h, u.w, secs, how, nfe);
    if (per_class)
        printf("%zu images of each of %zu classes (image i has class i / %zu; grid row k: "
               "class k), guidance %g\n", per_class, (size_t)n / per_class, per_class, w);
    else if (opt(o, "--labels"))
        printf("class labels %s, guidance %g\n", opt(o, "--labels"), w);
    printf("wrote %s%s%s\n", png ? png : "", png && out ? " and " : "", out ? out : "");
    if (opt(o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jint(&j, "d", d);
        jint(&j, "channels", u.c);
        jint(&j, "height", u.h);
        jint(&j, "width", u.w);
        jint(&j, "cols", grid_cols((size_t)n, (size_t)cols)); /* the grid's columns */
        jstr(&j, "solver", how);
        if (sde) {
            double eps = 0;
            stochflow_sde_get_param(&eps, sde, STOCHFLOW_PARAM_SDE_EPS);
            jnum(&j, "sde_eps", eps);
        }
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "png", png);
        jstr(&j, "out", out);
        jstr(&j, "labels", opt(o, "--labels"));
        if (per_class) jint(&j, "per_class", per_class);
        jnum(&j, "guidance", w);
        jend(&j);
    }
    ret = 0;
out:
    free(x);
    cond_free(&cd);
    stochflow_solver_free(s);
    stochflow_sde_free(sde);
    stochflow_model_free(score);
    return ret;
}

/* ---- the command -------------------------------------------------------------------------- */

int cmd_sample(int argc, char **argv) {
    opts o;
    catch_signals();
    int rc = cli_parse(&o, "sample", "--model MODEL -n N --out FILE [options]", SAMPLE_OPTS,
                       sizeof SAMPLE_OPTS / sizeof SAMPLE_OPTS[0], argc, argv);
    if (rc != 0) return rc > 0 ? 0 : EXIT_USAGE;
    opt_alias(&o, "--n", "-n");
    solver_opts so;
    uint64_t v;
    /* values whose syntax and range do not depend on the model: before it is read */
    if ((rc = need(&o, "--model")) != 0 ||
        (rc = parse_solver(&so, &o, STOCHFLOW_SOLVER_DOPRI5, 100)) != 0 ||
        (rc = get_u64(&o, "--threads", 1, 1, 256, &v)) != 0 ||
        (rc = get_u64(&o, "-n", 1, 1, (uint64_t)CLI_MAX_ELEMENTS / 2, &v)) != 0)
        return cli_exit_code(rc);
    stochflow_model *m = NULL;
    if (load_model(&m, opt(&o, "--model")) != 0) return 1;
    rc = model_is_unet(m) ? sample_images(m, &o) : sample_points(m, &o);
    stochflow_model_free(m);
    return rc == 0 ? 0 : cli_exit_code(rc);
}
