//! Byte strings shared instead of copied: decoding shares the received buffer, and encoding a
//! large frame leaves its large byte strings where they are.
//!
//! **Encoding** ([`gathering`], [`offer`]). While a frame is encoded by `wire::encode_gathered`
//! on this thread, a `Value::Bytes` (or a shared payload) of [`GATHER_FROM`] bytes or more offers
//! its buffer just before it is serialized, and the encoder notes it with its offset instead of
//! copying it; the transport then writes it from its own buffer (`transport/direct.rs`). Any
//! other encoding copies as always: an offer outside [`gathering`] is ignored.
//!
//! **Decoding** ([`decode_shared`], [`share_most`]).
//! A received WebSocket message is one [`Bytes`] buffer, or, for a message the sender cut at
//! its large byte strings, one buffer per fragment ([`decode_shared_fragments`]; each such
//! string then is a whole fragment, read where `landing.rs` says). While [`decode_shared`]
//! decodes it on this thread, [`share_most`] turns a large part borrowed from it into a slice of that buffer (a
//! reference count, no allocation, no copy). The wire's names and typed payloads
//! (`wire::SharedBytes`) and the byte strings of a [`Value`](super::Value) use it, so a 1 MiB
//! argument decodes without copying its megabyte. Small parts are not worth it:
//! below [`SHARE_FROM`] bytes they are copied — measured at 1024 calls in flight, sharing every
//! part made threads contend on the buffer's reference count (≈5% of the CPU) for no gain.
//! Outside a [`decode_shared`], or for bytes that do not lie in its buffer, [`share_most`]
//! copies; it also copies a part that is less than half of the buffer, so a part held for long
//! (a call waiting in a backlog) cannot pin a much larger message.
//!
//! A shared part keeps the whole received message alive until it is dropped: at most twice its
//! own size.
//!
//! [`Bytes`]: bytes::Bytes

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;

thread_local! {
    /// The buffer (or fragments) being decoded by [`decode_shared`] on this thread, if any.
    static FRAME: RefCell<Option<Received>> = const { RefCell::new(None) };
    /// While [`gathering`] on this thread: the byte string offered last, until taken.
    static OFFERED: RefCell<Option<Option<Bytes>>> = const { RefCell::new(None) };
}

/// Byte strings at least this long are offered to a gathering encoder (shorter ones cost less to
/// copy than to write as a buffer of their own).
pub(crate) const GATHER_FROM: usize = 16 << 10;

/// Runs `encode` with offers taken on this thread (see the module's docs).
pub(crate) fn gathering<T>(encode: impl FnOnce() -> T) -> T {
    struct Reset(Option<Option<Bytes>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            OFFERED.with(|o| *o.borrow_mut() = previous);
        }
    }
    let _reset = Reset(OFFERED.with(|o| o.borrow_mut().replace(None)));
    encode()
}

/// Offers `bytes`, about to be serialized, to the gathering encoder on this thread, if any.
pub(crate) fn offer(bytes: &Bytes) {
    if bytes.len() >= GATHER_FROM {
        OFFERED.with(|o| {
            if let Some(slot) = &mut *o.borrow_mut() {
                *slot = Some(bytes.clone());
            }
        });
    }
}

/// The byte string offered last, taken, if `contents` are its very memory (the bytes the
/// serializer is writing now).
pub(crate) fn take_offered(contents: &[u8]) -> Option<Bytes> {
    OFFERED.with(|o| {
        let offered = o.borrow_mut().as_mut()?.take()?;
        (offered.as_ptr() == contents.as_ptr() && offered.len() == contents.len())
            .then_some(offered)
    })
}

/// A received message: one buffer, or the buffers its fragments were read into
/// (`transport/inlet.rs`), each large byte string in one of its own.
#[derive(Clone)]
pub(crate) enum Received {
    One(Bytes),
    Fragments(Arc<[Bytes]>),
}

/// Runs `decode` with `frame` as the buffer large borrowed parts are shared from.
pub(crate) fn decode_shared<T>(frame: &Bytes, decode: impl FnOnce(&[u8]) -> T) -> T {
    with_received(Received::One(frame.clone()), || decode(frame))
}

