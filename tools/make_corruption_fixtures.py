"""Golden fixtures for the corruptions crate: the reference generators' outputs (see
tools/reference_corruptions.py) for identical random draws.

np.random is replaced by the counter-based stream of `corruptions::DrawStream` (splitmix64 of
seed + k*phi; normals by Box-Muller, integers by floor, Poisson by inverse-CDF summation), so
the Rust implementation can replay the same draws.

Run from the repository root (needs imagenet-c, scikit-image, opencv-python-headless, scipy,
torchvision, Wand with Debian's ImageMagick):  python3 tools/make_corruption_fixtures.py
"""
import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from reference_corruptions import NAMES, load_references  # noqa: E402

OUT = os.environ.get("OUT", "corruptions/tests/fixtures")
# The corruptions whose outputs differ from the reference by rounding (the golden test bounds
# them); the others must be byte-identical.
INEXACT = ["elastic_transform", "defocus_blur"]
PHI = np.uint64(0x9E3779B97F4A7C15)
M1, M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


class Stream:
    """The same stream as corruptions::DrawStream."""

    def __init__(self, seed):
        self.seed = np.uint64(seed)
        self.counter = 0

    def uniform(self, n):
        k = np.arange(self.counter + 1, self.counter + n + 1, dtype=np.uint64)
        self.counter += n
        with np.errstate(over="ignore"):
            z = self.seed + k * PHI
            z = (z ^ (z >> np.uint64(30))) * M1
            z = (z ^ (z >> np.uint64(27))) * M2
            z = z ^ (z >> np.uint64(31))
        return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))

    def normal(self, n):
        pairs = (n + 1) // 2
        u = self.uniform(2 * pairs)
        u1, u2 = u[0::2], u[1::2]
        r = np.sqrt(-2.0 * np.log(1.0 - u1))
        theta = 2 * np.pi * u2
        z = np.empty(2 * pairs)
        z[0::2] = r * np.cos(theta)
        z[1::2] = r * np.sin(theta)
        return z[:n]


STREAM = Stream(0)


def _size(size):
    if size is None:
        return (), 1
    size = tuple(np.atleast_1d(size))
    return size, int(np.prod(size))


def fake_normal(loc=0.0, scale=1.0, size=None):
    shape, n = _size(size)
    values = loc + scale * STREAM.normal(n)
    return values.reshape(shape) if shape else values[0]


def fake_uniform(low=0.0, high=1.0, size=None):
    shape, n = _size(size)
    values = low + (high - low) * STREAM.uniform(n)
    return values.reshape(shape) if shape else values[0]


def fake_randint(low, high=None, size=None):
    if high is None:
        low, high = 0, low
    shape, n = _size(size)
    values = (low + np.floor(STREAM.uniform(n) * (high - low))).astype(np.int64)
    return values.reshape(shape) if shape else int(values[0])


def fake_poisson(lam):
    lam = np.asarray(lam, dtype=np.float64)
    flat = lam.ravel()
    u = STREAM.uniform(flat.size)
    out = np.empty(flat.size)
    for i, (l, ui) in enumerate(zip(flat, u)):
        k, p = 0, np.exp(-l)
        cdf = p
        while ui > cdf and k < 100000:
            k += 1
            p *= l / k
            cdf += p
            if p == 0.0 and cdf < ui:
                break
        out[i] = k
    return out.reshape(lam.shape)


class FakeGenerator:
    def random(self, size=None):
        shape, n = _size(size)
        return STREAM.uniform(n).reshape(shape)


def install_stream():
    np.random.normal = fake_normal
    np.random.uniform = fake_uniform
    np.random.randint = fake_randint
    np.random.poisson = fake_poisson
    np.random.default_rng = lambda *a, **k: FakeGenerator()


def case_seed(preset, corruption, severity, image):
    return (0 if preset == "cifar" else 100000) + 1000 * corruption + 10 * severity + image


def run(functions, preset, images):
    global STREAM
    outputs, cases = [], []
    for ci, name in enumerate(NAMES):
        fn = functions[name]
        for severity in range(1, 6):
            for ii, img in enumerate(images):
                seed = case_seed(preset, ci, severity, ii)
                STREAM = Stream(seed)
                out = np.uint8(fn(Image.fromarray(img), severity))
                if out.ndim == 2:
                    out = np.stack([out] * 3, axis=-1)
                outputs.append(out)
                cases.append({"corruption": name, "severity": severity, "image": ii, "seed": seed,
                              "draws": STREAM.counter})
        print(preset, name, file=sys.stderr)
    return np.stack(outputs), cases


def main():
    os.makedirs(OUT, exist_ok=True)
    install_stream()
    ref, cifar_ns = load_references()
    raw = np.fromfile("data/cifar10/test_first1000.bin", dtype=np.uint8).reshape(-1, 3073)[:3]
    cifar_images = [r[1:].reshape(3, 32, 32).transpose(1, 2, 0).copy() for r in raw]
    cifar_out, cifar_cases = run(cifar_ns, "cifar", cifar_images)
    np.save(f"{OUT}/cifar_outputs.npy", cifar_out)

    import torchvision.transforms as T
    root = "tests/fixtures/imagenet_sample/n01440764"
    first = sorted(os.listdir(root))[0]
    pil = T.CenterCrop(224)(T.Resize(256)(Image.open(os.path.join(root, first)).convert("RGB")))
    pil.save(f"{OUT}/imagenet_input.png")
    imagenet_img = np.array(pil)
    in_out, in_cases = run({n: getattr(ref, n) for n in NAMES}, "imagenet", [imagenet_img])
    # Every output pixel is compared: by SHA-256 where ours is byte-identical, in full where the
    # interpolation differs by rounding (elastic_transform).
    for case, full in zip(in_cases, in_out):
        case["sha256"] = hashlib.sha256(np.ascontiguousarray(full).tobytes()).hexdigest()
    inexact = [i for i, case in enumerate(in_cases) if case["corruption"] in INEXACT]
    np.save(f"{OUT}/imagenet_inexact_outputs.npy", in_out[inexact])
    for case, full in zip(in_cases, in_out):
        case["mean"] = float(full.astype(np.float64).mean())
    zoom = {f"{stop}:{step}": np.arange(1, stop, step).tolist()
            for stop, step in [(1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02), (1.31, .03),
                               (1.06, .01), (1.21, .01), (1.26, .01)]}
    with open(f"{OUT}/cases.json", "w") as f:
        json.dump({"cifar": cifar_cases, "imagenet": in_cases, "numpy_zoom_lists": zoom}, f)
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
