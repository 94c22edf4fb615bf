//! Correlation through the discrete Fourier transform, which is how `cv2.filter2D` filters
//! float64 data with kernels of 50 taps or more (its `dftFilter2D` path): the values are those
//! of the direct sum up to float64 rounding (about 1e-15 relative).

use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// OpenCV filters float64 data through the DFT from this many taps on; below it our filters always
/// sum directly, above it they take the DFT where it is cheaper (`filters::dft_is_cheaper`).
pub const DFT_MIN_TAPS: usize = 50;

/// Correlates planes of one padded size with one kernel; the kernel's spectrum and the FFT plans
/// are made once and shared by every plane.
pub struct Correlator {
    rows: usize,
    columns: usize,
    forward_rows: Arc<dyn RealToComplex<f64>>,
    inverse_rows: Arc<dyn ComplexToReal<f64>>,
    forward_columns: Arc<dyn Fft<f64>>,
    inverse_columns: Arc<dyn Fft<f64>>,
    kernel_spectrum: Vec<Complex<f64>>,
}

/// What identifies a correlator: the kernel's bits, its shape and the padded plane's shape.
type CorrelatorKey = (Vec<u32>, [usize; 4]);

thread_local! {
    /// Correlators already planned on this thread: a corruption run meets the same few kernels
    /// and image sizes over and over, and planning costs about as much as one transform.
    static CORRELATORS: RefCell<HashMap<CorrelatorKey, Rc<Correlator>>> =
        RefCell::new(HashMap::new());
}

/// At most this many correlators are kept per thread (the presets need five per image size).
const CACHED_CORRELATORS: usize = 32;

impl Correlator {
    /// [`Correlator::new`] for a float32 kernel, planned once per thread and kept.
    pub fn cached(kernel: &[f32], kh: usize, kw: usize, ph: usize, pw: usize) -> Rc<Self> {
        let key = (
            kernel.iter().map(|k| k.to_bits()).collect(),
            [kh, kw, ph, pw],
        );
        CORRELATORS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(found) = cache.get(&key) {
                return Rc::clone(found);
            }
            if cache.len() >= CACHED_CORRELATORS {
                cache.clear();
            }
            let kernel: Vec<f64> = kernel.iter().map(|&k| f64::from(k)).collect();
            let correlator = Rc::new(Self::new(&kernel, kh, kw, ph, pw));
            cache.insert(key, Rc::clone(&correlator));
            correlator
        })
    }

    /// For planes of `padded_h × padded_w` and a `kh × kw` kernel (row-major).
    pub fn new(kernel: &[f64], kh: usize, kw: usize, padded_h: usize, padded_w: usize) -> Self {
        let (rows, columns) = (fast_size(padded_h), fast_size(padded_w));
        let mut real = RealFftPlanner::<f64>::new();
        let mut complex = FftPlanner::<f64>::new();
        let mut correlator = Self {
            rows,
            columns,
            forward_rows: real.plan_fft_forward(columns),
            inverse_rows: real.plan_fft_inverse(columns),
            forward_columns: complex.plan_fft_forward(rows),
            inverse_columns: complex.plan_fft_inverse(rows),
            kernel_spectrum: Vec::new(),
        };
        correlator.kernel_spectrum = correlator.spectrum(kernel, kh, kw);
        correlator
    }

    /// `out[y][x] = Σ kernel[i][j] · padded[y + i][x + j]` for the `h × w` outputs.
    pub fn correlate(&self, padded: &[f64], padded_w: usize, h: usize, w: usize) -> Vec<f64> {
        let mut product = self.spectrum(padded, padded.len() / padded_w, padded_w);
        for (p, k) in product.iter_mut().zip(&self.kernel_spectrum) {
            *p *= k.conj();
        }
        self.inverse_columns.process(&mut product);
        let half = self.columns / 2 + 1;
        let scale = 1.0 / (self.rows * self.columns) as f64;
        let mut row_spectrum = vec![Complex::new(0.0, 0.0); half];
        let mut row = vec![0.0; self.columns];
        let mut out = vec![0.0; h * w];
        for (y, out_row) in out.chunks_exact_mut(w).enumerate() {
            for (c, value) in row_spectrum.iter_mut().enumerate() {
                *value = product[c * self.rows + y];
            }
            // A real signal's DC and Nyquist terms are real; drop their rounding residue.
            row_spectrum[0].im = 0.0;
            if self.columns.is_multiple_of(2) {
                row_spectrum[half - 1].im = 0.0;
            }
            self.inverse_rows
                .process(&mut row_spectrum, &mut row)
                .expect("buffer lengths match the plan");
            for (o, v) in out_row.iter_mut().zip(&row) {
                *o = v * scale;
            }
        }
        out
    }

    /// 2-D spectrum of a `h × w` row-major array zero-extended to `rows × columns`, stored
    /// column-major (`[column][row]`) so that the column transforms run on contiguous data.
    fn spectrum(&self, data: &[f64], h: usize, w: usize) -> Vec<Complex<f64>> {
        let half = self.columns / 2 + 1;
        let mut spectrum = vec![Complex::new(0.0, 0.0); half * self.rows];
        let mut row = vec![0.0; self.columns];
        let mut row_spectrum = vec![Complex::new(0.0, 0.0); half];
        for (y, source) in data.chunks_exact(w).take(h).enumerate() {
            row[..w].copy_from_slice(source);
            row[w..].fill(0.0);
            self.forward_rows
                .process(&mut row, &mut row_spectrum)
                .expect("buffer lengths match the plan");
            for (c, value) in row_spectrum.iter().enumerate() {
                spectrum[c * self.rows + y] = *value;
            }
        }
        self.forward_columns.process(&mut spectrum);
        spectrum
    }
}

/// The smallest size ≥ n whose only prime factors are 2, 3 and 5.
fn fast_size(n: usize) -> usize {
    (n.max(1)..)
        .find(|&m| {
            let mut m = m;
            for p in [2, 3, 5] {
                while m % p == 0 {
                    m /= p;
                }
            }
            m == 1
        })
        .expect("sizes are unbounded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_sizes() {
        assert_eq!([1, 7, 11, 244, 257].map(fast_size), [1, 8, 12, 250, 270]);
    }

    #[test]
    fn dft_correlation_equals_the_direct_sum() {
        let (ph, pw, kh, kw) = (23, 31, 9, 7);
        let padded: Vec<f64> = (0..ph * pw)
            .map(|i| ((i * 37) % 101) as f64 / 101.0)
            .collect();
        let kernel: Vec<f64> = (0..kh * kw).map(|i| ((i * 13) % 17) as f64 - 8.0).collect();
        let (h, w) = (ph - kh + 1, pw - kw + 1);
        let out = Correlator::new(&kernel, kh, kw, ph, pw).correlate(&padded, pw, h, w);
        for y in 0..h {
            for x in 0..w {
                let mut direct = 0.0;
                for i in 0..kh {
                    for j in 0..kw {
                        direct += kernel[i * kw + j] * padded[(y + i) * pw + x + j];
                    }
                }
                let got = out[y * w + x];
                assert!(
                    (got - direct).abs() < 1e-12,
                    "({y}, {x}): {got} vs {direct}"
                );
            }
        }
    }
}
