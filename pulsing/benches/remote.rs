//! Cross-process benchmark: a Pulsing client calling a Pulsing actor in another process, against
//! the floor of a raw tokio-tungstenite WebSocket echo of postcard frames, in the same run.
//! The server side is this same binary, started as a child process (`--serve pulsing|raw`).
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

/// A client node joined to the Pulsing server at `addr`, and its echo actor.
async fn join_echo(addr: &str) -> (ActorSystem, EchoRef) {
    let system = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds([addr])
        .build()
        .await
        .unwrap();
    let w = Echo::resolve_wait(&system, "echo", Duration::from_secs(10))
        .await
        .unwrap();
    (system, w)
}

async fn soak(length: Duration) {
    let (mut server, addr) = spawn_server("pulsing");
    let (_system, w) = join_echo(&addr).await;
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

async fn client(quick: bool) {
    let runs = if quick { 3 } else { 5 };
    let calls = if quick { 5_000 } else { 50_000 };
    let (mut p_server, p_addr) = spawn_server("pulsing");
    let (mut r_server, r_addr) = spawn_server("raw");
    let (system, w) = join_echo(&p_addr).await;
    let mut raw = Raw::connect(&r_addr).await;
    println!(
        "{:<40} {:>12} {:>12} {:<9} ratio",
        "workload", "pulsing", "raw ws", "unit"
    );

    // Warm up.
    pulsing_pipelined(&w, 1000, 64, b"x").await;
    raw.pipelined(1000, 64, b"x").await;

    let seq = calls / 10;
    let mut ps = Vec::new();
    let mut rs = Vec::new();
    for _ in 0..runs {
        ps.push(pulsing_pipelined(&w, seq, 1, b"x").await.as_nanos() as f64 / seq as f64 / 1000.0);
        rs.push(raw.pipelined(seq, 1, b"x").await.as_nanos() as f64 / seq as f64 / 1000.0);
    }
    row(
        "sequential call latency",
        median(ps),
        median(rs),
        "us",
        false,
    );

    // Long enough runs (a few hundred ms) that the ramp-up of the window does not count.
    let pipelined = 4 * calls;
    for window in [64, 1024] {
        let (mut ps, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ps.push(
                pipelined as f64
                    / pulsing_pipelined(&w, pipelined, window, b"x")
                        .await
                        .as_secs_f64(),
            );
            rs.push(pipelined as f64 / raw.pipelined(pipelined, window, b"x").await.as_secs_f64());
        }
        row(
            &format!("calls/s, {window} in flight"),
            median(ps),
            median(rs),
            "calls/s",
            true,
        );
    }

    for (label, size, n) in [
        ("1 KiB echo", 1 << 10, calls / 2),
        ("1 MiB echo", 1 << 20, if quick { 50 } else { 300 }),
    ] {
        let payload = vec![7u8; size];
        let (mut ps, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let bytes = (2 * size * n) as f64 / 1e6;
            ps.push(bytes / pulsing_pipelined(&w, n, 16, &payload).await.as_secs_f64());
            rs.push(bytes / raw.pipelined(n, 16, &payload).await.as_secs_f64());
        }
        row(
            &format!("{label} (16 in flight, both ways)"),
            median(ps),
            median(rs),
            "MB/s",
            true,
        );
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
        let start = Instant::now();
        raw.send(u64::MAX, &n.to_le_bytes()).await;
        while raw.recv().await.0 != u64::MAX {}
        rs.push(n as f64 / start.elapsed().as_secs_f64());
    }
    row(
        "stream of 100,000 small items",
        median(ps),
        median(rs),
        "items/s",
        true,
    );

    system.shutdown().await;
    let _ = p_server.kill();
    let _ = r_server.kill();
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
                let system = ActorSystem::builder()
                    .addr("127.0.0.1:0")
                    .build()
                    .await
                    .unwrap();
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
