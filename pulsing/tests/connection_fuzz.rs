//! The connection state machine under random sessions, from the first byte (issue #12): the
//! stable-toolchain, seeded counterpart of the cargo-fuzz target `fuzz/fuzz_targets/connection.rs`
//! (which runs for minutes; see BENCHMARKS.md). Each case is one in-memory connection to a real
//! node (`pulsing::__fuzz::drive`): raw bytes where the upgrade belongs, messages before login,
//! or frames after login — well-formed and not, deep `Value`s, repeated ids, absurd credit,
//! unsolicited stream items. No case may panic anything in the node, and the node must serve a
//! real caller afterwards.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use pulsing::__fuzz::{drive, Message, Session};
use pulsing::prelude::*;
use pulsing::wire::{Frame, Payload};
use support::frames::frame;
use support::{Counter, Producer};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// A `Request` whose argument is `depth` nested lists, by hand.
fn deep(depth: usize) -> Vec<u8> {
    let mut bytes = pulsing::wire::encode(&Frame::Request {
        id: 9,
        actor: "counter".into(),
        actor_id: None,
        expect_type: None,
        method: "inc".into(),
        args: Payload::Dynamic(Args::from(vec![Value::Null])),
        credit: None,
        deadline_ms: None,
    });
    let tail = bytes.split_off(bytes.len() - 4);
    bytes.extend([6u8, 1].repeat(depth));
    bytes.extend(tail);
    bytes
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        6 => proptest::collection::vec(frame(), 1..6).prop_map(Message::Frames),
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Message::Bytes),
        1 => prop_oneof![Just(127usize), Just(129), Just(20_000)].prop_map(|d| Message::Bytes(deep(d))),
        // A frame cut short.
        1 => (frame(), any::<prop::sample::Index>()).prop_map(|(f, at)| {
            let bytes = pulsing::wire::try_encode(&f).unwrap_or_default();
            Message::Bytes(bytes[..at.index(bytes.len() + 1)].to_vec())
        }),
    ]
}

fn session() -> impl Strategy<Value = Session> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(|raw| Session {
            raw: Some(raw),
            login: false,
            messages: Vec::new(),
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(|raw| Session {
            raw: Some([&b"GET /pulsing HTTP/1.1\r\n"[..], &raw].concat()),
            login: false,
            messages: Vec::new(),
        }),
        3 => (any::<bool>(), proptest::collection::vec(message(), 0..6)).prop_map(|(login, messages)| {
            Session { raw: None, login, messages }
        }),
    ]
}

#[test]
fn random_sessions_never_panic_the_node_and_it_keeps_serving() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let system = rt.block_on(async {
        let system = ActorSystem::builder()
            .addr("127.0.0.1:0")
            .build()
            .await
            .unwrap();
        Counter::spawn_named(&system, "counter", Counter::new(0))
            .await
            .unwrap();
        Producer::spawn_named(&system, "producer", Producer::new())
            .await
            .unwrap();
        system
    });
    let cases = std::env::var("PULSING_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(12),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&session(), |session| {
        rt.block_on(drive(&system, session));
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0);
        Ok(())
    });
    result.unwrap();
    // A real caller still gets served.
    rt.block_on(async {
        let other = ActorSystem::builder()
            .addr("127.0.0.1:0")
            .seeds([system.advertised_addr().unwrap()])
            .build()
            .await
            .unwrap();
        let counter = Counter::resolve_wait(&other, "counter", std::time::Duration::from_secs(10))
            .await
            .unwrap();
        counter.inc(1).await.unwrap();
        other.shutdown().await;
        system.shutdown().await;
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
