#!/bin/bash
# sde_cli_test.sh - end-to-end tests of the stochastic-interpolant options of the
# stochflow program (run by meson: `meson test sde-cli`): train --objective/--gamma/
# --antithetic, sample --sde/--sde-method/--score, logp --sde/--paths, for MLP and U-Net
# (image) models and for conditional models (--labels, --guidance), their JSON and
# their bad input. usage: sde_cli_test.sh PATH/TO/stochflow. Output is TAP.
set -u
SF=${1:?usage: sde_cli_test.sh PATH/TO/stochflow}
CLI_TMP_PREFIX=sfsde
. "$(dirname "$0")/cli_lib.sh"

SMALL=(--hidden 16,16 --batch 64 --threads 1 --steps 40)
FINITE='all(isinstance(v,(int,float)) and math.isfinite(v) for k,v in d.items() if isinstance(v,(int,float)) and not isinstance(v,bool))'

# ---- training the fields ---------------------------------------------------------------
run "train velocity (gamma-free)" "$SF" train --data 8gaussians --out "$T/v.sfm" "${SMALL[@]}"
run "train drift" "$SF" train --data 8gaussians --out "$T/d.sfm" "${SMALL[@]}" --objective drift --json &&
    json "drift JSON" "d['steps']==40 and $FINITE"
run "train score, antithetic" "$SF" train --data 8gaussians --out "$T/s.sfm" "${SMALL[@]}" --objective score --antithetic
run "train denoiser, scaled gamma" "$SF" train --data 8gaussians --out "$T/e.sfm" "${SMALL[@]}" --objective denoiser --gamma brownian:0.5
run "train velocity with gamma" "$SF" train --data 8gaussians --out "$T/vg.sfm" "${SMALL[@]}" --objective velocity --gamma quadratic
run "resume a score model" "$SF" train --data 8gaussians --out "$T/s2.sfm" --resume "$T/s.sfm" --steps 5 --batch 64 --threads 1
run "train score twice (same seed)" "$SF" train --data 8gaussians --out "$T/s3.sfm" "${SMALL[@]}" --objective score --antithetic
check "same seed, same checkpoint bits" "
import sys; sys.exit(0 if open('$T/s.sfm','rb').read()==open('$T/s3.sfm','rb').read() else 1)"
check "the objective is in the checkpoint (SINT), not in a plain model's" "
import sys; a=open('$T/s.sfm','rb').read(); b=open('$T/v.sfm','rb').read(); sys.exit(0 if b'SINT' in a and b'SINT' not in b else 1)"

run "info of a score model" "$SF" info --model "$T/s.sfm" --json &&
    json "info names the objective" "d['objective']=='score' and d['gamma']=='brownian' and d['antithetic'] is True"
run "info of a denoiser with a scaled gamma" "$SF" info --model "$T/e.sfm" --json &&
    json "info: gamma scale" "d['objective']=='denoiser' and d['gamma_scale']==0.5 and d['antithetic'] is False"
run "info of a plain model" "$SF" info --model "$T/v.sfm" --json &&
    json "info: plain model is a velocity without gamma" "d['objective']=='velocity' and d['gamma']=='zero'"

# ---- SDE sampling ----------------------------------------------------------------------
run "sample --sde with a score model" "$SF" sample --model "$T/d.sfm" --score "$T/s.sfm" --sde 0.5 -n 200 --steps 10 --out "$T/a.npy" --json &&
    json "SDE sample JSON: Heun NFE 2 per step" "d['sampler']=='sde' and d['sde_eps']==0.5 and d['nfe']==20 and d['n']==200"
check "SDE samples finite, 200 x 2" "
import numpy as np; x=np.load('$T/a.npy'); assert x.shape==(200,2) and np.isfinite(x).all()"
run "sample --sde em with a denoiser" "$SF" sample --model "$T/d.sfm" --score "$T/e.sfm" --sde 1 --sde-method em -n 50 --steps 10 --out "$T/b.npy" --json &&
    json "Euler-Maruyama NFE 1 per step" "d['nfe']==10"
run "sample --sde, velocity with gamma + score" "$SF" sample --model "$T/vg.sfm" --score "$T/s.sfm" --sde 0.3 -n 20 --steps 8 --out "$T/c.npy"
run "sample --sde, score from the velocity" "$SF" sample --model "$T/v.sfm" --sde 0.5 -n 50 --steps 10 --out "$T/f.npy"
run "sample --sde 0 (the ODE)" "$SF" sample --model "$T/v.sfm" --sde 0 -n 50 --steps 10 --out "$T/g.npy"
run "sample heun 10 steps" "$SF" sample --model "$T/v.sfm" --solver heun -n 50 --steps 10 --out "$T/h.npy"
check "--sde 0 is the Heun ODE sampler bit for bit" "
import numpy as np; assert (np.load('$T/g.npy')==np.load('$T/h.npy')).all()"
run "sample --sde, other seed" "$SF" sample --model "$T/v.sfm" --sde 0.5 -n 50 --steps 10 --out "$T/f2.npy" --seed 1
check "the seed changes the SDE samples" "
import numpy as np; assert not (np.load('$T/f.npy')==np.load('$T/f2.npy')).all()"

