//! `robust-eval corrupt` end to end: accuracies on real images, determinism across threads and
//! batch sizes, the pre-made set round trip, exports, and bad input.

mod common;

use std::fs;

use clap::Parser;
use common::repo;
use robust_eval::cli::corrupt_cmd::{self, CorruptionReport};
use robust_eval::cli::{Cli, Command};

fn corrupt(args: &[&str]) -> robust_eval::Result<CorruptionReport> {
    let mut full = vec!["robust-eval", "corrupt"];
    full.extend_from_slice(args);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Corrupt(a) => corrupt_cmd::run(a),
        _ => unreachable!(),
    }
}

#[test]
fn accuracy_falls_with_severity_on_real_images() {
    let out = tempfile::tempdir().unwrap();
    let report = corrupt(&[
        "--model",
        "resnet20",
        "--limit",
        "100",
        "--corruptions",
        "gaussian_noise,defocus_blur,contrast,pixelate",
        "--out-dir",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert!(report.clean_accuracy.unwrap() > 0.85);
    for name in ["gaussian_noise", "defocus_blur", "contrast", "pixelate"] {
        let accs: Vec<f64> = (1..=5)
            .map(|s| {
                report
                    .cells
                    .iter()
                    .find(|c| c.corruption == name && c.severity == s)
                    .unwrap()
                    .accuracy
            })
            .collect();
        assert!(accs[4] < accs[0], "{name}: {accs:?}");
        assert!(accs[4] < report.clean_accuracy.unwrap());
    }
    assert!(report.mce.is_none(), "no mCE without an AlexNet baseline");
    let cells = fs::read_to_string(out.path().join("results.jsonl")).unwrap();
    assert_eq!(
        cells.lines().count(),
        1 + 20,
        "clean, 4 corruptions × 5 severities"
    );
}

#[test]
fn same_seed_gives_identical_files_whatever_the_threads_and_batch_size() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |dir: &str, batch: &str, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            corrupt(&[
                "--limit",
                "24",
                "--corruptions",
                "all",
                "--severity",
                "2,5",
                "--batch-size",
                batch,
                "--seed",
                "3",
                "--export",
                dir,
                "--export-only",
                "--out-dir",
                tmp.path().join("r").to_str().unwrap(),
            ])
            .unwrap()
        });
    };
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    run(a.to_str().unwrap(), "5", 1);
    run(b.to_str().unwrap(), "24", 2);
    let mut files = 0;
    for entry in fs::read_dir(&a).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(b.join(name)).unwrap(),
            "{name:?} differs"
        );
        files += 1;
    }
    assert_eq!(files, 20, "19 corruptions + labels.npy");
}

#[test]
fn exported_cifar_c_evaluates_like_the_on_the_fly_corruptions() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("cifar10-c");
    let out = tmp.path().join("out");
    let live = corrupt(&[
        "--limit",
        "30",
        "--corruptions",
        "snow,jpeg_compression",
        "--export",
        export.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--name",
        "live",
    ])
    .unwrap();
    // The layout of CIFAR-10-C: [5·N, 32, 32, 3] and labels repeated per severity.
    let bytes = fs::read(export.join("snow.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[150, 32, 32, 3]);
    let premade = corrupt(&[
        "--from",
        export.to_str().unwrap(),
        "--corruptions",
        "snow,jpeg_compression",
        "--out-dir",
        out.to_str().unwrap(),
        "--name",
        "premade",
    ])
    .unwrap();
    for (a, b) in live.cells.iter().zip(&premade.cells) {
        assert_eq!(
            (a.corruption.as_str(), a.severity, a.n),
            (b.corruption.as_str(), b.severity, b.n)
        );
        assert_eq!(a.accuracy, b.accuracy, "{} s{}", a.corruption, a.severity);
    }
}

#[test]
fn imagenet_sets_export_as_jpeg_folders_and_score_mce() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("imagenet-c");
    let data = repo("tests/fixtures/imagenet_sample");
    corrupt(&[
        "--dataset",
        "imagenet",
        "--data",
        data.to_str().unwrap(),
        "--model",
        "resnet18",
        "--random-init",
        "--limit",
        "2",
        "--corruptions",
        "fog",
        "--severity",
        "1",
        "--export",
        export.to_str().unwrap(),
        "--export-only",
        "--out-dir",
        tmp.path().join("o").to_str().unwrap(),
    ])
    .unwrap();
    let folder = export.join("fog/1/n01440764");
    let files: Vec<_> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2);
    let image = corruptions::decode_rgb(&fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (224, 224));

    // All 15 benchmark corruptions × 5 severities on one image give an mCE.
    let report = corrupt(&[
        "--dataset",
        "imagenet",
        "--data",
        data.to_str().unwrap(),
        "--model",
        "resnet18",
        "--width",
        "0.0625",
        "--checkpoint",
        repo("tests/fixtures/parity/resnet18_w00625_imagenet_tv.pth")
            .to_str()
            .unwrap(),
        "--limit",
        "1",
        "--corruptions",
        "benchmark",
        "--batch-size",
        "1",
        "--out-dir",
        tmp.path().join("o").to_str().unwrap(),
    ])
    .unwrap();
    // The mCE from the per-cell errors by the definition, with AlexNet's table of the fixture.
    let reference = mce_fixture();
    let alexnet = reference["alexnet_errors"].as_array().unwrap();
    let names = reference["corruptions"].as_array().unwrap();
    let mut ce_sum = 0.0;
    for (c, name) in names.iter().enumerate() {
        let (mut ours, mut theirs) = (0.0, 0.0);
        for s in 1..=5u8 {
            let cell = report
                .cells
                .iter()
                .find(|x| x.corruption == name.as_str().unwrap() && x.severity == s)
                .unwrap();
            ours += 1.0 - cell.accuracy;
            theirs += alexnet[c][s as usize - 1].as_f64().unwrap();
        }
        ce_sum += ours / theirs;
    }
    let expected = 100.0 * ce_sum / 15.0;
    let mce = report.mce.unwrap();
    assert!((mce - expected).abs() < 1e-9, "mCE {mce} vs {expected}");
    assert!(report.relative_mce.is_some());
}

