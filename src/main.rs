//! `handler`: the Azure Functions custom handler of the ContraForce ↔ HaloPSA bridge.

use cf_halo_bridge::config::{Config, Env};
use cf_halo_bridge::{startup, telemetry};
use std::process::ExitCode;

/// One thread: the handler waits on the network almost all the time, and one event loop spends less CPU per event
/// than a work-stealing pool handing requests and connections between threads (docs/benchmarks.md has the figures).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("--list-settings") => {
            println!("{}", cf_halo_bridge::settings::to_json());
            return ExitCode::SUCCESS;
        }
        Some("--check") => return check().await,
        Some("--version") => {
            println!("handler {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("handler: unknown argument `{other}` (known: --check, --list-settings, --version)");
            return ExitCode::from(2);
        }
    }
    let env = Env::from_process();
    let config = match Config::from_env(&env) {
        Ok(config) => config,
        Err(e) => {
            // Before logging exists: the host shows stderr as an Error, which a failed start is.
            eprintln!("handler: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.log_filter);
    match startup::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "start failed");
            eprintln!("handler: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `handler --check`: one pass/fail line per dependency; exit code 1 when any fails.
async fn check() -> ExitCode {
    let config = match Config::from_env(&Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            println!("FAIL  configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let lines = cf_halo_bridge::check::run(config).await;
    print!("{}", cf_halo_bridge::check::render(&lines));
    if lines.iter().all(|l| l.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
