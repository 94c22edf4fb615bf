//! One classifier type for the whole zoo: normalisation → stem → stages of blocks → [BN →
//! activation] → pool → linear.

use crate::kernels::ConvBackend;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_store::ModuleSnapshot;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::csc::{CscConfig, CscLayer, CscOutput, SampleLambda, Solver};
use crate::models::blocks::{
    BasicBlock, Block, BlockStyle, Bottleneck, ConvLayer, ConvShape, LambdaFeed, PreActBlock,
    PreActStyle, Projection, Residual, ShortcutInput, Stem, StemStyle,
};
use crate::models::spec::{Arch, Domain, ModelSpec, Normalization};
use crate::nn::{activate, channel_view, BatchNorm2d, Conv2d, Linear, Mode};

#[derive(Module, Debug)]
pub struct Network<B: Backend> {
    pub stem: Stem<B>,
    pub stages: Vec<Vec<Block<B>>>,
    /// BatchNorm before the activation and pooling of pre-activation networks.
    pub head: Option<BatchNorm2d<B>>,
    pub linear: Linear<B>,
    #[module(skip)]
    spec: ModelSpec,
}

/// Which CSC layers a λ change applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LambdaTarget {
    /// The first CSC layer only (what the paper's test-time defense changes).
    First,
    /// Every CSC layer.
    All,
}

impl<B: ConvBackend> Network<B> {
    /// A randomly initialised network; the same seed gives the same weights on every backend.
    pub fn new(spec: &ModelSpec, seed: u64, device: &B::Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let stem = build_stem(spec, &mut rng, device);
        let widths = spec.stage_widths();
        let inner = spec.bottleneck_widths();
        let mut c_in = spec.stem_width();
        let mut stages = Vec::new();
        for (index, (&n_blocks, &c_out)) in spec.arch.blocks().iter().zip(&widths).enumerate() {
            let first_stride = if index == 0 { 1 } else { 2 };
            let mut blocks = Vec::new();
            for b in 0..n_blocks {
                let stride = if b == 0 { first_stride } else { 1 };
                let shape = BlockShape {
                    c_in,
                    c_out,
                    inner: inner.get(index).copied().unwrap_or(c_out),
                    stride,
                };
                blocks.push(build_block(spec, shape, &mut rng, device));
                c_in = c_out;
            }
            stages.push(blocks);
        }
        let head = (spec.arch.is_preactivation()
            && !matches!(spec.arch, Arch::PreactResnet { .. }))
        .then(|| BatchNorm2d::new(c_in, device));
        let linear = Linear::new(c_in, spec.num_classes, &mut rng, device);
        Self {
            stem,
            stages,
            head,
            linear,
            spec: spec.clone(),
        }
    }

    /// A network of this shape to load a checkpoint into: its tensors are zeros (drawing
    /// weights that the checkpoint replaces would take seconds for the largest models).
    pub fn for_loading(spec: &ModelSpec, device: &B::Device) -> Self {
        crate::nn::shapes_only(|| Self::new(spec, 0, device))
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Logits for images in [0,1], in inference mode (BatchNorm running statistics).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_mode(images, Mode::Eval)
    }

    /// Logits with BatchNorm in training mode (batch statistics, running-stat updates).
    pub fn forward_train(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_mode(images, Mode::Train)
    }

    pub fn forward_mode(&self, images: Tensor<B, 4>, mode: Mode) -> Tensor<B, 2> {
        self.forward_lambdas(images, mode, &[])
    }

