//! The main demo: a typed counter actor, called, resolved by name, streamed and stopped.
//!
//! Run: `cargo run -p pulsing-examples --example counter`

use std::future::IntoFuture;
use std::time::Duration;

use pulsing::prelude::*;

/// A counter that lives on its own task.
pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    /// Adds `by` and returns the new value.
    pub fn inc(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }

    /// The current value, after a little (simulated) I/O.
    pub async fn get(&self) -> i64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.value
    }

    /// Fails with a business error if the value is over `limit`.
    pub fn check(&self, limit: i64) -> Result<(), String> {
        if self.value > limit {
            Err(format!("{} is over the limit of {limit}", self.value))
        } else {
            Ok(())
        }
    }

    /// The numbers 1..=n, one at a time.
    pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(1..=n)
    }

    #[on_start]
    fn started(&mut self) {
        println!("[counter] started at {}", self.value);
    }

    #[on_stop]
    fn stopped(&mut self) {
        println!("[counter] stopping at {}", self.value);
    }
}

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    let system = ActorSystem::builder().build().await?;

    let counter = Counter::spawn_named(&system, "counter", Counter { value: 0 }).await?;
    println!("inc(2)            -> {}", counter.inc(2).await?);

    // Many callers at once: the actor handles one message at a time, so nothing is lost.
    let calls = (0..100).map(|_| counter.inc(1).into_future());
    for result in futures_util::future::join_all(calls).await {
        result?;
    }
    println!("after 100 x inc(1) -> {}", counter.get().await?);

    let same = Counter::resolve(&system, "counter").await?;
    println!("resolved by name  -> {:?}", same);
    println!("check(1000)       -> {:?}", same.check(1000).await?);
    println!("check(10)         -> {:?}", same.check(10).await?);

    counter.inc(1).tell().await?;
    let v = counter.inc(0).timeout(Duration::from_secs(1)).await?;
    println!("after tell(inc 1)  -> {v}");

    let mut stream = counter.count_to(5).await?;
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item?);
    }
    println!("count_to(5)       -> {items:?}");

    counter.stop();
    counter.stopped().await;
    println!("after stop        -> {}", counter.inc(1).await.unwrap_err());
    println!(
        "resolve again     -> {}",
        Counter::resolve(&system, "counter").await.unwrap_err()
    );

    system.shutdown().await;
    Ok(())
}
