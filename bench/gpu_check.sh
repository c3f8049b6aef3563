#!/usr/bin/env bash
# The GPU check of the speed issue, for one H100/H200, in about 5 minutes, with nothing but this
# repository, the full Fashion-MNIST IDX files and the wheels the GPU image lacks (tomli-w and
# platformdirs for the engine; textual and textual-plot for the TUI-cost section, which is
# skipped without them).
#
# Prepare on a machine with pip and the Debian dataset (once):
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --only-binary=:all: --python-version 3.12 -d .whl \
#     tomli-w platformdirs textual textual-plot
#   mkdir -p .data && cp -r /usr/share/datasets/fashion-mnist .data/
# Run there (carry .whl and .data):
#   bench/gpu_check.sh [OUT_DIR]        # table on stdout and in OUT_DIR/gpu_check.txt
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-bench/out}}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fbt-site .whl/*.whl
  export PYTHONPATH=/tmp/fbt-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
ROOT=${FMNIST_ROOT:-.data/fashion-mnist}
FULL=(--set 'data.name="fashion_mnist"' --set "data.root=\"$ROOT\"")
export FBT_HOME=${FBT_HOME:-$(mktemp -d)}
{
  echo "# fbt GPU check — $(date -u +%Y-%m-%dT%H:%MZ) — $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  echo
  echo "## ViT-S → ResNet18 at 224 px, batch 128 (paper pair; Fashion-MNIST random-resized-cropped to 224)"
  python3 bench/throughput.py --device cuda --preset paper/cifar100_vit_s_to_resnet18 --batch 128 \
    --steps 40 --repeats 2 "${FULL[@]}" --set data.download=false
  echo
  echo "## mlp_to_cnn on the full Fashion-MNIST, batch 512"
  python3 bench/throughput.py --device cuda --preset mlp_to_cnn --batch 512 --steps 60 --repeats 3 "${FULL[@]}"
  echo
  echo "## a 60,000-image FBT distillation epoch of mlp_to_cnn (target < 1.5 s), eager and compiled"
  for compile in off on; do
    python3 -m fbt_engine run presets/mlp_to_cnn.toml "${FULL[@]}" --set data.batch_size=512 \
      --set train.epochs=3 --set teacher.recipe.epochs=1 --set train.compile=$compile --json --quiet \
      | python3 -c "import sys, json
ev = [json.loads(l) for l in sys.stdin]
t = [e['epoch_time'] for e in ev if e['type'] == 'epoch' and e['phase'] == 'distillation']
print(f'compile=$compile: distillation epochs {\", \".join(f\"{x:.2f}\" for x in t)} s (first includes warm-up)')"
  done
  echo
  echo "## what the attached TUI costs a run (target < 2 %)"
  if python3 -c "import textual, textual_plot" 2> /dev/null; then
    python3 bench/tui_cost.py --epochs 20 --pairs 2
  else
    echo "skipped: textual and textual-plot are not installed (carry their wheels in .whl)"
  fi
} 2>&1 | tee "$OUT/gpu_check.txt"
