//! JPEG compression as a lossy transform, without writing a file.
//!
//! The reference saves through PIL (libjpeg-turbo: 4:2:0, Annex K tables scaled by quality, islow
//! DCT) and reads the file back (islow IDCT, fancy upsampling). The entropy coder between the
//! two is lossless, so the round trip is fixed by the integer arithmetic around it: colour
//! conversion, 2×2 chroma averaging, forward DCT, quantisation, dequantisation, inverse DCT,
//! triangular chroma upsampling and the inverse colour conversion. This module reproduces each
//! of those steps bit for bit, edge padding included; the tests compare it with libjpeg itself.
//!
//! The block transforms run on eight horizontally adjacent blocks at once, one block per lane,
//! so that both 1-D passes are lane-wise loops that compile to SIMD without transposing a block;
//! `multiversion` picks AVX2 or AVX-512 at run time.

use multiversion::multiversion;

const LUMA_BASE: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_BASE: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// `decode(encode(rgb))` for interleaved RGB bytes, equal to libjpeg-turbo's round trip at
/// `quality` with its defaults (what PIL's `save(..., 'JPEG', quality=q)` then `open` gives).
pub fn round_trip(rgb: &[u8], width: usize, height: usize, quality: u8) -> Vec<u8> {
    assert_eq!(rgb.len(), width * height * 3, "RGB buffer size");
    if width == 0 || height == 0 {
        return rgb.to_vec();
    }
    let geometry = Geometry::new(width, height);
    let [mut luma, mut cb, mut cr] = forward_colour(rgb, &geometry);
    let luma_table = Quantiser::new(&quant_table(&LUMA_BASE, quality));
    let chroma_table = Quantiser::new(&quant_table(&CHROMA_BASE, quality));
    compress_plane(&mut luma, &luma_table);
    compress_plane(&mut cb, &chroma_table);
    compress_plane(&mut cr, &chroma_table);
    let (cb, cr) = (upsample(&cb, &geometry), upsample(&cr, &geometry));
    inverse_colour(&luma, &cb, &cr, &geometry)
}

/// libjpeg's quality scaling (`jpeg_set_quality` without forcing baseline tables).
fn quant_table(base: &[u16; 64], quality: u8) -> [u16; 64] {
    let q = i64::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    base.map(|b| ((i64::from(b) * scale + 50) / 100).clamp(1, 32767) as u16)
}

/// Sizes of the image and of its padded component planes.
struct Geometry {
    width: usize,
    height: usize,
    /// Chroma samples actually covering the image: ⌈width/2⌉ × ⌈height/2⌉.
    chroma_width: usize,
    chroma_height: usize,
}

impl Geometry {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            chroma_width: width.div_ceil(2),
            chroma_height: height.div_ceil(2),
        }
    }
}

/// One component, padded to whole 8×8 blocks.
struct Plane {
    width: usize,
    height: usize,
    samples: Vec<u8>,
}

impl Plane {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width: width.next_multiple_of(8),
            height: height.next_multiple_of(8),
            samples: vec![0; width.next_multiple_of(8) * height.next_multiple_of(8)],
        }
    }

    fn row(&self, y: usize) -> &[u8] {
        &self.samples[y * self.width..(y + 1) * self.width]
    }
}

/// FIX(x) of libjpeg's colour converters: x in 16-bit fixed point, rounded.
const fn fix16(x: f64) -> i32 {
    (x * 65536.0 + 0.5) as i32
}

