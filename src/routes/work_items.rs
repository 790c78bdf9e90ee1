//! The queue-triggered functions, invoked by the Functions host with its invocation envelope (POST
//! `/<function name>`, `{"Data": {"item": <message>}, "Metadata": {"DequeueCount": n, ...}}`, answered
//! `{"Outputs": {}, "Logs": [...], "ReturnValue": null}`; docs/durable-work.md cites the protocol):
//!
//! - `work-items` does one queued item. Done (or found done): 200, and the host deletes the message. Refused for
//!   good: dead-lettered, 200. An upstream asking to wait: queued again with that delay, 200 (no attempt spent).
//!   Any other failure: 500, and the host makes the message visible again after the visibility timeout, until
//!   `maxDequeueCount`, when it moves it to `work-items-poison`.
//! - `dead-letters` reads `work-items-poison`: each message there becomes a dead letter.
//! - `reconcile` (a timer trigger) runs one reconcile pass (`directions::reconcile`).

use super::error::ApiError;
use crate::app::App;
use crate::cf::event;
use crate::directions::halo_webhook::HaloWebhookOutcome;
use crate::directions::reconcile::{Mode, RECONCILE_FUNCTION};
use crate::domain::EventId;
use crate::store::runs::RunRecord;
use crate::trace::Trace;
use crate::upstream::REQUEST_BUDGET;
use crate::work::{Ledger, WorkFailure, WorkItem, DEAD_LETTER_FUNCTION, WORK_FUNCTION};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::time::Instant;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// A function the host invokes with the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    WorkItems,
    DeadLetters,
    /// Timer-triggered: one reconcile run (`directions::reconcile`).
    Reconcile,
    /// Timer-triggered, hourly: the run history's summaries and retention.
    Housekeeping,
}

/// The housekeeping timer's function name.
pub(crate) const HOUSEKEEPING_FUNCTION: &str = "housekeeping";
/// The most run records one housekeeping run deletes (it runs hourly: 2,000 an hour keeps up with 48,000
/// deliveries a day).
const HOUSEKEEPING_DELETES: usize = 2_000;

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::WorkItems => WORK_FUNCTION,
            Function::DeadLetters => DEAD_LETTER_FUNCTION,
            Function::Reconcile => RECONCILE_FUNCTION,
            Function::Housekeeping => HOUSEKEEPING_FUNCTION,
        }
    }
}

/// The function a path segment names (case-insensitively, as the host names functions).
pub(crate) fn function_for(segment: &str) -> Option<Function> {
    [Function::WorkItems, Function::DeadLetters, Function::Reconcile, Function::Housekeeping]
        .into_iter()
        .find(|f| segment.eq_ignore_ascii_case(f.name()))
}

#[derive(Deserialize)]
struct Invocation {
    #[serde(rename = "Data")]
    data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    metadata: Map<String, Value>,
}

