//! Random draws that depend only on (seed, sample, restart), never on batching or threads.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// The random stream of one sample in one restart.
pub fn sample_rng(sample_seed: u64, restart: usize) -> StdRng {
    // splitmix64 of the pair, so that neighbouring seeds give unrelated streams.
    let mut z = sample_seed ^ (restart as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// `len` values uniform in [−1, 1] per sample, concatenated.
pub fn uniform_per_sample(seeds: &[u64], restart: usize, len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(seeds.len() * len);
    for &seed in seeds {
        let mut rng = sample_rng(seed, restart);
        out.extend((0..len).map(|_| rng.random_range(-1.0f32..=1.0)));
    }
    out
}

/// Per sample: `len` standard-normal values and one radius factor uniform in [0, 1).
pub fn normal_with_radius(seeds: &[u64], restart: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
    let mut values = Vec::with_capacity(seeds.len() * len);
    let mut radii = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let mut rng = sample_rng(seed, restart);
        values.extend((0..len).map(|_| rng.sample::<f32, _>(StandardNormal)));
        radii.push(rng.random::<f32>());
    }
    (values, radii)
}
