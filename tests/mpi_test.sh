#!/bin/bash
# mpi_test.sh - `mpirun -np N stochflow train` (tools/mpi_driver.c, doc/distributed.md):
# 1, 2 and 4 processes write the same checkpoints byte for byte; a run of 4 processes
# resumed on 2 continues as one uninterrupted process; a bad data row or a NaN gradient
# in one process's share, a checkpoint rank 0 cannot write, and a killed process stop
# every process with a non-zero exit, the last good checkpoint intact, within a bound.
# Tables through the trainer: validation (a fraction, a file) on 1, 2 and 4 processes
# gives the same numbers, early stop and files; resume 4 -> 2; --time; the rows each
# process reads, counted; a NaN row and a failing checkpoint stop every process.
# TAP. Usage: mpi_test.sh STOCHFLOW_EXE WITH_MPI(0|1). Skipped (with the reason) when
# mpirun is absent or the program was built without -Dmpi.
S=$1
WITH_MPI=${2:-0}
if ! command -v mpirun >/dev/null 2>&1; then
    echo "1..0 # SKIP mpirun not found (Debian: apt-get install openmpi-bin libopenmpi-dev)"
    exit 0
fi
if [ "$WITH_MPI" != 1 ]; then
    echo "1..0 # SKIP stochflow was built without MPI (meson -Dmpi=enabled, needs libopenmpi-dev)"
    exit 0
fi
CLI_TMP_PREFIX=sfmpi
source "$(dirname "$0")/cli_lib.sh"
export OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --allow-run-as-root)
# the toy run every case shares: 64 rows in blocks of 8 (8 blocks: 4, 2 or 1 per process)
# a constant schedule: the comparisons below split runs (6 + 6 steps) by hand, and the
# default cosine spans each run's own --steps (doc/cli.md)
ARGS=(--data moons --batch 64 --hidden 32,32 --grad-block 8 --threads 1 --lr-schedule constant)

# mp NP ARGS...: the program on NP processes, 60 s at most; stdout/stderr in $T/out, err
mp() {
    local np=$1; shift
    timeout 60 "${MPIRUN[@]}" -np "$np" "$@" >"$T/out" 2>"$T/err" </dev/null
}

same() { # NAME FILE1 FILE2
    if cmp -s "$2" "$3"; then ok "$1"; else not_ok "$1" "$2 and $3 differ or are missing"; fi
}

# ---- the same bits on 1, 2 and 4 processes --------------------------------------------
run "one process, --grad-block 8" "$S" train "${ARGS[@]}" --steps 12 --checkpoint-every 6 \
    --outdir "$T/r1" --json
for np in 2 4; do
    if mp "$np" "$S" train "${ARGS[@]}" --steps 12 --checkpoint-every 6 --outdir "$T/r$np" --json
    then ok "$np processes: exit 0"
    else not_ok "$np processes: exit 0" "$(head -c 600 "$T/err")"; fi
    json "$np processes: summary from rank 0 reports ranks" "d['ranks'] == $np and d['model_step'] == 12 and d['grad_block'] == 8"
    lines=$(grep -c '^saved ' "$T/out")
    [ "$lines" -eq 1 ] && ok "$np processes: one report (rank 0 only)" ||
        not_ok "$np processes: one report (rank 0 only)" "$lines 'saved' lines"
    same "$np processes: model.sfm = one process's, byte for byte" "$T/r1/model.sfm" "$T/r$np/model.sfm"
    same "$np processes: checkpoint.sfm = one process's" "$T/r1/checkpoint.sfm" "$T/r$np/checkpoint.sfm"
done

# 3 processes, 50 rows: 7 blocks, shares of 4 (a power of two), so 2 hold rows
run "one process, 50 rows" "$S" train "${ARGS[@]}" --batch 50 --steps 4 --out "$T/u1.sfm"
mp 3 "$S" train "${ARGS[@]}" --batch 50 --steps 4 --out "$T/u3.sfm" && ok "3 processes, 50 rows" ||
    not_ok "3 processes, 50 rows" "$(head -c 600 "$T/err")"
same "3 processes, uneven blocks = one process" "$T/u1.sfm" "$T/u3.sfm"

