//! The gossip guard: every chitchat message a peer sends is read here first, and only what
//! chitchat can take without tripping one of its internal `assert!`s reaches it.
//!
//! Chitchat (0.11) trusts its input: a delta whose `SetMaxVersion` is below one of its key
//! versions panics its state code, a message inflates without limit (each compressed block to
//! 64 KiB: 0.18 MB became ≈500 MiB), a delta may rewrite the receiver's own state, and a digest
//! may add any number of members — past ≈1,148 (IPv4) the answer to the next `Syn` no longer fits
//! its datagram budget and `assert!(mtu >= 100)` kills the gossip task. So before chitchat sees a
//! message, [`screen`] parses it with chitchat's own (public) codecs and:
//!
//! - refuses messages over [`MAX_MESSAGE`] bytes, or that inflate past [`MAX_INFLATED`];
//! - refuses node ids that are not ours in form (up to 16 hex digits, as `NodeId` prints), which
//!   also bounds the size of every digest entry;
//! - drops digest entries and deltas about this node's own id (any generation) — only this node
//!   writes its own state;
//! - drops digest entries of members it does not know yet once it knows [`MAX_MEMBERS`]
//!   (live and dead), with a warning: the cluster is full;
//! - drops a node's delta whose declared maximum version is below one of its key versions (the
//!   assert in chitchat's `NodeState::apply_delta`), or that names a member it does not know
//!   (chitchat ignores those anyway).
//!
//! A message that needed no change is handed over as received; otherwise it is re-encoded (the
//! delta as uncompressed blocks, which chitchat reads the same way).

use std::collections::HashSet;

use chitchat::{Chitchat, ChitchatId, Deserializable, Serializable};

/// The largest gossip message accepted (chitchat keeps its own under 65,507 bytes).
pub(crate) const MAX_MESSAGE: usize = 128 << 10;
/// How far a message may inflate when its compressed blocks are expanded.
pub(crate) const MAX_INFLATED: usize = 4 << 20;
/// The most members (live or dead, this node included) a node keeps track of. Chitchat lists
/// every known member in each digest and must fit a digest and some delta into 65,507 bytes: at
/// 69 bytes per entry (IPv6) 900 entries take 62,100, leaving room for a delta.
pub(crate) const MAX_MEMBERS: usize = 900;

const MAGIC: u16 = 45_139;
const SYN: u8 = 0;
const SYN_ACK: u8 = 1;
const ACK: u8 = 2;
const BAD_CLUSTER: u8 = 3;

const OP_NODE: u8 = 0;
const OP_KV: u8 = 1;
const OP_MAX_VERSION: u8 = 2;

const BLOCK_END: u8 = 0;
const BLOCK_COMPRESSED: u8 = 1;
const BLOCK_PLAIN: u8 = 2;

/// Why a message was refused whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    TooLarge(usize),
    Inflates,
    Malformed(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooLarge(n) => write!(f, "{n} bytes, over the {MAX_MESSAGE}-byte limit"),
            Refused::Inflates => write!(f, "inflates past {MAX_INFLATED} bytes"),
            Refused::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

/// What the guard did to an accepted message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Screened {
    /// The message to hand to chitchat: `None` if the received bytes are fine as they are.
    pub(crate) rewritten: Option<Vec<u8>>,
    /// Digest entries or deltas about this node's own id that were dropped.
    pub(crate) own: usize,
    /// New members left out because the cluster is full.
    pub(crate) over_capacity: usize,
    /// Node deltas dropped because chitchat could not apply them safely.
    pub(crate) bad_deltas: usize,
}

/// What the guard needs to know of chitchat's state.
pub(crate) trait Known {
    /// This node's own chitchat id.
    fn me(&self) -> &ChitchatId;
    /// How many members are known (this node included).
    fn count(&self) -> usize;
    /// Whether `id` is known.
    fn knows(&self, id: &ChitchatId) -> bool;
}

