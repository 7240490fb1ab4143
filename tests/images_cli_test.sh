#!/bin/bash
# images_cli_test.sh - end-to-end tests of the stochflow program's image flows
# (run by meson: `meson test images-cli`). usage: images_cli_test.sh PATH/TO/stochflow
# A tiny pngdir made here (python3, zlib + struct), a tiny U-Net trained a few steps with
# periodic checkpoints and grids, resume bit-for-bit, sample --png (grid size from the
# IHDR), logp --bpd, info, and the bad-input cases (one line on stderr, non-zero exit).
# Output is TAP.
set -u
SF=${1:?usage: images_cli_test.sh PATH/TO/stochflow}
CLI_TMP_PREFIX=sfimg
. "$(dirname "$0")/cli_lib.sh"

# png_size FILE W H: the IHDR of FILE says W x H.
png_size() {
    check "$1 is a ${2}x${3} PNG" "
import struct; b=open('$1','rb').read(24)
assert b[:8]==b'\x89PNG\r\n\x1a\n' and b[12:16]==b'IHDR', b[:16]
w,h=struct.unpack('>II',b[16:24]); assert (w,h)==($2,$3), (w,h)"
}

# ---- data: gray PNGs written with zlib + struct (no PIL) -------------------------------
$PY - "$T" <<'EOF'
import os, struct, sys, zlib
T = sys.argv[1]
def png(path, w, h, rows, color=0):
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ch = 3 if color == 2 else 1
    raw = b''.join(b'\x00' + bytes(r) for r in rows)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' +
                           chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, color, 0, 0, 0)) +
                           chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
def gray(s, k):
    return [[(x * 29 + y * 17 + k * 41) % 256 for x in range(s)] for y in range(s)]
for name, s, n in (('png8', 8, 6), ('png16', 16, 3)):
    os.makedirs(os.path.join(T, name))
    for k in range(n):
        png(os.path.join(T, name, 'img%02d.png' % k), s, s, gray(s, k))
os.makedirs(os.path.join(T, 'mixed'))
png(os.path.join(T, 'mixed', 'a.png'), 8, 8, gray(8, 0))
png(os.path.join(T, 'mixed', 'b.png'), 16, 16, gray(16, 1))
os.makedirs(os.path.join(T, 'empty'))
open(os.path.join(T, 'bad.idx'), 'wb').write(b'this is not an IDX file at all')
# a valid IDX header promising 100 images of 8 x 8 but holding only 3
open(os.path.join(T, 'short.idx'), 'wb').write(b'\x00\x00\x08\x03' + struct.pack('>III', 100, 8, 8) + bytes(3 * 64))
# a 300 x 300 PNG (90000 values, over the CLI's 65536) whose pixel data is corrupt: the
# limit must be found from the header, before any decoding
os.makedirs(os.path.join(T, 'big'))
open(os.path.join(T, 'big', 'a.png'), 'wb').write(b'\x89PNG\r\n\x1a\n' +
    struct.pack('>I', 13) + b'IHDR' + struct.pack('>IIBBBBB', 300, 300, 8, 0, 0, 0, 0) +
    struct.pack('>I', zlib.crc32(b'IHDR' + struct.pack('>IIBBBBB', 300, 300, 8, 0, 0, 0, 0)) & 0xffffffff) +
    struct.pack('>I', 200) + b'IDAT' + bytes((i * 37 + 11) % 256 for i in range(200)) + b'\0\0\0\0')
# a good IDX file of 5 images 8 x 8
open(os.path.join(T, 'good.idx'), 'wb').write(b'\x00\x00\x08\x03' + struct.pack('>III', 5, 8, 8) + bytes((i * 7) % 256 for i in range(5 * 64)))
EOF
D="pngdir:$T/png8"
TINY=(--unet-base 8 --unet-mult 1,2 --unet-groups 4 --batch 4 --threads 1)

# ---- train: tiny U-Net, periodic checkpoints and grids ----------------------------------
run "train --help lists the U-Net options" "$SF" train --help &&
    { grep -q -- '--unet-mult' "$T/out" && grep -q -- '--sample-every' "$T/out" && ok "help mentions --unet-mult and --sample-every" || not_ok "help mentions --unet-mult and --sample-every"; }
