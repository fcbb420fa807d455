//! The cluster against an attacker on the network: raw clients (`pulsing_tests::raw`) that speak
//! the wire format by hand and send what a real node never would — an echoed handshake, a
//! handshake relayed between two nodes, a forged node id, records injected into or changed in an
//! established connection, a browser's `Origin`, an old protocol version — against real
//! `test_node` processes on loopback ports.

use std::time::Duration;

use pulsing::prelude::*;
use pulsing::wire::{decode, Frame, NodeId, Payload, PROTOCOL_VERSION};
use pulsing_tests::raw::{hello_node, request, Login, Raw, Received};
use pulsing_tests::{NodeProcess, Worker};

const NODE: &str = env!("CARGO_BIN_EXE_test_node");
/// Longer than a node's handshake timeout (5 s): by then a half-done login is closed.
const PAST_HANDSHAKE: Duration = Duration::from_secs(8);

fn fresh_id() -> NodeId {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    NodeId(u64::from_le_bytes(b))
}

/// Whether `bytes` hold a `Response` frame in cleartext (what a served call would send back).
fn is_response(bytes: &[u8]) -> bool {
    matches!(
        postcard::take_from_bytes::<Frame>(bytes),
        Ok((Frame::Response { .. }, _))
    )
}

/// Calls `worker.process(text)` as request `id` on `login`; the node's answer frame, or how the
/// connection ended.
async fn process(login: &mut Login, id: u64, text: &str) -> Result<Frame, String> {
    login
        .send(&[request(id, "worker", "process", Args::new().arg(text))])
        .await;
    login.response(id).await
}

/// A node with the secret `s`, encryption on or off, serving a `worker`.
fn secured_node(name: &str, encrypt: bool) -> NodeProcess {
    let flag = if encrypt { "on" } else { "off" };
    NodeProcess::start(
        NODE,
        &[
            "--secret",
            "s",
            "--encrypt",
            flag,
            "--name",
            name,
            "--spawn",
            "worker",
        ],
    )
}

