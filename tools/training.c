/* training.c - the training loop shared by `train` (every kind of data) and `demo`:
 * steps, the running loss for the progress display, periodic checkpoints, a per-step hook
 * (image sample grids), Ctrl-C. Public API of <stochflow.h> only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "training.h"

#define LOSS_WINDOW 100

static int keep(double **hist, size_t *cap, uint64_t i, double loss) {
    if (i >= *cap) {
        size_t nc = *cap ? 2 * *cap : 1024;
        double *h = realloc(*hist, nc * sizeof(double));
        if (h == NULL) return CLI_ERR;
        *hist = h;
        *cap = nc;
    }
    (*hist)[i] = loss;
    return 0;
}

int train_run(train_result *res, stochflow_model *m, const train_spec *sp) {
    memset(res, 0, sizeof *res);
    double ring[LOSS_WINDOW], run = NAN;
    size_t hcap = 0;
    int show_path = cli_is_fourier(m), ret = 0;
    progress bar;
    progress_start(&bar, sp->label, (double)sp->steps, "steps");
    double t0 = cli_now();
    for (uint64_t s = 0; s < sp->steps; ++s) {
        if (stop_requested) {
            res->interrupted = 1;
            break;
        }
        const float *x = NULL, *x0 = NULL;
        if (sp->fill(sp->fill_user, &x, &x0, stochflow_model_step(m)) != 0) {
            ret = CLI_ERR;
            break;
        }
        double loss;
        int st = stochflow_model_train_step(&loss, m, x, sp->batch, x0, NULL);
        if (st < 0) {
            progress_end(&bar);
            ret = cli_fail_lib(st, "training step");
            break;
        }
        if (sp->keep_history && keep(&res->history, &hcap, s, loss) != 0) {
            progress_end(&bar);
            ret = cli_fail("out of memory for the loss history of %llu steps",
                           (unsigned long long)s + 1);
            break;
        }
        ring[s % LOSS_WINDOW] = loss;
        res->steps_run = s + 1;
        run = isnan(run) ? loss : 0.98 * run + 0.02 * loss;
        uint64_t now = stochflow_model_step(m);
        if (sp->checkpoint && sp->checkpoint_every && now % sp->checkpoint_every == 0) {
            int rc = stochflow_model_save(m, sp->checkpoint);
            if (rc < 0) {
                snprintf(res->fail, sizeof res->fail, "%s: %s (%s)", sp->checkpoint,
                         stochflow_last_error_message(), stochflow_status_string(rc));
                break;
            }
            ++res->checkpoints;
        }
        if (sp->hook) {
            int h = sp->hook(sp->hook_user, m, now, res->fail, sizeof res->fail);
            if (h == 1) {
                res->interrupted = 1;
                break;
            }
            if (h != 0) break;
        }
        char extra[64];
        double pl; /* the learnable interpolant's path-length estimate as training goes */
        if (show_path && stochflow_model_path_length(&pl, NULL, m) == 0)
            snprintf(extra, sizeof extra, "loss %.4f path %.3f", run, pl);
        else
            snprintf(extra, sizeof extra, "loss %.4f", run);
        progress_update(&bar, (double)(s + 1), extra);
    }
    progress_end(&bar);
    res->seconds = cli_now() - t0;
    res->mean_loss = res->last_loss = NAN;
    if (res->steps_run > 0) {
        size_t k = res->steps_run < LOSS_WINDOW ? (size_t)res->steps_run : LOSS_WINDOW;
        double acc = 0;
        for (size_t i = 0; i < k; ++i) acc += ring[i];
        res->mean_loss = acc / (double)k;
        res->last_loss = ring[(res->steps_run - 1) % LOSS_WINDOW];
    }
    return ret;
}

/* ---- batches of 2-D/tabular data ------------------------------------------------------ */

/* 2-D/tabular data. Toys: a fresh draw from stream = step ("infinite data"). Files: rows
 * drawn uniformly with replacement, indices from the library's counter-based normals keyed
 * by (seed, stream = step, i). Base samples (--base) from transport.c. */
int fill_points(void *user, const float **x, const float **x0, uint64_t step) {
    points_batch *p = user;
    const dataset *ds = p->ds;
    int rc;
    if (ds->toy) {
        if ((rc = stochflow_toy_sample(p->x, ds->name, p->b, p->seed, step)) < 0)
            return cli_fail_lib(rc, "toy data");
    } else {
        if ((rc = stochflow_random_normal(p->z, p->b, p->seed, step)) < 0)
            return cli_fail_lib(rc, "minibatch indices");
        for (size_t i = 0; i < p->b; ++i)
            memcpy(p->x + i * ds->d, ds->x + normal_to_index(p->z[i], ds->n) * ds->d,
                   ds->d * sizeof(float));
    }
    if (p->base && cli_base_batch(p->x0, p->z, p->base, p->b, p->seed, step) != 0)
        return CLI_ERR;
    *x = p->x;
    *x0 = p->base ? p->x0 : NULL;
    return 0;
}

/* Optimizer options: name, parameter, bounds. */
static const struct {
    const char *name;
    int key;
    double lo, hi;
} TRAIN_PARAMS[] = {
    {"--lr", STOCHFLOW_PARAM_LR, 1e-12, 10},
    {"--lr-decay-every", STOCHFLOW_PARAM_LR_DECAY_EVERY, 1, 1e12},
    {"--lr-decay-factor", STOCHFLOW_PARAM_LR_DECAY_FACTOR, 1e-6, 1},
    {"--lr-min", STOCHFLOW_PARAM_LR_MIN, 0, 10},
    {"--warmup", STOCHFLOW_PARAM_LR_WARMUP, 0, 1e12},
    {"--ema", STOCHFLOW_PARAM_EMA_DECAY, 0, 0.999999},
    {"--clip", STOCHFLOW_PARAM_GRAD_CLIP, 0, 1e12},
    {"--weight-decay", STOCHFLOW_PARAM_WEIGHT_DECAY, 0, 10},
};
#define N_TRAIN_PARAMS (sizeof TRAIN_PARAMS / sizeof TRAIN_PARAMS[0])

