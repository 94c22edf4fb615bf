//! Test-time defenses: λ schedules for SDNet's CSC layers and test-time BatchNorm adaptation.
//!
//! A [`TestTimeDefense`] is data (it names itself in cell keys and serialises into cell
//! records). [`BoundDefense`] is the same bound to a loaded network: layer names resolved and
//! checked, fixed λ applied, and the per-batch selection of λ for per-input schedules.

mod noise_level;
mod schedule;

pub mod calibrate;

pub use noise_level::estimate_noise;
pub use schedule::{LayerGroup, Layers, ResidualMap, Rule, Schedule, ScheduleModel};

use attacks::Classifier;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde_json::{json, Value};

use crate::csc::SampleLambda;
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::models::Network;
use crate::nn::Mode;

/// A λ schedule, BatchNorm adaptation, or both.
#[derive(Clone, Debug, PartialEq)]
pub struct TestTimeDefense {
    pub schedule: Option<Schedule>,
    /// BatchNorm normalises with the statistics of the test batch.
    pub bn_adapt: bool,
}

impl TestTimeDefense {
    pub fn name(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.schedule {
            parts.push(s.name());
        }
        if self.bn_adapt {
            parts.push("bn-adapt".into());
        }
        parts.join("+")
    }

    /// Every setting, for cell records.
    pub fn settings(&self) -> Value {
        json!({
            "schedule": self.schedule,
            "bn_adapt": self.bn_adapt,
            "extra_csc_solves_per_image": self.schedule.as_ref().map_or(0, Schedule::extra_solves),
        })
    }
}

/// A defense bound to one network.
#[derive(Clone, Debug)]
pub struct BoundDefense {
    pub defense: TestTimeDefense,
    /// CSC layers (forward order) a selected λ applies to.
    targets: Vec<usize>,
    layer_count: usize,
    /// Pixel variance → normalised-input variance, averaged over channels.
    noise_gain: f64,
}

impl BoundDefense {
    /// Checks the defense against the network and applies fixed λ to it.
    pub fn bind<B: ConvBackend>(
        defense: &TestTimeDefense,
        network: &mut Network<B>,
        identity: &str,
        label: &str,
    ) -> Result<Self> {
        let names = network.csc_layer_names();
        let mut targets = Vec::new();
        if let Some(schedule) = &defense.schedule {
            schedule.check()?;
            if names.is_empty() {
                return Err(Error::input(format!(
                    "{label} ({}) has no CSC layers: the λ schedule '{}' applies only to SDNet \
                     models (--bn-adapt alone works for any model)",
                    network.spec().name(),
                    schedule.name()
                )));
            }
            check_model(schedule, network, identity, label)?;
            targets = match &schedule.rule {
                Rule::Fixed { lambdas } => {
                    apply_fixed(network, lambdas, &names)?;
                    vec![0]
                }
                Rule::PerCondition { layers, .. }
                | Rule::Residual { layers, .. }
                | Rule::Noise { layers, .. }
                | Rule::Discrepancy { layers, .. } => layers.resolve(&names)?,
            };
        }
        let (_, std) = network.spec().normalization();
        let noise_gain = std.iter().map(|s| 1.0 / (*s as f64).powi(2)).sum::<f64>() / 3.0;
        Ok(Self {
            defense: defense.clone(),
            targets,
            layer_count: names.len(),
            noise_gain,
        })
    }

    pub fn mode(&self) -> Mode {
        if self.defense.bn_adapt {
            Mode::BatchStats
        } else {
            Mode::Eval
        }
    }

    /// λ per sample chosen for `images` under condition `condition` (its label), for the
    /// schedules that choose; `None` for fixed λ and BatchNorm adaptation alone.
    pub fn select<B: ConvBackend>(
        &self,
        network: &Network<B>,
        images: &Tensor<B, 4>,
        condition: &str,
    ) -> Option<Vec<f64>> {
        let schedule = self.defense.schedule.as_ref()?;
        let n = images.dims()[0];
        match &schedule.rule {
            Rule::Fixed { .. } => None,
            Rule::PerCondition { default, table, .. } => {
                Some(vec![*table.get(condition).unwrap_or(default); n])
            }
            Rule::Residual {
                probe, map, range, ..
            } => {
                let residual = self.residual(network, images.clone(), vec![*probe; n]);
                Some(
                    residual
                        .iter()
                        .map(|r| map.eval(*r).0.clamp(range[0], range[1]))
                        .collect(),
                )
            }
            Rule::Noise { a, b, range, .. } => Some(
                sigma_of(images)
                    .iter()
                    .map(|s| (a + b * s).clamp(range[0], range[1]))
                    .collect(),
            ),
            Rule::Discrepancy {
                probe,
                clean_sigma,
                tau,
                range,
                iterations,
                ..
            } => {
                let excess = |s: f64| (s * s - clean_sigma * clean_sigma).max(0.0);
                let own = self.residual(network, images.clone(), vec![*probe; n]);
                let targets: Vec<f64> = sigma_of(images)
                    .iter()
                    .zip(&own)
                    .map(|(s, r)| r + tau * excess(*s) * self.noise_gain)
                    .collect();
                // The probe is usually the range's lower end: its residual is already known.
                let at_low = (*probe == range[0]).then_some(own);
                Some(self.bisect(network, images, &targets, *range, *iterations, at_low))
            }
        }
    }

