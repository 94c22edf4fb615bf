"""Per-image predictions of the bundled pytorch_resnet_cifar10 ResNet-20/32 on the 1000 bundled
CIFAR-10 images, computed by the original model definition and preprocessing.

    python3 tools/reference_cifar_accuracy.py --akamaster DIR \
        --out tests/fixtures/akamaster_reference.json

DIR is a checkout of github.com/akamaster/pytorch_resnet_cifar10; its resnet.py is imported by
path and the images are normalised as its trainer.py does (ToTensor, ImageNet mean/std).
"""
import argparse
import importlib.util
import json
import subprocess

import numpy as np
import torch
import torchvision.transforms as T

MODELS = {
    "resnet20": "models/cifar10-resnet-akamaster/resnet20-12fca82f.th",
    "resnet32": "models/cifar10-resnet-akamaster/resnet32-d509ac18.th",
}


def original_module(checkout):
    spec = importlib.util.spec_from_file_location("akamaster_resnet", f"{checkout}/resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bundled_images():
    raw = np.fromfile("data/cifar10/test_first1000.bin", dtype=np.uint8).reshape(-1, 3073)
    # ToTensor of an HWC uint8 image is CHW / 255; the binary records are already CHW.
    pixels = torch.tensor(raw[:, 1:].reshape(-1, 3, 32, 32), dtype=torch.float32) / 255.0
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    return normalize(pixels), raw[:, 0].astype(np.int64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--akamaster", required=True, help="checkout of pytorch_resnet_cifar10")
    parser.add_argument("--out", required=True)
    parser.add_argument("--commit", help="the checkout's commit, where DIR is not a git work tree")
    args = parser.parse_args()
    torch.set_num_threads(1)
    resnet = original_module(args.akamaster)
    images, labels = bundled_images()
    commit = args.commit
    try:
        commit = commit or subprocess.check_output(
            ["git", "-C", args.akamaster, "rev-parse", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        commit = commit or "unknown"
    record = {"source": "github.com/akamaster/pytorch_resnet_cifar10", "commit": commit,
              "torch": torch.__version__, "images": "data/cifar10/test_first1000.bin",
              "models": {}}
    for name, path in MODELS.items():
        model = getattr(resnet, name)()
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(images[i:i + 100]) for i in range(0, len(images), 100)])
        top2 = logits.topk(2, dim=1).values
        predictions = logits.argmax(1).numpy()
        record["models"][name] = {
            "checkpoint": path,
            "accuracy": float((predictions == labels).mean()),
            "predictions": "".join(str(p) for p in predictions),
            # The smallest gap between the two largest logits: how close the nearest tie is.
            "smallest_top2_gap": float((top2[:, 0] - top2[:, 1]).min()),
        }
        print(name, record["models"][name]["accuracy"])
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
