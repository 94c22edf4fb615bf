//! The image filters the reference generators call, with their border rules and arithmetic:
//! scipy.ndimage (gaussian_filter, zoom, map_coordinates), OpenCV (filter2D, blur) and PIL
//! (BOX resampling). Arrays are row-major `[h][w][c]` (interleaved channels). The hot loops are
//! compiled for several instruction sets and picked at run time; no sum changes its order.

use multiversion::multiversion;

use crate::dft::{Correlator, DFT_MIN_TAPS};

/// How a filter reads outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Border {
    /// aaaa|abcd|dddd (scipy 'nearest', OpenCV REPLICATE)
    Nearest,
    /// dcba|abcd|dcba, half-sample symmetric (scipy 'reflect', OpenCV REFLECT)
    Reflect,
    /// dcb|abcd|cba, whole-sample symmetric (OpenCV REFLECT_101, scipy 'mirror')
    Reflect101,
}

impl Border {
    /// Index into `0..n` for any integer position.
    #[inline]
    pub fn index(&self, i: isize, n: usize) -> usize {
        let n = n as isize;
        if (0..n).contains(&i) {
            return i as usize;
        }
        let mapped = match self {
            Border::Nearest => i.clamp(0, n - 1),
            Border::Reflect => {
                let period = 2 * n;
                let m = i.rem_euclid(period);
                if m < n {
                    m
                } else {
                    period - 1 - m
                }
            }
            Border::Reflect101 => {
                if n == 1 {
                    0
                } else {
                    let period = 2 * n - 2;
                    let m = i.rem_euclid(period);
                    if m < n {
                        m
                    } else {
                        period - m
                    }
                }
            }
        };
        mapped as usize
    }
}

/// scipy's `_gaussian_kernel1d`: radius `int(truncate·σ + 0.5)`, weights exp(−x²/2σ²)/Σ.
fn gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as isize;
    let weights: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| w / sum).collect()
}

/// `out[i] = src[own + i]·k₀ + Σ (src[a + i] + src[b + i])·k` over `pairs = (a, b, k)` in
/// order, for every `i` of `out`: scipy's symmetric `correlate1d` sum for one line of outputs,
/// whichever axis the offsets step along.
#[inline(always)]
fn tap_sums(out: &mut [f64], src: &[f64], own: usize, k0: f64, pairs: &[(usize, usize, f64)]) {
    // 32 outputs in accumulators (eight AVX2 or four AVX-512 registers) through all the taps,
    // instead of a whole line loaded and stored once per tap.
    const BLOCK: usize = 32;
    let x = out.len() - out.len() % BLOCK;
    let mut blocks = out.chunks_exact_mut(BLOCK);
    for (b, block) in blocks.by_ref().enumerate() {
        let x = b * BLOCK;
        let own: &[f64; BLOCK] = src[own + x..own + x + BLOCK].try_into().unwrap();
        let mut acc = [0.0; BLOCK];
        for (acc, v) in acc.iter_mut().zip(own) {
            *acc = v * k0;
        }
        for &(a, b, k) in pairs {
            let u: &[f64; BLOCK] = src[a + x..a + x + BLOCK].try_into().unwrap();
            let l: &[f64; BLOCK] = src[b + x..b + x + BLOCK].try_into().unwrap();
            for ((acc, u), l) in acc.iter_mut().zip(u).zip(l) {
                *acc += (u + l) * k;
            }
        }
        block.copy_from_slice(&acc);
    }
    let tail = blocks.into_remainder();
    let n = tail.len();
    for (acc, v) in tail.iter_mut().zip(&src[own + x..own + x + n]) {
        *acc = v * k0;
    }
    for &(a, b, k) in pairs {
        let (u, l) = (&src[a + x..a + x + n], &src[b + x..b + x + n]);
        for ((acc, u), l) in tail.iter_mut().zip(u).zip(l) {
            *acc += (u + l) * k;
        }
    }
}

