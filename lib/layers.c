/* layers.c - placeholder while the core is written. */
#include "model.h"
