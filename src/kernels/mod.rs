//! Convolution entry points used by every layer. Backends use burn's own kernels unless they
//! override them; the CPU backend (burn-flex) runs the faster kernels of [`cpu`] for f32 data.
//!
//! Autodiff backends record the convolutions as single operations whose backward passes call the
//! same entry points ([`autodiff`]), so gradients also run on the fast kernels.

pub mod autodiff;
pub mod batchnorm;
pub mod cpu;
mod transpose;
pub mod winograd;

use burn::tensor::backend::Backend;
use burn::tensor::module;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::{Flex, FlexTensor, Layout};

use crate::kernels::batchnorm::{NormGrads, Normalised};
use crate::kernels::cpu::{ConvGeometry, TransposeGeometry};

/// A backend with the two convolutions the models need, and training-mode BatchNorm.
pub trait ConvBackend: Backend {
    fn convolve(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        bias: Option<Tensor<Self, 1>>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        module::conv2d(x, weight, bias, options)
    }

    fn convolve_transpose(
        z: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        options: ConvTransposeOptions<2>,
    ) -> Tensor<Self, 4> {
        module::conv_transpose2d(z, weight, None, options)
    }

    /// Gradient of `convolve(x, weight)` with respect to `weight`, given the output gradient.
    fn convolve_weight_grad(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        grad: Tensor<Self, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        let primitive = Self::conv2d_weight_backward(
            x.into_primitive().tensor(),
            weight.into_primitive().tensor(),
            grad.into_primitive().tensor(),
            options,
        );
        Tensor::from_primitive(TensorPrimitive::Float(primitive))
    }

    /// BatchNorm with the batch's own mean and biased variance: `(out, mean, var)`. Gradients
    /// flow to `x`, `gamma` and `beta` through `out` only.
    fn batch_norm_train(
        x: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        eps: f64,
    ) -> Normalised<Self> {
        batchnorm::composite(x, gamma, beta, eps)
    }

    /// `(dx, dgamma, dbeta)` of [`Self::batch_norm_train`] for the output gradient `dy`, given
    /// `(x, gamma, mean, var)`.
    fn batch_norm_train_backward(
        saved: (
            Tensor<Self, 4>,
            Tensor<Self, 1>,
            Tensor<Self, 1>,
            Tensor<Self, 1>,
        ),
        eps: f64,
        dy: Tensor<Self, 4>,
    ) -> NormGrads<Self> {
        batchnorm::composite_backward(saved, eps, dy)
    }
}

#[cfg(feature = "cuda")]
impl ConvBackend for burn::backend::Cuda {}

impl ConvBackend for Flex {
    fn convolve(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        bias: Option<Tensor<Self, 1>>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        let Some(geometry) = conv_geometry(&x, weight.dims(), &options) else {
            return module::conv2d(x, weight, bias, options);
        };
        let (x, weight) = (contiguous(x), contiguous(weight));
        let bias = bias.map(contiguous);
        let out = cpu::conv2d(
            x.storage(),
            weight.storage(),
            bias.as_ref().map(|b| b.storage()),
            geometry,
        );
        from_vec(
            out,
            [
                geometry.batch,
                geometry.c_out,
                geometry.out_h(),
                geometry.out_w(),
            ],
        )
    }

    fn convolve_transpose(
        z: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        options: ConvTransposeOptions<2>,
    ) -> Tensor<Self, 4> {
        let square = options.padding_out[0] == options.padding_out[1];
        let as_conv = ConvOptions::new(
            options.stride,
            options.padding,
            options.dilation,
            options.groups,
        );
        let [_, c_out, kh, kw] = weight.dims();
        let Some(conv) = conv_geometry(&z, [c_out, 0, kh, kw], &as_conv).filter(|_| square) else {
            return module::conv_transpose2d(z, weight, None, options);
        };
        let geometry = TransposeGeometry {
            batch: conv.batch,
            c_in: conv.c_in,
            h: conv.h,
            w: conv.w,
            c_out,
            kh,
            kw,
            stride: conv.stride,
            padding: conv.padding,
            output_padding: options.padding_out[0],
        };
        let (z, weight) = (contiguous(z), contiguous(weight));
        let out = cpu::conv_transpose2d(z.storage(), weight.storage(), None, geometry);
        from_vec(
            out,
            [geometry.batch, c_out, geometry.out_h(), geometry.out_w()],
        )
    }

