//! Damaged or wrong inputs never become a robustness number: broken weights are refused when
//! loaded (naming the tensor), and non-finite logits are an error in every command (naming the
//! image), never an accuracy.

mod common;

use std::path::Path;

use common::cli;
use robust_eval::data::DatasetKind;
use robust_eval::device::Cpu;
use robust_eval::models::ModelConfig;

/// The bundled ResNet-20 with `edit` applied to every parameter of rank `rank`, saved natively.
fn edited_resnet20(file: &Path, rank: usize, edit: fn(&mut [f32])) {
    common::edited_bundled("resnet20", file, rank, edit);
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

const SAMPLE_JPEG: &str = "tests/fixtures/imagenet_sample/n01440764/ILSVRC2012_val_00023559.JPEG";

/// An ImageNet folder holding one image with these bytes.
fn folder_with(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let class = dir.join("n01440764");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::write(class.join(name), bytes).unwrap();
    dir.to_path_buf()
}

fn decode_error(dir: &Path) -> String {
    use robust_eval::data::Dataset;
    let folder = robust_eval::data::folder::ImageFolder::imagenet(dir).unwrap();
    folder
        .load_u8(&[0])
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn damaged_and_oversized_images_are_refused_before_decoding_with_the_file_named() {
    use robust_eval::data::Dataset;
    let tmp = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(common::repo(SAMPLE_JPEG)).unwrap();
    let good = folder_with(&tmp.path().join("good"), "a.JPEG", &jpeg);
    let folder = robust_eval::data::folder::ImageFolder::imagenet(&good).unwrap();
    assert_eq!(folder.load_u8(&[0]).unwrap().len(), 3 * 224 * 224);

    for cut in [jpeg.len() / 2, jpeg.len() - 2, 400] {
        let dir = folder_with(
            &tmp.path().join(format!("cut{cut}")),
            "cut.JPEG",
            &jpeg[..cut],
        );
        let e = decode_error(&dir);
        assert!(
            e.contains("cut.JPEG") && (e.contains("truncated") || e.contains("header")),
            "{cut}: {e}"
        );
    }

    // The frame header claims 20000×20000 (a 400-megapixel bomb in a small file).
    let mut bomb = jpeg.clone();
    let sof = bomb
        .windows(2)
        .position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2))
        .unwrap();
    bomb[sof + 5..sof + 9].copy_from_slice(&[0x4E, 0x20, 0x4E, 0x20]);
    let e = decode_error(&folder_with(&tmp.path().join("bomb"), "bomb.JPEG", &bomb));
    assert!(e.contains("bomb.JPEG") && e.contains("20000×20000"), "{e}");

    // 1×6000 would become 256×1536000 after Resize(256).
    let mut png = Vec::new();
    image::RgbImage::new(1, 6000)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let e = decode_error(&folder_with(&tmp.path().join("thin"), "thin.png", &png));
    assert!(e.contains("thin.png") && e.contains("256×1536000"), "{e}");
}

#[test]
fn the_image_pixel_limit_is_an_option() {
    let tmp = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(common::repo(SAMPLE_JPEG)).unwrap();
    let dir = folder_with(&tmp.path().join("images"), "a.JPEG", &jpeg);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_robust-eval"))
        .args([
            "eval",
            "--dataset",
            "imagenet",
            "--model",
            "resnet18",
            "--random-init",
        ])
        .args(["--width", "0.0625", "--max-image-pixels", "1000", "--data"])
        .arg(&dir)
        .arg("--out-dir")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a.JPEG") && stderr.contains("--max-image-pixels"),
        "{stderr}"
    );
}

const LEGACY_TH: &str = "models/cifar10-resnet-akamaster/resnet20-12fca82f.th";
const ZIP_PTH: &str = "tests/fixtures/parity/sdnet18all_w00625_cifar.pth";

