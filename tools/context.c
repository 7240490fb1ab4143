/* context.c - conditioning on the command line (context.h, doc/cli.md). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"

void cond_free(cond_data *c) {
    free(c->ctx);
    free(c->labels);
    memset(c, 0, sizeof *c);
}

/* Integral labels from a float column (stride floats apart): -1 or 0..2^20-1. */
static int to_labels(int32_t **out, const float *col, size_t n, size_t stride, const char *cmd,
                     const char *what) {
    int32_t *l = malloc((n ? n : 1) * sizeof *l);
    if (l == NULL) return cli_fail("%s: out of memory for %zu labels", cmd, n);
    for (size_t i = 0; i < n; ++i) {
        float v = col[i * stride];
        if (v != floorf(v) || v < -1.0f || v >= 1048576.0f) {
            free(l);
            return cli_fail("%s: %s row %zu: label %g is not an integer in -1..1048575", cmd,
                            what, i + 1, (double)v);
        }
        l[i] = (int32_t)v;
    }
    *out = l;
    return 0;
}

/* A whole decimal number (a column or a label), or -1 when s is not one. */
static long whole(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno) return -2;
    return v;
}

/* Remove the columns marked in drop from ds (row-major, in place). */
static void drop_columns(dataset *ds, const unsigned char *drop) {
    size_t keep = 0;
    for (size_t j = 0; j < ds->d; ++j) keep += !drop[j];
    for (size_t i = 0; i < ds->n; ++i) {
        size_t w = 0;
        for (size_t j = 0; j < ds->d; ++j)
            if (!drop[j]) ds->x[i * keep + w++] = ds->x[i * ds->d + j];
    }
    ds->d = keep;
}

/* A table file of rows x cols (cols == 0: any) for a conditioning option. */
static int read_table(dataset *t, const char *cmd, const char *name, const char *path,
                      size_t rows, size_t cols) {
    if (dataset_open(t, path) != 0) return CLI_ERR;
    if (t->toy) {
        dataset_free(t);
        return cli_usage("%s: %s '%s' must be a .npy or .csv file", cmd, name, path);
    }
    if ((rows && t->n != rows) || (cols && t->d != cols)) {
        cli_fail("%s: %s '%s' is %zu x %zu, expected %zu rows%s", cmd, name, path, t->n, t->d,
                 rows, cols == 1 ? " of one column" : "");
        dataset_free(t);
        return CLI_ERR;
    }
    return 0;
}

int cond_train(cond_data *c, dataset *ds, const opts *o) {
    memset(c, 0, sizeof *c);
    const char *cf = opt(o, "--context"), *cc = opt(o, "--context-columns");
    const char *lab = opt(o, "--labels");
    if (!cf && !cc && !lab) return 0;
    if (ds->toy)
        return cli_usage("train: --context, --context-columns and --labels need a data file");
    if (cf && cc) return cli_usage("train: give --context or --context-columns, not both");
    unsigned char *drop = calloc(ds->d, 1);
    if (drop == NULL) return cli_fail("train: out of memory");
    int rc = 0;
    size_t cols[256], nc = 0;
    if (cc) {
        int got = parse_list("train", "--context-columns", cc, cols, 256, 1, CLI_MAX_DIM);
        if (got < 0) {
            rc = got;
            goto done;
        }
        nc = (size_t)got;
    }
    for (size_t i = 0; i < nc; ++i) {
        if (cols[i] < 1 || cols[i] > ds->d || drop[cols[i] - 1]) {
            rc = cli_usage("train: --context-columns: column %zu is not a distinct column "
                           "1..%zu of --data", cols[i], ds->d);
            goto done;
        }
        drop[cols[i] - 1] = 1;
    }
    long lc = lab ? whole(lab) : -2;
    if (lab && lc != -2 && (lc < 1 || (size_t)lc > ds->d || drop[lc - 1])) {
        rc = cli_usage("train: --labels %s is not a free column 1..%zu of --data", lab, ds->d);
        goto done;
    }
    if (lc > 0) drop[lc - 1] = 1;
    size_t kept = ds->d - nc - (lc > 0);
    if (kept < 1) {
        rc = cli_usage("train: no data columns left after the context and label columns");
        goto done;
    }
    if (nc) { /* columns in the order given */
        c->k = nc;
        if ((c->ctx = malloc(ds->n * nc * sizeof(float))) == NULL) {
            rc = cli_fail("train: out of memory for the context");
            goto done;
        }
        for (size_t i = 0; i < ds->n; ++i)
            for (size_t j = 0; j < nc; ++j) c->ctx[i * nc + j] = ds->x[i * ds->d + cols[j] - 1];
    }
    if (lc > 0 && (rc = to_labels(&c->labels, ds->x + lc - 1, ds->n, ds->d, "train",
                                  "--labels column")) != 0)
        goto done;
    drop_columns(ds, drop);
    if (cf) {
        dataset t = {0};
        if ((rc = read_table(&t, "train", "--context", cf, ds->n, 0)) != 0) goto done;
        c->ctx = t.x; /* owned now */
        c->k = t.d;
    }
    if (lab && lc == -2) {
        dataset t = {0};
        if ((rc = read_table(&t, "train", "--labels", lab, ds->n, 1)) != 0) goto done;
        rc = to_labels(&c->labels, t.x, t.n, 1, "train", "--labels");
        dataset_free(&t);
        if (rc != 0) goto done;
    }
    for (size_t i = 0; c->labels && i < ds->n; ++i)
        if ((size_t)(c->labels[i] + 1) > c->n_classes) c->n_classes = (size_t)c->labels[i] + 1;
    if (c->labels && c->n_classes == 0) {
        rc = cli_usage("train: every label is -1 (none): no classes to learn");
        goto done;
    }
done:
    free(drop);
    if (rc != 0) cond_free(c);
    return rc;
}

