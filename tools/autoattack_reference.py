"""Reference AutoAttack figures for the pytorch_resnet_cifar10 ResNet-20 on the bundled images.

Runs the original AutoAttack code (github.com/fra31/auto-attack; put its checkout on PYTHONPATH or
pass --autoattack DIR) on the 1000 lossless CIFAR-10 test images: the `standard` ensemble and each
of its attacks alone, at L∞ 1/255 and 2/255 and L2 0.1. One JSON object per run is appended to
--out (runs already there are skipped, so an interrupted job resumes):

    python3 tools/autoattack_reference.py --autoattack /path/to/auto-attack \
        --out tests/fixtures/autoattack/reference_resnet20.jsonl

Each line holds the setting, the attacks, the robust accuracy after each attack, the per-image
robust flags (a string of 0/1 in image order), the seconds and the images per second.
"""
import argparse
import contextlib
import io
import json
import os
import re
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_models as R  # noqa: E402

SETTINGS = [("Linf", "1/255", 1 / 255), ("Linf", "2/255", 2 / 255), ("L2", "0.1", 0.1)]
MEMBERS = ["apgd-ce", "apgd-t", "fab-t", "square"]


def parse_setting(text):
    """NORM:EPS, EPS a number or a fraction such as 8/255."""
    norm, eps = text.split(":")
    num, _, den = eps.partition("/")
    return norm, eps, float(num) / float(den or 1)


def runs(settings):
    # The ensembles first (they give the after-each-attack figures), then each attack alone.
    for norm, text, eps in settings:
        yield norm, text, eps, "standard"
    for member in MEMBERS:
        for norm, text, eps in settings:
            yield norm, text, eps, member


def done_keys(path):
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        return {(r["norm"], r["eps"], r["run"]) for r in map(json.loads, f) if r}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--autoattack", help="directory holding the autoattack package")
    parser.add_argument("--data", default=os.path.join(
        os.path.dirname(__file__), "..", "data", "cifar10", "test_first1000.bin"))
    parser.add_argument("--model", default=os.path.join(
        os.path.dirname(__file__), "..", "models", "cifar10-resnet-akamaster",
        "resnet20-12fca82f.th"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated runs (standard or attack names)")
    parser.add_argument("--settings", help="comma-separated NORM:EPS, e.g. Linf:1/255,L2:0.1")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.autoattack:
        sys.path.insert(0, args.autoattack)
    from autoattack import AutoAttack

    torch.set_num_threads(args.threads)
    model = R.load_akamaster(20, args.model)
    x, y = R.load_cifar_bin(args.data, args.n)
    done = done_keys(args.out)
    only = set(args.only.split(",")) if args.only else None
    settings = [parse_setting(t) for t in args.settings.split(",")] if args.settings else SETTINGS
    for norm, text, eps, run in runs(settings):
        if (norm, text, run) in done or (only and run not in only):
            continue
        if run == "standard":
            adversary = AutoAttack(model, norm=norm, eps=eps, version="standard", seed=args.seed,
                                   device="cpu")
        else:
            adversary = AutoAttack(model, norm=norm, eps=eps, version="custom",
                                   attacks_to_run=[run], seed=args.seed, device="cpu")
            # The members' settings of the standard version, as set_version would give them.
            adversary.apgd.n_restarts = 1
            adversary.apgd_targeted.n_target_classes = 9
            adversary.apgd_targeted.n_restarts = 1
            adversary.fab.n_restarts = 1
            adversary.fab.n_target_classes = 9
            adversary.square.n_queries = 5000
        adversary.verbose = True
        start = time.time()
        with torch.no_grad():
            clean = (model(x).argmax(1) == y)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            x_adv = adversary.run_standard_evaluation(x, y, bs=args.batch)
        seconds = time.time() - start
        with torch.no_grad():
            robust = (model(x_adv).argmax(1) == y)
        after = progression(log.getvalue())
        record = {
            "norm": norm, "eps": text, "run": run, "n": len(y), "seed": args.seed,
            "clean_accuracy": clean.float().mean().item(),
            "robust_accuracy": robust.float().mean().item(),
            "robust_flags": "".join("1" if r else "0" for r in robust.tolist()),
            "after": after, "seconds": seconds, "images_per_second": len(y) / seconds,
            "torch": torch.__version__, "threads": args.threads,
        }
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(norm, text, run, f"robust {record['robust_accuracy']:.3f}", f"{seconds:.0f} s",
              flush=True)


def progression(log):
    """Robust accuracy after each attack, as the AutoAttack log reports it."""
    found = re.findall(r"robust accuracy after ([A-Z-]+): ([0-9.]+)%", log)
    return {name.lower(): float(value) / 100 for name, value in found}


if __name__ == "__main__":
    main()