/// One scipy `correlate1d` pass with a symmetric kernel along the first axis of an `[h][rest]`
/// array; each value sums as scipy's symmetric branch does:
/// `x₀·w₀ + Σ_{j=-r}^{-1} (x_j + x_{−j})·w_j`. Whole rows at a time, so the loop vectorises.
#[multiversion(targets = "simd")]
fn correlate_rows(data: &[f64], h: usize, kernel: &[f64], border: Border) -> Vec<f64> {
    let row_len = data.len() / h;
    let radius = (kernel.len() / 2) as isize;
    if radius as usize > h {
        return correlate_rows_folded(data, h, kernel, border);
    }
    let center = &kernel[radius as usize..];
    let mut out = vec![0.0; data.len()];
    let mut pairs = Vec::with_capacity(radius as usize);
    for (y, line) in out.chunks_exact_mut(row_len).enumerate() {
        pairs.clear();
        pairs.extend((1..=radius).rev().map(|d| {
            let above = border.index(y as isize - d, h) * row_len;
            let below = border.index(y as isize + d, h) * row_len;
            (above, below, center[d as usize])
        }));
        tap_sums(line, data, y * row_len, center[0], &pairs);
    }
    out
}

/// The same pass along the second axis of `[h][w][c]` data, without a transpose: each row is
/// padded once under `border`, and the taps are shifted slices of it. Kernels longer than the
/// row go through [`correlate_rows`] on the transposed array (the folded product).
#[multiversion(targets = "simd")]
fn correlate_columns(
    data: &[f64],
    [h, w, c]: [usize; 3],
    kernel: &[f64],
    border: Border,
) -> Vec<f64> {
    let radius = kernel.len() / 2;
    if radius > w {
        let columns = correlate_rows(&transpose(data, [h, w, c]), w, kernel, border);
        return transpose(&columns, [w, h, c]);
    }
    let center = &kernel[radius..];
    // Tap d reads the padded row at (x − d)·c and (x + d)·c, offset by the padding.
    let pairs: Vec<(usize, usize, f64)> = (1..=radius)
        .rev()
        .map(|d| ((radius - d) * c, (radius + d) * c, center[d]))
        .collect();
    let sources: Vec<usize> = (0..w + 2 * radius)
        .map(|p| border.index(p as isize - radius as isize, w) * c)
        .collect();
    let mut padded = vec![0.0; (w + 2 * radius) * c];
    let mut out = vec![0.0; data.len()];
    for (row, line) in data.chunks_exact(w * c).zip(out.chunks_exact_mut(w * c)) {
        if c == 1 {
            for (cell, &s) in padded.iter_mut().zip(&sources) {
                *cell = row[s];
            }
        } else {
            for (cell, &s) in padded.chunks_exact_mut(c).zip(&sources) {
                cell.copy_from_slice(&row[s..s + c]);
            }
        }
        tap_sums(line, &padded, radius * c, center[0], &pairs);
    }
    out
}

/// The same correlation when the kernel is longer than the line (elastic_transform's σ ≈ 171 on
/// 224 pixels): the border rule maps every tap onto one of the `h` rows, so the kernel folds into
/// an `h × h` matrix and the pass is one matrix product. The sums run in another order than
/// scipy's, which moves results by a few units in the last place.
fn correlate_rows_folded(data: &[f64], h: usize, kernel: &[f64], border: Border) -> Vec<f64> {
    let row_len = data.len() / h;
    let radius = (kernel.len() / 2) as isize;
    // weights[y][s]: the total weight row s receives in output row y.
    let mut weights = vec![0.0; h * h];
    // The row each position −radius .. h + radius reads, looked up once.
    let source: Vec<usize> = (-radius..h as isize + radius)
        .map(|p| border.index(p, h))
        .collect();
    for (y, row) in weights.chunks_exact_mut(h).enumerate() {
        for (&s, &weight) in source[y..].iter().zip(kernel) {
            row[s] += weight;
        }
    }
    let mut out = vec![0.0; data.len()];
    // out (h × row_len) = weights (h × h) · data (h × row_len), all row-major.
    // SAFETY: the three buffers have exactly the dimensions and strides given.
    unsafe {
        matrixmultiply::dgemm(
            h,
            h,
            row_len,
            1.0,
            weights.as_ptr(),
            h as isize,
            1,
            data.as_ptr(),
            row_len as isize,
            1,
            0.0,
            out.as_mut_ptr(),
            row_len as isize,
            1,
        );
    }
    out
}

/// `[h][w][c]` → `[w][h][c]`.
fn transpose<T: Copy + Default>(data: &[T], [h, w, c]: [usize; 3]) -> Vec<T> {
    match c {
        1 => transpose_fixed::<T, 1>(data, h, w),
        3 => transpose_fixed::<T, 3>(data, h, w),
        _ => {
            let mut out = vec![T::default(); data.len()];
            for y in 0..h {
                for x in 0..w {
                    let (src, dst) = ((y * w + x) * c, (x * h + y) * c);
                    out[dst..dst + c].copy_from_slice(&data[src..src + c]);
                }
            }
            out
        }
    }
}

