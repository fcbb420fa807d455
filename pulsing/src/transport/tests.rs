//! In-process tests of the transport: two nodes on loopback, port 0.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;
use crate::value::Value;
use crate::wire::{Frame, Payload};

/// Answers every call with its own arguments; a method named "hang" never answers; a stream
/// named "flood" sends ten items at once, whatever the credit; "refuse" answers `NotFound`.
struct Echo;

impl Inbound for Echo {
    fn request(&self, conn: &Arc<Connection>, call: Incoming) {
        if call.method == "hang" {
            return;
        }
        if call.method == "refuse" {
            let conn = conn.clone();
            tokio::spawn(async move {
                let name = call.actor.to_string();
                let result = Err(Error::NotFound { name });
                let _ = conn
                    .send(Frame::Response {
                        id: call.id,
                        result,
                    })
                    .await;
            });
            return;
        }
        if call.method == "flood" {
            let conn = conn.clone();
            tokio::spawn(async move {
                let id = call.id;
                let opened = Ok(Payload::Value(Value::Null));
                let _ = conn.send(Frame::Response { id, result: opened }).await;
                let items = vec![Payload::Value(Value::Null); 10];
                let _ = conn.send(Frame::StreamItems { id, items }).await;
                let _ = conn.send(Frame::StreamEnd { id, error: None }).await;
            });
            return;
        }
        let conn = conn.clone();
        tokio::spawn(async move {
            let result = match call.args {
                Payload::Dynamic(args) => Ok(Payload::Value(Value::List(args.positional))),
                other => Ok(other),
            };
            conn.answer(call.id, result);
        });
    }
    fn gossip(&self, _: &Arc<Connection>, _: Vec<u8>) {}
    fn leaving(&self, _: &Arc<Connection>) {}
    fn closed(&self, _: &Arc<Connection>) {}
}

async fn node(secret: Option<&[u8]>, max_frame: usize) -> (Arc<Transport>, Arc<dyn Inbound>) {
    advertising(None, secret, max_frame).await
}

/// A node on a free loopback port that advertises `advertise` (or its bound address).
async fn advertising(
    advertise: Option<&str>,
    secret: Option<&[u8]>,
    max_frame: usize,
) -> (Arc<Transport>, Arc<dyn Inbound>) {
    let inbound: Arc<dyn Inbound> = Arc::new(Echo);
    let weak: Weak<dyn Inbound> = Arc::downgrade(&inbound);
    let t = Transport::start(
        "127.0.0.1:0",
        advertise.map(str::to_owned),
        new_node_id(),
        secret.map(<[u8]>::to_vec),
        true,
        max_frame,
        weak,
    )
    .await
    .unwrap();
    (t, inbound)
}

fn args(n: i64) -> Payload {
    Payload::Dynamic(crate::value::Args::new().arg(n))
}

fn call(method: &'static str, args: Payload) -> Outgoing<'static> {
    Outgoing {
        actor: "x",
        actor_id: None,
        expect_type: None,
        method,
        args: OutArgs::Payload(args),
        deadline: None,
    }
}

#[tokio::test]
async fn calls_round_trip_and_share_one_connection() {
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 1 << 20).await;
    let addr = b.advertised().to_owned();
    let conn = a.connect(&addr).await.unwrap();
    assert_eq!(conn.peer, b.node());
    let calls = (0..200).map(|i| {
        let conn = conn.clone();
        async move { conn.call(call("echo", args(i))).await.answered() }
    });
    let replies = futures_util::future::join_all(calls).await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(
            reply.unwrap(),
            Payload::Value(Value::List(vec![Value::Int(i as i64)]))
        );
    }
    let again = a.connect(&addr).await.unwrap();
    assert!(Arc::ptr_eq(&conn, &again), "one connection per peer");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_the_right_one_accepted() {
    let (a, _ia) = node(Some(b"right"), 1 << 20).await;
    let (good, _ig) = node(Some(b"right"), 1 << 20).await;
    let (bad, _ib) = node(Some(b"wrong"), 1 << 20).await;
    let (none, _in) = node(None, 1 << 20).await;
    let addr = a.advertised().to_owned();
    let conn = good.connect(&addr).await.unwrap();
    assert_eq!(
        conn.call(call("echo", args(4))).await.answered().unwrap(),
        Payload::Value(Value::List(vec![Value::Int(4)]))
    );
    assert!(matches!(
        bad.connect(&addr).await,
        Err(Error::Refused { .. })
    ));
    assert!(matches!(
        none.connect(&addr).await,
        Err(Error::Refused { .. })
    ));
}

