//! POST /api/cf-webhook: a signed ContraForce `incident.created.v1` delivery becomes exactly one Halo ticket.

use super::error::ApiError;
use super::{finish_inline, header, json_reply, require_json, set_aside_reply, Inline, RequestLog};
use crate::app::App;
use crate::cf::event::{self, INCIDENT_CREATED};
use crate::cf::signature::{self, SignatureHeaders};
use crate::directions::CF_WEBHOOK;
use crate::domain::{unix_now, EventId};
use crate::secrets::{Generation, SecretId};
use crate::work::WorkItem;
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
    log.finish(&app, &CF_WEBHOOK, started, result).await
}

async fn process(app: Arc<App>, headers: &HeaderMap, body: Bytes, log: &mut RequestLog) -> Result<Response, ApiError> {
    require_json(headers)?;
    if body.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let event_id = header(headers, "x-cf-event-id").and_then(EventId::parse).ok_or(ApiError::MissingEventId)?;
    log.event_id = Some(event_id.to_string());
    let inline_budget = app.config.inline_budget;
    let cfg = app.cf_webhook(inline_budget).map_err(ApiError::DirectionOff)?.config();

    let accepted = app.secrets.accepted(SecretId::CfWebhook);
    let keys: Vec<&[u8]> = accepted.iter().map(|(s, _)| s.expose().as_bytes()).collect();
    let signed =
        SignatureHeaders { signature: header(headers, "x-cf-signature"), timestamp: header(headers, "x-cf-timestamp") };
    let signed_at = match signature::verify(&keys, signed, &body, unix_now(), cfg.max_skew) {
        Ok(matched) => {
            if accepted[matched.0].1 == Generation::Previous {
                tracing::info!(event_id = ?event_id.as_str(), "signature matched the previous CF webhook secret (rotation grace window)");
            }
            matched.1
        }
        Err(reason) => {
            log.detail = Some(reason.to_string());
            return Err(ApiError::InvalidSignature);
        }
    };

    let raw = body;
    let body = event::Body::read(&raw);
    let is_test = header(headers, "x-cf-test").is_some_and(|v| v.eq_ignore_ascii_case("true")) || body.is_test();
    if is_test && !cfg.process_test_events {
        log.outcome = "test";
        return Ok(json_reply(json!({"status": "test"})));
    }
    let envelope = body.envelope().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let schema =
        header(headers, "x-cf-schema").map(str::to_string).or_else(|| envelope.kind.clone()).unwrap_or_default();
    if !schema.eq_ignore_ascii_case(INCIDENT_CREATED) {
        log.outcome = "ignored";
        return Ok(json_reply(
            json!({"status": "ignored", "reason": format!("unhandled schema: {}", truncate(&schema))}),
        ));
    }
    let incident = envelope.incident;
    log.reference = Some(incident.reference.to_string());

    let item =
        WorkItem::CfEvent { reference: incident.reference.to_string(), event_id: event_id.to_string(), signed_at };
    let delivery = signature::delivery_id(signed_at, &raw);
    let verified = String::from_utf8_lossy(&raw).into_owned();
    let work_app = app.clone();
    let inline = finish_inline(&app, &log.trace, item, Some(verified), async move {
        let work = work_app.cf_webhook(inline_budget).map_err(ApiError::DirectionOff)?;
        Ok(work.deliver(&event_id, &delivery, &incident).await)
    })
    .await?;
    let outcome = match inline {
        Inline::Done(outcome) => outcome,
        Inline::Queued(id) => return Ok(set_aside_reply(log, "queued", id)),
        Inline::DeadLettered(id) => return Ok(set_aside_reply(log, "dead-lettered", id)),
    };
    log.outcome = outcome.status();
    log.ticket_id = Some(outcome.ticket_id());
    Ok(json_reply(json!({"status": outcome.status(), "ticketId": outcome.ticket_id()})))
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}
