//! The operator's status page, `/api/status` (function `status`, `authLevel: anonymous`): the run history, what is
//! queued or dead-lettered now, and a Replay button for each dead letter. HTML for a browser, the same data as JSON
//! for scripts (`Accept: application/json`).
//!
//! It checks its own key, `STATUS_PAGE_KEY`, rather than a Functions key: a host key would have to travel in the
//! page's URL (`?code=`), and so in browser history, proxy logs and every form on the page, and it would open more
//! than this page. A browser signs in once (`POST /api/status/login` with the key) and gets an `HttpOnly`,
//! `SameSite=Strict` session cookie, an HMAC of its expiry under the key (rotating the key ends every session); a
//! script sends the key in `X-Status-Key`. A change (Replay) is a POST carrying a CSRF token derived from the
//! session; nothing changes on a GET.

mod page;

use super::error::ApiError;
use crate::app::App;
use crate::secrets::{constant_time_eq, SecretId};
use crate::store::records::WorkState;
use crate::store::runs::{Counts, RunFilter, RunRecord};
use crate::work::Replay;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::Reply;

/// The page's path, under the host's `/api` prefix.
pub(crate) const PATH: &str = "/api/status";
const COOKIE: &str = "bridge_status";
/// How long a browser session lasts.
const SESSION_SECONDS: i64 = 8 * 3600;
/// Deliveries the page lists.
pub const LIST_LIMIT: usize = 100;
/// The window the page's chart and unfiltered list cover.
pub const WINDOW_HOURS: usize = 24;
/// The window a filtered list (one incident, one ticket) searches.
const FILTERED_DAYS: i64 = 30;

type HmacSha256 = Hmac<Sha256>;

/// Everything the page shows: the same for HTML, JSON and `handler runs`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// Counts per outcome for each hour of the window, oldest first.
    pub hours: Vec<Hour>,
    /// The window's counts per outcome.
    pub totals: Counts,
    /// The work ledger now: queued, dead-lettered and uncertain work.
    pub work: Vec<Work>,
    /// The newest deliveries the filter selects (oldest first when following one incident or ticket: its timeline).
    #[serde(serialize_with = "camel_case")]
    pub runs: Vec<RunRecord>,
    pub filter: Filter,
    #[serde(skip)]
    pub halo_web_url: Option<String>,
}

/// The run records with the page's JSON naming (camelCase; Table Storage's is PascalCase).
fn camel_case<S: serde::Serializer>(runs: &[RunRecord], serializer: S) -> Result<S::Ok, S::Error> {
    let camel = |record: &RunRecord| -> serde_json::Map<String, serde_json::Value> {
        let serde_json::Value::Object(fields) = serde_json::to_value(record).unwrap_or_default() else {
            return serde_json::Map::new();
        };
        let lower = |name: &str| {
            name.chars().next().map(|c| c.to_ascii_lowercase().to_string() + &name[1..]).unwrap_or_default()
        };
        fields.into_iter().map(|(name, value)| (lower(&name), value)).collect()
    };
    serializer.collect_seq(runs.iter().map(camel))
}

#[derive(Debug, Serialize)]
pub struct Hour {
    pub hour: String,
    pub outcomes: Counts,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Work {
    pub id: String,
    pub state: WorkState,
    pub attempts: u32,
    pub reason: String,
    pub first_at: i64,
    pub updated_at: i64,
}

/// The page's filters, from its query string.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filter {
    pub direction: Option<String>,
    pub outcome: Option<String>,
    pub incident: Option<String>,
    pub ticket: Option<i64>,
}

impl Filter {
    /// From `direction=&outcome=&incident=&ticket=` (unknown names ignored; empty values are no filter).
    pub(crate) fn parse(query: &str) -> Result<Filter, ApiError> {
        let mut filter = Filter::default();
        for (name, value) in form_pairs(query) {
            let value = value.trim().to_string();
            if value.is_empty() {
                continue;
            }
            match name.as_str() {
                "direction" => filter.direction = Some(value),
                "outcome" => filter.outcome = Some(value),
                "incident" => filter.incident = Some(value),
                "ticket" => {
                    let ticket = value.parse::<i64>().ok().filter(|t| *t > 0);
                    filter.ticket =
                        Some(ticket.ok_or_else(|| ApiError::BadRequest("ticket must be a ticket id".into()))?);
                }
                _ => {}
            }
        }
        Ok(filter)
    }