#[tokio::test]
async fn garbage_on_the_port_does_not_disturb_the_node() {
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 1 << 20).await;
    let addr = b.advertised().to_owned();
    let conn = a.connect(&addr).await.unwrap();
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 4096][..],
        b"\x00\x01\x02",
    ] {
        let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = raw.write_all(garbage).await;
        drop(raw);
    }
    assert_eq!(
        conn.call(call("echo", args(1))).await.answered().unwrap(),
        Payload::Value(Value::List(vec![Value::Int(1)]))
    );
}

#[tokio::test]
async fn an_oversize_frame_closes_only_that_connection() {
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 4096).await;
    let (c, _ic) = node(None, 1 << 20).await;
    let addr = b.advertised().to_owned();
    let conn = a.connect(&addr).await.unwrap();
    let big = Payload::Typed(vec![7; 10_000].into());
    let err = conn.call(call("echo", big)).await.answered().unwrap_err();
    assert!(matches!(err, Error::PeerLost { .. }), "{err}");
    // The node still serves other connections (and a fresh one from the same peer).
    let other = c.connect(&addr).await.unwrap();
    assert_eq!(
        other.call(call("echo", args(2))).await.answered().unwrap(),
        Payload::Value(Value::List(vec![Value::Int(2)]))
    );
    let fresh = a.connect(&addr).await.unwrap();
    assert_eq!(
        fresh.call(call("echo", args(3))).await.answered().unwrap(),
        Payload::Value(Value::List(vec![Value::Int(3)]))
    );
}

#[tokio::test]
async fn pending_calls_fail_promptly_when_the_connection_ends() {
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, ib) = node(None, 1 << 20).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let pending = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(call("hang", args(0))).await.answered() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The peer goes away (it shuts down, closing its connections); this side closes nothing.
    b.shutdown().await;
    drop(ib);
    let err = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::PeerLost { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_address_is_a_typed_error() {
    let (a, _ia) = node(None, 1 << 20).await;
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = a.connect(&free.to_string()).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
}

#[test]
fn a_wildcard_bind_advertises_a_reachable_interface_address() {
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let eth: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let v6: std::net::IpAddr = "2001:db8::7".parse().unwrap();
    let wildcard: SocketAddr = "0.0.0.0:9000".parse().unwrap();
    assert_eq!(
        reachable(wildcard, &[(lo, true), (v6, false), (eth, false)]),
        "192.0.2.7:9000".parse().unwrap()
    );
    assert_eq!(
        reachable(wildcard, &[(lo, true)]),
        "127.0.0.1:9000".parse().unwrap(),
        "loopback when nothing else"
    );
    let fixed: SocketAddr = "127.0.0.1:9000".parse().unwrap();
    assert_eq!(
        reachable(fixed, &[(eth, false)]),
        fixed,
        "a specific address is kept"
    );
}

#[tokio::test]
async fn binding_all_interfaces_never_advertises_the_wildcard() {
    let inbound: Arc<dyn Inbound> = Arc::new(Echo);
    let t = Transport::start(
        "0.0.0.0:0",
        None,
        new_node_id(),
        None,
        true,
        1 << 20,
        Arc::downgrade(&inbound),
    )
    .await
    .unwrap();
    let advertised: SocketAddr = t.advertised().parse().unwrap();
    assert!(!advertised.ip().is_unspecified(), "{advertised}");
    assert_eq!(advertised.port(), t.local_addr().port());
    t.shutdown().await;
}

#[tokio::test]
async fn a_connection_the_peer_opened_carries_our_calls_to_it_too() {
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 1 << 20).await;
    let a_to_b = a.connect(b.advertised()).await.unwrap();
    // b adopts the incoming connection once the handshake is done on its side too.
    while b.all.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b_to_a = b.connect(a.advertised()).await.unwrap();
    assert_eq!(b_to_a.peer, a.node());
    assert_eq!(
        b.all.lock().unwrap().len(),
        1,
        "b opened no second connection"
    );
    assert_eq!(
        a.all.lock().unwrap().len(),
        1,
        "a accepted no second connection"
    );
    assert_eq!(
        b_to_a.call(call("echo", args(9))).await.answered().unwrap(),
        Payload::Value(Value::List(vec![Value::Int(9)]))
    );
    drop(a_to_b);
}