    fn convolve_weight_grad(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        grad: Tensor<Self, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        let shape = weight.dims();
        let Some(geometry) = conv_geometry(&x, shape, &options) else {
            let primitive = <Flex as burn::tensor::ops::ModuleOps<Flex>>::conv2d_weight_backward(
                x.into_primitive().tensor(),
                weight.into_primitive().tensor(),
                grad.into_primitive().tensor(),
                options,
            );
            return Tensor::from_primitive(TensorPrimitive::Float(primitive));
        };
        let (x, grad) = (contiguous(x), contiguous(grad));
        from_vec(
            cpu::conv2d_weight_grad(x.storage(), grad.storage(), geometry),
            shape,
        )
    }
    fn batch_norm_train(
        x: Tensor<Self, 4>,
        gamma: Tensor<Self, 1>,
        beta: Tensor<Self, 1>,
        eps: f64,
    ) -> Normalised<Self> {
        if x.dtype() != DType::F32 {
            return batchnorm::composite(x, gamma, beta, eps);
        }
        let shape = x.dims();
        let [_, c, h, w] = shape;
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let (out, mean, var) = batchnorm::forward(
            x.storage(),
            gamma.storage(),
            beta.storage(),
            (c, h * w),
            eps,
        );
        (
            from_vec(out, shape),
            from_vec(mean, [c]),
            from_vec(var, [c]),
        )
    }

    fn batch_norm_train_backward(
        (x, gamma, mean, var): (
            Tensor<Self, 4>,
            Tensor<Self, 1>,
            Tensor<Self, 1>,
            Tensor<Self, 1>,
        ),
        eps: f64,
        dy: Tensor<Self, 4>,
    ) -> NormGrads<Self> {
        if x.dtype() != DType::F32 || dy.dtype() != DType::F32 {
            return batchnorm::composite_backward((x, gamma, mean, var), eps, dy);
        }
        let shape = x.dims();
        let [_, c, h, w] = shape;
        let [x, dy] = [contiguous(x), contiguous(dy)];
        let [gamma, mean, var] = [contiguous(gamma), contiguous(mean), contiguous(var)];
        let (dx, dgamma, dbeta) = batchnorm::backward(
            (x.storage(), gamma.storage(), mean.storage(), var.storage()),
            dy.storage(),
            (c, h * w),
            eps,
        );
        (
            from_vec(dx, shape),
            from_vec(dgamma, [c]),
            from_vec(dbeta, [c]),
        )
    }
}

/// The geometry our kernels handle (f32, one group, no dilation, square stride and padding), or
/// `None` for burn's general kernels.
fn conv_geometry(
    x: &Tensor<Flex, 4>,
    [c_out, _, kh, kw]: [usize; 4],
    options: &ConvOptions<2>,
) -> Option<ConvGeometry> {
    let square = options.stride[0] == options.stride[1] && options.padding[0] == options.padding[1];
    if !square || options.dilation != [1, 1] || options.groups != 1 || x.dtype() != DType::F32 {
        return None;
    }
    let [batch, c_in, h, w] = x.dims();
    Some(ConvGeometry {
        batch,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride: options.stride[0],
        padding: options.padding[0],
    })
}

fn contiguous<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    t.into_primitive().tensor().to_contiguous()
}

fn from_vec<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<Flex, D> {
    let tensor = FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(shape.into()),
        DType::F32,
    );
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}
