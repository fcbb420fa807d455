//! Machine-readable descriptions of an actor's remote methods.
//!
//! `#[pulsing::remote]` writes one [`Interface`] per actor type. The dynamic shim uses it to check
//! by-name calls, and tools (the Python package, a CLI) read it to show what an actor offers.
//!
//! ```
//! # use pulsing::prelude::*;
//! pub struct Greeter;
//!
//! #[pulsing::remote]
//! impl Greeter {
//!     /// Says hello.
//!     pub fn greet(&self, who: String, times: u32) -> String { format!("hello {who} x{times}") }
//! }
//!
//! let iface = <Greeter as Actor>::interface();
//! let greet = iface.method("greet").unwrap();
//! assert_eq!(greet.signature(), "greet(who: String, times: u32) -> String");
//! assert_eq!(greet.doc, "Says hello.");
//! ```

use serde::Serialize;

/// Everything a caller needs to know to call an actor type by name.
///
/// A type's **identity** is its full path (`module_path!()` of its `#[remote]` impl, then its
/// name) plus a fingerprint of its methods' signatures (names, argument and result types as
/// written, call or stream); [`key`](Self::key) hashes both. Typed calls across nodes carry the
/// key and the serving node compares it with the actor's, so a same-named type of another
/// module, or another version of the type, is refused instead of decoding garbage.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Interface {
    /// The actor's type name as written in its source (`Counter`).
    pub actor: &'static str,
    /// The type's full path (`my_crate::bank::Ledger`); for hosted actors, their type name.
    pub path: &'static str,
    /// 16 hex digits: a hash of `path` and of the methods' signatures.
    pub key: &'static str,
    /// The remote (`pub`) methods, in source order.
    pub methods: &'static [MethodInfo],
}

/// One remote method.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MethodInfo {
    /// The method's name.
    pub name: &'static str,
    /// Its parameters, in order (without the receiver).
    pub params: &'static [ParamInfo],
    /// The return type as written (`i64`, `Result<(), String>`), or the item type for streams.
    pub returns: &'static str,
    /// Plain call or stream.
    pub kind: MethodKind,
    /// Whether the method is an `async fn`.
    pub is_async: bool,
    /// Whether the method takes `&mut self`.
    pub mutates: bool,
    /// The method's doc comment, trimmed.
    pub doc: &'static str,
}

/// One parameter of a remote method.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ParamInfo {
    /// The parameter's name.
    pub name: &'static str,
    /// Its type as written in the source.
    pub ty: &'static str,
}

/// How a remote method answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MethodKind {
    /// One reply per call.
    Call,
    /// A stream of items, ended by an explicit end or error.
    Stream,
}

impl Interface {
    /// The full identity, as error messages show it: `my_crate::bank::Ledger#1f0c…` (path and
    /// key).
    pub fn identity(&self) -> String {
        format!("{}#{}", self.path, self.key)
    }

    /// The method called `name`, if there is one.
    pub fn method(&self, name: &str) -> Option<&'static MethodInfo> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// The method names, comma-separated, for error messages.
    pub fn method_names(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(|m| m.name).collect();
        names.join(", ")
    }
}

impl MethodInfo {
    /// The signature as one line: `inc(by: i64) -> i64`, or `count_to(n: u32) -> stream of u32`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.ty))
            .collect();
        let arrow = match self.kind {
            MethodKind::Call => "",
            MethodKind::Stream => "stream of ",
        };
        format!(
            "{}({}) -> {arrow}{}",
            self.name,
            params.join(", "),
            self.returns
        )
    }
}

/// 64-bit FNV-1a over `bytes`, continuing from `hash`.
const fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The FNV-1a offset basis: where a fingerprint starts.
pub(crate) const FINGERPRINT_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Adds `text` (and a separator) to a signature fingerprint.
pub(crate) const fn fingerprint(hash: u64, text: &str) -> u64 {
    fnv(fnv(hash, text.as_bytes()), b"\0")
}

/// The identity key of a type at `path` whose methods' fingerprint is `methods`: 16 lowercase
/// hex digits (ASCII).
pub const fn identity_key(path: &str, methods: u64) -> [u8; 16] {
    let hash = fnv(fingerprint(FINGERPRINT_START, path), &methods.to_le_bytes());
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let nibble = ((hash >> (60 - 4 * i)) & 0xf) as u8;
        out[i] = if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        };
        i += 1;
    }
    out
}

/// `key` (from [`identity_key`]) as text.
pub const fn key_str(key: &'static [u8; 16]) -> &'static str {
    match std::str::from_utf8(key) {
        Ok(s) => s,
        Err(_) => panic!("an identity key is hex digits"),
    }
}

/// The fingerprint of `methods`' signatures, as `#[pulsing::remote]` computes it for Rust
/// types: per method its name, each parameter's type, the result (or item) type and whether it
/// streams. Parameter names and docs do not count: they do not change what crosses the wire.
///
/// A `const fn`, so the macro's output computes it at compile time from the method table that
/// `#[cfg]` attributes have already filtered.
pub const fn methods_fingerprint(methods: &[MethodInfo]) -> u64 {
    let mut hash = FINGERPRINT_START;
    let mut i = 0;
    while i < methods.len() {
        let m = &methods[i];
        hash = fingerprint(hash, m.name);
        let mut j = 0;
        while j < m.params.len() {
            hash = fingerprint(hash, m.params[j].ty);
            j += 1;
        }
        hash = fingerprint(hash, m.returns);
        hash = fingerprint(
            hash,
            match m.kind {
                MethodKind::Call => "call",
                MethodKind::Stream => "stream",
            },
        );
        i += 1;
    }
    hash
}
