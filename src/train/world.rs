//! Who takes part in a data-parallel run: processes ("nodes", one per machine or per launcher
//! task), each with `workers` peers (threads, one per GPU or a share of the CPU cores), and how the
//! epoch's images are dealt out among them.
//!
//! Ranks follow PyTorch's: global rank = node rank × workers + local rank; rank 0 writes.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of a run and where its processes meet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct World {
    pub nodes: usize,
    pub node_rank: usize,
    /// Peers in each process.
    pub workers: usize,
    /// `HOST:PORT` of node 0's coordinator; needed when `nodes > 1`.
    pub coordinator: Option<String>,
    /// Go through the collective even with one peer (`--workers 1` given explicitly).
    pub collective: bool,
    /// How long a silent peer process is waited for before the run ends.
    pub peer_timeout: Duration,
}

impl World {
    /// One process, one peer, no collective: the plain training loop.
    pub fn single() -> Self {
        Self {
            nodes: 1,
            node_rank: 0,
            workers: 1,
            coordinator: None,
            collective: false,
            peer_timeout: Duration::from_secs(60),
        }
    }

    pub fn size(&self) -> usize {
        self.nodes * self.workers
    }

    pub fn global_rank(&self, local_rank: usize) -> usize {
        self.node_rank * self.workers + local_rank
    }

    pub fn is_distributed(&self) -> bool {
        self.collective || self.size() > 1
    }

    pub fn validate(&self, global_batch: usize) -> Result<()> {
        if self.nodes == 0 || self.workers == 0 {
            return Err(Error::input("--nodes and --workers must be at least 1"));
        }
        if self.node_rank >= self.nodes {
            return Err(Error::input(format!(
                "--node-rank {} is not below --nodes {}",
                self.node_rank, self.nodes
            )));
        }
        if self.nodes > 1 && self.coordinator.is_none() {
            return Err(Error::input(
                "--nodes > 1 needs --coordinator HOST:PORT (node 0's address), or MASTER_ADDR and \
                 MASTER_PORT in the environment",
            ));
        }
        if !global_batch.is_multiple_of(self.size()) {
            return Err(Error::input(format!(
                "the global batch {global_batch} does not split evenly over {} peers \
                 ({} nodes × {} workers): choose a --batch-size divisible by {}",
                self.size(),
                self.nodes,
                self.workers,
                self.size()
            )));
        }
        Ok(())
    }

    /// The images peer `rank` trains on in an epoch whose global order is `order`, as PyTorch's
    /// DistributedSampler deals them: the order padded with its own head to a multiple of the
    /// world size, then every `size`-th image from position `rank`. Step k of every peer thus
    /// covers exactly the k-th global batch of the padded order.
    pub fn shard(&self, order: &[usize], rank: usize) -> Vec<usize> {
        let size = self.size();
        let padded = order.len().div_ceil(size) * size;
        (rank..padded)
            .step_by(size)
            .map(|i| order[i % order.len()])
            .collect()
    }

