//! The pieces every network is assembled from: a convolution that is either plain or sparse
//! coding, the stem, and the residual blocks (post-activation basic blocks, pre-activation
//! blocks, bottlenecks).

use crate::kernels::ConvBackend;
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::PadMode;
use burn::tensor::Tensor;
use rand::rngs::StdRng;

use crate::csc::{CscConfig, CscLayer, SampleLambda};
use crate::models::spec::Activation;
use crate::models::spec::CscSettings;
use crate::nn::{activate, BatchNorm2d, Conv2d, Mode};

/// A convolution: a plain one, or a CSC layer solving for a sparse code.
#[derive(Module, Debug)]
pub enum ConvLayer<B: Backend> {
    Plain(Conv2d<B>),
    Sparse(CscLayer<B>),
}

/// Shape of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl<B: ConvBackend> ConvLayer<B> {
    pub fn plain(shape: ConvShape, rng: &mut StdRng, device: &B::Device) -> Self {
        let ConvShape {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
        } = shape;
        Self::Plain(Conv2d::new(
            c_in, c_out, kernel, stride, padding, rng, device,
        ))
    }

    pub fn sparse(
        shape: ConvShape,
        settings: &CscSettings,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        let mut config = CscConfig::new(
            shape.c_in,
            shape.c_out,
            shape.kernel,
            shape.stride,
            shape.padding,
        );
        config.lambda = settings.lambda;
        config.n_steps = settings.n_steps;
        config.solver = settings.solver;
        Self::Sparse(CscLayer::new(config, rng, device))
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_fed(x, &mut LambdaFeed::default())
    }

    /// A CSC layer takes the next per-sample λ of `lambdas` (if any); plain ones take none.
    fn forward_fed(&self, x: Tensor<B, 4>, lambdas: &mut LambdaFeed<'_, B>) -> Tensor<B, 4> {
        match self {
            Self::Plain(conv) => conv.forward(x),
            Self::Sparse(csc) => csc.forward_lambda(x, lambdas.next()),
        }
    }

    /// This convolution followed by `bn`; plain convolutions fold inference-mode BatchNorm in.
    pub fn forward_bn(
        &self,
        x: Tensor<B, 4>,
        bn: &BatchNorm2d<B>,
        mode: Mode,
        lambdas: &mut LambdaFeed<'_, B>,
    ) -> Tensor<B, 4> {
        match (self, mode) {
            (Self::Plain(conv), Mode::Eval) => conv.forward_folded(x, bn),
            _ => bn.forward(self.forward_fed(x, lambdas), mode),
        }
    }

    pub fn csc(&self) -> Option<&CscLayer<B>> {
        match self {
            Self::Sparse(csc) => Some(csc),
            Self::Plain(_) => None,
        }
    }

    pub fn csc_mut(&mut self) -> Option<&mut CscLayer<B>> {
        match self {
            Self::Sparse(csc) => Some(csc),
            Self::Plain(_) => None,
        }
    }
}

/// Per-sample λ for the CSC layers of a network, in forward order; layers past the end (or
/// given `None`) use their own λ.
pub struct LambdaFeed<'a, B: Backend> {
    layers: &'a [Option<SampleLambda<B>>],
    position: usize,
}

impl<B: Backend> Default for LambdaFeed<'_, B> {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl<'a, B: Backend> LambdaFeed<'a, B> {
    pub fn new(layers: &'a [Option<SampleLambda<B>>]) -> Self {
        Self {
            layers,
            position: 0,
        }
    }

    fn next(&mut self) -> Option<&'a SampleLambda<B>> {
        let item = self.layers.get(self.position).and_then(Option::as_ref);
        self.position += 1;
        item
    }
}

/// What follows the first convolution of the stem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StemStyle {
    pub relu: bool,
    pub max_pool: bool,
}

/// conv → [BN → [ReLU] → [max-pool | CSC stride 2]]; pre-activation networks have the
/// convolution alone.
#[derive(Module, Debug)]
pub struct Stem<B: Backend> {
    pub conv: ConvLayer<B>,
    pub bn: Option<BatchNorm2d<B>>,
    /// sdnet-all on ImageNet replaces the max-pool with a stride-2 CSC layer.
    pub pool_csc: Option<CscLayer<B>>,
    #[module(skip)]
    pub style: StemStyle,
}

impl<B: ConvBackend> Stem<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        mode: Mode,
        lambdas: &mut LambdaFeed<'_, B>,
    ) -> Tensor<B, 4> {
        let mut out = match &self.bn {
            Some(bn) => self.conv.forward_bn(x, bn, mode, lambdas),
            None => self.conv.forward_fed(x, lambdas),
        };
        if self.style.relu {
            out = relu(out);
        }
        if self.style.max_pool {
            out = max_pool2d(out, [3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        if let Some(csc) = &self.pool_csc {
            out = csc.forward_lambda(out, lambdas.next());
        }
        out
    }
}

/// The residual path of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    /// Add the input unchanged (or through `projection` when present).
    Identity,
    /// He et al. option A: subsample by 2 and zero-pad `pad` channels on each side.
    PadChannels { pad: usize },
    /// No residual connection at all (sdnet-all without shortcut).
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockStyle {
    /// ReLU between the two convolutions (ResNet); SDNet-all relies on the non-negative codes.
    pub inner_relu: bool,
    pub residual: Residual,
}

/// 1×1 convolution + BN on the shortcut when the shape changes.
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm2d<B>,
}

/// Two 3×3 convolutions with BatchNorm and a residual connection.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    pub conv1: ConvLayer<B>,
    pub bn1: BatchNorm2d<B>,
    pub conv2: ConvLayer<B>,
    pub bn2: BatchNorm2d<B>,
    pub shortcut: Option<Projection<B>>,
    #[module(skip)]
    pub style: BlockStyle,
}

