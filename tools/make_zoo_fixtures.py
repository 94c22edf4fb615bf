"""Writes the model-zoo fixtures under tests/fixtures/zoo: logits of the RobustBench, DeepMind and
torchvision architectures as their original PyTorch definitions compute them, on real images.

The architectures are imported from the code that defines them, not re-implemented here:
RobustBench's `wide_resnet.py`, `dm_wide_resnet.py` and `resnet.py` (loaded by file path from a
RobustBench checkout or an installed `robustbench` package, so that none of its other
dependencies are needed) and torchvision's ResNet-50 / Wide ResNet-50-2.

Two kinds of fixture:
- full-size models with *formula weights*: every value is a function of its state-dict key and
  position (splitmix64 of an FNV-1a hash of the key, see `formula`), so the test regenerates the
  weights from the key names and nothing large is committed. BatchNorm statistics are not the
  identity. `cases.json` holds the logits and the parameter counts of every named model.
- small checkpoint files (random weights, randomised BatchNorm statistics) in the formats users
  hold: a training checkpoint `.pt` ({"model_state_dict": DataParallel keys, "optimizer": ...}),
  the same weights as a bare `.safetensors`, a RobustBench-style normalising wrapper (`mu`,
  `sigma`, `model.` keys), a DeepMind `.pt` under "net", and an SDNet `.safetensors` made from
  the parity fixture's `.pth`.

Run from the repository root:
    python3 tools/make_zoo_fixtures.py --robustbench PATH
(PATH: a directory holding robustbench/model_zoo/architectures, e.g. a clone of
github.com/RobustBench/robustbench, or the site-packages directory after `pip install robustbench`).
Needs torch, torchvision, numpy, pillow and safetensors.
"""
import argparse
import importlib.util
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file

OUT = "tests/fixtures/zoo"
MASK64 = (1 << 64) - 1


