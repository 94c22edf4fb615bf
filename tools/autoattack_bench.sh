#!/usr/bin/env bash
# Images per second of AutoAttack, robust-eval and the original code (fra31/auto-attack) side by
# side on ResNet-20, the standard ensemble and each member alone, interleaved run by run so both
# see the same machine load:
#   bash tools/autoattack_bench.sh AUTOATTACK_DIR [n] [threads]
# RUNS="standard apgd-ce apgd-t fab-t square" and SETTINGS="Linf:8/255 Linf:1/255 L2:0.5" pick
# what runs (these are the defaults). Prints one line per (run, setting): both tools' images/s,
# their ratio, both robust accuracies and how many images' outcomes differ. The reference runs
# with `threads` PyTorch threads, robust-eval with as many rayon threads; both on one batch of n.
set -euo pipefail
aa=${1:?directory holding the autoattack package}; n=${2:-100}; threads=${3:-2}
bin=${BIN:-target/release/robust-eval}
runs=${RUNS:-standard apgd-ce apgd-t fab-t square}
settings=${SETTINGS:-Linf:8/255 Linf:1/255 L2:0.5}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for run in $runs; do
  for setting in $settings; do
    norm=${setting%%:*}; eps=${setting#*:}
    out="$tmp/ours-$run-${norm}-${eps/\//_}"  # one directory per run: results.csv holds every cell there
    if [ "$run" = standard ]; then version=(--version standard); else version=(--version custom --attacks "$run"); fi
    RAYON_NUM_THREADS=$threads "$bin" autoattack --model resnet20 --norm "${norm,,}" --eps "$eps" \
      "${version[@]}" --limit "$n" --batch-size "$n" --out-dir "$out" > /dev/null 2>&1
    python3 tools/autoattack_reference.py --autoattack "$aa" --n "$n" --batch "$n" --threads "$threads" \
      --only "$run" --settings "$setting" --out "$tmp/ref.jsonl" > /dev/null 2>&1
    python3 - "$out" "$tmp/ref.jsonl" "$run $setting n=$n" <<'PY'
import csv, json, sys
out, ref, label = sys.argv[1:]
rows = [r for r in csv.DictReader(open(f"{out}/results.csv")) if r["metric"].startswith("robust_accuracy")]
ours = rows[-1]
samples = [r for r in csv.DictReader(open(f"{out}/samples.csv")) if r["cell"] == ours["cell"]]
robust = {int(r["index"]): r["correct"] == "1" for r in samples}
theirs = [json.loads(l) for l in open(ref)][-1]
flags = [c == "1" for c in theirs["robust_flags"]]
differ = sum(robust[i] != f for i, f in enumerate(flags))
speed, ref_speed = float(ours["images_per_second"]), theirs["images_per_second"]
print(f"{label}: robust-eval {speed:.2f} img/s, reference {ref_speed:.2f} img/s, "
      f"ratio {speed / ref_speed:.2f}; robust {float(ours['value']) * 100:.1f} / "
      f"{theirs['robust_accuracy'] * 100:.1f} %; {differ} images differ", flush=True)
PY
  done
done
