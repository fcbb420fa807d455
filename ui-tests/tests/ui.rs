//! Runs the compile-pass and compile-fail cases of `#[pulsing::remote]` with trybuild.
//!
//! The `.stderr` files hold rustc's own words, which change between compiler releases, so they
//! are pinned to one: [`PINNED_RUSTC`]. A pin by `rust-toolchain.toml` would make rustup fetch
//! that toolchain, and the project's machines have exactly one toolchain and cannot fetch
//! another (every cargo command then fails); so the compile-fail test checks the compiler
//! itself and says how to move the pin. To move it: change [`PINNED_RUSTC`], run
//! `TRYBUILD=overwrite cargo test -p pulsing-ui-tests`, then read the diff.

/// The compiler release the `.stderr` files were written by.
const PINNED_RUSTC: &str = "rustc 1.95.";

#[test]
fn pass() {
    trybuild::TestCases::new().pass("tests/pass/*.rs");
}

#[test]
fn compile_fail() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = std::process::Command::new(&rustc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        version.starts_with(PINNED_RUSTC),
        "the compile-fail snapshots were written by {PINNED_RUSTC}x, this is {version:?}: \
         move the pin deliberately (see the top of ui-tests/tests/ui.rs)"
    );
    trybuild::TestCases::new().compile_fail("tests/fail/*.rs");
}
