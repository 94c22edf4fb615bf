//! Winograd F(4×4, 3×3) for the stride-1, padding-1 3×3 convolutions that make up most of the
//! ResNet and SDNet work (forward passes, input gradients and FISTA's transposed convolutions).
//!
//! Each 6×6 input tile d (overlapping by two) and each 3×3 filter g are transformed to the 6×6
//! spectra V = Bᵀ d B and U = G g Gᵀ (interpolation points 0, ±1, ±2, ∞); the 36 products
//! M_ξ = U_ξ · V_ξ are GEMMs over the channels, and the 4×4 output tile is Aᵀ M A. That is 36
//! multiplications per 16 outputs instead of 144: 4× fewer than im2row + GEMM, and the input is
//! read once instead of copied nine times. The transforms' constants (up to 8, down to 1/24)
//! cost a few ulps more rounding than a direct sum; the tests bound it against the direct kernel.

use std::cell::Cell;
use std::mem::MaybeUninit;

use multiversion::multiversion;
use rayon::prelude::*;

use gemm::Parallelism;

use super::cpu::{matmul, ConvGeometry, Strides};
use super::transpose::{to_channel_first, to_channel_last};

/// Output tile side.
const TILE: usize = 4;
/// Input tile side: the output tile plus the filter's reach.
const ALPHA: usize = TILE + 2;
/// Positions of a tile spectrum.
const SPECTRUM: usize = ALPHA * ALPHA;

/// Whether `conv2d` takes this path: 3×3, stride 1, padding 1, and enough input channels for the
/// transforms to pay for themselves.
pub fn applies(g: &ConvGeometry) -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
        && g.kh == 3
        && g.kw == 3
        && g.stride == 1
        && g.padding == 1
        && g.c_in >= 8
}

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the Winograd path on or off for the whole process (on by default). Off, every
/// convolution takes im2row + GEMM: the direct computation the Winograd results are checked
/// against.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// Tiles per image: (rows, columns) of output tiles, the last ones cut at other sizes.
fn tile_grid(g: &ConvGeometry) -> (usize, usize) {
    (g.h.div_ceil(TILE), g.w.div_ceil(TILE))
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
    let per_chunk = images_per_chunk(&g, tiles);
    let len = g.batch * image_out;
    // Not zero-filled first: that alone cost 3 % of a ResNet-20 attack.
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(per_chunk * image_out)
        .zip(x.par_chunks(per_chunk * image_in))
        .for_each(|(dst, images)| convolve_chunk(images, &spectra, bias, (&g, tiles), dst));
    // SAFETY: `to_channel_first` has written every element: each image's c_out planes, every
    // row y < h and every column x < w of each.
    unsafe { out.set_len(len) };
    out
}

/// Images per chunk: about [`COLUMNS_PER_CHUNK`] tiles. Where the filters' spectra are small,
/// also at least one chunk per thread, so that each thread runs whole chunks and reads back the
/// spectra it wrote itself; large spectra are better packed once per chunk for all threads (the
/// phases inside a chunk are parallel, for the batches with fewer chunks than threads).
fn images_per_chunk(g: &ConvGeometry, tiles: usize) -> usize {
    let by_columns = COLUMNS_PER_CHUNK.div_ceil(tiles);
    let small_filters = SPECTRUM * g.c_in * g.c_out <= SMALL_FILTER_SPECTRA;
    let by_threads = if small_filters {
        g.batch.div_ceil(rayon::current_num_threads())
    } else {
        g.batch
    };
    by_columns.min(by_threads).max(1)
}

/// Filter spectra (values) up to which each thread packs its own: 64 → 64 channels.
const SMALL_FILTER_SPECTRA: usize = SPECTRUM * 64 * 64;

