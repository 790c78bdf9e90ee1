//! `sandbox serve`: runs FakeHalo and FakeCf for local demos until SIGINT/SIGTERM.

use sandbox::cf::{CfConfig, FakeCf};
use sandbox::customers;
use sandbox::halo::{FakeHalo, HaloConfig};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{failed, Args, CmdResult};

const USAGE: &str = "usage: sandbox serve [--halo-port PORT] [--cf-port PORT] [--print-env]

Starts a fake HaloPSA API and a fake ContraForce API on 127.0.0.1 with fixed demo
credentials and runs until interrupted (Ctrl-C or SIGTERM).

  --halo-port PORT   port for the fake Halo (default 7081; 0 = any free port)
  --cf-port PORT     port for the fake ContraForce (default 7082; 0 = any free port)
  --print-env        print only `export NAME=value` lines for the bridge on stdout (once
                     both fakes listen) and a last line \"# end of the bridge's environment\",
                     log to stderr, then serve

The sandbox has three customers (sandbox/src/customers.rs, scripts/demo-routing): one mapped
to its Halo client and site, one found by its name, one left to the triage client.";

/// Demo credentials (printed at start; they protect nothing).
const HALO_CLIENT_ID: &str = "sandbox-halo-client";
const HALO_CLIENT_SECRET: &str = "sandbox-halo-secret";
const HALO_APP_NAME: &str = "ContraForce Bridge";
const HALO_AGENT_ID: i64 = 38;
const HALO_AGENT_NAME: &str = "ContraForce Integration";
const CF_CLIENT_ID: &str = "sandbox-cf-client";
const CF_CLIENT_SECRET: &str = "sandbox-cf-secret";
const CF_WORKSPACE_ID: &str = "3f2b8c1e-5d4a-4e6b-9c7d-0a1b2c3d4e5f";

/// The line `--print-env` ends its export lines with.
const END_OF_ENV: &str = "# end of the bridge's environment";

struct Options {
    halo_port: u16,
    cf_port: u16,
    print_env: bool,
}

fn parse(mut args: Args) -> Result<Options, super::Failure> {
    args.usage(USAGE);
    let mut parsed = Options { halo_port: 7081, cf_port: 7082, print_env: false };
    while let Some(name) = args.next_option()? {
        match name.as_str() {
            "--halo-port" => parsed.halo_port = args.parsed(&name)?,
            "--cf-port" => parsed.cf_port = args.parsed(&name)?,
            "--print-env" => parsed.print_env = true,
            other => return Err(args.unknown(other)),
        }
    }
    Ok(parsed)
}

fn port_opt(p: u16) -> Option<u16> {
    (p != 0).then_some(p)
}

