#!/usr/bin/env bash
# The test command: set up the environment if needed, run the unit tests, then every notebook
# end to end on the tiny `smoke` profile. Extra arguments go to pytest; its exit status is the
# script's (5 when no test was collected), and the notebooks run only after the tests pass.
set -euo pipefail
cd "$(dirname "$0")"
# This checkout's lib, first, also in the tests' subprocesses: a venv installed editable from
# another checkout would otherwise import that checkout's lib (see run_all.sh).
here="$(pwd -P)"
export METRIC_REPO="$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
bash scripts/setup_env.sh
source scripts/data_env.sh
export PYTHONUNBUFFERED=1
"${METRIC_VENV:-.venv}/bin/python" -m pytest "$@"
# Each chapter reads as a chapter: code share and cell length, printed, failing when over target.
"${METRIC_VENV:-.venv}/bin/python" scripts/notebook_shape.py
./run_all.sh --profile smoke