def load_module(root, name):
    path = os.path.join(root, "robustbench", "model_zoo", "architectures", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"rb_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fnv1a(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def splitmix(x):
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def unit(key, n):
    """n values in [0, 1): the top 24 bits of splitmix64(hash(key) + i), exactly as f32."""
    with np.errstate(over="ignore"):
        x = splitmix(np.uint64(fnv1a(key)) + np.arange(n, dtype=np.uint64))
    return (x >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def formula(key, shape, batchnorm):
    """The value rule the test repeats: convolutions and linear weights U(±sqrt(3/fan_in)),
    linear biases U(±0.1); BatchNorm weight 0.5 + u, bias ±0.2, running mean ±0.2, running
    variance 0.5 + u."""
    n = int(np.prod(shape))
    u = unit(key, n)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var" or (batchnorm and leaf == "weight"):
        v = 0.5 + u
    elif leaf == "running_mean" or (batchnorm and leaf == "bias"):
        v = 0.2 * (2 * u - 1)
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = (2 * u - 1) * np.sqrt(3.0 / fan_in)
    else:
        v = 0.1 * (2 * u - 1)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def set_formula_weights(model):
    state = model.state_dict()
    batchnorms = {k.rsplit(".", 1)[0] for k in state if k.endswith("running_var")}
    new = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            new[key] = value
        else:
            new[key] = formula(key, tuple(value.shape), key.rsplit(".", 1)[0] in batchnorms)
    model.load_state_dict(new)
    return model.eval()


def randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.data = (torch.rand(m.weight.shape, generator=gen) * 2 - 1) * (3 / fan_in) ** 0.5
            if m.bias is not None:
                m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=gen)
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.2 * torch.randn(c, generator=gen)
            m.running_mean.data = 0.2 * torch.randn(c, generator=gen)
            m.running_var.data = 0.5 + torch.rand(c, generator=gen)
    return model.eval()


def cifar_images(n):
    raw = np.fromfile("data/cifar10/test_first1000.bin", dtype=np.uint8).reshape(-1, 3073)
    return torch.from_numpy(raw[:n, 1:].reshape(n, 3, 32, 32).astype(np.float32) / 255.0)


def imagenet_images(n):
    from PIL import Image
    import torchvision.transforms as T
    root = "tests/fixtures/imagenet_sample"
    files = []
    for wnid in sorted(os.listdir(root)):
        files += [os.path.join(root, wnid, f) for f in sorted(os.listdir(os.path.join(root, wnid)))]
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    return torch.stack([tf(Image.open(f).convert("RGB")) for f in files[:n]])


class Normalized(nn.Module):
    """Mean/std in front of a network, as torchvision users and our CLI define the model."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


class Wrapped(nn.Module):
    """RobustBench's normalising wrappers (Wong2020Fast and others): buffers `mu`, `sigma`
    saved in the state dict beside the network's `model.` keys."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mu", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("sigma", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return self.model((x - self.mu) / self.sigma)


def logits(model, images):
    with torch.no_grad():
        return model(images).double().tolist()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--robustbench", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    wrn = load_module(args.robustbench, "wide_resnet")
    dm = load_module(args.robustbench, "dm_wide_resnet")
    preact = load_module(args.robustbench, "resnet")
    IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

    def dm_model(depth, width, classes=10):
        mean, std = (dm.CIFAR100_MEAN, dm.CIFAR100_STD) if classes == 100 else (dm.CIFAR10_MEAN, dm.CIFAR10_STD)
        return dm.DMWideResNet(num_classes=classes, depth=depth, width=width,
                               activation_fn=dm.Swish, mean=mean, std=std)

    constructors = {
        "wrn-28-10": lambda: wrn.WideResNet(depth=28, widen_factor=10),
        "wrn-34-10": lambda: wrn.WideResNet(depth=34, widen_factor=10),
        "wrn-34-20": lambda: wrn.WideResNet(depth=34, widen_factor=20),
        "wrn-70-16": lambda: wrn.WideResNet(depth=70, widen_factor=16),
        "dm-wrn-28-10": lambda: dm_model(28, 10),
        "dm-wrn-34-10": lambda: dm_model(34, 10),
        "dm-wrn-34-20": lambda: dm_model(34, 20),
        "dm-wrn-70-16": lambda: dm_model(70, 16),
        "preact-resnet18": lambda: preact.PreActResNet18(),
    }
    params = {}
    for name, make in constructors.items():
        params[name] = sum(p.numel() for p in make().parameters())
    for name, make in [("resnet50", torchvision.models.resnet50),
                       ("wide-resnet50-2", torchvision.models.wide_resnet50_2)]:
        params[name] = sum(p.numel() for p in make().parameters())

    # Full-size models with formula weights, on real images.
    cases = []
    cifar = cifar_images(4)
    imagenet = imagenet_images(3)
    full = [
        ("wrn-28-10", "cifar10", constructors["wrn-28-10"](), cifar),
        ("dm-wrn-28-10", "cifar10", constructors["dm-wrn-28-10"](), cifar),
        ("preact-resnet18", "cifar10", constructors["preact-resnet18"](), cifar),
        ("wrn-16-4", "cifar10", wrn.WideResNet(depth=16, widen_factor=4), cifar),
        ("dm-wrn-16-4", "cifar100", dm_model(16, 4, classes=100), cifar),
        ("resnet50", "imagenet", Normalized(torchvision.models.resnet50(), *IMAGENET), imagenet),
        ("wide-resnet50-2", "imagenet",
         Normalized(torchvision.models.wide_resnet50_2(), *IMAGENET), imagenet),
    ]
    for name, dataset, model, images in full:
        inner = model.model if isinstance(model, Normalized) else model
        set_formula_weights(inner)
        cases.append({"model": name, "dataset": dataset, "images": len(images),
                      "logits": logits(model.eval(), images)})
        print(name, "done")

    # Checkpoint files in the formats users hold.
    os.makedirs(OUT, exist_ok=True)
    files = []
    small = randomise(wrn.WideResNet(depth=16, widen_factor=1), seed=1)
    state = small.state_dict()
    optimizer = torch.optim.SGD(small.parameters(), lr=1e-3, momentum=0.9)
    small(cifar).sum().backward()
    optimizer.step()  # momentum buffers in the optimizer state; the weights move too
    small.eval()
    state = {k: v.clone() for k, v in small.state_dict().items()}
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()},
                "optimizer": optimizer.state_dict(), "epoch": 3},
               f"{OUT}/wrn-16-1.pt")
    save_file({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
              f"{OUT}/wrn-16-1.safetensors")
    files.append({"file": "wrn-16-1.pt", "model": "wrn-16-1", "logits": logits(small, cifar)})
    files.append({"file": "wrn-16-1.safetensors", "model": "wrn-16-1",
                  "logits": logits(small, cifar)})

    wrapped = Wrapped(small, dm.CIFAR10_MEAN, dm.CIFAR10_STD).eval()
    torch.save(wrapped.state_dict(), f"{OUT}/wrn-16-1-wrapped.pt")
    files.append({"file": "wrn-16-1-wrapped.pt", "model": "wrn-16-1",
                  "normalization": [list(dm.CIFAR10_MEAN), list(dm.CIFAR10_STD)],
                  "logits": logits(wrapped, cifar)})

    deepmind = randomise(dm_model(10, 1), seed=2)
    torch.save({"net": deepmind.state_dict()}, f"{OUT}/dm-wrn-10-1.pt")
    save_file(deepmind.state_dict(), f"{OUT}/dm-wrn-10-1.safetensors")
    for f in ["dm-wrn-10-1.pt", "dm-wrn-10-1.safetensors"]:
        files.append({"file": f, "model": "dm-wrn-10-1", "logits": logits(deepmind, cifar)})

    # The SDNet parity fixture's weights, as safetensors (same key names).
    sdnet = torch.load("tests/fixtures/parity/sdnet18_w0125_cifar.pth", map_location="cpu")
    sdnet = sdnet.get("state_dict", sdnet)
    save_file({k: v.contiguous() for k, v in sdnet.items() if v.dtype.is_floating_point},
              f"{OUT}/sdnet18_w0125_cifar.safetensors")

    with open(f"{OUT}/cases.json", "w") as f:
        json.dump({"cifar_images": 4, "imagenet_images": 3, "params": params,
                   "cases": cases, "files": files}, f, indent=1)


if __name__ == "__main__":
    main()
