//! The RobustBench / DeepMind / torchvision architectures against their original PyTorch
//! definitions, and the checkpoint formats users hold them in (fixtures:
//! tools/make_zoo_fixtures.py, which imports the original code).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use burn::module::ParamId;
use burn::tensor::TensorData;
use burn_store::{ModuleSnapshot, TensorSnapshot};
use common::{device, repo, to_vec, B};
use robust_eval::checkpoint::{self, layout::Layout};
use robust_eval::data::folder::ImageFolder;
use robust_eval::data::{self, Batch, DataSource, Dataset, DatasetKind, Split};
use robust_eval::models::{Domain, ModelConfig, ModelSpec, Network, WeightsSource};
use serde_json::Value;

fn fixtures() -> Value {
    let text = std::fs::read_to_string(repo("tests/fixtures/zoo/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The fixture script's weight rule (`formula` in tools/make_zoo_fixtures.py).
fn formula(key: &str, shape: &[usize], batchnorm: bool) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let seed = fnv1a(key);
    let leaf = key.rsplit('.').next().unwrap();
    (0..n as u64)
        .map(|i| {
            let u = (splitmix(seed.wrapping_add(i)) >> 40) as f64 / (1u64 << 24) as f64;
            let v = if leaf == "running_var" || (batchnorm && leaf == "weight") {
                0.5 + u
            } else if leaf == "running_mean" || (batchnorm && leaf == "bias") {
                0.2 * (2.0 * u - 1.0)
            } else if shape.len() >= 2 {
                let fan_in: usize = shape[1..].iter().product();
                (2.0 * u - 1.0) * (3.0 / fan_in as f64).sqrt()
            } else {
                0.1 * (2.0 * u - 1.0)
            };
            v as f32
        })
        .collect()
}

/// The network with formula weights, given under the file's key names and imported like a
/// checkpoint (so the key layout is what is tested, not bypassed).
fn formula_network(spec: &ModelSpec) -> Network<B> {
    let mut network = Network::<B>::for_loading(spec, &device());
    let layout = Layout::candidates(spec)[0];
    let tensors: Vec<(String, Vec<usize>)> = network
        .collect(None, None, true)
        .iter()
        .map(|s| {
            let is_csc = s.module_type().is_some_and(|t| t.ends_with("CscLayer"));
            (
                layout.pytorch_key(spec, &s.full_path(), is_csc),
                s.shape.to_vec(),
            )
        })
        .collect();
    let batchnorms: HashSet<&str> = tensors
        .iter()
        .filter_map(|(k, _)| k.strip_suffix(".running_var"))
        .collect();
    let state: HashMap<String, TensorSnapshot> = tensors
        .iter()
        .map(|(key, shape)| {
            let module = key.rsplit_once('.').map_or("", |(m, _)| m);
            let values = formula(key, shape, batchnorms.contains(module));
            let snapshot = TensorSnapshot::from_data(
                TensorData::new(values, shape.clone()),
                key.split('.').map(String::from).collect(),
                Vec::new(),
                ParamId::new(),
            );
            (key.clone(), snapshot)
        })
        .collect();
    checkpoint::import_tensors(&mut network, Path::new("formula weights"), state).unwrap();
    network
}

fn images(dataset: &str, n: usize) -> Batch {
    let set: Box<dyn Dataset> = if dataset == "imagenet" {
        Box::new(ImageFolder::imagenet(&repo("tests/fixtures/imagenet_sample")).unwrap())
    } else {
        data::open(
            DatasetKind::Cifar10,
            &DataSource::Bundled,
            Split::Test,
            None,
        )
        .unwrap()
    };
    Batch::load(set.as_ref(), &(0..n).collect::<Vec<_>>()).unwrap()
}

fn expected_logits(case: &Value) -> Vec<f64> {
    case["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect()
}

fn bitwise_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The reference logits of a fixture checkpoint file.
fn file_fixture(all: &Value, file: &str) -> Value {
    all["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == file)
        .unwrap_or_else(|| panic!("no fixture for {file}"))
        .clone()
}

/// Logits within 1e-4 of the largest |logit| of the reference.
fn assert_close(what: &str, ours: &[f32], reference: &[f64]) {
    assert_eq!(ours.len(), reference.len(), "{what}: logit count");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max |Δlogit| {worst:.3e} vs max |logit| {scale:.3e}"
    );
}

fn check_formula_case(model: &str) {
    let all = fixtures();
    let case = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == model)
        .unwrap_or_else(|| panic!("no fixture for {model}"));
    let dataset = case["dataset"].as_str().unwrap();
    let (domain, classes) = match dataset {
        "imagenet" => (Domain::Imagenet, 1000),
        "cifar100" => (Domain::Cifar, 100),
        _ => (Domain::Cifar, 10),
    };
    let spec = ModelSpec::new(model, domain, classes).unwrap();
    let network = formula_network(&spec);
    let batch = images(dataset, case["images"].as_u64().unwrap() as usize);
    let logits = to_vec(network.forward(batch.images(&device())));
    assert_close(model, &logits, &expected_logits(case));
}

#[test]
fn robustbench_wide_resnet_28_10_matches_the_original() {
    check_formula_case("wrn-28-10");
}

#[test]
fn robustbench_wide_resnet_of_another_depth_and_width_matches_the_original() {
    check_formula_case("wrn-16-4");
}

#[test]
fn deepmind_wide_resnet_28_10_matches_the_original() {
    check_formula_case("dm-wrn-28-10");
}

#[test]
fn deepmind_wide_resnet_on_cifar100_takes_the_cifar100_statistics() {
    check_formula_case("dm-wrn-16-4");
}

#[test]
fn robustbench_preact_resnet18_matches_the_original() {
    check_formula_case("preact-resnet18");
}

#[test]
fn torchvision_resnet50_matches_the_original() {
    check_formula_case("resnet50");
}

#[test]
fn torchvision_wide_resnet50_2_matches_the_original() {
    check_formula_case("wide-resnet50-2");
}

#[test]
fn parameter_counts_are_those_of_the_original_definitions() {
    let all = fixtures();
    for (name, count) in all["params"].as_object().unwrap() {
        let (domain, classes) = if name.starts_with("resnet") || name.starts_with("wide-") {
            (Domain::Imagenet, 1000)
        } else {
            (Domain::Cifar, 10)
        };
        let spec = ModelSpec::new(name, domain, classes).unwrap();
        let network = Network::<B>::for_loading(&spec, &device());
        assert_eq!(
            network.trainable_params() as u64,
            count.as_u64().unwrap(),
            "{name}"
        );
    }
}

/// Loads a fixture checkpoint through the command-line path: (logits, weights digest, network).
fn load_file(path: &Path, model: &str) -> (Vec<f32>, String, Network<B>) {
    load_file_at_width(path, model, None)
}

fn load_file_at_width(
    path: &Path,
    model: &str,
    width: Option<f64>,
) -> (Vec<f32>, String, Network<B>) {
    let config = ModelConfig {
        name: Some(model.into()),
        weights: WeightsSource::Checkpoint(path.to_path_buf()),
        width,
        ..ModelConfig::default()
    };
    let loaded = config.load::<B>(DatasetKind::Cifar10, &device()).unwrap();
    let logits = to_vec(
        loaded
            .network
            .forward(images("cifar10", 4).images(&device())),
    );
    (logits, loaded.identity, loaded.network)
}

#[test]
fn pt_safetensors_and_burnpack_give_bitwise_the_same_model() {
    let dir = repo("tests/fixtures/zoo");
    let tmp = tempfile::tempdir().unwrap();
    let all = fixtures();
    for (model, files) in [
        ("wrn-16-1", ["wrn-16-1.pt", "wrn-16-1.safetensors"]),
        ("dm-wrn-10-1", ["dm-wrn-10-1.pt", "dm-wrn-10-1.safetensors"]),
    ] {
        let (pt_logits, pt_digest, network) = load_file(&dir.join(files[0]), model);
        let reference = file_fixture(&all, files[0]);
        assert_close(files[0], &pt_logits, &expected_logits(&reference));

        let (st_logits, st_digest, _) = load_file(&dir.join(files[1]), model);
        let native = tmp.path().join(format!("{model}.bpk"));
        checkpoint::save(&network, &native).unwrap();
        let (bpk_logits, bpk_digest, _) = load_file(&native, model);
        for (format, logits, digest) in [
            ("safetensors", &st_logits, &st_digest),
            ("burnpack", &bpk_logits, &bpk_digest),
        ] {
            assert_eq!(digest, &pt_digest, "{model}: {format} weights digest");
            assert!(
                bitwise_equal(logits, &pt_logits),
                "{model}: {format} logits differ from the .pt file's"
            );
        }
    }
}

#[test]
fn sdnet_safetensors_gives_the_model_of_its_pth() {
    let load = |file: &str| load_file_at_width(&repo(file), "sdnet18", Some(0.125));
    let (pth_logits, pth_digest, _) = load("tests/fixtures/parity/sdnet18_w0125_cifar.pth");
    let (logits, digest, _) = load("tests/fixtures/zoo/sdnet18_w0125_cifar.safetensors");
    assert_eq!(digest, pth_digest);
    assert!(bitwise_equal(&logits, &pth_logits));
}

#[test]
fn a_normalising_wrappers_mean_and_std_become_the_models_normalisation() {
    let all = fixtures();
    let reference = file_fixture(&all, "wrn-16-1-wrapped.pt");
    let (logits, digest, network) =
        load_file(&repo("tests/fixtures/zoo/wrn-16-1-wrapped.pt"), "wrn-16-1");
    assert_close("wrapped", &logits, &expected_logits(&reference));
    let used = network.spec().normalization_used();
    let expected: Vec<f64> = reference["normalization"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    let got: Vec<f64> = used
        .mean
        .iter()
        .chain(&used.std)
        .map(|v| *v as f64)
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-7, "{got:?} vs {expected:?}");
    }
    // The same tensors as the unwrapped checkpoint: one weights digest, another model.
    let (_, plain_digest, _) = load_file(&repo("tests/fixtures/zoo/wrn-16-1.pt"), "wrn-16-1");
    assert_eq!(digest, plain_digest);
    // A converted copy keeps the normalisation in its model description.
    let tmp = tempfile::tempdir().unwrap();
    let native = tmp.path().join("wrapped.bpk");
    checkpoint::save(&network, &native).unwrap();
    let (native_logits, _, reloaded) = load_file(&native, "wrn-16-1");
    assert_eq!(reloaded.spec().normalization_used(), used);
    assert!(bitwise_equal(&native_logits, &logits));
}

#[test]
fn robustbench_checkpoints_with_the_unused_sub_block1_load_as_the_model() {
    // Carmon 2019 and other RobustBench WideResNets were saved with `sub_block1=True`: a copy
    // of the first block group that the forward pass never runs.
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = common::read_safetensors(&repo("tests/fixtures/zoo/wrn-16-1.safetensors"));
    let copies: Vec<_> = tensors
        .iter()
        .filter(|(name, _, _)| name.starts_with("block1."))
        .map(|(name, shape, values)| {
            let mut values = values.clone();
            values.iter_mut().for_each(|v| *v *= -3.0);
            (
                name.replacen("block1.", "sub_block1.", 1),
                shape.clone(),
                values,
            )
        })
        .collect();
    assert!(!copies.is_empty());
    tensors.extend(copies);
    let file = tmp.path().join("sub_block1.safetensors");
    common::write_safetensors(&file, &tensors);
    let (logits, digest, _) = load_file(&file, "wrn-16-1");
    let (plain_logits, plain_digest, _) =
        load_file(&repo("tests/fixtures/zoo/wrn-16-1.safetensors"), "wrn-16-1");
    assert_eq!(digest, plain_digest);
    assert!(bitwise_equal(&logits, &plain_logits));
    // Other layouts keep every key: the same file is refused as a DeepMind model.
    let config = ModelConfig {
        name: Some("dm-wrn-16-1".into()),
        weights: WeightsSource::Checkpoint(file),
        ..ModelConfig::default()
    };
    let e = config
        .load::<B>(DatasetKind::Cifar10, &device())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("sub_block1.layer.0.bn1.weight"), "{e}");
}
