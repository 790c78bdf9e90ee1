//! The status page with 10,000 run records in the table: the release `handler` under the stand-in host, Azurite
//! behind a counting proxy. Seeds the records over the last 24 hours, then times `GET /api/status` (HTML and
//! JSON): the first render (which writes the finished hours' summaries) and the steady state, with the Table
//! Storage calls each render makes.
//!
//! ```text
//! cargo bench --bench status_page        # STATUS_BENCH_RECORDS (10000) and STATUS_BENCH_RENDERS (40) to change
//! ```
//!
//! Under `cargo test` (no `--bench` argument) this does nothing.

use cf_halo_bridge::app::App;
use cf_halo_bridge::config::{Config, Env};
use cf_halo_bridge::store::runs::RunRecord;
use futures::StreamExt;
use sandbox::azurite::Azurite;
use sandbox::host::{HostOptions, StandInHost};
use sandbox::proxy::{reads_writes, run_history_writes, CountingProxy};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const KEY: &str = "bench-status-page-key";
const OUTCOMES: [&str; 8] =
    ["created", "created", "updated", "duplicate", "processed", "processed", "completed", "dead-lettered"];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("status_page: nothing to do outside `cargo bench --bench status_page`");
        return;
    }
    let records = env_number("STATUS_BENCH_RECORDS", 10_000);
    let renders = env_number("STATUS_BENCH_RENDERS", 40);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(records, renders));
}

async fn run(records: usize, renders: usize) {
    let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
    let proxy = CountingProxy::start(format!("http://127.0.0.1:{}", azurite.port())).await;
    let storage = proxy.connection_string(&azurite.queue_endpoint());
    let table = format!("statusbench{}", std::process::id());
    let settings = [
        ("AzureWebJobsStorage", storage.clone()),
        ("STATE_TABLE_NAME", table.clone()),
        ("STATUS_PAGE_KEY", KEY.to_string()),
        ("HALO_WEB_URL", "https://halo.example.test".to_string()),
        ("RECONCILE_SCHEDULE", "0 */5 * * * *".to_string()),
        ("LOG_LEVEL", "warn".to_string()),
    ];

    // Seed: `records` deliveries spread evenly over the last 24 hours.
    let app = App::new(Config::from_env(&Env::from_pairs(settings.clone())).expect("settings")).expect("app");
    let store = app.store.clone().expect("state storage");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let span_ms = 24 * 3_600_000 - 60_000;
    let seeded = Instant::now();
    futures::stream::iter(0..records)
        .for_each_concurrent(32, |n| {
            let store = store.clone();
            async move {
                let run = RunRecord {
                    received_ms: now_ms - span_ms + (n as i64 * span_ms) / records as i64,
                    function: if n % 3 == 0 { "halo-webhook" } else { "cf-webhook" }.into(),
                    outcome: OUTCOMES[n % OUTCOMES.len()].into(),
                    status: Some(200),
                    reference: Some(format!("cf|sentinel|bench-{}", n % 2_000)),
                    ticket_id: Some(1_000 + (n % 2_000) as i64),
                    attempts: 1,
                    halo_calls: 1,
                    duration_ms: 12,
                    correlation_id: format!("{n:016x}"),
                    ..RunRecord::default()
                };
                store.record_run(&run).await.expect("seed a run record");
            }
        })
        .await;
    println!("seeded {records} run records in {:.1} s", seeded.elapsed().as_secs_f64());

    let exe = std::env::var_os("BENCH_HANDLER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_handler")));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut options = HostOptions::new(root).executable(&exe);
    options.env = settings.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let host = StandInHost::start(options).await.expect("the handler starts under the stand-in host");
    let url = format!("{}/api/status", host.url());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |json: bool| {
        let mut request = http.get(&url).header("x-status-key", KEY);
        if json {
            request = request.header("accept", "application/json");
        }
        async move {
            let started = Instant::now();
            let response = request.send().await.expect("the page answers");
            assert_eq!(response.status(), 200);
            let bytes = response.bytes().await.unwrap();
            (started.elapsed().as_secs_f64() * 1000.0, bytes.len())
        }
    };
    let calls = || reads_writes(&Default::default(), &proxy.counts());

    let before = (calls(), run_history_writes(&Default::default(), &proxy.counts()));
    let (first_ms, first_bytes) = get(false).await;
    let after = (calls(), run_history_writes(&Default::default(), &proxy.counts()));
    println!(
        "first render: {first_ms:.1} ms, {first_bytes} bytes, {} Table reads and {} summary writes (the finished hours)",
        after.0 .0 - before.0 .0,
        after.1 - before.1
    );
    let mut rows = Vec::new();
    for json in [false, true] {
        let before = calls();
        let mut times = Vec::with_capacity(renders);
        let mut size = 0;
        for _ in 0..renders {
            let (ms, bytes) = get(json).await;
            times.push(ms);
            size = bytes;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = calls();
        let per = (after.0 - before.0) as f64 / renders as f64;
        rows.push(format!(
            "| {} | {renders} | {:.1} | {:.1} | {:.1} | {per:.1} | {size} |",
            if json { "JSON" } else { "HTML" },
            median(times.clone()),
            percentile(times.clone(), 0.9),
            times.iter().cloned().fold(f64::MAX, f64::min),
        ));
    }
    println!("\n{records} run records over 24 h; GET /api/status with X-Status-Key, through the stand-in host:\n");
    println!("| Answer | Renders | Median ms | p90 ms | Best ms | Table reads per render | Bytes |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    host.shutdown().await;
}
