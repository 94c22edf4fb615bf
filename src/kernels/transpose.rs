//! The layout changes around the Winograd tiles: one row of an NCHW image to channel-last pixels
//! and back. They are transposes, done 8 × 8 at a time in AVX registers where the CPU has AVX (a
//! scalar loop with a store per element cost as much as the tile transforms), and element by
//! element for the edges and on other CPUs. Both paths move the same values, so the results are
//! bitwise equal.

use std::mem::MaybeUninit;
use std::ops::Range;

/// Side of the register blocks.
const BLOCK: usize = 8;

/// `dst[x·C + c] = planes[c·plane + start + x]` for x < len and all C = dst.len() / len channels.
pub fn to_channel_last(planes: &[f32], start: usize, len: usize, plane: usize, dst: &mut [f32]) {
    let channels = dst.len() / len;
    assert!(dst.len() == channels * len && fits(channels, (start, len, plane), planes.len()));
    let (blocked_c, blocked_x) = blocked(channels, len);
    #[cfg(target_arch = "x86_64")]
    if blocked_c > 0 && blocked_x > 0 && std::arch::is_x86_feature_detected!("avx") {
        for c in (0..blocked_c).step_by(BLOCK) {
            for x in (0..blocked_x).step_by(BLOCK) {
                // SAFETY: AVX is present; rows c..c+8 of the planes hold columns start+x..+8 and
                // pixels x..x+8 of dst hold channels c..c+8 (bounds asserted above).
                unsafe {
                    avx::transpose(
                        planes.as_ptr().add(c * plane + start + x),
                        plane,
                        dst.as_mut_ptr().add(x * channels + c),
                        channels,
                        None,
                    );
                }
            }
        }
        channel_last_scalar(
            planes,
            (start, plane),
            (dst, channels),
            blocked_c..channels,
            0..len,
        );
        channel_last_scalar(
            planes,
            (start, plane),
            (dst, channels),
            0..blocked_c,
            blocked_x..len,
        );
        return;
    }
    channel_last_scalar(planes, (start, plane), (dst, channels), 0..channels, 0..len);
}

/// `planes[c·plane + start + x] = pixels[x·C + c] + bias[c]` (+ 0 without a bias) for x < len:
/// the inverse of [`to_channel_last`], writing every element of those rows.
pub fn to_channel_first(
    pixels: &[f32],
    bias: Option<&[f32]>,
    planes: &mut [MaybeUninit<f32>],
    start: usize,
    len: usize,
    plane: usize,
) {
    let channels = pixels.len() / len;
    assert!(pixels.len() == channels * len && fits(channels, (start, len, plane), planes.len()));
    assert!(bias.is_none_or(|b| b.len() >= channels));
    let offset = |c: usize| bias.map_or(0.0, |b| b[c]);
    let (blocked_c, blocked_x) = blocked(channels, len);
    #[cfg(target_arch = "x86_64")]
    if blocked_c > 0 && blocked_x > 0 && std::arch::is_x86_feature_detected!("avx") {
        for c in (0..blocked_c).step_by(BLOCK) {
            let offsets: [f32; BLOCK] = std::array::from_fn(|i| offset(c + i));
            for x in (0..blocked_x).step_by(BLOCK) {
                // SAFETY: AVX is present; pixels x..x+8 hold channels c..c+8 and rows c..c+8 of
                // the planes hold columns start+x..+8 (bounds asserted above).
                unsafe {
                    avx::transpose(
                        pixels.as_ptr().add(x * channels + c),
                        channels,
                        planes.as_mut_ptr().add(c * plane + start + x).cast::<f32>(),
                        plane,
                        Some(&offsets),
                    );
                }
            }
        }
        let mut scalar = |cs, xs| {
            channel_first_scalar((pixels, channels), &offset, planes, (start, plane), cs, xs)
        };
        scalar(blocked_c..channels, 0..len);
        scalar(0..blocked_c, blocked_x..len);
        return;
    }
    channel_first_scalar(
        (pixels, channels),
        &offset,
        planes,
        (start, plane),
        0..channels,
        0..len,
    );
}

/// Whether columns start..start + len of `channels` planes lie within `total` values.
fn fits(channels: usize, (start, len, plane): (usize, usize, usize), total: usize) -> bool {
    channels == 0 || (channels - 1) * plane + start + len <= total
}

