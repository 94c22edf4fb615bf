//! `robust-eval eval` and `convert` end to end on real data, and their answers to bad input.

mod common;

use std::fs;

use common::{cell_records, cli, csv_rows, journals, repo};
use robust_eval::cli::eval_cmd;
use serde_json::Value;

fn eval(args: &[&str]) -> eval_cmd::EvalOutcome {
    use clap::Parser;
    let mut full = vec!["robust-eval", "eval"];
    full.extend_from_slice(args);
    match robust_eval::cli::Cli::try_parse_from(full).unwrap().command {
        robust_eval::cli::Command::Eval(a) => eval_cmd::run(a).unwrap(),
        _ => unreachable!(),
    }
}

fn error_of(args: &[&str]) -> String {
    cli(args).expect_err("the command should fail").to_string()
}

/// The per-image predictions of the original pytorch_resnet_cifar10 code on the bundled images
/// (tools/reference_cifar_accuracy.py: its resnet.py and trainer.py preprocessing, PyTorch CPU).
fn akamaster_reference(model: &str) -> (f64, Vec<usize>) {
    let text = fs::read_to_string(repo("tests/fixtures/akamaster_reference.json")).unwrap();
    let record: Value = serde_json::from_str(&text).unwrap();
    let entry = &record["models"][model];
    let predictions = entry["predictions"]
        .as_str()
        .unwrap()
        .bytes()
        .map(|b| (b - b'0') as usize)
        .collect();
    (entry["accuracy"].as_f64().unwrap(), predictions)
}

