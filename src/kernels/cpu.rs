//! Direct NCHW convolution kernels for the CPU: im2row + one GEMM per image, images in parallel.
//!
//! For the small channel counts of CIFAR networks this is several times faster than burn-flex's
//! generic im2col path (README, "Performance"), and it never changes the layout of the data.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::winograd;

/// Geometry of a 2-D convolution (square stride and padding, no dilation, one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding - self.kh) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding - self.kw) / self.stride + 1
    }
}

/// How many images share one GEMM: enough columns to keep the GEMM kernel efficient on small
/// feature maps, but enough chunks to keep every thread busy.
fn images_per_chunk(batch: usize, plane: usize) -> usize {
    const MIN_COLUMNS: usize = 512;
    let threads = rayon::current_num_threads().max(1);
    let wanted = MIN_COLUMNS.div_ceil(plane.max(1));
    wanted.min(batch.div_ceil(threads)).max(1)
}

fn inner_parallelism(chunks: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if chunks < threads {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Where the elements of a matrix operand sit in its slice: the step from one column to the
/// next and from one row to the next.
#[derive(Clone, Copy, Debug)]
pub(super) struct Strides {
    pub col: isize,
    pub row: isize,
}

impl Strides {
    /// Rows of `cols` contiguous elements.
    pub(super) fn row_major(cols: usize) -> Self {
        Strides {
            col: 1,
            row: cols as isize,
        }
    }

    /// Columns of `rows` contiguous elements (the transpose of a row-major matrix).
    pub(super) fn col_major(rows: usize) -> Self {
        Strides {
            col: rows as isize,
            row: 1,
        }
    }

    /// Elements a `rows × cols` matrix with these strides spans.
    fn extent(self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        (rows - 1) * self.row as usize + (cols - 1) * self.col as usize + 1
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, each operand laid out by its own strides.
pub(super) fn matmul(
    (dst, dst_strides): (&mut [f32], Strides),
    accumulate: bool,
    (lhs, lhs_strides): (&[f32], Strides),
    (rhs, rhs_strides): (&[f32], Strides),
    (m, k, n): (usize, usize, usize),
    parallelism: Parallelism,
) {
    assert!(
        dst.len() >= dst_strides.extent(m, n)
            && lhs.len() >= lhs_strides.extent(m, k)
            && rhs.len() >= rhs_strides.extent(k, n),
        "matmul operands smaller than their {m}×{k}·{k}×{n} extents"
    );
    // SAFETY: the assertion above keeps every element read or written inside its slice.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides.col,
            dst_strides.row,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.col,
            lhs_strides.row,
            rhs.as_ptr(),
            rhs_strides.col,
            rhs_strides.row,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `conv2d(x, weight) + bias`: x [batch, c_in, h, w], weight [c_out, c_in, kh, kw]. Stride-1
/// 3×3 convolutions with enough channels go through Winograd, the rest through im2row + GEMM.
pub fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: ConvGeometry) -> Vec<f32> {
    if winograd::applies(&g) {
        winograd::conv2d(x, weight, bias, g)
    } else {
        conv2d_direct(x, weight, bias, g)
    }
}

/// `conv2d` through im2row + GEMM, for every geometry.
pub fn conv2d_direct(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: ConvGeometry) -> Vec<f32> {
    let plane = g.out_h() * g.out_w();
    let depth = g.c_in * g.kh * g.kw;
    let image_in = g.c_in * g.h * g.w;
    let image_out = g.c_out * plane;
    let per_chunk = images_per_chunk(g.batch, plane);
    let parallelism = inner_parallelism(g.batch.div_ceil(per_chunk));
    let mut out = vec![0f32; g.batch * image_out];
    out.par_chunks_mut(per_chunk * image_out)
        .zip(x.par_chunks(per_chunk * image_in))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(rows, product), (dst, images)| {
                let count = images.len() / image_in;
                let width = count * plane;
                let pointwise = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.padding == 0;
                let rhs: &[f32] = if pointwise && count == 1 {
                    images
                } else {
                    // im2row writes every element (zeros included): no need to clear.
                    rows.resize(depth * width, 0.0);
                    for (i, image) in images.chunks(image_in).enumerate() {
                        im2row(image, g, rows, width, i * plane);
                    }
                    rows
                };
                let target: &mut [f32] = if count == 1 {
                    dst
                } else {
                    // Fully written by the GEMM (or the bias fill below).
                    product.resize(g.c_out * width, 0.0);
                    product
                };
                if let Some(b) = bias {
                    for (row, value) in target.chunks_mut(width).zip(b) {
                        row.fill(*value);
                    }
                }
                matmul(
                    (target, Strides::row_major(width)),
                    bias.is_some(),
                    (weight, Strides::row_major(depth)),
                    (rhs, Strides::row_major(width)),
                    (g.c_out, depth, width),
                    parallelism,
                );
                if count > 1 {
                    scatter_images(product, dst, g.c_out, plane, count);
                }
            },
        );
    out
}

/// [count, c, plane] (NCHW) → [c, count·plane] (images side by side), every element written.
fn gather_images(images: &[f32], dst: &mut Vec<f32>, channels: usize, plane: usize) {
    let width = images.len() / channels;
    dst.resize(channels * width, 0.0);
    for (i, image) in images.chunks(channels * plane).enumerate() {
        for (c, src) in image.chunks(plane).enumerate() {
            dst[c * width + i * plane..c * width + (i + 1) * plane].copy_from_slice(src);
        }
    }
}

/// [c, count·plane] (images side by side) → [count, c, plane] (NCHW).
fn scatter_images(product: &[f32], dst: &mut [f32], channels: usize, plane: usize, count: usize) {
    let width = count * plane;
    for (i, image) in dst.chunks_mut(channels * plane).enumerate() {
        for (c, out) in image.chunks_mut(plane).enumerate() {
            out.copy_from_slice(&product[c * width + i * plane..c * width + (i + 1) * plane]);
        }
    }
}

/// Writes the patch matrix of one image ([c_in·kh·kw] rows of `out_h·out_w` values, zero padding)
/// into `rows`, whose rows are `width` long, starting at column `column`.
fn im2row(image: &[f32], g: ConvGeometry, rows: &mut [f32], width: usize, column: usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut r = 0;
    for c in 0..g.c_in {
        let plane = &image[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut rows[r * width + column..r * width + column + oh * ow];
                r += 1;
                for y in 0..oh {
                    let iy = (y * g.stride + ky) as isize - g.padding as isize;
                    if iy < 0 || iy >= g.h as isize {
                        row[y * ow..(y + 1) * ow].fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let dst = &mut row[y * ow..(y + 1) * ow];
                    copy_shifted(src, dst, kx as isize - g.padding as isize, g.stride);
                }
            }
        }
    }
}

/// `dst[x] = src[x·stride + offset]` where in range, zero elsewhere.
#[inline]
fn copy_shifted(src: &[f32], dst: &mut [f32], offset: isize, stride: usize) {
    let n = src.len() as isize;
    if stride == 1 {
        let first = ((-offset).max(0) as usize).min(dst.len());
        let last = ((n - offset).min(dst.len() as isize)).max(first as isize) as usize;
        dst[..first].fill(0.0);
        if first < last {
            let from = (first as isize + offset) as usize;
            dst[first..last].copy_from_slice(&src[from..from + (last - first)]);
        }
        dst[last..].fill(0.0);
    } else {
        for (x, d) in dst.iter_mut().enumerate() {
            let i = (x * stride) as isize + offset;
            *d = if i >= 0 && i < n {
                src[i as usize]
            } else {
                0.0
            };
        }
    }
}

/// Geometry of a transposed convolution: z [batch, c_in, h, w] with weight [c_in, c_out, kh, kw].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransposeGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
}

impl TransposeGeometry {
    /// The stride-1 convolution over z that computes the same output.
    fn as_full_convolution(&self) -> ConvGeometry {
        ConvGeometry {
            batch: self.batch,
            c_in: self.c_in,
            h: self.h,
            w: self.w,
            c_out: self.c_out,
            kh: self.kh,
            kw: self.kw,
            stride: 1,
            padding: self.kh - 1 - self.padding,
        }
    }

    pub fn out_h(&self) -> usize {
        (self.h - 1) * self.stride + self.kh + self.output_padding - 2 * self.padding
    }
    pub fn out_w(&self) -> usize {
        (self.w - 1) * self.stride + self.kw + self.output_padding - 2 * self.padding
    }
}

/// At stride 1 a transposed convolution is a convolution with the kernel flipped and its two
/// channel axes swapped, padded by `k − 1 − p`: im2row + GEMM, no scatter-add.
fn flipped_transposed(weight: &[f32], g: TransposeGeometry) -> Vec<f32> {
    let taps = g.kh * g.kw;
    let mut out = vec![0f32; weight.len()];
    for ci in 0..g.c_in {
        for co in 0..g.c_out {
            let src = &weight[(ci * g.c_out + co) * taps..(ci * g.c_out + co + 1) * taps];
            let dst = &mut out[(co * g.c_in + ci) * taps..(co * g.c_in + ci + 1) * taps];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    out
}

/// `conv_transpose2d(z, weight)`: one GEMM to columns, then a scatter-add (col2im) per image
/// (at stride 1: the equivalent direct convolution).
pub fn conv_transpose2d(
    z: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: TransposeGeometry,
) -> Vec<f32> {
    if g.stride == 1 && g.output_padding == 0 && g.kh == g.kw && g.padding < g.kh {
        return conv2d(
            z,
            &flipped_transposed(weight, g),
            bias,
            g.as_full_convolution(),
        );
    }
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane_in = g.h * g.w;
    let depth = g.c_out * g.kh * g.kw;
    let image_in = g.c_in * plane_in;
    let image_out = g.c_out * oh * ow;
    let per_chunk = images_per_chunk(g.batch, plane_in);
    let parallelism = inner_parallelism(g.batch.div_ceil(per_chunk));
    let mut out = vec![0f32; g.batch * image_out];
    out.par_chunks_mut(per_chunk * image_out)
        .zip(z.par_chunks(per_chunk * image_in))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(gathered, columns): &mut (Vec<f32>, Vec<f32>), (dst, codes)| {
                let count = codes.len() / image_in;
                let width = count * plane_in;
                let rhs: &[f32] = if count == 1 {
                    codes
                } else {
                    gather_images(codes, gathered, g.c_in, plane_in);
                    gathered
                };
                // Fully written by the GEMM: no need to clear.
                columns.resize(depth * width, 0.0);
                // columns[depth, width] = weightᵀ[depth, c_in] · rhs[c_in, width]
                matmul(
                    (columns, Strides::row_major(width)),
                    false,
                    (weight, Strides::col_major(depth)),
                    (rhs, Strides::row_major(width)),
                    (depth, g.c_in, width),
                    parallelism,
                );
                for (i, image) in dst.chunks_mut(image_out).enumerate() {
                    col2im(columns, width, i * plane_in, image, g);
                    if let Some(b) = bias {
                        for (plane, value) in image.chunks_mut(oh * ow).zip(b) {
                            plane.iter_mut().for_each(|v| *v += value);
                        }
                    }
                }
            },
        );
    out
}

/// Adds each column row (c_out, ky, kx) of one image (the `h·w` values starting at `column` of
/// rows `width` long) into the output at `y·stride − padding + ky`.
fn col2im(columns: &[f32], width: usize, column: usize, dst: &mut [f32], g: TransposeGeometry) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut r = 0;
    for c in 0..g.c_out {
        let plane = &mut dst[c * oh * ow..(c + 1) * oh * ow];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &columns[r * width + column..r * width + column + g.h * g.w];
                r += 1;
                for y in 0..g.h {
                    let oy = (y * g.stride + ky) as isize - g.padding as isize;
                    if oy < 0 || oy >= oh as isize {
                        continue;
                    }
                    let src = &row[y * g.w..(y + 1) * g.w];
                    let out_row = &mut plane[oy as usize * ow..(oy as usize + 1) * ow];
                    add_shifted(src, out_row, kx as isize - g.padding as isize, g.stride);
                }
            }
        }
    }
}

