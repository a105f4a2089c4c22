#!/usr/bin/env bash
# The test command: set up the environment if needed, run the unit tests, then every notebook
# end to end on the tiny `smoke` profile. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
source scripts/data_env.sh
export PYTHONUNBUFFERED=1
.venv/bin/python -m pytest "$@"
./run_all.sh --profile smoke