#[tokio::test]
async fn the_advertised_address_can_be_set_by_hand_and_peers_see_it() {
    let (behind_nat, _ib) = advertising(Some("203.0.113.7:9000"), None, 1 << 20).await;
    assert_eq!(behind_nat.advertised(), "203.0.113.7:9000");
    let (other, _io) = node(None, 1 << 20).await;
    let conn = other
        .connect(&behind_nat.local_addr().to_string())
        .await
        .unwrap();
    assert_eq!(
        conn.peer_addr, "203.0.113.7:9000",
        "the handshake carries it"
    );
}

#[tokio::test]
async fn a_long_deadline_is_enforced_by_the_readers_sweep() {
    // Deadlines of SWEPT_DEADLINE or more have no timer of their own: the reader's check
    // (once a second) expires them and cancels the call on the peer. Real time: ≈10 s.
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 1 << 20).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut long = call("hang", args(0));
    long.deadline = Some(SWEPT_DEADLINE);
    let outcome = tokio::time::timeout(SWEPT_DEADLINE * 2, conn.call(long))
        .await
        .expect("the sweep expires the call");
    assert!(matches!(outcome, Outcome::Expired), "{outcome:?}");
    let took = start.elapsed();
    assert!(took >= SWEPT_DEADLINE, "never early");
    // Documented (docs/calls-and-deadlines.md): swept once a second, "up to 2 s late"; one more
    // second of room for a loaded machine.
    assert!(
        took <= SWEPT_DEADLINE + Duration::from_secs(3),
        "expired {:?} late",
        took - SWEPT_DEADLINE
    );
    assert_eq!(conn.waiting_calls(), 0);
}

#[tokio::test]
async fn the_sweep_leaves_short_deadlines_and_unexpired_calls_alone() {
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 1 << 20).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let with_deadline = |d: Duration| {
        let mut c = call("hang", args(0));
        c.deadline = Some(d);
        c
    };
    let short = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(with_deadline(Duration::from_secs(1))).await }
    });
    let long = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(with_deadline(SWEPT_DEADLINE * 2)).await }
    });
    while conn.waiting_calls() < 2 {
        tokio::task::yield_now().await;
    }
    // As if time had passed: a swept call is due ⌈deadline + 10 ms⌉ + 1 checks from now, and
    // only swept calls expire.
    let secs = SWEPT_DEADLINE.as_secs();
    conn.expire_calls(secs + 1);
    assert_eq!(conn.waiting_calls(), 2);
    conn.expire_calls(2 * secs + 1);
    assert_eq!(
        conn.waiting_calls(),
        2,
        "never early: 10 ms of slack, so one check more"
    );
    conn.expire_calls(2 * secs + 2);
    assert!(matches!(long.await.unwrap(), Outcome::Expired));
    assert_eq!(
        conn.waiting_calls(),
        1,
        "the short one is its caller's to time out"
    );
    short.abort();
}

