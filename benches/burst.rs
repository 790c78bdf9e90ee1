//! Bursts at Halo's rate: a ContraForce-like sender delivers a burst of new incidents (a phishing campaign hitting
//! many mailboxes) to the real binary under the stand-in Functions host, with Azurite for its tables and queues and a
//! fake Halo that enforces a tenant budget (at most `BURST_BUDGET` API requests in any rolling
//! `BURST_WINDOW_SECONDS`, answering 429 with `Retry-After` beyond it). The bridge is set to the same budget
//! (`HALO_RATE_LIMIT`, `HALO_RATE_WINDOW_SECONDS`): what it cannot start inline is queued with the wait, and the
//! `work-items` queue trigger does it when a slot frees.
//!
//! Reports the time until the last ticket exists against the budget's minimum (the last of `N` calls cannot start
//! before `(ceil(N / budget) - 1) × window`), the 429s Halo answered, tickets per incident and incidents without one.
//! Time is scaled down (hosted Halo's window is 300 s): the queue's `maxPollingInterval` (10 s in host.json) is
//! scaled with it to 250 ms, and `INLINE_BUDGET_SECONDS` to 1 s.
//!
//! ```text
//! cargo bench --bench burst      # BURST_N (1000) incidents, BURST_BUDGET (100) calls per BURST_WINDOW_SECONDS (10),
//!                                # BURST_SENDERS (16) concurrent senders; BURST_PACE=off runs the bridge
//!                                # without its limit (HALO_RATE_LIMIT 10000), to see what it saves
//! ```
//!
//! Under `cargo test` (no `--bench` argument) this does nothing.

mod common;
#[allow(dead_code)]
#[path = "e2e_support/load.rs"]
mod load;

use common::{typical_event, Endpoints};
use futures::StreamExt;
use load::Target;
use sandbox::azurite::Azurite;
use sandbox::cf::{CfConfig, FakeCf};
use sandbox::halo::{Budget, FakeHalo, HaloConfig};
use sandbox::host::{HostOptions, QueueOverrides, StandInHost};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("burst: nothing to do outside `cargo bench --bench burst`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    runtime.expect("a runtime").block_on(run());
}

async fn run() {
    let n = knob("BURST_N", 1_000) as usize;
    let budget = knob("BURST_BUDGET", 100) as usize;
    let window = Duration::from_secs(knob("BURST_WINDOW_SECONDS", 10));
    let senders = knob("BURST_SENDERS", 16) as usize;
    let paced = std::env::var("BURST_PACE").map_or(true, |v| v != "off");

    let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
    let halo = FakeHalo::start(HaloConfig {
        budget: Some(Budget { requests: budget, window, retry_after: true }),
        ..HaloConfig::test()
    });
    let cf = FakeCf::start(CfConfig::test());
    let mut env = Endpoints::of_fakes(&halo, &cf, azurite.connection_string()).env();
    env.retain(|(k, _)| k != "STATE_TABLE_NAME");
    for (name, value) in [
        ("STATE_TABLE_NAME", format!("burst{}", std::process::id())),
        ("RECONCILE_SCHEDULE", "0 0 0 1 1 *".to_string()),
        ("HALO_RATE_LIMIT", if paced { budget.to_string() } else { "10000".to_string() }),
        ("HALO_RATE_WINDOW_SECONDS", window.as_secs().to_string()),
        ("INLINE_BUDGET_SECONDS", "1".to_string()),
        ("LOG_LEVEL", "warn".to_string()),
    ] {
        env.push((name.to_string(), value));
    }
    let mut options = HostOptions::new(common::repo_root()).executable(env!("CARGO_BIN_EXE_handler"));
    options.env = env;
    options.queues = QueueOverrides { max_polling_interval: Some(Duration::from_millis(250)), ..Default::default() };
    let host = StandInHost::start(options).await.expect("the handler starts under the stand-in host");
    let target = Target::new(&format!("{}/api", host.url()), Some(host.function_key().to_string()));
    let tag = format!("burst-{}", std::process::id());

    let started = Instant::now();
    let answers: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let target = &target;
            let tag = &tag;
            async move {
                let body = serde_json::to_vec(&typical_event(&format!("{tag}-{i}"), i as i64 + 1)).unwrap();
                match target.cf(&format!("{tag}-evt-{i}"), &body, false).await {
                    Ok(answer) => answer["status"].as_str().unwrap_or("?").to_string(),
                    Err(e) => format!("error: {}", e.chars().take(60).collect::<String>()),
                }
            }
        })
        .buffer_unordered(senders)
        .collect()
        .await;
    let delivered = started.elapsed();
    let give_up = window * (n / budget.max(1) + 1) as u32 * 3 + Duration::from_secs(120);
    while halo.tickets().len() < n && started.elapsed() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_ticket = started.elapsed();

    let mut per_reference: BTreeMap<String, usize> = BTreeMap::new();
    for ticket in halo.tickets() {
        *per_reference.entry(ticket.supplier_reference.unwrap_or_default()).or_default() += 1;
    }
    let lost = (0..n).filter(|i| !per_reference.contains_key(&format!("cf|sentinel|{tag}-{i}"))).count();
    let most = per_reference.values().copied().max().unwrap_or(0);
    let api_calls = halo.requests().iter().filter(|r| r.path.starts_with("/api/")).count();
    let refused = halo.rate_limited();
    let minimum = window * (n.div_ceil(budget.max(1)) as u32).saturating_sub(1);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for answer in answers {
        *outcomes.entry(answer).or_default() += 1;
    }
    let outcomes: Vec<String> = outcomes.into_iter().map(|(k, v)| format!("{k} {v}")).collect();

    println!("| Incidents | Budget | Bridge's limit | Minimum s | Last ticket s | Ratio | Halo calls | 429s | 429 share | Tickets per incident (max) | Without a ticket | Answers | Delivered in s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {budget} per {} s | {} | {:.1} | {:.1} | {:.3} | {api_calls} | {refused} | {:.2}% | {most} | {lost} | {} | {:.1} |",
        window.as_secs(),
        if paced { "the budget" } else { "off" },
        minimum.as_secs_f64(),
        last_ticket.as_secs_f64(),
        last_ticket.as_secs_f64() / minimum.as_secs_f64().max(f64::MIN_POSITIVE),
        100.0 * refused as f64 / api_calls.max(1) as f64,
        outcomes.join(", "),
        delivered.as_secs_f64(),
    );
    drop(host);
}
