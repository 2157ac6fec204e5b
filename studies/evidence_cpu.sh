#!/usr/bin/env bash
# The CPU evidence of docs/results.md: the paper's -if_CE 1 runs (uniform negatives) with and without EMU,
# each model for the same number of steps, on FB15k-237 (truncated; the paper runs 100k steps) and to
# convergence on kinships and umls (the same configs with the dataset swapped and a schedule fitted to the
# shorter run).  Run from the repository root:
#   EMUKG_DATA_DIR=../shared/datasets bash studies/evidence_cpu.sh [OUT_DIR]      (then: emukg report OUT_DIR/*)
# Every run is an ordinary run folder; an interrupted run is continued by running the script again.
set -euo pipefail
OUT=${1:-runs/evidence}
FB_STEPS=${FB_STEPS:-10000}
SMALL_STEPS=${SMALL_STEPS:-2000}
mkdir -p "$OUT"

run() {  # run NAME FOLDER [extra train flags...]: start, or resume when the folder holds a checkpoint
  local name=$1 dir=$2; shift 2
  if [ -f "$dir/results.json" ]; then echo "== $dir: done"; return; fi
  echo "== $dir ($(date -u +%H:%M:%S))"
  local start=$(date +%s)
  if [ "$#" -eq 0 ]; then
    if [ -f "$dir/checkpoint" ]; then emukg reproduce "$name" --steps "$FB_STEPS" --device cpu --save-path "$dir" --resume --no-progress
    else emukg reproduce "$name" --steps "$FB_STEPS" --device cpu --save-path "$dir" --overwrite --no-progress; fi
  else
    local cfg="$OUT/$name.yaml"
    emukg reproduce "$name" --show > "$cfg"
    if [ -f "$dir/checkpoint" ]; then emukg train --config "$cfg" --resume "$dir" "$@" --no-progress
    else emukg train --config "$cfg" --save-path "$dir" --overwrite "$@" --no-progress; fi
  fi
  echo "== $dir: $(( $(date +%s) - start )) s wall-clock"
}

for model in TransE DistMult ComplEx RotatE; do
  for kind in base emu; do
    run "$kind-$model-FB15k-237-uniform" "$OUT/$kind-$model-FB15k-237-uniform"
  done
done
for data in kinships umls; do
  for model in TransE DistMult ComplEx RotatE; do
    steps=$SMALL_STEPS
    # TransE on kinships still climbs at 2,000 steps (both with and without EMU): give it three times as many
    if [ "$model/$data" = "TransE/kinships" ]; then steps=$((3 * SMALL_STEPS)); fi
    for kind in base emu; do
      run "$kind-$model-FB15k-237-uniform" "$OUT/$kind-$model-$data-uniform" --dataset "$data" \
        --max-steps "$steps" --valid-steps 100 --save-checkpoint-steps 500
    done
  done
done
