//! Cross-process benchmark: a Pulsing client calling a Pulsing actor in another process, against
//! the floor of a raw tokio-tungstenite WebSocket echo of postcard frames, in the same run; then
//! the same workloads with a cluster secret (Noise handshake, AES-GCM records) against the
//! unencrypted figures. The server side is this same binary, started as a child process
//! (`--serve pulsing|secure|raw`).
//!
//! Run: `cargo bench -p pulsing --bench remote` (add `-- --quick` for a short run, or
//! `-- --soak SECONDS [--size BYTES] [--window CALLS] [--secure | --raw]` to keep echoes in
//! flight for a profiler: 1024 of them, or 16 for payloads over 1 KiB, unless `--window` says;
//! `--raw` soaks the floor instead).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::SinkExt;
use pulsing::prelude::*;
use serde_bytes::ByteBuf;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The Pulsing actor under test.
#[derive(Debug)]
pub struct Echo;

#[pulsing::remote]
impl Echo {
    /// Returns its argument. Binary data as `ByteBuf` (serde_bytes), as the floor sends it:
    /// a plain `Vec<u8>` is (de)serialized byte by byte by serde.
    pub fn echo(&self, data: ByteBuf) -> ByteBuf {
        data
    }

    /// `n` small items.
    pub fn items(&self, n: u64) -> impl Stream<Item = u64> + Send + 'static {
        futures_util::stream::iter(0..n)
    }
}

/// Raw protocol: a request is postcard `(id, payload)`, echoed back. A stream request is
/// `(u64::MAX, n as 8 little-endian bytes)`, answered by n frames `(i, [])` and one `(u64::MAX, [])`.
type RawFrame = (u64, ByteBuf);

async fn serve_raw(listener: TcpListener) {
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let (mut sink, mut stream) = ws.split();
            let (out, mut queued) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
            tokio::spawn(async move {
                while let Some(frame) = queued.recv().await {
                    if sink.feed(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                    while let Ok(frame) = queued.try_recv() {
                        let _ = sink.feed(Message::Binary(frame.into())).await;
                    }
                    let _ = sink.flush().await;
                }
            });
            while let Some(Ok(Message::Binary(bytes))) = stream.next().await {
                let (id, payload): RawFrame = postcard::from_bytes(&bytes).unwrap();
                if id == u64::MAX {
                    let n = u64::from_le_bytes(payload[..8].try_into().unwrap());
                    for i in 0..n {
                        let _ = out
                            .send(postcard::to_stdvec(&(i, ByteBuf::new())).unwrap())
                            .await;
                    }
                    let _ = out
                        .send(postcard::to_stdvec(&(u64::MAX, ByteBuf::new())).unwrap())
                        .await;
                } else {
                    let _ = out.send(postcard::to_stdvec(&(id, payload)).unwrap()).await;
                }
            }
        });
    }
}

/// A raw client: one connection; a writer task that batches whatever is queued into one flush
/// (as Pulsing's writer does), and the reader half.
struct Raw {
    out: tokio::sync::mpsc::Sender<Vec<u8>>,
    stream: futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<TcpStream>>,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .unwrap();
        let (mut sink, stream) = ws.split();
        let (out, mut queued) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
        tokio::spawn(async move {
            while let Some(frame) = queued.recv().await {
                sink.feed(Message::Binary(frame.into())).await.unwrap();
                while let Ok(frame) = queued.try_recv() {
                    sink.feed(Message::Binary(frame.into())).await.unwrap();
                }
                sink.flush().await.unwrap();
            }
        });
        Raw { out, stream }
    }

    async fn send(&mut self, id: u64, payload: &[u8]) {
        let frame = postcard::to_stdvec(&(id, serde_bytes::Bytes::new(payload))).unwrap();
        self.out.send(frame).await.unwrap();
    }

    async fn recv(&mut self) -> RawFrame {
        match self.stream.next().await {
            Some(Ok(Message::Binary(bytes))) => postcard::from_bytes(&bytes).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// `n` echoes of `payload` with `window` in flight; returns the elapsed time.
    async fn pipelined(&mut self, n: usize, window: usize, payload: &[u8]) -> Duration {
        let start = Instant::now();
        let (mut sent, mut got) = (0, 0);
        while sent < window.min(n) {
            self.send(sent as u64, payload).await;
            sent += 1;
        }
        while got < n {
            self.recv().await;
            got += 1;
            if sent < n {
                self.send(sent as u64, payload).await;
                sent += 1;
            }
        }
        start.elapsed()
    }
}

fn spawn_server(kind: &str) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", kind])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// CPU time of this process and one server process, from the kernel's per-thread run-time
/// counters (`/proc/<pid>/task/*/schedstat`, nanoseconds): CPU per operation is steadier than
/// wall time on a shared machine, and shows what a figure costs.
#[derive(Clone, Copy)]
struct Meter {
    server: u32,
}

impl Meter {
    fn cpu(self) -> Duration {
        let total: u64 = [std::process::id(), self.server]
            .into_iter()
            .flat_map(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/task"))
                    .into_iter()
                    .flatten()
            })
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
                stat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        Duration::from_nanos(total)
    }
}

