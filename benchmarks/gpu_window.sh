#!/usr/bin/env bash
# One GPU window (about 15 minutes on one H200, of which this uses at most WINDOW_S seconds, default 530):
#
#   benchmarks/gpu_window.sh OUT          # on the GPU machine, from the repository root
#   DRY=1 benchmarks/gpu_window.sh OUT    # (or --dry) everything at tiny sizes on the CPU in < 60 s (tests, CI)
#
# Writes under OUT:
#   train_step.json  train_step.txt   the training step, every model and loss, uniform and SANS negatives
#                                     (python -m emukg.bench.train_step --device cuda: the cases of emukg bench)
#   eval.json        eval.txt         a filtered full validation of FB15k-237 per model (python -m emukg.bench.eval_speed)
#   multirun.json    multirun.txt     K runs in one process (emukg train --seeds), K = 1, 8, 32: run-steps per second
#   triton.json      triton.txt       the Triton candidate kernels against the PyTorch path: ms and largest differences
#   train_step_triton.json            the training step of TransE and DistMult through them (EMUKG_TRITON=1)
#   table/NAME/                       the paper's runs (emukg reproduce --list), in order, as far as the budget goes;
#                                     table/NAME.log their logs
#   stages.json                       each stage's exit status and seconds
#   summary.json                      all of the above in one file (python -m emukg.bench.window summary OUT)
#
# The datasets: the GPU machine reaches nothing outside, so FB15k-237 and wn18rr must be there: ./data/FB15k-237 and
# ./data/wn18rr (ignored by git; 28 MB, within the device tool's carry), or EMUKG_DATA_DIR; the script stops at
# once, before any stage, when they are missing.
#
# The next window: run the same command with the same OUT.  The benchmarks run again (cheap), finished table
# runs are skipped, the run cut off by the budget resumes from its last checkpoint (every 1,000 steps) to the
# same run, and the following ones start.  Copy OUT back between windows (it holds the checkpoints).
set -u
OUT=${1:?usage: benchmarks/gpu_window.sh OUT [--dry]}
[ "${2:-}" = "--dry" ] && DRY=1
DRY=${DRY:-0}
PY=${PYTHON:-python3}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${EMUKG_DATA_DIR:-}" ]; then  # the datasets beside the checkout, as CI finds them
  for d in "$ROOT/data" "$ROOT/shared/datasets" "$ROOT/../shared/datasets"; do [ -d "$d" ] && export EMUKG_DATA_DIR="$(cd "$d" && pwd)" && break; done
fi
if [ "$DRY" != 1 ] && ! $PY -c "from emukg.data import resolve_dataset as r; r('FB15k-237', download=False); r('wn18rr', download=False)" 2>/dev/null; then
  echo "gpu_window: FB15k-237 and wn18rr are not on this machine; copy them into ./data (ignored by git, 28 MB; the device tool's carry: [\"data\"]) or set EMUKG_DATA_DIR." >&2
  exit 2
fi
mkdir -p "$OUT"
START=$(date +%s)
if [ "$DRY" = 1 ]; then
  WINDOW_S=${WINDOW_S:-57}; DEV=cpu
  DATA="$OUT/dry-data"; $PY -m emukg.bench.window data "$DATA" >/dev/null || exit 1
  STEP_ARGS=(--dataset "$DATA" --steps 1 --warmup 0 --samplers uniform --hidden-dim 8 --batch-size 32 --negatives 4)
  EVAL_ARGS=(--dataset "$DATA" --repeats 1 --models TransE --backend device)
  MULTI_ARGS=(--dataset "$DATA" --k 1 2 --steps 2 --warmup 1 --hidden-dim 8 --batch-size 32 --negatives 4)
  TABLE_ARGS=(--dry "$DATA" --names emu-TransE-FB15k-237-uniform base-DistMult-wn18rr-sans)
  TRITON_ARGS=(--B 2 --C 5 --D 8 --N 20 --steps 1 --warmup 0); export TRITON_INTERPRET=1
  B_STEP=20; B_EVAL=15; B_MULTI=15; B_TRITON=10; B_STEPT=15; RESERVE=3; MIN_TABLE=5
else
  WINDOW_S=${WINDOW_S:-530}; DEV=cuda
  STEP_ARGS=(--steps 20 --warmup 3 --samplers uniform sans)
  EVAL_ARGS=(--repeats 3 --backend device --memory-mb 8192)
  MULTI_ARGS=(--k 1 8 32 --steps 20 --warmup 3)
  TABLE_ARGS=()
  TRITON_ARGS=()
  B_STEP=150; B_EVAL=90; B_MULTI=120; B_TRITON=60; B_STEPT=60; RESERVE=10; MIN_TABLE=20
fi
STAGES="$OUT/stages.json"; echo "{" > "$STAGES.part"
stage() {  # stage NAME SECONDS command...: run with a time limit, record its status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@"; local rc=$?
  echo "\"$name\": {\"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 )), \"limit_s\": $limit}," >> "$STAGES.part"
  echo "== $name: rc $rc, $(( $(date +%s) - t0 )) s" >&2
}
stage train_step $B_STEP $PY -m emukg.bench.train_step --device $DEV "${STEP_ARGS[@]}" --json "$OUT/train_step.json" > "$OUT/train_step.txt" 2>&1
stage eval $B_EVAL $PY -m emukg.bench.eval_speed --device $DEV "${EVAL_ARGS[@]}" --json "$OUT/eval.json" > "$OUT/eval.txt" 2>&1
stage multirun $B_MULTI $PY -m emukg.bench.multirun --device $DEV "${MULTI_ARGS[@]}" --json "$OUT/multirun.json" > "$OUT/multirun.txt" 2>&1
stage triton $B_TRITON $PY -m emukg.bench.triton_step --device $DEV "${TRITON_ARGS[@]}" --json "$OUT/triton.json" > "$OUT/triton.txt" 2>&1
stage train_step_triton $B_STEPT env EMUKG_TRITON=1 $PY -m emukg.bench.train_step --device $DEV --models TransE DistMult \
  --losses ce emu "${STEP_ARGS[@]}" --samplers uniform --json "$OUT/train_step_triton.json" > "$OUT/train_step_triton.txt" 2>&1
LEFT=$(( WINDOW_S - ($(date +%s) - START) - RESERVE ))
[ "$DRY" = 1 ] && [ $LEFT -lt 15 ] && LEFT=15  # the dry mode exercises the table stage even on a loaded machine
if [ $LEFT -gt $MIN_TABLE ]; then
  stage table $(( LEFT + 30 )) $PY -m emukg.bench.window table "$OUT" --budget-s $LEFT --device $DEV "${TABLE_ARGS[@]}" > "$OUT/table.txt" 2>&1
fi
echo "\"total\": {\"seconds\": $(( $(date +%s) - START )), \"dry\": $DRY, \"window_s\": $WINDOW_S}}" >> "$STAGES.part"
mv "$STAGES.part" "$STAGES"
$PY -m emukg.bench.window summary "$OUT"
