//! Seeded tensors for the attack tests. The tests of one binary run in parallel, so the backend's
//! shared generator would hand each run different weights and images; these draw from a generator
//! of their own and give the same values on every run.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

pub fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Values drawn from N(0, std²).
pub fn normal<T: Backend, const D: usize>(
    shape: [usize; D],
    std: f32,
    rng: &mut StdRng,
) -> Tensor<T, D> {
    let count = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| std * rng.sample::<f32, _>(StandardNormal))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Images with pixels drawn uniformly from [0, 1).
pub fn images<T: Backend>(shape: [usize; 4], seed: u64) -> Tensor<T, 4> {
    let mut rng = seeded(seed);
    let count = shape.iter().product();
    let values: Vec<f32> = (0..count).map(|_| rng.random::<f32>()).collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}
