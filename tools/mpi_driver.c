/* mpi_driver.c - `mpirun -np N stochflow train ...`: the batch split across processes by
 * global row, the partial gradients and loss combined along the library's tree
 * (stochflow_grad_tree_split) with point-to-point messages (never MPI_Allreduce, whose
 * order is unspecified), a status travelling with every partial sum, bounded waits.
 * The only file of the project that includes <mpi.h>. doc/distributed.md. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpi_driver.h"

#define TAG_HEAD 71
#define TAG_GRAD 72
#define MSG_CAP 400

static int g_rank = 0, g_size = 1, g_on = 0;
static double g_timeout = 600.0;
static float *g_in;      /* received partial sums [n_params] */
static size_t g_in_cap;

/* The header of every message: status, the rank it is about, whether gradient floats
 * follow, the loss numerator and the failure's text. */
typedef struct {
    int status, rank, has_sum, pad;
    double loss;
    char why[MSG_CAP];
} head;

static int launched(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; ++i)
        if (getenv(vars[i])) return 1;
    return 0;
}

void dist_start(int argc, char **argv) {
    for (int i = 0; i + 1 < argc; ++i)
        if (strcmp(argv[i], "--mpi-timeout") == 0) {
            double t = strtod(argv[i + 1], NULL);
            if (t >= 1 && t <= 1e6) g_timeout = t; /* else train's usage error */
        }
    if (!launched()) return;
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_on = 1;
}