    /// Following one incident or one ticket: its timeline.
    pub fn follows_one(&self) -> bool {
        self.incident.is_some() || self.ticket.is_some()
    }

    fn runs(&self) -> RunFilter {
        RunFilter {
            function: self.direction.clone(),
            outcome: self.outcome.clone(),
            reference: self.incident.clone(),
            ticket_id: self.ticket,
            work_id: None,
        }
    }
}

/// Reads what the page shows: the runs since `since_ms` (default: the last 24 hours, or 30 days when following
/// one incident or ticket), at most `limit`.
pub(crate) async fn view(
    app: &App,
    filter: Filter,
    now_ms: i64,
    since_ms: Option<i64>,
    limit: usize,
) -> Result<View, ApiError> {
    let unavailable = |e: crate::store::StoreError| ApiError::Unavailable(format!("state storage: {e}"), None);
    let store =
        app.store.as_ref().ok_or_else(|| ApiError::Unavailable("state storage is not configured".into(), None))?;
    let hour_ms = 3_600_000;
    let since = since_ms.unwrap_or(if filter.follows_one() {
        now_ms - FILTERED_DAYS * 24 * hour_ms
    } else {
        now_ms - WINDOW_HOURS as i64 * hour_ms
    });
    let selected = filter.runs();
    let (counts, runs) =
        tokio::try_join!(store.run_counts(WINDOW_HOURS, now_ms), store.runs(&selected, since, now_ms, limit))
            .map_err(unavailable)?;
    let mut runs = runs;
    if filter.follows_one() {
        runs.reverse();
    }
    let mut totals = Counts::new();
    for (_, outcomes) in &counts {
        for (outcome, n) in outcomes {
            *totals.entry(outcome.clone()).or_default() += n;
        }
    }
    let work = match &app.ledger {
        Some(ledger) => ledger.list().await.map_err(unavailable)?,
        None => Vec::new(),
    };
    let work = work
        .into_iter()
        .map(|(id, r)| Work {
            id,
            state: r.state,
            attempts: r.attempts,
            reason: r.reason,
            first_at: r.first_at,
            updated_at: r.updated_at,
        })
        .collect();
    let hours = counts.into_iter().map(|(hour, outcomes)| Hour { hour, outcomes }).collect();
    Ok(View { hours, totals, work, runs, filter, halo_web_url: app.config.halo_web_url.clone() })
}

/// `/api/status[/login|/replay]`, any method (the function's route is `status/{*action}`).
pub(crate) async fn handle(
    app: Arc<App>,
    method: Method,
    action: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let keys: Vec<String> =
        app.secrets.accepted(SecretId::StatusPage).into_iter().map(|(k, _)| k.expose().to_string()).collect();
    if keys.is_empty() {
        let off = crate::app::DirectionOff {
            direction: "status",
            problems: app.secrets.current(SecretId::StatusPage).err().into_iter().collect(),
        };
        return ApiError::DirectionOff(off).into_response(None);
    }
    let now = crate::domain::unix_now();
    let session = session_of(&headers, &keys, now);
    let result = match (action.as_str(), method) {
        ("", Method::GET) => match session {
            Some(session) => page(&app, &query, &headers, &keys, &session).await,
            None => Ok(unauthorized(&headers, None)),
        },
        ("login", Method::POST) => Ok(login(&body, &keys, now)),
        ("logout", Method::POST) => {
            Ok(see_other(PATH, Some(format!("{COOKIE}=; Path={PATH}; Max-Age=0; HttpOnly; Secure; SameSite=Strict"))))
        }
        ("replay", Method::POST) => match session {
            Some(session) => replay(&app, &body, &keys, &session).await,
            None => Ok(unauthorized(&headers, None)),
        },
        ("" | "login" | "logout" | "replay", _) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    };
    let mut response = result.unwrap_or_else(|e| e.into_response(None));
    let headers = response.headers_mut();
    headers.insert("cache-control", "no-store".parse().expect("a valid header"));
    headers.insert("x-content-type-options", "nosniff".parse().expect("a valid header"));
    headers.insert("referrer-policy", "no-referrer".parse().expect("a valid header"));
    headers.insert("x-frame-options", "DENY".parse().expect("a valid header"));
    headers.insert(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"
            .parse()
            .expect("a valid header"),
    );
    response
}

