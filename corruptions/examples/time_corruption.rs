//! Single-thread timing of corruptions on one image, the minimum over many runs (the minimum
//! is what stays stable on a shared machine):
//! `cargo run --release -p corruptions --example time_corruption -- IMAGE PRESET NAME[,NAME..] [RUNS]`
//! IMAGE is any JPEG/PNG; its central 224×224 (ImageNet) or 32×32 (CIFAR) crop is corrupted
//! at the five severities per run.

use std::time::Instant;

use corruptions::{corrupt, decode_rgb, Corruption, Preset, RgbImage};

fn centre_crop(image: &RgbImage, side: usize) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    assert!(w >= side && h >= side, "image smaller than {side}×{side}");
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let bytes = image.as_bytes();
    let data = (y0..y0 + side)
        .flat_map(|y| {
            bytes[(y * w + x0) * 3..(y * w + x0 + side) * 3]
                .iter()
                .copied()
        })
        .collect();
    RgbImage::new(side, side, data).expect("crop size")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, preset, names, rest @ ..] = args.as_slice() else {
        eprintln!("usage: time_corruption IMAGE cifar|imagenet NAME[,NAME..] [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = rest.first().map_or(20, |r| r.parse().expect("RUNS"));
    let preset: Preset = preset.parse().expect("preset");
    let side = if matches!(preset, Preset::Cifar) {
        32
    } else {
        224
    };
    let image = centre_crop(
        &decode_rgb(&std::fs::read(path).expect("read image")).expect("decode"),
        side,
    );
    for corruption in Corruption::parse_selection(names).expect("corruption names") {
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let start = Instant::now();
            for severity in 1..=5 {
                std::hint::black_box(corrupt(&image, corruption, severity, preset, 0, 0).unwrap());
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{:<20} {:8.3} ms (five severities, minimum of {runs})",
            corruption.name(),
            best * 1e3
        );
    }
}
