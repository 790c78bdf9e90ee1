//! The `handler` command line: serve (what the Functions host starts), and the operator's subcommands.

use crate::config::{Config, Env};
use crate::{check, settings, startup, telemetry};
use std::process::ExitCode;

pub const USAGE: &str = "\
Usage: handler [COMMAND]

The ContraForce <-> HaloPSA bridge, an Azure Functions custom handler. With no command it serves on
127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT (7071 when unset), configured by environment variables (app settings).

Commands:
  --check          validate the configuration and reach each configured dependency once (read-only);
                   one PASS/FAIL line each, exit code 1 when any fails
  --list-settings  print every setting the handler reads, as JSON
  --version        print the version
  -h, --help       print this help
";

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Serve,
    Check,
    ListSettings,
    Version,
    Help,
}

impl Command {
    /// The command of the first argument; the rest are refused so a typo is never silently ignored.
    pub fn parse(args: &[String]) -> Result<Command, String> {
        let command = match args.first().map(String::as_str) {
            None => Command::Serve,
            Some("--check") => Command::Check,
            Some("--list-settings") => Command::ListSettings,
            Some("--version") => Command::Version,
            Some("-h" | "--help" | "help") => Command::Help,
            Some(other) => return Err(format!("unknown argument `{other}`")),
        };
        match args.get(1) {
            Some(extra) => Err(format!("unexpected argument `{extra}`")),
            None => Ok(command),
        }
    }
}

/// Runs the command line's command.
pub async fn run(args: &[String]) -> ExitCode {
    let command = match Command::parse(args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("handler: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("handler {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::ListSettings => {
            println!("{}", settings::to_json());
            ExitCode::SUCCESS
        }
        Command::Check => run_check().await,
        Command::Serve => serve().await,
    }
}

async fn serve() -> ExitCode {
    let config = match Config::from_env(&Env::from_process()) {
        Ok(config) => config,
        Err(errors) => {
            // Before logging exists: the host shows stderr as an Error, which a failed start is.
            for e in &errors.0 {
                eprintln!("handler: {e}");
            }
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

async fn run_check() -> ExitCode {
    let lines = match Config::from_env(&Env::from_process()) {
        Ok(config) => check::run(config).await,
        Err(errors) => check::invalid_configuration(&errors),
    };
    print!("{}", check::render(&lines));
    if lines.iter().all(|l| l.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_parse_and_typos_are_refused() {
        assert_eq!(Command::parse(&args(&[])), Ok(Command::Serve));
        assert_eq!(Command::parse(&args(&["-h"])), Ok(Command::Help));
        assert_eq!(Command::parse(&args(&["--help"])), Ok(Command::Help));
        assert_eq!(Command::parse(&args(&["--check"])), Ok(Command::Check));
        assert!(Command::parse(&args(&["--chek"])).unwrap_err().contains("--chek"));
        assert!(Command::parse(&args(&["--check", "x"])).unwrap_err().contains("unexpected"));
    }
}
