//! Winograd F(2×2, 3×3) for the stride-1, padding-1 3×3 convolutions that make up most of the
//! ResNet and SDNet work (forward passes, input gradients and FISTA's transposed convolutions).
//!
//! Each 4×4 input tile d (overlapping by two) and each 3×3 filter g are transformed to the 4×4
//! spectra V = Bᵀ d B and U = G g Gᵀ; the sixteen products M_ξ = U_ξ · V_ξ are GEMMs over the
//! channels, and the 2×2 output tile is Aᵀ M A. That is 16 multiplications per output pair of
//! rows instead of 36: 2.25× fewer than im2row + GEMM, and the input is read once instead of
//! copied nine times. The transforms use only additions and halvings, so the rounding stays at
//! the level of a direct sum (tests/kernels.rs compares against burn's direct kernel).

use multiversion::multiversion;
use rayon::prelude::*;

use gemm::Parallelism;

use super::cpu::{images_per_chunk, inner_parallelism, matmul, ConvGeometry, Strides};

/// Positions of a 4×4 tile spectrum.
const SPECTRUM: usize = 16;

/// Whether `conv2d` takes this path: 3×3, stride 1, padding 1, and enough input channels for the
/// transforms to pay for themselves.
pub fn applies(g: &ConvGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride == 1 && g.padding == 1 && g.c_in >= 8
}

/// Tiles per image: (rows, columns) of 2×2 output tiles, the last ones cut at odd sizes.
fn tile_grid(g: &ConvGeometry) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// `conv2d(x, weight) + bias` for geometries where [`applies`] holds (output size = input size).
///
/// Inside a chunk of images the spectra are channel-last — V_ξ [tile][c_in], M_ξ [tile][c_out] —
/// so that every transform step is an elementwise pass over the channels (long, contiguous
/// vectors even where the feature maps are 4×4); the GEMM reads and writes them through strides.
pub fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: ConvGeometry) -> Vec<f32> {
    debug_assert!(applies(&g));
    let (rows, cols) = tile_grid(&g);
    let tiles = rows * cols;
    let image_in = g.c_in * g.h * g.w;
    let image_out = g.c_out * g.h * g.w;
    let spectra = transform_weights(weight, g.c_out, g.c_in);
    let per_chunk = images_per_chunk(g.batch, tiles);
    let parallelism = inner_parallelism(g.batch.div_ceil(per_chunk));
    let mut out = vec![0f32; g.batch * image_out];
    out.par_chunks_mut(per_chunk * image_out)
        .zip(x.par_chunks(per_chunk * image_in))
        .for_each_init(Scratch::default, |scratch, (dst, images)| {
            let width = images.len() / image_in * tiles;
            let Scratch {
                padded,
                inputs,
                products,
            } = scratch;
            // Fully written (transform, GEMM) before they are read.
            inputs.resize(SPECTRUM * width * g.c_in, 0.0);
            products.resize(SPECTRUM * width * g.c_out, 0.0);
            for (i, image) in images.chunks(image_in).enumerate() {
                pad_channel_last(image, &g, padded);
                transform_input(padded, &g, inputs, width, i * tiles);
            }
            for xi in 0..SPECTRUM {
                spectrum_product(
                    &mut products[xi * width * g.c_out..(xi + 1) * width * g.c_out],
                    &spectra[xi * g.c_out * g.c_in..(xi + 1) * g.c_out * g.c_in],
                    &inputs[xi * width * g.c_in..(xi + 1) * width * g.c_in],
                    (g.c_out, g.c_in, width),
                    parallelism,
                );
            }
            for (i, image) in dst.chunks_mut(image_out).enumerate() {
                transform_output(products, &g, width, i * tiles, padded);
                unpad_channel_first(padded, &g, bias, image);
            }
        });
    out
}

/// Per-thread buffers, kept across the chunks of one call.
#[derive(Default)]
struct Scratch {
    /// One image, channel-last, zero-padded to the tile grid (input, then output).
    padded: Vec<f32>,
    /// V_ξ [width][c_in] for ξ = 0 … 15.
    inputs: Vec<f32>,
    /// M_ξ [width][c_out] for ξ = 0 … 15.
    products: Vec<f32>,
}

