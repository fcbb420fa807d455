//! The handshake that opens every connection: protocol version, node identity, and (when the
//! cluster has a secret) mutual proof of the secret without sending it.
//!
//! Each side sends `Hello { version, node, addr, nonce }`, then `Proof { mac }` where
//! `mac = HMAC-SHA256(secret, peer's nonce ‖ own node id)`. Each side checks the peer's proof in
//! constant time. Without a secret the proof is all zeros, and a node without a secret refuses a
//! peer that has one (and the other way round).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::{Frame, NodeId, PROTOCOL_VERSION};

/// What a node knows about itself for the handshake.
#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) node: NodeId,
    pub(crate) addr: String,
    pub(crate) secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
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

    /// Our proof over the peer's nonce.
    pub(crate) fn proof(&self, peer_nonce: &[u8; 32]) -> Frame {
        Frame::Proof {
            mac: self.mac(peer_nonce, self.node),
        }
    }

    /// Checks the peer's proof over our nonce.
    pub(crate) fn verify(&self, our_nonce: &[u8; 32], peer: NodeId, mac: &[u8; 32]) -> bool {
        let Some(secret) = &self.secret else {
            // No secret here: a peer that proves one belongs to a secured cluster, not ours.
            return mac == &[0; 32];
        };
        let mut check =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
        check.update(our_nonce);
        check.update(&peer.0.to_le_bytes());
        check.verify_slice(mac).is_ok()
    }

    fn mac(&self, nonce: &[u8; 32], node: NodeId) -> [u8; 32] {
        let Some(secret) = &self.secret else {
            return [0; 32];
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
        mac.update(nonce);
        mac.update(&node.0.to_le_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Checks a peer's `Hello`; returns its id, address and nonce.
pub(crate) fn read_hello(frame: Frame) -> Result<(NodeId, String, [u8; 32]), String> {
    match frame {
        Frame::Hello {
            version,
            node,
            addr,
            nonce,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(format!(
                    "protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
                ));
            }
            Ok((node, addr, nonce))
        }
        other => Err(format!("expected Hello, got {}", frame_kind(&other))),
    }
}

/// A frame's variant name, for logs and errors.
pub(crate) fn frame_kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Proof { .. } => "Proof",
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

    fn id(secret: Option<&[u8]>) -> Identity {
        Identity {
            node: new_node_id(),
            addr: "127.0.0.1:1".into(),
            secret: secret.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn the_same_secret_proves_and_another_does_not() {
        let (a, b, intruder) = (id(Some(b"s3cret")), id(Some(b"s3cret")), id(Some(b"guess")));
        let a_nonce = nonce();
        let Frame::Proof { mac } = b.proof(&a_nonce) else {
            unreachable!()
        };
        assert!(a.verify(&a_nonce, b.node, &mac));
        let Frame::Proof { mac } = intruder.proof(&a_nonce) else {
            unreachable!()
        };
        assert!(!a.verify(&a_nonce, intruder.node, &mac));
        // A proof replayed for another nonce or another node id fails.
        let Frame::Proof { mac } = b.proof(&nonce()) else {
            unreachable!()
        };
        assert!(!a.verify(&a_nonce, b.node, &mac));
    }

    #[test]
    fn a_wrong_version_is_refused() {
        let hello = Frame::Hello {
            version: 99,
            node: NodeId(1),
            addr: String::new(),
            nonce: [0; 32],
        };
        assert!(read_hello(hello).unwrap_err().contains("version 99"));
    }
}
