/* logp.c - `stochflow logp`: log-densities under a model, opening it once and branching on
 * its architecture: the NLL of points for a 2-D/tabular (MLP) model (with the truth for
 * the toys whose density is known), bits per dimension of dequantized images for a U-Net
 * model. See doc/cli.md. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "context.h"
#include "images.h"
#include "sde_cli.h"

/* Held-out toy points: a stream at the top of the toy RNG's 2^44 range, which training
 * (stream = step) never reaches. */
#define HELDOUT_STREAM ((((uint64_t)1) << 44) - 1)

static const optdef LOGP_OPTS[] = {
    {"--model", "MODEL", "checkpoint"},
    {"--data", "SRC", "toy (held-out draws), .npy/.csv, or images (fashion-mnist:test)"},
    {"-n", "N", "points (toy: default 5000; file: the first N rows, default all)"},
    {"--trace", "NAME", "exact|hutchinson (default exact; image models hutchinson)"},
    {"--probes", "K", "Hutchinson probes per point (default 1)"},
    {"--solver", "NAME", "dopri5|rk4|heun|euler (default dopri5)"},
    {"--steps", "K", "steps of the fixed-step solvers (default 100)"},
    {"--rtol", "X", "dopri5 relative tolerance (default 1e-5)"},
    {"--atol", "X", "dopri5 absolute tolerance (default 1e-5)"},
    {"--seed", "S", "seed of the Hutchinson probes (default 0); images: also the dequantization"},
    {"--out", "FILE", "also write the per-point log p (.npy or .csv, n x 1; images: logp,bpd n x 2)"},
    {"--base", "SRC", "data-to-data model: SRC's closed-form log-density as the base"},
    {"--sde", "EPS", "the SDE likelihood estimate of diffusion EPS (Euler-Maruyama, --steps)"},
    {"--paths", "K", "--sde: paths per point (default 16); se is over the paths"},
    {"--score", "MODEL", "score (or denoiser) model for --sde (default: from the velocity)"},
    {"--weights", "NAME", "ema|live: which weights to use (default ema when trained with EMA)"},
    {"--threads", "T", "threads for matrix work"},
    {"--bpd", NULL, "image model: bits/dim of dequantized test images (always for images)"},
    {"--n-eval", "N", "image model: test images to evaluate (default 256)"},
    {"--batch", "B", "image model: images per solver call (default 64)"},
    {"--context", "ROW|FILE", "conditional model: log p(x | c): context of every row, or per row"},
    {"--labels", "L|FILE", "conditional model: class label of every row, or per row; image "
                           "model: 'dataset' = the images' own labels"},
    {"--guidance", "W", "conditional model: the guided flow's density (not p(x | c))"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

/* The options both kinds share: trace, probes, seed, solver; --out's suffix. */
typedef struct {
    int trace;
    uint64_t probes, seed;
    solver_opts so;
} logp_opts;

static int parse_logp(logp_opts *lo, const opts *o, int def_trace) {
    int rc;
    if ((rc = get_keyword(o, "--trace", TRACES, def_trace, &lo->trace)) != 0 ||
        (rc = get_u64(o, "--probes", 1, 1, 4096, &lo->probes)) != 0 ||
        (rc = get_u64(o, "--seed", 0, 0, UINT64_MAX, &lo->seed)) != 0 ||
        (rc = parse_solver(&lo->so, o, STOCHFLOW_SOLVER_DOPRI5, 100)) != 0)
        return rc;
    const char *out = opt(o, "--out");
    if (out && !has_suffix(out, ".npy") && !has_suffix(out, ".csv"))
        return cli_usage("logp: --out '%s' must end in .npy or .csv", out);
    return 0;
}

/* A solver with the trace settings; 0 or CLI_ERR. */
static int logp_solver(stochflow_solver **s, const logp_opts *lo) {
    int rc;
    if (make_solver(s, &lo->so) != 0) return CLI_ERR;
    if ((rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_TRACE, lo->trace)) < 0 ||
        (rc = stochflow_solver_set_param(*s, STOCHFLOW_PARAM_PROBES, (double)lo->probes)) < 0 ||
        (rc = stochflow_solver_set_seed(*s, lo->seed)) < 0)
        return cli_fail_lib(rc, "logp settings");
    return 0;
}

static int all_finite(const float *lp, size_t n, const char *what) {
    for (size_t i = 0; i < n; ++i)
        if (!isfinite(lp[i])) return cli_fail("logp: non-finite log-density at %s %zu", what, i + 1);
    return 0;
}

/* ---- points (an MLP model) ----------------------------------------------------------------- */

static int logp_points(stochflow_model *m, const opts *o) {
    const char *src = opt(o, "--data"), *outp = opt(o, "--out");
    logp_opts lo;
    uint64_t nreq;
    int rc;
    if ((rc = images_reject_options(o)) != 0 || (rc = need(o, "--data")) != 0 ||
        (rc = parse_logp(&lo, o, STOCHFLOW_TRACE_EXACT)) != 0 ||
        (rc = get_u64(o, "-n", 0, 1, (uint64_t)CLI_MAX_ELEMENTS / 2, &nreq)) != 0)
        return rc;
    const char *inputs[] = {opt(o, "--model"), source_file(src), source_file(opt(o, "--base"))};
    if (outp && check_output("logp", outp, inputs, 3) != 0) return CLI_ERR;
    if (opt(o, "--sde") && opt(o, "--base"))
        return cli_usage("logp: --base does not apply with --sde");
    if ((rc = set_threads(m, o, default_threads())) != 0) return rc;
    stochflow_sde *sde = NULL;
    stochflow_model *score = NULL;
    if (opt(o, "--sde") &&
        (rc = cli_sde_setup(&sde, &score, m, o, lo.so.steps, STOCHFLOW_TRACE_EXACT)) != 0)
        return rc;
    dataset ds = {0};
    stochflow_solver *s = NULL;
    float *lp = NULL, *se = NULL, *lt = NULL;
    cond_data cd = {0};
    int ret = CLI_ERR;
    if (dataset_open(&ds, src) != 0) goto out;
    size_t d = stochflow_model_dim(m);
    if (ds.d != d) {
        cli_fail("logp: the data has %zu columns but the model has dimension %zu", ds.d, d);
        goto out;
    }
    if (logp_solver(&s, &lo) != 0) goto out;
    if (opt(o, "--base")) { /* a data-to-data model (transport.c) */
        dataset base_ds;
        if (dataset_open(&base_ds, opt(o, "--base")) != 0) goto out;
        int brc = cli_set_base_logpdf(s, &base_ds, "logp");
        dataset_free(&base_ds); /* toys keep no data; the callback holds the static name */
        if (brc != 0) goto out;
    }
    size_t n;
    if (ds.toy) {
        n = nreq ? (size_t)nreq : 5000;
        ds.x = malloc(n * 2 * sizeof(float));
        if (ds.x == NULL) {
            cli_fail("logp: out of memory");
            goto out;
        }
        ds.n = n;
        /* held-out points: a stream training never uses, keyed by the model's seed */
        if ((rc = stochflow_toy_sample(ds.x, ds.name, n, model_seed(m), HELDOUT_STREAM)) < 0) {
            cli_fail_lib(rc, "toy data");
            goto out;
        }
    } else {
        if (nreq > ds.n) {
            cli_fail("logp: -n %llu but '%s' has only %zu rows", (unsigned long long)nreq, src,
                     ds.n);
            goto out;
        }
        n = nreq ? (size_t)nreq : ds.n;
    }
    lp = malloc(n * sizeof(float));
    se = malloc(n * sizeof(float));
    if (lp == NULL || se == NULL) {
        cli_fail("logp: out of memory");
        goto out;
    }
    size_t mk = 0, mc = 0;
    stochflow_model_context(&mk, &mc, m);
    if ((rc = cond_points(&cd, o, "logp", n, mk, mc)) != 0 ||
        (rc = cond_guidance(s, o, "logp")) != 0) {
        ret = rc;
        goto out;
    }
    progress bar;
    progress_start(&bar, "logp", 1.0, "t");
    ode_progress op = {&bar, 1.0, 0.0};
    stochflow_solver_set_progress(s, on_ode_progress, &op);
    double t0 = cli_now();
    if (sde)
        rc = stochflow_sde_log_prob_ctx(lp, se, sde, m, score, ds.x, cd.ctx, cd.labels, n,
                                        lo.seed);
    else
        rc = stochflow_solver_log_prob_ctx(lp, lo.trace == STOCHFLOW_TRACE_HUTCHINSON ? se : NULL,
                                           s, m, ds.x, cd.ctx, cd.labels, n, 1.0);
    progress_end(&bar);
    double secs = cli_now() - t0, nfe = 0;
    if (rc < 0) {
        cli_fail_lib(rc, "log-density");
        goto out;
    }
    solve_finished_despite_stop(0, stop_requested, "logp");
    if (sde) stochflow_sde_stat(&nfe, sde, STOCHFLOW_STAT_NFE);
    else stochflow_solver_stat(&nfe, s, STOCHFLOW_STAT_NFE);
    /* --sde: the mean over points of each point's standard error over its paths */
    double path_se = NAN;
    if (sde) {
        path_se = 0;
        for (size_t i = 0; i < n; ++i) path_se += se[i];
        path_se /= (double)n;
    }
    if (all_finite(lp, n, "point") != 0) goto out;
    double nll, nse;
    nll_stats(&nll, &nse, lp, n);
    /* truth where known: entropy, gap = NLL - H, and the paired KL estimate */
    double entropy = NAN, gap = NAN, kl = NAN, kl_se = NAN;
    if (ds.toy) {
        lt = malloc(n * sizeof(float));
        if (lt && stochflow_toy_log_density(lt, &entropy, ds.name, ds.x, n) == 0) {
            gap = nll - entropy;
            float *diff = malloc(n * sizeof(float));
            if (diff) {
                for (size_t i = 0; i < n; ++i) diff[i] = lp[i] - lt[i];
                nll_stats(&kl, &kl_se, diff, n);
                free(diff);
            }
        }
    }
    if (outp && matrix_write(outp, lp, n, 1, "logp") != 0) goto out;
    printf("NLL %.4f +- %.4f nats (mean -log p over %zu %s points; %s; %.0f evaluations; "
           "%.2f s)\n",
           nll, nse, n, ds.toy ? "held-out" : "data",
           sde ? "SDE paths" : lo.trace == STOCHFLOW_TRACE_EXACT ? "exact trace" : "Hutchinson trace",
           nfe, secs);
    if (sde) printf("SDE likelihood: mean per-point standard error over the paths %.4f nats\n", path_se);
    if (isfinite(entropy))
        printf("true entropy %.4f nats; gap NLL - entropy %.4f nats (paired KL estimate %.4f "
               "+- %.4f)\n",
               entropy, gap, kl, kl_se);
    if (opt(o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jnum(&j, "nll", nll);
        jnum(&j, "se", nse);
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "trace", lo.trace == STOCHFLOW_TRACE_EXACT ? "exact" : "hutchinson");
        jstr(&j, "data", src);
        jstr(&j, "likelihood", sde ? "sde" : "ode");
        if (sde) jnum(&j, "path_se", path_se);
        if (isfinite(entropy)) {
            jnum(&j, "entropy", entropy);
            jnum(&j, "gap", gap);
            jnum(&j, "kl", kl);
            jnum(&j, "kl_se", kl_se);
        }
        jend(&j);
    }
    ret = 0;
out:
    free(lp);
    free(se);
    free(lt);
    cond_free(&cd);
    dataset_free(&ds);
    stochflow_solver_free(s);
    stochflow_sde_free(sde);
    stochflow_model_free(score);
    return ret;
}

/* ---- images (a U-Net model): bits per dimension ------------------------------------------ */

/* The conditioning of the im->n images: --labels dataset (the images' own labels: the IDX
 * label file beside them) or as for points (cond_points: L, FILE, --context). --guidance
 * needs a conditional model. 0, CLI_USAGE or CLI_ERR (printed). */
static int image_conditioning(cond_data *cd, const imageset *im, stochflow_model *m,
                              const opts *o) {
    size_t mk = 0, mc = 0, nc = 0;
    stochflow_model_context(&mk, &mc, m);
    const char *lab = opt(o, "--labels");
    if (opt(o, "--guidance") && mk == 0 && mc == 0)
        return cli_usage("logp: --guidance needs a conditional model (train it with --labels "
                         "and --ctx-dropout)");
    if (!lab || strcmp(lab, "dataset") != 0) return cond_points(cd, o, "logp", im->n, mk, mc);
    if (mc == 0)
        return cli_usage("logp: --labels dataset given but the model has no classes (train it "
                         "with --labels)");
    opts lo = *o; /* the context, if any, through cond_points; the labels here */
    for (size_t k = 0; k < lo.n; ++k)
        if (strcmp(lo.defs[k].name, "--labels") == 0) lo.val[k] = NULL;
    int rc = cond_points(cd, &lo, "logp", im->n, mk, mc);
    if (rc == 0 && (rc = images_dataset_labels(&cd->labels, &nc, im, "logp")) == 0 && nc > mc)
        rc = cli_fail("logp: the labels of %s reach class %zu but the model has %zu classes",
                      im->source, nc - 1, mc);
    if (rc != 0) cond_free(cd);
    return rc;
}

static int logp_images(stochflow_model *m, opts *o) {
    static const char *const no[] = {"--base"};
    const char *outp = opt(o, "--out");
    logp_opts lo;
    uint64_t n_eval, batch;
    unet_shape u;
    int rc;
    opt_alias(o, "-n", "--n-eval");
    if ((rc = refuse(o, no, sizeof no / sizeof no[0], "is not supported for image models")) != 0 ||
        (rc = parse_logp(&lo, o, STOCHFLOW_TRACE_HUTCHINSON)) != 0 ||
        (rc = get_u64(o, "--n-eval", 256, 1, 1u << 30, &n_eval)) != 0 ||
        (rc = get_u64(o, "--batch", 64, 1, 1 << 16, &batch)) != 0)
        return rc;
    const char *src = opt(o, "--data") ? opt(o, "--data") : "fashion-mnist:test";
    int k = images_source("logp", src);
    if (k < 0) return k;
    if (k == 0)
        return cli_usage("logp: %s is an image model: --data must be image data (%s), got '%s'",
                         opt(o, "--model"), IMG_SOURCES_HELP, src);
    if ((rc = unet_model_shape(&u, m, "logp", opt(o, "--model"))) != 0) return rc;
    const char *inputs[] = {opt(o, "--model"), source_file(src)};
    if (outp && check_output("logp", outp, inputs, 2) != 0) return CLI_ERR;
    if ((rc = set_threads(m, o, default_threads())) != 0) return rc;
    stochflow_solver *s = NULL;
    stochflow_sde *sde = NULL;
    stochflow_model *score = NULL;
    imageset im = {0};
    cond_data cd = {0};
    float *x = NULL, *lp = NULL, *se = NULL, *res = NULL;
    int ret = CLI_ERR;
    double nfe = 0;
    if (opt(o, "--sde") &&
        (ret = cli_sde_setup(&sde, &score, m, o, lo.so.steps, STOCHFLOW_TRACE_HUTCHINSON)) != 0)
        goto out;
    ret = CLI_ERR;
    if (images_open(&im, "logp", src, 1, (size_t)n_eval) != 0 ||
        unet_check_images(&u, &im, "logp", opt(o, "--model")) != 0)
        goto out;
    if (opt(o, "--n-eval") && im.n < n_eval) {
        cli_fail("logp: --n-eval %llu but %s has only %zu images", (unsigned long long)n_eval,
                 src, im.n);
        goto out;
    }
    size_t n = im.n, d = im.d;
    if (logp_solver(&s, &lo) != 0) goto out;
    if ((rc = image_conditioning(&cd, &im, m, o)) != 0 ||
        (rc = cond_guidance(s, o, "logp")) != 0) {
        ret = rc;
        goto out;
    }
    x = malloc(n * d * sizeof(float));
    lp = malloc(n * sizeof(float));
    se = malloc(n * sizeof(float));
    if (x == NULL || lp == NULL || se == NULL) {
        cli_fail("logp: out of memory for %zu images", n);
        goto out;
    }
    /* fixed dequantization: keyed by (--seed, a stream training never uses) */
    if ((rc = stochflow_images_dequantize(x, im.px, n * d, lo.seed, IMG_EVAL_STREAM)) < 0) {
        cli_fail_lib(rc, "dequantization");
        goto out;
    }
    progress bar;
    progress_start(&bar, "logp", (double)n, "images");
    chunk_progress cp = {.bar = &bar, .t0 = 1.0, .t1 = 0.0};
    stochflow_solver_set_progress(s, on_chunk_progress, &cp);
    double t0 = cli_now();
    for (size_t off = 0, c = 0; off < n; off += (size_t)batch, ++c) {
        size_t cnt = n - off < batch ? n - off : (size_t)batch;
        cp.done = (double)off;
        cp.chunk = (double)cnt;
        /* Hutchinson probes are keyed by (solver seed, row): a new seed per chunk */
        if ((rc = stochflow_solver_set_seed(s, mix64(lo.seed + c))) < 0) break;
        if (sde) /* the SDE's paths and probes: keyed by the same per-chunk seed */
            rc = stochflow_sde_log_prob_ctx(lp + off, se + off, sde, m, score, x + off * d,
                                            cd.ctx ? cd.ctx + off * cd.k : NULL,
                                            cd.labels ? cd.labels + off : NULL, cnt,
                                            mix64(lo.seed + c));
        else
            rc = stochflow_solver_log_prob_ctx(lp + off, se + off, s, m, x + off * d,
                                               cd.ctx ? cd.ctx + off * cd.k : NULL,
                                               cd.labels ? cd.labels + off : NULL, cnt, 1.0);
        if (rc < 0) break;
        double f = 0;
        if (sde) stochflow_sde_stat(&f, sde, STOCHFLOW_STAT_NFE);
        else stochflow_solver_stat(&f, s, STOCHFLOW_STAT_NFE);
        nfe += f;
        double sum = 0;
        for (size_t i = 0; i < off + cnt; ++i) sum += stochflow_bits_per_dim(lp[i], d);
        snprintf(cp.extra, sizeof cp.extra, "bpd %.4f", sum / (double)(off + cnt));
    }
    progress_end(&bar);
    double secs = cli_now() - t0;
    if (rc < 0) {
        cli_fail_lib(rc, "log-density");
        goto out;
    }
    solve_finished_despite_stop(0, stop_requested, "logp");
    if (all_finite(lp, n, "image") != 0) goto out;
    /* bits/dim per image, then the mean and its standard error over images */
    int hutch = lo.trace == STOCHFLOW_TRACE_HUTCHINSON;
    double sb = 0, sb2 = 0, mse = 0;
    for (size_t i = 0; i < n; ++i) sb += stochflow_bits_per_dim(lp[i], d);
    double bpd = sb / (double)n;
    for (size_t i = 0; i < n; ++i) {
        double e = stochflow_bits_per_dim(lp[i], d) - bpd;
        sb2 += e * e;
        if ((hutch && lo.probes > 1) || sde) mse += se[i] / ((double)d * 0.6931471805599453);
    }
    double bpd_se = n > 1 ? sqrt(sb2 / (double)(n - 1) / (double)n) : NAN;
    double probe_se = (hutch && lo.probes > 1) || sde ? mse / (double)n : NAN;
    double nll, nll_se;
    nll_stats(&nll, &nll_se, lp, n);
    if (outp) {
        res = malloc(n * 2 * sizeof(float));
        if (res == NULL) {
            cli_fail("logp: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; ++i) {
            res[2 * i] = lp[i];
            res[2 * i + 1] = (float)stochflow_bits_per_dim(lp[i], d);
        }
        if (matrix_write(outp, res, n, 2, "logp,bpd") != 0) goto out;
    }
    char how[160];
    double eps = 0, paths = 0;
    if (sde) {
        stochflow_sde_get_param(&eps, sde, STOCHFLOW_PARAM_SDE_EPS);
        stochflow_sde_get_param(&paths, sde, STOCHFLOW_PARAM_SDE_PATHS);
        snprintf(how, sizeof how, "SDE likelihood eps %g, Euler-Maruyama %llu steps, %g paths "
                 "per image", eps, (unsigned long long)lo.so.steps, paths);
    } else if (lo.so.kind == STOCHFLOW_SOLVER_DOPRI5)
        snprintf(how, sizeof how, "dopri5 rtol %g atol %g", lo.so.rtol, lo.so.atol);
    else
        snprintf(how, sizeof how, "%s %llu steps", keyword_name(SOLVERS, lo.so.kind),
                 (unsigned long long)lo.so.steps);
    if (n > 1) {
        printf("bits/dim %.4f +- %.4f (mean and standard error over %zu dequantized images of "
               "%s, %zux%zux%zu)\n",
               bpd, bpd_se, n, src, im.c, im.h, im.w);
        printf("NLL %.2f +- %.2f nats per image; %s trace", nll, nll_se,
               hutch ? "Hutchinson" : "exact");
    } else { /* no standard error from one image (JSON: null) */
        printf("bits/dim %.4f (one dequantized image of %s, %zux%zux%zu: no standard error)\n",
               bpd, src, im.c, im.h, im.w);
        printf("NLL %.2f nats; %s trace", nll, hutch ? "Hutchinson" : "exact");
    }
    if (hutch) printf(" (%llu probe(s)%s)", sde ? 1ull : (unsigned long long)lo.probes,
                      sde ? " per path" : "");
    printf(", %s, dequantization seed %llu, %.0f evaluations, %.2f s\n", how,
           (unsigned long long)lo.seed, nfe, secs);
    if (isfinite(probe_se))
        printf("%s: mean per-image standard error %.4f bits/dim\n",
               sde ? "SDE paths" : "Hutchinson noise", probe_se);
    double w = 0;
    stochflow_solver_get_param(&w, s, STOCHFLOW_PARAM_GUIDANCE);
    size_t mk = 0, mc = 0;
    stochflow_model_context(&mk, &mc, m);
    if (cd.labels && w == 0)
        printf("conditional: log p(x | class) given --labels %s\n", opt(o, "--labels"));
    else if (cd.labels)
        printf("guided (w = %g): the guided flow's density given --labels %s, not p(x | class)\n",
               w, opt(o, "--labels"));
    else if (mc > 0 || mk > 0)
        printf("conditional model without conditioning: its unconditional density (label -1)\n");
    if (outp) printf("wrote %s (logp, bpd per image)\n", outp);
    if (opt(o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "n", n);
        jnum(&j, "bpd", bpd);
        jnum(&j, "bpd_se", bpd_se);
        jnum(&j, "nll", nll);
        jnum(&j, "se", nll_se);
        jstr(&j, "trace", hutch ? "hutchinson" : "exact");
        jint(&j, "probes", hutch ? (sde ? 1 : lo.probes) : 0);
        jstr(&j, "likelihood", sde ? "sde" : "ode");
        if (sde) {
            jnum(&j, "sde_eps", eps);
            jnum(&j, "paths", paths);
        }
        jstr(&j, "solver", sde ? "em" : keyword_name(SOLVERS, lo.so.kind));
        jnum(&j, "rtol", lo.so.rtol);
        jnum(&j, "atol", lo.so.atol);
        jint(&j, "dequant_seed", lo.seed);
        jnum(&j, "nfe", nfe);
        jnum(&j, "seconds", secs);
        jstr(&j, "data", src);
        jint(&j, "channels", im.c);
        jint(&j, "height", im.h);
        jint(&j, "width", im.w);
        if (isfinite(probe_se)) jnum(&j, sde ? "path_se_bpd" : "probe_se_bpd", probe_se);
        jstr(&j, "labels", opt(o, "--labels"));
        jnum(&j, "guidance", w);
        jend(&j);
    }
    ret = 0;
out:
    free(x);
    free(lp);
    free(se);
    free(res);
    cond_free(&cd);
    images_close(&im);
    stochflow_solver_free(s);
    stochflow_sde_free(sde);
    stochflow_model_free(score);
    return ret;
}

/* ---- the command -------------------------------------------------------------------------- */

int cmd_logp(int argc, char **argv) {
    opts o;
    catch_signals();
    int rc = cli_parse(&o, "logp", "--model MODEL --data SRC [options]", LOGP_OPTS,
                       sizeof LOGP_OPTS / sizeof LOGP_OPTS[0], argc, argv);
    if (rc != 0) return rc > 0 ? 0 : EXIT_USAGE;
    logp_opts lo;
    uint64_t v;
    /* values whose syntax and range do not depend on the model: before it is read */
    if ((rc = need(&o, "--model")) != 0 ||
        (rc = parse_logp(&lo, &o, STOCHFLOW_TRACE_EXACT)) != 0 ||
        (rc = get_u64(&o, "--threads", 1, 1, 256, &v)) != 0)
        return cli_exit_code(rc);
    stochflow_model *m = NULL;
    if (load_model(&m, opt(&o, "--model")) != 0) return 1;
    rc = model_is_unet(m) ? logp_images(m, &o) : logp_points(m, &o);
    stochflow_model_free(m);
    return rc == 0 ? 0 : cli_exit_code(rc);
}
