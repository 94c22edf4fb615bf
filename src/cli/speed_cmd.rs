//! `robust-eval speed`: throughput of the model zoo on the bundled images, for side-by-side
//! comparison with `tools/bench_pytorch.py` on the same machine.

use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::json;

use attacks::{Goal, Pgd};
use burn::backend::Autodiff;
use burn::tensor::Tensor;

use crate::adversarial::FrozenNetwork;
use crate::data::{self, Batch, DataSource, DatasetKind, Split};
use crate::device::{backend_name, dispatch, DeviceChoice, Job};
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::models::{Domain, ModelSpec, Network};
use crate::report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Inference (clean evaluation).
    Eval,
    /// PGD (10 steps unless --steps), L∞, ε = 8/255, α = 2/255, random start, every image attacked.
    Pgd,
    /// The 19 corruptions × 5 severities (no model).
    Corrupt,
    /// Training steps (official CIFAR recipe, forward + backward + SGD).
    Train,
}

#[derive(Args, Clone, Debug)]
pub struct SpeedArgs {
    #[arg(value_enum, default_value = "eval")]
    pub workload: Workload,
    /// Comma-separated model names (random weights).
    #[arg(long, default_value = "resnet20,resnet18,sdnet18")]
    pub models: String,
    /// cifar10 (32×32 bundled images) or imagenet (the same images enlarged 7× to 224×224, by
    /// pixel repetition as tools/bench_pytorch.py does, for the ImageNet variants).
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// Images per measurement (from the bundled CIFAR-10 sample).
    #[arg(long, default_value_t = 500)]
    pub n: usize,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// pgd: iterations per attack.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Measurements per model (corrupt: passes over the five severities per corruption); the
    /// median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "results")]
    pub out_dir: std::path::PathBuf,
    /// corrupt: parameter preset (cifar on the bundled images, imagenet on --data).
    #[arg(long, default_value = "cifar")]
    pub preset: String,
    /// corrupt: an ImageNet folder for the imagenet preset.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
    /// corrupt: which corruptions to time (names or groups, as for `corrupt`).
    #[arg(long, default_value = "all")]
    pub corruptions: String,
}

pub fn run(args: SpeedArgs) -> Result<()> {
    if args.workload == Workload::Corrupt {
        return bench_corruptions(&args);
    }
    let device: DeviceChoice = args.device.parse()?;
    if args.n == 0 || args.batch_size == 0 || args.repeat == 0 || args.steps == 0 {
        return Err(Error::input(
            "--n, --batch-size, --repeat and --steps must be at least 1",
        ));
    }
    report::prepare_output_dir(&args.out_dir)?;
    let names: Vec<String> = args
        .models
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let (domain, classes) = speed_domain(&args.dataset)?;
    for name in &names {
        ModelSpec::new(name, domain, classes)?;
    }
    let rates = dispatch(
        device,
        BenchJob {
            args: &args,
            names: &names,
        },
    )?;
    let mut rows = Vec::new();
    for (name, rate) in names.iter().zip(&rates) {
        println!(
            "{:?} {name}: {} images/s ({})",
            args.workload,
            rate_text(*rate),
            backend_name(device)
        );
        rows.push(vec![
            format!("{:?}", args.workload).to_lowercase(),
            name.clone(),
            rate_text(*rate),
            args.batch_size.to_string(),
            device.to_string(),
            rayon::current_num_threads().to_string(),
        ]);
    }
    let stem = format!("speed-{:?}", args.workload).to_lowercase();
    report::write_csv(
        &args.out_dir.join(format!("{stem}.csv")),
        &[
            "workload",
            "model",
            "images_per_second",
            "batch_size",
            "device",
            "threads",
        ],
        &rows,
    )?;
    report::write_json(
        &args.out_dir.join(format!("{stem}.json")),
        &json!({
            "settings": {"n": args.n, "batch_size": args.batch_size, "repeat": args.repeat, "pgd_steps": args.steps,
                         "device": device.to_string(), "threads": rayon::current_num_threads(),
                         "versions": report::versions()},
            "results": names.iter().zip(&rates).map(|(n, r)| json!({"model": n, "images_per_second": r})).collect::<Vec<_>>(),
        }),
    )
}

struct BenchJob<'a> {
    args: &'a SpeedArgs,
    names: &'a [String],
}

