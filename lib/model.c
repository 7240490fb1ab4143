/* model.c - TEMPORARY stub while the core is written. */
#include "model.h"
int stochflow__model_eval(stochflow_model *m, double t, const float *x, size_t n, float *v,
                          float *div, const float *probes, size_t K, float *quad) {
    return stochflow__error(STOCHFLOW_E_UNSUPPORTED, "model not implemented yet");
}
int stochflow__model_threads(const stochflow_model *m) { return 1; }
