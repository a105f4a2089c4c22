#!/usr/bin/env bash
# The GPU path, exercised where a GPU is lent (CI has none):
#   1. the CUDA tests (tests/test_cuda.py: fp32 CUDA = CPU, bf16 autocast and channels-last
#      engaged, an AMP run that learns) and the trainer tests on CUDA (DDP: two ranks under torchrun);
#   2. bench/bench_train.py on CUDA: the trainer's step against a bare forward + backward;
#   3. bench/bench_throughput.py: ResNet-50 at 224 px (paper_wu) with bf16 + channels-last, then
#      fp32 and contiguous, then the real JPEG pipeline when beluga photos are present.
# Each step's log goes to $OUT (or runs/gpu_check); a failing step does not stop the others, and
# the script's status is the number of failed steps.
#   METRIC_DATA=... bash scripts/gpu_check.sh [python]
set -uo pipefail
cd "$(dirname "$0")/.."
python="${1:-python3}"
out="${OUT:-runs/gpu_check}"
mkdir -p "$out"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export METRIC_RUNS="${METRIC_RUNS:-$(mktemp -d)}"
failed=0

step() {  # step NAME COMMAND...: run it, log it, print its tail
  local name=$1 start=$SECONDS rc
  shift
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "   exit $rc after $((SECONDS - start)) s"
  tail -n "${TAIL:-30}" "$out/$name.log"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

step environment "$python" -c "
import torch, timm, faiss, pytorch_metric_learning as pml
print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name(0))
print('timm', timm.__version__, '| pml', pml.__version__, '| faiss', faiss.__version__)"
step tests "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_train.py tests/test_pretrained.py
step bench_train "$python" bench/bench_train.py --set train.device=cuda --steps 100
step throughput_bf16 "$python" bench/bench_throughput.py --device cuda --synthetic-only --steps 30
step throughput_fp32 "$python" bench/bench_throughput.py --device cuda --synthetic-only --steps 30 \
  --set train.precision=fp32 --set train.channels_last=false
if [ -f "${METRIC_DATA:-data}/beluga/beluga_whaledo_max256.zip" ]; then
  step throughput_jpeg "$python" bench/bench_throughput.py --device cuda --steps 30 --workers 12
fi
echo "failed steps: $failed"
exit "$failed"
