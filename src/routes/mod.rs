//! HTTP: the readiness probe and one route per direction, as the Functions host forwards them (`/api/<name>`, raw
//! body bytes). Errors become statuses in `error`, and each request ends in one log line.

mod cf_webhook;
pub mod error;
mod halo_webhook;
pub mod status;
mod work_items;

use crate::app::App;
use crate::directions::{Direction, CF_WEBHOOK, HALO_WEBHOOK};
use crate::store::runs::RunRecord;
use crate::trace::Trace;
use crate::work::{WorkFailure, WorkItem};
use bytes::Bytes;
use error::ApiError;
use futures::future::BoxFuture;
use futures::StreamExt;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Reply};

/// Largest accepted webhook body.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// How long a route waits for its work before queueing it instead (the inline work itself goes on; the queued
/// item then finds it done or in flight). Inline work has `INLINE_BUDGET_SECONDS`; this is the bound on storage.
const ANSWER_WITHIN: Duration = Duration::from_secs(27);

/// How a direction's route handles one request.
type Handler = fn(Arc<App>, HeaderMap, Bytes) -> BoxFuture<'static, Response>;

fn cf_webhook_route(app: Arc<App>, headers: HeaderMap, body: Bytes) -> BoxFuture<'static, Response> {
    Box::pin(cf_webhook::handle(app, headers, body))
}

fn halo_webhook_route(app: Arc<App>, headers: HeaderMap, body: Bytes) -> BoxFuture<'static, Response> {
    Box::pin(halo_webhook::handle(app, headers, body))
}

/// Each direction's route, served at `/api/<direction name>` (the function's name; matched case-insensitively, as
/// the Functions host matches routes).
const ROUTES: [(&Direction, Handler); 2] = [(&CF_WEBHOOK, cf_webhook_route), (&HALO_WEBHOOK, halo_webhook_route)];

fn handler_for(segment: &str) -> Option<Handler> {
    ROUTES.iter().find(|(direction, _)| segment.eq_ignore_ascii_case(direction.name())).map(|(_, handler)| *handler)
}

/// All routes of the handler.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let readiness = warp::path::end()
        .and(warp::get().or(warp::head()).unify())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let invocation_app = with_app_of(app.clone());
    let status_app = with_app_of(app.clone());
    let with_app = with_app_of(app);
    let direction = warp::path!("api" / String)
        .and_then(|segment: String| async move { handler_for(&segment).ok_or_else(warp::reject::not_found) })
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(limited_body())
        .and(with_app)
        .then(|handler: Handler, headers, body, app| guarded(handler(app, headers, body)));
    let invocation = warp::path!(String)
        .and_then(
            |segment: String| async move { work_items::function_for(&segment).ok_or_else(warp::reject::not_found) },
        )
        .and(warp::post())
        .and(limited_body())
        .and(invocation_app)
        .then(|function, body, app| guarded(work_items::handle(function, app, body)));
    let status = warp::path("api")
        .and(warp::path("status"))
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(limited_body())
        .and(status_app)
        .then(|tail: warp::path::Tail, method, query, headers, body, app| {
            guarded(status::handle(
                app,
                method,
                tail.as_str().trim_matches('/').to_ascii_lowercase(),
                query,
                headers,
                body,
            ))
        });
    readiness.or(status).unify().or(direction).unify().or(invocation).unify().recover(error::recover).unify()
}

/// The app, handed to a route's handler.
fn with_app_of(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// Runs one request; a panic while handling it (in a dependency, on some input) fails that request with a 500 and
/// a log line, and the process goes on serving (the release profile unwinds: `Cargo.toml`). Work a webhook spawned
/// is already apart: its panic is a failed attempt, queued and then dead-lettered like any other.
async fn guarded(request: impl std::future::Future<Output = Response>) -> Response {
    match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(status = 500, outcome = "panic", "request: the handler panicked; the request failed");
            ApiError::Internal.into_response(None)
        }
    }
}

