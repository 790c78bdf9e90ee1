//! Plumbing shared by the fakes: capture a whole request, record it, apply faults, answer.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::faults::{Fault, Faults};
use crate::record::{Recorded, RequestLog};

/// A fully read request.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    pub method: Method,
    /// Raw path as sent.
    pub path: String,
    /// Raw query without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The path split into percent-decoded segments (empty segments dropped).
    pub(crate) fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect()
    }
}

/// A planned answer.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Outgoing {
    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Outgoing {
        Outgoing {
            status,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    pub(crate) fn empty(status: u16) -> Outgoing {
        Outgoing { status, headers: Vec::new(), body: Bytes::new() }
    }

    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Outgoing {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub(crate) fn into_response(self) -> warp::reply::Response {
        let mut resp = warp::reply::Response::new(self.body.into());
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in self.headers {
            if let (Ok(name), Ok(value)) =
                (warp::http::header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v))
            {
                resp.headers_mut().append(name, value);
            }
        }
        resp
    }
}

enum Planned {
    Normal(Outgoing),
    /// `true`: 200 and headers first, then the body breaks.
    Broken(bool),
}

/// A 200 answer whose body breaks. With `head_first` the status line, headers and one body
/// byte are flushed before the body fails (the client sees 200, then a body error); without it
/// the connection is cut before anything is sent (the client sees an incomplete message).
pub(crate) fn broken_response(head_first: bool) -> warp::reply::Response {
    use futures::StreamExt;
    let first: Vec<Result<Bytes, std::io::Error>> =
        if head_first { vec![Ok(Bytes::from_static(b"{"))] } else { Vec::new() };
    let fail = futures::stream::once(async move {
        if head_first {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err::<Bytes, _>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "sandbox: injected broken response"))
    });
    let body = futures::stream::iter(first).chain(fail);
    let mut resp = warp::reply::stream(body).into_response();
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

/// Captures method, raw path, raw query, headers and the whole body.
pub(crate) fn capture() -> impl Filter<Extract = (Incoming,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(|method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| Incoming {
            method,
            path: path.as_str().to_string(),
            query,
            headers,
            body,
        })
}

pub(crate) fn headers_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        map.entry(k.as_str().to_ascii_lowercase())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    map
}

/// Records `req`, applies the fault plan, runs `handler` (which applies the operation) and
/// answers. The work runs in its own task, so the outcome does not depend on whether the client
/// stays connected.
pub(crate) async fn respond<H, Fut>(
    log: RequestLog,
    faults: Faults,
    req: Incoming,
    fault_paths: Vec<String>,
    handler: H,
) -> warp::reply::Response
where
    H: FnOnce(Incoming) -> Fut + Send + 'static,
    Fut: Future<Output = Outgoing> + Send + 'static,
{
    let task = tokio::spawn(async move {
        let seq = log.push(Recorded {
            seq: 0,
            at: SystemTime::now(),
            method: req.method.as_str().to_string(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: headers_map(&req.headers),
            body: req.body.clone(),
            status: 0,
            fault: None,
        });
        let method = req.method.clone();
        let path = req.path.clone();
        let paths: Vec<&str> = fault_paths.iter().map(String::as_str).collect();
        if let Some(wait) = faults.latency() {
            tokio::time::sleep(wait).await;
        }
        let fault = faults.decide(&req.method, &paths);
        let kind = fault.as_ref().map(Fault::kind);
        let planned = match fault {
            None => Planned::Normal(handler(req).await),
            Some(Fault::Status { code, retry_after }) => {
                let mut out =
                    Outgoing::json(code, &serde_json::json!({"error": "sandbox: injected fault", "status": code}));
                if let Some(secs) = retry_after {
                    out = out.with_header("retry-after", &secs.to_string());
                }
                Planned::Normal(out)
            }
            Some(Fault::DelayBefore(d)) => {
                tokio::time::sleep(d).await;
                Planned::Normal(handler(req).await)
            }
            Some(Fault::ApplyThenDelay(d)) => {
                let out = handler(req).await;
                log.finish(seq, out.status, kind);
                tokio::time::sleep(d).await;
                Planned::Normal(out)
            }
            Some(Fault::ApplyThenBreak) => {
                let _ = handler(req).await;
                Planned::Broken(true)
            }
            Some(Fault::Break) => Planned::Broken(false),
        };
        let status = match &planned {
            Planned::Normal(out) => out.status,
            Planned::Broken(true) => 200,
            Planned::Broken(false) => 0,
        };
        log.finish(seq, status, kind);
        tracing::info!(seq, method = %method, path = %path, status, fault = kind, "sandbox request");
        planned
    });
    match task.await {
        Ok(Planned::Normal(out)) => out.into_response(),
        Ok(Planned::Broken(head_first)) => broken_response(head_first),
        Err(_) => Outgoing::empty(500).into_response(),
    }
}
