/* check_density.c - placeholder, being written */
#include "harness.h"
Suite *make_suite(void) { return suite_create("density"); }
