/* info.c - `stochflow info`: what a model file holds (dimension, network, interpolant,
 * optimizer settings); a U-Net model shows its shape. See doc/cli.md. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "images.h"
#include "sde_cli.h"

/* ---- the command ----------------------------------------------------------------------------- */

static const optdef INFO_OPTS[] = {
    {"--model", "MODEL", "checkpoint"},
    {"--json", NULL, "print a JSON summary as the last line"},
};

int cmd_info(int argc, char **argv) {
    opts o;
    int p = cli_parse(&o, "info", "--model MODEL [--json]", INFO_OPTS,
                      sizeof INFO_OPTS / sizeof INFO_OPTS[0], argc, argv);
    if (p != 0) return p > 0 ? 0 : EXIT_USAGE;
    if (need(&o, "--model")) return EXIT_USAGE;
    stochflow_model *m = NULL;
    stochflow_config *c = NULL;
    if (load_model(&m, opt(&o, "--model")) != 0) return 1;
    int rc = stochflow_model_config(&c, m);
    if (rc < 0) {
        stochflow_model_free(m);
        return cli_fail_lib(rc, "config"), 1;
    }
    size_t widths[64], nh = 0, nfreq = 0;
    int temb = 0;
    if ((rc = stochflow_config_hidden(&nh, widths, 64, c)) < 0 ||
        (rc = stochflow_config_time_embedding(&temb, &nfreq, c)) < 0) {
        stochflow_config_free(c);
        stochflow_model_free(m);
        return cli_fail_lib(rc, "config"), 1;
    }
    char hid[512] = "";
    for (size_t i = 0; i < nh && i < 64; ++i)
        snprintf(hid + strlen(hid), sizeof hid - strlen(hid), "%s%zu", i ? "," : "", widths[i]);
    /* parameters shown, by their names in the library's parameter table */
    static const char *const P[] = {"lr",           "lr_schedule", "ema_decay",
                                    "grad_clip",    "weight_decay", "threads",
                                    "lr_warmup",    "lr_total_steps"};
    enum { NP = sizeof P / sizeof *P };
    double pv[NP];
    for (size_t i = 0; i < NP; ++i) {
        int key;
        if (stochflow_param_key(&key, P[i]) < 0 || stochflow_model_get_param(&pv[i], m, key) < 0)
            pv[i] = NAN;
    }
    double tt = 0;
    const int batch_target =
        stochflow_model_get_param(&tt, m, STOCHFLOW_PARAM_TRAIN_TARGET) == 0 &&
        (int)tt == STOCHFLOW_TRAIN_TARGET_BATCH;
    struct stat st;
    long long bytes = stat(opt(&o, "--model"), &st) == 0 ? (long long)st.st_size : -1;
    const char *act = keyword_name(ACTIVATIONS, stochflow_config_activation(c));
    const char *interp = stochflow_config_interpolant(c) == STOCHFLOW_INTERP_CUSTOM
                             ? "custom"
                             : keyword_name(INTERPOLANTS, stochflow_config_interpolant(c));
    printf("model        %s (%lld bytes, libstochflow %s)\n", opt(&o, "--model"), bytes,
           stochflow_version_string());
    printf("dimension    %zu\n", stochflow_model_dim(m));
    size_t res_w = 0, res_b = 0, res_k = 0;
    const int res = stochflow_config_arch(c) == STOCHFLOW_ARCH_RESMLP &&
                    stochflow_config_resmlp(&res_w, &res_b, c) == 0 &&
                    stochflow_config_resmlp_experts(&res_k, c) == 0;
    if (!unet_info(c, NULL)) { /* a U-Net prints its shape instead */
        if (res) {
            printf("network      residual MLP, width %zu, %zu block(s)", res_w, res_b);
            if (res_k) printf(", %zu linear expert(s)", res_k);
            printf(" (%s)\n", act);
        } else
            printf("hidden       %s (%s)\n", hid, act);
        if (temb == STOCHFLOW_TIME_FOURIER)
            printf("time input   fourier, %zu frequencies\n", nfreq);
        else printf("time input   raw t\n");
    }
    printf("interpolant  %s\n", interp);
    size_t n_ctx = 0, n_classes = 0;
    double drop = 0.0;
    stochflow_config_context(&n_ctx, &n_classes, c);
    stochflow_model_get_param(&drop, m, STOCHFLOW_PARAM_CTX_DROPOUT);
    if (n_ctx || n_classes) /* a conditional model (doc/conditional.md) */
        printf("conditioning %zu context value(s), %zu classes, context dropout %g\n", n_ctx,
               n_classes, drop);
    cli_objective_info(c, NULL); /* sde_cli.c */
    printf("parameters   %zu\n", stochflow_model_num_params(m));
    printf("step         %llu\n", (unsigned long long)stochflow_model_step(m));
    printf("seed         %llu\n", (unsigned long long)stochflow_config_seed(c));
    printf("lr           %g (schedule %s", pv[0], keyword_name(SCHEDULES, (int)pv[1]));
    if ((int)pv[1] == STOCHFLOW_LR_COSINE) printf(" over %g steps", pv[7]);
    if (pv[6] > 0) printf(", %g warm-up steps", pv[6]);
    printf("), ema %g, clip %g, weight decay %g\n", pv[2], pv[3], pv[4]);
    if (batch_target) printf("target       batch posterior of dI/dt (train_target batch)\n");
    if (opt(&o, "--json")) {
        json j;
        jbegin(&j);
        jint(&j, "dim", stochflow_model_dim(m));
        unet_info(c, &j); /* "arch", and the U-Net shape */
        if (res) {
            jint(&j, "res_width", res_w);
            jint(&j, "res_blocks", res_b);
            jint(&j, "res_experts", res_k);
        } else {
            jkey(&j, "hidden");
            jraw(&j, "[%s]", hid);
        }
        jstr(&j, "activation", act);
        jstr(&j, "time_embedding", temb == STOCHFLOW_TIME_FOURIER ? "fourier" : "raw");
        jint(&j, "n_freq", temb == STOCHFLOW_TIME_FOURIER ? nfreq : 0);
        jstr(&j, "interpolant", interp);
        cli_objective_info(c, &j);
        jint(&j, "params", stochflow_model_num_params(m));
        jint(&j, "step", stochflow_model_step(m));
        jint(&j, "seed", stochflow_config_seed(c));
        for (size_t i = 0; i < NP; ++i) jnum(&j, P[i], pv[i]);
        jnum(&j, "bytes", (double)bytes);
        jstr(&j, "lr_schedule_name", keyword_name(SCHEDULES, (int)pv[1]));
        jstr(&j, "train_target",
             keyword_name(TRAIN_TARGETS, batch_target ? STOCHFLOW_TRAIN_TARGET_BATCH
                                                      : STOCHFLOW_TRAIN_TARGET_DRAW));
        if (n_ctx || n_classes) {
            jint(&j, "n_ctx", n_ctx);
            jint(&j, "n_classes", n_classes);
            jnum(&j, "ctx_dropout", drop);
        }
        jend(&j);
    }
    stochflow_config_free(c);
    stochflow_model_free(m);
    return 0;
}

