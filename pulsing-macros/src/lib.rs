//! The `#[pulsing::remote]` attribute. Use it through the `pulsing` crate, which re-exports it
//! and documents what it generates.
//!
//! This crate only declares the entry point; the work happens in three plain modules that unit
//! tests call with token streams: `parse` turns the `impl` block into a checked `model`,
//! collecting every error with its span, and `codegen` writes the code from the model.

mod codegen;
mod model;
mod parse;

use proc_macro::TokenStream;

/// Turns the inherent `impl` block of a type into a typed actor: a hidden message enum, a typed
/// proxy `<Type>Ref`, spawn/resolve stubs, a by-name dispatch table and an interface description.
/// See the `pulsing` crate for the full story.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into()).into()
}

/// The whole expansion, callable from unit tests: on errors, the user's (cleaned) item is still
/// emitted next to the errors so that editors keep working.
fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    match parse::actor(attr, item.clone()) {
        Ok(actor) => codegen::actor(&actor),
        Err((cleaned, error)) => {
            let error = error.to_compile_error();
            match cleaned {
                Some(item) => quote::quote!(#item #error),
                None => quote::quote!(#item #error),
            }
        }
    }
}

#[cfg(test)]
mod tests;