impl Known for Chitchat {
    fn me(&self) -> &ChitchatId {
        self.self_chitchat_id()
    }
    fn count(&self) -> usize {
        self.node_states().len()
    }
    fn knows(&self, id: &ChitchatId) -> bool {
        self.node_state(id).is_some()
    }
}

type Res<T> = Result<T, Refused>;

fn malformed(e: impl std::fmt::Display) -> Refused {
    Refused::Malformed(e.to_string())
}

fn take<T: Deserializable>(buf: &mut &[u8]) -> Res<T> {
    T::deserialize(buf).map_err(malformed)
}

fn byte(buf: &mut &[u8]) -> Res<u8> {
    let (&b, rest) = buf.split_first().ok_or_else(|| malformed("truncated"))?;
    *buf = rest;
    Ok(b)
}

/// One digest entry, kept as its bytes.
struct Entry {
    id: ChitchatId,
    rest: [u8; 24],
}

fn read_digest(buf: &mut &[u8]) -> Res<Vec<Entry>> {
    let n: u16 = take(buf)?;
    let mut entries = Vec::with_capacity(usize::from(n).min(buf.len() / 24));
    for _ in 0..n {
        let id = read_id(buf)?;
        let rest: [u8; 24] = take(buf)?;
        entries.push(Entry { id, rest });
    }
    Ok(entries)
}

fn read_id(buf: &mut &[u8]) -> Res<ChitchatId> {
    let id: ChitchatId = take(buf)?;
    let ok = !id.node_id.is_empty()
        && id.node_id.len() <= 16
        && id.node_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(malformed(format!("node id {:?}", id.node_id)));
    }
    Ok(id)
}

fn write_digest(entries: &[&Entry], out: &mut Vec<u8>) {
    (entries.len() as u16).serialize(out);
    for e in entries {
        e.id.serialize(out);
        out.extend_from_slice(&e.rest);
    }
}

/// Expands a delta's block stream (compressed or not) into its operations' bytes, within
/// [`MAX_INFLATED`].
fn inflate(buf: &mut &[u8]) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    let mut block = vec![0u8; u16::MAX as usize];
    loop {
        match byte(buf)? {
            BLOCK_END => return Ok(out),
            kind @ (BLOCK_COMPRESSED | BLOCK_PLAIN) => {
                let len = usize::from(take::<u16>(buf)?);
                let bytes = buf.get(..len).ok_or_else(|| malformed("truncated block"))?;
                *buf = &buf[len..];
                let plain = if kind == BLOCK_COMPRESSED {
                    let n = zstd::bulk::decompress_to_buffer(bytes, &mut block[..])
                        .map_err(|e| malformed(format!("block does not decompress: {e}")))?;
                    &block[..n]
                } else {
                    bytes
                };
                if out.len() + plain.len() > MAX_INFLATED {
                    return Err(Refused::Inflates);
                }
                out.extend_from_slice(plain);
            }
            other => return Err(malformed(format!("block type {other}"))),
        }
    }
}

/// One member's part of a delta, as operations' bytes.
struct NodeDelta {
    id: ChitchatId,
    /// The whole node op, then every key-value op and `SetMaxVersion` op, as received.
    bytes: Vec<u8>,
    max_kv_version: u64,
    max_version: u64,
}