/// `eval` and `convert` of `file` (a `model` checkpoint) both fail, and `convert` leaves no file.
fn checkpoint_refused(file: &Path, model: &str, dir: &Path) -> String {
    let (f, out) = (file.to_str().unwrap(), dir.join("converted.bpk"));
    let width = if model == "sdnet18-all" {
        "0.0625"
    } else {
        "1"
    };
    let e = error_of(&[
        "eval",
        "--model",
        model,
        "--width",
        width,
        "--checkpoint",
        f,
        "--limit",
        "10",
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    let c = error_of(&[
        "convert",
        f,
        out.to_str().unwrap(),
        "--model",
        model,
        "--width",
        width,
    ]);
    assert!(!out.exists(), "convert wrote {}", out.display());
    assert_eq!(e, c);
    e
}

#[test]
fn truncated_pytorch_checkpoints_are_refused_at_every_length() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(common::repo(LEGACY_TH)).unwrap();
    for cut in [
        whole.len() - 1,
        whole.len() - 1000,
        whole.len() / 2,
        5000,
        100,
    ] {
        let file = tmp.path().join(format!("cut{cut}.th"));
        std::fs::write(&file, &whole[..cut]).unwrap();
        let e = checkpoint_refused(&file, "resnet20", tmp.path());
        assert!(e.contains(&format!("cut{cut}.th")), "{cut}: {e}");
    }
    let whole = std::fs::read(common::repo(ZIP_PTH)).unwrap();
    for cut in [whole.len() - 1, whole.len() / 2, 1000] {
        let file = tmp.path().join(format!("cut{cut}.pth"));
        std::fs::write(&file, &whole[..cut]).unwrap();
        let e = checkpoint_refused(&file, "sdnet18-all", tmp.path());
        assert!(e.contains(&format!("cut{cut}.pth")), "{cut}: {e}");
    }
}

#[test]
fn a_zip_checkpoint_with_a_short_tensor_record_is_refused() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut source =
        zip::ZipArchive::new(std::fs::File::open(common::repo(ZIP_PTH)).unwrap()).unwrap();
    let file = tmp.path().join("short.pth");
    let mut out = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..source.len() {
        let mut entry = source.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.ends_with("/data/0") {
            bytes.truncate(bytes.len() / 2);
        }
        out.start_file(name, stored).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
    let e = checkpoint_refused(&file, "sdnet18-all", tmp.path());
    assert!(
        e.contains("short.pth") && e.contains("truncated or damaged"),
        "{e}"
    );
}

/// A seeded stream of byte positions and values for mutating files.
fn mutations(seed: u64, len: usize, count: usize) -> Vec<(usize, u8)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| (rng.random_range(0..len), rng.random_range(1..=255u8)))
        .collect()
}

#[test]
fn a_damaged_native_checkpoint_never_loads_as_other_weights() {
    use robust_eval::models::load::weights_digest;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("resnet20.bpk");
    edited_resnet20(&file, 0, |_| {});
    let whole = std::fs::read(&file).unwrap();
    let original = robust_eval::checkpoint::load_native::<Cpu>(&file, &Default::default()).unwrap();
    let digest = weights_digest(&original);
    let damaged = tmp.path().join("damaged.bpk");
    let (mut refused, mut unchanged) = (0, 0);
    for (position, xor) in mutations(1, whole.len(), 400) {
        let mut bytes = whole.clone();
        bytes[position] ^= xor;
        std::fs::write(&damaged, &bytes).unwrap();
        match robust_eval::checkpoint::load_native::<Cpu>(&damaged, &Default::default()) {
            Err(_) => refused += 1,
            Ok(network) => {
                // Only a flip outside the tensors and the header (padding) may load, and then
                // it must give the very same weights.
                assert_eq!(
                    weights_digest(&network),
                    digest,
                    "byte {position} ^ {xor:#x} loaded other weights"
                );
                unchanged += 1;
            }
        }
    }
    for cut in (1..40).map(|k| k * whole.len() / 40) {
        std::fs::write(&damaged, &whole[..cut]).unwrap();
        assert!(
            robust_eval::checkpoint::load_native::<Cpu>(&damaged, &Default::default()).is_err(),
            "cut at {cut} loaded"
        );
    }
    assert!(refused > 350, "{refused} refused, {unchanged} unchanged");
}

