//! The control channel of a multi-process run: a TCP star on node 0 beside burn-collective's
//! tensor traffic. It does two things the collective does not:
//!
//! - at start, every process announces its settings and weights; node 0 refuses the run, naming
//!   the field and the node, unless all agree;
//! - while training, the processes exchange heartbeats. A process that exits without saying
//!   goodbye (killed, crashed, failed) closes its socket, and one that stops answering times out;
//!   either way every other process ends with an error that names it, instead of waiting forever
//!   inside an all-reduce. Checkpoints are written atomically, so the last completed epoch survives.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::train::world::World;

/// How long processes wait for each other to start.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// What a process brings to the run; node 0 compares every other node's with its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub node_rank: usize,
    pub workers: usize,
    pub nodes: usize,
    /// Model, recipe and data (as in `run.json`).
    pub run: Value,
    /// Where the run starts: completed epochs and optimizer steps.
    pub epoch: usize,
    pub iteration: usize,
    /// SHA-256 of the starting weights, optimizer state and CSC warm-start vectors.
    pub weights: String,
}

impl Announcement {
    /// The fields in which `other` differs from `self`, as "field: ours vs theirs".
    fn differences(&self, other: &Announcement) -> Vec<String> {
        let mine = flatten(&serde_json::to_value(self).expect("serialises"));
        let theirs = flatten(&serde_json::to_value(other).expect("serialises"));
        let keys: std::collections::BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
        keys.into_iter()
            .filter(|k| k.as_str() != "node_rank" && mine.get(*k) != theirs.get(*k))
            .map(|k| {
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(absent)".into());
                format!("{k}: {} vs {}", show(mine.get(k)), show(theirs.get(k)))
            })
            .collect()
    }
}

fn flatten(value: &Value) -> BTreeMap<String, String> {
    fn walk(prefix: String, value: &Value, out: &mut BTreeMap<String, String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(key, v, out);
                }
            }
            other => {
                out.insert(prefix, other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(String::new(), value, &mut out);
    out
}

/// A live control channel; [`Control::finish`] ends it cleanly.
pub struct Control {
    links: Vec<Link>,
    finished: Arc<AtomicBool>,
    node_rank: usize,
    timeout: Duration,
}

struct Link {
    node: usize,
    writer: Arc<Mutex<TcpStream>>,
    said_goodbye: Arc<AtomicBool>,
}

impl Control {
    /// Meets the other processes: node 0 listens on the coordinator port, the others connect.
    /// Returns once every node has announced matching settings.
    pub fn join(world: &World, me: &Announcement) -> Result<Control> {
        let ports = world.ports()?;
        let streams = if world.node_rank == 0 {
            gather(world, ports.control, me)?
        } else {
            vec![(0, connect(world, me)?)]
        };
        let finished = Arc::new(AtomicBool::new(false));
        let mut links = Vec::new();
        for (node, stream) in streams {
            stream
                .set_read_timeout(Some(world.peer_timeout))
                .and_then(|_| stream.set_write_timeout(Some(world.peer_timeout)))
                .map_err(|e| Error::input(format!("control channel to node {node}: {e}")))?;
            let link = Link {
                node,
                writer: Arc::new(Mutex::new(stream.try_clone().map_err(|e| {
                    Error::input(format!("control channel to node {node}: {e}"))
                })?)),
                said_goodbye: Arc::new(AtomicBool::new(false)),
            };
            watch(world, &link, stream, finished.clone());
            links.push(link);
        }
        let control = Control {
            links,
            finished,
            node_rank: world.node_rank,
            timeout: world.peer_timeout,
        };
        control.beat();
        Ok(control)
    }

    /// Heartbeats from a background thread until the run finishes.
    fn beat(&self) {
        let writers: Vec<_> = self.links.iter().map(|l| l.writer.clone()).collect();
        let finished = self.finished.clone();
        let period = (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
        thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                for writer in &writers {
                    let _ = writer.lock().expect("not poisoned").write_all(b"beat\n");
                }
                thread::sleep(period);
            }
        });
    }

    /// Says goodbye; node 0 waits (bounded) for everyone else's, since it hosts the orchestrator
    /// the others still talk to while they finish.
    pub fn finish(self) {
        self.finished.store(true, Ordering::SeqCst);
        for link in &self.links {
            let _ = link
                .writer
                .lock()
                .expect("not poisoned")
                .write_all(b"goodbye\n");
        }
        if self.node_rank == 0 {
            let deadline = Instant::now() + self.timeout;
            while Instant::now() < deadline
                && !self
                    .links
                    .iter()
                    .all(|l| l.said_goodbye.load(Ordering::SeqCst))
            {
                thread::sleep(Duration::from_millis(20));
            }
        }
        for link in &self.links {
            let _ = link
                .writer
                .lock()
                .expect("not poisoned")
                .shutdown(Shutdown::Both);
        }
    }
}

