//! Square Attack (Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial
//! attack via random search", ECCV 2020), L∞ and L2.
//!
//! Score-based: it only reads the logits, never a gradient, which makes it the ensemble's check
//! against gradient masking. From a random start on the ε-sphere it proposes, at every query, a
//! change inside one random square window (per channel a random sign: ±ε for L∞; for L2 a
//! centred bump pattern that moves energy between two windows) and keeps it when the margin loss
//! z_y − max_{i≠y} z_i decreases, or the sample becomes misclassified. The window covers a
//! fraction p of the image, p_init = 0.8 halved at queries 10, 50, 200, 500, 1000, 2000, 4000,
//! 6000 and 8000 (the original schedule, not rescaled to the budget).
//!
//! Contract: at most `queries` model evaluations per sample, the random start included; a
//! sample stops querying once misclassified. Random draws come from the sample's own stream, so
//! results do not depend on batching. Defaults: 5000 queries, p_init = 0.8.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::Rng;

use crate::noise::sample_rng;
use crate::samples::host_logits;
use crate::{Attack, Classifier, Goal, Images, Norm, Perturbed, Rows};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Square {
    pub eps: f64,
    pub norm: Norm,
    /// Model evaluations per sample and restart.
    pub queries: usize,
    /// Initial fraction of the image a window covers.
    pub p_init: f64,
}

impl Square {
    pub fn new(eps: f64, norm: Norm) -> Self {
        Self {
            eps,
            norm,
            queries: 5000,
            p_init: 0.8,
        }
    }

    /// The window fraction at iteration `i` (the original piecewise-constant schedule).
    pub fn fraction(&self, i: usize) -> f64 {
        let halvings = match i {
            0..=10 => 0,
            11..=50 => 1,
            51..=200 => 2,
            201..=500 => 3,
            501..=1000 => 4,
            1001..=2000 => 5,
            2001..=4000 => 6,
            4001..=6000 => 7,
            6001..=8000 => 8,
            _ => 9,
        };
        self.p_init / f64::from(1u32 << halvings)
    }

    /// The side of the window at iteration `i` for images of `c` channels and h × w pixels.
    fn side(&self, i: usize, c: usize, h: usize, w: usize) -> usize {
        let features = (c * h * w) as f64;
        let side = (self.fraction(i) * features / c as f64).sqrt().round() as usize;
        match self.norm {
            Norm::Linf => side.max(1).min(h.min(w)),
            Norm::L2 => {
                let side = side.max(3);
                let side = if side.is_multiple_of(2) {
                    side + 1
                } else {
                    side
                };
                side.min(h.min(w))
            }
        }
    }
}

/// The state of one sample's search.
struct Search {
    rng: StdRng,
    best: Vec<f32>,
    margin: f32,
    queries: usize,
}

impl<B: AutodiffBackend> Attack<B> for Square {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B> {
        let dims = x.dims();
        let [n, c, h, w] = dims;
        let per = c * h * w;
        let device = x.device();
        let clean = x.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
        let origin = |k: usize| &clean[k * per..(k + 1) * per];
        let mut searches: Vec<Search> = (0..n)
            .map(|k| {
                let mut rng = sample_rng(goal.seeds[k], restart);
                let best = self.start(origin(k), [c, h, w], &mut rng);
                Search {
                    rng,
                    best,
                    margin: f32::INFINITY,
                    queries: 0,
                }
            })
            .collect();
        let all: Vec<usize> = (0..n).collect();
        self.score(
            model,
            &mut searches,
            &all,
            |s| s.best.clone(),
            dims,
            goal,
            &device,
        );
        for i in 0..self.queries.saturating_sub(1) {
            let active: Vec<usize> = (0..n).filter(|&k| searches[k].margin > 0.0).collect();
            if active.is_empty() {
                break;
            }
            let side = self.side(i, c, h, w);
            let proposals: Vec<Vec<f32>> = active
                .iter()
                .map(|&k| {
                    let s = &mut searches[k];
                    match self.norm {
                        Norm::Linf => {
                            self.linf_proposal(origin(k), &s.best, [c, h, w], side, &mut s.rng)
                        }
                        Norm::L2 => {
                            self.l2_proposal(origin(k), &s.best, [c, h, w], side, &mut s.rng)
                        }
                    }
                })
                .collect();
            let margins = margins_of(model, &active, &proposals, dims, goal, &device);
            for ((&k, proposal), margin) in active.iter().zip(proposals).zip(margins) {
                let s = &mut searches[k];
                s.queries += 1;
                if margin < s.margin || margin <= 0.0 {
                    s.margin = margin;
                    s.best = proposal;
                }
            }
        }
        let images: Vec<f32> = searches
            .iter()
            .flat_map(|s| s.best.iter().copied())
            .collect();
        let mut perturbed = Perturbed::new(
            Tensor::from_data(TensorData::new(images, dims), &device),
            vec![false; n],
        );
        perturbed.queries = Some(searches.iter().map(|s| s.queries).collect());
        perturbed
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn eps(&self) -> f64 {
        self.eps
    }
}

impl Square {
    /// The random start: vertical stripes of ±ε per channel (L∞), or a grid of bump patterns
    /// with random signs scaled to ‖δ‖₂ = ε (L2); clipped to [0,1].
    fn start(&self, x: &[f32], [c, h, w]: [usize; 3], rng: &mut StdRng) -> Vec<f32> {
        let eps = self.eps as f32;
        let mut delta = vec![0f32; x.len()];
        match self.norm {
            Norm::Linf => {
                for ch in 0..c {
                    for col in 0..w {
                        let sign = random_sign(rng);
                        for row in 0..h {
                            delta[(ch * h + row) * w + col] = sign * eps;
                        }
                    }
                }
            }
            Norm::L2 => {
                let s = (h / 5).max(1);
                let offset = h.saturating_sub(5 * s) / 2;
                let mut top = offset;
                for _ in 0..h / s {
                    let mut left = offset;
                    for _ in 0..w / s {
                        let bump = bump(s, rng);
                        for ch in 0..c {
                            let sign = random_sign(rng);
                            add_window(&mut delta, [c, h, w], ch, top, left, s, &bump, sign);
                        }
                        left += s;
                    }
                    top += s;
                }
                scale_to(&mut delta, eps);
            }
        }
        x.iter()
            .zip(&delta)
            .map(|(a, d)| (a + d).clamp(0.0, 1.0))
            .collect()
    }