/// The `prediction` column of a cell's rows in samples.csv, by image index.
fn predictions_of(dir: &std::path::Path, model: &str) -> Vec<usize> {
    let records = cell_records(dir);
    let key = records
        .iter()
        .find(|r| r["model"]["name"] == model)
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut rows: Vec<(usize, usize)> = csv_rows(&dir.join("samples.csv"))
        .iter()
        .filter(|r| r["cell"] == key)
        .map(|r| {
            (
                r["index"].parse().unwrap(),
                r["prediction"].parse().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn resnet20_and_resnet32_predict_as_the_original_code_on_every_bundled_image() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    for (model, file, percent) in [
        ("resnet20", "resnet20-12fca82f.th", 91.5),
        ("resnet32", "resnet32-d509ac18.th", 92.8),
    ] {
        let checkpoint = repo(&format!("models/cifar10-resnet-akamaster/{file}"));
        let outcome = eval(&[
            "--model",
            model,
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--out-dir",
            dir,
        ]);
        let (accuracy, expected) = akamaster_reference(model);
        assert_eq!(outcome.accuracy.n, 1000);
        assert_eq!(expected.len(), 1000);
        assert_eq!(outcome.accuracy.top1, accuracy, "{model}");
        assert!(
            (100.0 * accuracy - percent).abs() < 1e-9,
            "README: {percent} %"
        );
        let ours = predictions_of(out.path(), model);
        let differing: Vec<usize> = (0..1000).filter(|&i| ours[i] != expected[i]).collect();
        assert!(differing.is_empty(), "{model}: images {differing:?} differ");
    }

    // results.jsonl records the settings and the result of both cells.
    let records = cell_records(out.path());
    assert_eq!(records.len(), 2, "one cell per model");
    let json: &Value = records
        .iter()
        .find(|r| r["model"]["name"] == "resnet32")
        .unwrap();
    assert_eq!(json["result"]["n"], 1000);
    assert!(json["run"]["versions"]["burn"].is_string());
}

#[test]
fn default_run_uses_the_bundled_model_and_data() {
    let out = tempfile::tempdir().unwrap();
    let outcome = eval(&["--out-dir", out.path().to_str().unwrap()]);
    assert_eq!(outcome.accuracy.n, 1000);
    assert_eq!(
        (outcome.accuracy.top1 * 1000.0).round(),
        762.0,
        "README: the bundled SDNet-18 scores 76.20 %"
    );
    let rows = fs::read_to_string(out.path().join("samples.csv")).unwrap();
    assert_eq!(rows.lines().count(), 1001, "header + one row per image");
}

#[test]
fn an_interrupted_eval_resumes_without_recomputing() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let args = ["--limit", "100", "--batch-size", "20", "--out-dir", dir];
    eval(&args);
    // Pretend the run stopped after 40 images (the last row half-written).
    let journal = &journals(out.path())[0];
    let text = fs::read_to_string(journal).unwrap();
    let mut kept: Vec<&str> = text.lines().take(41).collect();
    kept.push("40,3");
    fs::write(journal, kept.join("\n")).unwrap();
    // The finished cell's record says otherwise: drop it, as a kill before the end would.
    fs::write(journal.with_extension("json"), "{}").unwrap();
    let full = eval(&args);
    assert_eq!(full.resumed_samples, 40);
    assert_eq!(full.accuracy.n, 100);
    let mut fresh_args = args.to_vec();
    fresh_args.push("--fresh");
    let fresh = eval(&fresh_args);
    assert_eq!(fresh.resumed_samples, 0);
    assert_eq!(full.accuracy, fresh.accuracy);
    // Other settings (a raised λ) make another cell beside the first, never a mix of the two.
    let before = fs::read(journal).unwrap();
    let mut raised = args.to_vec();
    raised.extend(["--lambda", "0.3"]);
    let other = eval(&raised);
    assert_eq!(other.resumed_samples, 0);
    assert_eq!(
        fs::read(journal).unwrap(),
        before,
        "the first cell is untouched"
    );
    let records = cell_records(out.path());
    assert_eq!(records.len(), 2);
    assert!(records.iter().any(|r| r["defense"] == "lambda=0.3"));
}

#[test]
fn imagenet_folder_runs_end_to_end_with_random_and_imported_weights() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let data = repo("tests/fixtures/imagenet_sample");
    let data = data.to_str().unwrap();
    let random = eval(&[
        "--dataset",
        "imagenet",
        "--data",
        data,
        "--model",
        "resnet18",
        "--random-init",
        "--batch-size",
        "4",
        "--out-dir",
        dir,
    ]);
    assert_eq!(random.accuracy.n, 11);
    let tv = repo("tests/fixtures/parity/resnet18_w00625_imagenet_tv.pth");
    let imported = eval(&[
        "--dataset",
        "imagenet",
        "--data",
        data,
        "--model",
        "resnet18",
        "--width",
        "0.0625",
        "--checkpoint",
        tv.to_str().unwrap(),
        "--out-dir",
        dir,
        "--name",
        "tv",
    ]);
    assert_eq!(imported.accuracy.n, 11);
    let rows = csv_rows(&out.path().join("tv/samples.csv"));
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str()).collect();
    assert_eq!(labels[..2], ["0", "0"], "tench images carry class 0");
}