/// Node 0: accepts every other node, checks its announcement, answers all at once.
fn gather(world: &World, port: u16, me: &Announcement) -> Result<Vec<(usize, TcpStream)>> {
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        Error::input(format!(
            "node 0 cannot listen on the coordinator port {port}: {e}"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::input(format!("coordinator port {port}: {e}")))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut joined: BTreeMap<usize, (TcpStream, Announcement)> = BTreeMap::new();
    while joined.len() + 1 < world.nodes {
        match listener.accept() {
            Ok((stream, from)) => {
                stream
                    .set_nonblocking(false)
                    .and_then(|_| stream.set_read_timeout(Some(START_TIMEOUT)))
                    .map_err(|e| Error::input(format!("connection from {from}: {e}")))?;
                let theirs: Announcement = read_json(&stream)
                    .map_err(|e| Error::input(format!("node at {from} did not announce: {e}")))?;
                let rank = theirs.node_rank;
                if rank == 0 || rank >= world.nodes || joined.contains_key(&rank) {
                    let message = format!("a second process claims node rank {rank} (from {from})");
                    refuse_all(joined.into_values().map(|(s, _)| s), &message);
                    return Err(Error::input(message));
                }
                joined.insert(rank, (stream, theirs));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<String> = (1..world.nodes)
                        .filter(|r| !joined.contains_key(r))
                        .map(|r| r.to_string())
                        .collect();
                    let message = format!(
                        "node(s) {} did not join the coordinator on port {port} within {} s",
                        missing.join(", "),
                        START_TIMEOUT.as_secs()
                    );
                    refuse_all(joined.into_values().map(|(s, _)| s), &message);
                    return Err(Error::input(message));
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::input(format!("coordinator port {port}: {e}"))),
        }
    }
    let disagreements: Vec<String> = joined
        .iter()
        .filter_map(|(rank, (_, theirs))| {
            let diff = me.differences(theirs);
            (!diff.is_empty())
                .then(|| format!("node {rank} differs from node 0 in {}", diff.join("; ")))
        })
        .collect();
    if !disagreements.is_empty() {
        let message = format!(
            "the processes of this run do not agree, so it does not start: {}",
            disagreements.join(" | ")
        );
        refuse_all(joined.into_values().map(|(s, _)| s), &message);
        return Err(Error::input(message));
    }
    let mut streams = Vec::new();
    for (rank, (mut stream, _)) in joined {
        writeln!(stream, "{}", serde_json::json!({"accepted": true}))
            .map_err(|e| Error::input(format!("node {rank} went away while joining: {e}")))?;
        streams.push((rank, stream));
    }
    Ok(streams)
}

fn refuse_all(streams: impl Iterator<Item = TcpStream>, message: &str) {
    for mut stream in streams {
        let _ = writeln!(stream, "{}", serde_json::json!({"refused": message}));
    }
}

/// Nodes 1…: connects to node 0 (retrying while it starts), announces, waits for the verdict.
fn connect(world: &World, me: &Announcement) -> Result<TcpStream> {
    let address = world.coordinator_addr()?;
    let port = world.ports()?.control;
    let target = std::net::SocketAddr::new(address.ip(), port);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut stream = loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                return Err(Error::input(format!(
                    "node {} cannot reach the coordinator {target} within {} s: {e}",
                    world.node_rank,
                    START_TIMEOUT.as_secs()
                )))
            }
        }
    };
    writeln!(
        stream,
        "{}",
        serde_json::to_string(me).expect("announcement serialises")
    )
    .map_err(|e| Error::input(format!("coordinator {target}: {e}")))?;
    stream
        .set_read_timeout(Some(START_TIMEOUT))
        .map_err(|e| Error::input(format!("coordinator {target}: {e}")))?;
    let verdict: Value = read_json(&stream)
        .map_err(|e| Error::input(format!("coordinator {target} gave no answer: {e}")))?;
    if let Some(reason) = verdict.get("refused").and_then(Value::as_str) {
        return Err(Error::input(reason.to_string()));
    }
    Ok(stream)
}