/// The channels and columns covered by whole 8 × 8 blocks.
fn blocked(channels: usize, len: usize) -> (usize, usize) {
    (channels / BLOCK * BLOCK, len / BLOCK * BLOCK)
}

/// [`to_channel_last`] element by element over the channels `cs` and columns `xs`.
fn channel_last_scalar(
    planes: &[f32],
    (start, plane): (usize, usize),
    (dst, channels): (&mut [f32], usize),
    cs: Range<usize>,
    xs: Range<usize>,
) {
    for c in cs {
        let row = &planes[c * plane + start..];
        for x in xs.clone() {
            dst[x * channels + c] = row[x];
        }
    }
}

/// [`to_channel_first`] element by element over the channels `cs` and columns `xs`.
fn channel_first_scalar(
    (pixels, channels): (&[f32], usize),
    offset: &impl Fn(usize) -> f32,
    planes: &mut [MaybeUninit<f32>],
    (start, plane): (usize, usize),
    cs: Range<usize>,
    xs: Range<usize>,
) {
    for c in cs {
        let add = offset(c);
        let row = &mut planes[c * plane + start..];
        for x in xs.clone() {
            row[x].write(pixels[x * channels + c] + add);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Writes row r of the 8 × 8 block at `src` (rows `src_stride` apart) as column r of the
    /// block at `dst` (rows `dst_stride` apart), adding `offsets[i]` to the i-th output row.
    ///
    /// # Safety
    /// AVX must be available, and the 8 rows of 8 values at `src` and at `dst` must lie in
    /// readable and writable memory respectively.
    #[target_feature(enable = "avx")]
    pub unsafe fn transpose(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        offsets: Option<&[f32; BLOCK]>,
    ) {
        let r: [__m256; BLOCK] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_stride)));
        // Pairs of rows interleaved, then quads: each 128-bit half then holds four values of one
        // column (columns j and j + 4 share a register), and the halves are finally regrouped.
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let s = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        for j in 0..4 {
            let low = _mm256_permute2f128_ps::<0x20>(s[j], s[j + 4]);
            let high = _mm256_permute2f128_ps::<0x31>(s[j], s[j + 4]);
            store(dst.add(j * dst_stride), low, offsets.map(|o| o[j]));
            store(
                dst.add((j + 4) * dst_stride),
                high,
                offsets.map(|o| o[j + 4]),
            );
        }
    }

    #[inline(always)]
    unsafe fn store(at: *mut f32, values: __m256, offset: Option<f32>) {
        let values = match offset {
            Some(o) => _mm256_add_ps(values, _mm256_set1_ps(o)),
            None => values,
        };
        _mm256_storeu_ps(at, values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (channels, length) combination of whole blocks and edges, off a non-zero start.
    #[test]
    fn both_directions_match_the_definition_and_invert_each_other() {
        for channels in [1, 7, 8, 9, 16, 19, 64] {
            for len in [1, 5, 8, 13, 32, 33] {
                let (start, plane) = (3, len + 7);
                let planes: Vec<f32> = (0..channels * plane).map(|i| i as f32 - 0.5).collect();
                let mut pixels = vec![f32::NAN; channels * len];
                to_channel_last(&planes, start, len, plane, &mut pixels);
                for x in 0..len {
                    for c in 0..channels {
                        assert_eq!(pixels[x * channels + c], planes[c * plane + start + x]);
                    }
                }
                let bias: Vec<f32> = (0..channels).map(|c| 1000.0 * c as f32).collect();
                for with_bias in [false, true] {
                    let mut back = vec![MaybeUninit::new(f32::NAN); planes.len()];
                    let b = with_bias.then_some(bias.as_slice());
                    to_channel_first(&pixels, b, &mut back, start, len, plane);
                    for c in 0..channels {
                        for x in 0..plane {
                            // SAFETY: initialised above.
                            let value = unsafe { back[c * plane + x].assume_init() };
                            if (start..start + len).contains(&x) {
                                let add = if with_bias { bias[c] } else { 0.0 };
                                assert_eq!(value, planes[c * plane + x] + add, "{channels} {len}");
                            } else {
                                assert!(value.is_nan(), "wrote outside the row");
                            }
                        }
                    }
                }
            }
        }
    }
}
