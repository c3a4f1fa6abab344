#!/usr/bin/env bash
# Record the what-if validation pair corpus on CUDA (run on a GPU machine with this repo and a CUDA
# build of torch; about 4 minutes on one H100). Paper-size configurations of the models whose paper
# batch fits one 80 GB GPU in fp32, with Adam/AdamW/SGD:
#   amp (bf16 autocast), fused optimizer, DataLoader workers 0 -> 2, activation checkpointing,
#   batch size B -> 2B.
# Output: $OUT/pairs_cuda.tar.gz (unpacks to pairs_cuda/{index.json,cuda/MODEL/SETTING/...}).
#   OUT=/tmp/gpu bash benchmarks/gpu_capture.sh
set -euo pipefail
OUT="${OUT:-$PWD/gpu_out}"
MODELS="${MODELS:-resnet50,bert,vit,transformer}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work="$(mktemp -d)"
python3 -m tbd_suite.capture --device cuda --size paper --models "$MODELS" --steps 3 --warmup 3 \
    --time-steps 10 --threads 0 --out "$work/pairs_cuda" 2>&1 | grep -v '^USDT\|^$' || true
test -f "$work/pairs_cuda/index.json"
tar czf "$OUT/pairs_cuda.tar.gz" -C "$work" pairs_cuda
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