#[tokio::test]
async fn packed_small_frames_reach_a_node_with_a_small_frame_limit() {
    // Frames are packed into messages of up to PACK_LIMIT bytes; a node whose own limit is
    // smaller applies it to each frame, not to the pack.
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 4096).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let calls = (0..100).map(|_| {
        let conn = conn.clone();
        async move {
            conn.call(call("echo", Payload::Typed(vec![1; 200].into())))
                .await
                .answered()
        }
    });
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap(), Payload::Typed(vec![1; 200].into()));
    }
}

#[tokio::test]
async fn a_huge_deadline_neither_overflows_nor_expires() {
    let (a, _ia) = node(None, 1 << 20).await;
    let (b, _ib) = node(None, 1 << 20).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let mut forever = call("hang", args(0));
    forever.deadline = Some(Duration::MAX);
    let pending = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(forever).await }
    });
    for _ in 0..1000 {
        if conn.waiting_calls() == 1 || pending.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        !pending.is_finished(),
        "the call ended: {:?}",
        pending.await
    );
    conn.expire_calls(1 << 40);
    assert_eq!(conn.waiting_calls(), 1);
    pending.abort();
}

/// Issue #12, item 4: a caller kept any number of calls in flight on a connection (the peer
/// held them all). Now the window's next call waits until one in flight is answered or given up.
#[tokio::test]
async fn a_caller_keeps_at_most_a_window_of_calls_in_flight() {
    let (a, _ia) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let (b, _ib) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let mut hanging = Vec::new();
    for _ in 0..connection::CALL_WINDOW {
        let conn = conn.clone();
        hanging.push(tokio::spawn(async move {
            conn.call(call("hang", args(0))).await
        }));
    }
    let next = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(call("echo", args(7))).await.answered() }
    });
    let mut told = Box::pin(conn.tell(call("echo", args(8))));
    // Every hanging call is registered, and the next call and the tell wait for room.
    crate::transport::tests::eventually(|| conn.waiting_calls() == connection::CALL_WINDOW).await;
    assert!(futures_util::FutureExt::now_or_never(&mut told).is_none());
    assert!(!next.is_finished());
    assert!(!conn.has_room());
    // One hanging call given up: the next one goes, and its answer frees room for the tell.
    hanging.pop().unwrap().abort();
    assert_eq!(
        next.await.unwrap(),
        Ok(Payload::Value(Value::List(vec![Value::Int(7)])))
    );
    assert_eq!(told.await, Ok(()));
    for h in hanging {
        h.abort();
    }
    crate::transport::tests::eventually(|| conn.waiting_calls() == 0).await;
}

/// The common path of a call (`try_call`): sent at once while the window has room, answered
/// through what it returns, cancelled (unregistered) when that is dropped unanswered; with the
/// window full, nothing is sent or registered and the arguments come back for `call`.
#[tokio::test]
async fn try_call_sends_at_once_or_gives_the_arguments_back() {
    let (a, _ia) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let (b, _ib) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let Attempt::Sent(answer) = conn.try_call(call("echo", args(1))) else {
        panic!("a call on an idle connection is sent at once");
    };
    assert_eq!(
        answer.await.answered(),
        Ok(Payload::Value(Value::List(vec![Value::Int(1)])))
    );
    let Attempt::Sent(answer) = conn.try_call(call("hang", args(0))) else {
        panic!("a call on an idle connection is sent at once");
    };
    assert_eq!(conn.waiting_calls(), 1);
    drop(answer);
    assert_eq!(conn.waiting_calls(), 0, "a dropped answer cancels its call");

    let mut hanging = Vec::new();
    for _ in 0..connection::CALL_WINDOW {
        let conn = conn.clone();
        hanging.push(tokio::spawn(async move {
            conn.call(call("hang", args(0))).await
        }));
    }
    eventually(|| conn.waiting_calls() == connection::CALL_WINDOW).await;
    match conn.try_call(call("echo", args(9))) {
        Attempt::MustWait(OutArgs::Payload(given_back)) => assert_eq!(given_back, args(9)),
        other => panic!("a full window must give the arguments back, not {other:?}"),
    }
    assert_eq!(conn.waiting_calls(), connection::CALL_WINDOW);
    for h in hanging {
        h.abort();
    }
    eventually(|| conn.waiting_calls() == 0).await;
}

