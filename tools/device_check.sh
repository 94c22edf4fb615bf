#!/usr/bin/env bash
# The CUDA checks, in two halves:
#
#   bash tools/device_check.sh build        here: the CUDA binary, stripped, at target/device/robust-eval
#   bash tools/device_check.sh run [OUT]    on the GPU machine (carrying target/device): writes OUT/
#
# `run` does, each step under its own time limit so that one hang cannot eat the rest:
#   1. logits parity CUDA vs CPU on the 1000 bundled images for the bundled models (relative 1e-3
#      of the largest logit), and PGD-10 robust accuracy of the bundled SDNet-18 on both devices;
#   2. throughput of eval, PGD-20 and training for resnet18 and sdnet18 at full width, batch 256,
#      with the peak GPU memory seen by nvidia-smi during each workload (the whole process: CUDA
#      context, kernel cache and burn's memory pools included);
#   3. the same workloads in PyTorch on the same card, when torch with CUDA is installed there
#      (peak memory: torch.cuda.max_memory_allocated);
#   4. data-parallel training at world size 1 on the GPU (`train --workers 1`, the collective path)
#      against plain training: the same weights are expected, and the all-reduce share is logged.
# Every line of the summary also goes to OUT/summary.txt; the raw outputs stay beside it.
set -uo pipefail
mode=${1:-}
bin=target/device/robust-eval

build() {
    CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda || exit 1
    mkdir -p target/device
    strip -o "$bin" target/cuda/release/robust-eval
    ls -l "$bin"
}

say() { echo "$*" | tee -a "$out/summary.txt"; }

# The directory of libnvrtc (burn-cuda compiles its kernels with NVRTC at run time).
find_nvrtc() {
    local lib
    lib=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so/ {print $NF; exit}')
    [ -z "$lib" ] && lib=$(find /usr/local/cuda*/ /usr/lib /opt -name 'libnvrtc.so*' 2>/dev/null | head -n 1)
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "libnvrtc: ${lib:-not found}"
}

# Largest |cuda - cpu| over the largest |cpu| of two float32 .npy files (no numpy needed); any
# non-finite value fails (Python's max would skip a NaN).
compare_logits() {
    python3 - "$1" "$2" <<'EOF'
import array, ast, math, sys
def load(path):
    raw = open(path, "rb").read()
    header_len = int.from_bytes(raw[8:10], "little")
    header = ast.literal_eval(raw[10:10 + header_len].decode())
    assert header["descr"] == "<f4", header
    values = array.array("f")
    values.frombytes(raw[10 + header_len:])
    return header["shape"], values
(shape_a, a), (shape_b, b) = load(sys.argv[1]), load(sys.argv[2])
assert shape_a == shape_b, (shape_a, shape_b)
if not all(map(math.isfinite, a)) or not all(map(math.isfinite, b)):
    sys.exit("FAIL: non-finite logits")
scale = max(abs(v) for v in a)
worst = max(abs(x - y) for x, y in zip(a, b))
rows, cols = shape_a
argmax = lambda v, r: max(range(cols), key=lambda c: v[r * cols + c])
flips = sum(argmax(a, r) != argmax(b, r) for r in range(rows))
verdict = "ok" if worst <= 1e-3 * scale else "FAIL"
print(f"max |cuda-cpu| {worst:.3g} (largest logit {scale:.3g}, relative {worst / scale:.3g}), "
      f"{flips} of {rows} predictions differ: {verdict}")
EOF
}

parity() {
    for model in resnet20 resnet18 sdnet18; do
        for device in cpu cuda; do
            timeout 300 "$bin" eval --model "$model" --device "$device" \
                --logits "$out/logits-$model-$device.npy" --out-dir "$out/eval-$model-$device" \
                >"$out/eval-$model-$device.log" 2>&1 || say "eval $model on $device failed: $(tail -n 3 "$out/eval-$model-$device.log")"
        done
        say "parity $model: $(compare_logits "$out/logits-$model-cpu.npy" "$out/logits-$model-cuda.npy" 2>&1 | tail -n 1)"
    done
    for device in cpu cuda; do
        timeout 300 "$bin" pgd --model sdnet18 --limit 200 --steps 10 --eps 8/255 --device "$device" \
            --out-dir "$out/pgd-sdnet18-$device" >"$out/pgd-sdnet18-$device.log" 2>&1
        say "PGD-10 sdnet18 (bundled, 200 images) on $device: $(tail -n 2 "$out/pgd-sdnet18-$device.log" | tr -s ' ' | paste -sd '|')"
    done
}