/// [`transpose`] with the channel count known at compile time (fixed-size copies the compiler turns into moves).
fn transpose_fixed<T: Copy + Default, const C: usize>(data: &[T], h: usize, w: usize) -> Vec<T> {
    let mut out = vec![T::default(); data.len()];
    for (y, row) in data.chunks_exact(w * C).enumerate() {
        for (x, pixel) in row.chunks_exact(C).enumerate() {
            let dst = (x * h + y) * C;
            out[dst..dst + C].copy_from_slice(pixel);
        }
    }
    out
}

/// scipy's two `correlate1d` passes (rows, then columns), with `between` applied to the
/// intermediate (float32 storage for float32 arrays). Every output sums its taps in scipy's order.
fn correlate_both_axes(
    data: &[f64],
    dims: [usize; 3],
    kernel: &[f64],
    border: Border,
    between: impl Fn(f64) -> f64,
) -> Vec<f64> {
    let mut rows = correlate_rows(data, dims[0], kernel, border);
    rows.iter_mut().for_each(|v| *v = between(*v));
    correlate_columns(&rows, dims, kernel, border)
}

/// `scipy.ndimage.gaussian_filter` over the two spatial axes of `[h][w][c]` float64 data
/// (σ = 0 along channels, as skimage's `gaussian(..., channel_axis=-1)` asks).
pub fn gaussian_f64(
    data: &[f64],
    dims: [usize; 3],
    sigma: f64,
    truncate: f64,
    border: Border,
) -> Vec<f64> {
    if sigma < 1e-15 {
        return data.to_vec();
    }
    let kernel = gaussian_kernel(sigma, truncate);
    correlate_both_axes(data, dims, &kernel, border, |v| v)
}

