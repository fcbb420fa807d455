//! The cluster: this process as a node among others, and calls that cross nodes.
//!
//! - [`node`]: the node — its [transport](crate::transport), its gossip and directory; the
//!   transport hands it every frame that is not a reply to our own calls.
//! - [`client`]: the client side of calls to actors on other nodes ([`client::PeerActor`]), what
//!   a remote [`ActorRef`](crate::ActorRef) or [`DynRef`](crate::DynRef) holds.
//! - [`items`]: the consumer side of a peer's stream, taken from the reader's batches.
//! - [`serve`]: the server side — peers' calls and streams, put in the same mailboxes local calls
//!   use, answered through the peer reply slot ([`PeerReply`](crate::actor::peer::PeerReply)).
//! - [`directory`]: the live members and who holds which name, over [`gossip`] (chitchat behind a
//!   small trait; `gossip/simulation.rs` shows convergence with hundreds of virtual nodes).
//!
//! A call to another node, end to end: `resolve` finds the name in the directory and the node
//! connects to the member that holds it ([`node::Node::connect_to`]); the handle sends a
//! `Frame::Request` through the client; the peer's reader routes it to [`serve`], which puts the
//! message in the actor's mailbox; the actor's answer is encoded into `Frame::Response` on the
//! actor's thread and written back.
//!
//! ```no_run
//! # use pulsing::prelude::*;
//! # #[tokio::main] async fn main() -> pulsing::Result<()> {
//! let node = ActorSystem::builder()
//!     .addr("127.0.0.1:0")
//!     .seeds(["127.0.0.1:9000"])
//!     .secret("cluster secret")
//!     .build()
//!     .await?;
//! println!("{:?}", node.members());
//! let counter = node.resolve_dyn("counter").await?;     // on whichever node holds it
//! # Ok(()) }
//! ```
//!
//! This folder imports from `actor/`, `transport/`, `wire/`, `value/` and `error.rs`; never from
//! `handle/` or `system.rs`.

pub(crate) mod client;
pub(crate) mod directory;
pub(crate) mod gossip;
pub(crate) mod items;
pub(crate) mod node;
pub(crate) mod serve;

pub use directory::{Instance, Member};

/// The meta-method a node answers with an actor's type, id and interface.
pub(crate) const DESCRIBE: &str = "$describe";
/// The meta-method that stops an actor from another node.
pub(crate) const STOP: &str = "$stop";
