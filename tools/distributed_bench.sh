#!/usr/bin/env bash
# Data-parallel training throughput on this machine, in interleaved rounds:
#
#   bash tools/distributed_bench.sh [ROUNDS] [OUT]      (defaults: 3 rounds, results/distributed-bench)
#
# For each model (resnet20, sdnet18 at width 1/4), one epoch of warm-up and one timed epoch over
# the 1000 bundled images, global batch 128, in four set-ups:
#   plain-1t    one process, one thread, no collective
#   plain-2t    one process, two threads, no collective
#   workers-2   one process, --workers 2 (two peers of one thread each, in-process all-reduce)
#   nodes-2     two processes of one thread (--nodes 2 on 127.0.0.1, all-reduce over websockets)
# It prints images/s of the timed epoch (validation excluded) and the share of that epoch rank 0
# spent in all-reduces (waiting for the other peer included), from each run's log.csv.
set -euo pipefail
rounds=${1:-3}
out=${2:-results/distributed-bench}
bin=target/release/robust-eval
[ -x "$bin" ] || cargo build --release
mkdir -p "$out"
data=data/cifar10/test_first1000.bin

run() { # name model width -- extra args
    local name=$1 model=$2 width=$3 round=$4
    shift 4
    local dir="$out/$model-$name-$round"
    rm -rf "$dir"
    case $name in
    plain-1t) RAYON_NUM_THREADS=1 "$bin" train --model "$model" --width "$width" --data "$data" \
        --epochs 2 --batch-size 128 --out "$dir" >/dev/null ;;
    plain-2t) RAYON_NUM_THREADS=2 "$bin" train --model "$model" --width "$width" --data "$data" \
        --epochs 2 --batch-size 128 --out "$dir" >/dev/null ;;
    workers-2) RAYON_NUM_THREADS=2 "$bin" train --model "$model" --width "$width" --data "$data" \
        --epochs 2 --batch-size 128 --out "$dir" --workers 2 >/dev/null ;;
    nodes-2)
        local port=$((29700 + RANDOM % 1000))
        local common=(train --model "$model" --width "$width" --data "$data" --epochs 2
            --batch-size 128 --out "$dir" --nodes 2 --coordinator "127.0.0.1:$port")
        RAYON_NUM_THREADS=1 "$bin" "${common[@]}" --node-rank 1 >/dev/null &
        RAYON_NUM_THREADS=1 "$bin" "${common[@]}" --node-rank 0 >/dev/null
        wait
        ;;
    esac
    # epoch 2 from train.json (full precision): images/s and the all-reduce share
    python3 -c 'import json, sys
e = json.load(open(sys.argv[1]))["results"]["log"][1]
share = 100 * e["sync_seconds"] / e["seconds"]
print("%-24s %8.1f images/s  all-reduce %4.1f %%" % (sys.argv[2], e["images_per_second"], share))' \
        "$dir/train.json" "$model $name" | tee -a "$out/rounds.txt"
}

: >"$out/rounds.txt"
echo "$(date -u) $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores" | tee "$out/machine.txt"
for round in $(seq 1 "$rounds"); do
    for model in resnet20 sdnet18; do
        width=1
        [ "$model" = sdnet18 ] && width=0.25
        for name in plain-1t plain-2t workers-2 nodes-2; do
            run "$name" "$model" "$width" "$round"
        done
    done
done
echo "medians over $rounds rounds:"
python3 - "$out/rounds.txt" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    rows[(f[0], f[1])].append((float(f[2]), float(f[5])))
for (model, name), values in sorted(rows.items()):
    speed = statistics.median(v[0] for v in values)
    share = statistics.median(v[1] for v in values)
    print(f"{model:<9} {name:<10} {speed:8.1f} images/s  all-reduce {share:4.1f} %  ({len(values)} rounds)")
EOF
