#!/bin/bash
# sde_cli_test.sh - end-to-end tests of the stochastic-interpolant options of the
# stochflow program (run by meson: `meson test sde-cli`): train --objective/--gamma/
# --antithetic, sample --sde/--sde-method/--score, logp --sde/--paths, their JSON and
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
