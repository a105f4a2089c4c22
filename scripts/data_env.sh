# Sourced: choose the data folder when METRIC_DATA is unset: ./data if it exists, else the
# shared offline copy beside the checkout (../shared/data), which CI and this team use.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A relative METRIC_* path is relative to the current folder: made absolute here, since the
# notebooks' kernel runs in notebooks/ (a relative METRIC_RUNS would write there).
for var in METRIC_DATA METRIC_RUNS METRIC_CACHE METRIC_VENV; do
  case "${!var:-/}" in /*) ;; *) export "$var=$PWD/${!var}" ;; esac
done
unset var
if [ -z "${METRIC_DATA:-}" ]; then
  if [ -d "$repo/data" ]; then
    export METRIC_DATA="$repo/data"
  elif [ -d "$repo/../shared/data" ]; then
    export METRIC_DATA="$(cd "$repo/../shared/data" && pwd)"
  fi
fi
echo "data: ${METRIC_DATA:-./data (not found: set METRIC_DATA, see README)}"
