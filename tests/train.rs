//! Training: PyTorch's SGD step for step, exact resumption, and bad input.

mod common;

use std::fs;

use burn::backend::Autodiff;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use common::{device, repo, train, B};
use robust_eval::nn::Linear;
use robust_eval::train::Recipe;
use serde_json::Value;

type AD = Autodiff<B>;

fn matrix(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn sgd_matches_pytorch_step_for_step() {
    let fixture: Value =
        serde_json::from_str(&fs::read_to_string(repo("tests/fixtures/sgd.json")).unwrap())
            .unwrap();
    let dev = device();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut model = Linear::<AD>::new(6, 4, &mut rng, &dev);
    model.weight = model.weight.map(|_| {
        Tensor::from_data(
            TensorData::new(matrix(&fixture["initial"]["weight"]), [4, 6]),
            &dev,
        )
        .require_grad()
    });
    model.bias = model.bias.map(|_| {
        Tensor::from_data(
            TensorData::new(vector(&fixture["initial"]["bias"]), [4]),
            &dev,
        )
        .require_grad()
    });
    let x = Tensor::<AD, 2>::from_data(TensorData::new(matrix(&fixture["x"]), [8, 6]), &dev);
    let y: Vec<usize> = fixture["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();

    let recipe = Recipe::cifar();
    let mut optimizer = recipe.sgd().init::<AD, Linear<AD>>();
    let steps = fixture["steps"].as_array().unwrap();
    for (t, step) in steps.iter().enumerate() {
        let lr = recipe.schedule.lr(
            &Recipe {
                lr: 0.1,
                ..recipe.clone()
            },
            t,
            steps.len(),
            steps.len(),
        );
        assert!(
            (lr - step["lr"].as_f64().unwrap()).abs() < 1e-9,
            "step {t}: lr {lr}"
        );
        let loss = attacks::cross_entropy(model.forward(x.clone()), &y).mean();
        let loss_value: f32 = loss.clone().into_scalar();
        assert!((loss_value as f64 - step["loss"].as_f64().unwrap()).abs() < 1e-6);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(lr, model, grads);
        let weight: Vec<f32> = model.weight.val().into_data().to_vec().unwrap();
        let bias: Vec<f32> = model.bias.val().into_data().to_vec().unwrap();
        for (ours, theirs) in weight
            .iter()
            .zip(matrix(&step["weight"]))
            .chain(bias.iter().zip(vector(&step["bias"])))
        {
            assert!(
                (ours - theirs).abs() < 1e-6,
                "step {t}: {ours} vs PyTorch {theirs}"
            );
        }
    }
}

/// 256 real images written as a CIFAR-10 training file.
fn training_file(dir: &std::path::Path) -> String {
    let path = dir.join("train.bin");
    let bytes = fs::read(repo("data/cifar10/test_first1000.bin")).unwrap();
    fs::write(&path, &bytes[..256 * 3073]).unwrap();
    path.to_str().unwrap().to_string()
}

fn weights(path: &std::path::Path) -> Vec<Vec<f32>> {
    let network = robust_eval::checkpoint::load_native::<B>(path, &device()).unwrap();
    use burn_store::ModuleSnapshot;
    network
        .collect(None, None, true)
        .iter()
        .map(|s| {
            s.to_data()
                .unwrap()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = training_file(tmp.path());
    let whole = tmp.path().join("whole");
    let parts = tmp.path().join("parts");
    let common = [
        "--model",
        "sdnet18",
        "--width",
        "0.0625",
        "--data",
        &data,
        "--epochs",
        "2",
        "--batch-size",
        "32",
    ];
    let mut args = common.to_vec();
    args.extend(["--out", whole.to_str().unwrap()]);
    let done = train(&args).unwrap();
    assert_eq!(done.state.iteration, 16);
    assert_eq!(done.state.log.len(), 2);
    // A finished run is not overwritten by accident.
    let mut again = common.to_vec();
    again.extend(["--out", whole.to_str().unwrap()]);
    let message = train(&again).err().unwrap().to_string();
    assert!(
        message.contains("--resume or replace it with --overwrite"),
        "{message}"
    );
    let scratch = tmp.path().join("scratch");
    let mut args = common.to_vec();
    args.extend(["--out", scratch.to_str().unwrap(), "--stop-after", "1"]);
    assert!(train(&args).unwrap().interrupted);
    args.push("--overwrite");
    assert!(train(&args).unwrap().interrupted);

    // Interrupted in the middle of the second epoch, then resumed from the epoch-1 checkpoint.
    let mut args = common.to_vec();
    args.extend(["--out", parts.to_str().unwrap(), "--stop-after", "11"]);
    assert!(train(&args).unwrap().interrupted);
    let mut args = common.to_vec();
    args.extend(["--out", parts.to_str().unwrap(), "--resume"]);
    let resumed = train(&args).unwrap();
    assert_eq!(resumed.state.iteration, 16);

    assert_eq!(
        weights(&whole.join("final.bpk")),
        weights(&parts.join("final.bpk")),
        "same final weights"
    );
    let log = fs::read_to_string(parts.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "header + two epochs");
    assert!(parts.join("best.bpk").exists());

    // A resume with another model is refused.
    let mut args = common.to_vec();
    args[1] = "resnet18";
    args.extend(["--out", parts.to_str().unwrap(), "--resume"]);
    let message = train(&args).err().unwrap().to_string();
    assert!(
        message.contains("cannot resume") && message.contains("other settings"),
        "{message}"
    );
}

#[test]
fn bad_training_input_fails_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = training_file(tmp.path());
    let out = tmp.path().join("out");
    let m = train(&[
        "--model",
        "resnet18",
        "--dataset",
        "svhn",
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
    ])
    .err()
    .unwrap();
    assert!(m.to_string().contains("unknown dataset kind 'svhn'"));
    let blocker = tmp.path().join("file");
    fs::write(&blocker, "x").unwrap();
    let m = train(&[
        "--model",
        "resnet18",
        "--data",
        &data,
        "--out",
        blocker.join("run").to_str().unwrap(),
    ])
    .err()
    .unwrap();
    assert!(
        m.to_string().contains("cannot create output directory"),
        "{m}"
    );
    let m = train(&[
        "--model",
        "resnet18",
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ])
    .err()
    .unwrap();
    assert!(
        m.to_string().contains("no checkpoint to resume from"),
        "{m}"
    );
    let m = train(&[
        "--model",
        "resnet18",
        "--data",
        &data,
        "--lr=-1",
        "--out",
        out.to_str().unwrap(),
    ])
    .err()
    .unwrap();
    assert!(m.to_string().contains("--lr must be positive"), "{m}");
}