fn mce_fixture() -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(repo("tests/fixtures/mce.json")).unwrap()).unwrap()
}

/// Per-(corruption, severity) cells of the made-up model of tests/fixtures/mce.json.
fn fixture_cells(
    reference: &serde_json::Value,
) -> Vec<robust_eval::evaluate::aggregate::CorruptionCell> {
    let errors = reference["errors"].as_array().unwrap();
    let mut cells = Vec::new();
    for (c, name) in reference["corruptions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for s in 1..=5u8 {
            cells.push(robust_eval::evaluate::aggregate::CorruptionCell {
                corruption: name.as_str().unwrap().to_string(),
                severity: s,
                n: 50_000,
                accuracy: 1.0 - errors[c][s as usize - 1].as_f64().unwrap(),
            });
        }
    }
    cells
}

#[test]
fn mce_matches_an_independent_computation() {
    // tools/make_mce_fixture.py: numpy, the paper's definitions, AlexNet's published errors.
    use corruptions::metrics::corruption_error;
    use robust_eval::data::DatasetKind;
    use robust_eval::evaluate::aggregate::corruption_report;
    let reference = mce_fixture();
    let close = |a: f64, b: &serde_json::Value, what: &str| {
        let b = b.as_f64().unwrap();
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    };
    let clean = 1.0 - reference["clean_error"].as_f64().unwrap();
    let report = corruption_report(
        Some(clean),
        fixture_cells(&reference),
        &[1, 2, 3, 4, 5],
        DatasetKind::Imagenet,
        corruptions::Preset::Imagenet,
        0.0,
    );
    close(report.mce.unwrap(), &reference["mce"], "mCE");
    close(
        report.relative_mce.unwrap(),
        &reference["relative_mce"],
        "relative mCE",
    );
    // Per corruption, also over a subset of the severities.
    let errors = reference["errors"].as_array().unwrap();
    for (c, name) in reference["corruptions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let corruption: corruptions::Corruption = name.as_str().unwrap().parse().unwrap();
        let e = |s: u8| (s, errors[c][s as usize - 1].as_f64().unwrap());
        let all: Vec<(u8, f64)> = (1..=5).map(e).collect();
        close(
            corruption_error(corruption, &all),
            &reference["ce"][c],
            name.as_str().unwrap(),
        );
        let odd: Vec<(u8, f64)> = [1, 3, 5].into_iter().map(e).collect();
        close(
            corruption_error(corruption, &odd),
            &reference["ce_severities_1_3_5"][c],
            name.as_str().unwrap(),
        );
    }
    // CIFAR has no AlexNet reference: no mCE, never a made-up one.
    let cifar = corruption_report(
        Some(clean),
        fixture_cells(&reference),
        &[1, 2, 3, 4, 5],
        DatasetKind::Cifar10,
        corruptions::Preset::Cifar,
        0.0,
    );
    assert!(cifar.mce.is_none() && cifar.relative_mce.is_none());
}

#[test]
fn bad_corruption_settings_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    let message = |args: &[&str]| corrupt(args).expect_err("should fail").to_string();
    let m = message(&["--corruptions", "rain", "--out-dir", out]);
    assert!(
        m.contains("unknown corruption 'rain'") && m.contains("gaussian_noise"),
        "{m}"
    );
    assert!(message(&["--severity", "0", "--out-dir", out]).contains("--severity 0 is outside 1–5"));
    assert!(message(&["--severity", "6", "--out-dir", out]).contains("--severity 6 is outside 1–5"));
    assert!(message(&["--preset", "tiny", "--out-dir", out]).contains("unknown preset 'tiny'"));

    // A CIFAR-C file with a row count that is not 5·N.
    let bad = tmp.path().join("bad-c");
    fs::create_dir_all(&bad).unwrap();
    let write = |name: &str, data: &[u8], shape: &[u64]| {
        use npyz::WriterBuilder;
        let file = fs::File::create(bad.join(name)).unwrap();
        let mut w = npyz::WriteOptions::<u8>::new()
            .default_dtype()
            .shape(shape)
            .writer(file)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
    };
    write("fog.npy", &vec![0u8; 7 * 3072], &[7, 32, 32, 3]);
    write("labels.npy", &[0u8; 7], &[7]);
    let m = message(&[
        "--from",
        bad.to_str().unwrap(),
        "--corruptions",
        "fog",
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("fog.npy") && m.contains("expected uint8 [5·N, 32, 32, 3]"),
        "{m}"
    );

    // Unwritable export directory.
    let blocker = tmp.path().join("file");
    fs::write(&blocker, "x").unwrap();
    let m = message(&[
        "--export",
        blocker.join("c").to_str().unwrap(),
        "--limit",
        "2",
        "--out-dir",
        out,
    ]);
    assert!(m.contains("cannot create output directory"), "{m}");
}
