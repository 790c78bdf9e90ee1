//! Routing, key checks and forwarding (docs/functions-host.md, HTTP forwarding), the home page, and the admin API
//! that invokes a queue or timer function.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use warp::http::header::HeaderValue;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Rejection};

use super::config::{match_template, AuthLevel, FunctionInfo};
use super::{Phase, Shared, HOST_VERSION, MAX_BODY_BYTES, MAX_URL_BYTES};
use crate::util::uuid_v4;

/// Hop-by-hop headers: never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
];

/// .NET content headers: `TryAddWithoutValidation` on request headers fails for them, so the
/// host drops them silently; only Content-Type and Content-Length come back, on the content.
const CONTENT_HEADERS: &[&str] = &[
    "allow",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "expires",
    "last-modified",
];

/// The host's warp filter: captures everything and answers every request itself.
pub(crate) fn filter(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().map(Some).or(warp::any().map(|| None)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: warp::path::FullPath, query: Option<String>, headers: HeaderMap, body| {
            let shared = shared.clone();
            let path = path.as_str().to_string();
            async move { handle(shared, method, path, query, headers, Box::pin(body)).await }
        })
}

fn empty(status: StatusCode) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(Bytes::new().into());
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, body: &str) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(Bytes::from(body.to_string()).into());
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn decoded_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// Finds the functions whose route matches the path (ignoring methods).
fn route<'a>(shared: &'a Shared, path: &str) -> Vec<&'a FunctionInfo> {
    let segs = decoded_segments(path);
    let prefix = &shared.app.route_prefix;
    if segs.len() < prefix.len() || !segs.iter().zip(prefix.iter()).all(|(a, b)| a.eq_ignore_ascii_case(b)) {
        return Vec::new();
    }
    let rest = &segs[prefix.len()..];
    shared.app.functions.iter().filter(|f| match_template(&f.template, rest).is_some()).collect()
}

fn key_ok(shared: &Shared, level: AuthLevel, headers: &HeaderMap, query: Option<&str>) -> bool {
    let opts = &shared.opts;
    if !opts.enforce_keys || level == AuthLevel::Anonymous {
        return true;
    }
    // x-functions-key takes precedence over ?code=.
    let key = match headers.get("x-functions-key") {
        Some(v) => v.to_str().ok().map(str::to_string),
        None => query.and_then(|q| {
            crate::util::query_pairs(q).into_iter().find(|(k, _)| k.eq_ignore_ascii_case("code")).map(|(_, v)| v)
        }),
    };
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return false;
    };
    match level {
        AuthLevel::Admin => key == opts.master_key,
        _ => key == opts.function_key || key == opts.host_key || key == opts.master_key,
    }
}

