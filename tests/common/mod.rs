//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use robust_eval::device::Cpu;

pub type B = Cpu;

pub fn device() -> burn::tensor::Device<B> {
    Default::default()
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn tensor4(values: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(values, shape), &device())
}

pub fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Reads a little-endian .npy file of f32, f64 or u8 values as f64.
pub fn read_npy(path: &Path) -> (Vec<u64>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    let values = match npy.dtype() {
        npyz::DType::Plain(t)
            if t.type_char() == npyz::TypeChar::Float && t.num_bytes() == Some(4) =>
        {
            npy.into_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float => {
            npy.into_vec::<f64>().unwrap()
        }
        _ => npy
            .into_vec::<u8>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
    };
    (shape, values)
}

/// Runs the CLI in-process.
pub fn cli(args: &[&str]) -> robust_eval::Result<()> {
    use clap::Parser;
    let mut full = vec!["robust-eval"];
    full.extend_from_slice(args);
    robust_eval::cli::run(robust_eval::cli::Cli::try_parse_from(full).expect("arguments parse"))
        .map(|_| ())
}

/// The rows of a CSV file with a header, as maps from column name to value.
pub fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// The cell records of a results directory (`results.jsonl`).
pub fn cell_records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The journal files (`cells/*.csv`) of a results directory.
pub fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    files
}

/// Saves the bundled CIFAR-10 `model` as a native checkpoint with `edit` applied to the values of
/// every parameter of rank `rank` (4: convolution kernels, 2: the classifier).
pub fn edited_bundled(model: &str, file: &Path, rank: usize, edit: impl FnMut(&mut [f32])) {
    use burn::module::{Module, ModuleMapper, Param};
    struct Edit<F>(usize, F);
    impl<Bk: burn::tensor::backend::Backend, F: FnMut(&mut [f32])> ModuleMapper<Bk> for Edit<F> {
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<Bk, D>>,
        ) -> Param<Tensor<Bk, D>> {
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
    let config = robust_eval::models::ModelConfig {
        name: Some(model.into()),
        ..Default::default()
    };
    let network = config
        .load::<Cpu>(robust_eval::data::DatasetKind::Cifar10, &Default::default())
        .unwrap()
        .network
        .map(&mut Edit(rank, edit));
    robust_eval::checkpoint::save(&network, file).unwrap();
}

/// The distinct values at a JSON pointer over the cells of a results directory.
pub fn distinct_in_results(dir: &Path, pointer: &str) -> std::collections::BTreeSet<String> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.pointer(pointer).unwrap().as_str().unwrap().to_string()
        })
        .collect()
}

/// The f32 tensors of a safetensors file (name, shape, values), in name order.
pub fn read_safetensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Writes f32 tensors (name, shape, values) as a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// `robust-eval train ARGS` in this process.
pub fn train(args: &[&str]) -> robust_eval::Result<robust_eval::train::TrainOutcome> {
    use clap::Parser;
    use robust_eval::cli::{train_cmd, Cli, Command};
    let mut full = vec!["robust-eval", "train"];
    full.extend_from_slice(args);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Train(a) => train_cmd::run(a),
        _ => unreachable!(),
    }
}