impl Invocation {
    /// The queue message's text: the host passes it as a JSON string (or, for JSON text, possibly as the value).
    fn message(&self) -> Option<String> {
        match self.data.get("item")? {
            Value::String(text) => Some(text.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    fn dequeue_count(&self) -> u32 {
        match self.metadata.get("DequeueCount") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(1) as u32,
            Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
            _ => 1,
        }
    }
}

/// How one invocation ended.
enum Ended {
    /// The message is done with (done, found done, dead-lettered, or queued again with a delay).
    Settled(&'static str),
    /// Failed: the host retries it.
    Failed(String),
}

pub(crate) async fn handle(function: Function, app: Arc<App>, body: Bytes) -> Response {
    let started = Instant::now();
    let invocation: Invocation = match serde_json::from_slice(&body) {
        Ok(invocation) => invocation,
        Err(_) => return ApiError::BadRequest("not an invocation envelope".into()).into_response(None),
    };
    if function == Function::Housekeeping {
        return housekeeping(&app, started).await;
    }
    if function == Function::Reconcile {
        // The timer's `Data.timer` (its schedule status) is not read: the host's timestamps there are unreliable
        // for custom handlers, and the run keeps its own cursor.
        return reconcile(&app, started).await;
    }
    let Some(message) = invocation.message() else {
        return ApiError::BadRequest("the envelope has no Data.item".into()).into_response(None);
    };
    let dequeue_count = invocation.dequeue_count();
    let item = WorkItem::from_message(&message);
    let work_id = item.as_ref().map(WorkItem::id);
    let trace = Arc::new(Trace::default());
    let received_ms = crate::domain::unix_now_ms();
    let ended = match app.ledger.as_ref() {
        None => Ended::Failed("durable work is not configured (no work queue or state storage)".into()),
        Some(ledger) => match (function, &item) {
            (_, None) => match ledger.unreadable(&message).await {
                Ok(_) => Ended::Settled("dead-lettered"),
                Err(e) => Ended::Failed(format!("state storage: {e}")),
            },
            (Function::DeadLetters, Some(item)) => match ledger.exhausted(item, dequeue_count).await {
                Ok(_) => Ended::Settled("dead-lettered"),
                Err(e) => Ended::Failed(format!("state storage: {e}")),
            },
            (_, Some(item)) => Trace::scope(trace.clone(), work(&app, ledger, item)).await,
        },
    };
    let route = function.name();
    let (status, outcome, error, logs) = match ended {
        Ended::Settled(outcome) => (StatusCode::OK, outcome, None, vec![format!("{route}: {outcome}")]),
        Ended::Failed(reason) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "retry",
            Some(reason.clone()),
            vec![format!("{route}: failed, the host retries it: {reason}")],
        ),
    };
    let (reference, event_id, ticket_id) = match &item {
        Some(WorkItem::CfEvent { reference, event_id, .. }) => (Some(reference.clone()), Some(event_id.clone()), None),
        Some(
            WorkItem::HaloTicket { ticket } | WorkItem::HaloClose { ticket } | WorkItem::HaloAction { ticket, .. },
        ) => (None, None, Some(*ticket)),
        None => (None, None, None),
    };
    let run = RunRecord {
        received_ms,
        function: route.to_string(),
        outcome: run_outcome(outcome).to_string(),
        status: Some(status.as_u16()),
        event_id,
        reference,
        ticket_id,
        work_id: work_id.clone(),
        attempts: dequeue_count,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
        correlation_id: crate::store::runs::correlation_id(),
        ..RunRecord::default()
    }
    .traced(&trace);
    app.runs.record(run, "invocation").await;
    let answer = json!({"Outputs": {}, "Logs": logs, "ReturnValue": {"outcome": outcome, "workId": work_id}});
    warp::reply::with_status(warp::reply::json(&answer), status).into_response()
}

/// An attempt's outcome as the run history names it: the work `completed`, was `retried` (the host tries again,
/// or it was put back with the upstream's delay), or `dead-lettered`.
fn run_outcome(ended: &str) -> &'static str {
    match ended {
        "done" => "completed",
        "dead-lettered" => "dead-lettered",
        _ => "retried",
    }
}

/// The hourly housekeeping: finished hours summarized, run records past `RUN_RETENTION_DAYS` deleted. A failure
/// fails the invocation; the next hour tries again.
async fn housekeeping(app: &App, started: Instant) -> Response {
    let route = HOUSEKEEPING_FUNCTION;
    let Some(store) = app.store.as_ref() else {
        let answer =
            json!({"Outputs": {}, "Logs": [format!("{route}: no state storage")], "ReturnValue": {"outcome": "off"}});
        return warp::reply::json(&answer).into_response();
    };
    let keep_ms = app.config.run_retention.as_millis() as i64;
    let tidied = store.tidy_runs(crate::domain::unix_now_ms(), keep_ms, HOUSEKEEPING_DELETES).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status, outcome, logs) = match tidied {
        Ok(deleted) => {
            tracing::info!(route, status = 200, outcome = "done", deleted, duration_ms, "housekeeping");
            (StatusCode::OK, "done", vec![format!("{route}: {deleted} old run records deleted")])
        }
        Err(e) => {
            tracing::warn!(route, status = 500, outcome = "failed", duration_ms, detail = %e, "housekeeping");
            (StatusCode::INTERNAL_SERVER_ERROR, "failed", vec![format!("{route}: failed: {e}")])
        }
    };
    let answer = json!({"Outputs": {}, "Logs": logs, "ReturnValue": {"outcome": outcome}});
    warp::reply::with_status(warp::reply::json(&answer), status).into_response()
}