/// The answer of a by-name call, as text.
fn answer(frame: Frame) -> String {
    match frame {
        Frame::Response {
            result: Ok(Payload::Value(Value::Str(s))),
            ..
        } => s,
        other => panic!("expected a text answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_echoes_the_nodes_own_handshake_is_refused() {
    for secret in [Some("s3cret"), None] {
        let mut args = vec!["--spawn", "worker"];
        if let Some(secret) = secret {
            args.extend(["--secret", secret]);
        }
        let node = NodeProcess::start(NODE, &args);
        let mut raw = Raw::connect(&node.addr).await;
        // Whatever the node sends, send it straight back, then try a call.
        let mut echoed = 0;
        let reason = loop {
            match raw.recv().await {
                Received::Binary(bytes) => {
                    assert!(!is_response(&bytes));
                    raw.send(bytes).await;
                    echoed += 1;
                    if echoed == 2 {
                        raw.send(pulsing::wire::encode(&request(
                            1,
                            "worker",
                            "process",
                            Args::new().arg("x"),
                        )))
                        .await;
                    }
                }
                Received::Closed(reason) => break reason,
                Received::Nothing => panic!("the node neither refused nor answered"),
            }
        };
        assert!(reason.contains("own id"), "{secret:?}: {reason}");
    }
}

#[tokio::test]
async fn a_handshake_relayed_between_two_nodes_logs_in_to_neither() {
    let a = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let b = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let mut to_a = Raw::connect(&a.addr).await;
    let mut to_b = Raw::connect(&b.addr).await;
    // Tell A we are B and B we are A, then carry whatever either says to the other.
    let hello_a = to_a.expect_binary().await;
    let hello_b = to_b.expect_binary().await;
    to_a.send(hello_b).await;
    to_b.send(hello_a).await;
    let relay = async {
        let (mut a_done, mut b_done) = (false, false);
        while !(a_done && b_done) {
            tokio::select! {
                got = to_a.recv(), if !a_done => match got {
                    Received::Binary(bytes) => { assert!(!is_response(&bytes)); to_b.send(bytes).await }
                    _ => a_done = true,
                },
                got = to_b.recv(), if !b_done => match got {
                    Received::Binary(bytes) => { assert!(!is_response(&bytes)); to_a.send(bytes).await }
                    _ => b_done = true,
                },
            }
        }
    };
    tokio::time::timeout(PAST_HANDSHAKE, relay)
        .await
        .expect("both nodes drop the relayed connections");
    // A plaintext call on a connection the node has dropped gets nothing back.
    to_a.send(pulsing::wire::encode(&request(
        1,
        "worker",
        "process",
        Args::new().arg("x"),
    )))
    .await;
    assert!(!matches!(to_a.recv().await, Received::Binary(_)));
}

#[tokio::test]
async fn claiming_the_nodes_own_id_is_refused_even_without_a_secret() {
    let node = NodeProcess::start(NODE, &["--name", "victim", "--spawn", "worker"]);
    let victim = hello_node(&Raw::connect(&node.addr).await.expect_binary().await);
    let err = Login::dial(&node.addr, None, victim, "127.0.0.1:1", false)
        .await
        .unwrap_err();
    assert!(err.contains("own id"), "{err}");
    // The same login with an id of its own gets in (anyone may join an unsecured cluster): the
    // refusal above is the id check, not something else.
    let mut login = Login::dial(&node.addr, None, fresh_id(), "127.0.0.1:1", false)
        .await
        .unwrap();
    assert_eq!(
        answer(process(&mut login, 1, "x").await.unwrap()),
        "x processed by victim"
    );
}

#[tokio::test]
async fn a_node_id_already_connected_from_another_address_is_refused() {
    let node = NodeProcess::start(NODE, &["--spawn", "worker"]);
    let id = fresh_id();
    let mut first = Login::dial(&node.addr, None, id, "127.0.0.1:1111", false)
        .await
        .unwrap();
    process(&mut first, 1, "x").await.unwrap();
    let mut second = Login::dial(&node.addr, None, id, "127.0.0.1:2222", false)
        .await
        .unwrap();
    let err = process(&mut second, 1, "x").await.unwrap_err();
    assert!(err.starts_with("closed"), "{err}");
    // The first connection is untouched.
    process(&mut first, 2, "y").await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_secret_cannot_log_in() {
    let node = NodeProcess::start(NODE, &["--secret", "right", "--spawn", "worker"]);
    for secret in [Some(&b"wrong"[..]), None] {
        let err = Login::dial(&node.addr, secret, fresh_id(), "127.0.0.1:1", true)
            .await
            .unwrap_err();
        assert!(err.contains("cluster secret"), "{err}");
    }
    let mut login = Login::dial(&node.addr, Some(b"right"), fresh_id(), "127.0.0.1:1", true)
        .await
        .unwrap();
    process(&mut login, 1, "x").await.unwrap();
}

#[tokio::test]
async fn an_injected_or_changed_record_ends_only_that_connection() {
    let node = NodeProcess::start(NODE, &["--secret", "s3cret", "--spawn", "worker"]);
    let login = || Login::dial(&node.addr, Some(b"s3cret"), fresh_id(), "127.0.0.1:1", true);
    let (mut victim, mut bystander) = (login().await.unwrap(), login().await.unwrap());
    assert!(victim.encrypted);
    victim
        .send(&[request(1, "worker", "record", Args::new().arg(1))])
        .await;
    victim.response(1).await.unwrap();
    // An on-path attacker injects a well-formed cleartext call into the victim's connection.
    victim
        .raw
        .send(pulsing::wire::encode(&request(
            2,
            "worker",
            "record",
            Args::new().arg(666),
        )))
        .await;
    let err = victim.response(2).await.unwrap_err();
    assert!(err.starts_with("closed"), "{err}");
    // A sealed call with one bit changed on the way fares no better.
    let mut tampered = login().await.unwrap();
    let mut sealed = tampered.seal(&[request(1, "worker", "record", Args::new().arg(667))]);
    sealed[3] ^= 0x10;
    tampered.raw.send(sealed).await;
    let err = tampered.response(1).await.unwrap_err();
    assert!(err.starts_with("closed"), "{err}");
    // Other connections carry on, and neither forged call ran.
    bystander
        .send(&[request(1, "worker", "records", Args::new())])
        .await;
    match bystander.response(1).await.unwrap() {
        Frame::Response {
            result: Ok(Payload::Value(records)),
            ..
        } => assert_eq!(records, Value::List(vec![Value::Int(1)])),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn with_a_secret_calls_are_unreadable_on_the_wire_unless_encryption_is_off() {
    for (encrypt, readable) in [(true, false), (false, true)] {
        let node = secured_node("n", encrypt);
        let mut login = Login::dial(&node.addr, Some(b"s"), fresh_id(), "127.0.0.1:1", encrypt)
            .await
            .unwrap();
        assert_eq!(login.encrypted, encrypt);
        // A small answer (packed with others, through tungstenite) and a large one (written
        // from its own buffer, past tungstenite: `transport/direct.rs`).
        // `enough`: reading that much has brought the answer, whatever else came first.
        for (id, text, enough) in [
            (1, "MARKER".to_owned(), 1 << 16),
            (2, "MARKER".repeat(20_000), 120_000),
        ] {
            let len = text.len();
            login
                .send(&[request(id, "worker", "process", Args::new().arg(text))])
                .await;
            assert_eq!(
                marker_seen(&mut login, enough).await,
                readable,
                "encrypt={encrypt}: the text of a {len}-byte answer on the wire"
            );
        }
    }
}

/// Whether `MARKER` shows in what the node sends next: read until it does, until `enough`
/// bytes came, or until the node falls silent.
async fn marker_seen(login: &mut Login, enough: usize) -> bool {
    let mut seen = Vec::new();
    loop {
        match login.raw.recv().await {
            Received::Binary(bytes) => {
                seen.extend_from_slice(&bytes);
                if seen.windows(6).any(|w| w == b"MARKER") {
                    return true;
                }
                if seen.len() >= enough {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[tokio::test]
async fn an_upgrade_with_a_browser_origin_is_refused() {
    let node = NodeProcess::start(NODE, &["--spawn", "worker"]);
    let err = Raw::connect_with(&node.addr, Some("http://evil.example"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
    assert!(Raw::connect_with(&node.addr, None).await.is_ok());
}

#[tokio::test]
async fn a_node_of_the_previous_protocol_version_is_told_which_one_this_speaks() {
    let node = NodeProcess::start(NODE, &["--spawn", "worker"]);
    let mut raw = Raw::connect(&node.addr).await;
    let old = pulsing::wire::encode(&Frame::Hello {
        version: PROTOCOL_VERSION - 1,
        node: fresh_id(),
        addr: "127.0.0.1:1".into(),
        nonce: [7; 32],
    });
    raw.send(old).await;
    // The node's own Hello comes first (so an old node can say what it got), then the refusal.
    match decode(&raw.expect_binary().await, 4096).unwrap() {
        Frame::Hello { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
    let reason = raw.until_closed(|_| {}).await.expect("the node closes");
    assert!(
        reason.contains(&format!(
            "protocol version {} is not supported",
            PROTOCOL_VERSION - 1
        )),
        "{reason}"
    );
}

#[tokio::test]
async fn nodes_with_the_same_secret_still_call_each_other_encrypted_or_not() {
    for encrypt in [true, false] {
        let node = secured_node("far", encrypt);
        let system = ActorSystem::builder()
            .addr("127.0.0.1:0")
            .seeds([node.addr.as_str()])
            .secret("s")
            .encryption(encrypt)
            .build()
            .await
            .unwrap();
        let worker = Worker::resolve(&system, "worker").await.unwrap();
        assert_eq!(
            worker.process("x".into()).await.unwrap(),
            "x processed by far"
        );
        // Several records per message (a record holds at most 64 KiB).
        assert_eq!(
            worker.echo(vec![7u8; 300_000]).await.unwrap().len(),
            300_000
        );
        system.shutdown().await;
    }
}
