//! A counting reverse proxy on loopback between the handler and Azurite: every request is forwarded unchanged
//! (method, path, query, headers, body; the SharedKey signature stays valid) and counted by method. The tests and
//! the benchmarks use it to count Table Storage calls per event.

use crate::faults::Latency;
use crate::server::ServerHandle;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use warp::http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::path::FullPath;
use warp::Filter;

/// Requests forwarded, by HTTP method (and `RUN_HISTORY` for the run-history writes).
pub type Counts = BTreeMap<String, u64>;

/// The key counting writes of the bridge's run history.
pub const RUN_HISTORY: &str = "run-history";

fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

/// The running proxy; dropping it stops it.
pub struct CountingProxy {
    /// Its loopback port.
    pub port: u16,
    counts: Arc<Mutex<Counts>>,
    /// Time spent on the requests counted as reads and writes (the run history's aside), from each request's
    /// arrival to its answer: the round trips as the client waited on them.
    busy: Arc<Mutex<std::time::Duration>>,
    /// Each counted request's time, in arrival order.
    times: Arc<Mutex<Vec<std::time::Duration>>>,
    _server: ServerHandle,
}

impl CountingProxy {
    /// Starts forwarding to `target` (e.g. `http://127.0.0.1:10002`) on the current tokio runtime.
    pub async fn start(target: String) -> CountingProxy {
        CountingProxy::start_with_latency(target, None).await
    }

    /// The same, each request answered no sooner than `latency` after it arrived (Table Storage's round trip inside
    /// a region, modelled: Azurite's own time counts within it).
    pub async fn start_with_latency(target: String, latency: Option<Latency>) -> CountingProxy {
        let waits = Arc::new(Mutex::new(StdRng::seed_from_u64(7)));
        let client = reqwest::Client::builder().no_proxy().build().expect("a reqwest client");
        let counts = Arc::new(Mutex::new(Counts::new()));
        let counted = counts.clone();
        let busy = Arc::new(Mutex::new(std::time::Duration::ZERO));
        let timed = busy.clone();
        let times = Arc::new(Mutex::new(Vec::new()));
        let each = times.clone();
        let filter = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |method: Method, path: FullPath, query: String, headers: HeaderMap, body: Bytes| {
                let wait = latency.map(|l| l.sample(&mut waits.lock().unwrap()));
                // The bridge's run history (partitions `run-…`) is written after each answer: counted apart.
                let kind = if method != Method::GET && contains(&body, br#""PartitionKey":"run-"#) {
                    RUN_HISTORY.to_string()
                } else {
                    method.to_string()
                };
                let history = kind == RUN_HISTORY;
                *counted.lock().unwrap().entry(kind).or_default() += 1;
                let forwarded = forward(client.clone(), target.clone(), method, path, query, headers, body);
                let (timed, each) = (timed.clone(), each.clone());
                async move {
                    let arrived = std::time::Instant::now();
                    // The round trip lasts `wait`, Azurite's own time inside it (as a service's time is inside
                    // Azure's round trip), or Azurite's time when that is longer.
                    let (answer, ()) = tokio::join!(forwarded, tokio::time::sleep(wait.unwrap_or_default()));
                    if !history {
                        *timed.lock().unwrap() += arrived.elapsed();
                        each.lock().unwrap().push(arrived.elapsed());
                    }
                    answer
                }
            });
        let server = crate::server::bind(filter, None).await.expect("bind the proxy");
        CountingProxy { port: server.port(), counts, busy, times, _server: server }
    }

    /// Time spent on the counted requests so far (`busy`).
    pub fn busy(&self) -> std::time::Duration {
        *self.busy.lock().unwrap()
    }

    /// Each counted request's time so far, in arrival order.
    pub fn times(&self) -> Vec<std::time::Duration> {
        self.times.lock().unwrap().clone()
    }

    /// The requests forwarded so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap().clone()
    }

    /// A storage connection string that sends the handler's Table Storage calls through this proxy to Azurite
    /// (its queue calls go straight to `queue_endpoint`).
    pub fn connection_string(&self, queue_endpoint: &str) -> String {
        let table = format!("http://127.0.0.1:{}/{}", self.port, crate::azurite::ACCOUNT_NAME);
        crate::azurite::connection_string(&table, queue_endpoint)
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    client: reqwest::Client,
    target: String,
    method: Method,
    path: FullPath,
    query: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Bytes> {
    let url = if query.is_empty() {
        format!("{target}{}", path.as_str())
    } else {
        format!("{target}{}?{query}", path.as_str())
    };
    let mut request = client.request(method, url);
    for (name, value) in &headers {
        if name != HOST && name != CONTENT_LENGTH && name != CONNECTION && name != TRANSFER_ENCODING {
            request = request.header(name, value);
        }
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let bad_gateway = |e: String| {
        let mut r = Response::new(Bytes::from(e));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    };
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => return bad_gateway(e.to_string()),
    };
    let status = upstream.status();
    let mut out_headers = upstream.headers().clone();
    out_headers.remove(TRANSFER_ENCODING);
    out_headers.remove(CONNECTION);
    out_headers.remove(CONTENT_LENGTH);
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return bad_gateway(e.to_string()),
    };
    let mut response = Response::new(bytes);
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

/// Reads (GET) and writes (everything else but the run history) between two snapshots.
pub fn reads_writes(before: &Counts, after: &Counts) -> (u64, u64) {
    let delta = |m: &str| after.get(m).copied().unwrap_or(0) - before.get(m).copied().unwrap_or(0);
    let total: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
    let reads = delta("GET");
    let history = delta(RUN_HISTORY);
    (reads, total - reads - history)
}

/// Run-history writes between two snapshots.
pub fn run_history_writes(before: &Counts, after: &Counts) -> u64 {
    after.get(RUN_HISTORY).copied().unwrap_or(0) - before.get(RUN_HISTORY).copied().unwrap_or(0)
}
