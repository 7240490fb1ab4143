#!/bin/bash
# cli_test.sh - end-to-end tests of the stochflow program (run by meson: `meson test cli`).
# usage: cli_test.sh PATH/TO/stochflow
# Every subcommand, the train -> sample -> logp round trip, resume bit-for-bit, JSON keys,
# pictures, and every bad-input case (non-zero exit, one line on stderr, no crash).
# Output is TAP.
set -u
SF=${1:?usage: cli_test.sh PATH/TO/stochflow}
. "$(dirname "$0")/cli_lib.sh"

SMALL=(--hidden 16,16 --batch 64 --threads 1)
FINITE='all(isinstance(v,(int,float)) and math.isfinite(v) for k,v in d.items() if isinstance(v,(int,float)) and not isinstance(v,bool))'

# ---- help -----------------------------------------------------------------------------
run "stochflow --help" "$SF" --help
for c in train sample logp info demo; do run "$c --help" "$SF" $c --help; done

# ---- train on a toy, resume bit-for-bit ------------------------------------------------
run "train toy" "$SF" train --data checkerboard --out "$T/m.sfm" --steps 30 "${SMALL[@]}" --json &&
    json "train JSON keys" "d['steps']==30 and all(k in d for k in ('steps','loss','seconds','steps_per_second')) and d['seconds']>0 and d['steps_per_second']>0 and $FINITE"
# (splitting a run with --steps: a constant schedule, since the default cosine spans the
# --steps of the run that created the model)
run "train 30 steps, constant lr" "$SF" train --data checkerboard --out "$T/m30.sfm" --steps 30 "${SMALL[@]}" --lr-schedule constant
run "train 15 steps" "$SF" train --data checkerboard --out "$T/half.sfm" --steps 15 "${SMALL[@]}" --lr-schedule constant
run "resume 15 more" "$SF" train --data checkerboard --out "$T/resumed.sfm" --resume "$T/half.sfm" --steps 15 --batch 64 --threads 1 --json &&
    json "resume reaches step 30" "d['model_step']==30 and d['steps']==15"
run "sample from 30-step model" "$SF" sample --model "$T/m30.sfm" -n 64 --out "$T/a.npy" --solver rk4 --steps 8
run "sample from resumed model" "$SF" sample --model "$T/resumed.sfm" -n 64 --out "$T/b.npy" --solver rk4 --steps 8
if cmp -s "$T/a.npy" "$T/b.npy"; then ok "resume continues bit-for-bit (identical samples)"; else not_ok "resume continues bit-for-bit"; fi
fails "resume cannot change the architecture" "cannot change" "$SF" train --data checkerboard --out "$T/x.sfm" --resume "$T/half.sfm" --hidden 8

# the default recipe of a new MLP model (doc/training-recipe.md): lr 2e-3 (a toy: 3e-3) on a cosine
# schedule over --steps; options override it; a resumed model keeps its saved schedule
run "default recipe" "$SF" info --model "$T/m.sfm" --json &&
    json "default lr on a toy 3e-3, cosine" "d['lr']==3e-3 and d['lr_schedule_name']=='cosine'"
run "recipe overridden" "$SF" train --data checkerboard --out "$T/cst.sfm" --steps 5 "${SMALL[@]}" --lr 1e-3 --lr-schedule constant &&
    "$SF" info --model "$T/cst.sfm" --json >"$T/out" && json "override: lr 1e-3 constant" "d['lr']==1e-3 and d['lr_schedule_name']=='constant'"
run "resume keeps the schedule" "$SF" train --data checkerboard --out "$T/cst2.sfm" --resume "$T/cst.sfm" --steps 5 --threads 1 &&
    "$SF" info --model "$T/cst2.sfm" --json >"$T/out" && json "resumed: lr 1e-3 constant" "d['lr']==1e-3 and d['lr_schedule_name']=='constant' and d['step']==10"

# ---- progress bar only on a terminal (stderr was checked empty above) -------------------
if command -v script >/dev/null 2>&1; then
    script -qec "'$SF' train --data checkerboard --out '$T/tty.sfm' --steps 300 ${SMALL[*]}" /dev/null >"$T/tty" 2>&1 </dev/null
    if grep -q 'ETA' "$T/tty" && grep -q 'loss' "$T/tty" && grep -q 'steps/s' "$T/tty"; then
        ok "progress bar with rate, ETA and loss on a terminal"
    else
        not_ok "progress bar on a terminal" "$(head -c 400 "$T/tty")"
    fi
