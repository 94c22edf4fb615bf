//! ImageNet validation images in one flat folder (`ILSVRC2012_val_00000001.JPEG`, …), labelled
//! by a label file as users have it:
//! - the devkit's `ILSVRC2012_validation_ground_truth.txt`: line i holds the ILSVRC2012_ID
//!   (1–1000, the devkit's own class order) of image i;
//! - Kaggle's `LOC_val_solution.csv`: `ImageId,PredictionString`, the class the first WordNet
//!   id of the boxes;
//! - Caffe's `val.txt`: `<file> <class index>` in the standard (sorted WordNet id) order.
//!
//! The label file and the folder must agree exactly: a line that does not parse, a class that
//! does not exist, an image listed twice, an image listed but absent and an image present but
//! not listed are each an error naming the file and line (or the image).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::data::folder::imagenet_wnids;
use crate::error::{Error, Result};

/// The 1000 WordNet ids in the devkit's ILSVRC2012_ID order (ID 1 first).
const DEVKIT_IDS: &str = include_str!("imagenet_devkit_ids.txt");

/// The devkit's class order: `devkit_wnids()[id - 1]` is the WordNet id of ILSVRC2012_ID `id`.
pub fn devkit_wnids() -> Vec<&'static str> {
    DEVKIT_IDS.lines().collect()
}

/// One labelled image of a label file: its file stem, class index and line.
struct Entry {
    stem: String,
    label: usize,
    line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Devkit,
    Kaggle,
    Caffe,
}

/// The images of `root` with their labels from `labels`, in file-name order.
pub fn labelled_images(root: &Path, labels: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let text = fs::read_to_string(labels)
        .map_err(|e| Error::io(labels, "cannot read the label file", e))?;
    let entries = parse(&text, labels)?;
    let images = image_files(root)?;
    let mut listed: HashMap<&str, usize> = HashMap::new();
    for entry in &entries {
        if let Some(first) = listed.insert(&entry.stem, entry.line) {
            return Err(Error::file(
                labels,
                format!(
                    "line {}: {} is listed again (first at line {first})",
                    entry.line, entry.stem
                ),
            ));
        }
    }
    let mut unlisted: Vec<&PathBuf> = images
        .iter()
        .filter(|(stem, _)| !listed.contains_key(stem.as_str()))
        .map(|(_, path)| path)
        .collect();
    unlisted.sort();
    if let Some(path) = unlisted.first() {
        return Err(Error::file(
            path,
            format!(
                "has no label in {} ({} of the folder's {} images are listed: a partial or wrong \
                 label file?)",
                labels.display(),
                images
                    .keys()
                    .filter(|s| listed.contains_key(s.as_str()))
                    .count(),
                images.len()
            ),
        ));
    }
    let mut samples = Vec::with_capacity(entries.len());
    for entry in &entries {
        let Some(path) = images.get(&entry.stem) else {
            return Err(Error::file(
                labels,
                format!(
                    "line {}: image {} is not in {} (the folder must hold every image the label \
                     file lists)",
                    entry.line,
                    entry.stem,
                    root.display()
                ),
            ));
        };
        samples.push((path.clone(), entry.label));
    }
    samples.sort();
    Ok(samples)
}

/// Image files directly in `root`, by file stem.
fn image_files(root: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut images = HashMap::new();
    for path in crate::data::folder::sorted_entries(root)? {
        if !(path.is_file() && crate::data::folder::has_image_extension(&path)) {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(other) = images.insert(stem, path.clone()) {
            return Err(Error::file(
                &path,
                format!("two images share the name {}", other.display()),
            ));
        }
    }
    if images.is_empty() {
        return Err(Error::file(root, "no images in the folder"));
    }
    Ok(images)
}

fn parse(text: &str, file: &Path) -> Result<Vec<Entry>> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let Some(&(_, first)) = lines.first() else {
        return Err(Error::file(file, "the label file is empty"));
    };
    let format = if first.starts_with("ImageId") {
        Format::Kaggle
    } else if first.split_whitespace().count() == 2 {
        Format::Caffe
    } else if first.parse::<usize>().is_ok() {
        Format::Devkit
    } else {
        return Err(Error::file(
            file,
            "line 1: not a known label file (expected the devkit's ground-truth list of class \
             ids, Kaggle's LOC_val_solution.csv or a '<file> <class index>' list)",
        ));
    };
    let wnids = imagenet_wnids();
    let devkit = devkit_wnids();
    let class_of = |wnid: &str, line: usize| {
        wnids.binary_search(&wnid).map_err(|_| {
            Error::file(
                file,
                format!("line {line}: '{wnid}' is not one of the 1000 ImageNet WordNet ids"),
            )
        })
    };
    let bad = |line: usize, what: &str| Error::file(file, format!("line {line}: {what}"));
    let mut entries = Vec::new();
    for &(line, content) in &lines {
        let entry = match format {
            Format::Devkit => {
                let id: usize = content
                    .parse()
                    .map_err(|_| bad(line, &format!("'{content}' is not a class id")))?;
                if !(1..=1000).contains(&id) {
                    return Err(bad(line, &format!("class id {id} is outside 1–1000")));
                }
                Entry {
                    // Line i of the devkit list labels image i (blank lines are not skipped).
                    stem: format!("ILSVRC2012_val_{line:08}"),
                    label: class_of(devkit[id - 1], line)?,
                    line,
                }
            }
            Format::Kaggle if line == lines[0].0 => continue,
            Format::Kaggle => {
                let (stem, boxes) = content
                    .split_once(',')
                    .ok_or_else(|| bad(line, "expected 'ImageId,PredictionString'"))?;
                let tokens: Vec<&str> = boxes.split_whitespace().collect();
                let wnid = *tokens
                    .first()
                    .ok_or_else(|| bad(line, "no class given for the image"))?;
                // Every box names its class first (wnid x_min y_min x_max y_max).
                if tokens.iter().step_by(5).any(|t| *t != wnid) {
                    return Err(bad(line, "the boxes name different classes"));
                }
                Entry {
                    stem: stem.trim().to_string(),
                    label: class_of(wnid, line)?,
                    line,
                }
            }
            Format::Caffe => {
                let mut parts = content.split_whitespace();
                let (Some(name), Some(index), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad(line, "expected '<file> <class index>'"));
                };
                let label: usize =
                    index.parse().ok().filter(|l| *l < 1000).ok_or_else(|| {
                        bad(line, &format!("'{index}' is not a class index 0–999"))
                    })?;
                let stem = Path::new(name)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or(name);
                Entry {
                    stem: stem.to_string(),
                    label,
                    line,
                }
            }
        };
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devkit_order_is_a_permutation_with_the_known_first_answers() {
        let devkit = devkit_wnids();
        let mut sorted = devkit.clone();
        sorted.sort();
        assert_eq!(sorted, imagenet_wnids());
        // The devkit's first five ground-truth ids (490, 361, 171, 822, 297) are the classes
        // Caffe's val.txt gives the same images (65, 970, 230, 809, 516).
        let wnids = imagenet_wnids();
        for (id, index) in [(490, 65), (361, 970), (171, 230), (822, 809), (297, 516)] {
            assert_eq!(devkit[id - 1], wnids[index], "ILSVRC2012_ID {id}");
        }
    }
}
