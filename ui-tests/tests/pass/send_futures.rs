//! The generated calls, their futures, streams and proxies are `Send` (proxies also `Sync`,
//! `Clone` and `Debug`), so they work on a multi-threaded runtime.

use std::future::IntoFuture;

use pulsing::prelude::*;

pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub fn inc(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }

    pub async fn get(&self) -> i64 {
        self.value
    }

    pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter(1..=n)
    }

    pub async fn later(&self, n: u32) -> impl Stream<Item = String> + Send + 'static {
        futures_util::stream::iter((0..n).map(|i| i.to_string()))
    }
}

/// Not `Sync`: fine, since its async method takes `&mut self`.
pub struct Local {
    hits: std::cell::Cell<u32>,
}

#[pulsing::remote]
impl Local {
    pub async fn hit(&mut self) -> u32 {
        self.hits.set(self.hits.get() + 1);
        tokio::task::yield_now().await;
        self.hits.get()
    }
}

fn assert_send<T: Send>(_: &T) {}
fn assert_proxy<T: Send + Sync + Clone + std::fmt::Debug + 'static>(_: &T) {}

fn calls(c: &CounterRef, l: &LocalRef) {
    assert_proxy(c);
    assert_proxy(l);
    assert_send(&c.inc(1));
    assert_send(&c.inc(1).into_future());
    assert_send(&c.get().into_future());
    assert_send(&c.inc(1).tell());
    assert_send(&c.count_to(3));
    assert_send(&c.count_to(3).into_future());
    assert_send(&c.later(3).into_future());
    assert_send(&l.hit().into_future());
}

async fn streams(c: CounterRef) -> pulsing::Result<()> {
    let stream = c.count_to(3).await?;
    assert_send(&stream);
    assert_send(&c.later(2).await?);
    Ok(())
}

async fn spawns(system: &ActorSystem) -> pulsing::Result<()> {
    let c = Counter::spawn(system, Counter { value: 0 }).await?;
    let l = Local::spawn(system, Local { hits: Default::default() }).await?;
    calls(&c, &l);
    streams(c).await
}

fn main() {
    let system: Option<&ActorSystem> = None;
    if let Some(system) = system {
        assert_send(&spawns(system));
        assert_send(&Counter::resolve(system, "c"));
        assert_send(&Counter::spawn_named(system, "c", Counter { value: 0 }));
    }
}
