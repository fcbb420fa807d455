//! Shared pieces of the integration tests: the actors that the multi-process tests run on
//! separate nodes, and a handle on a node process (`test_node` binary) that kills it on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pulsing::prelude::*;

pub mod gossip;
pub mod raw;
pub mod values;

/// An actor that runs on a separate node process.
pub struct Worker {
    /// Which node it runs on.
    pub node: String,
    /// How many items `ticks` streams have produced.
    pub produced: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// How many `ticks` and `count` streams the node has dropped (ended or cancelled).
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// What `record` was given, in the order the actor ran the calls.
    pub records: Vec<u64>,
}

impl Worker {
    /// A worker named after its node.
    pub fn new(node: impl Into<String>) -> Self {
        Worker {
            node: node.into(),
            produced: Default::default(),
            dropped: Default::default(),
            records: Vec::new(),
        }
    }
}

#[pulsing::remote]
impl Worker {
    /// Tags `text` with the node's name.
    pub fn process(&mut self, text: String) -> String {
        format!("{text} processed by {}", self.node)
    }

    /// Remembers `n`.
    pub fn record(&mut self, n: u64) {
        self.records.push(n);
    }

    /// Everything `record` was given, in order.
    pub fn records(&self) -> Vec<u64> {
        self.records.clone()
    }

    /// Returns `data` unchanged.
    pub fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    /// The numbers 0..n.
    pub fn count(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        let dropped = DropCount(self.dropped.clone());
        futures_util::stream::iter(0..n).inspect(move |_| {
            let _ = &dropped;
        })
    }

    /// The numbers 0..n, then a panic in the producer (on its pump task, not the actor's).
    pub fn count_then_panic(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(0..=n).map(move |i| {
            if i == n {
                panic!("the stream broke after {n} items");
            }
            i
        })
    }

    /// An endless stream that counts what it produced.
    pub fn ticks(&self) -> impl Stream<Item = u64> + Send + 'static {
        let produced = self.produced.clone();
        let dropped = DropCount(self.dropped.clone());
        futures_util::stream::repeat(()).map(move |()| {
            let _ = &dropped;
            produced.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        })
    }

    /// How many `ticks` and `count` streams this actor's node has dropped: a stream that ended,
    /// or one whose consumer went away (so a cancel reached the producer, which flow control
    /// alone would only have held still).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many items `ticks` streams have produced so far.
    pub fn produced(&self) -> u64 {
        self.produced.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers after `ms` milliseconds.
    pub async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    /// Takes `data`, answers its length after `ms` milliseconds (a slow actor with big calls).
    pub async fn absorb(&self, data: Vec<u8>, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        data.len() as u64
    }

    /// A business error.
    pub fn refuse(&self, why: String) -> Result<(), String> {
        Err(why)
    }

    /// Panics.
    pub fn boom(&self) -> u32 {
        panic!("boom on {}", self.node)
    }
}

