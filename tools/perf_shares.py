"""Where a run's time goes, by kind of work, from a flat `perf` profile (the README's PGD profile).

    perf record -F 999 -o perf.data target/release/robust-eval speed pgd --models resnet20 --n 300
    perf report -i perf.data --no-children --sort symbol | python3 tools/perf_shares.py

Symbols are matched to the first category whose pattern they contain; the rest count as other.
"""
import re
import sys

CATEGORIES = [
    ("GEMMs", ["gemm"]),
    ("Winograd input tiles", ["lift_tile", "transform_input", "pad_channel_last"]),
    ("Winograd output tiles", ["project_tile", "transform_output"]),
    ("layout transposes", ["transpose::", "to_channel"]),
    ("weight spectra", ["transform_filter", "transform_weights"]),
    ("im2row / col2im", ["im2row", "col2im"]),
    ("burn-flex elementwise kernels", ["burn_flex", "macerator"]),
    # Closures whose bodies were inlined into rayon jobs: our tile loops and burn's parallel ops.
    ("rayon job bodies (inlined closures)", ["core::ops::function", "try_trait"]),
    ("memset / memmove", ["memset", "memmove", "memcpy"]),
    ("page faults", ["clear_page", "page_fault", "folio"]),
]
SCHEDULER = ["sched", "rayon", "futex", "crossbeam", "switch"]
LINE = re.compile(r"\s+([\d.]+)%\s+\[(.)\]\s+(.*)")


def category(kind, symbol):
    for name, patterns in CATEGORIES:
        if any(p in symbol for p in patterns):
            return name
    if kind == "k" or any(p in symbol for p in SCHEDULER):
        return "scheduler and other kernel time"
    return "other"


def main():
    shares = {}
    for line in sys.stdin:
        match = LINE.match(line)
        if match:
            share, kind, symbol = match.groups()
            name = category(kind, symbol)
            shares[name] = shares.get(name, 0.0) + float(share)
    for name, share in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"| {name} | {share:.1f} % |")


if __name__ == "__main__":
    main()
