//! Benchmark suites on the runner: kill -9 and resume, shards and merge, a plan that grows,
//! presets, and bad input.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{cell_records, csv_rows};
use robust_eval::cli::suite_cmd::{self, SuiteCommand};
use robust_eval::cli::{Cli, Command};
use robust_eval::evaluate::CellOutcome;
use robust_eval::suite::shard::parse_shard;

fn suite(args: &[&str]) -> robust_eval::Result<Vec<CellOutcome>> {
    let mut full = vec!["robust-eval", "suite"];
    full.extend_from_slice(args);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Suite(SuiteCommand::Run(a)) => suite_cmd::run_suite(&a),
        Command::Suite(other) => suite_cmd::run(other).map(|_| Vec::new()),
        _ => unreachable!(),
    }
}

fn error_of(args: &[&str]) -> String {
    suite(args).expect_err("should fail").to_string()
}

/// The `ci` suite run once, uninterrupted: the reference the other runs must equal.
fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        suite(&["run", "ci", "--out-dir", dir.path().to_str().unwrap()]).unwrap();
        dir
    })
    .path()
}

/// results.csv without its timing column, as maps.
fn results_without_timing(dir: &Path) -> Vec<HashMap<String, String>> {
    let mut rows = csv_rows(&dir.join("results.csv"));
    for row in &mut rows {
        assert!(row.remove("images_per_second").is_some());
    }
    rows
}

fn assert_same_results(dir: &Path, reference: &Path) {
    assert_eq!(
        fs::read(dir.join("samples.csv")).unwrap(),
        fs::read(reference.join("samples.csv")).unwrap(),
        "per-sample rows differ"
    );
    let ours = results_without_timing(dir);
    assert_eq!(
        ours.len(),
        6 * 2 + 4 * 9,
        "6 clean and corrupted cells × 2 metrics, 4 attack cells × 9"
    );
    assert_eq!(
        ours,
        results_without_timing(reference),
        "results rows differ"
    );
}

/// Finished cell records (`cells/*.json` with status finished), by file name.
fn finished_records(dir: &Path) -> HashMap<PathBuf, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir.join("cells")) else {
        return HashMap::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let bytes = fs::read(&p).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            (v["status"] == "finished").then_some((p, bytes))
        })
        .collect()
}

#[test]
fn a_suite_killed_with_sigkill_resumes_to_the_uninterrupted_results() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_robust-eval"))
        .args(["suite", "run", "ci", "--out-dir", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while finished_records(&out).len() < 3 {
        assert!(Instant::now() < deadline, "no cells finished");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before_kill = finished_records(&out);
    assert!(before_kill.len() < 10, "killed before the end");

    let cells = suite(&["run", "ci", "--out-dir", out.to_str().unwrap()]).unwrap();
    assert_same_results(&out, reference);
    // No finished cell was recomputed: its record (which holds the compute time of its rows) is
    // byte for byte the one the killed run wrote, and the resumed run took all its rows over.
    let after = finished_records(&out);
    for (path, bytes) in &before_kill {
        assert_eq!(&after[path], bytes, "{} was rewritten", path.display());
    }
    let reused = cells
        .iter()
        .filter(|c| c.resumed_samples == c.result.n)
        .count();
    assert!(reused >= before_kill.len(), "{reused} cells reused");
    assert!(
        !out.join(".robust-eval.lock").exists(),
        "the stale lock is gone"
    );
}

#[test]
fn three_shards_merge_into_exactly_the_unsharded_results() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for i in 1..=3 {
        let dir = tmp.path().join(format!("shard{i}"));
        let shard = format!("{i}/3");
        suite(&[
            "run",
            "ci",
            "--shard",
            &shard,
            "--out-dir",
            dir.to_str().unwrap(),
        ])
        .unwrap();
        dirs.push(dir);
    }
    let merged = tmp.path().join("merged");
    let d: Vec<&str> = dirs.iter().map(|d| d.to_str().unwrap()).collect();
    suite(&[
        "merge",
        d[0],
        d[1],
        d[2],
        "--out-dir",
        merged.to_str().unwrap(),
    ])
    .unwrap();
    assert_same_results(&merged, reference);

    // One shard missing, or one given twice.
    let m = error_of(&["merge", d[0], d[2], "--out-dir", merged.to_str().unwrap()]);
    assert!(m.contains("shard 2/3 of suite 'ci' is missing"), "{m}");
    let m = error_of(&[
        "merge",
        d[0],
        d[0],
        d[1],
        "--out-dir",
        merged.to_str().unwrap(),
    ]);
    assert!(m.contains("shard 1/3 given twice"), "{m}");
    // A directory that is not a shard.
    let m = error_of(&[
        "merge",
        reference.to_str().unwrap(),
        "--out-dir",
        merged.to_str().unwrap(),
    ]);
    assert!(m.contains("shard.json"), "{m}");
}

fn write_suite(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, format!("name = \"{name}\"\n{body}")).unwrap();
    path
}

