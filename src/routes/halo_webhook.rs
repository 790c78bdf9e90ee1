//! POST /api/halo-webhook: a Halo ticket webhook becomes ContraForce comments and a close, each exactly once.

use super::error::ApiError;
use super::{finish_inline, header, json_reply, require_json, Inline, RequestLog};
use crate::app::App;
use crate::directions::halo_webhook::HaloWebhookOutcome;
use crate::directions::HALO_WEBHOOK;
use crate::domain::TicketId;
use crate::halo::webhook::ticket_id;
use crate::secrets::{constant_time_eq, Generation, SecretId};
use crate::work::WorkItem;
use base64::Engine;
use bytes::Bytes;
use serde_json::json;
use std::sync::Arc;
use tokio::time::Instant;
use warp::http::HeaderMap;
use warp::reply::Response;

pub async fn handle(app: Arc<App>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let mut log = RequestLog::default();
    let result = process(app.clone(), &headers, body, &mut log).await;
    log.finish(&app, &HALO_WEBHOOK, started, result).await
}

/// The secret the caller presented: `X-Halo-Secret`, else the password of HTTP Basic auth.
fn presented_secret(headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut secrets = headers.get_all("x-halo-secret").iter();
    if let Some(secret) = secrets.next() {
        // A repeated header is ambiguous: refused.
        return secrets.next().is_none().then(|| secret.as_bytes().to_vec());
    }
    let encoded = header(headers, "authorization")?;
    let (scheme, credentials) = encoded.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

/// Which accepted secret matches, compared in constant time; an empty secret never matches.
fn authenticate(app: &App, headers: &HeaderMap) -> Option<Generation> {
    let presented = presented_secret(headers)?;
    let mut matched = None;
    for (secret, generation) in app.secrets.accepted(SecretId::HaloWebhook) {
        let expected = secret.expose().as_bytes();
        if !expected.is_empty() && constant_time_eq(expected, &presented) && matched.is_none() {
            matched = Some(generation);
        }
    }
    matched
}

async fn process(app: Arc<App>, headers: &HeaderMap, body: Bytes, log: &mut RequestLog) -> Result<Response, ApiError> {
    app.halo_webhook(app.config.inline_budget).map_err(ApiError::DirectionOff)?;
    match authenticate(&app, headers) {
        None => return Err(ApiError::InvalidCallbackSecret),
        Some(Generation::Previous) => {
            tracing::info!("Halo webhook authenticated with the previous secret (rotation grace window)")
        }
        Some(Generation::Current) => {}
    }
    require_json(headers)?;
    if body.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let payload: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    // Halo can batch several events into one delivery (a JSON array): each event's ticket is synced, once.
    let batched = payload.is_array();
    let mut tickets: Vec<TicketId> = match &payload {
        serde_json::Value::Array(events) => events.iter().filter_map(ticket_id).collect(),
        one => ticket_id(one).into_iter().collect(),
    };
    let mut seen = std::collections::HashSet::new();
    tickets.retain(|t| seen.insert(*t));
    if tickets.is_empty() {
        log.outcome = "ignored";
        return Ok(json_reply(json!({"status": "ignored", "reason": "no ticket id in payload"})));
    }
    if tickets.len() > MAX_BATCH_TICKETS {
        return Err(ApiError::BadRequest(format!(
            "a delivery names {} tickets; at most {MAX_BATCH_TICKETS} are taken at once",
            tickets.len()
        )));
    }
    if !batched {
        log.ticket_id = Some(tickets[0]);
        let (body, outcome, detail) = sync_one(&app, &log.trace, tickets[0]).await?;
        log.outcome = outcome;
        log.work_id = body.get("workId").and_then(|w| w.as_str()).map(str::to_string);
        log.detail = detail;
        return Ok(json_reply(body));
    }
    // Concurrently, so the whole batch is answered within one inline budget; every ticket is done or queued
    // before the 2xx (a failure to queue any of them is the delivery's 503).
    let results = futures::future::join_all(tickets.iter().map(|t| sync_one(&app, &log.trace, *t))).await;
    let mut bodies = Vec::with_capacity(results.len());
    for (ticket, result) in tickets.iter().zip(results) {
        let (mut body, _, _) = result?;
        body["ticketId"] = json!(ticket);
        bodies.push(body);
    }
    log.outcome = "processed";
    log.detail = Some(format!("a batch of {} tickets", bodies.len()));
    Ok(json_reply(json!({"status": "processed", "tickets": bodies})))
}

/// The most distinct tickets one delivery may name (Halo batches a few events; more is not a Halo delivery).
const MAX_BATCH_TICKETS: usize = 100;

/// One ticket's sync, done inline or set aside durably: its answer, outcome, and what it did in words.
async fn sync_one(
    app: &Arc<App>,
    trace: &Arc<crate::trace::Trace>,
    ticket: TicketId,
) -> Result<(serde_json::Value, &'static str, Option<String>), ApiError> {
    let inline_budget = app.config.inline_budget;
    let work_app = app.clone();
    let inline = finish_inline(app, trace, WorkItem::HaloTicket { ticket }, None, async move {
        let work = work_app.halo_webhook(inline_budget).map_err(ApiError::DirectionOff)?;
        Ok(work.sync(ticket).await)
    })
    .await?;
    Ok(match inline {
        Inline::Queued(id) => (json!({"status": "queued", "workId": id}), "queued", None),
        Inline::DeadLettered(id) => (json!({"status": "dead-lettered", "workId": id}), "dead-lettered", None),
        Inline::Done(HaloWebhookOutcome::Ignored(reason)) => {
            (json!({"status": "ignored", "reason": reason}), "ignored", Some(reason.to_string()))
        }
        // Part of it was refused for good and dead-lettered: the run says so (the answer is still `processed`).
        Inline::Done(HaloWebhookOutcome::Processed { forwarded, closed, set_aside }) => (
            json!({"status": "processed", "actionsForwarded": forwarded, "closed": closed, "setAside": set_aside}),
            if set_aside > 0 { "dead-lettered" } else { "processed" },
            Some(format!("{forwarded} forwarded, closed: {closed}, set aside: {set_aside}")),
        ),
    })
}
