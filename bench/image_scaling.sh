#!/bin/sh
# Issue 8 scaling measurement (bench/IMAGES.md), run by hand from the source root after
# `ninja -C build`:   sh bench/image_scaling.sh [build-dir] [out-dir]
# 1. Time and peak memory of a U-Net training step at 32x32, 64x64 and 128x128 RGB
#    (bench/unet_scaling.c: same U-Net family, batch 8, median of 5 steps, THREADS
#    threads (default 2),
#    one process per size so that each peak RSS is that size's own).
# 2. End to end at 128x128 through the CLI on a synthetic PNG folder: train, sample grid.
set -e
B=${1:-build}
T=${THREADS:-2}
OUT=${2:-/tmp/stochflow-image-scaling}
mkdir -p "$OUT"
export OMP_WAIT_POLICY=PASSIVE
for s in 32 64 128; do  # cpu_s/step is the number to compare on a busy machine
  "$B/bench/unet_scaling" $s 8 5 $T
done | tee "$OUT/scaling.txt"
/usr/bin/python3 bench/make_pngdir.py "$OUT/png128" 64 128 1
"$B/tools/stochflow" train --data "pngdir:$OUT/png128" --out "$OUT/m128.sfm" --outdir "$OUT" \
  --steps 20 --batch 4 --threads $T --unet-base 32 --unet-mult 1,2,2,2 --unet-attn 3 \
  --sample-every 20 --grid-steps 4 | tee "$OUT/train128.txt"
"$B/tools/stochflow" sample --model "$OUT/m128.sfm" --png "$OUT/grid128.png" --n 4 \
  --threads $T | tee "$OUT/sample128.txt"