#[test]
fn convert_writes_a_native_checkpoint_that_evaluates_identically() {
    let out = tempfile::tempdir().unwrap();
    let native = out.path().join("sdnet.bpk");
    let source = repo("tests/fixtures/parity/sdnet18_w0125_cifar.pth");
    cli(&[
        "convert",
        source.to_str().unwrap(),
        native.to_str().unwrap(),
        "--model",
        "sdnet18",
        "--width",
        "0.125",
    ])
    .unwrap();
    let dir = out.path().to_str().unwrap();
    let from_torch = eval(&[
        "--model",
        "sdnet18",
        "--width",
        "0.125",
        "--checkpoint",
        source.to_str().unwrap(),
        "--limit",
        "50",
        "--out-dir",
        dir,
        "--name",
        "a",
        "--logits",
        out.path().join("a.npy").to_str().unwrap(),
    ]);
    // The native file carries its architecture: no --model needed.
    let from_native = eval(&[
        "--checkpoint",
        native.to_str().unwrap(),
        "--limit",
        "50",
        "--out-dir",
        dir,
        "--name",
        "b",
        "--logits",
        out.path().join("b.npy").to_str().unwrap(),
    ]);
    assert_eq!(from_torch.accuracy, from_native.accuracy);
    assert_eq!(
        fs::read(out.path().join("a.npy")).unwrap(),
        fs::read(out.path().join("b.npy")).unwrap()
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    let out = out.to_str().unwrap();

    // Truncated CIFAR file.
    let truncated = dir.join("short.bin");
    fs::write(
        &truncated,
        &fs::read(repo("data/cifar10/test_first1000.bin")).unwrap()[..3073 * 3 + 100],
    )
    .unwrap();
    let m = error_of(&[
        "eval",
        "--data",
        truncated.to_str().unwrap(),
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("short.bin") && m.contains("not a whole number of 3073-byte"),
        "{m}"
    );

    // Empty folder, a folder that is not a class, a class without images.
    let empty = dir.join("empty");
    fs::create_dir(&empty).unwrap();
    let m = error_of(&[
        "eval",
        "--dataset",
        "imagenet",
        "--data",
        empty.to_str().unwrap(),
        "--random-init",
        "--model",
        "resnet18",
        "--out-dir",
        out,
    ]);
    assert!(m.contains("no class folders"), "{m}");
    let mislabeled = dir.join("mislabeled");
    fs::create_dir_all(mislabeled.join("cats")).unwrap();
    let m = error_of(&[
        "eval",
        "--dataset",
        "imagenet",
        "--data",
        mislabeled.to_str().unwrap(),
        "--random-init",
        "--model",
        "resnet18",
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("'cats' is not one of the 1000 ImageNet WordNet ids"),
        "{m}"
    );
    let no_images = dir.join("noimages");
    fs::create_dir_all(no_images.join("n01440764")).unwrap();
    fs::write(no_images.join("n01440764/readme.txt"), "x").unwrap();
    let m = error_of(&[
        "eval",
        "--dataset",
        "imagenet",
        "--data",
        no_images.to_str().unwrap(),
        "--random-init",
        "--model",
        "resnet18",
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("n01440764") && m.contains("holds no images"),
        "{m}"
    );

    // Unknown model and dataset names.
    let m = error_of(&[
        "eval",
        "--model",
        "resnet19",
        "--random-init",
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("unknown model 'resnet19'") && m.contains("sdnet18-all"),
        "{m}"
    );
    let m = error_of(&["eval", "--dataset", "mnist", "--out-dir", out]);
    assert!(m.contains("unknown dataset kind 'mnist'"), "{m}");

    // A checkpoint of another architecture names the offending keys.
    let r20 = repo("models/cifar10-resnet-akamaster/resnet20-12fca82f.th");
    let m = error_of(&[
        "eval",
        "--model",
        "resnet32",
        "--checkpoint",
        r20.to_str().unwrap(),
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("does not fit model resnet32")
            && m.contains("missing")
            && m.contains("layer1.3.conv1.weight"),
        "{m}"
    );
    let sdnet = repo("tests/fixtures/parity/sdnet18_w0125_cifar.pth");
    let m = error_of(&[
        "eval",
        "--model",
        "resnet18",
        "--width",
        "0.125",
        "--checkpoint",
        sdnet.to_str().unwrap(),
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("layer0.0.weight")
            && m.contains("unexpected")
            && m.contains("layer0.0.dn.weight"),
        "{m}"
    );
    let m = error_of(&[
        "eval",
        "--model",
        "sdnet18",
        "--checkpoint",
        sdnet.to_str().unwrap(),
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("wrongly shaped")
            && m.contains("layer0.0.dn.weight: file [8, 3, 3, 3], model [64, 3, 3, 3]"),
        "{m}"
    );

    // Not a checkpoint at all.
    let m = error_of(&[
        "eval",
        "--model",
        "resnet20",
        "--checkpoint",
        truncated.to_str().unwrap(),
        "--out-dir",
        out,
    ]);
    assert!(m.contains("not a checkpoint"), "{m}");

    // Unwritable output directory (a file stands where the directory should be).
    let blocker = dir.join("blocker");
    fs::write(&blocker, "x").unwrap();
    let m = error_of(&[
        "eval",
        "--limit",
        "5",
        "--out-dir",
        blocker.join("sub").to_str().unwrap(),
    ]);
    assert!(m.contains("cannot create output directory"), "{m}");

    // Zero batch size, and a GPU in a CPU-only build.
    let m = error_of(&["eval", "--batch-size", "0", "--out-dir", out]);
    assert!(m.contains("--batch-size must be at least 1"), "{m}");
    if !cfg!(feature = "cuda") {
        let m = error_of(&["eval", "--device", "cuda", "--limit", "5", "--out-dir", out]);
        assert!(m.contains("needs a build with CUDA support"), "{m}");
    }
    let m = error_of(&["eval", "--device", "tpu", "--out-dir", out]);
    assert!(m.contains("unknown device 'tpu'"), "{m}");
}

#[test]
fn the_binary_reports_errors_with_a_non_zero_exit_code() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_robust-eval"))
        .args(["eval", "--model", "nope", "--random-init"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: unknown model 'nope'"),
        "{stderr}"
    );
}

#[test]
fn normalize_replaces_the_models_normalisation_and_is_part_of_the_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            "resnet20",
            "--limit",
            "100",
            "--out-dir",
            out,
        ];
        args.extend_from_slice(extra);
        cli(&args).unwrap();
    };
    run(&[]);
    // The architecture's own statistics are the default: the same cell.
    run(&["--normalize", "0.485,0.456,0.406,0.229,0.224,0.225"]);
    run(&["--normalize", "none"]);
    let records = cell_records(tmp.path());
    assert_eq!(records.len(), 2, "default and none");
    let accuracy = |r: &Value| {
        r["result"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "accuracy")
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    let none = records
        .iter()
        .find(|r| !r["model"]["normalization"].is_null())
        .unwrap();
    let default = records
        .iter()
        .find(|r| r["model"]["normalization"].is_null())
        .unwrap();
    assert_eq!(
        none["model"]["normalization"]["std"],
        serde_json::json!([1.0, 1.0, 1.0])
    );
    // ResNet-20 was trained with ImageNet statistics: without them it is far worse.
    assert!(accuracy(default) > 0.85, "{}", accuracy(default));
    assert!(
        accuracy(none) < accuracy(default) - 0.2,
        "{}",
        accuracy(none)
    );
    let e = cli(&["eval", "--normalize", "0.5,0", "--out-dir", out])
        .unwrap_err()
        .to_string();
    assert!(e.contains("std positive"), "{e}");
}

#[test]
fn the_csc_solver_reaches_every_layer_and_the_record() {
    // Beyond two steps the official iteration and FISTA give other codes, so other logits.
    let out = tempfile::tempdir().unwrap();
    let mut logits = Vec::new();
    for solver in ["official", "fista"] {
        let file = out.path().join(format!("{solver}.npy"));
        eval(&[
            "--limit",
            "8",
            "--csc-steps",
            "8",
            "--csc-solver",
            solver,
            "--logits",
            file.to_str().unwrap(),
            "--out-dir",
            out.path().to_str().unwrap(),
        ]);
        logits.push(common::read_npy(&file).1);
    }
    let apart = logits[0]
        .iter()
        .zip(&logits[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        apart > 1e-3,
        "official and FISTA logits agree to {apart:.2e}"
    );
    let records = cell_records(out.path());
    let solvers: Vec<&str> = records
        .iter()
        .map(|r| r["model"]["csc"]["solver"].as_str().unwrap())
        .collect();
    assert_eq!(solvers.len(), 2, "one cell per solver");
    assert!(solvers.contains(&"official") && solvers.contains(&"fista"));
}
