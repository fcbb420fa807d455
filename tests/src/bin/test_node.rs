//! A Pulsing node for the multi-process tests: binds a port (0 by default), spawns `Worker`
//! actors under the given names, prints `LISTENING <addr>`, and serves until stdin closes.
//!
//! Every node also runs a `Probe` named `probe-<NODE>` and a `Values` named `values-<NODE>`.
//!
//! Usage: `test_node [--addr A] [--name NODE] [--secret S] [--encrypt on|off] [--gossip-ms MS]
//! [--seed ADDR]... [--spawn NAME]... [--ledger-a NAME]... [--ledger-b NAME]...` (`--ledger-a`
//! and `--ledger-b` spawn `bank_a::Ledger` and `bank_b::Ledger`).

use std::io::Write;

use pulsing::prelude::*;
use pulsing_tests::{Probe, Worker};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let (mut addr, mut node, mut secret, mut seeds, mut names) = (
        "127.0.0.1:0".to_owned(),
        "node".to_owned(),
        None,
        Vec::new(),
        Vec::new(),
    );
    let mut gossip = None;
    let mut ledgers = Vec::new();
    let mut encrypt = true;
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
            "--ledger-a" => ledgers.push((true, value)),
            "--ledger-b" => ledgers.push((false, value)),
            "--encrypt" => encrypt = value == "on",
            "--gossip-ms" => {
                gossip = Some(std::time::Duration::from_millis(
                    value.parse().expect("--gossip-ms takes milliseconds"),
                ))
            }
            other => panic!("unknown flag {other}"),
        }
    }
    let mut builder = ActorSystem::builder()
        .addr(addr)
        .seeds(seeds)
        .encryption(encrypt);
    if let Some(secret) = secret {
        builder = builder.secret(secret);
    }
    if let Some(interval) = gossip {
        builder = builder.gossip_interval(interval);
    }
    let system = builder.build().await?;
    Probe::spawn_named(
        &system,
        format!("probe-{node}"),
        Probe {
            system: system.clone(),
        },
    )
    .await?;
    pulsing_tests::values::Values::spawn_named(
        &system,
        format!("values-{node}"),
        pulsing_tests::values::Values,
    )
    .await?;
    for name in names {
        Worker::spawn_named(&system, name, Worker::new(node.clone())).await?;
    }
    for (a, name) in ledgers {
        if a {
            pulsing_tests::bank_a::Ledger::spawn_named(
                &system,
                name,
                pulsing_tests::bank_a::Ledger,
            )
            .await?;
        } else {
            pulsing_tests::bank_b::Ledger::spawn_named(
                &system,
                name,
                pulsing_tests::bank_b::Ledger,
            )
            .await?;
        }
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
