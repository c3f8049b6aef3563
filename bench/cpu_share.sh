#!/usr/bin/env bash
# Two `fbt run`s at once on one CPU, their threads left to fbt (they split the cores:
# fbt_engine/train/cpushare.py) against each fixed at every core (OMP_NUM_THREADS = cores, as
# torch's default would take), and one run alone for scale. Prints the wall time of each, in
# seconds, alternating the two ways ROUNDS times.
#   bench/cpu_share.sh [ROUNDS] [--set key=value …]    (default: 2 rounds, mlp_to_cnn, 2 epochs)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
shift || true
fbt=(.venv/bin/python -m fbt_engine run presets/mlp_to_cnn.toml --quiet
     --set train.epochs=2 --set teacher.recipe.epochs=1 "$@")
export FBT_HOME=${FBT_HOME:-$(mktemp -d)}
cores=$(nproc)
unset OMP_NUM_THREADS

timed() {  # the wall time of the command, in seconds
  local start; start=$(date +%s.%N)
  "$@"
  echo "$(date +%s.%N) - $start" | bc
}
pair() {  # two runs at once; $1: the threads each is fixed at, or "" for fbt's share
  if [ -n "$1" ]; then
    OMP_NUM_THREADS=$1 "${fbt[@]}" & OMP_NUM_THREADS=$1 "${fbt[@]}" & wait
  else
    "${fbt[@]}" & "${fbt[@]}" & wait
  fi
}

"${fbt[@]}" --set train.epochs=1 > /dev/null  # the teacher, trained once and cached for every run below
echo "machine: $cores cores; FBT_HOME=$FBT_HOME"
echo "one run alone: $(timed "${fbt[@]}") s"
for _ in $(seq "$rounds"); do
  echo "two runs, each fixed at $cores threads: $(timed pair "$cores") s"
  echo "two runs, sharing the cores:        $(timed pair "") s"
done
