//! The convolutions as single autodiff operations whose backward passes use [`ConvBackend`]
//! again: input gradients are the adjoint convolution, weight gradients one GEMM per chunk.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor};
use burn::tensor::{Tensor, TensorPrimitive};

use crate::kernels::batchnorm::Normalised;
use crate::kernels::ConvBackend;

fn wrap<B: ConvBackend>(primitive: FloatTensor<B>) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

fn unwrap<B: ConvBackend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// Options of the transposed convolution that maps a gradient of `conv2d` (stride s, padding p)
/// back onto an input of spatial size `input`.
fn adjoint_of_conv(
    options: &ConvOptions<2>,
    input: [usize; 2],
    kernel: [usize; 2],
    output: [usize; 2],
) -> ConvTransposeOptions<2> {
    let pad = |d: usize| {
        input[d] + 2 * options.padding[d] - ((output[d] - 1) * options.stride[d] + kernel[d])
    };
    ConvTransposeOptions::new(options.stride, options.padding, [pad(0), pad(1)], [1, 1], 1)
}

/// Options of the convolution adjoint to a transposed convolution.
fn adjoint_of_transpose(options: &ConvTransposeOptions<2>) -> ConvOptions<2> {
    ConvOptions::new(options.stride, options.padding, [1, 1], 1)
}

/// Input and weight gradients of `convolve(x, weight)` for the output gradient `grad`.
fn convolution_grads<B: ConvBackend>(
    parents: [Option<NodeId>; 2],
    (x_state, weight_state, options): (NodeId, NodeId, ConvOptions<2>),
    grad: &Tensor<B, 4>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let [node_x, node_weight] = parents;
    let x = wrap::<B>(checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state));
    let weight = wrap::<B>(checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state));
    if let Some(id) = node_x {
        let [_, _, h, w] = x.dims();
        let [_, _, kh, kw] = weight.dims();
        let [_, _, oh, ow] = grad.dims();
        let adjoint = adjoint_of_conv(&options, [h, w], [kh, kw], [oh, ow]);
        grads.register::<B>(
            id,
            unwrap(B::convolve_transpose(grad.clone(), weight.clone(), adjoint)),
        );
    }
    if let Some(id) = node_weight {
        grads.register::<B>(
            id,
            unwrap(B::convolve_weight_grad(x, weight, grad.clone(), options)),
        );
    }
}

#[derive(Debug)]
struct Convolution;

impl<B: ConvBackend> Backward<B, 2> for Convolution {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = wrap::<B>(grads.consume::<B>(&ops.node));
        let [x, weight] = ops.parents.each_ref().map(|p| p.as_ref().map(|n| n.id));
        convolution_grads([x, weight], ops.state, &grad, grads, checkpointer);
    }
}

#[derive(Debug)]
struct ConvolutionWithBias;

impl<B: ConvBackend> Backward<B, 3> for ConvolutionWithBias {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = wrap::<B>(grads.consume::<B>(&ops.node));
        let [x, weight, bias] = ops.parents.each_ref().map(|p| p.as_ref().map(|n| n.id));
        if let Some(id) = bias {
            let [_, c, _, _] = grad.dims();
            let sum = grad.clone().sum_dim(0).sum_dim(2).sum_dim(3).reshape([c]);
            grads.register::<B>(id, unwrap(sum));
        }
        convolution_grads([x, weight], ops.state, &grad, grads, checkpointer);
    }
}

#[derive(Debug)]
struct TransposedConvolution;

impl<B: ConvBackend> Backward<B, 2> for TransposedConvolution {
    type State = (NodeId, NodeId, ConvTransposeOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_z, node_weight] = ops.parents;
        let grad = wrap::<B>(grads.consume::<B>(&ops.node));
        let (z_state, weight_state, options) = ops.state;
        let weight = wrap::<B>(checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state));
        let adjoint = adjoint_of_transpose(&options);
        if let Some(node) = node_z {
            grads.register::<B>(
                node.id,
                unwrap(B::convolve(
                    grad.clone(),
                    weight.clone(),
                    None,
                    adjoint.clone(),
                )),
            );
        }
        if let Some(node) = node_weight {
            // ⟨g, A_W z⟩ = ⟨conv2d(g, W), z⟩: the weight gradient of a convolution of g against z.
            let z = wrap::<B>(checkpointer.retrieve_node_output::<FloatTensor<B>>(z_state));
            grads.register::<B>(
                node.id,
                unwrap(B::convolve_weight_grad(grad, weight, z, adjoint)),
            );
        }
    }
}

