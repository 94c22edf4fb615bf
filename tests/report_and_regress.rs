//! `report` and `regress` on real results: the committed `ci` baseline holds; the gate passes a
//! rerun and a second seed, fails a weakened model and a weakened attack (naming the cells),
//! refuses other settings, another suite and malformed files; the report has every section and
//! its plots.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::repo;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde_json::Value;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn robust_eval(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_robust-eval"))
        .args(args)
        .output()
        .unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a suite file (written into `dir`) into `dir/out`, checking that it succeeded.
fn run_suite(dir: &Path, toml: &str, extra: &[&str]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let file = dir.join("suite.toml");
    fs::write(&file, toml).unwrap();
    let out = dir.join("out");
    let mut args = vec!["suite", "run", path(&file), "--out-dir", path(&out)];
    args.extend_from_slice(extra);
    let run = robust_eval(&args);
    assert_eq!(run.status, 0, "suite failed: {}", run.stderr);
    out
}

fn regress(baseline: &Path, results: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["regress", "--baseline", path(baseline), path(results)];
    args.extend_from_slice(extra);
    robust_eval(&args)
}

const CLEAN_SUITE: &str = r#"
name = "gate"
[data]
dataset = "cifar10"
limit = 500
batch_size = 100
[[model]]
name = "resnet18"
[corruptions]
names = "gaussian_noise"
severities = [3]
"#;

fn attack_suite(steps: usize, seed: u64) -> String {
    format!(
        r#"
name = "attack-gate"
clean = false
[data]
dataset = "cifar10"
limit = 200
batch_size = 100
seed = {seed}
[[model]]
name = "resnet18"
[[attack]]
attack = "pgd"
eps = ["1/255"]
alpha = "1/1020"
steps = {steps}
"#
    )
}

/// The clean-and-noise suite's results and their baseline (written by `--update`).
fn clean_baseline() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static ONCE: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let results = run_suite(&tmp.path().join("a"), CLEAN_SUITE, &[]);
        let baseline = tmp.path().join("gate.baseline");
        let run = regress(&baseline, &results, &["--update"]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        (tmp, results, baseline)
    })
}

/// PGD-10 results (seed 0) and their baseline.
fn attack_baseline() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static ONCE: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let results = run_suite(&tmp.path().join("pgd10"), &attack_suite(10, 0), &[]);
        let baseline = tmp.path().join("attack.baseline");
        let run = regress(&baseline, &results, &["--update"]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        (tmp, results, baseline)
    })
}

/// The `ci` suite run and held against the committed baseline, once for the tests below.
fn ci_gate() -> &'static (tempfile::TempDir, Run) {
    static ONCE: OnceLock<(tempfile::TempDir, Run)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let baseline = repo("suites/ci.baseline");
        let run = robust_eval(&[
            "regress",
            "--suite",
            "ci",
            "--baseline",
            path(&baseline),
            "--out-dir",
            path(tmp.path()),
        ]);
        (tmp, run)
    })
}

#[test]
fn ci_suite_holds_against_the_committed_baseline() {
    let (_, run) = ci_gate();
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("16 comparisons"), "{}", run.stdout);
    assert!(run.stdout.contains("PASS"));
}

