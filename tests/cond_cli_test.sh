#!/bin/bash
# cond_cli_test.sh - the conditional-model options of the stochflow program (run by meson:
# `meson test cond-cli`): train with context columns / a context file and labels, sample
# and logp given a context, guidance, and bad input. doc/cli.md, doc/conditional.md.
# Output is TAP.
set -u
SF=${1:?usage: cond_cli_test.sh PATH/TO/stochflow}
CLI_TMP_PREFIX=sfcond . "$(dirname "$0")/cli_lib.sh"

# Data: x in R^2 centred at (2 c, 3 (2 label - 1)) + N(0, 0.3^2 I), c ~ U[-1, 1],
# label in {0, 1}; columns x1, x2, c, label (and split into files).
$PY - "$T" <<'PYEOF'
import sys, numpy as np
T = sys.argv[1]
r = np.random.default_rng(3)
n = 4000
c = r.uniform(-1, 1, n)
lab = r.integers(0, 2, n)
x = np.stack([2 * c, 3.0 * (2 * lab - 1)], 1) + 0.3 * r.standard_normal((n, 2))
np.savetxt(T + "/all.csv", np.column_stack([x, c, lab]), delimiter=",", header="x1,x2,c,label", comments="")
np.save(T + "/x.npy", x.astype(np.float32))
np.save(T + "/c.npy", c[:, None].astype(np.float32))
np.save(T + "/lab.npy", lab[:, None].astype(np.float32))
PYEOF

OPTS=(--hidden 64,64 --batch 256 --threads 1 --lr 3e-3)
run "train with --context-columns 3 --labels 4" "$SF" train --data "$T/all.csv" --context-columns 3 --labels 4 --ctx-dropout 0.2 --steps 600 --out "$T/m.sfm" "${OPTS[@]}"
run "train with --context FILE --labels FILE" "$SF" train --data "$T/x.npy" --context "$T/c.npy" --labels "$T/lab.npy" --ctx-dropout 0.2 --steps 600 --out "$T/f.sfm" "${OPTS[@]}"
if cmp -s "$T/m.sfm" "$T/f.sfm"; then ok "columns and files give the same model bit for bit"; else not_ok "columns and files give the same model"; fi
run "info of a conditional model" "$SF" info --model "$T/m.sfm" --json
json "info reports the conditioning" "d['n_ctx']==1 and d['n_classes']==2 and abs(d['ctx_dropout']-0.2)<1e-12"
run "resume a conditional model" "$SF" train --data "$T/all.csv" --context-columns 3 --labels 4 --steps 5 --resume "$T/m.sfm" --out "$T/r.sfm" --batch 256 --threads 1

run "sample given c = 0.5, label 1" "$SF" sample --model "$T/m.sfm" -n 400 --context 0.5 --labels 1 --out "$T/s1.npy" --solver rk4 --steps 20
run "sample given c = -0.5, label 0" "$SF" sample --model "$T/m.sfm" -n 400 --context=-0.5 --labels 0 --out "$T/s0.npy" --solver rk4 --steps 20
check "samples follow the context and the label" "
import numpy as np
a = np.load('$T/s1.npy'); b = np.load('$T/s0.npy')
ma, mb = a.mean(0), b.mean(0)
assert abs(ma[0] - 1.0) < 0.4 and abs(ma[1] - 3.0) < 0.5, ma
assert abs(mb[0] + 1.0) < 0.4 and abs(mb[1] + 3.0) < 0.5, mb"
run "sample with --guidance 0" "$SF" sample --model "$T/m.sfm" -n 400 --context 0.5 --labels 1 --guidance 0 --out "$T/g0.npy" --solver rk4 --steps 20
if cmp -s "$T/s1.npy" "$T/g0.npy"; then ok "--guidance 0 is the unguided sample bit for bit"; else not_ok "--guidance 0 is the unguided sample"; fi
run "sample with --guidance 2" "$SF" sample --model "$T/m.sfm" -n 400 --context 0.5 --labels 1 --guidance 2 --out "$T/g2.npy" --solver rk4 --steps 20
if cmp -s "$T/s1.npy" "$T/g2.npy"; then not_ok "--guidance 2 changes the samples"; else ok "--guidance 2 changes the samples"; fi
run "logp given per-row context and labels" "$SF" logp --model "$T/m.sfm" --data "$T/x.npy" --context "$T/c.npy" --labels "$T/lab.npy" --json
json "conditional NLL is finite and well below the unconditional spread" "math.isfinite(d['nll']) and d['nll'] < 1.5"
run "logp with the wrong labels" "$SF" logp --model "$T/m.sfm" --data "$T/x.npy" --context "$T/c.npy" --labels 0 --json
json "the wrong label is much less likely" "d['nll'] > 5"

