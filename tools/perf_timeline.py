"""How busy the threads of a run were, from the time stamps of a sampled `perf` profile.

    perf record -D 7000 -e cpu-clock -F 999 -o perf.data target/release/robust-eval \
        speed train --models resnet20 --n 1024 --batch-size 128 --repeat 4
    perf script -i perf.data -F tid,time,ip,sym | python3 tools/perf_timeline.py

(`-D 7000` skips start-up and the warm-up pass.) The run is cut into windows (2 ms by default);
a thread counts as busy in a window when it has a sample there. The output is the number of cores'
worth of samples per second of the run, the share of windows by how many threads were busy, and
what the single busy thread ran where only one was (work that leaves the others waiting).
"""
import argparse
import collections
import re
import sys

HEADER = re.compile(r"\s*(\d+)\s+([\d.]+):")


def read_samples(lines):
    """(thread id, time in s, leaf symbol) for every sample of `perf script`."""
    samples, current = [], None
    for line in lines:
        match = HEADER.match(line)
        if match:
            current = [int(match.group(1)), float(match.group(2)), None]
            samples.append(current)
            continue
        parts = line.strip().split(None, 1)
        if current is not None and current[2] is None and len(parts) == 2:
            current[2] = parts[1]
    return [(tid, t, symbol or "?") for tid, t, symbol in samples]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-ms", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=999.0, help="perf record's -F")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    samples = read_samples(sys.stdin)
    if not samples:
        sys.exit("no samples on stdin (pipe `perf script -F tid,time,ip,sym` in)")
    start = min(t for _, t, _ in samples)
    span = max(t for _, t, _ in samples) - start
    window = args.window_ms / 1000.0
    windows = collections.defaultdict(lambda: collections.defaultdict(list))
    for tid, t, symbol in samples:
        windows[int((t - start) / window)][tid].append(symbol)
    count = int(span / window) + 1
    busy = collections.Counter(len(windows.get(w, {})) for w in range(count))
    print(f"span {span:.2f} s, {len(samples) / args.rate / span:.2f} cores busy on average")
    for threads, n in sorted(busy.items()):
        print(f"  {threads} threads busy in {100 * n / count:5.1f} % of the windows")
    alone = collections.Counter()
    for threads in windows.values():
        if len(threads) == 1:
            alone.update(next(iter(threads.values())))
    total = sum(alone.values())
    print(f"where one thread ran alone ({total} samples):")
    for symbol, n in alone.most_common(args.top):
        print(f"  {100 * n / max(total, 1):5.1f} % {symbol[:100]}")


if __name__ == "__main__":
    main()
