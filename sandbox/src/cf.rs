//! `FakeCf`: an in-process fake of the ContraForce v2 API calls the bridge makes
//! (add comment, set status), with HTTP Basic auth, recording every request.
//!
//! Served paths under `/api/v2` (the `CF_API_BASE_URL`):
//! * `POST /workspaces/{ws}/incidents/{incidentId}/comments` → 201 `{"id": "<uuid>"}`;
//! * `PUT  /workspaces/{ws}/incidents/{incidentId}/status` → 200;
//! * `GET  /workspaces/{ws}/incidents` → 200 (read-only; used by `handler --check`);
//! * admin `GET /_sandbox/incidents` (no auth, not recorded): per incident, its comments and status changes, each
//!   with the `workspace_id` it was sent to.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use warp::http::Method;

use crate::fake::{self, FakeCore};
use crate::fakeio::{respond, Incoming, Outgoing};
use crate::faults::Faults;
use crate::record::Recorded;
use crate::server::ServerHandle;
use crate::util::uuid_v4;

/// The path prefix of the API (`base_url()` ends with it).
pub const API_PREFIX: &str = "/api/v2";

/// Configuration of a [`FakeCf`].
#[derive(Clone, Debug)]
pub struct CfConfig {
    /// Service-account client id (Basic auth user name).
    pub client_id: String,
    /// Service-account client secret (Basic auth password).
    pub client_secret: String,
    /// The default workspace id (compared case-insensitively).
    pub workspace_id: String,
    /// More workspaces that exist (one per customer, for routing by `CF_WORKSPACE_MAP`).
    pub other_workspaces: Vec<String>,
    /// Port to bind on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
}

impl CfConfig {
    /// Test defaults: `test-cf-client`/`test-cf-secret`, workspace
    /// `3f2b8c1e-5d4a-4e6b-9c7d-0a1b2c3d4e5f`.
    pub fn test() -> CfConfig {
        CfConfig {
            client_id: "test-cf-client".into(),
            client_secret: "test-cf-secret".into(),
            workspace_id: "3f2b8c1e-5d4a-4e6b-9c7d-0a1b2c3d4e5f".into(),
            other_workspaces: vec!["7c9e6679-7425-40de-944b-e07fc1f90ae7".into()],
            port: None,
        }
    }
}

impl Default for CfConfig {
    fn default() -> Self {
        CfConfig::test()
    }
}

/// A comment the fake accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comment {
    /// The incident id, percent-decoded from the path.
    pub incident_id: String,
    /// The workspace id as the path named it.
    pub workspace_id: String,
    /// The comment text.
    pub content: String,
    /// The `source` field as text (numbers are stringified; empty when absent).
    pub source: String,
    /// The whole request body.
    pub body: Value,
}

#[derive(Debug, Default)]
struct CfState {
    comments: Vec<Comment>,
    /// (incident id, workspace id, body) of each status change.
    status_changes: Vec<(String, String, Value)>,
}

type CfInner = FakeCore<CfConfig, CfState>;

/// The fake ContraForce server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeCf {
    inner: Arc<CfInner>,
    server: ServerHandle,
}

/// Path forms a fault rule or a count may match: the full path and the path relative to
/// `/api/v2` (so `/workspaces` works as a prefix).
fn path_forms(path: &str) -> Vec<String> {
    let mut forms = vec![path.to_string()];
    if path.len() >= API_PREFIX.len() && path.as_bytes()[..API_PREFIX.len()].eq_ignore_ascii_case(API_PREFIX.as_bytes())
    {
        forms.push(path[API_PREFIX.len()..].to_string());
    }
    forms
}

impl FakeCf {
    /// Starts the fake on 127.0.0.1 (`config.port` or a free port). Panics if it cannot bind.
    pub fn start(config: CfConfig) -> FakeCf {
        FakeCf::try_start(config).expect("sandbox: FakeCf could not bind its port")
    }

