//! The cluster directory: the live members and the named actors each one holds, as gossip
//! spreads them.
//!
//! Each node publishes only its own names (key `name:<name>`, value `<actor id>:<type key>:<type
//! path>`, see [`Interface`]) and
//! retracts them when the actor stops, so a name can disappear but never be revived by a merge;
//! a dead or departed member's names disappear with it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::sync::watch;

use super::gossip::{Gossip, MemberState, Members};
use crate::actor::interface::Interface;
use crate::actor::meta::ActorId;
use crate::wire::NodeId;

/// A live member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's node id (fresh at every start).
    pub node: NodeId,
    /// The address it advertises.
    pub addr: SocketAddr,
    /// Whether it is this node.
    pub is_self: bool,
}

/// One actor registered under a name somewhere in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The node holding it.
    pub node: NodeId,
    /// That node's address.
    pub addr: SocketAddr,
    /// The actor's id on that node.
    pub actor: ActorId,
    /// The actor's type name (`Ledger`).
    pub type_name: String,
    /// Its type's full path (`bank::Ledger`); with `key`, the type's identity.
    pub path: String,
    /// Its type's identity key ([`Interface::key`]).
    pub key: String,
    /// Whether it lives in this process.
    pub is_local: bool,
}

const NAME_PREFIX: &str = "name:";

/// The live members and their names, over a [`Gossip`].
pub(crate) struct Directory {
    gossip: Box<dyn Gossip>,
    members: watch::Receiver<Members>,
    /// Members that said they are leaving (a `Leaving` frame), hidden before gossip catches up.
    left: Mutex<HashSet<NodeId>>,
    me: NodeId,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// A directory for node `me` over `gossip`.
    pub(crate) fn new(me: NodeId, gossip: Box<dyn Gossip>) -> Directory {
        Directory {
            members: gossip.members(),
            gossip,
            left: Mutex::new(HashSet::new()),
            me,
        }
    }

    /// Publishes that this node holds actor `id` with `interface` under `name`.
    pub(crate) fn publish(&self, name: &str, id: ActorId, interface: &Interface) {
        self.gossip.set(
            format!("{NAME_PREFIX}{name}"),
            format!("{id}:{}:{}", interface.key, interface.path),
        );
    }

    /// Retracts this node's `name`.
    pub(crate) fn retract(&self, name: &str) {
        self.gossip.delete(format!("{NAME_PREFIX}{name}"));
    }

    /// Hides `node` at once: it said it is leaving. Only members gossip knows are remembered,
    /// and only while gossip still lists them, so the set never outgrows the membership
    /// (any peer can send `Leaving`, under any node id it logs in with).
    pub(crate) fn left(&self, node: NodeId) {
        let members = self.members.borrow();
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        left.retain(|n| members.iter().any(|m| m.node == *n));
        if members.iter().any(|m| m.node == node) {
            left.insert(node);
        }
    }

    /// How many leavers are remembered.
    #[cfg(test)]
    fn left_count(&self) -> usize {
        self.left.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Leaves the cluster (see [`Gossip::leave`]).
    pub(crate) async fn leave(&self) {
        self.gossip.leave().await;
    }

    /// A receiver that changes whenever the membership or a member's names change.
    pub(crate) fn watch(&self) -> watch::Receiver<Members> {
        self.members.clone()
    }

    /// Runs `f` over the live members (borrowed, not copied, while it runs).
    fn with_live<R>(&self, f: impl FnOnce(std::vec::IntoIter<&MemberState>) -> R) -> R {
        let left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        let members = self.members.borrow();
        let live: Vec<&MemberState> = members.iter().filter(|m| !left.contains(&m.node)).collect();
        f(live.into_iter())
    }

    /// The live members, this node included.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.with_live(|live| {
            live.map(|m| Member {
                node: m.node,
                addr: m.addr,
                is_self: m.node == self.me,
            })
            .collect()
        })
    }

    /// Whether gossip has shown any live member besides this node.
    pub(crate) fn has_peers(&self) -> bool {
        self.with_live(|mut live| live.any(|m| m.node != self.me))
    }

    /// The instances of `name` on other live members.
    pub(crate) fn remote_instances(&self, name: &str) -> Vec<Instance> {
        let key = format!("{NAME_PREFIX}{name}");
        self.with_live(|live| {
            live.filter(|m| m.node != self.me)
                .filter_map(|m| {
                    let (actor, key, path) = parse(m.keys.get(&key)?)?;
                    Some(Instance {
                        node: m.node,
                        addr: m.addr,
                        actor,
                        type_name: short_name(path).to_owned(),
                        path: path.to_owned(),
                        key: key.to_owned(),
                        is_local: false,
                    })
                })
                .collect()
        })
    }
}

