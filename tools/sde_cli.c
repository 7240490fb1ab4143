/* sde_cli.c - the stochastic-interpolant options of the tool: the training objective of
 * `train` and the SDE sampler of `sample` and `logp` (doc/cli.md, doc/sde.md). */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "sde_cli.h"

static const keyword OBJECTIVES[] = {{"velocity", STOCHFLOW_FIELD_VELOCITY},
                                     {"drift", STOCHFLOW_FIELD_DRIFT},
                                     {"score", STOCHFLOW_FIELD_SCORE},
                                     {"denoiser", STOCHFLOW_FIELD_DENOISER},
                                     {NULL, 0}};
static const keyword GAMMAS[] = {{"zero", STOCHFLOW_GAMMA_ZERO},
                                 {"brownian", STOCHFLOW_GAMMA_BROWNIAN},
                                 {"quadratic", STOCHFLOW_GAMMA_QUADRATIC},
                                 {"sin2", STOCHFLOW_GAMMA_SIN2},
                                 {NULL, 0}};
static const keyword SDE_METHODS[] = {
    {"em", STOCHFLOW_SDE_EULER_MARUYAMA}, {"heun", STOCHFLOW_SDE_HEUN}, {NULL, 0}};

/* KIND[:SCALE]: brownian:C is the scaled Brownian schedule sqrt(C t (1 - t)). */
static int parse_gamma(int *kind, double *scale, const char *cmd, const char *spec) {
    char name[32];
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (len >= sizeof name) return cli_usage("%s: --gamma '%s' is not KIND[:SCALE]", cmd, spec);
    memcpy(name, spec, len);
    name[len] = '\0';
    *kind = 0;
    for (const keyword *k = GAMMAS; k->name; ++k)
        if (strcmp(k->name, name) == 0) *kind = k->code;
    if (*kind == 0)
        return cli_usage("%s: --gamma '%s': KIND is zero|brownian|quadratic|sin2", cmd, spec);
    *scale = 0.0;
    if (!colon) return 0;
    char *end;
    *scale = strtod(colon + 1, &end);
    if (*kind != STOCHFLOW_GAMMA_BROWNIAN || end == colon + 1 || *end != '\0' ||
        !(*scale > 0.0 && *scale <= 1e6))
        return cli_usage("%s: --gamma '%s': only brownian takes a SCALE, a number in (0, 1e6]",
                         cmd, spec);
    *kind = STOCHFLOW_GAMMA_BROWNIAN_SCALED;
    return 0;
}

int cli_set_objective(stochflow_config *cfg, const opts *o) {
    const char *g = opt(o, "--gamma");
    if (!opt(o, "--objective") && !g && !opt(o, "--antithetic")) return 0;
    int field, gamma = STOCHFLOW_GAMMA_ZERO, rc;
    double scale = 0.0;
    if ((rc = get_keyword(o, "--objective", OBJECTIVES, STOCHFLOW_FIELD_VELOCITY, &field)) != 0)
        return rc;
    if (g && (rc = parse_gamma(&gamma, &scale, o->cmd, g)) != 0) return rc;
    /* drift, score and denoiser without --gamma: the Brownian gamma sqrt(t (1 - t)) */
    if (!g && field != STOCHFLOW_FIELD_VELOCITY) gamma = STOCHFLOW_GAMMA_BROWNIAN;
    int flags = opt(o, "--antithetic") ? STOCHFLOW_OBJECTIVE_ANTITHETIC : 0;
    if ((rc = stochflow_config_set_objective(cfg, field, STOCHFLOW_SI_TWO_SIDED, gamma, scale,
                                             flags)) < 0)
        return cli_usage("%s: --objective/--gamma: %s", o->cmd, stochflow_last_error_message());
    return 0;
}

/* eps on (h/2, 1 - h/2), 0 on the first and last steps of the grid (one per run) */
static struct {
    double eps, h;
} inner_eps;
static double eps_inside(void *user, double t) {
    (void)user;
    return t > inner_eps.h / 2 && t < 1.0 - inner_eps.h / 2 ? inner_eps.eps : 0.0;
}

void cli_objective_info(const stochflow_config *c, json *j) {
    int field = 0, gamma = 0, flags = 0;
    double scale = 0;
    stochflow_config_objective(&field, NULL, &gamma, &scale, &flags, c);
    const char *g = gamma == STOCHFLOW_GAMMA_BROWNIAN_SCALED ? "brownian"
                                                             : keyword_name(GAMMAS, gamma);
    int anti = (flags & STOCHFLOW_OBJECTIVE_ANTITHETIC) != 0;
    if (j == NULL) {
        printf("objective    %s, gamma %s", keyword_name(OBJECTIVES, field), g);
        if (scale > 0) printf(":%g", scale);
        printf("%s\n", anti ? ", antithetic" : "");
        return;
    }
    jstr(j, "objective", keyword_name(OBJECTIVES, field));
    jstr(j, "gamma", g);
    jnum(j, "gamma_scale", scale);
    jkey(j, "antithetic");
    jraw(j, "%s", anti ? "true" : "false");
}

/* The field a model was trained for, and its gamma kind. */
static int model_objective(const stochflow_model *m, int *gamma) {
    stochflow_config *c = NULL;
    int field = 0;
    *gamma = 0;
    if (stochflow_model_config(&c, m) == 0)
        stochflow_config_objective(&field, NULL, gamma, NULL, NULL, c);
    stochflow_config_free(c);
    return field;
}