    /// Logits with a λ per sample for the CSC layers given (forward order, see
    /// [`Self::csc_layer_names`]); the others keep their own λ.
    pub fn forward_lambdas(
        &self,
        images: Tensor<B, 4>,
        mode: Mode,
        lambdas: &[Option<SampleLambda<B>>],
    ) -> Tensor<B, 2> {
        let mut feed = LambdaFeed::new(lambdas);
        let mut x = self.stem.forward(self.normalize(images), mode, &mut feed);
        for block in self.stages.iter().flatten() {
            x = block.forward(x, mode, &mut feed);
        }
        if let Some(bn) = &self.head {
            x = activate(bn.forward(x, mode), self.spec.arch.activation());
        }
        let [n, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([n, c]);
        self.linear.forward(pooled)
    }

    /// Code and per-sample statistics of the first CSC layer (the stem) on these images.
    /// `None` for networks without CSC layers.
    pub fn first_csc_output(&self, images: Tensor<B, 4>) -> Option<CscOutput<B>> {
        self.first_csc_output_lambda(images, None)
    }

    /// [`Self::first_csc_output`] with an optional λ per sample.
    pub fn first_csc_output_lambda(
        &self,
        images: Tensor<B, 4>,
        lambda: Option<&SampleLambda<B>>,
    ) -> Option<CscOutput<B>> {
        match &self.stem.conv {
            ConvLayer::Sparse(csc) => {
                Some(csc.forward_with_stats_lambda(self.normalize(images), lambda))
            }
            ConvLayer::Plain(_) => None,
        }
    }

    /// The names of the CSC layers in forward order, as in the official state dicts
    /// (`layer0`, `layer1.0.conv1`, …): what schedules name layers by.
    pub fn csc_layer_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.stem.conv.csc().is_some() {
            names.push("layer0".to_string());
        }
        if self.stem.pool_csc.is_some() {
            names.push("layer0.pool".to_string());
        }
        for (stage, blocks) in self.stages.iter().enumerate() {
            for (index, block) in blocks.iter().enumerate() {
                let Some(block) = block.basic() else { continue };
                for (conv, name) in [(&block.conv1, "conv1"), (&block.conv2, "conv2")] {
                    if conv.csc().is_some() {
                        names.push(format!("layer{}.{index}.{name}", stage + 1));
                    }
                }
            }
        }
        names
    }

    /// λ of each CSC layer, in forward order.
    pub fn csc_lambdas(&self) -> Vec<f64> {
        let mut lambdas = Vec::new();
        if let Some(csc) = self.stem.conv.csc() {
            lambdas.push(csc.lambda());
        }
        if let Some(csc) = &self.stem.pool_csc {
            lambdas.push(csc.lambda());
        }
        for block in self.stages.iter().flatten().filter_map(Block::basic) {
            for conv in [&block.conv1, &block.conv2] {
                if let Some(csc) = conv.csc() {
                    lambdas.push(csc.lambda());
                }
            }
        }
        lambdas
    }

    /// Sets λ of CSC layer `index` (forward order).
    pub fn set_layer_lambda(&mut self, index: usize, lambda: f64) {
        self.csc_layers_mut()[index].set_lambda(lambda);
    }

    /// Every CSC layer in forward order.
    pub fn csc_layers_mut(&mut self) -> Vec<&mut CscLayer<B>> {
        let mut layers = Vec::new();
        if let Some(csc) = self.stem.conv.csc_mut() {
            layers.push(csc);
        }
        if let Some(csc) = self.stem.pool_csc.as_mut() {
            layers.push(csc);
        }
        for block in self.stages.iter_mut().flatten() {
            layers.extend(block.csc_layers_mut());
        }
        layers
    }

    /// Sets λ of the targeted CSC layers; returns how many layers changed.
    pub fn set_lambda(&mut self, target: LambdaTarget, lambda: f64) -> usize {
        let mut layers = self.csc_layers_mut();
        if target == LambdaTarget::First {
            layers.truncate(1);
        }
        for layer in &mut layers {
            layer.set_lambda(lambda);
        }
        let changed = layers.len();
        if target == LambdaTarget::All {
            self.spec.csc.lambda = lambda;
        }
        changed
    }

    /// Sets the number of unrolled iterations and the extrapolation of every CSC layer.
    pub fn set_csc_steps(&mut self, n_steps: usize, solver: Solver) {
        for layer in self.csc_layers_mut() {
            layer.set_steps(n_steps, solver);
        }
        self.spec.csc.n_steps = n_steps;
        self.spec.csc.solver = solver;
    }

    pub fn csc_count(&self) -> usize {
        let stem =
            usize::from(self.stem.conv.csc().is_some()) + usize::from(self.stem.pool_csc.is_some());
        let blocks: usize = self
            .stages
            .iter()
            .flatten()
            .filter_map(Block::basic)
            .map(|b| usize::from(b.conv1.csc().is_some()) + usize::from(b.conv2.csc().is_some()))
            .sum();
        stem + blocks
    }

    /// Forget cached CSC step sizes (weights were replaced).
    pub fn reset_step_caches(&mut self) {
        for layer in self.csc_layers_mut() {
            layer.reset_step_cache();
        }
    }

    /// Projects every CSC dictionary atom to unit norm in place, as the official code does to the
    /// parameter before each forward (so that optimizer steps act on unit-norm atoms).
    pub fn normalize_dictionaries(&mut self) {
        for layer in self.csc_layers_mut() {
            layer.normalize_in_place();
        }
    }

