#!/usr/bin/env bash
# Run the whole study: set up the environment if needed, train every run the chapters plan
# (python -m lib.runs train: Ray tasks, longest first), execute every chapter notebook with
# papermill (they read runs, never train), and keep the results (python -m lib.runs store).
# Executed notebooks go to reports/<profile>/, figures to figures/<profile>/, finished runs to the
# run cache runs/ and the results store results/<profile>/ (committed for full), so a second run is fast.
#   ./run_all.sh [--profile smoke|quick|full|paper] [--only PATTERN]
# PATTERN picks the notebooks whose name contains it (letters, digits, _). The notebooks import
# this checkout's lib even when the virtual environment ($METRIC_VENV) is shared with another.
set -uo pipefail
# METRIC_* paths are relative to where the script is called from: made absolute before the cd
# below, since the notebooks' kernel runs in notebooks/ (a relative METRIC_RUNS would land there).
for var in METRIC_DATA METRIC_RUNS METRIC_CACHE METRIC_VENV; do
  case "${!var:-/}" in /*) ;; *) export "$var=$PWD/${!var}" ;; esac
done
cd "$(dirname "$0")"
profile=quick
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --only) only="${2:?--only needs a pattern}"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
# Names, before anything runs: a profile is a file params/<name>.yaml and names the folders
# reports/<name>/ and figures/<name>/, so '../x' or 'a/b' must not get as far as a path.
name_re='^[A-Za-z0-9_]+$'
[[ "$profile" =~ $name_re ]] || { echo "run_all.sh: bad profile name '$profile': a profile is a name such as smoke or quick (letters, digits, _), not a path" >&2; exit 2; }
[ -f "params/$profile.yaml" ] || { echo "run_all.sh: no profile '$profile'; have: $(ls params | sed 's/.yaml//' | tr '\n' ' ')" >&2; exit 2; }
if [ -n "$only" ]; then
  [[ "$only" =~ $name_re ]] || { echo "run_all.sh: bad --only pattern '$only': letters, digits and _ only (a part of a notebook's name, such as 06 or mining)" >&2; exit 2; }
  matches=0
  for nb in notebooks/[0-9]*.ipynb; do [[ "$(basename "$nb")" == *$only* ]] && matches=$((matches + 1)); done
  [ "$matches" -gt 0 ] || { echo "run_all.sh: no notebook matches --only '$only'; have: $(cd notebooks && ls [0-9]*.ipynb | tr '\n' ' ')" >&2; exit 2; }
fi
# Lanes (see below): how many chapters train side by side.
lanes="${METRIC_LANES:-$(( $(nproc) >= 2 ? 2 : 1 ))}"
[[ "$lanes" =~ ^[1-9][0-9]*$ ]] || { echo "run_all.sh: METRIC_LANES must be a whole number >= 1, not '$lanes'" >&2; exit 2; }
threads=$(( $(nproc) / lanes )); [ "$threads" -ge 1 ] || threads=1

# This checkout's lib, first: a venv installed editable (pip install -e) from another checkout
# maps `import lib` to that checkout, whose figures and runs the notebooks would then write.
here="$(pwd -P)"
export METRIC_REPO="$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
bash scripts/setup_env.sh || exit 1
source scripts/data_env.sh
export PYTHONUNBUFFERED=1
py="${METRIC_VENV:-.venv}/bin/python"
# The kernel papermill starts (the python of the python3 kernelspec, run from notebooks/ as
# --cwd notebooks does, with this environment) must import this checkout's lib.
kernel_py="$("$py" -c '
import sys
from jupyter_client.kernelspec import KernelSpecManager
cmd = KernelSpecManager().get_kernel_spec("python3").argv[0]
# jupyter_client runs a kernelspec whose command is plain "python" with its own interpreter
print(sys.executable if cmd in {"python", "python3", "python%d.%d" % sys.version_info[:2]} else cmd)')" || {
  echo "run_all.sh: cannot find the python3 kernel of $py (rerun: bash scripts/setup_env.sh)" >&2; exit 1; }
want="$here/lib/__init__.py"
got="$(cd notebooks && "$kernel_py" -c 'import lib, os; print(os.path.realpath(lib.__file__))' 2>&1)"
if [ "$got" != "$want" ]; then
  echo "run_all.sh: the notebooks' kernel ($kernel_py, from notebooks/) imports lib as:" >&2
  echo "  ${got//$'\n'/$'\n'  }" >&2
  echo "  not from this checkout's $want: its figures and runs would go to the wrong checkout." >&2
  echo "  Fix: give this checkout its own environment (METRIC_VENV=$here/.venv bash scripts/setup_env.sh," >&2
  echo "  then rerun), or remove what shadows it (PYTHONPATH, a 'python3' kernelspec: jupyter kernelspec list)." >&2
  exit 1
fi
# Check the profile before spending minutes on notebooks (lib.train adds the checks of each run's
# components, backbone, augmentation and data options to lib.config's own).
# One interpreter also names the chapters that read other chapters' tables (the ledger: they wait
# for them) and those that plan runs (lib.chapters.PLANS): each start of python with lib costs seconds.
mapfile -t checked < <("$py" -c "import lib.train; from lib.chapters import PLANS; from lib.config import load_profile
print(' '.join(load_profile('$profile').readers())); print(' '.join(PLANS))")
[ "${#checked[@]}" -eq 2 ] || exit 2
readers="${checked[0]}" plan_chapters="${checked[1]}"

had_cache="$([ -n "$(ls "${METRIC_RUNS:-runs}" 2>/dev/null | grep -v '^data_cache$')" ] && echo yes || echo no)"
out="reports/$profile"
mkdir -p "$out" "figures/$profile"
rm -f "$out"/.status-*

# Train the plan first: every run the chosen chapters read, as Ray tasks ($lanes at once, of
# $(nproc)/$lanes threads: on a CPU two one-thread runs side by side train 1.22-1.47x faster than one
# with two threads, bench/bench_lanes.py). Then the notebooks render in $lanes lanes; the chapters
# that read other chapters' tables (the ledger) wait for them.

run_notebook() {  # one chapter: papermill into a partial file, renamed only when it succeeded
  local nb="$1" name start tmp
  name="$(basename "$nb")"
  start=$SECONDS
  tmp="$out/.partial-$name"
  local progress=(--progress-bar)
  [ "$lanes" -gt 1 ] && progress=(--no-progress-bar)
  echo "=== $name ($profile)"
  if OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "$py" -m papermill "$nb" "$tmp" -p profile "$profile" \
      --cwd notebooks --kernel python3 "${progress[@]}" --log-level WARNING; then
    mv "$tmp" "$out/$name"
    rm -f "$out/FAILED-$name"
    echo "ok      $(( SECONDS - start ))s  $name" > "$out/.status-$name"
  else
    # Keep the failed notebook for reading, under a name that cannot pass for a result.
    mv "$tmp" "$out/FAILED-$name" 2>/dev/null
    rm -f "$out/$name"
    echo "FAILED  $(( SECONDS - start ))s  $name  (see $out/FAILED-$name)" > "$out/.status-$name"
  fi
  echo "--- $(cat "$out/.status-$name")"
}

# Interrupted (INT from a terminal, TERM from a scheduler): stop the chapters that run (their lanes'
# papermill; a lane then marks its chapter FAILED), wait for the lanes, mark what did not finish
# FAILED, and rewrite the figure index with the true status before exiting 130 or 143.
on_signal() {
  local code="$1" f name lane
  trap '' INT TERM
  echo "run_all.sh: interrupted (signal $(( code - 128 ))); stopping the chapters that run" >&2
  for lane in $(jobs -p); do pkill -TERM -P "$lane" 2>/dev/null; done
  wait
  for f in "$out"/.partial-*.ipynb; do
    [ -e "$f" ] || continue
    name="${f##*/.partial-}"
    mv "$f" "$out/FAILED-$name" && rm -f "$out/$name"
    echo "FAILED  interrupted  $name  (see $out/FAILED-$name)" > "$out/.status-$name"
  done
  for f in "$out"/.status-*; do [ -e "$f" ] && echo "  $(cat "$f")" >&2; done
  rm -f "$out"/.status-*
  "$py" -m lib.report "$profile" >/dev/null || echo "run_all.sh: could not write the figure index" >&2
  exit "$code"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

