#!/usr/bin/env bash
# Schedule study (issue 14): the paper's schedule against four others at the paper's budget.
#
# TransE and DistMult on FB15k-237, baseline and EMU (the paper's base-*-uniform and emu-*-uniform runs: B=1000,
# n=256, d=100, validation every 500 steps), each with
#   reference  the paper's: Adagrad, at 50,000 steps lr/10 and a fresh Adam
#   constant   Adagrad at the paper's rate throughout
#   step       Adagrad throughout, lr/10 at 50,000 steps (the paper's decay without the fresh Adam)
#   cosine     Adagrad, half cosine from the paper's rate to 0 at max_steps
#   plateau    Adagrad, lr/10 after 4 validations (2,000 steps) without a better valid MRR
# Everything else is the named run's config (`emukg reproduce NAME --show`), in the reference's step numbering.
#
# usage: bash studies/schedule_study.sh OUTDIR [STEPS=100000] [DEVICE=cpu] [JOBS=1]
# Re-running the same command continues every unfinished run from its last checkpoint (runs this long are meant to
# go to the background and across sessions); finished runs are skipped. Then
#   python studies/schedule_table.py OUTDIR      prints the Markdown table and draws OUTDIR/curves.png.
set -euo pipefail
OUTDIR=${1:?usage: schedule_study.sh OUTDIR [STEPS] [DEVICE] [JOBS]}
STEPS=${2:-100000}
DEVICE=${3:-cpu}
JOBS=${4:-1}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
declare -A SCHED=(
  [reference]="--schedule reference"
  [constant]="--schedule constant"
  [step]="--schedule step --lr-decay 0.1 --lr-decay-steps $((STEPS / 2))"
  [cosine]="--schedule cosine"
  [plateau]="--schedule plateau --lr-decay 0.1 --lr-patience 4"
)
run_one() {
  local name=$1 sched=$2 run="$OUTDIR/$1--$2"
  [ -f "$run/results.json" ] && return 0
  $PY -m emukg reproduce "$name" --show > "$OUTDIR/$name.yaml"
  local resume=""; [ -f "$run/checkpoint" ] && resume="--resume $run"
  $PY -m emukg train --config "$OUTDIR/$name.yaml" ${SCHED[$sched]} --max-steps "$STEPS" --device "$DEVICE" \
    --save-checkpoint-steps 2500 --no-progress --save-path "$run" $resume >> "$run.out" 2>&1
}
n=0
for model in TransE DistMult; do
  for kind in base emu; do
    for sched in reference constant step cosine plateau; do
      run_one "$kind-$model-FB15k-237-uniform" "$sched" &
      n=$((n + 1))
      if [ $((n % JOBS)) -eq 0 ]; then wait; fi
    done
  done
done
wait
