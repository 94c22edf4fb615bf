//! Small layers in PyTorch's parameter layout, so checkpoints map one-to-one.
//!
//! BatchNorm takes an explicit [`Mode`]: burn's own BatchNorm switches to batch statistics
//! whenever the backend has autodiff, which would silently break every gradient attack.

use crate::kernels::ConvBackend;
use burn::module::{Module, Param, RunningState};
use burn::tensor::activation::{relu, silu};
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::StandardNormal;

use crate::models::spec::Activation;

/// Whether a forward pass trains (batch statistics, running-stat updates) or infers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Running statistics, no state changes: evaluation and attacks.
    Eval,
    /// Batch statistics and momentum updates of the running statistics.
    Train,
    /// Batch statistics, running statistics untouched: test-time BatchNorm adaptation. The
    /// prediction for an image then depends on the rest of its batch.
    BatchStats,
}

thread_local! {
    static SHAPES_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `build` with initialisation draws replaced by zeros: for what only needs a network's
/// shapes (parameter counts), where drawing a 267 M-parameter WideResNet takes seconds.
pub fn shapes_only<R>(build: impl FnOnce() -> R) -> R {
    SHAPES_ONLY.with(|flag| flag.set(true));
    let result = build();
    SHAPES_ONLY.with(|flag| flag.set(false));
    result
}

/// Uniform U(-bound, bound) tensor drawn on the host, so initialisation is identical on every backend.
pub fn uniform_tensor<B: ConvBackend, const D: usize>(
    shape: [usize; D],
    bound: f64,
    rng: &mut StdRng,
    device: &B::Device,
) -> Tensor<B, D> {
    if SHAPES_ONLY.with(|flag| flag.get()) {
        return Tensor::zeros(shape, device);
    }
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-bound..=bound) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Standard-normal tensor drawn on the host.
pub fn normal_tensor<B: ConvBackend, const D: usize>(
    shape: [usize; D],
    rng: &mut StdRng,
    device: &B::Device,
) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// 2-D convolution without bias (all convolutions in ResNets are followed by BatchNorm).
#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    /// [out, in, k, k], as in PyTorch.
    pub weight: Param<Tensor<B, 4>>,
    stride: usize,
    padding: usize,
}

impl<B: ConvBackend> Conv2d<B> {
    /// PyTorch's default initialisation: U(±1/√fan_in).
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        let bound = 1.0 / ((c_in * kernel * kernel) as f64).sqrt();
        let weight = uniform_tensor([c_out, c_in, kernel, kernel], bound, rng, device);
        Self {
            weight: Param::from_tensor(weight),
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        B::convolve(x, self.weight.val(), None, self.options())
    }

    /// Convolution followed by BatchNorm in inference mode, folded into one convolution with bias
    /// (saves two passes over the activations).
    pub fn forward_folded(&self, x: Tensor<B, 4>, bn: &BatchNorm2d<B>) -> Tensor<B, 4> {
        let (scale, shift) = bn.inference_affine();
        let c_out = scale.dims()[0];
        let weight = self.weight.val() * scale.reshape([c_out, 1, 1, 1]);
        B::convolve(x, weight, Some(shift), self.options())
    }

    /// This convolution followed by `bn`: folded into one convolution in inference mode.
    pub fn forward_bn(&self, x: Tensor<B, 4>, bn: &BatchNorm2d<B>, mode: Mode) -> Tensor<B, 4> {
        match mode {
            Mode::Eval => self.forward_folded(x, bn),
            Mode::Train | Mode::BatchStats => bn.forward(self.forward(x), mode),
        }
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new(
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }
}

/// Fully connected layer with PyTorch's [out, in] weight layout.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: ConvBackend> Linear<B> {
    pub fn new(d_in: usize, d_out: usize, rng: &mut StdRng, device: &B::Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            weight: Param::from_tensor(uniform_tensor([d_out, d_in], bound, rng, device)),
            bias: Param::from_tensor(uniform_tensor([d_out], bound, rng, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.weight.val().transpose()) + self.bias.val().unsqueeze_dim(0)
    }
}

/// BatchNorm over the channel axis of NCHW tensors, PyTorch semantics (eps 1e-5, momentum 0.1,
/// unbiased variance in the running estimate).
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    pub running_var: RunningState<Tensor<B, 1>>,
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

impl<B: ConvBackend> BatchNorm2d<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        match mode {
            Mode::Eval => self.forward_eval(x),
            Mode::Train => self.forward_train(x),
            Mode::BatchStats => self.forward_batch_stats(x).0,
        }
    }

    /// Per-channel (scale, shift) equal to this BatchNorm in inference mode.
    pub fn inference_affine(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let inv_std = self.running_var.value().add_scalar(BN_EPS).sqrt().recip();
        let scale = self.weight.val() * inv_std;
        let shift = self.bias.val() - self.running_mean.value() * scale.clone();
        (scale, shift)
    }

    fn forward_eval(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (scale, shift) = self.inference_affine();
        let n = x.dims()[0];
        x * channel_view(scale, n) + channel_view(shift, n)
    }

    fn forward_train(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, _, h, w] = x.dims();
        let count = (n * h * w) as f64;
        let (out, mean, var) = self.forward_batch_stats(x);
        let unbiased = var.detach() * (count / (count - 1.0).max(1.0));
        let running_mean =
            self.running_mean.value_sync() * (1.0 - BN_MOMENTUM) + mean.detach() * BN_MOMENTUM;
        let running_var =
            self.running_var.value_sync() * (1.0 - BN_MOMENTUM) + unbiased * BN_MOMENTUM;
        self.running_mean.update(running_mean);
        self.running_var.update(running_var);
        out
    }

    /// Normalises with the batch's own mean and (biased) variance; returns them too.
    fn forward_batch_stats(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
        B::batch_norm_train(x, self.weight.val(), self.bias.val(), BN_EPS)
    }
}

/// The network's nonlinearity.
pub fn activate<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    activation: Activation,
) -> Tensor<B, D> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Silu => silu(x),
    }
}

/// A per-channel vector as [n, C, 1, 1]. Repeating it over the batch (n·C values) lets the CPU
/// backend take its fast per-row broadcast path instead of a strided loop over every element.
pub fn channel_view<B: Backend>(v: Tensor<B, 1>, n: usize) -> Tensor<B, 4> {
    let c = v.dims()[0];
    v.reshape([1, c, 1, 1]).repeat_dim(0, n)
}