#[test]
fn mutated_journal_rows_baselines_and_npy_files_never_panic() {
    use robust_eval::evaluate::sample::SampleRow;
    use robust_eval::suite::baseline::Baseline;
    let row = "17,3,3,1,1,,,,,,,,,0.3,,,,0.0125";
    let attack_row = "18,5,2,0,,5,,1,0.00784,0.51,2.25,1,0,,apgd-t,120,,0.031";
    for text in [row, attack_row] {
        let fields: Vec<&str> = text.split(',').collect();
        assert!(SampleRow::parse(&fields).is_ok(), "{text}");
        for (position, value) in mutations(2, text.len(), 3000) {
            let mut bytes = text.as_bytes().to_vec();
            bytes[position] = value;
            let mutated = String::from_utf8_lossy(&bytes);
            let fields: Vec<&str> = mutated.split(',').collect();
            // Refused, or read exactly: every field written back reads as the same value.
            if let Ok(parsed) = SampleRow::parse(&fields) {
                let mut written = parsed.fields();
                written.push(fields.last().unwrap().to_string());
                let written: Vec<&str> = written.iter().map(String::as_str).collect();
                let reread = SampleRow::parse(&written).expect("a written row reads back");
                assert_eq!(reread, parsed, "{mutated}");
                for (field, (was, now)) in fields.iter().zip(&written).enumerate() {
                    if was != now {
                        let (a, b) = (was.parse::<f64>(), now.parse::<f64>());
                        assert!(
                            matches!((a, b), (Ok(a), Ok(b)) if a as f32 == b as f32),
                            "field {field} of '{mutated}' read as '{now}'"
                        );
                    }
                }
            }
        }
    }
    let baseline = "# robust-eval regression baseline, format 1\n# suite: ci\n\
        cell\tmetric\tsettings\tseed\tn\tvalue\tsamples\n\
        m/none/clean\taccuracy\t0123456789abcdef\t-\t8\t0.750000\t0-7:fb\n";
    for (position, value) in mutations(3, baseline.len(), 3000) {
        let mut bytes = baseline.as_bytes().to_vec();
        bytes[position] = value;
        if let Ok(b) = Baseline::parse(&String::from_utf8_lossy(&bytes)) {
            for e in &b.entries {
                if let Some(s) = &e.samples {
                    assert_eq!(s.hits.len(), e.n);
                    assert!((s.rate() - e.value).abs() < 1e-6);
                }
            }
        }
    }
    // A pre-made CIFAR-10-C block: shape, dtype and header damage is refused or read exactly.
    let tmp = tempfile::tempdir().unwrap();
    let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (5, 32, 32, 3), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<117}\n");
    npy.extend((padded.len() as u16).to_le_bytes());
    npy.extend(padded.as_bytes());
    let data_start = npy.len();
    npy.extend(std::iter::repeat_n(7u8, 5 * 3072));
    std::fs::write(tmp.path().join("labels.npy"), {
        let mut l = b"\x93NUMPY\x01\x00".to_vec();
        let h = format!(
            "{:<117}\n",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }"
        );
        l.extend((h.len() as u16).to_le_bytes());
        l.extend(h.as_bytes());
        l.extend([1u8, 2, 3, 4, 5]);
        l
    })
    .unwrap();
    let corruption: corruptions::Corruption = "fog".parse().unwrap();
    let mut read = 0;
    for (position, value) in mutations(4, data_start, 2000) {
        let mut bytes = npy.clone();
        bytes[position] = value;
        std::fs::write(tmp.path().join("fog.npy"), &bytes).unwrap();
        // Refused, or read exactly: one image per severity, every pixel 7, label 1.
        if let Ok(set) = robust_eval::corrupted::premade_cifar(tmp.path(), corruption, 1, 10, None)
        {
            use robust_eval::data::Dataset;
            assert_eq!(set.len(), 1, "mutation at {position} to {value}");
            assert_eq!(set.label(0), 1);
            assert!(
                set.load_u8(&[0]).unwrap().iter().all(|&p| p == 7),
                "mutation at {position} to {value}: {:?}",
                String::from_utf8_lossy(&bytes[..data_start])
            );
            read += 1;
        }
    }
    assert!(read > 0, "some header mutations are harmless (padding)");
    let mut appended = npy.clone();
    appended.push(7);
    std::fs::write(tmp.path().join("fog.npy"), &appended).unwrap();
    let message = match robust_eval::corrupted::premade_cifar(tmp.path(), corruption, 1, 10, None) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a byte after the data was read"),
    };
    assert!(message.contains("15361 data bytes"), "{message}");
    for cut in (0..npy.len()).step_by(997) {
        std::fs::write(tmp.path().join("fog.npy"), &npy[..cut]).unwrap();
        assert!(
            robust_eval::corrupted::premade_cifar(tmp.path(), corruption, 1, 10, None).is_err()
        );
    }
}

