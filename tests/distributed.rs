//! Data-parallel training (`train --workers/--nodes`): two peers against the per-peer semantics
//! computed by hand, world-size rules, and two processes on 127.0.0.1 — refused when they
//! disagree, ended in bounded time when one dies or hangs, resumed to the uninterrupted weights.
//!
//! burn-collective keeps one local server per process, so the in-process runs of this file take
//! turns (`SERIAL`).

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use burn_store::ModuleSnapshot;
use common::{device, repo, train, B};
use robust_eval::data::{self, DataSource, DatasetKind, Split};
use robust_eval::models::{Domain, ModelSpec, Network};
use robust_eval::train::{augment, Recipe};

type AD = Autodiff<B>;

static SERIAL: Mutex<()> = Mutex::new(());

/// `n` real images written as a CIFAR-10 training file.
fn training_file(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("train.bin");
    let bytes = fs::read(repo("data/cifar10/test_first1000.bin")).unwrap();
    fs::write(&path, &bytes[..n * 3073]).unwrap();
    path
}

/// Every tensor of a saved model (parameters and BatchNorm statistics), by path.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let network = robust_eval::checkpoint::load_native::<B>(path, &device()).unwrap();
    snapshot(&network)
}

fn snapshot<Bk: burn::tensor::backend::Backend>(network: &Network<Bk>) -> Vec<(String, Vec<f32>)>
where
    Network<Bk>: ModuleSnapshot<Bk>,
{
    network
        .collect(None, None, true)
        .iter()
        .map(|s| {
            let data = s.to_data().unwrap().convert::<f32>();
            (s.full_path(), data.to_vec::<f32>().unwrap())
        })
        .collect()
}

/// The largest |a − b| over all tensors, relative to the largest |a|.
fn relative_gap(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    assert_eq!(a.len(), b.len(), "same tensors");
    let (mut gap, mut scale) = (0f64, 0f64);
    for ((name_a, x), (name_b, y)) in a.iter().zip(b) {
        assert_eq!(name_a, name_b);
        assert_eq!(x.len(), y.len(), "{name_a}");
        for (u, v) in x.iter().zip(y) {
            gap = gap.max((u - v).abs() as f64);
            scale = scale.max(u.abs() as f64);
        }
    }
    gap / scale
}

/// (g₀ + g₁) / 2 for every parameter of `network`.
struct Average<'a> {
    shares: [&'a GradientsParams; 2],
    out: GradientsParams,
}

impl ModuleVisitor<AD> for Average<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AD, D>>) {
        let id: ParamId = param.id;
        let [a, b] = self
            .shares
            .map(|g| g.get::<<AD as AutodiffBackend>::InnerBackend, D>(id));
        match (a, b) {
            (Some(a), Some(b)) => self.out.register(id, a.add(b).div_scalar(2.0)),
            (None, None) => {} // not trained (no gradient on either peer)
            _ => panic!("a gradient on one peer only"),
        }
    }
}

/// The documented semantics of `--workers 2`, computed without the collective: two copies of the
/// network each take their share of every global batch (positions 0, 2, 4, … and 1, 3, 5, … of
/// the epoch's order, as DistributedSampler deals them), with their own BatchNorm statistics; the
/// two gradients are averaged and both copies step. Copy 0 is what rank 0 saves.
fn by_hand(spec: &ModelSpec, recipe: &Recipe, train_path: &Path) -> Vec<(String, Vec<f32>)> {
    let set = data::open(
        DatasetKind::Cifar10,
        &DataSource::Path(train_path.to_path_buf()),
        Split::Train,
        None,
    )
    .unwrap();
    let n = set.len();
    let dev = device();
    let mut nets: Vec<Network<AD>> = (0..2)
        .map(|_| Network::<AD>::new(spec, recipe.seed, &dev).with_positional_ids())
        .collect();
    let mut optimizers: Vec<_> = (0..2).map(|_| recipe.sgd().init()).collect();
    let steps_per_epoch = n.div_ceil(recipe.batch_size);
    let total = steps_per_epoch * recipe.epochs;
    let mut iteration = 0;
    for epoch in 0..recipe.epochs {
        let order = augment::epoch_order(recipe.seed, epoch, n);
        for global in order.chunks(recipe.batch_size) {
            let lr = recipe
                .schedule
                .lr(recipe, iteration, total, steps_per_epoch);
            let grads: Vec<GradientsParams> = (0..2)
                .map(|rank| {
                    let share: Vec<usize> = global.iter().skip(rank).step_by(2).copied().collect();
                    let batch = recipe
                        .augmentation
                        .batch(set.as_ref(), &share, recipe.seed, epoch)
                        .unwrap();
                    let logits = nets[rank].forward_train(batch.images::<AD>(&dev));
                    let loss = attacks::cross_entropy(logits, &batch.labels).mean();
                    GradientsParams::from_grads(loss.backward(), &nets[rank])
                })
                .collect();
            for rank in 0..2 {
                let mut average = Average {
                    shares: [&grads[0], &grads[1]],
                    out: GradientsParams::new(),
                };
                burn::module::Module::visit(&nets[rank], &mut average);
                let mut stepped = optimizers[rank].step(lr, nets[rank].clone(), average.out);
                stepped.normalize_dictionaries();
                nets[rank] = stepped;
            }
            iteration += 1;
        }
    }
    // `valid()` folds in the last running-statistics update, as saving a checkpoint does (a
    // module visit alone reads the value from before it).
    snapshot(&burn::module::AutodiffModule::valid(&nets[0]))
}

