#!/bin/bash
# distributed.sh - the measurements of bench/DISTRIBUTED.md (about a minute):
#   bash bench/distributed.sh [BUILD_DIR]
# 1. one gradient reduction per step against the parameter count, 2 and 4 processes on
#    this machine (loopback/shared memory): the driver's tree vs MPI_Allreduce;
# 2. one MLP training step (moons, 256x3, batch 512) on 1 process x 1 or 2 threads and
#    2 processes x 1 thread: the loop's wall ms per step and CPU ms per step (3 runs each).
B=${1:-build}
S=$B/tools/stochflow
M=(mpirun --oversubscribe --allow-run-as-root)
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
echo "## load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for np in 2 4; do
    "${M[@]}" -np $np "$B/bench/mpi_reduce_bench" 4096000 0.3
done
step() { # LABEL CMD...: the training loop's wall ms per step (the JSON "seconds", no
    # start-up) and CPU ms per step (user + sys of every process, start-up included)
    local label=$1; shift
    for rep in 1 2 3; do
        /usr/bin/time -f "%U %S" -o "$T/t" "$@" --data moons --out "$T/m.sfm" --steps 40 \
            --batch 512 --json 2>/dev/null | tail -n 1 >"$T/j"
        wall=$(/usr/bin/python3 -c "import json; print('%.1f' % (1000 * json.load(open('$T/j'))['seconds'] / 40))")
        awk -v l="$label" -v w="$wall" '{printf "%s loop_wall_ms/step %s cpu_ms/step %.1f\n", l, w, 1000*($1+$2)/40}' "$T/t"
    done
}
step "1 process x 1 thread, unblocked " "$S" train --threads 1
step "1 process x 1 thread, block 64  " "$S" train --threads 1 --grad-block 64
step "1 process x 2 threads, block 64 " "$S" train --threads 2 --grad-block 64
step "2 processes x 1 thread, block 64" "${M[@]}" -np 2 "$S" train --threads 1 --grad-block 64
echo "## load after: $(cut -d' ' -f1-3 /proc/loadavg)"