int check_train_params(const opts *o) {
    double v;
    int sch, rc;
    for (size_t i = 0; i < N_TRAIN_PARAMS; ++i)
        if (has_opt(o, TRAIN_PARAMS[i].name) &&
            (rc = get_double(o, TRAIN_PARAMS[i].name, 0, TRAIN_PARAMS[i].lo, TRAIN_PARAMS[i].hi,
                             &v)) != 0)
            return rc;
    if (has_opt(o, "--lr-schedule") &&
        (rc = get_keyword(o, "--lr-schedule", SCHEDULES, STOCHFLOW_LR_CONSTANT, &sch)) != 0)
        return rc;
    return check_coupling(o);
}

int apply_recipe(stochflow_model *m, uint64_t steps) {
    int rc;
    if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, RECIPE_LR)) < 0 ||
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, STOCHFLOW_LR_COSINE)) < 0 ||
        (steps > 0 &&
         (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps)) < 0))
        return cli_fail_lib(rc, "training recipe");
    return 0;
}

int apply_train_params(stochflow_model *m, const opts *o, int fresh, uint64_t steps) {
    int rc;
    if ((rc = check_train_params(o)) != 0) return rc;
    for (size_t i = 0; i < N_TRAIN_PARAMS; ++i) {
        double v;
        if (!has_opt(o, TRAIN_PARAMS[i].name) || opt(o, TRAIN_PARAMS[i].name) == NULL) continue;
        get_double(o, TRAIN_PARAMS[i].name, 0, TRAIN_PARAMS[i].lo, TRAIN_PARAMS[i].hi, &v);
        if ((rc = stochflow_model_set_param(m, TRAIN_PARAMS[i].key, v)) < 0)
            return cli_fail_lib(rc, TRAIN_PARAMS[i].name);
    }
    /* --ema-warmup (a flag; only train declares it): Keras-style EMA warm-up */
    if (opt(o, "--ema-warmup") != NULL &&
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_WARMUP, 1)) < 0)
        return cli_fail_lib(rc, "--ema-warmup");
    if ((rc = cli_set_coupling(m, o)) != 0) return rc; /* --coupling, --interp-lr */
    if (opt(o, "--lr-schedule") != NULL) {
        int sch;
        get_keyword(o, "--lr-schedule", SCHEDULES, STOCHFLOW_LR_CONSTANT, &sch);
        if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, sch)) < 0)
            return cli_fail_lib(rc, "--lr-schedule");
        /* a fresh cosine schedule spans exactly this run */
        if (sch == STOCHFLOW_LR_COSINE && fresh &&
            (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps)) < 0)
            return cli_fail_lib(rc, "--lr-schedule cosine");
    }
    return 0;
}

/* ---- MLP models ------------------------------------------------------------------------ */

#define MAX_LAYERS 64

typedef struct {
    size_t widths[MAX_LAYERS];
    int nh, act;
    uint64_t seed, nfreq;
} mlp_opts;

static int parse_mlp(mlp_opts *mo, const opts *o, const char *def_hidden, int def_fourier) {
    int rc;
    mo->nh = parse_list(o->cmd, "--hidden", opt(o, "--hidden") ? opt(o, "--hidden") : def_hidden,
                        mo->widths, MAX_LAYERS, 1, 65536);
    if (mo->nh < 0) return mo->nh;
    if ((rc = get_keyword(o, "--activation", ACTIVATIONS, STOCHFLOW_ACT_SILU, &mo->act)) != 0 ||
        (rc = get_u64(o, "--seed", 0, 0, UINT64_MAX, &mo->seed)) != 0 ||
        (rc = get_u64(o, "--time-fourier", (uint64_t)def_fourier, 0, 64, &mo->nfreq)) != 0)
        return rc;
    return 0;
}

int check_mlp_options(const opts *o) {
    mlp_opts mo;
    int rc = parse_mlp(&mo, o, "256", 0);
    if (rc != 0) return rc;
    stochflow_config *cfg = NULL;
    if (opt(o, "--interpolant") && stochflow_config_new(&cfg, 2) >= 0) {
        rc = cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant"));
        stochflow_config_free(cfg);
    }
    return rc;
}

int build_mlp(stochflow_model **m, const opts *o, size_t dim, const char *def_hidden,
              int def_fourier) {
    mlp_opts mo;
    int rc = parse_mlp(&mo, o, def_hidden, def_fourier);
    if (rc != 0) return rc;
    stochflow_config *cfg = NULL;
    rc = stochflow_config_new(&cfg, dim);
    if (rc >= 0) rc = stochflow_config_set_hidden(cfg, (size_t)mo.nh, mo.widths);
    if (rc >= 0) rc = stochflow_config_set_activation(cfg, mo.act);
    if (rc >= 0) {
        int irc = cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant"));
        if (irc != 0) {
            stochflow_config_free(cfg);
            return irc;
        }
    }
    if (rc >= 0) rc = stochflow_config_set_seed(cfg, mo.seed);
    if (rc >= 0 && mo.nfreq > 0)
        rc = stochflow_config_set_time_embedding(cfg, STOCHFLOW_TIME_FOURIER, (size_t)mo.nfreq);
    if (rc >= 0) rc = stochflow_model_new(m, cfg);
    stochflow_config_free(cfg);
    return rc < 0 ? cli_fail_lib(rc, "model") : 0;
}