# The data and context maps (doc/data.md): fitted on the training rows by default and
# stored in the model's STDZ section (flag 2: a context map of n_ctx = 1 columns, whose
# shift and scale are the context's mean and standard deviation); --standardize none
# stores none. The context in other units (100 c + 5) then trains to the same density.
$PY - "$T" <<'PYEOF'
import sys, numpy as np
T = sys.argv[1]
np.save(T + "/c100.npy", (100 * np.load(T + "/c.npy") + 5).astype(np.float32))
PYEOF
stdz() { # the STDZ section of checkpoint $1: "none", or "flags n_ctx ctx_shift ctx_scale"
    $PY - "$1" <<'PYEOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
p = 24
while p < len(b) - 4:
    tag, _, n = struct.unpack_from("<4sIQ", b, p)
    if tag == b"STDZ":
        d = struct.unpack_from("<Q", b, p + 16)[0]
        q = p + 16 + 8 + 16 * d
        if n == 8 + 16 * d:
            print("0 0"); sys.exit()
        flags, k = struct.unpack_from("<II", b, q)
        sh, sc = struct.unpack_from("<dd", b, q + 8 + (4 * d * (d + 1) if flags & 1 else 0))
        print(flags, k, sh, sc); sys.exit()
    p += 16 + n
print("none")
PYEOF
}
run "train with the context in other units" "$SF" train --data "$T/x.npy" --context "$T/c100.npy" --labels "$T/lab.npy" --ctx-dropout 0.2 --steps 600 --out "$T/f100.sfm" "${OPTS[@]}"
check "the model holds the context map: the context's mean and standard deviation" "
import numpy as np
c = np.load('$T/c100.npy').astype(np.float64)[:, 0]
flags, k, sh, sc = '$(stdz "$T/f100.sfm")'.split()
assert int(flags) == 2 and int(k) == 1, (flags, k)
assert abs(float(sh) - c.mean()) < 1e-9 * abs(c.mean()) and abs(float(sc) - c.std()) < 1e-9 * c.std(), (sh, sc)"
run "logp of it" "$SF" logp --model "$T/f100.sfm" --data "$T/x.npy" --context "$T/c100.npy" --labels "$T/lab.npy" --json
NLL100=$(tail -n 1 "$T/out" | $PY -c "import json,sys; print(json.loads(sys.stdin.read())['nll'])")
run "logp of the model in the original units" "$SF" logp --model "$T/f.sfm" --data "$T/x.npy" --context "$T/c.npy" --labels "$T/lab.npy" --json
json "the same NLL whatever the context's units (within 0.05 nats)" "abs(d['nll'] - $NLL100) < 0.05"
run "train without the maps" "$SF" train --data "$T/x.npy" --context "$T/c100.npy" --labels "$T/lab.npy" --steps 2 --standardize none --out "$T/n100.sfm" "${OPTS[@]}"
if [ "$(stdz "$T/n100.sfm")" = none ]; then ok "--standardize none stores no map"; else not_ok "--standardize none stores no map" "$(stdz "$T/n100.sfm")"; fi
fails "--standardize for a toy" "applies to" "$SF" train --data moons --standardize whiten --steps 1 --out "$T/bad.sfm"

# ---- bad input ---------------------------------------------------------------------------
run "train an unconditional model" "$SF" train --data "$T/x.npy" --steps 2 --out "$T/u.sfm" "${OPTS[@]}"
fails "context for an unconditional model" "no context" "$SF" sample --model "$T/u.sfm" -n 4 --context 1 --out "$T/bad.npy"
fails "guidance for an unconditional model" "guidance" "$SF" sample --model "$T/u.sfm" -n 4 --guidance 1 --out "$T/bad.npy"
fails "context row of the wrong width" "comma-separated" "$SF" sample --model "$T/m.sfm" -n 4 --context 1,2 --out "$T/bad.npy"
fails "label out of range" "outside" "$SF" sample --model "$T/m.sfm" -n 4 --labels 2 --out "$T/bad.npy"
fails "context column out of range" "not a distinct column" "$SF" train --data "$T/all.csv" --context-columns 9 --steps 1 --out "$T/bad.sfm"
fails "fractional labels" "not an integer" "$SF" train --data "$T/all.csv" --labels 3 --steps 1 --out "$T/bad.sfm"
fails "context file of the wrong length" "expected 4000 rows" "$SF" train --data "$T/x.npy" --context "$T/s1.npy" --steps 1 --out "$T/bad.sfm"
fails "context on a toy" "need a data file" "$SF" train --data moons --context "$T/c.npy" --steps 1 --out "$T/bad.sfm"
fails "resume with other conditioning" "context" "$SF" train --data "$T/x.npy" --steps 1 --resume "$T/m.sfm" --out "$T/bad.sfm" --batch 16

