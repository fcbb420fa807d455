//! Hostile and overloaded peers (issue #12, the wire and transport half): raw clients
//! (`pulsing_tests::raw`) against real `test_node` processes — deep nesting before and after
//! login, stalled logins, a flood of told calls to a slow actor with the node's memory measured,
//! requests cancelled at once behind a busy actor, repeated request ids, absurd credit. Each test
//! says what the code before the fix did (or would do without the guard it checks).

use std::time::Duration;

use pulsing::prelude::*;
use pulsing::wire::{encode, Frame, NodeId, Payload};
use pulsing_tests::raw::{masked_frame, request, Login, Raw, Received};
use pulsing_tests::{client, NodeProcess, Worker};
use tokio::io::AsyncReadExt;

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
const SECRET: &[u8] = b"s3cret";

fn fresh_id() -> NodeId {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    NodeId(u64::from_le_bytes(b))
}

async fn login(node: &NodeProcess) -> Login {
    Login::dial(&node.addr, Some(SECRET), fresh_id(), "127.0.0.1:1", true)
        .await
        .expect("the login succeeds")
}

/// A by-name `process("x")` call on `worker` answers through a fresh login.
async fn still_serves(node: &NodeProcess) {
    let mut fresh = login(node).await;
    answers(&mut fresh, 1).await;
}

/// A by-name `process("x")` call with id `id` answers on `login`. Once it has, the node has
/// finished the handshake (and reads fragmented messages beside tungstenite: `inlet.rs`).
async fn answers(login: &mut Login, id: u64) {
    login
        .send(&[request(id, "worker", "process", Args::new().arg("x"))])
        .await;
    match login.response(id).await.expect("an answer") {
        Frame::Response {
            result: Ok(Payload::Value(Value::Str(s))),
            ..
        } => assert!(s.starts_with("x processed")),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// The bytes of a by-name request whose one argument is `depth` nested lists (written by hand:
/// the encoder refuses a `Value` that deep).
fn deep_request(id: u64, depth: usize) -> Vec<u8> {
    let mut bytes = encode(&request(
        id,
        "worker",
        "process",
        Args::new().arg(Value::Null),
    ));
    // It ends with: Null, no keyword arguments, no credit, no deadline.
    let tail = bytes.split_off(bytes.len() - 4);
    assert_eq!(tail, [0, 0, 0, 0]);
    bytes.extend([6u8, 1].repeat(depth));
    bytes.extend(tail);
    bytes
}

/// Before the fix, `Value` decoded by recursion with no limit: a debug `test_node` aborted with a
/// stack overflow at about 8k levels, taking every connection with it.
#[tokio::test]
async fn deep_nesting_after_login_closes_only_that_connection() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut attacker = login(&node).await;
    attacker.send_plain(&deep_request(1, 50_000)).await;
    let closed = attacker.response(1).await.unwrap_err();
    assert!(closed.starts_with("closed"), "{closed}");
    assert!(closed.contains("nested more than 128"), "{closed}");
    // At the limit it is a fine argument (a type error for `process`, not a protocol error).
    let mut fair = login(&node).await;
    fair.send_plain(&deep_request(2, pulsing::value::MAX_DEPTH))
        .await;
    assert!(matches!(
        fair.response(2).await,
        Ok(Frame::Response {
            result: Err(Error::BadArguments { .. }),
            ..
        })
    ));
    still_serves(&node).await;
}

/// Before login only a `Hello` of at most 2 KiB is decoded (since the Noise change): a 16 KB
/// message or a deeply nested frame is refused, and the node carries on.
#[tokio::test]
async fn a_large_or_deep_message_before_login_is_refused_without_harm() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    for first in [
        vec![0u8; 16_000],
        deep_request(1, 900),
        deep_request(1, 50_000),
    ] {
        let mut raw = Raw::connect(&node.addr).await;
        let _hello = raw.expect_binary().await;
        raw.send(first).await;
        match raw.recv().await {
            Received::Closed(reason) => assert!(reason.contains("protocol error"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    still_serves(&node).await;
}

/// Reads from `tcp` until the node closes it or `within` passes; true if it closed.
async fn closes_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Opens `n` TCP connections to `addr` from `ips` (in turn) that never send a byte.
async fn stalled(addr: &str, ips: &[std::net::Ipv4Addr], n: usize) -> Vec<tokio::net::TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind((ips[i % ips.len()], 0).into())
            .expect("any 127/8 address is loopback");
        out.push(socket.connect(addr).await.expect("the kernel accepts"));
    }
    out
}

/// Before the fix, every connection that never logged in held a task and a socket, with no
/// limit on how many; the WebSocket upgrade and the handshake each had a timeout of their own.
/// Now at most 16 per source IP (128 in all) are let in, each for at most 5 s in all.
#[tokio::test]
async fn stalled_logins_are_capped_closed_in_time_and_a_real_node_still_gets_in() {
    let node = NodeProcess::start(NODE, &["--spawn", "worker"]);
    let me = client(&node.addr).await;
    let worker = Worker::resolve(&me, "worker").await.unwrap();
    assert_eq!(
        worker.process("a".into()).await.unwrap(),
        "a processed by node"
    );
    let baseline = node.fd_count();

    // 200 from one address: all but 16 are closed at once.
    let attacker = [std::net::Ipv4Addr::new(127, 0, 0, 2)];
    let mut conns = stalled(&node.addr, &attacker, 200).await;
    let quick = futures_util::future::join_all(
        conns
            .iter_mut()
            .map(|c| closes_within(c, Duration::from_secs(2))),
    )
    .await;
    let let_in = quick.iter().filter(|closed| !**closed).count();
    assert_eq!(let_in, 16, "at most 16 logins from one address");
    // Meanwhile a real node (another address) connects and calls.
    let other = client(&node.addr).await;
    let w = Worker::resolve(&other, "worker").await.unwrap();
    assert_eq!(w.process("b".into()).await.unwrap(), "b processed by node");
    // The 16 are closed by the establish timeout (5 s; generous bound here).
    for c in &mut conns {
        assert!(closes_within(c, Duration::from_secs(15)).await);
    }
    drop(conns);

    // 200 from 200 addresses: at most 128 at once.
    let many: Vec<_> = (0..200u8)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 1, i.max(1)))
        .collect();
    let mut conns = stalled(&node.addr, &many, 200).await;
    let quick = futures_util::future::join_all(
        conns
            .iter_mut()
            .map(|c| closes_within(c, Duration::from_secs(2))),
    )
    .await;
    let let_in = quick.iter().filter(|closed| !**closed).count();
    assert!(let_in <= 128, "{let_in} logins in progress at once");
    for c in &mut conns {
        assert!(closes_within(c, Duration::from_secs(15)).await);
    }
    drop(conns);

    // The node still serves, and holds no more descriptors than before the attack (the second
    // client's connection aside).
    assert_eq!(
        worker.process("c".into()).await.unwrap(),
        "c processed by node"
    );
    pulsing_tests::eventually(Duration::from_secs(10), "fds back to baseline", || async {
        node.fd_count() <= baseline + 1
    })
    .await;
    drop(other);
}

