//! Wall time per event when every round trip costs what it costs in Azure. A proxy in front of Azurite makes each
//! Table Storage call last `LAT_TABLE_MS` (8) ms (Azurite's own time within it), the fake Halo each call wait
//! `LAT_HALO_MS` (150) ms and the fake
//! ContraForce `LAT_CF_MS` (120) ms, each ± a quarter of it (uniform jitter, seeded). For each path, at 1 and 16
//! concurrent senders, it reports the median time the sender waited against the sum of the round trips the path
//! makes: modelled (the calls counted per event by the proxy and the fakes, at the mean latencies), and as waited
//! (the proxy's time per Table call from arrival to answer, Azurite's own time included, plus the waits the fakes
//! drew). The ratio says how much of an event's time is the bridge's own. And an estimate of the Flex Consumption bill per million events from the
//! measured time (the instance's active time, at `instanceMemoryMB` 512) at the price in docs/benchmarks.md.
//!
//! ```text
//! cargo bench --bench latency    # LAT_N1 (60) events per path at 1 sender, LAT_N16 (160) at LAT_SENDERS (16);
//!                                # LAT_PATHS=new,duplicate,... some paths only
//! ```
//!
//! Under `cargo test` (no `--bench` argument) this does nothing.

mod common;
#[allow(dead_code)]
mod e2e_support;

use common::{later_event, typical_event, typical_note_html, Endpoints};
use e2e_support::load::{drive, expect_status, median, Driven, Target};
use e2e_support::proc::Proc;
use sandbox::azurite::Azurite;
use sandbox::cf::{CfConfig, FakeCf};
use sandbox::faults::Latency;
use sandbox::halo::{FakeHalo, HaloConfig, NewAction, NewTicket};
use sandbox::proxy::{reads_writes, CountingProxy};
use std::time::Duration;

/// Flex Consumption, on demand (docs/benchmarks.md cites the source and its date).
const PRICE_PER_GB_S: f64 = 0.000026;
const PRICE_PER_MILLION_EXECUTIONS: f64 = 0.40;
const INSTANCE_GB: f64 = 0.5;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn latency(ms: u64) -> Latency {
    Latency { mean: Duration::from_millis(ms), jitter: Duration::from_micros(ms * 250) }
}

fn main() {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("latency: nothing to do outside `cargo bench --bench latency`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    runtime.expect("a runtime").block_on(run());
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    New,
    Duplicate,
    Later,
    Unlinked,
    Quiet,
    Comment,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::New => "new incident",
            Path::Duplicate => "duplicate",
            Path::Later => "later event",
            Path::Unlinked => "halo-webhook, unlinked ticket",
            Path::Quiet => "halo-webhook, nothing new",
            Path::Comment => "halo-webhook, one comment",
        }
    }

    fn answer(self) -> &'static str {
        match self {
            Path::New => "created",
            Path::Duplicate => "duplicate",
            Path::Later => "updated",
            Path::Unlinked => "ignored",
            Path::Quiet | Path::Comment => "processed",
        }
    }
}

/// Upstream calls, and the time they took.
#[derive(Clone, Copy)]
struct Calls {
    table: u64,
    halo: u64,
    cf: u64,
    waited: Duration,
}

impl std::ops::Sub for Calls {
    type Output = Calls;
    fn sub(self, before: Calls) -> Calls {
        Calls {
            table: self.table - before.table,
            halo: self.halo - before.halo,
            cf: self.cf - before.cf,
            waited: self.waited.saturating_sub(before.waited),
        }
    }
}

struct Rig {
    halo: FakeHalo,
    cf: FakeCf,
    proxy: CountingProxy,
    /// The handler measured now (a fresh one, with a table of its own, per path and level).
    target: Target,
    ms: (f64, f64, f64),
}

impl Rig {
    /// Table calls, Halo calls and ContraForce calls so far, and the time spent upstream.
    fn calls(&self) -> Calls {
        let (reads, writes) = reads_writes(&Default::default(), &self.proxy.counts());
        let cf = self.cf.requests().iter().filter(|r| r.path.contains("/incidents/")).count();
        let waited = self.proxy.busy() + self.halo.faults().waited() + self.cf.faults().waited();
        Calls { table: reads + writes, halo: self.halo.count("*", "/api/") as u64, cf: cf as u64, waited }
    }