/// The convolution of the images of one chunk into `dst`, in three phases: input transforms
/// (over images), the 36 GEMMs (over ξ, each with every tile of the chunk as its columns, so
/// that each U_ξ is packed once per chunk even where a feature map is a single tile), output
/// transforms (over images).
fn convolve_chunk(
    images: &[f32],
    spectra: &[f32],
    bias: Option<&[f32]>,
    (g, tiles): (&ConvGeometry, usize),
    dst: &mut [MaybeUninit<f32>],
) {
    let image_out = g.c_out * g.h * g.w;
    let width = images.len() / (g.c_in * g.h * g.w) * tiles;
    // Reused across the chunks (and calls) on this thread; fully written (transforms, GEMMs)
    // before they are read.
    let mut inputs = SPECTRA_IN.take();
    let mut products = SPECTRA_OUT.take();
    inputs.resize(SPECTRUM * width * g.c_in, 0.0);
    products.resize(SPECTRUM * width * g.c_out, 0.0);
    transform_inputs(images, g, &mut inputs, width);
    products
        .par_chunks_mut(width * g.c_out)
        .enumerate()
        .for_each(|(xi, product)| {
            spectrum_product(
                product,
                &spectra[xi * g.c_in..],
                &inputs[xi * width * g.c_in..(xi + 1) * width * g.c_in],
                (g.c_out, g.c_in, width),
            );
        });
    dst.par_chunks_mut(image_out)
        .enumerate()
        .for_each_init(Vec::new, |padded, (i, image)| {
            transform_output(&products, g, width, i * tiles, padded);
            unpad_channel_first(padded, g, bias, image);
        });
    SPECTRA_IN.set(inputs);
    SPECTRA_OUT.set(products);
}

/// Tiles (GEMM columns) per chunk: wide enough for efficient GEMMs, small enough that a chunk's
/// spectra stay near the caches.
const COLUMNS_PER_CHUNK: usize = 512;

thread_local! {
    /// V_ξ [width][c_in] for ξ = 0 … 35 (taken while in use, so a nested call gets its own).
    static SPECTRA_IN: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// M_ξ [width][c_out] for ξ = 0 … 35.
    static SPECTRA_OUT: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// V = Bᵀ d B of every tile of every image into `inputs` ([ξ][width][c_in]), images in parallel.
fn transform_inputs(images: &[f32], g: &ConvGeometry, inputs: &mut [f32], width: usize) {
    let image_in = g.c_in * g.h * g.w;
    per_image(
        images,
        image_in,
        inputs,
        width,
        g.c_in,
        |image, padded, share| {
            pad_channel_last(image, g, padded);
            transform_input(padded, g, share);
        },
    );
}

/// Runs `transform` on each image of `images` with its share of `spectra` ([ξ][width][channels]:
/// one slice per ξ) and a scratch buffer, images in parallel.
fn per_image(
    images: &[f32],
    image_len: usize,
    spectra: &mut [f32],
    width: usize,
    channels: usize,
    transform: impl Fn(&[f32], &mut Vec<f32>, &mut [&mut [f32]]) + Sync,
) {
    let count = images.len() / image_len;
    let share_len = width / count * channels;
    let mut shares: Vec<Vec<&mut [f32]>> =
        (0..count).map(|_| Vec::with_capacity(SPECTRUM)).collect();
    for block in spectra.chunks_exact_mut(width * channels) {
        for (share, part) in shares.iter_mut().zip(block.chunks_exact_mut(share_len)) {
            share.push(part);
        }
    }
    shares
        .into_par_iter()
        .zip(images.par_chunks(image_len))
        .for_each_init(Vec::new, |padded, (mut share, image)| {
            transform(image, padded, &mut share)
        });
}

/// M_ξ [width][c_out] = (U_ξ [c_out][c_in] · V_ξᵀ), stored transposed: V_ξ and M_ξ are
/// channel-last, so both are column-major operands of the GEMM; U_ξ's rows are `SPECTRUM · k`
/// apart (see [`transform_weights`]).
fn spectrum_product(dst: &mut [f32], lhs: &[f32], rhs: &[f32], (m, k, n): (usize, usize, usize)) {
    matmul(
        (dst, Strides::col_major(m)),
        false,
        (
            lhs,
            Strides {
                col: 1,
                row: (SPECTRUM * k) as isize,
            },
        ),
        (rhs, Strides::col_major(k)),
        (m, k, n),
        Parallelism::None,
    );
}

/// One NCHW image → [4·rows + 2][4·cols + 2][c_in], one zero row/column before the image (the
/// convolution's padding) and zeros after it up to the last tile. Every element is written once.
fn pad_channel_last(image: &[f32], g: &ConvGeometry, padded: &mut Vec<f32>) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_in;
    let line = (TILE * cols + 2) * c;
    padded.resize((TILE * rows + 2) * line, 0.0);
    padded[..line].fill(0.0);
    padded[(g.h + 1) * line..].fill(0.0);
    for y in 0..g.h {
        let row = &mut padded[(y + 1) * line..(y + 2) * line];
        row[..c].fill(0.0);
        row[(g.w + 1) * c..].fill(0.0);
        to_channel_last(image, y * g.w, g.w, g.h * g.w, &mut row[c..(g.w + 1) * c]);
    }
}