int cli_sde_setup(stochflow_sde **sde, stochflow_model **score, stochflow_model *m,
                  const opts *o, uint64_t def_steps, int def_trace) {
    double eps, w;
    uint64_t steps, paths;
    int method, trace, rc;
    *sde = NULL;
    *score = NULL;
    if ((rc = get_double(o, "--sde", 0.0, 0.0, 1e6, &eps)) != 0 ||
        (rc = get_keyword(o, "--sde-method", SDE_METHODS, STOCHFLOW_SDE_HEUN, &method)) != 0 ||
        (rc = get_u64(o, "--steps", def_steps, 1, 100000000, &steps)) != 0 ||
        (rc = get_u64(o, "--paths", 16, 1, 65536, &paths)) != 0 ||
        (rc = get_double(o, "--guidance", 0.0, -1.0, 1000.0, &w)) != 0 ||
        (rc = get_keyword(o, "--trace", TRACES, def_trace, &trace)) != 0)
        return rc;
    int gd, gs = 0;
    int fd = model_objective(m, &gd), fs = 0;
    if (fd == STOCHFLOW_FIELD_SCORE || fd == STOCHFLOW_FIELD_DENOISER)
        return cli_usage("%s: --model is a %s model: give the drift (or velocity) model as "
                         "--model and this one as --score", o->cmd, keyword_name(OBJECTIVES, fd));
    if (opt(o, "--score")) {
        if (load_model(score, opt(o, "--score")) != 0) return CLI_ERR;
        if ((rc = set_threads(*score, o, default_threads())) != 0) goto fail;
        fs = model_objective(*score, &gs);
        if (fs != STOCHFLOW_FIELD_SCORE && fs != STOCHFLOW_FIELD_DENOISER) {
            rc = cli_usage("%s: --score '%s' was trained for the %s, not the score or the "
                           "denoiser (train --objective score|denoiser)", o->cmd,
                           opt(o, "--score"), keyword_name(OBJECTIVES, fs));
            goto fail;
        }
        if (stochflow_model_dim(*score) != stochflow_model_dim(m)) {
            rc = cli_fail("%s: --score has dimension %zu, --model %zu", o->cmd,
                          stochflow_model_dim(*score), stochflow_model_dim(m));
            goto fail;
        }
    } else if (gd != STOCHFLOW_GAMMA_ZERO && eps > 0) {
        rc = cli_usage("%s: --model was trained with a gamma: give its score model with "
                       "--score (the score from the velocity needs a gamma-free model)", o->cmd);
        goto fail;
    }
    rc = CLI_ERR;
    stochflow_sinterp *si = NULL;
    int lrc = stochflow_sde_new(sde);
    if (lrc >= 0) lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_METHOD, method);
    if (lrc >= 0) lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_STEPS, (double)steps);
    if (lrc >= 0 && eps > 0) lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_EPS, eps);
    if (lrc >= 0) lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_PATHS, (double)paths);
    /* a conditional model's guidance (checked against the model by the library) and the
     * likelihood's divergences (Hutchinson for images) */
    if (lrc >= 0) lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_GUIDANCE, w);
    if (lrc >= 0) lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_TRACE, trace);
    /* what the drift model outputs: the drift b, or a velocity (b = v - c2 c2' s, which
     * is v itself for a gamma-free model) */
    int drift_kind = fd == STOCHFLOW_FIELD_VELOCITY && gd != STOCHFLOW_GAMMA_ZERO
                         ? STOCHFLOW_FIELD_VELOCITY : STOCHFLOW_FIELD_DRIFT;
    if (lrc >= 0) lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_DRIFT, drift_kind);
    if (lrc >= 0)
        lrc = stochflow_sde_set_param(*sde, STOCHFLOW_PARAM_SDE_SCORE,
                                      *score ? fs : STOCHFLOW_FIELD_SCORE_FROM_VELOCITY);
    /* the gamma of the model form: the score model's (or the drift model's) interpolant */
    if (lrc >= 0 && (*score || gd != STOCHFLOW_GAMMA_ZERO))
        lrc = stochflow_model_sinterp(&si, *score ? *score : m);
    if (lrc >= 0 && si) lrc = stochflow_sde_set_interpolant(*sde, si);
    /* The score from the velocity is undefined at t = 1, a denoiser's s = eta / c2 at
     * t = 0 and t = 1 (c2 = 0): then no noise on the first and last steps. */
    if (lrc >= 0 && eps > 0 && (!*score || fs == STOCHFLOW_FIELD_DENOISER)) {
        inner_eps.eps = eps;
        inner_eps.h = 1.0 / (double)steps;
        lrc = stochflow_sde_set_eps_schedule(*sde, eps_inside, &inner_eps);
    }
    stochflow_sinterp_free(si);
    if (lrc >= 0) return 0;
    cli_fail_lib(lrc, "SDE sampler");
fail:
    stochflow_sde_free(*sde);
    stochflow_model_free(*score);
    *sde = NULL;
    *score = NULL;
    return rc;
}

int cli_sde_sample(float *x, double *nfe, stochflow_sde *sde, stochflow_model *m,
                   stochflow_model *score, const float *ctx, const int32_t *labels, size_t n,
                   uint64_t seed) {
    int rc = stochflow_sde_sample_ctx(x, sde, m, score, ctx, labels, n, seed);
    if (rc < 0) return cli_fail_lib(rc, "SDE sampling");
    stochflow_sde_stat(nfe, sde, STOCHFLOW_STAT_NFE);
    return 0;
}
