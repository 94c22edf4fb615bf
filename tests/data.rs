//! Data loading on real images: the bundled CIFAR-10 sample and an ImageNet folder sample.

mod common;

use common::{read_npy, repo};
use robust_eval::data::folder::{imagenet_wnids, ImageFolder};
use robust_eval::data::{self, DataSource, Dataset, DatasetKind, Split};

#[test]
fn bundled_cifar10_sample_has_the_documented_statistics() {
    let set = data::open(
        DatasetKind::Cifar10,
        &DataSource::Bundled,
        Split::Test,
        None,
    )
    .unwrap();
    assert_eq!(set.len(), 1000);
    assert_eq!(set.image_shape(), [3, 32, 32]);
    let all: Vec<usize> = (0..1000).collect();
    let pixels = set.load_u8(&all).unwrap();
    // Per-channel means documented for these images: 0.4967 / 0.4867 / 0.4510.
    for (channel, expected) in [0.4967, 0.4867, 0.4510].iter().enumerate() {
        let sum: u64 = pixels
            .chunks(3072)
            .flat_map(|img| img[channel * 1024..(channel + 1) * 1024].iter())
            .map(|&v| v as u64)
            .sum();
        let mean = sum as f64 / (1000.0 * 1024.0 * 255.0);
        assert!(
            (mean - expected).abs() < 5e-4,
            "channel {channel}: mean {mean}"
        );
    }
    // The first test images are a cat, a ship, a ship, an airplane.
    assert_eq!(
        (0..4).map(|i| set.label(i)).collect::<Vec<_>>(),
        vec![3, 8, 8, 0]
    );
}

#[test]
fn limit_keeps_the_first_images() {
    let set = data::open(
        DatasetKind::Cifar10,
        &DataSource::Bundled,
        Split::Test,
        Some(10),
    )
    .unwrap();
    assert_eq!(set.len(), 10);
}

#[test]
fn imagenet_folder_labels_follow_the_standard_class_order() {
    let folder = ImageFolder::imagenet(&repo("tests/fixtures/imagenet_sample")).unwrap();
    assert_eq!(folder.len(), 11);
    assert_eq!(folder.image_shape(), [3, 224, 224]);
    let wnids = imagenet_wnids();
    for i in 0..folder.len() {
        let wnid = folder
            .path(i)
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(wnids[folder.label(i)], wnid);
    }
    // Tench is class 0, n02102177 (Welsh springer spaniel) is class 218.
    assert_eq!(folder.label(0), 0);
    let spaniel =
        (0..folder.len()).find(|&i| folder.path(i).to_str().unwrap().contains("n02102177"));
    assert_eq!(folder.label(spaniel.unwrap()), 218);
}

#[test]
fn imagenet_preprocessing_matches_torchvision_exactly() {
    // torchvision Resize(256) + CenterCrop(224) of the first two images (PIL decoding and
    // bilinear resampling), from the parity fixtures.
    let (shape, expected) = read_npy(&repo(
        "tests/fixtures/parity/resnet18_w00625_imagenet_tv.input.npy",
    ));
    assert_eq!(shape, vec![2, 3, 224, 224]);
    let folder = ImageFolder::imagenet(&repo("tests/fixtures/imagenet_sample")).unwrap();
    let ours = folder.load_u8(&[0, 1]).unwrap();
    let differing = ours
        .iter()
        .zip(&expected)
        .filter(|(a, b)| **a as f64 != **b)
        .count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} values differ from torchvision",
        ours.len()
    );
}

#[test]
fn imagenet_preprocessing_matches_torchvision_on_shrunk_and_non_square_images() {
    // tools/make_data_fixtures.py: landscape and portrait images shrunk by Resize(256) (PIL's
    // antialiased bilinear), a wide strip, an enlarged portrait, a shorter side of exactly 256;
    // JPEG and PNG.
    let (shape, expected) = read_npy(&repo("tests/fixtures/imagenet_resize.npy"));
    assert_eq!(shape, vec![5, 3, 224, 224]);
    let folder = ImageFolder::imagenet(&repo("tests/fixtures/imagenet_resize")).unwrap();
    assert_eq!(folder.len(), 5);
    for i in 0..5 {
        let ours = folder.load_u8(&[i]).unwrap();
        let theirs = &expected[i * ours.len()..(i + 1) * ours.len()];
        let differing = ours
            .iter()
            .zip(theirs)
            .filter(|(a, b)| **a as f64 != **b)
            .count();
        assert_eq!(
            differing,
            0,
            "{}: {differing} of {} values differ from torchvision",
            folder.path(i).display(),
            ours.len()
        );
    }
}

#[test]
fn cifar100_files_and_directories_use_the_fine_label() {
    // 5 real images written as CIFAR-100 records (coarse label, fine label, pixels).
    let tmp = tempfile::tempdir().unwrap();
    let cifar10 = std::fs::read(repo("data/cifar10/test_first1000.bin")).unwrap();
    let mut records = Vec::new();
    for i in 0..5 {
        records.push((i * 7 % 20) as u8); // coarse
        records.push((i * 17 + 3) as u8); // fine
        records.extend_from_slice(&cifar10[i * 3073 + 1..(i + 1) * 3073]);
    }
    std::fs::write(tmp.path().join("test.bin"), &records).unwrap();
    std::fs::write(tmp.path().join("train.bin"), &records[..2 * 3074]).unwrap();
    let source = DataSource::Path(tmp.path().to_path_buf());
    let test = data::open(DatasetKind::Cifar100, &source, Split::Test, None).unwrap();
    assert_eq!(test.len(), 5);
    assert_eq!(
        (0..5).map(|i| test.label(i)).collect::<Vec<_>>(),
        vec![3, 20, 37, 54, 71]
    );
    assert_eq!(
        test.load_u8(&[1]).unwrap(),
        cifar10[3073 + 1..2 * 3073].to_vec()
    );
    let train = data::open(DatasetKind::Cifar100, &source, Split::Train, None).unwrap();
    assert_eq!(train.len(), 2);
    // The same bytes read as CIFAR-10 are the wrong size.
    let single = DataSource::Path(tmp.path().join("test.bin"));
    let error = data::open(DatasetKind::Cifar10, &single, Split::Test, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("15370 bytes is not a whole number of 3073-byte cifar10 records"),
        "{error}"
    );
}
