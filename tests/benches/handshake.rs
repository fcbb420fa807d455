//! How long a new connection takes to become useful: TCP connect, WebSocket upgrade, the
//! handshake (Noise `NNpsk0` with a secret), and a first call answered — with and without a
//! cluster secret, against a node in this process on loopback. The client is the raw one of
//! the attacker tests (`pulsing_tests::raw::Login`), which speaks the same protocol.
//!
//! Run: `cargo bench -p pulsing-tests --bench handshake`.

use std::time::{Duration, Instant};

use pulsing::prelude::*;
use pulsing::wire::NodeId;
use pulsing_tests::raw::{request, Login};
use pulsing_tests::Worker;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn connect_and_call(addr: &str, secret: Option<&[u8]>, i: u64) -> Duration {
    let start = Instant::now();
    let mut login = Login::dial(addr, secret, NodeId(i), "127.0.0.1:1", true)
        .await
        .expect("logs in");
    login
        .send(&[request(1, "worker", "process", Args::new().arg("x"))])
        .await;
    login.response(1).await.expect("answered");
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let samples = 300;
    println!(
        "connect + handshake + first call, median of {samples} (loopback, node in this process)"
    );
    for secret in [None, Some(&b"bench secret"[..])] {
        let mut builder = ActorSystem::builder().addr("127.0.0.1:0");
        if let Some(secret) = secret {
            builder = builder.secret(secret);
        }
        let system = builder.build().await.unwrap();
        Worker::spawn_named(&system, "worker", Worker::new("n"))
            .await
            .unwrap();
        let addr = system.advertised_addr().unwrap();
        let mut times = Vec::new();
        for i in 0..samples {
            times.push(connect_and_call(&addr, secret, 1_000_000 + i).await);
        }
        let label = if secret.is_some() {
            "with a secret (Noise + AES-GCM)"
        } else {
            "without a secret"
        };
        println!("{label:<36} {:>8.3} ms", median(times).as_secs_f64() * 1e3);
        system.shutdown().await;
    }
}
