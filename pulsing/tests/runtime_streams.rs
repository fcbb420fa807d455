//! Streaming methods: order, backpressure, cancellation, async construction.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use pulsing::prelude::*;
use support::{next_item, system, within, Counter, Producer};

#[tokio::test]
async fn items_arrive_in_order_and_the_stream_ends() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    let items: Vec<u32> = within(
        c.count_to(1000)
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect(),
    )
    .await;
    assert_eq!(items, (1..=1000).collect::<Vec<_>>());
    sys.shutdown().await;
}

#[tokio::test]
async fn a_slow_consumer_holds_the_producer_back() {
    let sys = ActorSystem::builder()
        .stream_buffer(8)
        .build()
        .await
        .unwrap();
    let producer = Producer::new();
    let produced = producer.produced.clone();
    let p = Producer::spawn(&sys, producer).await.unwrap();
    let mut s = p.endless().await.unwrap();
    for i in 0..5 {
        assert_eq!(next_item(&mut s).await.unwrap().unwrap(), i);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ahead = produced.load(Ordering::SeqCst);
    // 5 consumed + 8 buffered + 1 in the pump's hand + 1 being produced.
    assert!(
        ahead <= 5 + 8 + 2,
        "the producer ran {ahead} items ahead of the consumer"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_producer() {
    let sys = system().await;
    let producer = Producer::new();
    let dropped = producer.dropped.clone();
    let p = Producer::spawn(&sys, producer).await.unwrap();
    let mut s = p.endless().await.unwrap();
    next_item(&mut s).await.unwrap().unwrap();
    drop(s);
    tokio::time::timeout(Duration::from_secs(5), dropped.notified())
        .await
        .expect("the producer stream was dropped");
    sys.shutdown().await;
}

#[tokio::test]
async fn the_actor_keeps_serving_while_its_streams_run() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    let mut s1 = c.count_to(100).await.unwrap();
    let s2 = c.count_to(100).await.unwrap();
    assert_eq!(next_item(&mut s1).await.unwrap().unwrap(), 1);
    assert_eq!(
        c.inc(1).await.unwrap(),
        1,
        "a call goes through while two streams are open"
    );
    drop(s2);
    sys.shutdown().await;
}

#[tokio::test]
async fn async_streaming_methods_work() {
    let sys = system().await;
    let p = Producer::spawn(&sys, Producer::new()).await.unwrap();
    let items: Vec<String> = within(p.later(2).await.unwrap().map(|r| r.unwrap()).collect()).await;
    assert_eq!(items, ["item 0", "item 1"]);
    sys.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_an_error() {
    let sys = system().await;
    let p = Producer::spawn(&sys, Producer::new()).await.unwrap();
    let mut s = p.endless().await.unwrap();
    next_item(&mut s).await.unwrap().unwrap();
    sys.shutdown().await;
    let mut last = None;
    while let Some(item) = next_item(&mut s).await {
        last = Some(item);
    }
    assert!(matches!(last, Some(Err(Error::SystemShutdown))), "{last:?}");
}

#[tokio::test]
async fn opening_a_stream_on_a_stopped_actor_fails_fast() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0)).await.unwrap();
    c.stop();
    c.stopped().await;
    assert!(matches!(c.count_to(3).await, Err(Error::Stopped { .. })));
    sys.shutdown().await;
}
