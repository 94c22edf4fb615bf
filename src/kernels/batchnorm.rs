//! Training-mode BatchNorm (batch mean and biased variance per channel of NCHW data) forward and
//! backward. The composite versions are burn tensor expressions for every backend; the CPU backend
//! replaces each with two fused passes over the data instead of about ten elementwise ones.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::nn::channel_view;

/// `(out, mean, var)` of batch normalisation with the batch's own statistics.
pub type Normalised<B> = (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>);

/// Gradients `(dx, dgamma, dbeta)` of a training-mode BatchNorm.
pub type NormGrads<B> = (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>);

fn channel_sum<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = t.dims();
    // Reductions over the contiguous inner axis, then the batch: no transposed copies.
    t.reshape([n, c, h * w]).sum_dim(2).sum_dim(0).reshape([c])
}

pub fn composite<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
) -> Normalised<B> {
    let [n, _, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let mean = channel_sum(x.clone()).div_scalar(count);
    let centered = x - channel_view(mean.clone(), n);
    let var = channel_sum(centered.clone().square()).div_scalar(count);
    let scale = gamma * var.clone().add_scalar(eps).sqrt().recip();
    let out = centered * channel_view(scale, n) + channel_view(beta, n);
    (out, mean, var)
}

/// `dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂))`, `dγ = Σ dy·x̂`, `dβ = Σ dy`, x̂ = (x − μ)/σ.
pub fn composite_backward<B: Backend>(
    (x, gamma, mean, var): (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>),
    eps: f64,
    dy: Tensor<B, 4>,
) -> NormGrads<B> {
    let [n, _, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let inv_std = var.add_scalar(eps).sqrt().recip();
    let x_hat = (x - channel_view(mean, n)) * channel_view(inv_std.clone(), n);
    let dbeta = channel_sum(dy.clone());
    let dgamma = channel_sum(dy.clone() * x_hat.clone());
    let dx = (dy
        - channel_view(dbeta.clone().div_scalar(count), n)
        - x_hat * channel_view(dgamma.clone().div_scalar(count), n))
        * channel_view(gamma * inv_std, n);
    (dx, dgamma, dbeta)
}

/// The values of channel `c` of every image: `n` runs of `plane` values.
fn channel_runs(
    data: &[f32],
    c: usize,
    channels: usize,
    plane: usize,
) -> impl Iterator<Item = &[f32]> {
    data.chunks(channels * plane)
        .map(move |image| &image[c * plane..(c + 1) * plane])
}

/// Fused forward on contiguous NCHW data: returns `(out, mean, var)`.
pub fn forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    (channels, plane): (usize, usize),
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let count = (x.len() / channels) as f64;
    let stats: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = channel_runs(x, c, channels, plane)
                .map(|run| run.iter().map(|&v| v as f64).sum::<f64>())
                .sum();
            let mean = sum / count;
            let squares: f64 = channel_runs(x, c, channels, plane)
                .map(|run| run.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum();
            (mean, squares / count)
        })
        .collect();
    // (μ, γ/σ, β) per channel; out = (x − μ)·γ/σ + β, centred first as the composite does.
    let affine: Vec<(f32, f32, f32)> = stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(&(mean, var), (&g, &b))| (mean as f32, (g as f64 / (var + eps).sqrt()) as f32, b))
        .collect();
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(channels * plane)
        .zip(x.par_chunks(channels * plane))
        .for_each(|(dst, src)| {
            for ((d, s), &(mean, scale, shift)) in
                dst.chunks_mut(plane).zip(src.chunks(plane)).zip(&affine)
            {
                d.iter_mut()
                    .zip(s)
                    .for_each(|(d, &s)| *d = (s - mean) * scale + shift);
            }
        });
    let mean = stats.iter().map(|s| s.0 as f32).collect();
    let var = stats.iter().map(|s| s.1 as f32).collect();
    (out, mean, var)
}

/// Fused backward on contiguous NCHW data: returns `(dx, dgamma, dbeta)`.
pub fn backward(
    (x, gamma, mean, var): (&[f32], &[f32], &[f32], &[f32]),
    dy: &[f32],
    (channels, plane): (usize, usize),
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let count = (x.len() / channels) as f64;
    let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + eps).sqrt()).collect();
    // (Σ dy, Σ dy·x̂) per channel.
    let sums: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let m = mean[c] as f64;
            channel_runs(x, c, channels, plane)
                .zip(channel_runs(dy, c, channels, plane))
                .fold((0.0, 0.0), |(sd, sdx), (xs, gs)| {
                    let (a, b) = xs.iter().zip(gs).fold((0.0, 0.0), |(a, b), (&x, &g)| {
                        (a + g as f64, b + g as f64 * (x as f64 - m))
                    });
                    (sd + a, sdx + b * inv_std[c])
                })
        })
        .collect();
    // dx = k·dy + a·(x − μ) + b per channel, with k = γ/σ, a = −k·mean(dy·x̂)/σ, b = −k·mean(dy).
    let coefficients: Vec<(f32, f32, f32, f32)> = (0..channels)
        .map(|c| {
            let k = gamma[c] as f64 * inv_std[c];
            let a = -k * sums[c].1 / count * inv_std[c];
            let b = -k * sums[c].0 / count;
            (k as f32, a as f32, b as f32, mean[c])
        })
        .collect();
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(channels * plane)
        .zip(
            x.par_chunks(channels * plane)
                .zip(dy.par_chunks(channels * plane)),
        )
        .for_each(|(dst, (xs, gs))| {
            for (((d, xs), gs), &(k, a, b, m)) in dst
                .chunks_mut(plane)
                .zip(xs.chunks(plane))
                .zip(gs.chunks(plane))
                .zip(&coefficients)
            {
                for ((d, &x), &g) in d.iter_mut().zip(xs).zip(gs) {
                    *d = k * g + a * (x - m) + b;
                }
            }
        });
    let dgamma = sums.iter().map(|s| s.1 as f32).collect();
    let dbeta = sums.iter().map(|s| s.0 as f32).collect();
    (dx, dgamma, dbeta)
}
