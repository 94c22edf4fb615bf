//! The OpenCV and ImageMagick operations the reference generators call, with their arithmetic:
//! OpenCV's fixed-point warp coordinates, Canny, the 5×5 chamfer distance transform, histogram
//! equalisation, box filters; ImageMagick's one-sided motion-blur kernel on 16-bit quanta.

use multiversion::multiversion;

use crate::filters::{pad_plane, Border};

/// `cv::getGaussianKernel(n, sigma)` for σ > 0, as float32.
pub fn gaussian_kernel_cv(n: usize, sigma: f64) -> Vec<f32> {
    let scale = -0.5 / (sigma * sigma);
    let raw: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 - (n as f64 - 1.0) * 0.5;
            (scale * x * x).exp()
        })
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|v| (v / sum) as f32).collect()
}

/// `cv::GaussianBlur(src, (k, k), σ)` of a float32 plane (separable, REFLECT_101), summing
/// symmetric pairs first as OpenCV's small symmetric filters do.
pub fn gaussian_blur_cv(plane: &[f32], h: usize, w: usize, k: usize, sigma: f64) -> Vec<f32> {
    let kernel = gaussian_kernel_cv(k, sigma);
    let r = (k / 2) as isize;
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; h * w];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let at = |d: isize| {
                    if horizontal {
                        src[y as usize * w + Border::Reflect101.index(x + d, w)]
                    } else {
                        src[Border::Reflect101.index(y + d, h) * w + x as usize]
                    }
                };
                let mut s = at(0) * kernel[r as usize];
                for d in 1..=r {
                    s += (at(-d) + at(d)) * kernel[(r + d) as usize];
                }
                out[y as usize * w + x as usize] = s;
            }
        }
        out
    };
    let rows = pass(plane, true);
    pass(&rows, false)
}

/// ImageMagick 6 `MotionBlurImage(radius, σ, angle)` on 8-bit channels stored as 16-bit quanta:
/// `width = 2⌈radius⌉+1` taps weighted exp(−i²/2σ²), tap i read at
/// (x + ⌈i·cos θ − ½⌉, y + ⌈i·sin θ − ½⌉) with edge pixels replicated; the result is rounded to a
/// quantum, then brought back to 8 bits as ImageMagick's PNG writer does.
#[multiversion(targets = "simd")]
pub fn motion_blur_im(
    src: &[u8],
    h: usize,
    w: usize,
    channels: usize,
    radius: f64,
    sigma: f64,
    angle_deg: f64,
) -> Vec<u8> {
    let width = (2.0 * radius.ceil() + 1.0) as usize;
    let sigma = if sigma.abs() < 1e-12 { 1e-12 } else { sigma };
    let mut kernel: Vec<f64> = (0..width)
        .map(|i| {
            (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()
                / ((2.0 * std::f64::consts::PI).sqrt() * sigma)
        })
        .collect();
    let normalize: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= normalize);
    let theta = angle_deg.to_radians();
    let (px, py) = (width as f64 * theta.sin(), width as f64 * theta.cos());
    let hyp = px.hypot(py);
    let offsets: Vec<(isize, isize)> = (0..width)
        .map(|i| {
            let ox = ((i as f64 * py) / hyp - 0.5).ceil() as isize;
            let oy = ((i as f64 * px) / hyp - 0.5).ceil() as isize;
            (ox, oy)
        })
        .collect();
    // Replicate-pad once by the largest offset, in ImageMagick's 16-bit quantum scale, so the
    // inner loop reads plain memory; every value still sums its taps in kernel order.
    let pad = offsets
        .iter()
        .map(|&(ox, oy)| ox.unsigned_abs().max(oy.unsigned_abs()))
        .max()
        .unwrap_or(0);
    let (pw, ph) = (w + 2 * pad, h + 2 * pad);
    let mut padded = vec![0.0; pw * ph * channels];
    for (py, row) in padded.chunks_mut(pw * channels).enumerate() {
        let sy = Border::Nearest.index(py as isize - pad as isize, h);
        for (px, pixel) in row.chunks_mut(channels).enumerate() {
            let sx = Border::Nearest.index(px as isize - pad as isize, w);
            let from = (sy * w + sx) * channels;
            for (v, &b) in pixel.iter_mut().zip(&src[from..from + channels]) {
                *v = b as f64 * 257.0;
            }
        }
    }
    let taps: Vec<(f64, usize)> = kernel
        .iter()
        .zip(&offsets)
        .map(|(&k, &(ox, oy))| {
            let shift = (oy + pad as isize) as usize * pw + (ox + pad as isize) as usize;
            (k, shift * channels)
        })
        .collect();
    let mut out = vec![0u8; src.len()];
    let mut acc = vec![0.0; w * channels];
    for (y, out_row) in out.chunks_mut(w * channels).enumerate() {
        let base = y * pw * channels;
        acc.iter_mut().for_each(|a| *a = 0.0);
        for &(k, shift) in &taps {
            let source = &padded[base + shift..base + shift + w * channels];
            for (a, v) in acc.iter_mut().zip(source) {
                *a += k * v;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            let quantum = if a <= 0.0 {
                0u64
            } else if a >= 65535.0 {
                65535
            } else {
                (a + 0.5) as u64
            };
            // The PNG writer of ImageMagick 6 (Q16) stores ⌊q / 257⌋ (measured against Wand).
            *o = (quantum / 257) as u8;
        }
    }
    out
}

/// `cv::getAffineTransform`: the 2×3 matrix mapping three points onto three others, solved by
/// Gaussian elimination with partial pivoting on OpenCV's 6×6 system.
pub fn affine_transform(src: [[f32; 2]; 3], dst: [[f32; 2]; 3]) -> [f64; 6] {
    let mut a = [[0f64; 7]; 6];
    for i in 0..3 {
        let (x, y) = (src[i][0] as f64, src[i][1] as f64);
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, dst[i][0] as f64];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, dst[i][1] as f64];
    }
    for col in 0..6 {
        let pivot = (col..6)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .expect("rows");
        a.swap(col, pivot);
        let pivot_row = a[col];
        for row in a.iter_mut().skip(col + 1) {
            let factor = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *v -= factor * p;
            }
        }
    }
    let mut x = [0f64; 6];
    for row in (0..6).rev() {
        let mut s = a[row][6];
        for k in row + 1..6 {
            s -= a[row][k] * x[k];
        }
        x[row] = s / a[row][row];
    }
    x
}

