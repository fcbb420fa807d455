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
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Interface {
    /// The actor's type name as written in its source (`Counter`).
    pub actor: &'static str,
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
