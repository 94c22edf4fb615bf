//! Training-time data: per-epoch shuffling and CIFAR augmentation (random crop with 4-pixel zero
//! padding, horizontal flip), all drawn from streams seeded by (seed, epoch, image) so that a
//! resumed run sees exactly the batches an uninterrupted one would.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn stream(seed: u64, epoch: usize, index: usize) -> StdRng {
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((epoch as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add((index as u64).wrapping_mul(0x94D0_49BB_1331_11EB));
    StdRng::seed_from_u64(mix)
}

/// The order in which epoch `epoch` visits the `n` training images.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut stream(seed, epoch, usize::MAX));
    order
}

/// RandomCrop(size, padding) + RandomHorizontalFlip of one CHW uint8 image, in place.
pub fn crop_and_flip(
    image: &mut [u8],
    [c, h, w]: [usize; 3],
    padding: usize,
    seed: u64,
    epoch: usize,
    index: usize,
) {
    let mut rng = stream(seed, epoch, index);
    let dy = rng.random_range(0..=2 * padding) as isize - padding as isize;
    let dx = rng.random_range(0..=2 * padding) as isize - padding as isize;
    let flip = rng.random_bool(0.5);
    let source = image.to_vec();
    for ch in 0..c {
        let plane = &source[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let sx = if flip { w - 1 - x } else { x } as isize + dx;
                let sy = y as isize + dy;
                let inside = sx >= 0 && sy >= 0 && (sx as usize) < w && (sy as usize) < h;
                image[ch * h * w + y * w + x] = if inside {
                    plane[sy as usize * w + sx as usize]
                } else {
                    0
                };
            }
        }
    }
}
