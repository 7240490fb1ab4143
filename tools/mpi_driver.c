/* mpi_driver.c - `mpirun -np N stochflow train ...`: the batch split across processes by
 * global row, the partial gradients and loss combined along the library's tree
 * (stochflow_grad_tree_split) with point-to-point messages (never MPI_Allreduce, whose
 * order is unspecified), a status travelling with every partial sum, bounded waits.
 * The only file of the project that includes <mpi.h>. doc/distributed.md. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void send_msg(const head *h, const float *g, size_t np, int to) {
    MPI_Request r;
    MPI_Isend(h, (int)sizeof *h, MPI_BYTE, to, TAG_HEAD, MPI_COMM_WORLD, &r);
    wait_bounded(&r, to, "send of a status");
    if (h->has_sum && np) {
        /* counts above INT_MAX floats go in pieces */
        for (size_t off = 0; off < np;) {
            size_t k = np - off > (1u << 30) ? (1u << 30) : np - off;
            MPI_Isend(g + off, (int)k, MPI_FLOAT, to, TAG_GRAD, MPI_COMM_WORLD, &r);
            wait_bounded(&r, to, "send of a partial gradient");
            off += k;
        }
    }
}

static void recv_msg(head *h, float *g, size_t np, int from) {
    MPI_Request r;
    MPI_Irecv(h, (int)sizeof *h, MPI_BYTE, from, TAG_HEAD, MPI_COMM_WORLD, &r);
    wait_bounded(&r, from, "status");
    if (h->has_sum && np) {
        for (size_t off = 0; off < np;) {
            size_t k = np - off > (1u << 30) ? (1u << 30) : np - off;
            MPI_Irecv(g + off, (int)k, MPI_FLOAT, from, TAG_GRAD, MPI_COMM_WORLD, &r);
            wait_bounded(&r, from, "partial gradient");
            off += k;
        }
    }
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
            recv_msg(&t, g_in, np, mid);
            fold(h, g, &t, g_in, np);
        }
    } else {
        reduce(h, g, np, mid, hi);
        if (g_rank == mid) send_msg(h, g, np, lo);
    }
}

static void broadcast(head *h, float *g, size_t np, int lo, int hi) {
    if (hi - lo < 2) return;
    int mid = (int)stochflow_grad_tree_split((size_t)lo, (size_t)hi);
    if (g_rank == lo) send_msg(h, g, np, mid);
    if (g_rank == mid) recv_msg(h, g, np, lo);
    if (g_rank < mid) broadcast(h, g, np, lo, mid);
    else broadcast(h, g, np, mid, hi);
}

static int finish(const head *h, char *fail, size_t cap) {
    if (h->status == DIST_FAIL) snprintf(fail, cap, "rank %d: %s", h->rank, h->why);
    return h->status;
}

void dist_tree_allsum(float *g, size_t np, double *loss) {
    head h = {.status = DIST_OK, .rank = g_rank, .has_sum = 1, .loss = *loss};
    if (ensure_in(np) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    reduce(&h, g, np, 0, g_size);
    broadcast(&h, g, np, 0, g_size);
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
    const size_t d = stochflow_model_dim(m), np = stochflow_model_num_params(m);
    const uint64_t step = stochflow_model_step(m);
    double blk = 0;
    size_t row0 = 0, rows = 0;
    float *g = NULL;
    head h = {.status = local, .rank = g_rank};
    if (why) snprintf(h.why, sizeof h.why, "%s", why);
    stochflow_model_gradients(&g, NULL, m);
    if (ensure_in(np) != 0) {
        h.status = DIST_FAIL;
        snprintf(h.why, sizeof h.why, "out of memory for a gradient of %zu floats", np);
    }
    int rc;
    if (h.status == DIST_OK &&
        ((rc = stochflow_model_get_param(&blk, m, STOCHFLOW_PARAM_GRAD_BLOCK)) < 0 ||
         (rc = stochflow_grad_share(&row0, &rows, NULL, n, (size_t)blk, (size_t)g_rank,
                                    (size_t)g_size)) < 0)) {
        h.status = DIST_FAIL;
        snprintf(h.why, sizeof h.why, "share of the batch: %s", stochflow_last_error_message());
    }
    if (h.status == DIST_OK && rows > 0) {
        const float *xs = x + row0 * d;
        float *bad = NULL;
        if (fault_at("data", step) && (bad = malloc(rows * d * sizeof *bad)) != NULL) {
            memcpy(bad, xs, rows * d * sizeof *bad);
            bad[0] = NAN;
            xs = bad;
        }
        rc = stochflow_model_partial_gradient(&h.loss, m, xs, rows, x0 ? x0 + row0 * d : NULL,
                                              NULL, row0, n);
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
    broadcast(&h, g, np, 0, g_size);
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
