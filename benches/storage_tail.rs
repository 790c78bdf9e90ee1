//! Is the 128-sender tail of the write paths the bridge's? This takes the handler out: the bridge's own Table
//! Storage client (`store::AzureTable` through `Store`, the same SDK, pool and retry policy) inserts run records
//! straight into Azurite at 1, 16 and 128 concurrent units, on a current-thread runtime as the handler runs: a unit
//! is one write, or a new incident's storage shape (1 read, then 3 writes). Reports p50, p99 and the share of units
//! slower than 1 s.
//!
//! ```text
//! cargo bench --bench storage_tail        # STORAGE_TAIL_N (1000) units per level; STORAGE_TAIL_THREADS=2 for a
//!                                         # multi-thread runtime
//! ```
//!
//! Under `cargo test` (no `--bench` argument) this does nothing.

use cf_halo_bridge::app::App;
use cf_halo_bridge::config::{Config, Env};
use cf_halo_bridge::store::runs::RunRecord;
use futures::StreamExt;
use sandbox::azurite::Azurite;
use std::time::Instant;

fn main() {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("storage_tail: nothing to do outside `cargo bench --bench storage_tail`");
        return;
    }
    let n: usize = std::env::var("STORAGE_TAIL_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    // STORAGE_TAIL_THREADS=N runs the client on a multi-thread runtime of N workers instead (the handler's is one).
    let runtime = match std::env::var("STORAGE_TAIL_THREADS").ok().and_then(|v| v.parse::<usize>().ok()) {
        Some(threads) => tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build(),
        None => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    runtime.unwrap().block_on(run(n));
}

async fn run(n: usize) {
    let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
    let settings = [
        ("AzureWebJobsStorage", azurite.connection_string()),
        ("STATE_TABLE_NAME", format!("tail{}", std::process::id())),
        ("RECONCILE_SCHEDULE", "0 */5 * * * *".to_string()),
    ];
    let app = App::new(Config::from_env(&Env::from_pairs(settings)).expect("settings")).expect("app");
    let store = app.store.clone().expect("state storage");
    println!("| Unit | Concurrent | Units | Units/s | p50 ms | p99 ms | max ms | share > 1 s | failed |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut serial = 0usize;
    for (calls, writers) in [(1usize, 1usize), (1, 16), (1, 128), (4, 1), (4, 16), (4, 128)] {
        let started = Instant::now();
        let base = serial;
        serial += n;
        let mut times: Vec<f64> = futures::stream::iter(0..n)
            .map(|i| {
                let store = store.clone();
                async move {
                    let run = |k: usize| RunRecord {
                        received_ms: 1_796_378_400_000 + ((base + i) * 4 + k) as i64,
                        function: "cf-webhook".into(),
                        outcome: "created".into(),
                        correlation_id: format!("{:016x}", (base + i) * 4 + k),
                        ..RunRecord::default()
                    };
                    let t = Instant::now();
                    let done = if calls == 1 {
                        store.record_run(&run(0)).await.is_ok()
                    } else {
                        // A new incident's shape: one read, then three writes one after another.
                        let key = run(0).key();
                        let mut ok = store.get::<RunRecord>(&key).await.is_ok();
                        for k in 0..3 {
                            ok = ok && store.record_run(&run(k)).await.is_ok();
                        }
                        ok
                    };
                    // A failed unit (a call past the client's time limit) counts as slower than any.
                    if done {
                        t.elapsed().as_secs_f64() * 1000.0
                    } else {
                        f64::INFINITY
                    }
                }
            })
            .buffer_unordered(writers)
            .collect()
            .await;
        let wall = started.elapsed().as_secs_f64();
        times.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
        let slow = times.iter().filter(|t| **t > 1000.0).count() as f64 / times.len() as f64;
        let failed = times.iter().filter(|t| t.is_infinite()).count();
        let finite: Vec<f64> = times.iter().copied().filter(|t| t.is_finite()).collect();
        let unit = if calls == 1 { "1 write" } else { "1 read + 3 writes" };
        println!(
            "| {unit} | {writers} | {n} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1}% | {failed} |",
            n as f64 / wall,
            at(0.5),
            at(0.99),
            finite.last().copied().unwrap_or_default(),
            slow * 100.0
        );
    }
}
