//! An RGB image (8 bits, height × width × 3) and the float views the corruptions work on.

use crate::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, Error> {
        if data.len() != width * height * 3 {
            return Err(Error::Buffer {
                expected: width * height * 3,
                found: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// From planar CHW bytes (R plane, G plane, B plane).
    pub fn from_planes(width: usize, height: usize, planes: &[u8]) -> Result<Self, Error> {
        let n = width * height;
        if planes.len() != 3 * n {
            return Err(Error::Buffer {
                expected: 3 * n,
                found: planes.len(),
            });
        }
        let mut data = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                data[3 * i + c] = planes[c * n + i];
            }
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Grayscale (1 byte per pixel) or RGBA (4) buffers converted to RGB; anything else is an error.
    pub fn from_channels(
        width: usize,
        height: usize,
        channels: usize,
        data: &[u8],
    ) -> Result<Self, Error> {
        let n = width * height;
        if data.len() != n * channels {
            return Err(Error::Buffer {
                expected: n * channels,
                found: data.len(),
            });
        }
        let rgb = match channels {
            1 => data.iter().flat_map(|&v| [v, v, v]).collect(),
            3 => data.to_vec(),
            4 => data.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            other => {
                return Err(Error::Decode(format!(
                    "images with {other} channels are not supported (expected 1, 3 or 4)"
                )))
            }
        };
        Ok(Self {
            width,
            height,
            data: rgb,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Interleaved RGB bytes, row by row.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// Planar CHW bytes.
    pub fn to_planes(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut planes = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                planes[c * n + i] = self.data[3 * i + c];
            }
        }
        planes
    }

    /// The pixels divided by 255, as the reference does with `np.array(x) / 255.` (float64).
    pub(crate) fn unit_f64(&self) -> Vec<f64> {
        let unit = unit_table();
        self.data.iter().map(|&v| unit[usize::from(v)]).collect()
    }

    /// `np.array(x, dtype=np.float32) / 255.` (float32).
    pub(crate) fn unit_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32 / 255.0).collect()
    }

    /// `np.uint8(np.clip(v, 0, 1) * 255)` for unit-scale values: `from_scaled_f64` of
    /// [`unit_to_scaled`], in one pass the compiler vectorises.
    pub(crate) fn from_unit_f64(width: usize, height: usize, values: &[f64]) -> Self {
        Self {
            width,
            height,
            data: unit_to_bytes(values),
        }
    }

    /// The reference's final step: values on the 0–255 scale through `np.uint8` (truncation
    /// toward zero; inputs are already clipped to [0, 255]).
    pub(crate) fn from_scaled_f64(
        width: usize,
        height: usize,
        values: impl IntoIterator<Item = f64>,
    ) -> Self {
        let data = values.into_iter().map(truncate_u8).collect();
        Self {
            width,
            height,
            data,
        }
    }
}

/// `np.uint8(v)` for v in [0, 255] (NaN maps to 0).
#[inline(always)]
pub(crate) fn truncate_u8(v: f64) -> u8 {
    if v.is_nan() {
        0
    } else {
        v.clamp(0.0, 255.0) as u8
    }
}

/// The 256 quotients `v / 255` (float64), so that hot loops look them up instead of dividing.
pub(crate) fn unit_table() -> [f64; 256] {
    std::array::from_fn(|v| v as f64 / 255.0)
}

/// `np.clip(v, 0, 1) * 255` for a unit-scale value.
#[inline(always)]
pub(crate) fn unit_to_scaled(v: f64) -> f64 {
    v.clamp(0.0, 1.0) * 255.0
}

/// [`truncate_u8`] of [`unit_to_scaled`] over a slice. `max`/`min` send NaN to 0 as the clamp
/// and `np.uint8` do, and the scaled value lies in 0..=255, so the `i32` cast truncates alike.
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN, which the cast would then have to handle
#[multiversion::multiversion(targets = "simd")]
fn unit_to_bytes(values: &[f64]) -> Vec<u8> {
    values
        .iter()
        .map(|&v| (v.max(0.0).min(1.0) * 255.0) as i32 as u8)
        .collect()
}
