#!/usr/bin/env bash
# Side-by-side throughput of robust-eval and PyTorch on this machine, interleaved so that both see
# the same machine load: bash tools/bench.sh eval|pgd|train [rounds] [n]
# (MODELS=resnet20,sdnet18 ... picks the models, all three by default; BATCH=50 the batch size;
# DATASET=imagenet the ImageNet variants at 224x224; PYTORCH_ARGS=--bare times PyTorch's attack
# steps alone)
set -euo pipefail
what=${1:-eval}; rounds=${2:-3}; n=${3:-500}
batch=100; [ "$what" = train ] && batch=128
batch=${BATCH:-$batch}
dataset=${DATASET:-cifar10}
bin=${BIN:-target/release/robust-eval}
models=${MODELS:-resnet20,resnet18,sdnet18}
for r in $(seq "$rounds"); do
  "$bin" speed "$what" --models "$models" --n "$n" --batch-size "$batch" --dataset "$dataset" --repeat 1 --out-dir /tmp/robust-eval-bench | sed "s/^/round $r ours    /"
  python3 tools/bench_pytorch.py "$what" --models "$models" --n "$n" --batch "$batch" --dataset "$dataset" ${PYTORCH_ARGS:-} | sed "s/^/round $r pytorch /"
done
