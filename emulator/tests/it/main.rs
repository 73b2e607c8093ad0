//! Integration tests: a real emulator on loopback, a real HTTPS client trusting only its CA.

// Test helpers outside `#[test]` functions may fail loudly; long scenario tests read top to bottom.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

mod common;

mod binary;
mod contract;
mod extensions;
mod faults;
mod inventory;
mod maa;
mod providers;
mod tokens;
