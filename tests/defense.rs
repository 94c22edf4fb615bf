//! λ schedules and test-time BatchNorm adaptation on the bundled SDNet-18 and ResNet-18 with the
//! bundled test images: what the defenses must guarantee, and the errors bad input gets.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{cli, csv_rows, device, repo, B};
use robust_eval::csc::SampleLambda;
use robust_eval::data::{Batch, DatasetKind};
use robust_eval::defense::{BoundDefense, Schedule, TestTimeDefense};
use robust_eval::evaluate::DataConfig;
use robust_eval::models::{ModelConfig, Network};

fn bundled(name: &str) -> (Network<B>, String) {
    let config = ModelConfig {
        name: Some(name.into()),
        ..ModelConfig::default()
    };
    let loaded = config.load::<B>(DatasetKind::Cifar10, &device()).unwrap();
    (loaded.network, loaded.identity)
}

fn test_batch(n: usize) -> Batch {
    let set = DataConfig::bundled().open().unwrap();
    Batch::load(set.as_ref(), &(0..n).collect::<Vec<_>>()).unwrap()
}

fn values<const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    common::to_vec(t)
}

fn error_of(args: &[&str]) -> String {
    cli(args).expect_err("the command must fail").to_string()
}

/// Per index: (prediction, λ) of a results directory's samples.
fn chosen(dir: &Path) -> HashMap<String, (String, String)> {
    csv_rows(&dir.join("samples.csv"))
        .into_iter()
        .map(|r| {
            (
                r["index"].clone(),
                (r["prediction"].clone(), r["lambda"].clone()),
            )
        })
        .collect()
}

#[test]
fn larger_lambda_gives_a_sparser_code_and_a_larger_residual() {
    let (network, _) = bundled("sdnet18");
    let batch = test_batch(20);
    let stats = |lambda: f64| {
        let out = network
            .first_csc_output_lambda(
                batch.images::<B>(&device()),
                Some(&SampleLambda::Values(vec![lambda; 20])),
            )
            .unwrap();
        (values(out.l1), values(out.reconstruction_error))
    };
    let mut previous = stats(0.1);
    for lambda in [0.3, 0.6, 1.0] {
        let next = stats(lambda);
        for i in 0..20 {
            assert!(next.0[i] < previous.0[i], "‖z‖₁ of image {i} at λ {lambda}");
            assert!(
                next.1[i] > previous.1[i],
                "residual of image {i} at λ {lambda}"
            );
        }
        previous = next;
    }
}

#[test]
fn per_sample_lambda_equal_to_the_layer_lambda_changes_nothing() {
    let (network, identity) = bundled("sdnet18");
    let batch = test_batch(30);
    let plain = values(network.forward(batch.images::<B>(&device())));
    let constant = [Some(SampleLambda::Values(vec![0.1; 30]))];
    let fed = values(network.forward_lambdas(
        batch.images::<B>(&device()),
        robust_eval::nn::Mode::Eval,
        &constant,
    ));
    assert_eq!(plain, fed);
    // A fixed schedule at the training λ, bound like any defense.
    let mut defended = network.clone();
    let defense = TestTimeDefense {
        schedule: Some(Schedule::parse("first=0.1").unwrap()),
        bn_adapt: false,
    };
    let bound = BoundDefense::bind(&defense, &mut defended, &identity, "sdnet18").unwrap();
    let (logits, lambdas) = bound.forward(&defended, batch.images::<B>(&device()), "clean");
    assert_eq!(plain, values(logits));
    assert_eq!(lambdas.unwrap(), vec![0.1; 30]);
}

#[test]
fn fixed_schedule_at_the_training_lambda_reproduces_plain_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut args = vec![
            "eval",
            "--model",
            "sdnet18",
            "--out-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cli(&args).unwrap();
        chosen(&dir)
    };
    let plain = run("plain", &[]);
    for (name, spec) in [("first", "first=0.1"), ("all", "fixed:layer0=0.1")] {
        let fixed = run(name, &["--defense", spec]);
        assert_eq!(plain.len(), 1000);
        for (index, (prediction, lambda)) in &fixed {
            assert_eq!(&plain[index].0, prediction, "image {index} under {spec}");
            assert_eq!(lambda, "0.1");
        }
    }
}

