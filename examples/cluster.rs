//! Two processes, one cluster: a seed node hosts a `Worker`; another node finds it by name and
//! calls it with the same typed proxy it would use in-process, then consumes a stream from it.
//!
//! Run, in two terminals (port 0 picks a free port; the seed prints the address to use):
//!
//! ```text
//! cargo run -p pulsing-examples --example cluster -- seed 127.0.0.1:8000
//! cargo run -p pulsing-examples --example cluster -- call 127.0.0.1:8000
//! cargo run -p pulsing-examples --example cluster -- stream 127.0.0.1:8000
//! ```

use pulsing::prelude::*;

/// Does work for whoever asks, wherever they are.
pub struct Worker {
    handled: u64,
}

#[pulsing::remote]
impl Worker {
    /// Processes one piece of text.
    pub fn process(&mut self, text: String) -> String {
        self.handled += 1;
        format!(
            "{} (job #{} on pid {})",
            text.to_uppercase(),
            self.handled,
            std::process::id()
        )
    }

    /// A countdown, one tick at a time.
    pub fn countdown(&self, from: u32) -> impl Stream<Item = String> + Send + 'static {
        futures_util::stream::iter((0..=from).rev().map(|n| {
            if n == 0 {
                "liftoff".to_string()
            } else {
                n.to_string()
            }
        }))
    }
}

/// The cluster secret every node proves (and that keys the encryption): from `PULSING_SECRET`,
/// or a fixed demo value. A real deployment takes it from its secret store.
fn secret() -> String {
    std::env::var("PULSING_SECRET").unwrap_or_else(|_| "pulsing example secret".to_owned())
}

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: cluster seed [BIND] | cluster call SEED | cluster stream SEED";
    match args.first().map(String::as_str) {
        Some("seed") => {
            let bind = args.get(1).map_or("127.0.0.1:0", String::as_str);
            let system = ActorSystem::builder()
                .addr(bind)
                .secret(secret())
                .build()
                .await?;
            Worker::spawn_named(&system, "worker", Worker { handled: 0 }).await?;
            println!(
                "seed listening on {}",
                system.advertised_addr().expect("a cluster node")
            );
            println!("(Ctrl-C to stop)");
            tokio::signal::ctrl_c().await.ok();
            system.shutdown().await;
        }
        Some(role @ ("call" | "stream")) => {
            let seed = args.get(1).expect(usage);
            let system = ActorSystem::builder()
                .addr("127.0.0.1:0")
                .seeds([seed.as_str()])
                .secret(secret())
                .build()
                .await?;
            // Waits for the first gossip exchange (up to `join_timeout`), then looks the name up.
            let worker: WorkerRef = Worker::resolve(&system, "worker").await?;
            println!("found {worker:?} from pid {}", std::process::id());
            if role == "call" {
                for text in ["hello", "typed", "cross-node"] {
                    println!(
                        "process({text:?}) -> {}",
                        worker.process(text.into()).await?
                    );
                }
            } else {
                let mut ticks = worker.countdown(5).await?;
                while let Some(tick) = ticks.next().await {
                    println!("countdown: {}", tick?);
                }
            }
            system.shutdown().await;
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    Ok(())
}
