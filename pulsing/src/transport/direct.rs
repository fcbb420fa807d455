//! Large messages written straight from their own buffers, beside tungstenite.
//!
//! tungstenite formats a message into its write buffer before writing any of it: for a 1 MiB
//! message, a 1 MiB copy (and on the dialing side, which must mask what it sends, a second pass
//! over it) before the first byte leaves. [`Direct`] sits between tungstenite and the socket.
//! The write half hands its [`Outlet`] each message of [`PACK_LIMIT`](crate::wire::PACK_LIMIT)
//! bytes or more, and the next flush writes the frame's header and the message's own buffers
//! with vectored writes. Masking costs no extra copy: a buffer of our own is masked where it is,
//! and shared buffers (a Python `bytes` lent to the frame) are masked as they are copied into
//! one of the connection's spare buffers.
//!
//! **A block per write.** A large message leaves a block per write. On the dialing side, a
//! message sent in fragments has its headers go first, alone, and the masked copies of its
//! shared pieces are made [`MASK_AHEAD`] (256 KiB) at a time, the next block once the last is
//! written, each write taking what is masked. So the kernel copies each block from the cache it
//! was just masked in, and the peer gets ready for the message, then reads the first block,
//! while the next is masked. Any other message is written [`WRITE_BLOCK`] (512 KiB, the peer's
//! low-water mark) at a time.
//! That pays only because the peer's reader asks to be woken once per half megabyte
//! (`SO_RCVLOWAT`, `inlet.rs`): before it did, writing a 1 MiB message in blocks was slower than
//! writing it whole, since each write woke the reading peer again (64 KiB blocks: 780–898 MB/s
//! against 918–950; 256 KiB blocks: 1,025–1,086 against 1,060–1,170).
//!
//! **Cut at its large byte strings.** A message with large byte strings of its own (shared
//! pieces of the pack; at most 31 of them) goes as one WebSocket message in fragments, cut at
//! each string's edges, so each string is a fragment the peer reads straight into a buffer of
//! its own (`inlet.rs`); each fragment has its own masking key. A peer that is not Pulsing
//! reads an ordinary fragmented message.
//!
//! The frames are ordinary WebSocket frames (one binary frame, FIN set, masked from the dialer
//! as RFC 6455 requires, with a key from the operating system's generator) with a header built
//! by tungstenite's own [`FrameHeader`]: the peer reads them with tungstenite like any other.
//!
//! **Order.** tungstenite's bytes and a direct message never interleave. A direct message is
//! started only from a flush, which tungstenite asks for only once its own buffer is written out,
//! so at a frame boundary; once started, every write and flush finishes it before passing
//! anything else on. The write half hands tungstenite nothing while a direct message is
//! unfinished, and hands it everything queued before one before putting it (`writer.rs`), so
//! messages keep the order they were queued in. What tungstenite writes on its own meanwhile (a
//! pong or a close reply, from the read half) is a control frame, and may go first. One
//! consequence: when the peer closes while a direct message waits, the dialing side may still
//! write it after its close reply (tungstenite refused data after a close); the peer drops it
//! with the connection. A message's buffers (and a lent Python `bytes`) are held until it is
//! written or the connection's socket is dropped.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::inlet::{Inlet, LowWater, Reader, LOW_WATER_CAP, MAX_FRAGMENTS};
use super::outbox::{Pack, Piece};
use super::spare::Spare;

/// At most this many buffers per vectored write (Linux takes 1024; a message has a few).
const SLICES: usize = 16;

/// How much of a shared buffer is copied before the copy is masked (`extend_masked`): a third
/// of a 48 KiB L1 data cache, so the block is still there when it is masked. A 1 MiB Python
/// `bytes` not in the cache took 115–120 µs to copy and mask 4 KiB at a time, 87–93 µs at
/// 16 or 32 KiB: each short copy starts `rep movsb` and the prefetcher afresh. (A masking copy
/// in one pass, into uninitialised memory, was no faster: 82–91 µs.)
const MASK_BLOCK: usize = 16 << 10;