/// Characters `UrlEncoder.Default` leaves alone, approximately: the RFC 3986 unreserved set.
const QUERY_ENCODE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Rebuilds the query from parsed pairs as `QueryHelpers.AddQueryString` does: repeated keys
/// joined with `,`, keys and values re-encoded.
pub(crate) fn rebuild_query(raw: &str) -> String {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in crate::util::query_pairs(raw) {
        match merged.iter_mut().find(|(mk, _)| mk.eq_ignore_ascii_case(&k)) {
            Some((_, vs)) => vs.push(v),
            None => merged.push((k, vec![v])),
        }
    }
    merged
        .into_iter()
        .map(|(k, vs)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(&k, QUERY_ENCODE),
                percent_encoding::utf8_percent_encode(&vs.join(","), QUERY_ENCODE)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn read_body<S, B>(mut body: S, limit: u64) -> Result<Bytes, StatusCode>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if buf.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

async fn handle<S, B>(
    shared: Arc<Shared>,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if path.len() + query.as_ref().map_or(0, |q| q.len() + 1) > MAX_URL_BYTES {
        return empty(StatusCode::URI_TOO_LONG);
    }
    if method == Method::GET && path == "/" {
        return home_page(&shared);
    }
    if let Some(name) = admin_function(&path) {
        if method != Method::POST {
            return empty(StatusCode::METHOD_NOT_ALLOWED);
        }
        if !key_ok(&shared, AuthLevel::Admin, &headers, query.as_deref()) {
            return empty(StatusCode::UNAUTHORIZED);
        }
        return match read_body(body, MAX_BODY_BYTES).await {
            Ok(body) => invoke_by_admin(shared, &name, &body),
            Err(status) => empty(status),
        };
    }
    let candidates = route(&shared, &path);
    let Some(function) = candidates.into_iter().find(|f| f.allows(method.as_str())).cloned() else {
        return empty(StatusCode::NOT_FOUND);
    };
    if !key_ok(&shared, function.auth_level, &headers, query.as_deref()) {
        return empty(StatusCode::UNAUTHORIZED);
    }
    let content_length: Option<u64> =
        headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    if content_length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return empty(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body = match read_body(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(status) => return empty(status),
    };
    let app = &shared.app;
    let mode = if app.proxying {
        Mode::Proxying
    } else if app.forwarding {
        Mode::Forwarding
    } else {
        Mode::Envelope
    };
    if mode == Mode::Envelope || !function.in_and_out {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "envelope mode not supported by the stand-in for HTTP functions",
        );
    }
    let port = {
        let s = shared.state();
        match (&s.phase, &s.child) {
            (Phase::Running, Some(c)) => c.port,
            _ => return text(StatusCode::SERVICE_UNAVAILABLE, "Function host is not running."),
        }
    };
    let invocation_id = uuid_v4();
    let (target, out_headers, out_body) = match mode {
        Mode::Forwarding => {
            let rebuilt = query.as_deref().map(rebuild_query).unwrap_or_default();
            let target = if rebuilt.is_empty() { path.clone() } else { format!("{path}?{rebuilt}") };
            let send_body = content_length.is_some_and(|n| n > 0);
            let mut h = HeaderMap::new();
            for (name, value) in &headers {
                let n = name.as_str();
                if HOP_BY_HOP.contains(&n) || CONTENT_HEADERS.contains(&n) {
                    continue;
                }
                h.append(name.clone(), value.clone());
            }
            if send_body {
                if let Some(ct) = headers.get("content-type") {
                    h.insert("content-type", ct.clone());
                }
                h.insert("content-length", HeaderValue::from(body.len() as u64));
            }
            add_host_headers(&mut h, &invocation_id, false);
            (target, h, if send_body { body } else { Bytes::new() })
        }
        _ => {
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let mut h = HeaderMap::new();
            for (name, value) in &headers {
                if HOP_BY_HOP.contains(&name.as_str()) || name.as_str() == "content-length" {
                    continue;
                }
                h.append(name.clone(), value.clone());
            }
            if !body.is_empty() {
                h.insert("content-length", HeaderValue::from(body.len() as u64));
            }
            add_host_headers(&mut h, &invocation_id, true);
            (target, h, body)
        }
    };
    // hyper's connection-level client does not add a Host header; HttpClient would.
    let out_headers = if out_headers.contains_key("host") { out_headers } else { with_host(out_headers, port) };
    forward(&shared, port, method, target, out_headers, out_body).await
}

/// `GET /`: the host's home page, while the handler runs (so "is it up?" means the handler is ready too).
fn home_page(shared: &Shared) -> warp::reply::Response {
    if shared.handler_port().is_none() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Function host is not running.");
    }
    let mut r = warp::reply::Response::new(
        Bytes::from_static(b"<html><body>Your Functions 4.0 app is up and running (stand-in host)</body></html>")
            .into(),
    );
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// The function name of an admin API path `/admin/functions/<name>`.
fn admin_function(path: &str) -> Option<String> {
    let segs = decoded_segments(path);
    match segs.as_slice() {
        [admin, functions, name]
            if admin.eq_ignore_ascii_case("admin") && functions.eq_ignore_ascii_case("functions") =>
        {
            Some(name.clone())
        }
        _ => None,
    }
}

/// `POST /admin/functions/<name>` with `{"input": "..."}`: 202 at once, the invocation runs meanwhile.
fn invoke_by_admin(shared: Arc<Shared>, name: &str, body: &[u8]) -> warp::reply::Response {
    let Some(function) = super::invoke::find(&shared, name) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(o)) => match o.get("input") {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            },
            _ => return text(StatusCode::BAD_REQUEST, "the body must be a JSON object like {\"input\": \"...\"}"),
        }
    };
    tokio::spawn(async move { super::invoke::by_host_api(&shared, &function, &input).await });
    empty(StatusCode::ACCEPTED)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forwarding,
    Proxying,
    Envelope,
}

fn with_host(mut h: HeaderMap, port: u16) -> HeaderMap {
    if let Ok(v) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        h.insert("host", v);
    }
    h
}

pub(crate) fn add_host_headers(h: &mut HeaderMap, invocation_id: &str, proxying: bool) {
    h.insert("x-azure-functions-hostversion", HeaderValue::from_static(HOST_VERSION));
    if let Ok(v) = HeaderValue::from_str(invocation_id) {
        h.insert("x-azure-functions-invocationid", v.clone());
        if proxying {
            h.insert("x-ms-invocation-id", v);
        }
    }
    if !proxying {
        let agent = format!("Azure-Functions-Host/{HOST_VERSION}");
        let ua = match h.get("user-agent").and_then(|v| v.to_str().ok()) {
            Some(existing) if !existing.is_empty() => format!("{existing} {agent}"),
            _ => agent,
        };
        if let Ok(v) = HeaderValue::from_str(&ua) {
            h.insert("user-agent", v);
        }
    }
}

async fn forward(
    shared: &Shared,
    port: u16,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    let timeout: Duration = shared.app.request_timeout;
    let attempt = exchange(port, method, target, headers, body);
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => empty(StatusCode::BAD_GATEWAY),
        Ok(Err(_)) => {
            let running = matches!(shared.state().phase, Phase::Running);
            if running {
                empty(StatusCode::BAD_GATEWAY)
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "Function host is not running.")
            }
        }
        Ok(Ok((parts, bytes))) => {
            let mut resp = warp::reply::Response::new(bytes.into());
            *resp.status_mut() = parts.status;
            for (name, value) in parts.headers.iter() {
                if HOP_BY_HOP.contains(&name.as_str()) {
                    continue;
                }
                resp.headers_mut().append(name.clone(), value.clone());
            }
            resp
        }
    }
}

/// One HTTP/1.1 exchange with the handler on a fresh loopback connection (as the host's HttpClient makes it): the
/// answer's head and whole body, or why there was none.
pub(super) async fn exchange(
    port: u16,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(hyper::http::response::Parts, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(target)
        .body(http_body_util::Full::new(body))
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = headers;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_rebuilt() {
        assert_eq!(rebuild_query("a=1&b=x%20y&a=2&code=k"), "a=1%2C2&b=x%20y&code=k");
        assert_eq!(rebuild_query("flag&q=a+b"), "flag=&q=a%20b");
        assert_eq!(rebuild_query(""), "");
        assert_eq!(rebuild_query("r=cf%7Csentinel"), "r=cf%7Csentinel");
    }
}