# ---- class-conditional images ------------------------------------------------------------
# A tiny IDX set: 30 gray 8 x 8 images in 3 classes (class k: brightness ramp k), its label
# file beside it (gzip), the same labels as .npy, shuffled labels, and bad label files.
$PY - "$T" <<'PYEOF'
import gzip, os, struct, sys, numpy as np
T = sys.argv[1]
r = np.random.default_rng(5)
n = 30
lab = np.arange(n) % 3
img = np.clip(60 * lab[:, None, None] + 40 + r.integers(0, 30, (n, 8, 8)), 0, 255).astype(np.uint8)
os.makedirs(T + "/idx")
open(T + "/idx/tiny-images-idx3-ubyte", "wb").write(b"\x00\x00\x08\x03" + struct.pack(">III", n, 8, 8) + img.tobytes())
with gzip.open(T + "/idx/tiny-labels-idx1-ubyte.gz", "wb") as f:
    f.write(b"\x00\x00\x08\x01" + struct.pack(">I", n) + lab.astype(np.uint8).tobytes())
os.makedirs(T + "/nolab")
open(T + "/nolab/tiny-images-idx3-ubyte", "wb").write(b"\x00\x00\x08\x03" + struct.pack(">III", n, 8, 8) + img.tobytes())
np.save(T + "/ilab.npy", lab[:, None].astype(np.float32))
np.save(T + "/ishuf.npy", r.permutation(lab)[:, None].astype(np.float32))
np.save(T + "/ifrac.npy", (lab[:, None] + 0.5).astype(np.float32))
np.save(T + "/ishort.npy", lab[:10, None].astype(np.float32))
np.save(T + "/ilab12.npy", lab[:12, None].astype(np.float32))
np.save(T + "/ifrac12.npy", (lab[:12, None] + 0.5).astype(np.float32))
import zlib
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
os.makedirs(T + "/pngs")
open(T + "/pngs/a.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)) +
    chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + img[0, y].tobytes() for y in range(8)))) + chunk(b"IEND", b""))
PYEOF
# the gzip label file is found beside the raw image file: NAME-images-idx3-ubyte -> NAME-labels-idx1-ubyte(.gz)
IMG="idx:$T/idx/tiny-images-idx3-ubyte"
mv "$T/idx/tiny-labels-idx1-ubyte.gz" "$T/idx/tiny-labels-idx1-ubyte"  # gzopen reads .gz data under any name
IOPTS=(--steps 4 --batch 8 --unet-base 8 --unet-mult 1,2 --unet-groups 4 --threads 1 --seed 2)
run "train an image model with --labels dataset" "$SF" train --data "$IMG" --labels dataset --ctx-dropout 0.2 --out "$T/ic.sfm" --outdir "$T/ic" --sample-every 2 --grid-n 2 --grid-steps 2 "${IOPTS[@]}"
run "info of the class-conditional U-Net" "$SF" info --model "$T/ic.sfm" --json
json "the checkpoint has 3 classes and the dropout" "d['arch']=='unet' and d['n_classes']==3 and d['n_ctx']==0 and abs(d['ctx_dropout']-0.2)<1e-12"
check "the periodic grid has one row of 2 per class (3 x 2 images of 8 x 8)" "
import struct; b=open('$T/ic/samples-0000004.png','rb').read(24)
w,h=struct.unpack('>II',b[16:24]); assert (w,h)==(2*10+2,3*10+2), (w,h)"
run "train with the same labels from a .npy file" "$SF" train --data "$IMG" --labels "$T/ilab.npy" --ctx-dropout 0.2 --out "$T/if.sfm" "${IOPTS[@]}"
if cmp -s "$T/ic.sfm" "$T/if.sfm"; then ok "--labels dataset and the .npy labels give the same model bit for bit"; else not_ok "--labels dataset and the .npy labels give the same model"; fi
run "train with shuffled labels" "$SF" train --data "$IMG" --labels "$T/ishuf.npy" --ctx-dropout 0.2 --out "$T/is.sfm" "${IOPTS[@]}"
if cmp -s "$T/ic.sfm" "$T/is.sfm"; then not_ok "the labels reach the training (other labels, other model)"; else ok "the labels reach the training (other labels, other model)"; fi
run "train for a time budget (--time 1.5, no --steps)" "$SF" train --data "$IMG" --labels dataset --time 1.5 --lr-schedule cosine --out "$T/it.sfm" --batch 4 --unet-base 8 --unet-mult 1,2 --unet-groups 4 --threads 1 --json
json "the budget stops the run" "d['steps'] >= 1 and d['seconds'] < 20"
"$SF" info --model "$T/it.sfm" --json >"$T/out" 2>&1
json "the budget's cosine spans the steps run" "d['lr_schedule_name']=='cosine' and d['lr_total_steps']==d['step']"
run "a budget of a few steps (--time 0.001)" "$SF" train --data "$IMG" --time 0.001 --lr-schedule cosine --out "$T/it2.sfm" --batch 64 --unet-base 8 --unet-mult 1,2 --unet-groups 4 --threads 1
"$SF" info --model "$T/it2.sfm" --json >"$T/out" 2>&1
json "fewer than 10 steps: the cosine spans them (not 10^9)" "1 <= d['step'] < 10 and d['lr_total_steps']==d['step']"

