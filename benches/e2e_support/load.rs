//! Closed-loop load: `n` requests kept `concurrency` at a time, each timed from send to the whole answer.

use futures::StreamExt;
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

/// Where the webhooks go: the handler directly, or the stand-in host (with the function key).
#[derive(Clone)]
pub struct Target {
    pub http: reqwest::Client,
    pub cf_url: String,
    pub halo_url: String,
    pub function_key: Option<String>,
}

impl Target {
    pub fn new(api_base: &str, function_key: Option<String>) -> Target {
        Target {
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(512)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a reqwest client"),
            cf_url: format!("{api_base}/cf-webhook"),
            halo_url: format!("{api_base}/halo-webhook"),
            function_key,
        }
    }

    /// A signed ContraForce delivery; the answer's JSON when the status is 200.
    pub async fn cf(&self, event_id: &str, body: &[u8], test: bool) -> Result<Value, String> {
        let ts = cf_halo_bridge::domain::unix_now();
        let signature = cf_halo_bridge::cf::signature::sign(crate::common::CF_SECRET.as_bytes(), ts, body);
        let mut request = self
            .http
            .post(&self.cf_url)
            .header("content-type", "application/json")
            .header("x-cf-event-id", event_id)
            .header("x-cf-timestamp", ts.to_string())
            .header("x-cf-signature", signature)
            .header("x-cf-schema", "incident.created.v1");
        if test {
            request = request.header("x-cf-test", "true");
        }
        if let Some(key) = &self.function_key {
            request = request.header("x-functions-key", key);
        }
        answer(request.body(body.to_vec()).send().await).await
    }

    /// A Halo ticket webhook in the shape real Halo sends, authenticated with `X-Halo-Secret`.
    pub async fn halo(&self, ticket_id: i64) -> Result<Value, String> {
        let payload = serde_json::json!({"id": "5b0c7c8e-1f2a-4c1e-9d7b-3a2b1c0d9e8f", "event": "Ticket Updated",
            "object_id": ticket_id, "ticket": {"id": ticket_id}});
        let mut request = self
            .http
            .post(&self.halo_url)
            .header("content-type", "application/json")
            .header("x-halo-secret", crate::common::HALO_WEBHOOK_SECRET);
        if let Some(key) = &self.function_key {
            request = request.header("x-functions-key", key);
        }
        answer(request.body(serde_json::to_vec(&payload).unwrap()).send().await).await
    }
}

async fn answer(sent: reqwest::Result<reqwest::Response>) -> Result<Value, String> {
    let response = sent.map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| format!("read: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status} {}", String::from_utf8_lossy(&bytes)));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("answer not JSON: {e}"))
}

/// The answer's `status` must be `want`.
pub fn expect_status(answer: &Value, want: &str) -> Result<(), String> {
    match answer.get("status").and_then(Value::as_str) {
        Some(s) if s == want => Ok(()),
        _ => Err(format!("expected status {want}, got {answer}")),
    }
}

/// What one load run saw.
pub struct Driven {
    pub n: usize,
    pub concurrency: usize,
    pub wall: Duration,
    /// Milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    pub failures: usize,
    pub first_failure: Option<String>,
}

impl Driven {
    pub fn rps(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }

    pub fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ms, q)
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// Runs requests `0..n`, `concurrency` at a time.
pub async fn drive<F, Fut>(n: usize, concurrency: usize, request: F) -> Driven
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let results: Vec<(f64, Result<(), String>)> = futures::stream::iter(0..n)
        .map(|i| {
            let fut = request(i);
            async move {
                let t = Instant::now();
                let r = fut.await;
                (t.elapsed().as_secs_f64() * 1000.0, r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut latencies_ms: Vec<f64> = results.iter().map(|(l, _)| *l).collect();
    latencies_ms.sort_by(f64::total_cmp);
    let failures = results.iter().filter(|(_, r)| r.is_err()).count();
    let first_failure = results.into_iter().find_map(|(_, r)| r.err());
    Driven { n, concurrency, wall, latencies_ms, failures, first_failure }
}
