"""An mCE case computed outside robust-eval: made-up per-(corruption, severity) errors of a model,
and their CE, relative CE, mCE and relative mCE by the definitions of Hendrycks & Dietterich
(ICLR 2019), with AlexNet's errors as published with ImageNet-C.

    python3 tools/make_mce_fixture.py > tests/fixtures/mce.json
"""
import json

import numpy as np

BENCHMARK = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
             "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
             "elastic_transform", "pixelate", "jpeg_compression"]
ALEXNET = np.array([
    [0.69528, 0.82542, 0.93554, 0.98138, 0.99452],
    [0.71224, 0.85108, 0.93574, 0.98182, 0.99146],
    [0.78374, 0.89808, 0.94870, 0.98720, 0.99548],
    [0.65624, 0.73202, 0.85036, 0.91364, 0.94714],
    [0.64308, 0.75054, 0.88806, 0.91622, 0.93344],
    [0.58430, 0.70048, 0.82108, 0.89750, 0.92638],
    [0.70008, 0.76992, 0.80784, 0.84198, 0.87198],
    [0.71726, 0.88392, 0.86468, 0.91870, 0.94952],
    [0.61390, 0.79734, 0.88790, 0.89942, 0.93430],
    [0.67474, 0.76050, 0.84378, 0.87260, 0.94500],
    [0.45140, 0.48502, 0.54048, 0.62166, 0.72440],
    [0.64548, 0.76150, 0.88874, 0.97760, 0.99270],
    [0.52596, 0.70116, 0.55686, 0.64076, 0.80554],
    [0.52218, 0.54620, 0.73728, 0.87092, 0.91262],
    [0.51002, 0.54718, 0.57294, 0.65458, 0.74778],
])
ALEXNET_CLEAN = 0.4348


def main():
    rng = np.random.default_rng(2019)
    clean = 0.2386
    # Errors that grow with severity but not in step with AlexNet's, so that no two corruptions
    # share a ratio and a mistake in any one of them moves the mean.
    errors = np.sort(rng.uniform(clean, 0.95, size=(15, 5)), axis=1)
    errors = np.round(errors, 3)
    ce = errors.sum(1) / ALEXNET.sum(1)
    relative = (errors.sum(1) - 5 * clean) / (ALEXNET.sum(1) - 5 * ALEXNET_CLEAN)
    # The same definitions on severities 1, 3 and 5 only (CE over the severities evaluated).
    odd = [0, 2, 4]
    ce_odd = errors[:, odd].sum(1) / ALEXNET[:, odd].sum(1)
    print(json.dumps({
        "clean_error": clean,
        "alexnet_clean_error": ALEXNET_CLEAN,
        "corruptions": BENCHMARK,
        "alexnet_errors": ALEXNET.tolist(),
        "errors": errors.tolist(),
        "ce": ce.tolist(),
        "relative_ce": relative.tolist(),
        "ce_severities_1_3_5": ce_odd.tolist(),
        "mce": 100 * ce.mean(),
        "relative_mce": 100 * relative.mean(),
    }, indent=1))


if __name__ == "__main__":
    main()
