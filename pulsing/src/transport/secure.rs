//! The secure channel under every connection: mutual proof of the cluster secret, then
//! authenticated encryption of every message, built on the [Noise protocol
//! framework](https://noiseprotocol.org/noise.html) (the `snow` crate) — not on a construction
//! of our own.
//!
//! # The handshake
//!
//! The pattern is `NNpsk0` (WireGuard's family): no static keys, a fresh X25519 key pair per side
//! and connection, and the cluster secret as a pre-shared key mixed in before the first message.
//!
//! ```text
//! initiator (dialed)                               responder (accepted)
//!   Hello_I            (cleartext, version check) ─►
//!   msg1 = psk, e      payload: Params_I          ─►
//!                                                 ◄─ Hello_R   (cleartext, version check)
//!                                                 ◄─ msg2 = e, ee   payload: Hello_R ‖ Params_R
//!   msg3 = first transport record: "confirm"      ─►
//! ```
//!
//! * The Noise prologue is `"pulsing/<version>" ‖ Hello_I`: the initiator's version, node id,
//!   address and nonce are in the transcript, so a changed byte fails `msg1`.
//! * `msg2` carries the responder's own `Hello_R` (and its parameters) encrypted and
//!   authenticated by the transcript; the initiator refuses it unless it matches the cleartext
//!   `Hello_R` it received byte for byte.
//! * Only a holder of the secret can produce `msg1` (its payload is sealed under a key derived
//!   from the secret and the initiator's ephemeral key) or `msg2` (sealed under the secret and the
//!   DH of both ephemeral keys). `msg1` alone could be replayed, so the responder counts the
//!   initiator as logged in only once `msg3` — a transport record, which needs the initiator's
//!   ephemeral private key — opens. The roles are asymmetric in Noise itself, so a message echoed
//!   back or relayed to another node never fits the state the receiver is in.
//! * The transport keys come from the DH of two fresh ephemeral keys: forward secrecy.
//!
//! Without a cluster secret the same handshake runs with an all-zero key: it gives no proof of
//! anything (anyone can join an unsecured cluster) and traffic stays in cleartext; a node with a
//! secret and one without fail each other's handshake.
//!
//! # Records
//!
//! After the handshake every WebSocket message is one or more Noise transport records (each at
//! most 65,535 bytes, 16 of them the AEAD tag): a message's plaintext is cut into chunks of
//! [`MAX_CHUNK`] bytes, so the receiver splits the ciphertext at fixed offsets and needs no length
//! prefix. Nonces are counters kept by the one writer and the one reader of a connection; WebSocket
//! over TCP keeps records in order, and a record that was dropped, replayed, reordered or changed
//! fails to open, which ends the connection.

use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::spare::Spare;

/// The largest plaintext of one Noise record (65,535 − the 16-byte tag).
pub(crate) const MAX_CHUNK: usize = 65_535 - TAG;
const TAG: usize = 16;
const MAX_RECORD: usize = 65_535;

/// The size of the WebSocket message that carries `plain` bytes once sealed.
pub(crate) fn sealed_len(plain: usize) -> usize {
    plain + plain.div_ceil(MAX_CHUNK).max(1) * TAG
}

/// The largest handshake message we accept (`msg1`/`msg2`: a 32-byte key, a tag and a small
/// payload).
pub(crate) const MAX_HANDSHAKE_MESSAGE: usize = 2048;

/// What `msg3` carries: the initiator's proof that it holds the transport keys.
const CONFIRM: &[u8] = b"pulsing: confirm";

/// Which AEAD protects the records. Both are in `snow`'s default resolver (RustCrypto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suite {
    /// `Noise_NNpsk0_25519_AESGCM_BLAKE2s`: AES-256-GCM, hardware-accelerated (AES-NI, CLMUL).
    AesGcm,
    /// `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`: ChaCha20-Poly1305, for CPUs without AES
    /// instructions. Measured slower here (BENCHMARKS.md), so not used; the tests keep it working.
    #[cfg_attr(not(test), allow(dead_code))]
    ChaChaPoly,
}

impl Suite {
    fn params(self) -> snow::params::NoiseParams {
        let name = match self {
            Suite::AesGcm => "Noise_NNpsk0_25519_AESGCM_BLAKE2s",
            Suite::ChaChaPoly => "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s",
        };
        name.parse().expect("a valid Noise protocol name")
    }
}

