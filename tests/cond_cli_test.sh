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

echo "1..$n"
[ $failed -eq 0 ]
