//! The data layouts users have on disk: CIFAR in torchvision's python version (pickled
//! batches, fixtures: tools/make_data_fixtures.py) and ImageNet validation as one flat folder
//! with a label file.

mod common;

use std::path::{Path, PathBuf};

use common::repo;
use robust_eval::data::folder::{imagenet_wnids, ImageFolder};
use robust_eval::data::labels::devkit_wnids;
use robust_eval::data::{self, DataSource, Dataset, DatasetKind, Split};

fn open(kind: DatasetKind, path: &Path, split: Split) -> robust_eval::Result<Box<dyn Dataset>> {
    data::open(kind, &DataSource::Path(path.to_path_buf()), split, None)
}

fn all_pixels(set: &dyn Dataset) -> Vec<u8> {
    set.load_u8(&(0..set.len()).collect::<Vec<_>>()).unwrap()
}

fn labels(set: &dyn Dataset) -> Vec<usize> {
    (0..set.len()).map(|i| set.label(i)).collect()
}

/// Images lo..hi of the bundled binary sample: (pixels, labels).
fn bundled(lo: usize, hi: usize) -> (Vec<u8>, Vec<usize>) {
    let set = data::open(
        DatasetKind::Cifar10,
        &DataSource::Bundled,
        Split::Test,
        None,
    )
    .unwrap();
    let indices: Vec<usize> = (lo..hi).collect();
    (
        set.load_u8(&indices).unwrap(),
        indices.iter().map(|&i| set.label(i)).collect(),
    )
}

#[test]
fn torchvisions_cifar10_folder_holds_the_images_of_the_binary_version() {
    let folder = repo("tests/fixtures/cifar-10-batches-py");
    let test = open(DatasetKind::Cifar10, &folder, Split::Test).unwrap();
    let (pixels, expected) = bundled(0, 200);
    assert_eq!(labels(test.as_ref()), expected);
    assert!(all_pixels(test.as_ref()) == pixels, "test_batch pixels");
    // data_batch_1..5: Python 3 protocols 2-5 and the Python 2 form, 20 images each.
    let train = open(DatasetKind::Cifar10, &folder, Split::Train).unwrap();
    let (pixels, expected) = bundled(200, 300);
    assert_eq!(labels(train.as_ref()), expected);
    assert!(all_pixels(train.as_ref()) == pixels, "data_batch pixels");
    // The root torchvision was given, and a single batch file.
    let root = open(DatasetKind::Cifar10, &repo("tests/fixtures"), Split::Test).unwrap();
    assert_eq!(root.len(), 200);
    let single = open(
        DatasetKind::Cifar10,
        &folder.join("data_batch_4"),
        Split::Test,
    )
    .unwrap();
    assert_eq!(labels(single.as_ref()), bundled(260, 280).1);
}

#[test]
fn cifar100_python_and_binary_versions_read_the_same() {
    for split in [Split::Test, Split::Train] {
        let python = open(
            DatasetKind::Cifar100,
            &repo("tests/fixtures/cifar-100-python"),
            split,
        )
        .unwrap();
        let binary = open(
            DatasetKind::Cifar100,
            &repo("tests/fixtures/cifar-100-binary"),
            split,
        )
        .unwrap();
        assert_eq!(python.len(), binary.len());
        assert_eq!(labels(python.as_ref()), labels(binary.as_ref()));
        assert!(all_pixels(python.as_ref()) == all_pixels(binary.as_ref()));
    }
    // The fine label (made up by the fixture script as (label · 10 + index) mod 100).
    let test = open(
        DatasetKind::Cifar100,
        &repo("tests/fixtures/cifar-100-python"),
        Split::Test,
    )
    .unwrap();
    let cifar10 = bundled(0, 100).1;
    let expected: Vec<usize> = (0..100).map(|i| (cifar10[i] * 10 + i) % 100).collect();
    assert_eq!(labels(test.as_ref()), expected);
}

