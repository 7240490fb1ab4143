/* context.h - the conditioning of a conditional model on the command line (context.c):
 * context columns and class labels for `train`, and the context/labels of the points of
 * `sample` and `logp` (doc/cli.md, doc/conditional.md). Public API only. */
#ifndef STOCHFLOW_TOOLS_CONTEXT_H
#define STOCHFLOW_TOOLS_CONTEXT_H

#include "common.h"

typedef struct {
    float *ctx;       /* n x k context, or NULL */
    size_t k;
    int32_t *labels;  /* n labels (-1 = none), or NULL */
    size_t n_classes; /* train: largest label + 1 */
} cond_data;

/* train: --context FILE (n x k rows matching --data's) or --context-columns LIST (1-based
 * columns of --data, removed from ds), and --labels FILE|COLUMN (one integer column; a
 * column number is removed from ds). Nothing given: c is empty. 0, CLI_USAGE or CLI_ERR
 * (printed). */
int cond_train(cond_data *c, dataset *ds, const opts *o);
/* sample/logp: n rows of context for a model of k context floats (--context ROW|FILE: one
 * comma-separated row for every point, or a file of n rows or of one row) and of labels
 * (--labels L|FILE) for a model of n_classes classes. 0, CLI_USAGE or CLI_ERR. */
int cond_points(cond_data *c, const opts *o, const char *cmd, size_t n, size_t k,
                size_t n_classes);
void cond_free(cond_data *c);
/* Labels of n images from a .npy/.csv file of n rows of one integer column (-1..2^20-1),
 * and the largest + 1 in *n_classes. 0, CLI_USAGE or CLI_ERR (printed). */
int cond_read_labels(int32_t **labels, size_t *n_classes, const char *cmd, const char *path,
                     size_t n);
/* --guidance W (classifier-free guidance scale, default 0) onto the solver. */
int cond_guidance(stochflow_solver *s, const opts *o, const char *cmd);

#endif