/// RGB → Y, Cb, Cr planes with libjpeg's edge handling: the image is extended by repeating its
/// last column and row; chroma is the 2×2 mean with the alternating 1, 2 rounding bias, and
/// chroma rows below ⌈height/2⌉ repeat the last computed chroma row.
fn forward_colour(rgb: &[u8], geometry: &Geometry) -> [Plane; 3] {
    let (w, h) = (geometry.width, geometry.height);
    let mut luma = Plane::new(w, h);
    let mut cb = Plane::new(geometry.chroma_width, geometry.chroma_height);
    let mut cr = Plane::new(geometry.chroma_width, geometry.chroma_height);
    // Full-resolution rows of Y, Cb, Cr over the columns the chroma averaging reads.
    let padded_width = 2 * cb.width;
    let mut rows: [[Vec<u8>; 2]; 3] =
        std::array::from_fn(|_| [vec![0; padded_width], vec![0; padded_width]]);
    for pair in 0..geometry.chroma_height {
        for half in 0..2 {
            let y = (2 * pair + half).min(h - 1);
            let [ry, rb, rr] = &mut rows;
            convert_row(
                &rgb[y * w * 3..(y + 1) * w * 3],
                &mut ry[half],
                &mut rb[half],
                &mut rr[half],
            );
        }
        for (half, converted) in rows[0].iter().enumerate() {
            let y = 2 * pair + half;
            if y < luma.height {
                let width = luma.width;
                luma.samples[y * width..(y + 1) * width].copy_from_slice(&converted[..width]);
            }
        }
        average_pairs(
            &rows[1],
            &mut cb.samples[pair * cb.width..(pair + 1) * cb.width],
        );
        average_pairs(
            &rows[2],
            &mut cr.samples[pair * cr.width..(pair + 1) * cr.width],
        );
    }
    repeat_last_row(&mut luma, h);
    repeat_last_row(&mut cb, geometry.chroma_height);
    repeat_last_row(&mut cr, geometry.chroma_height);
    [luma, cb, cr]
}

/// Converts one image row and repeats its last pixel across the padded width.
#[multiversion(targets = "simd")]
fn convert_row(rgb: &[u8], y: &mut [u8], cb: &mut [u8], cr: &mut [u8]) {
    const HALF: i32 = 1 << 15;
    const OFFSET: i32 = (128 << 16) + HALF - 1;
    let w = rgb.len() / 3;
    let pixels = rgb
        .chunks_exact(3)
        .zip(&mut y[..w])
        .zip(&mut cb[..w])
        .zip(&mut cr[..w]);
    for (((p, y), cb), cr) in pixels {
        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        *y = ((fix16(0.299) * r + fix16(0.587) * g + fix16(0.114) * b + HALF) >> 16) as u8;
        *cb = ((-fix16(0.16874) * r - fix16(0.33126) * g + fix16(0.5) * b + OFFSET) >> 16) as u8;
        *cr = ((fix16(0.5) * r - fix16(0.41869) * g - fix16(0.08131) * b + OFFSET) >> 16) as u8;
    }
    for row in [y, cb, cr] {
        let last = row[w - 1];
        row[w..].fill(last);
    }
}

#[multiversion(targets = "simd")]
fn average_pairs(rows: &[Vec<u8>; 2], out: &mut [u8]) {
    let (top, bottom) = (&rows[0][..2 * out.len()], &rows[1][..2 * out.len()]);
    let pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (j, (o, (t, b))) in out.iter_mut().zip(pairs).enumerate() {
        let sum = u16::from(t[0]) + u16::from(t[1]) + u16::from(b[0]) + u16::from(b[1]);
        *o = ((sum + 1 + (j as u16 & 1)) >> 2) as u8;
    }
}

fn repeat_last_row(plane: &mut Plane, filled: usize) {
    let width = plane.width;
    let last = (filled - 1) * width;
    for y in filled..plane.height {
        plane.samples.copy_within(last..last + width, y * width);
    }
}

/// libjpeg-turbo's quantiser for one table: division by `8·q` through a reciprocal, as its C
/// code does with 32-bit DCT elements (`compute_reciprocal` and `quantize` in jcdctmgr.c):
/// level = ⌊(|x| + correction) · reciprocal / 2^shift⌋ with the sign of x.
struct Quantiser {
    // One entry per coefficient, applied to the blocks of a lane group at once: 32-bit operands
    // with a 64-bit product and the sign restored arithmetically, which compiles to widening
    // vector multiplies on AVX2 too.
    reciprocal: [[u32; 8]; 8],
    correction: [[u32; 8]; 8],
    shift: [[u64; 8]; 8],
    table: [[i32; 8]; 8],
}