    fn linf_proposal(
        &self,
        x: &[f32],
        best: &[f32],
        [c, h, w]: [usize; 3],
        side: usize,
        rng: &mut StdRng,
    ) -> Vec<f32> {
        let eps = self.eps as f32;
        let top = rng.random_range(0..(h - side).max(1));
        let left = rng.random_range(0..(w - side).max(1));
        let mut out = best.to_vec();
        for ch in 0..c {
            let sign = random_sign(rng);
            for row in top..top + side {
                for col in left..left + side {
                    let i = (ch * h + row) * w + col;
                    out[i] = (x[i] + sign * eps).clamp(0.0, 1.0);
                }
            }
        }
        out
    }

    /// Moves the perturbation's energy inside window 2 into a fresh bump in window 1, keeping
    /// ‖δ‖₂ = ε.
    fn l2_proposal(
        &self,
        x: &[f32],
        best: &[f32],
        [c, h, w]: [usize; 3],
        side: usize,
        rng: &mut StdRng,
    ) -> Vec<f32> {
        let eps = self.eps as f32;
        let mut delta: Vec<f32> = best.iter().zip(x).map(|(b, a)| b - a).collect();
        let (top1, left1) = (
            rng.random_range(0..(h - side).max(1)),
            rng.random_range(0..(w - side).max(1)),
        );
        let (top2, left2) = (
            rng.random_range(0..(h - side).max(1)),
            rng.random_range(0..(w - side).max(1)),
        );
        let inside = |row: usize, col: usize, top: usize, left: usize| {
            (top..top + side).contains(&row) && (left..left + side).contains(&col)
        };
        let image_norm2: f32 = delta.iter().map(|d| d * d).sum();
        let bump = bump(side, rng);
        for ch in 0..c {
            let at = |row: usize, col: usize| (ch * h + row) * w + col;
            let mut window1 = 0f32;
            let mut union = 0f32;
            for row in 0..h {
                for col in 0..w {
                    let v = delta[at(row, col)];
                    let in1 = inside(row, col, top1, left1);
                    if in1 {
                        window1 += v * v;
                    }
                    if in1 || inside(row, col, top2, left2) {
                        union += v * v;
                    }
                }
            }
            let window1 = window1.sqrt();
            let sign = random_sign(rng);
            let mut fresh: Vec<f32> = Vec::with_capacity(side * side);
            for r in 0..side {
                for q in 0..side {
                    let old = delta[at(top1 + r, left1 + q)] / (1e-12 + window1);
                    fresh.push(bump[r * side + q] * sign + old);
                }
            }
            let fresh_norm = fresh.iter().map(|v| v * v).sum::<f32>().sqrt();
            let target = ((eps * eps - image_norm2).max(0.0) / c as f32 + union).sqrt();
            for row in top2..top2 + side {
                for col in left2..left2 + side {
                    delta[at(row, col)] = 0.0;
                }
            }
            for r in 0..side {
                for q in 0..side {
                    delta[at(top1 + r, left1 + q)] =
                        fresh[r * side + q] / (1e-12 + fresh_norm) * target;
                }
            }
        }
        scale_to(&mut delta, eps);
        x.iter()
            .zip(&delta)
            .map(|(a, d)| (a + d).clamp(0.0, 1.0))
            .collect()
    }

