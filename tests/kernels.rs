//! The CPU convolution kernels against burn's reference implementation, on many geometries.

mod common;

use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Distribution, Tensor};
use common::{device, to_vec, B};
use robust_eval::kernels::ConvBackend;

fn random<const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device())
}

fn assert_close(ours: Vec<f32>, reference: Vec<f32>, what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5 * scale,
        "{what}: max difference {worst} (scale {scale})"
    );
}

#[test]
fn conv2d_matches_burn_on_many_geometries() {
    // (batch, c_in, size, c_out, kernel, stride, padding, bias)
    let cases = [
        (2, 3, 9, 5, 3, 1, 1, false),
        (3, 4, 8, 6, 3, 2, 1, true),
        (1, 3, 15, 4, 7, 2, 3, false),
        (4, 8, 6, 8, 1, 1, 0, true),
        (2, 8, 8, 4, 1, 2, 0, false),
        (2, 2, 7, 3, 5, 1, 0, false),
        (5, 16, 4, 16, 3, 1, 1, true),
        // Winograd (3×3, stride 1, padding 1, ≥ 8 input channels): odd sizes, batch 1, 1×1 maps.
        (1, 8, 7, 5, 3, 1, 1, true),
        (3, 24, 9, 40, 3, 1, 1, false),
        (2, 64, 1, 8, 3, 1, 1, true),
        (1, 17, 32, 3, 3, 1, 1, false),
    ];
    for (n, c, s, co, k, stride, pad, with_bias) in cases {
        let x = random([n, c, s, s]);
        let w = random([co, c, k, k]);
        let bias = with_bias.then(|| random([co]));
        let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
        let reference = conv2d(x.clone(), w.clone(), bias.clone(), options.clone());
        let ours = B::convolve(x, w, bias, options);
        assert_eq!(ours.dims(), reference.dims());
        assert_close(
            to_vec(ours),
            to_vec(reference),
            &format!("conv2d {n}x{c}x{s} k{k} s{stride} p{pad}"),
        );
    }
}

#[test]
fn conv_transpose2d_matches_burn_on_many_geometries() {
    // (batch, c_code, size, c_out, kernel, stride, padding, output_padding)
    let cases = [
        (2, 5, 9, 3, 3, 1, 1, 0),
        (3, 6, 4, 4, 3, 2, 1, 1),
        (1, 4, 8, 3, 7, 2, 3, 1),
        (2, 8, 5, 8, 1, 1, 0, 0),
        (2, 3, 6, 2, 5, 1, 2, 0),
        // Stride 1, padding 1 with ≥ 8 code channels: the Winograd kernel.
        (1, 16, 7, 3, 3, 1, 1, 0),
        (3, 32, 4, 12, 3, 1, 1, 0),
    ];
    for (n, c, s, co, k, stride, pad, out_pad) in cases {
        let z = random([n, c, s, s]);
        let w = random([c, co, k, k]);
        let options =
            ConvTransposeOptions::new([stride, stride], [pad, pad], [out_pad, out_pad], [1, 1], 1);
        let reference = conv_transpose2d(z.clone(), w.clone(), None, options.clone());
        let ours = B::convolve_transpose(z, w, options);
        assert_eq!(ours.dims(), reference.dims());
        assert_close(
            to_vec(ours),
            to_vec(reference),
            &format!("conv_transpose2d {n}x{c}x{s} k{k} s{stride}"),
        );
    }
}

#[test]
fn kernels_accept_non_contiguous_inputs() {
    let x = random([3, 4, 6, 6]).swap_dims(2, 3);
    let w = random([5, 4, 3, 3]);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let reference = conv2d(x.clone(), w.clone(), None, options.clone());
    assert_close(
        to_vec(B::convolve(x, w, None, options)),
        to_vec(reference),
        "transposed input",
    );
}

mod gradients {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::backend::Backend;

    type AD = Autodiff<B>;

    fn random_ad<const D: usize>(shape: [usize; D]) -> Tensor<AD, D> {
        Tensor::from_inner(random(shape)).require_grad()
    }

