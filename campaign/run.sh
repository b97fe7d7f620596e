#!/usr/bin/env bash
# The jet training campaign: start, or resume exactly, every unfinished run in the
# background, one thread each, for at most MAX_TIME minutes this session (default 150).
#
#   campaign/run.sh            # start / resume all runs
#   campaign/run.sh mdma-gan-t30
#
# A run is campaign/RUN/ (a hepgen run folder; checkpoints/last.ckpt is its resumable
# state, committed whenever work pauses) trained with campaign/RUN.yaml. The training
# jets are made again with the same seed when missing (the producer is byte-identical
# for any number of workers), so a fresh clone continues the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
HEPGEN=${HEPGEN:-.venv/bin/hepgen}
MAX_TIME=${MAX_TIME:-150}
declare -A MODEL=([mdma-flow-t30]=mdma-flow [mdma-gan-t30]=mdma-gan [epic-fm-t30]=epic-fm)
declare -A EPOCHS=([mdma-flow-t30]=150 [mdma-gan-t30]=150 [epic-fm-t30]=150)
RUNS=("${@:-mdma-flow-t30 mdma-gan-t30}")
RUNS=(${RUNS[*]})

mkdir -p data campaign/logs
test -f data/t30_train.h5 || $HEPGEN data jets --jet-type t --num-particles 30 --num-jets 100000 --seed 1 \
    --out data/t30_train.h5
for run in "${RUNS[@]}"; do
    dir=campaign/$run
    resume=()
    if [ -f "$dir/checkpoints/last.ckpt" ]; then resume=(--resume); fi
    if [ -f "$dir/done" ]; then echo "$run: finished"; continue; fi
    echo "$run: ${resume[*]:-start} (log campaign/logs/$run.log)"
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup $HEPGEN train "${MODEL[$run]}" --data data/t30_train.h5 --out "$dir" \
        --config "campaign/$run.yaml" --max-epochs "${EPOCHS[$run]}" --max-time "$MAX_TIME" "${resume[@]}" \
        --no-progress >> "campaign/logs/$run.log" 2>&1 &
done
