//! One helper that starts everything a test needs and speaks to the bridge as ContraForce and Halo do.

use cf_halo_bridge::cf::signature::sign;
use reqwest::StatusCode;
use sandbox::azurite::Azurite;
use sandbox::cf::{CfConfig, FakeCf};
use sandbox::halo::{FakeHalo, HaloConfig};
use sandbox::host::{HostOptions, QueueOverrides, StandInHost};
use sandbox::proxy::{reads_writes, run_history_writes, CountingProxy, Counts};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

pub const CF_SECRET: &str = "it-cf-webhook-secret-7f3a";
pub const HALO_WEBHOOK_SECRET: &str = "it-halo-webhook-secret-91c2";
pub const STATUS_PAGE_KEY: &str = "it-status-page-key-5d18";
pub const TICKET_TYPE: i64 = 29;
pub const DEFAULT_CLIENT: i64 = 1;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn unix_now() -> i64 {
    cf_halo_bridge::domain::unix_now()
}

/// The README's sample incident with its id and number replaced, and an envelope `timestamp` of its own: each call
/// is a distinct event, as each new event ContraForce sends is (the same signed time and body under another event
/// id is one delivery replayed, a duplicate).
pub fn incident(incident_id: &str, number: i64) -> Value {
    static EVENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = EVENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut body: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("tests/fixtures/incident.json")).unwrap())
            .unwrap();
    body["data"]["incidentId"] = json!(incident_id);
    body["data"]["incidentNumber"] = json!(number);
    body["timestamp"] = json!(format!("2026-04-22T15:00:00.{n:09}Z"));
    body
}

/// The answer: status, `Retry-After`, and the body as JSON (Null when not JSON), without the `correlationId` of an
/// error answer, which is kept apart (it is random: tests compare the rest).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
    pub correlation_id: Option<String>,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Answer {
        let status = response.status();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = response.bytes().await.unwrap_or_default();
        let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let correlation_id =
            body.as_object_mut().and_then(|o| o.remove("correlationId")).and_then(|v| v.as_str().map(str::to_string));
        Answer { status, retry_after, body, correlation_id }
    }
}

pub struct Bridge {
    pub host: StandInHost,
    pub halo: FakeHalo,
    pub cf: FakeCf,
    pub azurite: Azurite,
    pub http: reqwest::Client,
    /// Set by `start_counting_storage`: the handler's Table Storage calls go through it and are counted.
    pub storage_calls: Option<CountingProxy>,
    /// The handler's settings (for running its operator commands against the same storage).
    pub env: Vec<(String, String)>,
}

