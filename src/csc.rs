//! The convolutional sparse coding (CSC) layer of SDNet.
//!
//! The layer output is an approximate solution of
//! `z* = argmin_{z ≥ 0} λ‖z‖₁ + ½‖x − A(z)‖²`, where one dictionary `W` [C, M, k, k] serves both
//! directions: synthesis `A(z) = conv_transpose2d(z, W)` and analysis `Aᵀ(r) = conv2d(r, W)`.
//! The solver is unrolled ISTA/FISTA with step `0.9 / L`, `L = λ_max(AᵀA)` from power iteration.

use crate::kernels::ConvBackend;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::nn::{normal_tensor, uniform_tensor};

/// How iterations after the second one extrapolate (the first two are plain ISTA in every variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Solver {
    /// Textbook FISTA (Beck & Teboulle): the gradient is taken at the extrapolated point.
    #[default]
    Fista,
    /// The official SDNet code: momentum extrapolation, but the gradient is taken at the current
    /// iterate instead of the extrapolated point.
    OfficialFista,
    /// Proximal gradient without momentum; its objective never increases.
    Ista,
}

impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fista" => Ok(Self::Fista),
            "official" => Ok(Self::OfficialFista),
            "ista" => Ok(Self::Ista),
            other => Err(format!(
                "unknown CSC solver '{other}' (expected fista, official or ista)"
            )),
        }
    }
}

/// When a power iteration stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StopRule {
    /// `‖v_new − v‖² ≤ tol` (the official criterion).
    VectorChange(f64),
    /// The eigenvalue estimate `‖AᵀA v‖` changed by at most `tol` relatively.
    EstimateChange(f64),
}

/// Settings of a power iteration estimating `L = λ_max(AᵀA)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerIteration {
    pub max_iterations: usize,
    pub stop: StopRule,
}

impl PowerIteration {
    /// What the official code runs before every training mini-batch (warm-started).
    pub const OFFICIAL: Self = Self {
        max_iterations: 50,
        stop: StopRule::VectorChange(1e-5),
    };
    /// Used once per (weights, input size) when the dictionary is frozen. The official code reaches
    /// a converged value only after many warm-started batches; this gets there in one call.
    pub const CALIBRATION: Self = Self {
        max_iterations: 2000,
        stop: StopRule::EstimateChange(1e-9),
    };
}

/// Static shape and solver settings of a CSC layer.
#[derive(Clone, Debug)]
pub struct CscConfig {
    pub channels_in: usize,
    pub channels_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// Sparsity weight λ (official default 0.1).
    pub lambda: f64,
    /// Unrolled iterations (official default 2).
    pub n_steps: usize,
    pub solver: Solver,
}

impl CscConfig {
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Self {
            channels_in,
            channels_out,
            kernel,
            stride,
            padding,
            lambda: 0.1,
            n_steps: 2,
            solver: Solver::default(),
        }
    }

    /// Spatial size of the code for an input of `[h, w]`.
    pub fn code_size(&self, [h, w]: [usize; 2]) -> [usize; 2] {
        let out = |n: usize| (n + 2 * self.padding - self.kernel) / self.stride + 1;
        [out(h), out(w)]
    }

    fn conv_options(&self) -> ConvOptions<2> {
        ConvOptions::new(
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }

    fn transpose_options(&self) -> ConvTransposeOptions<2> {
        let output_padding = if self.stride == 1 { 0 } else { 1 };
        ConvTransposeOptions::new(
            [self.stride, self.stride],
            [self.padding, self.padding],
            [output_padding, output_padding],
            [1, 1],
            1,
        )
    }
}

/// Step sizes computed for a frozen dictionary, per code size, and the power-iteration vectors
/// kept for warm starts. Shared by clones of the layer; reset whenever weights are replaced.
#[derive(Clone, Debug, Default)]
pub struct StepCache(Arc<Mutex<StepState>>);

#[derive(Debug, Default)]
struct StepState {
    steps: HashMap<[usize; 2], f64>,
    warm_vectors: HashMap<[usize; 2], Vec<f32>>,
}

/// λ of one solve for each sample of a batch, overriding the layer's own λ.
#[derive(Clone, Debug)]
pub enum SampleLambda<B: Backend> {
    /// Chosen outside the graph (one value per sample).
    Values(Vec<f64>),
    /// A tensor [N] that may carry gradients (a differentiable λ(x)).
    Tensor(Tensor<B, 1>),
}