else
    ok "progress bar on a terminal # SKIP script(1) not installed"
fi

# ---- Ctrl-C during training saves a resumable checkpoint and exits 130 -------------------
# Under a 4 GB address-space limit: 10^9 steps must not need their loss history up front
# (8 GB); stderr is a file, so a progress line appears every 5 s.
bash -c 'ulimit -v 4000000 && exec "$@"' limited "$SF" train --data checkerboard --out "$T/int.sfm" --steps 1000000000 --hidden 8,8 --batch 16 --threads 1 >"$T/out" 2>"$T/err" </dev/null &
pid=$!
sleep 7
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && grep -q 'interrupted after' "$T/err" && "$SF" info --model "$T/int.sfm" >/dev/null 2>&1; then
    ok "SIGINT (10^9 steps under ulimit -v): checkpoint saved, exit 130"
else
    not_ok "SIGINT (10^9 steps under ulimit -v): checkpoint saved, exit 130" "exit $rc" "$(head -c 300 "$T/err")"
fi
if grep -qE '^progress: train [0-9]+% \([0-9]+/1e\+09 steps\), .* steps/s, elapsed 0:0[5-9], ETA .*, loss ' "$T/err" &&
    [ "$(grep -c '^progress: ' "$T/err")" -le 2 ] && [ "$(grep -vc '^progress: ' "$T/err")" -eq 1 ]; then
    ok "stderr not a terminal: a progress line every 5 s, then the one final line"
else
    not_ok "stderr not a terminal: a progress line every 5 s" "$(head -c 600 "$T/err")"
fi

# ---- a new toy model's defaults: 4 x 128, rate 3e-3, the batch target, 120000 steps ------
"$SF" train --data moons --out "$T/toydef.sfm" --threads 1 >"$T/out" 2>"$T/err" </dev/null &
pid=$!
sleep 6
kill -INT $pid
wait $pid
if grep -qE '^progress: train [0-9]+% \([0-9]+/120000 steps\)' "$T/err" &&
    "$SF" info --model "$T/toydef.sfm" >"$T/toydef.info" 2>&1 &&
    grep -q '^hidden *128,128,128,128 ' "$T/toydef.info" && grep -q '^lr *0.003 ' "$T/toydef.info" &&
    grep -q '^target *batch posterior' "$T/toydef.info"; then
    ok "a new toy model: 4 x 128, rate 3e-3, the batch target and 120000 steps by default"
else
    not_ok "a new toy model: 4 x 128, rate 3e-3, the batch target and 120000 steps by default" \
        "$(head -c 400 "$T/err")" "$(head -c 400 "$T/toydef.info")"
fi
run "a toy model with --train-target draw" "$SF" train --data moons --out "$T/toydraw.sfm" --steps 5 --train-target draw &&
    run "info of it" "$SF" info --model "$T/toydraw.sfm" --json &&
    json "--train-target draw overrides the toy default" "d['train_target']=='draw'"
run "a toy model with --coupling sinkhorn" "$SF" train --data moons --out "$T/toysk.sfm" --steps 5 --coupling sinkhorn &&
    run "info of it" "$SF" info --model "$T/toysk.sfm" --json &&
    json "a coupling keeps the toy's plain target (the batch target needs independent pairs)" "d['train_target']=='draw'"

