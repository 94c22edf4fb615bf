//! Corruption metrics: mean corruption error (mCE) and relative mCE against AlexNet
//! (Hendrycks & Dietterich 2019). Only defined for ImageNet-C; CIFAR has no AlexNet baseline.

use crate::Corruption;

/// AlexNet top-1 error on ImageNet-C, severities 1–5, in benchmark order (the 15 mCE corruptions
/// then the 4 extra ones).
pub const ALEXNET_ERRORS: [[f64; 5]; 19] = [
    [0.69528, 0.82542, 0.93554, 0.98138, 0.99452], // gaussian_noise
    [0.71224, 0.85108, 0.93574, 0.98182, 0.99146], // shot_noise
    [0.78374, 0.89808, 0.94870, 0.98720, 0.99548], // impulse_noise
    [0.65624, 0.73202, 0.85036, 0.91364, 0.94714], // defocus_blur
    [0.64308, 0.75054, 0.88806, 0.91622, 0.93344], // glass_blur
    [0.58430, 0.70048, 0.82108, 0.89750, 0.92638], // motion_blur
    [0.70008, 0.76992, 0.80784, 0.84198, 0.87198], // zoom_blur
    [0.71726, 0.88392, 0.86468, 0.91870, 0.94952], // snow
    [0.61390, 0.79734, 0.88790, 0.89942, 0.93430], // frost
    [0.67474, 0.76050, 0.84378, 0.87260, 0.94500], // fog
    [0.45140, 0.48502, 0.54048, 0.62166, 0.72440], // brightness
    [0.64548, 0.76150, 0.88874, 0.97760, 0.99270], // contrast
    [0.52596, 0.70116, 0.55686, 0.64076, 0.80554], // elastic_transform
    [0.52218, 0.54620, 0.73728, 0.87092, 0.91262], // pixelate
    [0.51002, 0.54718, 0.57294, 0.65458, 0.74778], // jpeg_compression
    [0.66192, 0.74440, 0.90246, 0.94548, 0.97268], // speckle_noise
    [0.54732, 0.70444, 0.82574, 0.89864, 0.95940], // gaussian_blur
    [0.47196, 0.62194, 0.75052, 0.84132, 0.90182], // spatter
    [0.59342, 0.65514, 0.51174, 0.70834, 0.82260], // saturate
];

/// AlexNet's clean top-1 error on ImageNet.
pub const ALEXNET_CLEAN_ERROR: f64 = 0.4348;

pub fn alexnet_errors(c: Corruption) -> [f64; 5] {
    ALEXNET_ERRORS[Corruption::ALL
        .iter()
        .position(|x| *x == c)
        .expect("listed")]
}

/// CE_c = Σ_s E(c,s) / Σ_s E_AlexNet(c,s), over the severities given (1-based).
pub fn corruption_error(c: Corruption, errors: &[(u8, f64)]) -> f64 {
    let reference = alexnet_errors(c);
    let ours: f64 = errors.iter().map(|(_, e)| e).sum();
    let theirs: f64 = errors.iter().map(|(s, _)| reference[*s as usize - 1]).sum();
    ours / theirs
}

/// Relative CE_c = (Σ_s E(c,s) − n·E_clean) / (Σ_s E_AlexNet(c,s) − n·E_clean,AlexNet).
pub fn relative_corruption_error(c: Corruption, errors: &[(u8, f64)], clean_error: f64) -> f64 {
    let reference = alexnet_errors(c);
    let n = errors.len() as f64;
    let ours: f64 = errors.iter().map(|(_, e)| e).sum::<f64>() - n * clean_error;
    let theirs: f64 = errors
        .iter()
        .map(|(s, _)| reference[*s as usize - 1])
        .sum::<f64>()
        - n * ALEXNET_CLEAN_ERROR;
    ours / theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alexnet_itself_has_ce_one_and_relative_ce_one() {
        for c in Corruption::ALL {
            let errors: Vec<(u8, f64)> = (1..=5)
                .map(|s| (s, alexnet_errors(c)[s as usize - 1]))
                .collect();
            assert!((corruption_error(c, &errors) - 1.0).abs() < 1e-12);
            assert!(
                (relative_corruption_error(c, &errors, ALEXNET_CLEAN_ERROR) - 1.0).abs() < 1e-12
            );
        }
    }
}
