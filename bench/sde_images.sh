#!/bin/bash
# sde_images.sh MODEL OUTDIR - the Fashion-MNIST section of bench/SDE.md: ODE vs SDE
# samplers at 40 evaluations (500 images, labels 0..9 in equal numbers, no guidance),
# their Frechet distances, and the ODE / SDE likelihoods of 100 test images. Four
# single-threaded processes side by side (the machine is shared); JSON lines in
# OUTDIR/*.jsonl. Run from the repository root after `ninja -C build`.
set -eu
M=${1:?usage: sde_images.sh MODEL OUTDIR}
O=${2:?usage: sde_images.sh MODEL OUTDIR}
mkdir -p "$O"
export STOCHFLOW_LIBRARY=${STOCHFLOW_LIBRARY:-$PWD/build/lib/libstochflow.so}
export PYTHONPATH=$PWD/bindings/python OMP_WAIT_POLICY=PASSIVE
B="/usr/bin/python3 bench/sde_images.py"
S="sample --model $M --out-dir $O/samples --n 500 --nfe 40"
$B $S --specs ode-rk4,ode-heun,ode-euler > "$O/sample_a.jsonl" &
$B $S --specs em:0.1,em:0.5,em:1 > "$O/sample_b.jsonl" &
$B $S --specs heun:0.1,heun:0.5,heun:1 > "$O/sample_c.jsonl" &
$B lik --model "$M" --n 100 --ode-steps 10 --sde-steps 20 --paths 4 --eps 0,0.5 > "$O/lik.jsonl" &
wait
$B frechet --dir "$O/samples" --classifier /work/runs/fmnist_classifier.pt --n 500 > "$O/frechet.jsonl"