# images: a tiny U-Net on 5 8x8 IDX images, batch 8 in blocks of 2 (the dequantization
# noise is keyed by the position in the whole batch)
$PY -c "
import struct
open('$T/five.idx', 'wb').write(b'\x00\x00\x08\x03' + struct.pack('>III', 5, 8, 8) +
                               bytes((i * 7) % 256 for i in range(5 * 64)))"
IMG=(--data "idx:$T/five.idx" --unet-base 8 --unet-mult 1,2 --unet-groups 4 --batch 8
     --grad-block 2 --threads 1 --steps 3)
run "one process, tiny U-Net" "$S" train "${IMG[@]}" --out "$T/img1.sfm"
mp 2 "$S" train "${IMG[@]}" --out "$T/img2.sfm" && ok "2 processes, tiny U-Net" ||
    not_ok "2 processes, tiny U-Net" "$(head -c 600 "$T/err")"
same "2 processes, tiny U-Net = one process" "$T/img1.sfm" "$T/img2.sfm"

# ---- resume: 6 steps on 4 processes, 6 more on 2 = 12 on one ----------------------------
mp 4 "$S" train "${ARGS[@]}" --steps 6 --out "$T/half.sfm" && ok "4 processes: 6 steps" ||
    not_ok "4 processes: 6 steps" "$(head -c 600 "$T/err")"
mp 2 "$S" train --data moons --batch 64 --threads 1 --resume "$T/half.sfm" --steps 6 \
    --out "$T/resumed.sfm" --json && ok "resumed on 2 processes" ||
    not_ok "resumed on 2 processes" "$(head -c 600 "$T/err")"
same "resumed from 4 processes on 2 = uninterrupted one process" "$T/r1/model.sfm" "$T/resumed.sfm"

# ---- refusals and faults ----------------------------------------------------------------
# fault NAME PATTERN NP ARGS...: exit non-zero within the bound, PATTERN on stderr (once)
fault() {
    local name=$1 pat=$2 np=$3; shift 3
    local t0=$SECONDS
    mp "$np" "$@"
    local rc=$? k
    k=$(grep -cE -e "$pat" "$T/err")
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$k" -eq 1 ]; then
        ok "$name: exit $rc in $((SECONDS - t0)) s: $(grep -E -e "$pat" "$T/err" | head -c 160)"
    else
        not_ok "$name" "exit $rc, $k lines matching /$pat/" "$(head -c 600 "$T/err")"
    fi
}
# ---- tables: the library's trainer with validation split across processes ---------------
# two Gaussian blobs (1000 rows), a validation file (100 rows), a large file (20000 rows)
# for counting reads, a CSV copy, and a file with a NaN row
$PY -c "
import numpy as np
r = np.random.default_rng(7)
x = np.concatenate([r.normal(size=(600, 2)) * [1, 3] + [5, -2], r.normal(size=(400, 2))])
np.save('$T/tab.npy', x.astype(np.float32))
np.save('$T/tab64.npy', x)  # float64: converted row by row
np.savetxt('$T/tab.csv', x.astype(np.float32), delimiter=',')
np.save('$T/val.npy', (2 * r.normal(size=(100, 2))).astype(np.float32))
np.save('$T/big.npy', r.normal(size=(20000, 2)).astype(np.float32))
bad = r.normal(size=(64, 2)).astype(np.float32); bad[5, 1] = np.nan
np.save('$T/bad.npy', bad)"
# early stopping after 20 steps (patience 2, evaluations every 5, best at step 10), the
# best weights installed, checkpoints at 10 and 20, standardized (the default)
TAB=(--batch 64 --hidden 16,16 --grad-block 16 --threads 1 --steps 200 --eval-every 5
     --patience 2 --lr 0.02 --checkpoint-every 10 --json)