impl Quantiser {
    fn new(table: &[u16; 64]) -> Self {
        let mut quantiser = Self {
            reciprocal: [[0; 8]; 8],
            correction: [[0; 8]; 8],
            shift: [[0; 8]; 8],
            table: std::array::from_fn(|u| std::array::from_fn(|v| i32::from(table[u * 8 + v]))),
        };
        for (i, &q) in table.iter().enumerate() {
            let divisor = u64::from(q) << 3;
            let b = 63 - divisor.leading_zeros();
            let mut r = 32 + b;
            let mut reciprocal = (1u64 << r) / divisor;
            let remainder = (1u64 << r) % divisor;
            let mut correction = divisor / 2;
            if remainder == 0 {
                reciprocal >>= 1;
                r -= 1;
            } else if remainder <= divisor / 2 {
                correction += 1;
            } else {
                reciprocal += 1;
            }
            let (u, v) = (i / 8, i % 8);
            quantiser.reciprocal[u][v] = u32::try_from(reciprocal).expect("below 2^32");
            quantiser.correction[u][v] = correction as u32;
            quantiser.shift[u][v] = u64::from(r);
        }
        quantiser
    }

    /// Quantises DCT output and multiplies back by the table, as the decoder dequantises.
    #[inline(always)]
    fn quantise_dequantise(&self, x: &mut BlockLanes) {
        for (u, row) in x.iter_mut().enumerate() {
            for (v, lanes) in row.iter_mut().enumerate() {
                let (reciprocal, correction) = (self.reciprocal[u][v], self.correction[u][v]);
                let (shift, table) = (self.shift[u][v], self.table[u][v]);
                for x in lanes.iter_mut() {
                    let sign = *x >> 31; // 0 or −1: (x ^ sign) − sign is |x|, and back again
                    let magnitude = ((*x ^ sign) - sign) as u32 + correction;
                    let level = ((u64::from(magnitude) * u64::from(reciprocal)) >> shift) as i32;
                    *x = ((level ^ sign) - sign) * table;
                }
            }
        }
    }
}

/// Blocks transformed side by side, one per SIMD lane.
const LANES: usize = 8;

/// Eight horizontally adjacent blocks, `[row][column][block]`: both 1-D passes of the DCT are
/// then lane-wise operations, with no transposes inside a block.
type BlockLanes = [[[i32; LANES]; 8]; 8];

/// Round-trips every 8×8 block of a plane through DCT, quantisation and inverse DCT.
#[multiversion(targets = "simd")]
fn compress_plane(plane: &mut Plane, quantiser: &Quantiser) {
    let width = plane.width;
    let blocks_per_row = width / 8;
    for by in (0..plane.height).step_by(8) {
        for first in (0..blocks_per_row).step_by(LANES) {
            let blocks = (blocks_per_row - first).min(LANES);
            let origin = by * width + first * 8;
            let mut x: BlockLanes = [[[0; LANES]; 8]; 8];
            for (r, row) in x.iter_mut().enumerate() {
                let samples = &plane.samples[origin + r * width..][..blocks * 8];
                for (b, block_row) in samples.chunks_exact(8).enumerate() {
                    for (column, &sample) in row.iter_mut().zip(block_row) {
                        column[b] = i32::from(sample) - 128;
                    }
                }
            }
            forward_dct(&mut x);
            quantiser.quantise_dequantise(&mut x);
            let out = inverse_dct(&x);
            for (r, row) in out.iter().enumerate() {
                let samples = &mut plane.samples[origin + r * width..][..blocks * 8];
                for (b, block_row) in samples.chunks_exact_mut(8).enumerate() {
                    for (sample, column) in block_row.iter_mut().zip(row) {
                        *sample = column[b];
                    }
                }
            }
        }
    }
}

