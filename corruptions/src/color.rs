//! skimage's `rgb2hsv` / `hsv2rgb`, operation for operation (float64).

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
