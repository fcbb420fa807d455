//! A raw client that speaks the wire format by hand, for tests that play an attacker: it sends
//! what a real node never would (echoed or relayed handshakes, forged ids, injected records).
//!
//! [`Login`] is an independent implementation of the documented handshake (see the transport's
//! `secure` module docs): `Hello` in cleartext, then Noise `NNpsk0` (X25519, AES-GCM, BLAKE2s)
//! with the cluster secret as the pre-shared key, `msg3` to confirm, then sealed records. Writing
//! it a second time from the spec, with `snow` directly, checks the spec as much as the node.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use pulsing::wire::{encode, Frame, NodeId, PROTOCOL_VERSION};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a raw read waits before it reports [`Received::Nothing`].
pub const READ_WAIT: Duration = Duration::from_secs(3);

/// What the node sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A binary message.
    Binary(Vec<u8>),
    /// The node closed the connection, with this reason (empty if none).
    Closed(String),
    /// Nothing within [`READ_WAIT`].
    Nothing,
}

/// A WebSocket connection to a node, nothing more.
#[derive(Debug)]
pub struct Raw {
    ws: WebSocketStream<TcpStream>,
}

impl Raw {
    /// Opens a WebSocket to `addr`, optionally with an `Origin` header as a browser sends.
    ///
    /// # Errors
    /// The upgrade's error (an HTTP refusal among them).
    pub async fn connect_with(
        addr: &str,
        origin: Option<&str>,
    ) -> Result<Raw, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{addr}/pulsing").into_client_request()?;
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("a valid header value"));
        }
        let tcp = TcpStream::connect(addr).await?;
        // As nodes do: a handshake message must not wait for a delayed ACK.
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
        Ok(Raw { ws })
    }

    /// Opens a WebSocket to `addr`; panics if it cannot.
    pub async fn connect(addr: &str) -> Raw {
        Raw::connect_with(addr, None)
            .await
            .expect("the WebSocket upgrade succeeds")
    }

    /// Sends one binary message (ignores a closed connection: the reads tell).
    pub async fn send(&mut self, bytes: Vec<u8>) {
        let _ = self.ws.send(Message::Binary(bytes.into())).await;
    }

    /// Writes `bytes` to the socket as they are: frames made by hand ([`masked_frame`]).
    pub async fn send_frames(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let _ = self.ws.get_mut().write_all(bytes).await;
    }

    /// The next binary message, close, or nothing within [`READ_WAIT`].
    pub async fn recv(&mut self) -> Received {
        // One deadline for the whole read: the node's pings must not extend it.
        let deadline = tokio::time::Instant::now() + READ_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Received::Nothing,
                Ok(Some(Ok(Message::Binary(bytes)))) => return Received::Binary(bytes.to_vec()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Received::Closed(
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    )
                }
                Ok(Some(Ok(_))) => continue,
                Ok(None) | Ok(Some(Err(_))) => return Received::Closed(String::new()),
            }
        }
    }

    /// The next binary message; panics on anything else.
    pub async fn expect_binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            Received::Binary(bytes) => bytes,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads until the node closes the connection (returns its reason) or falls silent for
    /// [`READ_WAIT`] (`None`), skipping messages; each message read is given to `seen`.
    pub async fn until_closed(&mut self, mut seen: impl FnMut(&[u8])) -> Option<String> {
        loop {
            match self.recv().await {
                Received::Binary(bytes) => seen(&bytes),
                Received::Closed(reason) => return Some(reason),
                Received::Nothing => return None,
            }
        }
    }
}

/// A WebSocket frame as a dialing peer must send it (masked): `first` is its first byte (FIN,
/// reserved bits, opcode), e.g. `0x02` for the first fragment of a binary message, `0x00` for
/// a continuation, `0x80` for the last one.
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x5a, 0x13, 0xc7, 0x80];
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A cleartext `Hello` as a node sends it.
pub fn hello(node: NodeId, addr: &str) -> Vec<u8> {
    encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        node,
        addr: addr.to_owned(),
        nonce: rand32(),
    })
}

fn rand32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes
}

/// The node id inside a `Hello`'s bytes.
pub fn hello_node(bytes: &[u8]) -> NodeId {
    match pulsing::wire::decode(bytes, 4096).expect("a Hello") {
        Frame::Hello { node, .. } => node,
        other => panic!("expected a Hello, got {other:?}"),
    }
}

const PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";

