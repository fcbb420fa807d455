//! Cross-process benchmark: a Pulsing client calling a Pulsing actor in another process, against
//! the floor of a raw tokio-tungstenite WebSocket echo of postcard frames, in the same run; then
//! the same workloads with a cluster secret (Noise handshake, AES-GCM records) against the
//! unencrypted figures. The server side is this same binary, started as a child process
//! (`--serve pulsing|secure|raw`).
//!
//! Run: `cargo bench -p pulsing --bench remote` (add `-- --quick` for a short run, or
//! `-- --soak SECONDS` to keep 1024 calls in flight for a profiler).

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

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn row(name: &str, pulsing: f64, raw: f64, unit: &str, higher_is_better: bool) {
    let ratio = pulsing / raw;
    let what = if higher_is_better {
        "of raw throughput"
    } else {
        "of raw time"
    };
    println!("{name:<40} {pulsing:>12.1} {raw:>12.1} {unit:<9} {ratio:.2}x {what}");
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

async fn soak(length: Duration) {
    let (mut server, addr) = spawn_server("pulsing");
    let (_system, w) = join_echo(&addr, false).await;
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < length {
        pulsing_pipelined(&w, 50_000, 1024, b"x").await;
        calls += 50_000;
    }
    println!(
        "{:.0} calls/s at 1024 in flight",
        calls as f64 / start.elapsed().as_secs_f64()
    );
    let _ = server.kill();
}

/// Medians of every workload against one Pulsing server: latency (µs), calls/s at 64 and 1024
/// in flight, MB/s for 1 KiB and 1 MiB echoes, items/s of a stream.
struct Figures {
    latency: f64,
    in_flight: [f64; 2],
    echo: [f64; 2],
    stream: f64,
}

const WINDOWS: [usize; 2] = [64, 1024];
const ECHOES: [(&str, usize); 2] = [("1 KiB echo", 1 << 10), ("1 MiB echo", 1 << 20)];

/// Runs every workload `runs` times on `w` (Pulsing) and `raw` (the floor) alternately, so
/// both see the same moments of a noisy machine; returns the medians of each.
async fn measure(
    w: &EchoRef,
    mut raw: Option<&mut Raw>,
    quick: bool,
) -> (Figures, Option<Figures>) {
    let runs = if quick { 3 } else { 5 };
    let calls = if quick { 5_000 } else { 50_000 };
    // Warm up.
    pulsing_pipelined(w, 1000, 64, b"x").await;
    if let Some(raw) = raw.as_deref_mut() {
        raw.pipelined(1000, 64, b"x").await;
    }
    let seq = calls / 10;
    let (mut ps, mut rs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ps.push(pulsing_pipelined(w, seq, 1, b"x").await.as_nanos() as f64 / seq as f64 / 1000.0);
        if let Some(raw) = raw.as_deref_mut() {
            rs.push(raw.pipelined(seq, 1, b"x").await.as_nanos() as f64 / seq as f64 / 1000.0);
        }
    }
    let (mut p, mut r) = (
        Figures {
            latency: median(ps),
            in_flight: [0.0; 2],
            echo: [0.0; 2],
            stream: 0.0,
        },
        Figures {
            latency: if rs.is_empty() { 0.0 } else { median(rs) },
            in_flight: [0.0; 2],
            echo: [0.0; 2],
            stream: 0.0,
        },
    );

    // Long enough runs (a few hundred ms) that the ramp-up of the window does not count.
    let pipelined = 4 * calls;
    for (i, window) in WINDOWS.into_iter().enumerate() {
        let (mut ps, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ps.push(
                pipelined as f64
                    / pulsing_pipelined(w, pipelined, window, b"x")
                        .await
                        .as_secs_f64(),
            );
            if let Some(raw) = raw.as_deref_mut() {
                rs.push(
                    pipelined as f64 / raw.pipelined(pipelined, window, b"x").await.as_secs_f64(),
                );
            }
        }
        p.in_flight[i] = median(ps);
        r.in_flight[i] = if rs.is_empty() { 0.0 } else { median(rs) };
    }

    for (i, (_, size)) in ECHOES.into_iter().enumerate() {
        let n = if size > 1 << 10 {
            if quick {
                50
            } else {
                300
            }
        } else {
            calls / 2
        };
        let payload = vec![7u8; size];
        let (mut ps, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let bytes = (2 * size * n) as f64 / 1e6;
            ps.push(bytes / pulsing_pipelined(w, n, 16, &payload).await.as_secs_f64());
            if let Some(raw) = raw.as_deref_mut() {
                rs.push(bytes / raw.pipelined(n, 16, &payload).await.as_secs_f64());
            }
        }
        p.echo[i] = median(ps);
        r.echo[i] = if rs.is_empty() { 0.0 } else { median(rs) };
    }

    let n = 100_000u64;
    let (mut ps, mut rs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
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
        ps.push(n as f64 / start.elapsed().as_secs_f64());
        if let Some(raw) = raw.as_deref_mut() {
            let start = Instant::now();
            raw.send(u64::MAX, &n.to_le_bytes()).await;
            while raw.recv().await.0 != u64::MAX {}
            rs.push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    p.stream = median(ps);
    r.stream = if rs.is_empty() { 0.0 } else { median(rs) };
    let has_raw = raw.is_some();
    (p, has_raw.then_some(r))
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

    println!(
        "{:<40} {:>12} {:>12} {:<9} ratio",
        "workload", "pulsing", "raw ws", "unit"
    );
    let (plain, floor) = measure(&w, Some(&mut raw), quick).await;
    table(&plain, &floor.expect("the floor was measured"));

    println!();
    println!(
        "{:<40} {:>12} {:>12} {:<9} ratio",
        "with a secret (Noise, AES-GCM)", "encrypted", "pulsing", "unit"
    );
    let (secure, _) = measure(&sw, None, quick).await;
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
        // For profiling: 1024 Pulsing calls in flight for this many seconds, nothing else.
        let secs: u64 = args[at + 1].parse().expect("--soak SECONDS");
        rt.block_on(soak(Duration::from_secs(secs)));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    println!(
        "Pulsing remote benchmark: client and server in separate processes on loopback; medians"
    );
    rt.block_on(client(quick));
}
