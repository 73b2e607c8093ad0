//! `azure-emulator`: serves the emulated Azure surfaces on loopback and prints one JSON line
//! `{"endpoint":"https://127.0.0.1:PORT","ca":"FILE","admin":"http://127.0.0.1:PORT"}` when ready.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use azure_emulator::{Emulator, EmulatorConfig, PutStyle, Seed};

const USAGE: &str = "usage: azure-emulator --ca-out FILE [--seed FILE] [--port N] [--admin-port N | --no-admin]
                      [--random-seed N] [--token-lifetime SECS] [--lro-polls N] [--lro-duration SECS]
                      [--lro-retry-after SECS] [--put-style created|accepted] [--throttle]
                      [--attestation-interval SECS] [--request-log-capacity N]";

struct Args {
    config: EmulatorConfig,
    ca_out: PathBuf,
    seed: Option<PathBuf>,
}

fn value<T: std::str::FromStr>(
    it: &mut impl Iterator<Item = String>,
    flag: &str,
) -> Result<T, String> {
    let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse()
        .map_err(|_| format!("invalid value for {flag}: {v}"))
}

fn parse_args() -> Result<Args, String> {
    let mut config = EmulatorConfig {
        admin_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..EmulatorConfig::default()
    };
    let mut ca_out = None;
    let mut seed = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--ca-out" => ca_out = Some(PathBuf::from(value::<String>(&mut it, &flag)?)),
            "--seed" => seed = Some(PathBuf::from(value::<String>(&mut it, &flag)?)),
            "--port" => config.bind = SocketAddr::from(([127, 0, 0, 1], value(&mut it, &flag)?)),
            "--admin-port" => {
                config.admin_bind =
                    Some(SocketAddr::from(([127, 0, 0, 1], value(&mut it, &flag)?)));
            }
            "--no-admin" => config.admin_bind = None,
            "--random-seed" => config.seed = value(&mut it, &flag)?,
            "--token-lifetime" => {
                config.token_lifetime = Duration::from_secs(value(&mut it, &flag)?);
            }
            "--lro-polls" => config.lro.polls = value(&mut it, &flag)?,
            "--lro-duration" => {
                config.lro.duration = Some(Duration::from_secs_f64(value(&mut it, &flag)?));
            }
            "--lro-retry-after" => config.lro.retry_after_secs = value(&mut it, &flag)?,
            "--put-style" => {
                config.lro.put_style = match value::<String>(&mut it, &flag)?.as_str() {
                    "created" => PutStyle::CreatedOrOk,
                    "accepted" => PutStyle::Accepted,
                    other => return Err(format!("unknown --put-style {other}")),
                };
            }
            "--throttle" => config.throttle.enabled = true,
            "--attestation-interval" => {
                config.attestation_interval = Duration::from_secs(value(&mut it, &flag)?);
            }
            "--request-log-capacity" => config.request_log_capacity = value(&mut it, &flag)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    let ca_out = ca_out.ok_or_else(|| format!("--ca-out is required\n{USAGE}"))?;
    Ok(Args {
        config,
        ca_out,
        seed,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("azure-emulator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), azure_emulator::Error> {
    let seed = match &args.seed {
        Some(path) => Some(Seed::parse(&std::fs::read_to_string(path)?)?),
        None => None,
    };
    let emu = Emulator::start(args.config).await?;
    emu.write_ca(&args.ca_out)?;
    if let Some(seed) = seed {
        emu.apply_seed(&seed)?;
        emu.set_initial_seed(Some(seed));
    }
    let line = serde_json::json!({
        "endpoint": emu.endpoint(),
        "ca": args.ca_out.display().to_string(),
        "admin": emu.admin_endpoint(),
    });
    println!("{line}");
    let _ = tokio::signal::ctrl_c().await;
    emu.shutdown().await;
    Ok(())
}
