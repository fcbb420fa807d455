//! Crafted gossip messages, written by hand from chitchat 0.11's wire format, for tests that
//! play a peer sending what a correct node never would. (Black-box: the node is only ever
//! checked through calls and membership, so the tests carry over to another membership
//! protocol with new encoders here.)
//!
//! Format: magic `45139u16` LE, protocol version `0u8`, message type (`0` Syn: digest then
//! cluster id; `1` SynAck: digest then delta; `2` Ack: delta). A digest is a `u16` count of
//! (member id, heartbeat, last GC version, max version); a member id is (node id string,
//! generation `u64`, socket address); strings are a `u16` length then UTF-8; integers LE;
//! an IPv4 address is `4u8` then 4 bytes. A delta is a stream of blocks (`1` zstd-compressed,
//! `2` plain: `u16` length then bytes; `0` ends) holding ops: `0` member (id, last GC version,
//! from version), `1` key (key, value, version, deletion status `u8`), `2` set max version.

use std::net::SocketAddrV4;

/// A member as chitchat identifies it.
#[derive(Clone, Debug)]
pub struct MemberId {
    /// The node id (16 hex digits for a Pulsing node).
    pub node: String,
    /// Generation.
    pub generation: u64,
    /// Gossip address.
    pub addr: SocketAddrV4,
}

/// One operation of a delta.
#[derive(Debug)]
pub enum Op<'a> {
    /// Starts a member's part: (member, last GC version, from version).
    Member(&'a MemberId, u64, u64),
    /// A key: (key, value, version).
    Key(&'a str, &'a str, u64),
    /// Sets the member's max version.
    MaxVersion(u64),
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend((s.len() as u16).to_le_bytes());
    out.extend(s.as_bytes());
}

fn id(m: &MemberId, out: &mut Vec<u8>) {
    string(&m.node, out);
    out.extend(m.generation.to_le_bytes());
    out.push(4);
    out.extend(m.addr.ip().octets());
    out.extend(m.addr.port().to_le_bytes());
}

fn header(kind: u8) -> Vec<u8> {
    let mut out = 45_139u16.to_le_bytes().to_vec();
    out.push(0);
    out.push(kind);
    out
}

fn digest(entries: &[(&MemberId, u64, u64)], out: &mut Vec<u8>) {
    out.extend((entries.len() as u16).to_le_bytes());
    for (m, heartbeat, max_version) in entries {
        id(m, out);
        out.extend(heartbeat.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        out.extend(max_version.to_le_bytes());
    }
}

fn delta(ops: &[Op<'_>], out: &mut Vec<u8>) {
    let mut plain = Vec::new();
    for op in ops {
        match op {
            Op::Member(m, gc, from) => {
                plain.push(0);
                id(m, &mut plain);
                plain.extend(gc.to_le_bytes());
                plain.extend(from.to_le_bytes());
            }
            Op::Key(k, v, version) => {
                plain.push(1);
                string(k, &mut plain);
                string(v, &mut plain);
                plain.extend(version.to_le_bytes());
                plain.push(0);
            }
            Op::MaxVersion(v) => {
                plain.push(2);
                plain.extend(v.to_le_bytes());
            }
        }
    }
    out.push(2);
    out.extend((plain.len() as u16).to_le_bytes());
    out.extend(plain);
    out.push(0);
}

/// A `Syn` listing `entries` as (member, heartbeat, max version).
pub fn syn(entries: &[(&MemberId, u64, u64)]) -> Vec<u8> {
    let mut out = header(0);
    digest(entries, &mut out);
    string("pulsing", &mut out);
    out
}

/// A `SynAck` listing `entries`, with a delta of `ops`.
pub fn syn_ack(entries: &[(&MemberId, u64, u64)], ops: &[Op<'_>]) -> Vec<u8> {
    let mut out = header(1);
    digest(entries, &mut out);
    delta(ops, &mut out);
    out
}

/// An `Ack` of about `bytes` bytes whose delta is compressed blocks of 64 KiB of zeros each:
/// it inflates about 3,000-fold.
pub fn bomb(bytes: usize) -> Vec<u8> {
    let block = zstd::bulk::compress(&[0u8; u16::MAX as usize], 19).expect("zstd compresses");
    let mut out = header(2);
    while out.len() + block.len() + 4 < bytes {
        out.push(1);
        out.extend((block.len() as u16).to_le_bytes());
        out.extend(&block);
    }
    out.push(0);
    out
}
