//! Checkpoints: burn's own format (with the model specification inside), PyTorch and
//! safetensors import.
//!
//! PyTorch files are read by parsing the pickle stream without executing it (burn-store);
//! safetensors files by the `safetensors` crate, which checks that the header's offsets cover
//! the data exactly. Both give a flat map of the file's own keys, which one importer turns into
//! the network's tensors: it unwraps training checkpoints (`state_dict`, `model_state_dict`,
//! `net`, `model`) and DataParallel prefixes, takes the normalisation buffers RobustBench's
//! wrappers carry, and names every missing, unexpected and wrongly shaped tensor before touching
//! the weights.

pub mod layout;

use crate::kernels::ConvBackend;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;

use burn::module::ParamId;
use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;
use burn_store::{BurnpackStore, BurnpackWriter, ModuleSnapshot, ModuleStore, TensorSnapshot};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models::load::weights_digest;
use crate::models::{ModelSpec, Network, Normalization};
use layout::{is_ignored_key, strip_wrapper, Layout};

const SPEC_KEY: &str = "robust_eval_model";
/// SHA-256 of the tensors (`models::load::weights_digest`), verified on every load.
const DIGEST_KEY: &str = "robust_eval_weights_sha256";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// burnpack, written by `robust-eval`.
    Native,
    /// A `torch.save` file (zip or legacy pickle).
    Pytorch,
    /// A safetensors file (PyTorch key names).
    Safetensors,
}

/// Identifies a checkpoint by its first bytes.
pub fn detect_format(path: &Path) -> Result<Format> {
    let mut head = [0u8; 9];
    let mut file =
        fs::File::open(path).map_err(|e| Error::io(path, "cannot open checkpoint", e))?;
    let read = file
        .read(&mut head)
        .map_err(|e| Error::io(path, "cannot read checkpoint", e))?;
    match &head[..read] {
        // Legacy torch.save: a pickle (protocol 2) of the magic number.
        [0x80, 0x02, ..] | [0x80, 0x03, ..] | [0x80, 0x04, ..] => Ok(Format::Pytorch),
        // safetensors: the header's length (little-endian u64), then its JSON.
        [_, _, _, _, _, _, _, _, b'{'] => Ok(Format::Safetensors),
        [b'N', b'R', b'U', b'B', ..] => Ok(Format::Native),
        [b'P', b'K', 3, 4, ..] => Ok(Format::Pytorch),
        _ => Err(Error::file(
            path,
            "not a checkpoint: expected a robust-eval (burnpack) file, a PyTorch torch.save file \
             or a safetensors file",
        )),
    }
}

/// The model specification stored in a native checkpoint.
pub fn read_native_spec(path: &Path) -> Result<ModelSpec> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "cannot read checkpoint", e))?;
    let metadata = burnpack_metadata(&bytes).map_err(|m| Error::file(path, m))?;
    let json = metadata.get(SPEC_KEY).ok_or_else(|| {
        Error::file(
            path,
            "burnpack file without a robust-eval model description",
        )
    })?;
    serde_json::from_str(json).map_err(|e| Error::file(path, format!("bad model description: {e}")))
}

fn burnpack_metadata(bytes: &[u8]) -> std::result::Result<BTreeMap<String, String>, String> {
    #[derive(Deserialize)]
    struct Header {
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    }
    const HEADER: usize = 10;
    if bytes.len() < HEADER || &bytes[..4] != b"NRUB" {
        return Err("not a burnpack file".into());
    }
    let size = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    let end = HEADER
        .checked_add(size)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated burnpack header")?;
    let header: Header = ciborium::de::from_reader(&bytes[HEADER..end])
        .map_err(|e| format!("bad burnpack header: {e}"))?;
    Ok(header.metadata)
}

/// Writes the network and its specification in burn's format.
pub fn save<B: ConvBackend>(network: &Network<B>, path: &Path) -> Result<()> {
    let spec = serde_json::to_string(network.spec()).expect("spec serialises");
    crate::report::refuse_non_regular(path)?;
    let snapshots = network.collect(None, None, true);
    let tmp = path.with_extension("tmp");
    BurnpackWriter::new(snapshots)
        .with_metadata(SPEC_KEY, &spec)
        .with_metadata(DIGEST_KEY, &weights_digest(network))
        .write_to_file(&tmp)
        .map_err(|e| Error::file(&tmp, format!("cannot write checkpoint: {e}")))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot move checkpoint into place", e))
}