/// The body, at most `MAX_BODY_BYTES`. A declared length over the limit is a 413 without keeping the body; a
/// chunked body of unknown length is a 411. A request with neither header has an empty body (the Functions host
/// forwards an empty body that way), which the routes answer with a 400.
fn limited_body() -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::header::optional::<String>("transfer-encoding"))
        .and(warp::body::stream())
        .and_then(|length: Option<u64>, encoding: Option<String>, body| async move {
            match (length, encoding) {
                (Some(n), _) if n > MAX_BODY_BYTES => {
                    if n <= DRAIN_LIMIT_BYTES {
                        drain(body).await;
                    }
                    Err(warp::reject::custom(error::TooLarge))
                }
                (None, Some(_)) => Err(warp::reject::custom(error::LengthRequired)),
                _ => collect(body).await,
            }
        })
}

/// A refused body up to this declared size is read and thrown away before the 413 is sent. A server that closes
/// with unread data resets the connection, and the reset can discard its answer before the sender (the Functions
/// host) reads it (RFC 9112 §9.6); the host then reports a failed call instead of the 413. Beyond this the
/// connection is closed unread: nobody sends that much by mistake.
const DRAIN_LIMIT_BYTES: u64 = 8 * MAX_BODY_BYTES;

async fn drain<B: bytes::Buf>(body: impl futures::Stream<Item = Result<B, warp::Error>>) {
    let mut body = std::pin::pin!(body);
    while let Some(Ok(_)) = body.next().await {}
}

/// The body in memory, refused (413) past `MAX_BODY_BYTES` whatever the headers said.
async fn collect<B: bytes::Buf>(
    body: impl futures::Stream<Item = Result<B, warp::Error>>,
) -> Result<Bytes, warp::Rejection> {
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| warp::reject::custom(error::UnreadableBody))?;
        if (out.len() + chunk.remaining()) as u64 > MAX_BODY_BYTES {
            return Err(warp::reject::custom(error::TooLarge));
        }
        bytes::BufMut::put(&mut out, chunk);
    }
    Ok(out.freeze())
}

/// A header as text; `None` when absent, repeated, or not visible ASCII (a 4xx, never a 500). A repeated
/// signature, timestamp or event id is ambiguous: which one did the sender mean? None of them is taken.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok().map(str::trim)
}

/// A body we parse must be JSON when the sender says what it is (and says it once).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match header(headers, "content-type") {
        None if headers.contains_key("content-type") => Err(ApiError::UnsupportedMediaType),
        None => Ok(()),
        Some(ct) => {
            let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if mime == "application/json" || mime.ends_with("+json") {
                Ok(())
            } else {
                Err(ApiError::UnsupportedMediaType)
            }
        }
    }
}

/// One request's run record and log line, filled in as the request goes. Its correlation id is in the line and in
/// any error answer, so a sender's report of a failure finds the line that explains it (the answer itself says
/// only what kind of failure it was). Outside text is never logged raw; no secret, token, signature or query.
struct RequestLog {
    correlation_id: String,
    received_ms: i64,
    event_id: Option<String>,
    reference: Option<String>,
    ticket_id: Option<i64>,
    work_id: Option<String>,
    outcome: &'static str,
    detail: Option<String>,
    /// What the request's work did (its calls, its routing).
    trace: Arc<Trace>,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog {
            correlation_id: crate::store::runs::correlation_id(),
            received_ms: crate::domain::unix_now_ms(),
            event_id: None,
            reference: None,
            ticket_id: None,
            work_id: None,
            outcome: "",
            detail: None,
            trace: Arc::new(Trace::default()),
        }
    }
}

