/* png_io.c - the one file that includes <png.h> (issue 4). Placeholder until written. */
#include "internal.h"