# ---- the residual MLP (--resmlp W,B) ------------------------------------------------------
run "train a residual MLP" "$SF" train --data moons --out "$T/res.sfm" --steps 20 --resmlp 16,2 --batch 64 --threads 1
"$SF" info --model "$T/res.sfm" --json >"$T/out" 2>&1
json "info JSON: residual MLP 16 x 2" "d['arch']=='resmlp' and d['res_width']==16 and d['res_blocks']==2 and d['res_experts']==0 and 'hidden' not in d and d['step']==20"
# info_line NAME MODEL PATTERN: `info` of MODEL prints a line matching PATTERN
info_line() {
    if "$SF" info --model "$2" 2>&1 | grep -q "$3"; then
        ok "$1"
    else
        not_ok "$1" "$("$SF" info --model "$2" 2>&1 | head -c 400)"
    fi
}
info_line "info prints the residual MLP" "$T/res.sfm" '^network *residual MLP, width 16, 2 block(s) (silu)'
run "logp of the residual MLP" "$SF" logp --model "$T/res.sfm" --data moons -n 16 --out "$T/res_lp.npy" --threads 1
fails "resume cannot change to --resmlp" "cannot change" "$SF" train --data moons --out "$T/x.sfm" --resume "$T/res.sfm" --resmlp 8,1
fails "--resmlp with --hidden" "--resmlp and --hidden" "$SF" train --data moons --out "$T/x.sfm" --resmlp 16,2 --hidden 8
fails "--resmlp needs width and blocks" "WIDTH,BLOCKS" "$SF" train --data moons --out "$T/x.sfm" --resmlp 16
fails "--resmlp blocks out of range" "WIDTH,BLOCKS" "$SF" train --data moons --out "$T/x.sfm" --resmlp 16,65
fails "--resmlp zero width" "comma list of integers in 1..65536" "$SF" train --data moons --out "$T/x.sfm" --resmlp 0,2
run "train a residual MLP with linear experts" "$SF" train --data moons --out "$T/resx.sfm" --steps 20 --resmlp 16,2,3 --batch 64 --threads 1
"$SF" info --model "$T/resx.sfm" --json >"$T/out" 2>&1
json "info JSON: 3 linear experts" "d['arch']=='resmlp' and d['res_width']==16 and d['res_blocks']==2 and d['res_experts']==3"
info_line "info prints the linear experts" "$T/resx.sfm" '^network *residual MLP, width 16, 2 block(s), 3 linear expert(s) (silu)'
run "logp of the residual MLP with experts" "$SF" logp --model "$T/resx.sfm" --data moons -n 16 --out "$T/resx_lp.npy" --threads 1
fails "--resmlp experts out of range" "WIDTH,BLOCKS\[,EXPERTS\]" "$SF" train --data moons --out "$T/x.sfm" --resmlp 16,2,65
fails "--resmlp four values" "at most 3 values" "$SF" train --data moons --out "$T/x.sfm" --resmlp 16,2,3,4

# ---- info -------------------------------------------------------------------------------
run "info" "$SF" info --model "$T/m.sfm" --json &&
    json "info JSON" "d['dim']==2 and d['hidden']==[16,16] and d['step']==30 and d['interpolant']=='trig' and d['params']>0"

# ---- sample: npy, csv, png, logp column -----------------------------------------------
run "sample npy + png + logp" "$SF" sample --model "$T/m.sfm" -n 500 --out "$T/s.npy" --png "$T/s.png" --with-logp --json &&
    json "sample JSON keys" "d['n']==500 and d['nfe']>0 and d['seconds']>=0 and $FINITE"
check "sample .npy shape and values" "
import numpy as np; a=np.load('$T/s.npy'); assert a.shape==(500,3) and a.dtype==np.float32 and np.isfinite(a).all()"
check "png written" "
b=open('$T/s.png','rb').read(); assert b[:8]==b'\x89PNG\r\n\x1a\n' and len(b)>200"
run "sample csv" "$SF" sample --model "$T/m.sfm" -n 100 --out "$T/s.csv" --solver heun --steps 10
check "sample .csv" "
import numpy as np; a=np.loadtxt('$T/s.csv',delimiter=',',skiprows=1); assert a.shape==(100,2) and np.isfinite(a).all()
assert open('$T/s.csv').readline().strip()=='x1,x2'"
run "sample euler" "$SF" sample --model "$T/m.sfm" -n 10 --out "$T/e.npy" --solver euler --steps 5

# ---- logp: toy (truth known), files, round trip ---------------------------------------
run "logp toy" "$SF" logp --model "$T/m.sfm" --data checkerboard -n 300 --json &&
    json "logp JSON keys and truth" "all(k in d for k in ('n','nll','se','nfe','seconds','entropy','gap')) and d['n']==300 and abs(d['entropy']-math.log(32))<1e-9 and abs(d['gap']-(d['nll']-d['entropy']))<1e-8 and d['se']>0 and $FINITE"
