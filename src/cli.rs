//! The `handler` command line: serve (what the Functions host starts), and the operator's subcommands.

use crate::app::App;
use crate::config::{Config, Env};
use crate::directions::reconcile::{Mode, Ran};
use crate::domain::{unix_now, TicketId};
use crate::import_links::{self, Options};
use crate::work::{Ledger, Replay};
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
  dead-letters     list the work ledger: dead-lettered, uncertain and queued work, one line each
  replay <work id> put a dead-lettered or uncertain item back on the work queue (idempotent: work that has
                   meanwhile been done is not done again); `replay --all` replays every dead letter
                   (run with the app's storage settings: AzureWebJobsStorage or the identity-based ones)
  import-links [--dry-run] [--from-page N]
                   cut-over from Logic App 01: scan Halo's tickets for `cf|source|id` references (also in
                   thirdpartynumber) and record each as a link the bridge made (never overwriting one); one line
                   per ticket and a summary; --dry-run writes nothing; run again to resume (linked ones are
                   skipped), or --from-page N to start the scan at page N (of 100 tickets)
                   (run with the app's storage and Halo settings)
  reconcile [--dry-run | --ticket N]
                   one reconcile pass now, as the timer runs it (the watch list checked against Halo within
                   RECONCILE_HALO_CALLS, changed tickets synced once); --dry-run syncs nothing and prints what a
                   run would sync and the Halo calls it would use; --ticket N syncs ticket N as a webhook would
                   (a reopened ticket is back on the watch list) (run with the app's settings)
  runs [--failed] [--incident REF] [--ticket N] [--since 24h]
                   the run history, as the status page shows it: one line per delivery (newest first; oldest
                   first when following one incident or ticket: its timeline), then what is waiting now;
                   --failed keeps the ones that failed or wait (queued, retried, dead-lettered, uncertain,
                   unavailable); --since 90m | 24h | 7d (default 24h; 30d with --incident or --ticket)
                   (run with the app's storage settings)
  --version        print the version
  -h, --help       print this help
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Check,
    ListSettings,
    Version,
    Help,
    DeadLetters,
    Runs(RunsOptions),
    /// One work id, or `None` for every dead letter (`--all`).
    Replay(Option<String>),
    ImportLinks(Options),
    Reconcile(ReconcileWhat),
}

/// What `handler reconcile` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileWhat {
    Run(Mode),
    Ticket(TicketId),
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
            Some("dead-letters") => Command::DeadLetters,
            Some("replay") => {
                return match (args.get(1).map(String::as_str), args.get(2)) {
                    (None, _) => Err("replay needs a work id (from `handler dead-letters`) or --all".into()),
                    (Some(_), Some(extra)) => Err(format!("unexpected argument `{extra}`")),
                    (Some("--all"), None) => Ok(Command::Replay(None)),
                    (Some(id), None) if id.starts_with('-') => Err(format!("unknown argument `{id}`")),
                    (Some(id), None) => Ok(Command::Replay(Some(id.to_string()))),
                }
            }
            Some("import-links") => return import_options(&args[1..]).map(Command::ImportLinks),
            Some("runs") => return runs_options(&args[1..]).map(Command::Runs),
            Some("reconcile") => {
                let what = match (args.get(1).map(String::as_str), args.get(2).map(String::as_str)) {
                    (None, _) => ReconcileWhat::Run(Mode::Apply),
                    (Some("--dry-run"), None) => ReconcileWhat::Run(Mode::DryRun),
                    (Some("--ticket"), Some(n)) => match n.parse::<TicketId>() {
                        Ok(n) if n > 0 && args.len() == 3 => ReconcileWhat::Ticket(n),
                        Ok(n) if n > 0 => return Err(format!("unexpected argument `{}`", args[3])),
                        _ => return Err("--ticket needs a Halo ticket id".into()),
                    },
                    (Some("--ticket"), None) => return Err("--ticket needs a Halo ticket id".into()),
                    (Some("--dry-run"), Some(extra)) => return Err(format!("unexpected argument `{extra}`")),
                    (Some(other), _) => return Err(format!("unknown argument `{other}`")),
                };
                return Ok(Command::Reconcile(what));
            }
            Some(other) => return Err(format!("unknown argument `{other}`")),
        };
        match args.get(1) {
            Some(extra) => Err(format!("unexpected argument `{extra}`")),
            None => Ok(command),
        }
    }
}

/// `handler runs`' options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunsOptions {
    pub failed: bool,
    pub incident: Option<String>,
    pub ticket: Option<TicketId>,
    /// How far back, in seconds (`None`: the page's default).
    pub since: Option<i64>,
}

