//! `handler`: the Azure Functions custom handler of the ContraForce ↔ HaloPSA bridge (`cf_halo_bridge::cli`).

use std::process::ExitCode;

/// One thread: the handler waits on the network almost all the time, and one event loop spends less CPU per event
/// than a work-stealing pool handing requests and connections between threads (docs/benchmarks.md has the figures).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cf_halo_bridge::cli::run(&args).await
}