grep -q 'true entropy' "$T/out" && ok "logp prints the true entropy" || not_ok "logp prints the true entropy"
run "logp 8gaussians" "$SF" logp --model "$T/m.sfm" --data 8gaussians -n 50 --json &&
    json "8gaussians entropy" "abs(d['entropy']-2.8362)<0.01"
run "logp moons (no truth)" "$SF" logp --model "$T/m.sfm" --data moons -n 50 --json &&
    json "no entropy for moons" "'entropy' not in d and d['n']==50"
run "logp hutchinson" "$SF" logp --model "$T/m.sfm" --data checkerboard -n 100 --trace hutchinson --probes 4 --json &&
    json "hutchinson JSON" "d['trace']=='hutchinson' and $FINITE"
# round trip: log p of the samples by the backward pass matches the forward pass
$PY -c "import numpy as np; a=np.load('$T/s.npy'); np.save('$T/s2.npy', a[:, :2].astype(np.float64))"
run "logp on sampled .npy (float64)" "$SF" logp --model "$T/m.sfm" --data "$T/s2.npy" --out "$T/lp.npy" --json &&
    json "logp file JSON" "d['n']==500 and 'entropy' not in d"
check "round trip: forward and backward log p agree (dopri5 1e-5)" "
import numpy as np; a=np.load('$T/s.npy'); lp=np.load('$T/lp.npy')[:,0]
err=np.abs(a[:,2]-lp).max(); assert err<2e-2, err"
run "logp on .csv" "$SF" logp --model "$T/m.sfm" --data "$T/s.csv" -n 20

# ---- train from files --------------------------------------------------------------------
printf 'x,y\n' >"$T/d.csv"
$PY -c "import numpy as np; a=np.random.default_rng(0).normal(size=(200,2)).astype(np.float32); np.save('$T/d.npy',a); np.savetxt(open('$T/d.csv','a'),a,delimiter=',')"
run "train from .npy" "$SF" train --data "$T/d.npy" --out "$T/f.sfm" --steps 10 "${SMALL[@]}"
run "train from .csv with header" "$SF" train --data "$T/d.csv" --out "$T/g.sfm" --steps 10 "${SMALL[@]}" --interpolant linear --activation tanh --time-fourier 2 --lr-schedule step --ema 0.9
run "info on linear model" "$SF" info --model "$T/g.sfm" --json && json "info linear/tanh/fourier" "d['interpolant']=='linear' and d['activation']=='tanh' and d['n_freq']==2"
$PY -c "import numpy as np; np.save('$T/d5.npy', np.random.default_rng(1).normal(size=(100,5)).astype(np.float32))"
run "train 5-D" "$SF" train --data "$T/d5.npy" --out "$T/m5.sfm" --steps 5 "${SMALL[@]}"
run "sample 5-D with png" "$SF" sample --model "$T/m5.sfm" -n 50 --out "$T/s5.npy" --png "$T/s5.png"

# ---- demo (tiny) ----------------------------------------------------------------------------
run "demo (tiny)" "$SF" demo --outdir "$T/demo" --steps 20 --hidden 16,16 --batch 64 --eval-n 50 --samples 300 --grid 8 --threads 1 --json &&
    json "demo JSON keys" "all(k in d for k in ('nll','entropy','gap','seconds','picture','data_png','samples_png','density_png','loss_png')) and abs(d['entropy']-math.log(32))<1e-9 and $FINITE" &&
    json "demo trains on the batch-posterior target by default" "d['train_target']=='batch'"
check "demo pictures are PNG files" "
import json; d=json.loads(open('$T/out').read().strip().splitlines()[-1])
for k in ('picture','data_png','samples_png','density_png','loss_png'):
    assert open(d[k],'rb').read(8)==b'\x89PNG\r\n\x1a\n', k"
run "info on the demo's model" "$SF" info --model "$T/demo/model.sfm" --json &&
    json "the demo's model records the batch target" "d['train_target']=='batch'"
run "demo (tiny, plain target)" "$SF" demo --outdir "$T/demo3" --steps 20 --hidden 16,16 --batch 64 --eval-n 50 --samples 300 --grid 8 --threads 1 --train-target draw --json &&
    json "demo --train-target draw" "d['train_target']=='draw' and $FINITE"