/// M_ξ [width][c_out] = (U_ξ [c_out][c_in] · V_ξᵀ), stored transposed: V_ξ and M_ξ are
/// channel-last, so both are column-major operands of the GEMM.
fn spectrum_product(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    (m, k, n): (usize, usize, usize),
    parallelism: Parallelism,
) {
    matmul(
        (dst, Strides::col_major(m)),
        false,
        (lhs, Strides::row_major(k)),
        (rhs, Strides::col_major(k)),
        (m, k, n),
        parallelism,
    );
}

/// One NCHW image → [2·rows + 2][2·cols + 2][c_in], one zero row/column before the image (the
/// convolution's padding) and zeros after it up to the last tile. Every element is written once.
fn pad_channel_last(image: &[f32], g: &ConvGeometry, padded: &mut Vec<f32>) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_in;
    let line = (2 * cols + 2) * c;
    padded.resize((2 * rows + 2) * line, 0.0);
    padded[..line].fill(0.0);
    padded[(g.h + 1) * line..].fill(0.0);
    for y in 0..g.h {
        let row = &mut padded[(y + 1) * line..(y + 2) * line];
        row[..c].fill(0.0);
        row[(g.w + 1) * c..].fill(0.0);
        to_channel_last(image, y * g.w, g.w, g.h * g.w, &mut row[c..(g.w + 1) * c]);
    }
}

/// `dst[x·C + c] = planes[c·plane + start + x]` for x < len and all C channels (a transpose, in
/// blocks of eight channels so that the stores are contiguous).
#[multiversion(targets = "simd")]
fn to_channel_last(planes: &[f32], start: usize, len: usize, plane: usize, dst: &mut [f32]) {
    let channels = dst.len() / len;
    for c0 in (0..channels).step_by(8) {
        let block = 8.min(channels - c0);
        let sources: [&[f32]; 8] = std::array::from_fn(|i| {
            let c = c0 + i.min(block - 1);
            &planes[c * plane + start..c * plane + start + len]
        });
        for (x, pixel) in dst.chunks_exact_mut(channels).enumerate() {
            for (i, source) in sources.iter().enumerate().take(block) {
                pixel[c0 + i] = source[x];
            }
        }
    }
}

/// [2·rows][2·cols][c_out] (channel-last, tile-padded) → NCHW, cut to h × w, plus the bias.
fn unpad_channel_first(padded: &[f32], g: &ConvGeometry, bias: Option<&[f32]>, image: &mut [f32]) {
    let (_, cols) = tile_grid(g);
    let line = 2 * cols * g.c_out;
    let plane = g.h * g.w;
    for y in 0..g.h {
        let pixels = &padded[y * line..y * line + g.w * g.c_out];
        to_channel_first(pixels, bias, image, y * g.w, g.w, plane);
    }
}

/// `planes[c·plane + start + x] = pixels[x·C + c] + bias[c]`: the inverse of [`to_channel_last`].
#[multiversion(targets = "simd")]
fn to_channel_first(
    pixels: &[f32],
    bias: Option<&[f32]>,
    planes: &mut [f32],
    start: usize,
    len: usize,
    plane: usize,
) {
    let channels = pixels.len() / len;
    for c in 0..channels {
        let offset = bias.map_or(0.0, |b| b[c]);
        let row = &mut planes[c * plane + start..c * plane + start + len];
        for (value, pixel) in row.iter_mut().zip(pixels.chunks_exact(channels)) {
            *value = pixel[c] + offset;
        }
    }
}

/// U = G g Gᵀ for every (c_out, c_in) filter, laid out [ξ][c_out][c_in] (one GEMM operand per ξ).
fn transform_weights(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let filters = c_out * c_in;
    let mut spectra = vec![0f32; SPECTRUM * filters];
    for (f, g) in weight.chunks_exact(9).enumerate() {
        // G g: rows g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2 (per column), then the same on columns.
        let mut gg = [[0f32; 3]; 4];
        for c in 0..3 {
            let lifted = lift_filter([g[c], g[3 + c], g[6 + c]]);
            for (r, value) in lifted.into_iter().enumerate() {
                gg[r][c] = value;
            }
        }
        for (r, row) in gg.iter().enumerate() {
            for (c, value) in lift_filter(*row).into_iter().enumerate() {
                spectra[(r * 4 + c) * filters + f] = value;
            }
        }
    }
    spectra
}

