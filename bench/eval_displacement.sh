#!/usr/bin/env bash
# Every number in docs/displacement.md "Measured results", from scratch (an evaluation, not a test).
#   bench/eval_displacement.sh [WORK_DIR]     (default: ./runs/displacement-eval; about 10 min on 2 cores)
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${LEWS_SHARED_DATA:-$REPO/../shared/data}
WORK=${1:-$REPO/runs/displacement-eval}
mkdir -p "$WORK" && cd "$WORK"
A=$REPO/.venv/bin/agent-export
D=$SHARED/salmon-falls-gnss-hydro
for s in BASE BLKM BLOK MIDB NTOE; do
  $A data import pbo $D/gps/$s.pbo.nam08.csv --rain $D/water/NOAA_Castleford_daily.txt --groundwater $D/water/well.csv --out $s.csv 2>/dev/null
done
for seed in 0 1 2; do
  /usr/bin/time -f "train seed $seed: %e s wall" $A train displacement BASE.csv BLKM.csv BLOK.csv MIDB.csv NTOE.csv --out run_s$seed --seed $seed 2>&1 | grep -E "wall|wrote"
  $A evaluate displacement run_s$seed --json > eval_s$seed.json 2>/dev/null
  $A train displacement BASE.csv BLKM.csv BLOK.csv MIDB.csv NTOE.csv --out cd_s$seed --seed $seed --test-from 2018-01-17 2>&1 | grep wrote
  $A evaluate displacement cd_s$seed --json --no-plots > eval_cd_s$seed.json 2>/dev/null
done
for spec in NTOE:120 BLKM:150 BASE:90 MIDB:210; do
  target=${spec%%:*}; steps=${spec##*:}
  src=""; for s in BASE BLKM BLOK MIDB NTOE; do [ $s != $target ] && src="$src $s.csv"; done
  $A train displacement $src --out src_$target --seed 0 2>&1 | grep wrote
  $A finetune src_$target $target.csv --steps $steps --out ft_$target --seed 0 2>&1 | grep -E "wrote|error|fix"
  $A evaluate displacement ft_$target --json > eval_ft_$target.json 2>/dev/null
done
$REPO/.venv/bin/python - <<'PY'
from agent.features.site_series import read_site_series, write_site_series, to_iso
import numpy as np
cut = read_site_series('BLKM.csv').times[150]
for s in ['BASE', 'BLOK', 'MIDB', 'NTOE']:
    x = read_site_series(f'{s}.csv'); n = int(np.searchsorted(x.times, cut))
    y = x.slice(0, n); y.meta['note'] = f'truncated before {to_iso(cut)}'; y.repairs = {}
    write_site_series(y, f'pre_{s}.csv')
print('cut', to_iso(cut))
PY
$A train displacement pre_BASE.csv pre_BLOK.csv pre_MIDB.csv pre_NTOE.csv --out src_pre_BLKM --train-fraction 0.85 2>&1 | grep wrote
$A finetune src_pre_BLKM BLKM.csv --steps 150 --out ft_pre_BLKM 2>&1 | grep -E "wrote|error"
$A evaluate displacement ft_pre_BLKM --json > eval_ft_pre_BLKM.json 2>/dev/null
T=$SHARED/three-gorges-baishuihe-bazimen/derived; L=$SHARED/lamosano-italy
for p in ZG93 ZG118 ZG119; do $A data import three-gorges $T/gps_monthly_cumulative_displacement.csv --rain $T/rain_daily.csv --point $p --out tg_$p.csv 2>/dev/null; done
$A data import lamosano $L/H_lamo.csv --rain $L/rain_hourly.csv --out P5.csv 2>/dev/null
$A train displacement tg_ZG93.csv tg_ZG118.csv tg_ZG119.csv --out run_tg --window 6 2>&1 | grep wrote
$A evaluate displacement run_tg --json > eval_tg.json 2>/dev/null
$A train displacement P5.csv --out run_p5 --window 8 2>&1 | grep wrote
$A evaluate displacement run_p5 --json > eval_p5.json 2>/dev/null
echo DONE