/// A name's value: `(actor id, type key, type path)`.
fn parse(value: &str) -> Option<(ActorId, &str, &str)> {
    let mut parts = value.splitn(3, ':');
    let id = parts.next()?.parse().ok()?;
    Some((id, parts.next()?, parts.next()?))
}

/// `Ledger` of `bank::Ledger`.
pub(crate) fn short_name(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// Whether, in `members`, live member `node` still publishes `name` as actor `id`.
pub(crate) fn holds(members: &Members, node: NodeId, name: &str, id: ActorId) -> bool {
    let key = format!("{NAME_PREFIX}{name}");
    members.iter().any(|m| {
        m.node == node
            && m.keys
                .get(&key)
                .and_then(|v| parse(v))
                .is_some_and(|(actor, _, _)| actor == id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// A gossip whose view the test sets by hand.
    struct FakeGossip(watch::Receiver<Members>);

    impl Gossip for FakeGossip {
        fn set(&self, _: String, _: String) {}
        fn delete(&self, _: String) {}
        fn members(&self) -> watch::Receiver<Members> {
            self.0.clone()
        }
        fn leave(&self) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    fn member(node: u64, names: &[(&str, &str)]) -> MemberState {
        MemberState {
            node: NodeId(node),
            addr: SocketAddr::from(([127, 0, 0, 1], 9000 + node as u16)),
            keys: names
                .iter()
                .map(|(k, v)| (format!("{NAME_PREFIX}{k}"), (*v).to_owned()))
                .chain([("other".to_owned(), "x".to_owned())])
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn instances_come_from_live_members_other_than_self_and_not_from_leavers() {
        let view = Arc::new(vec![
            member(1, &[("w", "3:k1:a::Worker")]),
            member(2, &[("w", "7:k1:a::Worker"), ("c", "1:k2:Clerk")]),
            member(3, &[("w", "9:k2:Clerk"), ("bad", "no-colon")]),
        ]);
        let (_tx, rx) = watch::channel(view);
        let dir = Directory::new(NodeId(1), Box::new(FakeGossip(rx)));
        let found = dir.remote_instances("w");
        assert_eq!(
            found
                .iter()
                .map(|i| (i.node.0, i.actor, i.type_name.as_str()))
                .collect::<Vec<_>>(),
            [(2, 7, "Worker"), (3, 9, "Clerk")]
        );
        assert!(
            dir.remote_instances("bad").is_empty(),
            "malformed values are skipped"
        );
        assert!(dir.has_peers());
        let view = dir.watch().borrow().clone();
        assert!(holds(&view, NodeId(2), "w", 7));
        assert!(
            !holds(&view, NodeId(2), "w", 8),
            "another actor under the name"
        );
        assert!(!holds(&view, NodeId(3), "c", 1));
        dir.left(NodeId(2));
        dir.left(NodeId(3));
        assert!(dir.remote_instances("w").is_empty());
        assert!(!dir.has_peers());
        assert_eq!(dir.members().len(), 1);
        assert!(dir.members()[0].is_self);
    }

    /// Issue #12, item 5: every peer's `Leaving` (under any node id it chose at login) used to
    /// be remembered forever (`left` grew by one per fake id: 10,000 here).
    #[test]
    fn leavers_are_remembered_only_while_gossip_lists_them() {
        let (tx, rx) = watch::channel(Arc::new(vec![member(1, &[]), member(2, &[])]));
        let dir = Directory::new(NodeId(1), Box::new(FakeGossip(rx)));
        for fake in 1_000..11_000 {
            dir.left(NodeId(fake));
        }
        assert_eq!(dir.left_count(), 0, "unknown nodes are not remembered");
        dir.left(NodeId(2));
        assert_eq!(dir.left_count(), 1);
        assert!(!dir.has_peers());
        // Gossip drops the member: so does the set, at the next `Leaving`.
        tx.send(Arc::new(vec![member(1, &[])])).unwrap();
        dir.left(NodeId(3));
        assert_eq!(dir.left_count(), 0);
    }
}