/// [4·rows][4·cols][c_out] (channel-last, tile-padded) → NCHW, cut to h × w, plus the bias.
fn unpad_channel_first(
    padded: &[f32],
    g: &ConvGeometry,
    bias: Option<&[f32]>,
    image: &mut [MaybeUninit<f32>],
) {
    let (_, cols) = tile_grid(g);
    let line = TILE * cols * g.c_out;
    let plane = g.h * g.w;
    for y in 0..g.h {
        let pixels = &padded[y * line..y * line + g.w * g.c_out];
        to_channel_first(pixels, bias, image, y * g.w, g.w, plane);
    }
}

/// U = G g Gᵀ for every (c_out, c_in) filter, laid out [c_out][ξ][c_in]: for each ξ a
/// c_out × c_in GEMM operand with row stride `SPECTRUM · c_in`. Output channels in parallel.
fn transform_weights(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut spectra = vec![0f32; c_out * SPECTRUM * c_in];
    spectra
        .par_chunks_mut(SPECTRUM * c_in)
        .zip(weight.par_chunks(9 * c_in))
        .for_each(|(row, filters)| transform_filter_row(filters, row));
    spectra
}

/// One output channel's c_in filters → its [ξ][c_in] spectra, `LANES` filters at a time.
#[multiversion(targets = "simd")]
fn transform_filter_row(filters: &[f32], spectra: &mut [f32]) {
    let c_in = filters.len() / 9;
    for start in (0..c_in).step_by(LANES) {
        let len = LANES.min(c_in - start);
        let mut taps = [[0f32; LANES]; 9];
        for (l, filter) in filters[9 * start..9 * (start + len)]
            .chunks_exact(9)
            .enumerate()
        {
            for (t, tap) in filter.iter().enumerate() {
                taps[t][l] = *tap;
            }
        }
        let mut lifted = [[0f32; LANES]; SPECTRUM];
        for l in 0..LANES {
            // G g on each column, then on each row of the result.
            let mut gg = [[0f32; 3]; ALPHA];
            for c in 0..3 {
                let column = lift_filter([taps[c][l], taps[3 + c][l], taps[6 + c][l]]);
                for (r, value) in column.into_iter().enumerate() {
                    gg[r][c] = value;
                }
            }
            for (r, row) in gg.iter().enumerate() {
                for (c, value) in lift_filter(*row).into_iter().enumerate() {
                    lifted[r * ALPHA + c][l] = value;
                }
            }
        }
        for (xi, values) in lifted.iter().enumerate() {
            spectra[xi * c_in + start..xi * c_in + start + len].copy_from_slice(&values[..len]);
        }
    }
}

/// G applied to one filter row or column: its values at 0, ±1, ±2 (scaled) and ∞.
#[inline]
fn lift_filter([a, b, c]: [f32; 3]) -> [f32; ALPHA] {
    let (outer, inner) = (a + c, b);
    const SIXTH: f32 = 1.0 / 6.0;
    const TWENTY_FOURTH: f32 = 1.0 / 24.0;
    [
        0.25 * a,
        -SIXTH * (outer + inner),
        -SIXTH * (outer - inner),
        TWENTY_FOURTH * (a + 2.0 * b + 4.0 * c),
        TWENTY_FOURTH * (a - 2.0 * b + 4.0 * c),
        c,
    ]
}

