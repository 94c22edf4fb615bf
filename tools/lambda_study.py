#!/usr/bin/env python3
"""Markdown tables of the λ-defense study written by tools/lambda_study.sh.

    python3 tools/lambda_study.py results/lambda-study [--detail docs/lambda-study.md]

Reads only the results.csv / samples.csv files the runs wrote (standard library only).
"""
import csv
import sys
from collections import defaultdict
from pathlib import Path

NOISE = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


def metrics(path):
    """{(corruption, severity) | 'clean': accuracy} of one results.csv."""
    out = {}
    for row in csv.DictReader(open(path)):
        if row["metric"] != "accuracy":
            continue
        key = "clean" if row["condition"] == "clean" else (row["corruption"], int(row["severity"]))
        out[key] = float(row["value"])
    return out


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def pct(v):
    return "–" if v != v else f"{100 * v:.2f}"


def rows_of(study, best):
    return [
        ("ResNet-18", "resnet18"),
        ("ResNet-18 + BN adaptation", "resnet18-bn"),
        ("SDNet-18, λ = 0.1", "sdnet18"),
        ("SDNet-18 + BN adaptation", "sdnet18-bn"),
        ("SDNet-18, oracle λ per condition (test labels)", "sdnet18-oracle"),
        ("SDNet-18, per-condition λ (calibrated)", "sdnet18-per-condition"),
        ("SDNet-18, residual → λ, linear (official form)", "sdnet18-residual-linear"),
        ("SDNet-18, residual → λ, monotone", "sdnet18-residual-monotone"),
        ("SDNet-18, noise σ̂ → λ", "sdnet18-noise"),
        ("SDNet-18, discrepancy principle", "sdnet18-discrepancy"),
        (f"SDNet-18, {best} + BN adaptation", f"sdnet18-{best}-bn"),
    ]


def noise_tables(study, best):
    rows = rows_of(study, best)
    base_other = metrics(study / "rows/sdnet18/other/results.csv")
    compact = ["| model | clean | gaussian | shot | impulse | speckle | noise mean | other 15 mean |",
               "|---|---|---|---|---|---|---|---|"]
    detail = defaultdict(dict)
    rows = [(t, n) for t, n in rows if (study / f"rows/{n}/noise/results.csv").exists()]
    for title, name in rows:
        noise = metrics(study / f"rows/{name}/noise/results.csv")
        other_path = study / f"rows/{name}/other/results.csv"
        # The condition-aware tables are fitted on noise only: elsewhere they use λ = 0.1.
        other = metrics(other_path) if other_path.exists() else base_other
        per = [mean(noise[(c, s)] for s in range(1, 6)) for c in NOISE]
        other_mean = mean(v for k, v in other.items() if k != "clean")
        note = "" if other_path.exists() else " (λ = 0.1)"
        compact.append(f"| {title} | {pct(noise['clean'])} | " + " | ".join(pct(p) for p in per)
                       + f" | {pct(mean(per))} | {pct(other_mean)}{note} |")
        for c in NOISE:
            for s in range(1, 6):
                detail[(c, s)][title] = noise[(c, s)]
    titles = [t for t, _ in rows]
    lines = ["| condition | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for (c, s), values in sorted(detail.items(), key=lambda kv: (NOISE.index(kv[0][0]), kv[0][1])):
        lines.append(f"| {c} {s} | " + " | ".join(pct(values[t]) for t in titles) + " |")
    return "\n".join(compact), "\n".join(lines)


def attack_rows(path):
    """{(eps, mode): {index: correct}} and clean accuracy from one samples.csv."""
    out = defaultdict(dict)
    clean = {}
    for row in csv.DictReader(open(path)):
        cell = row["cell"]
        inside = cell.split("/pgd(")[1].split(")")[0].split(",")
        eps = inside[1]
        mode = inside[2] if len(inside) > 2 else "adaptive"
        out[(eps, mode)][row["index"]] = row["correct"] == "1"
        clean[row["index"]] = row["clean_prediction"] == row["label"]
    return out, mean(clean.values())


def pgd_table(study, best):
    runs = [("ResNet-18", "resnet18"), ("SDNet-18, λ = 0.1", "sdnet18"),
            ("SDNet-18, λ = 0.5 (fixed)", "sdnet18-fixed0.5")]
    runs += [(f"SDNet-18, {s}", f"sdnet18-{s}") for s in sorted({best, "noise"})]
    runs.append((f"SDNet-18, {best} + BN adaptation", f"sdnet18-{best}-bn"))
    runs.append(("SDNet-18, discrepancy (first 200 images)", "sdnet18-discrepancy"))
    lines = ["| model | clean | ε | adaptive | static | transfer | worst case |", "|---|---|---|---|---|---|---|"]
    for title, name in runs:
        path = study / f"pgd/{name}/samples.csv"
        if not path.exists():
            continue
        cells, clean = attack_rows(path)
        for eps in ["1/255", "2/255", "4/255", "8/255"]:
            if not any(k[0] == eps for k in cells):
                continue
            modes = {m: cells.get((eps, m)) for m in ["adaptive", "static", "transfer"]}
            present = [v for v in modes.values() if v]
            worst = mean(all(v[i] for v in present) for i in present[0]) if present else float("nan")
            acc = {m: (mean(v.values()) if v else float("nan")) for m, v in modes.items()}
            lines.append(f"| {title} | {pct(clean)} | {eps} | {pct(acc['adaptive'])} | {pct(acc['static'])} "
                         f"| {pct(acc['transfer'])} | {pct(worst)} |")
    return "\n".join(lines)


def main():
    study = Path(sys.argv[1] if len(sys.argv) > 1 else "results/lambda-study")
    best = Path(str(study) + ".best").read_text().strip()
    compact, detail = noise_tables(study, best)
    print("## Noise corruptions (mean over severities 1–5)\n")
    print(compact)
    print("\n## Per severity\n")
    print(detail)
    print("\n## PGD-10 L∞\n")
    print(pgd_table(study, best))


if __name__ == "__main__":
    main()
