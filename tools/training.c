/* training.c - the training loop shared by `train` (every kind of data) and `demo`:
 * steps, the running loss for the progress display, periodic checkpoints, a per-step hook
 * (image sample grids), Ctrl-C. Public API of <stochflow.h> only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_driver.h"
#include "sde_cli.h"
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

double time_horizon(uint64_t step0, uint64_t done, double elapsed, double budget,
                    uint64_t max_steps) {
    double h = (double)step0 + (double)done / elapsed * budget;
    if (h < (double)(step0 + done) + 1) h = (double)(step0 + done) + 1;
    if (h > (double)(step0 + max_steps)) h = (double)(step0 + max_steps); /* done <= max */
    if (h > 1e12) h = 1e12;
    return floor(h);
}

int train_run(train_result *res, stochflow_model *m, const train_spec *sp) {
    memset(res, 0, sizeof *res);
    double ring[LOSS_WINDOW], run = NAN;
    size_t hcap = 0;
    int show_path = cli_is_fourier(m), ret = 0, budget_out = 0;
    progress bar;
    if (sp->seconds > 0) progress_start(&bar, sp->label, sp->seconds, "s");
    else progress_start(&bar, sp->label, (double)sp->steps, "steps");
    double t0 = cli_now();
    const uint64_t step0 = stochflow_model_step(m);
    /* under mpirun (tools/mpi_driver.c): each step is split across the processes, rank 0
     * alone writes and shows progress, and every process agrees after each step */
    const int ranks = dist_size(), writer = dist_rank() == 0;
    if (ranks > 1 && (sp->ctx || sp->labels)) {
        progress_end(&bar);
        return cli_fail("conditional models cannot be trained under mpirun (the data-parallel "
                        "step carries no context); train them in one process");
    }
    for (uint64_t s = 0; s < sp->steps; ++s) {
        if (stop_requested && ranks == 1) {
            res->interrupted = 1;
            break;
        }
        double elapsed = cli_now() - t0;
        if (sp->seconds > 0 && elapsed >= sp->seconds) { /* the time budget */
            budget_out = 1;
            break;
        }
        if (sp->seconds > 0 && sp->time_schedule && s % 10 == 0 && s > 0) {
            stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS,
                                      time_horizon(step0, s, elapsed, sp->seconds, sp->steps));
        }
        const float *x = NULL, *x0 = NULL;
        double loss;
        if (ranks > 1) {
            /* a filler's failure travels with the step's sums (its message printed here) */
            int local = sp->fill(sp->fill_user, &x, &x0, stochflow_model_step(m)) != 0;
            char why[512];
            if (dist_step(&loss, m, x, sp->batch, x0, local ? DIST_FAIL : DIST_OK,
                          "reading the batch failed (its message above)", why,
                          sizeof why) != DIST_OK) {
                progress_end(&bar);
                ret = writer ? cli_fail("training step: %s", why) : CLI_ERR;
                break;
            }
        } else {
            if (sp->fill(sp->fill_user, &x, &x0, stochflow_model_step(m)) != 0) {
                ret = CLI_ERR;
                break;
            }
            int st = stochflow_model_train_step_ctx(&loss, m, x, sp->ctx, sp->labels, sp->batch,
                                                    x0, NULL);
            if (st < 0) {
                progress_end(&bar);
                ret = cli_fail_lib(st, "training step");
                break;
            }
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
        int fail_now = 0, stop_now = 0;
        if (sp->checkpoint && sp->checkpoint_every && now % sp->checkpoint_every == 0) {
            int rc = writer ? stochflow_model_save(m, sp->checkpoint) : 0;
            if (rc < 0) {
                snprintf(res->fail, sizeof res->fail, "%s: %s (%s)", sp->checkpoint,
                         stochflow_last_error_message(), stochflow_status_string(rc));
                fail_now = 1;
            } else {
                ++res->checkpoints;
            }
        }
        if (sp->hook && !fail_now && writer) {
            int h = sp->hook(sp->hook_user, m, now, res->fail, sizeof res->fail);
            if (h == 1) stop_now = 1;
            else if (h != 0) fail_now = 1;
        }
        if (ranks > 1) { /* rank 0's files and everyone's Ctrl-C, agreed by every process */
            char why[sizeof res->fail];
            int a = dist_agree(fail_now ? DIST_FAIL : (stop_now || stop_requested) ? DIST_STOP
                                                                                   : DIST_OK,
                               res->fail, why, sizeof why);
            if (a == DIST_FAIL) {
                snprintf(res->fail, sizeof res->fail, "%s", why);
                break;
            }
            stop_now = a == DIST_STOP;
        }
        if (fail_now) break;
        if (stop_now) {
            res->interrupted = 1;
            break;
        }
        char extra[64];
        double pl; /* the learnable interpolant's path-length estimate as training goes */
        if (show_path && stochflow_model_path_length(&pl, NULL, m) == 0)
            snprintf(extra, sizeof extra, "loss %.4f path %.3f", run, pl);
        else
            snprintf(extra, sizeof extra, "loss %.4f", run);
        if (writer)
            progress_update(&bar, sp->seconds > 0 ? cli_now() - t0 : (double)(s + 1), extra);
    }
    progress_end(&bar);
    /* a run the time budget ended: its cosine spans the steps it ran (the estimate made
     * every 10 steps is never made in a budget of fewer steps than that) */
    if (budget_out && sp->time_schedule && res->steps_run > 0)
        stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS,
                                  (double)(step0 + res->steps_run));
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
 * drawn uniformly with replacement, indices from the library's counter-based uniforms keyed
 * by (seed, stream = step, i). Base samples (--base) from transport.c. */
