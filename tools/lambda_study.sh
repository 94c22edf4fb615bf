#!/usr/bin/env bash
# The λ-defense study of the README: calibrate schedules on CIFAR-10 images that are not the
# evaluation images, evaluate every row on the 1000 bundled test images, attack the defenses.
#   bash tools/lambda_study.sh [OUT]        (then: python3 tools/lambda_study.py OUT)
# Needs ../shared/data/cifar10/train_jpeg9000.bin (the calibration images).
set -euo pipefail
out=${1:-results/lambda-study}
bin=${BIN:-target/release/robust-eval}
calib=${CALIB:-../shared/data/cifar10/train_jpeg9000.bin}
calib_n=${CALIB_N:-500}      # calibration images: the first 500 of train_jpeg9000.bin
other_n=${OTHER_N:-500}      # images for the mean over the 15 non-noise corruptions
pgd_n=${PGD_N:-200}          # images attacked
others=defocus_blur,glass_blur,motion_blur,zoom_blur,snow,frost,fog,brightness,contrast,elastic_transform,pixelate,jpeg_compression,gaussian_blur,spatter,saturate

# 1. Calibration (labels of the calibration images only) and the label-free schedules.
"$bin" lambda calibrate --model sdnet18 --data "$calib" --limit "$calib_n" --corruptions noise \
  --out-dir "$out/calibration" > "$out.calibrate.log"
S=$out/calibration/schedules

# 2. The oracle: the best λ per condition chosen with the test labels.
"$bin" lambda sweep --model sdnet18 --corruptions noise --out-dir "$out/oracle" > "$out.sweep.log"

# 3. Pick the best label-free schedule on the calibration images (mean over the noise conditions).
best=""; best_acc=-1
for s in residual-linear residual-monotone noise discrepancy; do
  acc=$("$bin" corrupt --model sdnet18 --defense "$S/$s.json" --data "$calib" --limit "$calib_n" \
        --corruptions noise --out-dir "$out/select/$s" | awk '/_noise /{s+=$NF; n++} END{print s/n}')
  echo "calibration mean over noise: $s $acc" | tee -a "$out.select.log"
  if awk "BEGIN{exit !($acc > $best_acc)}"; then best=$s; best_acc=$acc; fi
done
echo "$best" > "$out.best"

# 4. The table rows on the bundled test images: noise (1000 images) and the other 15 (first 500).
row() {  # name, then model flags
  local name=$1; shift
  "$bin" corrupt "$@" --corruptions noise --out-dir "$out/rows/$name/noise" > /dev/null
  "$bin" corrupt "$@" --corruptions "$others" --limit "$other_n" --out-dir "$out/rows/$name/other" > /dev/null
  echo "row $name done"
}
row resnet18 --model resnet18
row resnet18-bn --model resnet18 --bn-adapt
row sdnet18 --model sdnet18
row sdnet18-bn --model sdnet18 --bn-adapt
for s in residual-linear residual-monotone noise discrepancy; do
  row "sdnet18-$s" --model sdnet18 --defense "$S/$s.json"
done
row "sdnet18-$best-bn" --model sdnet18 --defense "$S/$best.json" --bn-adapt
for s in per-condition; do   # calibrated per-condition table; the oracle below
  "$bin" corrupt --model sdnet18 --defense "$S/$s.json" --corruptions noise --out-dir "$out/rows/sdnet18-$s/noise" > /dev/null
done
"$bin" corrupt --model sdnet18 --defense "$out/oracle/oracle-all.json" --corruptions noise --out-dir "$out/rows/sdnet18-oracle/noise" > /dev/null

# 5. PGD-10 at 1, 2, 4, 8/255: adaptive, static and transfer attacks on the defenses.
eps=1/255,2/255,4/255,8/255
"$bin" pgd --model resnet18 --eps $eps --limit "$pgd_n" --out-dir "$out/pgd/resnet18" > /dev/null
"$bin" pgd --model sdnet18 --eps $eps --limit "$pgd_n" --out-dir "$out/pgd/sdnet18" > /dev/null
for s in $(printf '%s\n' "$best" noise | sort -u); do
  "$bin" pgd --model sdnet18 --defense "$S/$s.json" --eps $eps --limit "$pgd_n" \
    --attack-mode adaptive,static,transfer --out-dir "$out/pgd/sdnet18-$s" > /dev/null
done
"$bin" pgd --model sdnet18 --defense "$S/$best.json" --bn-adapt --eps $eps --limit "$pgd_n" \
  --attack-mode adaptive,static,transfer --out-dir "$out/pgd/sdnet18-$best-bn" > /dev/null
"$bin" pgd --model sdnet18 --defense fixed:0.5 --eps $eps --limit "$pgd_n" \
  --attack-mode adaptive,transfer --out-dir "$out/pgd/sdnet18-fixed0.5" > /dev/null
# The discrepancy rule re-selects λ by bisection at every attack step: fewer images and ε.
"$bin" pgd --model sdnet18 --defense "$S/discrepancy.json" --eps 1/255,2/255,4/255 --limit 200 \
  --attack-mode adaptive,static,transfer --out-dir "$out/pgd/sdnet18-discrepancy" > /dev/null
echo "done: python3 tools/lambda_study.py $out"
