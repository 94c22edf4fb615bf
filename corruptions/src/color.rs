//! skimage's `rgb2hsv` / `hsv2rgb`, operation for operation (float64): one pixel, and four
//! pixels in vector lanes for the whole-image passes.

use wide::{f64x4, CmpEq, CmpLt};

/// One pixel, the plain form the vector version is tested against.
#[cfg(test)]
pub fn rgb_to_hsv(rgb: [f64; 3]) -> [f64; 3] {
    let [r, g, b] = rgb;
    let v = r.max(g).max(b);
    let delta = v - r.min(g).min(b);
    let s = if delta == 0.0 { 0.0 } else { delta / v };
    // Later assignments win ties, as in skimage (blue over green over red).
    let mut h = 0.0;
    if r == v {
        h = (g - b) / delta;
    }
    if g == v {
        h = 2.0 + (b - r) / delta;
    }
    if b == v {
        h = 4.0 + (r - g) / delta;
    }
    let mut h = (h / 6.0).rem_euclid(1.0);
    if delta == 0.0 {
        h = 0.0;
    }
    let fix = |x: f64| if x.is_nan() { 0.0 } else { x };
    [fix(h), fix(s), fix(v)]
}

#[cfg(test)]
pub fn hsv_to_rgb(hsv: [f64; 3]) -> [f64; 3] {
    let [h, s, v] = hsv;
    let hi_f = (h * 6.0).floor();
    let f = h * 6.0 - hi_f;
    let p = v * (1.0 - s);
    let q = v * (1.0 - f * s);
    let t = v * (1.0 - (1.0 - f) * s);
    match (hi_f as i64 as u8) % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Four pixels as channel vectors.
pub type Rgb4 = [f64x4; 3];

/// [`rgb_to_hsv`] on four pixels at once, the branches as selects; the same operations on the
/// same values, so the same bits. The hue before wrapping lies in [−1/6, 5/6], where
/// `rem_euclid(1)` is "add 1 if negative".
pub fn rgb_to_hsv4([r, g, b]: Rgb4) -> Rgb4 {
    let zero = f64x4::splat(0.0);
    let v = r.max(g).max(b);
    let delta = v - r.min(g).min(b);
    let flat = delta.cmp_eq(zero);
    let s = flat.blend(zero, delta / v);
    let mut h = zero;
    h = r.cmp_eq(v).blend((g - b) / delta, h);
    h = g.cmp_eq(v).blend(f64x4::splat(2.0) + (b - r) / delta, h);
    h = b.cmp_eq(v).blend(f64x4::splat(4.0) + (r - g) / delta, h);
    let h = h / f64x4::splat(6.0);
    let h = h.cmp_lt(zero).blend(h + f64x4::splat(1.0), h);
    [flat.blend(zero, h), s, v]
}

/// [`hsv_to_rgb`] on four pixels at once (hues in [0, 1]; sector 6 is sector 0).
pub fn hsv_to_rgb4([h, s, v]: Rgb4) -> Rgb4 {
    let one = f64x4::splat(1.0);
    let hi_f = (h * f64x4::splat(6.0)).floor();
    let f = h * f64x4::splat(6.0) - hi_f;
    let p = v * (one - s);
    let q = v * (one - f * s);
    let t = v * (one - (one - f) * s);
    let sector = |k: f64| hi_f.cmp_eq(f64x4::splat(k));
    // Sector 5 unless another matches.
    let mut rgb = [v, p, q];
    for (mask, values) in [
        (sector(0.0) | sector(6.0), [v, t, p]),
        (sector(1.0), [q, v, p]),
        (sector(2.0), [p, v, t]),
        (sector(3.0), [p, q, v]),
        (sector(4.0), [t, p, v]),
    ] {
        for (channel, value) in rgb.iter_mut().zip(values) {
            *channel = mask.blend(value, *channel);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four-lane conversions equal the scalar ones bit for bit, on a lattice of byte
    /// colours (grey, primaries and every sector included) and a brightness shift between.
    #[test]
    fn four_lanes_equal_the_scalar_conversions() {
        let levels: Vec<f64> = (0..=255).step_by(5).map(|v| v as f64 / 255.0).collect();
        let mut colours = Vec::new();
        for &r in &levels {
            for &g in &levels {
                for &b in &levels {
                    colours.push([r, g, b]);
                }
            }
        }
        for group in colours.chunks_exact(4) {
            let lanes = |c: usize| f64x4::from(std::array::from_fn(|i| group[i][c]));
            let hsv = rgb_to_hsv4([lanes(0), lanes(1), lanes(2)]);
            let shifted = [
                hsv[0],
                hsv[1],
                (hsv[2] + f64x4::splat(0.3)).min(f64x4::splat(1.0)),
            ];
            let rgb = hsv_to_rgb4(shifted);
            for (i, colour) in group.iter().enumerate() {
                let scalar_hsv = rgb_to_hsv(*colour);
                let [h, s, v] = scalar_hsv;
                let scalar_rgb = hsv_to_rgb([h, s, (v + 0.3).min(1.0)]);
                for c in 0..3 {
                    assert_eq!(
                        hsv[c].to_array()[i].to_bits(),
                        scalar_hsv[c].to_bits(),
                        "{colour:?} hsv {c}"
                    );
                    assert_eq!(
                        rgb[c].to_array()[i].to_bits(),
                        scalar_rgb[c].to_bits(),
                        "{colour:?} rgb {c}"
                    );
                }
            }
        }
    }
}
