#!/bin/bash
# cond_images.sh - evaluation of a class-conditional Fashion-MNIST model (bench/CONDITIONAL.md),
# run by hand from the source root after `ninja -C build`:
#
#   bash bench/cond_images.sh MODEL [OUT-DIR]
#
# Environment: SF (the stochflow program, default build/tools/stochflow), CLS (the
# classifier's weights, default /work/runs/fmnist_classifier.pt), THREADS (default 2),
# N_BPD (test images for bits/dim, default 256), PER_CLASS (guided samples per class and
# guidance value, default 50), STEPS (RK4 steps of those samples, default 10), GRID_STEPS
# (RK4 steps of the grid, default 20), WS (guidance values, default "0 1 3"), GRID (the
# grid picture, default bench/cond_fmnist_grid.png).
#
# 1. bench/cond_fmnist_grid.png: 10 samples of each class, one row per class, w = 1.
# 2. Bits/dim of the first N_BPD dequantized test images given their true labels, and of
#    the same images under the same model without labels (label -1, its unconditional
#    density): Hutchinson trace (one probe), dopri5 rtol = atol = 1e-4, the same
#    dequantization and probes for both, so their per-image difference is paired.
# 3. Accuracy of bench/fmnist_classifier.py on PER_CLASS samples of every class for each
#    guidance w in WS (and their Frechet distance in the classifier's features to the test
#    set), and its accuracy on the real test images (the ceiling).
# Everything goes to OUT-DIR (default /tmp/stochflow-cond-images); the summary table is
# printed at the end and written to OUT-DIR/summary.md.
set -eu
M=${1:?usage: cond_images.sh MODEL [OUT-DIR]}
OUT=${2:-/tmp/stochflow-cond-images}
SF=${SF:-build/tools/stochflow}
CLS=${CLS:-/work/runs/fmnist_classifier.pt}
T=${THREADS:-2}
N_BPD=${N_BPD:-256}
PER=${PER_CLASS:-50}
STEPS=${STEPS:-10}
GRID_STEPS=${GRID_STEPS:-20}
WS=${WS:-0 1 3}
GRID=${GRID:-bench/cond_fmnist_grid.png}
PY=/usr/bin/python3
C="$PY bench/fmnist_classifier.py"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$T
mkdir -p "$OUT"
log() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

log "grid: 10 per class, w = 1, RK4 x $GRID_STEPS"
"$SF" sample --model "$M" --labels all -n 10 --guidance 1 --steps "$GRID_STEPS" --seed 7 \
  --png "$GRID" --out "$OUT/grid.npy" --threads "$T" --json | tail -n 1 >"$OUT/grid.json"

log "real test images: the classifier's ceiling"
$C testset --out "$OUT/test.npy" --labels-out "$OUT/test_labels.npy" >/dev/null
$C accuracy --model "$CLS" --images "$OUT/test.npy" --labels "$OUT/test_labels.npy" >"$OUT/acc_test.json"

for w in $WS; do
  log "samples: $PER per class, w = $w, RK4 x $STEPS"
  "$SF" sample --model "$M" --labels all -n "$PER" --guidance "$w" --steps "$STEPS" --seed 11 \
    --out "$OUT/samples_w$w.npy" --threads "$T" --json | tail -n 1 >"$OUT/sample_w$w.json"
  $PY -c "import numpy as np; np.save('$OUT/labels_w$w.npy', np.repeat(np.arange(10), $PER))"
  $C accuracy --model "$CLS" --images "$OUT/samples_w$w.npy" --labels "$OUT/labels_w$w.npy" >"$OUT/acc_w$w.json"
  $C frechet --model "$CLS" --images "$OUT/samples_w$w.npy" >"$OUT/fd_w$w.json"
done

LP=(--data fashion-mnist:test --bpd -n "$N_BPD" --batch 64 --rtol 1e-4 --atol 1e-4 --threads "$T" --json)
log "bits/dim given the true labels ($N_BPD test images)"
"$SF" logp --model "$M" "${LP[@]}" --labels dataset --out "$OUT/bpd_cond.npy" | tail -n 1 >"$OUT/bpd_cond.json"
log "bits/dim without labels (label -1)"
"$SF" logp --model "$M" "${LP[@]}" --out "$OUT/bpd_uncond.npy" | tail -n 1 >"$OUT/bpd_uncond.json"

log "summary"
$PY - "$OUT" "$WS" "$PER" "$STEPS" "$N_BPD" <<'EOF' | tee "$OUT/summary.md"
import json, sys, numpy as np
out, ws, per, steps, nb = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5]
J = lambda f: json.load(open(f"{out}/{f}"))
c, u = J("bpd_cond.json"), J("bpd_uncond.json")
d = np.load(f"{out}/bpd_cond.npy")[:, 1] - np.load(f"{out}/bpd_uncond.npy")[:, 1]
print("| measurement | value |")
print("|---|---|")
print(f"| bits/dim given the true label, first {nb} test images | {c['bpd']:.4f} +- {c['bpd_se']:.4f} |")
print(f"| bits/dim without label (label -1), same images | {u['bpd']:.4f} +- {u['bpd_se']:.4f} |")
print(f"| paired difference conditional - unconditional | {d.mean():.4f} +- {d.std(ddof=1) / np.sqrt(len(d)):.4f} |")
print(f"| classifier accuracy on real test images (ceiling) | {J('acc_test.json')['accuracy']:.4f} (n = {J('acc_test.json')['n']}) |")
for w in ws:
    a, f = J(f"acc_w{w}.json"), J(f"fd_w{w}.json")
    print(f"| accuracy of guided samples, w = {w} ({per} per class, RK4 x {steps}) | {a['accuracy']:.4f} "
          f"(n = {a['n']}); Frechet distance to the test set {f['frechet']:.2f} |")
for w in ws:
    a = J(f"acc_w{w}.json")
    print(f"\nper class, w = {w}: " + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(a["per_class"].items(), key=lambda kv: int(kv[0]))))
EOF
