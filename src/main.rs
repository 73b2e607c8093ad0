//! The operator binary: parses the flags (with environment fallbacks) and runs
//! [`guest_attestation_operator::runtime`]. `--help` lists every option.

use clap::Parser;
use guest_attestation_operator::runtime::{self, config::Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::main(Config::parse()).await
}
