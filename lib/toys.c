/* toys.c - built-in 2-D datasets (issue 4). Placeholder until written. */
#include "internal.h"