/// Copies results `from` to `to` with `count` images of `model`'s clean cell that were right made
/// wrong (the first ones), so that its accuracy falls by `count` / n.
fn with_clean_images_broken(from: &Path, to: &Path, model: &str, count: usize) {
    fs::create_dir_all(to).unwrap();
    let mut key = String::new();
    let mut records = Vec::new();
    for line in fs::read_to_string(from.join("results.jsonl"))
        .unwrap()
        .lines()
    {
        let mut record: Value = serde_json::from_str(line).unwrap();
        let k = record["key"].as_str().unwrap();
        if k.starts_with(&format!("{model}@")) && k.contains("/none/clean#") {
            key = record["key"].as_str().unwrap().to_string();
            let n = record["result"]["n"].as_f64().unwrap();
            for metric in record["result"]["metrics"].as_array_mut().unwrap() {
                if metric["name"] == "accuracy" {
                    let value = metric["value"].as_f64().unwrap();
                    metric["value"] = serde_json::json!(value - count as f64 / n);
                }
            }
        }
        records.push(record.to_string());
    }
    assert!(!key.is_empty(), "{model} in the results");
    fs::write(to.join("results.jsonl"), records.join("\n") + "\n").unwrap();
    let samples = fs::read_to_string(from.join("samples.csv")).unwrap();
    let mut broken = 0;
    let lines: Vec<String> = samples
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split(',').map(String::from).collect();
            // cell, index, label, prediction, correct, …
            if fields[0] == key && fields[4] == "1" && broken < count {
                let label: usize = fields[2].parse().unwrap();
                fields[3] = ((label + 1) % 10).to_string();
                fields[4] = "0".into();
                broken += 1;
            }
            fields.join(",")
        })
        .collect();
    assert_eq!(broken, count);
    fs::write(to.join("samples.csv"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_two_point_drop_of_one_models_clean_accuracy_fails_the_ci_gate() {
    // The README's power statement: 1000 images, 16 comparisons, Holm at 0.05.
    let (tmp, run) = ci_gate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let baseline = repo("suites/ci.baseline");
    let dropped = tmp.path().join("dropped");
    with_clean_images_broken(tmp.path(), &dropped, "resnet18", 20);
    let gate = regress(&baseline, &dropped, &[]);
    assert_eq!(gate.status, 1, "{}\n{}", gate.stdout, gate.stderr);
    assert!(gate.stdout.contains("resnet18/none/clean") && gate.stdout.contains("DROPPED"));
    // A one-point drop (10 images all one way) is the smallest that fails.
    let (one, less) = (tmp.path().join("one"), tmp.path().join("less"));
    with_clean_images_broken(tmp.path(), &one, "resnet18", 10);
    assert_eq!(regress(&baseline, &one, &[]).status, 1);
    with_clean_images_broken(tmp.path(), &less, "resnet18", 9);
    assert_eq!(regress(&baseline, &less, &[]).status, 0);
}

#[test]
fn a_rerun_of_the_baseline_passes() {
    let (tmp, _, baseline) = clean_baseline();
    let rerun = run_suite(&tmp.path().join("rerun"), CLEAN_SUITE, &[]);
    let run = regress(baseline, &rerun, &[]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("4 comparisons, 0 moved"),
        "{}",
        run.stdout
    );
}

/// Bundled ResNet-18 with Gaussian noise of `scale` × each convolution's weight spread added.
fn perturbed_resnet18(file: &Path, scale: f32) {
    let mut rng = StdRng::seed_from_u64(7);
    common::edited_bundled("resnet18", file, 4, |values| {
        let spread = (values.iter().map(|v| v * v).sum::<f32>() / values.len() as f32).sqrt();
        let normal = Normal::new(0.0, scale * spread).unwrap();
        for v in values.iter_mut() {
            *v += normal.sample(&mut rng);
        }
    });
}

#[test]
fn a_weakened_model_fails_and_the_failing_cells_are_named() {
    let (tmp, _, baseline) = clean_baseline();
    let weights = tmp.path().join("perturbed.bpk");
    perturbed_resnet18(&weights, 0.3);
    let checkpoint = format!("resnet18={}", path(&weights));
    let weakened = run_suite(
        &tmp.path().join("weakened"),
        CLEAN_SUITE,
        &["--checkpoint", &checkpoint],
    );
    let run = regress(baseline, &weakened, &[]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("resnet18/none/clean"), "{}", run.stdout);
    assert!(run.stdout.contains("DROPPED") && run.stdout.contains("FAIL"));
    // --fail-on drop fails too; a generous minimum effect lets it through.
    assert_eq!(
        regress(baseline, &weakened, &["--fail-on", "drop"]).status,
        1
    );
    assert_eq!(
        regress(baseline, &weakened, &["--min-effect", "100"]).status,
        0
    );
}

fn read_jsonl(dir: &Path) -> Vec<Value> {
    fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Puts the outcomes of `donor`'s only cell under the settings of `host`'s only cell.
fn graft(host: &Path, donor: &Path, out: &Path) {
    fs::create_dir_all(out).unwrap();
    let mut record = read_jsonl(host).remove(0);
    let donor_record = read_jsonl(donor).remove(0);
    record["result"] = donor_record["result"].clone();
    fs::write(out.join("results.jsonl"), format!("{record}\n")).unwrap();
    let host_key = record["key"].as_str().unwrap();
    let donor_key = donor_record["key"].as_str().unwrap();
    let samples = fs::read_to_string(donor.join("samples.csv")).unwrap();
    fs::write(
        out.join("samples.csv"),
        samples.replace(donor_key, host_key),
    )
    .unwrap();
}

#[test]
fn a_weakened_attack_fails_and_the_cell_is_named() {
    let (tmp, pgd10, baseline) = attack_baseline();
    let pgd1 = run_suite(&tmp.path().join("pgd1"), &attack_suite(1, 0), &[]);
    let grafted = tmp.path().join("grafted");
    graft(pgd10, &pgd1, &grafted);
    let run = regress(baseline, &grafted, &[]);
    assert_eq!(run.status, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("resnet18/none/pgd(linf,1/255)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("ROSE"), "{}", run.stdout);
    // A rise is not a drop.
    assert_eq!(
        regress(baseline, &grafted, &["--fail-on", "drop"]).status,
        0
    );

    // Unchanged outcomes under other settings are refused, not compared.
    let run = regress(baseline, &pgd1, &[]);
    assert_eq!(run.status, 2, "{}", run.stdout);
    assert!(run.stderr.contains("other settings"), "{}", run.stderr);
    assert!(
        run.stderr.contains("resnet18/none/pgd(linf,1/255)"),
        "{}",
        run.stderr
    );

    // After an intended change of settings, --update rewrites the baseline.
    let updated = tmp.path().join("updated.baseline");
    fs::copy(baseline, &updated).unwrap();
    let run = regress(&updated, &pgd1, &["--update"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains("not compared"), "{}", run.stdout);
    assert_eq!(regress(&updated, &pgd1, &[]).status, 0);
}

#[test]
fn a_second_seed_of_a_random_attack_is_compared_and_noted() {
    let (tmp, _, baseline) = attack_baseline();
    let seed1 = run_suite(&tmp.path().join("seed1"), &attack_suite(10, 1), &[]);
    let run = regress(baseline, &seed1, &["--all"]);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("seed 0 in the baseline, 1 now"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("within noise"), "{}", run.stdout);
}

#[test]
fn a_baseline_from_another_suite_is_refused() {
    let (_, results, _) = clean_baseline();
    let run = regress(&repo("suites/ci.baseline"), results, &[]);
    assert_eq!(run.status, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("suite 'ci'") && run.stderr.contains("'gate'"),
        "{}",
        run.stderr
    );
}

fn copy_results(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for name in ["results.jsonl", "samples.csv"] {
        fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

/// Both readers of results refuse `dir` with a message containing every part of `expected`.
fn refused(dir: &Path, baseline: &Path, expected: &[&str]) {
    let run = regress(baseline, dir, &[]);
    assert_eq!(
        run.status,
        2,
        "regress accepted {}: {}",
        dir.display(),
        run.stdout
    );
    let report = robust_eval(&["report", path(dir), "--out-dir", path(&dir.join("report"))]);
    assert_eq!(report.status, 1, "report accepted {}", dir.display());
    for text in expected {
        assert!(
            run.stderr.contains(text),
            "regress: {text} not in {}",
            run.stderr
        );
        assert!(
            report.stderr.contains(text),
            "report: {text} not in {}",
            report.stderr
        );
    }
}

#[test]
fn malformed_results_and_baselines_are_refused_with_the_file_named() {
    let (tmp, results, baseline) = clean_baseline();
    let case = |name: &str| {
        let dir = tmp.path().join("malformed").join(name);
        copy_results(results, &dir);
        dir
    };
    refused(
        &tmp.path().join("missing"),
        baseline,
        &["no such results directory"],
    );

    let dir = case("jsonl");
    let text = fs::read_to_string(dir.join("results.jsonl")).unwrap();
    fs::write(dir.join("results.jsonl"), format!("{{\"key\": 3\n{text}")).unwrap();
    refused(&dir, baseline, &["results.jsonl", "line 1"]);

    let dir = case("short");
    let text = fs::read_to_string(dir.join("samples.csv")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(5);
    fs::write(dir.join("samples.csv"), lines.join("\n") + "\n").unwrap();
    refused(&dir, baseline, &["samples.csv", "499 rows", "n = 500"]);

    // A prediction changed by hand: the rows no longer give the published accuracy.
    let dir = case("edited");
    let text = fs::read_to_string(dir.join("samples.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let i = lines
        .iter()
        .position(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[4] == "1" && !f[5].is_empty()
        })
        .unwrap();
    let mut fields: Vec<String> = lines[i].split(',').map(String::from).collect();
    let label: usize = fields[2].parse().unwrap();
    fields[3] = ((label + 1) % 10).to_string();
    fields[4] = "0".into();
    lines[i] = fields.join(",");
    fs::write(dir.join("samples.csv"), lines.join("\n") + "\n").unwrap();
    refused(&dir, baseline, &["samples.csv", "its rows give accuracy"]);

    let damaged = tmp.path().join("malformed").join("damaged.baseline");
    let text = fs::read_to_string(baseline).unwrap();
    fs::write(&damaged, text.replacen("0.", "1.", 1)).unwrap();
    let run = regress(&damaged, results, &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("damaged.baseline"), "{}", run.stderr);
    let run = regress(&tmp.path().join("nothing.baseline"), results, &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("nothing.baseline"), "{}", run.stderr);
}

#[test]
fn the_report_has_every_section_its_plots_and_no_script() {
    let (tmp, results, _) = clean_baseline();
    let (_, attack, _) = attack_baseline();
    let out = tmp.path().join("report");
    let run = robust_eval(&[
        "report",
        path(results),
        path(attack),
        "--out-dir",
        path(&out),
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let md = fs::read_to_string(out.join("report.md")).unwrap();
    for section in [
        "## CIFAR-10, 500 images",
        "## CIFAR-10, 200 images",
        "### Clean accuracy",
        "### Robust accuracy under attack",
        "### Common corruptions",
        "PGD-10 L∞ ε = 1/255 (α = 1/1020, random start)",
        "## Provenance",
    ] {
        assert!(md.contains(section), "{section} missing from\n{md}");
    }
    let html = fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
    assert_eq!(html.matches("<svg").count(), md.matches("![").count());
    for line in md.lines().filter(|l| l.starts_with("![")) {
        let file = line.rsplit_once('(').unwrap().1.trim_end_matches(')');
        let svg = fs::read_to_string(out.join(file)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{file}"
        );
    }
}

#[test]
fn the_report_plots_accuracy_against_lambda() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    for lambda in ["0.1", "0.3", "0.6"] {
        let run = robust_eval(&[
            "eval",
            "--model",
            "sdnet18",
            "--limit",
            "100",
            "--lambda",
            lambda,
            "--out-dir",
            path(&out),
        ]);
        assert_eq!(run.status, 0, "{}", run.stderr);
    }
    let run = robust_eval(&["report", path(&out)]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let md = fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(md.contains("### Test-time λ"), "{md}");
    assert!(
        md.contains("| condition | λ = 0.1 | λ = 0.3 | λ = 0.6 |"),
        "{md}"
    );
    assert!(out.join("report/lambda_sdnet18.svg").exists());
}