    /// Warm-start vectors of every CSC layer, in forward order.
    pub fn csc_warm_state(&mut self) -> Vec<Vec<([usize; 2], Vec<f32>)>> {
        self.csc_layers_mut()
            .iter()
            .map(|l| l.warm_vectors())
            .collect()
    }

    pub fn set_csc_warm_state(&mut self, state: Vec<Vec<([usize; 2], Vec<f32>)>>) {
        for (layer, vectors) in self.csc_layers_mut().into_iter().zip(state) {
            layer.set_warm_vectors(vectors);
        }
    }

    /// Gives every parameter an id that depends only on its position in the network, so that
    /// optimizer state saved by one process applies to the same network rebuilt by another.
    pub fn with_positional_ids(self) -> Self {
        self.map(&mut PositionalIds(0))
    }

    /// Number of trainable parameters (BatchNorm running statistics excluded).
    pub fn trainable_params(&self) -> usize {
        self.collect(None, None, true)
            .iter()
            .filter(|s| !s.full_path().contains("running_"))
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    /// Replaces the normalisation applied inside the model.
    pub fn set_normalization(&mut self, normalization: Normalization) {
        self.spec.set_normalization(normalization);
    }

    fn normalize(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let normalization = self.spec.normalization_used();
        if normalization.is_identity() {
            return images;
        }
        let Normalization { mean, std } = normalization;
        let device = images.device();
        let n = images.dims()[0];
        // (x − mean) / std as one multiply-add per channel.
        let scale: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        let shift: Vec<f32> = mean.iter().zip(&std).map(|(m, s)| -m / s).collect();
        let scale = Tensor::<B, 1>::from_data(TensorData::new(scale, [3]), &device);
        let shift = Tensor::<B, 1>::from_data(TensorData::new(shift, [3]), &device);
        images * channel_view(scale, n) + channel_view(shift, n)
    }
}

struct PositionalIds(u64);

impl<B: burn::tensor::backend::Backend> ModuleMapper<B> for PositionalIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, value, mapper) = param.consume();
        self.0 += 1;
        Param::from_mapped_value(ParamId::from(self.0), value, mapper)
    }
}