/// Builds the network a native checkpoint describes and loads its weights.
pub fn load_native<B: ConvBackend>(path: &Path, device: &B::Device) -> Result<Network<B>> {
    let spec = read_native_spec(path)?;
    let mut network = Network::for_loading(&spec, device);
    load_weights(&mut network, path)?;
    Ok(network)
}

/// Loads weights from a native or PyTorch checkpoint into an existing network.
pub fn load_weights<B: ConvBackend>(network: &mut Network<B>, path: &Path) -> Result<()> {
    match detect_format(path)? {
        Format::Native => {
            let bytes = fs::read(path).map_err(|e| Error::io(path, "cannot read checkpoint", e))?;
            let metadata = burnpack_metadata(&bytes).map_err(|m| Error::file(path, m))?;
            let stored = read_native_spec(path)?;
            apply_native(
                network,
                &stored,
                BurnpackStore::from_file(path).auto_extension(false),
                path,
            )?;
            verify_digest(network, &metadata, path)
        }
        Format::Pytorch => import_pytorch(network, path),
        Format::Safetensors => import_safetensors(network, path),
    }
}

/// Builds the network a native checkpoint held in memory describes; `origin` names it in messages.
pub fn load_native_bytes<B: ConvBackend>(
    bytes: &'static [u8],
    origin: &Path,
    device: &B::Device,
) -> Result<Network<B>> {
    let metadata = burnpack_metadata(bytes).map_err(|m| Error::file(origin, m))?;
    let json = metadata.get(SPEC_KEY).ok_or_else(|| {
        Error::file(
            origin,
            "burnpack data without a robust-eval model description",
        )
    })?;
    let spec: ModelSpec = serde_json::from_str(json)
        .map_err(|e| Error::file(origin, format!("bad model description: {e}")))?;
    let mut network = Network::for_loading(&spec, device);
    // Copied into an allocation of our own: tensors viewed straight from the binary's read-only
    // data would not be aligned for f32 access.
    let owned = burn::tensor::Bytes::from_elems(bytes.to_vec());
    apply_native(
        &mut network,
        &spec,
        BurnpackStore::from_bytes(Some(owned)),
        origin,
    )?;
    verify_digest(&network, &metadata, origin)?;
    Ok(network)
}

/// A native file records the digest of the tensors it was written from; what was read must
/// match it (files written before the digest existed carry none).
fn verify_digest<B: ConvBackend>(
    network: &Network<B>,
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<()> {
    let Some(recorded) = metadata.get(DIGEST_KEY) else {
        return Ok(());
    };
    let read = weights_digest(network);
    if *recorded != read {
        return Err(Error::file(
            path,
            format!(
                "damaged checkpoint: its tensors give SHA-256 {}… but the file was written with \
                 {}…",
                &read[..16],
                recorded.get(..16).unwrap_or(recorded)
            ),
        ));
    }
    Ok(())
}

/// Checks that a native checkpoint describes this network, then loads its tensors.
fn apply_native<B: ConvBackend>(
    network: &mut Network<B>,
    stored: &ModelSpec,
    mut store: BurnpackStore,
    path: &Path,
) -> Result<()> {
    let own = network.spec();
    if stored.arch != own.arch
        || stored.domain != own.domain
        || stored.num_classes != own.num_classes
        || stored.width != own.width
    {
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            model: describe(own),
            details: format!("  the checkpoint holds {}", describe(stored)),
        });
    }
    let tensors = store
        .get_all_snapshots()
        .map_err(|e| Error::file(path, format!("cannot read checkpoint: {e}")))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    apply_checked(network, path, tensors, |p, _| p.to_string(), "robust-eval")
}

/// Imports an official SDNet, torchvision or pytorch_resnet_cifar10 state dict.
pub fn import_pytorch<B: ConvBackend>(network: &mut Network<B>, path: &Path) -> Result<()> {
    let reader = PytorchReader::new(path)
        .map_err(|e| Error::file(path, format!("cannot read PyTorch checkpoint: {e}")))?;
    check_storage_size(&reader, path)?;
    import_tensors(network, path, reader.into_tensors())
}

/// Imports a safetensors file holding a state dict under PyTorch's key names.
pub fn import_safetensors<B: ConvBackend>(network: &mut Network<B>, path: &Path) -> Result<()> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "cannot read checkpoint", e))?;
    import_tensors(network, path, safetensors_tensors(&bytes, path)?)
}