run "info on the plain-target demo's model" "$SF" info --model "$T/demo3/model.sfm" --json &&
    json "the plain-target demo's model records the draw target" "d['train_target']=='draw'"

# ---- the path-length estimate is printed for the learnable interpolant only -------------
run "train trig" "$SF" train --data checkerboard --out "$T/pl.sfm" --steps 5 "${SMALL[@]}" --json
! grep -q 'path length' "$T/out" && json "no path_length for trig" "'path_length' not in d" ||
    not_ok "no path-length line for the trig interpolant" "$(head -c 300 "$T/out")"
run "train fourier:2" "$SF" train --data checkerboard --out "$T/pl.sfm" --steps 5 "${SMALL[@]}" --interpolant fourier:2 --time-fourier 2 --json
grep -q 'path length estimate' "$T/out" && json "path_length for fourier" "math.isfinite(d['path_length'])" ||
    not_ok "path-length line for the Fourier interpolant" "$(head -c 300 "$T/out")"

# ---- periodic checkpoints for every kind of data ----------------------------------------
mkdir -p "$T/ck"
run "train toy --checkpoint-every 10" "$SF" train --data checkerboard --out "$T/ck/m.sfm" --steps 25 "${SMALL[@]}" --checkpoint-every 10 --json &&
    json "two periodic checkpoints" "d['checkpoints']==2 and d['checkpoint'].endswith('ck/checkpoint.sfm')"
run "the periodic checkpoint loads" "$SF" info --model "$T/ck/checkpoint.sfm" --json && json "checkpoint at step 20" "d['step']==20"
run "train .npy --checkpoint-every into --outdir" "$SF" train --data "$T/d.npy" --outdir "$T/ck2" --steps 6 "${SMALL[@]}" --checkpoint-every 3 --json &&
    json "--outdir: model and checkpoints there" "d['checkpoints']==2 and d['model'].endswith('ck2/model.sfm')"
ls -A "$T/ck" "$T/ck2" | grep -q "\.tmp" && not_ok "no temporary files left" "$(ls "$T/ck" "$T/ck2")" || ok "no temporary files left"
run "resume from the periodic checkpoint, writing it again" "$SF" train --data checkerboard --resume "$T/ck/checkpoint.sfm" --out "$T/ck/m2.sfm" --steps 10 --batch 64 --threads 1 --checkpoint-every 5 --json &&
    json "resumed to step 30" "d['model_step']==30 and d['checkpoints']==2"

# ---- outputs are checked before any work ---------------------------------------------------
# (10^9 steps or a large n: without the check these would work for minutes first)
fails "train --out in a missing directory (toy)" "cannot write.*nodir/m.sfm.*not an existing directory" timeout 60 "$SF" train --data checkerboard --out "$T/nodir/m.sfm" --steps 1000000000 "${SMALL[@]}"
fails "train --out in a missing directory (file)" "cannot write.*nodir/m.sfm.*not an existing directory" timeout 60 "$SF" train --data "$T/d.npy" --out "$T/nodir/m.sfm" --steps 1000000000 "${SMALL[@]}"
fails "train --transport-png in a missing directory" "cannot write.*nodir/t.png" timeout 60 "$SF" train --data checkerboard --out "$T/x.sfm" --transport-png "$T/nodir/t.png" --steps 1000000000 "${SMALL[@]}"
fails "sample --out in a missing directory" "cannot write.*nodir/x.npy.*not an existing directory" "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/nodir/x.npy"
fails "sample --png in a missing directory" "cannot write.*nodir/x.png.*not an existing directory" "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/x.npy" --png "$T/nodir/x.png"
fails "logp --out in a missing directory" "cannot write.*nodir/l.npy.*not an existing directory" "$SF" logp --model "$T/m.sfm" --data checkerboard -n 5 --out "$T/nodir/l.npy"
[ ! -e "$T/x.npy" ] && ok "nothing written" || not_ok "nothing written"
cp "$T/d.csv" "$T/same.csv"
fails "train --out is the --data file" "same file as the input" "$SF" train --data "$T/same.csv" --out "$T/same.csv" --steps 1 "${SMALL[@]}"
ln -f "$T/same.csv" "$T/link.csv"
fails "logp --out is the --data file (a hard link)" "same file as the input" "$SF" logp --model "$T/m.sfm" --data "$T/same.csv" --out "$T/link.csv"
fails "sample --out is the --base file" "same file as the input" "$SF" sample --model "$T/m.sfm" -n 5 --base "$T/same.csv" --out "$T/same.csv"
cmp -s "$T/d.csv" "$T/same.csv" && ok "the input is untouched" || not_ok "the input is untouched"
fails "train --out is a directory" "is a directory" "$SF" train --data checkerboard --out "$T/ck" --steps 1 "${SMALL[@]}"