    /// Gradients of Σ out·probe with respect to every input, through our op and through burn's.
    fn compare(
        inputs: Vec<Tensor<AD, 4>>,
        bias: Option<Tensor<AD, 1>>,
        ours: impl Fn(&[Tensor<AD, 4>], Option<Tensor<AD, 1>>) -> Tensor<AD, 4>,
        reference: impl Fn(&[Tensor<AD, 4>], Option<Tensor<AD, 1>>) -> Tensor<AD, 4>,
        what: &str,
    ) {
        let out = ours(&inputs, bias.clone());
        let probe: Tensor<AD, 4> = Tensor::from_inner(random(out.dims()));
        let grads_ours = (out * probe.clone()).sum().backward();
        let grads_ref = (reference(&inputs, bias.clone()) * probe).sum().backward();
        for (i, input) in inputs.iter().enumerate() {
            let a = to_vec(input.grad(&grads_ours).unwrap());
            let b = to_vec(input.grad(&grads_ref).unwrap());
            assert_close(a, b, &format!("{what}: gradient of input {i}"));
        }
        if let Some(bias) = bias {
            let a: Vec<f32> = bias
                .grad(&grads_ours)
                .unwrap()
                .into_data()
                .to_vec()
                .unwrap();
            let b: Vec<f32> = bias.grad(&grads_ref).unwrap().into_data().to_vec().unwrap();
            assert_close(a, b, &format!("{what}: bias gradient"));
        }
    }

    #[test]
    fn convolution_gradients_match_burn() {
        for (n, c, s, co, k, stride, pad, with_bias) in [
            (2, 3, 8, 4, 3, 1, 1, false),
            (3, 4, 8, 6, 3, 2, 1, true),
            (2, 3, 9, 5, 7, 2, 3, false),
            (2, 6, 5, 3, 1, 1, 0, true),
            // Winograd forward and input gradient (its transposed convolution too), odd sizes.
            (1, 8, 5, 9, 3, 1, 1, true),
            (2, 16, 7, 16, 3, 1, 1, false),
            (2, 16, 8, 32, 3, 2, 1, false),
            // A CIFAR stage: one image per weight-gradient GEMM, k = 32·32.
            (3, 16, 32, 16, 3, 1, 1, false),
        ] {
            let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
            let bias = with_bias.then(|| Tensor::from_inner(random([co])).require_grad());
            compare(
                vec![random_ad([n, c, s, s]), random_ad([co, c, k, k])],
                bias,
                |t, b| {
                    <AD as ConvBackend>::convolve(t[0].clone(), t[1].clone(), b, options.clone())
                },
                |t, b| conv2d(t[0].clone(), t[1].clone(), b, options.clone()),
                &format!("conv {c}->{co} k{k} s{stride}"),
            );
        }
    }

    #[test]
    fn transposed_convolution_gradients_match_burn() {
        for (n, c, s, co, k, stride, pad, out_pad) in [
            (2, 5, 6, 3, 3, 1, 1, 0),
            (2, 6, 4, 3, 3, 2, 1, 1),
            (1, 4, 5, 3, 7, 2, 3, 1),
            (1, 16, 5, 3, 3, 1, 1, 0),
            (2, 3, 7, 16, 3, 1, 1, 0),
        ] {
            let options = ConvTransposeOptions::new(
                [stride, stride],
                [pad, pad],
                [out_pad, out_pad],
                [1, 1],
                1,
            );
            compare(
                vec![random_ad([n, c, s, s]), random_ad([c, co, k, k])],
                None,
                |t, _| {
                    <AD as ConvBackend>::convolve_transpose(
                        t[0].clone(),
                        t[1].clone(),
                        options.clone(),
                    )
                },
                |t, _| conv_transpose2d(t[0].clone(), t[1].clone(), None, options.clone()),
                &format!("transpose {c}->{co} k{k} s{stride}"),
            );
        }
    }

