#!/usr/bin/env bash
# Re-record the CPU pair corpus traces/pairs (docs/validation.md, "CPU pair corpus"): the five
# settings and both quantize pairs on the five suite models, then the sparse-attention pairs on
# tbd:dit at 256 tokens, and amp and fused-optimizer on the recurrent models (tbd:seq2seq, LSTM;
# tbd:deepspeech2, GRU), appended to the same index. Interleaved timing: 10 repetitions A B A B ...
# of 20 steady steps each, one torch thread; each profiled window the least disturbed of up to 10.
#   nohup benchmarks/record_cpu_pairs.sh [OUT] > runs/record_cpu_pairs.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-traces/pairs}
common=(--repetitions 10 --rep-steps 20 --profile-tries 10 --threads 1 --json)
start=$(date +%s)
daydream capture --out "$out" "${common[@]}" \
    --settings amp,fused-optimizer,dataloader,activation-checkpointing,batch-size,quantize-inference,quantize \
    > /dev/null
daydream capture --out "$out" "${common[@]}" --append --models dit --size small-256 \
    --settings sparse-attention-50,sparse-attention-50-reorder,sparse-attention-25,sparse-attention-25-reorder \
    > /dev/null
daydream capture --out "$out" "${common[@]}" --append --models seq2seq,deepspeech2 \
    --settings amp,fused-optimizer > /dev/null
echo "recorded $out in $(( $(date +%s) - start )) s"
