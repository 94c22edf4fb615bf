//! The Winograd convolutions change no prediction of the bundled models on the 1000 bundled
//! images, and their logits by no more than the README says, against the direct im2row + GEMM
//! path. Its own test binary: the switch is process-wide.

mod common;

use common::{read_npy, repo};
use robust_eval::kernels::winograd;

/// Logits of `eval` on all bundled images, with the Winograd path on or off.
fn logits(model: &[&str], winograd_on: bool, out: &std::path::Path) -> Vec<f64> {
    use clap::Parser;
    winograd::set_enabled(winograd_on);
    let file = out.join(format!("{}-{winograd_on}.npy", model[1]));
    let mut args = vec!["robust-eval", "eval", "--out-dir", out.to_str().unwrap()];
    args.extend_from_slice(model);
    args.extend(["--fresh", "--logits", file.to_str().unwrap()]);
    match robust_eval::cli::Cli::try_parse_from(args).unwrap().command {
        robust_eval::cli::Command::Eval(a) => robust_eval::cli::eval_cmd::run(a).unwrap(),
        _ => unreachable!(),
    };
    winograd::set_enabled(true);
    read_npy(&file).1
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

#[test]
fn winograd_changes_no_prediction_of_the_bundled_models() {
    let out = tempfile::tempdir().unwrap();
    let resnet20 = repo("models/cifar10-resnet-akamaster/resnet20-12fca82f.th");
    // (model arguments, the README's largest logit change)
    let cases: [(Vec<&str>, f64); 3] = [
        (
            vec![
                "--model",
                "resnet20",
                "--checkpoint",
                resnet20.to_str().unwrap(),
            ],
            5.2e-5,
        ),
        (vec!["--model", "resnet18"], 1.9e-5),
        // 4.0e-5 on AVX2, 4.01e-5 on AVX-512 (other GEMM kernels, other rounding).
        (vec!["--model", "sdnet18"], 4.5e-5),
    ];
    for (model, bound) in cases {
        let fast = logits(&model, true, out.path());
        let direct = logits(&model, false, out.path());
        assert_eq!(fast.len(), direct.len());
        assert_eq!(fast.len() % 1000, 0, "1000 images");
        let classes = fast.len() / 1000;
        let worst = fast
            .iter()
            .zip(&direct)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("{}: largest logit change {worst:.2e}", model[1]);
        assert!(worst > 0.0, "{}: the switch changed nothing", model[1]);
        assert!(worst <= bound, "{}: logits moved by {worst:.2e}", model[1]);
        let changed: Vec<usize> = (0..1000)
            .filter(|&i| {
                let row = |v: &[f64]| v[i * classes..(i + 1) * classes].to_vec();
                argmax(&row(&fast)) != argmax(&row(&direct))
            })
            .collect();
        assert!(
            changed.is_empty(),
            "{}: images {changed:?} changed",
            model[1]
        );
    }
}