#[test]
fn truncated_cifar_files_are_refused() {
    let whole = std::fs::read(common::repo("data/cifar10/test_first1000.bin")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for cut in [1, 3072, 3074, whole.len() / 2 + 1, whole.len() - 1] {
        let file = tmp.path().join("cut.bin");
        std::fs::write(&file, &whole[..cut]).unwrap();
        let e = robust_eval::data::CifarSet::open(
            &file,
            DatasetKind::Cifar10,
            robust_eval::data::Split::Test,
        )
        .err()
        .unwrap_or_else(|| panic!("a file of {cut} bytes opened"))
        .to_string();
        assert!(e.contains("cut.bin"), "{e}");
    }
}

#[test]
fn outputs_never_replace_what_is_not_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bundled = common::repo("models/cifar10-reference/resnet18-w025.bpk");
    let b = bundled.to_str().unwrap();
    let e = error_of(&[
        "convert",
        b,
        "/dev/null",
        "--model",
        "resnet18",
        "--width",
        "0.25",
    ]);
    assert!(
        e.contains("/dev/null") && e.contains("not a regular file"),
        "{e}"
    );
    assert!(
        !std::fs::metadata("/dev/null").unwrap().is_file(),
        "/dev/null was replaced"
    );
    // A directory where results.csv belongs.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("results.csv")).unwrap();
    let e = error_of(&["eval", "--limit", "10", "--out-dir", out.to_str().unwrap()]);
    assert!(
        e.contains("results.csv") && e.contains("not a regular file"),
        "{e}"
    );
}

#[test]
fn questionable_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().to_str().unwrap();
    let e = error_of(&[
        "eval",
        "--model",
        "resnet18",
        "--lambda",
        "0.3",
        "--limit",
        "10",
        "--out-dir",
        o,
    ]);
    assert!(e.contains("no CSC layers"), "{e}");
    // ε = 8 under L∞ (forgot /255) runs, and says so in the results.
    let out = tmp.path().join("eps");
    cli(&[
        "fgsm",
        "--eps",
        "8",
        "--limit",
        "10",
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert!(results.contains("did you mean 8/255?"), "{results}");
}

#[test]
fn mutated_pytorch_checkpoints_and_images_never_panic() {
    use robust_eval::data::Dataset;
    let tmp = tempfile::tempdir().unwrap();
    let spec = |name: &str, width: f64| ModelConfig {
        name: Some(name.into()),
        width: Some(width),
        weights: robust_eval::models::WeightsSource::Checkpoint(tmp.path().join("m.pth")),
        ..ModelConfig::default()
    };
    for (source, name, width) in [
        (LEGACY_TH, "resnet20", 1.0),
        (ZIP_PTH, "sdnet18-all", 0.0625),
    ] {
        let whole = std::fs::read(common::repo(source)).unwrap();
        for (position, xor) in mutations(5, whole.len(), 100) {
            let mut bytes = whole.clone();
            bytes[position] ^= xor;
            std::fs::write(tmp.path().join("m.pth"), &bytes).unwrap();
            // Flips inside tensor data cannot be detected in a format without checksums; what
            // matters here is an error or a model, never a crash.
            let _ = spec(name, width).load::<Cpu>(DatasetKind::Cifar10, &Default::default());
        }
    }
    let jpeg = std::fs::read(common::repo(SAMPLE_JPEG)).unwrap();
    let dir = tmp.path().join("images");
    for (k, (position, xor)) in mutations(6, jpeg.len(), 150).into_iter().enumerate() {
        let mut bytes = jpeg.clone();
        bytes[position] ^= xor;
        if k % 3 == 0 {
            bytes.truncate(position.max(2));
        }
        let folder = folder_with(&dir, "m.JPEG", &bytes);
        let images = robust_eval::data::folder::ImageFolder::imagenet(&folder).unwrap();
        if let Ok(pixels) = images.load_u8(&[0]) {
            assert_eq!(pixels.len(), 3 * 224 * 224);
        }
    }
}

#[test]
fn data_is_identified_by_every_image_not_by_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(common::repo("data/cifar10/test_first1000.bin")).unwrap();
    let file = tmp.path().join("data.bin");
    let out = tmp.path().join("out");
    let args = [
        "eval",
        "--data",
        file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ];
    std::fs::write(&file, &whole[..100 * 3073]).unwrap();
    cli(&args).unwrap();
    // One pixel of image 50 changes behind the same path: a different data set, so a new cell.
    let mut changed = whole[..100 * 3073].to_vec();
    changed[50 * 3073 + 1 + 1000] ^= 0x40;
    std::fs::write(&file, &changed).unwrap();
    cli(&args).unwrap();
    let fingerprints = common::distinct_in_results(&out, "/data/fingerprint");
    assert_eq!(fingerprints.len(), 2, "{fingerprints:?}");
}

