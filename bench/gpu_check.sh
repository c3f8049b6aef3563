#!/usr/bin/env bash
# The GPU check of the speed issue, for one H100/H200, in about 6 minutes (each section has a time
# limit, 525 s in all; 337 s on an H100 with a shorter TUI section), with nothing but this repository,
# the full Fashion-MNIST IDX files and the wheels the GPU image lacks or may hold too old (tomli-w and platformdirs for the engine; textual
# and its kin for the TUI-cost section, skipped without them).
#
# Prepare here, once (needs pip's registry and the Debian package dataset-fashion-mnist):
#   bench/gpu_check.sh --prepare        # .whl/ and .data/, both git-ignored through .git/info/exclude
#   SECTIONS="mlp epochs kd_compiled sync profile loop paper layout tui" bench/gpu_check.sh --smoke
#                                       # every section on this CPU at toy sizes: proves the script
#                                       # runs before GPU time is spent on it (~5 min on 2 cores)
# Run there (the device tool's `run`, carry [".whl", ".data"], timeout_s 600, OUT set by the tool):
#   bench/gpu_check.sh [OUT_DIR]        # table on stdout and in OUT_DIR/gpu_check.txt
#   SECTIONS="loop layout kd_compiled" bench/gpu_check.sh [OUT_DIR]   # some sections only (ALL_SECTIONS below)
set -euo pipefail
cd "$(dirname "$0")/.."