/// Bᵀ applied to six values.
#[inline(always)]
fn lift([d0, d1, d2, d3, d4, d5]: [f32; ALPHA]) -> [f32; ALPHA] {
    let (sum12, diff12) = (d1 + d2, d1 - d2);
    let (sum34, diff34) = (d3 + d4, d4 - d3);
    let (d4_minus_d2, d3_minus_d1) = (d4 - d2, d3 - d1);
    [
        4.0 * d0 - 5.0 * d2 + d4,
        sum34 - 4.0 * sum12,
        diff34 + 4.0 * diff12,
        d4_minus_d2 + 2.0 * d3_minus_d1,
        d4_minus_d2 - 2.0 * d3_minus_d1,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// Writes V = Bᵀ d B of every tile of one padded channel-last image into its share of the
/// spectra (one slice per ξ, [tile][c_in], row-major over the tile grid).
fn transform_input(padded: &[f32], g: &ConvGeometry, spectra: &mut [&mut [f32]]) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_in;
    let row_stride = (TILE * cols + 2) * c;
    let mut blocks = LaneBlocks::new();
    for ty in 0..rows {
        for tx in 0..cols {
            let corner = TILE * (ty * row_stride + tx * c);
            let d: [&[f32]; SPECTRUM] = std::array::from_fn(|q| {
                let at = corner + (q / ALPHA) * row_stride + (q % ALPHA) * c;
                &padded[at..at + c]
            });
            let at = (ty * cols + tx) * c;
            let mut outputs = spectra.iter_mut();
            let v: [&mut [f32]; SPECTRUM] =
                std::array::from_fn(|_| &mut outputs.next().unwrap()[at..at + c]);
            lift_tile(d, v, &mut blocks);
        }
    }
}

/// V = Bᵀ d B for one tile, elementwise over the channels: d and v indexed row-major.
#[multiversion(targets = "simd")]
fn lift_tile(
    d: [&[f32]; SPECTRUM],
    v: [&mut [f32]; SPECTRUM],
    blocks: &mut LaneBlocks<SPECTRUM, SPECTRUM>,
) {
    over_lanes(d, v, blocks, |d, v| {
        for l in 0..LANES {
            let mut columns = [[0f32; ALPHA]; ALPHA];
            for x in 0..ALPHA {
                let lifted = lift(std::array::from_fn(|r| d[ALPHA * r + x][l]));
                for i in 0..ALPHA {
                    columns[i][x] = lifted[i];
                }
            }
            for (i, row) in columns.iter().enumerate() {
                for (j, value) in lift(*row).into_iter().enumerate() {
                    v[ALPHA * i + j][l] = value;
                }
            }
        }
    });
}

/// Channels per block of the tile kernels: fixed-size arrays let them compile to vector code.
const LANES: usize = 16;

/// The fixed-size blocks [`over_lanes`] works in, made once per image and reused for each of its
/// tiles: zeroing them for every tile cost as much as the transform of a 16-channel tile.
struct LaneBlocks<const IN: usize, const OUT: usize> {
    src: [[f32; LANES]; IN],
    dst: [[f32; LANES]; OUT],
}

impl<const IN: usize, const OUT: usize> LaneBlocks<IN, OUT> {
    fn new() -> Self {
        Self {
            src: [[0.0; LANES]; IN],
            dst: [[0.0; LANES]; OUT],
        }
    }
}

/// Runs `kernel` over blocks of `LANES` channels copied out of `inputs` into fixed-size arrays,
/// writing its results back to `outputs`. Past the end of the last block the lanes hold earlier
/// values; their results are not written back.
#[inline(always)]
fn over_lanes<const IN: usize, const OUT: usize>(
    inputs: [&[f32]; IN],
    mut outputs: [&mut [f32]; OUT],
    blocks: &mut LaneBlocks<IN, OUT>,
    kernel: impl Fn(&[[f32; LANES]; IN], &mut [[f32; LANES]; OUT]),
) {
    let n = inputs[0].len();
    let LaneBlocks { src, dst } = blocks;
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
        kernel(src, dst);
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

/// Aᵀ applied to six values.
#[inline(always)]
fn project([m0, m1, m2, m3, m4, m5]: [f32; ALPHA]) -> [f32; TILE] {
    let (sum12, diff12) = (m1 + m2, m1 - m2);
    let (sum34, diff34) = (m3 + m4, m3 - m4);
    [
        m0 + sum12 + sum34,
        diff12 + 2.0 * diff34,
        sum12 + 4.0 * sum34,
        diff12 + 8.0 * diff34 + m5,
    ]
}

/// Y = Aᵀ M A of every tile of one image into `padded` ([4·rows][4·cols][c_out]).
fn transform_output(
    products: &[f32],
    g: &ConvGeometry,
    width: usize,
    column: usize,
    padded: &mut Vec<f32>,
) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_out;
    let row_stride = TILE * cols * c;
    // Every element is written below (the tiles cover the padded grid).
    padded.resize(TILE * rows * row_stride, 0.0);
    let mut blocks = LaneBlocks::new();
    for ty in 0..rows {
        for tx in 0..cols {
            let at = (column + ty * cols + tx) * c;
            let m: [&[f32]; SPECTRUM] = std::array::from_fn(|xi| {
                let from = xi * width * c + at;
                &products[from..from + c]
            });
            let corner = TILE * (ty * row_stride + tx * c);
            let block = &mut padded[corner..corner + (TILE - 1) * row_stride + TILE * c];
            let mut pixels = block
                .chunks_mut(row_stride)
                .flat_map(|row| row[..TILE * c].chunks_exact_mut(c));
            let y = std::array::from_fn(|_| pixels.next().unwrap());
            project_tile(m, y, &mut blocks);
        }
    }
}

/// Y = Aᵀ M A for one tile, elementwise over the channels: m and y row-major.
#[multiversion(targets = "simd")]
fn project_tile(
    m: [&[f32]; SPECTRUM],
    y: [&mut [f32]; TILE * TILE],
    blocks: &mut LaneBlocks<SPECTRUM, { TILE * TILE }>,
) {
    over_lanes(m, y, blocks, |m, y| {
        for l in 0..LANES {
            let mut half = [[0f32; ALPHA]; TILE];
            for j in 0..ALPHA {
                let projected = project(std::array::from_fn(|r| m[ALPHA * r + j][l]));
                for (i, value) in projected.into_iter().enumerate() {
                    half[i][j] = value;
                }
            }
            for (i, row) in half.iter().enumerate() {
                for (j, value) in project(*row).into_iter().enumerate() {
                    y[TILE * i + j][l] = value;
                }
            }
        }
    });
}

/// Gradient of [`conv2d`] with respect to the weight, for geometries where [`applies`] holds:
/// dW = G^T S G per filter, where S_ξ = Σ over tiles of Q_ξ V_ξ, V = Bᵀ d B the input tiles of
/// the forward pass and Q = A dY Aᵀ the 4×4 output-gradient tiles lifted to 6×6 (the same
/// bilinear algorithm with the filter and the output exchanged: 36 multiplications per tile and
/// channel pair instead of 144, and the input is never copied nine times into a patch matrix).
pub fn conv2d_weight_grad(x: &[f32], dy: &[f32], g: ConvGeometry) -> Vec<f32> {
    debug_assert!(applies(&g));
    let (rows, cols) = tile_grid(&g);
    let tiles = rows * cols;
    let image_in = g.c_in * g.h * g.w;
    let image_out = g.c_out * g.h * g.w;
    let threads = rayon::current_num_threads().max(1);
    let per_chunk = COLUMNS_PER_CHUNK
        .div_ceil(tiles)
        .min(g.batch.div_ceil(threads))
        .max(1);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per_chunk * image_in)
        .zip(dy.par_chunks(per_chunk * image_out))
        .map(|(images, grads)| spectrum_sums(images, grads, &g, tiles))
        .collect();
    let mut sums = vec![0f32; SPECTRUM * g.c_out * g.c_in];
    for partial in partials {
        sums.iter_mut().zip(partial).for_each(|(s, p)| *s += p);
    }
    let pairs = g.c_out * g.c_in;
    let mut weight_grad = vec![0f32; pairs * 9];
    weight_grad
        .par_chunks_mut(9 * g.c_in)
        .enumerate()
        .for_each(|(co, filters)| {
            for (ci, filter) in filters.chunks_exact_mut(9).enumerate() {
                let s: [f32; SPECTRUM] =
                    std::array::from_fn(|xi| sums[xi * pairs + co * g.c_in + ci]);
                filter.copy_from_slice(&contract_spectrum(&s));
            }
        });
    weight_grad
}

