"""PyTorch reference implementations of the robust-eval model zoo.

Written from the specification in the README (official SDNet key names), for parity fixtures and
side-by-side benchmarks. Inputs are images in [0,1]; normalisation is inside the model.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class Dictionary(nn.Module):
    """CSC solver: z = argmin_{z>=0} lam*|z|_1 + 0.5*|x - A z|^2 by unrolled ISTA/FISTA."""

    def __init__(self, c_in, c_out, k, stride, padding, lam=0.1, n_steps=2):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k, k))
        nn.init.kaiming_uniform_(self.weight)
        self.stride, self.padding, self.lam, self.n_steps = stride, padding, lam, n_steps
        self.output_padding = 0 if stride == 1 else 1
        self.step = None
        self.warm = None

    def A(self, z, w):
        return F.conv_transpose2d(z, w, stride=self.stride, padding=self.padding,
                                  output_padding=self.output_padding)

    def At(self, r, w):
        return F.conv2d(r, w, stride=self.stride, padding=self.padding)

    def unit_atoms(self):
        w = self.weight
        norms = w.detach().flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return w - w.detach() + w.detach() / norms

    @torch.no_grad()
    def lipschitz(self, code_shape, iters=2000, tol=1e-12, seed=0):
        w = self.unit_atoms().detach()
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(code_shape, generator=g, dtype=w.dtype)
        for _ in range(iters):
            nxt = self.At(self.A(v, w), w)
            nxt = nxt / nxt.norm()
            change = ((nxt - v) ** 2).sum().item()
            v = nxt
            if change <= tol:
                break
        return (self.A(v, w) ** 2).sum().item()

    @torch.no_grad()
    def training_lipschitz(self, code_shape):
        """The official per-batch schedule: at most 50 warm-started iterations, ||dv||^2 <= 1e-5."""
        w = self.unit_atoms().detach()
        v = self.warm if self.warm is not None else torch.randn(code_shape)
        for _ in range(50):
            nxt = self.At(self.A(v, w), w)
            nxt = nxt / nxt.norm()
            change = ((nxt - v) ** 2).sum().item()
            v = nxt
            if change <= 1e-5:
                break
        self.warm = v
        return (self.A(v, w) ** 2).sum().item()

    def forward(self, x):
        w = self.unit_atoms()
        h = (x.shape[2] + 2 * self.padding - w.shape[2]) // self.stride + 1
        ww = (x.shape[3] + 2 * self.padding - w.shape[3]) // self.stride + 1
        if self.training:
            self.step = 0.9 / self.training_lipschitz((1, w.shape[0], h, ww))
        elif self.step is None:
            self.step = 0.9 / self.lipschitz((1, w.shape[0], h, ww))
        s, thr = self.step, self.lam * self.step
        z = F.relu(s * self.At(x, w) - thr)
        z_prev, t = z, 1.0
        for i in range(1, self.n_steps):
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = z + ((t - 1) / t_next) * (z - z_prev)
            z_prev = z
            z = F.relu(y + s * self.At(x - self.A(y, w), w) - thr)
            t = t_next
        return z


class DictConv(nn.Module):
    """Wrapper so that parameter names read `<name>.dn.weight` as in the official checkpoints."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.dn = Dictionary(*args, **kwargs)

    def forward(self, x):
        return self.dn(x)


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride, sparse=False, shortcut=True):
        super().__init__()
        if sparse:
            self.conv1 = DictConv(c_in, c_out, 3, stride, 1)
            self.conv2 = DictConv(c_out, c_out, 3, 1, 1)
        else:
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
        self.sparse, self.use_shortcut = sparse, shortcut
        self.shortcut = nn.Sequential()
        if shortcut and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn1(self.conv1(x))
        if not self.sparse:
            out = F.relu(out)
        out = self.bn2(self.conv2(out))
        if not self.use_shortcut:
            return out
        return F.relu(out + self.shortcut(x))


class Stage(nn.Module):
    """Holds blocks under `.layers` (official -all layout)."""

    def __init__(self, blocks):
        super().__init__()
        self.layers = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layers(x)


