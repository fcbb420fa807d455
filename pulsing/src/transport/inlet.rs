//! Fragmented messages read beside tungstenite, each fragment into a buffer of its own.
//!
//! A Pulsing sender cuts a message at the edges of its large byte strings (`direct.rs`), so each
//! such string is one WebSocket fragment. tungstenite would read the fragments into its read
//! buffer (zero-filled first), unmask them there and join them into one message; the byte
//! string would then be copied once more into whatever the program wants (a Python `bytes`).
//! Instead, the read half of [`Direct`](super::direct::Direct) watches the frames going by
//! ([`Reader`]) and takes a fragmented binary message out of the stream: each fragment is read
//! from the socket straight into a buffer of its own ([`land`], which a program may hook:
//! `value/landing.rs`), unmasked as it arrives, and the message's fragments wait in the
//! connection's [`Inlet`]. tungstenite gets a stand-in in the message's place: a small binary
//! frame holding the inlet's token (random, never sent), which the connection's reader trades
//! for the fragments ([`Inlet::claim`]). Everything else passes through untouched.
//!
//! **Following the frames.** The reader scans every byte it hands tungstenite with a small state
//! machine: the HTTP head of the upgrade (up to its blank line, as tungstenite's parser ends
//! it), then each frame's header and payload. A frame whose first byte says "binary, not the
//! last fragment, no reserved bits" starts a message taken out; anything else, malformed or
//! not, is tungstenite's to judge.
//!
//! **What a fragmented message may hold.** Taken out, it is checked as tungstenite would: no
//! reserved bits, masked exactly when the peer dialed, continuation frames only, control frames
//! (which pass on to tungstenite, so pings are answered) unfragmented and at most 125 bytes,
//! the message within the connection's size limit; and at most [`MAX_FRAGMENTS`] fragments.
//! A breach ends the connection with an error that says which. Until the handshake is done
//! ([`Inlet::open`]), nothing is taken out: a peer that has not proved the secret only ever
//! talks to tungstenite.
//!
//! **Waking.** While the rest of a large fragment is on the way, the socket's low-water mark is
//! set to it ([`LowWater`], at most 512 KiB), so the reader wakes once per half megabyte, not
//! as each segment lands.
//!
//! [`land`]: crate::value::land

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use super::direct::{apply_mask, fill_random};
use crate::value::{land, Landed};

/// At most this many data fragments in one message (a sender cuts a message at up to 31 byte
/// strings; more are sent whole).
pub(crate) const MAX_FRAGMENTS: usize = 64;

/// The first byte of a frame that starts a fragmented binary message: FIN clear, no reserved
/// bits, opcode binary.
const FRAGMENTED_BINARY: u8 = 0x02;

const TOKEN: usize = 16;

/// The fragmented messages read, until the connection's reader claims them by their stand-ins.
#[derive(Debug)]
pub(crate) struct Inlet {
    token: [u8; TOKEN],
    open: AtomicBool,
    ready: Mutex<VecDeque<Vec<Bytes>>>,
}

impl Inlet {
    fn new() -> Self {
        // The token only has to differ from what a peer sends; a peer never sees it.
        let mut token = [0; TOKEN];
        fill_random(&mut token);
        Inlet {
            token,
            open: AtomicBool::new(false),
            ready: Mutex::default(),
        }
    }