int cond_read_labels(int32_t **labels, size_t *n_classes, const char *cmd, const char *path,
                     size_t n) {
    *labels = NULL;
    *n_classes = 0;
    if (!has_suffix(path, ".npy") && !has_suffix(path, ".csv"))
        return cli_usage("%s: --labels '%s': image labels are 'dataset' or a .npy/.csv file", cmd,
                         path);
    dataset t = {0};
    int rc = read_table(&t, cmd, "--labels", path, n, 1);
    if (rc == 0) rc = to_labels(labels, t.x, n, 1, cmd, "--labels");
    dataset_free(&t);
    for (size_t i = 0; rc == 0 && i < n; ++i)
        if ((size_t)((*labels)[i] + 1) > *n_classes) *n_classes = (size_t)(*labels)[i] + 1;
    return rc;
}

int cond_points(cond_data *c, const opts *o, const char *cmd, size_t n, size_t k,
                size_t n_classes) {
    memset(c, 0, sizeof *c);
    const char *cf = opt(o, "--context"), *lab = opt(o, "--labels");
    if ((cf && k == 0) || (lab && n_classes == 0))
        return cli_usage("%s: --%s given but the model has no %s", cmd, cf && k == 0 ? "context" : "labels",
                         cf && k == 0 ? "context (train it with --context or --context-columns)"
                                      : "classes (train it with --labels)");
    int rc = 0;
    if (cf) {
        c->k = k;
        if ((c->ctx = malloc(n * k * sizeof(float))) == NULL) return cli_fail("%s: out of memory", cmd);
        if (has_suffix(cf, ".npy") || has_suffix(cf, ".csv")) {
            dataset t = {0};
            if ((rc = read_table(&t, cmd, "--context", cf, 0, k)) != 0) goto done;
            if (t.n != n && t.n != 1) {
                rc = cli_fail("%s: --context '%s' has %zu rows, expected %zu or 1", cmd, cf, t.n, n);
                dataset_free(&t);
                goto done;
            }
            for (size_t i = 0; i < n; ++i)
                memcpy(c->ctx + i * k, t.x + (t.n == 1 ? 0 : i) * k, k * sizeof(float));
            dataset_free(&t);
        } else { /* one row: k comma-separated numbers */
            const char *s = cf;
            for (size_t j = 0; j < k; ++j) {
                char *end;
                double v = strtod(s, &end);
                if (end == s || !isfinite(v) || (j + 1 < k ? *end != ',' : *end != '\0')) {
                    rc = cli_usage("%s: --context '%s' is not a file or %zu comma-separated "
                                   "finite numbers", cmd, cf, k);
                    goto done;
                }
                c->ctx[j] = (float)v;
                s = end + 1;
            }
            for (size_t i = 1; i < n; ++i) memcpy(c->ctx + i * k, c->ctx, k * sizeof(float));
        }
    }
    if (lab) {
        long v = whole(lab);
        if (v != -2) {
            if (v < -1 || (size_t)(v + 1) > n_classes) {
                rc = cli_usage("%s: --labels %s outside -1..%zu", cmd, lab, n_classes - 1);
                goto done;
            }
            if ((c->labels = malloc(n * sizeof(int32_t))) == NULL) {
                rc = cli_fail("%s: out of memory", cmd);
                goto done;
            }
            for (size_t i = 0; i < n; ++i) c->labels[i] = (int32_t)v;
        } else if (!has_suffix(lab, ".npy") && !has_suffix(lab, ".csv")) {
            rc = cli_usage("%s: --labels '%s' is neither a label in -1..%zu nor a .npy/.csv file "
                           "(%s)", cmd, lab, n_classes - 1,
                           strcmp(lab, "all") == 0 ? "'all' is for image models' sample"
                           : strcmp(lab, "dataset") == 0 ? "'dataset' is for image data"
                                                         : "one integer per row");
            goto done;
        } else {
            dataset t = {0};
            if ((rc = read_table(&t, cmd, "--labels", lab, n, 1)) != 0) goto done;
            rc = to_labels(&c->labels, t.x, n, 1, cmd, "--labels");
            dataset_free(&t);
            if (rc != 0) goto done;
        }
    }
done:
    if (rc != 0) cond_free(c);
    return rc;
}

int cond_guidance(stochflow_solver *s, const opts *o, const char *cmd) {
    double w;
    int rc = get_double(o, "--guidance", 0.0, -1.0, 1000.0, &w);
    if (rc != 0) return rc;
    if (w != 0.0 && (rc = stochflow_solver_set_param(s, STOCHFLOW_PARAM_GUIDANCE, w)) < 0)
        return cli_fail("%s: --guidance: %s", cmd, stochflow_last_error_message());
    return 0;
}
