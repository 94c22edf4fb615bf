//! Data-parallel training on burn-collective: every peer holds the whole model, trains on its own
//! share of each global batch, and the gradients are averaged (all-reduce, mean) before every SGD
//! step, so that all peers take the same step and the recipe's global batch and schedule hold.
//!
//! Peers are threads of this process (`--workers`), each in its own rayon pool with a share of the
//! cores (or on its own GPU); several processes (`--nodes`) meet through burn-collective's global
//! orchestrator, which node 0 hosts, and the [control channel](super::control) that checks their
//! settings and notices a lost peer.
//!
//! BatchNorm keeps per-peer batch statistics, as PyTorch's DistributedDataParallel without SyncBN:
//! each peer normalises with the statistics of its own share. The running statistics that are
//! saved are rank 0's (DDP broadcasts rank 0's buffers, to the same effect).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use burn::backend::Autodiff;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation};
use sha2::{Digest, Sha256};

use super::control::{Announcement, Control};
use super::world::World;
use super::{Optim, TrainOutcome, TrainRequest, TrainState};
use crate::error::{Error, Result};
use crate::kernels::ConvBackend;
use crate::models::Network;

/// One participant of a run.
pub(crate) struct Peer<'w> {
    pub world: &'w World,
    /// Global rank; rank 0 validates and writes.
    pub rank: usize,
    pub local_rank: usize,
}

impl<'w> Peer<'w> {
    pub fn solo(world: &'w World) -> Self {
        Self {
            world,
            rank: 0,
            local_rank: 0,
        }
    }

    pub fn writes(&self) -> bool {
        self.rank == 0
    }

    /// The collective id, when this peer trains with others.
    pub fn collective(&self) -> Option<PeerId> {
        self.world
            .is_distributed()
            .then_some(PeerId(self.rank as u32))
    }
}

/// Runs every local peer of this process and returns local peer 0's outcome.
pub(crate) fn train<B: ConvBackend>(
    request: &TrainRequest<'_>,
    device: &B::Device,
) -> Result<TrainOutcome> {
    let world = &request.world;
    world.validate(request.recipe.batch_size)?;
    if world.nodes > 1 {
        quiet_library_logs();
        if world.node_rank == 0 {
            start_orchestrator(world)?;
        }
    }
    // Forget peers that an earlier run in this process left behind (one that failed).
    burn_collective::reset_collective::<B>();
    let threads_each = (rayon::current_num_threads() / world.workers).max(1);
    let first_failure = AtomicUsize::new(usize::MAX);
    let results: Vec<Result<TrainOutcome>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..world.workers)
            .map(|local_rank| {
                let first_failure = &first_failure;
                scope.spawn(move || {
                    let peer = Peer {
                        world,
                        rank: world.global_rank(local_rank),
                        local_rank,
                    };
                    let result = run_peer::<B>(request, &peer, device, threads_each);
                    if result.is_err() {
                        let _ = first_failure.compare_exchange(
                            usize::MAX,
                            local_rank,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
                    result
                })
            })
            .collect();
        // A failed peer leaves the others waiting in a collective; resetting the local server
        // drops their pending operations, and they return errors.
        while !handles.iter().all(|h| h.is_finished()) {
            if first_failure.load(Ordering::SeqCst) != usize::MAX {
                burn_collective::reset_collective::<B>();
            }
            thread::sleep(Duration::from_millis(20));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::input("a training peer panicked")))
            })
            .collect()
    });
    let failed = first_failure.load(Ordering::SeqCst);
    let mut results = results.into_iter().enumerate();
    if failed != usize::MAX {
        let (_, error) = results.nth(failed).expect("the failed peer exists");
        return Err(error.err().expect("it failed"));
    }
    results.next().expect("at least one worker").1
}

fn run_peer<B: ConvBackend>(
    request: &TrainRequest<'_>,
    peer: &Peer<'_>,
    device: &B::Device,
    threads: usize,
) -> Result<TrainOutcome> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            Error::input(format!(
                "cannot start the threads of peer {}: {e}",
                peer.rank
            ))
        })?;
    let device = if request.device_per_worker {
        peer_device::<B>(device, peer.local_rank)
    } else {
        device.clone()
    };
    pool.install(|| super::train_peer::<B>(request, peer, &device))
}

/// GPU `index + local_rank` for local peer `local_rank`.
fn peer_device<B: ConvBackend>(device: &B::Device, local_rank: usize) -> B::Device {
    use burn::tensor::backend::Device;
    let mut id = device.to_id();
    id.index_id += local_rank as u16;
    B::Device::from_id(id)
}

/// Joins the run: the control channel (local peer 0 of a multi-process run), then the collective.
pub(crate) fn join<B: ConvBackend>(
    peer: &Peer<'_>,
    announcement: impl FnOnce() -> Announcement,
    device: &B::Device,
) -> Result<Option<Control>> {
    let world = peer.world;
    let control = if world.nodes > 1 && peer.local_rank == 0 {
        let ports = world.ports()?;
        ensure_free(ports.tensor_service, "this node's tensor service")?;
        Some(Control::join(world, &announcement())?)
    } else {
        None
    };
    burn_collective::register::<B>(
        PeerId(peer.rank as u32),
        device.clone(),
        collective_config(world)?,
    )
    .map_err(|e| collective_error(peer, "joining the collective", e))?;
    Ok(control)
}

/// Leaves the collective; node 0's control channel waits for the others to leave too.
pub(crate) fn leave<B: ConvBackend>(peer: &Peer<'_>, control: Option<Control>) -> Result<()> {
    burn_collective::finish_collective::<B>(PeerId(peer.rank as u32))
        .map_err(|e| collective_error(peer, "leaving the collective", e))?;
    if let Some(control) = control {
        control.finish();
    }
    Ok(())
}