impl<B: ConvBackend> BasicBlock<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        mode: Mode,
        lambdas: &mut LambdaFeed<'_, B>,
    ) -> Tensor<B, 4> {
        let mut out = self.conv1.forward_bn(x.clone(), &self.bn1, mode, lambdas);
        if self.style.inner_relu {
            out = relu(out);
        }
        out = self.conv2.forward_bn(out, &self.bn2, mode, lambdas);
        match self.style.residual {
            Residual::None => out,
            Residual::Identity => {
                let skip = match &self.shortcut {
                    Some(p) => p.conv.forward_bn(x, &p.bn, mode),
                    None => x,
                };
                relu(out + skip)
            }
            Residual::PadChannels { pad } => relu(out + pad_channels(x, pad)),
        }
    }

    pub fn csc_layers_mut(&mut self) -> Vec<&mut CscLayer<B>> {
        [&mut self.conv1, &mut self.conv2]
            .into_iter()
            .filter_map(|c| c.csc_mut())
            .collect()
    }
}

/// `x[:, :, ::2, ::2]` zero-padded with `pad` channels before and after.
fn pad_channels<B: ConvBackend>(x: Tensor<B, 4>, pad: usize) -> Tensor<B, 4> {
    let sub = max_pool2d(x, [1, 1], [2, 2], [0, 0], [1, 1], false);
    let [n, _, h, w] = sub.dims();
    let zeros = Tensor::zeros([n, pad, h, w], &sub.device());
    Tensor::cat(vec![zeros.clone(), sub, zeros], 1)
}

/// Where a pre-activation block's shortcut convolution reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortcutInput {
    /// The block input after BatchNorm and activation (WideResNets).
    Activated,
    /// The block input itself (RobustBench's PreActResNet-18).
    Raw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreActStyle {
    pub activation: Activation,
    pub shortcut_input: ShortcutInput,
    /// Zero rows and columns added (bottom, right) before the first convolution, which then
    /// has no padding of its own: DeepMind's SAME padding at stride 2.
    pub pad_bottom_right: usize,
}

/// BN → act → conv → BN → act → conv, plus the input (or a 1×1 convolution of it).
#[derive(Module, Debug)]
pub struct PreActBlock<B: Backend> {
    pub bn1: BatchNorm2d<B>,
    pub conv1: Conv2d<B>,
    pub bn2: BatchNorm2d<B>,
    pub conv2: Conv2d<B>,
    pub shortcut: Option<Conv2d<B>>,
    #[module(skip)]
    pub style: PreActStyle,
}

impl<B: ConvBackend> PreActBlock<B> {
    pub fn forward(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        let act = self.style.activation;
        let pre = activate(self.bn1.forward(x.clone(), mode), act);
        let skip = match (&self.shortcut, self.style.shortcut_input) {
            (Some(conv), ShortcutInput::Activated) => conv.forward(pre.clone()),
            (Some(conv), ShortcutInput::Raw) => conv.forward(x),
            (None, _) => x,
        };
        let pad = self.style.pad_bottom_right;
        let pre = if pad > 0 {
            pre.pad((0, pad, 0, pad), PadMode::Constant(0.0))
        } else {
            pre
        };
        let out = activate(self.conv1.forward_bn(pre, &self.bn2, mode), act);
        self.conv2.forward(out) + skip
    }
}

/// torchvision's Bottleneck: 1×1 → 3×3 (stride) → 1×1, BatchNorm after each, ReLU after the
/// first two and after the residual sum.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm2d<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm2d<B>,
    pub conv3: Conv2d<B>,
    pub bn3: BatchNorm2d<B>,
    pub shortcut: Option<Projection<B>>,
}

impl<B: ConvBackend> Bottleneck<B> {
    pub fn forward(&self, x: Tensor<B, 4>, mode: Mode) -> Tensor<B, 4> {
        let out = relu(self.conv1.forward_bn(x.clone(), &self.bn1, mode));
        let out = relu(self.conv2.forward_bn(out, &self.bn2, mode));
        let out = self.conv3.forward_bn(out, &self.bn3, mode);
        let skip = match &self.shortcut {
            Some(p) => p.conv.forward_bn(x, &p.bn, mode),
            None => x,
        };
        relu(out + skip)
    }
}

/// One residual block of any family.
// A network holds tens of blocks, each a few kilobytes: boxing the variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block<B: Backend> {
    Basic(BasicBlock<B>),
    PreAct(PreActBlock<B>),
    Bottleneck(Bottleneck<B>),
}

impl<B: ConvBackend> Block<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        mode: Mode,
        lambdas: &mut LambdaFeed<'_, B>,
    ) -> Tensor<B, 4> {
        match self {
            Self::Basic(block) => block.forward(x, mode, lambdas),
            Self::PreAct(block) => block.forward(x, mode),
            Self::Bottleneck(block) => block.forward(x, mode),
        }
    }

    /// The block's two 3×3 convolutions when it is a basic block (the only kind with CSC layers).
    pub fn basic(&self) -> Option<&BasicBlock<B>> {
        match self {
            Self::Basic(block) => Some(block),
            _ => None,
        }
    }

    pub fn csc_layers_mut(&mut self) -> Vec<&mut CscLayer<B>> {
        match self {
            Self::Basic(block) => block.csc_layers_mut(),
            _ => Vec::new(),
        }
    }
}