/// S_ξ [c_out][c_in] = Σ over the tiles of a chunk of images of Q_ξ[tile]ᵀ V_ξ[tile].
fn spectrum_sums(images: &[f32], grads: &[f32], g: &ConvGeometry, tiles: usize) -> Vec<f32> {
    let count = images.len() / (g.c_in * g.h * g.w);
    let width = count * tiles;
    let mut inputs = SPECTRA_IN.take();
    let mut lifted = SPECTRA_OUT.take();
    inputs.resize(SPECTRUM * width * g.c_in, 0.0);
    lifted.resize(SPECTRUM * width * g.c_out, 0.0);
    transform_inputs(images, g, &mut inputs, width);
    transform_grads(grads, g, &mut lifted, width);
    let pairs = g.c_out * g.c_in;
    let mut sums = vec![0f32; SPECTRUM * pairs];
    sums.par_chunks_mut(pairs)
        .enumerate()
        .for_each(|(xi, sum)| {
            // sum [c_out][c_in] = Q_ξ [c_out × width] · V_ξ [width × c_in]; both channel-last.
            matmul(
                (sum, Strides::row_major(g.c_in)),
                false,
                (
                    &lifted[xi * width * g.c_out..(xi + 1) * width * g.c_out],
                    Strides::col_major(g.c_out),
                ),
                (
                    &inputs[xi * width * g.c_in..(xi + 1) * width * g.c_in],
                    Strides::row_major(g.c_in),
                ),
                (g.c_out, width, g.c_in),
                Parallelism::None,
            );
        });
    SPECTRA_IN.set(inputs);
    SPECTRA_OUT.set(lifted);
    sums
}