/// Before the fix a peer's calls waiting for a busy actor queued without limit: 20,000 told
/// calls of 10 KB to a slow actor grew the node from 8 to 213 MiB, with no error and no
/// throttling. Now the node serves at most 4,096 calls per peer at once (`SERVED_LIMIT`) and
/// answers the rest `Busy` at once, so its memory grows by at most about 4,096 × 10 KiB = 40 MiB
/// of arguments plus buffers; a Pulsing caller never exceeds its window of 2,048 and waits
/// instead. Every call is answered: nothing is lost silently.
#[tokio::test]
async fn a_flood_of_told_calls_to_a_slow_actor_keeps_memory_bounded() {
    let mut node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut attacker = login(&node).await;
    still_serves(&node).await;
    let before = node.status_kib("VmRSS");
    const CALLS: u64 = 20_000;
    let data = Value::bytes(vec![7u8; 10_000]);
    let mut id = 0;
    while id < CALLS {
        let frames: Vec<Frame> = (0..50)
            .map(|i| {
                let args = Args::new().arg(data.clone()).arg(1);
                request(id + i + 1, "worker", "absorb", args)
            })
            .collect();
        attacker.send(&frames).await;
        id += 50;
    }
    // Every call gets exactly one answer: served, or refused as busy.
    let (mut served, mut busy) = (0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    while served + busy < CALLS {
        for frame in attacker.recv().await.expect("answers keep coming") {
            match frame {
                Frame::Response { id, result } => {
                    assert!(seen.insert(id), "call {id} answered twice");
                    match result {
                        Ok(_) => served += 1,
                        Err(Error::Busy { limit, .. }) => {
                            assert_eq!(limit, 4096);
                            busy += 1
                        }
                        Err(e) => panic!("call {id} failed: {e}"),
                    }
                }
                Frame::Gossip(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let peak = node.status_kib("VmHWM");
    eprintln!(
        "flood: VmRSS before {before} KiB, peak {peak} KiB (+{} MiB); served {served}, busy {busy}",
        (peak.saturating_sub(before)) >> 10
    );
    assert!(served >= 4096, "{served}");
    assert!(
        peak.saturating_sub(before) < 96 << 10,
        "the node grew from {before} to {peak} KiB"
    );
    still_serves(&node).await;
    assert!(node.is_running());
}

/// Calls the peer cancels at once never hold the node's memory: each is dropped from its
/// actor's backlog as the cancel arrives (or skipped by the backlog's drainer, for the at most
/// `BACKLOG_CHUNK` = 64 it has taken). A peer that requests and cancels never reaches its
/// `SERVED_LIMIT`, so without that its backlog (here 20,000 × 10 KB = 200 MB of arguments behind
/// an actor busy for 2 s) would grow without bound.
#[tokio::test]
async fn calls_requested_and_cancelled_at_once_leave_no_backlog() {
    let mut node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut attacker = login(&node).await;
    still_serves(&node).await;
    let before = node.status_kib("VmRSS");
    // The worker is busy for 2 s (the reader waits at most 3 s for a message: `READ_WAIT`);
    // 300 live calls fill its mailbox (256) and start a backlog
    // whose drainer waits for room: everything after them waits in that backlog.
    attacker
        .send(&[request(1, "worker", "slow", Args::new().arg(2000))])
        .await;
    const LIVE: u64 = 300;
    let live: Vec<Frame> = (2..2 + LIVE)
        .map(|id| request(id, "worker", "process", Args::new().arg("x")))
        .collect();
    attacker.send(&live).await;
    const PAIRS: u64 = 20_000;
    let data = Value::bytes(vec![7u8; 10_000]);
    let mut id = 1 + LIVE;
    while id <= LIVE + PAIRS {
        let frames: Vec<Frame> = (1..=25)
            .flat_map(|i| {
                let args = Args::new().arg(data.clone()).arg(0);
                [
                    request(id + i, "worker", "absorb", args),
                    Frame::Cancel { id: id + i },
                ]
            })
            .collect();
        attacker.send(&frames).await;
        id += 25;
    }
    // The slow call and every live one are answered once the worker is free (often many in one
    // message: each frame of every message counts), and no cancelled call is.
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < 1 + LIVE as usize {
        for frame in attacker.recv().await.expect("the answers keep coming") {
            if let Frame::Response { id, result } = frame {
                assert!(id <= 1 + LIVE, "cancelled call {id} was answered");
                assert!(result.is_ok(), "call {id}: {result:?}");
                assert!(answered.insert(id), "call {id} answered twice");
            }
        }
    }
    let peak = node.status_kib("VmHWM");
    eprintln!(
        "request-and-cancel: VmRSS before {before} KiB, peak {peak} KiB (+{} MiB)",
        (peak.saturating_sub(before)) >> 10
    );
    assert!(
        peak.saturating_sub(before) < 48 << 10,
        "the node grew from {before} to {peak} KiB"
    );
    still_serves(&node).await;
    assert!(node.is_running());
}

/// A request, as `id`, for the worker's endless `ticks` stream with `credit` items of credit.
fn ticks(id: u64, credit: u32) -> Frame {
    Frame::Request {
        id,
        actor: "worker".into(),
        actor_id: None,
        expect_type: None,
        method: "ticks".into(),
        args: Payload::Dynamic(Args::new()),
        credit: Some(credit),
        deadline_ms: None,
    }
}

/// Before the fix a second request with the id of a running stream replaced its entry: the
/// first stream's task ran on with nothing to cancel or credit it. Now the connection closes.
#[tokio::test]
async fn a_repeated_request_id_closes_the_connection() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut attacker = login(&node).await;
    let stream = ticks(5, 1);
    attacker.send(&[stream]).await;
    attacker.response(5).await.expect("the stream opens");
    attacker
        .send(&[request(5, "worker", "process", Args::new().arg("x"))])
        .await;
    let closed = attacker.response(5).await.unwrap_err();
    assert!(
        closed.contains("request id 5 is already in use"),
        "{closed}"
    );
    still_serves(&node).await;
}

/// Credit beyond any need (`u32::MAX` a thousand times over) is capped below the semaphore's
/// limit (which panics past it) and harms nothing; the stream runs and cancels as usual.
#[tokio::test]
async fn absurd_credit_harms_nothing() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut attacker = login(&node).await;
    let stream = ticks(1, u32::MAX);
    attacker.send(&[stream]).await;
    let credit: Vec<Frame> = (0..1000)
        .map(|_| Frame::Credit {
            id: 1,
            items: u32::MAX,
        })
        .collect();
    attacker.send(&credit).await;
    let mut items = 0;
    while items < 10_000 {
        for frame in attacker.recv().await.expect("items keep coming") {
            if let Frame::StreamItems { items: batch, .. } = frame {
                items += batch.len();
            }
        }
    }
    attacker.send(&[Frame::Cancel { id: 1 }]).await;
    attacker
        .send(&[request(2, "worker", "process", Args::new().arg("y"))])
        .await;
    // The same connection still answers a call, with its value.
    match attacker.response(2).await.expect("an answer") {
        Frame::Response {
            result: Ok(Payload::Value(Value::Str(s))),
            ..
        } => assert!(s.starts_with("y processed"), "{s}"),
        other => panic!("unexpected answer {other:?}"),
    }
    still_serves(&node).await;
}

/// A logged-in peer sends a message whose last record is shorter than a tag, after a full one
/// (65,535 + 5 bytes). Before the fix the opener sized its buffer from the message's length
/// before checking the records, and slicing the first record out of it panicked in the
/// connection's reader. Now the connection is closed with a reason, and the node serves on.
#[tokio::test]
async fn a_last_record_shorter_than_a_tag_closes_only_that_connection() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut attacker = login(&node).await;
    assert!(attacker.encrypted);
    attacker.raw.send(vec![0; 65_535 + 5]).await;
    let closed = attacker.raw.until_closed(|_| {}).await;
    let reason = closed.expect("the node closes the connection");
    assert!(reason.contains("too short to be sealed"), "{reason}");
    still_serves(&node).await;
}

/// A call cut into WebSocket fragments anywhere (an empty one and a ping among them) is answered
/// as if it came whole, sealed or not: the node reads fragmented messages beside tungstenite,
/// each fragment into a buffer of its own (`transport/inlet.rs`), and a cut that is not at a
/// byte string's edges only costs a copy.
#[tokio::test]
async fn a_call_cut_into_fragments_anywhere_is_answered() {
    for secret in [None, Some(SECRET)] {
        let args: &[&str] = match secret {
            Some(_) => &["--secret", "s3cret", "--spawn", "worker"],
            None => &["--spawn", "worker"],
        };
        let node = NodeProcess::start(NODE, args);
        let mut caller = Login::dial(&node.addr, secret, fresh_id(), "127.0.0.1:1", true)
            .await
            .expect("the login succeeds");
        answers(&mut caller, 1).await;
        let text = "y".repeat(40_000);
        let message = caller.seal(&[request(
            7,
            "worker",
            "process",
            Args::new().arg(text.as_str()),
        )]);
        let cuts = [1, 2, 100, message.len() / 2, message.len() - 1];
        let mut wire = vec![];
        let mut from = 0;
        for (i, &cut) in cuts.iter().enumerate() {
            wire.extend(masked_frame(
                if i == 0 { 0x02 } else { 0x00 },
                &message[from..cut],
            ));
            wire.extend(masked_frame(0x00, &[]));
            wire.extend(masked_frame(0x89, b"ping"));
            from = cut;
        }
        wire.extend(masked_frame(0x80, &message[from..]));
        caller.raw.send_frames(&wire).await;
        match caller.response(7).await.expect("an answer") {
            Frame::Response {
                result: Ok(Payload::Value(Value::Str(s))),
                ..
            } => assert!(
                s.starts_with(&text[..100]) && s.contains("processed"),
                "secret {secret:?}"
            ),
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// A fragmented message that breaks WebSocket's rules, or ours, closes that connection with a
/// reason that says which rule; the node serves others as before.
#[tokio::test]
async fn a_fragmented_message_that_breaks_the_rules_closes_only_that_connection() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut sixty_five = vec![];
    for _ in 0..64 {
        sixty_five.extend(masked_frame(0x00, b"x"));
    }
    // A continuation that claims 2^62 bytes: refused from its header, nothing allocated.
    let mut huge = vec![0x80, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    let cases = [
        (
            masked_frame(0x82, b"again"),
            "a new message began inside a fragmented one",
        ),
        (masked_frame(0x09, b"p"), "control frame fragmented"),
        (sixty_five, "more than 64 fragments"),
        (huge, "byte limit"),
    ];
    for (rest, reason) in cases {
        let mut attacker = login(&node).await;
        answers(&mut attacker, 1).await;
        attacker
            .raw
            .send_frames(&masked_frame(0x02, b"start"))
            .await;
        attacker.raw.send_frames(&rest).await;
        let closed = attacker.raw.until_closed(|_| {}).await;
        let said = closed.expect("the node closes the connection");
        assert!(said.contains(reason), "expected {reason:?}, got {said:?}");
        still_serves(&node).await;
    }
}

/// A peer that starts a fragmented message, promises a megabyte and stops sending holds up
/// only its own connection: other peers are served meanwhile.
#[tokio::test]
async fn a_peer_stalled_within_a_fragmented_message_holds_up_only_itself() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut stalled = login(&node).await;
    answers(&mut stalled, 1).await;
    stalled.raw.send_frames(&masked_frame(0x02, b"start")).await;
    let promised = masked_frame(0x80, &vec![0; 1 << 20]);
    stalled.raw.send_frames(&promised[..1000]).await;
    for _ in 0..3 {
        still_serves(&node).await;
    }
    drop(stalled);
    still_serves(&node).await;
}