#[inline]
fn lift_filter([a, b, c]: [f32; 3]) -> [f32; 4] {
    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
}

/// Bᵀ applied to four values: d0 − d2, d1 + d2, d2 − d1, d1 − d3.
#[inline(always)]
fn lift(d0: f32, d1: f32, d2: f32, d3: f32) -> [f32; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// Writes V = Bᵀ d B of every tile of one padded channel-last image into `spectra`
/// ([ξ][width][c_in], this image's tiles from tile `column`, row-major over the tile grid).
fn transform_input(
    padded: &[f32],
    g: &ConvGeometry,
    spectra: &mut [f32],
    width: usize,
    column: usize,
) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_in;
    let row_stride = (2 * cols + 2) * c;
    for ty in 0..rows {
        for tx in 0..cols {
            let corner = 2 * ty * row_stride + 2 * tx * c;
            let d: [&[f32]; SPECTRUM] = std::array::from_fn(|q| {
                let at = corner + (q / 4) * row_stride + (q % 4) * c;
                &padded[at..at + c]
            });
            let at = (column + ty * cols + tx) * c;
            let mut blocks = spectra.chunks_exact_mut(width * c);
            let v: [&mut [f32]; SPECTRUM] =
                std::array::from_fn(|_| &mut blocks.next().unwrap()[at..at + c]);
            lift_tile(d, v);
        }
    }
}

/// V = Bᵀ d B for one tile, elementwise over the channels: d and v indexed row-major (4 × 4).
#[multiversion(targets = "simd")]
fn lift_tile(d: [&[f32]; SPECTRUM], v: [&mut [f32]; SPECTRUM]) {
    over_lanes(d, v, |d, v| {
        for l in 0..LANES {
            let mut columns = [[0f32; 4]; 4];
            for x in 0..4 {
                let lifted = lift(d[x][l], d[4 + x][l], d[8 + x][l], d[12 + x][l]);
                for i in 0..4 {
                    columns[i][x] = lifted[i];
                }
            }
            for (i, row) in columns.iter().enumerate() {
                let lifted = lift(row[0], row[1], row[2], row[3]);
                for j in 0..4 {
                    v[4 * i + j][l] = lifted[j];
                }
            }
        }
    });
}

/// Channels per block of the tile kernels: fixed-size arrays let them compile to vector code.
const LANES: usize = 16;

/// Runs `kernel` over blocks of `LANES` channels copied out of `inputs` into fixed-size arrays,
/// writing its results back to `outputs` (the last block zero-filled past the end).
#[inline(always)]
fn over_lanes<const IN: usize, const OUT: usize>(
    inputs: [&[f32]; IN],
    mut outputs: [&mut [f32]; OUT],
    kernel: impl Fn(&[[f32; LANES]; IN], &mut [[f32; LANES]; OUT]),
) {
    let n = inputs[0].len();
    let mut src = [[0f32; LANES]; IN];
    let mut dst = [[0f32; LANES]; OUT];
    for start in (0..n).step_by(LANES) {
        let len = LANES.min(n - start);
        if len == LANES {
            // Fixed-size copies: register moves, not calls to memmove.
            for (block, input) in src.iter_mut().zip(&inputs) {
                *block = input[start..start + LANES].try_into().unwrap();
            }
        } else {
            for (block, input) in src.iter_mut().zip(&inputs) {
                block[..len].copy_from_slice(&input[start..start + len]);
            }
        }
        kernel(&src, &mut dst);
        for (block, output) in dst.iter().zip(outputs.iter_mut()) {
            if len == LANES {
                let target: &mut [f32; LANES] =
                    (&mut output[start..start + LANES]).try_into().unwrap();
                *target = *block;
            } else {
                output[start..start + len].copy_from_slice(&block[..len]);
            }
        }
    }
}