/// Runs `decode` with `fragments` as the buffers large borrowed parts are shared from.
pub(crate) fn decode_shared_fragments<T>(
    fragments: &Arc<[Bytes]>,
    decode: impl FnOnce() -> T,
) -> T {
    with_received(Received::Fragments(fragments.clone()), decode)
}

fn with_received<T>(received: Received, decode: impl FnOnce() -> T) -> T {
    struct Reset(Option<Received>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            FRAME.with(|f| *f.borrow_mut() = previous);
        }
    }
    let _reset = Reset(FRAME.with(|f| f.borrow_mut().replace(received)));
    decode()
}

/// Parts at least this long are shared with the frame rather than copied.
pub(crate) const SHARE_FROM: usize = 512;

/// `part` as a slice of the buffer being decoded only if it is large **and at least half of that
/// buffer**; otherwise a copy. What a `Value`'s byte strings use: a part held for long (a call
/// waiting for a slow actor) then pins a message at most twice its own size (and whatever the
/// transport's receive buffer shares that allocation with). Sharing every large
/// part let a peer's 20,000 calls of 10 KB, packed 50 to a message, pin each message for every
/// call still waiting: the node grew by 185 MiB instead of 49 (`cluster_hostile.rs`,
/// `a_flood_of_told_calls_to_a_slow_actor_keeps_memory_bounded`). A large argument or answer
/// alone in its message, the case worth sharing, still is.
pub(crate) fn share_most(part: &[u8]) -> Bytes {
    if part.len() < SHARE_FROM {
        return Bytes::copy_from_slice(part);
    }
    FRAME.with(|f| {
        let shared = |frame: &Bytes| {
            (within(frame, part) && part.len() >= frame.len().div_ceil(2))
                .then(|| frame.slice_ref(part))
        };
        match &*f.borrow() {
            Some(Received::One(frame)) => shared(frame),
            Some(Received::Fragments(all)) => all.iter().find_map(shared),
            None => None,
        }
        .unwrap_or_else(|| Bytes::copy_from_slice(part))
    })
}

fn within(frame: &[u8], part: &[u8]) -> bool {
    let range = frame.as_ptr_range();
    let start = part.as_ptr();
    range.start <= start && start.wrapping_add(part.len()) <= range.end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_decoded_parts_share_the_frame_small_ones_are_copied() {
        let frame = Bytes::from(vec![b'x'; SHARE_FROM + 2]);
        let (large, small) = decode_shared(&frame, |b| {
            (share_most(&b[2..2 + SHARE_FROM]), share_most(&b[2..10]))
        });
        assert_eq!(large.as_ptr(), frame[2..].as_ptr(), "a slice, not a copy");
        assert_ne!(small.as_ptr(), frame[2..].as_ptr());
        assert_eq!(
            share_most(&frame[2..2 + SHARE_FROM]),
            large,
            "outside a decode: a copy"
        );
        let other = vec![b'y'; SHARE_FROM];
        let copied = decode_shared(&frame, |_| share_most(&other));
        assert_ne!(copied.as_ptr(), other.as_ptr(), "not in the frame: a copy");
    }

    #[test]
    fn share_most_shares_only_a_part_that_is_most_of_the_frame() {
        let frame = Bytes::from(vec![b'x'; 4 * SHARE_FROM]);
        let half = 2 * SHARE_FROM;
        let (most, less) = decode_shared(&frame, |b| {
            (share_most(&b[1..1 + half]), share_most(&b[1..half]))
        });
        assert_eq!(
            most.as_ptr(),
            frame[1..].as_ptr(),
            "half the frame: a slice"
        );
        assert_ne!(less.as_ptr(), frame[1..].as_ptr(), "under half: a copy");
        assert_eq!(less, frame[1..half]);
        let tiny = Bytes::from(vec![b'z'; SHARE_FROM - 1]);
        let copied = decode_shared(&tiny, share_most);
        assert_ne!(copied.as_ptr(), tiny.as_ptr(), "under SHARE_FROM: a copy");
    }
}