#[test]
fn damaged_or_mismatched_python_batches_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(repo("tests/fixtures/cifar-10-batches-py/test_batch")).unwrap();
    for cut in [whole.len() - 1, whole.len() / 2, 400, 3] {
        let file = tmp.path().join(format!("cut{cut}"));
        std::fs::write(&file, &whole[..cut]).unwrap();
        let e = open(DatasetKind::Cifar10, &file, Split::Test)
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} was read"))
            .to_string();
        assert!(e.contains(&format!("cut{cut}")), "{cut}: {e}");
    }
    // A CIFAR-10 batch read as CIFAR-100, and the reverse.
    let e = open(
        DatasetKind::Cifar100,
        &repo("tests/fixtures/cifar-10-batches-py/test_batch"),
        Split::Test,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("no 'fine_labels'"), "{e}");
    let e = open(
        DatasetKind::Cifar10,
        &repo("tests/fixtures/cifar-100-python/test"),
        Split::Test,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("no 'labels'"), "{e}");
    // One label changed to 10 (BININT1 10 in the Python 2 form's label list).
    let mut bytes = whole.clone();
    let at = bytes.windows(3).position(|w| w == b"](K").unwrap() + 3;
    bytes[at] = 10;
    let file = tmp.path().join("label");
    std::fs::write(&file, &bytes).unwrap();
    let e = open(DatasetKind::Cifar10, &file, Split::Test)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("label 0 is I64(10)"), "{e}");
    // A folder with only some of the files.
    let partial = tmp.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(
        repo("tests/fixtures/cifar-10-batches-py/data_batch_1"),
        partial.join("data_batch_1"),
    )
    .unwrap();
    std::fs::copy(
        repo("tests/fixtures/cifar-10-batches-py/test_batch"),
        partial.join("test_batch"),
    )
    .unwrap();
    let e = open(DatasetKind::Cifar10, &partial, Split::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("missing data_batch_2.bin") || e.contains("data_batch_2"),
        "{e}"
    );
}

/// The fixture images with their class-folder labels, in file order.
fn class_folder() -> (ImageFolder, Vec<(PathBuf, usize)>) {
    let folder = ImageFolder::imagenet(&repo("tests/fixtures/imagenet_sample")).unwrap();
    let items = (0..folder.len())
        .map(|i| (folder.path(i).to_path_buf(), folder.label(i)))
        .collect();
    (folder, items)
}

/// The fixture images copied into one folder under `name(i)`.
fn flat_copy(dir: &Path, items: &[(PathBuf, usize)], name: impl Fn(usize, &Path) -> String) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, (path, _)) in items.iter().enumerate() {
        std::fs::copy(path, dir.join(name(i, path))).unwrap();
    }
}

fn labelled(dir: &Path, labels: &Path) -> robust_eval::Result<ImageFolder> {
    ImageFolder::with_labels(dir, labels, robust_eval::data::folder::Preprocess::IMAGENET)
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

#[test]
fn a_flat_validation_folder_is_labelled_by_kaggles_csv_the_devkit_list_and_val_txt() {
    let tmp = tempfile::tempdir().unwrap();
    let (folder, items) = class_folder();
    let wnids = imagenet_wnids();
    let flat = tmp.path().join("val");
    flat_copy(&flat, &items, |_, p| file_name(p));
    // Kaggle: ImageId,PredictionString with boxes.
    let mut csv = String::from("ImageId,PredictionString\n");
    for (path, label) in items.iter().rev() {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let w = wnids[*label];
        csv.push_str(&format!("{stem},{w} 10 20 100 200 {w} 5 5 50 50 \n"));
    }
    let kaggle = tmp.path().join("LOC_val_solution.csv");
    std::fs::write(&kaggle, csv).unwrap();
    // Caffe's val.txt: file and class index.
    let caffe: String = items
        .iter()
        .map(|(p, l)| format!("{} {l}\n", file_name(p)))
        .collect();
    let val_txt = tmp.path().join("val.txt");
    std::fs::write(&val_txt, caffe).unwrap();
    for labels in [&kaggle, &val_txt] {
        let set = labelled(&flat, labels).unwrap();
        assert_eq!(set.len(), items.len());
        let names: Vec<String> = (0..set.len()).map(|i| file_name(set.path(i))).collect();
        let sorted = {
            let mut s = names.clone();
            s.sort();
            s
        };
        assert_eq!(names, sorted, "flat folders are read in file-name order");
        for (i, (path, label)) in items.iter().enumerate() {
            let j = names.iter().position(|n| *n == file_name(path)).unwrap();
            assert_eq!(set.label(j), *label, "{}", labels.display());
            assert!(set.load_u8(&[j]).unwrap() == folder.load_u8(&[i]).unwrap());
        }
    }
    // The devkit list numbers the images: copies named ILSVRC2012_val_00000001.JPEG, ….
    let numbered = tmp.path().join("numbered");
    flat_copy(&numbered, &items, |i, _| {
        format!("ILSVRC2012_val_{:08}.JPEG", i + 1)
    });
    let devkit = devkit_wnids();
    let ids: String = items
        .iter()
        .map(|(_, l)| {
            let id = devkit.iter().position(|w| *w == wnids[*l]).unwrap() + 1;
            format!("{id}\n")
        })
        .collect();
    let ground_truth = tmp.path().join("ILSVRC2012_validation_ground_truth.txt");
    std::fs::write(&ground_truth, ids).unwrap();
    let set = labelled(&numbered, &ground_truth).unwrap();
    assert_eq!(
        labels(&set),
        items.iter().map(|(_, l)| *l).collect::<Vec<_>>()
    );
}

#[test]
fn wrong_partial_and_duplicated_label_files_are_errors_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, items) = class_folder();
    let flat = tmp.path().join("val");
    flat_copy(&flat, &items, |_, p| file_name(p));
    let lines: Vec<String> = items
        .iter()
        .map(|(p, l)| format!("{} {l}", file_name(p)))
        .collect();
    let error = |name: &str, text: String| {
        let file = tmp.path().join(name);
        std::fs::write(&file, text).unwrap();
        labelled(&flat, &file).err().unwrap().to_string()
    };
    // An unknown class.
    let mut bad = lines.clone();
    bad[3] = format!("{} 1000", file_name(&items[3].0));
    let e = error("bad.txt", bad.join("\n"));
    assert!(
        e.contains("bad.txt") && e.contains("line 4") && e.contains("1000"),
        "{e}"
    );
    // A duplicated entry.
    let mut dup = lines.clone();
    dup.push(lines[2].clone());
    let e = error("dup.txt", dup.join("\n"));
    assert!(
        e.contains("dup.txt") && e.contains("line 12") && e.contains("line 3"),
        "{e}"
    );
    // A partial file: an image without a label.
    let e = error("partial.txt", lines[1..].join("\n"));
    assert!(
        e.contains(&file_name(&items[0].0)) && e.contains("partial.txt") && e.contains("no label"),
        "{e}"
    );
    // A listed image that is not there.
    let mut extra = lines.clone();
    extra.push("ILSVRC2012_val_00000007.JPEG 5".into());
    let e = error("extra.txt", extra.join("\n"));
    assert!(
        e.contains("extra.txt") && e.contains("line 12") && e.contains("ILSVRC2012_val_00000007"),
        "{e}"
    );
    // Kaggle rows with an unknown WordNet id; a devkit id out of range.
    let e = error(
        "LOC_val_solution.csv",
        "ImageId,PredictionString\nILSVRC2012_val_00023559,n99999999 1 2 3 4\n".into(),
    );
    assert!(e.contains("line 2") && e.contains("n99999999"), "{e}");
    let e = error("ground_truth.txt", "490\n361\n1001\n".into());
    assert!(e.contains("line 3") && e.contains("1001"), "{e}");
    // A flat folder without labels says what to give.
    let e = ImageFolder::imagenet(&flat).err().unwrap().to_string();
    assert!(e.contains("--labels"), "{e}");
}