/// Wall time and CPU time (both processes) of `work`.
async fn metered<F: std::future::Future<Output = Duration>>(meter: Meter, work: F) -> (f64, f64) {
    let before = meter.cpu();
    let wall = work.await;
    (wall.as_secs_f64(), (meter.cpu() - before).as_secs_f64())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// One row: the figure of each side, their ratio, and CPU (µs, both processes) per operation.
fn row(name: &str, a: (f64, f64), b: (f64, f64), unit: &str, higher_is_better: bool) {
    let ((pulsing, a_cpu), (raw, b_cpu)) = (a, b);
    let ratio = pulsing / raw;
    let what = if higher_is_better { "thr" } else { "time" };
    println!(
        "{name:<40} {pulsing:>12.1} {raw:>12.1} {unit:<9} {ratio:>5.2}x {what:<4} {a_cpu:>8.2} {b_cpu:>8.2} {:>5.2}x",
        a_cpu / b_cpu
    );
}

async fn pulsing_pipelined(w: &EchoRef, n: usize, window: usize, payload: &[u8]) -> Duration {
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0;
    while sent < window.min(n) {
        in_flight.push(w.echo(ByteBuf::from(payload)).into_future());
        sent += 1;
    }
    while let Some(r) = in_flight.next().await {
        r.unwrap();
        if sent < n {
            in_flight.push(w.echo(ByteBuf::from(payload)).into_future());
            sent += 1;
        }
    }
    start.elapsed()
}

use std::future::IntoFuture;

/// The secret of the encrypted rows.
const SECRET: &str = "bench secret";

/// A client node joined to the Pulsing server at `addr` (with the bench's secret if `secure`),
/// and its echo actor.
async fn join_echo(addr: &str, secure: bool) -> (ActorSystem, EchoRef) {
    let mut builder = ActorSystem::builder().addr("127.0.0.1:0").seeds([addr]);
    if secure {
        builder = builder.secret(SECRET);
    }
    let system = builder.build().await.unwrap();
    let w = Echo::resolve_wait(&system, "echo", Duration::from_secs(10))
        .await
        .unwrap();
    (system, w)
}

/// For profiling: echoes of `size` bytes, `window` in flight (over an encrypted connection if
/// `secure`), for `length`, nothing else.
async fn soak(length: Duration, size: usize, window: Option<usize>, kind: &str) {
    let (mut server, addr) = spawn_server(kind);
    let (window, batch) = match window {
        Some(window) => (window, 1_000.max(window)),
        None if size > 1 << 10 => (16, 100),
        None => (1024, 50_000),
    };
    let payload = vec![7u8; size];
    let meter = Meter {
        server: server.id(),
    };
    let cpu = meter.cpu();
    let start = Instant::now();
    let mut calls = 0;
    if kind == "raw" {
        let mut raw = Raw::connect(&addr).await;
        while start.elapsed() < length {
            raw.pipelined(batch, window, &payload).await;
            calls += batch;
        }
    } else {
        let (_system, w) = join_echo(&addr, kind == "secure").await;
        while start.elapsed() < length {
            pulsing_pipelined(&w, batch, window, &payload).await;
            calls += batch;
        }
    }
    let cpu = Meter {
        server: server.id(),
    }
    .cpu()
        - cpu;
    println!(
        "{:.0} calls/s at {window} in flight, {:.2} us CPU per call (both processes)",
        calls as f64 / start.elapsed().as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / calls as f64
    );
    let _ = server.kill();
}

/// Medians of every workload against one Pulsing server: latency (µs), calls/s at 64 and 1024
/// in flight, MB/s for 1 KiB and 1 MiB echoes, items/s of a stream.
/// Each figure comes with the CPU time per operation (µs, client and server together).
#[derive(Default)]
struct Figures {
    latency: (f64, f64),
    in_flight: [(f64, f64); 2],
    echo: [(f64, f64); 2],
    stream: (f64, f64),
}

/// The median of the figures, and the median CPU per operation.
fn medians(runs: Vec<(f64, f64)>) -> (f64, f64) {
    let (a, b): (Vec<f64>, Vec<f64>) = runs.into_iter().unzip();
    (median(a), median(b))
}

const WINDOWS: [usize; 2] = [64, 1024];
const ECHOES: [(&str, usize); 2] = [("1 KiB echo", 1 << 10), ("1 MiB echo", 1 << 20)];

/// Runs every workload `runs` times on `w` (Pulsing) and `raw` (the floor) alternately, so
/// both see the same moments of a noisy machine; returns the medians of each, with CPU per
/// operation (`meter` covers `w`'s server, the raw floor's meter its own).
async fn measure(
    w: &EchoRef,
    meter: Meter,
    mut raw: Option<(&mut Raw, Meter)>,
    quick: bool,
) -> (Figures, Option<Figures>) {
    let runs = if quick { 3 } else { 5 };
    let calls = if quick { 5_000 } else { 50_000 };
    // Warm up.
    pulsing_pipelined(w, 1000, 64, b"x").await;
    if let Some((raw, _)) = raw.as_mut() {
        raw.pipelined(1000, 64, b"x").await;
    }
    let (mut p, mut r) = (Figures::default(), Figures::default());

    // Each workload: `ops` operations per run; the figure is (per op: µs) or (per second: ops).
    let seq = calls / 10;
    let per_op = |(wall, cpu): (f64, f64), ops: f64| (wall * 1e6 / ops, cpu * 1e6 / ops);
    let per_sec =
        |(wall, cpu): (f64, f64), ops: f64, unit: f64| (ops * unit / wall, cpu * 1e6 / ops);

    let (mut ps, mut rs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ps.push(per_op(
            metered(meter, pulsing_pipelined(w, seq, 1, b"x")).await,
            seq as f64,
        ));
        if let Some((raw, m)) = raw.as_mut() {
            rs.push(per_op(
                metered(*m, raw.pipelined(seq, 1, b"x")).await,
                seq as f64,
            ));
        }
    }
    p.latency = medians(ps);
    r.latency = if rs.is_empty() {
        r.latency
    } else {
        medians(rs)
    };

    // Long enough runs (a few hundred ms) that the ramp-up of the window does not count.
    let pipelined = 4 * calls;
    for (i, window) in WINDOWS.into_iter().enumerate() {
        let (mut ps, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let run = metered(meter, pulsing_pipelined(w, pipelined, window, b"x")).await;
            ps.push(per_sec(run, pipelined as f64, 1.0));
            if let Some((raw, m)) = raw.as_mut() {
                let run = metered(*m, raw.pipelined(pipelined, window, b"x")).await;
                rs.push(per_sec(run, pipelined as f64, 1.0));
            }
        }
        p.in_flight[i] = medians(ps);
        r.in_flight[i] = if rs.is_empty() {
            r.in_flight[i]
        } else {
            medians(rs)
        };
    }

    for (i, (_, size)) in ECHOES.into_iter().enumerate() {
        let n = match (size > 1 << 10, quick) {
            (true, true) => 50,
            (true, false) => 300,
            (false, _) => calls / 2,
        };
        let payload = vec![7u8; size];
        // MB/s, both ways.
        let mb = (2 * size) as f64 / 1e6;
        let (mut ps, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let run = metered(meter, pulsing_pipelined(w, n, 16, &payload)).await;
            ps.push(per_sec(run, n as f64, mb));
            if let Some((raw, m)) = raw.as_mut() {
                let run = metered(*m, raw.pipelined(n, 16, &payload)).await;
                rs.push(per_sec(run, n as f64, mb));
            }
        }
        p.echo[i] = medians(ps);
        r.echo[i] = if rs.is_empty() {
            r.echo[i]
        } else {
            medians(rs)
        };
    }

    let n = 100_000u64;
    let (mut ps, mut rs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let run = metered(meter, async {
            let start = Instant::now();
            let got = w
                .items(n)
                .await
                .unwrap()
                .fold(0u64, |acc, r| async move {
                    r.unwrap();
                    acc + 1
                })
                .await;
            assert_eq!(got, n);
            start.elapsed()
        })
        .await;
        ps.push(per_sec(run, n as f64, 1.0));
        if let Some((raw, m)) = raw.as_mut() {
            let run = metered(*m, async {
                let start = Instant::now();
                raw.send(u64::MAX, &n.to_le_bytes()).await;
                while raw.recv().await.0 != u64::MAX {}
                start.elapsed()
            })
            .await;
            rs.push(per_sec(run, n as f64, 1.0));
        }
    }
    p.stream = medians(ps);
    r.stream = if rs.is_empty() { r.stream } else { medians(rs) };
    let has_raw = raw.is_some();
    (p, has_raw.then_some(r))
}

fn header(first: &str, a: &str, b: &str) {
    println!(
        "{first:<40} {a:>12} {b:>12} {:<9} {:>6} {:<4} {:>8} {:>8} {:>6}",
        "unit", "ratio", "", "cpu/op", "cpu/op", "ratio"
    );
}

fn table(a: &Figures, b: &Figures) {
    row("sequential call latency", a.latency, b.latency, "us", false);
    for (i, window) in WINDOWS.into_iter().enumerate() {
        row(
            &format!("calls/s, {window} in flight"),
            a.in_flight[i],
            b.in_flight[i],
            "calls/s",
            true,
        );
    }
    for (i, (label, _)) in ECHOES.into_iter().enumerate() {
        row(
            &format!("{label} (16 in flight, both ways)"),
            a.echo[i],
            b.echo[i],
            "MB/s",
            true,
        );
    }
    row(
        "stream of 100,000 small items",
        a.stream,
        b.stream,
        "items/s",
        true,
    );
}

async fn client(quick: bool) {
    let (mut p_server, p_addr) = spawn_server("pulsing");
    let (mut r_server, r_addr) = spawn_server("raw");
    let (mut s_server, s_addr) = spawn_server("secure");
    let (system, w) = join_echo(&p_addr, false).await;
    let (secure_system, sw) = join_echo(&s_addr, true).await;
    let mut raw = Raw::connect(&r_addr).await;

    let meter = |child: &Child| Meter { server: child.id() };
    header("workload", "pulsing", "raw ws");
    let (plain, floor) = measure(
        &w,
        meter(&p_server),
        Some((&mut raw, meter(&r_server))),
        quick,
    )
    .await;
    table(&plain, &floor.expect("the floor was measured"));

    println!();
    header("with a secret (Noise, AES-GCM)", "encrypted", "pulsing");
    let (secure, _) = measure(&sw, meter(&s_server), None, quick).await;
    table(&secure, &plain);

    system.shutdown().await;
    secure_system.shutdown().await;
    let _ = p_server.kill();
    let _ = r_server.kill();
    let _ = s_server.kill();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(at) = args.iter().position(|a| a == "--serve") {
        let kind = args[at + 1].clone();
        rt.block_on(async move {
            if kind == "raw" {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("{}", listener.local_addr().unwrap());
                serve_raw(listener).await;
            } else {
                let mut builder = ActorSystem::builder().addr("127.0.0.1:0");
                if kind == "secure" {
                    builder = builder.secret(SECRET);
                }
                let system = builder.build().await.unwrap();
                Echo::spawn_named(&system, "echo", Echo).await.unwrap();
                println!("{}", system.advertised_addr().unwrap());
                std::future::pending::<()>().await;
            }
        });
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--soak") {
        // For profiling: Pulsing calls in flight for this many seconds, nothing else.
        let secs: u64 = args[at + 1].parse().expect("--soak SECONDS");
        let size = args
            .iter()
            .position(|a| a == "--size")
            .map_or(1, |at| args[at + 1].parse().expect("--size BYTES"));
        let kind = if args.iter().any(|a| a == "--secure") {
            "secure"
        } else if args.iter().any(|a| a == "--raw") {
            "raw"
        } else {
            "pulsing"
        };
        let window = args
            .iter()
            .position(|a| a == "--window")
            .map(|at| args[at + 1].parse().expect("--window CALLS"));
        rt.block_on(soak(Duration::from_secs(secs), size, window, kind));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    println!(
        "Pulsing remote benchmark: client and server in separate processes on loopback; medians;\n\
         ratio: first column over second (thr: higher is better, time: lower is better); cpu/op:\n\
         CPU time of client and server together per call, echo or item, in µs"
    );
    rt.block_on(client(quick));
}
