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

/// Images where our robust flags and the reference's differ, after checking that the reference
/// leaves enough of them robust for the comparison to mean something.
fn differing(ours: &[bool], reference: &[bool], what: &str) -> Vec<usize> {
    let survivors = reference[..ours.len()].iter().filter(|&&r| r).count();
    assert!(
        survivors >= 5,
        "{what}: the reference leaves {survivors} robust"
    );
    (0..ours.len())
        .filter(|&i| ours[i] != reference[i])
        .collect()
}

/// The README's bar on N images: at most one image differs where the attack is deterministic
/// (FAB-T's first restart starts at the clean image), two with random starts.
const DETERMINISTIC: usize = 1;
const RANDOM_START: usize = 2;

/// The standard ensemble on the first 100 images against the reference's, image by image, after
/// APGD-CE and at the end.
fn standard_ensemble_matches_the_reference(norm: &str, eps: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let n = 100;
    let lower = norm.to_lowercase();
    let args = [
        "--norm",
        &lower,
        "--eps",
        eps,
        "--limit",
        "100",
        "--out-dir",
        out,
    ];
    let cells = autoattack(&args).unwrap();
    let cell = &cells[0];
    let ours: Vec<bool> = cell.rows.iter().map(|r| r.correct()).collect();
    let reference = reference_flags(norm, eps, "standard");
    let differ = differing(&ours, &reference, "standard");
    assert!(differ.len() <= RANDOM_START, "images {differ:?} differ");
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
    // APGD-CE makes the same draws inside the ensemble as alone: the images it left robust are
    // those the reference's APGD-CE alone left.
    let mut after_apgd_ce = vec![false; n];
    for row in &rows {
        let robust = row["correct"] == "1"
            || ["apgd-t", "fab-t", "square"].contains(&row["broken_by"].as_str());
        after_apgd_ce[row["index"].parse::<usize>().unwrap()] = robust;
    }
    let differ = differing(
        &after_apgd_ce,
        &reference_flags(norm, eps, "apgd-ce"),
        "apgd-ce",
    );
    assert!(
        differ.len() <= RANDOM_START,
        "after APGD-CE, images {differ:?} differ"
    );
    // A second run reuses the finished cell.
    let again = autoattack(&args).unwrap();
    assert_eq!(again[0].resumed_samples, n);
    assert_eq!(again[0].result.metrics, cell.result.metrics);
}

#[test]
fn standard_ensemble_matches_the_reference_per_image_linf() {
    standard_ensemble_matches_the_reference("Linf", "1/255");
}

#[test]
fn standard_ensemble_matches_the_reference_per_image_l2() {
    standard_ensemble_matches_the_reference("L2", "0.1");
}

/// One member alone on the first `n` images against the reference's run of it alone.
fn member_alone_matches_the_reference(norm: &str, eps: &str, member: &str, bar: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cells = autoattack(&[
        "--norm",
        &norm.to_lowercase(),
        "--eps",
        eps,
        "--version",
        "custom",
        "--attacks",
        member,
        "--limit",
        "100",
        "--out-dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    let ours: Vec<bool> = cells[0].rows.iter().map(|r| r.correct()).collect();
    assert_eq!(ours.len(), 100);
    let what = format!("{member} alone, {norm} {eps}");
    let differ = differing(&ours, &reference_flags(norm, eps, member), &what);
    assert!(differ.len() <= bar, "{what}: images {differ:?} differ");
}

#[test]
fn apgd_t_alone_matches_the_reference_per_image_linf() {
    member_alone_matches_the_reference("Linf", "1/255", "apgd-t", RANDOM_START);
}

#[test]
fn fab_t_alone_matches_the_reference_per_image_linf() {
    member_alone_matches_the_reference("Linf", "1/255", "fab-t", DETERMINISTIC);
}

#[test]
#[ignore = "extended check (minutes): cargo test --release --test autoattack_cli -- --ignored"]
fn square_alone_matches_the_reference_per_image_linf() {
    member_alone_matches_the_reference("Linf", "1/255", "square", RANDOM_START);
}

#[test]
#[ignore = "extended check (minutes): cargo test --release --test autoattack_cli -- --ignored"]
fn square_alone_matches_the_reference_per_image_l2() {
    member_alone_matches_the_reference("L2", "0.1", "square", RANDOM_START);
}

#[test]
#[ignore = "extended check (minutes): cargo test --release --test autoattack_cli -- --ignored"]
fn apgd_t_alone_matches_the_reference_per_image_l2() {
    member_alone_matches_the_reference("L2", "0.1", "apgd-t", RANDOM_START);
}

#[test]
#[ignore = "extended check (minutes): cargo test --release --test autoattack_cli -- --ignored"]
fn fab_t_alone_matches_the_reference_per_image_l2() {
    member_alone_matches_the_reference("L2", "0.1", "fab-t", DETERMINISTIC);
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