/// Code and per-sample statistics of one CSC solve.
pub struct CscOutput<B: Backend> {
    /// Non-negative sparse code [N, C, H', W'].
    pub code: Tensor<B, 4>,
    /// Per-sample squared reconstruction error ‖x − A(z)‖², shape [N].
    pub reconstruction_error: Tensor<B, 1>,
    /// Per-sample ‖z‖₁, shape [N].
    pub l1: Tensor<B, 1>,
}

#[derive(Module, Debug)]
pub struct CscLayer<B: Backend> {
    /// The dictionary [C, M, k, k] (a conv2d weight). Atoms are projected to unit norm on use.
    pub weight: Param<Tensor<B, 4>>,
    #[module(skip)]
    config: CscConfig,
    #[module(skip)]
    cache: StepCache,
}

impl<B: ConvBackend> CscLayer<B> {
    /// Kaiming-uniform dictionary, as the official code initialises it.
    pub fn new(config: CscConfig, rng: &mut StdRng, device: &B::Device) -> Self {
        let fan_in = config.channels_in * config.kernel * config.kernel;
        let bound = (6.0 / fan_in as f64).sqrt();
        let shape = [
            config.channels_out,
            config.channels_in,
            config.kernel,
            config.kernel,
        ];
        Self {
            weight: Param::from_tensor(uniform_tensor(shape, bound, rng, device)),
            config,
            cache: StepCache::default(),
        }
    }

    pub fn config(&self) -> &CscConfig {
        &self.config
    }

    pub fn lambda(&self) -> f64 {
        self.config.lambda
    }

    /// Changes λ; the step size does not depend on λ, so nothing is recomputed.
    pub fn set_lambda(&mut self, lambda: f64) {
        self.config.lambda = lambda;
    }

    pub fn set_steps(&mut self, n_steps: usize, solver: Solver) {
        self.config.n_steps = n_steps;
        self.config.solver = solver;
    }

    /// Replaces the dictionary by its unit-norm projection, keeping the parameter's identity.
    pub fn normalize_in_place(&mut self) {
        let weight = self.weight.clone();
        self.weight = weight.map(|w| {
            let trainable = w.is_require_grad();
            let device = w.device();
            // A fresh leaf tensor: the projection is not part of any graph.
            let normalized = normalize_atoms(w.detach()).into_data();
            Tensor::from_data(normalized, &device).set_require_grad(trainable)
        });
    }

    /// The power-iteration vectors kept for warm starts, by code size (saved with training
    /// checkpoints so that a resumed run continues exactly).
    pub fn warm_vectors(&self) -> Vec<([usize; 2], Vec<f32>)> {
        let state = self.cache.0.lock().expect("step cache poisoned");
        let mut vectors: Vec<_> = state
            .warm_vectors
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        vectors.sort_by_key(|(k, _)| *k);
        vectors
    }

    /// The step sizes computed so far for a frozen dictionary, by code size.
    pub fn cached_step_sizes(&self) -> Vec<([usize; 2], f64)> {
        let state = self.cache.0.lock().expect("step cache poisoned");
        let mut steps: Vec<_> = state.steps.iter().map(|(k, v)| (*k, *v)).collect();
        steps.sort_by_key(|(k, _)| *k);
        steps
    }

    pub fn set_warm_vectors(&mut self, vectors: Vec<([usize; 2], Vec<f32>)>) {
        let mut state = self.cache.0.lock().expect("step cache poisoned");
        state.warm_vectors = vectors.into_iter().collect();
    }

    /// Forgets cached step sizes (call after replacing the weights).
    pub fn reset_step_cache(&mut self) {
        self.cache = StepCache::default();
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_lambda(x, None)
    }

    /// Solves with a λ per sample when `lambda` is given, else with the layer's λ.
    pub fn forward_lambda(
        &self,
        x: Tensor<B, 4>,
        lambda: Option<&SampleLambda<B>>,
    ) -> Tensor<B, 4> {
        let dict = self.dictionary();
        let step = self.step_size(&dict, spatial(&x));
        let threshold = self.threshold(&x, lambda, step);
        self.solve(x, &dict, step, threshold)
    }

    /// Solves and also returns the per-sample reconstruction error and ‖z‖₁.
    pub fn forward_with_stats(&self, x: Tensor<B, 4>) -> CscOutput<B> {
        self.forward_with_stats_lambda(x, None)
    }

