//! Damaged or wrong inputs never become a robustness number: broken weights are refused when
//! loaded (naming the tensor), and non-finite logits are an error in every command (naming the
//! image), never an accuracy.

mod common;

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use common::cli;
use robust_eval::data::DatasetKind;
use robust_eval::device::Cpu;
use robust_eval::models::ModelConfig;

/// Applies `edit` to the values of every parameter of rank `rank` of the bundled ResNet-20 and
/// saves the result as a native checkpoint.
fn edited_resnet20(file: &Path, rank: usize, edit: fn(&mut [f32])) {
    struct Edit(usize, fn(&mut [f32]));
    impl<B: Backend> ModuleMapper<B> for Edit {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            if D != self.0 {
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let (shape, device) = (tensor.shape(), tensor.device());
            let mut values: Vec<f32> = tensor.into_data().to_vec().unwrap();
            (self.1)(&mut values);
            let tensor = Tensor::from_data(TensorData::new(values, shape), &device);
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    let config = ModelConfig {
        name: Some("resnet20".into()),
        ..ModelConfig::default()
    };
    let network = config
        .load::<Cpu>(DatasetKind::Cifar10, &Default::default())
        .unwrap()
        .network
        .map(&mut Edit(rank, edit));
    robust_eval::checkpoint::save(&network, file).unwrap();
}

fn error_of(args: &[&str]) -> String {
    cli(args).expect_err("must fail").to_string()
}

#[test]
fn a_nan_weight_is_refused_by_every_command_with_the_tensor_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nan.bpk");
    edited_resnet20(&file, 2, |v| v[5] = f32::NAN);
    let out = dir.path().join("out");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    for command in ["eval", "pgd", "corrupt"] {
        let e = error_of(&[
            command,
            "--model",
            "resnet20",
            "--checkpoint",
            f,
            "--limit",
            "20",
            "--out-dir",
            o,
        ]);
        assert!(
            e.contains("linear.weight") && e.contains("non-finite"),
            "{command}: {e}"
        );
    }
    assert!(!out.join("results.csv").exists(), "nothing may be written");
}

#[test]
fn overflowing_logits_are_an_error_naming_the_image_not_an_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.bpk");
    // Finite weights whose logits overflow to ±∞.
    edited_resnet20(&file, 2, |v| v.iter_mut().for_each(|x| *x = f32::MAX / 2.0));
    let out = dir.path().join("out");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        vec!["eval"],
        vec!["pgd", "--eps", "1/255", "--steps", "2"],
        vec!["fgsm", "--eps", "1/255"],
        vec![
            "corrupt",
            "--corruptions",
            "gaussian_noise",
            "--severity",
            "1",
        ],
    ] {
        let mut full = args.clone();
        full.extend([
            "--model",
            "resnet20",
            "--checkpoint",
            f,
            "--limit",
            "20",
            "--out-dir",
            o,
        ]);
        let e = error_of(&full);
        assert!(
            e.contains("non-finite logits") && e.contains("first at image"),
            "{args:?}: {e}"
        );
    }
    assert!(!out.join("results.csv").exists(), "nothing may be written");
}