run "train tiny U-Net on a pngdir" "$SF" train --data "$D" --outdir "$T/run" --steps 4 "${TINY[@]}" \
    --checkpoint-every 2 --sample-every 2 --grid-n 4 --grid-steps 2 --json &&
    json "train JSON" "d['steps']==4 and d['model_step']==4 and d['images']==6 and (d['channels'],d['height'],d['width'])==(1,8,8) and d['checkpoints']==2 and d['grids']==2 and d['model'].endswith('run/model.sfm') and math.isfinite(d['loss']) and d['params']>0"
[ -f "$T/run/model.sfm" ] && [ -f "$T/run/checkpoint.sfm" ] && ok "model and periodic checkpoint written" || not_ok "model and periodic checkpoint written"
png_size "$T/run/samples-0000002.png" 22 22
png_size "$T/run/samples-0000004.png" 22 22
run "the periodic checkpoint loads" "$SF" info --model "$T/run/checkpoint.sfm" --json &&
    json "periodic checkpoint is at step 4" "d['step']==4 and d['arch']=='unet'"

mkdir -p "$T/run2"
run "grids default to the directory of --out" "$SF" train --data "$D" --out "$T/run2/m.sfm" --steps 1 "${TINY[@]}" --sample-every 1 --grid-n 1 --grid-steps 1
png_size "$T/run2/samples-0000001.png" 12 12

# ---- the defaults of a new image model: peak 1e-3 on a cosine over --steps, 50 warm-up steps, clip 1
run "image defaults" "$SF" info --model "$T/run/model.sfm" --json &&
    json "new image model: lr 1e-3, cosine over --steps, warm-up 50, clip 1" "d['lr']==1e-3 and d['lr_schedule_name']=='cosine' and d['lr_total_steps']==4 and d['lr_warmup']==50 and d['grad_clip']==1"

# ---- resume: 2 + 2 steps equal 4 steps bit-for-bit ---------------------------------------
# (a constant schedule, since the default cosine spans the --steps of the first run)
run "train 4 steps, constant lr" "$SF" train --data "$D" --outdir "$T/four" --out "$T/four.sfm" --steps 4 "${TINY[@]}" \
    --lr-schedule constant --checkpoint-every 2 --sample-every 2 --grid-n 4 --grid-steps 2
run "train 2 steps" "$SF" train --data "$D" --out "$T/half.sfm" --steps 2 "${TINY[@]}" --lr-schedule constant
run "resume 2 more" "$SF" train --data "$D" --out "$T/resumed.sfm" --resume "$T/half.sfm" --steps 2 --batch 4 --threads 1 --json &&
    json "resume reaches step 4" "d['model_step']==4 and d['steps']==2"
run "sample the 4-step model" "$SF" sample --model "$T/four.sfm" -n 3 --out "$T/a.npy" --steps 2 --threads 1
run "sample the resumed model" "$SF" sample --model "$T/resumed.sfm" -n 3 --out "$T/b.npy" --steps 2 --threads 1
if cmp -s "$T/a.npy" "$T/b.npy"; then ok "resume continues bit-for-bit (identical samples)"; else not_ok "resume continues bit-for-bit"; fi
fails "resume cannot change the U-Net" "cannot change when resuming" "$SF" train --data "$D" --out "$T/x.sfm" --resume "$T/half.sfm" --unet-base 16

# ---- sample --png grid --------------------------------------------------------------------
run "sample --png grid" "$SF" sample --model "$T/run/model.sfm" --png "$T/grid.png" -n 6 --cols 3 --steps 4 --threads 1 --json &&
    json "sample JSON" "d['n']==6 and d['cols']==3 and d['solver']=='rk4' and d['nfe']>0 and d['png'].endswith('grid.png')"
png_size "$T/grid.png" 32 22
run "sample --n alias, default columns, .npy out" "$SF" sample --model "$T/run/model.sfm" --png "$T/grid5.png" --n 5 --out "$T/s.npy" --steps 2 --batch 2 --threads 1 --json &&
    json "JSON cols is the default ceil(sqrt 5) = 3" "d['cols']==3 and d['n']==5"
png_size "$T/grid5.png" 32 22
check "sampled images: 5 x 64 finite floats" "
import numpy as np; a=np.load('$T/s.npy'); assert a.shape==(5,64) and np.isfinite(a).all(), a.shape"

