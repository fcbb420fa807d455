//! Decoding that shares the received buffer: large byte strings as slices of it, not copies.
//!
//! A received WebSocket message is one [`Bytes`] buffer. While [`decode_shared`] decodes it on
//! this thread, [`share`] turns a large part borrowed from it into a slice of that buffer (a
//! reference count, no allocation, no copy). The wire's names and typed payloads
//! (`wire::SharedBytes`) and the byte strings of a [`Value`](super::Value) use it, so a 1 MiB
//! `Value::Bytes` argument decodes without copying its megabyte. Small parts are not worth it:
//! below [`SHARE_FROM`] bytes they are copied — measured at 1024 calls in flight, sharing every
//! part made threads contend on the buffer's reference count (≈5% of the CPU) for no gain.
//! Outside a [`decode_shared`], or for bytes that do not lie in its buffer, [`share`] copies.
//!
//! A shared part keeps the whole received message alive (at most 16 KiB for a message of packed
//! frames, else the one frame it belongs to) until it is dropped.
//!
//! [`Bytes`]: bytes::Bytes

use std::cell::RefCell;

use bytes::Bytes;

thread_local! {
    /// The buffer being decoded by [`decode_shared`] on this thread, if any.
    static FRAME: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `decode` with `frame` as the buffer large borrowed parts are shared from.
pub(crate) fn decode_shared<T>(frame: &Bytes, decode: impl FnOnce(&[u8]) -> T) -> T {
    struct Reset(Option<Bytes>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            FRAME.with(|f| *f.borrow_mut() = previous);
        }
    }
    let _reset = Reset(FRAME.with(|f| f.borrow_mut().replace(frame.clone())));
    decode(frame)
}

/// Parts at least this long are shared with the frame rather than copied.
pub(crate) const SHARE_FROM: usize = 512;

/// `part` as a slice of the frame being decoded if it is large and lies in it; otherwise a copy.
pub(crate) fn share(part: &[u8]) -> Bytes {
    if part.len() < SHARE_FROM {
        return Bytes::copy_from_slice(part);
    }
    FRAME.with(|f| match &*f.borrow() {
        Some(frame) if within(frame, part) => frame.slice_ref(part),
        _ => Bytes::copy_from_slice(part),
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
        let frame = Bytes::from(vec![b'x'; 4 * SHARE_FROM]);
        let (large, small) =
            decode_shared(&frame, |b| (share(&b[2..2 + SHARE_FROM]), share(&b[2..10])));
        assert_eq!(large.as_ptr(), frame[2..].as_ptr(), "a slice, not a copy");
        assert_ne!(small.as_ptr(), frame[2..].as_ptr());
        assert_eq!(
            share(&frame[2..2 + SHARE_FROM]),
            large,
            "outside a decode: a copy"
        );
        let other = vec![b'y'; SHARE_FROM];
        let copied = decode_shared(&frame, |_| share(&other));
        assert_ne!(copied.as_ptr(), other.as_ptr(), "not in the frame: a copy");
    }
}
