/* mpi_reduce_bench.c - the cost of one gradient reduction per step against the parameter
 * count: the driver's tree (tools/mpi_driver.c: point-to-point reduce to rank 0 along
 * stochflow_grad_tree_split, then the total back down the tree) against MPI_Allreduce
 * (MPI_SUM, order unspecified). bench/DISTRIBUTED.md.
 *     mpirun -np 2 build/bench/mpi_reduce_bench [max_floats] [seconds_per_size]
 * Prints one line per size: floats, bytes, tree us, allreduce us (medians). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "mpi_driver.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of one call of kind (0 tree, 1 allreduce) on np floats. */
static double median_time(int kind, float *g, float *out, size_t np, double budget) {
    enum { MAXREP = 400 };
    double t[MAXREP], spent = 0, loss = 1.0;
    int reps = 0, go = 1;
    while (go) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        if (kind == 0) dist_tree_allsum(g, np, &loss);
        else MPI_Allreduce(g, out, (int)np, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = MPI_Wtime() - t0;
        /* every process must take the same number of repetitions: rank 0 decides */
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        t[reps++] = dt;
        spent += dt;
        go = reps < MAXREP && (spent < budget || reps < 5);
        MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
        for (size_t i = 0; i < np; ++i) g[i] = 1e-3f; /* keep the values tame */
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    dist_start(argc, argv);
    size_t maxn = argc > 1 ? strtoull(argv[1], NULL, 10) : 4000000;
    double budget = argc > 2 ? atof(argv[2]) : 0.5;
    float *g = malloc(maxn * sizeof *g), *out = malloc(maxn * sizeof *out);
    if (g == NULL || out == NULL) return 1;
    for (size_t i = 0; i < maxn; ++i) g[i] = 1e-3f;
    if (dist_rank() == 0)
        printf("# %d processes; floats, bytes, tree_us, allreduce_us (medians)\n", dist_size());
    for (size_t np = 1000; np <= maxn; np *= 4) {
        double tt = median_time(0, g, out, np, budget);
        double ta = median_time(1, g, out, np, budget);
        if (dist_rank() == 0) {
            printf("%zu %zu %.1f %.1f\n", np, np * 4, tt * 1e6, ta * 1e6);
            fflush(stdout);
        }
    }
    free(g);
    free(out);
    dist_finish();
    return 0;
}