fn runs_options(args: &[String]) -> Result<RunsOptions, String> {
    let mut options = RunsOptions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--failed" => options.failed = true,
            "--incident" => {
                options.incident =
                    Some(args.next().ok_or("--incident needs an incident reference (cf|source|id)")?.clone())
            }
            "--ticket" => {
                options.ticket = match args.next().map(|n| n.parse::<TicketId>()) {
                    Some(Ok(n)) if n > 0 => Some(n),
                    _ => return Err("--ticket needs a Halo ticket id".into()),
                }
            }
            "--since" => {
                let value = args.next().ok_or("--since needs a duration: 90m, 24h or 7d")?;
                options.since = Some(
                    duration_seconds(value).ok_or(format!("--since {value}: not a duration like 90m, 24h or 7d"))?,
                );
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
}

/// `90m`, `24h`, `7d` in seconds.
fn duration_seconds(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn import_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dry-run" => options.dry_run = true,
            "--from-page" => {
                options.from_page = match args.next().map(|n| n.parse::<i64>()) {
                    Some(Ok(n)) if n >= 1 => n,
                    _ => return Err("--from-page needs a page number (from 1)".into()),
                }
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
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
        Command::DeadLetters => with_ledger(|ledger| Box::pin(list(ledger))).await,
        Command::Runs(options) => with_app(move |app| Box::pin(runs(app, options))).await,
        Command::Replay(id) => with_ledger(move |ledger| Box::pin(replay(ledger, id))).await,
        Command::ImportLinks(options) => with_app(move |app| Box::pin(import(app, options))).await,
        Command::Reconcile(what) => with_app(move |app| Box::pin(reconcile(app, what))).await,
    }
}

async fn reconcile(app: App, what: ReconcileWhat) -> Result<(), String> {
    let off = |off: crate::app::DirectionOff| {
        let problems: Vec<String> = off.problems.iter().map(ToString::to_string).collect();
        format!("{} is off: {}", off.direction, problems.join("; "))
    };
    match what {
        ReconcileWhat::Ticket(ticket) => {
            let sync = app.halo_webhook(crate::directions::reconcile::RUN_BUDGET).map_err(off)?;
            let outcome = sync.sync(ticket).await.map_err(|e| e.to_string())?;
            println!("ticket {ticket}: {outcome:?}");
        }
        ReconcileWhat::Run(mode) => {
            let ran = app.reconcile().map_err(off)?.run(mode).await.map_err(|e| e.to_string())?;
            if let (Mode::DryRun, Ran::Done(report)) = (mode, &ran) {
                for planned in &report.synced {
                    println!("would sync ticket {}: {:?}", planned.ticket, planned.need);
                }
                println!(
                    "dry run, nothing synced: {} of {} watched tickets checked with {} Halo calls; the syncs would add {} \
                     ({} of RECONCILE_HALO_CALLS in all){}",
                    report.checked,
                    report.watched,
                    report.halo_calls,
                    report.planned_calls,
                    report.halo_calls + report.planned_calls,
                    report.cut_short.map(|c| format!(", cut short: {}", c.as_str())).unwrap_or_default()
                );
            } else {
                println!("{}", ran.summary());
            }
        }
    }
    Ok(())
}

/// Runs an operator command on the work ledger of the configured storage.
async fn with_ledger(
    command: impl FnOnce(Ledger) -> futures::future::BoxFuture<'static, Result<(), String>>,
) -> ExitCode {
    with_app(|app| match app.ledger {
        Some(ledger) => command(ledger),
        None => {
            Box::pin(async { Err("no work ledger: set AzureWebJobsStorage (or the identity-based settings)".into()) })
        }
    })
    .await
}

/// Runs an operator command on the app built from the process's settings, as the served handler builds it.
async fn with_app(command: impl FnOnce(App) -> futures::future::BoxFuture<'static, Result<(), String>>) -> ExitCode {
    let app = Config::from_env(&Env::from_process())
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        .and_then(App::new);
    match app {
        Ok(app) => match command(app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("handler: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("handler: {e}");
            ExitCode::from(2)
        }
    }
}

async fn list(ledger: Ledger) -> Result<(), String> {
    let records = ledger.list().await.map_err(|e| e.to_string())?;
    if records.is_empty() {
        println!("the work ledger is empty: nothing queued, dead-lettered or uncertain");
    }
    let now = unix_now();
    for (id, r) in records {
        let age = (now - r.updated_at).max(0) / 60;
        println!("{id}\t{:?}\tattempts={}\tupdated {age} min ago\t{}", r.state, r.attempts, r.reason);
    }
    Ok(())
}

async fn runs(app: App, options: RunsOptions) -> Result<(), String> {
    use crate::routes::status::{view, Filter};
    let filter = Filter { incident: options.incident.clone(), ticket: options.ticket, ..Filter::default() };
    let now_ms = crate::domain::unix_now_ms();
    let since_ms = options.since.map(|since| now_ms - since * 1000);
    // The page's newest 100, or everything since `--since`.
    let limit = if since_ms.is_some() { 10_000 } else { crate::routes::status::LIST_LIMIT };
    let page = view(&app, filter, now_ms, since_ms, limit).await.map_err(|e| e.to_string())?;
    let runs: Vec<_> = page.runs.iter().filter(|r| !options.failed || r.failed()).collect();
    for r in &runs {
        println!("{}", r.line());
    }
    let totals: Vec<String> = page.totals.iter().map(|(o, n)| format!("{o} {n}")).collect();
    println!(
        "{} deliveries listed; last 24 h: {}",
        runs.len(),
        if totals.is_empty() { "none".to_string() } else { totals.join(", ") }
    );
    for w in &page.work {
        println!("waiting: {}\t{:?}\tattempts={}\t{}", w.id, w.state, w.attempts, w.reason);
    }
    Ok(())
}

async fn import(app: App, options: Options) -> Result<(), String> {
    let summary = import_links::run(&app, &options, |line| println!("{line}")).await.map_err(|e| e.to_string())?;
    println!("{}{summary}", if options.dry_run { "dry run, nothing written: " } else { "" });
    Ok(())
}

async fn replay(ledger: Ledger, id: Option<String>) -> Result<(), String> {
    let ids = match id {
        Some(id) => vec![id],
        None => {
            let records = ledger.list().await.map_err(|e| e.to_string())?;
            let dead = records.into_iter().filter(|(_, r)| r.state == crate::store::WorkState::DeadLettered);
            dead.map(|(id, _)| id).collect()
        }
    };
    let mut failed = 0;
    for id in &ids {
        match ledger.replay(id).await {
            Ok(Replay::Queued) => println!("{id}: queued"),
            Ok(Replay::NothingToDo) => println!("{id}: nothing to do (done, or no such work)"),
            Ok(Replay::Unreadable) => println!("{id}: not replayable (an unreadable message, kept for reading)"),
            Err(e) => {
                failed += 1;
                println!("{id}: failed: {e}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} replays failed", ids.len())),
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
        assert_eq!(Command::parse(&args(&["dead-letters"])), Ok(Command::DeadLetters));
        assert_eq!(Command::parse(&args(&["replay", "halo-7"])), Ok(Command::Replay(Some("halo-7".into()))));
        assert_eq!(Command::parse(&args(&["replay", "--all"])), Ok(Command::Replay(None)));
        assert!(Command::parse(&args(&["replay"])).unwrap_err().contains("work id"));
        assert!(Command::parse(&args(&["replay", "--al"])).unwrap_err().contains("--al"));
        assert!(Command::parse(&args(&["replay", "a", "b"])).unwrap_err().contains("unexpected"));
        assert_eq!(Command::parse(&args(&["import-links"])), Ok(Command::ImportLinks(Options::default())));
        assert_eq!(
            Command::parse(&args(&["import-links", "--from-page", "3", "--dry-run"])),
            Ok(Command::ImportLinks(Options { dry_run: true, from_page: 3 }))
        );
        assert!(Command::parse(&args(&["import-links", "--from-page", "0"])).unwrap_err().contains("page number"));
        assert!(Command::parse(&args(&["import-links", "--from-page"])).unwrap_err().contains("page number"));
        assert!(Command::parse(&args(&["import-links", "--dryrun"])).unwrap_err().contains("--dryrun"));
        let reconcile = |w| Ok(Command::Reconcile(w));
        assert_eq!(Command::parse(&args(&["reconcile"])), reconcile(ReconcileWhat::Run(Mode::Apply)));
        assert_eq!(Command::parse(&args(&["reconcile", "--dry-run"])), reconcile(ReconcileWhat::Run(Mode::DryRun)));
        assert_eq!(Command::parse(&args(&["reconcile", "--ticket", "42"])), reconcile(ReconcileWhat::Ticket(42)));
        assert!(Command::parse(&args(&["reconcile", "--ticket"])).unwrap_err().contains("ticket id"));
        assert!(Command::parse(&args(&["reconcile", "--ticket", "x"])).unwrap_err().contains("ticket id"));
        assert!(Command::parse(&args(&["reconcile", "--ticket", "4", "5"])).unwrap_err().contains("`5`"));
        assert!(Command::parse(&args(&["reconcile", "--dry-run", "x"])).unwrap_err().contains("`x`"));
        assert!(Command::parse(&args(&["reconcile", "--dryrun"])).unwrap_err().contains("--dryrun"));
    }
}