pub async fn run(args: Args) -> CmdResult {
    let args = parse(args)?;
    let stop = Stop::register();
    // With --print-env, stdout carries only the export lines (scripts read it); the logs go to stderr.
    if args.print_env {
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    } else {
        tracing_subscriber::fmt().with_writer(std::io::stdout).with_ansi(false).init();
    }

    let halo = FakeHalo::try_start(HaloConfig {
        client_id: HALO_CLIENT_ID.into(),
        client_secret: HALO_CLIENT_SECRET.into(),
        tenant: None,
        app_name: HALO_APP_NAME.into(),
        agent_id: HALO_AGENT_ID,
        agent_name: HALO_AGENT_NAME.into(),
        token_ttl_secs: 3600,
        default_actions_count: 20,
        max_actions_count: None,
        port: port_opt(args.halo_port),
        budget: None,
    })
    .map_err(|e| failed(format!("sandbox: cannot start the fake Halo on port {}: {e}", args.halo_port)))?;
    let cf = FakeCf::try_start(CfConfig {
        client_id: CF_CLIENT_ID.into(),
        client_secret: CF_CLIENT_SECRET.into(),
        workspace_id: CF_WORKSPACE_ID.into(),
        other_workspaces: customers::workspaces(),
        port: port_opt(args.cf_port),
    })
    .map_err(|e| failed(format!("sandbox: cannot start the fake ContraForce on port {}: {e}", args.cf_port)))?;

    let seeded = customers::seed(&halo);
    let mut env = vec![
        ("HALO_AUTH_URL", halo.auth_url()),
        ("HALO_API_BASE_URL", halo.api_url()),
        ("HALO_CLIENT_ID", HALO_CLIENT_ID.to_string()),
        ("HALO_CLIENT_SECRET", HALO_CLIENT_SECRET.to_string()),
        ("HALO_INTEGRATION_APPLICATION", HALO_APP_NAME.to_string()),
        ("HALO_INTEGRATION_AGENT_ID", HALO_AGENT_ID.to_string()),
        ("CF_API_BASE_URL", cf.base_url()),
        ("CF_SERVICE_ACCOUNT_CLIENT_ID", CF_CLIENT_ID.to_string()),
        ("CF_SERVICE_ACCOUNT_CLIENT_SECRET", CF_CLIENT_SECRET.to_string()),
        ("CF_WORKSPACE_ID", CF_WORKSPACE_ID.to_string()),
    ];
    // The customers' routing (scripts/demo-routing); CF_WORKSPACE_ID stays last of the CF lines run-local waits for.
    env.extend(customers::settings(&seeded));
    if args.print_env {
        for (name, value) in &env {
            println!("export {name}={}", shell_quote(value));
        }
        // The end of the list: a reader waits for it, not for a name that may stop being last.
        println!("{END_OF_ENV}");
    } else {
        println!("fake HaloPSA   {}", halo.base_url());
        println!("  token        POST {}/token (client {HALO_CLIENT_ID} / {HALO_CLIENT_SECRET})", halo.auth_url());
        println!("  api          {}", halo.api_url());
        println!("  application  {HALO_APP_NAME:?}, agent {HALO_AGENT_ID} {HALO_AGENT_NAME:?}");
        println!("  admin        GET  {}/_sandbox/tickets", halo.base_url());
        println!("               POST {}/_sandbox/tickets/{{id}}/actions   {{\"note_html\":\"...\",\"hiddenfromuser\":false,\"who\":\"Jane\"}}", halo.base_url());
        println!("               POST {}/_sandbox/tickets/{{id}}/status    {{\"status_id\":9,\"status_name\":\"Closed\",\"closed\":true}}", halo.base_url());
        println!("fake ContraForce {}", cf.base_url());
        println!("  basic auth   {CF_CLIENT_ID} / {CF_CLIENT_SECRET}, workspace {CF_WORKSPACE_ID}");
        println!("  admin        GET  {}/_sandbox/incidents", cf.root_url());
        println!("customers (scripts/demo-routing):");
        for c in customers::ALL {
            let client = match seeded.client_of(&c) {
                Some((id, Some(site))) => {
                    format!("Halo client {id} {:?} site {site}", c.halo_client.unwrap_or_default())
                }
                Some((id, None)) => format!("Halo client {id} {:?}", c.halo_client.unwrap_or_default()),
                None => "no Halo client".to_string(),
            };
            println!("  {:<18} account {}, {client}, routed by {:?}", c.account_name, c.account_id, c.route);
        }
        println!();
        println!("environment for the bridge:");
        for (name, value) in &env {
            println!("  {name}={value}");
        }
        println!();
        println!("serving; press Ctrl-C to stop");
    }

    stop.wait().await;
    tracing::info!("stopping");
    halo.shutdown().await;
    cf.shutdown().await;
    Ok(())
}

fn shell_quote(value: &str) -> String {
    if value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c)) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// SIGINT and SIGTERM, registered before the fakes start (so a stop right after the start is graceful too).
pub(crate) struct Stop {
    int: Option<Signal>,
    term: Option<Signal>,
}

impl Stop {
    pub(crate) fn register() -> Stop {
        Stop { int: signal(SignalKind::interrupt()).ok(), term: signal(SignalKind::terminate()).ok() }
    }

    pub(crate) async fn wait(mut self) {
        async fn recv(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.int) => {}
            _ = recv(&mut self.term) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_for_sh_only_when_needed() {
        assert_eq!(shell_quote("http://127.0.0.1:7081/api"), "http://127.0.0.1:7081/api");
        assert_eq!(shell_quote("ContraForce Bridge"), "'ContraForce Bridge'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
