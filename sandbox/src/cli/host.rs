//! `sandbox host`: runs a handler under the stand-in Functions host until SIGINT/SIGTERM (`scripts/run-local`).

use std::path::PathBuf;
use std::time::Duration;

use sandbox::host::{HostOptions, StandInHost, Trigger};

use super::serve::Stop;
use super::{failed, Args, CmdResult};

const USAGE: &str = "usage: sandbox host [--app-root DIR] [--port PORT] [--executable PATH] [--enforce-keys]
                    [--local-settings]

Runs the handler of a Functions app under the stand-in Functions host on 127.0.0.1, as
`func start` does: HTTP functions at /api/<route>, queue triggers polled from the storage
account in their connection setting (AzureWebJobsStorage), timer and queue functions invoked
with POST /admin/functions/<name>. The handler gets this process's whole environment. Every
line the handler prints, and the host's own lines (prefixed [host]), go to stdout/stderr.
Runs until interrupted (Ctrl-C or SIGTERM), then stops the handler with SIGTERM; exits 1 if
the handler exits on its own.

  --app-root DIR      holds host.json and the function folders (default: .)
  --port PORT         the host's port (default 7071)
  --executable PATH   the handler (default: host.json's defaultExecutablePath)
  --enforce-keys      require function keys (off, as with `func start`)
  --local-settings    also read Values of local.settings.json in the app root";

struct Options {
    app_root: PathBuf,
    port: u16,
    executable: Option<PathBuf>,
    enforce_keys: bool,
    local_settings: bool,
}

fn parse(mut args: Args) -> Result<Options, super::Failure> {
    args.usage(USAGE);
    let mut parsed = Options {
        app_root: PathBuf::from("."),
        port: 7071,
        executable: None,
        enforce_keys: false,
        local_settings: false,
    };
    while let Some(name) = args.next_option()? {
        match name.as_str() {
            "--app-root" => parsed.app_root = PathBuf::from(args.value(&name)?),
            "--port" => parsed.port = args.parsed(&name)?,
            "--executable" => parsed.executable = Some(PathBuf::from(args.value(&name)?)),
            "--enforce-keys" => parsed.enforce_keys = true,
            "--local-settings" => parsed.local_settings = true,
            other => return Err(args.unknown(other)),
        }
    }
    Ok(parsed)
}

pub async fn run(args: Args) -> CmdResult {
    let args = parse(args)?;
    let stop = Stop::register();
    let mut options = HostOptions::new(&args.app_root);
    options.executable = args.executable;
    options.inherit_env = true;
    options.load_local_settings = args.local_settings;
    options.listen_port = Some(args.port);
    options.enforce_keys = args.enforce_keys;
    options.print_logs = true;
    let host = StandInHost::start(options).await.map_err(|e| failed(format!("sandbox host: {e}")))?;
    say!("[host] stand-in Functions host on {}, handler {}", host.url(), host.executable().display());
    for f in host.functions() {
        say!("[host]   {}: {}", f.name, host.function_url(&f.name));
    }
    for f in host.triggered_functions() {
        match f.trigger {
            Trigger::Queue { queue_name, connection } => {
                say!("[host]   {}: queueTrigger on '{queue_name}' ({connection})", f.name)
            }
            Trigger::Timer { schedule } => {
                say!(
                    "[host]   {}: timerTrigger '{schedule}' (on demand: POST {}/admin/functions/{})",
                    f.name,
                    host.url(),
                    f.name
                )
            }
        }
    }
    let exited = async {
        loop {
            if let Some(status) = host.handler_exited() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        biased; // a stop that reaches the handler too (Ctrl-C to the process group) is a stop, not an exit
        () = stop.wait() => {
            host.shutdown().await;
            Ok(())
        }
        status = exited => Err(failed(format!("sandbox host: the handler exited on its own ({status})"))),
    }
}
