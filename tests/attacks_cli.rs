//! Attacks end to end on the bundled CIFAR-10 images and the pytorch_resnet_cifar10 ResNet-20,
//! against the numbers a PyTorch reference gives (../shared/docs/evaluation.md).

mod common;

use std::fs;

use clap::Parser;
use common::{cell_records, csv_rows, journals, read_npy, repo};
use robust_eval::cli::attack_cmd::{self, EpsResult};
use robust_eval::cli::{Cli, Command};
use serde_json::Value;

/// Runs an attack command on the pytorch_resnet_cifar10 ResNet-20 (whose PyTorch answers are known).
fn attack(args: &[&str]) -> robust_eval::Result<Vec<EpsResult>> {
    let mut full = vec!["robust-eval"];
    full.extend_from_slice(args);
    full.extend(["--model", "resnet20"]);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Fgsm(a) => {
            let (spec, a) = a.into_parts();
            attack_cmd::run(spec, a)
        }
        Command::Pgd(a) => {
            let (spec, a) = a.into_parts()?;
            attack_cmd::run(spec, a)
        }
        Command::Apgd(a) => {
            let (spec, a) = a.into_parts();
            attack_cmd::run(spec, a)
        }
        _ => unreachable!(),
    }
}

fn robust_count(r: &EpsResult) -> usize {
    (r.summary.robust_accuracy * r.summary.n as f64).round() as usize
}

/// Per-sample `correct` column of a results directory's samples, for one ε.
fn correct_column(dir: &std::path::Path, eps: &str) -> Vec<(usize, bool)> {
    csv_rows(&dir.join("samples.csv"))
        .iter()
        .filter(|r| r["cell"].contains(&format!(",{eps})")))
        .map(|r| (r["index"].parse().unwrap(), r["correct"] == "1"))
        .collect()
}

#[test]
fn fgsm_matches_the_pytorch_reference_exactly() {
    let out = tempfile::tempdir().unwrap();
    let results = attack(&[
        "fgsm",
        "--eps",
        "8/255,2/255",
        "--out-dir",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(results[0].summary.n, 1000);
    assert_eq!(
        robust_count(&results[0]),
        155,
        "FGSM 8/255: PyTorch gives 15.5 %"
    );
    assert_eq!(
        robust_count(&results[1]),
        294,
        "FGSM 2/255: PyTorch gives 29.4 %"
    );
    assert!((results[0].summary.clean_accuracy - 0.915).abs() < 1e-9);
    // Perturbations use the whole budget and never more.
    assert!((results[0].summary.max_linf - 8.0 / 255.0).abs() < 1e-6);
    // Each ε is a cell; ε is kept as written, and the attack's own settings beside it.
    let records = cell_records(out.path());
    let cell =
        |eps: &str| -> &Value { records.iter().find(|r| r["columns"]["eps"] == eps).unwrap() };
    assert_eq!(cell("8/255")["condition"]["eps"], "8/255");
    assert_eq!(
        cell("2/255")["condition"]["attack"]["eps"]
            .as_f64()
            .unwrap(),
        2.0 / 255.0
    );
}

#[test]
fn pgd_known_answers_and_apgd_is_at_least_as_strong() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let pgd10 = attack(&["pgd", "--eps", "8/255", "--out-dir", dir, "--name", "pgd10"]).unwrap();
    assert_eq!(robust_count(&pgd10[0]), 0, "PGD-10 8/255 leaves nothing");

    let pgd20 = attack(&[
        "pgd",
        "--eps",
        "1/255",
        "--alpha",
        "0.25/255",
        "--steps",
        "20",
        "--out-dir",
        dir,
        "--name",
        "pgd20",
    ])
    .unwrap();
    let accuracy = 100.0 * pgd20[0].summary.robust_accuracy;
    assert!(
        (accuracy - 17.2).abs() <= 1.5,
        "PGD-20 1/255: {accuracy} % vs 17.2 ± 1.5 %"
    );

    // APGD-CE on the first 300 images, compared with PGD-20 on the same images.
    let apgd = attack(&[
        "apgd",
        "--eps",
        "1/255",
        "--limit",
        "300",
        "--out-dir",
        dir,
        "--name",
        "apgd",
    ])
    .unwrap();
    let pgd_same: usize = correct_column(&out.path().join("pgd20"), "1/255")
        .iter()
        .filter(|(i, ok)| *i < 300 && *ok)
        .count();
    assert!(
        robust_count(&apgd[0]) <= pgd_same,
        "APGD {} robust vs PGD-20 {pgd_same}",
        robust_count(&apgd[0])
    );
}

#[test]
fn more_budget_never_raises_robust_accuracy_and_pgd_beats_fgsm() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let eps = "0,0.5/255,1/255,2/255,4/255";
    let pgd = attack(&[
        "pgd",
        "--eps",
        eps,
        "--restarts",
        "2",
        "--limit",
        "150",
        "--out-dir",
        dir,
    ])
    .unwrap();
    let fgsm = attack(&["fgsm", "--eps", eps, "--limit", "150", "--out-dir", dir]).unwrap();
    assert_eq!(
        pgd[0].summary.robust_accuracy, pgd[0].summary.clean_accuracy,
        "ε = 0 changes nothing"
    );
    for pair in pgd.windows(2) {
        assert!(
            pair[1].summary.robust_accuracy <= pair[0].summary.robust_accuracy,
            "rose at ε = {}",
            pair[1].eps
        );
    }
    for (p, f) in pgd.iter().zip(&fgsm) {
        assert!(
            f.summary.robust_accuracy >= p.summary.robust_accuracy,
            "FGSM below PGD at ε = {}",
            p.eps
        );
        assert!(p.summary.max_linf <= p.eps.value + 1e-6);
    }
}