impl Job for BenchJob<'_> {
    type Output = Vec<f64>;

    fn run<B: ConvBackend>(self, device: B::Device) -> Result<Vec<f64>> {
        let set = data::open(
            DatasetKind::Cifar10,
            &DataSource::Bundled,
            Split::Test,
            Some(self.args.n),
        )?;
        let indices: Vec<usize> = (0..set.len()).collect();
        let (domain, classes) = speed_domain(&self.args.dataset)?;
        let batches: Vec<Batch> = indices
            .chunks(self.args.batch_size)
            .map(|c| Batch::load(set.as_ref(), c).map(|b| enlarged(b, domain)))
            .collect::<Result<_>>()?;
        let mut rates = Vec::new();
        for name in self.names {
            let spec = ModelSpec::new(name, domain, classes)?;
            let run_once: Box<dyn Fn() -> Result<()>> = match self.args.workload {
                Workload::Eval => {
                    let model = Network::<B>::new(&spec, 0, &device);
                    let batches = &batches;
                    let device = device.clone();
                    Box::new(move || {
                        for batch in batches {
                            let _ = model.forward(batch.images::<B>(&device)).into_data();
                        }
                        Ok(())
                    })
                }
                Workload::Pgd => {
                    let model = FrozenNetwork::new(Network::<Autodiff<B>>::new(&spec, 0, &device));
                    let batches = &batches;
                    let device = device.clone();
                    let attack = Pgd {
                        steps: self.args.steps,
                        ..Pgd::linf_default()
                    };
                    Box::new(move || {
                        for batch in batches {
                            pgd_batch(&model, &attack, batch, &device)?;
                        }
                        Ok(())
                    })
                }
                Workload::Train => {
                    let recipe = crate::train::Recipe::cifar();
                    let cell = std::cell::RefCell::new((
                        Network::<Autodiff<B>>::new(&spec, 0, &device).with_positional_ids(),
                        recipe.sgd().init::<Autodiff<B>, Network<Autodiff<B>>>(),
                    ));
                    let batches = &batches;
                    let device = device.clone();
                    Box::new(move || {
                        let mut guard = cell.borrow_mut();
                        let (network, optimizer) = &mut *guard;
                        for batch in batches {
                            let loss = attacks::cross_entropy(
                                network.forward_train(batch.images::<Autodiff<B>>(&device)),
                                &batch.labels,
                            )
                            .mean();
                            let grads = burn::optim::GradientsParams::from_grads(
                                loss.backward(),
                                &*network,
                            );
                            let mut updated = burn::optim::Optimizer::step(
                                optimizer,
                                0.01,
                                network.clone(),
                                grads,
                            );
                            updated.normalize_dictionaries();
                            *network = updated;
                        }
                        Ok(())
                    })
                }
                Workload::Corrupt => unreachable!("handled by bench_corruptions"),
            };
            run_once()?; // warm-up: allocations, CSC step sizes
            let mut samples = Vec::new();
            for _ in 0..self.args.repeat {
                let start = Instant::now();
                run_once()?;
                samples.push(set.len() as f64 / start.elapsed().as_secs_f64());
            }
            samples.sort_by(f64::total_cmp);
            rates.push(samples[samples.len() / 2]);
        }
        Ok(rates)
    }
}

/// One decimal, or three significant digits below 10 images/s (large models under attack).
fn rate_text(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.3}")
    } else {
        format!("{rate:.1}")
    }
}

fn speed_domain(dataset: &str) -> Result<(Domain, usize)> {
    match dataset {
        "cifar10" => Ok((Domain::Cifar, 10)),
        "imagenet" => Ok((Domain::Imagenet, 1000)),
        other => Err(Error::input(format!(
            "speed --dataset '{other}': expected cifar10 or imagenet"
        ))),
    }
}

/// The batch at the domain's input size: ImageNet batches repeat every pixel 7 × 7 times
/// (32 → 224); the content does not change the work.
fn enlarged(batch: Batch, domain: Domain) -> Batch {
    const FACTOR: usize = 7;
    if domain == Domain::Cifar {
        return batch;
    }
    let [n, c, h, w] = batch.shape;
    let (big_h, big_w) = (h * FACTOR, w * FACTOR);
    let mut pixels = Vec::with_capacity(n * c * big_h * big_w);
    for plane in batch.pixels.chunks_exact(h * w) {
        for y in 0..big_h {
            let row = &plane[(y / FACTOR) * w..(y / FACTOR + 1) * w];
            pixels.extend(row.iter().flat_map(|&v| std::iter::repeat_n(v, FACTOR)));
        }
    }
    Batch {
        pixels,
        shape: [n, c, big_h, big_w],
        ..batch
    }
}