/// Why a handshake failed, in words for the log and for the error the caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refused(reason: impl Into<String>) -> Refused {
    Refused(reason.into())
}

/// The pre-shared key: HMAC-SHA256 of a fixed label under the cluster secret (any length of
/// secret gives a uniform 32-byte key), or all zeros without a secret.
pub(crate) fn psk(secret: Option<&[u8]>) -> [u8; 32] {
    let Some(secret) = secret else {
        return [0; 32];
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(b"pulsing cluster secret -> noise psk v1");
    mac.finalize().into_bytes().into()
}

fn prologue(version: u32, hello_initiator: &[u8]) -> Vec<u8> {
    let mut p = format!("pulsing/{version}\n").into_bytes();
    p.extend_from_slice(hello_initiator);
    p
}

/// The parameters each side states inside the handshake (authenticated, encrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Whether this side wants the records encrypted. They are if either side wants it.
    pub(crate) encrypt: bool,
}

impl Params {
    fn to_byte(self) -> u8 {
        u8::from(self.encrypt)
    }

    fn from_byte(b: u8) -> Result<Params, Refused> {
        match b {
            0 | 1 => Ok(Params { encrypt: b == 1 }),
            _ => Err(refused("malformed handshake parameters")),
        }
    }
}

/// The initiator's side of the handshake, between sending `msg1` and reading `msg2`.
pub(crate) struct Initiator {
    state: snow::HandshakeState,
    params: Params,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator").finish_non_exhaustive()
    }
}

/// The responder's side of the handshake, between reading `msg1` and reading `msg3`.
pub(crate) struct Responder {
    channel: Channel,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a handshake: returns the state and `msg1`, to send right after our cleartext
    /// `Hello` (whose exact bytes are `hello`).
    pub(crate) fn start(
        suite: Suite,
        secret: Option<&[u8]>,
        version: u32,
        hello: &[u8],
        params: Params,
    ) -> (Initiator, Vec<u8>) {
        let key = psk(secret);
        let prologue = prologue(version, hello);
        let mut state = snow::Builder::new(suite.params())
            .psk(0, &key)
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .expect("the Noise parameters are valid");
        let mut msg1 = vec![0u8; 64 + TAG + 1];
        let n = state
            .write_message(&[params.to_byte()], &mut msg1)
            .expect("msg1 fits its buffer");
        msg1.truncate(n);
        (Initiator { state, params }, msg1)
    }

    /// Reads `msg2`: checks that it was sealed by a holder of the secret over this very
    /// transcript and that it names the responder exactly as its cleartext `Hello` (`hello_r`
    /// bytes) did. Returns the channel and `msg3`, to send before anything else.
    pub(crate) fn finish(
        mut self,
        msg2: &[u8],
        hello_r: &[u8],
    ) -> Result<(Channel, Vec<u8>), Refused> {
        if msg2.len() > MAX_HANDSHAKE_MESSAGE {
            return Err(refused("handshake message too large"));
        }
        let mut payload = vec![0u8; msg2.len()];
        let n = self.state.read_message(msg2, &mut payload).map_err(|_| {
            refused(
                "the peer does not know the cluster secret (or only one side has one): its \
                 handshake does not verify",
            )
        })?;
        let payload = &payload[..n];
        let Some((&params, stated_hello)) = payload.split_last() else {
            return Err(refused("malformed handshake message"));
        };
        if stated_hello != hello_r {
            return Err(refused(
                "the peer's Hello was changed on the way (it differs from the one it signed)",
            ));
        }
        let peer = Params::from_byte(params)?;
        let encrypt = self.params.encrypt || peer.encrypt;
        let mut channel = Channel::new(self.state, encrypt)?;
        let msg3 = channel.sealer.seal_pieces(&[CONFIRM]);
        Ok((channel, msg3))
    }
}