/// Aᵀ applied to four values: m0 + m1 + m2, m1 − m2 − m3.
#[inline(always)]
fn project(m0: f32, m1: f32, m2: f32, m3: f32) -> [f32; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// Y = Aᵀ M A of every tile of one image into `padded` ([2·rows][2·cols][c_out]).
fn transform_output(
    products: &[f32],
    g: &ConvGeometry,
    width: usize,
    column: usize,
    padded: &mut Vec<f32>,
) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_out;
    let row_stride = 2 * cols * c;
    // Every element is written below (the tiles cover the padded grid).
    padded.resize(2 * rows * row_stride, 0.0);
    for ty in 0..rows {
        for tx in 0..cols {
            let at = (column + ty * cols + tx) * c;
            let m: [&[f32]; SPECTRUM] = std::array::from_fn(|xi| {
                let from = xi * width * c + at;
                &products[from..from + c]
            });
            let corner = 2 * ty * row_stride + 2 * tx * c;
            let (top, bottom) = padded[corner..].split_at_mut(row_stride);
            let (y00, y01) = top[..2 * c].split_at_mut(c);
            let (y10, y11) = bottom[..2 * c].split_at_mut(c);
            project_tile(m, [y00, y01, y10, y11]);
        }
    }
}

/// Y = Aᵀ M A for one tile, elementwise over the channels: m row-major 4 × 4, y row-major 2 × 2.
#[multiversion(targets = "simd")]
fn project_tile(m: [&[f32]; SPECTRUM], y: [&mut [f32]; 4]) {
    over_lanes(m, y, |m, y| {
        for l in 0..LANES {
            let mut half = [[0f32; 4]; 2];
            for j in 0..4 {
                let [a, b] = project(m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]);
                half[0][j] = a;
                half[1][j] = b;
            }
            for (r, row) in half.iter().enumerate() {
                let [a, b] = project(row[0], row[1], row[2], row[3]);
                y[2 * r][l] = a;
                y[2 * r + 1][l] = b;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu::conv2d_direct;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn normal(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn equals_the_direct_kernel_on_odd_sizes_batches_and_channel_counts() {
        let mut rng = StdRng::seed_from_u64(7);
        // (batch, c_in, h, w, c_out, bias)
        for (batch, c_in, h, w, c_out, with_bias) in [
            (1, 8, 1, 1, 3, false),
            (1, 8, 5, 7, 9, true),
            (3, 16, 8, 8, 16, false),
            (2, 9, 2, 3, 1, true),
            (5, 32, 4, 4, 64, true),
            (2, 12, 33, 31, 5, false),
            (7, 16, 32, 32, 16, true),
            (9, 64, 4, 4, 64, false),
            (100, 32, 16, 16, 32, true),
            (128, 64, 8, 8, 64, true),
        ] {
            let g = ConvGeometry {
                batch,
                c_in,
                h,
                w,
                c_out,
                kh: 3,
                kw: 3,
                stride: 1,
                padding: 1,
            };
            assert!(applies(&g));
            let x = normal(&mut rng, batch * c_in * h * w);
            let weight = normal(&mut rng, c_out * c_in * 9);
            let bias = with_bias.then(|| normal(&mut rng, c_out));
            let ours = conv2d(&x, &weight, bias.as_deref(), g);
            let direct = conv2d_direct(&x, &weight, bias.as_deref(), g);
            assert_eq!(ours.len(), direct.len());
            let worst = ours
                .iter()
                .zip(&direct)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = direct.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            // Float rounding of sums of 9·c_in products: far below 1e-5 of the largest output.
            assert!(
                worst <= 1e-5 * scale,
                "{g:?}: max difference {worst} (scale {scale})"
            );
        }
    }

    #[test]
    fn narrow_or_strided_convolutions_keep_the_direct_kernel() {
        let g = ConvGeometry {
            batch: 1,
            c_in: 16,
            h: 8,
            w: 8,
            c_out: 16,
            kh: 3,
            kw: 3,
            stride: 2,
            padding: 1,
        };
        assert!(!applies(&g));
        assert!(!applies(&ConvGeometry {
            stride: 1,
            c_in: 3,
            ..g
        }));
        assert!(!applies(&ConvGeometry {
            stride: 1,
            padding: 0,
            ..g
        }));
        assert!(applies(&ConvGeometry { stride: 1, ..g }));
    }
}