/// Who is asking: a script with the key (`X-Status-Key`), or a browser with a session cookie. The session is the
/// text the CSRF token is derived from.
fn session_of(headers: &HeaderMap, keys: &[String], now: i64) -> Option<String> {
    if let Some(presented) = header(headers, "x-status-key") {
        return keys.iter().any(|k| constant_time_eq(k.as_bytes(), presented.as_bytes())).then(|| format!("key.{now}"));
    }
    let cookies = header(headers, "cookie")?;
    let session = cookies.split(';').map(str::trim).find_map(|c| c.strip_prefix(&format!("{COOKIE}=")))?;
    let (expiry, mac) = session.split_once('.')?;
    let expiry: i64 = expiry.parse().ok()?;
    if expiry < now {
        return None;
    }
    let mac = hex::decode(mac).ok()?;
    keys.iter().any(|k| signer(k, &format!("session|{expiry}")).verify_slice(&mac).is_ok()).then(|| session.to_string())
}

fn signer(key: &str, text: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(text.as_bytes());
    mac
}

fn sign(key: &str, text: &str) -> String {
    hex::encode(signer(key, text).finalize().into_bytes())
}

/// The CSRF token of a session (under the current key).
fn csrf_token(keys: &[String], session: &str) -> String {
    sign(&keys[0], &format!("csrf|{session}"))
}

fn csrf_ok(keys: &[String], session: &str, token: &str) -> bool {
    let Ok(token) = hex::decode(token) else { return false };
    keys.iter().any(|k| signer(k, &format!("csrf|{session}")).verify_slice(&token).is_ok())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn wants_json(headers: &HeaderMap) -> bool {
    header(headers, "accept").is_some_and(|a| a.to_ascii_lowercase().contains("application/json"))
}

/// `application/x-www-form-urlencoded` pairs (query strings and form bodies).
fn form_pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes()).map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
}

async fn page(
    app: &App,
    query: &str,
    headers: &HeaderMap,
    keys: &[String],
    session: &str,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(query)?;
    let pairs: BTreeMap<String, String> = form_pairs(query).into_iter().collect();
    let view = view(app, filter, crate::domain::unix_now_ms(), None, LIST_LIMIT).await?;
    if wants_json(headers) {
        return Ok(warp::reply::json(&view).into_response());
    }
    let notice = pairs.get("replayed").map(|id| format!("Work {id} was put back on the queue."));
    let html = page::render(&view, &csrf_token(keys, session), notice.as_deref());
    Ok(warp::reply::html(html).into_response())
}

fn login(body: &Bytes, keys: &[String], now: i64) -> Response {
    let form: BTreeMap<String, String> = form_pairs(&String::from_utf8_lossy(body)).into_iter().collect();
    let presented = form.get("key").map(String::as_str).unwrap_or("");
    let ok = !presented.is_empty() && keys.iter().any(|k| constant_time_eq(k.as_bytes(), presented.as_bytes()));
    if !ok {
        tracing::warn!(outcome = "unauthorized", "status page: a sign-in with a wrong key");
        return unauthorized(&HeaderMap::new(), Some("That key is not the status page's key."));
    }
    let expiry = now + SESSION_SECONDS;
    let session = format!("{expiry}.{}", sign(&keys[0], &format!("session|{expiry}")));
    let cookie =
        format!("{COOKIE}={session}; Path={PATH}; Max-Age={SESSION_SECONDS}; HttpOnly; Secure; SameSite=Strict");
    see_other(PATH, Some(cookie))
}