/// Every tensor of a safetensors file as a snapshot (floating-point data only).
fn safetensors_tensors(bytes: &[u8], path: &Path) -> Result<HashMap<String, TensorSnapshot>> {
    use safetensors::{Dtype, SafeTensors};
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::file(path, format!("damaged or truncated safetensors file: {e}")))?;
    let mut tensors = HashMap::new();
    for (key, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            // Integer tensors (BatchNorm's num_batches_tracked) hold no weights.
            _ if is_ignored_key(&key) => continue,
            other => {
                return Err(Error::file(
                    path,
                    format!(
                        "tensor {key} has dtype {other:?}; only floating-point weights are read"
                    ),
                ))
            }
        };
        let snapshot = TensorSnapshot::from_data(
            burn::tensor::TensorData::new(values, shape),
            key.split('.').map(String::from).collect(),
            Vec::new(),
            ParamId::new(),
        );
        tensors.insert(key, snapshot);
    }
    Ok(tensors)
}

/// The file must hold every byte its tensors need: the reader fills what is missing with zeros,
/// which would turn a truncated checkpoint into a plausible-looking model.
fn check_storage_size(reader: &PytorchReader, path: &Path) -> Result<()> {
    let metadata = reader.metadata();
    let Some(stored) = metadata.total_data_size else {
        return Ok(());
    };
    let needed: usize = reader
        .tensors()
        .values()
        .map(|t| t.shape.to_vec().iter().product::<usize>() * t.dtype.size())
        .sum();
    // A legacy file precedes each storage with its 8-byte element count.
    let headers = if metadata.is_legacy_format() {
        8 * reader.len()
    } else {
        0
    };
    if stored < needed + headers {
        return Err(Error::file(
            path,
            format!(
                "truncated or damaged PyTorch checkpoint: its {} tensors need {} bytes of data \
                 but the file holds {stored} (torch.load refuses it too; tensors sharing one \
                 storage are not supported)",
                reader.len(),
                needed + headers
            ),
        ));
    }
    Ok(())
}

/// Imports a PyTorch checkpoint held in memory; `origin` names it in messages.
pub fn import_pytorch_bytes<B: ConvBackend>(
    network: &mut Network<B>,
    bytes: &[u8],
    origin: &Path,
) -> Result<()> {
    // burn-store reads the legacy (pre-zip) format only from files.
    let staged = tempfile::NamedTempFile::new()
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes).map(|_| f))
        .map_err(|e| Error::io(std::env::temp_dir(), "cannot stage bundled checkpoint", e))?;
    let reader = PytorchReader::new(staged.path())
        .map_err(|e| Error::file(origin, format!("cannot read PyTorch checkpoint: {e}")))?;
    check_storage_size(&reader, origin)?;
    import_tensors(network, origin, reader.into_tensors())
}

/// Imports a state dict given as the file's own keys (PyTorch or safetensors naming, perhaps
/// inside a training checkpoint); `origin` names the file in messages.
pub fn import_tensors<B: ConvBackend>(
    network: &mut Network<B>,
    origin: &Path,
    raw: HashMap<String, TensorSnapshot>,
) -> Result<()> {
    let mut tensors = state_dict(raw, origin)?;
    if let Some(normalization) = take_normalization(&mut tensors, origin)? {
        network.set_normalization(normalization);
    }
    import_state_dict(network, origin, tensors)
}

fn import_state_dict<B: ConvBackend>(
    network: &mut Network<B>,
    path: &Path,
    mut tensors: HashMap<String, TensorSnapshot>,
) -> Result<()> {
    let spec = network.spec().clone();
    let layouts = Layout::candidates(&spec);
    // Pick the layout that explains most of the file's keys, then check it fully.
    let best = layouts
        .iter()
        .copied()
        .max_by_key(|layout| {
            expected_keys(network, &spec, *layout)
                .keys()
                .filter(|k| tensors.contains_key(*k))
                .count()
        })
        .expect("at least one layout");
    tensors.retain(|key, _| !best.is_unused(key));
    apply_checked(
        network,
        path,
        tensors,
        |p, is_csc| best.pytorch_key(&spec, p, is_csc),
        best.name(),
    )
}

