//! Runs the compile-pass and compile-fail cases of `#[pulsing::remote]` with trybuild.
//!
//! Regenerate the `.stderr` files after a deliberate change to a message with
//! `TRYBUILD=overwrite cargo test -p pulsing-ui-tests`, then read the diff.

#[test]
fn pass() {
    trybuild::TestCases::new().pass("tests/pass/*.rs");
}

#[test]
fn compile_fail() {
    trybuild::TestCases::new().compile_fail("tests/fail/*.rs");
}
