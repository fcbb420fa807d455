//! The dynamic shim: by-name calls with `Value` arguments, through the same mailbox.
// Test actors: the crate's documentation lints do not apply to them.
#![allow(missing_docs, missing_debug_implementations)]

mod support;

use pulsing::prelude::*;
use pulsing::MethodKind;
use serde::{Deserialize, Serialize};
use support::{system, within, Counter, Producer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    x: i32,
    y: i32,
}

pub struct Geometry;

#[pulsing::remote]
impl Geometry {
    /// Moves a point.
    pub fn shift(&self, p: Point, dx: i32, dy: Option<i32>) -> Point {
        Point {
            x: p.x + dx,
            y: p.y + dy.unwrap_or(0),
        }
    }
    pub fn echo(&self, v: Value) -> Value {
        v
    }
    pub fn sum(&self, xs: Vec<f64>) -> f64 {
        xs.iter().sum()
    }
    pub fn size(&self, data: Vec<u8>) -> usize {
        data.len()
    }
}

#[tokio::test]
async fn positional_and_keyword_arguments_reach_the_typed_method() {
    let sys = system().await;
    Counter::spawn_named(&sys, "c", Counter::new(0))
        .await
        .unwrap();
    let c = sys.resolve_dyn("c").await.unwrap();
    assert_eq!(
        c.call("inc", Args::new().arg(2)).await.unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        c.call("inc", Args::new().kwarg("by", 3)).await.unwrap(),
        Value::Int(5)
    );
    assert_eq!(c.call("get", Args::new()).await.unwrap(), Value::Int(5));
    // The same actor, typed: one mailbox, one state.
    let typed = Counter::resolve(&sys, "c").await.unwrap();
    assert_eq!(typed.get().await.unwrap(), 5);
    sys.shutdown().await;
}

#[tokio::test]
async fn structured_values_convert_both_ways() {
    let sys = system().await;
    let g = Geometry::spawn(&sys, Geometry).await.unwrap().to_dyn();
    let point = pulsing::value::to_value(&Point { x: 1, y: 2 }).unwrap();
    let moved = g
        .call(
            "shift",
            Args::new().arg(point.clone()).arg(10).kwarg("dy", 5),
        )
        .await
        .unwrap();
    assert_eq!(
        pulsing::value::from_value::<Point>(moved).unwrap(),
        Point { x: 11, y: 7 }
    );
    let moved = g
        .call("shift", Args::new().arg(point).arg(1).arg(Value::Null))
        .await
        .unwrap();
    assert_eq!(moved.get("y"), Some(&Value::Int(2)));
    let anything = Value::List(vec![
        Value::Int(1),
        Value::Str("two".into()),
        Value::bytes(*b"3"),
    ]);
    assert_eq!(
        g.call("echo", vec![anything.clone()]).await.unwrap(),
        anything
    );
    assert_eq!(
        g.call("sum", vec![Value::List(vec![1.into(), 2.5.into()])])
            .await
            .unwrap(),
        Value::Float(3.5)
    );
    assert_eq!(
        g.call("size", vec![Value::bytes(vec![0u8; 1000])])
            .await
            .unwrap(),
        Value::Int(1000)
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn business_errors_arrive_as_values() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(5))
        .await
        .unwrap()
        .to_dyn();
    let out = c.call("check", vec![Value::Int(1)]).await.unwrap();
    assert_eq!(out.get("Err"), Some(&Value::Str("5 > 1".into())));
    sys.shutdown().await;
}

#[tokio::test]
async fn mistakes_get_errors_that_name_the_method_and_signature() {
    let sys = system().await;
    let c = Counter::spawn(&sys, Counter::new(0))
        .await
        .unwrap()
        .to_dyn();
    let err = |e: Error| e.to_string();
    assert_eq!(
        err(c.call("nope", Args::new()).await.unwrap_err()),
        "Counter has no remote method `nope` (it has: inc, get, add_later, wait_gate, check, boom, count_to)"
    );
    assert_eq!(
        err(c.call("inc", Args::new().arg("two")).await.unwrap_err()),
        "bad arguments for Counter.inc(by: i64) -> i64: argument `by` must be `i64`: expected i64, found str \"two\""
    );
    assert_eq!(
        err(c.call("inc", Args::new().arg(1).arg(2)).await.unwrap_err()),
        "bad arguments for Counter.inc(by: i64) -> i64: takes 1 argument but 2 were given"
    );
    assert_eq!(
        err(c.call("inc", Args::new()).await.unwrap_err()),
        "bad arguments for Counter.inc(by: i64) -> i64: missing argument `by: i64`"
    );
    assert_eq!(
        err(c
            .call("inc", Args::new().kwarg("amount", 1))
            .await
            .unwrap_err()),
        "bad arguments for Counter.inc(by: i64) -> i64: unexpected keyword argument `amount`"
    );
    assert_eq!(
        err(c
            .call("inc", Args::new().arg(1).kwarg("by", 1))
            .await
            .unwrap_err()),
        "bad arguments for Counter.inc(by: i64) -> i64: got multiple values for argument `by`"
    );
    assert!(
        err(c.call("count_to", vec![Value::Int(3)]).await.unwrap_err())
            .contains("is a streaming method: use `stream`")
    );
    assert!(err(c.stream("inc", vec![Value::Int(3)]).await.unwrap_err())
        .contains("is not a streaming method: use `call`"));
    let overflow = c.call("inc", vec![Value::Float(1.5)]).await.unwrap_err();
    assert!(
        matches!(overflow, Error::BadArguments { ref method, .. } if method == "inc"),
        "{overflow}"
    );
    // The actor is unharmed by bad calls.
    assert_eq!(c.call("get", Args::new()).await.unwrap(), Value::Int(0));
    sys.shutdown().await;
}

#[tokio::test]
async fn streams_work_by_name() {
    let sys = system().await;
    let p = Producer::spawn(&sys, Producer::new())
        .await
        .unwrap()
        .to_dyn();
    let items: Vec<Value> = within(
        p.stream("later", Args::new().kwarg("n", 3))
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect(),
    )
    .await;
    assert_eq!(
        items,
        vec![
            Value::from("item 0"),
            Value::from("item 1"),
            Value::from("item 2")
        ]
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn the_interface_describes_every_remote_method() {
    let sys = system().await;
    let g = Geometry::spawn(&sys, Geometry).await.unwrap().to_dyn();
    let iface = g
        .interface()
        .expect("a local actor has its interface at hand");
    assert_eq!(iface.actor, "Geometry");
    let sigs: Vec<String> = iface.methods.iter().map(|m| m.signature()).collect();
    assert_eq!(
        sigs,
        [
            "shift(p: Point, dx: i32, dy: Option<i32>) -> Point",
            "echo(v: Value) -> Value",
            "sum(xs: Vec<f64>) -> f64",
            "size(data: Vec<u8>) -> usize",
        ]
    );
    assert_eq!(iface.method("shift").unwrap().doc, "Moves a point.");
    let counter = <Counter as Actor>::interface();
    let count_to = counter.method("count_to").unwrap();
    assert_eq!(count_to.kind, MethodKind::Stream);
    assert_eq!(count_to.signature(), "count_to(n: u32) -> stream of u32");
    assert!(counter.method("inc").unwrap().mutates);
    assert!(counter.method("get").unwrap().is_async);
    assert!(
        counter.method("started").is_none(),
        "hooks and private helpers are not remote"
    );
    sys.shutdown().await;
}