#[test]
fn same_seed_same_numbers_and_float_export_reproduces_predictions() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let export = out.path().join("adv");
    let args = |name: &'static str, seed: &'static str| {
        vec![
            "pgd",
            "--eps",
            "2/255",
            "--limit",
            "60",
            "--batch-size",
            "25",
            "--seed",
            seed,
            "--out-dir",
            dir,
            "--name",
            name,
        ]
    };
    let mut first = args("a", "7");
    first.extend(["--export", export.to_str().unwrap()]);
    attack(&first).unwrap();
    attack(&args("b", "7")).unwrap();
    attack(&args("c", "8")).unwrap();
    let read = |n: &str| fs::read_to_string(out.path().join(n).join("samples.csv")).unwrap();
    assert_eq!(read("a"), read("b"), "same seed, same per-sample results");
    assert_ne!(read("a"), read("c"), "another seed, another random start");

    // The exported float images give the recorded adversarial predictions again.
    let (shape, pixels) = read_npy(&export.join("adversarial-eps0.npy"));
    assert_eq!(shape, vec![60, 3, 32, 32]);
    use burn::tensor::{Tensor, TensorData};
    let device = common::device();
    let images = Tensor::<common::B, 4>::from_data(
        TensorData::new(
            pixels.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            [60, 3, 32, 32],
        ),
        &device,
    );
    let model =
        robust_eval::bundled::find("resnet20", robust_eval::data::DatasetKind::Cifar10, None)
            .unwrap()
            .load::<common::B>(&device)
            .unwrap();
    let predictions = attacks::argmax(model.forward(images));
    let recorded: Vec<usize> = csv_rows(&out.path().join("a/samples.csv"))
        .iter()
        .map(|r| r["prediction"].parse().unwrap())
        .collect();
    assert_eq!(predictions, recorded);
}

#[test]
fn targeted_attacks_reach_random_targets() {
    let out = tempfile::tempdir().unwrap();
    let results = attack(&[
        "pgd",
        "--eps",
        "8/255",
        "--steps",
        "20",
        "--targeted",
        "random",
        "--limit",
        "50",
        "--out-dir",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert!(
        results[0].summary.success_rate >= 0.96,
        "targeted success {}",
        results[0].summary.success_rate
    );
    for row in csv_rows(&out.path().join("samples.csv")) {
        assert_ne!(
            row["label"], row["target"],
            "the target differs from the label"
        );
    }
}

#[test]
fn an_interrupted_attack_resumes() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let args = [
        "fgsm",
        "--eps",
        "4/255",
        "--limit",
        "80",
        "--batch-size",
        "10",
        "--out-dir",
        dir,
    ];
    let full = attack(&args).unwrap();
    let path = &journals(out.path())[0];
    let text = fs::read_to_string(path).unwrap();
    fs::write(
        path,
        text.lines().take(31).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    fs::write(path.with_extension("json"), "{}").unwrap(); // killed before the cell finished
    let mut again = args.to_vec();
    again.push("--resume");
    let resumed = attack(&again).unwrap();
    assert_eq!(full[0].summary, resumed[0].summary);
}

#[test]
fn bad_attack_settings_get_clear_errors_and_warnings() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let message = |args: &[&str]| attack(args).expect_err("should fail").to_string();
    assert!(message(&["pgd", "--eps", "8/0", "--out-dir", dir])
        .contains("--eps '8/0': division by zero"));
    assert!(message(&["pgd", "--eps=-0.1", "--out-dir", dir]).contains("must not be negative"));
    assert!(message(&["pgd", "--eps", "eight", "--out-dir", dir]).contains("not a number"));
    assert!(message(&["pgd", "--norm", "l3", "--out-dir", dir]).contains("unknown norm 'l3'"));
    assert!(
        message(&["fgsm", "--targeted", "sideways", "--out-dir", dir])
            .contains("unknown targeting")
    );
    assert!(message(&[
        "fgsm",
        "--targeted",
        "class:12",
        "--limit",
        "5",
        "--out-dir",
        dir
    ])
    .contains("outside 0..10"));
    assert!(
        message(&["pgd", "--steps", "0", "--out-dir", dir]).contains("--steps must be at least 1")
    );

    // α > ε runs, with a warning kept in the report.
    attack(&[
        "pgd",
        "--eps",
        "1/255",
        "--alpha",
        "2/255",
        "--limit",
        "5",
        "--out-dir",
        dir,
        "--name",
        "w",
    ])
    .unwrap();
    let json = &cell_records(&out.path().join("w"))[0];
    assert!(json["result"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("α = 2/255 exceeds ε = 1/255"));
    let _ = repo("");
}
