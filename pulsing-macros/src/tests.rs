//! Unit tests of the expansion, called with token streams.

use quote::quote;

use crate::codegen::type_text;
use crate::expand;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
    prettyplease::unparse(&file)
}

fn errors_of(item: proc_macro2::TokenStream) -> Vec<String> {
    match crate::parse::actor(quote!(), item) {
        Ok(_) => Vec::new(),
        Err((_, e)) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// The expansion of a representative actor, kept as a reviewed snapshot. Regenerate with
/// `UPDATE_EXPECT=1 cargo test -p pulsing-macros`.
#[test]
fn expansion_snapshot() {
    let item = quote! {
        impl Counter {
            /// Adds `by`.
            pub fn inc(&mut self, by: i64) -> i64 { self.value += by; self.value }
            /// Reads the value.
            pub async fn get(&self) -> i64 { self.value }
            pub fn check(&self, limit: i64) -> Result<(), String> { Ok(()) }
            pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static { futures::stream::iter(0..n) }
            #[on_start]
            fn started(&mut self) {}
            fn helper(&self) {}
        }
    };
    expect_test::expect_file!["../tests/snapshots/counter.expanded.rs"]
        .assert_eq(&pretty(expand(quote!(), item)));
}

#[test]
fn all_errors_are_reported_together() {
    let errors = errors_of(quote! {
        impl Bad {
            pub fn by_value(self) {}
            pub fn borrowed(&self, s: &str) {}
            pub fn generic<T>(&self, t: T) {}
            pub fn spawn(&self) {}
        }
    });
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors[0].contains("`&self` or `&mut self`"));
    assert!(errors[1].contains("use `String` instead of a reference"));
    assert!(errors[2].contains("cannot be generic"));
    assert!(errors[3].contains("`spawn` is generated"));
}

#[test]
fn private_methods_and_constructors_are_not_remote() {
    let actor = crate::parse::actor(
        quote!(),
        quote! {
            impl A {
                pub fn new() -> Self { A }
                fn helper(&self, s: &str) {}
                pub(crate) fn internal(&self) {}
                pub fn remote(&self) {}
            }
        },
    )
    .unwrap_or_else(|(_, e)| panic!("{e}"));
    let names: Vec<String> = actor.methods.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["remote"]);
}

#[test]
fn stream_bounds_are_checked() {
    let errors = errors_of(quote! {
        impl S {
            pub fn borrows(&self) -> impl Stream<Item = u32> + Send + '_ { todo() }
            pub fn no_static(&self) -> impl Stream<Item = u32> + Send { todo() }
            pub fn not_send(&self) -> impl Stream<Item = u32> + 'static { todo() }
            pub fn other(&self) -> impl Iterator<Item = u32> { todo() }
        }
    });
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors[0].contains("cannot borrow `self`"));
    assert!(errors[1].contains("cannot borrow `self`"));
    assert!(errors[2].contains("add `+ Send`"));
    assert!(errors[3].contains("not another `impl Trait`"));
}

#[test]
fn type_text_reads_like_source() {
    let cases = [
        (quote!(Vec<u8>), "Vec<u8>"),
        (quote!(Result<(), String>), "Result<(), String>"),
        (
            quote!(std::collections::HashMap<String, Vec<Option<i32>>>),
            "std::collections::HashMap<String, Vec<Option<i32>>>",
        ),
        (quote!([u8; 4]), "[u8; 4]"),
        (quote!((i32, String)), "(i32, String)"),
    ];
    for (tokens, text) in cases {
        let ty: syn::Type = syn::parse2(tokens).unwrap();
        assert_eq!(type_text(&ty), text);
    }
}

#[test]
fn the_user_item_survives_errors() {
    let out = expand(
        quote!(),
        quote! { impl Bad { pub fn f(self) {} #[on_start] fn s(&mut self) {} } },
    )
    .to_string();
    assert!(out.contains("impl Bad"), "{out}");
    assert!(
        !out.contains("on_start"),
        "helper attributes are removed: {out}"
    );
    assert!(out.contains("compile_error"), "{out}");
}
