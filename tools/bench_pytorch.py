"""PyTorch CPU side of the benchmarks in the README (same models, same images, same batch size).

    python3 tools/bench_pytorch.py eval   [--models resnet20,resnet18,sdnet18] [--n 500]
    python3 tools/bench_pytorch.py pgd    [...]      PGD-10, eps 8/255, alpha 2/255
    python3 tools/bench_pytorch.py train  [...]      SGD steps (momentum 0.9 Nesterov, wd 5e-4)
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
    return R.Net(name, 10).eval()


def bench_eval(model, x, batch):
    with torch.no_grad():
        model(x[:batch])  # warm-up (and CSC step sizes)
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
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


def bench_pgd(model, x, y, batch):
    for p in model.parameters():
        p.requires_grad_(False)
    pgd(model, x[:batch], y[:batch], steps=1)
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        pgd(model, x[i:i + batch], y[i:i + batch])
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
    start = time.perf_counter()
    epoch()
    return len(x) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["eval", "pgd", "train"])
    parser.add_argument("--models", default="resnet20,resnet18,sdnet18")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = R.load_cifar_bin("data/cifar10/test_first1000.bin", limit=args.n)
    for name in args.models.split(","):
        model = build(name)
        bench = {"eval": lambda: bench_eval(model, x, args.batch), "pgd": lambda: bench_pgd(model, x, y, args.batch),
                 "train": lambda: bench_train(model, x, y, args.batch)}[args.what]
        rate = bench()
        print(f"{args.what} {name}: {rate:.1f} images/s (PyTorch {torch.__version__}, {args.threads} threads)")


if __name__ == "__main__":
    main()