/// The same on float32 data: scipy accumulates in float64 and stores float32 after each axis.
pub fn gaussian_f32(
    data: &[f32],
    dims: [usize; 3],
    sigma: f64,
    truncate: f64,
    border: Border,
) -> Vec<f32> {
    if sigma < 1e-15 {
        return data.to_vec();
    }
    let kernel = gaussian_kernel(sigma, truncate);
    let as64: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    correlate_both_axes(&as64, dims, &kernel, border, |v| v as f32 as f64)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// An `h × w` plane extended by `ay` rows and `ax` columns on each side under `border`,
/// row-major `(h + 2·ay) × (w + 2·ax)`; `value(y, x)` reads the plane.
pub fn pad_plane<T: Copy + Default>(
    h: usize,
    w: usize,
    [ay, ax]: [usize; 2],
    border: Border,
    value: impl Fn(usize, usize) -> T,
) -> Vec<T> {
    let pw = w + 2 * ax;
    let mut padded = vec![T::default(); (h + 2 * ay) * pw];
    // The border rule once per column and once per row, not once per cell.
    let columns: Vec<usize> = (0..pw)
        .map(|px| border.index(px as isize - ax as isize, w))
        .collect();
    for (py, row) in padded.chunks_exact_mut(pw).enumerate() {
        let y = border.index(py as isize - ay as isize, h);
        for (v, &x) in row.iter_mut().zip(&columns) {
            *v = value(y, x);
        }
    }
    padded
}

/// `cv2.filter2D` (correlation, REFLECT_101 border) of float64 planes with one float32 kernel.
/// Like OpenCV, kernels of fewer than [`DFT_MIN_TAPS`] taps are summed directly; larger ones go
/// through the DFT unless their non-zero taps make the direct sum cheaper.
pub fn filter2d_planes(
    planes: &[Vec<f64>],
    h: usize,
    w: usize,
    kernel: &[f32],
    kh: usize,
    kw: usize,
) -> Vec<Vec<f64>> {
    let (ay, ax) = (kh / 2, kw / 2);
    let (pw, ph) = (w + 2 * ax, h + 2 * ay);
    let pad =
        |plane: &[f64]| pad_plane(h, w, [ay, ax], Border::Reflect101, |y, x| plane[y * w + x]);
    let nonzero = kernel.iter().filter(|&&k| k != 0.0).count();
    if kh * kw >= DFT_MIN_TAPS && dft_is_cheaper(nonzero, [h, w], [ph, pw]) {
        let correlator = Correlator::cached(kernel, kh, kw, ph, pw);
        planes
            .iter()
            .map(|plane| correlator.correlate(&pad(plane), pw, h, w))
            .collect()
    } else {
        let direct = |plane: &Vec<f64>| correlate_direct(&pad(plane), [h, w], kernel, [kh, kw]);
        planes.iter().map(direct).collect()
    }
}

/// Whether the DFT costs less than the direct sum over `nonzero` taps. The two agree to float64
/// rounding (the tests hold them to the same bytes), so this only picks the faster: the direct
/// sum is one multiply-add per tap and output, the DFT about [`DFT_COST_PER_POINT`] of them per
/// point of the padded plane and doubling of its size.
fn dft_is_cheaper(nonzero: usize, [h, w]: [usize; 2], [ph, pw]: [usize; 2]) -> bool {
    let points = (ph * pw) as f64;
    let direct = (nonzero * h * w) as f64;
    direct > DFT_COST_PER_POINT * points * points.log2()
}

/// The DFT's cost per padded point and doubling, in direct-sum multiply-adds (see
/// [`dft_is_cheaper`]): timed on the five ImageNet defocus kernels at 224 × 224 (AVX2), where
/// the direct sum wins for the two smallest (61 and 89 non-zero taps) and loses from 169 on.
const DFT_COST_PER_POINT: f64 = 6.0;

/// An unpadded plane correlated with a square kernel through the DFT (`through_dft`) or the
/// direct sum, whatever [`dft_is_cheaper`] would pick, for comparisons in tests.
#[cfg(test)]
pub fn correlate_for_tests(
    plane: &[f64],
    [h, w]: [usize; 2],
    kernel: &[f32],
    n: usize,
    through_dft: bool,
) -> Vec<f64> {
    let padded = pad_plane(h, w, [n / 2, n / 2], Border::Reflect101, |y, x| {
        plane[y * w + x]
    });
    if through_dft {
        let (ph, pw) = (h + n - 1, w + n - 1);
        Correlator::cached(kernel, n, n, ph, pw).correlate(&padded, pw, h, w)
    } else {
        correlate_direct(&padded, [h, w], kernel, [n, n])
    }
}

/// The direct sum over the non-zero taps of a plane padded by the kernel's half-sizes; every
/// pixel sums its taps in the kernel's row-major order.
#[multiversion(targets = "simd")]
fn correlate_direct(
    padded: &[f64],
    [h, w]: [usize; 2],
    kernel: &[f32],
    [kh, kw]: [usize; 2],
) -> Vec<f64> {
    let pw = w + 2 * (kw / 2);
    // (offset of the tap in the padded plane, weight)
    let taps: Vec<(usize, f64)> = (0..kh * kw)
        .filter(|&i| kernel[i] != 0.0)
        .map(|i| ((i / kw) * pw + i % kw, f64::from(kernel[i])))
        .collect();
    let mut out = vec![0.0; h * w];
    // 32 outputs of a row in accumulators (eight AVX2 or four AVX-512 registers): enough
    // independent additions in flight to hide their latency. Tap by tap over the block.
    const BLOCK: usize = 32;
    for (y, row) in out.chunks_mut(w).enumerate() {
        for (b, block) in row.chunks_mut(BLOCK).enumerate() {
            let start = y * pw + b * BLOCK;
            let mut acc = [0.0; BLOCK];
            let n = block.len();
            for &(offset, k) in &taps {
                let source = &padded[start + offset..];
                if n == BLOCK {
                    let source: &[f64; BLOCK] = source[..BLOCK].try_into().unwrap();
                    for (a, p) in acc.iter_mut().zip(source) {
                        *a += k * p;
                    }
                } else {
                    for (a, p) in acc[..n].iter_mut().zip(source) {
                        *a += k * p;
                    }
                }
            }
            block.copy_from_slice(&acc[..n]);
        }
    }
    out
}

/// The reference's `clipped_zoom` of a square `[n][n]` single-channel array: centre crop of side
/// ⌈n/z⌉, `scipy.ndimage.zoom(crop, z, order=1)` (output side `round(side·z)`, ties to even;
/// sample positions `i·(side−1)/(out−1)`), centre trim back to n.
#[multiversion(targets = "simd")]
pub fn clipped_zoom(data: &[f64], n: usize, z: f64) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for_each_zoomed::<1>(data, n, z, |i, [v]| out[i] = v);
    out
}

