#!/usr/bin/env bash
# Images per second of each AutoAttack member alone, robust-eval and the original code
# (fra31/auto-attack) side by side on ResNet-20, interleaved so both see the same machine load:
#   bash tools/autoattack_bench.sh AUTOATTACK_DIR [n] [threads]
# Prints one line per (member, setting, tool); the reference runs with `threads` PyTorch threads,
# robust-eval with as many rayon threads.
set -euo pipefail
aa=${1:?directory holding the autoattack package}; n=${2:-100}; threads=${3:-2}
bin=${BIN:-target/release/robust-eval}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for member in apgd-ce apgd-t fab-t square; do
  for setting in Linf:1/255 Linf:2/255 L2:0.1; do
    norm=${setting%%:*}; eps=${setting#*:}
    out="$tmp/ours-$member-${norm}-${eps/\//_}"  # one directory per run: results.csv holds every cell there
    RAYON_NUM_THREADS=$threads "$bin" autoattack --model resnet20 --norm "${norm,,}" --eps "$eps" \
      --version custom --attacks "$member" --limit "$n" --out-dir "$out" > /dev/null 2>&1
    ours=$(python3 -c "import csv,sys; r=[x for x in csv.DictReader(open(sys.argv[1])) if x['metric']=='robust_accuracy'][-1]; print(r['images_per_second'], r['value'])" "$out/results.csv")
    python3 tools/autoattack_reference.py --autoattack "$aa" --n "$n" --threads "$threads" \
      --only "$member" --settings "$setting" --out "$tmp/ref.jsonl" > /dev/null 2>&1
    ref=$(python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; print(round(r['images_per_second'],2), r['robust_accuracy'])" "$tmp/ref.jsonl")
    echo "$member $setting n=$n robust-eval(img/s robust)=$ours reference(img/s robust)=$ref"
  done
done
