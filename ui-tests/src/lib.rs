//! Compile-pass and compile-fail tests of `#[pulsing::remote]` (see `tests/ui.rs`).
