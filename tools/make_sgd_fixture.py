"""Writes tests/fixtures/sgd.json: PyTorch SGD (momentum 0.9, Nesterov, weight decay 5e-4,
dampening 0) with a cosine schedule stepped per iteration, on a small linear classifier trained
with cross-entropy. robust-eval's optimizer must reproduce every step to 1e-6.

Run from the repository root:  python3 tools/make_sgd_fixture.py
"""
import json

import torch

torch.manual_seed(0)
model = torch.nn.Linear(6, 4)
x = torch.randn(8, 6)
y = torch.randint(0, 4, (8,))
steps, lr0, min_lr = 6, 0.1, 1e-6
opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=0.9, nesterov=True, weight_decay=5e-4, dampening=0)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=min_lr)
initial = {"weight": model.weight.tolist(), "bias": model.bias.tolist()}
trajectory = []
for _ in range(steps):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    lr = opt.param_groups[0]["lr"]
    opt.step()
    sched.step()
    trajectory.append({"lr": lr, "loss": loss.item(), "weight": model.weight.tolist(), "bias": model.bias.tolist()})
with open("tests/fixtures/sgd.json", "w") as f:
    json.dump({"x": x.tolist(), "y": y.tolist(), "initial": initial, "steps": trajectory}, f)
print("wrote tests/fixtures/sgd.json")