    /// The λ of each sample as the per-layer feed of [`Network::forward_lambdas`].
    pub fn feed<B: ConvBackend>(
        &self,
        lambda: Option<SampleLambda<B>>,
    ) -> Vec<Option<SampleLambda<B>>> {
        let mut feed = vec![None; self.layer_count];
        if let Some(lambda) = lambda {
            for &t in &self.targets {
                feed[t] = Some(lambda.clone());
            }
        }
        feed
    }

    /// Logits of the defended model and the λ chosen per sample (`None`: the layers' own λ).
    pub fn forward<B: ConvBackend>(
        &self,
        network: &Network<B>,
        images: Tensor<B, 4>,
        condition: &str,
    ) -> (Tensor<B, 2>, Option<Vec<f64>>) {
        let chosen = self.select(network, &images, condition);
        let feed = self.feed(chosen.clone().map(SampleLambda::Values));
        let logits = network.forward_lambdas(images, self.mode(), &feed);
        let recorded = chosen.or_else(|| {
            self.defense
                .schedule
                .as_ref()
                .map(|_| vec![network.csc_lambdas()[0]; logits.dims()[0]])
        });
        (logits, recorded)
    }

    /// Mean squared residual per input value of the first CSC layer at λ per sample.
    fn residual<B: ConvBackend>(
        &self,
        network: &Network<B>,
        images: Tensor<B, 4>,
        lambdas: Vec<f64>,
    ) -> Vec<f64> {
        let values = images.dims()[1..].iter().product::<usize>() as f64;
        let out = network
            .first_csc_output_lambda(images, Some(&SampleLambda::Values(lambdas)))
            .expect("bound schedules have a CSC layer");
        to_f64(out.reconstruction_error.div_scalar(values))
    }

    /// Per sample, the λ in `range` whose residual meets `targets` (residuals grow with λ);
    /// `at_low` is the residual at the range's lower end when the caller has it.
    #[allow(clippy::too_many_arguments)]
    fn bisect<B: ConvBackend>(
        &self,
        network: &Network<B>,
        images: &Tensor<B, 4>,
        targets: &[f64],
        range: [f64; 2],
        iterations: usize,
        at_low: Option<Vec<f64>>,
    ) -> Vec<f64> {
        let n = targets.len();
        let at_low =
            at_low.unwrap_or_else(|| self.residual(network, images.clone(), vec![range[0]; n]));
        let at_high = self.residual(network, images.clone(), vec![range[1]; n]);
        let mut low = vec![range[0]; n];
        let mut high = vec![range[1]; n];
        for i in 0..n {
            if at_low[i] >= targets[i] {
                high[i] = range[0];
            } else if at_high[i] <= targets[i] {
                low[i] = range[1];
            }
        }
        for _ in 0..iterations {
            let mid: Vec<f64> = low.iter().zip(&high).map(|(l, h)| (l + h) / 2.0).collect();
            let residual = self.residual(network, images.clone(), mid.clone());
            for i in 0..n {
                if low[i] == high[i] {
                    continue;
                }
                if residual[i] < targets[i] {
                    low[i] = mid[i];
                } else {
                    high[i] = mid[i];
                }
            }
        }
        low.iter().zip(&high).map(|(l, h)| (l + h) / 2.0).collect()
    }
}

/// How an attack treats a defended model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackMode {
    /// Through the whole defended model: λ re-selected at every step, differentiated where the
    /// selection is differentiable (residual maps), held fixed in the backward pass otherwise;
    /// BatchNorm adaptation included.
    #[default]
    Adaptive,
    /// The attacker ignores the defense's reaction: λ held at what the clean image selects,
    /// BatchNorm in inference mode. The defense then re-selects on the adversarial image.
    Static,
    /// Crafted on the undefended model (its own λ, inference BatchNorm), evaluated defended.
    Transfer,
}

impl std::str::FromStr for AttackMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "adaptive" => Ok(Self::Adaptive),
            "static" | "non-adaptive" => Ok(Self::Static),
            "transfer" => Ok(Self::Transfer),
            other => Err(Error::input(format!(
                "unknown attack mode '{other}' (expected adaptive, static or transfer)"
            ))),
        }
    }
}

impl std::fmt::Display for AttackMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Adaptive => "adaptive",
            Self::Static => "static",
            Self::Transfer => "transfer",
        })
    }
}