# ---- logp --bpd --------------------------------------------------------------------------
run "logp --bpd on 4 images" "$SF" logp --model "$T/run/model.sfm" --bpd --data "$D" --n-eval 4 --rtol 1e-3 --atol 1e-3 --threads 1 --json &&
    json "bpd finite in (0, 20) with its standard error" "d['n']==4 and 0<d['bpd']<20 and d['bpd_se']>=0 and math.isfinite(d['bpd_se']) and d['trace']=='hutchinson' and d['probes']==1 and d['solver']=='dopri5' and d['rtol']==1e-3 and d['nfe']>0"
grep -q 'bits/dim' "$T/out" && grep -q 'Hutchinson' "$T/out" && grep -q 'rtol' "$T/out" &&
    ok "logp states bits/dim, the trace and the tolerances" || not_ok "logp states bits/dim, the trace and the tolerances" "$(head -c 400 "$T/out")"
run "logp --n-eval 1" "$SF" logp --model "$T/run/model.sfm" --data "$D" --n-eval 1 --solver rk4 --steps 2 --threads 1 --json &&
    json "one image: bpd finite, bpd_se and se null" "d['n']==1 and math.isfinite(d['bpd']) and d['bpd_se'] is None and d['se'] is None"
grep -q 'no standard error' "$T/out" && ! grep -q nan "$T/out" && ok "one image: 'no standard error', no nan printed" || not_ok "one image: no nan" "$(head -c 300 "$T/out")"
run "logp is reproducible in chunks (fixed dequantization)" "$SF" logp --model "$T/run/model.sfm" --data "$D" --n-eval 4 --batch 2 --trace exact --solver rk4 --steps 4 --threads 1 --out "$T/lp2.npy"
run "... and in one batch" "$SF" logp --model "$T/run/model.sfm" --data "$D" --n-eval 4 --trace exact --solver rk4 --steps 4 --threads 1 --out "$T/lp4.npy"
check "exact-trace log p independent of --batch" "
import numpy as np; a=np.load('$T/lp2.npy'); b=np.load('$T/lp4.npy'); assert a.shape==(4,2)
assert np.allclose(a, b, rtol=0, atol=1e-3), (a, b)"

# ---- info -------------------------------------------------------------------------------
run "info on an image model" "$SF" info --model "$T/run/model.sfm"
grep -q 'U-Net on 1x8x8' "$T/out" && grep -q 'mult 1,2' "$T/out" && ok "info shows the U-Net" || not_ok "info shows the U-Net" "$(head -c 400 "$T/out")"
run "info --json" "$SF" info --model "$T/run/model.sfm" --json &&
    json "info JSON U-Net keys" "d['arch']=='unet' and d['unet_base']==8 and d['unet_mult']==[1,2] and d['unet_blocks']==1 and d['unet_attn']==[1] and d['unet_groups']==4 and d['dim']==64"

# ---- IDX files ------------------------------------------------------------------------------
run "train on an idx file" "$SF" train --data "idx:$T/good.idx" --out "$T/idx.sfm" --steps 1 "${TINY[@]}" --unet-attn none --json &&
    json "idx: 5 images" "d['images']==5"

# ---- progress bar on a terminal -------------------------------------------------------------
if command -v script >/dev/null 2>&1; then
    script -qec "'$SF' train --data '$D' --out '$T/tty.sfm' --steps 40 ${TINY[*]}" /dev/null >"$T/tty" 2>&1 </dev/null
    if grep -q 'ETA' "$T/tty" && grep -q 'loss' "$T/tty"; then ok "image training shows the progress bar with the loss"; else not_ok "progress bar" "$(head -c 400 "$T/tty")"; fi
else
    ok "progress bar # SKIP script(1) not installed"
fi

# ---- Ctrl-C: a resumable checkpoint and exit 130 --------------------------------------------
"$SF" train --data "$D" --out "$T/int.sfm" --steps 1000000000 "${TINY[@]}" >"$T/out" 2>"$T/err" </dev/null &
pid=$!
sleep 1.5
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && grep -q 'interrupted after' "$T/err" && "$SF" info --model "$T/int.sfm" >/dev/null 2>&1; then
    ok "SIGINT during image training: checkpoint saved, exit 130"