fn read_delta(buf: &mut &[u8]) -> Res<Vec<NodeDelta>> {
    let ops = inflate(buf)?;
    let mut cursor = &ops[..];
    let mut nodes: Vec<NodeDelta> = Vec::new();
    let mut seen = HashSet::new();
    while !cursor.is_empty() {
        let start = cursor;
        match byte(&mut cursor)? {
            OP_NODE => {
                let id = read_id(&mut cursor)?;
                let _last_gc: u64 = take(&mut cursor)?;
                let _from: u64 = take(&mut cursor)?;
                if !seen.insert(id.clone()) {
                    return Err(malformed("a member twice in one delta"));
                }
                nodes.push(NodeDelta {
                    id,
                    bytes: Vec::new(),
                    max_kv_version: 0,
                    max_version: 0,
                });
            }
            OP_KV => {
                let _key: String = take(&mut cursor)?;
                let _value: String = take(&mut cursor)?;
                let version: u64 = take(&mut cursor)?;
                let status = byte(&mut cursor)?;
                if status > 2 {
                    return Err(malformed(format!("deletion status {status}")));
                }
                let node = nodes
                    .last_mut()
                    .ok_or_else(|| malformed("a key before any member"))?;
                if version <= node.max_version {
                    return Err(malformed("key versions must increase"));
                }
                node.max_kv_version = version;
                node.max_version = version;
            }
            OP_MAX_VERSION => {
                let version: u64 = take(&mut cursor)?;
                let node = nodes
                    .last_mut()
                    .ok_or_else(|| malformed("a max version before any member"))?;
                node.max_version = version;
            }
            other => return Err(malformed(format!("delta op {other}"))),
        }
        let used = start.len() - cursor.len();
        if let Some(node) = nodes.last_mut() {
            node.bytes.extend_from_slice(&start[..used]);
        }
    }
    Ok(nodes)
}

fn write_delta(nodes: &[&NodeDelta], out: &mut Vec<u8>) {
    let all: Vec<u8> = nodes.iter().flat_map(|n| n.bytes.iter().copied()).collect();
    for chunk in all.chunks(u16::MAX as usize) {
        out.push(BLOCK_PLAIN);
        (chunk.len() as u16).serialize(out);
        out.extend_from_slice(chunk);
    }
    out.push(BLOCK_END);
}

/// Checks a message from a peer against what this node knows; see the module docs.
pub(crate) fn screen(bytes: &[u8], known: &impl Known) -> Result<Screened, Refused> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Refused::TooLarge(bytes.len()));
    }
    let mut buf = bytes;
    let magic: u16 = take(&mut buf)?;
    let version = byte(&mut buf)?;
    if magic != MAGIC || version != 0 {
        return Err(malformed("not a chitchat v0 message"));
    }
    let kind = byte(&mut buf)?;
    let me = known.me();
    let mut screened = Screened::default();
    // Members this message introduces (budgeted against MAX_MEMBERS).
    let mut introduced: HashSet<ChitchatId> = HashSet::new();
    let mut keep_entry = |e: &Entry, s: &mut Screened| -> bool {
        if e.id.node_id == me.node_id {
            // Our own entry, exactly, tells what the peer knows of us; any other generation
            // under our id is a forgery (or a stale copy) and would list us twice.
            if e.id != *me {
                s.own += 1;
                return false;
            }
            return true;
        }
        if known.knows(&e.id) || introduced.contains(&e.id) {
            return true;
        }
        if known.count() + introduced.len() >= MAX_MEMBERS {
            s.over_capacity += 1;
            return false;
        }
        introduced.insert(e.id.clone());
        true
    };
    let mut out = Vec::new();
    out.extend_from_slice(&bytes[..4]);
    match kind {
        SYN => {
            let digest = read_digest(&mut buf)?;
            let cluster: String = take(&mut buf)?;
            let kept: Vec<&Entry> = digest
                .iter()
                .filter(|e| keep_entry(e, &mut screened))
                .collect();
            if kept.len() != digest.len() {
                write_digest(&kept, &mut out);
                cluster.serialize(&mut out);
                screened.rewritten = Some(out);
            }
        }
        SYN_ACK | ACK => {
            let digest = if kind == SYN_ACK {
                Some(read_digest(&mut buf)?)
            } else {
                None
            };
            let delta = read_delta(&mut buf)?;
            let kept_entries: Vec<&Entry> = digest
                .iter()
                .flatten()
                .filter(|e| keep_entry(e, &mut screened))
                .collect();
            let kept_nodes: Vec<&NodeDelta> = delta
                .iter()
                .filter(|n| {
                    if n.id.node_id == me.node_id {
                        screened.own += 1;
                        false
                    } else if !(known.knows(&n.id) || introduced.contains(&n.id)) {
                        // Chitchat applies deltas only to members it knows.
                        screened.bad_deltas += 1;
                        false
                    } else if n.max_version < n.max_kv_version {
                        screened.bad_deltas += 1;
                        false
                    } else {
                        true
                    }
                })
                .collect();
            let entries_changed = digest
                .as_ref()
                .is_some_and(|d| d.len() != kept_entries.len());
            if entries_changed || kept_nodes.len() != delta.len() {
                if kind == SYN_ACK {
                    write_digest(&kept_entries, &mut out);
                }
                write_delta(&kept_nodes, &mut out);
                screened.rewritten = Some(out);
            }
        }
        BAD_CLUSTER => {}
        other => return Err(malformed(format!("message type {other}"))),
    }
    if !buf.is_empty() && kind != BAD_CLUSTER {
        return Err(malformed("trailing bytes"));
    }
    Ok(screened)
}

