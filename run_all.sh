#!/usr/bin/env bash
# Run the whole study: set up the environment if needed, execute every chapter notebook in
# order with papermill, and write executed notebooks to reports/<profile>/ and figures to
# figures/<profile>/. Results are cached in runs/, so a second run is fast.
#   ./run_all.sh [--profile smoke|quick|full|paper] [--only PATTERN]
set -uo pipefail
cd "$(dirname "$0")"
profile=quick
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --only) only="${2:?--only needs a pattern}"; shift 2 ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ -f "params/$profile.yaml" ] || { echo "run_all.sh: no profile '$profile'; have: $(ls params | sed 's/.yaml//' | tr '\n' ' ')" >&2; exit 2; }

bash scripts/setup_env.sh || exit 1
source scripts/data_env.sh
export PYTHONUNBUFFERED=1
py=.venv/bin/python
# Check the profile before spending minutes on notebooks.
$py -c "from lib.config import load_profile; load_profile('$profile')" || exit 2

out="reports/$profile"
mkdir -p "$out" "figures/$profile"
failed=()
summary=()
start_all=$SECONDS
for nb in notebooks/[0-9]*.ipynb; do
  name="$(basename "$nb")"
  [ -n "$only" ] && [[ "$name" != *$only* ]] && continue
  echo "=== $name ($profile)"
  start=$SECONDS
  tmp="$out/.partial-$name"
  if $py -m papermill "$nb" "$tmp" -p profile "$profile" --cwd notebooks --kernel python3 --progress-bar --log-level WARNING; then
    mv "$tmp" "$out/$name"
    rm -f "$out/FAILED-$name"
    summary+=("ok      $(( SECONDS - start ))s  $name")
  else
    # Keep the failed notebook for reading, under a name that cannot pass for a result.
    mv "$tmp" "$out/FAILED-$name" 2>/dev/null
    rm -f "$out/$name"
    failed+=("$name")
    summary+=("FAILED  $(( SECONDS - start ))s  $name  (see $out/FAILED-$name)")
  fi
done
echo
echo "Summary — profile $profile, $(( SECONDS - start_all ))s in all:"
printf '  %s\n' "${summary[@]}"
echo "Executed notebooks: $out/   Figures: figures/$profile/"
# The figure index, also after failures (it lists the failed chapters); a problem writing it is
# reported but does not change the exit status, which stays the notebooks' verdict.
if index="$($py -m lib.report "$profile")"; then
  echo "Figure index: $index"
else
  echo "run_all.sh: could not write the figure index (figures/$profile/index.html)" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "run_all.sh: ${#failed[@]} notebook(s) failed: ${failed[*]}" >&2
  exit 1
fi
