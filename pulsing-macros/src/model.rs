//! The checked description of one actor that code generation works from.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Attribute, Ident, ItemImpl, Type};

/// One `#[remote] impl` block, validated.
pub(crate) struct Actor {
    /// The user's impl block, with our helper attributes removed; emitted unchanged otherwise.
    pub(crate) item: ItemImpl,
    /// The actor type's name (`Counter`).
    pub(crate) name: Ident,
    /// The actor type as written (`Counter`, `crate::Counter`).
    pub(crate) ty: Type,
    /// The proxy's name (`CounterRef`).
    pub(crate) proxy: Ident,
    /// The `pub` methods with a `self` receiver, in source order.
    pub(crate) methods: Vec<Method>,
    /// The `#[on_start]` method, if any.
    pub(crate) on_start: Option<Hook>,
    /// The `#[on_stop]` method, if any.
    pub(crate) on_stop: Option<Hook>,
}

/// One remote method.
pub(crate) struct Method {
    pub(crate) name: Ident,
    pub(crate) docs: Vec<Attribute>,
    /// The method's `#[cfg(...)]` attributes, carried to everything generated for it.
    pub(crate) cfgs: Vec<Attribute>,
    pub(crate) is_async: bool,
    pub(crate) mutates: bool,
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Output,
    pub(crate) span: Span,
}

impl Method {
    /// The name callers use: the identifier without `r#` (`r#type` is called as `type`).
    pub(crate) fn wire_name(&self) -> String {
        self.name.unraw().to_string()
    }
}

/// One argument of a remote method (`Self` already replaced by the actor type).
pub(crate) struct Arg {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

impl Arg {
    /// The keyword callers use: the identifier without `r#`.
    pub(crate) fn wire_name(&self) -> String {
        self.name.unraw().to_string()
    }
}

/// What a remote method answers.
pub(crate) enum Output {
    /// One value (`()` when the method declares no return type).
    Value(Type),
    /// A stream of these items.
    Stream(Type),
}

impl Output {
    /// The type that crosses the boundary: the value, or one stream item.
    pub(crate) fn wire_type(&self) -> &Type {
        match self {
            Output::Value(ty) | Output::Stream(ty) => ty,
        }
    }
}

/// A lifecycle hook (`#[on_start]` / `#[on_stop]`).
pub(crate) struct Hook {
    pub(crate) name: Ident,
    pub(crate) is_async: bool,
}
