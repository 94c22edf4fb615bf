//! Corrupted data sets: corruptions applied on the fly to any data set, pre-made CIFAR-10-C /
//! ImageNet-C sets, and export in those layouts.

use std::fs;
use std::path::{Path, PathBuf};

use corruptions::{corrupt_many, Corruption, Preset, RgbImage};

use crate::data::folder::{ImageFolder, Preprocess};
use crate::data::{CifarSet, Dataset, DatasetKind};
use crate::error::{Error, Result};
use crate::report::NpyWriter;

/// A data set seen through one corruption at one severity.
pub struct CorruptedSet<'a> {
    pub inner: &'a dyn Dataset,
    pub corruption: Corruption,
    pub severity: u8,
    pub preset: Preset,
    pub seed: u64,
}

impl CorruptedSet<'_> {
    /// The corrupted images `indices` as RGB images.
    pub fn images(&self, indices: &[usize]) -> Result<Vec<RgbImage>> {
        let [c, h, w] = self.inner.image_shape();
        if c != 3 {
            return Err(Error::input(format!(
                "corruptions need RGB images, got {c} channels"
            )));
        }
        let raw = self.inner.load_u8(indices)?;
        let clean: Vec<RgbImage> = raw
            .chunks(3 * h * w)
            .map(|planes| {
                RgbImage::from_planes(w, h, planes).map_err(|e| Error::input(e.to_string()))
            })
            .collect::<Result<_>>()?;
        let ids: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
        corrupt_many(
            &clean,
            &ids,
            self.corruption,
            self.severity,
            self.preset,
            self.seed,
        )
        .map_err(|e| Error::input(format!("{}: {e}", self.inner.source())))
    }
}

impl Dataset for CorruptedSet<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn image_shape(&self) -> [usize; 3] {
        self.inner.image_shape()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn label(&self, index: usize) -> usize {
        self.inner.label(index)
    }
    fn load_u8(&self, indices: &[usize]) -> Result<Vec<u8>> {
        Ok(self
            .images(indices)?
            .iter()
            .flat_map(|img| img.to_planes())
            .collect())
    }
    fn source(&self) -> String {
        format!(
            "{} ({} s{})",
            self.inner.source(),
            self.corruption,
            self.severity
        )
    }
}

/// One severity block of a pre-made CIFAR-10-C / CIFAR-100-C file: `<corruption>.npy`
/// (uint8 [5·N, 32, 32, 3], severity 1 first) with `labels.npy`.
pub fn premade_cifar(
    dir: &Path,
    corruption: Corruption,
    severity: u8,
    num_classes: usize,
    limit: Option<usize>,
) -> Result<CifarSet> {
    let path = dir.join(format!("{corruption}.npy"));
    let (shape, pixels) = read_npy_u8(&path)?;
    if shape.len() != 4 || shape[1..] != [32, 32, 3] || shape[0] % 5 != 0 {
        return Err(Error::file(
            &path,
            format!("expected uint8 [5·N, 32, 32, 3], found shape {shape:?}"),
        ));
    }
    let rows = shape[0] as usize;
    let labels_path = dir.join("labels.npy");
    let (label_shape, labels) = read_npy_u8(&labels_path)?;
    if label_shape != [rows as u64] {
        return Err(Error::file(
            &labels_path,
            format!(
                "{} labels for {rows} images in {}",
                label_shape.first().unwrap_or(&0),
                path.display()
            ),
        ));
    }
    let n = rows / 5;
    let keep = limit.unwrap_or(n).min(n);
    let start = (severity as usize - 1) * n;
    let mut planes = Vec::with_capacity(keep * 3072);
    for i in start..start + keep {
        let image =
            RgbImage::new(32, 32, pixels[i * 3072..(i + 1) * 3072].to_vec()).expect("3072 bytes");
        planes.extend(image.to_planes());
    }
    let labels: Vec<usize> = labels[start..start + keep]
        .iter()
        .map(|&l| l as usize)
        .collect();
    if let Some(bad) = labels.iter().find(|&&l| l >= num_classes) {
        return Err(Error::file(
            &labels_path,
            format!("label {bad} outside 0..{num_classes}"),
        ));
    }
    Ok(CifarSet::from_planes(
        planes,
        labels,
        num_classes,
        format!("{} severity {severity}", path.display()),
    ))
}

/// An ImageNet-C folder `<dir>/<corruption>/<severity>/<wnid>/<file>` (224×224, used as stored).
pub fn premade_imagenet(dir: &Path, corruption: Corruption, severity: u8) -> Result<ImageFolder> {
    ImageFolder::open(
        &dir.join(corruption.name()).join(severity.to_string()),
        Preprocess::AsIs { size: 224 },
    )
}

