"""PyTorch CPU side of the benchmarks in the README (same models, same images, same batch size).

    python3 tools/bench_pytorch.py eval   [--models resnet20,resnet18,sdnet18] [--n 500]
    python3 tools/bench_pytorch.py pgd    [...]      PGD (--steps, 10), eps 8/255, alpha 2/255, scored
                                                     (--bare: the attack steps alone, on the labels)
    python3 tools/bench_pytorch.py train  [...]      SGD steps (momentum 0.9 Nesterov, wd 5e-4)

--dataset imagenet builds the ImageNet variants (resnet50, wide-resnet50-2: torchvision's) on the
images enlarged to 224x224.

--device cuda times the same on a GPU (synchronised) and prints the peak GPU memory of each workload.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import reference_models as R  # noqa: E402


def build(name):
    if name.startswith("resnet") and name[6:] in ("20", "32", "44", "56", "110"):
        return R.CifarResNet(int(name[6:])).eval()
    if name in ("resnet50", "wide-resnet50-2"):
        return R.torchvision_model(name).eval()
    if name.startswith("wrn-") or name.startswith("dm-wrn-"):
        depth, width = map(int, name.split("-")[-2:])
        return R.WideResNet(depth, width, deepmind=name.startswith("dm-")).eval()
    return R.Net(name, 10).eval()


def sync(x):
    if x.is_cuda:
        torch.cuda.synchronize()


def bench_eval(model, x, batch):
    with torch.no_grad():
        model(x[:batch])  # warm-up (and CSC step sizes)
        sync(x)
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            model(x[i:i + batch]).cpu()
    return len(x) / (time.perf_counter() - start)


def pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10):
    delta = torch.empty_like(x).uniform_(-eps, eps)
    adv = (x + delta).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        grad, = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv


def robust_predictions(model, x, steps):
    """One batch of a robust-accuracy evaluation, the work `robust-eval speed pgd` times: the clean
    predictions (each image is attacked away from its own, so every image is attacked), the
    attack, and the predictions on its result."""
    with torch.no_grad():
        clean = model(x).argmax(1)
    adv = pgd(model, x, clean, steps=steps)
    with torch.no_grad():
        return model(adv).argmax(1)


def bench_pgd(model, x, y, batch, steps, bare):
    for p in model.parameters():
        p.requires_grad_(False)

    def attack(i, steps):
        images = x[i:i + batch]
        if bare:  # the attack steps alone, on the true labels (the loop of a typical script)
            return pgd(model, images, y[i:i + batch], steps=steps)
        return robust_predictions(model, images, steps)

    attack(0, steps=1)
    sync(x)
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        attack(i, steps).cpu()
    return len(x) / (time.perf_counter() - start)


def bench_train(model, x, y, batch):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def epoch():
        for i in range(0, len(x), batch):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + batch]), y[i:i + batch]).backward()
            opt.step()

    epoch()  # warm-up
    sync(x)
    start = time.perf_counter()
    epoch()
    sync(x)
    return len(x) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["eval", "pgd", "train"])
    parser.add_argument("--models", default="resnet20,resnet18,sdnet18")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=10, help="pgd: iterations per attack")
    parser.add_argument("--bare", action="store_true",
                        help="pgd: time the attack steps alone (no clean or final predictions)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "imagenet"],
                        help="imagenet: the images enlarged 7x (32 -> 224) by pixel repetition")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = R.load_cifar_bin("data/cifar10/test_first1000.bin", limit=args.n)
    if args.dataset == "imagenet":  # as `robust-eval speed --dataset imagenet`
        x = x.repeat_interleave(7, dim=2).repeat_interleave(7, dim=3)
    x, y = x.to(args.device), y.to(args.device)
    where = f"{args.threads} threads" if args.device == "cpu" else torch.cuda.get_device_name()
    for name in args.models.split(","):
        model = build(name).to(args.device)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        bench = {"eval": lambda: bench_eval(model, x, args.batch),
                 "pgd": lambda: bench_pgd(model, x, y, args.batch, args.steps, args.bare),
                 "train": lambda: bench_train(model, x, y, args.batch)}[args.what]
        rate = bench()
        peak = ""
        if args.device == "cuda":
            peak = f", peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated"
        shown = f"{rate:.3f}" if rate < 10 else f"{rate:.1f}"
        print(f"{args.what} {name}: {shown} images/s (PyTorch {torch.__version__}, {where}{peak})")


if __name__ == "__main__":
    main()
