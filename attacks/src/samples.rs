//! Moving between a batch's tensors and its samples on the host: the rows of a sub-batch, the
//! pixels and logits as plain vectors.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::{Classifier, Images};

/// The samples `rows` of a batch, in that order.
pub(crate) fn select<B: Backend>(x: &Tensor<B, 4>, rows: &[usize]) -> Tensor<B, 4> {
    let index = Tensor::from_data(
        TensorData::new(rows.iter().map(|&i| i as i64).collect(), [rows.len()]),
        &x.device(),
    );
    x.clone().select(0, index)
}

/// The values of a tensor as f32, row-major.
pub(crate) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32")
}

/// The model's logits of `x` on the host, row-major.
pub(crate) fn host_logits<B: AutodiffBackend, M: Classifier<B> + ?Sized>(
    model: &M,
    x: &Images<B>,
) -> Vec<f32> {
    values(model.logits(Tensor::from_inner(x.clone())).inner())
}

/// The index of the largest value of a row (the first, on ties).
pub(crate) fn argmax_row(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}