    /// A ticket the bridge created, synced once (so its next webhook has nothing new).
    async fn linked_ticket(&self, tag: &str, k: usize) -> i64 {
        let body = serde_json::to_vec(&typical_event(&format!("{tag}-{k}"), 80_000 + k as i64)).unwrap();
        let answer = self.target.cf(&format!("{tag}-evt-{k}"), &body, false).await.expect("a ticket");
        let ticket = answer["ticketId"].as_i64().expect("ticketId");
        self.target.halo(ticket).await.expect("the first sync");
        ticket
    }
}

async fn run() {
    let (n1, n16) = (knob("LAT_N1", 60) as usize, knob("LAT_N16", 160) as usize);
    let many = knob("LAT_SENDERS", 16) as usize;
    let ms = (knob("LAT_TABLE_MS", 8), knob("LAT_HALO_MS", 150), knob("LAT_CF_MS", 120));
    let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
    let proxy =
        CountingProxy::start_with_latency(format!("http://127.0.0.1:{}", azurite.port()), Some(latency(ms.0))).await;
    let halo = FakeHalo::start(HaloConfig::test());
    halo.faults().set_latency(Some(latency(ms.1)), 1);
    let cf = FakeCf::start(CfConfig::test());
    cf.faults().set_latency(Some(latency(ms.2)), 2);
    let mut env = Endpoints::of_fakes(&halo, &cf, proxy.connection_string(&azurite.queue_endpoint())).env();
    env.retain(|(k, _)| k != "STATE_TABLE_NAME" && k != "LOG_LEVEL");
    for (name, value) in [("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("HALO_RATE_LIMIT", "10000"), ("LOG_LEVEL", "warn")] {
        env.push((name.to_string(), value.to_string()));
    }
    let mut rig = Rig { halo, cf, proxy, target: Target::new("http://127.0.0.1:9/api", None), ms: (0.0, 0.0, 0.0) };
    rig.ms = (ms.0 as f64, ms.1 as f64, ms.2 as f64);

    println!("Modelled latency per call: Table {} ms, Halo {} ms, ContraForce {} ms (each ± 25%).\n", ms.0, ms.1, ms.2);
    println!("| Path | Senders | Events | Calls per event (Table / Halo / CF) | Round trips ms, modelled | waited | Median ms | p90 ms | p99 ms | Ratio to modelled | to waited | slowest Table call ms | Table calls / events over 500 ms | Flex $ per million |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let only = std::env::var("LAT_PATHS").ok();
    let paths: Vec<Path> = [Path::New, Path::Duplicate, Path::Later, Path::Unlinked, Path::Quiet, Path::Comment]
        .into_iter()
        .filter(|p| only.as_deref().is_none_or(|o| o.split(',').any(|w| w.trim() == slug(*p))))
        .collect();
    for (level, (senders, n)) in [(1usize, n1), (many, n16)].into_iter().enumerate() {
        for &path in &paths {
            // A fresh handler with a table of its own: Azurite answers a query by scanning the whole table (Azure
            // reads the one partition), so a table grown by the paths before would slow the ones after.
            let mut env = env.clone();
            env.push(("STATE_TABLE_NAME".into(), format!("lat{}x{level}x{}", std::process::id(), slug(path))));
            let mut handler = Proc::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_handler")), &env);
            handler.wait_ready(Duration::from_secs(30));
            rig.target = Target::new(&handler.url("/api"), None);
            // Warm up: the table exists, the tokens are cached, the pools hold connections.
            for k in 0..2 {
                rig.linked_ticket(&format!("warm-{level}-{}", slug(path)), k).await;
            }
            let calls_before = rig.proxy.times().len();
            let driven = measure(&rig, path, &format!("{}-{level}", slug(path)), senders, n).await;
            drop(handler);
            let Some((driven, calls)) = driven else { continue };
            // The slowest Table call made while the path ran (its preparation included).
            let table_times = rig.proxy.times()[calls_before..].to_vec();
            let slowest = table_times.iter().max().copied().unwrap_or_default();
            let over = |ms: u64| table_times.iter().filter(|t| **t > Duration::from_millis(ms)).count();
            let slow_events = driven.latencies_ms.iter().filter(|l| **l > 500.0).count();
            let per = |c: u64| c as f64 / n as f64;
            let limit = per(calls.table) * rig.ms.0 + per(calls.halo) * rig.ms.1 + per(calls.cf) * rig.ms.2;
            let waited = calls.waited.as_secs_f64() * 1000.0 / n as f64;
            let med = median(&driven.latencies_ms);
            // The instance is billed while it executes: at 16 senders the executions overlap, so the active time
            // is the run's, shared by its events.
            let active_s = if senders == 1 { med / 1000.0 } else { driven.wall.as_secs_f64() / n as f64 };
            let dollars = 1e6 * active_s * INSTANCE_GB * PRICE_PER_GB_S + PRICE_PER_MILLION_EXECUTIONS;
            println!(
                "| {} | {senders} | {n} | {:.2} / {:.2} / {:.2} | {limit:.1} | {waited:.1} | {med:.1} | {:.1} | {:.1} | \
                 {:.3} | {:.3} | {:.1} | {} / {slow_events} | {dollars:.2} |",
                path.name(),
                per(calls.table),
                per(calls.halo),
                per(calls.cf),
                driven.p(0.9),
                driven.p(0.99),
                med / limit,
                med / waited,
                slowest.as_secs_f64() * 1000.0,
                over(500),
            );
        }
    }
}

fn slug(path: Path) -> &'static str {
    match path {
        Path::New => "new",
        Path::Duplicate => "dup",
        Path::Later => "later",
        Path::Unlinked => "unlinked",
        Path::Quiet => "quiet",
        Path::Comment => "comment",
    }
}

/// Prepares `n` events of `path`, sends them `senders` at a time, and counts the calls they made.
async fn measure(rig: &Rig, path: Path, tag: &str, senders: usize, n: usize) -> Option<(Driven, Calls)> {
    // What each event needs, made before the clock starts.
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut tickets: Vec<i64> = Vec::new();
    match path {
        Path::New => {}
        Path::Duplicate | Path::Later => {
            for k in 0..n.min(16) {
                let body = serde_json::to_vec(&typical_event(&format!("{tag}-{k}"), 90_000 + k as i64)).unwrap();
                rig.target.cf(&format!("{tag}-evt-{k}"), &body, false).await.expect("an incident");
                bodies.push(body);
            }
        }
        Path::Unlinked => {
            tickets = (0..n).map(|_| rig.halo.create_ticket_direct(NewTicket::default())).collect();
        }
        Path::Quiet | Path::Comment => {
            for k in 0..n {
                tickets.push(rig.linked_ticket(tag, k).await);
            }
            if path == Path::Comment {
                for (i, t) in tickets.iter().enumerate() {
                    rig.halo.add_action(*t, NewAction::human("Sam Agent", 2, &typical_note_html(i), false));
                }
            }
        }
    }
    let before = rig.calls();
    let driven = drive(n, senders, |i| {
        let (bodies, tickets) = (&bodies, &tickets);
        async move {
            let answer = match path {
                Path::New => {
                    let body = serde_json::to_vec(&typical_event(&format!("{tag}-new-{i}"), i as i64 + 1)).unwrap();
                    rig.target.cf(&format!("{tag}-evt-new-{i}"), &body, false).await?
                }
                Path::Duplicate => {
                    let k = i % bodies.len();
                    rig.target.cf(&format!("{tag}-evt-{k}"), &bodies[k], false).await?
                }
                Path::Later => {
                    let k = i % bodies.len();
                    rig.target.cf(&format!("{tag}-later-{i}"), &later_event(&bodies[k], i), false).await?
                }
                Path::Unlinked | Path::Quiet | Path::Comment => rig.target.halo(tickets[i]).await?,
            };
            expect_status(&answer, path.answer())
        }
    })
    .await;
    if driven.failures > 0 {
        println!("| {} | {senders} | {n} | failed: {:?} |", path.name(), driven.first_failure);
        return None;
    }
    Some((driven, rig.calls() - before))
}