class Net(nn.Module):
    """resnet18/34, sdnet18/34, sdnet18/34-all[-noshortcut], CIFAR or ImageNet stem."""

    def __init__(self, name, num_classes=10, imagenet=False, width=1.0):
        super().__init__()
        depth = 18 if "18" in name else 34
        blocks = [2, 2, 2, 2] if depth == 18 else [3, 4, 6, 3]
        base = max(1, round(64 * width))
        widths = [base, 2 * base, 4 * base, 8 * base]
        sdnet, all_sparse = name.startswith("sdnet"), name.startswith("sdnet") and "-all" in name
        shortcut = "noshortcut" not in name
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else (CIFAR_MEAN, CIFAR_STD)
        self.normalize = Normalize(mean, std)
        k, s, p = (7, 2, 3) if imagenet else (3, 1, 1)
        stem = [DictConv(3, base, k, s, p) if sdnet else nn.Conv2d(3, base, k, s, p, bias=False),
                nn.BatchNorm2d(base)]
        if not sdnet:
            stem.append(nn.ReLU())
        if imagenet:
            stem.append(DictConv(base, base, 3, 2, 1) if all_sparse else nn.MaxPool2d(3, 2, 1))
        self.layer0 = nn.Sequential(*stem)
        c_in = base
        for i, (n, c_out) in enumerate(zip(blocks, widths)):
            stage = []
            for b in range(n):
                stride = (1 if i == 0 else 2) if b == 0 else 1
                stage.append(Block(c_in, c_out, stride, sparse=all_sparse, shortcut=shortcut))
                c_in = c_out
            setattr(self, f"layer{i + 1}", Stage(stage) if all_sparse else nn.Sequential(*stage))
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.layer0(self.normalize(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


class PadShortcut(nn.Module):
    def __init__(self, pad):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class CifarBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = PadShortcut(c_out // 4) if stride != 1 or c_in != c_out else nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. CIFAR ResNet (pytorch_resnet_cifar10 key names); ImageNet statistics inside."""

    def __init__(self, depth=20, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c_in = 16
        for i, c_out in enumerate([16, 32, 64]):
            stage = []
            for b in range(n):
                stage.append(CifarBlock(c_in, c_out, (1 if i == 0 else 2) if b == 0 else 1))
                c_in = c_out
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


class PreActBlock(nn.Module):
    """A WideResNet block (RobustBench / DeepMind): BN-act-conv-BN-act-conv, shortcut from the
    activated input when the shape changes. `same` pads (0, 1) at stride 2 as DeepMind does."""

    def __init__(self, c_in, c_out, stride, act, same):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.same = same and stride == 2
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 0 if self.same else 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if c_in != c_out else None
        self.act = act

    def forward(self, x):
        pre = self.act(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(F.pad(pre, (0, 1, 0, 1)) if self.same else pre)
        return self.conv2(self.act(self.bn2(out))) + skip


class WideResNet(nn.Module):
    """WRN-depth-width for the benchmarks (the fixtures test against RobustBench's own code)."""

    def __init__(self, depth, width, deepmind=False, num_classes=10):
        super().__init__()
        act = F.silu if deepmind else F.relu
        mean, std = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)) if deepmind else ((0,) * 3, (1,) * 3)
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks, c_in = [], 16
        for i, c_out in enumerate([16 * width, 32 * width, 64 * width]):
            for b in range((depth - 4) // 6):
                blocks.append(PreActBlock(c_in, c_out, 2 if i > 0 and b == 0 else 1, act, deepmind))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.act = act
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.blocks(self.conv1(self.normalize(x)))
        return self.fc(F.adaptive_avg_pool2d(self.act(self.bn(x)), 1).flatten(1))


def torchvision_model(name):
    """torchvision's ResNet-50 / Wide ResNet-50-2 with ImageNet statistics inside."""
    import torchvision
    net = {"resnet50": torchvision.models.resnet50,
           "wide-resnet50-2": torchvision.models.wide_resnet50_2}[name]()
    return nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), net)


def load_cifar_bin(path, limit=None):
    import numpy as np
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)
    if limit:
        raw = raw[:limit]
    x = torch.tensor(raw[:, 1:].reshape(-1, 3, 32, 32), dtype=torch.float32) / 255.0
    return x, torch.tensor(raw[:, 0].astype("int64"))


def load_akamaster(depth, path):
    model = CifarResNet(depth)
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return model.eval()
