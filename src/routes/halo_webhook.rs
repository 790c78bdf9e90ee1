//! POST /api/halo-webhook: a Halo ticket webhook becomes ContraForce comments and a close, each exactly once.

use super::error::ApiError;
use super::{finish_inline, header, json_reply, require_json, set_aside_reply, Inline, RequestLog};
use crate::app::App;
use crate::directions::halo_webhook::HaloWebhookOutcome;
use crate::directions::HALO_WEBHOOK;
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
    let result = process(app, &headers, body, &mut log).await;
    log.finish(&HALO_WEBHOOK, started, result)
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
    let inline_budget = app.config.inline_budget;
    app.halo_webhook(inline_budget).map_err(ApiError::DirectionOff)?;
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
    let Some(ticket) = ticket_id(&payload) else {
        log.outcome = "ignored";
        return Ok(json_reply(json!({"status": "ignored", "reason": "no ticket id in payload"})));
    };
    log.ticket_id = Some(ticket);

    let work_app = app.clone();
    let inline = finish_inline(&app, WorkItem::HaloTicket { ticket }, None, async move {
        let work = work_app.halo_webhook(inline_budget).map_err(ApiError::DirectionOff)?;
        Ok(work.sync(ticket).await)
    })
    .await?;
    let outcome = match inline {
        Inline::Done(outcome) => outcome,
        Inline::Queued(id) => return Ok(set_aside_reply(log, "queued", id)),
        Inline::DeadLettered(id) => return Ok(set_aside_reply(log, "dead-lettered", id)),
    };
    Ok(match outcome {
        HaloWebhookOutcome::Ignored(reason) => {
            log.outcome = "ignored";
            json_reply(json!({"status": "ignored", "reason": reason}))
        }
        HaloWebhookOutcome::Processed { forwarded, closed, set_aside } => {
            log.outcome = "processed";
            log.detail = Some(format!("{forwarded} forwarded, closed: {closed}, set aside: {set_aside}"));
            json_reply(json!({
                "status": "processed", "actionsForwarded": forwarded, "closed": closed, "setAside": set_aside,
            }))
        }
    })
}