/// A uint8 `.npy` array in C order (Fortran-order files are transposed, other dtypes refused).
fn read_npy_u8(path: &Path) -> Result<(Vec<u64>, Vec<u8>)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| Error::file(path, format!("not a .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    let dtype = npy.dtype().descr();
    if !["'|u1'", "'<u1'", "'>u1'"].contains(&dtype.as_str()) {
        return Err(Error::file(
            path,
            format!("expected uint8 data ('|u1'), found dtype {dtype}"),
        ));
    }
    let fortran = npy.order() == npyz::Order::Fortran;
    let data = npy
        .into_vec::<u8>()
        .map_err(|e| Error::file(path, format!("damaged uint8 data: {e}")))?;
    let expected: u64 = shape.iter().product();
    if data.len() as u64 != expected {
        return Err(Error::file(
            path,
            format!("{} values for shape {shape:?}", data.len()),
        ));
    }
    // npyz reads the values the shape asks for and ignores what follows; a header length
    // that was damaged (or bytes appended) would shift the data silently.
    let start = npy_data_offset(&bytes).map_err(|e| Error::file(path, e))?;
    if (bytes.len() - start) as u64 != expected {
        return Err(Error::file(
            path,
            format!(
                "{} data bytes after the header, the shape {shape:?} needs {expected}",
                bytes.len() - start
            ),
        ));
    }
    Ok((
        shape.clone(),
        if fortran {
            fortran_to_c(&data, &shape)
        } else {
            data
        },
    ))
}

/// Where the data of a `.npy` file starts: after the magic string, the version, the header length
/// (2 bytes in version 1, 4 in versions 2 and 3) and the header, which ends in a newline.
fn npy_data_offset(bytes: &[u8]) -> std::result::Result<usize, String> {
    let length_bytes = match bytes.get(6) {
        Some(1) => 2,
        Some(2 | 3) => 4,
        other => return Err(format!("unknown .npy version {other:?}")),
    };
    let field = bytes
        .get(8..8 + length_bytes)
        .ok_or("the header length is cut off")?;
    let header_len = field
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let start = 8 + length_bytes + header_len;
    match bytes.get(start.wrapping_sub(1)) {
        Some(b'\n') if start <= bytes.len() => Ok(start),
        _ => Err(format!(
            "the header ({header_len} bytes by its length field) does not end in a newline"
        )),
    }
}

/// Reorders an array stored first-index-fastest (Fortran) into last-index-fastest (C).
fn fortran_to_c(data: &[u8], shape: &[u64]) -> Vec<u8> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let mut out = vec![0u8; data.len()];
    let mut index = vec![0usize; dims.len()];
    for value in out.iter_mut() {
        // `index` walks C order; its Fortran offset has the first index fastest.
        let offset = index
            .iter()
            .zip(&dims)
            .rev()
            .fold(0usize, |acc, (&i, &d)| acc * d + i);
        *value = data[offset];
        for axis in (0..dims.len()).rev() {
            index[axis] += 1;
            if index[axis] < dims[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Writes corrupted sets in the layouts of the released data sets.
pub enum Exporter {
    /// `<dir>/<corruption>.npy` uint8 [rows, 32, 32, 3] and `<dir>/labels.npy`.
    Cifar {
        dir: PathBuf,
        rows: Vec<u8>,
        labels: Vec<u8>,
    },
    /// `<dir>/<corruption>/<severity>/<wnid>/<file>.JPEG`, quality 85.
    Imagenet { dir: PathBuf },
}

impl Exporter {
    pub fn new(dir: &Path, preset: Preset) -> Result<Self> {
        crate::report::prepare_output_dir(dir)?;
        Ok(match preset {
            Preset::Cifar => Exporter::Cifar {
                dir: dir.to_path_buf(),
                rows: Vec::new(),
                labels: Vec::new(),
            },
            Preset::Imagenet => Exporter::Imagenet {
                dir: dir.to_path_buf(),
            },
        })
    }

    /// Adds a batch of corrupted images (in data-set order).
    pub fn add(
        &mut self,
        set: &CorruptedSet<'_>,
        indices: &[usize],
        images: &[RgbImage],
        names: &dyn Fn(usize) -> Option<(String, String)>,
    ) -> Result<()> {
        match self {
            Exporter::Cifar { rows, labels, .. } => {
                for (image, &i) in images.iter().zip(indices) {
                    rows.extend_from_slice(image.as_bytes());
                    labels.push(set.label(i) as u8);
                }
                Ok(())
            }
            Exporter::Imagenet { dir } => {
                for (image, &i) in images.iter().zip(indices) {
                    let (class, file) =
                        names(i).unwrap_or_else(|| ("images".into(), format!("{i:08}.JPEG")));
                    let folder = dir
                        .join(set.corruption.name())
                        .join(set.severity.to_string())
                        .join(class);
                    fs::create_dir_all(&folder)
                        .map_err(|e| Error::io(&folder, "cannot create", e))?;
                    let bytes = corruptions::encode_jpeg(image, 85)
                        .map_err(|e| Error::input(e.to_string()))?;
                    let stem = Path::new(&file)
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("image")
                        .to_string();
                    let path = folder.join(format!("{stem}.JPEG"));
                    fs::write(&path, bytes).map_err(|e| Error::io(&path, "cannot write", e))?;
                }
                Ok(())
            }
        }
    }

    /// Ends one corruption (all its severities added): writes the CIFAR arrays.
    pub fn finish_corruption(&mut self, corruption: Corruption) -> Result<()> {
        if let Exporter::Cifar { dir, rows, labels } = self {
            let n = rows.len() / 3072;
            NpyWriter::save(
                &dir.join(format!("{corruption}.npy")),
                rows,
                &[n, 32, 32, 3],
            )?;
            NpyWriter::save(&dir.join("labels.npy"), labels, &[n])?;
            rows.clear();
            labels.clear();
        }
        Ok(())
    }
}

/// A pre-made set of one corruption and severity for a data set kind, at most `limit` images.
pub fn premade_open(
    kind: DatasetKind,
    dir: &Path,
    corruption: Corruption,
    severity: u8,
    limit: Option<usize>,
) -> Result<Box<dyn Dataset>> {
    match kind {
        DatasetKind::Imagenet => {
            let folder = premade_imagenet(dir, corruption, severity)?;
            let set: Box<dyn Dataset> = Box::new(folder);
            Ok(crate::data::limited(set, limit))
        }
        kind => Ok(Box::new(premade_cifar(
            dir,
            corruption,
            severity,
            kind.num_classes(),
            limit,
        )?)),
    }
}

/// The image count of [`premade_open`]'s set, read from the file header or folder listing only.
pub fn premade_len(
    kind: DatasetKind,
    dir: &Path,
    corruption: Corruption,
    severity: u8,
    limit: Option<usize>,
) -> Result<usize> {
    let n = match kind {
        DatasetKind::Imagenet => premade_imagenet(dir, corruption, severity)?.len(),
        _ => {
            let path = dir.join(format!("{corruption}.npy"));
            let file = fs::File::open(&path).map_err(|e| Error::io(&path, "cannot read", e))?;
            let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
                .map_err(|e| Error::file(&path, format!("not a .npy file: {e}")))?;
            let rows = npy.shape().first().copied().unwrap_or(0) as usize;
            if !rows.is_multiple_of(5) || rows == 0 {
                return Err(Error::file(
                    &path,
                    format!(
                        "expected uint8 [5·N, 32, 32, 3], found shape {:?}",
                        npy.shape()
                    ),
                ));
            }
            rows / 5
        }
    };
    Ok(limit.map_or(n, |l| l.min(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(values: &[u8], shape: &[u64], order: npyz::Order, descr: &str) -> Vec<u8> {
        let fortran = if order == npyz::Order::Fortran {
            "True"
        } else {
            "False"
        };
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({},), }}",
            dims.join(", ")
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(values);
        out
    }

    #[test]
    fn fortran_order_npy_reads_as_its_c_order_twin() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [2u64, 3, 4];
        let c: Vec<u8> = (0..24).collect();
        // The same array stored first index fastest.
        let mut f = vec![0u8; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    f[i + 2 * (j + 3 * k)] = c[(i * 3 + j) * 4 + k];
                }
            }
        }
        let (cp, fp) = (dir.path().join("c.npy"), dir.path().join("f.npy"));
        fs::write(&cp, npy(&c, &shape, npyz::Order::C, "|u1")).unwrap();
        fs::write(&fp, npy(&f, &shape, npyz::Order::Fortran, "|u1")).unwrap();
        assert_eq!(read_npy_u8(&cp).unwrap(), (shape.to_vec(), c.clone()));
        assert_eq!(read_npy_u8(&fp).unwrap(), (shape.to_vec(), c));
    }

    #[test]
    fn other_dtypes_and_short_data_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        fs::write(&path, npy(&[0u8; 8], &[2], npyz::Order::C, "<f4")).unwrap();
        let e = read_npy_u8(&path).unwrap_err().to_string();
        assert!(e.contains("expected uint8") && e.contains("<f4"), "{e}");
        fs::write(&path, npy(&[0u8; 5], &[2, 3], npyz::Order::C, "|u1")).unwrap();
        assert!(read_npy_u8(&path).is_err());
    }
}
