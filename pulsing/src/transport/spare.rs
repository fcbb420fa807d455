//! Buffers for large frames, used again once they are written.
//!
//! A frame of [`PACK_LIMIT`](crate::wire::PACK_LIMIT) bytes or more is encoded into a buffer of
//! its own. A fresh buffer per message costs more than the copy into it: glibc maps and unmaps
//! (or trims) blocks of a megabyte, so every page of the next one faults and is zeroed again —
//! and whether it does depends on the allocator's moment, which made 1 MiB echoes swing between
//! runs (page faults per echo 270–660 for the same code). A frame's buffer is written to the
//! socket straight from where it is (`direct.rs`) and comes back once written, so a connection
//! keeps a couple of them. Buffers over [`KEPT_UP_TO`] are not kept, so a rare
//! huge message does not pin its memory to the connection.
//!
//! The secure channel seals and opens records into these buffers too, through a slice API
//! (`&mut [u8]`) that needs initialised memory. A kept buffer keeps the length it was filled
//! to ([`take_filled`](Spare::take_filled)) and is zero-filled only where a message is longer
//! than the last one in it: messages of one size are zero-filled once per connection, not once
//! per message. The zero-fill alone cost 40–47 µs of each encrypted 1 MiB message, on each side.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The largest buffer kept for the next frame.
const KEPT_UP_TO: usize = 4 << 20;

/// How many buffers are kept (frames written at once by concurrent senders).
const KEPT: usize = 2;

/// A connection's spare large-frame buffers.
#[derive(Debug, Default)]
pub(super) struct Spare(Mutex<Vec<Vec<u8>>>);

impl Spare {
    /// An empty buffer with room for `size` bytes: a kept one if there is one.
    pub(super) fn take(&self, size: usize) -> Vec<u8> {
        let mut buf = self.kept().unwrap_or_default();
        buf.clear();
        buf.reserve(size);
        buf
    }

    /// A buffer of `len` bytes, for a caller that writes over all of them: for a large `len`
    /// (but not one over [`KEPT_UP_TO`]), a kept one if there is one, zero-filled only beyond
    /// the length it was last filled to.
    pub(super) fn take_filled(&self, len: usize) -> Vec<u8> {
        if !Self::worth_keeping(len) {
            // Not worth keeping (`give_back` drops it), nor a kept one's while it is held.
            return vec![0; len];
        }
        match self.kept() {
            Some(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            // Zeroed by the allocator (fresh pages are zero already), not by a pass of ours.
            None => vec![0; len],
        }
    }

    fn kept(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps `buf` (with its contents, which nobody reads again: [`take`](Self::take) empties
    /// it, [`take_filled`](Self::take_filled) hands it to a caller that writes over what it
    /// lends) for a later frame, unless it is too large, too small to be worth it (an empty
    /// one, say), or enough are kept.
    pub(super) fn give_back(&self, buf: Vec<u8>) {
        if !Self::worth_keeping(buf.capacity()) {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT {
            kept.push(buf);
        }
    }

    /// Whether a buffer of `size` bytes is kept between frames: smaller ones cost little to
    /// make afresh, larger ones would pin a rare huge message's memory to the connection.
    fn worth_keeping(size: usize) -> bool {
        (crate::wire::PACK_LIMIT..=KEPT_UP_TO).contains(&size)
    }

    /// `buf` as message bytes that return it here when dropped (if it is worth keeping).
    pub(super) fn lend(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        if !Self::worth_keeping(buf.capacity()) {
            return buf.into();
        }
        Bytes::from_owner(Lent {
            buf,
            home: self.clone(),
        })
    }
}

/// A buffer lent out as [`Bytes`]; it goes back to its [`Spare`] when they are dropped.
struct Lent {
    buf: Vec<u8>,
    home: Arc<Spare>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_buffer_comes_back_when_its_bytes_are_dropped() {
        let spare = Arc::new(Spare::default());
        let mut buf = spare.take(1 << 20);
        buf.extend_from_slice(&[7; 1 << 20]);
        let at = buf.as_ptr();
        let bytes = spare.lend(buf);
        assert_eq!(bytes.len(), 1 << 20);
        // Held by the message: not handed out again.
        let other = spare.take(10);
        assert_ne!(other.as_ptr(), at);
        drop(other);
        drop(bytes);
        let again = spare.take(1 << 20);
        assert_eq!(again.as_ptr(), at, "the same memory");
        assert!(again.is_empty());
    }

    /// A buffer filled once is not zero-filled again: its old bytes are still there (a caller
    /// writes over all it takes), and only what it did not hold is zeroed.
    #[test]
    fn a_filled_buffer_is_zeroed_only_where_it_grows() {
        let spare = Arc::new(Spare::default());
        let mut buf = spare.take_filled(1 << 20);
        assert!(buf.len() == 1 << 20 && buf.iter().all(|b| *b == 0));
        buf.fill(7);
        let at = buf.as_ptr();
        drop(spare.lend(buf));
        let again = spare.take_filled(100_000);
        assert_eq!(again.as_ptr(), at, "the same memory");
        assert!(
            again.len() == 100_000 && again.iter().all(|b| *b == 7),
            "not zeroed again"
        );
        spare.give_back(again);
        let grown = spare.take_filled(300_000);
        assert!(grown[..100_000].iter().all(|b| *b == 7));
        assert!(grown[100_000..].iter().all(|b| *b == 0));
    }

    /// A small message gets a buffer of its own: it must not hold a kept large one (which the
    /// next large message would then have to do without). Nor does a huge one, which would
    /// grow a kept buffer past what is kept, so that it is lost.
    #[test]
    fn small_and_huge_filled_buffers_leave_the_kept_ones_alone() {
        let spare = Spare::default();
        spare.give_back(vec![0; 1 << 20]);
        let small = spare.take_filled(100);
        assert_eq!(small.len(), 100);
        let huge = spare.take_filled(KEPT_UP_TO + 1);
        assert!(huge.len() == KEPT_UP_TO + 1 && huge.iter().all(|b| *b == 0));
        assert_eq!(
            spare.0.lock().unwrap().len(),
            1,
            "the large one is still kept"
        );
    }

    #[test]
    fn huge_buffers_small_ones_and_extras_are_not_kept() {
        let spare = Spare::default();
        spare.give_back(Vec::with_capacity(KEPT_UP_TO + 1));
        spare.give_back(Vec::new());
        spare.give_back(Vec::with_capacity(100));
        assert!(spare.0.lock().unwrap().is_empty());
        for _ in 0..KEPT + 3 {
            spare.give_back(Vec::with_capacity(1 << 20));
        }
        assert_eq!(spare.0.lock().unwrap().len(), KEPT);
    }
}
