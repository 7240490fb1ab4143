/* interpolant.c - the schedules a(t), b(t) of x_t = a(t) x0 + b(t) x1. */
#include <math.h>

#include "internal.h"
#include "transport.h"


int stochflow__interp_eval(const stochflow__interp *ip, double t, double out[4]) {
    switch (ip->kind) {
    case STOCHFLOW_INTERP_TRIG:
        out[0] = cos(STOCHFLOW__HALF_PI * t);
        out[1] = sin(STOCHFLOW__HALF_PI * t);
        out[2] = -STOCHFLOW__HALF_PI * sin(STOCHFLOW__HALF_PI * t);
        out[3] = STOCHFLOW__HALF_PI * cos(STOCHFLOW__HALF_PI * t);
        return 0;
    case STOCHFLOW_INTERP_LINEAR:
        out[0] = 1.0 - t;
        out[1] = t;
        out[2] = -1.0;
        out[3] = 1.0;
        return 0;
    case STOCHFLOW_INTERP_FOURIER: /* issue 9: lib/transport.c */
        stochflow__fourier_eval(ip, t, out);
        return 0;
    case STOCHFLOW_INTERP_CUSTOM:
        RETURN_ERROR_IF(ip->fn == NULL, STOCHFLOW_E_INVALID,
                        "custom interpolant has no schedule callback attached "
                        "(call stochflow_model_set_schedule after loading)");
        ip->fn(ip->user, t, out);
        return 0;
    default:
        return stochflow__error(STOCHFLOW_E_INVALID, "unknown interpolant kind %d", ip->kind);
    }
}

int stochflow__interp_check(const stochflow__interp *ip) {
    double e0[4], e1[4];
    FORWARD_IF_ERROR(stochflow__interp_eval(ip, 0.0, e0));
    FORWARD_IF_ERROR(stochflow__interp_eval(ip, 1.0, e1));
    for (int i = 0; i < 4; ++i)
        RETURN_ERROR_IF(!isfinite(e0[i]) || !isfinite(e1[i]), STOCHFLOW_E_NONFINITE,
                        "interpolant schedule returned a non-finite value at t=0 or t=1");
    RETURN_ERROR_IF(fabs(e0[0] - 1.0) > 1e-6 || fabs(e0[1]) > 1e-6 || fabs(e1[0]) > 1e-6 ||
                        fabs(e1[1] - 1.0) > 1e-6,
                    STOCHFLOW_E_INVALID,
                    "interpolant schedule violates a(0)=1, b(0)=0, a(1)=0, b(1)=1 "
                    "(got a(0)=%g b(0)=%g a(1)=%g b(1)=%g)", e0[0], e0[1], e1[0], e1[1]);
    return 0;
}
