//! A Pulsing node for the multi-process tests: binds a port (0 by default), spawns `Worker`
//! actors under the given names, prints `LISTENING <addr>`, and serves until stdin closes.
//!
//! Usage: `test_node [--addr A] [--name NODE] [--secret S] [--seed ADDR]... [--spawn NAME]...`

use std::io::Write;

use pulsing::prelude::*;
use pulsing_tests::Worker;
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut node, mut secret, mut seeds, mut names) = (
        "127.0.0.1:0".to_owned(),
        "node".to_owned(),
        None,
        Vec::new(),
        Vec::new(),
    );
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value,
            "--name" => node = value,
            "--secret" => secret = Some(value),
            "--seed" => seeds.push(value),
            "--spawn" => names.push(value),
            other => panic!("unknown flag {other}"),
        }
    }
    let mut builder = ActorSystem::builder().addr(addr).seeds(seeds);
    if let Some(secret) = secret {
        builder = builder.secret(secret);
    }
    let system = builder.build().await?;
    for name in names {
        Worker::spawn_named(&system, name, Worker::new(node.clone())).await?;
    }
    println!(
        "LISTENING {}",
        system.advertised_addr().expect("a cluster node")
    );
    std::io::stdout().flush().expect("stdout");
    // Serve until the test closes our stdin (or kills us).
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    system.shutdown().await;
    Ok(())
}