    /// [`Self::forward_with_stats`] with an optional λ per sample.
    pub fn forward_with_stats_lambda(
        &self,
        x: Tensor<B, 4>,
        lambda: Option<&SampleLambda<B>>,
    ) -> CscOutput<B> {
        let dict = self.dictionary();
        let step = self.step_size(&dict, spatial(&x));
        let threshold = self.threshold(&x, lambda, step);
        let code = self.solve(x.clone(), &dict, step, threshold);
        let residual = x - self.synthesize(code.clone(), &dict);
        CscOutput {
            reconstruction_error: per_sample_sum(residual.square()),
            l1: per_sample_sum(code.clone().abs()),
            code,
        }
    }

    /// The Lasso objective `λ‖z‖₁ + ½‖x − A(z)‖²` summed over the batch.
    pub fn objective(&self, x: Tensor<B, 4>, code: Tensor<B, 4>) -> f64 {
        let dict = self.dictionary();
        let residual = x - self.synthesize(code.clone(), &dict);
        let fidelity: f64 = residual.square().sum().into_scalar().elem();
        let sparsity: f64 = code.abs().sum().into_scalar().elem();
        self.config.lambda * sparsity + 0.5 * fidelity
    }

    /// `A(z)` with the unit-norm dictionary.
    pub fn reconstruct(&self, code: Tensor<B, 4>) -> Tensor<B, 4> {
        self.synthesize(code, &self.dictionary())
    }

    /// `Aᵀ(r)` with the unit-norm dictionary.
    pub fn analyze(&self, r: Tensor<B, 4>) -> Tensor<B, 4> {
        self.analyze_with(r, &self.dictionary())
    }

    /// The step size `0.9 / L` for inputs of spatial size `[h, w]`.
    pub fn step_size_for(&self, input_hw: [usize; 2]) -> f64 {
        self.step_size(&self.dictionary(), input_hw)
    }

    /// `L = λ_max(AᵀA)` by power iteration from a seeded random start (no caching).
    pub fn lipschitz(&self, input_hw: [usize; 2], settings: PowerIteration) -> f64 {
        let code_hw = self.config.code_size(input_hw);
        let dict = self.dictionary().detach();
        let (l, _) = self.power_iteration(&dict, code_hw, None, settings);
        l
    }

    /// Unit-norm atoms. The projection passes gradients straight through, as the official code's
    /// in-place renormalisation does.
    fn dictionary(&self) -> Tensor<B, 4> {
        let w = self.weight.val();
        let normalized = normalize_atoms(w.clone().detach());
        if w.is_require_grad() {
            w.clone() - w.detach() + normalized
        } else {
            normalized
        }
    }

    fn synthesize(&self, code: Tensor<B, 4>, dict: &Tensor<B, 4>) -> Tensor<B, 4> {
        B::convolve_transpose(code, dict.clone(), self.config.transpose_options())
    }

    fn analyze_with(&self, r: Tensor<B, 4>, dict: &Tensor<B, 4>) -> Tensor<B, 4> {
        B::convolve(r, dict.clone(), None, self.config.conv_options())
    }

    /// The soft threshold `λ·step`: the layer's scalar, or one value per sample as [N, 1, 1, 1].
    fn threshold(
        &self,
        x: &Tensor<B, 4>,
        lambda: Option<&SampleLambda<B>>,
        step: f64,
    ) -> Threshold<B> {
        let n = x.dims()[0];
        match lambda {
            None => Threshold::Scalar(self.config.lambda * step),
            Some(SampleLambda::Values(values)) => {
                assert_eq!(values.len(), n, "one λ per sample");
                // The same f64 product as the scalar path, so a constant λ gives the same code.
                let t: Vec<f32> = values.iter().map(|l| (l * step) as f32).collect();
                Threshold::Sample(Tensor::from_data(
                    TensorData::new(t, [n, 1, 1, 1]),
                    &x.device(),
                ))
            }
            Some(SampleLambda::Tensor(values)) => {
                assert_eq!(values.dims()[0], n, "one λ per sample");
                Threshold::Sample(values.clone().mul_scalar(step).reshape([n, 1, 1, 1]))
            }
        }
    }