/// How much of a message's shared pieces is copied and masked at a time, once the writes
/// have caught up with what is masked (`Masking`). Sequential 1 MiB echoes, Python to Python,
/// against the whole message masked first, alternating runs: 1,263–1,421 MB/s against
/// 1,165–1,358, with up to 100 µs less CPU per echo on the dialing side (14 pairs, higher in
/// all 14; BENCHMARKS.md, "A second of warm-up, and large messages masked ahead of their
/// writes"). The block is still in the cache when the kernel copies it, and the peer, which the reader's
/// low-water mark wakes only per half megabyte (`inlet.rs`), reads the first half while the rest
/// is masked. 128 KiB blocks were slower than none (1,109–1,140 MB/s); 512 KiB no better than
/// 256. At 8 in flight it is no slower than masking each message whole (2,128–2,185 against
/// 2,088–2,169 MB/s, 4 pairs).
const MASK_AHEAD: usize = 256 << 10;

/// At most this many bytes go in one write of a message that is not masked as it is written
/// (every message from the accepting side, and one masked whole before its first write): the
/// peer's low-water mark ([`LOW_WATER_CAP`], `inlet.rs`), so that each write wakes the reading
/// peer once. The answer of a 1 MiB echo between two Python processes, written whole in one
/// `writev`, took 344–412 µs to reach the caller; written a block per write, 174–272 µs
/// (`benches/mib_phases.py`). Sequential 1 MiB echoes: 0.95–1.01× the raw asyncio floor
/// against 0.64–0.74× written whole, with a third less CPU on the answering side; with one CPU
/// kept busy, 2,334–2,613 MB/s against 1,815–2,572 whole and 1,626–2,341 with 256 KiB blocks,
/// which woke the reader twice per half megabyte (BENCHMARKS.md, "Fewer system calls per call,
/// and large answers a block per write"). 64 and 128 KiB blocks were slower still.
const WRITE_BLOCK: usize = LOW_WATER_CAP;

/// A socket with an [`Outlet`] for large messages, and a read half that takes fragmented
/// messages out of the stream (`inlet.rs`); everything else passes through.
#[derive(Debug)]
pub(crate) struct Direct<S> {
    io: S,
    outlet: Arc<Outlet>,
    reader: Reader,
}

impl<S> Direct<S> {
    /// `io`, masking direct messages if this side dialed (`masks`), for messages of at most
    /// `max` bytes.
    pub(super) fn new(io: S, masks: bool, max: usize) -> Self {
        Direct {
            io,
            outlet: Arc::new(Outlet::new(masks)),
            reader: Reader::new(!masks, max),
        }
    }

    /// Where the write half puts large messages.
    pub(super) fn outlet(&self) -> Arc<Outlet> {
        self.outlet.clone()
    }

    /// Where fragmented messages read wait for the connection's reader.
    pub(super) fn inlet(&self) -> Arc<Inlet> {
        self.reader.inlet()
    }
}

/// The direct message waiting or being written, shared by the write half and the socket.
#[derive(Debug)]
pub(super) struct Outlet {
    masks: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    message: Option<Message>,
    /// Whether the message's first byte may have been written (from then on it goes first).
    started: bool,
}

#[derive(Debug)]
struct Message {
    /// The frame header, then the message's (masked, if this side masks) buffers.
    parts: Vec<Part>,
    /// Bytes of `parts` written.
    written: usize,
    len: usize,
    /// The masked copies of its shared pieces, made as it is written (`Part::Masked`).
    masking: Option<Masking>,
}

/// A piece of a direct message.
#[derive(Debug)]
enum Part {
    /// Ready to write (a header, an own piece, a shared piece sent unmasked).
    Buffer(Bytes),
    /// A range of [`Masking::buf`]: written as far as it is masked.
    Masked(Range<usize>),
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Buffer(bytes) => bytes.len(),
            Part::Masked(range) => range.len(),
        }
    }
}

/// The masked copies of a message's shared pieces (Python `bytes` lent to the frame, which must
/// not change), made between writes, [`MASK_AHEAD`] at a time: a 1 MiB message is copied,
/// masked and written a block at a time, so the peer starts reading while the rest is masked,
/// and the kernel copies each block out of the cache it was just masked in.
#[derive(Debug)]
struct Masking {
    /// The copies so far, one after the other (its capacity holds them all).
    buf: Vec<u8>,
    /// The pieces to copy, each with its fragment's key.
    pieces: Vec<(Bytes, [u8; 4])>,
    /// The piece being copied, and how much of it is.
    piece: usize,
    done: usize,
    spare: Arc<Spare>,
}

impl Masking {
    fn new(pieces: Vec<(Bytes, [u8; 4])>, len: usize, spare: &Arc<Spare>) -> Self {
        Masking {
            buf: spare.take(len),
            pieces,
            piece: 0,
            done: 0,
            spare: spare.clone(),
        }
    }