chosen=()
for nb in notebooks/[0-9]*.ipynb; do
  name="$(basename "$nb")"
  [ -n "$only" ] && [[ "$name" != *$only* ]] && continue
  chosen+=("$nb")
done
# Longest first, by the wall times this profile's last cold run measured ($out/timings.tsv, written
# below): with two lanes, a long chapter started last would finish alone. A profile's first run
# takes the committed full profile's times: the chapters' costs are about in the same proportions.
queue=("${chosen[@]}")
order="$out/timings.tsv"
[ -f "$order" ] || order="reports/full/timings.tsv"
if [ -f "$order" ]; then
  mapfile -t queue < <(for nb in "${chosen[@]}"; do
      s="$(awk -v n="$(basename "$nb")" '$2 == n {print $1}' "$order")"
      echo "${s:-999999} $nb"
    done | sort -s -k1,1nr | cut -d' ' -f2-)
fi
start_all=$SECONDS
stems=()
for nb in "${chosen[@]}"; do stems+=("$(basename "$nb" .ipynb)"); done
# The chosen chapters that plan runs (the ledger and the mechanics chapter read none).
planners=()
for stem in "${stems[@]}"; do [[ " $plan_chapters " == *" $stem "* ]] && planners+=("$stem"); done
if [ ${#planners[@]} -gt 0 ]; then
  only_these=()
  [ -n "$only" ] && for stem in "${planners[@]}"; do only_these+=(--chapter "$stem"); done
  OMP_NUM_THREADS=$threads "$py" -m lib.runs train --profile "$profile" --workers "$lanes" "${only_these[@]}" || {
    echo "run_all.sh: training the plan failed (see above); no notebook was rendered" >&2; exit 1; }
fi
trains=(); reads=()
for nb in "${queue[@]}"; do
  if [[ " $readers " == *" $(basename "$nb" .ipynb) "* ]]; then reads+=("$nb"); else trains+=("$nb"); fi
done
# No more lanes than chapters to train: `--only` one chapter gets every core.
if [ "${#trains[@]}" -lt "$lanes" ]; then
  lanes=$(( ${#trains[@]} > 1 ? ${#trains[@]} : 1 )); threads=$(( $(nproc) / lanes ))
fi
echo "run_all.sh: $lanes lane(s) of $threads thread(s)"
render_chapters() {  # the chapters that read runs, in lanes
  for nb in "${trains[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$lanes" ]; do wait -n; done
    run_notebook "$nb" &
  done
  wait
}
# A chapter quotes the ledger, whose Holm family spans every chapter's per-seed table; a chapter
# rendered beside another that rewrites its table would quote a stale family. So when a table
# changed while they rendered, those chapters render once more (from the runs and derived numbers
# now kept, in seconds), and every chapter then says what the ledger says.
tables() { cat figures/"$profile"/*-runs.csv 2>/dev/null | cksum; }
before="$(tables)"
render_chapters
if [ "$(tables)" != "$before" ] && [ "${#trains[@]}" -gt 1 ]; then
  echo "run_all.sh: per-seed tables changed while the chapters rendered; rendering them again so each quotes the finished ledger"
  render_chapters
fi
# Keep what the notebooks derived from the runs (t-SNE maps, re-identification scores, ...) in the
# results store beside the runs, and check that every run a chapter read is one the plan has. The
# readers (the ledger) derive nothing from runs, so the store is kept while they render.
"$py" -m lib.runs store --profile "$profile" > "$out/.store.log" 2>&1 &
store_pid=$!
lanes=1; threads=$(nproc)  # the readers, one after another
for nb in "${reads[@]}"; do run_notebook "$nb"; done
failed=()
wait "$store_pid" || failed+=("results store")
cat "$out/.store.log"; rm -f "$out/.store.log"
summary=()
for nb in "${chosen[@]}"; do
  name="$(basename "$nb")"
  line="$(cat "$out/.status-$name" 2>/dev/null || echo "FAILED  ?s  $name  (no status: the lane died)")"
  summary+=("$line")
  [[ "$line" == ok* ]] || failed+=("$name")
  rm -f "$out/.status-$name"
done
if [ -z "$only" ] && [ ${#failed[@]} -eq 0 ] && [ "$had_cache" = no ]; then  # the next run's order (cold seconds)
  printf '%s\n' "${summary[@]}" | awk '{sub(/s$/, "", $2); print $2, $3}' > "$out/timings.tsv"
fi
total=$(( SECONDS - start_all ))
echo
echo "Summary — profile $profile, ${total}s in all:"
printf '  %s\n' "${summary[@]}"
# The profile's time budget (params budget_minutes), met from an empty run cache on 2 CPU cores.
budget="$("$py" -c "from lib.config import load_profile; print(load_profile('$profile').budget_minutes or '')")"
if [ -n "$budget" ] && [ -z "$only" ]; then
  cold="$([ "$had_cache" = yes ] && echo "with runs cached before this call" || echo "from an empty run cache")"
  state="$([ "$total" -le $(( budget * 60 )) ] && echo within || echo OVER)"
  echo "Budget: ${total}s of ${budget} min ($(( budget * 60 ))s) for profile $profile, $cold, $(nproc) CPU cores: $state"
fi
echo "Executed notebooks: $out/   Figures: figures/$profile/"
# The figure index, also after failures (it lists the failed chapters); a problem writing it is
# reported but does not change the exit status, which stays the notebooks' verdict.
if index="$("$py" -m lib.report "$profile")"; then
  echo "Figure index: $index"
else
  echo "run_all.sh: could not write the figure index (figures/$profile/index.html)" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "run_all.sh: ${#failed[@]} notebook(s) failed: ${failed[*]}" >&2
  exit 1
fi