fn collective_config(world: &World) -> Result<CollectiveConfig> {
    let config = CollectiveConfig::default().with_num_devices(world.workers);
    if world.nodes == 1 {
        return Ok(config);
    }
    let ports = world.ports()?;
    let coordinator = world.coordinator_addr()?;
    let orchestrator = std::net::SocketAddr::new(coordinator.ip(), ports.orchestrator);
    let host = world.local_host()?;
    let address = |text: String| {
        text.parse()
            .map_err(|e| Error::input(format!("bad address {text}: {e}")))
    };
    let node = if host.contains(':') {
        format!("ws://[{host}]:{}", ports.tensor_service)
    } else {
        format!("ws://{host}:{}", ports.tensor_service)
    };
    // A tree, not burn-collective's default ring: the ring cannot split a tensor with fewer
    // elements than nodes (one-element parameters, the epoch statistics).
    Ok(config
        .with_num_nodes(world.nodes as u32)
        .with_global_address(address(format!("ws://{orchestrator}"))?)
        .with_node_address(address(node)?)
        .with_data_service_port(ports.tensor_service)
        .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2)))
}

/// burn-communication installs an INFO-level logger with its first server unless one exists;
/// keep its warnings and errors only.
fn quiet_library_logs() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Node 0 hosts burn-collective's orchestrator on a thread of its own for the whole run.
fn start_orchestrator(world: &World) -> Result<()> {
    let port = world.ports()?.orchestrator;
    ensure_free(port, "the collective orchestrator")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::input(format!("cannot start the orchestrator's runtime: {e}")))?;
    thread::spawn(move || runtime.block_on(burn_collective::start_global_orchestrator(port)));
    Ok(())
}

/// burn-collective's servers log a busy port and carry on; find out first, with a clear error.
fn ensure_free(port: u16, what: &str) -> Result<()> {
    TcpListener::bind(("0.0.0.0", port)).map(drop).map_err(|e| {
        Error::input(format!(
            "port {port} for {what} is not free ({e}); choose another --coordinator port \
             (a run uses that port and the ones after it: one for the orchestrator, one per node)"
        ))
    })
}

/// Averages the gradients over all peers.
pub(crate) fn average_gradients<B: ConvBackend>(
    peer: &Peer<'_>,
    id: PeerId,
    grads: burn::optim::GradientsParams,
) -> Result<burn::optim::GradientsParams> {
    grads
        .all_reduce::<B>(id, ReduceOperation::Mean)
        .map_err(|e| collective_error(peer, "averaging the gradients", e))
}

/// Sums a few numbers (the epoch's loss, hits and images) over all peers.
pub(crate) fn sum_over_peers<B: ConvBackend, const N: usize>(
    peer: &Peer<'_>,
    id: PeerId,
    values: [f64; N],
    device: &B::Device,
) -> Result<[f64; N]> {
    let floats: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let tensor = Tensor::<B, 1>::from_floats(floats.as_slice(), device);
    let summed = burn_collective::all_reduce::<B>(
        id,
        tensor.into_primitive().tensor(),
        ReduceOperation::Sum,
    )
    .map_err(|e| collective_error(peer, "summing the epoch statistics", e))?;
    let summed = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed))
        .into_data()
        .to_vec::<f32>()
        .expect("f32 tensor");
    Ok(std::array::from_fn(|i| summed[i] as f64))
}

fn collective_error(
    peer: &Peer<'_>,
    during: &str,
    error: burn_collective::CollectiveError,
) -> Error {
    Error::input(format!(
        "rank {} failed while {during}: {error:?} (another peer stopped or disagrees)",
        peer.rank
    ))
}

/// What this process announces to node 0: its settings, start point and a digest of its state.
pub(crate) fn announcement<B: ConvBackend>(
    world: &World,
    run: &serde_json::Value,
    network: &Network<Autodiff<B>>,
    optimizer: &Optim<B>,
    state: &TrainState,
) -> Announcement {
    let mut digest = Sha256::new();
    digest_tensors(&mut digest, network);
    digest_optimizer::<B>(&mut digest, optimizer);
    let warm = network.clone().csc_warm_state();
    digest.update(serde_json::to_vec(&warm).expect("vectors serialise"));
    Announcement {
        node_rank: world.node_rank,
        workers: world.workers,
        nodes: world.nodes,
        run: run.clone(),
        epoch: state.epoch,
        iteration: state.iteration,
        weights: digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// Every tensor of the model (parameters and running statistics), by path.
fn digest_tensors<B: ConvBackend>(digest: &mut Sha256, network: &Network<Autodiff<B>>) {
    use burn_store::ModuleSnapshot;
    for snapshot in network.collect(None, None, true) {
        digest.update(snapshot.full_path().as_bytes());
        let data = snapshot
            .to_data()
            .expect("the model's tensors are readable");
        digest.update(format!("{:?}", data.shape).as_bytes());
        digest.update(data.as_bytes());
    }
}

/// The optimizer's state in parameter order (its record is a hash map, whose order varies).
fn digest_optimizer<B: ConvBackend>(digest: &mut Sha256, optimizer: &Optim<B>) {
    use burn::optim::Optimizer;
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let mut entries: Vec<_> = optimizer.to_record().into_iter().collect();
    entries.sort_by_key(|(id, _)| id.val());
    for (id, record) in entries {
        digest.update(id.val().to_le_bytes());
        let bytes = recorder
            .record(record, ())
            .expect("the optimizer state serialises");
        digest.update(&bytes);
    }
}
