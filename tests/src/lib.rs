//! Integration tests of Pulsing live in this package's `tests/` folder.
