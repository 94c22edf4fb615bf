//! The RobustBench-style suite preset and `report --format robustbench`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{cli, repo};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `metric` of every cell in results.csv, by cell key.
fn metric(dir: &Path, name: &str) -> BTreeMap<String, f64> {
    let mut reader = csv::Reader::from_path(dir.join("results.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (cell, metric, value) = (column("cell"), column("metric"), column("value"));
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[metric] == name)
        .map(|r| (r[cell].to_string(), r[value].parse().unwrap()))
        .collect()
}

#[test]
fn the_preset_writes_each_models_leaderboard_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let premade = tmp.path().join("cifar10-c");
    let out = tmp.path().join("run");
    let (p, o) = (premade.to_str().unwrap(), out.to_str().unwrap());
    cli(&[
        "corrupt",
        "--model",
        "resnet20",
        "--corruptions",
        "benchmark",
        "--limit",
        "10",
        "--export",
        p,
        "--export-only",
        "--out-dir",
        tmp.path().join("export").to_str().unwrap(),
    ])
    .unwrap();
    // Without models the preset says how to give them.
    let e = cli(&["suite", "run", "robustbench-cifar10", "--out-dir", o])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--model LABEL=ARCH"), "{e}");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "suite",
            "run",
            "robustbench-cifar10",
            "--model",
            "R20=resnet20",
            "--limit",
            "10",
            "--out-dir",
            o,
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    // Without --data-c the corruptions are left out.
    run(&[]).unwrap();
    assert_eq!(metric(&out, "accuracy").len(), 1, "clean only");
    run(&["--data-c", p]).unwrap();
    let accuracy = metric(&out, "accuracy");
    assert_eq!(accuracy.len(), 1 + 15 * 5, "clean + 15 × 5 pre-made");
    let robust = metric(&out, "robust_accuracy");
    assert_eq!(robust.len(), 2, "AutoAttack L∞ and L2");

    let report = tmp.path().join("report");
    cli(&[
        "report",
        o,
        "--format",
        "robustbench",
        "--out-dir",
        report.to_str().unwrap(),
    ])
    .unwrap();
    let dir = report.join("robustbench/cifar10");
    let clean = *accuracy
        .iter()
        .find(|(k, _)| k.contains("/clean"))
        .unwrap()
        .1;
    let corrupted: Vec<f64> = accuracy
        .iter()
        .filter(|(k, _)| !k.contains("/clean"))
        .map(|(_, v)| *v)
        .collect();
    let mean = corrupted.iter().sum::<f64>() / corrupted.len() as f64;
    for (threat, eps, key) in [("Linf", "8/255", "linf,8/255"), ("L2", "0.5", "l2,0.5")] {
        let entry = read_json(&dir.join(threat).join("R20.json"));
        let aa = *robust.iter().find(|(k, _)| k.contains(key)).unwrap().1;
        assert_eq!(entry["name"], "R20");
        assert_eq!(entry["dataset"], "cifar10");
        assert_eq!(entry["architecture"], "ResNet-20");
        assert_eq!(entry["eps"], eps);
        assert_eq!(entry["clean_acc"], format!("{:.2}", 100.0 * clean));
        assert_eq!(entry["autoattack_acc"], format!("{:.2}", 100.0 * aa));
        assert_eq!(entry["robust_eval"]["n_examples"], 10);
    }
    let entry = read_json(&dir.join("corruptions/R20.json"));
    assert_eq!(entry["corruptions_acc"], format!("{:.2}", 100.0 * mean));
    assert_eq!(entry["robust_eval"]["corruptions"], 15);
    assert_eq!(entry["robust_eval"]["premade"], true);
    assert!(
        clean > 0.5 && mean < clean,
        "clean {clean}, corrupted {mean}"
    );
}

#[test]
fn models_added_on_the_command_line_take_checkpoints_and_normalisation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let file = repo("tests/fixtures/zoo/wrn-16-1.safetensors");
    let run = |normalize: &[&str]| {
        let mut args = vec![
            "suite",
            "run",
            "ci",
            "--model",
            "W=wrn-16-1",
            "--checkpoint",
            &format!("W={}", file.display()),
            "--limit",
            "4",
            "--out-dir",
            out.to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(normalize.iter().map(|s| s.to_string()));
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    run(&[]).unwrap();
    run(&["--normalize", "W=cifar10"]).unwrap();
    let records: Vec<Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["model"]["label"] == "W" && r["columns"]["kind"] == "clean")
        .collect();
    assert_eq!(records.len(), 2, "the normalisation makes another cell");
    let normalised = records
        .iter()
        .find(|r| !r["model"]["normalization"].is_null())
        .unwrap();
    assert_eq!(
        normalised["model"]["normalization"]["std"][0]
            .as_f64()
            .unwrap() as f32,
        0.2471
    );
    let e = run(&["--normalize", "X=none"]).unwrap_err().to_string();
    assert!(e.contains("no model is labelled 'X'"), "{e}");
}
