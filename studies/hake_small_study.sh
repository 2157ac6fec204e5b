#!/usr/bin/env bash
# HAKE with and without EMU on kinships and umls at the same budget (issue 13).
#
# HAKE, d=100 (entity rows [modulus, phase] 200 wide), γ=6, λ_m=1, λ_p=0.5, B=256, n=64 fresh uniform negatives
# (the paper's -if_CE 1 setting), Adam at 0.002, constant schedule, STEPS steps, validation every 250; the best
# model (by valid MRR) is tested.  "ce" = cross-entropy over [positive, n negatives]; "emu" = the same plus EMU with
# the paper's p=0.39, λ=0.53 and CE weight 0.11.  Seeds 0 1 2.
#
# usage: bash studies/hake_small_study.sh OUTDIR [STEPS=2000] [JOBS=2]
#   then python studies/hake_small_table.py OUTDIR
set -euo pipefail
OUTDIR=${1:?usage: hake_small_study.sh OUTDIR [STEPS] [JOBS]}
STEPS=${2:-2000}
JOBS=${3:-2}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
n=0
for ds in kinships umls; do
  for kind in ce emu; do
    extra=""; [ "$kind" = emu ] && extra="--emu 0.39 --neg-label 0.53 --ce-coef 0.11"
    for seed in 0 1 2; do
      run="$OUTDIR/HAKE-$ds-$kind-seed$seed"
      if [ ! -f "$run/results.json" ]; then
        $PY -m emukg train --dataset "$ds" --model HAKE --hidden-dim 100 --gamma 6 --modulus-weight 1.0 --phase-weight 0.5 \
          --batch-size 256 --negative-sample-size 64 --loss ce --sampler uniform $extra --optimizer adam \
          --schedule constant --learning-rate 0.002 --max-steps "$STEPS" --valid-steps 250 --log-steps 250 \
          --save-checkpoint-steps 1000 --seed "$seed" --threads 1 --device cpu --no-progress --overwrite \
          --save-path "$run" > "$run.out" 2>&1 &
        n=$((n + 1))
        if [ $((n % JOBS)) -eq 0 ]; then wait; fi
      fi
    done
  done
done
wait