    /// Copies and masks the next [`MASK_AHEAD`] bytes (or all that are left).
    fn more(&mut self) {
        let mut budget = MASK_AHEAD;
        while budget > 0 {
            let Some((piece, key)) = self.pieces.get(self.piece) else {
                break;
            };
            let n = budget.min(piece.len() - self.done);
            let payload_from = self.buf.len() - self.done;
            extend_masked(
                &mut self.buf,
                &piece[self.done..self.done + n],
                *key,
                payload_from,
            );
            (self.done, budget) = (self.done + n, budget - n);
            if self.done == piece.len() {
                (self.piece, self.done) = (self.piece + 1, 0);
            }
        }
    }
}

impl Drop for Masking {
    fn drop(&mut self) {
        self.spare.give_back(std::mem::take(&mut self.buf));
    }
}

impl Outlet {
    /// An outlet with nothing waiting; it masks what it writes if `masks`.
    pub(super) fn new(masks: bool) -> Self {
        Outlet {
            masks,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `pack` for the next flush, masked if this side masks; `spare` lends and takes
    /// back the pack's own buffer, and the buffer a masked copy of shared pieces is made in.
    /// On the dialing side, a message sent in fragments (at most 31 shared pieces) has its
    /// shared pieces masked as it is written, [`MASK_AHEAD`] at a time; any other is masked
    /// whole before its first write. The write half puts a message only when the last one is
    /// written ([`is_busy`](Self::is_busy) is false).
    pub(super) fn put(&self, pack: Pack, spare: &Arc<Spare>) {
        let (parts, masking) = if !pack.shared.is_empty() && 2 * pack.shared.len() < MAX_FRAGMENTS {
            self.fragments(pack, spare)
        } else {
            let parts = self.whole(pack, spare);
            (parts.into_iter().map(Part::Buffer).collect(), None)
        };
        let len = parts.iter().map(Part::len).sum();
        let mut state = self.lock();
        debug_assert!(state.message.is_none(), "one direct message at a time");
        state.message = Some(Message {
            parts,
            written: 0,
            len,
            masking,
        });
        state.started = false;
    }

    /// The message as one frame: its header, then its (masked) buffers.
    fn whole(&self, mut pack: Pack, spare: &Arc<Spare>) -> Vec<Bytes> {
        let len = pack.len();
        let mask = self.masks.then(mask_key);
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            mask,
            ..FrameHeader::default()
        };
        let mut head = Vec::with_capacity(header.len(len as u64));
        header
            .format(len as u64, &mut head)
            .expect("writing to a Vec cannot fail");
        let mut parts = vec![Bytes::from(head)];
        match mask {
            // Our own buffer: masked where it is.
            Some(key) if pack.shared.is_empty() => {
                apply_mask(&mut pack.bytes, key, 0);
                parts.push(spare.lend(pack.bytes));
            }
            // Shared buffers must not change: masked as they are copied.
            Some(key) => {
                let mut masked = spare.take(len);
                for piece in pack.pieces() {
                    extend_masked(&mut masked, piece, key, 0);
                }
                spare.give_back(pack.bytes);
                parts.push(spare.lend(masked));
            }
            None => parts.extend(buffers(pack, spare)),
        }
        parts
    }

    /// The message cut at its large byte strings, each one a fragment of its own, so the peer
    /// can read it straight into a buffer of its own (`inlet.rs`): the headers, then each
    /// fragment's buffer. Each fragment has its own masking key, if this side masks; its own
    /// pieces are masked where they are, its shared ones copied and masked as the message is
    /// written ([`Masking`]), [`MASK_AHEAD`] at a time.
    fn fragments(&self, mut pack: Pack, spare: &Arc<Spare>) -> (Vec<Part>, Option<Masking>) {
        let layout: Vec<Piece> = pack.layout().collect();
        let mut heads = Vec::with_capacity(14 * layout.len());
        let mut head_ends = Vec::with_capacity(layout.len());
        let mut copies = Vec::new();
        for (i, piece) in layout.iter().enumerate() {
            let mask = self.masks.then(mask_key);
            let header = FrameHeader {
                is_final: i + 1 == layout.len(),
                opcode: OpCode::Data(if i == 0 { Data::Binary } else { Data::Continue }),
                mask,
                ..FrameHeader::default()
            };
            let len = pack.piece(piece).len();
            header
                .format(len as u64, &mut heads)
                .expect("writing to a Vec cannot fail");
            head_ends.push(heads.len());
            match (piece, mask) {
                (Piece::Own(range), Some(key)) => {
                    apply_mask(&mut pack.bytes[range.clone()], key, 0)
                }
                (Piece::Shared(i), Some(key)) => copies.push((pack.shared[*i].1.clone(), key)),
                (_, None) => {}
            }
        }
        let (bodies, masking) = match self.masks {
            false => (
                buffers(pack, spare).into_iter().map(Part::Buffer).collect(),
                None,
            ),
            // Own pieces masked in place; shared ones by their copies, in order.
            true => {
                let own = spare.lend(pack.bytes);
                let mut from = 0;
                let bodies: Vec<Part> = (layout.iter())
                    .map(|piece| match piece {
                        Piece::Own(range) => Part::Buffer(own.slice(range.clone())),
                        Piece::Shared(i) => {
                            let len = pack.shared[*i].1.len();
                            from += len;
                            Part::Masked(from - len..from)
                        }
                    })
                    .collect();
                (bodies, Some(Masking::new(copies, from, spare)))
            }
        };
        let heads = Bytes::from(heads);
        let mut parts = Vec::with_capacity(2 * bodies.len());
        let mut head_from = 0;
        for (body, head_end) in bodies.into_iter().zip(head_ends) {
            parts.push(Part::Buffer(heads.slice(head_from..head_end)));
            parts.push(body);
            head_from = head_end;
        }
        (parts, masking)
    }

    /// Whether a message is waiting or being written.
    pub(super) fn is_busy(&self) -> bool {
        self.lock().message.is_some()
    }
}

/// A fresh masking key; from the operating system's generator, as RFC 6455 asks (10.3).
fn mask_key() -> [u8; 4] {
    let mut key = [0; 4];
    fill_random(&mut key);
    key
}

/// Fills `buf` from the operating system's generator; if that fails (never seen on a supported
/// system), from std's randomly keyed hasher, since the bytes must still vary.
pub(super) fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new();
        for (i, chunk) in buf.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&seed.hash_one(i).to_ne_bytes()[..chunk.len()]);
        }
    }
}