/// `dst[x·stride + offset] += src[x]` where in range.
#[inline]
fn add_shifted(src: &[f32], dst: &mut [f32], offset: isize, stride: usize) {
    let n = dst.len() as isize;
    if stride == 1 {
        let first = (-offset).max(0) as usize;
        let last = ((n - offset).min(src.len() as isize)).max(0) as usize;
        if first < last {
            let to = (first as isize + offset) as usize;
            for (d, s) in dst[to..to + (last - first)]
                .iter_mut()
                .zip(&src[first..last])
            {
                *d += s;
            }
        }
    } else {
        for (x, s) in src.iter().enumerate() {
            let i = (x * stride) as isize + offset;
            if i >= 0 && i < n {
                dst[i as usize] += s;
            }
        }
    }
}

/// Gradient of `conv2d(x, weight)` with respect to the weight, given the output gradient `dy`
/// [batch, c_out, out_h, out_w]: `dW[c_out, c_in·kh·kw] = Σ_images dy · im2row(x)ᵀ`.
pub fn conv2d_weight_grad(x: &[f32], dy: &[f32], g: ConvGeometry) -> Vec<f32> {
    if winograd::applies(&g) {
        return winograd::conv2d_weight_grad(x, dy, g);
    }
    conv2d_weight_grad_direct(x, dy, g)
}