const SMALL: &str = r#"
[data]
dataset = "cifar10"
limit = 30
batch_size = 10

[[model]]
name = "resnet20"
"#;

#[test]
fn a_plan_that_grew_computes_only_what_is_new() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    let one = write_suite(
        tmp.path(),
        "grow",
        &format!("{SMALL}\n[[attack]]\nattack = \"fgsm\"\neps = [\"1/255\"]\n"),
    );
    let first = suite(&["run", one.to_str().unwrap(), "--out-dir", out]).unwrap();
    assert_eq!(first.len(), 2, "clean + one ε");
    assert!(first.iter().all(|c| c.resumed_samples == 0));
    let two = write_suite(
        tmp.path(),
        "grow",
        &format!("{SMALL}\n[[attack]]\nattack = \"fgsm\"\neps = [\"1/255\", \"2/255\"]\n"),
    );
    let second = suite(&["run", two.to_str().unwrap(), "--out-dir", out]).unwrap();
    let resumed: Vec<usize> = second.iter().map(|c| c.resumed_samples).collect();
    assert_eq!(resumed, [30, 30, 0], "only the new ε is computed");
    assert_eq!(first[1].rows, second[1].rows);
    assert_eq!(cell_records(Path::new(out)).len(), 3);

    // The same cells under another model are other cells.
    let other = write_suite(tmp.path(), "other", &SMALL.replace("resnet20", "resnet32"));
    let third = suite(&["run", other.to_str().unwrap(), "--out-dir", out]).unwrap();
    assert_eq!(third[0].resumed_samples, 0);
    assert_ne!(third[0].key, first[0].key);
}