impl State {
    /// Writes the started message to the end. Ready once it is all written (or there is none).
    fn finish<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while let Some(message) = &mut self.message {
            if message.written == message.len {
                self.message = None;
                break;
            }
            message.mask_ahead();
            let mut slices = [IoSlice::new(&[]); SLICES];
            let n = message.slices(&mut slices);
            let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))?;
            if n == 0 {
                // A socket that takes nothing is closed.
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            message.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl Message {
    /// Masks the next block of the shared pieces once every masked byte is written, but not
    /// before the first write: that one carries only what comes before the first shared piece
    /// (its headers), so the peer wakes and readies the fragment's buffer (in Python, a fresh
    /// `bytes`; its low-water mark) while the first block is masked. With one CPU kept busy,
    /// sequential 1 MiB echoes ran at 1,139–1,218 MB/s so, against 886–1,046 with the headers
    /// written with the first block (3 alternating pairs); on an idle machine, no difference.
    fn mask_ahead(&mut self) {
        if self.masking.is_none() || self.written == 0 {
            return; // nothing masked as it is written, or the headers are not out yet
        }
        let written = self.masked_written();
        if let Some(masking) = &mut self.masking {
            if masking.buf.len() == written {
                masking.more();
            }
        }
    }

    /// How many bytes of the `Part::Masked` parts are written.
    fn masked_written(&self) -> usize {
        let (mut start, mut total) = (0, 0);
        for part in &self.parts {
            if start >= self.written {
                break;
            }
            if let Part::Masked(range) = part {
                total += (self.written - start).min(range.len());
            }
            start += part.len();
        }
        total
    }

    /// The unwritten bytes, as up to `out.len()` slices; how many: up to what is masked, if
    /// the message is masked as it is written, else at most [`WRITE_BLOCK`] bytes.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut skip = self.written;
        let mut n = 0;
        let mut budget = match self.masking {
            Some(_) => usize::MAX,
            None => WRITE_BLOCK,
        };
        for part in &self.parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            if n == out.len() || budget == 0 {
                break;
            }
            match part {
                Part::Buffer(b) => {
                    let end = b.len().min(skip.saturating_add(budget));
                    out[n] = IoSlice::new(&b[skip..end]);
                    budget -= end - skip;
                }
                Part::Masked(r) => {
                    let buf = &self
                        .masking
                        .as_ref()
                        .expect("masked parts have a buffer")
                        .buf;
                    let end = r.end.min(buf.len());
                    if end <= r.start + skip {
                        break;
                    }
                    out[n] = IoSlice::new(&buf[r.start + skip..end]);
                    if end < r.end {
                        return n + 1;
                    }
                }
            }
            skip = 0;
            n += 1;
        }
        n
    }
}

