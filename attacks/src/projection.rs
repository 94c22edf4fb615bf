//! The minimal-norm step from a point onto a hyperplane inside the [0,1] box, the inner problem
//! of FAB: find d minimising ‖d‖ (L∞ or L2) with w·(t + d) = b and t + d ∈ [0,1].
//!
//! Both norms have the same solution shape. Let s = sign(b − w·t) and give every coordinate the
//! direction sign(s·wᵢ) and the room rᵢ to the box wall in that direction. The optimum moves
//! coordinate i by min(τ·vᵢ, rᵢ), with vᵢ = 1 for L∞ (all coordinates move by the same amount
//! until they hit a wall) and vᵢ = |wᵢ| for L2 (the KKT conditions of the least-norm problem).
//! The gain Σ |wᵢ|·min(τ·vᵢ, rᵢ) is piecewise linear and increasing in τ; sorting the
//! breakpoints rᵢ/vᵢ finds the τ that closes the gap exactly. When even the whole box cannot
//! close it, every coordinate goes to its wall (the closest the box allows).

use crate::Norm;

/// The step d (same length as `t`) from `t` onto {z : w·z = b} ∩ [0,1]^D, minimal in `norm`.
pub fn onto_hyperplane(t: &[f32], w: &[f32], b: f64, norm: Norm) -> Vec<f32> {
    let gap: f64 = b - t
        .iter()
        .zip(w)
        .map(|(&a, &c)| a as f64 * c as f64)
        .sum::<f64>();
    let mut d = vec![0f32; t.len()];
    if gap == 0.0 || !gap.is_finite() {
        return d;
    }
    let s = gap.signum();
    // (coordinate, |w|, speed, room, breakpoint)
    let mut moves: Vec<(usize, f64, f64, f64, f64)> = t
        .iter()
        .zip(w)
        .enumerate()
        .filter(|(_, (_, &wi))| wi != 0.0)
        .map(|(i, (&ti, &wi))| {
            let up = s * wi as f64 > 0.0;
            let room = if up { 1.0 - ti as f64 } else { ti as f64 }.max(0.0);
            let weight = (wi as f64).abs();
            let speed = match norm {
                Norm::Linf => 1.0,
                Norm::L2 => weight,
            };
            (i, weight, speed, room, room / speed)
        })
        .collect();
    // Ties in coordinate order, as a stable sort would leave them.
    moves.sort_unstable_by(|a, b| a.4.total_cmp(&b.4).then(a.0.cmp(&b.0)));
    let need = gap.abs();
    // Gain below the j-th breakpoint: walls reached so far, plus τ times the moving slope.
    let mut reached = 0.0;
    let mut slope: f64 = moves.iter().map(|m| m.1 * m.2).sum();
    let mut tau = f64::INFINITY;
    for m in &moves {
        if reached + slope * m.4 >= need {
            tau = (need - reached) / slope;
            break;
        }
        reached += m.1 * m.3;
        slope -= m.1 * m.2;
    }
    for &(i, _, speed, room, _) in &moves {
        let step = (tau * speed).min(room);
        let direction = if s * w[i] as f64 > 0.0 { 1.0 } else { -1.0 };
        d[i] = (direction * step) as f32;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn l2_without_walls_is_the_orthogonal_projection() {
        let t = [0.5f32, 0.5, 0.5];
        let w = [1.0f32, 2.0, -1.0];
        // w·t = 1.0, b = 0.6: a gap of −0.4 along w (‖w‖² = 6).
        let d = onto_hyperplane(&t, &w, 0.6, Norm::L2);
        let expected: Vec<f64> = w.iter().map(|&wi| -0.4 * wi as f64 / 6.0).collect();
        for (a, e) in d.iter().zip(&expected) {
            assert!((*a as f64 - e).abs() < 1e-6, "{d:?} vs {expected:?}");
        }
    }

    #[test]
    fn steps_land_on_the_hyperplane_inside_the_box() {
        let t = [0.9f32, 0.1, 0.5, 0.0, 1.0];
        let w = [1.0f32, -3.0, 0.5, 2.0, 0.0];
        for norm in [Norm::Linf, Norm::L2] {
            for b in [-1.5, -0.2, 0.4, 1.9] {
                let d = onto_hyperplane(&t, &w, b, norm);
                let z: Vec<f32> = t.iter().zip(&d).map(|(a, b)| a + b).collect();
                assert!(z.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v)), "{z:?}");
                assert!(
                    (dot(&w, &z) - b).abs() < 1e-5,
                    "{norm}: w·z = {} ≠ {b}",
                    dot(&w, &z)
                );
                assert_eq!(d[4], 0.0, "zero weight never moves");
            }
        }
    }

    #[test]
    fn linf_step_is_minimal() {
        // Brute force over a grid for a 2-D case: no feasible point is closer in L∞.
        let t = [0.3f32, 0.8];
        let w = [1.0f32, 2.0];
        let b = 0.6;
        let d = onto_hyperplane(&t, &w, b, Norm::Linf);
        let best = d.iter().fold(0f32, |m, v| m.max(v.abs()));
        for i in 0..=1000 {
            let z0 = i as f32 / 1000.0;
            let z1 = (b as f32 - z0) / 2.0;
            if (0.0..=1.0).contains(&z1) {
                let norm = (z0 - t[0]).abs().max((z1 - t[1]).abs());
                assert!(norm >= best - 1e-3, "{norm} < {best}");
            }
        }
    }

    #[test]
    fn an_unreachable_plane_sends_every_coordinate_to_its_wall() {
        let d = onto_hyperplane(&[0.5, 0.5], &[1.0, 1.0], 5.0, Norm::L2);
        assert_eq!(d, vec![0.5, 0.5]);
    }
}