#[test]
fn autoattack_in_a_suite_gives_the_numbers_of_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let (from_suite, from_cli) = (tmp.path().join("suite"), tmp.path().join("cli"));
    let file = write_suite(
        tmp.path(),
        "aa",
        &format!(
            "clean = false\n{}\n[[attack]]\nattack = \"autoattack\"\neps = [\"1/255\"]\n\
             version = \"custom\"\nattacks = [\"apgd-ce\", \"square\"]\nsquare_queries = 100\n",
            SMALL.replace("limit = 30", "limit = 20")
        ),
    );
    let cells = suite(&[
        "run",
        file.to_str().unwrap(),
        "--out-dir",
        from_suite.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(cells.len(), 1);
    common::cli(&[
        "autoattack",
        "--model",
        "resnet20",
        "--eps",
        "1/255",
        "--version",
        "custom",
        "--attacks",
        "apgd-ce,square",
        "--square-queries",
        "100",
        "--limit",
        "20",
        "--batch-size",
        "10",
        "--out-dir",
        from_cli.to_str().unwrap(),
    ])
    .unwrap();
    let metrics = |dir: &Path| -> Vec<[String; 3]> {
        csv_rows(&dir.join("results.csv"))
            .into_iter()
            .map(|r| [r["attack"].clone(), r["metric"].clone(), r["value"].clone()])
            .collect()
    };
    let ours = metrics(&from_suite);
    assert_eq!(ours, metrics(&from_cli));
    assert!(ours.iter().any(|[attack, metric, _]| {
        attack == "apgd-ce+square" && metric == "robust_accuracy_after_square"
    }));
}

#[test]
fn presets_parse_and_the_paper_comparison_has_every_cell() {
    for name in robust_eval::suite::preset_names() {
        let s = robust_eval::suite::Suite::load(name).unwrap();
        assert_eq!(s.file.name, name);
    }
    let plan = robust_eval::suite::Suite::load("cifar10")
        .unwrap()
        .plan(&Default::default())
        .unwrap();
    assert_eq!(plan.models.len(), 2);
    assert_eq!(plan.conditions.len(), 1 + 19 * 5 + 2 * 4);
    suite(&["list"]).unwrap();
}

#[test]
fn bad_suites_and_shards_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    let m = error_of(&["run", "cifar11", "--out-dir", out]);
    assert!(
        m.contains("unknown suite 'cifar11'") && m.contains("cifar10"),
        "{m}"
    );

    let broken = write_suite(tmp.path(), "broken", "[data\ndataset = \"cifar10\"\n");
    let m = error_of(&["run", broken.to_str().unwrap(), "--out-dir", out]);
    assert!(m.contains("broken.toml") && m.contains("line 2"), "{m}");

    let cases = [
        (
            "model",
            SMALL.replace("resnet20", "resnet21"),
            "unknown model 'resnet21'",
        ),
        (
            "corruption",
            format!("{SMALL}\n[corruptions]\nnames = \"rain\"\n"),
            "unknown corruption 'rain'",
        ),
        (
            "attack",
            format!("{SMALL}\n[[attack]]\nattack = \"cw\"\neps = [\"1/255\"]\n"),
            "unknown attack 'cw'",
        ),
        (
            "typo",
            SMALL.replace("limit", "limt"),
            "unknown field `limt`",
        ),
        (
            "eps",
            format!("{SMALL}\n[[attack]]\nattack = \"pgd\"\neps = [\"8/0\"]\n"),
            "division by zero",
        ),
        (
            "aa_steps",
            format!("{SMALL}\n[[attack]]\nattack = \"autoattack\"\neps = [\"1/255\"]\nsteps = 10\n"),
            "steps: AutoAttack's members keep their own",
        ),
        (
            "aa_version",
            format!("{SMALL}\n[[attack]]\nattack = \"autoattack\"\neps = [\"1/255\"]\nversion = \"fast\"\n"),
            "unknown AutoAttack version 'fast'",
        ),
        (
            "aa_custom",
            format!("{SMALL}\n[[attack]]\nattack = \"autoattack\"\neps = [\"1/255\"]\nversion = \"custom\"\n"),
            "needs attacks = [...]",
        ),
        (
            "aa_member",
            format!("{SMALL}\n[[attack]]\nattack = \"autoattack\"\neps = [\"1/255\"]\nversion = \"custom\"\nattacks = [\"cw\"]\n"),
            "unknown AutoAttack member 'cw'",
        ),
        (
            "pgd_version",
            format!("{SMALL}\n[[attack]]\nattack = \"pgd\"\neps = [\"1/255\"]\nversion = \"plus\"\n"),
            "AutoAttack settings",
        ),
    ];
    for (name, body, expected) in cases {
        let path = write_suite(tmp.path(), name, &body);
        let m = error_of(&["run", path.to_str().unwrap(), "--out-dir", out]);
        assert!(
            m.contains(expected) && m.contains(&format!("{name}.toml")),
            "{name}: {m}"
        );
    }

    for bad in ["3/2", "0/0", "0/3", "two/3", "1-3"] {
        let m = error_of(&["run", "ci", "--shard", bad, "--out-dir", out]);
        assert!(m.contains("--shard"), "{bad}: {m}");
    }
    let none = |_: &str| None;
    let m = parse_shard("auto", None, &none).unwrap_err().to_string();
    assert!(
        m.contains("SLURM_ARRAY_TASK_ID") && m.contains("JOB_COMPLETION_INDEX"),
        "{m}"
    );
    let slurm = |k: &str| {
        [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]
        .iter()
        .find(|(n, _)| *n == k)
        .map(|(_, v)| v.to_string())
    };
    let s = parse_shard("auto", None, &slurm).unwrap();
    assert_eq!((s.index, s.count), (3, 4));
    let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "0".to_string());
    let s = parse_shard("auto", Some(2), &k8s).unwrap();
    assert_eq!((s.index, s.count), (1, 2));
    let m = parse_shard("auto", None, &k8s).unwrap_err().to_string();
    assert!(m.contains("--shards N"), "{m}");

    // Shards of different suites are not merged.
    let a = write_suite(tmp.path(), "a", SMALL);
    let b = write_suite(tmp.path(), "b", &SMALL.replace("limit = 30", "limit = 20"));
    let (a1, b2) = (tmp.path().join("a1"), tmp.path().join("b2"));
    suite(&[
        "run",
        a.to_str().unwrap(),
        "--shard",
        "1/2",
        "--out-dir",
        a1.to_str().unwrap(),
    ])
    .unwrap();
    suite(&[
        "run",
        b.to_str().unwrap(),
        "--shard",
        "2/2",
        "--out-dir",
        b2.to_str().unwrap(),
    ])
    .unwrap();
    let m = error_of(&[
        "merge",
        a1.to_str().unwrap(),
        b2.to_str().unwrap(),
        "--out-dir",
        out,
    ]);
    assert!(
        m.contains("suite 'a'") && m.contains("suite 'b'") && m.contains("different plan"),
        "{m}"
    );
}