else
    not_ok "SIGINT during image training: checkpoint saved, exit 130" "exit $rc" "$(head -c 300 "$T/err")"
fi

# ---- bad input ------------------------------------------------------------------------------
"$SF" train --data checkerboard --out "$T/mlp.sfm" --steps 1 --hidden 4 --batch 8 --threads 1 >/dev/null 2>&1
fails "nonexistent pngdir" "cannot open image data.*nope" "$SF" train --data "pngdir:$T/nope" --out "$T/x.sfm"
fails "nonexistent idx" "cannot open image data.*nope.gz" "$SF" train --data "idx:$T/nope.gz" --out "$T/x.sfm"
fails "malformed idx" "not an IDX file" "$SF" train --data "idx:$T/bad.idx" --out "$T/x.sfm" "${TINY[@]}"
fails "truncated idx" "bad.*short.idx|short.idx|truncated|short" "$SF" train --data "idx:$T/short.idx" --out "$T/x.sfm" "${TINY[@]}"
fails "pngdir with mixed sizes" "size|mixed|differ" "$SF" train --data "pngdir:$T/mixed" --out "$T/x.sfm" "${TINY[@]}"
fails "image limit from the PNG header, before decoding" "90000 values exceed the caller's limit of 65536" "$SF" train --data "pngdir:$T/big" --out "$T/x.sfm" "${TINY[@]}"
fails "empty pngdir" "no .png|no images" "$SF" train --data "pngdir:$T/empty" --out "$T/x.sfm"
fails "pngdir on a file" "not a directory" "$SF" train --data "pngdir:$T/bad.idx" --out "$T/x.sfm"
fails "image size vs checkpoint (logp)" "1x16x16.*expects 1x8x8" "$SF" logp --model "$T/run/model.sfm" --data "pngdir:$T/png16" --n-eval 2
fails "image size vs checkpoint (resume)" "1x16x16.*expects 1x8x8" "$SF" train --data "pngdir:$T/png16" --resume "$T/half.sfm" --out "$T/x.sfm"
fails "unknown --data prefix" "unknown data source prefix 'foo:'" "$SF" train --data foo:bar --out "$T/x.sfm"
fails "unknown prefix in logp" "unknown data source prefix 'png:'" "$SF" logp --model "$T/run/model.sfm" --data "png:$T/png8"
fails "unknown fashion-mnist split" "unknown fashion-mnist split" "$SF" train --data fashion-mnist:valid --out "$T/x.sfm"
fails "empty idx path" "needs a path" "$SF" train --data idx: --out "$T/x.sfm"
fails "U-Net options on 2-D data" "--unet-base applies only to image data" "$SF" train --data checkerboard --out "$T/x.sfm" --unet-base 8
fails "MLP options on image data" "--hidden does not apply to image data" "$SF" train --data "$D" --out "$T/x.sfm" --hidden 8
fails "levels vs image size" "divisible" "$SF" train --data "$D" --out "$T/x.sfm" --unet-mult 1,1,1,1,1 --unet-base 8 --unet-groups 4
fails "groups must divide the widths" "groups" "$SF" train --data "$D" --out "$T/x.sfm" --unet-base 8 --unet-mult 1,2 --unet-groups 3
fails "bad --unet-mult" "unet-mult expects" "$SF" train --data "$D" --out "$T/x.sfm" --unet-mult 1,,2
fails "attention level out of range" "unet-attn expects" "$SF" train --data "$D" --out "$T/x.sfm" --unet-mult 1,2 --unet-attn 2
fails "no --out or --outdir" "--out MODEL" "$SF" train --data "$D"
fails "sample needs --png or --out" "needs --png" "$SF" sample --model "$T/run/model.sfm" -n 4
fails "sample --png extension" "must end in .png" "$SF" sample --model "$T/run/model.sfm" --png "$T/g.jpg"
fails "--bpd on a 2-D model" "--bpd applies only to image models" "$SF" logp --model "$T/mlp.sfm" --data checkerboard --bpd
fails "image data with a 2-D model" "is image data, but" "$SF" logp --model "$T/mlp.sfm" --data "$D"
fails "2-D data with an image model" "must be image data" "$SF" logp --model "$T/run/model.sfm" --data checkerboard
fails "--n-eval beyond the data" "only 6 images" "$SF" logp --model "$T/run/model.sfm" --data "$D" --n-eval 10
fails "grid too wide, refused before sampling" "exceed 1000000 pixels.*--cols" "$SF" sample --model "$T/run/model.sfm" --png "$T/wide.png" -n 3 --cols 100000 --threads 1
[ ! -e "$T/wide.png" ] && ok "no grid written" || not_ok "no grid written"
fails "train --out in a missing directory, before training" "cannot write.*nodir/m.sfm.*not an existing directory" "$SF" train --data "$D" --out "$T/nodir/m.sfm" --steps 1000000000 "${TINY[@]}"
fails "sample --png in a missing directory" "cannot write.*nodir/g.png" "$SF" sample --model "$T/run/model.sfm" --png "$T/nodir/g.png" -n 2 --threads 1
fails "logp --out in a missing directory" "cannot write.*nodir/l.npy" "$SF" logp --model "$T/run/model.sfm" --data "$D" --out "$T/nodir/l.npy" --n-eval 2 --threads 1
mkdir -p "$T/gfail/samples-0000002.png"
fails "a failing sample grid stops training but saves --out" "samples-0000002.png.*stopped after 2 steps.*saved .*gfail/final.sfm.*--resume" "$SF" train --data "$D" --outdir "$T/gfail" --out "$T/gfail/final.sfm" --steps 6 "${TINY[@]}" --sample-every 2 --grid-n 2 --grid-steps 1
run "... the saved model is at step 2" "$SF" info --model "$T/gfail/final.sfm" --json && json "step 2" "d['step']==2"
mkdir -p "$T/cfail/checkpoint.sfm"
fails "a failing periodic checkpoint stops training but saves --out" "checkpoint.sfm.*stopped after 3 steps.*saved .*cfail/model.sfm" "$SF" train --data "$D" --outdir "$T/cfail" --steps 6 "${TINY[@]}" --checkpoint-every 3
# malformed option values are usage errors (exit 2), found before any data is read
for args in "train --data $D --out $T/x.sfm --unet-mult 1,,2" "train --data $D --out $T/x.sfm --unet-base 0" \
            "train --data $D --out $T/x.sfm --interpolant bogus" "sample --model $T/run/model.sfm --png $T/g.png --solver bogus" \
            "logp --model $T/run/model.sfm --data $D --rtol 5" "logp --model $T/run/model.sfm --data $D --trace bogus"; do
    usage_fails "$SF" $args