    /// From now on (the peer logged in), fragmented messages are taken out of the stream.
    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// Whether every message taken out has been claimed.
    fn is_drained(&self) -> bool {
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The fragments of the message `message` stands in for, if it is a stand-in.
    pub(crate) fn claim(&self, message: &[u8]) -> Option<Vec<Bytes>> {
        if message != self.token {
            return None;
        }
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// The read half's state: where in the stream it is, and the message being taken out.
#[derive(Debug)]
pub(super) struct Reader {
    inlet: std::sync::Arc<Inlet>,
    /// Frames from the peer are masked (it dialed).
    masked: bool,
    /// The largest message, in bytes.
    max: usize,
    scan: Scan,
    /// Bytes read from the socket but not yet scanned (read past the start of a message taken
    /// out).
    unread: BytesMut,
    /// Whole frames for tungstenite: control frames from within a message taken out, and
    /// stand-ins.
    out: BytesMut,
    taking: Option<Taking>,
    /// The socket's receive low-water mark, as last set.
    low_water: usize,
}

/// At most this much of a large fragment is waited for before the reader wakes.
pub(super) const LOW_WATER_CAP: usize = 512 << 10;

/// A socket whose receive low-water mark can be set (`SO_RCVLOWAT`): while the rest of a large
/// fragment is on the way, the reader is woken only once that much of it is in (at most
/// [`LOW_WATER_CAP`]), not as each segment lands. Measured on a 1 MiB echo between two Python
/// processes: 0.79–0.83× the raw asyncio floor against 0.64–0.70× in the same window, and a
/// fifth less CPU per echo (BENCHMARKS.md). The kernel still wakes the reader early when the
/// peer hangs up or the receive window is full (Linux 4.18 and later also grow the receive
/// buffer to fit the mark; an older kernel may wait for the silence check instead), and the
/// mark is back at one byte as soon as the fragment is in.
pub(crate) trait LowWater {
    /// Sets the low-water mark to `bytes` (1: wake for any byte).
    fn set_low_water(&self, bytes: usize);
}

impl LowWater for tokio::net::TcpStream {
    fn set_low_water(&self, bytes: usize) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
            // SAFETY: an `int` option value, of its size, for a socket this stream owns.
            // A failure only leaves the mark where it was: the reader wakes more often.
            unsafe {
                libc::setsockopt(
                    self.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = bytes;
    }
}

/// In-process pipes (tests, the fuzzer) have no low-water mark.
impl LowWater for tokio::io::DuplexStream {
    fn set_low_water(&self, _bytes: usize) {}
}

/// Where the scan of the stream is.
#[derive(Debug)]
enum Scan {
    /// In the upgrade's HTTP head; after a line feed (carriage returns aside) if `newline`.
    /// Before its first line (`started` false), empty lines are skipped, as httparse does.
    Http {
        started: bool,
        newline: bool,
    },
    Header(Header),
    Payload(u64),
}

/// A frame header, byte by byte.
#[derive(Debug, Default)]
struct Header {
    bytes: [u8; 14],
    at: usize,
}

impl Header {
    /// Its length, once the first two bytes are in.
    fn len(&self) -> Option<usize> {
        let second = *self.bytes.get(1).filter(|_| self.at >= 2)?;
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        Some(2 + extended + mask)
    }

    fn is_whole(&self) -> bool {
        self.len() == Some(self.at)
    }

    /// The payload's length (of a whole header).
    fn payload_len(&self) -> u64 {
        match self.bytes[1] & 0x7f {
            126 => u16::from_be_bytes([self.bytes[2], self.bytes[3]]).into(),
            127 => u64::from_be_bytes(self.bytes[2..10].try_into().expect("8 bytes")),
            short => short.into(),
        }
    }

    fn mask(&self) -> Option<[u8; 4]> {
        if self.bytes[1] & 0x80 == 0 {
            return None;
        }
        let at = self.len()? - 4;
        Some(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }
}

/// A fragmented message being taken out.
#[derive(Debug, Default)]
struct Taking {
    fragments: Vec<Bytes>,
    size: u64,
    part: Part,
}

#[derive(Debug)]
enum Part {
    Header(Header),
    Data {
        landed: Landed,
        len: usize,
        at: usize,
        mask: Option<[u8; 4]>,
        last: bool,
    },
    /// A control frame for tungstenite (header and payload), its first `at` bytes read.
    Control {
        frame: Vec<u8>,
        at: usize,
    },
}

impl Default for Part {
    fn default() -> Self {
        Part::Header(Header::default())
    }
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl Reader {
    /// The read half of a socket whose peer masks its frames if `masked` (it dialed), for
    /// messages of at most `max` bytes.
    pub(super) fn new(masked: bool, max: usize) -> Self {
        Reader {
            inlet: std::sync::Arc::new(Inlet::new()),
            masked,
            max,
            scan: Scan::Http {
                started: false,
                newline: false,
            },
            unread: BytesMut::new(),
            out: BytesMut::new(),
            taking: None,
            low_water: 1,
        }
    }

    pub(super) fn inlet(&self) -> std::sync::Arc<Inlet> {
        self.inlet.clone()
    }

    /// Reads for tungstenite: the stream with fragmented messages taken out (see the module's
    /// docs).
    pub(super) fn poll_read<S: AsyncRead + LowWater + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.out.is_empty() {
                give(&mut self.out, buf);
                return Poll::Ready(Ok(()));
            }
            if self.taking.is_some() {
                ready!(self.take(io, cx))?;
                continue;
            }
            let start = buf.filled().len();
            if self.unread.is_empty() {
                ready!(Pin::new(&mut *io).poll_read(cx, buf))?;
            } else {
                give(&mut self.unread, buf);
            }
            let Some(cut) = self.scan(&buf.filled()[start..]) else {
                return Poll::Ready(Ok(()));
            };
            if !self.inlet.is_drained() {
                // In step with tungstenite, a stand-in is claimed before the next message
                // starts; otherwise this scan has lost the frame boundaries.
                return Poll::Ready(Err(refused(
                    "a fragmented message began before the last one was taken".into(),
                )));
            }
            let cut = start + cut;
            let mut rest = BytesMut::from(&buf.filled()[cut..]);
            rest.extend_from_slice(&self.unread);
            self.unread = rest;
            buf.set_filled(cut);
            self.taking = Some(Taking::default());
            if cut > start {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Follows the frames in `bytes`, the next ones tungstenite gets; where a fragmented
    /// message to take out starts, if it does.
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.scan {
                Scan::Http { started, newline } => {
                    match bytes[i] {
                        b'\r' | b'\n' if !*started => {}
                        b'\n' if *newline => self.scan = Scan::Header(Header::default()),
                        b'\n' => *newline = true,
                        b'\r' => {}
                        _ => (*started, *newline) = (true, false),
                    }
                    i += 1;
                }
                Scan::Payload(rest) => {
                    let n = (*rest).min((bytes.len() - i) as u64);
                    i += n as usize;
                    *rest -= n;
                    if *rest == 0 {
                        self.scan = Scan::Header(Header::default());
                    }
                }
                Scan::Header(header) => {
                    if header.at == 0
                        && bytes[i] == FRAGMENTED_BINARY
                        && self.inlet.open.load(Ordering::Acquire)
                    {
                        return Some(i);
                    }
                    header.bytes[header.at] = bytes[i];
                    header.at += 1;
                    i += 1;
                    if header.is_whole() {
                        self.scan = match header.payload_len() {
                            0 => Scan::Header(Header::default()),
                            len => Scan::Payload(len),
                        };
                    }
                }
            }
        }
        None
    }

    /// Reads the message being taken out until it is whole (its stand-in then waits in `out`)
    /// or a control frame in it is (the frame waits in `out`).
    fn take<S: AsyncRead + LowWater + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let taking = self.taking.as_mut().expect("a message being taken out");
            match &mut taking.part {
                Part::Header(header) => {
                    let want = header.len().unwrap_or(2);
                    if header.at < want {
                        let mut room = ReadBuf::new(&mut header.bytes[header.at..want]);
                        header.at += ready!(read_some(&mut self.unread, io, cx, &mut room))?;
                        continue;
                    }
                    let header = std::mem::take(header);
                    let next = self.next_part(header)?;
                    self.taking
                        .as_mut()
                        .expect("a message being taken out")
                        .part = next;
                }
                Part::Data {
                    landed,
                    len,
                    at,
                    mask,
                    last,
                } => {
                    if *at < *len {
                        if *len >= crate::value::LAND_FROM {
                            low_water(io, &mut self.low_water, *len - *at);
                        }
                        let mut room = ReadBuf::uninit(&mut landed.rest(*at)[..*len - *at]);
                        let n = ready!(read_some(&mut self.unread, io, cx, &mut room))?;
                        if let Some(key) = *mask {
                            apply_mask(&mut landed.written(*at + n)[*at..], key, *at);
                        }
                        *at += n;
                        continue;
                    }
                    let last = *last;
                    low_water(io, &mut self.low_water, 1);
                    let Part::Data { landed, len, .. } = std::mem::take(&mut taking.part) else {
                        unreachable!()
                    };
                    // SAFETY: all `len` bytes were read into it.
                    taking.fragments.push(unsafe { landed.into_bytes(len) });
                    if last {
                        let taken = self.taking.take().expect("a message being taken out");
                        self.inlet
                            .ready
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push_back(taken.fragments);
                        self.out.extend_from_slice(&self.stand_in());
                        return Poll::Ready(Ok(()));
                    }
                }
                Part::Control { frame, at } => {
                    if *at < frame.len() {
                        let mut room = ReadBuf::new(&mut frame[*at..]);
                        *at += ready!(read_some(&mut self.unread, io, cx, &mut room))?;
                        continue;
                    }
                    let Part::Control { frame, .. } = std::mem::take(&mut taking.part) else {
                        unreachable!()
                    };
                    self.out.extend_from_slice(&frame);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    /// What follows `header` (whole) in the message being taken out, if the header is allowed.
    fn next_part(&mut self, header: Header) -> io::Result<Part> {
        let taking = self.taking.as_mut().expect("a message being taken out");
        let (first, second) = (header.bytes[0], header.bytes[1]);
        if first & 0x70 != 0 {
            return Err(refused("a fragment with reserved bits set".into()));
        }
        if (second & 0x80 != 0) != self.masked {
            return Err(refused(if self.masked {
                "an unmasked frame from the dialing side".into()
            } else {
                "a masked frame from the accepting side".into()
            }));
        }
        let len = header.payload_len();
        let last = first & 0x80 != 0;
        let opcode = first & 0x0f;
        let starts = taking.fragments.is_empty();
        match opcode {
            0x8..=0xa if !last || len > 125 => Err(refused(
                "a control frame fragmented or over 125 bytes inside a fragmented message".into(),
            )),
            0x8..=0xa => {
                let mut frame = vec![0; header.at + len as usize];
                frame[..header.at].copy_from_slice(&header.bytes[..header.at]);
                Ok(Part::Control {
                    frame,
                    at: header.at,
                })
            }
            0x2 if starts => self.data(header, len, last),
            0x0 if !starts => self.data(header, len, last),
            0x1 | 0x2 => Err(refused(
                "a new message began inside a fragmented one".into(),
            )),
            _ => Err(refused(format!("a frame with reserved opcode {opcode:#x}"))),
        }
    }

    fn data(&mut self, header: Header, len: u64, last: bool) -> io::Result<Part> {
        let taking = self.taking.as_mut().expect("a message being taken out");
        if taking.fragments.len() >= MAX_FRAGMENTS {
            return Err(refused(format!(
                "a message in more than {MAX_FRAGMENTS} fragments"
            )));
        }
        taking.size = taking.size.saturating_add(len);
        if taking.size > self.max as u64 {
            return Err(refused(format!(
                "a fragmented message over the {}-byte limit",
                self.max
            )));
        }
        let len = len as usize;
        Ok(Part::Data {
            landed: land(len),
            len,
            at: 0,
            mask: header.mask(),
            last,
        })
    }

    /// The frame tungstenite gets in place of a message taken out: the token, in a final
    /// binary frame masked (with a zero key) if the peer's frames are.
    fn stand_in(&self) -> Vec<u8> {
        let mut frame = vec![0x80 | 0x2];
        if self.masked {
            frame.extend_from_slice(&[0x80 | TOKEN as u8, 0, 0, 0, 0]);
        } else {
            frame.push(TOKEN as u8);
        }
        frame.extend_from_slice(&self.inlet.token);
        frame
    }
}

/// Sets `io`'s low-water mark to `want` (at most [`LOW_WATER_CAP`]) unless it is already.
fn low_water<S: LowWater>(io: &S, current: &mut usize, want: usize) {
    let want = want.clamp(1, LOW_WATER_CAP);
    if want != *current {
        io.set_low_water(want);
        *current = want;
    }
}

/// Moves as much of `from` as fits into `to`; how much.
fn give(from: &mut BytesMut, to: &mut ReadBuf<'_>) -> usize {
    let n = from.len().min(to.remaining());
    to.put_slice(&from[..n]);
    from.advance(n);
    n
}

/// Reads into `room` (at least one byte, how many): from `unread` first, else from the socket.
fn read_some<S: AsyncRead + Unpin>(
    unread: &mut BytesMut,
    io: &mut S,
    cx: &mut Context<'_>,
    room: &mut ReadBuf<'_>,
) -> Poll<io::Result<usize>> {
    if !unread.is_empty() {
        return Poll::Ready(Ok(give(unread, room)));
    }
    ready!(Pin::new(io).poll_read(cx, room))?;
    match room.filled().len() {
        0 if room.remaining() > 0 => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection within a fragmented message",
        ))),
        n => Poll::Ready(Ok(n)),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::io::{AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    use super::*;
    use crate::transport::direct::Direct;

    const LONG: Duration = Duration::from_secs(10);
    const MAX: usize = 1 << 20;

    /// Our accepting end (over a [`Direct`], after a real upgrade) and the dialing peer's
    /// socket, for writing frames by hand; `open`: the inlet takes fragmented messages out.
    async fn upgraded(open: bool) -> (WebSocketStream<Direct<DuplexStream>>, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let accept = tokio_tungstenite::accept_async(Direct::new(ours, false, MAX));
        let dial = tokio_tungstenite::client_async("ws://node/pulsing", theirs);
        let (ours, theirs) = tokio::join!(accept, dial);
        let ours = ours.unwrap();
        if open {
            ours.get_ref().inlet().open();
        }
        (ours, theirs.unwrap().0.into_inner())
    }

    /// A frame as a dialing peer sends it: `first` byte (FIN, reserved bits, opcode), masked;
    /// the header written by tungstenite's own encoder.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        use tokio_tungstenite::tungstenite::protocol::frame::{coding::OpCode, FrameHeader};
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let header = FrameHeader {
            is_final: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode: OpCode::from(first & 0x0f),
            mask: Some(key),
        };
        let mut out = vec![];
        header.format(payload.len() as u64, &mut out).unwrap();
        let at = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[at..], key, 0);
        out
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// What our end reads next: a message's fragments (taken out, or whole from tungstenite)
    /// or a ping, or the error that ended the stream.
    async fn next<S>(ours: &mut WebSocketStream<Direct<S>>) -> Result<Vec<Vec<u8>>, String>
    where
        S: AsyncRead + tokio::io::AsyncWrite + LowWater + Unpin,
    {
        let inlet = ours.get_ref().inlet();
        match tokio::time::timeout(LONG, ours.next())
            .await
            .expect("no hang")
        {
            Some(Ok(Message::Binary(b))) => Ok(match inlet.claim(&b) {
                Some(fragments) => fragments.iter().map(|f| f.to_vec()).collect(),
                None => vec![b.to_vec()],
            }),
            Some(Ok(Message::Ping(p))) => Ok(vec![b"ping".to_vec(), p.to_vec()]),
            Some(Ok(other)) => Err(format!("unexpected {other:?}")),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("end of stream".into()),
        }
    }

    /// A small message, a fragmented one (with a ping and an empty fragment inside) and a
    /// small one again, as bytes.
    fn three_messages() -> (Vec<u8>, Vec<Vec<u8>>) {
        let (a, b, c) = (pattern(20, 1), pattern(70_001, 2), pattern(300, 3));
        let mut wire = frame(0x82, b"before");
        wire.extend(frame(0x02, &a));
        wire.extend(frame(0x89, b"hi"));
        wire.extend(frame(0x00, &b));
        wire.extend(frame(0x00, &[]));
        wire.extend(frame(0x80, &c));
        wire.extend(frame(0x82, b"after"));
        (wire, vec![a, b, vec![], c])
    }

    #[tokio::test]
    async fn a_fragmented_message_is_taken_out_whole_however_the_reads_cut_it() {
        let (wire, fragments) = three_messages();
        // All at once, then a byte at a time (every header and payload split at every byte).
        for step in [wire.len(), 1, 7, 4096] {
            let (mut ours, mut theirs) = upgraded(true).await;
            let wire = wire.clone();
            let writer = tokio::spawn(async move {
                for piece in wire.chunks(step) {
                    theirs.write_all(piece).await.unwrap();
                }
                theirs
            });
            assert_eq!(next(&mut ours).await.unwrap(), vec![b"before".to_vec()]);
            assert_eq!(
                next(&mut ours).await.unwrap(),
                vec![b"ping".to_vec(), b"hi".to_vec()],
                "the ping inside is passed on"
            );
            assert_eq!(next(&mut ours).await.unwrap(), fragments, "step {step}");
            assert_eq!(next(&mut ours).await.unwrap(), vec![b"after".to_vec()]);
            drop(writer.await.unwrap());
        }
    }

    /// A pipe that records the low-water marks set on it and how many bytes each write took (a
    /// vectored write is one write: its slices are joined). Also used by `direct.rs`'s tests.
    pub(in crate::transport) struct Recording {
        io: DuplexStream,
        pub(in crate::transport) marks: std::sync::Arc<Mutex<Vec<usize>>>,
        pub(in crate::transport) writes: std::sync::Arc<Mutex<Vec<usize>>>,
    }

    impl Recording {
        pub(in crate::transport) fn new(io: DuplexStream) -> Self {
            Recording {
                io,
                marks: Default::default(),
                writes: Default::default(),
            }
        }
    }

    impl LowWater for Recording {
        fn set_low_water(&self, bytes: usize) {
            self.marks.lock().unwrap().push(bytes);
        }
    }

    impl AsyncRead for Recording {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Recording {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &joined))?;
            self.writes.lock().unwrap().push(n);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// While a large fragment is read, the reader asks to be woken only once its rest is in (at
    /// most `LOW_WATER_CAP`), and sets the mark back to one byte after it: otherwise a small
    /// message after it would wait for bytes that never come.
    #[tokio::test]
    async fn the_low_water_mark_follows_a_large_fragment_and_comes_back_to_one() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let ours = Recording::new(ours);
        let marks = ours.marks.clone();
        let ours = Direct::new(ours, false, 4 << 20);
        let accept = tokio_tungstenite::accept_async(ours);
        let dial = tokio_tungstenite::client_async("ws://node/pulsing", theirs);
        let (ours, theirs) = tokio::join!(accept, dial);
        let mut ours = ours.unwrap();
        let mut theirs = theirs.unwrap().0.into_inner();
        ours.get_ref().inlet().open();
        let large = pattern(LOW_WATER_CAP + 100_000, 9);
        let mut wire = frame(0x02, b"head");
        wire.extend(frame(0x80, &large));
        wire.extend(frame(0x82, b"small"));
        let writer = tokio::spawn(async move { theirs.write_all(&wire).await.map(|()| theirs) });
        assert_eq!(
            next(&mut ours).await.unwrap(),
            vec![b"head".to_vec(), large.clone()]
        );
        assert_eq!(next(&mut ours).await.unwrap(), vec![b"small".to_vec()]);
        let marks = marks.lock().unwrap().clone();
        assert_eq!(marks.first(), Some(&LOW_WATER_CAP), "{marks:?}");
        assert!(
            marks.windows(2).all(|w| w[1] < w[0] || w[1] == 1),
            "{marks:?}"
        );
        assert_eq!(marks.last(), Some(&1), "{marks:?}");
        drop(writer.await.unwrap());
    }

    /// httparse skips empty lines before the request line; so must the scan of the HTTP head,
    /// or a client could make it lose the frame boundaries (and take a message out of another
    /// frame's payload).
    #[tokio::test]
    async fn empty_lines_before_the_request_do_not_throw_the_scan_out_of_step() {
        use tokio::io::AsyncReadExt;
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let accept = tokio::spawn(tokio_tungstenite::accept_async(Direct::new(
            ours, false, MAX,
        )));
        theirs
            .write_all(
                b"\r\n\n\r\nGET /pulsing HTTP/1.1\r\nHost: node\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut response = vec![];
        while !response.ends_with(b"\r\n\r\n") {
            response.push(theirs.read_u8().await.unwrap());
        }
        assert!(response.starts_with(b"HTTP/1.1 101"));
        let mut ours = accept.await.unwrap().unwrap();
        ours.get_ref().inlet().open();
        let (wire, fragments) = three_messages();
        let writer = tokio::spawn(async move { theirs.write_all(&wire).await.map(|()| theirs) });
        assert_eq!(next(&mut ours).await.unwrap(), vec![b"before".to_vec()]);
        assert_eq!(next(&mut ours).await.unwrap()[0], b"ping");
        assert_eq!(next(&mut ours).await.unwrap(), fragments);
        assert_eq!(next(&mut ours).await.unwrap(), vec![b"after".to_vec()]);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn before_the_handshake_is_done_tungstenite_joins_the_fragments() {
        let (wire, fragments) = three_messages();
        let (mut ours, mut theirs) = upgraded(false).await;
        let writer = tokio::spawn(async move { theirs.write_all(&wire).await.map(|()| theirs) });
        assert_eq!(next(&mut ours).await.unwrap(), vec![b"before".to_vec()]);
        assert_eq!(next(&mut ours).await.unwrap()[0], b"ping");
        assert_eq!(next(&mut ours).await.unwrap(), vec![fragments.concat()]);
        assert_eq!(next(&mut ours).await.unwrap(), vec![b"after".to_vec()]);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_fragmented_message_that_breaks_the_rules_ends_the_stream_with_a_reason() {
        let start = frame(0x02, b"start");
        let unmasked = {
            let mut f = frame(0x80, b"end");
            f[1] &= 0x7f;
            f.drain(2..6);
            f.splice(2.., b"end".iter().copied());
            f
        };
        let mut too_many = vec![];
        for _ in 0..MAX_FRAGMENTS {
            too_many.extend(frame(0x00, b"x"));
        }
        let mut over = vec![0x80, 0x80 | 127];
        over.extend_from_slice(&(MAX as u64).to_be_bytes());
        over.extend_from_slice(&[0; 4]);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("reserved bits", frame(0xc0, b"end"), "reserved bits"),
            ("unmasked", unmasked, "unmasked frame from the dialing side"),
            ("binary inside", frame(0x82, b"new"), "a new message began"),
            ("text inside", frame(0x81, b"new"), "a new message began"),
            (
                "fragmented ping",
                frame(0x09, b"p"),
                "control frame fragmented",
            ),
            ("long ping", frame(0x89, &[0; 126]), "over 125 bytes"),
            ("reserved opcode", frame(0x83, b"?"), "reserved opcode 0x3"),
            ("too many", too_many, "more than 64 fragments"),
            ("over the limit", over, "over the 1048576-byte limit"),
        ];
        for (name, rest, reason) in cases {
            let (mut ours, mut theirs) = upgraded(true).await;
            theirs.write_all(&start).await.unwrap();
            theirs.write_all(&rest).await.unwrap();
            let error = next(&mut ours).await.unwrap_err();
            assert!(error.contains(reason), "{name}: {error}");
        }
        // The peer hangs up in the middle of a fragment.
        let (mut ours, mut theirs) = upgraded(true).await;
        theirs.write_all(&start).await.unwrap();
        theirs
            .write_all(&frame(0x80, &[7; 1000])[..500])
            .await
            .unwrap();
        drop(theirs);
        let error = next(&mut ours).await.unwrap_err();
        assert!(
            error.contains("closed the connection within a fragmented message"),
            "{error}"
        );
    }
}