/// The defended model as an attacker sees it.
pub struct DefendedClassifier<'a, B: ConvBackend + AutodiffBackend>
where
    B::InnerBackend: ConvBackend,
{
    pub network: &'a Network<B>,
    /// The same network without autodiff, for selections made outside the graph.
    pub inner: &'a Network<B::InnerBackend>,
    pub defense: &'a BoundDefense,
    pub condition: &'a str,
    /// Static mode: λ per row of the attacked batch, chosen on the clean images.
    pub held: Option<Vec<f64>>,
}

impl<B: ConvBackend + AutodiffBackend> DefendedClassifier<'_, B>
where
    B::InnerBackend: ConvBackend,
{
    fn lambdas_for(&self, images: &Tensor<B, 4>, rows: &[usize]) -> Option<SampleLambda<B>> {
        if let Some(held) = &self.held {
            return Some(SampleLambda::Values(
                rows.iter().map(|&r| held[r]).collect(),
            ));
        }
        let schedule = self.defense.defense.schedule.as_ref()?;
        if let Rule::Residual {
            probe, map, range, ..
        } = &schedule.rule
        {
            return Some(SampleLambda::Tensor(self.residual_lambda(
                images.clone(),
                *probe,
                map,
                *range,
            )));
        }
        // Not differentiable (median, bisection): chosen on the detached images, so the backward
        // pass holds it fixed; it is chosen anew at every call, i.e. at every attack step.
        let chosen = self
            .defense
            .select(self.inner, &images.clone().inner(), self.condition)?;
        Some(SampleLambda::Values(chosen))
    }

    /// λ(x) = map(residual(x)) in the graph: the local slope of the map times the residual, plus
    /// the offset that makes it the map's value; clamped samples get a constant.
    fn residual_lambda(
        &self,
        images: Tensor<B, 4>,
        probe: f64,
        map: &ResidualMap,
        range: [f64; 2],
    ) -> Tensor<B, 1> {
        let n = images.dims()[0];
        let device = images.device();
        let values = images.dims()[1..].iter().product::<usize>() as f64;
        let residual = self
            .network
            .first_csc_output_lambda(images, Some(&SampleLambda::Values(vec![probe; n])))
            .expect("bound schedules have a CSC layer")
            .reconstruction_error
            .div_scalar(values);
        let host = to_f64(residual.clone().inner());
        let (mut slopes, mut offsets) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for r in host {
            let (lambda, slope) = map.eval(r);
            let clamped = lambda.clamp(range[0], range[1]);
            let slope = if clamped == lambda { slope } else { 0.0 };
            slopes.push(slope as f32);
            offsets.push((clamped - slope * r) as f32);
        }
        let vector = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [n]), &device);
        residual * vector(slopes) + vector(offsets)
    }
}

impl<B: ConvBackend + AutodiffBackend> Classifier<B> for DefendedClassifier<'_, B>
where
    B::InnerBackend: ConvBackend,
{
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let rows: Vec<usize> = (0..images.dims()[0]).collect();
        self.logits_rows(images, &rows)
    }

    fn logits_rows(&self, images: Tensor<B, 4>, rows: &[usize]) -> Tensor<B, 2> {
        let lambdas = self.lambdas_for(&images, rows);
        let mode = if self.held.is_some() {
            Mode::Eval
        } else {
            self.defense.mode()
        };
        self.network
            .forward_lambdas(images, mode, &self.defense.feed(lambdas))
    }
}

fn apply_fixed<B: ConvBackend>(
    network: &mut Network<B>,
    lambdas: &std::collections::BTreeMap<String, f64>,
    names: &[String],
) -> Result<()> {
    // "all" first, then "first", then named layers: the specific overrides the general.
    let mut order: Vec<(&String, &f64)> = lambdas.iter().collect();
    order.sort_by_key(|(k, _)| match k.as_str() {
        "all" => 0,
        "first" => 1,
        _ => 2,
    });
    for (layer, &lambda) in order {
        let positions = match layer.as_str() {
            "all" => (0..names.len()).collect(),
            "first" => vec![0],
            name => Layers::List(vec![name.to_string()]).resolve(names)?,
        };
        for p in positions {
            network.set_layer_lambda(p, lambda);
        }
    }
    Ok(())
}

fn check_model<B: ConvBackend>(
    schedule: &Schedule,
    network: &Network<B>,
    identity: &str,
    label: &str,
) -> Result<()> {
    let Some(model) = &schedule.model else {
        return Ok(());
    };
    let name = network.spec().name();
    if model.name != name || model.weights_sha256 != identity {
        return Err(Error::input(format!(
            "the λ schedule '{}' was calibrated for {} (weights {}), but {label} is {name} \
             (weights {}); calibrate it for this model with `robust-eval lambda calibrate`",
            schedule.name(),
            model.name,
            short(&model.weights_sha256),
            short(identity)
        )));
    }
    Ok(())
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn sigma_of<B: ConvBackend>(images: &Tensor<B, 4>) -> Vec<f64> {
    let dims = images.dims();
    let pixels = images
        .clone()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 pixels");
    estimate_noise(&pixels, dims)
}

fn to_f64<B: burn::tensor::backend::Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("f64 values")
}
