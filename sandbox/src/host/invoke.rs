//! The invocation envelope (docs/functions-host.md, Invocation envelope): `POST /<function>` with
//! `{"Data": {<binding>: …}, "Metadata": {…, "sys": {…}}}`, the answer judged as the host judges it, the host's
//! log lines, and the record of each invocation.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use warp::http::{HeaderMap, HeaderValue};

use super::config::{Trigger, TriggeredFunction};
use super::{LogLevel, Shared};
use crate::util::{utc_now_ticks, uuid_v4};

/// Why a function was invoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvocationReason {
    /// A message on the function's queue.
    QueueMessage,
    /// [`super::StandInHost::invoke`] or `POST /admin/functions/<name>`.
    HostApi,
}

/// How an invocation ended, as the host judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler answered 2xx with a JSON body.
    Succeeded,
    /// Anything else: a non-2xx or non-JSON answer, no answer, the function timeout, or input the host could not
    /// bind (a message that is not base64); the text says which.
    Failed(String),
}

impl Outcome {
    /// Whether it succeeded.
    pub fn succeeded(&self) -> bool {
        *self == Outcome::Succeeded
    }
}

/// What became of an invocation's queue message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Deleted after a success.
    Deleted,
    /// Made visible again after `visibilityTimeout` for another attempt.
    Released,
    /// Copied to `<queue>-poison` and deleted (the attempt at `maxDequeueCount` failed).
    Poisoned,
}

/// One finished envelope invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// The invocation id (`x-azure-functions-invocationid`, and `Id=` in the log lines).
    pub id: String,
    /// The function.
    pub function: String,
    /// Why it ran.
    pub reason: InvocationReason,
    /// The queue message's id (a queue message only).
    pub message_id: Option<String>,
    /// The message's dequeue count (a queue message only).
    pub dequeue_count: Option<u32>,
    /// What the handler got as `Data.<binding>`.
    pub input: Value,
    /// How it ended.
    pub outcome: Outcome,
    /// What became of the message; `None` for a host API invocation, or when the storage call failed (logged).
    pub disposition: Option<Disposition>,
}

/// The queue- or timer-triggered function named `name` (case-insensitively, as the host names functions).
pub(crate) fn find(shared: &Shared, name: &str) -> Option<TriggeredFunction> {
    shared.app.triggered.iter().find(|f| f.name.eq_ignore_ascii_case(name)).cloned()
}

/// What the timer binding gives a function invoked outside its schedule (`TimerInfo` as JSON).
fn timer_info() -> Value {
    json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false})
}

/// Invokes a function as the admin API does and records it.
pub(crate) async fn by_host_api(shared: &Arc<Shared>, function: &TriggeredFunction, input: &str) -> Invocation {
    let data = match function.trigger {
        Trigger::Timer { .. } => timer_info(),
        Trigger::Queue { .. } => Value::String(input.to_string()),
    };
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let call = Call {
        function,
        reason: "This function was programmatically called via the host APIs.".into(),
        details: None,
        input: Ok(data.clone()),
        metadata: Map::new(),
    };
    let (id, outcome) = call.run(shared).await;
    let invocation = Invocation {
        id,
        function: function.name.clone(),
        reason: InvocationReason::HostApi,
        message_id: None,
        dequeue_count: None,
        input: data,
        outcome,
        disposition: None,
    };
    shared.invocations().push(invocation.clone());
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    invocation
}

/// One invocation to make.
pub(crate) struct Call<'a> {
    pub function: &'a TriggeredFunction,
    /// `Reason=` of the "Executing" line.
    pub reason: String,
    /// A "Trigger Details: …" line, for a queue message.
    pub details: Option<String>,
    /// `Data.<binding>`, or why the trigger data could not be bound (the invocation fails without a request).
    pub input: Result<Value, String>,
    /// The trigger metadata (`sys` is added).
    pub metadata: Map<String, Value>,
}

impl Call<'_> {
    /// Logs "Executing", sends the envelope, logs "Executed"; returns the invocation id and the outcome.
    pub(crate) async fn run(self, shared: &Shared) -> (String, Outcome) {
        let id = uuid_v4();
        let name = &self.function.name;
        shared.host_log(
            LogLevel::Information,
            format!("Executing 'Functions.{name}' (Reason='{}', Id={id})", self.reason),
        );
        if let Some(details) = &self.details {
            shared.host_log(LogLevel::Information, details.clone());
        }
        let started = Instant::now();
        let outcome = match self.input {
            Err(why) => Outcome::Failed(why),
            Ok(data) => {
                let mut metadata = self.metadata;
                metadata.insert(
                    "sys".into(),
                    json!({"MethodName": name, "UtcNow": utc_now_ticks(), "RandGuid": uuid_v4()}),
                );
                let mut envelope = Map::new();
                envelope.insert(self.function.binding.clone(), data);
                let body = json!({"Data": envelope, "Metadata": metadata});
                send(shared, name, &id, body).await
            }
        };
        let ms = started.elapsed().as_millis();
        match &outcome {
            Outcome::Succeeded => shared.host_log(
                LogLevel::Information,
                format!("Executed 'Functions.{name}' (Succeeded, Id={id}, Duration={ms}ms)"),
            ),
            Outcome::Failed(why) => shared.host_log(
                LogLevel::Error,
                format!("Executed 'Functions.{name}' (Failed, Id={id}, Duration={ms}ms): {why}"),
            ),
        }
        (id, outcome)
    }
}

/// Sends one envelope and judges the answer; the handler's `Logs` are logged as the invocation's lines.
async fn send(shared: &Shared, name: &str, id: &str, body: Value) -> Outcome {
    let Some(port) = shared.ready_handler_port().await else {
        return Outcome::Failed("the handler is not running".into());
    };
    let timeout: Duration = shared.app.function_timeout;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        headers.insert("host", v);
    }
    super::proxy::add_host_headers(&mut headers, id, false);
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let path = format!("/{name}");
    let attempt = super::proxy::exchange(port, hyper::Method::POST, path, headers, body);
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Outcome::Failed(format!("Timeout value of {timeout:?} was exceeded by function: Functions.{name}")),
        Ok(Err(e)) => Outcome::Failed(format!("no answer from the handler: {e}")),
        Ok(Ok((parts, bytes))) => {
            let status = parts.status;
            let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
            if let Some(logs) = answer.as_ref().and_then(|a| a.get("Logs")).and_then(Value::as_array) {
                for line in logs {
                    let text = line.as_str().map(str::to_string).unwrap_or_else(|| line.to_string());
                    shared.host_log(LogLevel::Information, text);
                }
            }
            if !status.is_success() {
                Outcome::Failed(format!("the handler answered {status}"))
            } else if answer.is_none() {
                Outcome::Failed("the handler's answer is not JSON".into())
            } else {
                Outcome::Succeeded
            }
        }
    }
}