# ---- a file-size limit: an I/O error (exit 1), no temporary file left ------------------------
mkdir -p "$T/fsz"
fails "sample under ulimit -f: I/O error" "cannot write.*big.npy.*File too large" limited -f 16 "$SF" sample --model "$T/m.sfm" -n 20000 --out "$T/fsz/big.npy" --solver euler --steps 2
fails "train under ulimit -f: I/O error" "fsz/m.sfm.*File too large" limited -f 16 "$SF" train --data checkerboard --out "$T/fsz/m.sfm" --steps 1 --hidden 256,256 --batch 8 --threads 1
[ -z "$(ls -A "$T/fsz")" ] && ok "no file left behind" || not_ok "no file left behind" "$(ls -A "$T/fsz")"

# ---- JSON: the whole data path, valid UTF-8 whatever the path's bytes -----------------------
LONGDIR="$T/a-directory-name-that-is-longer-than-sixty-three-characters-all-by-itself"
BADDIR="$T/$(printf 'latin1-\xe9t\xe9-\xff')"
mkdir -p "$LONGDIR" "$BADDIR"
cp "$T/d.npy" "$LONGDIR/d.npy"; cp "$T/d.npy" "$BADDIR/d.npy"
run "train on a long path" "$SF" train --data "$LONGDIR/d.npy" --out "$T/x.sfm" --steps 1 "${SMALL[@]}" --json &&
    json "JSON data is the whole path" "d['data']=='$LONGDIR/d.npy'"
run "train on a non-UTF-8 path" "$SF" train --data "$BADDIR/d.npy" --out "$T/x.sfm" --steps 1 "${SMALL[@]}" --json &&
    check "JSON is valid UTF-8, the bytes as \\u00XX" "
import json; line=open('$T/out','rb').read().splitlines()[-1]
d=json.loads(line.decode('utf-8'))
assert d['data']=='$T/latin1-\u00e9t\u00e9-\u00ff/d.npy', d['data']
assert b'\\u00e9' in line and b'\\u00ff' in line, line"
run "logp on a UTF-8 path" "$SF" logp --model "$T/m.sfm" --data "$T/s.csv" -n 3 --json && json "logp JSON data" "d['data']=='$T/s.csv'"
mkdir -p "$T/ünï"; cp "$T/d.npy" "$T/ünï/d.npy"
run "UTF-8 path kept as it is" "$SF" logp --model "$T/m.sfm" --data "$T/ünï/d.npy" -n 3 --json && json "UTF-8 path in JSON" "d['data']=='$T/ünï/d.npy'"

# ---- option values out of range are usage errors (exit 2), however late they are used -----
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --lr nan
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --lr 0
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --threads 0
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --batch 0
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --ema 2
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --weight-decay 2   # the library's bound: [0, 1]
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --coupling bogus
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --interp-lr 0
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --train-target bogus
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --train-target batch --base 8gaussians
run "train --train-target batch" "$SF" train --data checkerboard --out "$T/bt.sfm" --steps 40 --hidden 16 --train-target batch &&
    run "info of a batch-target model" "$SF" info --model "$T/bt.sfm" --json &&
    json "info: train_target batch" "d['train_target']=='batch'"
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --train-target batch --coupling sinkhorn
usage_fails "$SF" train --data checkerboard --resume "$T/bt.sfm" --out "$T/x.sfm" --steps 5 --base 8gaussians
run "resume keeps the batch target" "$SF" train --data checkerboard --resume "$T/bt.sfm" --out "$T/bt2.sfm" --steps 20 &&
    run "info after resume" "$SF" info --model "$T/bt2.sfm" --json &&
    json "info after resume: train_target batch, step 60" "d['train_target']=='batch' and d['step']==60"