/// Training-mode BatchNorm: saves its input, γ and the batch statistics; the backward pass is
/// one fused call for all three gradients.
#[derive(Debug)]
struct BatchNormTrain;

impl<B: ConvBackend> Backward<B, 3> for BatchNormTrain {
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        f64,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = wrap::<B>(grads.consume::<B>(&ops.node));
        let (x, gamma, mean, var, eps) = ops.state;
        let vector = |t: FloatTensor<B>| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t));
        let saved = (wrap::<B>(x), vector(gamma), vector(mean), vector(var));
        let (dx, dgamma, dbeta) = B::batch_norm_train_backward(saved, eps, dy);
        let [node_x, node_gamma, node_beta] = ops.parents;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, unwrap(dx));
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, unwrap(dgamma));
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, unwrap(dbeta));
        }
    }
}

impl<B: ConvBackend, C: CheckpointStrategy> ConvBackend for Autodiff<B, C> {
    fn batch_norm_train(
        x: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        eps: f64,
    ) -> Normalised<Self> {
        let [x, gamma, beta] = [
            x.into_primitive().tensor(),
            gamma.into_primitive().tensor(),
            beta.into_primitive().tensor(),
        ];
        let vector = |t: FloatTensor<B>| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t));
        let (out, mean, var) = B::batch_norm_train(
            wrap::<B>(x.primitive.clone()),
            vector(gamma.primitive.clone()),
            vector(beta.primitive.clone()),
            eps,
        );
        let output = match BatchNormTrain
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (
                    x.primitive,
                    gamma.primitive,
                    unwrap(mean.clone()),
                    unwrap(var.clone()),
                    eps,
                );
                prep.finish(state, unwrap(out))
            }
            OpsKind::UnTracked(prep) => prep.finish(unwrap(out)),
        };
        (
            Tensor::from_primitive(TensorPrimitive::Float(output)),
            Tensor::from_inner(mean),
            Tensor::from_inner(var),
        )
    }

    fn convolve(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        bias: Option<Tensor<Self, 1>>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        let x = x.into_primitive().tensor();
        let weight = weight.into_primitive().tensor();
        let forward = |x: FloatTensor<B>, w: FloatTensor<B>, b: Option<FloatTensor<B>>| {
            let bias = b.map(|b| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(b)));
            unwrap(B::convolve(
                wrap::<B>(x),
                wrap::<B>(w),
                bias,
                options.clone(),
            ))
        };
        let output = match bias.map(|b| b.into_primitive().tensor()) {
            None => match Convolution
                .prepare::<C>([x.node.clone(), weight.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let state = (
                        prep.checkpoint(&x),
                        prep.checkpoint(&weight),
                        options.clone(),
                    );
                    prep.finish(state, forward(x.primitive, weight.primitive, None))
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(forward(x.primitive, weight.primitive, None))
                }
            },
            Some(bias) => match ConvolutionWithBias
                .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let state = (
                        prep.checkpoint(&x),
                        prep.checkpoint(&weight),
                        options.clone(),
                    );
                    prep.finish(
                        state,
                        forward(x.primitive, weight.primitive, Some(bias.primitive)),
                    )
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(forward(x.primitive, weight.primitive, Some(bias.primitive)))
                }
            },
        };
        Tensor::from_primitive(TensorPrimitive::Float(output))
    }

    fn convolve_transpose(
        z: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        options: ConvTransposeOptions<2>,
    ) -> Tensor<Self, 4> {
        let z = z.into_primitive().tensor();
        let weight = weight.into_primitive().tensor();
        let forward = |z: FloatTensor<B>, w: FloatTensor<B>| {
            unwrap(B::convolve_transpose(
                wrap::<B>(z),
                wrap::<B>(w),
                options.clone(),
            ))
        };
        let output = match TransposedConvolution
            .prepare::<C>([z.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&z),
                    prep.checkpoint(&weight),
                    options.clone(),
                );
                prep.finish(state, forward(z.primitive, weight.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(z.primitive, weight.primitive)),
        };
        Tensor::from_primitive(TensorPrimitive::Float(output))
    }
}