void dist_finish(void) {
    free(g_in);
    g_in = NULL;
    g_in_cap = 0;
    if (g_on) MPI_Finalize();
    g_on = 0;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

/* Wait for a request at most g_timeout seconds; past that, the job is stuck (a process
 * neither answers nor died): say so and abort every process. */
static void wait_bounded(MPI_Request *req, int peer, const char *what) {
    int done = 0;
    double t0 = MPI_Wtime();
    struct timespec nap = {0, 20000}; /* 20 us between polls once the fast spin is over */
    for (long spins = 0;; ++spins) {
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        if (spins > 2000) nanosleep(&nap, NULL);
        if (MPI_Wtime() - t0 > g_timeout) {
            fprintf(stderr,
                    "stochflow: rank %d: no %s from rank %d within %.0f s (--mpi-timeout); "
                    "aborting every process\n",
                    g_rank, what, peer, g_timeout);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
}

/* Bytes to or from a peer, in pieces of at most 1 GiB (MPI counts are ints). */
static void send_bytes(const void *p, size_t len, int to, int tag, const char *what) {
    MPI_Request r;
    for (size_t off = 0; off < len;) {
        size_t k = len - off > (1u << 30) ? (1u << 30) : len - off;
        MPI_Isend((const char *)p + off, (int)k, MPI_BYTE, to, tag, MPI_COMM_WORLD, &r);
        wait_bounded(&r, to, what);
        off += k;
    }
}

static void recv_bytes(void *p, size_t len, int from, int tag, const char *what) {
    MPI_Request r;
    for (size_t off = 0; off < len;) {
        size_t k = len - off > (1u << 30) ? (1u << 30) : len - off;
        MPI_Irecv((char *)p + off, (int)k, MPI_BYTE, from, tag, MPI_COMM_WORLD, &r);
        wait_bounded(&r, from, what);
        off += k;
    }
}

/* A header, then (has_sum) len bytes of payload. */
static void send_msg(const head *h, const void *g, size_t len, int to) {
    send_bytes(h, sizeof *h, to, TAG_HEAD, "send of a status");
    if (h->has_sum && len) send_bytes(g, len, to, TAG_GRAD, "send of a partial sum");
}

static void recv_msg(head *h, void *g, size_t len, int from) {
    recv_bytes(h, sizeof *h, from, TAG_HEAD, "status");
    if (h->has_sum && len) recv_bytes(g, len, from, TAG_GRAD, "partial sum");
}

/* Fold a received node into mine: the worse status (the lower rank's message on a tie:
 * mine), and on success mine += theirs, in the tree's order (left + right). */
static void fold(head *mine, float *g, const head *theirs, const float *tg, size_t np) {
    if (theirs->status > mine->status) {
        *mine = *theirs;
        mine->has_sum = 0;
        return;
    }
    if (mine->status != DIST_OK || theirs->status != DIST_OK || !theirs->has_sum) return;
    if (!mine->has_sum) { /* cannot happen: idle processes are a suffix of the ranks */
        memcpy(g, tg, np * sizeof *g);
        mine->has_sum = 1;
        mine->loss = theirs->loss;
        return;
    }
    for (size_t i = 0; i < np; ++i) g[i] += tg[i];
    mine->loss += theirs->loss;
}

/* Combine over ranks [lo, hi) along the tree into rank lo, then hand the root back down
 * the same tree. g: this process's sum (np floats), h its header. */
static int ensure_in(size_t np) {
    if (np <= g_in_cap) return 0;
    float *p = realloc(g_in, np * sizeof *p);
    if (p == NULL) return -1;
    g_in = p;
    g_in_cap = np;
    return 0;
}

static void reduce(head *h, float *g, size_t np, int lo, int hi) {
    if (hi - lo < 2) return;
    int mid = (int)stochflow_grad_tree_split((size_t)lo, (size_t)hi);
    if (g_rank < mid) {
        reduce(h, g, np, lo, mid);
        if (g_rank == lo) {
            head t;
            recv_msg(&t, g_in, np * sizeof *g_in, mid);
            fold(h, g, &t, g_in, np);
        }
    } else {
        reduce(h, g, np, mid, hi);
        if (g_rank == mid) send_msg(h, g, np * sizeof *g, lo);
    }
}

/* Rank lo's header and len bytes at p (when has_sum) down the tree over [lo, hi). */
static void broadcast(head *h, void *p, size_t len, int lo, int hi) {
    if (hi - lo < 2) return;
    int mid = (int)stochflow_grad_tree_split((size_t)lo, (size_t)hi);
    if (g_rank == lo) send_msg(h, p, len, mid);
    if (g_rank == mid) recv_msg(h, p, len, lo);
    if (g_rank < mid) broadcast(h, p, len, lo, mid);
    else broadcast(h, p, len, mid, hi);
}

static int finish(const head *h, char *fail, size_t cap) {
    if (h->status == DIST_FAIL) snprintf(fail, cap, "rank %d: %s", h->rank, h->why);
    return h->status;
}

void dist_tree_allsum(float *g, size_t np, double *loss) {
    head h = {.status = DIST_OK, .rank = g_rank, .has_sum = 1, .loss = *loss};
    if (ensure_in(np) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    reduce(&h, g, np, 0, g_size);
    broadcast(&h, g, np * sizeof *g, 0, g_size);
    *loss = h.loss;
}

int dist_agree(int status, const char *why, char *fail, size_t cap) {
    if (g_size < 2) {
        if (status == DIST_FAIL) snprintf(fail, cap, "%s", why ? why : "");
        return status;
    }
    head h = {.status = status, .rank = g_rank};
    if (why) snprintf(h.why, sizeof h.why, "%s", why);
    reduce(&h, NULL, 0, 0, g_size);
    broadcast(&h, NULL, 0, 0, g_size);
    return finish(&h, fail, cap);
}

/* Test hook (tests/mpi_test.sh): STOCHFLOW_MPI_FAULT=KIND:RANK:STEP makes process RANK
 * meet a real failure at model step STEP: "data" writes NaN into the first value of its
 * share of the batch (the library refuses the row), "nan" writes NaN into its partial
 * gradient (the driver's finiteness check refuses it). */
static int fault_at(const char *kind, uint64_t step) {
    const char *f = getenv("STOCHFLOW_MPI_FAULT");
    char k[16];
    int r;
    unsigned long long s;
    if (f == NULL || sscanf(f, "%15[a-z]:%d:%llu", k, &r, &s) != 3) return 0;
    return strcmp(k, kind) == 0 && r == g_rank && s == step;
}

int dist_step(double *loss, stochflow_model *m, const float *x, size_t n, const float *x0,
              int local, const char *why, char *fail, size_t cap) {
    const size_t d = stochflow_model_dim(m);
    double blk = 0;
    size_t row0 = n, rows = 0;
    int rc;
    if (local == DIST_OK &&
        ((rc = stochflow_model_get_param(&blk, m, STOCHFLOW_PARAM_GRAD_BLOCK)) < 0 ||
         (rc = stochflow_grad_share(&row0, &rows, NULL, n, (size_t)blk, (size_t)g_rank,
                                    (size_t)g_size)) < 0)) {
        local = DIST_FAIL;
        why = "share of the batch";
        row0 = n;
        rows = 0;
    }
    return dist_step_rows(loss, m, x ? x + row0 * d : NULL, rows, row0, n,
                          x0 ? x0 + row0 * d : NULL, local, why, fail, cap);
}

int dist_step_rows(double *loss, stochflow_model *m, const float *xs, size_t rows, size_t row0,
                   size_t n, const float *x0s, int local, const char *why, char *fail,
                   size_t cap) {
    const size_t d = stochflow_model_dim(m), np = stochflow_model_num_params(m);
    const uint64_t step = stochflow_model_step(m);
    float *g = NULL;
    head h = {.status = local, .rank = g_rank};
    if (why) snprintf(h.why, sizeof h.why, "%s", why);
    stochflow_model_gradients(&g, NULL, m);
    if (ensure_in(np) != 0) {
        h.status = DIST_FAIL;
        snprintf(h.why, sizeof h.why, "out of memory for a gradient of %zu floats", np);
    }
    int rc;
    if (h.status == DIST_OK && rows > 0) {
        float *bad = NULL;
        if (fault_at("data", step) && (bad = malloc(rows * d * sizeof *bad)) != NULL) {
            memcpy(bad, xs, rows * d * sizeof *bad);
            bad[0] = NAN;
            xs = bad;
        }
        rc = stochflow_model_partial_gradient(&h.loss, m, xs, rows, x0s, NULL, row0, n);
        free(bad);
        if (rc < 0) {
            h.status = DIST_FAIL;
            snprintf(h.why, sizeof h.why, "rows %zu..%zu at model step %llu: %s (%s)", row0,
                     row0 + rows - 1, (unsigned long long)step, stochflow_last_error_message(),
                     stochflow_status_string(rc));
        } else {
            if (fault_at("nan", step)) g[np / 2] = NAN;
            for (size_t i = 0; i < np; ++i)
                if (!isfinite(g[i])) {
                    h.status = DIST_FAIL;
                    snprintf(h.why, sizeof h.why,
                             "partial gradient of rows %zu..%zu is not finite at parameter %zu "
                             "(model step %llu)",
                             row0, row0 + rows - 1, i, (unsigned long long)step);
                    break;
                }
            h.has_sum = h.status == DIST_OK;
        }
    }
    reduce(&h, g, np, 0, g_size);
    broadcast(&h, g, np * sizeof *g, 0, g_size);
    if (finish(&h, fail, cap) != DIST_OK) return h.status;
    /* every process now holds the root in its gradient buffer */
    double mean = h.loss / (double)n;
    if ((rc = stochflow_model_record_loss(m, mean)) < 0 ||
        (rc = stochflow_model_apply_gradient(m)) < 0) {
        /* the same total on every process: every one fails the same way */
        snprintf(fail, cap, "every rank: update at model step %llu: %s (%s)",
                 (unsigned long long)step, stochflow_last_error_message(),
                 stochflow_status_string(rc));
        return DIST_FAIL;
    }
    *loss = mean;
    return DIST_OK;
}

/* ---- sharing values: gathered to rank 0 in rank order, sent back down the tree ---------- */

int dist_share(double *v, size_t n, size_t lo, size_t hi, int status, const char *why,
               char *fail, size_t cap) {
    if (g_size < 2) {
        if (status == DIST_FAIL) snprintf(fail, cap, "%s", why ? why : "");
        return status;
    }
    head h = {.status = status, .rank = g_rank, .has_sum = status == DIST_OK && hi > lo};
    if (why && status != DIST_OK) snprintf(h.why, sizeof h.why, "%s", why);
    uint64_t range[2] = {lo, hi};
    if (g_rank == 0) {
        for (int r = 1; r < g_size; ++r) { /* copies: the order of arrival does not matter */
            head t;
            recv_bytes(&t, sizeof t, r, TAG_HEAD, "status");
            if (t.has_sum) {
                recv_bytes(range, sizeof range, r, TAG_GRAD, "range");
                if (range[0] > range[1] || range[1] > n) MPI_Abort(MPI_COMM_WORLD, 1);
                recv_bytes(v + range[0], (size_t)(range[1] - range[0]) * sizeof *v, r, TAG_GRAD,
                           "shared values");
            }
            if (t.status > h.status) h = t;
        }
        h.has_sum = h.status == DIST_OK;
    } else {
        send_bytes(&h, sizeof h, 0, TAG_HEAD, "send of a status");
        if (h.has_sum) {
            send_bytes(range, sizeof range, 0, TAG_GRAD, "send of a range");
            send_bytes(v + lo, (hi - lo) * sizeof *v, 0, TAG_GRAD, "send of shared values");
        }
    }
    broadcast(&h, v, n * sizeof *v, 0, g_size);
    return finish(&h, fail, cap);
}

/* ---- a table's rows by positioned reads ------------------------------------------------ */

/* The value after key in a .npy header dict (whitespace skipped), or NULL. */
static const char *npy_key(const char *hdr, const char *key) {
    const char *p = strstr(hdr, key);
    if (p == NULL) return NULL;
    p += strlen(key);
    while (*p == ' ') ++p;
    if (*p++ != ':') return NULL;
    while (*p == ' ') ++p;
    return p;
}

int dist_table_open(dist_table *t, const char *path) {
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->path = path;
    size_t len = strlen(path);
    if (len < 4 || strcmp(path + len - 4, ".npy") != 0) return 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "stochflow: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    unsigned char pre[12];
    char hdr[4097];
    struct stat st;
    size_t hl = 0, off = 0;
    if (pread(fd, pre, sizeof pre, 0) != (ssize_t)sizeof pre || memcmp(pre, "\x93NUMPY", 6) != 0 ||
        fstat(fd, &st) != 0)
        goto cannot;
    if (pre[6] == 1) {
        hl = (size_t)pre[8] | (size_t)pre[9] << 8;
        off = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        hl = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        off = 12;
    }
    if (off == 0 || hl >= sizeof hdr || pread(fd, hdr, hl, (off_t)off) != (ssize_t)hl) goto cannot;
    hdr[hl] = '\0';
    const char *descr = npy_key(hdr, "'descr'"), *fo = npy_key(hdr, "'fortran_order'"),
               *shape = npy_key(hdr, "'shape'");
    if (descr == NULL || fo == NULL || shape == NULL || strncmp(fo, "False", 5) != 0) goto cannot;
    if (strncmp(descr, "'<f4'", 5) == 0) t->item = 4;
    else if (strncmp(descr, "'<f8'", 5) == 0) t->item = 8;
    else goto cannot;
    unsigned long long a = 0, b = 1;
    int got = 0;
    if (sscanf(shape, "(%llu, %llu)%n", &a, &b, &got) == 2 && got > 0) {
    } else if (sscanf(shape, "(%llu,)%n", &a, &got) == 1 && got > 0) {
        b = 1;
    } else {
        goto cannot;
    }
    if (a == 0 || b == 0 || b > 65536 || a > ((unsigned long long)1 << 40) / b) goto cannot;
    off += hl;
    if ((unsigned long long)st.st_size != off + a * b * t->item) goto cannot;
    t->fd = fd;
    t->offset = (long long)off;
    t->n = (size_t)a;
    t->d = (size_t)b;
    return 1;
cannot: /* not a plain little-endian float .npy: the reader takes it whole */
    close(fd);
    t->item = 0;
    return 0;
}

void dist_table_close(dist_table *t) {
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
}

static char g_rows_err[MSG_CAP];

static int table_rows(dist_table *t, float *dst, const size_t *idx, size_t k) {
    const size_t d = t->d, bytes = d * t->item;
    for (size_t j = 0; j < k; ++j) {
        if (idx[j] >= t->n) {
            snprintf(g_rows_err, sizeof g_rows_err, "%s: row %zu of %zu asked", t->path,
                     idx[j] + 1, t->n);
            return -1;
        }
        if (t->fd < 0) {
            memcpy(dst + j * d, t->mem + idx[j] * d, d * sizeof *dst);
            continue;
        }
        off_t at = (off_t)t->offset + (off_t)idx[j] * (off_t)bytes;
        if (t->item == 4) {
            unsigned char *p = (unsigned char *)(dst + j * d);
            if (pread(t->fd, p, bytes, at) != (ssize_t)bytes) goto bad;
        } else {
            double row[256];
            for (size_t c = 0; c < d; c += 256) {
                size_t w = d - c < 256 ? d - c : 256;
                if (pread(t->fd, row, w * 8, at + (off_t)(c * 8)) != (ssize_t)(w * 8)) goto bad;
                for (size_t q = 0; q < w; ++q) dst[j * d + c + q] = (float)row[q];
            }
        }
        continue;
    bad:
        snprintf(g_rows_err, sizeof g_rows_err, "%s: reading row %zu: %s", t->path, idx[j] + 1,
                 errno ? strerror(errno) : "short read");
        return -1;
    }
    t->rows_read += k;
    return 0;
}

/* ---- the trainer's callbacks (stochflow_trainer_set_parallel) -------------------------- */

static struct {
    dist_table *data, *val;
} g_io;
static char g_fail[MSG_CAP + 64];

const char *dist_failure(void) { return g_fail; }

static int cb_step(void *user, int status, double *loss, stochflow_model *m, const float *x,
                   size_t rows, size_t row0, size_t n) {
    (void)user;
    char why[MSG_CAP];
    if (status < 0)
        snprintf(why, sizeof why, "reading rows %zu..%zu of the batch: %.300s", row0,
                 row0 + rows - 1, g_rows_err[0] ? g_rows_err : stochflow_last_error_message());
    return dist_step_rows(loss, m, x, rows, row0, n, NULL, status < 0 ? DIST_FAIL : DIST_OK,
                          status < 0 ? why : NULL, g_fail, sizeof g_fail) == DIST_OK
               ? 0
               : -1;
}

static int cb_share(void *user, int status, double *v, size_t n, size_t lo, size_t hi) {
    (void)user;
    char why[MSG_CAP];
    if (status < 0)
        snprintf(why, sizeof why, "%s", g_rows_err[0] ? g_rows_err : stochflow_last_error_message());
    return dist_share(v, n, lo, hi, status < 0 ? DIST_FAIL : DIST_OK, status < 0 ? why : NULL,
                      g_fail, sizeof g_fail) == DIST_OK
               ? 0
               : -1;
}

static int cb_agree(void *user, int flag) {
    (void)user;
    char why[MSG_CAP + 64];
    if (flag < 0 || flag > 2) return -1;
    /* the flags 0, 1, 2 ride on the statuses DIST_OK, DIST_STOP, DIST_FAIL: the largest */
    return dist_agree(flag, NULL, why, sizeof why);
}

static int cb_rows(void *user, float *dst, const size_t *idx, size_t k, int from_val) {
    (void)user;
    dist_table *t = from_val ? g_io.val : g_io.data;
    if (t == NULL) {
        snprintf(g_rows_err, sizeof g_rows_err, "no %s rows", from_val ? "validation" : "data");
        return -1;
    }
    return table_rows(t, dst, idx, k);
}

int dist_trainer(stochflow_trainer *tr, dist_table *data, dist_table *val) {
    if (g_size < 2) return 0;
    g_io.data = data;
    g_io.val = val;
    stochflow_trainer_parallel p = {.rank = (size_t)g_rank, .size = (size_t)g_size,
                                    .step = cb_step, .share = cb_share, .agree = cb_agree,
                                    .rows = data ? cb_rows : NULL};
    return stochflow_trainer_set_parallel(tr, &p, NULL);
}

void dist_report_reads(const dist_table *data, const dist_table *val) {
    if (getenv("STOCHFLOW_MPI_READS") == NULL) return;
    fprintf(stderr, "stochflow: rank %d read %llu data rows and %llu validation rows\n", g_rank,
            data ? data->rows_read : 0ull, val ? val->rows_read : 0ull);
    fflush(stderr);
}