/// Counts one when dropped: moved into a stream, it tells when the stream is gone.
struct DropCount(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Two actor types both called `Ledger`, in two modules, whose `balance` answers differently
/// typed values: a typed call must never decode one as the other (issue #12 item 9).
pub mod bank_a {
    /// A ledger that counts in numbers.
    pub struct Ledger;

    #[pulsing::remote]
    impl Ledger {
        /// The balance.
        pub fn balance(&self) -> u64 {
            21
        }
    }
}

/// The other `Ledger` (see [`bank_a`]).
pub mod bank_b {
    /// A ledger that counts in words.
    pub struct Ledger;

    #[pulsing::remote]
    impl Ledger {
        /// The balance.
        pub fn balance(&self) -> String {
            "twenty-one".into()
        }
    }
}

/// Another actor type, for type-mismatch tests.
pub struct Clerk;

#[pulsing::remote]
impl Clerk {
    /// A reply.
    pub fn stamp(&self) -> String {
        "stamped".into()
    }
}

/// Reports what its node sees of the cluster, so tests can check every node's view.
pub struct Probe {
    /// The node it reports on.
    pub system: ActorSystem,
}

#[pulsing::remote]
impl Probe {
    /// This node's id.
    pub fn node_id(&self) -> String {
        self.system
            .node_id()
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    /// The ids of the live members this node sees, sorted.
    pub fn members(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .system
            .members()
            .iter()
            .map(|m| m.node.to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Spawns a `Worker` named `name` on this node; its actor id.
    pub async fn spawn_worker(&self, name: String) -> Result<u64, String> {
        Worker::spawn_named(&self.system, name, Worker::new("respawned"))
            .await
            .map(|w| w.id())
            .map_err(|e| e.to_string())
    }

    /// Spawns a `Clerk` named `name` on this node; its actor id.
    pub async fn spawn_clerk(&self, name: String) -> Result<u64, String> {
        Clerk::spawn_named(&self.system, name, Clerk)
            .await
            .map(|c| c.id())
            .map_err(|e| e.to_string())
    }

    /// The node ids holding `name`, as this node sees them, sorted.
    pub fn holders(&self, name: String) -> Vec<String> {
        let mut ids: Vec<String> = self
            .system
            .instances(&name)
            .iter()
            .map(|i| i.node.to_string())
            .collect();
        ids.sort();
        ids
    }
}

/// A cluster node in this process on a free loopback port, joining through `seed`.
pub async fn client(seed: &str) -> ActorSystem {
    ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds([seed])
        .build()
        .await
        .expect("client node starts")
}

/// Polls `check` every 50 ms until it returns `true`; panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a test waits for a node process to print its first line.
pub const START_WAIT: Duration = Duration::from_secs(30);

/// The first line `from` prints, read on a thread of its own so that a node that hangs before
/// printing fails the test after `within` instead of hanging it; `None` then (or on EOF).
pub fn first_line_within(
    from: impl std::io::Read + Send + 'static,
    within: Duration,
) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(from).read_line(&mut line);
        let _ = tx.send(read.ok().filter(|&n| n > 0).map(|_| line));
    });
    rx.recv_timeout(within).ok().flatten()
}

/// A free loopback port below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`). Sibling tests that bind port 0, and outgoing
/// connections, only ever get ephemeral ports, so a test may kill a node bound here and start
/// another at the same address without racing them for the port.
pub fn unshared_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (from, span) = (10_000u16, low.saturating_sub(10_000).max(1));
    for _ in 0..1000 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = from + (random % u64::from(span)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {low}");
}

/// What `ss` lists on local `port`, for a failure message (empty if `ss` is missing).
fn sockets_on_port(port: &str) -> String {
    Command::new("ss")
        .args(["-tanp", &format!("sport = :{port}")])
        .output()
        .ok()
        .map(|out| {
            format!(
                "; sockets on port {port}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
        .unwrap_or_default()
}

/// A `test_node` process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// The address the node listens on.
    pub addr: String,
}

impl NodeProcess {
    /// Starts `binary` with `args` and waits (up to [`START_WAIT`]) for it to print
    /// `LISTENING <addr>`.
    pub fn start(binary: &str, args: &[&str]) -> NodeProcess {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test node starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let Some(line) = first_line_within(stdout, START_WAIT) else {
            // Exited (its error is on stderr above) or hung: say which, and for a node given
            // an address, what held that port (a node once failed to bind a port
            // `unshared_port` had just found free).
            let exited = (0..100).find_map(|_| {
                let status = child.try_wait().ok().flatten();
                if status.is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                status
            });
            let _ = child.kill();
            let _ = child.wait();
            let holders = args
                .iter()
                .position(|a| *a == "--addr")
                .and_then(|at| args.get(at + 1))
                .and_then(|addr| addr.rsplit(':').next())
                .map(sockets_on_port)
                .unwrap_or_default();
            match exited {
                Some(status) => panic!("the node exited before listening ({status}){holders}"),
                None => panic!("the node printed nothing within {START_WAIT:?}{holders}"),
            }
        };
        let addr = line
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("unexpected first line from the node: {line:?}"))
            .trim()
            .to_owned();
        NodeProcess { child, addr }
    }

    /// Closes the node's stdin: it shuts down gracefully and exits.
    pub fn shut_down(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes with its sockets open, like a hung host. Returns once the
    /// kernel reports it stopped (`kill` returns when the signal is sent, not yet delivered).
    pub fn freeze(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill(1) runs");
        assert!(status.success());
        let stat = format!("/proc/{pid}/stat");
        for _ in 0..1000 {
            let text = std::fs::read_to_string(&stat).expect("the process exists");
            // The state is the field after the parenthesised command name.
            let state = text
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            if state == Some("T") {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the process did not stop");
    }

    /// SIGCONT: a frozen process runs again.
    pub fn thaw(&self) {
        let status = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`: resident now, `VmHWM`: its peak).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// How many file descriptors the process has open.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the process is alive")
            .count()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as `kill -9` does.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a test waits for a stream item (or a whole short stream) before it fails: a stream
/// has no default deadline, so a lost item would otherwise hang the test run.
pub const STREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The next item of `stream`, or a panic after [`STREAM_WAIT`].
pub async fn next_item<S: futures_util::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    use futures_util::StreamExt;
    within(stream.next()).await
}

/// `work`'s output, or a panic after [`STREAM_WAIT`].
pub async fn within<F: std::future::Future>(work: F) -> F::Output {
    tokio::time::timeout(STREAM_WAIT, work)
        .await
        .expect("no stream item within 30 s")
}