# ---- SDE likelihood --------------------------------------------------------------------
run "logp --sde --paths" "$SF" logp --model "$T/d.sfm" --score "$T/s.sfm" --sde 0.5 --paths 4 --steps 10 --data 8gaussians -n 50 --json &&
    json "SDE logp JSON" "d['likelihood']=='sde' and d['path_se']>0 and d['nfe']>0 and $FINITE"
run "logp --sde from the velocity" "$SF" logp --model "$T/v.sfm" --sde 0.2 --paths 2 --steps 10 --data 8gaussians -n 20 --json &&
    json "SDE logp (velocity) finite" "$FINITE"

# ---- image (U-Net) models --------------------------------------------------------------
$PY - "$T" <<'PYEOF'
import struct, sys
# 8 IDX images 8 x 8 with a bright square at varying places
px = bytearray(8 * 64)
for i in range(8):
    for y in range(8):
        for x in range(8):
            px[i * 64 + y * 8 + x] = 230 if abs(y - i % 4 - 2) < 2 and abs(x - i // 2) < 3 else 20
open(sys.argv[1] + "/img.idx", "wb").write(b"\x00\x00\x08\x03" + struct.pack(">III", 8, 8, 8) + bytes(px))
PYEOF
IMG=(--unet-base 8 --unet-mult 1,2 --unet-groups 4 --unet-attn none --batch 4 --threads 1)
run "train a tiny U-Net" "$SF" train --data "idx:$T/img.idx" --out "$T/u.sfm" --steps 3 "${IMG[@]}"
run "sample --sde, image model: grid and npy" "$SF" sample --model "$T/u.sfm" --sde 0.5 -n 5 --steps 6 --png "$T/u.png" --out "$T/u.npy" --threads 1 --json &&
    json "image SDE JSON: Heun NFE 2 per step" "d['solver']=='SDE' and d['sde_eps']==0.5 and d['nfe']==12 and d['n']==5 and d['png'].endswith('u.png')"
check "image SDE samples: 5 x 64 finite, a PNG grid" "
import numpy as np; x=np.load('$T/u.npy'); assert x.shape==(5,64) and np.isfinite(x).all()
assert open('$T/u.png','rb').read(8)==b'\x89PNG\r\n\x1a\n'"
run "sample --sde, image model, --batch 2 and 2 threads" "$SF" sample --model "$T/u.sfm" --sde 0.5 -n 5 --steps 6 --out "$T/u2.npy" --batch 2 --threads 2
check "image SDE samples depend neither on --batch nor on the threads" "
import numpy as np; assert (np.load('$T/u.npy')==np.load('$T/u2.npy')).all()"
run "sample --sde em, image model" "$SF" sample --model "$T/u.sfm" --sde 1 --sde-method em -n 3 --steps 5 --out "$T/u3.npy" --json &&
    json "image Euler-Maruyama NFE" "d['nfe']==5"
run "logp --sde, image model (Hutchinson)" "$SF" logp --model "$T/u.sfm" --data "idx:$T/img.idx" --sde 0.5 --paths 3 --steps 6 --n-eval 4 --batch 3 --threads 1 --json &&
    json "image SDE logp JSON" "d['likelihood']=='sde' and d['trace']=='hutchinson' and d['paths']==3 and d['path_se_bpd']>0 and d['n']==4 and $FINITE"
run "logp --sde 0, exact trace" "$SF" logp --model "$T/u.sfm" --data "idx:$T/img.idx" --sde 0 --paths 1 --trace exact --steps 8 --n-eval 2 --json
cp "$T/out" "$T/sde0.json"
run "logp, Euler ODE, exact trace" "$SF" logp --model "$T/u.sfm" --data "idx:$T/img.idx" --solver euler --trace exact --steps 8 --n-eval 2 --json
check "image logp --sde 0 is the Euler ODE log-density (same grid)" "
import json; a=json.loads(open('$T/sde0.json').read().strip().splitlines()[-1]); b=json.loads(open('$T/out').read().strip().splitlines()[-1])
assert abs(a['bpd']-b['bpd'])<1e-4, (a['bpd'], b['bpd'])"

# ---- conditional models ----------------------------------------------------------------
$PY - "$T" <<'PYEOF'
import sys, numpy as np
r = np.random.default_rng(5)
lab = r.integers(0, 2, 2000)
x = np.stack([3.0 * (2 * lab - 1), np.zeros(2000)], 1) + 0.4 * r.standard_normal((2000, 2))
np.save(sys.argv[1] + "/cx.npy", x.astype(np.float32))
np.save(sys.argv[1] + "/clab.npy", lab[:, None].astype(np.float32))
np.save(sys.argv[1] + "/cx40.npy", x[:40].astype(np.float32))
np.save(sys.argv[1] + "/clab40.npy", lab[:40, None].astype(np.float32))
PYEOF
run "train a conditional model" "$SF" train --data "$T/cx.npy" --labels "$T/clab.npy" --ctx-dropout 0.2 --out "$T/cm.sfm" "${SMALL[@]}" --steps 150 --lr 3e-3
run "sample --sde 0, label 1, guidance 2" "$SF" sample --model "$T/cm.sfm" --sde 0 --labels 1 --guidance 2 -n 100 --steps 10 --out "$T/cg.npy"
run "sample heun, label 1, guidance 2" "$SF" sample --model "$T/cm.sfm" --solver heun --labels 1 --guidance 2 -n 100 --steps 10 --out "$T/ch.npy"
check "guided --sde 0 is the guided Heun ODE bit for bit" "
import numpy as np; assert (np.load('$T/cg.npy')==np.load('$T/ch.npy')).all()"
run "sample --sde 0.5, label 1" "$SF" sample --model "$T/cm.sfm" --sde 0.5 --labels 1 -n 300 --steps 20 --out "$T/c1.npy"
run "sample --sde 0.5, label 0, --guidance 0" "$SF" sample --model "$T/cm.sfm" --sde 0.5 --labels 0 --guidance 0 -n 300 --steps 20 --out "$T/c0.npy"
check "SDE samples follow the label (x1 near +3 for label 1, -3 for label 0)" "
import numpy as np; a=np.load('$T/c1.npy')[:,0]; b=np.load('$T/c0.npy')[:,0]
assert a.mean()>1.5 and b.mean()<-1.5, (a.mean(), b.mean())"
run "logp --sde with per-row labels" "$SF" logp --model "$T/cm.sfm" --data "$T/cx40.npy" --labels "$T/clab40.npy" --sde 0.3 --paths 2 --steps 10 --json &&
    json "conditional SDE logp finite" "d['likelihood']=='sde' and $FINITE"
cp "$T/out" "$T/right.json"
run "logp --sde with the wrong labels" "$SF" logp --model "$T/cm.sfm" --data "$T/cx40.npy" --labels 0 --sde 0.3 --paths 2 --steps 10 --json
check "the true labels give the higher SDE likelihood" "
import json; a=json.loads(open('$T/right.json').read().strip().splitlines()[-1]); b=json.loads(open('$T/out').read().strip().splitlines()[-1])
assert a['nll'] < b['nll'] - 0.5, (a['nll'], b['nll'])"
fails "--sde label out of range" "outside|label" "$SF" sample --model "$T/cm.sfm" --sde 0.5 --labels 2 -n 4 --out "$T/x.npy"
fails "--sde guidance on an unconditional model" "guidance" "$SF" sample --model "$T/v.sfm" --sde 0.5 --guidance 1 -n 4 --out "$T/x.npy"

# ---- bad input -------------------------------------------------------------------------
fails "a score model as --model" "score model" "$SF" sample --model "$T/s.sfm" --sde 0.5 -n 5 --out "$T/x.npy"
fails "gamma model without --score" "needs a gamma-free model" "$SF" sample --model "$T/d.sfm" --sde 0.5 -n 5 --out "$T/x.npy"
fails "--score of a velocity model" "not the score" "$SF" sample --model "$T/d.sfm" --score "$T/v.sfm" --sde 0.5 -n 5 --out "$T/x.npy"
fails "--sde with --with-logp" "with --sde" "$SF" sample --model "$T/v.sfm" --sde 0.5 -n 5 --out "$T/x.npy" --with-logp
fails "--score file missing" "sfm|no such|cannot" "$SF" sample --model "$T/d.sfm" --score "$T/none.sfm" --sde 0.5 -n 5 --out "$T/x.npy"
for bad in "--gamma foo" "--gamma quadratic:2" "--gamma brownian:-1" "--objective flow" "--objective score --gamma zero"; do
    usage_fails "$SF" train --data 8gaussians --out "$T/x.sfm" --steps 1 $bad
done
usage_fails "$SF" train --data 8gaussians --out "$T/x.sfm" --resume "$T/s.sfm" --objective drift
usage_fails "$SF" sample --model "$T/v.sfm" --sde -1 -n 5 --out "$T/x.npy"
usage_fails "$SF" sample --model "$T/v.sfm" --sde 0.5 --sde-method rk4 -n 5 --out "$T/x.npy"

echo "1..$n"
[ $failed -eq 0 ]