/// The next message of a stream's channel, or a panic after 10 s (a test never hangs on it).
async fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<StreamMsg>) -> Option<StreamMsg> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no stream message within 10 s")
}

/// Polls `check` until it holds (generous: 10 s).
pub(super) async fn eventually(mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s");
}

/// Issue #12, item 4: `StreamItems` beyond the credit granted were handed to the consumer (its
/// channel grew with whatever the peer sent). Now they end the stream with an error.
#[tokio::test]
async fn stream_items_beyond_the_credit_end_the_stream_with_an_error() {
    let (a, _ia) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let (b, _ib) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let (_, mut rx) = conn.open_stream(call("flood", args(0)), 4).await.unwrap();
    assert!(matches!(
        recv(&mut rx).await,
        Some(StreamMsg::Opened(Ok(())))
    ));
    match recv(&mut rx).await {
        Some(StreamMsg::End(Some(Error::Codec(why)))) => {
            assert!(why.contains("10 stream items with credit for 4"), "{why}")
        }
        other => panic!("expected the stream to end with an error, got {other:?}"),
    }
    // With enough credit, the same stream is fine; the connection carries on either way.
    let (_, mut rx) = conn.open_stream(call("flood", args(0)), 10).await.unwrap();
    assert!(matches!(
        recv(&mut rx).await,
        Some(StreamMsg::Opened(Ok(())))
    ));
    assert!(matches!(recv(&mut rx).await, Some(StreamMsg::Items(items)) if items.len() == 10));
    assert!(matches!(recv(&mut rx).await, Some(StreamMsg::End(None))));
    assert_eq!(conn.waiting_calls(), 0);
    assert!(!conn.is_closed());
}

/// A stream the peer refuses to open (its `Response` is an error) is over: it leaves the
/// connection's books and frees its place in the window. It used to stay registered, so every
/// failed open cost the caller one of its `CALL_WINDOW` places for good.
#[tokio::test]
async fn a_stream_that_fails_to_open_leaves_the_books() {
    let (a, _ia) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let (b, _ib) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    let (_, mut rx) = conn.open_stream(call("refuse", args(0)), 4).await.unwrap();
    assert!(matches!(
        recv(&mut rx).await,
        Some(StreamMsg::Opened(Err(Error::NotFound { .. })))
    ));
    assert_eq!(conn.waiting_calls(), 0);
    assert!(
        recv(&mut rx).await.is_none(),
        "nothing follows a failed open"
    );
}

/// Issue #12, item 10: `Credit` could push a stream's semaphore past tokio's limit, whose
/// assert killed the reader (2^29 frames of `u32::MAX` on 64-bit; `credit_semaphore(u32::MAX)`
/// alone on 32-bit). Now credit stops at `MAX_CREDIT`.
#[test]
fn credit_never_exceeds_the_semaphores_limit() {
    let credit = connection::credit_semaphore(u32::MAX);
    for _ in 0..10 {
        connection::add_credit_for_tests(&credit, u32::MAX);
    }
    assert!(credit.available_permits() <= tokio::sync::Semaphore::MAX_PERMITS);
    assert!(credit.available_permits() >= u32::MAX as usize / 2);
}

