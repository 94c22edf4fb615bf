//! AutoAttack (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
//! diverse parameter-free attacks", ICML 2020): attacks that fail in different ways, run one
//! after another, each only on the samples every earlier one left robust.
//!
//! | version | members (restarts) |
//! |---|---|
//! | standard | APGD-CE (1), APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries) |
//! | plus | APGD-CE (5), APGD-DLR (5), FAB (5), Square (5000), APGD-T (9), FAB-T (9) |
//! | rand | APGD-CE and APGD-DLR with EOT over 20 passes, for randomised models |
//! | custom | any list of members |
//!
//! Contract: a sample counts as broken by the first member that misclassifies it within the
//! budget; its adversarial image is that member's. [`Perturbed::broken_by`] gives the member's
//! position, [`Perturbed::queries`] Square's model evaluations. Each member draws its random
//! numbers from its own stream.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::driver::run_unchecked;
use crate::samples::{select, values};
use crate::{
    Apgd, ApgdTargeted, Attack, AttackConfig, Classifier, Fab, Goal, Images, Norm, Perturbed, Rows,
    Square,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    Standard,
    Plus,
    Rand,
    Custom,
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standard" => Ok(Self::Standard),
            "plus" => Ok(Self::Plus),
            "rand" => Ok(Self::Rand),
            "custom" => Ok(Self::Custom),
            other => Err(format!(
                "unknown AutoAttack version '{other}' (expected standard, plus, rand or custom)"
            )),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standard => "standard",
            Self::Plus => "plus",
            Self::Rand => "rand",
            Self::Custom => "custom",
        })
    }
}

/// One attack of the ensemble with its restarts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub attack: AttackConfig,
    pub restarts: usize,
}

impl Member {
    /// The name AutoAttack users know: apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square, …
    pub fn name(&self) -> String {
        self.attack.display_name()
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AutoAttack {
    pub eps: f64,
    pub norm: Norm,
    pub version: Version,
    pub members: Vec<Member>,
}

impl AutoAttack {
    /// The members of `version` (not `custom`) at `eps`.
    pub fn new(version: Version, eps: f64, norm: Norm) -> Result<Self, String> {
        let member = |attack, restarts| Member { attack, restarts };
        let members = match version {
            Version::Standard => vec![
                member(AttackConfig::Apgd(Apgd::new(eps, norm)), 1),
                member(AttackConfig::ApgdT(ApgdTargeted::new(eps, norm)), 1),
                member(AttackConfig::Fab(Fab::targeted(eps, norm)), 1),
                member(AttackConfig::Square(Square::new(eps, norm)), 1),
            ],
            Version::Plus => vec![
                member(AttackConfig::Apgd(Apgd::new(eps, norm)), 5),
                member(AttackConfig::Apgd(Apgd::dlr(eps, norm)), 5),
                member(AttackConfig::Fab(Fab::untargeted(eps, norm)), 5),
                member(AttackConfig::Square(Square::new(eps, norm)), 1),
                member(AttackConfig::ApgdT(ApgdTargeted::new(eps, norm)), 1),
                member(AttackConfig::Fab(Fab::targeted(eps, norm)), 1),
            ],
            Version::Rand => vec![
                member(
                    AttackConfig::Apgd(Apgd {
                        eot: 20,
                        ..Apgd::new(eps, norm)
                    }),
                    1,
                ),
                member(
                    AttackConfig::Apgd(Apgd {
                        eot: 20,
                        ..Apgd::dlr(eps, norm)
                    }),
                    1,
                ),
            ],
            Version::Custom => {
                return Err("the custom version takes its members from a list".into());
            }
        };
        Ok(Self {
            eps,
            norm,
            version,
            members,
        })
    }

    /// A custom ensemble of the members named (standard settings for each).
    pub fn custom(names: &[&str], eps: f64, norm: Norm) -> Result<Self, String> {
        if names.is_empty() {
            return Err("a custom AutoAttack needs at least one attack".into());
        }
        let members = names
            .iter()
            .map(|name| member_named(name, eps, norm))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            eps,
            norm,
            version: Version::Custom,
            members,
        })
    }

