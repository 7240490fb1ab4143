/* bench/sde_toy.c - a velocity model trained on a 2-D toy, sampled with the ODE and with
 * the SDE (score recovered from the velocity), and held-out NLL by the ODE and by the SDE
 * likelihood (doc/sde.md, "On a trained model"). Built by meson, run by hand:
 *   ./build/bench/sde_toy 8gaussians 1500      (about 1 CPU-minute) */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include "stochflow.h"
#define OK(e) do { int r_ = (e); if (r_) { printf("%s: %s\n", #e, stochflow_last_error_message()); return 1; } } while (0)
int main(int argc, char **argv) {
    const char *toy = argc > 1 ? argv[1] : "moons"; int steps = argc > 2 ? atoi(argv[2]) : 2000;
    stochflow_config *cfg; stochflow_model *m; size_t w[3] = {128, 128, 128};
    OK(stochflow_config_new(&cfg, 2)); OK(stochflow_config_set_hidden(cfg, 3, w));
    OK(stochflow_model_new(&m, cfg)); OK(stochflow_model_set_param(m, STOCHFLOW_PARAM_LR, 2e-3));
    float x1[512 * 2]; double loss;
    for (int s = 0; s < steps; ++s) { OK(stochflow_toy_sample(x1, toy, 512, 1, s)); OK(stochflow_model_train_step(&loss, m, x1, 512, NULL, NULL)); }
    size_t n = 4000; float *x = malloc(n * 8), *lp = malloc(n * 4); double ent;
    stochflow_solver *ode; OK(stochflow_solver_new(&ode));
    OK(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_SOLVER, STOCHFLOW_SOLVER_HEUN));
    OK(stochflow_solver_set_param(ode, STOCHFLOW_PARAM_STEPS, 100));
    OK(stochflow_solver_sample(x, NULL, ode, m, n, 7)); OK(stochflow_toy_log_density(lp, &ent, toy, x, n));
    double a = 0; for (size_t i = 0; i < n; ++i) a += lp[i]; printf("%s: ODE Heun 100: mean true log-density of samples %.4f (entropy %.4f)\n", toy, a / n, ent);
    stochflow_sde *s; OK(stochflow_sde_new(&s));
    OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_SCORE, STOCHFLOW_FIELD_SCORE_FROM_VELOCITY));
    double epss[3] = {0.25, 1.0, 2.0}, tends[2] = {0.9, 0.98};
    for (int i = 0; i < 3; ++i) for (int j = 0; j < 2; ++j) {
        OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_EPS, epss[i])); OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, tends[j]));
        OK(stochflow_sde_sample(x, s, m, NULL, n, 7)); OK(stochflow_toy_log_density(lp, &ent, toy, x, n));
        a = 0; for (size_t q = 0; q < n; ++q) a += lp[q];
        printf("%s: SDE Heun 100 eps %.2f T_END %.2f: mean true log-density %.4f\n", toy, epss[i], tends[j], a / n);
    }
    /* held-out NLL: ODE (dopri5 default) vs SDE likelihood */
    size_t nt = 500; float *xt = malloc(nt * 8), *l1 = malloc(nt * 4), *l2 = malloc(nt * 4), *s2 = malloc(nt * 4);
    OK(stochflow_toy_sample(xt, toy, nt, 99, 0));
    stochflow_solver *dp; OK(stochflow_solver_new(&dp)); OK(stochflow_solver_log_prob(l1, NULL, dp, m, xt, nt, 1.0));
    a = 0; for (size_t q = 0; q < nt; ++q) a += l1[q]; printf("%s: NLL ODE dopri5 %.4f\n", toy, -a / nt);
    OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_STEPS, 200)); OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_PATHS, 16));
    for (int i = 0; i < 2; ++i) for (int k = 1; k <= 2; ++k) {
        OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_EPS, epss[i])); OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_T_END, 0.9));
        OK(stochflow_sde_set_param(s, STOCHFLOW_PARAM_SDE_LIK_AVG, k));
        OK(stochflow_sde_log_prob(l2, s2, s, m, NULL, xt, nt, 3));
        double b = 0, sm = 0; for (size_t q = 0; q < nt; ++q) b += l2[q], sm += s2[q];
        printf("%s: NLL SDE eps %.2f T_END 0.9 %s: %.4f (mean path se %.4f)\n", toy, epss[i], k == 1 ? "MEAN" : "LOGMEANEXP", -b / nt, sm / nt);
    }
    return 0;
}
