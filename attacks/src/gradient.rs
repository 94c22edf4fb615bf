//! The loss an attack maximises and its gradient with respect to the input.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::loss::Objective;
use crate::{Classifier, Goal, Images};

/// Per-sample cross-entropy `−log softmax(logits)[class]`, shape [N].
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, classes: &[usize]) -> Tensor<B, 1> {
    let [n, k] = logits.dims();
    let mut one_hot = vec![0f32; n * k];
    for (row, &c) in classes.iter().enumerate() {
        one_hot[row * k + c] = 1.0;
    }
    let one_hot = Tensor::<B, 2>::from_data(TensorData::new(one_hot, [n, k]), &logits.device());
    (log_softmax(logits, 1) * one_hot)
        .sum_dim(1)
        .reshape([n])
        .neg()
}

/// The objective at a point and its input gradient.
pub struct Gradient<B: AutodiffBackend> {
    pub logits: Tensor<B::InnerBackend, 2>,
    /// Per-sample objective (CE of the label, or −CE of the target for targeted attacks).
    pub loss: Vec<f32>,
    pub grad: Images<B>,
    /// Per sample: whether its input gradient is exactly zero everywhere (a sign of gradient
    /// masking).
    pub zero_gradient: Vec<bool>,
}

impl<B: AutodiffBackend> Gradient<B> {
    /// Evaluates the cross-entropy objective at `x` and its gradient, averaged over `eot`
    /// forward passes (expectation over transformation, for randomised models).
    pub fn at<M: Classifier<B>>(model: &M, x: &Images<B>, goal: &Goal, eot: usize) -> Self {
        Self::of(model, x, goal, eot, Objective::CrossEntropy)
    }

    /// Evaluates `objective` at `x` and its gradient, averaged over `eot` forward passes.
    pub fn of<M: Classifier<B>>(
        model: &M,
        x: &Images<B>,
        goal: &Goal,
        eot: usize,
        objective: Objective<'_>,
    ) -> Self {
        let passes = eot.max(1);
        let mut grad_sum: Option<Images<B>> = None;
        let mut logits_out = None;
        let mut loss_sum = vec![0f32; goal.len()];
        for _ in 0..passes {
            let input = Tensor::<B, 4>::from_inner(x.clone()).require_grad();
            let logits = model.logits(input.clone());
            let host = logits
                .clone()
                .inner()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32");
            let objective = objective.evaluate(logits.clone(), &host, goal);
            let values = objective.clone().inner().into_data().convert::<f32>();
            for (sum, v) in loss_sum
                .iter_mut()
                .zip(values.to_vec::<f32>().expect("f32"))
            {
                *sum += v;
            }
            let grads = objective.sum().backward();
            let grad = input.grad(&grads).expect("input is tracked");
            grad_sum = Some(match grad_sum {
                Some(total) => total + grad,
                None => grad,
            });
            logits_out = Some(logits.inner());
        }
        let grad = grad_sum.expect("at least one pass");
        let grad = if passes > 1 {
            grad.div_scalar(passes as f64)
        } else {
            grad
        };
        let zero_gradient = zero_rows(&grad);
        Self {
            logits: logits_out.expect("at least one pass"),
            loss: loss_sum.into_iter().map(|l| l / passes as f32).collect(),
            grad,
            zero_gradient,
        }
    }

    /// Predicted class of each sample.
    pub fn predictions(&self) -> Vec<usize> {
        argmax(self.logits.clone())
    }
}

/// Row-wise argmax.
pub fn argmax<B: Backend>(logits: Tensor<B, 2>) -> Vec<usize> {
    let data = logits.argmax(1).into_data().convert::<i64>();
    data.to_vec::<i64>()
        .expect("indices")
        .into_iter()
        .map(|i| i as usize)
        .collect()
}

fn zero_rows<B: Backend>(grad: &Tensor<B, 4>) -> Vec<bool> {
    let [n, c, h, w] = grad.dims();
    let peaks = grad
        .clone()
        .abs()
        .reshape([n, c * h * w])
        .max_dim(1)
        .into_data()
        .convert::<f32>();
    peaks
        .to_vec::<f32>()
        .expect("f32")
        .iter()
        .map(|v| *v == 0.0)
        .collect()
}
