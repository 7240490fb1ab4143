/* params.h - the one table of keyed parameters (lib/params.c).
 *
 * Every keyed parameter has one row: key, name, owning handle, type, bounds, default and
 * the offset of its double field in the owner's struct. Lookup by key or name, defaults,
 * validation, the handles' field access and the checkpoint's HPAR section all read this
 * table; nothing else in the library lists the parameters. */
#ifndef STOCHFLOW_PARAMS_H
#define STOCHFLOW_PARAMS_H

#include <stddef.h>

#include "internal.h"

/* The handle a parameter belongs to. */
enum {
    STOCHFLOW__OWNER_MODEL = 1,  /* stochflow__hparams of a stochflow_model (100s, 400s) */
    STOCHFLOW__OWNER_SOLVER = 2, /* struct stochflow_solver (200s, 300s) */
};

/* What values a parameter takes (all are stored as double). */
enum {
    STOCHFLOW__PTYPE_DOUBLE = 1, /* any finite value in [lo, hi] */
    STOCHFLOW__PTYPE_INT = 2,    /* an integral count in [lo, hi] */
    STOCHFLOW__PTYPE_ENUM = 3,   /* one of the integral codes lo..hi (STOCHFLOW_* constants) */
};

typedef struct {
    int key;          /* STOCHFLOW_PARAM_*; never renumbered */
    const char *name; /* short snake_case name, unique */
    int type;         /* STOCHFLOW__PTYPE_* */
    double lo, hi;    /* inclusive bounds of an explicit value (0 always means default) */
    double def;       /* default */
    int owner;        /* STOCHFLOW__OWNER_* */
    size_t offset;    /* of the double field inside the owner's struct */
    int when_set;     /* model keys: 1 = in the checkpoint's HPAR only when set away from
                         the default (keys newer than the original format, so that files
                         using none of them are byte for byte what earlier versions
                         wrote); 0 = always */
} stochflow__param_info;

/* Row of key, or NULL. */
const stochflow__param_info *stochflow__param_find(int key);
/* The table and its length. Order: model parameters in the order of the checkpoint's
 * HPAR section, then solver parameters; new keys are appended, never inserted. */
const stochflow__param_info *stochflow__param_table(size_t *count);
/* Field of key inside obj (a struct of the given owner), or NULL when key is unknown or
 * belongs to another owner. */
double *stochflow__param_field(void *obj, int owner, int key);
/* Write every default of owner's parameters into obj. */
void stochflow__param_defaults(void *obj, int owner);

/* The solver handle's fields (lib/density.c). */
double *stochflow__solver_field(stochflow_solver *s, int key);
void stochflow__solver_defaults(stochflow_solver *s);

#endif /* STOCHFLOW_PARAMS_H */