fn build_stem<B: ConvBackend>(spec: &ModelSpec, rng: &mut StdRng, device: &B::Device) -> Stem<B> {
    let width = spec.stem_width();
    let shape = match spec.domain {
        Domain::Cifar => ConvShape {
            c_in: 3,
            c_out: width,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        Domain::Imagenet => ConvShape {
            c_in: 3,
            c_out: width,
            kernel: 7,
            stride: 2,
            padding: 3,
        },
    };
    let imagenet = spec.domain == Domain::Imagenet;
    let post = |relu| StemStyle {
        relu,
        max_pool: imagenet,
    };
    let (conv, style) = match spec.arch {
        Arch::Resnet { .. } | Arch::CifarResnet { .. } | Arch::BottleneckResnet { .. } => {
            (ConvLayer::plain(shape, rng, device), post(true))
        }
        Arch::Sdnet { .. } => (
            ConvLayer::sparse(shape, &spec.csc, rng, device),
            post(false),
        ),
        Arch::SdnetAll { .. } => (
            ConvLayer::sparse(shape, &spec.csc, rng, device),
            StemStyle {
                relu: false,
                max_pool: false,
            },
        ),
        Arch::WideResnet { .. } | Arch::DmWideResnet { .. } | Arch::PreactResnet { .. } => (
            ConvLayer::plain(shape, rng, device),
            StemStyle {
                relu: false,
                max_pool: false,
            },
        ),
    };
    let bn = (!spec.arch.is_preactivation()).then(|| BatchNorm2d::new(width, device));
    let pool_csc = (imagenet && matches!(spec.arch, Arch::SdnetAll { .. })).then(|| {
        let mut config = CscConfig::new(width, width, 3, 2, 1);
        config.lambda = spec.csc.lambda;
        config.n_steps = spec.csc.n_steps;
        config.solver = spec.csc.solver;
        CscLayer::new(config, rng, device)
    });
    Stem {
        conv,
        bn,
        pool_csc,
        style,
    }
}

/// Channels and stride of one block; `inner` is the middle width of a Bottleneck.
#[derive(Clone, Copy)]
struct BlockShape {
    c_in: usize,
    c_out: usize,
    inner: usize,
    stride: usize,
}

impl BlockShape {
    fn reshapes(&self) -> bool {
        self.stride != 1 || self.c_in != self.c_out
    }
}

fn build_block<B: ConvBackend>(
    spec: &ModelSpec,
    shape: BlockShape,
    rng: &mut StdRng,
    device: &B::Device,
) -> Block<B> {
    match spec.arch {
        Arch::WideResnet { .. } | Arch::DmWideResnet { .. } | Arch::PreactResnet { .. } => {
            Block::PreAct(build_preact_block(spec, shape, rng, device))
        }
        Arch::BottleneckResnet { .. } => Block::Bottleneck(build_bottleneck(shape, rng, device)),
        _ => Block::Basic(build_basic_block(spec, shape, rng, device)),
    }
}

fn build_basic_block<B: ConvBackend>(
    spec: &ModelSpec,
    shape: BlockShape,
    rng: &mut StdRng,
    device: &B::Device,
) -> BasicBlock<B> {
    let BlockShape {
        c_in,
        c_out,
        stride,
        ..
    } = shape;
    let shape1 = ConvShape {
        c_in,
        c_out,
        kernel: 3,
        stride,
        padding: 1,
    };
    let shape2 = ConvShape {
        c_in: c_out,
        c_out,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let reshapes = shape.reshapes();
    let sparse = matches!(spec.arch, Arch::SdnetAll { .. });
    let (conv1, conv2) = if sparse {
        (
            ConvLayer::sparse(shape1, &spec.csc, rng, device),
            ConvLayer::sparse(shape2, &spec.csc, rng, device),
        )
    } else {
        (
            ConvLayer::plain(shape1, rng, device),
            ConvLayer::plain(shape2, rng, device),
        )
    };
    let bn1 = BatchNorm2d::new(c_out, device);
    let bn2 = BatchNorm2d::new(c_out, device);
    let (residual, projected) = match spec.arch {
        Arch::CifarResnet { .. } if reshapes => (Residual::PadChannels { pad: c_out / 4 }, false),
        Arch::SdnetAll {
            shortcut: false, ..
        } => (Residual::None, false),
        _ => (Residual::Identity, reshapes),
    };
    let shortcut = projected.then(|| Projection {
        conv: Conv2d::new(c_in, c_out, 1, stride, 0, rng, device),
        bn: BatchNorm2d::new(c_out, device),
    });
    BasicBlock {
        conv1,
        bn1,
        conv2,
        bn2,
        shortcut,
        style: BlockStyle {
            inner_relu: !sparse,
            residual,
        },
    }
}

fn build_preact_block<B: ConvBackend>(
    spec: &ModelSpec,
    shape: BlockShape,
    rng: &mut StdRng,
    device: &B::Device,
) -> PreActBlock<B> {
    let BlockShape {
        c_in,
        c_out,
        stride,
        ..
    } = shape;
    // DeepMind pads (0, 1) at stride 2 where the others pad (1, 1).
    let same_padding = matches!(spec.arch, Arch::DmWideResnet { .. }) && stride == 2;
    let (padding, pad_bottom_right) = if same_padding { (0, 1) } else { (1, 0) };
    let shortcut_input = match spec.arch {
        Arch::PreactResnet { .. } => ShortcutInput::Raw,
        _ => ShortcutInput::Activated,
    };
    PreActBlock {
        bn1: BatchNorm2d::new(c_in, device),
        conv1: Conv2d::new(c_in, c_out, 3, stride, padding, rng, device),
        bn2: BatchNorm2d::new(c_out, device),
        conv2: Conv2d::new(c_out, c_out, 3, 1, 1, rng, device),
        shortcut: shape
            .reshapes()
            .then(|| Conv2d::new(c_in, c_out, 1, stride, 0, rng, device)),
        style: PreActStyle {
            activation: spec.arch.activation(),
            shortcut_input,
            pad_bottom_right,
        },
    }
}

fn build_bottleneck<B: ConvBackend>(
    shape: BlockShape,
    rng: &mut StdRng,
    device: &B::Device,
) -> Bottleneck<B> {
    let BlockShape {
        c_in,
        c_out,
        inner,
        stride,
    } = shape;
    Bottleneck {
        conv1: Conv2d::new(c_in, inner, 1, 1, 0, rng, device),
        bn1: BatchNorm2d::new(inner, device),
        conv2: Conv2d::new(inner, inner, 3, stride, 1, rng, device),
        bn2: BatchNorm2d::new(inner, device),
        conv3: Conv2d::new(inner, c_out, 1, 1, 0, rng, device),
        bn3: BatchNorm2d::new(c_out, device),
        shortcut: shape.reshapes().then(|| Projection {
            conv: Conv2d::new(c_in, c_out, 1, stride, 0, rng, device),
            bn: BatchNorm2d::new(c_out, device),
        }),
    }
}
