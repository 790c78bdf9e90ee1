//! Is the 128-sender tail of the write paths the bridge's? This takes the handler out: the bridge's own Table
//! Storage client (`store::AzureTable` through `Store`, the same SDK, pool and retry policy) inserts run records
//! straight into Azurite at 1, 16 and 128 concurrent units, on a current-thread runtime as the handler runs: a unit
//! is one write, or a new incident's storage shape (1 read, then 3 writes). Reports p50, p99 and the share of units
//! slower than 1 s. Two more clients isolate the parts: `raw` sends the same calls to Azurite as plain signed HTTP
//! requests (one `reqwest` client, no SDK, no retry policy), `memory` runs the units on the in-memory table (no
//! network, no Azurite).
//!
//! ```text
//! cargo bench --bench storage_tail        # STORAGE_TAIL_N (1000) units per level; STORAGE_TAIL_THREADS=2 for a
//!                                         # multi-thread runtime; STORAGE_TAIL_CLIENT=sdk,raw,memory (all three);
//!                                         # STORAGE_TAIL_PARTITIONS=fresh: a partition per call, as new incidents;
//!                                         # STORAGE_TAIL_READ=query: the read as the cf-webhook's query
//! ```
//!
//! Under `cargo test` (no `--bench` argument) this does nothing.

use cf_halo_bridge::app::App;
use cf_halo_bridge::config::{Config, Env};
use cf_halo_bridge::store::runs::RunRecord;
use cf_halo_bridge::store::{MemoryTable, Store};
use futures::StreamExt;
use sandbox::azurite::Azurite;
use sandbox::azurite::{shared_key_lite, x_ms_date, ACCOUNT_NAME};
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

/// Which client the units go through.
enum Client {
    /// The bridge's `Store` over `AzureTable` (the SDK), into Azurite.
    Sdk(Store),
    /// Plain signed HTTP requests into Azurite.
    Raw(Raw),
    /// The bridge's `Store` over the in-memory table.
    Memory(Store),
}

impl Client {
    fn name(&self) -> &'static str {
        match self {
            Client::Sdk(_) => "sdk",
            Client::Raw(_) => "raw",
            Client::Memory(_) => "memory",
        }
    }

    async fn write(&self, run: &RunRecord) -> bool {
        match self {
            Client::Sdk(store) | Client::Memory(store) => store.record_run(run).await.is_ok(),
            Client::Raw(raw) => raw.insert(run).await,
        }
    }

    async fn read(&self, run: &RunRecord) -> bool {
        match self {
            // STORAGE_TAIL_READ=query: the read is a one-partition query for three rows, as the cf-webhook's is.
            Client::Sdk(store) | Client::Memory(store) if query_reads() => {
                let key = run.key();
                store.table().get_rows(&key.partition, &[&key.row, "evt-x", "dlv-x"]).await.is_ok()
            }
            Client::Sdk(store) | Client::Memory(store) => store.get::<RunRecord>(&run.key()).await.is_ok(),
            Client::Raw(raw) => raw.get(run).await,
        }
    }
}

/// Table Storage's REST calls signed by hand (SharedKeyLite, the development account), on one pooled client.
struct Raw {
    http: reqwest::Client,
    base: String,
    table: String,
}

impl Raw {
    fn signed(&self, method: reqwest::Method, resource: &str) -> reqwest::RequestBuilder {
        let date = x_ms_date(cf_halo_bridge::domain::unix_now());
        self.http
            .request(method, format!("{}/{ACCOUNT_NAME}/{resource}", self.base))
            .header("x-ms-date", &date)
            .header("x-ms-version", "2019-02-02")
            .header("accept", "application/json;odata=nometadata")
            .header("dataserviceversion", "3.0;NetFx")
            .header("maxdataserviceversion", "3.0;NetFx")
            // Path-style emulator URLs: the canonicalized resource is "/" + account + the URL's path (which starts
            // with the account).
            .header("authorization", shared_key_lite(&date, &format!("/{ACCOUNT_NAME}/{ACCOUNT_NAME}/{resource}")))
    }

    async fn create_table(&self) {
        let body = serde_json::json!({ "TableName": self.table });
        let answer = self.signed(reqwest::Method::POST, "Tables").json(&body).send().await.expect("Azurite answers");
        let status = answer.status();
        assert!(status.is_success() || status == 409, "the raw client's table: {status}");
    }