const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
// The islow DCT's rotation constants, FIX(c) with 13 fractional bits.
const F0_298: i32 = 2446;
const F0_390: i32 = 3196;
const F0_541: i32 = 4433;
const F0_765: i32 = 6270;
const F0_899: i32 = 7373;
const F1_175: i32 = 9633;
const F1_501: i32 = 12299;
const F1_847: i32 = 15137;
const F1_961: i32 = 16069;
const F2_053: i32 = 16819;
const F2_562: i32 = 20995;
const F3_072: i32 = 25172;

#[inline(always)]
fn descale(x: i32, n: u32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

/// The odd half of the islow butterfly, shared by both directions: from the four odd-indexed
/// inputs (x7, x5, x3, x1 for the inverse, d4..d7 for the forward) to the four rotated sums.
#[inline(always)]
fn odd_part(t: [i32; 4]) -> [i32; 4] {
    let [t0, t1, t2, t3] = t;
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * F1_175;
    let z1 = z1 * -F0_899;
    let z2 = z2 * -F2_562;
    let z3 = z3 * -F1_961 + z5;
    let z4 = z4 * -F0_390 + z5;
    [
        t0 * F0_298 + z1 + z3,
        t1 * F2_053 + z2 + z4,
        t2 * F3_072 + z2 + z3,
        t3 * F1_501 + z1 + z4,
    ]
}

/// One 1-D forward pass over eight lanes: `x[k][lane]` is input k of that lane's transform.
#[inline(always)]
fn forward_pass(x: &[[i32; 8]; 8], first: bool) -> [[i32; 8]; 8] {
    let mut out = [[0i32; 8]; 8];
    for lane in 0..8 {
        let d: [i32; 8] = std::array::from_fn(|k| x[k][lane]);
        let (tmp0, tmp7) = (d[0] + d[7], d[0] - d[7]);
        let (tmp1, tmp6) = (d[1] + d[6], d[1] - d[6]);
        let (tmp2, tmp5) = (d[2] + d[5], d[2] - d[5]);
        let (tmp3, tmp4) = (d[3] + d[4], d[3] - d[4]);
        let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
        let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
        let shift = if first {
            CONST_BITS - PASS1_BITS
        } else {
            CONST_BITS + PASS1_BITS
        };
        if first {
            out[0][lane] = (tmp10 + tmp11) << PASS1_BITS;
            out[4][lane] = (tmp10 - tmp11) << PASS1_BITS;
        } else {
            out[0][lane] = descale(tmp10 + tmp11, PASS1_BITS);
            out[4][lane] = descale(tmp10 - tmp11, PASS1_BITS);
        }
        let z1 = (tmp12 + tmp13) * F0_541;
        out[2][lane] = descale(z1 + tmp13 * F0_765, shift);
        out[6][lane] = descale(z1 - tmp12 * F1_847, shift);
        let [o7, o5, o3, o1] = odd_part([tmp4, tmp5, tmp6, tmp7]);
        out[7][lane] = descale(o7, shift);
        out[5][lane] = descale(o5, shift);
        out[3][lane] = descale(o3, shift);
        out[1][lane] = descale(o1, shift);
    }
    out
}

/// jpeg_fdct_islow: rows first, then columns; output scaled by 8, natural order `[u][v]`.
#[inline(always)]
fn forward_dct(x: &mut BlockLanes) {
    let rows_done: BlockLanes = std::array::from_fn(|r| forward_pass(&x[r], true));
    for v in 0..8 {
        let column = forward_pass(&std::array::from_fn(|r| rows_done[r][v]), false);
        for (u, coefficient) in column.into_iter().enumerate() {
            x[u][v] = coefficient;
        }
    }
}

/// One 1-D inverse pass over eight lanes; `shift` is the final descaling.
#[inline(always)]
fn inverse_pass(x: &[[i32; 8]; 8], shift: u32) -> [[i32; 8]; 8] {
    let mut out = [[0i32; 8]; 8];
    for lane in 0..8 {
        let c: [i32; 8] = std::array::from_fn(|k| x[k][lane]);
        let z1 = (c[2] + c[6]) * F0_541;
        let tmp2 = z1 - c[6] * F1_847;
        let tmp3 = z1 + c[2] * F0_765;
        let tmp0 = (c[0] + c[4]) << CONST_BITS;
        let tmp1 = (c[0] - c[4]) << CONST_BITS;
        let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
        let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
        let [o0, o1, o2, o3] = odd_part([c[7], c[5], c[3], c[1]]);
        out[0][lane] = descale(tmp10 + o3, shift);
        out[7][lane] = descale(tmp10 - o3, shift);
        out[1][lane] = descale(tmp11 + o2, shift);
        out[6][lane] = descale(tmp11 - o2, shift);
        out[2][lane] = descale(tmp12 + o1, shift);
        out[5][lane] = descale(tmp12 - o1, shift);
        out[3][lane] = descale(tmp13 + o0, shift);
        out[4][lane] = descale(tmp13 - o0, shift);
    }
    out
}

/// jpeg_idct_islow on dequantised coefficients: columns first, then rows, then libjpeg's range
/// limit (the value's low 10 bits read as signed, offset by 128, clamped to a byte).
#[inline(always)]
fn inverse_dct(coefficients: &BlockLanes) -> [[[u8; LANES]; 8]; 8] {
    let mut workspace: BlockLanes = [[[0; LANES]; 8]; 8];
    for v in 0..8 {
        let column = std::array::from_fn(|u| coefficients[u][v]);
        let column = inverse_pass(&column, CONST_BITS - PASS1_BITS);
        for (r, values) in column.into_iter().enumerate() {
            workspace[r][v] = values;
        }
    }
    let mut samples = [[[0u8; LANES]; 8]; 8];
    // Plain loops rather than `array::map`, which is not always inlined into the SIMD versions.
    for (row, out) in workspace.iter().zip(samples.iter_mut()) {
        let row = inverse_pass(row, CONST_BITS + PASS1_BITS + 3);
        for (values, out) in row.iter().zip(out.iter_mut()) {
            for (&v, o) in values.iter().zip(out.iter_mut()) {
                *o = (((v << 22) >> 22) + 128).clamp(0, 255) as u8;
            }
        }
    }
    samples
}

/// Chroma to full resolution: libjpeg's triangular (fancy) h2v2 upsampling where a row has more
/// than two samples, pixel replication otherwise. Edge rows and columns repeat.
fn upsample(plane: &Plane, geometry: &Geometry) -> Vec<u8> {
    let (w, h) = (geometry.width, geometry.height);
    let (cw, ch) = (geometry.chroma_width, geometry.chroma_height);
    let mut out = vec![0u8; w * h];
    let mut row = vec![0u8; 2 * cw];
    let mut sums = vec![0u16; cw];
    for (y, out_row) in out.chunks_exact_mut(w).enumerate() {
        let nearest = &plane.row(y / 2)[..cw];
        if cw <= 2 {
            for (pair, &v) in row.chunks_exact_mut(2).zip(nearest) {
                pair.fill(v);
            }
        } else {
            let other = if y % 2 == 0 {
                (y / 2).saturating_sub(1)
            } else {
                (y / 2 + 1).min(ch - 1)
            };
            upsample_row(nearest, &plane.row(other)[..cw], &mut sums, &mut row);
        }
        out_row.copy_from_slice(&row[..w]);
    }
    out
}

/// One output row from its nearest and next-nearest chroma rows (9/16, 3/16, 3/16, 1/16 with
/// libjpeg's alternating 8 / 7 rounding).
/// `sums` is scratch space of the row's length.
#[multiversion(targets = "simd")]
fn upsample_row(nearest: &[u8], other: &[u8], sums: &mut [u16], out: &mut [u8]) {
    let cw = nearest.len();
    for ((sum, &a), &b) in sums.iter_mut().zip(nearest).zip(other) {
        *sum = 3 * u16::from(a) + u16::from(b);
    }
    out[0] = ((4 * sums[0] + 8) >> 4) as u8;
    out[2 * cw - 1] = ((4 * sums[cw - 1] + 7) >> 4) as u8;
    // Output 2j+1 blends sums j and j+1; output 2j+2 blends j+1 and j.
    let pairs = out[1..2 * cw - 1].chunks_exact_mut(2);
    for ((pair, &this), &next) in pairs.zip(&sums[..cw - 1]).zip(&sums[1..]) {
        pair[0] = ((3 * this + next + 7) >> 4) as u8;
        pair[1] = ((3 * next + this + 8) >> 4) as u8;
    }
}

/// YCbCr → RGB with libjpeg's rounded fixed-point tables and clamping.
fn inverse_colour(luma: &Plane, cb: &[u8], cr: &[u8], geometry: &Geometry) -> Vec<u8> {
    let (w, h) = (geometry.width, geometry.height);
    let mut rgb = vec![0u8; w * h * 3];
    for (y, out) in rgb.chunks_exact_mut(3 * w).enumerate() {
        let rows = y * w..(y + 1) * w;
        inverse_colour_row(&luma.row(y)[..w], &cb[rows.clone()], &cr[rows], out);
    }
    rgb
}

#[multiversion(targets = "simd")]
fn inverse_colour_row(luma: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    const HALF: i32 = 1 << 15;
    let pixels = out.chunks_exact_mut(3).zip(luma).zip(cb).zip(cr);
    for (((p, &l), &b), &r) in pixels {
        let (l, b, r) = (i32::from(l), i32::from(b) - 128, i32::from(r) - 128);
        let red = l + ((fix16(1.402) * r + HALF) >> 16);
        let green = l + ((-fix16(0.34414) * b + HALF - fix16(0.71414) * r) >> 16);
        let blue = l + ((fix16(1.772) * b + HALF) >> 16);
        p[0] = red.clamp(0, 255) as u8;
        p[1] = green.clamp(0, 255) as u8;
        p[2] = blue.clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libjpeg_round_trip(rgb: &[u8], w: usize, h: usize, quality: u8) -> Vec<u8> {
        let image = crate::RgbImage::new(w, h, rgb.to_vec()).unwrap();
        let bytes = crate::encode_jpeg(&image, quality).unwrap();
        crate::decode_jpeg(&bytes).unwrap().as_bytes().to_vec()
    }

    /// Deterministic pseudo-random bytes (splitmix64), extremes included.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    #[test]
    fn quality_scaling_matches_libjpeg() {
        // quality 50 is the base table; 7 scales by 714 % and leaves baseline range.
        assert_eq!(quant_table(&LUMA_BASE, 50), LUMA_BASE);
        assert_eq!(quant_table(&CHROMA_BASE, 7)[63], 707);
        assert_eq!(quant_table(&LUMA_BASE, 100), [1; 64]);
    }

    #[test]
    fn noise_and_flat_images_of_odd_sizes_match_libjpeg() {
        let sizes = [
            (1, 1),
            (2, 3),
            (3, 2),
            (4, 4),
            (5, 7),
            (6, 1),
            (9, 17),
            (17, 9),
            (33, 31),
        ];
        for (k, &(w, h)) in sizes.iter().enumerate() {
            let inputs = [
                noise(w * h * 3, k as u64),
                vec![0; w * h * 3],
                vec![255; w * h * 3],
            ];
            for rgb in inputs {
                for quality in [1, 7, 10, 15, 18, 25, 40, 50, 58, 65, 80, 95, 100] {
                    assert_eq!(
                        round_trip(&rgb, w, h, quality),
                        libjpeg_round_trip(&rgb, w, h, quality),
                        "{w}×{h} at quality {quality}"
                    );
                }
            }
        }
    }
}