    fn solve(
        &self,
        x: Tensor<B, 4>,
        dict: &Tensor<B, 4>,
        step: f64,
        threshold: Threshold<B>,
    ) -> Tensor<B, 4> {
        let prox = |u: Tensor<B, 4>| match &threshold {
            Threshold::Scalar(t) => relu(u.sub_scalar(*t)),
            Threshold::Sample(t) => relu(u - t.clone()),
        };
        let gradient_step = |z: Tensor<B, 4>| {
            let residual = x.clone() - self.synthesize(z.clone(), dict);
            z + self.analyze_with(residual, dict).mul_scalar(step)
        };

        let mut z = prox(self.analyze_with(x.clone(), dict).mul_scalar(step));
        if self.config.n_steps < 2 {
            return z;
        }
        let mut z_prev = z.clone();
        z = prox(gradient_step(z));
        let mut t = (1.0 + 5f64.sqrt()) / 2.0;
        for _ in 2..self.config.n_steps {
            let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
            let momentum = (t - 1.0) / t_next;
            let extrapolated = z.clone() + (z.clone() - z_prev.clone()).mul_scalar(momentum);
            let z_next = match self.config.solver {
                Solver::Fista => prox(gradient_step(extrapolated)),
                Solver::OfficialFista => {
                    let residual = x.clone() - self.synthesize(z.clone(), dict);
                    prox(extrapolated + self.analyze_with(residual, dict).mul_scalar(step))
                }
                Solver::Ista => prox(gradient_step(z.clone())),
            };
            z_prev = z;
            z = z_next;
            t = t_next;
        }
        z
    }

    /// `0.9 / L`. With a trainable dictionary it is recomputed on every call from a warm start
    /// (official behaviour); with a frozen one it is computed once per input size and cached.
    fn step_size(&self, dict: &Tensor<B, 4>, input_hw: [usize; 2]) -> f64 {
        let code_hw = self.config.code_size(input_hw);
        let trainable = self.weight.val().is_require_grad();
        let mut state = self.cache.0.lock().expect("step cache poisoned");
        if !trainable {
            if let Some(step) = state.steps.get(&code_hw) {
                return *step;
            }
        }
        let settings = if trainable {
            PowerIteration::OFFICIAL
        } else {
            PowerIteration::CALIBRATION
        };
        let warm = state.warm_vectors.get(&code_hw).cloned();
        let (l, vector) = self.power_iteration(&dict.clone().detach(), code_hw, warm, settings);
        let step = 0.9 / l;
        state.warm_vectors.insert(code_hw, vector);
        if !trainable {
            state.steps.insert(code_hw, step);
        }
        step
    }

    fn power_iteration(
        &self,
        dict: &Tensor<B, 4>,
        [h, w]: [usize; 2],
        warm: Option<Vec<f32>>,
        settings: PowerIteration,
    ) -> (f64, Vec<f32>) {
        let device = dict.device();
        let shape = [1, self.config.channels_out, h, w];
        let mut v = match warm {
            Some(values) => Tensor::from_data(TensorData::new(values, shape), &device),
            None => {
                let mut rng = StdRng::seed_from_u64(0x5d_7e7 ^ (h * 1000 + w) as u64);
                normal_tensor(shape, &mut rng, &device)
            }
        };
        let mut estimate = 0.0;
        for _ in 0..settings.max_iterations {
            let next = self.analyze_with(self.synthesize(v.clone(), dict), dict);
            let norm: f64 = next.clone().square().sum().sqrt().into_scalar().elem();
            let next = next.div_scalar(norm.max(1e-12));
            let converged = match settings.stop {
                StopRule::VectorChange(tol) => {
                    let change: f64 = (next.clone() - v).square().sum().into_scalar().elem();
                    change <= tol
                }
                StopRule::EstimateChange(tol) => (norm - estimate).abs() <= tol * norm,
            };
            v = next;
            estimate = norm;
            if converged {
                break;
            }
        }
        let l: f64 = self
            .synthesize(v.clone(), dict)
            .square()
            .sum()
            .into_scalar()
            .elem();
        let vector = v
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 data");
        (l, vector)
    }
}

enum Threshold<B: Backend> {
    Scalar(f64),
    Sample(Tensor<B, 4>),
}

fn spatial<B: ConvBackend>(x: &Tensor<B, 4>) -> [usize; 2] {
    let [_, _, h, w] = x.dims();
    [h, w]
}

/// Projects every atom `W[c]` (flattened over M·k·k) to unit ℓ2 norm, clamping norms at 1e-12.
pub fn normalize_atoms<B: ConvBackend>(w: Tensor<B, 4>) -> Tensor<B, 4> {
    let [c, m, kh, kw] = w.dims();
    let flat = w.reshape([c, m * kh * kw]);
    let norms = flat.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    (flat / norms).reshape([c, m, kh, kw])
}

fn per_sample_sum<B: ConvBackend>(t: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = t.dims();
    t.reshape([n, c * h * w]).sum_dim(1).reshape([n])
}