/// Builders for crafted messages, shared by the guard's and the simulation's tests.
#[cfg(test)]
pub(crate) mod craft {
    use super::*;
    use std::collections::BTreeMap;

    /// A digest entry: `(id, heartbeat, last_gc_version, max_version)`.
    pub(crate) type DigestEntry = (ChitchatId, u64, u64, u64);

    /// A delta op.
    pub(crate) enum Op {
        Node(ChitchatId, u64, u64),
        Kv(&'static str, &'static str, u64),
        MaxVersion(u64),
    }

    fn header(kind: u8) -> Vec<u8> {
        let mut out = Vec::new();
        MAGIC.serialize(&mut out);
        out.push(0);
        out.push(kind);
        out
    }

    fn digest(entries: &[DigestEntry], out: &mut Vec<u8>) {
        let mut map = BTreeMap::new();
        for (id, hb, gc, max) in entries {
            map.insert(id.clone(), (*hb, *gc, *max));
        }
        (map.len() as u16).serialize(out);
        for (id, (hb, gc, max)) in map {
            id.serialize(out);
            hb.serialize(out);
            gc.serialize(out);
            max.serialize(out);
        }
    }

    fn delta(ops: &[Op], out: &mut Vec<u8>) {
        let mut plain = Vec::new();
        for op in ops {
            match op {
                Op::Node(id, gc, from) => {
                    plain.push(OP_NODE);
                    id.serialize(&mut plain);
                    gc.serialize(&mut plain);
                    from.serialize(&mut plain);
                }
                Op::Kv(k, v, version) => {
                    plain.push(OP_KV);
                    k.serialize(&mut plain);
                    v.serialize(&mut plain);
                    version.serialize(&mut plain);
                    plain.push(0);
                }
                Op::MaxVersion(v) => {
                    plain.push(OP_MAX_VERSION);
                    v.serialize(&mut plain);
                }
            }
        }
        if !plain.is_empty() {
            out.push(BLOCK_PLAIN);
            (plain.len() as u16).serialize(out);
            out.extend_from_slice(&plain);
        }
        out.push(BLOCK_END);
    }

    pub(crate) fn syn(entries: &[DigestEntry]) -> Vec<u8> {
        let mut out = header(SYN);
        digest(entries, &mut out);
        super::super::CLUSTER_ID.serialize(&mut out);
        out
    }

    pub(crate) fn syn_ack(entries: &[DigestEntry], ops: &[Op]) -> Vec<u8> {
        let mut out = header(SYN_ACK);
        digest(entries, &mut out);
        delta(ops, &mut out);
        out
    }