/// `cv::warpAffine(src, M, (w, h), INTER_LINEAR, BORDER_REFLECT_101)` for float32 `[h][w][c]`:
/// M is inverted, source coordinates are computed in fixed point with 1/32-pixel resolution
/// (AB_BITS = 10, INTER_BITS = 5) and interpolated with float32 weights.
#[multiversion(targets = "simd")]
pub fn warp_affine_linear(src: &[f32], h: usize, w: usize, c: usize, m: [f64; 6]) -> Vec<f32> {
    const AB_BITS: i64 = 10;
    const AB_SCALE: f64 = (1 << AB_BITS) as f64;
    const INTER_BITS: i64 = 5;
    const TAB: i64 = 1 << INTER_BITS;
    let d = m[0] * m[4] - m[1] * m[3];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (a11, a22) = (m[4] * d, m[0] * d);
    let (m01, m10) = (m[1] * -d, m[3] * -d);
    let b1 = -a11 * m[2] - m01 * m[5];
    let b2 = -m10 * m[2] - a22 * m[5];
    let inv = [a11, m01, b1, m10, a22, b2];
    let round = |v: f64| v.round_ties_even() as i64;
    let round_delta = (AB_SCALE as i64) / TAB / 2;
    let weights = |f: i64| [1.0 - f as f32 / TAB as f32, f as f32 / TAB as f32];
    let mut out = vec![0f32; h * w * c];
    for y in 0..h {
        let x0 = round((inv[1] * y as f64 + inv[2]) * AB_SCALE) + round_delta;
        let y0 = round((inv[4] * y as f64 + inv[5]) * AB_SCALE) + round_delta;
        for x in 0..w {
            let xx = (x0 + round(inv[0] * x as f64 * AB_SCALE)) >> (AB_BITS - INTER_BITS);
            let yy = (y0 + round(inv[3] * x as f64 * AB_SCALE)) >> (AB_BITS - INTER_BITS);
            let (ix, iy) = (xx >> INTER_BITS, yy >> INTER_BITS);
            let (wx, wy) = (weights(xx & (TAB - 1)), weights(yy & (TAB - 1)));
            let tab = [wy[0] * wx[0], wy[0] * wx[1], wy[1] * wx[0], wy[1] * wx[1]];
            let sx = [
                Border::Reflect101.index(ix as isize, w),
                Border::Reflect101.index(ix as isize + 1, w),
            ];
            let sy = [
                Border::Reflect101.index(iy as isize, h),
                Border::Reflect101.index(iy as isize + 1, h),
            ];
            for ch in 0..c {
                let p = |r: usize, q: usize| src[(sy[r] * w + sx[q]) * c + ch];
                out[(y * w + x) * c + ch] =
                    p(0, 0) * tab[0] + p(0, 1) * tab[1] + p(1, 0) * tab[2] + p(1, 1) * tab[3];
            }
        }
    }
    out
}