# tab NAME NP OUTDIR ARGS...: one table run (NP = 1: without mpirun), its JSON in OUTDIR.json
tab() {
    local name=$1 np=$2 dir=$3; shift 3
    if [ "$np" = 1 ]; then "$S" train "${TAB[@]}" --outdir "$dir" "$@" >"$T/out" 2>"$T/err" </dev/null
    else mp "$np" "$S" train "${TAB[@]}" --outdir "$dir" "$@"; fi
    local rc=$?
    tail -n 1 "$T/out" >"$dir.json"
    if [ $rc -eq 0 ]; then ok "$name: exit 0"; else not_ok "$name: exit 0" "$(head -c 600 "$T/err")"; fi
}
# same_json NAME A.json B.json: the same validation numbers, best step and stop, bit for bit
same_json() {
    check "$1" "
import json
a, b = (json.load(open(f)) for f in ('$2', '$3'))
keys = ('val_nll', 'val_nll_se', 'best_step', 'stop', 'model_step', 'train_rows', 'val_rows',
        'standardized', 'last_loss')
diff = [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k) or k not in a]
assert not diff, diff
assert a['stop'].startswith('patience') and a['best_step'] < a['model_step'], a"
}
for v in "0.2" "$T/val.npy"; do
    tag=$([ "$v" = 0.2 ] && echo frac || echo file)
    tab "table --val $tag, one process" 1 "$T/t1$tag" --data "$T/tab.npy" --val "$v" --val-block 16
    for np in 2 4; do
        tab "table --val $tag, $np processes" "$np" "$T/t$np$tag" --data "$T/tab.npy" --val "$v" \
            --val-block 16
        same_json "table --val $tag, $np processes: validation NLL, best step, early stop = one process's" \
            "$T/t1$tag.json" "$T/t$np$tag.json"
        same "table --val $tag, $np processes: best model = one process's, byte for byte" \
            "$T/t1$tag/model.sfm" "$T/t$np$tag/model.sfm"
        same "table --val $tag, $np processes: checkpoint = one process's" \
            "$T/t1$tag/checkpoint.sfm" "$T/t$np$tag/checkpoint.sfm"
    done
done
# the default --val-block (256: the 300 validation rows are 2 solves, one per process):
# the same bits; CSV (read whole by every process) on 3 processes; float64 .npy (read by
# rows, converted)
tab "table, default --val-block, 2 processes" 2 "$T/t2nb" --data "$T/tab.npy" --val 0.3
tab "table, default --val-block, one process" 1 "$T/t1nb" --data "$T/tab.npy" --val 0.3
same_json "table, default --val-block: 2 processes = one (validation numbers)" "$T/t1nb.json" \
    "$T/t2nb.json"
same "table, default --val-block: 2 processes = one" "$T/t1nb/model.sfm" "$T/t2nb/model.sfm"
tab "table .csv, 3 processes" 3 "$T/t3csv" --data "$T/tab.csv" --val 0.2 --val-block 16
same_json "table .csv on 3 processes = .npy on one" "$T/t1frac.json" "$T/t3csv.json"
same "table .csv on 3 processes: best model = .npy on one" "$T/t1frac/model.sfm" "$T/t3csv/model.sfm"
tab "table float64 .npy, 2 processes" 2 "$T/t2f8" --data "$T/tab64.npy" --val 0.2 --val-block 16
tab "table float64 .npy, one process" 1 "$T/t1f8" --data "$T/tab64.npy" --val 0.2 --val-block 16
same "table float64 .npy: 2 processes = one" "$T/t1f8/model.sfm" "$T/t2f8/model.sfm"
# whitening: rank 0 fits the full map and shares shift, scale and the factor
tab "table --standardize whiten, 2 processes" 2 "$T/t2w" --data "$T/tab.npy" --val 0.2 \
    --val-block 16 --standardize whiten
tab "table --standardize whiten, one process" 1 "$T/t1w" --data "$T/tab.npy" --val 0.2 \
    --val-block 16 --standardize whiten
same_json "table whitened on 2 processes: validation numbers = one process's" "$T/t1w.json" \
    "$T/t2w.json"
same "table whitened: 2 processes = one, byte for byte" "$T/t1w/model.sfm" "$T/t2w/model.sfm"
check "table whitened: the model holds a whitening map" "
import json; j = json.load(open('$T/t2w.json')); assert j['standardization'] == 'whiten', j"

# resume: 10 steps on 4 processes, 10 more on 2 = the same split run in one process
RES=(--data "$T/tab.npy" --batch 64 --grad-block 16 --threads 1 --val 0.2 --val-block 16
     --eval-every 5)
run "table: 10 steps, one process" "$S" train "${RES[@]}" --hidden 16,16 \
    --lr-schedule constant --steps 10 --out "$T/ra1.sfm"