    /// Scores each sample's current image (the start), one query each.
    #[allow(clippy::too_many_arguments)]
    fn score<B: AutodiffBackend, M: Classifier<B>>(
        &self,
        model: &M,
        searches: &mut [Search],
        rows: &[usize],
        image: impl Fn(&Search) -> Vec<f32>,
        dims: [usize; 4],
        goal: &Goal,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) {
        let images: Vec<Vec<f32>> = rows.iter().map(|&k| image(&searches[k])).collect();
        let margins = margins_of(model, rows, &images, dims, goal, device);
        for (&k, m) in rows.iter().zip(margins) {
            searches[k].margin = m;
            searches[k].queries += 1;
        }
    }
}

/// Margins z_y − max_{i≠y} z_i of `images`, which belong to the rows `rows` of the batch.
fn margins_of<B: AutodiffBackend, M: Classifier<B>>(
    model: &M,
    rows: &[usize],
    images: &[Vec<f32>],
    [_, c, h, w]: [usize; 4],
    goal: &Goal,
    device: &burn::tensor::Device<B::InnerBackend>,
) -> Vec<f32> {
    let pixels: Vec<f32> = images.iter().flat_map(|i| i.iter().copied()).collect();
    let batch = Tensor::from_data(TensorData::new(pixels, [rows.len(), c, h, w]), device);
    let logits = host_logits(&Rows { model, rows }, &batch);
    let classes = logits.len() / rows.len().max(1);
    rows.iter()
        .enumerate()
        .map(|(k, &row)| {
            let z = &logits[k * classes..(k + 1) * classes];
            let y = goal.labels[row];
            let other = z
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != y)
                .map(|(_, v)| *v)
                .fold(f32::NEG_INFINITY, f32::max);
            z[y] - other
        })
        .collect()
}

fn random_sign(rng: &mut StdRng) -> f32 {
    if rng.random::<bool>() {
        1.0
    } else {
        -1.0
    }
}

/// Rescales `delta` to ‖δ‖₂ = `eps`.
fn scale_to(delta: &mut [f32], eps: f32) {
    let norm = delta.iter().map(|d| d * d).sum::<f32>().sqrt();
    for d in delta.iter_mut() {
        *d *= eps / (norm + 1e-12);
    }
}

#[allow(clippy::too_many_arguments)]
fn add_window(
    delta: &mut [f32],
    [_, h, w]: [usize; 3],
    ch: usize,
    top: usize,
    left: usize,
    side: usize,
    pattern: &[f32],
    sign: f32,
) {
    for r in 0..side.min(h - top) {
        for q in 0..side.min(w - left) {
            delta[(ch * h + top + r) * w + left + q] += sign * pattern[r * side + q];
        }
    }
}

/// The L2 proposal pattern of side `s`, unit norm: a centred bump of weights 1/(k+1)² on nested
/// squares in the upper half and its negative in the lower half, transposed with probability ½.
fn bump(s: usize, rng: &mut StdRng) -> Vec<f32> {
    let upper = s / 2;
    let mut pattern = vec![0f32; s * s];
    for (rows, offset, sign) in [(upper, 0, 1.0f32), (s - upper, upper, -1.0)] {
        let half = nested_squares(rows, s);
        for r in 0..rows {
            for q in 0..s {
                pattern[(offset + r) * s + q] = sign * half[r * s + q];
            }
        }
    }
    let norm = pattern.iter().map(|v| v * v).sum::<f32>().sqrt();
    pattern.iter_mut().for_each(|v| *v /= norm + 1e-12);
    if rng.random::<f64>() > 0.5 {
        let mut transposed = vec![0f32; s * s];
        for r in 0..s {
            for q in 0..s {
                transposed[q * s + r] = pattern[r * s + q];
            }
        }
        pattern = transposed;
    }
    pattern
}

/// Unit-norm weights on a rows × cols block: squares growing from the centre, ring k weighing
/// 1/(k+1)² more.
fn nested_squares(rows: usize, cols: usize) -> Vec<f32> {
    let mut block = vec![0f32; rows * cols];
    if rows == 0 {
        return block;
    }
    let (mut r0, mut c0) = ((rows / 2) as isize, (cols / 2) as isize);
    for k in 0..rows.max(cols) / 2 + 1 {
        let weight = 1.0 / ((k + 1) * (k + 1)) as f32;
        let size = (2 * k + 1) as isize;
        for r in r0.max(0)..(r0 + size).min(rows as isize) {
            for q in c0.max(0)..(c0 + size).min(cols as isize) {
                block[r as usize * cols + q as usize] += weight;
            }
        }
        r0 -= 1;
        c0 -= 1;
    }
    let norm = block.iter().map(|v| v * v).sum::<f32>().sqrt();
    block.iter_mut().for_each(|v| *v /= norm + 1e-12);
    block
}