    /// Starts the fake, returning the bind error instead of panicking.
    pub fn try_start(config: CfConfig) -> io::Result<FakeCf> {
        let port = config.port;
        let (inner, server) = fake::serve(config, CfState::default(), port, "cf", dispatch)?;
        Ok(FakeCf { inner, server })
    }

    /// `http://127.0.0.1:PORT/api/v2` (the CF_API_BASE_URL).
    pub fn base_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.url())
    }

    /// `http://127.0.0.1:PORT` (where the admin endpoints live).
    pub fn root_url(&self) -> String {
        self.server.url()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The configuration the fake runs with.
    pub fn config(&self) -> &CfConfig {
        &self.inner.config
    }

    /// The comments accepted for one incident, in arrival order.
    pub fn comments(&self, incident_id: &str) -> Vec<Comment> {
        self.inner.lock().comments.iter().filter(|c| c.incident_id == incident_id).cloned().collect()
    }

    /// Every accepted comment, in arrival order.
    pub fn all_comments(&self) -> Vec<Comment> {
        self.inner.lock().comments.clone()
    }

    /// The accepted status-change bodies for one incident, in arrival order.
    pub fn status_changes(&self, incident_id: &str) -> Vec<Value> {
        self.inner
            .lock()
            .status_changes
            .iter()
            .filter(|(id, _, _)| id == incident_id)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    /// Every recorded request (admin `/_sandbox/` requests excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.log.all()
    }

    /// Requests whose method matches (`"*"` for any) and whose path, full or relative to
    /// `/api/v2`, starts with `path_prefix` (case-insensitive), faults included.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.inner.log.count_with(method, path_prefix, path_forms)
    }

    /// The fault plan of this fake (prefixes may be relative to `/api/v2`, e.g. `/workspaces`).
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Forgets the recorded requests (comments and status changes are kept).
    pub fn reset_requests(&self) {
        self.inner.log.clear();
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn dispatch(inner: Arc<CfInner>, req: Incoming) -> warp::reply::Response {
    let segs = req.segments();
    if segs.first().is_some_and(|s| s.eq_ignore_ascii_case("_sandbox")) {
        return admin(&inner, &req, &segs).into_response();
    }
    let log = inner.log.clone();
    let faults = inner.faults.clone();
    let paths = path_forms(&req.path);
    respond(log, faults, req, paths, move |req| async move { handle(&inner, &req) }).await
}

fn error(status: u16, message: &str) -> Outgoing {
    Outgoing::json(status, &json!({ "isSuccess": false, "message": message }))
}

fn basic_ok(cfg: &CfConfig, req: &Incoming) -> bool {
    let Some(value) = req.header("authorization") else {
        return false;
    };
    let mut it = value.trim().splitn(2, ' ');
    let (Some(scheme), Some(b64)) = (it.next(), it.next()) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    raw == format!("{}:{}", cfg.client_id, cfg.client_secret).as_bytes()
}

fn workspace_exists(cfg: &CfConfig, ws: &str) -> bool {
    std::iter::once(&cfg.workspace_id).chain(&cfg.other_workspaces).any(|w| w.eq_ignore_ascii_case(ws))
}

fn handle(inner: &CfInner, req: &Incoming) -> Outgoing {
    let cfg = &inner.config;
    let segs = req.segments();
    let lsegs: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    if lsegs.len() < 2 || lsegs[0] != "api" || lsegs[1] != "v2" {
        return error(404, "not found");
    }
    if !basic_ok(cfg, req) {
        return Outgoing::empty(401).with_header("www-authenticate", "Basic realm=\"ContraForce\"");
    }
    let rest: Vec<&str> = lsegs[2..].iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["workspaces", ws, "incidents", _, action @ ("comments" | "status")] => {
            if !workspace_exists(cfg, ws) {
                return error(404, "workspace not found");
            }
            let incident_id = segs[5].clone();
            match (*action, &req.method) {
                ("comments", m) if m == Method::POST => add_comment(inner, req, incident_id, segs[3].clone()),
                ("status", m) if m == Method::PUT => set_status(inner, req, incident_id, segs[3].clone()),
                _ => Outgoing::empty(405),
            }
        }
        // A read-only call `handler --check` uses to prove the service account's credentials.
        ["workspaces", ws, "incidents"] if req.method == Method::GET => {
            if !workspace_exists(cfg, ws) {
                return error(404, "workspace not found");
            }
            let state = inner.lock();
            let mut ids: Vec<&String> = state.comments.iter().map(|c| &c.incident_id).collect();
            ids.dedup();
            Outgoing::json(200, &json!({ "value": { "incidents": ids, "totalCount": ids.len() }, "isSuccess": true }))
        }
        _ => error(404, "not found"),
    }
}