/// `acc += float32(clipped_zoom(rgb, z))` for a square `[n][n][3]` array (zoom_blur's running sum).
#[multiversion(targets = "simd")]
pub fn add_clipped_zoom_rgb(data: &[f64], n: usize, z: f64, acc: &mut [f32]) {
    for_each_zoomed::<3>(data, n, z, |i, v| {
        for (a, v) in acc[3 * i..3 * i + 3].iter_mut().zip(v) {
            *a += v as f32;
        }
    });
}

/// Calls `visit(pixel index, values)` for every kept output of the clipped zoom of an `[n][n][C]`
/// array. Only the kept outputs are computed; each sums its four taps in scipy's order.
#[inline(always)]
fn for_each_zoomed<const C: usize>(
    data: &[f64],
    n: usize,
    z: f64,
    mut visit: impl FnMut(usize, [f64; C]),
) {
    let taps = zoom_taps(n, z);
    let row_len = n * C;
    for (y, &(y0, y1, fy)) in taps.iter().enumerate() {
        let (r0, r1) = (
            &data[y0 * row_len..(y0 + 1) * row_len],
            &data[y1 * row_len..(y1 + 1) * row_len],
        );
        for (x, &(x0, x1, fx)) in taps.iter().enumerate() {
            let w = [
                (1.0 - fy) * (1.0 - fx),
                (1.0 - fy) * fx,
                fy * (1.0 - fx),
                fy * fx,
            ];
            let (a, b) = (&r0[x0 * C..x0 * C + C], &r0[x1 * C..x1 * C + C]);
            let (c, d) = (&r1[x0 * C..x0 * C + C], &r1[x1 * C..x1 * C + C]);
            let values: [f64; C] =
                std::array::from_fn(|ch| w[0] * a[ch] + w[1] * b[ch] + w[2] * c[ch] + w[3] * d[ch]);
            visit(y * n + x, values);
        }
    }
}

/// For each kept output index of [`clipped_zoom`] along one axis: the two source indices (in
/// the uncropped array) and the weight of the second.
fn zoom_taps(n: usize, z: f64) -> Vec<(usize, usize, f64)> {
    let side = (n as f64 / z).ceil() as usize;
    let top = (n - side) / 2;
    let zoomed = ((side as f64) * z).round_ties_even() as usize;
    let scale = if zoomed > 1 {
        (side - 1) as f64 / (zoomed - 1) as f64
    } else {
        1.0
    };
    let trim = zoomed.saturating_sub(n) / 2;
    (0..n)
        .map(|i| {
            // Outputs missing when the zoom rounds below n repeat the last one.
            let pos = (i + trim).min(zoomed - 1) as f64 * scale;
            let lo = (pos.floor() as usize).min(side - 1);
            (top + lo, top + (lo + 1).min(side - 1), pos - lo as f64)
        })
        .collect()
}

/// Linear interpolation of an `[h][w][c]` array at (y, x) with scipy's 'reflect' rule, all
/// channels of the pixel at once (into `out`, one value per channel).
#[inline(always)]
pub fn sample_linear_reflect(data: &[f32], [h, w, c]: [usize; 3], y: f64, x: f64, out: &mut [f64]) {
    let (y0, fy) = (y.floor(), y - y.floor());
    let (x0, fx) = (x.floor(), x - x.floor());
    let (y0, x0) = (y0 as isize, x0 as isize);
    let rows = [
        Border::Reflect.index(y0, h) * w,
        Border::Reflect.index(y0 + 1, h) * w,
    ];
    let columns = [
        Border::Reflect.index(x0, w),
        Border::Reflect.index(x0 + 1, w),
    ];
    let corners = [
        ((1.0 - fy) * (1.0 - fx), (rows[0] + columns[0]) * c),
        ((1.0 - fy) * fx, (rows[0] + columns[1]) * c),
        (fy * (1.0 - fx), (rows[1] + columns[0]) * c),
        (fy * fx, (rows[1] + columns[1]) * c),
    ];
    for (ch, v) in out.iter_mut().enumerate() {
        *v = corners.iter().fold(0.0, |acc, &(weight, at)| {
            acc + weight * data[at + ch] as f64
        });
    }
}

