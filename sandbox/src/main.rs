//! `sandbox`: the local demo tools of the bridge.
//!
//! * `sandbox serve`: runs FakeHalo and FakeCf for local demos until SIGINT/SIGTERM;
//! * `sandbox host`: runs a handler under the stand-in Functions host until SIGINT/SIGTERM (`scripts/run-local`);
//! * `sandbox send-incident`: sends a signed ContraForce incident to the local bridge (`scripts/demo-incident`);
//! * `sandbox halo-note`: a Halo agent answers and closes the ticket, and Halo's webhook fires
//!   (`scripts/demo-halo-note`);
//! * `sandbox demo-routing`: an incident of each sandbox customer lands on its own Halo client, and a close as a
//!   false positive reaches that customer's workspace (`scripts/demo-routing`);
//! * `sandbox halo-outage`: the sandbox Halo answers 503 for a while; queued work completes when it is back
//!   (`scripts/demo-halo-outage`);
//! * `sandbox drop-table`: empties the bridge's sandbox state in the local Azurite (used by `scripts/run-local`).

#[macro_use]
mod cli;

use std::process::ExitCode;

const USAGE: &str = "usage: sandbox <command> [options]

Local demo tools of the ContraForce <-> HaloPSA bridge (development only).

commands:
  serve           run a fake HaloPSA and a fake ContraForce API on 127.0.0.1
  host            run a handler under the stand-in Functions host (HTTP, queue and timer triggers)
  send-incident   send the sample ContraForce incident, signed, to the local bridge
  halo-note       add an agent's note to the sandbox ticket, close it, fire Halo's webhook
  demo-routing    an incident of each sandbox customer: routed by map, by name, by default; a FalsePositive close
  halo-outage     take the sandbox Halo down for a while, then watch queued work complete
  drop-table      delete a table in the local Azurite (the bridge's sandbox state)

`sandbox <command> --help` describes each command's options.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest = cli::Args::new(args.collect());
    let result = match command.as_deref() {
        Some("serve") => cli::serve::run(rest).await,
        Some("host") => cli::host::run(rest).await,
        Some("send-incident") => cli::send_incident::run(rest).await,
        Some("halo-note") => cli::halo_note::run(rest).await,
        Some("demo-routing") => cli::demo_routing::run(rest).await,
        Some("halo-outage") => cli::halo_outage::run(rest).await,
        Some("drop-table") => cli::table::run(rest).await,
        Some("-h" | "--help" | "help") => {
            say!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        None => Err(cli::Failure::Help(USAGE)),
        Some(other) => Err(cli::Failure::Usage(format!("unknown command {other:?}"), USAGE)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::Failure::Help(usage)) => {
            say!("{usage}");
            ExitCode::SUCCESS
        }
        Err(cli::Failure::Usage(message, usage)) => {
            if message.is_empty() {
                eprintln!("{usage}");
            } else {
                eprintln!("sandbox: {message}\n\n{usage}");
            }
            ExitCode::from(2)
        }
        Err(cli::Failure::Failed(message)) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