run "sample --labels all" "$SF" sample --model "$T/ic.sfm" --labels all -n 2 --png "$T/all.png" --out "$T/all.npy" --steps 3 --threads 1 --json
json "2 images of each of 3 classes" "d['n']==6 and d['per_class']==2 and d['cols']==2 and d['guidance']==0"
check "the --labels all grid has one row per class" "
import struct; b=open('$T/all.png','rb').read(24)
w,h=struct.unpack('>II',b[16:24]); assert (w,h)==(22,32), (w,h)"
run "sample --labels all --guidance 0" "$SF" sample --model "$T/ic.sfm" --labels all -n 2 --guidance 0 --out "$T/all0.npy" --steps 3 --threads 1
if cmp -s "$T/all.npy" "$T/all0.npy"; then ok "image samples: --guidance 0 is unguided bit for bit"; else not_ok "image samples: --guidance 0 is unguided"; fi
run "sample --labels all --guidance 3" "$SF" sample --model "$T/ic.sfm" --labels all -n 2 --guidance 3 --out "$T/all3.npy" --steps 3 --threads 1
if cmp -s "$T/all.npy" "$T/all3.npy"; then not_ok "image samples: --guidance 3 changes them"; else ok "image samples: --guidance 3 changes them"; fi
$PY -c "import numpy as np; np.save('$T/cm.npy', (np.arange(6)[:, None] // 2).astype(np.float32))"
run "sample with per-image labels 0,0,1,1,2,2" "$SF" sample --model "$T/ic.sfm" --labels "$T/cm.npy" -n 6 --out "$T/cm_s.npy" --steps 3 --threads 1
if cmp -s "$T/all.npy" "$T/cm_s.npy"; then ok "--labels all is class-major (image i has class i / n)"; else not_ok "--labels all is class-major"; fi
# the SDE sampler on a class-conditional image model: the labels reach it
run "sample --sde 0.5 --labels all" "$SF" sample --model "$T/ic.sfm" --sde 0.5 --labels all -n 2 --out "$T/sall.npy" --steps 4 --threads 1 --json
json "SDE: 2 images of each of 3 classes" "d['n']==6 and d['per_class']==2 and d['solver']=='SDE' and d['sde_eps']==0.5"
run "sample --sde 0.5, per-image labels 0,0,1,1,2,2" "$SF" sample --model "$T/ic.sfm" --sde 0.5 --labels "$T/cm.npy" -n 6 --out "$T/scm.npy" --steps 4 --threads 1
if cmp -s "$T/sall.npy" "$T/scm.npy"; then ok "SDE: --labels all = the same labels from a file, bit for bit"; else not_ok "SDE: --labels all = the same labels from a file"; fi
run "sample --sde 0.5 --labels 0" "$SF" sample --model "$T/ic.sfm" --sde 0.5 --labels 0 -n 6 --out "$T/s0.npy" --steps 4 --threads 1
check "SDE: other labels give other images; all finite" "
import numpy as np; a=np.load('$T/sall.npy'); b=np.load('$T/s0.npy')
assert np.isfinite(a).all() and not np.array_equal(a, b)"