int fill_points(void *user, const float **x, const float **x0, uint64_t step) {
    points_batch *p = user;
    const dataset *ds = p->ds;
    int rc;
    if (ds->toy) {
        if ((rc = stochflow_toy_sample(p->x, ds->name, p->b, p->seed, step)) < 0)
            return cli_fail_lib(rc, "toy data");
    } else {
        if ((rc = stochflow_random_uniform(p->u, p->b, p->seed, step)) < 0)
            return cli_fail_lib(rc, "minibatch indices");
        for (size_t i = 0; i < p->b; ++i) {
            size_t r = uniform_to_index(p->u[i], ds->n);
            memcpy(p->x + i * ds->d, ds->x + r * ds->d, ds->d * sizeof(float));
            if (p->ctx) memcpy(p->cb + i * p->k, p->ctx + r * p->k, p->k * sizeof(float));
            if (p->labels) p->lb[i] = p->labels[r];
        }
    }
    if (p->base && cli_base_batch(p->x0, p->u, p->base, p->b, p->seed, step) != 0)
        return CLI_ERR;
    *x = p->x;
    *x0 = p->base ? p->x0 : NULL;
    return 0;
}

/* Optimizer options and the library parameter each sets. Key and bounds come from the
 * library's parameter table (stochflow_param_key, stochflow_param_bounds), so an option
 * accepts exactly what stochflow_model_set_param accepts. */
static const struct {
    const char *option, *param;
} TRAIN_PARAMS[] = {
    {"--lr", "lr"},
    {"--lr-decay-every", "lr_decay_every"},
    {"--lr-decay-factor", "lr_decay_factor"},
    {"--lr-min", "lr_min"},
    {"--warmup", "lr_warmup"},
    {"--ema", "ema_decay"},
    {"--clip", "grad_clip"},
    {"--weight-decay", "weight_decay"},
    {"--grad-block", "grad_block"},
};
#define N_TRAIN_PARAMS (sizeof TRAIN_PARAMS / sizeof TRAIN_PARAMS[0])

static int train_param(int *key, double *v, const opts *o, size_t i) {
    return get_param_option(o, TRAIN_PARAMS[i].option, TRAIN_PARAMS[i].param, 0, key, v);
}

int check_train_params(const opts *o) {
    double v;
    int key, sch, rc;
    for (size_t i = 0; i < N_TRAIN_PARAMS; ++i)
        if (has_opt(o, TRAIN_PARAMS[i].option) && (rc = train_param(&key, &v, o, i)) != 0)
            return rc;
    if (has_opt(o, "--lr-schedule") &&
        (rc = get_keyword(o, "--lr-schedule", SCHEDULES, STOCHFLOW_LR_CONSTANT, &sch)) != 0)
        return rc;
    if (has_opt(o, "--train-target") &&
        (rc = get_keyword(o, "--train-target", TRAIN_TARGETS, STOCHFLOW_TRAIN_TARGET_DRAW,
                          &sch)) != 0)
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
        int key;
        if (!has_opt(o, TRAIN_PARAMS[i].option) || opt(o, TRAIN_PARAMS[i].option) == NULL)
            continue;
        if ((rc = train_param(&key, &v, o, i)) != 0) return rc;
        if ((rc = stochflow_model_set_param(m, key, v)) < 0)
            return cli_fail_lib(rc, TRAIN_PARAMS[i].option);
    }
    /* --ema-warmup (a flag; only train declares it): Keras-style EMA warm-up */
    if (opt(o, "--ema-warmup") != NULL &&
        (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_EMA_WARMUP, 1)) < 0)
        return cli_fail_lib(rc, "--ema-warmup");
    if ((rc = cli_set_coupling(m, o)) != 0) return rc; /* --coupling, --interp-lr */
    if (has_opt(o, "--train-target") && opt(o, "--train-target") != NULL) {
        int tt;
        get_keyword(o, "--train-target", TRAIN_TARGETS, STOCHFLOW_TRAIN_TARGET_DRAW, &tt);
        if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_TRAIN_TARGET, tt)) < 0)
            return cli_fail_lib(rc, "--train-target");
    }
    if (opt(o, "--lr-schedule") != NULL) {
        int sch;
        get_keyword(o, "--lr-schedule", SCHEDULES, STOCHFLOW_LR_CONSTANT, &sch);
        if ((rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_SCHEDULE, sch)) < 0)
            return cli_fail_lib(rc, "--lr-schedule");
        /* a fresh cosine schedule spans exactly this run */
        if (sch == STOCHFLOW_LR_COSINE && fresh &&
            (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, (double)steps)) < 0)
            return cli_fail_lib(rc, "--lr-schedule cosine");
        /* another schedule has no horizon: the recipe's is dropped (0 = the default), so
         * that a constant-schedule model does not depend on the --steps it was made with */
        if (sch != STOCHFLOW_LR_COSINE && fresh &&
            (rc = stochflow_model_set_param(m, STOCHFLOW_PARAM_LR_TOTAL_STEPS, 0)) < 0)
            return cli_fail_lib(rc, "--lr-schedule");
    }
    return 0;
}

