"""Writes the PyTorch parity fixtures under tests/fixtures/parity.

Each model gets random weights (seeded), randomised BatchNorm statistics so that inference-mode
BatchNorm is really exercised, and is saved as a PyTorch checkpoint in the layout users have:
official SDNet keys (bare, or inside {"state_dict": ...} with a DataParallel `module.` prefix),
or torchvision keys. Inputs are real images; the expected logits come from tools/reference_models.py.

Run from the repository root:  python3 tools/make_parity_fixtures.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import reference_models as R  # noqa: E402

OUT = "tests/fixtures/parity"


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.2 * torch.randn(c, generator=gen)
            m.running_mean.data = 0.2 * torch.randn(c, generator=gen)
            m.running_var.data = 0.5 + torch.rand(c, generator=gen)


def torchvision_keys(state):
    """Rename official-layout ResNet keys to torchvision's."""
    out = {}
    for k, v in state.items():
        k = k.replace("layer0.0.", "conv1.").replace("layer0.1.", "bn1.")
        k = k.replace("shortcut.0.", "downsample.0.").replace("shortcut.1.", "downsample.1.")
        k = k.replace("linear.", "fc.")
        out[k] = v
    return out


def check_torchvision_names(state):
    import torchvision
    reference = set(torchvision.models.resnet18().state_dict().keys())
    assert set(state.keys()) == reference, set(state.keys()) ^ reference


def imagenet_inputs(n):
    from PIL import Image
    import torchvision.transforms as T
    root = "tests/fixtures/imagenet_sample"
    files = []
    for wnid in sorted(os.listdir(root)):
        files += [os.path.join(root, wnid, f) for f in sorted(os.listdir(os.path.join(root, wnid)))]
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    return torch.stack([tf(Image.open(f).convert("RGB")) for f in files[:n]])


def save_case(name, model, pixels, checkpoint, wrap):
    """`pixels`: uint8 NCHW; the model sees pixels / 255 exactly as robust-eval computes it."""
    model.eval()
    with torch.no_grad():
        logits = model(pixels.float() / 255.0)
    state = model.state_dict()
    if checkpoint == "torchvision":
        state = torchvision_keys(state)
        check_torchvision_names(state)
    if wrap:
        state = {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}
    torch.save(state, f"{OUT}/{name}.pth")
    np.save(f"{OUT}/{name}.input.npy", pixels.numpy().astype(np.uint8))
    np.save(f"{OUT}/{name}.logits.npy", logits.numpy().astype(np.float32))
    steps = [m.step for m in model.modules() if isinstance(m, R.Dictionary)]
    np.save(f"{OUT}/{name}.steps.npy", np.array(steps, dtype=np.float64))
    print(name, tuple(logits.shape), f"{len(steps)} CSC layers")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    raw = np.fromfile("data/cifar10/test_first1000.bin", dtype=np.uint8).reshape(-1, 3073)[:8]
    cifar = torch.tensor(raw[:, 1:].reshape(-1, 3, 32, 32))
    cases = [
        ("sdnet18_w0125_cifar", R.Net("sdnet18", 10, width=0.125), cifar, "official", False),
        ("resnet18_w0125_cifar", R.Net("resnet18", 10, width=0.125), cifar, "official", True),
        ("sdnet18all_w00625_cifar", R.Net("sdnet18-all", 10, width=0.0625), cifar, "official", True),
        ("sdnet18allnosc_w00625_cifar", R.Net("sdnet18-all-noshortcut", 10, width=0.0625), cifar, "official", False),
    ]
    imagenet = imagenet_inputs(2)
    cases += [
        ("resnet18_w00625_imagenet_tv", R.Net("resnet18", 1000, imagenet=True, width=0.0625), imagenet, "torchvision", False),
        ("sdnet18all_w00625_imagenet", R.Net("sdnet18-all", 1000, imagenet=True, width=0.0625), imagenet, "official", False),
    ]
    for name, model, inputs, checkpoint, wrap in cases:
        randomise_bn(model, gen)
        save_case(name, model, inputs, checkpoint, wrap)


if __name__ == "__main__":
    main()