async fn replay(app: &App, body: &Bytes, keys: &[String], session: &str) -> Result<Response, ApiError> {
    let form: BTreeMap<String, String> = form_pairs(&String::from_utf8_lossy(body)).into_iter().collect();
    if !csrf_ok(keys, session, form.get("csrf").map(String::as_str).unwrap_or("")) {
        return Err(ApiError::Forbidden("the form is stale or was not sent by the status page: reload it".into()));
    }
    let id = form.get("id").map(String::as_str).unwrap_or("").trim();
    if id.is_empty() {
        return Err(ApiError::BadRequest("no work id".into()));
    }
    let ledger =
        app.ledger.as_ref().ok_or_else(|| ApiError::Unavailable("durable work is not configured".into(), None))?;
    let replayed = ledger.replay(id).await.map_err(|e| ApiError::Unavailable(format!("replay: {e}"), None))?;
    tracing::info!(work_id = id, outcome = ?replayed, "status page: replay");
    match replayed {
        Replay::Queued | Replay::NothingToDo => {
            let encoded: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            Ok(see_other(&format!("{PATH}?replayed={encoded}"), None))
        }
        Replay::Unreadable => Err(ApiError::BadRequest("this dead letter cannot be turned back into work".into())),
    }
}

fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut response = warp::reply::with_status(warp::reply(), StatusCode::SEE_OTHER).into_response();
    response.headers_mut().insert("location", location.parse().expect("a path is a valid header"));
    if let Some(cookie) = cookie {
        response.headers_mut().insert("set-cookie", cookie.parse().expect("a cookie is a valid header"));
    }
    response
}

/// 401: the sign-in form for a browser, a bare error for a script. Nothing of the page's data.
fn unauthorized(headers: &HeaderMap, message: Option<&str>) -> Response {
    if wants_json(headers) {
        return ApiError::Unauthorized.into_response(None);
    }
    let html = page::login(message);
    warp::reply::with_status(warp::reply::html(html), StatusCode::UNAUTHORIZED).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded_and_filters_parsed() {
        assert_eq!(form_pairs("a=cf%7Csentinel%7Ca+b"), [("a".to_string(), "cf|sentinel|a b".to_string())]);
        let f = Filter::parse("direction=cf-webhook&incident=cf%7Cs%7C1&ticket=&outcome=").unwrap();
        assert_eq!(
            (f.direction.as_deref(), f.incident.as_deref(), f.ticket),
            (Some("cf-webhook"), Some("cf|s|1"), None)
        );
        assert!(Filter::parse("ticket=abc").is_err());
    }

    #[test]
    fn a_session_is_good_until_it_expires_and_only_under_the_key() {
        let keys = vec!["the-key".to_string()];
        let session = format!("{}.{}", 2_000, sign("the-key", "session|2000"));
        let mut headers = HeaderMap::new();
        headers.insert("cookie", format!("other=1; {COOKIE}={session}").parse().unwrap());
        assert_eq!(session_of(&headers, &keys, 1_999).as_deref(), Some(session.as_str()));
        assert!(session_of(&headers, &keys, 2_001).is_none(), "expired");
        assert!(session_of(&headers, &["another".to_string()], 1_999).is_none(), "a rotated key ends it");
        let token = csrf_token(&keys, &session);
        assert!(csrf_ok(&keys, &session, &token));
        assert!(!csrf_ok(&keys, "another-session", &token));
        let mut scripted = HeaderMap::new();
        scripted.insert("x-status-key", "the-key".parse().unwrap());
        assert!(session_of(&scripted, &keys, 1).is_some());
        scripted.insert("x-status-key", "the-kez".parse().unwrap());
        assert!(session_of(&scripted, &keys, 1).is_none());
    }
}
