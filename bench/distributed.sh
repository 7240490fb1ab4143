#!/bin/bash
# distributed.sh - the measurements of bench/DISTRIBUTED.md (about a minute each part):
#   bash bench/distributed.sh [BUILD_DIR] [all|table]
# 1. one gradient reduction per step against the parameter count, 2 and 4 processes on
#    this machine (loopback/shared memory): the driver's tree vs MPI_Allreduce;
# 2. one MLP training step (moons, 256x3, batch 512) on 1 process x 1 or 2 threads and
#    2 processes x 1 thread: the loop's wall ms per step and CPU ms per step (3 runs each);
# 3. (all or table) a table trained through the trainer: 20 000 x 2 float32 rows (.npy,
#    read by rows), MLP 256x3, batch 512 in blocks of 64, --threads 1, 1 and 2 processes:
#    step = 40 steps without validation, the trainer's wall ms per step; validation = one
#    step with --val (4096 held-out rows, solves of 64 rows: the final exact NLL) against
#    one step without: the extra ms are one validation pass.
B=${1:-build}
S=$B/tools/stochflow
M=(mpirun --oversubscribe --allow-run-as-root)
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
echo "## load before: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${2:-all}" = table ] || for np in 2 4; do
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
if [ "${2:-all}" != table ]; then
    step "1 process x 1 thread, unblocked " "$S" train --threads 1
    step "1 process x 1 thread, block 64  " "$S" train --threads 1 --grad-block 64
    step "1 process x 2 threads, block 64 " "$S" train --threads 2 --grad-block 64
    step "2 processes x 1 thread, block 64" "${M[@]}" -np 2 "$S" train --threads 1 --grad-block 64
fi
/usr/bin/python3 -c "
import numpy as np
r = np.random.default_rng(1)
np.save('$T/d.npy', (r.normal(size=(20000, 2)) * [1, 3]).astype(np.float32))
np.save('$T/v.npy', (r.normal(size=(4096, 2)) * [1, 3]).astype(np.float32))"
A=(train --data "$T/d.npy" --batch 512 --grad-block 64 --threads 1 --steps 40
   --lr-schedule constant --out "$T/m.sfm" --json)
sec() { tail -n 1 "$T/j" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])"; }
for rep in 1 2 3; do
    for np in 1 2; do
        run=("$S"); [ $np -gt 1 ] && run=("${M[@]}" -np $np "$S")
        "${run[@]}" "${A[@]}" >"$T/j" 2>/dev/null; a=$(sec)
        /usr/bin/time -f "%U %S" -o "$T/tb" "${run[@]}" "${A[@]}" --steps 1 >"$T/j" 2>/dev/null
        b=$(sec)
        /usr/bin/time -f "%U %S" -o "$T/tc" "${run[@]}" "${A[@]}" --steps 1 --val "$T/v.npy" \
            --val-block 64 >"$T/j" 2>/dev/null
        c=$(sec)
        cb=$(awk '{print $1 + $2}' "$T/tb"); cc=$(awk '{print $1 + $2}' "$T/tc")
        /usr/bin/python3 -c "print('%d process(es): step %.1f ms wall; validation of 4096 rows %.0f ms wall, %.0f ms CPU (all processes)' % ($np, 1000 * $a / 40, 1000 * ($c - $b), 1000 * ($cc - $cb)))"
    done
done
echo "## load after: $(cut -d' ' -f1-3 /proc/loadavg)"
