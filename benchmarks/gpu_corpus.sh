#!/usr/bin/env bash
# Record the GPU pair corpus at paper size: one script, about 8 minutes on one H100/H200.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_corpus.sh            # on the GPU machine
#   OUT=/tmp/dry bash benchmarks/gpu_corpus.sh --device cpu   # dry run: tiny sizes, CPU (a test runs it)
#
# 1. CUPTI: torch 2.11+cu130 ships CUPTI 13.0, whose timestamp callback (the one Kineto
#    registers) records every CUDA event with ts=0 and dur=0 (fixed in CUPTI 13.1,
#    pytorch/pytorch#192021). The script first swaps in a fixed CUPTI:
#      pip install --no-deps --force-reinstall "nvidia-cuda-cupti>=13.2"
#    (CUPTI_WHEEL=/path/to/wheel installs a local wheel instead, for machines without an index),
#    then reports which libcupti the profiling process maps.
# 2. Gate: 10 timed 4096^2 matmuls under the profiler; any kernel with ts=0 or dur=0, or fewer than
#    10 kernels, stops the script (exit 3) before anything is recorded.
# 3. Pairs (benchmarks/gpu_corpus.py record): for each of MODELS (default resnet50,bert,llama)
#    fp32 -> amp bf16 and fp16, per-tensor -> fused Adam(W), checkpointing, batch x2, num_workers
#    0 -> 2; a CUDA-graph pair (whole MLP training step captured vs eager); a cross-precision GEMM
#    pair for quantize (bf16 vs fp8 _scaled_mm; on CPU fp32 vs int8 dynamic quantization).
#    Traces hold only the steady steps (profiler schedule: 1 wait + 1 warm-up step skipped).
#    CORPUS_TIMEOUT (seconds, default 420) bounds the recording; finished pairs are kept.
# Output: $OUT/cupti_check.json, $OUT/index.json and $OUT/pairs_cuda_<MODEL>.tar.gz per model
# (each unpacks to cuda/<MODEL>/<SETTING>/{trace.json.gz,run.json}; commit under traces/pairs_cuda/).
set -euo pipefail
DEVICE=cuda
DRY_RUN="${DRY_RUN:-0}"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        *) echo "gpu_corpus.sh: unknown argument $1 (use --device cpu|cuda, --dry-run)" >&2; exit 2 ;;
    esac
done
[ "$DEVICE" = cpu ] && DRY_RUN=1   # no paper-size run on the CPU: the CPU mode is the dry run
OUT="${OUT:-$PWD/gpu_corpus_out}"
MODELS="${MODELS:-resnet50,bert,llama}"
SETTINGS="${SETTINGS:-amp-bf16,amp-fp16,fused-optimizer,activation-checkpointing,batch-size,dataloader}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
started=$(date +%s)

if [ "$DEVICE" = cuda ]; then
    echo "== CUPTI: installing a fixed CUPTI (>= 13.2)"
    if [ -n "${CUPTI_WHEEL:-}" ]; then
        python3 -m pip install -q --no-deps --force-reinstall "$CUPTI_WHEEL"
    else
        python3 -m pip install -q --no-deps --force-reinstall "nvidia-cuda-cupti>=13.2" \
            || echo "   pip install failed (no package index?); the gate below decides"
    fi
    python3 -m pip show nvidia-cuda-cupti 2>/dev/null | grep -i '^version' || true
fi

echo "== gate: 10 timed matmuls on $DEVICE"
python3 benchmarks/gpu_corpus.py check --device "$DEVICE" --out "$OUT"

dry=()
[ "$DRY_RUN" = 1 ] && dry=(--dry-run)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== recording pairs (models: $MODELS; settings: $SETTINGS)"
rc=0
timeout "${CORPUS_TIMEOUT:-420}" python3 benchmarks/gpu_corpus.py record --device "$DEVICE" \
    --out "$work" --models "$MODELS" --settings "$SETTINGS" "${dry[@]}" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
    echo "recording failed (exit $rc)" >&2
    exit "$rc"
fi
[ "$rc" -eq 124 ] && echo "   CORPUS_TIMEOUT reached: keeping the pairs finished so far"
test -f "$work/index.json"
cp "$work/index.json" "$OUT/index.json"
for model in "$work/$DEVICE"/*/; do
    model="$(basename "$model")"
    tar czf "$OUT/pairs_${DEVICE}_$model.tar.gz" -C "$work" "$DEVICE/$model"
done
echo "== done in $(( $(date +%s) - started )) s: $OUT"
ls -la "$OUT"
