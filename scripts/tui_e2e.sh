#!/usr/bin/env bash
# End-to-end check of the terminal app in a real terminal (tmux), as a new user would use it:
# start fbt, launch mlp_to_cnn from Presets, watch the dashboard update, switch to History and
# back, launch a second run, compare the two, export one, quit leaving nothing behind; then the
# same app at 80×24. Runs in a fresh FBT_HOME; prints each step and exits non-zero on failure.
#
#   scripts/tui_e2e.sh            # small overrides typed into the form (a few minutes on 2 cores)
#   FULL=1 scripts/tui_e2e.sh     # mlp_to_cnn exactly as shipped (teacher training included)
set -euo pipefail
cd "$(dirname "$0")/.."
FBT="$PWD/.venv/bin/fbt"
HOME_DIR="$(mktemp -d /tmp/fbt-e2e.XXXXXX)"
SESSION="fbt-e2e-$$"
RUN_TIMEOUT="${RUN_TIMEOUT:-600}"
failures=0

engines() { { pgrep -f -- "fbt_engine run .*--id" || true; } | while read -r pid; do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "FBT_HOME=$HOME_DIR"; then echo "$pid"; fi
done; }
cleanup() {  # only the engines of this check's FBT_HOME: SIGINT, then SIGKILL what is left
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    local pids; pids="$(engines || true)"
    if [[ -n "$pids" ]]; then kill -INT $pids 2>/dev/null || true; sleep 5; kill -KILL $(engines || true) 2>/dev/null || true; fi
    rm -rf "$HOME_DIR"
}
trap cleanup EXIT

screen() { tmux capture-pane -p -t "$SESSION"; }
keys() { for k in "$@"; do tmux send-keys -t "$SESSION" "$k"; sleep 0.25; done; }
type_text() { tmux send-keys -t "$SESSION" -l "$1"; sleep 0.25; }
ok() { echo "  ok    $1"; }
fail() { echo "  FAIL  $1"; failures=$((failures + 1)); screen | sed 's/^/        | /'; }
wait_for() {  # wait_for TEXT SECONDS DESCRIPTION
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if screen | grep -qF -- "$1"; then ok "$3"; return 0; fi
        sleep 0.5
    done
    fail "$3 (no \"$1\" on screen after $2 s)"
    return 1
}
start_app() {  # start_app WIDTH HEIGHT: a new session before the old one goes, so tmux's server stays up
    local old="$SESSION"
    SESSION="fbt-e2e-$$-$1x$2"
    tmux new-session -d -s "$SESSION" -x "$1" -y "$2" "env FBT_HOME='$HOME_DIR' '$FBT'; echo '[fbt exited]'; sleep 600"
    tmux kill-session -t "=$old" 2>/dev/null || true  # "=": exact name, not a prefix of the new one
}
set_field() {  # the focused form field := $1
    keys C-u
    type_text "$1"
}

echo "fbt end-to-end in tmux (FBT_HOME=$HOME_DIR)"
start_app 160 48
wait_for "Presets" 30 "the app starts on Presets"
wait_for "mlp_to_cnn" 10 "mlp_to_cnn is listed"
wait_for "✓ valid" 10 "the preset validates"

if [[ -z "${FULL:-}" ]]; then  # list → run name → teacher → student → method → epochs …
    keys Tab Tab Tab Tab Tab
    set_field 2; keys Tab          # epochs
    set_field 1; keys Tab          # teacher epochs
    set_field 64; keys Tab         # batch size
    set_field 1000                 # train subset
    wait_for "2 distillation (+ 1 teacher" 10 "the edits reach the preview"
    wait_for "✓ valid" 10 "the edited form validates"
fi
keys Enter
wait_for "● running" 60 "enter launches it into a dashboard tab"
wait_for "1 run active" 10 "the header counts the active run"
wait_for "distillation" "$RUN_TIMEOUT" "the dashboard follows the run into distillation"
wait_for "T–S / step  ━" "$RUN_TIMEOUT" "the loss curves have data"
points() { screen | grep -o 'showing [0-9,]* of [0-9,]* points' | head -1; }
before="$(points)"; after="$before"; deadline=$((SECONDS + 60))
while [[ "$after" == "$before" ]] && ((SECONDS < deadline)) && ! screen | grep -qF '✓ finished'; do
    sleep 0.5; after="$(points)"
done
if [[ "$before" != "$after" ]]; then ok "the curves update ($before → $after)"
else fail "the curves did not update ($before)"; fi

keys h
wait_for "runs: 1 of 1" 15 "History lists the run while it runs"
keys d
wait_for "engine log" 10 "back on the dashboard"
wait_for "✓ finished" "$RUN_TIMEOUT" "the run finishes"
wait_for "no run active" 15 "the header shows no active run"

keys p
sleep 1
keys Enter  # the form kept its values and its focus: launch the same settings again
wait_for "● running" 60 "a second run starts"
wait_for "✓ finished" "$RUN_TIMEOUT" "the second run finishes"
sleep 1

keys h
wait_for "runs: 2 of 2" 15 "History lists both runs"
keys Up Up space space c  # the cursor stays on the run it was on: start from the top
wait_for "Compare 2 runs" 15 "c compares the marked runs"
wait_for "config" 10 "the config difference is shown"
keys Escape
EXPORT="$HOME_DIR/export.csv"
keys e
wait_for "Export 2 runs" 10 "e opens the export dialog for the marked runs"
keys C-u
type_text "$EXPORT"
keys Enter
sleep 2
if [[ -s "$EXPORT" ]] && head -1 "$EXPORT" | grep -q "^run,phase,step"; then ok "the CSV export was written ($(wc -l < "$EXPORT") lines)"
else fail "no CSV at $EXPORT"; fi
keys q
wait_for "[fbt exited]" 15 "q quits (nothing active: no question)"
if [[ -z "$(engines)" ]]; then ok "no engine process left behind"; else fail "engine processes left: $(engines)"; fi

echo "the same app at 80×24"
start_app 80 24
wait_for "Presets" 30 "Presets renders at 80×24"
keys h
wait_for "runs: 2 of 2" 15 "History renders at 80×24"
keys Enter
wait_for "T–S / step  ━" 15 "a past run opens in the dashboard at 80×24, curves drawn"
keys "]" "]" "]" "]" "]" "]"
wait_for "alignment" 10 "[ and ] reach the alignment table"
keys "?"
wait_for "Keys" 10 "? lists the keys"
keys Escape q
wait_for "[fbt exited]" 15 "q quits"
if screen | grep -q "Traceback"; then fail "a traceback reached the terminal"; else ok "no traceback anywhere"; fi

if ((failures)); then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