/// Two peers × 32 against the hand computation, and against one peer × 64, whose BatchNorm
/// statistics cover all 64 images and so differ.
fn two_peers_match_the_per_peer_semantics(model: &str, width: &str) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let train_path = training_file(tmp.path(), 192);
    let data = train_path.to_str().unwrap();
    let common = [
        "--model",
        model,
        "--width",
        width,
        "--data",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "64",
    ];
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = common.to_vec();
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        let outcome = train(&args).unwrap();
        assert_eq!(outcome.state.iteration, 6, "3 global batches × 2 epochs");
        tensors(&out.join("final.bpk"))
    };
    let two = run("two", &["--workers", "2"]);
    let one = run("one", &[]);

    let spec = ModelSpec::new(model, Domain::Cifar, 10)
        .unwrap()
        .with_width(width.parse().unwrap())
        .unwrap();
    let mut recipe = Recipe::cifar();
    recipe.epochs = 2;
    recipe.batch_size = 64;
    // The peers each run in a pool with half of the threads; so does the hand computation, so
    // that every reduction inside a kernel is split the same way.
    let threads = (rayon::current_num_threads() / 2).max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let reference = pool.install(|| by_hand(&spec, &recipe, &train_path));

    let gap = relative_gap(&reference, &two);
    let bn_effect = relative_gap(&reference, &one);
    println!("{model}: 2×32 vs by hand {gap:.2e}; 1×64 vs by hand {bn_effect:.2e}");
    // Bit for bit: the collective's mean is (g₀ + g₁) / 2, as here, and every kernel splits its
    // work over the same number of threads in both.
    assert_eq!(
        gap, 0.0,
        "{model}: 2 peers are {gap:.2e} from the hand computation"
    );
    assert!(
        bn_effect > 1e-3,
        "{model}: one peer × 64 should differ through BatchNorm, but is only {bn_effect:.2e} away"
    );
}

#[test]
fn two_resnet20_peers_equal_the_hand_computed_data_parallel_step() {
    two_peers_match_the_per_peer_semantics("resnet20", "1");
}

#[test]
fn two_sdnet18_peers_equal_the_hand_computed_data_parallel_step() {
    two_peers_match_the_per_peer_semantics("sdnet18", "0.25");
}

#[test]
fn a_resume_with_another_world_size_is_refused_unless_allowed() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let train_path = training_file(tmp.path(), 128);
    let out = tmp.path().join("run");
    let base = [
        "--model",
        "resnet20",
        "--data",
        train_path.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--out",
        out.to_str().unwrap(),
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        train(&args)
    };
    assert!(
        with(&["--workers", "2", "--stop-after", "3"])
            .unwrap()
            .interrupted
    );
    let message = with(&["--resume"]).err().unwrap().to_string();
    assert!(
        message.contains("trained by 2 peer(s), this run has 1")
            && message.contains("--allow-world-size-change"),
        "{message}"
    );
    let message = with(&["--resume", "--workers", "4"])
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("trained by 2 peer(s), this run has 4"),
        "{message}"
    );
    let done = with(&["--resume", "--allow-world-size-change"]).unwrap();
    assert_eq!(
        done.state.iteration, 4,
        "the schedule goes on by global step"
    );
    assert_eq!(done.state.world_size, 1);

    let odd = with(&["--workers", "3", "--overwrite"])
        .err()
        .unwrap()
        .to_string();
    assert!(odd.contains("does not split evenly over 3 peers"), "{odd}");
}

// ---- Several processes on this machine ----