/// Top-level entries of training checkpoints that hold the model's state dict, most specific
/// first (official SDNet and most training scripts; `model_state_dict`; TRADES-style `net`;
/// `model`, also the name of RobustBench's normalising wrappers' inner network).
const CONTAINERS: [&str; 4] = ["state_dict", "model_state_dict", "net", "model"];

/// Keys of the per-channel mean and std that normalising wrappers keep beside the network.
const NORMALIZATION_KEYS: [(&str, &str); 2] = [("mu", "sigma"), ("mean", "std")];

fn is_normalization_key(key: &str) -> bool {
    NORMALIZATION_KEYS
        .iter()
        .any(|(m, s)| key == *m || key == *s)
}

/// The state dict inside a file's tensors: the entries of its container if it has one (with the
/// normalisation buffers beside it; optimizer state and other bookkeeping dropped), with
/// `module.` and wrapper prefixes stripped and non-weight entries (step sizes, batch counters)
/// removed.
fn state_dict(
    raw: HashMap<String, TensorSnapshot>,
    path: &Path,
) -> Result<HashMap<String, TensorSnapshot>> {
    let container = CONTAINERS
        .iter()
        .map(|c| format!("{c}."))
        .find(|prefix| raw.keys().any(|k| k.starts_with(prefix.as_str())));
    let mut tensors: HashMap<String, TensorSnapshot> = HashMap::new();
    for (key, snapshot) in raw {
        let key = strip_wrapper(&key).to_string();
        let key = match &container {
            Some(prefix) => match key.strip_prefix(prefix.as_str()) {
                Some(inner) => strip_wrapper(inner).to_string(),
                None if is_normalization_key(&key) => key,
                None => continue, // optimizer state and other training bookkeeping
            },
            None => key,
        };
        if !is_ignored_key(&key) {
            tensors.insert(key, snapshot);
        }
    }
    // A wrapper module around the network (`model.` or `net.` on every weight).
    for wrapper in ["model.", "net."] {
        let wrapped = tensors
            .keys()
            .filter(|k| !is_normalization_key(k))
            .all(|k| k.starts_with(wrapper));
        if wrapped && !tensors.is_empty() {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| match k.strip_prefix(wrapper) {
                    Some(inner) => (strip_wrapper(inner).to_string(), v),
                    None => (k, v),
                })
                .collect();
        }
    }
    if tensors.keys().all(|k| is_normalization_key(k)) {
        return Err(Error::file(path, "the file holds no tensors"));
    }
    Ok(tensors)
}

/// Removes a normalising wrapper's mean and std (3 values each, any shape) from the state dict.
fn take_normalization(
    tensors: &mut HashMap<String, TensorSnapshot>,
    path: &Path,
) -> Result<Option<Normalization>> {
    for (mean_key, std_key) in NORMALIZATION_KEYS {
        let (mean, std) = match (tensors.remove(mean_key), tensors.remove(std_key)) {
            (None, None) => continue,
            (Some(mean), Some(std)) => (mean, std),
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::file(
                    path,
                    format!("the file holds one of {mean_key} / {std_key} but not the other"),
                ))
            }
        };
        let three = |snapshot: &TensorSnapshot, key: &str| -> Result<[f32; 3]> {
            let values: Vec<f32> = snapshot
                .to_data()
                .map_err(|e| Error::file(path, format!("{key}: cannot be read ({e})")))?
                .convert::<f32>()
                .to_vec()
                .map_err(|e| Error::file(path, format!("{key}: cannot be read ({e:?})")))?;
            <[f32; 3]>::try_from(values.as_slice()).map_err(|_| {
                Error::file(
                    path,
                    format!(
                        "{key} holds {} values; a normalisation has one per colour channel (3)",
                        values.len()
                    ),
                )
            })
        };
        let normalization = Normalization::new(three(&mean, mean_key)?, three(&std, std_key)?)
            .map_err(|e| Error::file(path, e.to_string()))?;
        return Ok(Some(normalization));
    }
    Ok(None)
}

/// Expected file keys (in the file's naming) → (internal path, shape, is_csc).
fn expected_keys<B: ConvBackend>(
    network: &Network<B>,
    spec: &ModelSpec,
    layout: Layout,
) -> BTreeMap<String, (String, Vec<usize>, bool)> {
    network
        .collect(None, None, true)
        .into_iter()
        .map(|s| {
            let path = s.full_path();
            let is_csc = s.module_type().is_some_and(|t| t.ends_with("CscLayer"));
            (
                layout.pytorch_key(spec, &path, is_csc),
                (path, s.shape.to_vec(), is_csc),
            )
        })
        .collect()
}

