/* mpi_driver.h - data-parallel training of `stochflow train` under mpirun
 * (tools/mpi_driver.c, built with -Dmpi; doc/distributed.md). Without MPI the functions
 * below are the one-process stand-ins, so the training loop has one shape.
 *
 * Every process holds the whole model and fills the whole batch (the draws are keyed by
 * global rows); it computes the partial gradient of its share of the blocks
 * (stochflow_grad_share), and the shares are combined along the library's tree with
 * point-to-point messages that carry a status beside the sums, so a failure anywhere
 * stops every process after the step; the total goes back down the tree and every
 * process applies it. Only rank 0 writes files and prints. */
#ifndef STOCHFLOW_TOOLS_MPI_DRIVER_H
#define STOCHFLOW_TOOLS_MPI_DRIVER_H

#include <stddef.h>

#include "stochflow.h"

/* What a process agrees on after a step (the largest wins; the lowest rank's message). */
enum { DIST_OK = 0, DIST_STOP = 1, DIST_FAIL = 2 };

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

#endif
