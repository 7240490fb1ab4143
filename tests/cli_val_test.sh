#!/bin/bash
# cli_val_test.sh - `stochflow train` on tables through the library's trainer: --val
# FILE|FRACTION, --eval-every, --patience, --time, the summary's held-out NLL, the
# standardization stored in the model (doc/cli.md). Output is TAP.
set -u
SF=${1:?usage: cli_val_test.sh PATH/TO/stochflow}
CLI_TMP_PREFIX=sfval
. "$(dirname "$0")/cli_lib.sh"

SMALL=(--hidden 16,16 --batch 64 --threads 1)
# a table in large units: columns of scale 1000 and 0.01 around 5000 and -3
$PY -c "
import numpy as np
r=np.random.default_rng(0); z=r.normal(size=(240,2))
x=np.c_[5000+1000*z[:,0], -3+0.01*(z[:,1]+0.5*z[:,0]**2)].astype(np.float32)
np.save('$T/d.npy', x[:200]); np.save('$T/v.npy', x[200:])
c=x.copy(); c[:,1]=7; np.save('$T/const.npy', c)
open('$T/three.csv','w').write('a,b,c\n1,2,3\n4,5,6\n')"

run "train --val 0.25" "$SF" train --data "$T/d.npy" --out "$T/a.sfm" --val 0.25 --steps 60 --eval-every 20 "${SMALL[@]}" --json &&
    json "JSON: held-out rows, NLL, standardized" "d['val_rows']==50 and d['train_rows']==150 and math.isfinite(d['val_nll']) and d['val_nll_se']>0 and d['standardized'] is True and d['stop']=='step budget' and d['best_step'] in (20,40,60)"
grep -q "^validation NLL .* nats per row (held out: 50 rows" "$T/out" && ok "summary names the held-out NLL" || not_ok "summary names the held-out NLL" "$(head -5 "$T/out")"
grep -q "^loss " "$T/out" && not_ok "no training loss in a table's summary" || ok "no training loss in a table's summary"
# the NLL is in the data's units: log(1000 * 0.01) aside, a unit-scale fit would be ~ 2.8
# nats; the columns' scales put it near 2.8 + log(1000) + log(0.01) = 5.1
json "NLL in the data's units" "3.5 < d['val_nll'] < 9"

run "train --val FILE" "$SF" train --data "$T/d.npy" --out "$T/b.sfm" --val "$T/v.npy" --steps 40 --eval-every 20 "${SMALL[@]}" --json &&
    json "JSON: the file's rows validate" "d['val_rows']==40 and d['train_rows']==200"
VNLL=$(tail -n 1 "$T/out" | $PY -c 'import json,sys; print(json.loads(sys.stdin.read())["val_nll"])')
run "logp of the validation file" "$SF" logp --model "$T/b.sfm" --data "$T/v.npy" --json &&
    json "logp (data's units) agrees with the summary's NLL" "abs(d['nll'] - $VNLL) < 0.02"
run "sample in the data's units" "$SF" sample --model "$T/b.sfm" -n 400 --out "$T/s.npy" --solver rk4 --steps 10
check "samples have the data's location and scale" "
import numpy as np; s=np.load('$T/s.npy'); x=np.load('$T/d.npy')
assert abs(s[:,0].mean()-x[:,0].mean()) < 400 and 300 < s[:,0].std() < 3000, (s.mean(0), s.std(0))
assert abs(s[:,1].mean()-x[:,1].mean()) < 0.05, (s.mean(0), s.std(0))"

run "--patience stops early" "$SF" train --data "$T/d.npy" --out "$T/p.sfm" --val 0.25 --steps 100000 --eval-every 5 --patience 1 "${SMALL[@]}" --json &&
    json "stopped by patience, best weights kept" "d['stop']=='patience (no improvement)' and d['steps']<100000 and d['best_step']<=d['model_step']-5"
run "--time bounds the run" "$SF" train --data "$T/d.npy" --out "$T/t.sfm" --val 0.25 --time 1 --patience 0 --lr-schedule cosine "${SMALL[@]}" --json &&
    json "stopped by the time budget" "d['stop']=='time budget' and 0.9 < d['seconds'] < 10 and d['steps'] > 0"