fn free_port_range(count: u16) -> u16 {
    for _ in 0..50 {
        let base = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base > u16::MAX - count {
            continue;
        }
        if (0..count).all(|i| TcpListener::bind(("0.0.0.0", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} free consecutive ports");
}

struct Node {
    child: Child,
    stderr: PathBuf,
}

impl Node {
    fn wait(mut self, limit: Duration) -> (std::process::ExitStatus, String, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (
                    status,
                    fs::read_to_string(&self.stderr).unwrap(),
                    start.elapsed(),
                );
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "node still running after {limit:?}: {}",
                    fs::read_to_string(&self.stderr).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `robust-eval train` as node `rank` of two, one thread each.
fn spawn_node(rank: usize, port: u16, args: &[&str], logs: &Path) -> Node {
    let stderr = logs.join(format!("node{rank}-{}.err", port));
    let child = Process::new(env!("CARGO_BIN_EXE_robust-eval"))
        .arg("train")
        .args(args)
        .args(["--nodes", "2", "--node-rank", &rank.to_string()])
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Node { child, stderr }
}

fn run_pair(args: &[&str], logs: &Path) -> [(std::process::ExitStatus, String); 2] {
    let port = free_port_range(4);
    let nodes = [0, 1].map(|r| spawn_node(r, port, args, logs));
    nodes.map(|n| {
        let (status, err, _) = n.wait(Duration::from_secs(300));
        (status, err)
    })
}

fn node_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--model",
        "resnet20",
        "--data",
        data,
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--out",
        out,
        "--peer-timeout",
        "5",
    ]
}

/// Waits until rank 0 has checkpointed epoch 1.
fn wait_for_first_epoch(out: &Path) {
    let start = Instant::now();
    while completed_epochs(out) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "epoch 1 never completed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn completed_epochs(out: &Path) -> usize {
    fs::read_to_string(out.join("checkpoint/state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["epoch"].as_u64())
        .unwrap_or(0) as usize
}

#[test]
fn two_processes_survive_a_killed_peer_and_resume_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = training_file(tmp.path(), 256);
    let data = data.to_str().unwrap();
    let whole = tmp.path().join("whole");
    let [(s0, e0), (s1, e1)] = run_pair(&node_args(data, whole.to_str().unwrap()), tmp.path());
    assert!(s0.success() && s1.success(), "{e0}\n{e1}");
    let expected = tensors(&whole.join("final.bpk"));

    // The same run, node 1 killed in the middle of epoch 2.
    let parts = tmp.path().join("parts");
    let args = node_args(data, parts.to_str().unwrap());
    let port = free_port_range(4);
    let node0 = spawn_node(0, port, &args, tmp.path());
    let mut node1 = spawn_node(1, port, &args, tmp.path());
    wait_for_first_epoch(&parts);
    std::thread::sleep(Duration::from_millis(300));
    node1.child.kill().unwrap();
    node1.child.wait().unwrap();
    let (status, stderr, after_kill) = node0.wait(Duration::from_secs(60));
    assert!(!status.success(), "node 0 must fail when node 1 dies");
    assert!(
        stderr.contains("node 1 (ranks 1) closed its connection") && stderr.contains("--resume"),
        "{stderr}"
    );
    println!("node 0 stopped {after_kill:?} after node 1 was killed");
    assert!(
        after_kill < Duration::from_secs(10),
        "node 0 took {after_kill:?} to stop"
    );
    let epochs = completed_epochs(&parts);
    assert!(
        (1..3).contains(&epochs),
        "killed mid-run: {epochs} epochs done"
    );
    assert!(!parts.join("final.bpk").exists());

    let mut resume = args.clone();
    resume.push("--resume");
    let [(s0, e0), (s1, e1)] = run_pair(&resume, tmp.path());
    assert!(s0.success() && s1.success(), "{e0}\n{e1}");
    assert_eq!(
        relative_gap(&expected, &tensors(&parts.join("final.bpk"))),
        0.0,
        "the resumed run ends with the uninterrupted run's weights"
    );

    // Two processes of one thread against one process of two peers: the same arithmetic.
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let threads = tmp.path().join("threads");
    let mut local = node_args(data, threads.to_str().unwrap());
    local.truncate(local.len() - 2);
    local.extend(["--workers", "2"]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| train(&local).unwrap());
    let gap = relative_gap(&expected, &tensors(&threads.join("final.bpk")));
    assert_eq!(gap, 0.0, "2 processes vs 2 threads: {gap:.2e}");
}

#[test]
fn a_hung_peer_ends_the_run_after_the_peer_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = training_file(tmp.path(), 256);
    let out = tmp.path().join("run");
    let args = node_args(data.to_str().unwrap(), out.to_str().unwrap());
    let port = free_port_range(4);
    let mut node0 = spawn_node(0, port, &args, tmp.path());
    let node1 = spawn_node(1, port, &args, tmp.path());
    wait_for_first_epoch(&out);
    // Node 0 stops answering (as a machine that hangs or drops off the network would).
    let pid = node0.child.id().to_string();
    assert!(Process::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let (status, stderr, waited) = node1.wait(Duration::from_secs(60));
    let _ = node0.child.kill();
    let _ = node0.child.wait();
    assert!(!status.success());
    assert!(
        stderr.contains("node 0 (ranks 0) sent nothing for 5 s"),
        "{stderr}"
    );
    println!("node 1 stopped {waited:?} after node 0 was suspended");
    assert!(waited < Duration::from_secs(20), "took {waited:?}");
}

#[test]
fn processes_that_disagree_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = training_file(tmp.path(), 64);
    let out = tmp.path().join("run");
    let args = node_args(data.to_str().unwrap(), out.to_str().unwrap());
    let port = free_port_range(4);
    let node0 = spawn_node(0, port, &args, tmp.path());
    let mut other = args.clone();
    other.extend(["--seed", "2"]);
    let node1 = spawn_node(1, port, &other, tmp.path());
    for node in [node0, node1] {
        let (status, stderr, _) = node.wait(Duration::from_secs(120));
        assert!(!status.success());
        assert!(
            stderr.contains("node 1 differs from node 0 in")
                && stderr.contains("run.recipe.seed: 1 vs 2"),
            "{stderr}"
        );
    }
    assert!(!out.join("checkpoint").exists(), "nothing trained");
}