# Runs "$@" while sampling the card's used memory; prints the command's output and the peak.
with_peak_memory() {
    local samples="$out/memory.$$"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$samples" 2>/dev/null &
    local sampler=$!
    "$@"
    local rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    echo "peak GPU memory (nvidia-smi, whole process): $(sort -n "$samples" | tail -n 1) MiB"
    rm -f "$samples"
    return $rc
}

throughput() {
    local flags=(--batch-size 256 --repeat 1 --device cuda)
    for model in resnet18 sdnet18; do
        for workload in eval pgd train; do
            local n=1024 extra=()
            [ "$workload" = pgd ] && extra=(--steps 20) && n=512
            local log="$out/speed-$workload-$model.log"
            with_peak_memory timeout 300 "$bin" speed "$workload" "${flags[@]}" --models "$model" \
                --n "$n" "${extra[@]}" --out-dir "$out/speed-$workload-$model" >"$log" 2>&1
            say "ours    $workload${extra:+ (PGD-20)} $model batch 256: $(grep -i 'images/s' "$log" | tail -n 1); $(tail -n 1 "$log")"
        done
    done
}

pytorch() {
    if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        say "PyTorch with CUDA is not installed on this machine: no side-by-side figures"
        return
    fi
    for workload in eval pgd train; do
        local n=1024
        [ "$workload" = pgd ] && n=512
        timeout 300 python3 tools/bench_pytorch.py "$workload" --models resnet18,sdnet18 --device cuda \
            --batch 256 --steps 20 --n "$n" 2>&1 | tee -a "$out/pytorch.log" | sed 's/^/pytorch /' | tee -a "$out/summary.txt"
    done
}

data_parallel() {
    local data="$out/train1000.bin"
    head -c $((1000 * 3073)) data/cifar10/test_first1000.bin >"$data"
    for mode in plain collective; do
        local extra=()
        [ "$mode" = collective ] && extra=(--workers 1)
        timeout 300 "$bin" train --model resnet20 --data "$data" --epochs 2 --batch-size 128 \
            --device cuda --out "$out/train-$mode" "${extra[@]}" >"$out/train-$mode.log" 2>&1 ||
            say "train ($mode) failed: $(tail -n 3 "$out/train-$mode.log")"
        say "train resnet20 on cuda, $mode: $(tail -n 1 "$out/train-$mode/log.csv")"
    done
    # The checkpoints' files differ in their random running-state ids; compare what they compute.
    for mode in plain collective; do
        timeout 300 "$bin" eval --model resnet20 --checkpoint "$out/train-$mode/final.bpk" --device cuda \
            --logits "$out/logits-train-$mode.npy" --out-dir "$out/eval-train-$mode" >/dev/null 2>&1
    done
    if cmp -s "$out/logits-train-plain.npy" "$out/logits-train-collective.npy"; then
        say "world size 1 through the collective: the same logits as plain training, bit for bit"
    else
        say "world size 1 through the collective vs plain: $(compare_logits "$out/logits-train-plain.npy" "$out/logits-train-collective.npy" 2>&1 | tail -n 1)"
    fi
}

case "$mode" in
build) build ;;
run)
    out=${2:-${OUT:-device-check}}
    mkdir -p "$out"
    [ -x "$bin" ] || { echo "no $bin: run 'bash tools/device_check.sh build' here first and carry target/device" >&2; exit 1; }
    say "$(date -u) $(nvidia-smi -L 2>&1 | head -n 1); $(nproc) CPU cores"
    find_nvrtc
    parity
    throughput
    pytorch
    data_parallel
    ;;
*)
    echo "usage: bash tools/device_check.sh build | run [OUT]" >&2
    exit 2
    ;;
esac