fn parse_object(req: &Incoming) -> Result<serde_json::Map<String, Value>, Outgoing> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(error(400, "body must be a JSON object")),
        Err(e) => Err(error(400, &format!("body is not JSON: {e}"))),
    }
}

fn check_incident(o: &serde_json::Map<String, Value>, incident_id: &str) -> Result<(), Outgoing> {
    match o.get("incidentId") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == incident_id => Ok(()),
        Some(other) => {
            Err(error(400, &format!("incidentId in the body ({other}) differs from the path ({incident_id:?})")))
        }
    }
}

fn add_comment(inner: &CfInner, req: &Incoming, incident_id: String, workspace_id: String) -> Outgoing {
    let o = match parse_object(req) {
        Ok(o) => o,
        Err(e) => return e,
    };
    if let Err(e) = check_incident(&o, &incident_id) {
        return e;
    }
    let content = match o.get("content") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return error(400, "content must be a non-empty string"),
    };
    let source = match o.get("source") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    inner.lock().comments.push(Comment { incident_id, workspace_id, content, source, body: Value::Object(o) });
    Outgoing::json(201, &json!({ "id": uuid_v4() }))
}

fn set_status(inner: &CfInner, req: &Incoming, incident_id: String, workspace_id: String) -> Outgoing {
    let o = match parse_object(req) {
        Ok(o) => o,
        Err(e) => return e,
    };
    if let Err(e) = check_incident(&o, &incident_id) {
        return e;
    }
    match o.get("status") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => return error(400, "status must be a non-empty string"),
    }
    let status = o.get("status").cloned().unwrap_or(Value::Null);
    inner.lock().status_changes.push((incident_id.clone(), workspace_id, Value::Object(o)));
    Outgoing::json(200, &json!({ "isSuccess": true, "value": { "incidentId": incident_id, "status": status } }))
}

fn admin(inner: &CfInner, req: &Incoming, segs: &[String]) -> Outgoing {
    let is_incidents = segs.len() == 2 && segs[1].eq_ignore_ascii_case("incidents");
    if !is_incidents || req.method != Method::GET {
        return error(404, "no such sandbox admin endpoint");
    }
    let s = inner.lock();
    let mut by_incident: BTreeMap<String, Value> = BTreeMap::new();
    for c in &s.comments {
        let entry =
            by_incident.entry(c.incident_id.clone()).or_insert_with(|| json!({ "comments": [], "status_changes": [] }));
        if let Some(list) = entry["comments"].as_array_mut() {
            list.push(serde_json::to_value(c).unwrap_or(Value::Null));
        }
    }
    for (id, workspace_id, body) in &s.status_changes {
        let entry = by_incident.entry(id.clone()).or_insert_with(|| json!({ "comments": [], "status_changes": [] }));
        if let Some(list) = entry["status_changes"].as_array_mut() {
            let mut change = body.clone();
            change["workspace_id"] = json!(workspace_id);
            list.push(change);
        }
    }
    Outgoing::json(200, &json!(by_incident))
}