# exact OT above its batch limit (2048, cubic cost): refused before any work, pointing at
# Sinkhorn (before the limit: more than 30 s per step at batch 6000, so timeout would end it)
usage_fails timeout 20 "$SF" train --data checkerboard --out "$T/x.sfm" --coupling ot --batch 6000
grep -q "at most 2048 rows.*--coupling sinkhorn" "$T/err" && ok "--coupling ot refusal names the limit and sinkhorn" ||
    not_ok "--coupling ot refusal names the limit and sinkhorn" "" "$(head -c 300 "$T/err")"
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --seed " -1"
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --seed " 1"
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --seed +1
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --steps 0x10
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --hidden " 16"
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --lr " 1e-3"
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --resume "$T/m.sfm" --lr inf
usage_fails "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/x.npy" --steps 0
usage_fails "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/x.npy" --rtol 0
usage_fails "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/x.npy" --threads 0
usage_fails "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/x.npy" --weights bogus
usage_fails "$SF" logp --model "$T/m.sfm" --data checkerboard --rtol 0
usage_fails "$SF" logp --model "$T/m.sfm" --data checkerboard --probes 0
usage_fails "$SF" logp --model "$T/m.sfm" --data checkerboard --threads 0
usage_fails "$SF" demo --outdir "$T/demo2" --threads 0
usage_fails "$SF" demo --outdir "$T/demo2" --hidden 0
usage_fails "$SF" demo --outdir "$T/demo2" --train-target bogus
[ ! -e "$T/x.npy" ] && [ ! -e "$T/demo2" ] && ok "usage errors write nothing" || not_ok "usage errors write nothing"