/// PIL's resampling filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeFilter {
    Box,
    Bilinear,
}

impl ResizeFilter {
    fn support(&self) -> f64 {
        match self {
            ResizeFilter::Box => 0.5,
            ResizeFilter::Bilinear => 1.0,
        }
    }

    fn weight(&self, x: f64) -> f64 {
        match self {
            ResizeFilter::Box if x > -0.5 && x <= 0.5 => 1.0,
            ResizeFilter::Bilinear if x.abs() < 1.0 => 1.0 - x.abs(),
            _ => 0.0,
        }
    }
}

/// PIL `Image.resize((nw, nh), filter)` of 8-bit RGB: separable, horizontal pass first,
/// fixed-point coefficients with 22 fractional bits and rounding to 8 bits after each pass.
pub fn pil_resize(
    src: &[u8],
    w: usize,
    h: usize,
    nw: usize,
    nh: usize,
    filter: ResizeFilter,
) -> Vec<u8> {
    let horizontal = if nw == w {
        src.to_vec()
    } else {
        resample_axis(src, w, h, nw, true, filter)
    };
    if nh == h {
        horizontal
    } else {
        resample_axis(&horizontal, nw, h, nh, false, filter)
    }
}

/// [`pil_resize`] with the BOX filter (pixelate).
pub fn pil_box_resize(src: &[u8], w: usize, h: usize, nw: usize, nh: usize) -> Vec<u8> {
    pil_resize(src, w, h, nw, nh, ResizeFilter::Box)
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's `precompute_coeffs`, normalised and converted to fixed point.
fn coefficients(in_size: usize, out_size: usize, filter: ResizeFilter) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64).min(in_size as i64) as usize) - xmin;
            let weights: Vec<f64> = (0..xmax)
                .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let k = if total != 0.0 { w / total } else { *w };
                    let scaled = k * (1i64 << PRECISION_BITS) as f64;
                    if k < 0.0 {
                        (scaled - 0.5).trunc() as i64
                    } else {
                        (scaled + 0.5).trunc() as i64
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// One pass of [`pil_resize`] along rows (`horizontal`) or columns of an interleaved RGB image.
/// The accumulators are 32-bit as in PIL: 255 · 2²² plus the rounding term stays below 2³¹.
fn resample_axis(
    src: &[u8],
    w: usize,
    h: usize,
    new_len: usize,
    horizontal: bool,
    filter: ResizeFilter,
) -> Vec<u8> {
    let in_len = if horizontal { w } else { h };
    let taps: Vec<(usize, Vec<i32>)> = coefficients(in_len, new_len, filter)
        .into_iter()
        .map(|(start, weights)| (start, weights.into_iter().map(|k| k as i32).collect()))
        .collect();
    if horizontal {
        // Along rows = along the columns of the transposed image, the vectorised pass.
        let columns = resample_columns(&transpose(src, [h, w, 3]), h, new_len, &taps);
        transpose(&columns, [new_len, h, 3])
    } else {
        resample_columns(src, w, new_len, &taps)
    }
}

const ROUNDING: i32 = 1 << (PRECISION_BITS - 1);

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Vertical pass: each output row is a weighted sum of whole input rows (vectorised along the row).
#[multiversion(targets = "simd")]
fn resample_columns(src: &[u8], w: usize, nh: usize, taps: &[(usize, Vec<i32>)]) -> Vec<u8> {
    let stride = w * 3;
    let mut out = vec![0u8; stride * nh];
    let mut acc = vec![0i32; stride];
    for ((start, weights), out_row) in taps.iter().zip(out.chunks_exact_mut(stride)) {
        acc.fill(ROUNDING);
        for (k, &weight) in weights.iter().enumerate() {
            let row = &src[(start + k) * stride..(start + k + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as i32 * weight;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Border indices made once per row and column give the padding of the per-cell definition,
    /// for every border, odd sizes and a padding wider than the image.
    #[test]
    fn padding_equals_the_per_cell_border_rule() {
        for (h, w, [ay, ax]) in [
            (5, 7, [2, 3]),
            (1, 1, [0, 0]),
            (3, 4, [6, 5]),
            (9, 2, [8, 8]),
        ] {
            let plane: Vec<u32> = (0..(h * w) as u32).map(|i| i * 7 + 1).collect();
            for border in [Border::Nearest, Border::Reflect, Border::Reflect101] {
                let padded = pad_plane(h, w, [ay, ax], border, |y, x| plane[y * w + x]);
                let pw = w + 2 * ax;
                for (i, &v) in padded.iter().enumerate() {
                    let y = border.index((i / pw) as isize - ay as isize, h);
                    let x = border.index((i % pw) as isize - ax as isize, w);
                    assert_eq!(v, plane[y * w + x], "{h}×{w} {border:?} cell {i}");
                }
            }
        }
    }

    /// The cost rule on the ImageNet defocus kernels (224 × 224, non-zero taps 61 to 429): the
    /// two smallest are summed directly, the rest go through the DFT.
    #[test]
    fn the_direct_sum_takes_the_sparse_kernels() {
        let (h, w) = (224, 224);
        let choices = [(61, 17), (89, 17), (169, 17), (257, 17), (429, 21)]
            .map(|(nonzero, n)| dft_is_cheaper(nonzero, [h, w], [h + n - 1, w + n - 1]));
        assert_eq!(choices, [false, false, true, true, true]);
    }

    /// The folded long-kernel correlation (one matrix product) against the tap-by-tap sum of
    /// scipy's definition, on a 37 × 5 array with a kernel far longer than the 37 rows.
    #[test]
    fn folded_correlation_equals_the_tap_sum() {
        let (h, row_len) = (37, 5);
        let data: Vec<f64> = (0..h * row_len)
            .map(|i| ((i * 29) % 53) as f64 / 53.0)
            .collect();
        let kernel = gaussian_kernel(40.0, 4.0);
        let radius = (kernel.len() / 2) as isize;
        assert!(radius as usize > h);
        for border in [Border::Reflect, Border::Nearest, Border::Reflect101] {
            let folded = correlate_rows(&data, h, &kernel, border);
            for y in 0..h {
                for x in 0..row_len {
                    let direct: f64 = kernel
                        .iter()
                        .enumerate()
                        .map(|(k, &weight)| {
                            let s = border.index(y as isize + k as isize - radius, h);
                            weight * data[s * row_len + x]
                        })
                        .sum();
                    let got = folded[y * row_len + x];
                    assert!(
                        (got - direct).abs() < 1e-12,
                        "{border:?} ({y}, {x}): {got} vs {direct}"
                    );
                }
            }
        }
    }

    /// scipy's symmetric sum for one output, written out: `x₀·w₀`, then
    /// `(x_{−d} + x_{+d})·w_d` for d from the radius down to 1, reading `line(i)` for tap i.
    fn scipy_symmetric_sum(kernel: &[f64], at: isize, line: impl Fn(isize) -> f64) -> f64 {
        let radius = (kernel.len() / 2) as isize;
        let center = &kernel[radius as usize..];
        let mut sum = line(at) * center[0];
        for d in (1..=radius).rev() {
            sum += (line(at - d) + line(at + d)) * center[d as usize];
        }
        sum
    }

    /// Both blocked passes give scipy's sums bit for bit, on sizes that leave a partial block
    /// (the real images are whole blocks) and with one and three channels.
    #[test]
    fn blocked_passes_equal_scipys_sum_order() {
        for (h, w, c, sigma) in [(37, 23, 3, 2.0), (45, 50, 1, 3.0), (9, 70, 3, 0.7)] {
            let data: Vec<f64> = (0..h * w * c)
                .map(|i| ((i * 29) % 53) as f64 / 53.0)
                .collect();
            let kernel = gaussian_kernel(sigma, 4.0);
            for border in [Border::Reflect, Border::Nearest, Border::Reflect101] {
                let rows = correlate_rows(&data, h, &kernel, border);
                let columns = correlate_columns(&data, [h, w, c], &kernel, border);
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            let i = (y * w + x) * c + ch;
                            let along_h = scipy_symmetric_sum(&kernel, y as isize, |t| {
                                data[(border.index(t, h) * w + x) * c + ch]
                            });
                            let along_w = scipy_symmetric_sum(&kernel, x as isize, |t| {
                                data[(y * w + border.index(t, w)) * c + ch]
                            });
                            assert_eq!(rows[i].to_bits(), along_h.to_bits(), "{border:?} rows {i}");
                            assert_eq!(
                                columns[i].to_bits(),
                                along_w.to_bits(),
                                "{border:?} columns {i}"
                            );
                        }
                    }
                }
            }
        }
    }
}