/// Q = A dY Aᵀ of every 4×4 tile of every output-gradient image into `lifted`
/// ([ξ][width][c_out]), images in parallel.
fn transform_grads(grads: &[f32], g: &ConvGeometry, lifted: &mut [f32], width: usize) {
    let image_out = g.c_out * g.h * g.w;
    per_image(
        grads,
        image_out,
        lifted,
        width,
        g.c_out,
        |image, padded, share| {
            pad_grad_channel_last(image, g, padded);
            transform_grad(padded, g, share);
        },
    );
}

/// One NCHW output-gradient image → [4·rows][4·cols][c_out], zeros past the image up to the
/// last tile (outputs that do not exist have no gradient).
fn pad_grad_channel_last(image: &[f32], g: &ConvGeometry, padded: &mut Vec<f32>) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_out;
    let line = TILE * cols * c;
    padded.resize(TILE * rows * line, 0.0);
    padded[g.h * line..].fill(0.0);
    for y in 0..g.h {
        let row = &mut padded[y * line..(y + 1) * line];
        row[g.w * c..].fill(0.0);
        to_channel_last(image, y * g.w, g.w, g.h * g.w, &mut row[..g.w * c]);
    }
}

/// Writes Q = A dY Aᵀ of every tile of one padded channel-last gradient image into its share of
/// the lifted spectra (one slice per ξ, [tile][c_out]).
fn transform_grad(padded: &[f32], g: &ConvGeometry, spectra: &mut [&mut [f32]]) {
    let (rows, cols) = tile_grid(g);
    let c = g.c_out;
    let row_stride = TILE * cols * c;
    let mut blocks = LaneBlocks::new();
    for ty in 0..rows {
        for tx in 0..cols {
            let corner = TILE * (ty * row_stride + tx * c);
            let y: [&[f32]; TILE * TILE] = std::array::from_fn(|q| {
                let at = corner + (q / TILE) * row_stride + (q % TILE) * c;
                &padded[at..at + c]
            });
            let at = (ty * cols + tx) * c;
            let mut outputs = spectra.iter_mut();
            let q: [&mut [f32]; SPECTRUM] =
                std::array::from_fn(|_| &mut outputs.next().unwrap()[at..at + c]);
            expand_tile(y, q, &mut blocks);
        }
    }
}

/// A applied to four values (the transpose of [`project`]).
#[inline(always)]
fn expand([y0, y1, y2, y3]: [f32; TILE]) -> [f32; ALPHA] {
    let (even, odd) = (y0 + y2, y1 + y3);
    let (even4, odd4) = (y0 + 4.0 * y2, 2.0 * y1 + 8.0 * y3);
    [y0, even + odd, even - odd, even4 + odd4, even4 - odd4, y3]
}