/* ---- MLP models ------------------------------------------------------------------------ */

#define MAX_LAYERS 64

typedef struct {
    size_t widths[MAX_LAYERS];
    int nh, act;
    size_t res[3]; /* --resmlp W,B[,K]: width, blocks, experts; {0, 0, 0}: the MLP of --hidden */
    uint64_t seed, nfreq;
} mlp_opts;

static int parse_mlp(mlp_opts *mo, const opts *o, const char *def_hidden, int def_fourier) {
    int rc;
    mo->nh = parse_list(o->cmd, "--hidden", opt(o, "--hidden") ? opt(o, "--hidden") : def_hidden,
                        mo->widths, MAX_LAYERS, 1, 65536);
    if (mo->nh < 0) return mo->nh;
    mo->res[0] = mo->res[1] = mo->res[2] = 0;
    if (opt(o, "--resmlp")) {
        if (opt(o, "--hidden"))
            return cli_usage("%s: --resmlp and --hidden both give the network: use one", o->cmd);
        int n = parse_list(o->cmd, "--resmlp", opt(o, "--resmlp"), mo->res, 3, 1, 65536);
        if (n < 0) return n;
        if (n < 2 || mo->res[1] > 64 || mo->res[2] > 64)
            return cli_usage("%s: --resmlp wants WIDTH,BLOCKS[,EXPERTS] (width 1..65536, "
                             "blocks 1..64, experts 1..64), got '%s'",
                             o->cmd, opt(o, "--resmlp"));
    }
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
    if ((opt(o, "--interpolant") || opt(o, "--objective") || opt(o, "--gamma") ||
         opt(o, "--antithetic")) &&
        stochflow_config_new(&cfg, 2) >= 0) {
        rc = cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant"));
        if (rc == 0) rc = cli_set_objective(cfg, o);
        stochflow_config_free(cfg);
    }
    return rc;
}

int build_mlp(stochflow_model **m, const opts *o, size_t dim, const char *def_hidden,
              int def_fourier) {
    return build_mlp_cond(m, o, dim, def_hidden, def_fourier, 0, 0);
}

int build_mlp_cond(stochflow_model **m, const opts *o, size_t dim, const char *def_hidden,
                   int def_fourier, size_t n_ctx, size_t n_classes) {
    mlp_opts mo;
    int rc = parse_mlp(&mo, o, def_hidden, def_fourier);
    if (rc != 0) return rc;
    stochflow_config *cfg = NULL;
    rc = stochflow_config_new(&cfg, dim);
    if (rc >= 0) rc = stochflow_config_set_hidden(cfg, (size_t)mo.nh, mo.widths);
    if (rc >= 0 && mo.res[0]) rc = stochflow_config_set_resmlp(cfg, mo.res[0], mo.res[1]);
    if (rc >= 0 && mo.res[2]) rc = stochflow_config_set_resmlp_experts(cfg, mo.res[2]);
    if (rc >= 0) rc = stochflow_config_set_activation(cfg, mo.act);
    if (rc >= 0) {
        int irc = cli_set_interpolant(cfg, o->cmd, opt(o, "--interpolant"));
        if (irc != 0) {
            stochflow_config_free(cfg);
            return irc;
        }
    }
    if (rc >= 0) {
        int orc = cli_set_objective(cfg, o); /* --objective --gamma --antithetic (train) */
        if (orc != 0) {
            stochflow_config_free(cfg);
            return orc;
        }
    }
    if (rc >= 0) rc = stochflow_config_set_seed(cfg, mo.seed);
    if (rc >= 0 && (n_ctx || n_classes))
        rc = stochflow_config_set_context(cfg, n_ctx, n_classes);
    if (rc >= 0 && mo.nfreq > 0)
        rc = stochflow_config_set_time_embedding(cfg, STOCHFLOW_TIME_FOURIER, (size_t)mo.nfreq);
    if (rc >= 0) rc = stochflow_model_new(m, cfg);
    stochflow_config_free(cfg);
    return rc < 0 ? cli_fail_lib(rc, "model") : 0;
}
