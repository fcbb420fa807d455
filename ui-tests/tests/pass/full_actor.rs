//! A representative actor, used end to end.

use pulsing::prelude::*;

/// `Self` appears in an argument type, so the actor itself must be serializable.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Counter {
    value: i64,
    history: Vec<i64>,
}

#[pulsing::remote]
impl Counter {
    /// A plain constructor in the same block: stays an associated fn, not a remote method.
    pub fn new() -> Self {
        Counter { value: 0, history: Vec::new() }
    }

    /// Adds `by` and returns the new value.
    pub fn inc(&mut self, by: i64) -> i64 {
        self.record(by);
        self.value
    }

    /// The current value.
    pub async fn get(&self) -> i64 {
        tokio::task::yield_now().await;
        self.value
    }

    /// `_` arguments are allowed.
    pub fn ignore(&self, _: String) -> usize {
        self.history.len()
    }

    /// `Self` in an argument type means the actor type.
    pub fn sum_with(&self, others: Vec<Self>) -> i64 {
        self.value + others.iter().map(|o| o.value).sum::<i64>()
    }

    /// A business error travels inside the call's own `Result`.
    pub fn check(&self, limit: i64) -> Result<(), String> {
        if self.value > limit { Err(format!("{} is over {limit}", self.value)) } else { Ok(()) }
    }

    /// Streams 1..=n.
    pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(1..=n)
    }

    /// Streams the history, built asynchronously.
    pub async fn history(&self) -> impl Stream<Item = i64> + Send + 'static {
        futures_util::stream::iter(self.history.clone())
    }

    /// Not remote: `pub(crate)`.
    pub(crate) fn peek(&self) -> i64 {
        self.value
    }

    fn record(&mut self, by: i64) {
        self.value += by;
        self.history.push(by);
    }
}

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    let system = ActorSystem::builder().build().await?;
    assert_eq!(Counter::new().peek(), 0);
    let counter: CounterRef = Counter::spawn_named(&system, "counter", Counter::new()).await?;
    assert_eq!(counter.inc(2).await?, 2);
    counter.inc(3).tell().await?;

    let same = Counter::resolve(&system, "counter").await?;
    assert_eq!(same.get().await?, 5);
    assert_eq!(same.ignore("x".to_string()).await?, 2);
    let other = Counter { value: 10, history: Vec::new() };
    assert_eq!(same.sum_with(vec![other]).await?, 15);
    assert_eq!(same.check(10).await?, Ok(()));
    assert_eq!(same.check(1).await?, Err("5 is over 1".to_string()));

    let items: Vec<u32> = counter.count_to(3).await?.map(|n| n.unwrap()).collect().await;
    assert_eq!(items, [1, 2, 3]);
    let mut history = counter.history().await?;
    assert_eq!(history.next().await.transpose()?, Some(2));
    assert_eq!(history.next().await.transpose()?, Some(3));
    assert_eq!(history.next().await.transpose()?, None);

    counter.stop();
    counter.stopped().await;
    system.shutdown().await;
    Ok(())
}