fn apply_checked<B: ConvBackend>(
    network: &mut Network<B>,
    path: &Path,
    mut tensors: HashMap<String, TensorSnapshot>,
    external_key: impl Fn(&str, bool) -> String,
    layout_name: &str,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    let mut bad_values = Vec::new();
    let mut ready = Vec::new();
    for snapshot in network.collect(None, None, true) {
        let internal = snapshot.full_path();
        let is_csc = snapshot
            .module_type()
            .is_some_and(|t| t.ends_with("CscLayer"));
        let key = external_key(&internal, is_csc);
        match tensors.remove(&key) {
            None => missing.push(format!("{key} {:?}", snapshot.shape.to_vec())),
            Some(found) if found.shape.to_vec() != snapshot.shape.to_vec() => {
                wrong_shape.push(format!(
                    "{key}: file {:?}, model {:?}",
                    found.shape.to_vec(),
                    snapshot.shape.to_vec()
                ))
            }
            Some(found) => {
                if let Some(problem) = value_problem(&found, &key, &internal) {
                    bad_values.push(problem);
                }
                ready.push(renamed(found, &internal, snapshot.container_stack.clone()))
            }
        }
    }
    if !bad_values.is_empty() {
        return Err(Error::file(
            path,
            format!(
                "{} tensor(s) hold values no trained model has:\n  {}",
                bad_values.len(),
                bad_values.join("\n  ")
            ),
        ));
    }
    let mut unexpected: Vec<String> = tensors.keys().cloned().collect();
    unexpected.sort();
    if !(missing.is_empty() && wrong_shape.is_empty() && unexpected.is_empty()) {
        let mut details = format!("  (read as the {layout_name} layout)\n");
        for (title, items) in [
            ("missing", &missing),
            ("wrongly shaped", &wrong_shape),
            ("unexpected", &unexpected),
        ] {
            if !items.is_empty() {
                details.push_str(&format!("  {} {title}:\n", items.len()));
                for item in items {
                    details.push_str(&format!("    {item}\n"));
                }
            }
        }
        return Err(Error::CheckpointMismatch {
            path: path.to_path_buf(),
            model: describe(network.spec()),
            details,
        });
    }
    let result = network.apply(ready, None, None, true);
    if !result.errors.is_empty() {
        let list: Vec<String> = result.errors.iter().map(|e| format!("  {e}")).collect();
        return Err(Error::file(
            path,
            format!("cannot load tensors:\n{}", list.join("\n")),
        ));
    }
    network.reset_step_caches();
    Ok(())
}

/// Why a tensor's values cannot be a trained model's: NaN or infinite entries, or a negative
/// BatchNorm variance (which would turn every activation after it into NaN).
fn value_problem(snapshot: &TensorSnapshot, key: &str, internal: &str) -> Option<String> {
    let data = match snapshot.to_data() {
        Ok(data) => data.convert::<f32>(),
        Err(e) => return Some(format!("{key}: cannot be read ({e})")),
    };
    let values = match data.as_slice::<f32>() {
        Ok(values) => values,
        Err(e) => return Some(format!("{key}: cannot be read ({e:?})")),
    };
    let non_finite = values.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        let first = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Some(format!(
            "{key}: {non_finite} non-finite value(s), the first at element {first} ({})",
            values[first]
        ));
    }
    if internal.ends_with("running_var") {
        if let Some(i) = values.iter().position(|v| *v < 0.0) {
            return Some(format!(
                "{key}: negative variance {} at element {i}",
                values[i]
            ));
        }
    }
    None
}

/// The same tensor under our internal path, converted to f32 if stored otherwise.
fn renamed(
    source: TensorSnapshot,
    internal: &str,
    containers: Option<Vec<String>>,
) -> TensorSnapshot {
    let data_fn = source.clone_data_fn();
    let convert = source.dtype != DType::F32;
    let loader = std::rc::Rc::new(move || {
        let data = data_fn()?;
        Ok(if convert { data.convert::<f32>() } else { data })
    });
    TensorSnapshot::from_closure(
        loader,
        DType::F32,
        source.shape.clone(),
        internal.split('.').map(String::from).collect(),
        containers.unwrap_or_default(),
        ParamId::new(),
    )
}