/// [`conv2d_weight_grad`] by im2row + GEMM, whatever the geometry.
pub fn conv2d_weight_grad_direct(x: &[f32], dy: &[f32], g: ConvGeometry) -> Vec<f32> {
    let plane = g.out_h() * g.out_w();
    let depth = g.c_in * g.kh * g.kw;
    let image_in = g.c_in * g.h * g.w;
    let image_out = g.c_out * plane;
    let per_chunk = images_per_chunk(g.batch, plane);
    let parallelism = inner_parallelism(g.batch.div_ceil(per_chunk));
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per_chunk * image_in)
        .zip(dy.par_chunks(per_chunk * image_out))
        .map(|(images, grads)| {
            let count = images.len() / image_in;
            let width = count * plane;
            let mut rows = vec![0f32; depth * width];
            for (i, image) in images.chunks(image_in).enumerate() {
                im2row(image, g, &mut rows, width, i * plane);
            }
            let mut gathered = Vec::new();
            let lhs: &[f32] = if count == 1 {
                grads
            } else {
                gather_images(grads, &mut gathered, g.c_out, plane);
                &gathered
            };
            let mut partial = vec![0f32; g.c_out * depth];
            // partial[c_out, depth] = lhs[c_out, width] · rowsᵀ[width, depth], stored column-major:
            // gemm then packs the small lhs instead of transposing the whole patch matrix.
            matmul(
                (&mut partial, Strides::col_major(g.c_out)),
                false,
                (lhs, Strides::row_major(width)),
                (&rows, Strides::col_major(width)),
                (g.c_out, width, depth),
                parallelism,
            );
            partial
        })
        .collect();
    let mut total = vec![0f32; g.c_out * depth];
    for partial in partials {
        total.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
    }
    // [depth, c_out] → [c_out, depth]
    let mut weight_grad = vec![0f32; g.c_out * depth];
    for (d, column) in total.chunks(g.c_out).enumerate() {
        for (c, value) in column.iter().enumerate() {
            weight_grad[c * depth + d] = *value;
        }
    }
    weight_grad
}