/// Issue #12, item 5: a dial slot stayed forever for every address ever dialed or adopted (keyed
/// by peer-chosen strings), holding its closed connection and that connection's unsent frames.
#[tokio::test]
async fn dial_slots_go_with_their_connections_and_failed_dials() {
    let (a, _ia) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let (b, ib) = node(None, crate::wire::DEFAULT_MAX_FRAME).await;
    let conn = a.connect(b.advertised()).await.unwrap();
    assert_eq!(a.dial_slots(), 1);
    // A failed dial leaves no slot.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(a.connect(&free.to_string()).await.is_err());
    assert_eq!(a.dial_slots(), 1);
    eventually(|| b.dial_slots() == 1).await;
    // The peer goes: so does the slot, on both sides, and the closed connection's outbox is empty.
    b.shutdown().await;
    drop(ib);
    eventually(|| conn.is_closed()).await;
    eventually(|| a.dial_slots() == 0).await;
    eventually(|| b.dial_slots() == 0).await;
    assert!(conn.is_closed());
    assert_eq!(conn.unsent_bytes(), 0);
}

/// A lone call is written by the caller's thread; a payload larger than the socket's buffers
/// makes that write wait, and the writer task must finish it (`writer.rs`). Then calls that go
/// out in a batch, then lone ones again: every answer must come back whole and in its place,
/// encrypted or not.
const LONG: Duration = Duration::from_secs(30);

fn hung<T>(what: String) -> impl FnOnce(tokio::time::error::Elapsed) -> T {
    move |_| panic!("{what} hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_calls_larger_than_the_socket_buffers_are_finished_by_the_writer() {
    for secret in [None, Some(&b"s"[..])] {
        let (a, _ia) = node(secret, 64 << 20).await;
        let (b, _ib) = node(secret, 64 << 20).await;
        let conn = a.connect(b.advertised()).await.unwrap();
        let typed = |n: usize, fill: u8| {
            let bytes =
                crate::wire::SharedBytes::encode(&serde_bytes::ByteBuf::from(vec![fill; n]));
            Payload::Typed(bytes.unwrap())
        };
        // Every wait is bounded: a frame left unwritten would hang the call, not fail it.
        for (i, n) in [8 << 20, 1, 3 << 20, 100, 16 << 20].into_iter().enumerate() {
            let sent = typed(n, i as u8);
            let back = tokio::time::timeout(LONG, conn.call(call("echo", sent.clone())))
                .await
                .unwrap_or_else(hung(format!("lone call {i} of {n} bytes")));
            assert_eq!(back.answered().unwrap(), sent, "lone call {i} of {n} bytes");
        }
        let batch = (0..32).map(|i| {
            let conn = conn.clone();
            let sent = typed(if i % 4 == 0 { 1 << 20 } else { 10 }, i as u8);
            async move { (conn.call(call("echo", sent.clone())).await.answered(), sent) }
        });
        let batch = tokio::time::timeout(LONG, futures_util::future::join_all(batch))
            .await
            .unwrap_or_else(hung("the batch".into()));
        for (back, sent) in batch {
            assert_eq!(back.unwrap(), sent);
        }
        let sent = typed(5 << 20, 9);
        let back = tokio::time::timeout(LONG, conn.call(call("echo", sent.clone())))
            .await
            .unwrap_or_else(hung("the last lone call".into()));
        assert_eq!(back.answered().unwrap(), sent);
        // Large byte strings are written from their own buffers (and sealed from them):
        // pieces of odd lengths, so records and masking cross their edges.
        let piece =
            |n: u32| Value::Bytes((0..n).map(|i| (i % 251) as u8).collect::<Vec<_>>().into());
        let sent = Payload::Value(Value::List(vec![
            piece(100_001),
            Value::Str("between".into()),
            piece((1 << 20) + 3),
            piece(70_003),
        ]));
        let back = tokio::time::timeout(LONG, conn.call(call("echo", sent.clone())))
            .await
            .unwrap_or_else(hung("the call with shared byte strings".into()));
        assert_eq!(back.answered().unwrap(), sent, "secret: {secret:?}");
    }
}
