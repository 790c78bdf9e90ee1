//! Requests recorded by the fakes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use crate::faults::{method_matches, parse_method, prefix_matches};

/// One request that reached a fake (faults included), with the answer it got.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Sequence number within the fake (starts at 1; not reset by `reset_requests`).
    pub seq: u64,
    /// When the request arrived.
    pub at: SystemTime,
    /// The HTTP method, upper-case (`GET`, `POST`, ...).
    pub method: String,
    /// The raw request path as sent (percent-encoding preserved).
    pub path: String,
    /// The raw query string without `?` (empty when there was none).
    pub query: String,
    /// Request headers with lower-case names; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The request body bytes.
    pub body: Bytes,
    /// The status answered: 0 while the request is still being handled and for `Break` (no
    /// answer was sent); 200 for `ApplyThenBreak` (the status the client saw before the body
    /// broke).
    pub status: u16,
    /// The kind of fault injected into this request, if any (see `Fault::kind`).
    pub fault: Option<String>,
}

impl Recorded {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The decoded query pairs, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        crate::util::query_pairs(&self.query)
    }

    /// The first value of a query parameter (name compared case-insensitively).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs().into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// `true` when the method matches (`"*"` for any) and the path starts with `path_prefix`
    /// (case-insensitive).
    pub fn matches(&self, method: &str, path_prefix: &str) -> bool {
        let m = parse_method(method);
        let own = parse_method(&self.method);
        let method_ok = match (m.as_ref(), own.as_ref()) {
            (None, _) => true,
            (Some(want), Some(got)) => method_matches(Some(want), got),
            (Some(_), None) => false,
        };
        method_ok && prefix_matches(&self.path, path_prefix)
    }
}

/// The shared, append-only request log of a fake.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestLog {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug, Default)]
struct LogInner {
    next_seq: u64,
    items: Vec<Recorded>,
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a request (status 0) and returns its sequence number.
    pub(crate) fn push(&self, mut rec: Recorded) -> u64 {
        let mut l = self.lock();
        l.next_seq += 1;
        rec.seq = l.next_seq;
        l.items.push(rec);
        l.next_seq
    }

    /// Sets the answer of a recorded request.
    pub(crate) fn finish(&self, seq: u64, status: u16, fault: Option<&str>) {
        let mut l = self.lock();
        if let Some(r) = l.items.iter_mut().rev().find(|r| r.seq == seq) {
            r.status = status;
            r.fault = fault.map(str::to_string);
        }
    }

    pub(crate) fn all(&self) -> Vec<Recorded> {
        self.lock().items.clone()
    }

    pub(crate) fn clear(&self) {
        self.lock().items.clear();
    }

    /// Counts requests matching `method` (`"*"` for any) and any of the path forms produced by
    /// `paths` for each request.
    pub(crate) fn count_with(&self, method: &str, prefix: &str, paths: impl Fn(&str) -> Vec<String>) -> usize {
        self.lock()
            .items
            .iter()
            .filter(|r| r.matches(method, "") && paths(&r.path).iter().any(|p| prefix_matches(p, prefix)))
            .count()
    }
}