run "--time with a smaller --steps" "$SF" train --data "$T/d.npy" --out "$T/ts.sfm" --time 1000 --steps 30 --patience 0 "${SMALL[@]}" --json &&
    json "stopped by --steps" "d['steps']==30" &&
    "$SF" info --model "$T/ts.sfm" --json >"$T/out" &&
    json "the cosine's horizon is --steps, not the steps the clock would allow" "d['lr_schedule_name']=='cosine' and d['lr_total_steps']==30"
run "--val with --ema (the best EMA weights kept)" "$SF" train --data "$T/d.npy" --out "$T/e.sfm" --val 0.25 --steps 20 --eval-every 10 --ema 0.9 "${SMALL[@]}" --json &&
    json "EMA run validated" "math.isfinite(d['val_nll']) and d['steps']==20 and d['best_step'] in (10, 20)"
run "--transport-png of a standardized table" "$SF" train --data "$T/d.npy" --out "$T/tp.sfm" --steps 5 --transport-png "$T/tp.png" "${SMALL[@]}"
[ -s "$T/tp.png" ] && ok "trajectory picture written" || not_ok "trajectory picture written"
run "--no-standardize" "$SF" train --data "$T/d.npy" --out "$T/n.sfm" --steps 5 --no-standardize "${SMALL[@]}" --json &&
    json "no map stored; without --val 10% of the rows held out" "d['standardized'] is False and d['val_rows']==20 and d['train_rows']==180"
# no --steps: the table default, up to 30000 steps, stopped by patience on the rows the
# CLI held out, the best (EMA) weights kept
run "defaults: no option" "$SF" train --data "$T/d.npy" --out "$T/def.sfm" "${SMALL[@]}" --json &&
    json "defaults: 10% held out, the run ends by patience within 30000 steps, best kept" "d['val_rows']==20 and d['stop'].startswith('patience') and d['model_step']<30000 and 0<d['best_step']<d['model_step'] and math.isfinite(d['val_nll'])"
"$SF" info --model "$T/def.sfm" >"$T/def.info" 2>&1 && grep -q "ema 0.999" "$T/def.info" &&
    ok "defaults: a new table model trains with EMA 0.999" || not_ok "defaults: a new table model trains with EMA 0.999"
run "--val 0: no validation set" "$SF" train --data "$T/d.npy" --out "$T/nv.sfm" --val 0 --steps 7 "${SMALL[@]}" --json &&
    json "--val 0: all rows trained, the whole budget" "d['val_rows']==0 and d['train_rows']==200 and d['model_step']==7"
$PY -c "
import numpy as np; np.save('$T/tiny.npy', np.random.default_rng(1).normal(size=(12, 2)).astype(np.float32))"
run "a table under 20 rows" "$SF" train --data "$T/tiny.npy" --out "$T/tiny.sfm" --steps 5 "${SMALL[@]}" --json &&
    json "under 20 rows: nothing held out by default" "d['val_rows']==0 and d['train_rows']==12"
run "resume a standardized model" "$SF" train --data "$T/d.npy" --out "$T/r.sfm" --resume "$T/b.sfm" --steps 10 --batch 64 --threads 1 --json &&
    json "resumed: the map carried" "d['model_step']==50 and d['standardized'] is True"

fails "a constant column" "column 2 is constant" "$SF" train --data "$T/const.npy" --out "$T/c.sfm" --steps 5 "${SMALL[@]}"
[ ! -e "$T/c.sfm" ] && ok "nothing saved after the constant column" || not_ok "nothing saved after the constant column"
usage_fails "$SF" train --data "$T/d.npy" --out "$T/x.sfm" --val 1.5
usage_fails "$SF" train --data "$T/d.npy" --out "$T/x.sfm" --val 0.95
usage_fails "$SF" train --data "$T/d.npy" --out "$T/x.sfm" --val bogus
usage_fails "$SF" train --data "$T/d.npy" --out "$T/x.sfm" --val 0 --patience 3
usage_fails "$SF" train --data "$T/d.npy" --out "$T/x.sfm" --val 0.2 --time 0
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --val 0.2
usage_fails "$SF" train --data checkerboard --out "$T/x.sfm" --no-standardize
fails "--val file with other columns" "--val .* has 3 columns but --data has 2" "$SF" train --data "$T/d.npy" --out "$T/x.sfm" --val "$T/three.csv" --steps 1 "${SMALL[@]}"

echo "1..$n"
[ $failed -eq 0 ]