/// The buffers of `pack`'s message in order, unmasked: its own buffer lent from `spare`,
/// sliced between the shared ones.
fn buffers(pack: Pack, spare: &Arc<Spare>) -> Vec<Bytes> {
    let layout: Vec<Piece> = pack.layout().collect();
    let own = spare.lend(pack.bytes);
    let shared = pack.shared;
    layout
        .into_iter()
        .map(|piece| match piece {
            Piece::Own(range) => own.slice(range),
            Piece::Shared(i) => shared[i].1.clone(),
        })
        .collect()
}

/// Appends `piece` to the payload in `masked`, masked: [`MASK_BLOCK`] bytes at a time, each
/// block masked while it is still in the cache (one pass over memory, not two).
/// `from` is where the frame's payload starts in `masked`.
fn extend_masked(masked: &mut Vec<u8>, piece: &[u8], key: [u8; 4], from: usize) {
    for block in piece.chunks(MASK_BLOCK) {
        let at = masked.len();
        masked.extend_from_slice(block);
        apply_mask(&mut masked[at..], key, at - from);
    }
}

/// XORs `buf` with `key` (RFC 6455, 5.3) as the payload's bytes from offset `at` on, eight
/// bytes at a time.
pub(super) fn apply_mask(buf: &mut [u8], key: [u8; 4], at: usize) {
    let mut key = key;
    key.rotate_left(at % 4);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let masked = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ wide;
        word.copy_from_slice(&masked.to_ne_bytes());
    }
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

