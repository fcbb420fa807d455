//! A streaming producer: items flow under backpressure, and dropping the consumer stops the
//! producer.
//!
//! Run: `cargo run -p pulsing-examples --example stream`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulsing::prelude::*;

/// Produces numbered readings for as long as someone listens.
pub struct Sensor {
    produced: Arc<AtomicU64>,
}

#[pulsing::remote]
impl Sensor {
    /// An endless stream of readings, one every `every_ms` milliseconds.
    pub fn readings(&self, every_ms: u64) -> impl Stream<Item = String> + Send + 'static {
        let produced = self.produced.clone();
        futures_util::stream::unfold(0u64, move |i| {
            let produced = produced.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
                produced.fetch_add(1, Ordering::Relaxed);
                Some((format!("reading #{i}"), i + 1))
            }
        })
    }

    /// How many readings have been produced so far, over all streams.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }
}

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    let system = ActorSystem::builder().stream_buffer(4).build().await?;
    let sensor = Sensor::spawn(
        &system,
        Sensor {
            produced: Arc::default(),
        },
    )
    .await?;

    let mut readings = sensor.readings(2).await?;
    for _ in 0..5 {
        let reading = readings.next().await.expect("endless")?;
        println!("got {reading}");
    }
    drop(readings); // cancels the producer
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_drop = sensor.produced().await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!(
        "produced {} readings; {} more after the consumer left",
        after_drop,
        sensor.produced().await? - after_drop
    );

    system.shutdown().await;
    Ok(())
}