    /// An `Ack` whose delta is `blocks` compressed blocks, each of 64 KiB of zeros.
    pub(crate) fn bomb(blocks: usize) -> Vec<u8> {
        let mut out = header(ACK);
        let block = zstd::bulk::compress(&[0u8; u16::MAX as usize], 19).expect("compresses");
        for _ in 0..blocks {
            out.push(BLOCK_COMPRESSED);
            (block.len() as u16).serialize(&mut out);
            out.extend_from_slice(&block);
        }
        out.push(BLOCK_END);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::craft::{self, Op};
    use super::*;
    use chitchat::ChitchatMessage;

    struct View {
        me: ChitchatId,
        known: Vec<ChitchatId>,
        extra: usize,
    }

    impl Known for View {
        fn me(&self) -> &ChitchatId {
            &self.me
        }
        fn count(&self) -> usize {
            1 + self.known.len() + self.extra
        }
        fn knows(&self, id: &ChitchatId) -> bool {
            self.known.contains(id)
        }
    }

    fn id(n: u64) -> ChitchatId {
        ChitchatId::new(
            format!("{n:016x}"),
            7,
            ([10, 0, 0, (n % 250) as u8], 7000).into(),
        )
    }

    fn view() -> View {
        View {
            me: id(1),
            known: vec![id(2)],
            extra: 0,
        }
    }

    fn decodes(bytes: &[u8]) -> ChitchatMessage {
        ChitchatMessage::deserialize(&mut &bytes[..]).expect("chitchat reads it")
    }

    #[test]
    fn a_well_formed_message_passes_unchanged() {
        let msg = craft::syn_ack(
            &[(id(2), 5, 0, 3)],
            &[Op::Node(id(2), 0, 0), Op::Kv("k", "v", 3)],
        );
        let s = screen(&msg, &view()).unwrap();
        assert_eq!(s, Screened::default());
        decodes(&msg);
    }

    #[test]
    fn a_max_version_below_a_key_version_is_dropped() {
        let msg = craft::syn_ack(
            &[(id(2), 5, 0, 3)],
            &[
                Op::Node(id(2), 0, 0),
                Op::Kv("k", "v", 10),
                Op::MaxVersion(5),
            ],
        );
        let s = screen(&msg, &view()).unwrap();
        assert_eq!(s.bad_deltas, 1);
        let ChitchatMessage::SynAck { delta, .. } = decodes(s.rewritten.as_ref().unwrap()) else {
            panic!("still a SynAck")
        };
        assert_eq!(delta.serialize_to_vec(), vec![BLOCK_END]);
    }

    #[test]
    fn deltas_and_forged_entries_for_our_own_id_are_dropped() {
        let mut forged = id(1);
        forged.generation_id = 99;
        let msg = craft::syn_ack(
            &[(id(1), 5, 0, 3), (forged, 5, 0, 3)],
            &[Op::Node(id(1), 0, 0), Op::Kv("name:evil", "1:X", 50)],
        );
        let s = screen(&msg, &view()).unwrap();
        assert_eq!(s.own, 2);
        let ChitchatMessage::SynAck { digest, delta } = decodes(s.rewritten.as_ref().unwrap())
        else {
            panic!("still a SynAck")
        };
        assert_eq!(delta.serialize_to_vec(), vec![BLOCK_END]);
        // Only our exact entry stays in the digest.
        assert_eq!(
            digest.serialize_to_vec().len(),
            2 + id(1).serialized_len() + 24
        );
    }

    #[test]
    fn new_members_beyond_the_maximum_are_left_out() {
        let mut v = view();
        v.extra = MAX_MEMBERS - 4; // count() == MAX_MEMBERS - 2
        let entries: Vec<_> = (10..20).map(|n| (id(n), 1, 0, 0)).collect();
        let s = screen(&craft::syn(&entries), &v).unwrap();
        assert_eq!(s.over_capacity, 8);
        decodes(s.rewritten.as_ref().unwrap());
    }

    #[test]
    fn bombs_oversized_messages_and_foreign_ids_are_refused() {
        assert_eq!(screen(&craft::bomb(100), &view()), Err(Refused::Inflates));
        assert!(matches!(
            screen(&vec![0; MAX_MESSAGE + 1], &view()),
            Err(Refused::TooLarge(_))
        ));
        let mut long = id(3);
        long.node_id = "x".repeat(1000).into();
        assert!(matches!(
            screen(&craft::syn(&[(long, 1, 0, 0)]), &view()),
            Err(Refused::Malformed(_))
        ));
    }

    #[test]
    fn chitchat_messages_pass_the_guard() {
        // What chitchat itself writes (compressed blocks included) reads back unchanged.
        let msg = ChitchatMessage::BadCluster.serialize_to_vec();
        assert_eq!(screen(&msg, &view()).unwrap(), Screened::default());
    }
}
