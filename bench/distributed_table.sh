#!/bin/bash
# distributed_table.sh - a table trained through the trainer under mpirun (doc/distributed.md,
# bench/DISTRIBUTED.md section 4), about a minute:  bash bench/distributed_table.sh [BUILD_DIR]
# 20 000 x 2 float32 rows (.npy, read by rows), MLP 256x3, batch 512 in blocks of 64,
# --threads 1, 1 process and 2 processes:
#   step: 40 steps without validation: the trainer's wall ms per step;
#   validation: one step with --val (4096 held-out rows, solves of 64 rows: the final
#   exact NLL) against one step without: the extra seconds are one validation pass.
B=${1:-build}
S=$B/tools/stochflow
M=(mpirun --oversubscribe --allow-run-as-root)
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 -c "
import numpy as np
r = np.random.default_rng(1)
np.save('$T/d.npy', (r.normal(size=(20000, 2)) * [1, 3]).astype(np.float32))
np.save('$T/v.npy', (r.normal(size=(4096, 2)) * [1, 3]).astype(np.float32))"
echo "## load before: $(cut -d' ' -f1-3 /proc/loadavg)"
A=(train --data "$T/d.npy" --batch 512 --grad-block 64 --threads 1 --steps 40
   --lr-schedule constant --out "$T/m.sfm" --json)
sec() { tail -n 1 "$T/j" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])"; }
for rep in 1 2 3; do
    for np in 1 2; do
        run=("$S"); [ $np -gt 1 ] && run=("${M[@]}" -np $np "$S")
        "${run[@]}" "${A[@]}" >"$T/j" 2>/dev/null; a=$(sec)
        "${run[@]}" "${A[@]}" --steps 1 >"$T/j" 2>/dev/null; b=$(sec)
        "${run[@]}" "${A[@]}" --steps 1 --val "$T/v.npy" --val-block 64 >"$T/j" 2>/dev/null
        c=$(sec)
        /usr/bin/python3 -c "print('%d process(es): step %.1f ms, validation of 4096 rows %.0f ms' % ($np, 1000 * $a / 40, 1000 * ($c - $b)))"
    done
done
echo "## load after: $(cut -d' ' -f1-3 /proc/loadavg)"