#[test]
fn ignored_flags_and_mismatched_presets_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("few.bin");
    let whole = std::fs::read(common::repo("data/cifar10/test_first1000.bin")).unwrap();
    std::fs::write(&file, &whole[..20 * 3073]).unwrap();
    let stderr = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_robust-eval"))
            .args(args)
            .arg("--out-dir")
            .arg(tmp.path().join("out"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = stderr(&["eval", "--data", file.to_str().unwrap(), "--split", "train"]);
    assert!(e.contains("--split train is ignored"), "{e}");
    let e = stderr(&[
        "corrupt",
        "--preset",
        "imagenet",
        "--corruptions",
        "fog",
        "--severity",
        "1",
        "--limit",
        "5",
    ]);
    assert!(e.contains("imagenet preset is tuned for 224×224"), "{e}");
}

#[test]
fn replacing_the_weights_behind_a_path_makes_a_new_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("w.bpk");
    let out = tmp.path().join("out");
    let args = [
        "eval",
        "--checkpoint",
        file.to_str().unwrap(),
        "--limit",
        "30",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    edited_resnet20(&file, 0, |_| {});
    cli(&args).unwrap();
    edited_resnet20(&file, 4, |v| v.iter_mut().for_each(|x| *x *= 1.01));
    cli(&args).unwrap();
    let weights = common::distinct_in_results(&out, "/model/weights_sha256");
    assert_eq!(weights.len(), 2, "{weights:?}");
}

#[test]
fn a_torn_journal_tail_is_cut_off_and_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let args = [
        "eval",
        "--limit",
        "50",
        "--batch-size",
        "10",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    cli(&args).unwrap();
    let sound = std::fs::read(out.join("samples.csv")).unwrap();
    let journal = common::journals(&out).remove(0);
    let whole = std::fs::read(&journal).unwrap();
    let record = journal.with_extension("json");
    let finished = std::fs::read_to_string(&record).unwrap();
    // As a kill leaves it: the cell still running, the last row without its newline, or half
    // a row.
    for cut in [whole.len() - 1, whole.len() - 20] {
        std::fs::write(&journal, &whole[..cut]).unwrap();
        std::fs::write(&record, finished.replace("\"finished\"", "\"running\"")).unwrap();
        cli(&args).unwrap();
        assert_eq!(
            std::fs::read(out.join("samples.csv")).unwrap(),
            sound,
            "cut at {cut}"
        );
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap().lines().count(),
            51,
            "cut at {cut}"
        );
    }
}

const SAFETENSORS: &str = "tests/fixtures/zoo/wrn-16-1.safetensors";

fn safetensors_fixture() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    common::read_safetensors(&common::repo(SAFETENSORS))
}

use common::write_safetensors;

fn eval_error(file: &Path, model: &str, dir: &Path) -> String {
    error_of(&[
        "eval",
        "--model",
        model,
        "--checkpoint",
        file.to_str().unwrap(),
        "--limit",
        "4",
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ])
}