LOPTS=(--data "$IMG" --bpd -n 12 --batch 5 --threads 1 --rtol 1e-3 --atol 1e-3)
run "logp --labels dataset" "$SF" logp --model "$T/ic.sfm" "${LOPTS[@]}" --labels dataset --out "$T/lc.npy" --json
json "conditional bits/dim, labels and guidance reported" "math.isfinite(d['bpd']) and d['labels']=='dataset' and d['guidance']==0 and d['n']==12"
run "logp --labels dataset --guidance 0" "$SF" logp --model "$T/ic.sfm" "${LOPTS[@]}" --labels dataset --guidance 0 --out "$T/lg.npy"
if cmp -s "$T/lc.npy" "$T/lg.npy"; then ok "bits/dim: --guidance 0 is unguided bit for bit"; else not_ok "bits/dim: --guidance 0 is unguided"; fi
run "logp --sde 0.5 --labels dataset" "$SF" logp --model "$T/ic.sfm" "${LOPTS[@]}" --sde 0.5 --steps 4 --paths 2 --labels dataset --json
json "SDE bits/dim given the labels" "math.isfinite(d['bpd']) and d['labels']=='dataset' and d['n']==12"
run "logp --labels from a file" "$SF" logp --model "$T/ic.sfm" "${LOPTS[@]}" --labels "$T/ilab12.npy" --out "$T/lf.npy"
check "per-image labels from a file give the dataset's bits" "
import numpy as np
a = np.load('$T/lc.npy'); b = np.load('$T/lf.npy')
assert a.shape == (12, 2) and np.array_equal(a, b)"
run "logp of the conditional model without labels (label -1)" "$SF" logp --model "$T/ic.sfm" "${LOPTS[@]}" --out "$T/lu.npy"
check "the unconditional and conditional densities differ" "
import numpy as np
a = np.load('$T/lc.npy'); b = np.load('$T/lu.npy')
assert np.isfinite(b).all() and not np.array_equal(a, b)"

run "an unconditional image model" "$SF" train --data "$IMG" --out "$T/iu.sfm" "${IOPTS[@]}"
fails "--labels dataset for a pngdir" "pngdir.*no labels" "$SF" train --data "pngdir:$T/pngs" --labels dataset --steps 1 --out "$T/bad.sfm"
fails "no label file beside the images" "cannot open the label file" "$SF" train --data "idx:$T/nolab/tiny-images-idx3-ubyte" --labels dataset --steps 1 --out "$T/bad.sfm"
fails "a label column number for images" "dataset' or a .npy/.csv" "$SF" train --data "$IMG" --labels 3 --steps 1 --out "$T/bad.sfm"
fails "fractional image labels" "not an integer" "$SF" train --data "$IMG" --labels "$T/ifrac.npy" --steps 1 --out "$T/bad.sfm"
fails "image labels of the wrong length" "expected 30 rows" "$SF" train --data "$IMG" --labels "$T/ishort.npy" --steps 1 --out "$T/bad.sfm"
fails "--ctx-dropout without labels for images" "needs --labels" "$SF" train --data "$IMG" --ctx-dropout 0.1 --steps 1 --out "$T/bad.sfm"
fails "--context for image data" "does not apply to image data" "$SF" train --data "$IMG" --context "$T/c.npy" --steps 1 --out "$T/bad.sfm"
fails "resume a conditional image model without labels" "classes" "$SF" train --data "$IMG" --resume "$T/ic.sfm" --steps 1 --out "$T/bad.sfm"
fails "image label out of range" "outside -1..2" "$SF" sample --model "$T/ic.sfm" --labels 3 -n 2 --out "$T/bad.npy"
fails "a label file with a bad value" "not an integer" "$SF" logp --model "$T/ic.sfm" "${LOPTS[@]}" --labels "$T/ifrac12.npy"
fails "--labels all for an unconditional image model" "no classes" "$SF" sample --model "$T/iu.sfm" --labels all -n 2 --out "$T/bad.npy"
fails "--guidance for an unconditional image model" "needs a conditional model" "$SF" sample --model "$T/iu.sfm" --guidance 1 -n 2 --out "$T/bad.npy"
fails "--cols with --labels all" "cols does not apply" "$SF" sample --model "$T/ic.sfm" --labels all --cols 3 -n 2 --png "$T/bad.png"
fails "--labels dataset for an unconditional image model" "no classes" "$SF" logp --model "$T/iu.sfm" "${LOPTS[@]}" --labels dataset
fails "--labels all for points" "'all' is for image models" "$SF" sample --model "$T/m.sfm" -n 4 --context 0.5 --labels all --out "$T/bad.npy"
printf 'not a label file at all' >"$T/nolab/tiny-labels-idx1-ubyte"
fails "a label file that is not IDX" "not an IDX label file" "$SF" train --data "idx:$T/nolab/tiny-images-idx3-ubyte" --labels dataset --steps 1 --out "$T/bad.sfm"
fails "--labels dataset for points" "'dataset' is for image data" "$SF" logp --model "$T/m.sfm" --data "$T/x.npy" --context "$T/c.npy" --labels dataset

echo "1..$n"
[ $failed -eq 0 ]