impl Responder {
    /// Reads `msg1` (the initiator's cleartext `Hello` was `hello_i` bytes) and answers with
    /// `msg2`, which carries our own cleartext `Hello` (`hello_r` bytes). The initiator is not
    /// logged in until [`confirm`](Self::confirm) accepts `msg3`.
    pub(crate) fn answer(
        suite: Suite,
        secret: Option<&[u8]>,
        version: u32,
        hello_i: &[u8],
        msg1: &[u8],
        hello_r: &[u8],
        params: Params,
    ) -> Result<(Responder, Vec<u8>), Refused> {
        if msg1.len() > MAX_HANDSHAKE_MESSAGE {
            return Err(refused("handshake message too large"));
        }
        let key = psk(secret);
        let prologue = prologue(version, hello_i);
        let mut state = snow::Builder::new(suite.params())
            .psk(0, &key)
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_responder())
            .expect("the Noise parameters are valid");
        let mut payload = vec![0u8; msg1.len()];
        let n = state.read_message(msg1, &mut payload).map_err(|_| {
            refused(
                "the peer does not know the cluster secret (or only one side has one): its \
                 handshake does not verify",
            )
        })?;
        let peer = match &payload[..n] {
            [b] => Params::from_byte(*b)?,
            _ => return Err(refused("malformed handshake message")),
        };
        let mut reply = hello_r.to_vec();
        reply.push(params.to_byte());
        let mut msg2 = vec![0u8; reply.len() + 32 + TAG + 16];
        let n = state
            .write_message(&reply, &mut msg2)
            .map_err(|_| refused("our Hello is too large for the handshake"))?;
        msg2.truncate(n);
        let channel = Channel::new(state, params.encrypt || peer.encrypt)?;
        Ok((Responder { channel }, msg2))
    }

    /// Reads `msg3`: the initiator proves it holds the transport keys. Only now is it logged in.
    pub(crate) fn confirm(mut self, msg3: &[u8]) -> Result<Channel, Refused> {
        match self.channel.opener.open_always(msg3) {
            Ok(plain) if plain.as_ref() == CONFIRM => Ok(self.channel),
            _ => Err(refused(
                "the peer did not confirm the handshake (a replayed or forged first message)",
            )),
        }
    }
}

/// Both directions of an established channel; split between the writer and the reader.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) sealer: Sealer,
    pub(crate) opener: Opener,
}

impl Channel {
    fn new(state: snow::HandshakeState, encrypt: bool) -> Result<Channel, Refused> {
        let state = std::sync::Arc::new(
            state
                .into_stateless_transport_mode()
                .map_err(|e| refused(format!("handshake incomplete: {e}")))?,
        );
        Ok(Channel {
            sealer: Sealer {
                state: state.clone(),
                nonce: 0,
                encrypt,
                buffers: Arc::default(),
                staging: Vec::new(),
            },
            opener: Opener {
                state,
                nonce: 0,
                encrypt,
                buffers: Arc::default(),
            },
        })
    }

    /// Whether records are encrypted (else only the handshake was).
    pub(crate) fn encrypted(&self) -> bool {
        self.sealer.encrypt
    }
}

/// Seals outgoing messages (the connection's writer owns it).
pub(crate) struct Sealer {
    state: Arc<snow::StatelessTransportState>,
    nonce: u64,
    encrypt: bool,
    /// What messages are sealed into (see [`Spare`]): a 1 MiB message into a fresh buffer
    /// cost more than the AES itself (the allocator maps and unmaps large blocks, and every
    /// page faults), and into a zero-filled one, 47 µs more.
    buffers: Arc<Spare>,
    /// A record that spans pieces of a message is copied here first (at most [`MAX_CHUNK`]).
    staging: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("encrypt", &self.encrypt)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// The WebSocket message that carries `plain`: the records sealing it, or `plain` itself
    /// when encryption is off.
    pub(crate) fn seal(&mut self, plain: Vec<u8>) -> Bytes {
        if self.encrypt {
            let sealed = self.seal_pieces(&[&plain]);
            self.buffers.lend(sealed)
        } else {
            plain.into()
        }
    }

    /// Whether messages are encrypted (else [`seal`](Self::seal) passes them through).
    pub(crate) fn encrypts(&self) -> bool {
        self.encrypt
    }

