#!/usr/bin/env bash
# Create (first use) or reuse the project's virtual environment in .venv, with the pinned
# versions of requirements.lock. Sourced by run_all.sh and run_tests.sh; safe to run alone.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${METRIC_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.installed"
want="$(cat "$repo/requirements.lock" "$repo/pyproject.toml" | sha256sum | cut -c1-16)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  [ -x "$venv/bin/python" ] || {
    echo "setup: $venv/.installed is there but $venv/bin/python is not: the environment is broken; delete $venv (or its .installed) and rerun" >&2
    exit 1; }
  exit 0
fi
"$python" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed"' || {
  echo "setup: $python is older than 3.10; set PYTHON=/path/to/python3.11" >&2; exit 1; }
echo "setup: installing the study's environment into $venv (first run: a few minutes)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip 2>/dev/null || true
# The lock pins torch's CUDA build, which also runs on CPU-only machines.
"$venv/bin/python" -m pip install --quiet -c "$repo/requirements.lock" -e "$repo[test]"
"$venv/bin/python" -m ipykernel install --prefix "$venv" --name python3 >/dev/null
echo "$want" > "$stamp"
echo "setup: done"
