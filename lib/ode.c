/* ode.c - fixed-step and adaptive integrators (issue 3). Placeholder until written. */
#include "internal.h"