run "table: resumed for 10, one process" "$S" train "${RES[@]}" --resume "$T/ra1.sfm" \
    --steps 10 --out "$T/rb1.sfm"
mp 4 "$S" train "${RES[@]}" --hidden 16,16 --lr-schedule constant --steps 10 \
    --out "$T/ra4.sfm" && ok "table: 10 steps, 4 processes" ||
    not_ok "table: 10 steps, 4 processes" "$(head -c 600 "$T/err")"
mp 2 "$S" train "${RES[@]}" --resume "$T/ra4.sfm" --steps 10 --out "$T/rb2.sfm" &&
    ok "table: resumed on 2 processes" || not_ok "table: resumed on 2 processes" "$(head -c 600 "$T/err")"
same "table: 4 processes then 2 = one process, byte for byte" "$T/rb1.sfm" "$T/rb2.sfm"
# --time: each process's clock, one agreed stop
mp 2 "$S" train "${RES[@]}" --hidden 16,16 --patience 0 --time 1 --out "$T/time.sfm" --json &&
    json "table --time 1 on 2 processes: stopped together by the time budget" \
        "d['stop'] == 'time budget' and d['ranks'] == 2" ||
    not_ok "table --time 1 on 2 processes" "$(head -c 600 "$T/err")"

# each process reads only its rows: 3 steps of 64 rows in blocks of 16 on 2 processes
# read 3 x 32 rows each; 4 evaluations (3 scheduled, the final) of the 100 validation
# rows in 7 solves of 16: rank 0 solves 3 (48 rows), rank 1 4 (52 rows)
READS=(--data "$T/big.npy" --batch 64 --hidden 16,16 --grad-block 16 --threads 1 --steps 3
       --eval-every 1 --val "$T/val.npy" --val-block 16 --out "$T/reads.sfm")
mp 2 -x STOCHFLOW_MPI_READS=1 "$S" train "${READS[@]}" --no-standardize
for want in "rank 0 read 96 data rows and 192 validation rows" \
    "rank 1 read 96 data rows and 208 validation rows"; do
    grep -q "$want" "$T/err" && ok "reads by rows, 20000-row file: $want" ||
        not_ok "reads by rows: $want" "$(grep 'read' "$T/err" | head -c 400)"
done
# with the standardization rank 0 reads the training rows once more to fit it
mp 2 -x STOCHFLOW_MPI_READS=1 "$S" train "${READS[@]}"
grep -q "rank 0 read 20096 data rows" "$T/err" && grep -q "rank 1 read 96 data rows" "$T/err" &&
    ok "standardized: rank 0 fits on all 20000 rows, rank 1 still reads 96" ||
    not_ok "standardized reads" "$(grep 'read' "$T/err" | head -c 400)"
# a NaN row that no process checked at load: the process whose share holds it fails the
# step, every process stops, rank 0 says so once
fault "table: a NaN row in one process's share stops every process" \
    "training: rank [0-9]: rows [0-9]+\.\.[0-9]+ at model step 0: .*non-finite" 2 \
    "$S" train "${TAB[@]}" --data "$T/bad.npy" --val-block 16 --val 0.25 --no-standardize \
    --outdir "$T/tbad"
# rank 0 cannot write its checkpoint: the trainer stops every process after that step
mkdir -p "$T/tck/checkpoint.sfm"
fault "table: rank 0's checkpoint fails: every process stops" \
    "checkpoint\.sfm.*stopped after 10 steps" 2 \
    "$S" train "${TAB[@]}" --data "$T/tab.npy" --val 0.2 --val-block 16 --outdir "$T/tck"
# (standardized, rank 0 meets it first, fitting the map on every training row)
fault "table: a NaN row met by rank 0's standardization fit" \
    "training: rank 0: fit_standardization.*non-finite" 2 \
    "$S" train "${TAB[@]}" --data "$T/bad.npy" --val-block 16 --val 0.25 --outdir "$T/tbad"

fault "no --grad-block under mpirun: a usage error, said once" "grad-block B is required" 2 \
    "$S" train --data moons --batch 64 --steps 2 --out "$T/x.sfm"
[ ! -e "$T/x.sfm" ] && ok "usage error: nothing written" || not_ok "usage error: nothing written"

