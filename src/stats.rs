//! The statistics behind reports and the regression gate: Wilson intervals for accuracies, the
//! exact McNemar test for paired per-image outcomes, the pooled two-proportion z-test when only
//! n and the accuracies are known, and Holm's step-down correction over many cells.
//! Checked against scipy/statsmodels in `tests/fixtures/stats.json` (`tools/make_stats_fixtures.py`).

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

/// The 0.975 quantile of the standard normal distribution.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The 95 % Wilson score interval of `successes` out of `n` (`(0, 1)` when `n` is 0).
pub fn wilson_interval(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided exact McNemar p-value from the discordant counts: `b` images right before and wrong
/// now, `c` the other way round (the binomial test of min(b, c) in b + c trials at ½).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let m = (b + c) as u64;
    if m == 0 || b == c {
        return 1.0;
    }
    let tail = Binomial::new(0.5, m)
        .expect("p = 1/2 is a valid probability")
        .cdf(b.min(c) as u64);
    (2.0 * tail).min(1.0)
}

/// Two-sided p-value of the pooled two-proportion z-test of `k1`/`n1` against `k2`/`n2`.
pub fn two_proportion_z(k1: usize, n1: usize, k2: usize, n2: usize) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    let z = ((p1 - p2) / se).abs();
    let normal = Normal::standard();
    (2.0 * (1.0 - normal.cdf(z))).min(1.0)
}

/// Holm's step-down adjusted p-values, in the order given.
pub fn holm(pvalues: &[f64]) -> Vec<f64> {
    let m = pvalues.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| pvalues[a].total_cmp(&pvalues[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * pvalues[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../tests/fixtures/stats.json")).unwrap()
    }

    fn close(a: f64, b: f64, what: &str) {
        let tol = 1e-9 + 1e-7 * b.abs();
        assert!((a - b).abs() <= tol, "{what}: {a} vs reference {b}");
    }

    fn int(v: &Value) -> usize {
        v.as_u64().unwrap() as usize
    }

    #[test]
    fn wilson_matches_scipy() {
        let f = fixture();
        for case in f["wilson"].as_array().unwrap() {
            let (low, high) = wilson_interval(int(&case["k"]), int(&case["n"]));
            close(low, case["low"].as_f64().unwrap(), &format!("low {case}"));
            close(
                high,
                case["high"].as_f64().unwrap(),
                &format!("high {case}"),
            );
        }
    }

    #[test]
    fn mcnemar_matches_statsmodels() {
        let f = fixture();
        for case in f["mcnemar"].as_array().unwrap() {
            let p = mcnemar_exact(int(&case["b"]), int(&case["c"]));
            close(p, case["p"].as_f64().unwrap(), &format!("{case}"));
        }
    }

    #[test]
    fn two_proportion_matches_statsmodels() {
        let f = fixture();
        for case in f["two_proportion"].as_array().unwrap() {
            let [k1, n1, k2, n2] = ["k1", "n1", "k2", "n2"].map(|k| int(&case[k]));
            close(
                two_proportion_z(k1, n1, k2, n2),
                case["p"].as_f64().unwrap(),
                &format!("{case}"),
            );
        }
    }

    #[test]
    fn holm_matches_statsmodels() {
        let f = fixture();
        for case in f["holm"].as_array().unwrap() {
            let p: Vec<f64> = serde_json::from_value(case["p"].clone()).unwrap();
            let expected: Vec<f64> = serde_json::from_value(case["adjusted"].clone()).unwrap();
            for (a, b) in holm(&p).iter().zip(&expected) {
                close(*a, *b, &format!("{case}"));
            }
        }
    }
}