/// Reads one JSON line without buffering past it (the stream carries heartbeats afterwards).
fn read_json<T: for<'de> Deserialize<'de>>(stream: &TcpStream) -> std::result::Result<T, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut reader = stream;
    loop {
        match std::io::Read::read(&mut reader, &mut byte) {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    serde_json::from_slice(&line).map_err(|e| format!("not a valid message: {e}"))
}

/// Reads the peer's heartbeats; a silence, a closed socket or an abort ends this process.
fn watch(world: &World, link: &Link, stream: TcpStream, finished: Arc<AtomicBool>) {
    let node = link.node;
    let said_goodbye = link.said_goodbye.clone();
    let timeout = world.peer_timeout;
    let me = world.node_rank;
    let workers = world.workers;
    RELAYS
        .lock()
        .expect("not poisoned")
        .push(link.writer.clone());
    thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        let reason = loop {
            match lines.next() {
                Some(Ok(line)) if line == "beat" => continue,
                Some(Ok(line)) if line == "goodbye" => {
                    said_goodbye.store(true, Ordering::SeqCst);
                    return;
                }
                Some(Ok(line)) => {
                    if let Some(message) = line.strip_prefix("abort ") {
                        break message.to_string();
                    }
                }
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break format!(
                        "node {node} (ranks {}) sent nothing for {:.0} s: it hangs or cannot be \
                         reached",
                        ranks(node, workers),
                        timeout.as_secs_f64()
                    );
                }
                Some(Err(_)) | None => {
                    break format!(
                        "node {node} (ranks {}) closed its connection without finishing: its \
                         process ended (killed, crashed or failed; see its own output)",
                        ranks(node, workers)
                    );
                }
            }
        };
        if finished.load(Ordering::SeqCst) {
            return;
        }
        abort(me, &reason);
    });
}

/// Every control link of this process, so that node 0 can pass an abort on to the others.
static RELAYS: Mutex<Vec<Arc<Mutex<TcpStream>>>> = Mutex::new(Vec::new());

fn ranks(node: usize, workers: usize) -> String {
    let first = node * workers;
    if workers == 1 {
        first.to_string()
    } else {
        format!("{first}–{}", first + workers - 1)
    }
}

/// Ends the whole process: a peer is gone, and the collective would wait for it forever.
fn abort(me: usize, reason: &str) -> ! {
    if me == 0 {
        for writer in RELAYS.lock().expect("not poisoned").iter() {
            let _ = writeln!(writer.lock().expect("not poisoned"), "abort {reason}");
        }
    }
    eprintln!(
        "error: training stopped on node {me}: {reason}. The checkpoint of the last completed \
         epoch is intact; start every node again with --resume"
    );
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_field_and_both_values() {
        let a = Announcement {
            node_rank: 0,
            workers: 1,
            nodes: 2,
            run: serde_json::json!({"recipe": {"seed": 1, "lr": 0.1}, "model": "resnet20"}),
            epoch: 0,
            iteration: 0,
            weights: "aa".into(),
        };
        let mut b = a.clone();
        b.node_rank = 1;
        assert!(a.differences(&b).is_empty());
        b.run["recipe"]["seed"] = 2.into();
        b.weights = "bb".into();
        assert_eq!(
            a.differences(&b),
            ["run.recipe.seed: 1 vs 2", "weights: \"aa\" vs \"bb\""]
        );
    }
}
