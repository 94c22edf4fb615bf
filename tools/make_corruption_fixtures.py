"""Golden fixtures for the corruptions crate: the reference generators' outputs for identical
random draws.

The reference functions are those of the `imagenet-c` PyPI package (hendrycks' ImageNet-C
generator). The CIFAR-10-C generator (`make_cifar_c.py`) differs only in its severity tables,
the image side (32), the plasma map size (32) and the 0.2x frost textures; its functions are
derived here from the ImageNet ones by rewriting exactly those parts of the source (see
CIFAR_TABLES). Modern-library shims, none of which changes an algorithm: skimage's
`multichannel=True` becomes `channel_axis=-1`, `np.float_` is float64, `np.fromstring` reads
bytes with `np.frombuffer`, frost textures load from ../shared/data/frost.

np.random is replaced by the counter-based stream of `corruptions::DrawStream` (splitmix64 of
seed + k*phi; normals by Box-Muller, integers by floor, Poisson by inverse-CDF summation), so
the Rust implementation can replay the same draws.

Run from the repository root (needs imagenet-c, scikit-image, opencv-python-headless, scipy,
Wand with Debian's ImageMagick):  python3 tools/make_corruption_fixtures.py
"""
import ast
import inspect
import json
import os
import sys

import numpy as np
from PIL import Image

import skimage.filters

OUT = "corruptions/tests/fixtures"
FROST_DIR = "../shared/data/frost"
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
        u = self.uniform(2 * n)
        u1, u2 = u[0::2], u[1::2]
        return np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2 * np.pi * u2)


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


def install_patches():
    np.random.normal = fake_normal
    np.random.uniform = fake_uniform
    np.random.randint = fake_randint
    np.random.poisson = fake_poisson
    np.random.default_rng = lambda *a, **k: FakeGenerator()
    np.float_ = np.float64
    np.fromstring = lambda s, dtype=float: np.frombuffer(s, dtype)


def gaussian_shim(image, sigma=1, multichannel=None, **kw):
    if multichannel:
        kw["channel_axis"] = -1
    return skimage.filters.gaussian(image, sigma=sigma, **kw)


def frost_file(_package, name):
    return os.path.join(FROST_DIR, os.path.basename(name))


CIFAR_TABLES = {
    "gaussian_noise": "[0.04, 0.06, .08, .09, .10]",
    "shot_noise": "[500, 250, 100, 75, 50]",
    "impulse_noise": "[.01, .02, .03, .05, .07]",
    "speckle_noise": "[.06, .1, .12, .16, .2]",
    "gaussian_blur": "[.4, .6, 0.7, .8, 1]",
    "glass_blur": "[(0.05,1,1), (0.25,1,1), (0.4,1,1), (0.25,1,2), (0.4,1,2)]",
    "defocus_blur": "[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]",
    "motion_blur": "[(6,1), (6,1.5), (6,2), (8,2), (9,2.5)]",
    "zoom_blur": "[np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),"
                 " np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)]",
    "fog": "[(.2,3), (.5,3), (0.75,2.5), (1,2), (1.5,1.75)]",
    "frost": "[(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)]",
    "snow": "[(0.1,0.2,1,0.6,8,3,0.95), (0.1,0.2,1,0.5,10,4,0.9), (0.15,0.3,1.75,0.55,10,4,0.9),"
            " (0.25,0.3,2.25,0.6,12,6,0.85), (0.3,0.3,1.25,0.65,14,12,0.8)]",
    "spatter": "[(0.62,0.1,0.7,0.7,0.5,0), (0.65,0.1,0.8,0.7,0.5,0), (0.65,0.3,1,0.69,0.5,0),"
               " (0.65,0.1,0.7,0.69,0.6,1), (0.65,0.1,0.5,0.68,0.6,1)]",
    "contrast": "[.75, .5, .4, .3, 0.15]",
    "brightness": "[.05, .1, .15, .2, .3]",
    "saturate": "[(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]",
    "jpeg_compression": "[80, 65, 58, 50, 40]",
    "pixelate": "[0.95, 0.9, 0.85, 0.75, 0.65]",
    "elastic_transform": "[(32*0, 32*0, 32*0.08), (32*0.05, 32*0.2, 32*0.07), (32*0.08, 32*0.06, 32*0.06),"
                         " (32*0.1, 32*0.04, 32*0.05), (32*0.1, 32*0.03, 32*0.03)]",
}


class ToCifar(ast.NodeTransformer):
    """Severity tables, image side 224 -> 32, plasma map 256 -> 32, 0.2x frost textures."""

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        if node.name == "plasma_fractal":
            node.args.defaults[0] = ast.Constant(32)
        table = CIFAR_TABLES.get(node.name)
        for i, stmt in enumerate(node.body):
            if table and isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "id", None) == "c":
                stmt.value.value = ast.parse(table, mode="eval").body  # c = [table][severity - 1]
            if node.name == "frost" and isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "id", None) == "frost":
                resize = ast.parse("frost = cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)").body[0]
                node.body.insert(i + 1, resize)
                break
        return node

    def visit_Constant(self, node):
        if node.value == 224:
            return ast.Constant(32)
        return node


def load_references():
    install_patches()
    import imagenet_c.corruptions as ref
    ref.gaussian = gaussian_shim
    ref.resource_filename = frost_file
    source = inspect.getsource(ref)
    tree = ToCifar().visit(ast.parse(source))
    namespace = dict(vars(ref))
    exec(compile(ast.fix_missing_locations(tree), "cifar_c_reference", "exec"), namespace)
    namespace["gaussian"] = gaussian_shim
    namespace["resource_filename"] = frost_file
    return ref, namespace


NAMES = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
         "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
         "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate"]


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
    # Every border pixel plus 3000 interior pixels at fixed pseudo-random positions.
    rng = np.random.RandomState(12345)
    border = [(0, x) for x in range(224)] + [(223, x) for x in range(224)] + \
             [(y, 0) for y in range(1, 223)] + [(y, 223) for y in range(1, 223)]
    interior = list(zip(rng.randint(1, 223, 3000), rng.randint(1, 223, 3000)))
    positions = np.array(border + interior, dtype=np.int64)
    np.save(f"{OUT}/imagenet_positions.npy", positions)
    np.save(f"{OUT}/imagenet_samples.npy", in_out[:, positions[:, 0], positions[:, 1], :])
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