/// One timer-triggered reconcile run, logged as one line. A run that could not start (storage down, the direction
/// off) fails the invocation: the timer does not retry, the next schedule runs again.
async fn reconcile(app: &App, started: Instant) -> Response {
    let route = RECONCILE_FUNCTION;
    let run = match app.reconcile() {
        Ok(run) => run,
        // Nothing to reconcile without the direction it backs up (a cf-webhook-only deployment): not a failure.
        Err(off) => {
            tracing::info!(route, status = 200, outcome = "off", direction = off.direction, "reconcile");
            let answer = json!({"Outputs": {}, "Logs": [format!("{route}: {} is off", off.direction)], "ReturnValue": {"outcome": "off"}});
            return warp::reply::json(&answer).into_response();
        }
    };
    let ran = run.run(Mode::Apply).await.map_err(|e| e.to_string());
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status, value, logs) = match ran {
        Ok(ran) => {
            ran.log(duration_ms);
            (StatusCode::OK, ran.json(), vec![format!("{route}: {}", ran.summary())])
        }
        Err(reason) => {
            tracing::warn!(route, status = 500, outcome = "failed", duration_ms, detail = %reason, "reconcile");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"outcome": "failed"}),
                vec![format!("{route}: failed: {reason}")],
            )
        }
    };
    let answer = json!({"Outputs": {}, "Logs": logs, "ReturnValue": value});
    warp::reply::with_status(warp::reply::json(&answer), status).into_response()
}

/// Does one work item from the queue, and settles its record.
async fn work(app: &App, ledger: &Ledger, item: &WorkItem) -> Ended {
    let result = match run(app, ledger, item).await {
        Ok(result) => result,
        Err(reason) => return Ended::Failed(reason),
    };
    let settled = match result {
        Ok(()) => ledger.completed(item).await.map(|_| "done"),
        Err(failure) if failure.is_permanent => {
            ledger.dead_letter(item, None, &failure.reason).await.map(|_| "dead-lettered")
        }
        // The upstream said when: put it back with that delay instead of spending one of the host's attempts.
        Err(failure) if failure.retry_after.is_some() => {
            match ledger.enqueue(item, None, &failure.reason, failure.retry_after).await {
                Ok(_) => return Ended::Settled("rescheduled"),
                Err(e) => return Ended::Failed(format!("{}; could not queue it again: {e}", failure.reason)),
            }
        }
        Err(failure) => {
            if let Err(e) = ledger.attempt_failed(item, &failure.reason).await {
                tracing::warn!(error = %e, "could not record a failed attempt");
            }
            return Ended::Failed(failure.reason);
        }
    };
    match settled {
        Ok(outcome) => Ended::Settled(outcome),
        Err(e) => Ended::Failed(format!("state storage: {e}")),
    }
}

/// A failed attempt, as the ledger needs it.
struct Failed {
    is_permanent: bool,
    reason: String,
    retry_after: Option<std::time::Duration>,
}

fn failed(failure: impl WorkFailure) -> Failed {
    Failed { is_permanent: failure.is_permanent(), reason: failure.to_string(), retry_after: failure.retry_after() }
}

/// Runs the item through its direction with the full request budget. The outer error: the item cannot run at all
/// now (the direction is off).
async fn run(app: &App, ledger: &Ledger, item: &WorkItem) -> Result<Result<(), Failed>, String> {
    let off = |off: crate::app::DirectionOff| format!("{} is off", off.direction);
    match item {
        WorkItem::CfEvent { event_id, signed_at, .. } => {
            let body = match ledger.body(item).await {
                Ok(Some(body)) => body,
                // No record: the work was done (and its record removed) by an earlier delivery of this message.
                Ok(None) => return Ok(Ok(())),
                Err(e) => return Err(format!("state storage: {e}")),
            };
            let parsed = event::Body::read(body.as_bytes()).envelope();
            let (Some(event_id), Ok(envelope)) = (EventId::parse(event_id), parsed) else {
                let reason = "the recorded delivery no longer parses".to_string();
                return Ok(Err(Failed { is_permanent: true, reason, retry_after: None }));
            };
            let work = app.cf_webhook(REQUEST_BUDGET).map_err(off)?;
            let delivery = crate::cf::signature::delivery_id(*signed_at, body.as_bytes());
            Ok(work.deliver(&event_id, &delivery, &envelope.incident).await.map(drop).map_err(failed))
        }
        WorkItem::HaloTicket { ticket } | WorkItem::HaloClose { ticket } => {
            let work = app.halo_webhook(REQUEST_BUDGET).map_err(off)?;
            Ok(work.sync(*ticket).await.map(drop).map_err(failed))
        }
        WorkItem::HaloAction { ticket, action } => {
            let work = app.halo_webhook(REQUEST_BUDGET).map_err(off)?;
            Ok(work.forward_action(*ticket, *action).await.map(|_: HaloWebhookOutcome| ()).map_err(failed))
        }
    }
}