    /// The records sealing the message made of `pieces` in order (only when encryption is on:
    /// see [`encrypts`](Self::encrypts)), without joining them first: a record that lies within
    /// one piece (most of a large byte string lent by Python, say) is sealed from where it is,
    /// one that spans pieces from a copy of its at most [`MAX_CHUNK`] bytes. Joining a 1 MiB
    /// message first cost 83 µs on each side of an encrypted echo. The records are in a buffer
    /// of [`buffers`](Self::buffers), where it should go back once written.
    pub(super) fn seal_pieces(&mut self, pieces: &[&[u8]]) -> Vec<u8> {
        let mut rest: usize = pieces.iter().map(|piece| piece.len()).sum();
        let len = sealed_len(rest);
        let mut out = self.buffers.take_filled(len);
        let mut pieces = pieces.iter().copied();
        let mut current: &[u8] = &[];
        let mut at = 0;
        loop {
            let size = rest.min(MAX_CHUNK);
            while current.is_empty() {
                match pieces.next() {
                    Some(piece) => current = piece,
                    None => break,
                }
            }
            let chunk = if current.len() >= size {
                let (chunk, after) = current.split_at(size);
                current = after;
                chunk
            } else {
                self.staging.clear();
                while self.staging.len() < size {
                    if current.is_empty() {
                        // The pieces hold `rest` more bytes, so there is a next one.
                        current = pieces.next().unwrap_or_default();
                    }
                    let take = (size - self.staging.len()).min(current.len());
                    self.staging.extend_from_slice(&current[..take]);
                    current = &current[take..];
                }
                &self.staging[..]
            };
            let n = self
                .state
                .write_message(self.nonce, chunk, &mut out[at..at + size + TAG])
                .expect("a record fits its buffer");
            // 2^64 records is beyond any connection's life; refuse to wrap rather than reuse.
            self.nonce = self.nonce.checked_add(1).expect("nonce space exhausted");
            at += n;
            rest -= size;
            if rest == 0 {
                break;
            }
        }
        // Every byte lent must have been written over (the buffer may hold an older message).
        assert_eq!(at, len, "records cover the whole buffer");
        out
    }

    /// Where [`seal_pieces`](Self::seal_pieces)'s buffers go back, to be sealed into again.
    pub(super) fn buffers(&self) -> &Arc<Spare> {
        &self.buffers
    }
}

/// Opens incoming messages (the connection's reader owns it).
pub(crate) struct Opener {
    state: Arc<snow::StatelessTransportState>,
    nonce: u64,
    encrypt: bool,
    /// What messages are opened into, used again once a message's bytes are dropped (decoded
    /// and served); see [`Sealer`]'s.
    buffers: Arc<Spare>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("encrypt", &self.encrypt)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// Whether messages arrive as they were sent (no secret): nothing to open.
    pub(crate) fn is_plain(&self) -> bool {
        !self.encrypt
    }

    /// The plaintext of one WebSocket message, or why it does not open (the connection must
    /// then end: a record was changed, dropped, replayed or injected).
    pub(crate) fn open(&mut self, message: Bytes) -> Result<Bytes, Refused> {
        if self.encrypt {
            self.open_always(&message)
        } else {
            Ok(message)
        }
    }