# ---- bad input ------------------------------------------------------------------------------
fails "no command" "usage|command" "$SF"
fails "unknown command" "unknown command" "$SF" frobnicate
fails "unknown flag" "unknown option '--bogus'" "$SF" train --data checkerboard --out "$T/x.sfm" --bogus
fails "missing value" "needs a value" "$SF" train --data checkerboard --out
fails "missing required" "--out is required" "$SF" train --data checkerboard
fails "bad number" "expects a non-negative integer" "$SF" train --data checkerboard --out "$T/x.sfm" --steps abc
fails "negative number" "expects a non-negative integer" "$SF" sample --model "$T/m.sfm" -n -5 --out "$T/x.npy"
fails "bad keyword" "must be one of" "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/x.npy" --solver leapfrog
fails "bad hidden" "hidden" "$SF" train --data checkerboard --out "$T/x.sfm" --hidden 16,,16
fails "unknown toy" "unknown data source 'spiral'" "$SF" train --data spiral --out "$T/x.sfm"
fails "missing data file" "cannot open.*nope.npy" "$SF" train --data "$T/nope.npy" --out "$T/x.sfm"
fails "missing model file" "cannot open model" "$SF" info --model "$T/nope.sfm"
fails "output extension" "must end in .npy or .csv" "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/x.txt"
$PY -c "
import numpy as np
np.save('$T/bad3d.npy', np.zeros((4,2,2),np.float32)); np.save('$T/bad1d.npy', np.zeros(4,np.float32))
a=np.zeros((10,2),np.float32); a[3,1]=np.nan; np.save('$T/nan.npy',a)
b=np.zeros((10,2),np.float64); b[5,0]=np.inf; np.save('$T/inf.npy',b)
np.save('$T/int.npy', np.arange(8,dtype=np.int32).reshape(4,2)%3); np.save('$T/fort.npy', np.asfortranarray(np.arange(8,dtype=np.float32).reshape(4,2)%3))
np.save('$T/three.npy', np.zeros((10,3),np.float32))
h=open('$T/nan.npy','rb').read(); open('$T/trunc.npy','wb').write(h[:len(h)-8])
hdr=b\"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 2), }\"; hdr+=b' '*(118-len(hdr))+b'\n'
open('$T/huge.npy','wb').write(b'\x93NUMPY\x01\x00'+len(hdr).to_bytes(2,'little')+hdr+b'\0'*16)
hdr=b\"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\"; hdr+=b' '*(118-len(hdr))+b'\n'
open('$T/ovf.npy','wb').write(b'\x93NUMPY\x01\x00'+len(hdr).to_bytes(2,'little')+hdr+b'\0'*16)
open('$T/badhdr.npy','wb').write(b'\x93NUMPY\x02\x00'+(1<<30).to_bytes(4,'little')+b'{}')
open('$T/garbage.npy','wb').write(b'hello world, not numpy')
open('$T/ragged.csv','w').write('1,2\n3,4\n5\n')
open('$T/nan.csv','w').write('x,y\n1,2\nnan,4\n')
open('$T/text.csv','w').write('x,y\n1,2\nfoo,bar\n')
m=open('$T/m.sfm','rb').read(); c=bytearray(m); c[len(c)//2]^=0xFF; open('$T/corrupt.sfm','wb').write(bytes(c))
open('$T/trunc.sfm','wb').write(m[:len(m)//3]); open('$T/junk.sfm','wb').write(b'\0'*64)
"
fails "wrong shape: 3-D .npy" "3-dimensional array" "$SF" train --data "$T/bad3d.npy" --out "$T/x.sfm"
fails "1-D .npy is one column (of zeros: constant)" "column 1 is constant" "$SF" train --data "$T/bad1d.npy" --out "$T/x.sfm"
fails "wrong shape: ragged .csv" "row 3 has 1 cells, expected 2" "$SF" train --data "$T/ragged.csv" --out "$T/x.sfm"
fails "wrong shape: columns vs model" "3 columns but the model has dimension 2" "$SF" logp --model "$T/m.sfm" --data "$T/three.npy"
fails "NaN in .npy" "row 4, column 2: NaN" "$SF" train --data "$T/nan.npy" --out "$T/x.sfm"
fails "inf in float64 .npy" "infinite value" "$SF" logp --model "$T/m.sfm" --data "$T/inf.npy"
fails "NaN in .csv" "row 3, column 1: 'nan' is not a number" "$SF" train --data "$T/nan.csv" --out "$T/x.sfm"
fails "text in .csv" "not a number" "$SF" train --data "$T/text.csv" --out "$T/x.sfm"
run "int .npy is read (integers converted)" "$SF" train --data "$T/int.npy" --out "$T/x.sfm" --steps 1 "${SMALL[@]}"
run "Fortran-order .npy is read" "$SF" train --data "$T/fort.npy" --out "$T/x.sfm" --steps 1 "${SMALL[@]}"
fails "truncated .npy" "truncated" "$SF" train --data "$T/trunc.npy" --out "$T/x.sfm"
fails "hostile shape" "exceeds the limit|truncated" "$SF" train --data "$T/huge.npy" --out "$T/x.sfm"
fails "overflowing shape" "not a tuple of integers below 2\\^53" "$SF" train --data "$T/ovf.npy" --out "$T/x.sfm"
fails "hostile header length" "header length" "$SF" train --data "$T/badhdr.npy" --out "$T/x.sfm"
fails "not a .npy" "bad magic" "$SF" train --data "$T/garbage.npy" --out "$T/x.sfm"
fails "corrupt model" "sfm" "$SF" info --model "$T/corrupt.sfm"
fails "truncated model" "sfm" "$SF" sample --model "$T/trunc.sfm" -n 5 --out "$T/x.npy"
fails "junk model" "sfm" "$SF" logp --model "$T/junk.sfm" --data checkerboard
fails "model is a directory" "model|directory" "$SF" info --model "$T"
fails "unwritable output" "cannot" "$SF" sample --model "$T/m.sfm" -n 5 --out "$T/no/such/dir/x.npy"
fails "too many -n for file" "has only 500 rows" "$SF" logp --model "$T/m.sfm" --data "$T/s2.npy" -n 501
# malformed architecture options are usage errors (exit 2), found before the data is read
# (the data file does not exist: reading it first would be exit 1)
for bad in "--hidden 4,x" "--activation foo" "--interpolant fourier:0" "--time-fourier 99" "--seed -3"; do
    usage_fails "$SF" train --data "$T/missing.npy" --out "$T/x.sfm" $bad
done

echo "1..$n"
[ $failed -eq 0 ]