#[test]
fn truncated_or_damaged_safetensors_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(common::repo(SAFETENSORS)).unwrap();
    let header = u64::from_le_bytes(whole[..8].try_into().unwrap()) as usize;
    for cut in [
        whole.len() - 1,
        whole.len() - 4096,
        whole.len() / 2,
        header + 8,
        100,
    ] {
        let file = tmp.path().join(format!("cut{cut}.safetensors"));
        std::fs::write(&file, &whole[..cut]).unwrap();
        let e = eval_error(&file, "wrn-16-1", tmp.path());
        assert!(e.contains(&format!("cut{cut}.safetensors")), "{cut}: {e}");
    }
    // A header that no longer parses, and one whose offsets run past the data.
    let mut bytes = whole.clone();
    bytes[8 + header / 2] = b'\x01';
    let file = tmp.path().join("header.safetensors");
    std::fs::write(&file, &bytes).unwrap();
    assert!(eval_error(&file, "wrn-16-1", tmp.path()).contains("header.safetensors"));
    let mut longer = whole.clone();
    longer.extend_from_slice(&[0; 64]);
    let file = tmp.path().join("trailing.safetensors");
    std::fs::write(&file, &longer).unwrap();
    assert!(eval_error(&file, "wrn-16-1", tmp.path()).contains("trailing.safetensors"));
}

#[test]
fn safetensors_weights_meet_the_same_value_rules() {
    let tmp = tempfile::tempdir().unwrap();
    type Edit = (&'static str, &'static str, fn(&mut Vec<f32>));
    let edits: [Edit; 2] = [
        ("block2.layer.0.conv1.weight", "non-finite", |v| {
            v[3] = f32::NAN
        }),
        ("bn1.running_var", "negative variance", |v| v[1] = -1.0),
    ];
    for (key, problem, edit) in edits {
        let mut tensors = safetensors_fixture();
        let entry = tensors.iter_mut().find(|t| t.0 == key).unwrap();
        edit(&mut entry.2);
        let file = tmp.path().join("edited.safetensors");
        write_safetensors(&file, &tensors);
        let e = eval_error(&file, "wrn-16-1", tmp.path());
        assert!(e.contains(key) && e.contains(problem), "{key}: {e}");
    }
}

#[test]
fn normalisation_buffers_must_be_complete_and_valid() {
    let tmp = tempfile::tempdir().unwrap();
    type Extra<'a> = &'a [(&'a str, Vec<f32>)];
    let cases: [(Extra, &str); 4] = [
        (&[("mu", vec![0.5; 3])], "not the other"),
        (
            &[("mu", vec![0.5; 3]), ("sigma", vec![0.5, 0.0, 0.5])],
            "std positive",
        ),
        (&[("mu", vec![0.5; 4]), ("sigma", vec![0.5; 4])], "4 values"),
        (
            &[("mean", vec![0.5; 3]), ("std", vec![f32::NAN; 3])],
            "finite",
        ),
    ];
    for (extra, expected) in cases {
        let mut tensors = safetensors_fixture();
        for (name, values) in extra {
            tensors.push((
                name.to_string(),
                vec![1, values.len(), 1, 1],
                values.clone(),
            ));
        }
        let file = tmp.path().join("normalised.safetensors");
        write_safetensors(&file, &tensors);
        let e = eval_error(&file, "wrn-16-1", tmp.path());
        assert!(
            e.contains("normalised.safetensors") && e.contains(expected),
            "{expected}: {e}"
        );
    }
}

#[test]
fn a_wide_resnet_of_another_width_lists_every_mismatch_in_the_files_naming() {
    let tmp = tempfile::tempdir().unwrap();
    let e = eval_error(&common::repo(SAFETENSORS), "wrn-16-2", tmp.path());
    assert!(
        e.contains("RobustBench WideResNet")
            && e.contains("wrongly shaped")
            && e.contains("block1.layer.0.conv1.weight: file [16, 16, 3, 3], model [32, 16, 3, 3]"),
        "{e}"
    );
    let e = eval_error(&common::repo(SAFETENSORS), "dm-wrn-16-1", tmp.path());
    assert!(
        e.contains("missing") && e.contains("init_conv.weight") && e.contains("unexpected"),
        "{e}"
    );
}