impl<S: AsyncRead + LowWater + Unpin> AsyncRead for Direct<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.reader.poll_read(&mut this.io, cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Direct<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        {
            let mut state = this.outlet.lock();
            if state.started {
                ready!(state.finish(&mut this.io, cx))?;
            }
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    /// tungstenite flushes only once its own buffer is written out: here a waiting message
    /// starts.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            let mut state = this.outlet.lock();
            state.started |= state.message.is_some();
            ready!(state.finish(&mut this.io, cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Finishes a started message; one still waiting is dropped with the connection (starting
    /// it here could cut into bytes tungstenite has not written).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            let mut state = this.outlet.lock();
            if state.started {
                ready!(state.finish(&mut this.io, cx))?;
            }
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use serde_bytes::ByteBuf;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use tokio_tungstenite::WebSocketStream;

    use super::*;
    use crate::transport::inlet::tests::Recording;
    use crate::transport::outbox::Outbox;
    use crate::transport::writer::tests::half_over;
    use crate::value::Value;

    const LONG: Duration = Duration::from_secs(10);

    /// Our end (over a [`Direct`]; it dialed if `dials`) and the peer's, plain tungstenite with
    /// the default settings (which, on the accepting side, refuse unmasked frames), joined by a
    /// pipe that holds `pipe` bytes each way.
    async fn pair(
        dials: bool,
        pipe: usize,
    ) -> (
        WebSocketStream<Direct<DuplexStream>>,
        WebSocketStream<DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(pipe);
        let (ours, theirs) = if dials {
            (Role::Client, Role::Server)
        } else {
            (Role::Server, Role::Client)
        };
        let ours =
            WebSocketStream::from_raw_socket(Direct::new(a, dials, 1 << 24), ours, None).await;
        (
            ours,
            WebSocketStream::from_raw_socket(b, theirs, None).await,
        )
    }

    /// Two large frames between two small ones: one all in the pack's own buffer, one whose
    /// large byte strings are shared (`outbox::Pack`), of odd lengths so masking turns its key
    /// between pieces.
    fn queue_four(data: &Outbox) -> (ByteBuf, Value) {
        let own = ByteBuf::from(pattern(300_000));
        let shared = Value::List(vec![
            Value::Bytes(pattern(100_001).into()),
            Value::Str("between".into()),
            Value::Bytes(pattern(70_003).into()),
        ]);
        data.push_quietly(&1u32).unwrap();
        data.push_quietly(&own).unwrap();
        data.push_quietly(&shared).unwrap();
        data.push_quietly(&2u32).unwrap();
        (own, shared)
    }

    fn pattern(len: u32) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// The four messages `queue_four` queued, as the peer reads them.
    async fn read_four(peer: &mut WebSocketStream<DuplexStream>) -> Vec<Vec<u8>> {
        let mut got = vec![];
        for _ in 0..4 {
            got.push(next_binary(peer).await.0);
        }
        got
    }

    fn check_four(got: &[Vec<u8>], own: &ByteBuf, shared: &Value) {
        assert_eq!(postcard::from_bytes::<u32>(&got[0]).unwrap(), 1);
        assert_eq!(&postcard::from_bytes::<ByteBuf>(&got[1]).unwrap(), own);
        assert_eq!(&postcard::from_bytes::<Value>(&got[2]).unwrap(), shared);
        assert_eq!(postcard::from_bytes::<u32>(&got[3]).unwrap(), 2);
    }

    /// The next binary message the peer reads, skipping pongs; and how many pongs it skipped.
    async fn next_binary(peer: &mut WebSocketStream<DuplexStream>) -> (Vec<u8>, usize) {
        let mut pongs = 0;
        loop {
            match peer
                .next()
                .await
                .expect("open")
                .expect("a well-formed frame")
            {
                WsMessage::Binary(b) => return (b.to_vec(), pongs),
                WsMessage::Pong(_) => pongs += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_large_message_goes_direct_in_order_and_masked_from_the_dialer() {
        for dials in [true, false] {
            // A small pipe: each large message takes many partial writes.
            let (ours, mut peer) = pair(dials, 8 << 10).await;
            let outlet = ours.get_ref().outlet();
            let (sink, _stream) = ours.split();
            let mut half = half_over(Box::pin(sink), outlet.clone());
            let (control, data) = (Outbox::default(), Outbox::default());
            let (own, shared) = queue_four(&data);
            let reader = tokio::spawn(async move { read_four(&mut peer).await });
            let written = std::future::poll_fn(|cx| half.poll_write(cx, &control, Some(&data)));
            tokio::time::timeout(LONG, written).await.unwrap().unwrap();
            assert!(!outlet.is_busy() && half.is_idle());
            let got = tokio::time::timeout(LONG, reader).await.unwrap().unwrap();
            check_four(&got, &own, &shared);
        }
    }

    /// The read half answers pings on its own, through the same socket: a pong must wait for a
    /// direct message that is half written, not cut into it.
    #[tokio::test]
    async fn a_pong_from_the_read_half_never_cuts_into_a_direct_message() {
        for dials in [true, false] {
            let (ours, mut peer) = pair(dials, 4 << 10).await;
            let outlet = ours.get_ref().outlet();
            let (sink, mut stream) = ours.split();
            let mut half = half_over(Box::pin(sink), outlet.clone());
            for i in 0..20u8 {
                peer.send(WsMessage::Ping(vec![i].into())).await.unwrap();
            }
            let (control, data) = (Outbox::default(), Outbox::default());
            let (own, shared) = queue_four(&data);
            // The peer is not reading yet: the first large message stops a few KiB in.
            assert!(!half.write_now(&control, &data));
            assert!(outlet.is_busy());
            // Reading the pings makes tungstenite answer them, while the message is half out.
            for _ in 0..20 {
                let read = tokio::time::timeout(LONG, stream.next()).await.unwrap();
                assert!(matches!(read, Some(Ok(WsMessage::Ping(_)))));
            }
            let reader = tokio::spawn(async move { read_four(&mut peer).await });
            let written = std::future::poll_fn(|cx| half.poll_write(cx, &control, Some(&data)));
            tokio::time::timeout(LONG, written).await.unwrap().unwrap();
            let got = tokio::time::timeout(LONG, reader).await.unwrap().unwrap();
            check_four(&got, &own, &shared);
        }
    }

    /// A large message must not overtake the small ones queued before it. Once more than
    /// tungstenite's write buffer (128 KiB) is queued on a slow pipe, tungstenite's own
    /// `poll_ready` flushes (and so could start the direct message) while the split sink still
    /// holds the last small pack in its slot. Whether that happens depends on where the
    /// 128 KiB falls among the packs, so every count of small frames over a range is tried.
    #[tokio::test]
    async fn a_large_message_never_overtakes_the_small_ones_queued_before_it() {
        for dials in [true, false] {
            for smalls in (100..=300u32).step_by(4) {
                let (ours, mut peer) = pair(dials, 16 << 10).await;
                let outlet = ours.get_ref().outlet();
                let (sink, _stream) = ours.split();
                let mut half = half_over(Box::pin(sink), outlet);
                let (control, data) = (Outbox::default(), Outbox::default());
                let small = ByteBuf::from(vec![1; 1000]);
                for seq in 0..smalls {
                    data.push_quietly(&(seq, &small)).unwrap();
                }
                let large = ByteBuf::from(pattern(300_000));
                data.push_quietly(&(smalls, large)).unwrap();
                data.push_quietly(&(smalls + 1, &small)).unwrap();
                let reader = tokio::spawn(async move {
                    let mut seqs = vec![];
                    while seqs.len() < smalls as usize + 2 {
                        let (message, _) = next_binary(&mut peer).await;
                        let mut rest = &message[..];
                        while !rest.is_empty() {
                            let ((seq, _), tail): ((u32, ByteBuf), _) =
                                postcard::take_from_bytes(rest).unwrap();
                            seqs.push(seq);
                            rest = tail;
                        }
                    }
                    seqs
                });
                let written = std::future::poll_fn(|cx| half.poll_write(cx, &control, Some(&data)));
                tokio::time::timeout(LONG, written).await.unwrap().unwrap();
                let seqs = tokio::time::timeout(LONG, reader).await.unwrap().unwrap();
                let expected: Vec<u32> = (0..smalls + 2).collect();
                assert_eq!(
                    seqs, expected,
                    "dials: {dials}, {smalls} small frames first"
                );
            }
        }
    }

    /// How much of the waiting message's shared pieces is masked, and how much of that is
    /// written (None: no message waits, or it is not masked as it is written).
    fn masking_state(outlet: &Outlet) -> Option<(usize, usize)> {
        let state = outlet.lock();
        let message = state.message.as_ref()?;
        let masked = message.masking.as_ref()?.buf.len();
        Some((masked, message.masked_written()))
    }

    /// A large value whose shared pieces are longer than a block, of odd lengths (so blocks end
    /// mid-word of a key), one a whole number of blocks (so a block ends at a piece's end),
    /// with own bytes between them: 5 blocks and 104 bytes of shared pieces in all.
    fn big_value() -> Value {
        let block = MASK_AHEAD as u32;
        Value::List(vec![
            Value::Bytes(pattern(2 * block + 101).into()),
            Value::Str("between".into()),
            Value::Bytes(pattern(2 * block).into()),
            Value::Bytes(pattern(block + 3).into()),
        ])
    }

    /// Writes `big` (and, if `queued`, a small message queued behind it) from `half`; checks
    /// what the peer reads, and that never more than a block is masked and not yet written.
    async fn send_big(
        mut half: crate::transport::writer::WriteHalf,
        mut peer: WebSocketStream<DuplexStream>,
        outlet: Arc<Outlet>,
        big: &Value,
        queued: bool,
    ) {
        let (control, data) = (Outbox::default(), Outbox::default());
        data.push_quietly(big).unwrap();
        if queued {
            data.push_quietly(&7u32).unwrap();
        }
        let reader = tokio::spawn(async move {
            let first = next_binary(&mut peer).await.0;
            let second = match queued {
                true => Some(next_binary(&mut peer).await.0),
                false => None,
            };
            (first, second)
        });
        // At every turn of the writer.
        let written = std::future::poll_fn(|cx| {
            let poll = half.poll_write(cx, &control, Some(&data));
            if let Some((masked, written)) = masking_state(&outlet) {
                let ahead = masked - written;
                assert!(ahead <= MASK_AHEAD, "{masked} masked, {written} written");
            }
            poll
        });
        tokio::time::timeout(LONG, written).await.unwrap().unwrap();
        let (first, second) = tokio::time::timeout(LONG, reader).await.unwrap().unwrap();
        assert_eq!(&postcard::from_bytes::<Value>(&first).unwrap(), big);
        if let Some(second) = second {
            assert_eq!(postcard::from_bytes::<u32>(&second).unwrap(), 7);
        }
    }

    /// A message's shared pieces are masked a block ahead of the writes, never more, whether or
    /// not another message is queued behind it, and arrive intact.
    #[tokio::test]
    async fn shared_pieces_are_masked_a_block_ahead_of_the_writes() {
        let big = big_value();
        for queued in [false, true] {
            // The peer is not reading: the message stops a few KiB in, one block masked.
            let (ours, _peer) = pair(true, 8 << 10).await;
            let outlet = ours.get_ref().outlet();
            let (sink, _stream) = ours.split();
            let mut half = half_over(Box::pin(sink), outlet.clone());
            let (control, data) = (Outbox::default(), Outbox::default());
            data.push_quietly(&big).unwrap();
            if queued {
                data.push_quietly(&7u32).unwrap();
            }
            assert!(!half.write_now(&control, &data));
            let (masked, _) = masking_state(&outlet).expect("waiting");
            assert_eq!(masked, MASK_AHEAD, "queued: {queued}");
            // On a fresh connection, all of it, checked at every turn.
            let (ours, peer) = pair(true, 8 << 10).await;
            let outlet = ours.get_ref().outlet();
            let (sink, _stream) = ours.split();
            let half = half_over(Box::pin(sink), outlet.clone());
            send_big(half, peer, outlet, &big, queued).await;
        }
    }

    /// Sends `big_value()` over a pipe of `pipe` bytes (one that takes everything, or one that
    /// takes part of a write while the peer reads), from the dialing side (`masks`) or the
    /// accepting one; checks what the peer reads; the sizes of the writes the socket saw.
    async fn writes_of_big(masks: bool, pipe: usize) -> Vec<usize> {
        let (a, b) = tokio::io::duplex(pipe);
        let socket = Recording::new(a);
        let writes = socket.writes.clone();
        let (our_role, peer_role) = match masks {
            true => (Role::Client, Role::Server),
            false => (Role::Server, Role::Client),
        };
        let ours = Direct::new(socket, masks, 1 << 24);
        let ours = WebSocketStream::from_raw_socket(ours, our_role, None).await;
        let peer = WebSocketStream::from_raw_socket(b, peer_role, None).await;
        let outlet = ours.get_ref().outlet();
        let (sink, _stream) = ours.split();
        let half = half_over(Box::pin(sink), outlet.clone());
        send_big(half, peer, outlet, &big_value(), false).await;
        let writes = writes.lock().unwrap().clone();
        writes
    }

    /// On a socket that takes everything, a message with shared pieces goes out a block per
    /// write, after a first write of what comes before the first shared piece (its headers).
    #[tokio::test]
    async fn shared_pieces_go_out_a_block_per_write_after_the_headers() {
        let writes = writes_of_big(true, 8 << 20).await;
        // The headers (and own bytes) before the first shared piece, then 5 blocks and 104
        // bytes: 6 writes, each a block at most with the headers and own bytes between pieces
        // (under 128 bytes in all).
        assert_eq!(writes.len(), 7, "{writes:?}");
        assert!(writes[0] < 128, "{writes:?}");
        assert!(writes[1] >= MASK_AHEAD, "{writes:?}");
        assert!(writes.iter().all(|&n| n <= MASK_AHEAD + 128), "{writes:?}");
    }

    /// From the accepting side (nothing masked), a large message goes out a block per write.
    #[tokio::test]
    async fn unmasked_messages_go_out_a_block_per_write() {
        let writes = writes_of_big(false, 8 << 20).await;
        let total: usize = writes.iter().sum();
        assert!(total > 2 * WRITE_BLOCK, "{writes:?}");
        assert!(writes.iter().all(|&n| n <= WRITE_BLOCK), "{writes:?}");
        assert_eq!(writes.len(), total.div_ceil(WRITE_BLOCK), "{writes:?}");
    }

    /// The same through a pipe that takes 40 KiB at a time: every write is cut short, the next
    /// goes on from where it stopped, and the message arrives whole (`send_big` checks it).
    #[tokio::test]
    async fn unmasked_messages_cut_short_by_the_socket_arrive_whole() {
        let writes = writes_of_big(false, 40 << 10).await;
        let total: usize = writes.iter().sum();
        assert!(total > 5 * MASK_AHEAD, "{writes:?}");
        assert!(writes.iter().all(|&n| n <= 40 << 10), "{writes:?}");
        assert!(writes.len() >= total.div_ceil(40 << 10), "{writes:?}");
    }

    #[test]
    fn masking_matches_the_rfc_at_every_length_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for at in 0..9 {
            for len in 0..40 {
                let plain: Vec<u8> = (0..len as u8).collect();
                let mut masked = plain.clone();
                apply_mask(&mut masked, key, at);
                let expected: Vec<u8> = (plain.iter().enumerate())
                    .map(|(i, b)| b ^ key[(at + i) % 4])
                    .collect();
                assert_eq!(masked, expected, "length {len} at {at}");
            }
        }
    }
}