fn psk(secret: Option<&[u8]>) -> [u8; 32] {
    let Some(secret) = secret else {
        return [0; 32];
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key size");
    mac.update(b"pulsing cluster secret -> noise psk v1");
    mac.finalize().into_bytes().into()
}

/// A connection logged in through the handshake, as a node (or an attacker who holds, or
/// guesses, the secret) would.
pub struct Login {
    /// The connection, for sending raw bytes past the channel.
    pub raw: Raw,
    state: snow::StatelessTransportState,
    sent: u64,
    received: u64,
    /// Whether the records are encrypted.
    pub encrypted: bool,
    /// The node's id, from its `Hello`.
    pub peer: NodeId,
    /// Frames that came after the one [`response`](Self::response) waited for, in the same
    /// message: the next [`recv`](Self::recv) returns them.
    left: Vec<Frame>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Login {
    /// Dials `addr` and runs the handshake as `node` advertising `claim`, with `secret`.
    ///
    /// # Errors
    /// Why the node refused (its close reason), or what failed on our side.
    pub async fn dial(
        addr: &str,
        secret: Option<&[u8]>,
        node: NodeId,
        claim: &str,
        encrypt: bool,
    ) -> Result<Login, String> {
        let mut raw = Raw::connect(addr).await;
        let hello_i = hello(node, claim);
        let mut prologue = format!("pulsing/{PROTOCOL_VERSION}\n").into_bytes();
        prologue.extend_from_slice(&hello_i);
        let key = psk(secret);
        let mut hs = snow::Builder::new(PARAMS.parse().unwrap())
            .psk(0, &key)
            .unwrap()
            .prologue(&prologue)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut msg1 = vec![0u8; 256];
        let n = hs.write_message(&[u8::from(encrypt)], &mut msg1).unwrap();
        msg1.truncate(n);
        raw.send(hello_i).await;
        raw.send(msg1).await;
        let hello_r = match raw.recv().await {
            Received::Binary(b) => b,
            other => return Err(format!("no Hello: {other:?}")),
        };
        let msg2 = match raw.recv().await {
            Received::Binary(b) => b,
            Received::Closed(reason) => return Err(reason),
            other => return Err(format!("no msg2: {other:?}")),
        };
        let mut payload = vec![0u8; msg2.len()];
        let n = hs
            .read_message(&msg2, &mut payload)
            .map_err(|e| format!("msg2 does not verify: {e}"))?;
        let (&params, stated) = payload[..n].split_last().ok_or("empty msg2")?;
        if stated != hello_r.as_slice() {
            return Err("msg2 names another Hello".into());
        }
        let state = hs.into_stateless_transport_mode().unwrap();
        let mut login = Login {
            raw,
            state,
            sent: 0,
            received: 0,
            encrypted: encrypt || params == 1,
            peer: hello_node(&hello_r),
            left: Vec::new(),
        };
        let msg3 = login.seal_always(b"pulsing: confirm");
        login.raw.send(msg3).await;
        Ok(login)
    }

    /// Seals `plain` as the spec says: records of at most 65,535 bytes (plaintext chunks of
    /// 65,519), one nonce each.
    fn seal_always(&mut self, plain: &[u8]) -> Vec<u8> {
        const CHUNK: usize = 65_535 - 16;
        let mut sealed = Vec::with_capacity(plain.len() + 16 * (plain.len() / CHUNK + 1));
        let chunks: Vec<&[u8]> = if plain.is_empty() {
            vec![&[]]
        } else {
            plain.chunks(CHUNK).collect()
        };
        for chunk in chunks {
            let mut out = vec![0u8; chunk.len() + 16];
            let n = self
                .state
                .write_message(self.sent, chunk, &mut out)
                .expect("a record of at most 64 KiB");
            self.sent += 1;
            sealed.extend_from_slice(&out[..n]);
        }
        sealed
    }

    /// The message that carries `frames` (packed back to back), sealed if the channel is.
    pub fn seal(&mut self, frames: &[Frame]) -> Vec<u8> {
        let plain: Vec<u8> = frames.iter().flat_map(encode).collect();
        if self.encrypted {
            self.seal_always(&plain)
        } else {
            plain
        }
    }

    /// Sends `plain` (frames encoded by hand) in one message, sealed if the channel is.
    pub async fn send_plain(&mut self, plain: &[u8]) {
        let message = if self.encrypted {
            self.seal_always(plain)
        } else {
            plain.to_vec()
        };
        self.raw.send(message).await;
    }

    /// Sends `frames` in one message.
    pub async fn send(&mut self, frames: &[Frame]) {
        let message = self.seal(frames);
        self.raw.send(message).await;
    }

    /// The frames of the next message (opened if sealed), or how the connection ended.
    ///
    /// # Errors
    /// The close reason, "silent" after [`READ_WAIT`], or why a message does not open.
    pub async fn recv(&mut self) -> Result<Vec<Frame>, String> {
        if !self.left.is_empty() {
            return Ok(std::mem::take(&mut self.left));
        }
        let sealed = match self.raw.recv().await {
            Received::Binary(bytes) => bytes,
            Received::Closed(reason) => return Err(format!("closed: {reason}")),
            Received::Nothing => return Err("silent".into()),
        };
        let plain = if self.encrypted {
            let mut plain = Vec::with_capacity(sealed.len());
            for record in sealed.chunks(65_535) {
                let mut out = vec![0u8; record.len()];
                let n = self
                    .state
                    .read_message(self.received, record, &mut out)
                    .map_err(|e| format!("does not open: {e}"))?;
                self.received += 1;
                plain.extend_from_slice(&out[..n]);
            }
            plain
        } else {
            sealed
        };
        let mut frames = Vec::new();
        let mut rest = plain.as_slice();
        while !rest.is_empty() {
            let (frame, left) =
                postcard::take_from_bytes::<Frame>(rest).map_err(|e| format!("bad frame: {e}"))?;
            frames.push(frame);
            rest = left;
        }
        Ok(frames)
    }

    /// Waits for the `Response` to request `id`, skipping the frames before it (gossip, other
    /// answers); the frames after it in the same message are kept for the next
    /// [`recv`](Self::recv).
    ///
    /// # Errors
    /// As [`recv`](Self::recv): the connection ended or fell silent first.
    pub async fn response(&mut self, id: u64) -> Result<Frame, String> {
        loop {
            let mut frames = self.recv().await?.into_iter();
            while let Some(frame) = frames.next() {
                if matches!(&frame, Frame::Response { id: got, .. } if *got == id) {
                    self.left = frames.collect();
                    return Ok(frame);
                }
            }
        }
    }
}

/// A by-name call of `method` on `actor` with `args`, as request `id`.
pub fn request(id: u64, actor: &str, method: &str, args: pulsing::Args) -> Frame {
    Frame::Request {
        id,
        actor: actor.into(),
        actor_id: None,
        expect_type: None,
        method: method.into(),
        args: pulsing::wire::Payload::Dynamic(args),
        credit: None,
        deadline_ms: None,
    }
}