#[test]
fn a_busy_directory_is_refused_and_a_stale_lock_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let suite_file = write_suite(tmp.path(), "lock", SMALL);
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let lock = out.join(".robust-eval.lock");
    fs::write(&lock, std::process::id().to_string()).unwrap();
    let m = error_of(&[
        "run",
        suite_file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(
        m.contains(&format!(
            "in use by another robust-eval run (pid {})",
            std::process::id()
        )),
        "{m}"
    );
    // A lock left by a process that is gone (pid above the kernel's maximum).
    fs::write(&lock, "4194305").unwrap();
    suite(&[
        "run",
        suite_file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .unwrap();
    assert!(!lock.exists());
}

/// An edit of a journal's lines.
type Damage = fn(&mut Vec<String>);

#[test]
fn a_damaged_journal_is_named_and_its_cell_recomputed_never_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let suite_file = write_suite(tmp.path(), "damage", SMALL);
    let out = tmp.path().join("out");
    let run = || {
        suite(&[
            "run",
            suite_file.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ])
    };
    run().unwrap();
    let sound = fs::read(out.join("samples.csv")).unwrap();
    let journal = &common::journals(&out)[0];
    let text = fs::read_to_string(journal).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let damages: [(&str, Damage); 4] = [
        ("a duplicated row", |l| l[3] = l[2].clone()),
        ("a flipped byte", |l| l[3] = l[3].replacen(',', ";", 1)),
        ("another header", |l| l[0] = "index,label".into()),
        ("an image out of range", |l| l[3] = format!("9999{}", l[3])),
    ];
    for (what, damage) in damages {
        let mut damaged = lines.clone();
        damage(&mut damaged);
        fs::write(journal, damaged.join("\n") + "\n").unwrap();
        run().unwrap();
        assert_eq!(fs::read(out.join("samples.csv")).unwrap(), sound, "{what}");
        assert_eq!(
            fs::read_to_string(journal).unwrap().lines().count(),
            lines.len(),
            "{what}"
        );
    }
    // An empty journal (as a full disk leaves it) restarts its cell too.
    fs::write(journal, "").unwrap();
    run().unwrap();
    assert_eq!(fs::read(out.join("samples.csv")).unwrap(), sound);
}
