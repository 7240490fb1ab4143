/* density.c - log-density and sampling (issue 3). Placeholder until written. */
#include "internal.h"