# The image's missing packages, and rich and pygments, whose versions there may be older than
# textual's minimum; versions are the dev venv's, the ones the tests passed with.
WHEELS=(tomli-w platformdirs textual textual-plot textual-hires-canvas mdit-py-plugins rich pygments)
if [ "${1:-}" = --prepare ]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  for ignored in /.whl/ /.data/; do
    grep -qsxF "$ignored" "$exclude" || echo "$ignored" >> "$exclude"
  done
  rm -rf .whl && mkdir -p .whl .data
  pins=$(.venv/bin/python -c "import sys, importlib.metadata as m
print(' '.join(f'{n}=={m.version(n)}' for n in sys.argv[1:]))" "${WHEELS[@]}")
  # shellcheck disable=SC2086  # one word per pin
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $pins \
    2> >(grep -v "^WARNING: Location" >&2)
  cp -r /usr/share/datasets/fashion-mnist .data/
  ls .whl .data/fashion-mnist
  exit 0
fi

DEVICE=cuda
if [ "${1:-}" = --smoke ]; then shift; DEVICE=cpu; fi
smoke() { [ "$DEVICE" = cpu ]; }
# sizes of each section: the check's on the GPU, toys for --smoke
if smoke; then
  PAPER=(--batch 2 --steps 10 --repeats 1 --set data.img_size=64)
  PROFILE=(--steps 2 --set data.batch_size=2 --set data.img_size=64)
  LOOP=(--steps 3 --set data.batch_size=64)
  SMALL=(--batch 64 --steps 10 --repeats 1)
  EPOCH=(--set data.subset=2048 --set data.batch_size=64)
  TUI=(--epochs 2 --pairs 1 --set data.subset=2048)
else
  PAPER=(--batch 128 --steps 30 --repeats 2)
  PROFILE=(--steps 5 --set data.batch_size=128)
  LOOP=(--steps 10 --set data.batch_size=512)
  SMALL=(--batch 512 --steps 60 --repeats 2)
  EPOCH=(--set data.batch_size=512)
  TUI=(--epochs 3 --pairs 2 --set data.batch_size=512 --set train.compile=off --set teacher.recipe.epochs=1)
fi

ROOT=${FMNIST_ROOT:-$PWD/.data/fashion-mnist}
if ! compgen -G "$ROOT/train-images-idx3-ubyte*" > /dev/null; then
  echo "error: no Fashion-MNIST in $ROOT: run bench/gpu_check.sh --prepare here and carry .data" >&2
  exit 2
fi
OUT=${1:-${OUT:-bench/out}}
# the issue's checks; `loop`, `layout` and `kd_compiled` are diagnoses to name in SECTIONS (all nine
# outlast 600 s)
CHECKS="mlp epochs sync profile paper tui"
ALL_SECTIONS="mlp epochs kd_compiled sync profile loop paper layout tui"
SECTIONS=${SECTIONS:-$CHECKS}
for key in $SECTIONS; do
  [[ " $ALL_SECTIONS " == *" $key "* ]] || { echo "error: SECTIONS: no section \"$key\" (sections: $ALL_SECTIONS)" >&2; exit 2; }
done
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  site=$(mktemp -d)
  python3 -m pip install -q --root-user-action=ignore --no-index --no-deps --no-compile --target "$site" .whl/*.whl \
    && export PYTHONPATH=$site || echo "warning: the carried wheels did not install; going on without them"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
FULL=(--set 'data.name="fashion_mnist"' --set "data.root=\"$ROOT\"" --set data.download=false)
export FBT_HOME=${FBT_HOME:-$(mktemp -d)}

failed=0 ran=0
limited() {  # at most $1 seconds on the GPU, so that one slow section cannot eat the others' time
  local seconds=$1; shift
  if smoke; then "$@"; else timeout -s INT -k 3 "$seconds" "$@"; fi
}
# One section of the table, if SECTIONS names its key: a failure is reported and the next section
# still runs (GPU time is scarce).
section() {
  local key=$1 title=$2 start=$SECONDS; shift 2
  [[ " $SECTIONS " == *" $key "* ]] || return 0
  ran=$((ran + 1))
  echo; echo "## $title"
  "$@" || { echo "FAILED (exit $?): $title"; failed=$((failed + 1)); }
  echo "($((SECONDS - start)) s)"
}

epoch_times() {  # the distillation epochs' times and any warning, from a run's --json events
  python3 -c "import sys, json
events = [json.loads(line) for line in sys.stdin]
times = [e['epoch_time'] for e in events if e['type'] == 'epoch' and e['phase'] == 'distillation']
print(f'$1: distillation epochs', ', '.join(f'{t:.2f}' for t in times) or 'none finished',
      's (the first includes warm-up)' if times else '')
for e in events:
    if e['type'] == 'warning':
        print('  warning:', e['message'])"
}

epochs() {  # 3 distillation epochs of mlp_to_cnn: epochs METHOD COMPILE SECONDS
  limited "$3" python3 -m fbt_engine run presets/mlp_to_cnn.toml "${FULL[@]}" "${EPOCH[@]}" --set "run.device=\"$DEVICE\"" \
    --set train.epochs=3 --set teacher.recipe.epochs=1 --set "method.name=\"$1\"" --set "train.compile=\"$2\"" \
    --json --quiet | epoch_times "$1, compile=$2"
}

fbt_epochs() {  # the first run also trains the 1-epoch teacher, which the compiled run reuses
  local rc=0
  epochs fbt off 45 || rc=$?
  epochs fbt on 100 || rc=$?
  return $rc
}

compiled_kd() {  # kd as CUDA runs it by default, compiled: with fbt's compiled epochs, fbt/kd there
  epochs kd on 100
}

paper_layouts() {  # NHWC (what train.channels_last = "auto" picks on CUDA) against NCHW, kd and fbt
  local layout rc=0
  for layout in on off; do
    echo "train.channels_last=\"$layout\":"
    limited 60 python3 bench/throughput.py --device "$DEVICE" --preset paper/cifar100_vit_s_to_resnet18 \
      --methods kd,fbt --no-classic "${PAPER[@]}" "${FULL[@]}" --set "train.channels_last=\"$layout\"" || rc=$?
  done
  return $rc
}

tui_cost() {
  if python3 -c "import textual, textual_plot" 2> /dev/null; then
    limited 120 python3 bench/tui_cost.py "${TUI[@]}" "${FULL[@]}" --set "run.device=\"$DEVICE\""
  else
    echo "skipped: textual and textual-plot are not installed (carry their wheels in .whl)"
  fi
}

{
  card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1 || true)
  echo "# fbt GPU check — $(date -u +%Y-%m-%dT%H:%MZ) — ${card:-no GPU}$(smoke && echo ' — SMOKE: toy sizes on the CPU, not measurements')"
  python3 -m fbt_engine doctor || true  # versions, the device, the data: the context of every number below
  # the quick sections first: a section cut off by its limit prints nothing
  section mlp "mlp_to_cnn on the full Fashion-MNIST, batch 512" \
    limited 85 python3 bench/throughput.py --device "$DEVICE" --preset mlp_to_cnn "${SMALL[@]}" "${FULL[@]}"
  section epochs "a 60,000-image FBT distillation epoch of mlp_to_cnn (target < 1.5 s), eager and compiled" fbt_epochs
  section kd_compiled "a 60,000-image KD epoch of mlp_to_cnn, compiled (fbt / kd as CUDA runs them by default)" compiled_kd
  section sync "host syncs inside a training step (CUDA's sync debug mode; target: none)" \
    limited 45 python3 bench/sync_check.py --device "$DEVICE"
  section profile "where one FBT step of ViT-S → ResNet18 at 224 px, batch 128, spends the GPU's time (torch.profiler)" \
    limited 40 python3 bench/profile_step.py --device "$DEVICE" --preset paper/cifar100_vit_s_to_resnet18 \
    "${PROFILE[@]}" "${FULL[@]}"
  section loop "fbt's loop on mlp_to_cnn, batch 512: host-bound or device-bound? (torch.profiler)" \
    limited 40 python3 bench/profile_step.py --loop --device "$DEVICE" --preset mlp_to_cnn "${LOOP[@]}" "${FULL[@]}"
  section paper "ViT-S → ResNet18 at 224 px, batch 128 (paper pair; Fashion-MNIST random-resized-cropped to 224)" \
    limited 90 python3 bench/throughput.py --device "$DEVICE" --preset paper/cifar100_vit_s_to_resnet18 \
    "${PAPER[@]}" "${FULL[@]}"
  section layout "ViT-S → ResNet18: channels-last (NHWC) against NCHW, kd and fbt" paper_layouts
  section tui "what the attached TUI costs a run (target < 2 %)" tui_cost
  echo
  echo "$failed of $ran sections failed; $SECONDS s in all"
  [ $failed = 0 ]
} 2>&1 | tee "$OUT/gpu_check.txt"
