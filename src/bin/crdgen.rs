//! Writes the operator's CRDs as YAML: one file per kind into the directory given as the first
//! argument, or all of them to stdout.

use std::{env, fs, path::Path, process::ExitCode};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let out = env::args().nth(1);
    for (file, yaml) in guest_attestation_operator::crd::render_all()? {
        match &out {
            Some(dir) => fs::write(Path::new(dir).join(file), yaml)?,
            None => print!("---\n{yaml}"),
        }
    }
    Ok(())
}
