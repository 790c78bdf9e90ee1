//! `sandbox halo-outage` (`scripts/demo-halo-outage`): the sandbox Halo answers every call with 503 for a while.
//! An incident sent meanwhile is answered `queued`; when Halo is back, the bridge's `work-items` queue trigger
//! retries it and its ticket appears. The command watches for new tickets and says when each arrived.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{default_halo_url, failed, get_json, http, post_json, trim_url, Args, CmdResult, Failure};

const USAGE: &str = "usage: sandbox halo-outage [options]      (scripts/demo-halo-outage)

Takes the sandbox Halo down: every API call (the token's too) answers 503 for --seconds. Send
an incident meanwhile (scripts/demo-incident --new-incident, in another terminal): the bridge
answers `queued`. When Halo is back, the work-items queue trigger retries the work, and this
command says which tickets arrived and how long after Halo came back.

  --seconds N          how long Halo stays down (default 60)
  --watch N            how long to watch for queued work after Halo is back (default 180 seconds)
  --expect N           stop watching once N new tickets arrived; exit 1 if they did not within --watch
  --halo-url URL       the sandbox Halo (default $SANDBOX_HALO_URL, else port $SANDBOX_HALO_PORT, 7081)

Exits 0 when Halo went down and came back (and --expect's tickets arrived), 1 otherwise (Halo is always
brought back).";

struct Options {
    down_for: Duration,
    watch_for: Duration,
    expect: Option<usize>,
    halo_url: String,
}

fn parse(mut args: Args) -> Result<Options, Failure> {
    args.usage(USAGE);
    let mut o = Options {
        down_for: Duration::from_secs(60),
        watch_for: Duration::from_secs(180),
        expect: None,
        halo_url: default_halo_url(),
    };
    while let Some(name) = args.next_option()? {
        match name.as_str() {
            "--seconds" => o.down_for = Duration::from_secs(args.parsed("--seconds")?),
            "--watch" => o.watch_for = Duration::from_secs(args.parsed("--watch")?),
            "--expect" => o.expect = Some(args.parsed("--expect")?),
            "--halo-url" => o.halo_url = trim_url(&args.value("--halo-url")?),
            other => return Err(args.unknown(other)),
        }
    }
    Ok(o)
}

async fn ticket_ids(http: &reqwest::Client, halo_url: &str) -> Result<Vec<i64>, String> {
    let tickets = get_json(http, &format!("{halo_url}/_sandbox/tickets")).await?;
    Ok(tickets
        .as_array()
        .map(|t| t.iter().filter_map(|t| t.get("id").and_then(Value::as_i64)).collect())
        .unwrap_or_default())
}

pub async fn run(args: Args) -> CmdResult {
    let o = parse(args)?;
    let http = http();
    let outage = format!("{}/_sandbox/outage", o.halo_url);
    let before = ticket_ids(&http, &o.halo_url).await.map_err(|e| {
        failed(format!("the sandbox Halo at {} does not answer ({e}); run scripts/run-local first", o.halo_url))
    })?;
    post_json(&http, &outage, &json!({})).await.map_err(|e| failed(format!("could not take Halo down: {e}")))?;
    say!("The sandbox Halo is down for {} s: every call answers 503.", o.down_for.as_secs());
    say!("Now, in another terminal: scripts/demo-incident --new-incident   (the bridge answers `queued`)");
    tokio::time::sleep(o.down_for).await;
    // Brought back whatever happens next.
    let back = http.delete(&outage).send().await;
    if !back.as_ref().is_ok_and(|r| r.status().is_success()) {
        return Err(failed(format!("could not bring the sandbox Halo back: DELETE {outage} failed")));
    }
    let back_at = Instant::now();
    say!("The sandbox Halo is back. Watching for queued work for up to {} s ...", o.watch_for.as_secs());
    let mut seen = before.clone();
    let arrived = |seen: &Vec<i64>| seen.iter().filter(|id| !before.contains(id)).count();
    while back_at.elapsed() < o.watch_for && o.expect.is_none_or(|n| arrived(&seen) < n) {
        if let Ok(now) = ticket_ids(&http, &o.halo_url).await {
            for id in now.iter().filter(|id| !seen.contains(id)) {
                say!(
                    "  ticket #{id} created {:.0} s after Halo came back (the queue trigger's retry)",
                    back_at.elapsed().as_secs_f64()
                );
            }
            seen = now;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    say!("Done watching. The bridge's log (.local/logs/handler.log) shows each attempt of the work-items function.");
    match o.expect {
        Some(n) if arrived(&seen) < n => Err(failed(format!(
            "{} of the {n} expected tickets arrived within {} s",
            arrived(&seen),
            o.watch_for.as_secs()
        ))),
        _ => Ok(()),
    }
}
