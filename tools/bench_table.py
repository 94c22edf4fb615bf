"""Markdown rows for the README's performance tables, from the logs of the benchmark commands.

    python3 tools/bench_table.py models eval.txt pgd.txt train.txt
        logs of `bash tools/bench.sh eval|pgd|train ...`: eval and train take the median of the
        rounds, PGD the mean; one row per workload and model with both sides and the ratio.
    python3 tools/bench_table.py corruptions OURS_BEFORE REFERENCE OURS_AFTER [CIFAR: the same three]
        outputs of `robust-eval speed corrupt` and `tools/bench_corruptions.py`; ours is the mean of
        the runs just before and just after the reference's. With six files, one column group per
        preset (CIFAR first, ImageNet second, as in the README).
"""
import re
import statistics
import sys

MODELS = ["resnet20", "resnet18", "sdnet18"]  # first, in this order; then any other model logged
WORKLOADS = {
    "eval": ("eval", statistics.median),
    "pgd": ("PGD-10 (ε 8/255)", statistics.mean),
    "train": ("train (batch 128)", statistics.median),
}
ROUND = re.compile(r"round \d+ (ours|pytorch)\s+(\w+) ([\w.-]+): ([\d.]+) images/s")
TIMING = re.compile(r"^(\w+)\s+([\d.]+) s")


def model_rows(logs):
    for path in logs:
        rates = {"ours": {}, "pytorch": {}}
        workload = None
        for line in open(path):
            match = ROUND.match(line)
            if match:
                side, kind, model, rate = match.groups()
                workload = kind.lower()
                rates[side].setdefault(model, []).append(float(rate))
        label, aggregate = WORKLOADS[workload]
        others = [m for m in rates["ours"] if m not in MODELS]
        for model in MODELS + others:
            if model in rates["ours"] and model in rates["pytorch"]:
                ours, theirs = aggregate(rates["ours"][model]), aggregate(rates["pytorch"][model])
                shown = [f"{v:.1f}" if v >= 10 else f"{v:.3f}" for v in (ours, theirs)]
                print(f"| {label} | {model} | {shown[0]} | {shown[1]} | {ours / theirs:.2f} |")


def timings(path):
    out = {}
    for line in open(path):
        match = TIMING.match(line)
        if match:
            out[match.group(1)] = float(match.group(2))
    return out


def corruption_rows(paths):
    presets = []
    for i in range(0, len(paths), 3):
        before, reference, after = (timings(p) for p in paths[i:i + 3])
        ours = {k: (before[k] + after[k]) / 2 for k in before}
        presets.append((ours, reference))
    for name in presets[0][1]:
        cells = []
        for ours, reference in presets:
            cells += [f"{ours[name]:.3f}", f"{reference[name]:.3f}", f"{reference[name] / ours[name]:.1f}×"]
        label = "**total**" if name == "total" else name
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("models", "corruptions"):
        sys.exit(__doc__)
    if sys.argv[1] == "models":
        model_rows(sys.argv[2:])
    elif len(sys.argv) - 2 in (3, 6):
        corruption_rows(sys.argv[2:])
    else:
        sys.exit("corruptions: three files per preset (ours before, reference, ours after)")
