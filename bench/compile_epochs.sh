#!/usr/bin/env bash
# torch.compile against eager on this machine: epoch times of the same small mlp_to_cnn run with
# train.compile "on" then "off", each in a fresh data home, compiled with an empty inductor cache
# (a warm cache, e.g. from an earlier run, hides most of the compile time).
#
#   bench/compile_epochs.sh            # CPU here; on a GPU machine add: --set run.device='"cuda"'
set -euo pipefail
cd "$(dirname "$0")/.."
FBT="${FBT:-.venv/bin/fbt}"
for mode in on off; do
  export FBT_HOME="$(mktemp -d)" TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)"
  "$FBT" run presets/mlp_to_cnn.toml --set data.batch_size=64 --set teacher.recipe.epochs=2 \
    --set train.epochs=3 --set "train.compile=\"$mode\"" "$@" --json --quiet 2> /dev/null \
    | python3 -c "import sys, json
ev = [json.loads(line) for line in sys.stdin]
times = ', '.join(f\"{e['phase']} {e['epoch_time']:.2f}\" for e in ev if e['type'] == 'epoch')
print('compile=$mode: epoch seconds:', times)"
  rm -rf "$FBT_HOME" "$TORCHINDUCTOR_CACHE_DIR"
done
echo "command: bench/compile_epochs.sh $*"