done
# range errors too, also those of options read after the model (exit 2, as for 2-D data)
for args in "train --data $D --out $T/x.sfm --threads 0" "train --data $D --out $T/x.sfm --lr nan" \
            "train --data $D --out $T/x.sfm --grid-n 0" "sample --model $T/run/model.sfm --png $T/g.png --steps 0" \
            "sample --model $T/run/model.sfm --png $T/g.png --batch 0" "sample --model $T/run/model.sfm --png $T/g.png --threads 0" \
            "logp --model $T/run/model.sfm --data $D --probes 0" "logp --model $T/run/model.sfm --data $D --n-eval 0"; do
    usage_fails "$SF" $args
done
cp "$T/good.idx" "$T/same.idx"
fails "train --out is the idx data file" "same file as the input" "$SF" train --data "idx:$T/same.idx" --out "$T/same.idx" "${TINY[@]}"
cmp -s "$T/good.idx" "$T/same.idx" && ok "the idx file is untouched" || not_ok "the idx file is untouched"
fails "resume an MLP on images" "not an image model" "$SF" train --data "$D" --resume "$T/mlp.sfm" --out "$T/x.sfm"

# ---- Fashion-MNIST, where installed (a few images only) -------------------------------------
FM=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [ -f "$FM" ]; then
    fails "fashion-mnist:test vs an 8x8 model" "1x28x28.*expects 1x8x8" "$SF" logp --model "$T/run/model.sfm" --data fashion-mnist:test --n-eval 2
    fails "logp defaults to fashion-mnist:test" "1x28x28.*expects 1x8x8" "$SF" logp --model "$T/run/model.sfm" --n-eval 2
else
    ok "fashion-mnist # SKIP $FM not installed"
fi

echo "1..$n"
[ $failed -eq 0 ]
