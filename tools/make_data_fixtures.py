"""Writes the CIFAR python-version fixtures under tests/fixtures/: the layout torchvision
downloads (`cifar-10-batches-py/`, `cifar-100-python/`), made from the bundled CIFAR-10 test
images, so that the test can compare them with the binary version image by image.

- cifar-10-batches-py/test_batch: images 0-199 of data/cifar10/test_first1000.bin, pickled the way
  the published files are (Python 2 cPickle, protocol 2: byte-string keys, the numpy array as
  `_reconstruct` + a BINSTRING of its bytes), emitted opcode by opcode below.
- cifar-10-batches-py/data_batch_1..5: images 200-299, 20 per file, pickled by this Python at
  protocols 2, 3, 4, 5 and the Python 2 form again (users re-save batches; every protocol must
  read the same).
- cifar-100-python/{train,test}: the same kind of file with `fine_labels` / `coarse_labels`
  (no CIFAR-100 images can be fetched here: the images are CIFAR-10's, the fine label is made up
  as (label · 10 + index) mod 100, the coarse one fine // 5), and cifar-100-binary/{train,test}.bin
  holding exactly the same records in the binary version.

Each file is read back the way torchvision does (pickle.load(f, encoding="latin1")) and checked.
Run from the repository root:  python3 tools/make_data_fixtures.py   (needs numpy)
"""
import os
import pickle
import struct

import numpy as np

FIXTURES = "tests/fixtures"


def py2_string(b):
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)


def py2_int(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def py2_array(array):
    """numpy.ndarray as Python 2's cPickle wrote it at protocol 2."""
    n, width = array.shape
    out = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
    out += py2_int(0) + b"\x85" + py2_string(b"b") + b"\x87R"
    out += b"(" + py2_int(1) + py2_int(n) + py2_int(width) + b"\x86"
    out += b"cnumpy\ndtype\n" + py2_string(b"u1") + py2_int(0) + py2_int(1) + b"\x87R"
    out += b"(" + py2_int(3) + py2_string(b"|") + b"NNN" + py2_int(-1) + py2_int(-1) + py2_int(0)
    out += b"tb" + b"\x89" + py2_string(array.tobytes()) + b"tb"
    return out


def py2_batch(entries):
    """A dict of byte-string keys → (int | bytes | list of ints | list of bytes | uint8 array)."""
    out = b"\x80\x02}("
    for key, value in entries.items():
        out += py2_string(key.encode())
        if isinstance(value, np.ndarray):
            out += py2_array(value)
        elif isinstance(value, bytes):
            out += py2_string(value)
        elif isinstance(value, int):
            out += py2_int(value)
        elif value and isinstance(value[0], bytes):
            out += b"](" + b"".join(py2_string(v) for v in value) + b"e"
        else:
            out += b"](" + b"".join(py2_int(v) for v in value) + b"e"
    return out + b"u."


def write(path, entries, protocol):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        if protocol is None:
            f.write(py2_batch(entries))
        else:
            pickle.dump(entries, f, protocol=protocol)
    with open(path, "rb") as f:
        back = pickle.load(f, encoding="latin1")  # what torchvision does
    assert np.array_equal(back["data"], entries["data"]), path
    text = lambda v: v.decode("latin1") if isinstance(v, bytes) else v  # noqa: E731
    for key in entries:
        if key != "data":
            expected = entries[key]
            expected = [text(v) for v in expected] if isinstance(expected, list) else text(expected)
            assert back[key] == expected, (path, key)


def main():
    raw = np.fromfile("data/cifar10/test_first1000.bin", dtype=np.uint8).reshape(-1, 3073)
    labels, images = raw[:, 0].astype(int), raw[:, 1:]

    def cifar10(lo, hi, name):
        return {"batch_label": name.encode(), "labels": [int(v) for v in labels[lo:hi]],
                "data": images[lo:hi].copy(),
                "filenames": [f"image_{i:04d}.png".encode() for i in range(lo, hi)]}

    root = f"{FIXTURES}/cifar-10-batches-py"
    write(f"{root}/test_batch", cifar10(0, 200, "testing batch 1 of 1"), None)
    for k, protocol in enumerate([2, 3, 4, 5, None], start=1):
        entries = cifar10(180 + 20 * k, 200 + 20 * k, f"training batch {k} of 5")
        if protocol is not None:  # what Python 3 users get when they re-save
            entries = {key: [v.decode() for v in val] if key == "filenames" else
                       (val.decode() if isinstance(val, bytes) else val)
                       for key, val in entries.items()}
        write(f"{root}/data_batch_{k}", entries, protocol)
    with open(f"{root}/batches.meta", "wb") as f:
        names = [n.strip().encode() for n in open("data/cifar10/batches.meta.txt") if n.strip()]
        f.write(py2_batch({"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072}))

    def cifar100(lo, hi):
        fine = [(int(labels[i]) * 10 + i) % 100 for i in range(lo, hi)]
        return {"filenames": [f"image_{i:04d}.png".encode() for i in range(lo, hi)],
                "batch_label": b"testing batch 1 of 1", "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine], "data": images[lo:hi].copy()}

    for split, (lo, hi) in {"test": (0, 100), "train": (100, 150)}.items():
        entries = cifar100(lo, hi)
        write(f"{FIXTURES}/cifar-100-python/{split}", entries, None)
        records = np.concatenate([np.array([entries["coarse_labels"], entries["fine_labels"]],
                                           dtype=np.uint8).T, entries["data"]], axis=1)
        os.makedirs(f"{FIXTURES}/cifar-100-binary", exist_ok=True)
        records.tofile(f"{FIXTURES}/cifar-100-binary/{split}.bin")

    resize_fixture()


def resize_fixture():
    """Images that torchvision's Resize(256) shrinks or stretches unevenly (non-square, larger
    than 256 on the shorter side, and smaller), made with PIL from a bundled ImageNet image,
    and torchvision's Resize(256) + CenterCrop(224) of each as decoded by PIL."""
    import torch
    import torchvision.transforms as T
    from PIL import Image
    source = Image.open(f"{FIXTURES}/imagenet_sample/n01704323/ILSVRC2012_val_00047970.JPEG")
    source = source.convert("RGB")
    root = f"{FIXTURES}/imagenet_resize/n01704323"
    os.makedirs(root, exist_ok=True)
    # (width, height, format): landscape and portrait shrunk by up to 2.5x, a wide strip, an
    # upscaled portrait, and a shorter side of exactly 256 (no resampling).
    shapes = [(500, 375, "JPEG"), (300, 450, "PNG"), (640, 260, "JPEG"), (180, 240, "PNG"),
              (256, 300, "PNG")]
    names = []
    for i, (w, h, fmt) in enumerate(shapes):
        name = f"resize_{i}_{w}x{h}.{'JPEG' if fmt == 'JPEG' else 'png'}"
        source.resize((w, h), Image.LANCZOS).save(f"{root}/{name}", fmt, quality=90)
        names.append(name)
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    expected = torch.stack([transform(Image.open(f"{root}/{n}").convert("RGB"))
                            for n in sorted(names)])
    np.save(f"{FIXTURES}/imagenet_resize.npy", expected.numpy().astype(np.uint8))


if __name__ == "__main__":
    main()
