#!/usr/bin/env bash
# Record the what-if validation pair corpus on CUDA (run on a GPU machine with this repo and a CUDA
# build of torch; under 5 minutes on one H100: 30 runs took 5 min there with 10 timed steps each, this
# times 6). Paper-size configurations (docs/suite.md), each as a base run and one run per setting:
#   amp (bf16 autocast), fused optimizer, DataLoader workers 0 -> 2, activation checkpointing,
#   batch size B -> 2B.
# CAPTURE_TIMEOUT (seconds, default 290) bounds the capture; what finished by then is kept.
# Output, in files of a few MB each: $OUT/pairs_cuda_index.json and $OUT/pairs_cuda_MODEL.tar.gz per
# model (each unpacks to pairs_cuda/cuda/MODEL/SETTING/; put index.json beside pairs_cuda/cuda/).
#   OUT=/tmp/gpu bash benchmarks/gpu_capture.sh
set -euo pipefail
OUT="${OUT:-$PWD/gpu_out}"
MODELS="${MODELS:-resnet50,bert,vit,transformer,llama}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work="$(mktemp -d)"
timeout "${CAPTURE_TIMEOUT:-290}" python3 -m tbd_suite.capture --device cuda --size paper --models "$MODELS" --steps 3 --warmup 3 \
    --time-steps 6 --threads 0 --out "$work/pairs_cuda" 2>&1 | grep -v '^USDT\|^$' || true
test -f "$work/pairs_cuda/index.json"
cp "$work/pairs_cuda/index.json" "$OUT/pairs_cuda_index.json"
for model in "$work"/pairs_cuda/cuda/*/; do
    model="$(basename "$model")"
    tar czf "$OUT/pairs_cuda_$model.tar.gz" -C "$work" "pairs_cuda/cuda/$model"
done
python3 - "$work/pairs_cuda/index.json" <<'PY'
import json, sys
index = json.load(open(sys.argv[1]))
for pair in index["pairs"]:
    print(f"{pair['name']:45s} {pair['base_step_ms']:9.2f} -> {pair['optimized_step_ms']:9.2f} ms"
          f"  x{pair['measured_speedup']:.3f}  ({pair['whatif']['opt']})")
for name, run in index["runs"].items():
    print(f"{name:45s} profiler overhead {run['profiler_overhead_pct']:+.1f} %")
PY
rm -rf "$work"
