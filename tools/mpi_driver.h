/* mpi_driver.h - data-parallel training of `stochflow train` under mpirun
 * (tools/mpi_driver.c, built with -Dmpi; doc/distributed.md). Without MPI the functions
 * below are the one-process stand-ins, so the training loop has one shape.
 *
 * Every process holds the whole model and fills the whole batch (the draws are keyed by
 * global rows); it computes the partial gradient of its share of the blocks
 * (stochflow_grad_share), and the shares are combined along the library's tree with
 * point-to-point messages that carry a status beside the sums, so a failure anywhere
 * stops every process after the step; the total goes back down the tree and every
 * process applies it. Only rank 0 writes files and prints. Tables train through the
 * library's trainer instead, with this driver as its data-parallel callbacks
 * (dist_trainer): the trainer hands each process its share of the batch and of the
 * validation solves, and a .npy table is read by rows (dist_table). */
#ifndef STOCHFLOW_TOOLS_MPI_DRIVER_H
#define STOCHFLOW_TOOLS_MPI_DRIVER_H

#include <stddef.h>

#include "stochflow.h"

/* What a process agrees on after a step (the largest wins; the lowest rank's message). */
enum { DIST_OK = 0, DIST_STOP = 1, DIST_FAIL = 2 };

/* A table's rows for the trainer (validate.c): read by positioned reads from a .npy
 * file (float32 or float64, little-endian, C order) when the driver can, so that each
 * process reads only the rows it uses; else held in memory (mem). rows_read counts the
 * rows handed out. */
typedef struct {
    int fd;           /* -1: mem */
    long long offset; /* of the data in the file */
    size_t n, d, item;
    const float *mem;
    const char *path;
    unsigned long long rows_read;
} dist_table;

#ifdef STOCHFLOW_WITH_MPI
/* MPI_Init when launched by mpirun (or srun, mpiexec): rank and size are then MPI's (0
 * and 1 when not). `--mpi-timeout S` among argv bounds every wait for a message (then
 * MPI_Abort; default 600 s). */
void dist_start(int argc, char **argv);
void dist_finish(void);
int dist_rank(void);
int dist_size(void);
/* One data-parallel step on the whole batch x [n x d] (x0 or NULL): this process's
 * partial gradient, the tree reduction with statuses, the total back to everyone,
 * record loss, apply. local: DIST_OK, or DIST_FAIL with why (this process's filler
 * failed). Returns DIST_OK (loss = batch loss), or DIST_FAIL with fail = "rank R: why"
 * (every process returns it; nothing applied). */
int dist_step(double *loss, stochflow_model *m, const float *x, size_t n, const float *x0,
              int local, const char *why, char *fail, size_t cap);
/* The tree sum of every process's g [np] and loss, left on every process: dist_step's
 * reduction without a model (bench/mpi_reduce_bench.c). */
void dist_tree_allsum(float *g, size_t np, double *loss);
/* Agree on a status: every process passes its own (and why for DIST_FAIL); every one
 * gets the largest, with the message of the lowest rank that has it, in fail. */
int dist_agree(int status, const char *why, char *fail, size_t cap);
/* dist_step on this process's rows only: rows [row0, row0 + rows) of a batch of n rows
 * (the share of stochflow_grad_share), xs holding them. */
int dist_step_rows(double *loss, stochflow_model *m, const float *xs, size_t rows, size_t row0,
                   size_t n, const float *x0s, int local, const char *why, char *fail,
                   size_t cap);
/* Every process's entries [lo, hi) of v [n] gathered to rank 0 in rank order and sent
 * back down the tree: every process then holds all n (copies, no arithmetic). status:
 * DIST_OK, or DIST_FAIL with why (this process's entries are not valid). Returns the
 * largest status, with the lowest failing rank's message in fail. */
int dist_share(double *v, size_t n, size_t lo, size_t hi, int status, const char *why,
               char *fail, size_t cap);
#endif


#ifdef STOCHFLOW_WITH_MPI
/* Open path's header for positioned reads: 1 when it can (n, d set), 0 when it cannot
 * (not a plain .npy: read the file whole), -1 (printed) when it cannot be opened. */
int dist_table_open(dist_table *t, const char *path);
void dist_table_close(dist_table *t);
/* The trainer's data-parallel callbacks (stochflow_trainer_set_parallel) over this
 * driver: the step (dist_step_rows), the share of validation values and of the
 * standardization (dist_share), the agreement on stopping, and the rows of data and val
 * (either may be NULL: rows then come from the fit's matrices). The failure of a step
 * or of a share is in dist_failure(). */
int dist_trainer(stochflow_trainer *tr, dist_table *data, dist_table *val);
const char *dist_failure(void);
/* Test hook: STOCHFLOW_MPI_READS set: every process prints the rows it read to stderr. */
void dist_report_reads(const dist_table *data, const dist_table *val);
#else
static inline void dist_start(int argc, char **argv) { (void)argc, (void)argv; }
static inline void dist_finish(void) {}
static inline int dist_rank(void) { return 0; }
static inline int dist_size(void) { return 1; }
static inline int dist_step(double *loss, stochflow_model *m, const float *x, size_t n,
                            const float *x0, int local, const char *why, char *fail,
                            size_t cap) {
    (void)loss, (void)m, (void)x, (void)n, (void)x0, (void)local, (void)why, (void)fail,
        (void)cap;
    return DIST_FAIL; /* never called with one process */
}
static inline int dist_agree(int status, const char *why, char *fail, size_t cap) {
    (void)why, (void)fail, (void)cap;
    return status;
}
#endif
#ifndef STOCHFLOW_WITH_MPI
static inline int dist_table_open(dist_table *t, const char *path) {
    (void)t, (void)path;
    return 0; /* one process reads the file whole */
}
static inline void dist_table_close(dist_table *t) { (void)t; }
static inline int dist_trainer(stochflow_trainer *tr, dist_table *data, dist_table *val) {
    (void)tr, (void)data, (void)val;
    return 0; /* one process: nothing to set */
}
static inline const char *dist_failure(void) { return ""; }
static inline void dist_report_reads(const dist_table *data, const dist_table *val) {
    (void)data, (void)val;
}
#endif

#endif