impl RequestLog {
    async fn finish(
        self,
        app: &App,
        direction: &Direction,
        started: Instant,
        result: Result<Response, ApiError>,
    ) -> Response {
        let (response, outcome, detail) = match result {
            Ok(response) => (response, self.outcome, self.detail),
            Err(e) => {
                let detail = self.detail.or_else(|| Some(e.to_string()));
                let outcome = e.outcome();
                (e.into_response(Some(&self.correlation_id)), outcome, detail)
            }
        };
        let run = RunRecord {
            received_ms: self.received_ms,
            function: direction.name().to_string(),
            outcome: outcome.to_string(),
            status: Some(response.status().as_u16()),
            event_id: self.event_id,
            reference: self.reference,
            ticket_id: self.ticket_id,
            work_id: self.work_id,
            attempts: 1,
            error: detail,
            duration_ms: started.elapsed().as_millis() as u64,
            correlation_id: self.correlation_id,
            ..RunRecord::default()
        }
        .traced(&self.trace);
        app.runs.record(run, "request").await;
        response
    }
}

/// How a webhook's work ended: done inline, or set aside durably (queued, or dead-lettered when refused for good).
pub(crate) enum Inline<T> {
    Done(T),
    Queued(String),
    DeadLettered(String),
}

/// Runs the request's work as its own task (so a slow answer never cuts it off half-way). When it fails, or does
/// not finish in time, its `item` (with the verified `body` it needs) goes to the work ledger: dead-lettered when
/// the failure is permanent, else queued for the queue trigger. Only then is the sender answered 200; when the
/// work cannot be recorded and queued, the answer is 503 as before.
async fn finish_inline<T, E>(
    app: &App,
    trace: &Arc<Trace>,
    item: WorkItem,
    body: Option<String>,
    work: impl std::future::Future<Output = Result<Result<T, E>, ApiError>> + Send + 'static,
) -> Result<Inline<T>, ApiError>
where
    T: Send + 'static,
    E: WorkFailure + Send + 'static,
{
    let (permanent, reason, retry_after) =
        match tokio::time::timeout(ANSWER_WITHIN, tokio::spawn(Trace::scope(trace.clone(), work))).await {
            Ok(Ok(Ok(Ok(done)))) => return Ok(Inline::Done(done)),
            Ok(Ok(Ok(Err(failure)))) => (failure.is_permanent(), failure.to_string(), failure.retry_after()),
            Ok(Ok(Err(refused))) => return Err(refused),
            Ok(Err(join)) => (false, format!("processing failed: {join}"), None),
            Err(_) => (false, "still processing when the answer was due".to_string(), None),
        };
    let Some(ledger) = app.ledger.as_ref() else { return Err(ApiError::Unavailable(reason, retry_after)) };
    if permanent {
        return match ledger.dead_letter(&item, body.as_deref(), &reason).await {
            Ok(id) => Ok(Inline::DeadLettered(id)),
            Err(e) => Err(ApiError::Unavailable(format!("{reason}; the dead letter could not be written: {e}"), None)),
        };
    }
    match ledger.enqueue(&item, body.as_deref(), &reason, retry_after).await {
        Ok(id) => Ok(Inline::Queued(id)),
        Err(e) => Err(ApiError::Unavailable(format!("{reason}; the work could not be queued: {e}"), retry_after)),
    }
}

/// The answer for work set aside, and its log outcome.
fn set_aside_reply(log: &mut RequestLog, status: &'static str, work_id: String) -> Response {
    log.outcome = status;
    log.work_id = Some(work_id.clone());
    json_reply(serde_json::json!({"status": status, "workId": work_id}))
}

fn json_reply(value: serde_json::Value) -> Response {
    warp::reply::json(&value).into_response()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panic_fails_its_request_with_a_500_and_the_next_request_is_served() {
        let failed = super::guarded(async { panic!("a dependency panicked") }).await;
        assert_eq!(failed.status(), warp::http::StatusCode::INTERNAL_SERVER_ERROR);
        let served = super::guarded(async { warp::Reply::into_response(warp::reply()) }).await;
        assert_eq!(served.status(), warp::http::StatusCode::OK);
    }
}
