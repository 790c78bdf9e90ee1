//! Calls to Halo and ContraForce: timeouts, a per-request time budget, and retries with backoff and jitter that
//! honour `Retry-After`. Only idempotent calls are retried here; callers decide what a failed POST means.

use rand::Rng;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// How long a request of ours may spend on upstream calls before we answer 503 (the sender's limit is ~30 s).
pub(crate) const REQUEST_BUDGET: Duration = Duration::from_secs(25);
/// Halo answers 429 without `Retry-After`; back off in tens of seconds (docs/halo-api.md, Rate limits).
pub(crate) const RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(20);
const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The point in time by which a request must be answered.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Deadline(Instant::now() + budget)
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Why an upstream call failed, worded for an operator. None of these carry a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The request never left: connection refused, DNS, TLS. Surely not processed.
    #[error("{service} could not be reached: {detail}")]
    NotSent { service: &'static str, detail: String },
    /// Sent, but no complete answer in time: it may have been processed.
    #[error("{service} did not answer in time")]
    Timeout { service: &'static str },
    /// Sent, and the answer broke off or could not be read: it may have been processed.
    #[error("{service} answer could not be read: {detail}")]
    Broken { service: &'static str, detail: String },
    /// A success status arrived, then the body broke off: the call was carried out, its answer is lost.
    #[error("{service} answered {status} but the answer broke off")]
    IncompleteSuccess { service: &'static str, status: u16 },
    /// An HTTP error status. Its body is never kept: upstream error text stays out of logs and answers.
    #[error("{service} answered {status}")]
    Status { service: &'static str, status: u16, retry_after: Option<Duration> },
    /// Out of time budget before a retry could be made.
    #[error("{service} is busy; retry after {} s", retry_after.as_secs())]
    RetryLater { service: &'static str, retry_after: Duration },
}

impl UpstreamError {
    /// How long the sender should wait before retrying, when we know.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Status { retry_after, .. } => *retry_after,
            UpstreamError::RetryLater { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// What this failure means for the work, given what kind of call failed: the one classification of upstream
    /// answers. A 4xx other than 408/409/429 is permanent. A repeatable call (a read, the close PUT) is transient
    /// on everything else. A create answered 429 or 503 (or never sent) was not processed; any other 5xx, a timeout
    /// or a lost answer may have been applied: uncertain.
    pub fn failure(&self, call: Call) -> Failure {
        let retry_after = self.retry_after();
        match self {
            UpstreamError::Status { status, .. }
                if (400..500).contains(status) && ![408, 409, 429].contains(status) =>
            {
                Failure::Permanent
            }
            _ if call == Call::Repeatable => Failure::Transient { retry_after },
            UpstreamError::NotSent { .. } | UpstreamError::RetryLater { .. } => Failure::Transient { retry_after },
            UpstreamError::Status { status, .. } if *status < 500 || *status == 503 => {
                Failure::Transient { retry_after }
            }
            _ => Failure::Uncertain,
        }
    }

    /// Fails the same way however often it is tried (see `failure`).
    pub fn is_permanent(&self) -> bool {
        self.failure(Call::Repeatable) == Failure::Permanent
    }

    /// True when a create may have been carried out although we saw no success.
    pub(crate) fn maybe_applied(&self) -> bool {
        self.failure(Call::Create) == Failure::Uncertain
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            UpstreamError::RetryLater { .. } => false,
            _ => true,
        }
    }
}

fn classify(service: &'static str, e: reqwest::Error) -> UpstreamError {
    if e.is_connect() {
        UpstreamError::NotSent { service, detail: without_url(&e) }
    } else if e.is_timeout() {
        UpstreamError::Timeout { service }
    } else {
        UpstreamError::Broken { service, detail: without_url(&e) }
    }
}

/// reqwest's Display includes the URL, whose query may carry secrets; keep only the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        "request failed".into()
    } else {
        detail
    }
}

fn parse_retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The kind of call that failed, for `UpstreamError::failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Safe to repeat: a read, the token, the close PUT.
    Repeatable,
    /// Creates something (a ticket, a note, a comment): repeating it blindly could do it twice.
    Create,
}

/// What a failed call means for the work it was part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Will fail the same way however often it is tried (a 4xx other than 408/409/429): a dead letter.
    Permanent,
    /// Not done, and may be tried again (after `retry_after` when the upstream said so).
    Transient { retry_after: Option<Duration> },
    /// May have been done: repeated only where a lookup proves it was not, otherwise recorded and never repeated.
    Uncertain,
}

/// Whether a call may be repeated after an uncertain outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// GETs, the token, PUT status: repeat on 429/5xx/408 and transport errors.
    Idempotent,
    /// POSTs that create something: one attempt only (and a retry on connection refused, which surely did not arrive).
    OnlyIfNotSent,
}

const MAX_ATTEMPTS: u32 = 4;

fn backoff(attempt: u32) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1 << attempt.min(10)).min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.5..1.5);
    exp.mul_f64(jitter)
}

/// An answer body that does not parse as JSON.
pub(crate) fn not_json(service: &'static str, e: serde_json::Error) -> UpstreamError {
    UpstreamError::Broken { service, detail: format!("not JSON: {e}") }
}

/// A successful answer with its body read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self, service: &'static str) -> Result<Value, UpstreamError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| not_json(service, e))
    }

    /// The body as `T`, straight from the bytes (no intermediate JSON value); `what` names it in the error.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, service: &'static str, what: &str) -> Result<T, UpstreamError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| UpstreamError::Broken { service, detail: format!("{what}: {e}") })
    }
}

/// Sends one request (built anew for each attempt) with the call timeout capped by the deadline.
pub async fn send(
    service: &'static str,
    call_timeout: Duration,
    deadline: Deadline,
    retry: Retry,
    build: impl Fn() -> RequestBuilder,
) -> Result<Answer, UpstreamError> {
    send_paced(service, call_timeout, deadline, retry, None, build).await
}

/// `send`, with every attempt (retries too) first taking a slot of `pacer`, and a 429 holding the pacer back for
/// every caller.
pub async fn send_paced(
    service: &'static str,
    call_timeout: Duration,
    deadline: Deadline,
    retry: Retry,
    pacer: Option<&Pacer>,
    build: impl Fn() -> RequestBuilder,
) -> Result<Answer, UpstreamError> {
    let mut attempt = 0;
    loop {
        if let Some(pacer) = pacer {
            // A call started with less time left than it may need would time out: an uncertain create.
            pacer.acquire(service, deadline, call_timeout.min(MIN_CALL_TIME)).await?;
        }
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            return Err(UpstreamError::Timeout { service });
        }
        let error = match send_once(service, build().timeout(call_timeout.min(remaining))).await {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        attempt += 1;
        let may_retry = match retry {
            Retry::Idempotent => error.retryable(),
            Retry::OnlyIfNotSent => matches!(error, UpstreamError::NotSent { .. }),
        };
        if !may_retry || attempt >= MAX_ATTEMPTS {
            return Err(error);
        }
        let wait = match &error {
            UpstreamError::Status { status: 429, retry_after, .. } => retry_after.unwrap_or(RATE_LIMIT_BACKOFF),
            UpstreamError::Status { retry_after: Some(after), .. } => *after,
            _ => backoff(attempt),
        };
        if let (Some(pacer), UpstreamError::Status { status: 429, .. }) = (pacer, &error) {
            pacer.hold(wait);
        }
        if wait >= deadline.remaining() {
            // Not enough time left to wait here: the sender retries later instead.
            return match error {
                UpstreamError::Status { status: 429, .. } | UpstreamError::Status { retry_after: Some(_), .. } => {
                    Err(UpstreamError::RetryLater { service, retry_after: wait })
                }
                other => Err(other),
            };
        }
        tracing::debug!(service, attempt, wait_ms = wait.as_millis() as u64, "retrying upstream call");
        tokio::time::sleep(wait).await;
    }
}

/// A client-side limit on the calls to one upstream: at most `limit` call starts in any `window` (a sliding
/// window, as Halo counts: "300 requests per rolling 5 minute window"), and none before a 429's `Retry-After` (or
/// `RATE_LIMIT_BACKOFF`) has passed. A call that cannot start within its deadline is not made: it fails as
/// `RetryLater` with the time until a slot frees, so durable work waits that long instead of meeting a 429.
/// One per process: instances do not share it (docs/benchmarks.md, *Bursts at Halo's rate*).
#[derive(Debug)]
pub struct Pacer {
    limit: usize,
    /// The window a start occupies, with a margin for the clocks of the two ends (1%).
    occupied: Duration,
    state: std::sync::Mutex<PacerState>,
}

#[derive(Debug, Default)]
struct PacerState {
    /// The starts of the last `limit` calls still inside the window, oldest first.
    starts: std::collections::VecDeque<Instant>,
    /// A 429's hold: no call starts before it.
    hold_until: Option<Instant>,
    /// Calls that waited for a slot, and calls turned away (`RetryLater`), since start.
    waited: u64,
    deferred: u64,
}

/// What a `Pacer` has done since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerCounts {
    pub waited: u64,
    pub deferred: u64,
}

/// A paced call waits for a slot only while this much of its call timeout (or all of it, when shorter) would be left.
const MIN_CALL_TIME: Duration = Duration::from_secs(5);

impl Pacer {
    pub fn new(limit: u32, window: Duration) -> Pacer {
        Pacer {
            limit: limit.max(1) as usize,
            occupied: window + window / 100,
            state: std::sync::Mutex::new(PacerState::default()),
        }
    }

    /// Takes a slot now, or waits for one while `needed` would still be left before the deadline, or fails with
    /// `RetryLater`.
    pub async fn acquire(
        &self,
        service: &'static str,
        deadline: Deadline,
        needed: Duration,
    ) -> Result<(), UpstreamError> {
        let mut waited = false;
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while state.starts.front().is_some_and(|t| *t + self.occupied <= now) {
                    state.starts.pop_front();
                }
                let mut ready = state.hold_until.filter(|h| *h > now).unwrap_or(now);
                if state.starts.len() >= self.limit {
                    ready = ready.max(state.starts[state.starts.len() - self.limit] + self.occupied);
                }
                let wait = ready.saturating_duration_since(now);
                if wait.is_zero() {
                    state.starts.push_back(now);
                    state.waited += u64::from(waited);
                    return Ok(());
                }
                if wait + needed > deadline.remaining() {
                    state.deferred += 1;
                    // Whole seconds, rounded up: the sender (or the queue) comes back when a slot is free.
                    let retry_after = Duration::from_secs(wait.as_secs() + 1);
                    return Err(UpstreamError::RetryLater { service, retry_after });
                }
                wait
            };
            waited = true;
            tokio::time::sleep(wait).await;
        }
    }

    /// Halo answered 429: no call starts for `wait`.
    pub fn hold(&self, wait: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + wait;
        state.hold_until = Some(state.hold_until.map_or(until, |h| h.max(until)));
    }

    pub fn counts(&self) -> PacerCounts {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        PacerCounts { waited: state.waited, deferred: state.deferred }
    }
}

async fn send_once(service: &'static str, request: RequestBuilder) -> Result<Answer, UpstreamError> {
    let response = request.send().await.map_err(|e| classify(service, e))?;
    let status = response.status();
    let retry_after = parse_retry_after(&response);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(_) if status.is_success() => {
            return Err(UpstreamError::IncompleteSuccess { service, status: status.as_u16() })
        }
        Err(e) => return Err(classify(service, e)),
    };
    if status.is_success() {
        return Ok(Answer { status, body });
    }
    Err(UpstreamError::Status { service, status: status.as_u16(), retry_after })
}

/// A client builder trusting the platform roots plus the configured extra authorities.
pub(crate) fn client_builder(extra_ca_pem: Option<&[u8]>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder();
    // Validated in config: the bundle parses and is not empty.
    for cert in extra_ca_pem.and_then(|pem| reqwest::Certificate::from_pem_bundle(pem).ok()).unwrap_or_default() {
        builder = builder.add_root_certificate(cert);
    }
    builder
}

/// One HTTP client for all upstream calls: rustls, pooled connections, a connect timeout.
pub fn http_client(extra_ca_pem: Option<&[u8]>) -> reqwest::Client {
    client_builder(extra_ca_pem)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("cf-halo-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call time a paced call in these tests needs left after its wait.
    const MARGIN: Duration = Duration::from_millis(500);

    #[tokio::test(start_paused = true)]
    async fn the_pacer_starts_at_most_its_limit_in_any_window_and_waits_for_the_oldest_to_leave() {
        let pacer = Pacer::new(3, Duration::from_secs(10));
        let started = Instant::now();
        for _ in 0..3 {
            pacer.acquire("x", Deadline::after(Duration::from_secs(30)), MARGIN).await.unwrap();
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the first three go at once");
        pacer.acquire("x", Deadline::after(Duration::from_secs(30)), MARGIN).await.unwrap();
        // The window plus its 1% margin after the first start.
        assert_eq!(started.elapsed(), Duration::from_millis(10_100));
        assert_eq!(pacer.counts(), PacerCounts { waited: 1, deferred: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_cannot_start_in_time_is_turned_away_with_the_wait_and_makes_no_call() {
        let pacer = Pacer::new(1, Duration::from_secs(10));
        pacer.acquire("x", Deadline::after(Duration::from_secs(5)), MARGIN).await.unwrap();
        let started = Instant::now();
        let refused = pacer.acquire("x", Deadline::after(Duration::from_secs(5)), MARGIN).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::ZERO, "turned away at once, not after waiting");
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(11)));
        assert_eq!(refused.failure(Call::Create), Failure::Transient { retry_after: Some(Duration::from_secs(11)) });
        assert_eq!(pacer.counts(), PacerCounts { waited: 0, deferred: 1 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_every_caller_back_for_its_wait() {
        let pacer = Pacer::new(100, Duration::from_secs(300));
        pacer.hold(Duration::from_secs(20));
        let short = pacer.acquire("x", Deadline::after(Duration::from_secs(10)), MARGIN).await.unwrap_err();
        assert_eq!(short.retry_after(), Some(Duration::from_secs(21)));
        let started = Instant::now();
        pacer.acquire("x", Deadline::after(Duration::from_secs(25)), MARGIN).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        // A shorter hold never shortens a longer one.
        pacer.hold(Duration::from_secs(30));
        pacer.hold(Duration::from_secs(1));
        let held = pacer.acquire("x", Deadline::after(Duration::from_secs(5)), MARGIN).await.unwrap_err();
        assert_eq!(held.retry_after(), Some(Duration::from_secs(31)));
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for attempt in 0..20 {
            let b = backoff(attempt);
            assert!(b <= MAX_BACKOFF.mul_f64(1.5), "{b:?}");
            assert!(b >= BASE_BACKOFF.mul_f64(0.5), "{b:?}");
        }
    }

    #[test]
    fn uncertainty_by_kind() {
        let s = |status| UpstreamError::Status { service: "x", status, retry_after: None };
        assert!(!UpstreamError::NotSent { service: "x", detail: String::new() }.maybe_applied());
        assert!(UpstreamError::Timeout { service: "x" }.maybe_applied());
        assert!(s(500).maybe_applied() && s(502).maybe_applied());
        assert!(!s(400).maybe_applied() && !s(503).maybe_applied() && !s(429).maybe_applied());
        assert!(s(503).retryable() && s(429).retryable() && !s(404).retryable());
    }

    #[test]
    fn one_classification_of_every_answer() {
        let s = |status| UpstreamError::Status { service: "x", status, retry_after: None };
        let transient = Failure::Transient { retry_after: None };
        for status in [400, 401, 403, 404, 410, 422] {
            assert_eq!(s(status).failure(Call::Create), Failure::Permanent, "{status}");
            assert_eq!(s(status).failure(Call::Repeatable), Failure::Permanent, "{status}");
        }
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(s(status).failure(Call::Repeatable), transient, "{status}");
        }
        for status in [408, 409, 429, 503] {
            assert_eq!(s(status).failure(Call::Create), transient, "{status}");
        }
        for status in [500, 502, 504] {
            assert_eq!(s(status).failure(Call::Create), Failure::Uncertain, "{status}");
        }
        assert_eq!(UpstreamError::Timeout { service: "x" }.failure(Call::Create), Failure::Uncertain);
        assert_eq!(UpstreamError::Timeout { service: "x" }.failure(Call::Repeatable), transient);
        assert_eq!(UpstreamError::NotSent { service: "x", detail: String::new() }.failure(Call::Create), transient);
        let later = UpstreamError::RetryLater { service: "x", retry_after: Duration::from_secs(30) };
        assert_eq!(later.failure(Call::Create), Failure::Transient { retry_after: Some(Duration::from_secs(30)) });
    }
}
