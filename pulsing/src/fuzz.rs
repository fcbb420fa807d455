//! Drives one connection of a node from its first byte, in memory (no socket): for the fuzz
//! target in `fuzz/` and the seeded stress test that CI runs. Not an API: it may change at any
//! time.
//!
//! A [`Session`] is either raw bytes written where the WebSocket upgrade is expected, or
//! WebSocket messages: before login (as a stranger would send them) or after it (the harness
//! logs in through the real handshake, without a secret, so messages after it are plain frames).
//! The node's side is the very code an accepted socket runs (`Transport::serve_socket`), routing
//! into the node's actors.

use crate::system::ActorSystem;
use crate::wire::{try_encode, Frame};

/// What one fuzzed connection sends.
#[derive(Debug, Clone)]
pub struct Session {
    /// Bytes written in place of the WebSocket upgrade (then the connection closes); the other
    /// fields are ignored when set.
    pub raw: Option<Vec<u8>>,
    /// Log in first (the real handshake), so the messages arrive after login.
    pub login: bool,
    /// The WebSocket messages to send, in order.
    pub messages: Vec<Message>,
}

/// One WebSocket message.
#[derive(Debug, Clone)]
pub enum Message {
    /// Any bytes.
    Bytes(Vec<u8>),
    /// Frames packed back to back (any that does not encode is left out).
    Frames(Vec<Frame>),
}

/// Runs `session` against `system`'s node and waits (a few seconds at most) until the node has
/// closed its end. The node must not panic, whatever the session; the caller checks that the
/// node still serves afterwards.
///
/// # Panics
/// If `system` is not a cluster node.
pub async fn drive(system: &ActorSystem, session: Session) {
    let transport = system.transport().expect("a cluster node");
    let messages = session
        .messages
        .into_iter()
        .map(|m| match m {
            Message::Bytes(bytes) => bytes,
            Message::Frames(frames) => frames
                .iter()
                .filter_map(|f| try_encode(f).ok())
                .flatten()
                .collect(),
        })
        .collect();
    crate::transport::connection::fuzz_session(&transport, session.raw, session.login, messages)
        .await;
}
