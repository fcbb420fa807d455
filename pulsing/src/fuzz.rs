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

/// The stack a runtime worker thread has (tokio's default, which Pulsing keeps): decoding runs
/// there, so the fuzzers decode on a thread of this size, not on the larger main thread.
pub const RUNTIME_STACK: usize = 2 << 20;

/// Runs `f` on a fresh thread with [`RUNTIME_STACK`] bytes of stack and returns its result; a
/// stack overflow aborts the process, as it would in a node.
///
/// # Panics
/// If `f` panics (the panic is passed on) or the thread cannot start.
pub fn on_runtime_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(RUNTIME_STACK)
        .spawn(f)
        .expect("a thread starts")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Decodes one received WebSocket message the way a connection's reader does (frames packed
/// back to back, names and typed payloads shared with the message's buffer), with the default
/// frame limit. Every frame decoded must encode again to the very bytes it came from and
/// decode again to the same bytes (compared as bytes: a NaN float is not equal to itself).
///
/// # Errors
/// The decoder's error for a malformed message (the frames before the fault were checked).
///
/// # Panics
/// If a decoded frame does not round-trip: a decoder bug.
pub fn decode_message(message: &[u8]) -> Result<usize, crate::wire::FrameError> {
    use crate::wire::{decode, DEFAULT_MAX_FRAME};
    let bytes = bytes::Bytes::copy_from_slice(message);
    let mut frames = 0;
    crate::wire::decode_packed(&bytes, DEFAULT_MAX_FRAME, |frame| {
        frames += 1;
        if let Ok(encoded) = try_encode(&frame) {
            let again = decode(&encoded, DEFAULT_MAX_FRAME).expect("an encoded frame decodes");
            assert_eq!(
                try_encode(&again).ok(),
                Some(encoded),
                "a frame round-trips"
            );
        }
        true
    })?;
    Ok(frames)
}

/// Builds a call to `A`'s `method` from untrusted input, as the node does for a peer's typed
/// call (postcard `args`) and for a by-name call (`values`): the code `#[pulsing::remote]`
/// generates. Either may fail with a typed error; neither may panic.
///
/// # Errors
/// The first refusal, typed ([`Error::UnknownMethod`](crate::Error::UnknownMethod),
/// [`Error::BadArguments`](crate::Error::BadArguments), ...).
pub fn build_calls<A: crate::Actor>(
    method: &str,
    args: &[u8],
    values: crate::Args,
) -> crate::Result<()> {
    use crate::actor::ReplyTo;
    let typed = A::message_from_bytes(method, args, ReplyTo::Call).map(drop);
    let named = A::message_from_values(method, values, ReplyTo::Call).map(drop);
    typed.and(named)
}
