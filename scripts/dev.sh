#!/usr/bin/env bash
# One entry point for a fresh clone. Creates .venv (or reuses it), installs fbt with the exact
# torch pins from constraints.txt, then:
#   scripts/dev.sh demo   runs the README demo headless: fbt run presets/mlp_to_cnn.toml
#   scripts/dev.sh test   runs the whole test suite
#   scripts/dev.sh        just installs
# pip (not uv/poetry) on purpose: only pip reads this machine's local wheel mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.fbt-install-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]' \
    2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$stamp"
fi
case "${1:-}" in
  demo) shift; exec .venv/bin/fbt run presets/mlp_to_cnn.toml "$@" ;;
  test) shift; exec .venv/bin/python -m pytest "$@" ;;
  "") ;;
  *) echo "usage: scripts/dev.sh [demo|test] [args…]" >&2; exit 2 ;;
esac