/// The settings a fully configured bridge gets.
pub fn base_env(halo: &FakeHalo, cf: &FakeCf, azurite: &Azurite) -> Vec<(String, String)> {
    let h = halo.config();
    let c = cf.config();
    [
        ("CF_WEBHOOK_SECRET", CF_SECRET.to_string()),
        ("HALO_AUTH_URL", halo.auth_url()),
        ("HALO_API_BASE_URL", halo.api_url()),
        ("HALO_CLIENT_ID", h.client_id.clone()),
        ("HALO_CLIENT_SECRET", h.client_secret.clone()),
        ("HALO_DEFAULT_TICKETTYPE_ID", TICKET_TYPE.to_string()),
        ("HALO_DEFAULT_CLIENT_ID", DEFAULT_CLIENT.to_string()),
        ("HALO_INTEGRATION_APPLICATION", h.app_name.clone()),
        ("HALO_INTEGRATION_AGENT_ID", h.agent_id.to_string()),
        ("HALO_WEBHOOK_SECRET", HALO_WEBHOOK_SECRET.to_string()),
        ("STATUS_PAGE_KEY", STATUS_PAGE_KEY.to_string()),
        ("CF_API_BASE_URL", cf.base_url()),
        ("CF_SERVICE_ACCOUNT_CLIENT_ID", c.client_id.clone()),
        ("CF_SERVICE_ACCOUNT_CLIENT_SECRET", c.client_secret.clone()),
        ("CF_WORKSPACE_ID", c.workspace_id.clone()),
        ("AzureWebJobsStorage", azurite.connection_string()),
        ("UPSTREAM_TIMEOUT_SECONDS", "2".to_string()),
        ("LOG_LEVEL", "info".to_string()),
        ("RECONCILE_SCHEDULE", "0 */5 * * * *".to_string()),
        // The tests send more than a hosted tenant's budget; the pacing test sets its own limit.
        ("HALO_RATE_LIMIT", "10000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Replaces one setting.
pub fn set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(k, _)| k != name);
    env.push((name.into(), value.into()));
}

impl Bridge {
    pub async fn start() -> Bridge {
        Bridge::start_with(|_| {}).await
    }

    /// Starts Azurite, the fakes and the handler under the stand-in host; `adjust` edits the settings.
    pub async fn start_with(adjust: impl FnOnce(&mut Vec<(String, String)>)) -> Bridge {
        Bridge::start_with_halo(HaloConfig::test(), adjust).await
    }

    /// The same with a Halo fake configured as given (a tenant, say).
    pub async fn start_with_halo(halo: HaloConfig, adjust: impl FnOnce(&mut Vec<(String, String)>)) -> Bridge {
        Bridge::launch(halo, false, test_queue_overrides(), adjust).await
    }

    /// The default bridge with its queue trigger's settings as given.
    pub async fn start_with_queues(queues: QueueOverrides) -> Bridge {
        Bridge::launch(HaloConfig::test(), false, queues, |_| {}).await
    }

    /// The default bridge with its Table Storage calls counted (`storage_calls`).
    pub async fn start_counting_storage() -> Bridge {
        Bridge::launch(HaloConfig::test(), true, test_queue_overrides(), |_| {}).await
    }

    async fn launch(
        halo: HaloConfig,
        count_storage: bool,
        queues: QueueOverrides,
        adjust: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Bridge {
        let azurite = Azurite::start().await.expect("Azurite (run `npm ci` first)");
        let storage_calls = match count_storage {
            true => Some(CountingProxy::start(format!("http://127.0.0.1:{}", azurite.port())).await),
            false => None,
        };
        let halo = FakeHalo::start(halo);
        let cf = FakeCf::start(CfConfig::test());
        let mut env = base_env(&halo, &cf, &azurite);
        if let Some(proxy) = &storage_calls {
            env.retain(|(k, _)| k != "AzureWebJobsStorage");
            env.push(("AzureWebJobsStorage".into(), proxy.connection_string(&azurite.queue_endpoint())));
        }
        adjust(&mut env);
        let host = start_host_with_queues(env.clone(), queues).await;
        Bridge { host, halo, cf, azurite, http: reqwest::Client::new(), storage_calls, env }
    }

    /// Runs an operator command of the handler (`dead-letters`, `replay …`) with the bridge's settings; its stdout.
    pub async fn handler_command(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .output()
            .await
            .expect("the handler runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "handler {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }

    /// Run-history writes so far (one per delivery, after its answer); needs `start_counting_storage`.
    pub fn run_history_writes(&self) -> u64 {
        let proxy = self.storage_calls.as_ref().expect("started with start_counting_storage");
        run_history_writes(&Counts::new(), &proxy.counts())
    }

    /// Table Storage (reads, writes) so far, the run history apart; needs `start_counting_storage`.
    pub fn storage_counts(&self) -> (u64, u64) {
        let proxy = self.storage_calls.as_ref().expect("started with start_counting_storage");
        reads_writes(&Counts::new(), &proxy.counts())
    }

    /// POSTs a signed delivery, as ContraForce does, with the function key.
    pub async fn send_cf(&self, event_id: &str, body: &Value) -> Answer {
        let raw = serde_json::to_vec(body).unwrap();
        self.send_cf_raw(event_id, &raw, &[]).await
    }

    /// A signed delivery with extra or overriding headers.
    pub async fn send_cf_raw(&self, event_id: &str, raw: &[u8], headers: &[(&str, &str)]) -> Answer {
        self.send_cf_signed(CF_SECRET, event_id, raw, headers).await
    }

    /// A delivery signed with `secret`.
    pub async fn send_cf_signed(&self, secret: &str, event_id: &str, raw: &[u8], headers: &[(&str, &str)]) -> Answer {
        let ts = unix_now();
        let mut map = reqwest::header::HeaderMap::new();
        let signature = sign(secret.as_bytes(), ts, raw);
        let defaults = [
            ("x-functions-key", self.host.function_key()),
            ("content-type", "application/json"),
            ("x-cf-event-id", event_id),
            ("x-cf-timestamp", &ts.to_string()),
            ("x-cf-signature", &signature),
            ("x-cf-schema", "incident.created.v1"),
        ]
        .map(|(k, v)| (k, v.to_string()));
        // Overrides replace the defaults rather than adding a second value.
        for (name, value) in defaults.iter().map(|(k, v)| (*k, v.as_str())).chain(headers.iter().copied()) {
            map.insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let request = self.http.post(self.host.function_url("cf-webhook")).headers(map);
        Answer::from(request.body(raw.to_vec()).send().await.expect("host reachable")).await
    }

    /// Sends until a 2xx that is not `queued` (as ContraForce's at-least-once delivery does), returning the final answer and attempts.
    /// Gives up only after a generous bound (a loaded machine is slow, not wrong), saying what never happened.
    pub async fn send_cf_until_done(&self, event_id: &str, body: &Value) -> (Answer, usize) {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(300);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self.send_cf(event_id, body).await;
            // `queued` is durable, but not done: a redelivery tells when the queue trigger has done it.
            if answer.status.is_success() && answer.body["status"] != "queued" {
                return (answer, attempt);
            }
            assert!(
                answer.status == StatusCode::SERVICE_UNAVAILABLE || answer.body["status"] == "queued",
                "only transient failures are retried: {answer:?}"
            );
            if tokio::time::Instant::now() > give_up {
                panic!("delivery {event_id} never answered 2xx ({attempt} attempts; last {answer:?})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// POSTs a Halo webhook payload with the `X-Halo-Secret` header.
    pub async fn send_halo(&self, payload: &Value) -> Answer {
        self.send_halo_with(payload, &[("x-halo-secret", HALO_WEBHOOK_SECRET)]).await
    }

    pub async fn send_halo_with(&self, payload: &Value, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .http
            .post(self.host.function_url("halo-webhook"))
            .header("x-functions-key", self.host.function_key())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::from(request.body(serde_json::to_vec(payload).unwrap()).send().await.expect("host reachable")).await
    }

    /// A Halo webhook for a ticket, in the shape real Halo sends (delivery GUID in `id`, ticket in `object_id`).
    pub fn halo_payload(ticket_id: i64) -> Value {
        json!({"id": "5b0c7c8e-1f2a-4c1e-9d7b-3a2b1c0d9e8f", "event": "Ticket Updated", "object_id": ticket_id,
               "ticket": {"id": ticket_id}})
    }

    /// Every log line, for searching.
    pub fn log_text(&self) -> String {
        self.host.logs().iter().map(|l| l.text.clone()).collect::<Vec<_>>().join("\n")
    }

    /// Waits for a log line containing `needle` and returns it. The handler's stdout reaches the host through a pipe,
    /// so a line logged before an answer may be read after it: a test waits for the line rather than racing it.
    pub async fn logged(&self, needle: &str) -> String {
        let found = self.host.wait_for_log(|l| l.text.contains(needle), Duration::from_secs(60)).await;
        assert!(found, "no log line contains {needle:?}:\n{}", self.log_text());
        self.host.logs().into_iter().find(|l| l.text.contains(needle)).map(|l| l.text).unwrap_or_default()
    }

    /// Asserts that none of `values` appears in any log line.
    pub fn assert_not_logged(&self, values: &[&str]) {
        let text = self.log_text();
        for value in values {
            assert!(!text.contains(value), "a secret value reached the logs");
        }
    }

    /// Asserts that no secret, token or signature reached the logs, and that nothing panicked.
    pub fn assert_clean_logs(&self) {
        let text = self.log_text();
        let h = self.halo.config();
        for secret in [
            CF_SECRET,
            HALO_WEBHOOK_SECRET,
            h.client_secret.as_str(),
            self.cf.config().client_secret.as_str(),
            self.host.function_key(),
        ] {
            assert!(!text.contains(secret), "a secret reached the logs");
        }
        let signature_like = text
            .match_indices("sha256=")
            .any(|(i, m)| text[i + m.len()..].starts_with(|c: char| c.is_ascii_hexdigit()));
        assert!(!signature_like, "a signature reached the logs");
        assert!(!text.contains("Bearer"), "a token reached the logs");
        assert!(!text.contains("panicked"), "the handler panicked:\n{text}");
    }
}

/// Waits until `done` holds (a generous bound: a loaded machine is slow, not wrong); `what` says what never
/// happened.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(tokio::time::Instant::now() < give_up, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `handler dead-letters` says the work ledger is empty: all queued work done, no dead letter.
pub async fn ledger_empties(b: &Bridge) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let listed = b.handler_command(&["dead-letters"]).await;
        if listed.contains("the work ledger is empty") {
            return;
        }
        assert!(tokio::time::Instant::now() < give_up, "the work ledger never emptied:\n{listed}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Queue settings for tests: host.json's, with retries a second apart, a quick poll and at most `MAX_DEQUEUE` tries,
/// so a retried or poisoned item is seen within seconds.
pub fn test_queue_overrides() -> QueueOverrides {
    QueueOverrides {
        max_dequeue_count: Some(MAX_DEQUEUE),
        visibility_timeout: Some(Duration::from_secs(1)),
        max_polling_interval: Some(Duration::from_millis(250)),
        ..QueueOverrides::default()
    }
}

/// The tests' `maxDequeueCount`.
pub const MAX_DEQUEUE: u32 = 4;

/// Starts the real binary under the stand-in host, with the repository as the app root and the queue trigger's
/// settings as given (a second instance of an app gets the same settings).
pub async fn start_host_with_queues(env: Vec<(String, String)>, queues: QueueOverrides) -> StandInHost {
    let mut options = HostOptions::new(repo_root()).executable(env!("CARGO_BIN_EXE_handler"));
    options.env = env;
    options.queues = queues;
    StandInHost::start(options).await.expect("the handler starts under the stand-in host")
}
