"""The reference corruption generators, ready to call.

ImageNet-C functions come from the `imagenet-c` PyPI package (hendrycks' generator). The CIFAR-10-C
generator (`make_cifar_c.py`) differs only in its severity tables, the image side (32), the plasma
map size (32) and the 0.2x frost textures; its functions are derived from the ImageNet ones by
rewriting exactly those parts of the source (CIFAR_TABLES). Modern-library shims, none of which
changes an algorithm: skimage's `multichannel=True` becomes `channel_axis=-1`, `np.float_` is
float64, `np.fromstring` reads bytes with `np.frombuffer`, frost textures load from
../shared/data/frost.
"""
import ast
import inspect
import os

import numpy as np
import skimage.filters

FROST_DIR = "../shared/data/frost"


def install_shims():
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
    """(ImageNet-C module, namespace of the CIFAR-10-C functions)."""
    install_shims()
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