    async fn insert(&self, run: &RunRecord) -> bool {
        let key = run.key();
        let body = serde_json::json!({
            "PartitionKey": key.partition, "RowKey": key.row, "Function": run.function, "Outcome": run.outcome,
        });
        let sent = self.signed(reqwest::Method::POST, &self.table).header("prefer", "return-no-content").json(&body);
        sent.send().await.is_ok_and(|a| a.status().is_success())
    }

    async fn get(&self, run: &RunRecord) -> bool {
        let key = run.key();
        let resource = format!("{}(PartitionKey='{}',RowKey='{}')", self.table, key.partition, key.row);
        let answer = self.signed(reqwest::Method::GET, &resource).send().await;
        answer.is_ok_and(|a| a.status().is_success() || a.status() == 404)
    }
}

async fn run(n: usize) {
    let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
    let table = format!("tail{}", std::process::id());
    let settings = [
        ("AzureWebJobsStorage", azurite.connection_string()),
        ("STATE_TABLE_NAME", table.clone()),
        ("RECONCILE_SCHEDULE", "0 */5 * * * *".to_string()),
    ];
    let app = App::new(Config::from_env(&Env::from_pairs(settings)).expect("settings")).expect("app");
    let wanted = std::env::var("STORAGE_TAIL_CLIENT").unwrap_or_else(|_| "sdk,raw,memory".into());
    let mut clients = Vec::new();
    for name in wanted.split(',').map(str::trim) {
        clients.push(match name {
            "sdk" => Client::Sdk(app.store.clone().expect("state storage")),
            "raw" => {
                let base = format!("http://127.0.0.1:{}", azurite.port());
                let raw = Raw { http: reqwest::Client::new(), base, table: format!("{table}raw") };
                raw.create_table().await;
                Client::Raw(raw)
            }
            "memory" => Client::Memory(Store::new(std::sync::Arc::new(MemoryTable::default()))),
            other => panic!("STORAGE_TAIL_CLIENT: {other:?} is not sdk, raw or memory"),
        });
    }
    println!("| Client | Unit | Concurrent | Units | Units/s | p50 ms | p99 ms | max ms | share > 1 s | failed |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut serial = 0usize;
    for client in &clients {
        for (calls, writers) in [(1usize, 1usize), (1, 16), (1, 128), (4, 1), (4, 16), (4, 128)] {
            let base = serial;
            serial += n;
            level(client, n, calls, writers, base).await;
        }
    }
}

fn query_reads() -> bool {
    std::env::var("STORAGE_TAIL_READ").is_ok_and(|v| v == "query")
}

fn fresh_partitions() -> bool {
    std::env::var("STORAGE_TAIL_PARTITIONS").is_ok_and(|v| v == "fresh")
}

/// `n` units of `calls` calls, `writers` at a time; one row of the table.
async fn level(client: &Client, n: usize, calls: usize, writers: usize, base: usize) {
    let started = Instant::now();
    let mut times: Vec<f64> = futures::stream::iter(0..n)
        .map(|i| async move {
            // STORAGE_TAIL_PARTITIONS=fresh: each unit in partitions of its own (an hour apart), as each new
            // incident's records are; otherwise every unit shares one hour's partition.
            let spacing = if fresh_partitions() { 3_600_000 } else { 1 };
            let run = |k: usize| RunRecord {
                received_ms: 1_796_378_400_000 + ((base + i) * 4 + k) as i64 * spacing,
                function: "cf-webhook".into(),
                outcome: "created".into(),
                correlation_id: format!("{:016x}", (base + i) * 4 + k),
                ..RunRecord::default()
            };
            let t = Instant::now();
            let done = if calls == 1 {
                client.write(&run(0)).await
            } else {
                // A new incident's shape: one read, then three writes one after another.
                let mut ok = client.read(&run(0)).await;
                for k in 0..3 {
                    ok = ok && client.write(&run(k)).await;
                }
                ok
            };
            // A failed unit (a call past the client's time limit) counts as slower than any.
            if done {
                t.elapsed().as_secs_f64() * 1000.0
            } else {
                f64::INFINITY
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
        "| {} | {unit} | {writers} | {n} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1}% | {failed} |",
        client.name(),
        n as f64 / wall,
        at(0.5),
        at(0.99),
        finite.last().copied().unwrap_or_default(),
        slow * 100.0
    );
}