    pub fn member_names(&self) -> Vec<String> {
        self.members.iter().map(Member::name).collect()
    }
}

/// The standard-version settings of one member, by its AutoAttack name.
pub fn member_named(name: &str, eps: f64, norm: Norm) -> Result<Member, String> {
    let attack = match name {
        "apgd-ce" => AttackConfig::Apgd(Apgd::new(eps, norm)),
        "apgd-dlr" => AttackConfig::Apgd(Apgd::dlr(eps, norm)),
        "apgd-t" => AttackConfig::ApgdT(ApgdTargeted::new(eps, norm)),
        "fab" => AttackConfig::Fab(Fab::untargeted(eps, norm)),
        "fab-t" => AttackConfig::Fab(Fab::targeted(eps, norm)),
        "square" => AttackConfig::Square(Square::new(eps, norm)),
        other => {
            return Err(format!(
                "unknown AutoAttack member '{other}' (expected apgd-ce, apgd-dlr, apgd-t, fab, \
                 fab-t or square)"
            ))
        }
    };
    Ok(Member {
        attack,
        restarts: 1,
    })
}

/// The seed salt of member `position`: a hash of its name, how often that name came before, and
/// the outer restart.
fn stream_salt(members: &[Member], position: usize, restart: usize) -> u64 {
    let name = members[position].name();
    let repeat = members[..position]
        .iter()
        .filter(|m| m.name() == name)
        .count();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for byte in name.bytes().chain([repeat as u8, restart as u8]) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl<B: AutodiffBackend> Attack<B> for AutoAttack {
    fn perturb<M: Classifier<B>>(
        &self,
        model: &M,
        x: Images<B>,
        goal: &Goal,
        restart: usize,
    ) -> Perturbed<B> {
        let n = goal.len();
        let dims = x.dims();
        let per = dims[1] * dims[2] * dims[3];
        let device = x.device();
        let mut pixels = values(x.clone());
        let mut broken_by: Vec<Option<usize>> = vec![None; n];
        let mut zero_gradient = vec![false; n];
        let mut queries = vec![0usize; n];
        for (position, member) in self.members.iter().enumerate() {
            let active: Vec<usize> = (0..n).filter(|&i| broken_by[i].is_none()).collect();
            if active.is_empty() {
                break;
            }
            let mut sub_goal = goal.subset(&active);
            // Each member draws from a stream of its own, named by the member (and its repeat),
            // so that a member run alone makes exactly the draws it makes in the ensemble.
            let salt = stream_salt(&self.members, position, restart);
            sub_goal.seeds.iter_mut().for_each(|s| *s ^= salt);
            // Through a trait object: the members may be ensembles themselves, and a generic
            // wrapper would nest without end.
            let sub_model: Rows<'_, dyn Classifier<B> + '_> = Rows {
                model: model as &dyn Classifier<B>,
                rows: &active,
            };
            let outcome = run_unchecked(
                &member.attack,
                &sub_model,
                select(&x, &active),
                &sub_goal,
                member.restarts,
            );
            let adv = values(outcome.adversarial);
            for (k, &i) in active.iter().enumerate() {
                if position == 0 {
                    zero_gradient[i] = outcome.zero_gradient[k];
                }
                queries[i] += outcome.queries.as_ref().map_or(0, |q| q[k]);
                if outcome.success[k] {
                    pixels[i * per..(i + 1) * per].copy_from_slice(&adv[k * per..(k + 1) * per]);
                    broken_by[i] = Some(position);
                }
            }
        }
        let mut perturbed = Perturbed::new(
            Tensor::from_data(TensorData::new(pixels, dims), &device),
            zero_gradient,
        );
        perturbed.broken_by = Some(broken_by);
        if self
            .members
            .iter()
            .any(|m| matches!(m.attack, AttackConfig::Square(_)))
        {
            perturbed.queries = Some(queries);
        }
        perturbed
    }

    fn norm(&self) -> Norm {
        self.norm
    }

    fn eps(&self) -> f64 {
        self.eps
    }
}
