#!/usr/bin/env bash
# Walk-mode study (issue 10 §2): does the reference's chained SANS random walk change what EMU learns?
#
# TransE and RotatE with EMU on SANS negatives (the paper's emu-*-sans runs: -if_CE 2 -khop 3 -nrw 1000
# -if_EMU 0.39 -neg_label 0.53 -CE_coef 0.11), on FB15k-237 and wn18rr, with restarted walks against the
# reference's chained walks, at the same step budget.  Everything else is the reference mode (codes/run.py flags).
# --warm_up_steps 50000 keeps a shortened run a prefix of the paper's 100,000-step run.
#
# usage: bash studies/walk_mode_study.sh OUTDIR [STEPS=10000] [--cuda]
# The eight runs go in parallel (they are small; on a GPU one run leaves the card mostly idle); then
#   python studies/walk_mode_table.py OUTDIR      prints the Markdown table of docs/results.md.
set -euo pipefail
OUTDIR=${1:?usage: walk_mode_study.sh OUTDIR [STEPS] [--cuda]}
STEPS=${2:-10000}
CUDA=${3:-}
mkdir -p "$OUTDIR"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
pids=()
for ds in FB15k-237 wn18rr; do
  for model in TransE RotatE; do
    extra=""; [ "$model" = RotatE ] && extra="-de"
    for mode in restart chained; do
      run="$OUTDIR/$model-$ds-$mode"
      ${PYTHON:-python3} -m emukg legacy --do_train --do_valid --do_test --data_path "$ds" --model "$model" $extra \
        -n 256 -b 1000 -d 100 -g 24.0 -a 1. -lr 0.05 --max_steps "$STEPS" --warm_up_steps 50000 \
        -khop 3 -nrw 1000 --valid_steps 1000 --log_steps 500 --save_checkpoint_steps 1000 \
        -if_CE 2 -if_EMU 0.39 -neg_label 0.53 -CE_coef 0.11 --walk_mode "$mode" --seed 0 $CUDA \
        --no_progress --overwrite -save "$run" > "$run.out" 2>&1 &
      pids+=($!)
    done
  done
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