#[test]
fn eval_reads_a_flat_folder_with_labels_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, items) = class_folder();
    let flat = tmp.path().join("val");
    flat_copy(&flat, &items, |_, p| file_name(p));
    let val_txt = tmp.path().join("val.txt");
    let text: String = items
        .iter()
        .map(|(p, l)| format!("{} {l}\n", file_name(p)))
        .collect();
    std::fs::write(&val_txt, text).unwrap();
    let out = tmp.path().join("out");
    let args = |data: &Path, labels: Option<&Path>| {
        let mut a = vec![
            "eval".to_string(),
            "--model".into(),
            "resnet18".into(),
            "--width".into(),
            "0.0625".into(),
            "--random-init".into(),
            "--dataset".into(),
            "imagenet".into(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--out-dir".into(),
            out.to_str().unwrap().into(),
        ];
        if let Some(l) = labels {
            a.extend(["--labels".into(), l.to_str().unwrap().into()]);
        }
        a
    };
    let run = |a: Vec<String>| common::cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let cells = || {
        let results = std::fs::read_to_string(out.join("results.csv")).unwrap();
        results
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect::<std::collections::BTreeSet<String>>()
    };
    run(args(&flat, Some(&val_txt))).unwrap();
    // The same labels in Kaggle's format: the same data, so the same cell.
    let wnids = imagenet_wnids();
    let mut csv = String::from("ImageId,PredictionString\n");
    for (p, l) in &items {
        let stem = p.file_stem().unwrap().to_str().unwrap();
        csv.push_str(&format!("{stem},{} 1 1 9 9\n", wnids[*l]));
    }
    let kaggle = tmp.path().join("LOC_val_solution.csv");
    std::fs::write(&kaggle, &csv).unwrap();
    run(args(&flat, Some(&kaggle))).unwrap();
    assert_eq!(cells().len(), 1, "{:?}", cells());
    // One label changed: other data, another cell.
    let first = items[0]
        .0
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let changed = csv.replacen(
        &format!("{first},{}", wnids[items[0].1]),
        &format!("{first},{}", wnids[7]),
        1,
    );
    assert_ne!(changed, csv);
    std::fs::write(&kaggle, changed).unwrap();
    run(args(&flat, Some(&kaggle))).unwrap();
    assert_eq!(cells().len(), 2, "{:?}", cells());
    // --labels with CIFAR data is refused.
    let e = common::cli(&[
        "eval",
        "--labels",
        kaggle.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("flat ImageNet folder"), "{e}");
}