/// `cv::Canny(src, low, high)` with a 3×3 Sobel (replicated border) and the L1 gradient norm.
pub fn canny(src: &[u8], h: usize, w: usize, low: i32, high: i32) -> Vec<u8> {
    let (dx, dy) = sobel(
        &pad_plane(h, w, [1, 1], Border::Nearest, |y, x| {
            i32::from(src[y * w + x])
        }),
        h,
        w,
    );
    // Magnitudes with a zero frame, as OpenCV pads its magnitude rows.
    let (mw, mh) = (w + 2, h + 2);
    let mut mag = vec![0i32; mw * mh];
    for y in 0..h {
        for x in 0..w {
            mag[(y + 1) * mw + x + 1] = dx[y * w + x].abs() + dy[y * w + x].abs();
        }
    }
    const SHIFT: i64 = 15;
    let tg22 = (0.414_213_562_373_095_05 * (1i64 << SHIFT) as f64 + 0.5) as i64;
    // 0: candidate (local maximum above low), 1: not an edge, 2: edge.
    let mut map = vec![1u8; mw * mh];
    let mut stack = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let j = (y + 1) * mw + x + 1;
            let m = mag[j];
            if m <= low {
                continue;
            }
            let (xs, ys) = (dx[y * w + x] as i64, dy[y * w + x] as i64);
            let ax = xs.abs();
            let ay = ys.abs() << SHIFT;
            let tg22x = ax * tg22;
            let is_max = if ay < tg22x {
                m > mag[j - 1] && m >= mag[j + 1]
            } else {
                let tg67x = tg22x + (ax << (SHIFT + 1));
                if ay > tg67x {
                    m > mag[j - mw] && m >= mag[j + mw]
                } else {
                    let s: isize = if (xs ^ ys) < 0 { -1 } else { 1 };
                    let a = (j as isize - mw as isize - s) as usize;
                    let b = (j as isize + mw as isize + s) as usize;
                    m > mag[a] && m > mag[b]
                }
            };
            if is_max {
                if m > high {
                    map[j] = 2;
                    stack.push(j);
                } else {
                    map[j] = 0;
                }
            }
        }
    }
    while let Some(j) = stack.pop() {
        for d in [
            -(mw as isize) - 1,
            -(mw as isize),
            -(mw as isize) + 1,
            -1,
            1,
            mw as isize - 1,
            mw as isize,
            mw as isize + 1,
        ] {
            let k = (j as isize + d) as usize;
            if map[k] == 0 {
                map[k] = 2;
                stack.push(k);
            }
        }
    }
    let mut out = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            if map[(y + 1) * mw + x + 1] == 2 {
                out[y * w + x] = 255;
            }
        }
    }
    out
}

/// 3×3 Sobel derivatives (x, y) of a plane padded by [`pad_plane`] by one pixel.
#[multiversion(targets = "simd")]
fn sobel(padded: &[i32], h: usize, w: usize) -> (Vec<i32>, Vec<i32>) {
    let pw = w + 2;
    let mut dx = vec![0i32; h * w];
    let mut dy = vec![0i32; h * w];
    for y in 0..h {
        let (up, mid, down) = (
            &padded[y * pw..],
            &padded[(y + 1) * pw..],
            &padded[(y + 2) * pw..],
        );
        for x in 0..w {
            dx[y * w + x] =
                (up[x + 2] + 2 * mid[x + 2] + down[x + 2]) - (up[x] + 2 * mid[x] + down[x]);
            dy[y * w + x] =
                (down[x] + 2 * down[x + 1] + down[x + 2]) - (up[x] + 2 * up[x + 1] + up[x + 2]);
        }
    }
    (dx, dy)
}

