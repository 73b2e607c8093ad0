//! The operator binary: parses the flags (with environment fallbacks) and runs
//! [`guest_attestation_operator::runtime`]. `--help` lists every option.

use clap::Parser;
use guest_attestation_operator::runtime::{self, config::Config};

/// mimalloc returns freed memory to the system; glibc's malloc kept a 10,000-VM cold start's
/// peak (about a third above the live heap) for the life of the process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::main(Config::parse()).await
}
