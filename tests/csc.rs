//! The CSC layer against closed forms and independent f64 computations.

mod common;

use burn::tensor::{Distribution, Tensor};
use common::{device, tensor4, to_vec, B};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::SeedableRng;
use robust_eval::csc::{CscConfig, CscLayer, PowerIteration, Solver};

fn layer(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    seed: u64,
) -> CscLayer<B> {
    let mut rng = StdRng::seed_from_u64(seed);
    CscLayer::new(
        CscConfig::new(c_in, c_out, kernel, stride, padding),
        &mut rng,
        &device(),
    )
}

fn random(shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device())
}

fn dot(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f64 {
    to_vec(a)
        .iter()
        .zip(to_vec(b))
        .map(|(x, y)| *x as f64 * y as f64)
        .sum()
}

#[test]
fn synthesis_and_analysis_are_adjoint_at_stride_1_and_2() {
    for (stride, size) in [(1, 9), (2, 10)] {
        let csc = layer(3, 5, 3, stride, 1, 7);
        let [h, w] = csc.config().code_size([size, size]);
        let z = random([2, 5, h, w]);
        let r = random([2, 3, size, size]);
        let lhs = dot(csc.reconstruct(z.clone()), r.clone());
        let rhs = dot(z, csc.analyze(r));
        assert!(
            (lhs - rhs).abs() <= 1e-5 * lhs.abs().max(1.0),
            "stride {stride}: <A z, r> = {lhs}, <z, A^T r> = {rhs}"
        );
    }
}

/// The dense matrix of `A` (columns are A applied to unit codes), in f64.
fn dense_synthesis(csc: &CscLayer<B>, input: [usize; 2]) -> DMatrix<f64> {
    let c = csc.config().channels_out;
    let m = csc.config().channels_in;
    let [h, w] = csc.config().code_size(input);
    let n_code = c * h * w;
    let mut columns = Vec::with_capacity(n_code);
    for j in 0..n_code {
        let mut unit = vec![0.0f32; n_code];
        unit[j] = 1.0;
        let image = to_vec(csc.reconstruct(tensor4(unit, [1, c, h, w])));
        columns.push(DVector::from_iterator(
            image.len(),
            image.iter().map(|&v| v as f64),
        ));
    }
    assert_eq!(columns[0].len(), m * input[0] * input[1]);
    DMatrix::from_columns(&columns)
}

#[test]
fn power_iteration_matches_the_dense_largest_eigenvalue() {
    for (stride, size) in [(1, 6), (2, 8)] {
        let csc = layer(2, 4, 3, stride, 1, 3);
        let a = dense_synthesis(&csc, [size, size]);
        let gram = a.transpose() * &a;
        let largest = gram.symmetric_eigenvalues().max();
        for settings in [PowerIteration::OFFICIAL, PowerIteration::CALIBRATION] {
            let l = csc.lipschitz([size, size], settings);
            let rel = (l - largest).abs() / largest;
            assert!(
                rel < 0.01,
                "stride {stride} {settings:?}: L = {l}, dense λ_max = {largest}"
            );
        }
        // The step the layer actually uses.
        let step = csc.step_size_for([size, size]);
        assert!(
            (step * largest / 0.9 - 1.0).abs() < 1e-3,
            "step {step} vs 0.9/{largest}"
        );
    }
}

/// Non-negative Lasso by cyclic coordinate descent in f64 (independent of the layer's solver).
fn lasso_reference(a: &DMatrix<f64>, x: &DVector<f64>, lambda: f64) -> f64 {
    let n = a.ncols();
    let mut z = DVector::<f64>::zeros(n);
    let mut r = x.clone();
    let norms: Vec<f64> = (0..n).map(|j| a.column(j).norm_squared()).collect();
    for _sweep in 0..20_000 {
        let mut largest_change: f64 = 0.0;
        for j in 0..n {
            if norms[j] == 0.0 {
                continue;
            }
            let col = a.column(j);
            let candidate = ((col.dot(&r) + norms[j] * z[j] - lambda) / norms[j]).max(0.0);
            let delta = candidate - z[j];
            if delta != 0.0 {
                r -= col * delta;
                z[j] = candidate;
                largest_change = largest_change.max(delta.abs());
            }
        }
        if largest_change < 1e-13 {
            break;
        }
    }
    lambda * z.sum() + 0.5 * (x - a * &z).norm_squared()
}

#[test]
fn many_fista_steps_reach_the_lasso_minimum() {
    for (stride, size) in [(1, 6), (2, 6)] {
        let mut csc = layer(2, 4, 3, stride, 1, 11);
        csc.set_lambda(0.05);
        csc.set_steps(3000, Solver::Fista);
        let x = random([1, 2, size, size]);
        let a = dense_synthesis(&csc, [size, size]);
        let xv =
            DVector::from_iterator(2 * size * size, to_vec(x.clone()).iter().map(|&v| v as f64));
        let reference = lasso_reference(&a, &xv, 0.05);
        let code = csc.forward(x.clone());
        let ours = csc.objective(x, code);
        let rel = (ours - reference) / reference;
        assert!(
            rel.abs() < 1e-4,
            "stride {stride}: ours {ours}, reference {reference}, rel {rel}"
        );
    }
}

#[test]
fn ista_objective_never_increases() {
    let mut csc = layer(3, 8, 3, 1, 1, 5);
    let x = random([2, 3, 8, 8]);
    let mut previous = f64::INFINITY;
    for steps in 1..=40 {
        csc.set_steps(steps, Solver::Ista);
        let value = csc.objective(x.clone(), csc.forward(x.clone()));
        assert!(
            value <= previous * (1.0 + 1e-6),
            "step {steps}: {value} > {previous}"
        );
        previous = value;
    }
}

#[test]
fn lambda_changes_at_run_time_and_sparsifies_the_code() {
    let mut csc = layer(3, 16, 3, 1, 1, 9);
    let x = random([2, 3, 8, 8]);
    let nonzeros = |csc: &CscLayer<B>| {
        to_vec(csc.forward(x.clone()))
            .iter()
            .filter(|v| **v > 0.0)
            .count()
    };
    let step = csc.step_size_for([8, 8]);
    let before = nonzeros(&csc);
    csc.set_lambda(1.0);
    let after = nonzeros(&csc);
    assert!(
        after < before,
        "λ 0.1 → 1.0 should remove non-zeros ({before} → {after})"
    );
    assert_eq!(
        step,
        csc.step_size_for([8, 8]),
        "λ does not change the step size"
    );
}

#[test]
fn codes_are_non_negative_and_stats_are_per_sample() {
    let csc = layer(3, 6, 3, 2, 1, 2);
    let x = random([3, 3, 8, 8]);
    let out = csc.forward_with_stats(x.clone());
    assert!(to_vec(out.code.clone()).iter().all(|v| *v >= 0.0));
    let errors = to_vec(out.reconstruction_error);
    let l1 = to_vec(out.l1);
    assert_eq!((errors.len(), l1.len()), (3, 3));
    // The first sample's statistics, recomputed alone.
    let first = x.clone().slice([0..1, 0..3, 0..8, 0..8]);
    let code = csc.forward(first.clone());
    let residual: f64 = to_vec(first - csc.reconstruct(code.clone()))
        .iter()
        .map(|v| (*v as f64).powi(2))
        .sum();
    let norm1: f64 = to_vec(code).iter().map(|v| *v as f64).sum();
    assert!((residual - errors[0] as f64).abs() < 1e-3 * residual.max(1.0));
    assert!((norm1 - l1[0] as f64).abs() < 1e-3 * norm1.max(1.0));
}

/// Twelve-step solves against the official SDNet code (`--csc-solver official`: gradient at the
/// current iterate) and textbook FISTA (the default: gradient at the extrapolated point), at
/// stride 1 and 2 (tests/fixtures/csc_solvers.json, tools/make_solver_fixture.py).
#[test]
fn many_step_solvers_match_the_official_code_and_textbook_fista() {
    use burn::module::Param;
    let text = std::fs::read_to_string(common::repo("tests/fixtures/csc_solvers.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let shape = |v: &serde_json::Value| -> [usize; 4] {
        let d: Vec<usize> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        [d[0], d[1], d[2], d[3]]
    };
    for case in fixture["cases"].as_array().unwrap() {
        let [c_out, c_in, k, _] = shape(&case["weight_shape"]);
        let stride = case["stride"].as_u64().unwrap() as usize;
        let steps = case["steps"].as_u64().unwrap() as usize;
        let input_shape = shape(&case["input_shape"]);
        let mut csc = layer(c_in, c_out, k, stride, 1, 0);
        csc.weight = Param::from_tensor(tensor4(
            floats(&case["weight"]),
            shape(&case["weight_shape"]),
        ));
        csc.set_lambda(case["lambda"].as_f64().unwrap());
        // Our step comes from power iteration; the fixture's from the dense spectrum.
        let step = csc.step_size_for([input_shape[2], input_shape[3]]);
        let exact = case["step_size"].as_f64().unwrap();
        assert!(
            (step - exact).abs() < 1e-4 * exact,
            "step {step} vs {exact}"
        );
        let x = tensor4(floats(&case["input"]), input_shape);
        let mut outputs = Vec::new();
        for (solver, key) in [
            (Solver::OfficialFista, "official"),
            (Solver::Fista, "fista"),
        ] {
            csc.set_steps(steps, solver);
            let ours = to_vec(csc.forward(x.clone()));
            let expected = floats(&case[key]);
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = ours
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-4 * scale,
                "stride {stride}, {key}: max |Δ| {worst:.3e} of {scale:.3e}"
            );
            outputs.push(ours);
        }
        // The two iterations differ by far more than the tolerance: the test tells them apart.
        let apart = outputs[0]
            .iter()
            .zip(&outputs[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(apart > 1e-2, "official and FISTA agree to {apart:.3e}");
    }
}