# a bad data row in rank 1's share at model step 8 (checkpoints at 6)
fault "bad row in rank 1's share stops every process" "rank 1: rows 32\.\.63 at model step 8: .*non-finite" 2 \
    -x STOCHFLOW_MPI_FAULT=data:1:8 "$S" train "${ARGS[@]}" --steps 12 --checkpoint-every 6 \
    --outdir "$T/f1"
mp 1 "$S" train "${ARGS[@]}" --steps 6 --out "$T/six.sfm"
same "bad row: the step-6 checkpoint is intact" "$T/six.sfm" "$T/f1/checkpoint.sfm"

fault "NaN partial gradient on rank 0 stops every process" "rank 0: partial gradient .* not finite" 4 \
    -x STOCHFLOW_MPI_FAULT=nan:0:3 "$S" train "${ARGS[@]}" --steps 12 --outdir "$T/f2"

# rank 0 cannot write its checkpoint (a directory stands where the file goes)
mkdir -p "$T/f3/checkpoint.sfm"
fault "rank 0's checkpoint fails: every process stops" "rank 0: .*checkpoint\.sfm.*stopped after 6 steps" 2 \
    "$S" train "${ARGS[@]}" --steps 12 --checkpoint-every 6 --outdir "$T/f3"

# stop_rank NAME SIGNAL PATTERN EXTRA...: a long run on 2 processes, SIGNAL sent to rank
# 1's process once both run; the job must end non-zero within 30 s, PATTERN on stderr
stop_rank() {
    local name=$1 sig=$2 pat=$3; shift 3
    local t0=$SECONDS kids=() mpr rc
    timeout 60 "${MPIRUN[@]}" -np 2 "$S" train "${ARGS[@]}" --steps 100000000 \
        --out "$T/k.sfm" "$@" >"$T/kout" 2>"$T/kerr" </dev/null &
    local tpid=$! # timeout's; mpirun is its child, the processes mpirun's children
    for _ in $(seq 100); do
        mpr=$(pgrep -P "$tpid" | head -n 1)
        [ -n "$mpr" ] && mapfile -t kids < <(pgrep -P "$mpr")
        [ "${#kids[@]}" -ge 2 ] && break
        sleep 0.1
    done
    sleep 1
    if [ "${#kids[@]}" -lt 2 ]; then
        kill "$tpid" 2>/dev/null
        wait "$tpid"
        not_ok "$name" "found ${#kids[@]} processes under mpirun"
        return
    fi
    kill -"$sig" "${kids[1]}"
    wait "$tpid"
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $((SECONDS - t0)) -lt 30 ] &&
        grep -qE -e "$pat" "$T/kerr"; then
        ok "$name: exit $rc in $((SECONDS - t0)) s"
    else
        not_ok "$name" "exit $rc after $((SECONDS - t0)) s, want /$pat/" "$(head -c 400 "$T/kerr")"
    fi
}
# a killed process: mpirun ends the job
stop_rank "killed process: the job ends" KILL "exited on signal 9"
# a process that stops answering (SIGSTOP): the others give up after --mpi-timeout
stop_rank "stopped process: bounded wait, then abort" STOP "rank 0: no .* from rank 1 within 2 s" \
    --mpi-timeout 2

# ---- the mpi4py example over the same seam ----------------------------------------------
HERE=$(cd "$(dirname "$0")" && pwd)
if $PY -c "import mpi4py" 2>/dev/null; then
    export PYTHONPATH="$HERE/../bindings/python" STOCHFLOW_LIBRARY="$(dirname "$S")/../lib/libstochflow.so"
    mp 4 -x PYTHONPATH -x STOCHFLOW_LIBRARY $PY "$HERE/../bindings/python/examples/mpi_train.py"         --steps 5 --check
    grep -q "same bits as one process: True" "$T/out" &&
        ok "mpi4py example, 4 processes: same bits as one process" ||
        not_ok "mpi4py example, 4 processes" "$(head -c 300 "$T/out")" "$(head -c 600 "$T/err")"
else
    ok "mpi4py example # SKIP python3 has no mpi4py (Debian: python3-mpi4py)"
fi

echo "1..$n"
[ $failed -eq 0 ]