#[test]
fn per_input_lambda_does_not_depend_on_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let schedules = tmp.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    let discrepancy = schedules.join("discrepancy.json");
    std::fs::write(
        &discrepancy,
        r#"{"kind": "discrepancy", "layers": "first", "probe": 0.1, "clean_sigma": 0.02,
            "tau": 0.6, "range": [0.1, 1.4], "iterations": 10}"#,
    )
    .unwrap();
    let specs = [
        "noise:a=0.05,b=6".to_string(),
        "residual:a=2,b=-0.8".to_string(),
        discrepancy.to_string_lossy().into_owned(),
    ];
    for (s, spec) in specs.iter().enumerate() {
        let run = |batch: &str, severity: &str| {
            let dir = tmp.path().join(format!("{s}-{batch}-{severity}"));
            cli(&[
                "corrupt",
                "--model",
                "sdnet18",
                "--defense",
                spec,
                "--corruptions",
                "gaussian_noise",
                "--severity",
                severity,
                "--limit",
                "60",
                "--batch-size",
                batch,
                "--out-dir",
                dir.to_str().unwrap(),
            ])
            .unwrap();
            csv_rows(&dir.join("samples.csv"))
                .into_iter()
                .filter(|r| r["cell"].contains("gaussian_noise"))
                .map(|r| {
                    (
                        r["index"].clone(),
                        (r["prediction"].clone(), r["lambda"].clone()),
                    )
                })
                .collect::<HashMap<_, _>>()
        };
        let whole = run("60", "5");
        let split = run("7", "5");
        assert_eq!(whole.len(), 60);
        assert_eq!(whole, split, "{spec}: batch 60 vs batch 7");
        let lambdas: std::collections::BTreeSet<&String> = whole.values().map(|v| &v.1).collect();
        assert!(lambdas.len() > 5, "{spec} chooses λ per image: {lambdas:?}");
    }
}

#[test]
fn bn_adaptation_uses_batch_statistics_and_leaves_the_model_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut args = vec![
            "eval",
            "--model",
            "resnet18",
            "--limit",
            "200",
            "--out-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cli(&args).unwrap();
        chosen(&dir)
    };
    let plain = run("plain", &[]);
    let adapted = run("bn", &["--bn-adapt"]);
    let again = run("bn-again", &["--bn-adapt"]);
    assert_eq!(adapted, again, "the running statistics must not move");
    let changed = plain.iter().filter(|(i, p)| adapted[*i].0 != p.0).count();
    assert!(changed > 0, "batch statistics change some predictions");
}

#[test]
fn the_adaptive_attack_is_at_least_as_strong_as_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pgd");
    cli(&[
        "pgd",
        "--model",
        "sdnet18",
        "--defense",
        "residual:a=3,b=-1.2",
        "--eps",
        "2/255",
        "--limit",
        "40",
        "--attack-mode",
        "adaptive,static,transfer",
        "--out-dir",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    let mut correct: HashMap<String, usize> = HashMap::new();
    for row in csv_rows(&dir.join("samples.csv")) {
        let mode = if row["cell"].contains("static") {
            "static"
        } else if row["cell"].contains("transfer") {
            "transfer"
        } else {
            "adaptive"
        };
        *correct.entry(mode.into()).or_default() += usize::from(row["correct"] == "1");
        assert!(
            !row["lambda"].is_empty(),
            "the λ of each attacked image is recorded"
        );
    }
    assert_eq!(correct.len(), 3);
    assert!(correct["adaptive"] <= correct["static"], "{correct:?}");
    assert!(correct["adaptive"] <= correct["transfer"], "{correct:?}");

    // The report adds the worst case over the modes: robust only if no mode broke the image.
    let report = tmp.path().join("report");
    cli(&[
        "report",
        dir.to_str().unwrap(),
        "--out-dir",
        report.to_str().unwrap(),
    ])
    .unwrap();
    let text = std::fs::read_to_string(report.join("report.md")).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("worst case over attack modes: PGD-10 L∞ ε = 2/255"))
        .unwrap_or_else(|| panic!("no worst-case row in\n{text}"));
    let mut broken_by_any: HashMap<String, bool> = HashMap::new();
    for row in csv_rows(&dir.join("samples.csv")) {
        *broken_by_any.entry(row["index"].clone()).or_default() |= row["correct"] == "0";
    }
    let worst = broken_by_any.values().filter(|b| !**b).count();
    let expected = format!("| {:.2} (", 100.0 * worst as f64 / 40.0);
    assert!(line.contains(&expected), "{line} vs {expected}");
    assert!(worst <= correct["adaptive"]);
}