    fn open_always(&mut self, message: &[u8]) -> Result<Bytes, Refused> {
        // Every record holds at least a tag, the last one too (checked before anything is
        // sized from the message's length: a short last record would make it too small).
        let last = message.len() % MAX_RECORD;
        if message.len() < TAG || (last != 0 && last < TAG) {
            return Err(refused("a record too short to be sealed"));
        }
        let chunks = message.len().div_ceil(MAX_RECORD);
        let len = message.len() - chunks * TAG;
        // Room for each record's tag too: given less than a whole record, snow's `ring` ciphers
        // copy it into a fresh allocation and then copy the plaintext out (2 copies, not 1).
        // The tag's room is written over by the next record, and the last one's is cut off.
        let mut out = self.buffers.take_filled(len + TAG);
        let mut at = 0;
        for record in message.chunks(MAX_RECORD) {
            let n = self
                .state
                .read_message(self.nonce, record, &mut out[at..at + record.len()])
                .map_err(|_| refused("a record does not open: changed, replayed or injected"))?;
            self.nonce = self
                .nonce
                .checked_add(1)
                .ok_or_else(|| refused("nonce space exhausted"))?;
            at += n;
        }
        // Every byte lent must have been written over (the buffer may hold an older message).
        assert_eq!(at, len, "records cover the whole buffer");
        out.truncate(len);
        Ok(self.buffers.lend(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: u32 = 3;

    fn run(
        suite: Suite,
        secret_i: Option<&[u8]>,
        secret_r: Option<&[u8]>,
        enc: (bool, bool),
    ) -> Result<(Channel, Channel), Refused> {
        let hello_i = b"hello from i".to_vec();
        let hello_r = b"hello from r".to_vec();
        let (init, msg1) =
            Initiator::start(suite, secret_i, V, &hello_i, Params { encrypt: enc.0 });
        let (resp, msg2) = Responder::answer(
            suite,
            secret_r,
            V,
            &hello_i,
            &msg1,
            &hello_r,
            Params { encrypt: enc.1 },
        )?;
        let (ci, msg3) = init.finish(&msg2, &hello_r)?;
        let cr = resp.confirm(&msg3)?;
        Ok((ci, cr))
    }

    #[test]
    fn the_same_secret_logs_in_and_records_round_trip() {
        for suite in [Suite::AesGcm, Suite::ChaChaPoly] {
            let (mut i, mut r) = run(suite, Some(b"s"), Some(b"s"), (true, true)).unwrap();
            for len in [
                0,
                1,
                100,
                MAX_CHUNK - 1,
                MAX_CHUNK,
                MAX_CHUNK + 1,
                3 * MAX_CHUNK + 7,
                1 << 20,
            ] {
                let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let sealed = i.sealer.seal(plain.clone());
                assert_eq!(sealed.len(), len + len.div_ceil(MAX_CHUNK).max(1) * TAG);
                if len >= 16 {
                    assert!(
                        !sealed.windows(16).any(|w| w == &plain[..16]),
                        "plaintext visible"
                    );
                }
                assert_eq!(r.opener.open(sealed).unwrap(), plain);
                let sealed = r.sealer.seal(plain.clone());
                assert_eq!(i.opener.open(sealed).unwrap(), plain);
            }
        }
    }

    /// A message sealed from its pieces opens to their concatenation, whether a record lies
    /// within a piece, spans several (small and empty ones too), or ends where one does.
    #[test]
    fn a_message_sealed_from_pieces_opens_whole() {
        let (mut i, mut r) = run(Suite::AesGcm, Some(b"s"), Some(b"s"), (true, true)).unwrap();
        let pattern = |len: usize, seed: u8| -> Vec<u8> {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect()
        };
        let layouts: [&[usize]; 6] = [
            &[0],
            &[5, 200_000, 3],
            &[MAX_CHUNK, MAX_CHUNK, 1],
            &[1, 0, MAX_CHUNK - 1, 0, 2 * MAX_CHUNK + 9, 7],
            &[10; 20_000],
            &[70_003, 100_001, 0, 1 << 20],
        ];
        for layout in layouts {
            let pieces: Vec<Vec<u8>> = (layout.iter().enumerate())
                .map(|(n, len)| pattern(*len, n as u8))
                .collect();
            let whole = pieces.concat();
            let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let sealed = Bytes::from(i.sealer.seal_pieces(&pieces));
            assert_eq!(sealed.len(), sealed_len(whole.len()), "{layout:?}");
            assert_eq!(r.opener.open(sealed).unwrap(), whole, "{layout:?}");
        }
    }

    /// What a real peer never sends: messages too short for a tag, a last record shorter than
    /// a tag after a full one, a record's tag cut off, and garbage of a full record's length.
    /// Each is refused (and nothing panics), and the opener still opens the real next record
    /// only if its nonce was not spent: a refused message ends the connection anyway.
    #[test]
    fn malformed_record_lengths_are_refused() {
        let (mut i, mut r) = run(Suite::AesGcm, Some(b"s"), Some(b"s"), (true, true)).unwrap();
        let sealed = i.sealer.seal(vec![9; MAX_CHUNK + 100]);
        let lies: Vec<Vec<u8>> = vec![
            vec![],
            vec![0; TAG - 1],
            [&sealed[..MAX_RECORD], &[0; 5][..]].concat(),
            sealed[..sealed.len() - 1].to_vec(),
            vec![0; MAX_RECORD],
            vec![0xff; 3 * MAX_RECORD + TAG],
        ];
        for lie in lies {
            let len = lie.len();
            assert!(r.opener.open(Bytes::from(lie)).is_err(), "{len} bytes");
        }
    }

    #[test]
    fn a_wrong_or_missing_secret_fails() {
        assert!(run(Suite::AesGcm, Some(b"a"), Some(b"b"), (true, true)).is_err());
        assert!(run(Suite::AesGcm, None, Some(b"b"), (true, true)).is_err());
        assert!(run(Suite::AesGcm, Some(b"a"), None, (true, true)).is_err());
        assert!(run(Suite::AesGcm, None, None, (false, false)).is_ok());
    }

    #[test]
    fn encryption_is_on_if_either_side_asks() {
        for (a, b, on) in [
            (false, false, false),
            (true, false, true),
            (false, true, true),
        ] {
            let (i, r) = run(Suite::AesGcm, Some(b"s"), Some(b"s"), (a, b)).unwrap();
            assert_eq!((i.encrypted(), r.encrypted()), (on, on));
        }
    }

    #[test]
    fn a_buffer_is_used_again_only_once_its_message_is_dropped() {
        let (mut i, mut r) = run(Suite::AesGcm, Some(b"s"), Some(b"s"), (true, true)).unwrap();
        let plain = vec![1u8; 100_000];
        let (mut sealed_at, mut opened_at) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let sealed = i.sealer.seal(plain.clone());
            sealed_at.push(sealed.as_ptr());
            let opened = r.opener.open(sealed).unwrap();
            assert_eq!(opened.as_ref(), &plain[..]);
            opened_at.push(opened.as_ptr());
        }
        for at in [sealed_at, opened_at] {
            assert!(
                at[1..].iter().all(|p| *p == at[1]),
                "each dropped message's buffer is used again: {at:?}"
            );
        }
        let second = i.sealer.seal(plain.clone());
        // Held, it is never written over: the next message gets a buffer of its own.
        let third = i.sealer.seal(plain.clone());
        assert_ne!(third.as_ptr(), second.as_ptr());
        let (a, b) = (
            r.opener.open(second).unwrap(),
            r.opener.open(third).unwrap(),
        );
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!((a.as_ref(), b.as_ref()), (&plain[..], &plain[..]));
    }

    #[test]
    fn a_changed_replayed_or_reordered_record_fails() {
        let (mut i, mut r) = run(Suite::AesGcm, Some(b"s"), Some(b"s"), (true, true)).unwrap();
        let one = i.sealer.seal(b"one".to_vec());
        let two = i.sealer.seal(b"two".to_vec());
        let mut changed = one.to_vec();
        changed[0] ^= 1;
        assert!(r.opener.open(Bytes::from(changed)).is_err());
        let (mut i, mut r) = run(Suite::AesGcm, Some(b"s"), Some(b"s"), (true, true)).unwrap();
        let one = i.sealer.seal(b"one".to_vec());
        let two2 = i.sealer.seal(b"two".to_vec());
        assert!(r.opener.open(two2).is_err(), "reordered");
        let _ = (one, two);
        let (mut i, mut r) = run(Suite::AesGcm, Some(b"s"), Some(b"s"), (true, true)).unwrap();
        let one = i.sealer.seal(b"one".to_vec());
        r.opener.open(one.clone()).unwrap();
        assert!(r.opener.open(one).is_err(), "replayed");
        assert!(
            r.opener
                .open(Bytes::from_static(b"plaintext frame"))
                .is_err(),
            "injected"
        );
    }

    /// A MITM's one change to a transcript: which message, and how.
    #[derive(Debug, Clone)]
    enum Change {
        /// A field of the initiator's cleartext `Hello`, as the responder sees it.
        HelloI(Field),
        /// A field of the responder's cleartext `Hello`, as the initiator sees it.
        HelloR(Field),
        /// One byte of a Noise message (0: msg1, 1: msg2, 2: msg3) flipped.
        Byte(usize, usize, u8),
        /// The two sides' protocol versions differ.
        Version,
        /// The responder's secret differs.
        Secret,
        /// Roles swapped: the responder's msg2 handed to another responder as its msg1.
        Reflect,
    }

    #[derive(Debug, Clone)]
    enum Field {
        Version(u32),
        Node(u64),
        Addr(String),
        Nonce(usize, u8),
    }

    fn hello(node: u64, addr: &str, nonce: [u8; 32], change: Option<&Field>) -> Vec<u8> {
        let (mut version, mut node, mut addr, mut nonce) = (V, node, addr.to_owned(), nonce);
        match change {
            Some(Field::Version(v)) if *v != version => version = *v,
            Some(Field::Version(_)) => version += 1,
            Some(Field::Node(n)) if *n != node => node = *n,
            Some(Field::Node(_)) => node ^= 1,
            Some(Field::Addr(a)) if *a != addr => addr = a.clone(),
            Some(Field::Addr(_)) => addr.push('x'),
            Some(Field::Nonce(i, x)) => nonce[i % 32] ^= (*x).max(1),
            None => {}
        }
        crate::wire::encode(&crate::wire::Frame::Hello {
            version,
            node: crate::wire::NodeId(node),
            addr,
            nonce,
        })
    }

    /// Runs the handshake with `change` applied on the way; `Ok` only if both sides accept.
    fn transcript(change: Option<&Change>) -> Result<(), Refused> {
        let (field_i, field_r) = match change {
            Some(Change::HelloI(f)) => (Some(f), None),
            Some(Change::HelloR(f)) => (None, Some(f)),
            _ => (None, None),
        };
        let hello_i = hello(1, "10.0.0.1:9000", [1; 32], None);
        let hello_i_seen = hello(1, "10.0.0.1:9000", [1; 32], field_i);
        let hello_r = hello(2, "10.0.0.2:9000", [2; 32], None);
        let hello_r_seen = hello(2, "10.0.0.2:9000", [2; 32], field_r);
        let flip = |n: usize, msg: &mut Vec<u8>| {
            if let Some(Change::Byte(which, at, x)) = change {
                if *which % 3 == n {
                    let at = at % msg.len();
                    msg[at] ^= (*x).max(1);
                }
            }
        };
        let version_r = if matches!(change, Some(Change::Version)) {
            V + 1
        } else {
            V
        };
        let secret_r: &[u8] = if matches!(change, Some(Change::Secret)) {
            b"other"
        } else {
            b"s"
        };
        let on = Params { encrypt: true };
        let (init, mut msg1) = Initiator::start(Suite::AesGcm, Some(b"s"), V, &hello_i, on);
        flip(0, &mut msg1);
        let (resp, mut msg2) = Responder::answer(
            Suite::AesGcm,
            Some(secret_r),
            version_r,
            &hello_i_seen,
            &msg1,
            &hello_r,
            on,
        )?;
        flip(1, &mut msg2);
        if matches!(change, Some(Change::Reflect)) {
            // An attacker hands the responder's own answer to it (or another node) as a first
            // message: it cannot be read as one.
            Responder::answer(Suite::AesGcm, Some(b"s"), V, &hello_r, &msg2, &hello_i, on)?;
        }
        let (_, mut msg3) = init.finish(&msg2, &hello_r_seen)?;
        flip(2, &mut msg3);
        resp.confirm(&msg3)?;
        Ok(())
    }

    fn field() -> impl proptest::strategy::Strategy<Value = Field> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u32>().prop_map(Field::Version),
            any::<u64>().prop_map(Field::Node),
            "[a-z0-9.:]{0,24}".prop_map(Field::Addr),
            (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Field::Nonce(i, x)),
        ]
    }

    fn change() -> impl proptest::strategy::Strategy<Value = Change> {
        use proptest::prelude::*;
        prop_oneof![
            field().prop_map(Change::HelloI),
            field().prop_map(Change::HelloR),
            (0..3usize, any::<usize>(), any::<u8>()).prop_map(|(m, at, x)| Change::Byte(m, at, x)),
            Just(Change::Version),
            Just(Change::Secret),
            Just(Change::Reflect),
        ]
    }

    #[test]
    fn the_untouched_transcript_verifies() {
        transcript(None).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// No handshake with any single field or byte changed on the way is accepted by both
        /// sides: the change is caught before anyone counts the other as logged in.
        #[test]
        fn no_transcript_with_one_change_verifies(change in change()) {
            proptest::prop_assert!(transcript(Some(&change)).is_err(), "{:?} was accepted", change);
        }
    }
}