/// `cv::distanceTransform(src, DIST_L2, 5)`: two-pass 5×5 chamfer distance to the nearest zero
/// pixel, in 16-bit fixed point with the weights 1, 1.4 and 2.1969.
pub fn distance_transform_l2_5(src: &[u8], h: usize, w: usize) -> Vec<f32> {
    const SHIFT: i32 = 16;
    let fix = |v: f64| (v * (1 << SHIFT) as f64).round_ties_even() as i64;
    let (hv, diag, long) = (fix(1.0), fix(1.4), fix(2.1969));
    let dist_max = (i32::MAX >> 2) as i64;
    let border = 2;
    let (tw, th) = (w + 2 * border, h + 2 * border);
    let mut t = vec![dist_max; tw * th];
    let idx = |y: usize, x: usize| (y + border) * tw + x + border;
    for y in 0..h {
        for x in 0..w {
            let j = idx(y, x);
            if src[y * w + x] == 0 {
                t[j] = 0;
                continue;
            }
            let s = tw;
            let mut d = t[j - 2 * s - 1] + long;
            for candidate in [
                t[j - 2 * s + 1] + long,
                t[j - s - 2] + long,
                t[j - s - 1] + diag,
                t[j - s] + hv,
                t[j - s + 1] + diag,
                t[j - s + 2] + long,
                t[j - 1] + hv,
            ] {
                d = d.min(candidate);
            }
            t[j] = d;
        }
    }
    let scale = 1.0f32 / (1 << SHIFT) as f32;
    let mut out = vec![0f32; h * w];
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let j = idx(y, x);
            let s = tw;
            let mut d = t[j];
            if d > hv {
                for candidate in [
                    t[j + 2 * s + 1] + long,
                    t[j + 2 * s - 1] + long,
                    t[j + s + 2] + long,
                    t[j + s + 1] + diag,
                    t[j + s] + hv,
                    t[j + s - 1] + diag,
                    t[j + s - 2] + long,
                    t[j + 1] + hv,
                ] {
                    d = d.min(candidate);
                }
                t[j] = d;
            }
            out[y * w + x] = d as f32 * scale;
        }
    }
    out
}

/// `cv::blur(src, (3, 3))` of a float32 plane: exact 3×3 sums (REFLECT_101) times 1/9, float32.
pub fn box3_f32(plane: &[f32], h: usize, w: usize) -> Vec<f32> {
    box3(h, w, |y, x| plane[y * w + x] as f64)
        .into_iter()
        .map(|s| (s * (1.0 / 9.0)) as f32)
        .collect()
}

/// `cv::blur(src, (3, 3))` of a uint8 plane: sums times 1/9 rounded half to even.
pub fn box3_u8(plane: &[u8], h: usize, w: usize) -> Vec<u8> {
    box3(h, w, |y, x| plane[y * w + x] as f64)
        .into_iter()
        .map(|s| (s * (1.0 / 9.0)).round_ties_even().clamp(0.0, 255.0) as u8)
        .collect()
}

fn box3(h: usize, w: usize, value: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let padded = pad_plane(h, w, [1, 1], Border::Reflect101, value);
    box3_padded(&padded, h, w)
}

/// 3×3 sums in row-major tap order over a plane padded by [`pad_plane`] by one pixel.
#[multiversion(targets = "simd")]
fn box3_padded(padded: &[f64], h: usize, w: usize) -> Vec<f64> {
    let pw = w + 2;
    let mut out = vec![0.0; h * w];
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        for (x, o) in row.iter_mut().enumerate() {
            let mut s = 0.0;
            for dy in 0..3 {
                for dx in 0..3 {
                    s += padded[(y + dy) * pw + x + dx];
                }
            }
            *o = s;
        }
    }
    out
}

/// `cv::equalizeHist` of a uint8 plane.
pub fn equalize_hist(plane: &[u8]) -> Vec<u8> {
    let mut hist = [0usize; 256];
    for &v in plane {
        hist[v as usize] += 1;
    }
    let total = plane.len();
    let first = hist.iter().position(|&c| c > 0).unwrap_or(0);
    if hist[first] == total {
        return vec![first as u8; total];
    }
    let scale = 255.0f32 / (total - hist[first]) as f32;
    let mut lut = [0u8; 256];
    let mut sum = 0usize;
    for i in first + 1..256 {
        sum += hist[i];
        lut[i] = ((sum as f32) * scale).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    plane.iter().map(|&v| lut[v as usize]).collect()
}

/// `cv::filter2D(src, CV_8U, kernel)` with an integer 3×3 kernel (REFLECT_101, saturating).
pub fn filter2d_u8(plane: &[u8], h: usize, w: usize, kernel: [[i32; 3]; 3]) -> Vec<u8> {
    let padded = pad_plane(h, w, [1, 1], Border::Reflect101, |y, x| {
        i32::from(plane[y * w + x])
    });
    filter3_padded(&padded, h, w, kernel)
}

#[multiversion(targets = "simd")]
fn filter3_padded(padded: &[i32], h: usize, w: usize, kernel: [[i32; 3]; 3]) -> Vec<u8> {
    let pw = w + 2;
    let mut out = vec![0u8; h * w];
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        for (x, o) in row.iter_mut().enumerate() {
            let mut s = 0i32;
            for (ky, taps) in kernel.iter().enumerate() {
                for (kx, k) in taps.iter().enumerate() {
                    s += k * padded[(y + ky) * pw + x + kx];
                }
            }
            *o = s.clamp(0, 255) as u8;
        }
    }
    out
}