#[test]
fn calibration_writes_schedules_that_round_trip_and_refuses_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    // Calibrate on the last 500 bundled images; evaluate on the first 500.
    let bytes = std::fs::read(repo("data/cifar10/test_first1000.bin")).unwrap();
    let row = 3073;
    let (first, last) = bytes.split_at(500 * row);
    let calib = tmp.path().join("calib.bin");
    let eval = tmp.path().join("eval.bin");
    std::fs::write(&calib, last).unwrap();
    std::fs::write(&eval, first).unwrap();
    let out = tmp.path().join("calibration");
    let args = |calib: &Path| {
        vec![
            "lambda".to_string(),
            "calibrate".into(),
            "--model".into(),
            "sdnet18".into(),
            "--data".into(),
            calib.to_string_lossy().into_owned(),
            "--eval-data".into(),
            eval.to_string_lossy().into_owned(),
            "--limit".into(),
            "100".into(),
            "--lambdas".into(),
            "0.1,0.4,0.8".into(),
            "--corruptions".into(),
            "gaussian_noise".into(),
            "--severity".into(),
            "1,5".into(),
            "--out-dir".into(),
            out.to_string_lossy().into_owned(),
        ]
    };
    let owned = args(&calib);
    cli(&owned.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    for name in [
        "per-condition",
        "residual-linear",
        "residual-monotone",
        "noise",
        "discrepancy",
    ] {
        let path = out.join(format!("schedules/{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let schedule = Schedule::read(&path).unwrap();
        assert_eq!(schedule.to_json(), text, "{name} round-trips");
        assert!(schedule.fit.is_some() && schedule.model.is_some());
    }
    // The fitted schedule runs, and each image's λ is recorded.
    let noise = out.join("schedules/noise.json");
    let eval_dir = tmp.path().join("eval");
    cli(&[
        "eval",
        "--model",
        "sdnet18",
        "--defense",
        noise.to_str().unwrap(),
        "--data",
        eval.to_str().unwrap(),
        "--limit",
        "50",
        "--out-dir",
        eval_dir.to_str().unwrap(),
    ])
    .unwrap();
    assert!(chosen(&eval_dir).values().all(|(_, l)| !l.is_empty()));

    // Calibration data that contain evaluation images are refused.
    let overlapping = tmp.path().join("overlap.bin");
    std::fs::write(&overlapping, &bytes[450 * row..650 * row]).unwrap();
    let owned = args(&overlapping);
    let e = error_of(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("share 50 image(s)"), "{e}");

    // A schedule calibrated for SDNet-18 refuses other weights of the same architecture.
    let mut other =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&noise).unwrap())
            .unwrap();
    other["model"]["weights_sha256"] = "00ff".repeat(16).into();
    let foreign = tmp.path().join("foreign.json");
    std::fs::write(&foreign, other.to_string()).unwrap();
    let e = error_of(&[
        "eval",
        "--model",
        "sdnet18",
        "--defense",
        foreign.to_str().unwrap(),
        "--limit",
        "5",
        "--out-dir",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert!(
        e.contains("was calibrated for sdnet18 (weights 00ff"),
        "{e}"
    );
}

#[test]
fn bad_schedules_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("o");
    let o = o.to_str().unwrap();
    let eval = |model: &str, spec: &str| {
        error_of(&[
            "eval",
            "--model",
            model,
            "--defense",
            spec,
            "--limit",
            "5",
            "--out-dir",
            o,
        ])
    };
    for spec in ["fixed:0", "fixed:-0.2", "fixed:NaN", "first=0"] {
        let e = eval("sdnet18", spec);
        assert!(e.contains("must be a positive number"), "{spec}: {e}");
    }
    let e = eval("sdnet18", "fixed:layer1.0.conv1=0.3");
    assert!(
        e.contains("no CSC layer 'layer1.0.conv1'") && e.contains("its CSC layers are: layer0"),
        "{e}"
    );
    let e = eval("resnet18", "first=0.3");
    assert!(e.contains("has no CSC layers"), "{e}");
    let e = eval("sdnet18", "wiener:1");
    assert!(e.contains("unknown schedule 'wiener'"), "{e}");
    let broken = tmp.path().join("broken.json");
    std::fs::write(&broken, r#"{"kind": "noise", "layers": "first", "a": 0.1}"#).unwrap();
    let e = eval("sdnet18", broken.to_str().unwrap());
    assert!(
        e.contains("broken.json") && e.contains("not a λ schedule"),
        "{e}"
    );
    let misspelt = tmp.path().join("misspelt.json");
    std::fs::write(
        &misspelt,
        r#"{"kind": "noise", "layers": "first", "a": 0.1, "b": 2, "range": [0.1, 1.4],
            "modle": {"name": "sdnet18", "weights_sha256": "00"}}"#,
    )
    .unwrap();
    let e = eval("sdnet18", misspelt.to_str().unwrap());
    assert!(e.contains("unknown field 'modle'"), "{e}");
    let e = error_of(&[
        "eval",
        "--model",
        "sdnet18",
        "--lambda",
        "0",
        "--limit",
        "5",
        "--out-dir",
        o,
    ]);
    assert!(e.contains("must be a positive number"), "{e}");
    let e = error_of(&[
        "lambda",
        "sweep",
        "--model",
        "resnet18",
        "--limit",
        "5",
        "--out-dir",
        o,
    ]);
    assert!(e.contains("no CSC layers"), "{e}");
    let e = error_of(&[
        "lambda",
        "calibrate",
        "--model",
        "sdnet18",
        "--limit",
        "5",
        "--out-dir",
        o,
    ]);
    assert!(e.contains("needs --data"), "{e}");
}

#[test]
fn suites_carry_schedules_bn_adaptation_and_attack_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("defended.toml");
    std::fs::write(
        &file,
        r#"name = "defended"
clean = true
[data]
dataset = "cifar10"
limit = 20
[[model]]
label = "SDNet-18 noise"
name = "sdnet18"
defense = "noise:a=0.05,b=6"
bn_adapt = true
[[model]]
label = "ResNet-18 BN"
name = "resnet18"
bn_adapt = true
[[attack]]
attack = "fgsm"
eps = ["2/255"]
modes = ["adaptive", "transfer"]
"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    cli(&[
        "suite",
        "run",
        file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let cells: Vec<String> = csv_rows(&out.join("results.csv"))
        .into_iter()
        .map(|r| r["cell"].clone())
        .collect();
    for expected in [
        "SDNet-18 noise@9ccde9e4/noise#",
        "+bn-adapt/fgsm(linf,2/255,transfer)",
        "ResNet-18 BN@86200dc1/bn-adapt/clean",
    ] {
        assert!(
            cells.iter().any(|c| c.contains(expected)),
            "{expected} in {cells:?}"
        );
    }
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("bn_adapt = true\n[[model]]", "lambda = 0.2\n[[model]]"),
    )
    .unwrap();
    let e = error_of(&[
        "suite",
        "run",
        bad.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("give lambda or defense, not both"), "{e}");
}

#[test]
fn results_written_before_the_lambda_column_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old");
    cli(&[
        "eval",
        "--model",
        "resnet18",
        "--limit",
        "20",
        "--out-dir",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    // Keep only the columns written before the lambda column existed (the 13 sample columns,
    // after the cell key in samples.csv, before the seconds in the journals).
    let strip = |path: &Path, journal: bool| {
        let text = std::fs::read_to_string(path).unwrap();
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split(',').collect();
                if journal {
                    let seconds = f.pop().unwrap();
                    f.truncate(13);
                    f.push(seconds);
                } else {
                    f.truncate(14);
                }
                f.join(",")
            })
            .collect();
        std::fs::write(path, out.join("\n") + "\n").unwrap();
    };
    strip(&dir.join("samples.csv"), false);
    for entry in std::fs::read_dir(dir.join("cells")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csv") {
            strip(&path, true);
        }
    }
    let report = tmp.path().join("report");
    cli(&[
        "report",
        dir.to_str().unwrap(),
        "--out-dir",
        report.to_str().unwrap(),
    ])
    .unwrap();
    // A rerun resumes from the old journal instead of recomputing, and agrees.
    cli(&[
        "eval",
        "--model",
        "resnet18",
        "--limit",
        "20",
        "--out-dir",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    assert!(csv_rows(&dir.join("samples.csv"))
        .iter()
        .all(|r| r["lambda"].is_empty()));
}
