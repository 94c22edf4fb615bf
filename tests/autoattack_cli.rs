//! `robust-eval autoattack` end to end on the pytorch_resnet_cifar10 ResNet-20, against the
//! original AutoAttack code's per-image results (tests/fixtures/autoattack, made by
//! tools/autoattack_reference.py), plus the ensemble's records, resume and bad input.

mod common;

use clap::Parser;
use common::{csv_rows, repo};
use robust_eval::cli::{autoattack_cmd, Cli, Command};
use robust_eval::evaluate::CellOutcome;
use serde_json::Value;

fn autoattack(args: &[&str]) -> robust_eval::Result<Vec<CellOutcome>> {
    let mut full = vec!["robust-eval", "autoattack", "--model", "resnet20"];
    full.extend_from_slice(args);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Autoattack(a) => autoattack_cmd::run(a),
        _ => unreachable!(),
    }
}

/// The reference run's per-image robust flags for (norm, ε, run).
fn reference_flags(norm: &str, eps: &str, run: &str) -> Vec<bool> {
    let text = std::fs::read_to_string(repo("tests/fixtures/autoattack/reference_resnet20.jsonl"))
        .unwrap();
    let record: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["norm"] == norm && r["eps"] == eps && r["run"] == run)
        .expect("reference run in the fixture");
    record["robust_flags"]
        .as_str()
        .unwrap()
        .chars()
        .map(|c| c == '1')
        .collect()
}

#[test]
fn standard_ensemble_matches_the_reference_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let n = 150;
    let cells = autoattack(&[
        "--eps",
        "2/255",
        "--limit",
        &n.to_string(),
        "--out-dir",
        out,
    ])
    .unwrap();
    let cell = &cells[0];
    let reference = reference_flags("Linf", "2/255", "standard");
    let ours: Vec<bool> = cell.rows.iter().map(|r| r.correct()).collect();
    let differ = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
    assert!(
        differ <= 1,
        "{differ} of {n} images differ from the reference"
    );
    // After each member the robust accuracy only falls, and ends at the final figure.
    let after: Vec<f64> = ["apgd-ce", "apgd-t", "fab-t", "square"]
        .iter()
        .map(|m| {
            cell.result
                .metric(&format!("robust_accuracy_after_{m}"))
                .unwrap()
        })
        .collect();
    assert!(after.windows(2).all(|w| w[1] <= w[0]), "{after:?}");
    assert_eq!(after[3], cell.result.metric("robust_accuracy").unwrap());
    // Every broken image names its member in samples.csv; the robust ones say none.
    let rows = csv_rows(&dir.path().join("samples.csv"));
    assert_eq!(rows.len(), n);
    for row in &rows {
        let broken = row["broken_by"].as_str();
        match (
            row["correct"].as_str(),
            row["clean_prediction"] == row["label"],
        ) {
            ("1", _) => assert_eq!(broken, "none"),
            ("0", true) => assert!(["apgd-ce", "apgd-t", "fab-t", "square"].contains(&broken)),
            ("0", false) => assert_eq!(broken, "none", "misclassified clean: not attacked"),
            other => panic!("{other:?}"),
        }
    }
    // A second run reuses the finished cell.
    let again = autoattack(&[
        "--eps",
        "2/255",
        "--limit",
        &n.to_string(),
        "--out-dir",
        out,
    ])
    .unwrap();
    assert_eq!(again[0].resumed_samples, n);
    assert_eq!(again[0].result.metrics, cell.result.metrics);
}

#[test]
fn fab_t_alone_matches_the_reference_per_image() {
    // FAB-T's first restart starts at the clean image, so both codes run the same deterministic
    // iteration; image 38 survives it in both.
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let cells = autoattack(&[
        "--eps",
        "2/255",
        "--version",
        "custom",
        "--attacks",
        "fab-t",
        "--limit",
        &n.to_string(),
        "--out-dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    let ours: Vec<bool> = cells[0].rows.iter().map(|r| r.correct()).collect();
    let reference = reference_flags("Linf", "2/255", "fab-t");
    assert!(ours[38] && reference[38]);
    let differ = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
    assert!(
        differ <= 1,
        "{differ} of {n} images differ from the reference"
    );
}

#[test]
fn a_custom_member_alone_records_its_queries() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let cells = autoattack(&[
        "--version",
        "custom",
        "--attacks",
        "square",
        "--square-queries",
        "40",
        "--eps",
        "1/255",
        "--limit",
        "12",
        "--out-dir",
        out,
    ])
    .unwrap();
    let result = &cells[0].result;
    assert!(result.metric("max_queries").unwrap() <= 40.0);
    assert!(result.metric("mean_queries").unwrap() >= 1.0);
    assert_eq!(
        cells[0].record["condition"]["members"],
        serde_json::json!(["square"])
    );
    assert!(
        cells[0].key.contains("square(linf,1/255)"),
        "{}",
        cells[0].key
    );
}

#[test]
fn bad_ensembles_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let error = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["--limit", "4", "--out-dir", out]);
        autoattack(&full).expect_err("refused").to_string()
    };
    assert!(error(&["--version", "strongest"]).contains("unknown AutoAttack version 'strongest'"));
    assert!(error(&["--version", "custom"]).contains("--version custom needs --attacks"));
    assert!(
        error(&["--version", "custom", "--attacks", "apgd-ce,deepfool"])
            .contains("unknown AutoAttack member 'deepfool'")
    );
    assert!(error(&["--attacks", "square"]).contains("the standard version has its own"));
    assert!(error(&["--square-queries", "0"]).contains("--square-queries must be at least 1"));
    assert!(error(&["--version", "rand", "--square-queries", "100"]).contains("no Square member"));
    assert!(error(&["--eps=-1/255"]).contains("must not be negative"));
}