    #[test]
    fn untracked_inputs_get_no_gradient_work() {
        let x: Tensor<AD, 4> = Tensor::from_inner(random([2, 3, 6, 6])).require_grad();
        let w: Tensor<AD, 4> = Tensor::from_inner(random([4, 3, 3, 3]));
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let grads = <AD as ConvBackend>::convolve(x.clone(), w.clone(), None, options)
            .sum()
            .backward();
        assert!(x.grad(&grads).is_some());
        assert!(w.grad(&grads).is_none());
        let _ = <B as Backend>::name(&device());
    }
}

/// The fused training-mode BatchNorm against the same normalisation written as burn tensor
/// operations (differentiated by burn's autodiff), and the composite backward used on other
/// backends against that autodiff too.
mod batch_norm {
    use super::*;
    use burn::backend::Autodiff;
    use robust_eval::kernels::batchnorm;

    type AD = Autodiff<B>;
    const EPS: f64 = 1e-5;

    fn leaf<const D: usize>(t: &Tensor<B, D>) -> Tensor<AD, D> {
        Tensor::from_inner(t.clone()).require_grad()
    }

    /// out, mean, var and the gradients of Σ out·probe for x, γ and β.
    fn outputs(
        (x, gamma, beta): (&Tensor<B, 4>, &Tensor<B, 1>, &Tensor<B, 1>),
        probe: &Tensor<B, 4>,
        fused: bool,
    ) -> Vec<Vec<f32>> {
        let (x, gamma, beta) = (leaf(x), leaf(gamma), leaf(beta));
        let (out, mean, var) = if fused {
            <AD as ConvBackend>::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), EPS)
        } else {
            batchnorm::composite(x.clone(), gamma.clone(), beta.clone(), EPS)
        };
        let probe: Tensor<AD, 4> = Tensor::from_inner(probe.clone());
        let grads = (out.clone() * probe).sum().backward();
        vec![
            to_vec(out.inner()),
            to_vec(mean.inner()),
            to_vec(var.inner()),
            to_vec(x.grad(&grads).unwrap()),
            to_vec(gamma.grad(&grads).unwrap()),
            to_vec(beta.grad(&grads).unwrap()),
        ]
    }

    #[test]
    fn fused_batch_norm_matches_the_composite_and_its_autodiff() {
        let names = ["out", "mean", "var", "dx", "dgamma", "dbeta"];
        // Batch 1, odd planes, 1×1 planes, many channels, and a mean far from zero.
        for (n, c, h, w, offset) in [
            (1, 3, 5, 7, 0.0),
            (4, 16, 8, 8, 0.0),
            (3, 5, 1, 1, 0.0),
            (2, 4, 9, 3, 50.0),
        ] {
            let x = random([n, c, h, w]).add_scalar(offset);
            let (gamma, beta, probe) = (random([c]), random([c]), random([n, c, h, w]));
            let inputs = (&x, &gamma, &beta);
            let fused = outputs(inputs, &probe, true);
            let reference = outputs(inputs, &probe, false);
            for ((ours, theirs), name) in fused.into_iter().zip(reference.clone()).zip(names) {
                assert_close(
                    ours,
                    theirs,
                    &format!("{name} of {n}×{c}×{h}×{w} + {offset}"),
                );
            }
            let [_, mean, var, dx, dgamma, dbeta] = &reference[..] else {
                unreachable!()
            };
            let vector = |v: &Vec<f32>| Tensor::<B, 1>::from_floats(v.as_slice(), &device());
            let (cdx, cdgamma, cdbeta) = batchnorm::composite_backward(
                (x.clone(), gamma.clone(), vector(mean), vector(var)),
                EPS,
                probe.clone(),
            );
            let what = format!("composite backward of {n}×{c}×{h}×{w}");
            assert_close(to_vec(cdx), dx.clone(), &what);
            assert_close(to_vec(cdgamma), dgamma.clone(), &what);
            assert_close(to_vec(cdbeta), dbeta.clone(), &what);
        }
    }
}
