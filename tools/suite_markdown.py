"""Markdown tables of a suite's results directory (results.jsonl), models side by side.

    python3 tools/suite_markdown.py results/suite-cifar10
"""
import json
import sys
from collections import defaultdict

CORRUPTIONS = """gaussian_noise shot_noise impulse_noise defocus_blur glass_blur motion_blur zoom_blur snow
frost fog brightness contrast elastic_transform pixelate jpeg_compression speckle_noise gaussian_blur
spatter saturate""".split()


def main(directory):
    cells = [json.loads(line) for line in open(f"{directory}/results.jsonl")]
    models = []
    for c in cells:
        if c["model"]["label"] not in models:
            models.append(c["model"]["label"])
    value = {}
    for c in cells:
        col = c["columns"]
        metrics = {m["name"]: m["value"] for m in c["result"]["metrics"]}
        headline = metrics.get("accuracy", metrics.get("robust_accuracy"))
        key = (col["kind"], col["corruption"], col["severity"], col["attack"], col["eps"])
        value[(c["model"]["label"], key)] = 100 * headline
    n = cells[0]["result"]["n"]

    print(f"Accuracy in % on {n} images (one standard error ≈ 1.3–1.6 points near 50–80 %).\n")
    print("| | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    row = lambda name, key: print(
        f"| {name} | " + " | ".join(f"{value[(m, key)]:.2f}" for m in models) + " |")
    row("clean", ("clean", "", "", "", ""))
    means = defaultdict(dict)
    for m in models:
        per = {c: sum(value[(m, ("corruption", c, str(s), "", ""))] for s in range(1, 6)) / 5
               for c in CORRUPTIONS}
        means[m]["15"] = sum(per[c] for c in CORRUPTIONS[:15]) / 15
        means[m]["19"] = sum(per.values()) / 19
        means[m]["per"] = per
    for label, k in [("mean over the 15 benchmark corruptions", "15"), ("mean over all 19", "19")]:
        print(f"| {label} | " + " | ".join(f"{means[m][k]:.2f}" for m in models) + " |")
    eps = sorted({key[4] for (_, key) in value if key[0] == "attack"},
                 key=lambda e: eval(e))
    for attack in ["fgsm", "pgd"]:
        for e in eps:
            if (models[0], ("attack", "", "", attack, e)) in value:
                row(f"{attack.upper()} ε = {e}", ("attack", "", "", attack, e))

    print("\nPer corruption and severity (" + " / ".join(models) + "):\n")
    print("| corruption | s1 | s2 | s3 | s4 | s5 | mean |")
    print("|---|---|---|---|---|---|---|")
    for c in CORRUPTIONS:
        cells_text = []
        for s in range(1, 6):
            cells_text.append(" / ".join(
                f"{value[(m, ('corruption', c, str(s), '', ''))]:.1f}" for m in models))
        mean = " / ".join(f"{means[m]['per'][c]:.1f}" for m in models)
        print(f"| {c} | " + " | ".join(cells_text) + f" | {mean} |")


if __name__ == "__main__":
    main(sys.argv[1])