/// Q = A dY Aᵀ for one tile, elementwise over the channels: y and q row-major.
#[multiversion(targets = "simd")]
fn expand_tile(
    y: [&[f32]; TILE * TILE],
    q: [&mut [f32]; SPECTRUM],
    blocks: &mut LaneBlocks<{ TILE * TILE }, SPECTRUM>,
) {
    over_lanes(y, q, blocks, |y, q| {
        for l in 0..LANES {
            let mut columns = [[0f32; TILE]; ALPHA];
            for j in 0..TILE {
                let expanded = expand(std::array::from_fn(|i| y[TILE * i + j][l]));
                for (a, value) in expanded.into_iter().enumerate() {
                    columns[a][j] = value;
                }
            }
            for (a, row) in columns.iter().enumerate() {
                for (b, value) in expand(*row).into_iter().enumerate() {
                    q[ALPHA * a + b][l] = value;
                }
            }
        }
    });
}

/// Gᵀ applied to six values (the transpose of [`lift_filter`]).
#[inline]
fn contract([s0, s1, s2, s3, s4, s5]: [f32; ALPHA]) -> [f32; 3] {
    const SIXTH: f32 = 1.0 / 6.0;
    const TWELFTH: f32 = 1.0 / 12.0;
    const TWENTY_FOURTH: f32 = 1.0 / 24.0;
    let (sum12, diff12) = (s1 + s2, s2 - s1);
    let (sum34, diff34) = (s3 + s4, s3 - s4);
    [
        0.25 * s0 - SIXTH * sum12 + TWENTY_FOURTH * sum34,
        SIXTH * diff12 + TWELFTH * diff34,
        SIXTH * (sum34 - sum12) + s5,
    ]
}

/// dW = Gᵀ S G: a 6×6 spectrum sum → one 3×3 filter gradient, row-major.
fn contract_spectrum(s: &[f32; SPECTRUM]) -> [f32; 9] {
    let mut half = [[0f32; 3]; ALPHA];
    for (a, row) in s.chunks_exact(ALPHA).enumerate() {
        half[a] = contract(row.try_into().unwrap());
    }
    let mut filter = [0f32; 9];
    for l in 0..3 {
        let column = contract(std::array::from_fn(|a| half[a][l]));
        for (k, value) in column.into_iter().enumerate() {
            filter[3 * k + l] = value;
        }
    }
    filter
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
            (2, 256, 4, 4, 256, true),
            (1, 512, 7, 6, 32, false),
            // Appended, so that the cases above keep their random draws.
            (2, 16, 9, 11, 12, true),
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
            // Rounding of the transforms plus 9·c_in-term sums: up to 6.4e-6 of the largest output
            // on these cases, and growing like √c_in (1.3e-5 seen at 256 channels on other draws);
            // one sign flipped in the output transform fails it.
            let bound = 1e-5 * (c_in as f32 / 64.0).sqrt().max(1.0);
            assert!(
                worst <= bound * scale,
                "{g:?}: max difference {worst} (scale {scale})"
            );
        }
    }

    #[test]
    fn weight_gradient_equals_the_direct_kernel() {
        use crate::kernels::cpu::conv2d_weight_grad_direct;
        let mut rng = StdRng::seed_from_u64(11);
        // (batch, c_in, h, w, c_out): CIFAR ResNet shapes, sizes that cut the last tiles, one
        // image, more images than a chunk holds.
        for (batch, c_in, h, w, c_out) in [
            (1, 8, 1, 1, 3),
            (2, 9, 5, 7, 4),
            (3, 16, 32, 32, 16),
            (4, 32, 16, 16, 32),
            (130, 64, 8, 8, 64),
            (2, 12, 33, 31, 5),
            (1, 256, 4, 4, 128),
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
            let x = normal(&mut rng, batch * c_in * h * w);
            let dy = normal(&mut rng, batch * c_out * h * w);
            let ours = conv2d_weight_grad(&x, &dy, g);
            let direct = conv2d_weight_grad_direct(&x, &dy, g);
            assert_eq!(ours.len(), direct.len());
            let worst = ours
                .iter()
                .zip(&direct)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = direct.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            // Measured up to 1.0e-5 of the largest gradient (130 images: 8320 tiles per sum); one
            // sign flipped in Gᵀ gives 30×.
            assert!(
                worst <= 3e-5 * scale,
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
