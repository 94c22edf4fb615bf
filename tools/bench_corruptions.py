"""Python side of `robust-eval speed corrupt`: the reference generators (one core, numpy's own
random generator) on the same images, timed per corruption over its five severities.

    python3 tools/bench_corruptions.py --preset cifar --n 1000
    python3 tools/bench_corruptions.py --preset imagenet --data ../shared/data/imagenet/val_sample --n 200
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from reference_corruptions import NAMES, load_references  # noqa: E402


def cifar_images(n):
    raw = np.fromfile("data/cifar10/test_first1000.bin", dtype=np.uint8).reshape(-1, 3073)[:n]
    return [Image.fromarray(r[1:].reshape(3, 32, 32).transpose(1, 2, 0).copy()) for r in raw]


def imagenet_images(root, n):
    import torchvision.transforms as T
    files = []
    for wnid in sorted(os.listdir(root)):
        files += [os.path.join(root, wnid, f) for f in sorted(os.listdir(os.path.join(root, wnid)))]
    tf = T.Compose([T.Resize(256), T.CenterCrop(224)])
    return [tf(Image.open(f).convert("RGB")) for f in files[:n]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=["cifar", "imagenet"], default="cifar")
    parser.add_argument("--data")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--only", help="comma-separated corruption names")
    args = parser.parse_args()
    ref, cifar_ns = load_references()
    functions = cifar_ns if args.preset == "cifar" else {n: getattr(ref, n) for n in NAMES}
    images = cifar_images(args.n) if args.preset == "cifar" else imagenet_images(args.data, args.n)
    np.random.seed(0)
    total = 0.0
    for name in (args.only.split(",") if args.only else NAMES):
        start = time.perf_counter()
        for severity in range(1, 6):
            for img in images:
                np.uint8(functions[name](img, severity))
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:<18} {seconds:9.3f} s  ({1e3 * seconds / (5 * len(images)):.2f} ms per image and severity)", flush=True)
    print(f"{'total':<18} {total:9.3f} s for {len(images)} images")


if __name__ == "__main__":
    main()
