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

/// Issue #16: a raw identifier is called by its bare name, so Python can call `type`.
#[test]
fn raw_identifiers_travel_as_the_bare_name() {
    let out = expand(
        quote!(),
        quote! { impl A { pub fn r#type(&self, r#in: u32) -> u32 { r#in } } },
    )
    .to_string();
    assert!(out.contains("name : \"type\""), "{out}");
    assert!(out.contains("name : \"in\""), "{out}");
    assert!(!out.contains("\"r#"), "{out}");
}

/// Issue #16: a `pub` hook is still only a hook, never a remote method.
#[test]
fn a_pub_hook_is_not_a_remote_method() {
    let actor = crate::parse::actor(
        quote!(),
        quote! {
            impl A {
                #[on_start] pub fn started(&mut self) {}
                #[on_stop] pub async fn stopping(&mut self) {}
                pub fn remote(&self) {}
            }
        },
    )
    .unwrap_or_else(|(_, e)| panic!("{e}"));
    let names: Vec<String> = actor.methods.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["remote"]);
    assert!(actor.on_start.is_some() && actor.on_stop.is_some());
}

/// Issue #16: `#[cfg]` goes on every item generated for the method.
#[test]
fn cfg_is_carried_to_every_generated_item() {
    let out = pretty(expand(
        quote!(),
        quote! { impl A { #[cfg(feature = "x")] pub fn gated(&self) {} pub fn after(&self) {} } },
    ));
    // The user's method, then the variant, the handler arm, two decoder arms, the sweeper's
    // arm, the interface entry, the proxy method and the wire check.
    assert_eq!(out.matches("#[cfg(feature = \"x\")]").count(), 9, "{out}");
    // The method after it finds its row in the interface table by counting.
    assert!(out.contains("cfg!(feature = \"x\")"), "{out}");
}

/// Issue #16: more than 16 arguments is a clear error, not serde's tuple limit.
#[test]
fn more_than_sixteen_arguments_is_an_error() {
    let args: Vec<proc_macro2::TokenStream> = (0..17)
        .map(|i| {
            let a = syn::Ident::new(&format!("a{i}"), proc_macro2::Span::call_site());
            quote!(#a: u8)
        })
        .collect();
    let errors = errors_of(quote! { impl A { pub fn many(&self, #(#args),*) {} } });
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("at most 16 arguments"), "{errors:#?}");
    let sixteen = &args[..16];
    assert!(errors_of(quote! { impl A { pub fn many(&self, #(#sixteen),*) {} } }).is_empty());
}

/// Issue #16: names of `ActorRef`'s methods are refused instead of hidden.
#[test]
fn names_of_actor_ref_methods_are_refused() {
    let errors = errors_of(quote! {
        impl A { pub fn stop(&self) {} pub fn name(&self) -> String { todo!() } }
    });
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("cannot be called `stop`"), "{errors:#?}");
    assert!(
        errors[1].contains("whose `name` it would hide"),
        "{errors:#?}"
    );
}

/// The refused names are exactly the inherent methods of `ActorRef` today: a method added there
/// must be added to the list too.
#[test]
fn the_refused_names_follow_actor_ref() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pulsing/src/handle/actor_ref.rs"
    ))
    .unwrap();
    let start = source.find("impl<A: Actor> ActorRef<A> {").unwrap();
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").unwrap()];
    let mut found: Vec<&str> = body
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix("pub fn ")
                .or_else(|| l.strip_prefix("pub async fn "))?;
            rest.split(['(', '<']).next()
        })
        .collect();
    found.sort_unstable();
    assert_eq!(found, crate::parse::ACTOR_REF_METHODS);
}
