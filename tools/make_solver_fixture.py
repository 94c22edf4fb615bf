"""Many-step CSC solves by the official SDNet code, for `--csc-solver official`, and by textbook
FISTA (gradient at the extrapolated point), for the default solver.

    python3 tools/make_solver_fixture.py --sdnet DIR --out tests/fixtures/csc_solvers.json

DIR is a checkout of github.com/Delay-Xili/SDNet; its Lib/models/csc_layer.py DictBlock runs
the official iteration. The step size is set from a dense eigendecomposition of AᵀA (f64), so
that both sides use the exact 0.9/L and only the iterations are compared.
"""
import argparse
import importlib.util
import json
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F


def official_dictblock(checkout):
    # csc_layer.py imports Lib.config for one flag (ADAPTIVELAMBDA, off in the recipes).
    config = types.SimpleNamespace(MODEL=types.SimpleNamespace(ADAPTIVELAMBDA=False))
    lib = types.ModuleType("Lib")
    lib_config = types.ModuleType("Lib.config")
    lib_config.config = config
    sys.modules.update({"Lib": lib, "Lib.config": lib_config})
    spec = importlib.util.spec_from_file_location("csc_layer", f"{checkout}/Lib/models/csc_layer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DictBlock


def exact_lipschitz(w, stride, padding, code_hw):
    c = w.shape[0]
    n = c * code_hw[0] * code_hw[1]
    eye = torch.eye(n, dtype=torch.float64).view(n, c, *code_hw)
    a = F.conv_transpose2d(eye, w.double(), stride=stride, padding=padding,
                           output_padding=0 if stride == 1 else 1).reshape(n, -1)
    return float(np.linalg.eigvalsh((a @ a.T).numpy())[-1])


def textbook_fista(x, w, stride, padding, step, lam, steps):
    op = 0 if stride == 1 else 1
    At = lambda r: F.conv2d(r, w, stride=stride, padding=padding)
    A = lambda z: F.conv_transpose2d(z, w, stride=stride, padding=padding, output_padding=op)
    z = F.relu(step * At(x) - step * lam)
    z_prev, t = z, 1.0
    for _ in range(1, steps):
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = z + ((t - 1) / t_next) * (z - z_prev)
        z_prev, z = z, F.relu(y + step * At(x - A(y)) - step * lam)
        t = t_next
    return z


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdnet", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    DictBlock = official_dictblock(args.sdnet)
    torch.manual_seed(0)
    cases = []
    for stride, lam, size in [(1, 0.1, 9), (2, 0.5, 10)]:
        c_in, c_out, steps = 3, 8, 12
        block = DictBlock(c_in, c_out, lmbd=lam, stride=stride, kernel_size=3, padding=1,
                          n_steps=steps)
        block.normalize_weight()
        w = block.weight.detach().clone()
        x = torch.rand(2, c_in, size, size)
        code_hw = [(size + 2 - 3) // stride + 1] * 2
        step = 0.9 / exact_lipschitz(w, stride, 1, code_hw)
        block.step_size.fill_(step)
        block.nonlinear.lambd = lam * step
        block.eval()
        with torch.no_grad():
            official, _ = block.fista_forward(x)
            textbook = textbook_fista(x, w, stride, 1, step, lam, steps)
        cases.append({
            "stride": stride, "lambda": lam, "steps": steps, "step_size": step,
            "weight_shape": list(w.shape), "weight": w.flatten().tolist(),
            "input_shape": list(x.shape), "input": x.flatten().tolist(),
            "official": official.flatten().tolist(), "fista": textbook.flatten().tolist(),
        })
        gap = (official - textbook).abs().max().item()
        print(f"stride {stride}: max |official - fista| {gap:.3e}, max |z| {official.abs().max():.3e}")
    with open(args.out, "w") as f:
        json.dump({"source": "github.com/Delay-Xili/SDNet Lib/models/csc_layer.py",
                   "torch": torch.__version__, "cases": cases}, f)


if __name__ == "__main__":
    main()