    /// The coordinator's address, resolved.
    pub fn coordinator_addr(&self) -> Result<SocketAddr> {
        let text = self
            .coordinator
            .as_deref()
            .ok_or_else(|| Error::input("no --coordinator given"))?;
        text.to_socket_addrs()
            .map_err(|e| Error::input(format!("--coordinator {text}: cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| Error::input(format!("--coordinator {text}: no address")))
    }

    /// Ports on node 0 and on each node: the control channel at the coordinator's port, the
    /// collective orchestrator at +1, node R's tensor service at +2+R.
    pub fn ports(&self) -> Result<Ports> {
        let base = self.coordinator_addr()?.port();
        let top = base as usize + 2 + self.nodes;
        if top > u16::MAX as usize {
            return Err(Error::input(format!(
                "--coordinator port {base} leaves no room for the {} ports after it",
                2 + self.nodes
            )));
        }
        Ok(Ports {
            control: base,
            orchestrator: base + 1,
            tensor_service: base + 2 + self.node_rank as u16,
        })
    }

    /// This machine's address as the coordinator sees it: the local end of a route to it.
    pub fn local_host(&self) -> Result<String> {
        let coordinator = self.coordinator_addr()?;
        let probe = UdpSocket::bind(("0.0.0.0", 0))
            .and_then(|s| s.connect(coordinator).map(|_| s))
            .and_then(|s| s.local_addr())
            .map_err(|e| {
                Error::input(format!(
                    "no route from this machine to the coordinator {coordinator}: {e}"
                ))
            })?;
        Ok(probe.ip().to_string())
    }
}

/// The ports a process uses; see [`World::ports`].
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub control: u16,
    pub orchestrator: u16,
    pub tensor_service: u16,
}

/// Topology flags as given on the command line; missing ones are read from the launcher.
#[derive(Clone, Debug, Default)]
pub struct WorldArgs {
    pub workers: Option<usize>,
    pub nodes: Option<usize>,
    pub node_rank: Option<usize>,
    pub coordinator: Option<String>,
    pub peer_timeout_seconds: f64,
}

impl WorldArgs {
    /// Combines the flags with Slurm's (`SLURM_NTASKS`, `SLURM_PROCID`) or torchrun's
    /// (`WORLD_SIZE`, `RANK`, `MASTER_ADDR`, `MASTER_PORT`) variables; a flag wins over a variable.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<World> {
        let number = |name: &str| -> Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim().parse().map_err(|_| {
                        Error::input(format!("environment variable {name}={v} is not a number"))
                    })
                })
                .transpose()
        };
        let nodes = match self.nodes {
            Some(n) => Some(n),
            None => number("WORLD_SIZE")?.or(number("SLURM_NTASKS")?),
        };
        let node_rank = match self.node_rank {
            Some(r) => Some(r),
            None => number("RANK")?.or(number("SLURM_PROCID")?),
        };
        let coordinator = self.coordinator.clone().or_else(|| {
            let host = env("MASTER_ADDR")?;
            let port = env("MASTER_PORT").unwrap_or_else(|| "29500".into());
            Some(format!("{host}:{port}"))
        });
        if !(self.peer_timeout_seconds.is_finite() && self.peer_timeout_seconds > 0.0) {
            return Err(Error::input(format!(
                "--peer-timeout must be a positive number of seconds, got {}",
                self.peer_timeout_seconds
            )));
        }
        let nodes = nodes.unwrap_or(1);
        Ok(World {
            nodes,
            node_rank: node_rank.unwrap_or(0),
            workers: self.workers.unwrap_or(1),
            coordinator: if nodes > 1 { coordinator } else { None },
            collective: self.workers.is_some() || nodes > 1,
            peer_timeout: Duration::from_secs_f64(self.peer_timeout_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(nodes: usize, workers: usize) -> World {
        World {
            nodes,
            workers,
            ..World::single()
        }
    }

    #[test]
    fn shards_are_disjoint_cover_the_order_and_make_up_each_global_batch() {
        let order: Vec<usize> = (0..10).rev().collect();
        let w = world(1, 2);
        let (a, b) = (w.shard(&order, 0), w.shard(&order, 1));
        assert_eq!(a, [9, 7, 5, 3, 1]);
        assert_eq!(b, [8, 6, 4, 2, 0]);
        // Step k of per-peer batch 2 = global batch k of size 4.
        let mut step0: Vec<usize> = a[..2].iter().chain(&b[..2]).copied().collect();
        step0.sort();
        assert_eq!(step0, [6, 7, 8, 9]);
        // Padding like DistributedSampler: 10 images over 4 peers → 12, the head repeated.
        let w = world(2, 2);
        let all: Vec<usize> = (0..4).flat_map(|r| w.shard(&order, r)).collect();
        assert_eq!(all.len(), 12);
        assert_eq!(w.shard(&order, 2), [7, 3, 9]);
        assert_eq!(world(1, 1).shard(&order, 0), order);
    }

    #[test]
    fn launcher_variables_fill_what_the_flags_leave_out() {
        let slurm = |name: &str| match name {
            "SLURM_NTASKS" => Some("4".to_string()),
            "SLURM_PROCID" => Some("2".to_string()),
            "MASTER_ADDR" => Some("node-a".to_string()),
            "MASTER_PORT" => Some("29400".to_string()),
            _ => None,
        };
        let args = WorldArgs {
            workers: Some(2),
            peer_timeout_seconds: 30.0,
            ..WorldArgs::default()
        };
        let w = args.resolve(&slurm).unwrap();
        assert_eq!((w.nodes, w.node_rank, w.workers), (4, 2, 2));
        assert_eq!(w.coordinator.as_deref(), Some("node-a:29400"));
        assert_eq!(w.global_rank(1), 5);
        let torchrun = |name: &str| match name {
            "WORLD_SIZE" => Some("2".to_string()),
            "RANK" => Some("1".to_string()),
            "SLURM_NTASKS" => Some("8".to_string()),
            "MASTER_ADDR" => Some("10.0.0.1".to_string()),
            _ => None,
        };
        let w = args.resolve(&torchrun).unwrap();
        assert_eq!((w.nodes, w.node_rank), (2, 1));
        assert_eq!(w.coordinator.as_deref(), Some("10.0.0.1:29500"));
        let flags = WorldArgs {
            nodes: Some(3),
            node_rank: Some(0),
            coordinator: Some("h:1".into()),
            ..args.clone()
        };
        let w = flags.resolve(&torchrun).unwrap();
        assert_eq!((w.nodes, w.node_rank), (3, 0));
        assert_eq!(w.coordinator.as_deref(), Some("h:1"));
        let bad = |name: &str| (name == "RANK").then(|| "one".to_string());
        let message = args.resolve(&bad).unwrap_err().to_string();
        assert!(message.contains("RANK=one"), "{message}");
        let alone = WorldArgs {
            peer_timeout_seconds: 30.0,
            ..WorldArgs::default()
        };
        assert!(!alone.resolve(&|_| None).unwrap().is_distributed());
    }

    #[test]
    fn a_world_that_cannot_work_is_refused_with_the_reason() {
        let odd = world(1, 3).validate(64).unwrap_err().to_string();
        assert!(odd.contains("64") && odd.contains("3 peers"), "{odd}");
        let mut w = world(2, 1);
        w.node_rank = 2;
        assert!(w
            .validate(64)
            .unwrap_err()
            .to_string()
            .contains("--node-rank 2"));
        w.node_rank = 1;
        assert!(w
            .validate(64)
            .unwrap_err()
            .to_string()
            .contains("--coordinator"));
    }
}