/// `attack` on every image of the batch (labels = clean predictions, so none is skipped).
fn pgd_batch<B: ConvBackend>(
    model: &FrozenNetwork<Autodiff<B>>,
    attack: &Pgd,
    batch: &Batch,
    device: &B::Device,
) -> Result<()> {
    let images = batch.images::<B>(device);
    // Every image is attacked: the goal is to move each one off its clean prediction.
    let labels = attacks::argmax(
        model
            .network()
            .forward(Tensor::from_inner(images.clone()))
            .inner(),
    );
    let goal = Goal {
        seeds: batch.indices.iter().map(|&i| i as u64).collect(),
        labels: labels.clone(),
        targets: None,
    };
    attacks::run_from_clean(attack, model, images, labels, &goal, 1)
        .map(|_| ())
        .map_err(|v| Error::input(v.to_string()))
}

/// Times each selected corruption over its five severities on the same images.
fn bench_corruptions(args: &SpeedArgs) -> Result<()> {
    use corruptions::{corrupt_many, Corruption, Preset, RgbImage};
    let preset: Preset = args.preset.parse().map_err(Error::input)?;
    let selection =
        Corruption::parse_selection(&args.corruptions).map_err(|e| Error::input(e.to_string()))?;
    let set = match (preset, &args.data) {
        (Preset::Cifar, _) => data::open(
            DatasetKind::Cifar10,
            &DataSource::Bundled,
            Split::Test,
            Some(args.n),
        )?,
        (Preset::Imagenet, Some(path)) => data::open(
            DatasetKind::Imagenet,
            &DataSource::Path(path.clone()),
            Split::Test,
            Some(args.n),
        )?,
        (Preset::Imagenet, None) => {
            return Err(Error::input(
                "speed corrupt --preset imagenet needs --data <ImageNet folder>",
            ))
        }
    };
    report::prepare_output_dir(&args.out_dir)?;
    let [_, h, w] = set.image_shape();
    let indices: Vec<usize> = (0..set.len()).collect();
    let raw = set.load_u8(&indices)?;
    let images: Vec<RgbImage> = raw
        .chunks(3 * h * w)
        .map(|p| RgbImage::from_planes(w, h, p).map_err(|e| Error::input(e.to_string())))
        .collect::<Result<_>>()?;
    let ids: Vec<u64> = (0..images.len() as u64).collect();
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    let mut total = 0.0;
    if args.repeat == 0 {
        return Err(Error::input("speed corrupt: --repeat must be at least 1"));
    }
    for &c in &selection {
        let mut passes = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            let start = Instant::now();
            for severity in 1..=5 {
                corrupt_many(&images, &ids, c, severity, preset, 0)
                    .map_err(|e| Error::input(e.to_string()))?;
            }
            passes.push(start.elapsed().as_secs_f64());
        }
        passes.sort_by(f64::total_cmp);
        let seconds = passes[passes.len() / 2];
        total += seconds;
        println!(
            "{c:<18} {seconds:>8.3} s  ({:.2} ms per image and severity)",
            1e3 * seconds / (5.0 * images.len() as f64)
        );
        rows.push(vec![
            c.name().to_string(),
            format!("{seconds:.4}"),
            images.len().to_string(),
            threads.to_string(),
            args.repeat.to_string(),
        ]);
    }
    println!(
        "{:<18} {total:>8.3} s for {} × 5 × {} images ({threads} threads)",
        "total",
        selection.len(),
        images.len()
    );
    rows.push(vec![
        "total".into(),
        format!("{total:.4}"),
        images.len().to_string(),
        threads.to_string(),
        args.repeat.to_string(),
    ]);
    let name = format!("speed-corrupt-{}", args.preset);
    report::write_csv(
        &args.out_dir.join(format!("{name}.csv")),
        &[
            "corruption",
            "seconds_5_severities",
            "images",
            "threads",
            "median_of",
        ],
        &rows,
    )
}
