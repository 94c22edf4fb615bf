//! One batch of the CIFAR python version: a pickled dict with `data` (a numpy uint8 array of
//! N × 3072 planes) and `labels` (CIFAR-10) or `fine_labels` (CIFAR-100).
//!
//! The pickle is parsed, never executed (serde-pickle): numpy's reconstruction calls are kept as
//! the data they carry, and the array is accepted only if its shape, layout and byte count are
//! exactly those of N CIFAR images. Files written by Python 2 (byte-string keys, as published),
//! and by Python 3 at any protocol, are read the same way.

use std::path::Path;

use serde_pickle::{DeOptions, HashableValue, Value};

use crate::data::DatasetKind;
use crate::error::{Error, Result};

const PIXELS: usize = 3 * 32 * 32;

/// Whether a file starts like a pickle (protocol 2 or later).
pub fn is_pickle(bytes: &[u8]) -> bool {
    matches!(bytes, [0x80, 2..=5, ..])
}

/// Pixels (CHW planes, 3072 bytes per image) and labels of one batch file.
pub fn read_batch(bytes: &[u8], kind: DatasetKind, path: &Path) -> Result<(Vec<u8>, Vec<usize>)> {
    let bad = |what: String| Error::file(path, format!("not a CIFAR python batch: {what}"));
    let options = DeOptions::new()
        .replace_unresolved_globals()
        .keep_restore_state();
    let value = serde_pickle::value_from_slice(bytes, options)
        .map_err(|e| bad(format!("damaged or truncated pickle ({e})")))?;
    let Value::Dict(entries) = value else {
        return Err(bad("the pickle does not hold a dict".into()));
    };
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| match k {
                HashableValue::Bytes(b) => b == name.as_bytes(),
                HashableValue::String(s) => s == name,
                _ => false,
            })
            .map(|(_, v)| v)
    };
    let label_key = match kind {
        DatasetKind::Cifar100 => "fine_labels",
        _ => "labels",
    };
    let data = get("data").ok_or_else(|| bad("no 'data' entry".into()))?;
    let labels = get(label_key).ok_or_else(|| {
        bad(format!(
            "no '{label_key}' entry (is this {}?)",
            if kind == DatasetKind::Cifar100 {
                "a CIFAR-10 batch"
            } else {
                "a CIFAR-100 batch"
            }
        ))
    })?;
    let pixels = array_bytes(data).map_err(bad)?;
    let labels = label_list(labels, kind).map_err(bad)?;
    if pixels.len() != labels.len() * PIXELS {
        return Err(bad(format!(
            "{} images of data but {} labels",
            pixels.len() / PIXELS,
            labels.len()
        )));
    }
    Ok((pixels, labels))
}

/// The bytes of a C-ordered N × 3072 numpy array of one-byte elements, as numpy pickles it:
/// `_reconstruct` + BUILD state `(version, shape, dtype, fortran, data)`, or (protocol 5)
/// `_frombuffer(data, dtype, shape, order)`.
fn array_bytes(value: &Value) -> std::result::Result<Vec<u8>, String> {
    let Value::Tuple(parts) = value else {
        return Err("'data' is not a numpy array".into());
    };
    let (shape, fortran, data) = match parts.as_slice() {
        [_, Value::Tuple(shape), _, Value::Bool(fortran), data] => (shape, *fortran, data),
        [data, _, Value::Tuple(shape), Value::String(order)] => (shape, order != "C", data),
        _ => return Err("'data' is not a numpy array".into()),
    };
    let dims: Vec<usize> = shape
        .iter()
        .map(|d| match d {
            Value::I64(v) if *v >= 0 => Ok(*v as usize),
            _ => Err("'data' has a malformed shape".to_string()),
        })
        .collect::<std::result::Result<_, _>>()?;
    let [n, width] = dims[..] else {
        return Err(format!("'data' has shape {dims:?}, expected [N, 3072]"));
    };
    if width != PIXELS || fortran {
        return Err(format!(
            "'data' has shape [{n}, {width}]{}, expected C-ordered [N, 3072]",
            if fortran { " in Fortran order" } else { "" }
        ));
    }
    let bytes = match data {
        Value::Bytes(b) => b.clone(),
        _ => return Err("'data' holds no raw bytes".into()),
    };
    if bytes.len() != n * PIXELS {
        return Err(format!(
            "'data' holds {} bytes for [{n}, 3072]: not an array of uint8 pixels, or truncated",
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn label_list(value: &Value, kind: DatasetKind) -> std::result::Result<Vec<usize>, String> {
    let Value::List(items) = value else {
        return Err("the labels are not a list".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::I64(l) if (0..kind.num_classes() as i64).contains(l) => Ok(*l as usize),
            other => Err(format!(
                "label {i} is {other:?}, outside 0..{} for {}",
                kind.num_classes(),
                kind.name()
            )),
        })
        .collect()
}