fn describe(spec: &ModelSpec) -> String {
    format!(
        "{} ({:?}, {} classes, width {})",
        spec.name(),
        spec.domain,
        spec.num_classes,
        spec.width
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;
    use burn::tensor::TensorData;

    /// A native checkpoint of a small ResNet-20 with the tensor at `target` replaced by `edit`.
    fn edited_checkpoint(
        dir: &Path,
        target: &str,
        edit: impl Fn(&mut [f32]),
    ) -> std::path::PathBuf {
        let spec = ModelSpec::new("resnet20", crate::models::Domain::Cifar, 10).unwrap();
        let network: Network<Cpu> = Network::new(&spec, 0, &Default::default());
        let snapshots: Vec<TensorSnapshot> = network
            .collect(None, None, true)
            .into_iter()
            .map(|s| {
                if s.full_path() != target {
                    return s;
                }
                let data = s.to_data().unwrap();
                let mut values: Vec<f32> = data.to_vec().unwrap();
                edit(&mut values);
                TensorSnapshot::from_data(
                    TensorData::new(values, s.shape.clone()),
                    s.path_stack.clone().unwrap_or_default(),
                    s.container_stack.clone().unwrap_or_default(),
                    ParamId::new(),
                )
            })
            .collect();
        let paths: Vec<String> = network
            .collect(None, None, true)
            .iter()
            .map(|s| s.full_path())
            .collect();
        assert!(
            paths.iter().any(|p| p == target),
            "no {target} in {paths:?}"
        );
        let path = dir.join("edited.bpk");
        BurnpackWriter::new(snapshots)
            .with_metadata(SPEC_KEY, &serde_json::to_string(&spec).unwrap())
            .write_to_file(&path)
            .unwrap();
        path
    }

    fn load_error(path: &Path) -> String {
        load_native::<Cpu>(path, &Default::default())
            .expect_err("the checkpoint must be refused")
            .to_string()
    }

    fn snapshot(values: Vec<f32>) -> TensorSnapshot {
        let n = values.len();
        TensorSnapshot::from_data(
            TensorData::new(values, [n]),
            vec!["t".into()],
            Vec::new(),
            ParamId::new(),
        )
    }

    fn unwrapped(keys: &[&str]) -> Vec<String> {
        let raw = keys
            .iter()
            .map(|k| (k.to_string(), snapshot(vec![1.0])))
            .collect();
        let mut keys: Vec<String> = state_dict(raw, Path::new("f.pt"))
            .unwrap()
            .into_keys()
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn training_checkpoints_and_wrappers_are_unwrapped_to_the_state_dict() {
        let expected = vec!["bn1.running_var".to_string(), "conv1.weight".into()];
        for container in CONTAINERS {
            let keys = [
                format!("{container}.module.conv1.weight"),
                format!("{container}.module.bn1.running_var"),
                format!("{container}.module.bn1.num_batches_tracked"),
                "optimizer.state.0.momentum_buffer".into(),
                "ema.conv1.weight".into(),
            ];
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            assert_eq!(unwrapped(&keys), expected, "{container}");
        }
        // A normalising wrapper: its buffers stay beside the network's unwrapped keys.
        assert_eq!(
            unwrapped(&["module.mu", "module.sigma", "module.model.conv1.weight"]),
            vec!["conv1.weight", "mu", "sigma"]
        );
        assert_eq!(
            unwrapped(&["model.conv1.weight", "model.bn1.running_var"]),
            expected
        );
        // A file of nothing but normalisation holds no weights.
        let raw = [("mu", 1.0), ("sigma", 1.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), snapshot(vec![v; 3])))
            .collect();
        assert!(state_dict(raw, Path::new("f.pt")).is_err());
    }

    #[test]
    fn a_nan_weight_is_refused_with_the_tensor_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = edited_checkpoint(dir.path(), "stages.0.1.conv1.weight", |v| v[17] = f32::NAN);
        let e = load_error(&path);
        assert!(
            e.contains("stages.0.1.conv1.weight") && e.contains("element 17"),
            "{e}"
        );
    }

    #[test]
    fn a_negative_variance_is_refused_with_the_tensor_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = edited_checkpoint(dir.path(), "stem.bn.running_var", |v| v[3] = -0.5);
        let e = load_error(&path);
        assert!(
            e.contains("stem.bn.running_var") && e.contains("negative variance"),
            "{e}"
        );
    }
}
