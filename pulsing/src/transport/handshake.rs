//! The handshake that opens every connection: protocol version, node identity, and — through
//! the [Noise handshake](super::secure) — mutual proof of the cluster secret and the keys that
//! seal every later message.
//!
//! Each side first sends a cleartext `Hello { version, node, addr, nonce }` (the one frame that
//! keeps its shape across protocol versions, so a node of another version is told clearly which
//! one it speaks), then the Noise messages follow. The `Hello`s are bound into the Noise
//! transcript, so a changed byte fails the handshake. Before the handshake completes a peer can
//! send nothing but these few small messages: anything else, or anything larger than
//! [`MAX_HANDSHAKE_MESSAGE`](super::secure::MAX_HANDSHAKE_MESSAGE), ends the connection.

use crate::wire::{decode, Frame, NodeId, PROTOCOL_VERSION};

/// What a node knows about itself for the handshake.
#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) node: NodeId,
    pub(crate) addr: String,
    pub(crate) secret: Option<Vec<u8>>,
    /// Whether to encrypt messages after the handshake (they are if either side asks).
    pub(crate) encrypt: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("encrypt", &self.encrypt)
            .finish()
    }
}

/// 32 random bytes.
pub(crate) fn nonce() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

/// A fresh random node id.
pub(crate) fn new_node_id() -> NodeId {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    NodeId(u64::from_le_bytes(bytes))
}

impl Identity {
    pub(crate) fn hello(&self, nonce: [u8; 32]) -> Frame {
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: self.node,
            addr: self.addr.clone(),
            nonce,
        }
    }
}

/// Reads a peer's cleartext `Hello`: the protocol version, and a node id that is not our own.
/// Only a `Hello` is decoded (its first byte names the variant), so nothing a stranger sends
/// before the handshake reaches the general frame decoder.
pub(crate) fn read_hello(bytes: &[u8], me: &Identity) -> Result<(NodeId, String), String> {
    // `Frame::Hello` is variant 0, encoded as the single byte 0.
    if bytes.first() != Some(&0) {
        return Err("protocol error: the first message is not a Hello".to_owned());
    }
    match decode(bytes, super::secure::MAX_HANDSHAKE_MESSAGE).map_err(|e| e.to_string())? {
        Frame::Hello {
            version,
            node,
            addr,
            nonce: _,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(format!(
                    "protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
                ));
            }
            if node == me.node {
                return Err(format!(
                    "the peer claims this node's own id {node} (a reflected handshake, or a \
                     connection to itself)"
                ));
            }
            Ok((node, addr))
        }
        other => Err(format!("expected Hello, got {}", frame_kind(&other))),
    }
}

/// A frame's variant name, for logs and errors.
pub(crate) fn frame_kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Request { .. } => "Request",
        Frame::Response { .. } => "Response",
        Frame::StreamItems { .. } => "StreamItems",
        Frame::StreamEnd { .. } => "StreamEnd",
        Frame::Credit { .. } => "Credit",
        Frame::Cancel { .. } => "Cancel",
        Frame::Gossip(_) => "Gossip",
        Frame::Leaving => "Leaving",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode;

    fn me() -> Identity {
        Identity {
            node: new_node_id(),
            addr: "127.0.0.1:1".into(),
            secret: None,
            encrypt: true,
        }
    }

    #[test]
    fn a_wrong_version_is_refused() {
        let hello = encode(&Frame::Hello {
            version: 2,
            node: NodeId(1),
            addr: String::new(),
            nonce: [0; 32],
        });
        let err = read_hello(&hello, &me()).unwrap_err();
        assert!(err.contains("protocol version 2 is not supported"), "{err}");
    }

    #[test]
    fn our_own_id_is_refused() {
        let me = me();
        let err = read_hello(&encode(&me.hello(nonce())), &me).unwrap_err();
        assert!(err.contains("own id"), "{err}");
        let other = Identity {
            node: new_node_id(),
            ..me.clone()
        };
        assert_eq!(
            read_hello(&encode(&other.hello(nonce())), &me).unwrap().0,
            other.node
        );
    }

    #[test]
    fn only_a_hello_is_decoded() {
        let err = read_hello(&encode(&Frame::Cancel { id: 1 }), &me()).unwrap_err();
        assert!(err.contains("not a Hello"), "{err}");
        assert!(read_hello(&[], &me()).is_err());
        let mut long = encode(&me().hello(nonce()));
        long.extend(std::iter::repeat_n(0u8, 4096));
        assert!(read_hello(&long, &me()).is_err());
    }
}
