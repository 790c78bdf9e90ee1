//! `FakeHalo`: an in-process fake of the HaloPSA REST API that behaves like the real one
//! (docs/halo-api.md) and records every request.
//!
//! Served paths (matched case-insensitively, like IIS):
//! * `POST /auth/token` (client_credentials, optional `?tenant=`);
//! * `GET|POST /api/Tickets`, `GET /api/Tickets/{id}`;
//! * `GET|POST /api/Actions`, `GET /api/Actions/{id}`;
//! * `GET /api/Status`;
//! * `GET /api/Site` (`{"record_count", "sites": [{"id", "client_id", "name"}]}`), `GET /api/TicketType` and
//!   `GET /api/FieldInfo` (bare arrays of `{"id", "name"}`), for `handler --check`;
//! * `GET /api/Client` (`search`: a case-insensitive *contains* match on the name, as Halo's "like your search
//!   string"; `includeinactive`), answered `{"record_count": N, "clients": [{"id", "name", "inactive"}]}`;
//! * admin endpoints without auth under `/_sandbox/` (not recorded, no faults): `GET tickets` (with their
//!   actions), `GET clients` (with their sites), `POST tickets`, `POST tickets/{id}/actions`,
//!   `POST tickets/{id}/status`, `POST|DELETE outage`, `GET requests`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use warp::http::Method;

use crate::fake::{self, FakeCore};
use crate::fakeio::{respond, Incoming, Outgoing};
use crate::faults::Faults;
use crate::record::Recorded;
use crate::server::ServerHandle;
use crate::util::{html_escape, html_to_text, query_map, random_hex, rfc3339, truthy};

/// Configuration of a [`FakeHalo`].
#[derive(Clone, Debug)]
pub struct HaloConfig {
    /// The API application's client id.
    pub client_id: String,
    /// The API application's client secret.
    pub client_secret: String,
    /// When set, `POST /auth/token` must carry `?tenant=<this>`.
    pub tenant: Option<String>,
    /// The API application's name; written to `actionby_application_id` of API-made actions.
    pub app_name: String,
    /// The application's "agent to log in as"; written to `who_agentid` of API-made actions.
    pub agent_id: i64,
    /// That agent's display name; written to `who` of API-made actions.
    pub agent_name: String,
    /// Lifetime of issued tokens (`expires_in`), in seconds.
    pub token_ttl_secs: u64,
    /// How many actions `GET /api/Actions` returns when no `count` is given (the newest ones).
    pub default_actions_count: usize,
    /// The most actions `GET /api/Actions` returns whatever `count` asks (a tenant that caps it), `None`: no cap.
    pub max_actions_count: Option<usize>,
    /// Port to bind on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// The tenant's API budget (`None`: unlimited): beyond it `/api/...` answers 429.
    pub budget: Option<Budget>,
}

/// A hosted tenant's API budget: at most `requests` authorized `/api/...` requests in any rolling `window`; the
/// request beyond it is answered 429 "Rate Limit Reached - N Requests per rolling ... window" (the text hosted
/// Halo answers), with `Retry-After` (seconds until a request leaves the window) when `retry_after`, and not
/// counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Requests allowed in any window.
    pub requests: usize,
    /// The rolling window.
    pub window: Duration,
    /// Whether a 429 carries `Retry-After`.
    pub retry_after: bool,
}

impl HaloConfig {
    /// Test defaults: client `test-halo-client`/`test-halo-secret`, no tenant, application
    /// "ContraForce Bridge", agent 38 "ContraForce Integration", TTL 3600 s, 20 actions.
    pub fn test() -> HaloConfig {
        HaloConfig {
            client_id: "test-halo-client".into(),
            client_secret: "test-halo-secret".into(),
            tenant: None,
            app_name: "ContraForce Bridge".into(),
            agent_id: 38,
            agent_name: "ContraForce Integration".into(),
            token_ttl_secs: 3600,
            default_actions_count: 20,
            max_actions_count: None,
            port: None,
            budget: None,
        }
    }
}

impl Default for HaloConfig {
    fn default() -> Self {
        HaloConfig::test()
    }
}

/// A ticket custom field as Halo returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomField {
    /// The field id.
    pub id: i64,
    /// The field name (`CF<id>` unless given).
    pub name: String,
    /// The value, untyped.
    pub value: Value,
}

/// A ticket (`Faults` object) as the fake stores and returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Ticket id (API-created tickets start at 1001).
    pub id: i64,
    /// Summary line.
    pub summary: String,
    /// Plain-text details.
    pub details: String,
    /// HTML details.
    pub details_html: String,
    /// Client (customer) id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<i64>,
    /// Site id (of the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<i64>,
    /// Ticket type id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tickettype_id: Option<i64>,
    /// Priority id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_id: Option<i64>,
    /// Status id (1 = New, 9 = Closed).
    pub status_id: i64,
    /// Status display name.
    pub status_name: String,
    /// `true` once the ticket is in a closed status.
    pub hasbeenclosed: bool,
    /// Supplier reference (searchable with `search_supplier_reference`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier_reference: Option<String>,
    /// Stored and returned because the samples assume it works; it is NOT a list filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thirdpartynumber: Option<String>,
    /// Custom fields.
    pub customfields: Vec<CustomField>,
    /// When the ticket's newest action was logged (`Faults.lastactiondate`); absent until it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lastactiondate: Option<String>,
}

/// An action (ticket note/event) as the fake stores and returns it. There is no `agent_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Action id (shared counter across tickets).
    pub id: i64,
    /// The ticket it belongs to.
    pub ticket_id: i64,
    /// Outcome (action type) name, e.g. "New Ticket", "Private Note".
    pub outcome: String,
    /// Outcome id when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_id: Option<i64>,
    /// Plain-text note.
    pub note: String,
    /// HTML note (returned by the list only with `includehtmlnote=true`).
    pub note_html: String,
    /// `true` for a private action.
    pub hiddenfromuser: bool,
    /// Display name of who wrote it.
    pub who: String,
    /// Agent id of who wrote it.
    pub who_agentid: i64,
    /// The API application that wrote it (absent for humans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actionby_application_id: Option<String>,
    /// When it was written (RFC 3339).
    pub datetime: String,
    /// The status the action moved the ticket to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_status: Option<i64>,
}

/// An action written as a human agent in the Halo UI would (see [`FakeHalo::add_action`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewAction {
    /// HTML note; derived from `note` when absent.
    pub note_html: Option<String>,
    /// Plain note; derived from `note_html` when absent.
    pub note: Option<String>,
    /// `true` for a private note.
    pub hiddenfromuser: bool,
    /// Author display name (default "Sandbox Agent").
    pub who: Option<String>,
    /// Author agent id (default 2).
    pub who_agentid: Option<i64>,
    /// The API application, `None` for humans.
    pub actionby_application_id: Option<String>,
    /// Outcome name (default "Note").
    pub outcome: Option<String>,
}

impl NewAction {
    /// A note by a human agent.
    pub fn human(who: &str, who_agentid: i64, note_html: &str, private: bool) -> NewAction {
        NewAction {
            note_html: Some(note_html.to_string()),
            hiddenfromuser: private,
            who: Some(who.to_string()),
            who_agentid: Some(who_agentid),
            ..NewAction::default()
        }
    }
}

/// A ticket created directly in the fake, not through the API (e.g. an old Logic-App ticket).
/// No actions are created for it; add them with [`FakeHalo::add_action`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewTicket {
    /// Summary line.
    pub summary: String,
    /// HTML details.
    pub details_html: String,
    /// Client id.
    pub client_id: Option<i64>,
    /// Ticket type id.
    pub tickettype_id: Option<i64>,
    /// Priority id.
    pub priority_id: Option<i64>,
    /// Supplier reference.
    pub supplier_reference: Option<String>,
    /// Third-party number.
    pub thirdpartynumber: Option<String>,
    /// Custom fields as `(id, value)` pairs; names become `CF<id>`.
    pub customfields: Vec<(i64, Value)>,
    /// Status id (default 1 = New).
    pub status_id: Option<i64>,
    /// Status name (default from the status table).
    pub status_name: Option<String>,
    /// Whether the ticket is closed (default from the status table).
    pub closed: Option<bool>,
}

/// The status table the fake uses for `status_id` updates through the API.
const STATUSES: &[(i64, &str)] = &[
    (1, "New"),
    (2, "In Progress"),
    (3, "Action Required"),
    (4, "Waiting on User"),
    (9, "Closed"),
    (FALSE_POSITIVE_STATUS_ID, "Resolved - False Positive"),
    (TRUE_POSITIVE_STATUS_ID, "Resolved - True Positive"),
];

/// The status id that counts as closed.
pub const CLOSED_STATUS_ID: i64 = 9;
/// A closing status an analyst picks for a false positive (the sandbox maps it in `HALO_CLOSE_DECISION_MAP`).
pub const FALSE_POSITIVE_STATUS_ID: i64 = 20;
/// A closing status an analyst picks for a true positive.
pub const TRUE_POSITIVE_STATUS_ID: i64 = 21;

/// A status's name and whether it closes the ticket.
pub fn status_info(id: i64) -> (String, bool) {
    let name =
        STATUSES.iter().find(|(i, _)| *i == id).map(|(_, n)| n.to_string()).unwrap_or_else(|| format!("Status {id}"));
    (name, [CLOSED_STATUS_ID, FALSE_POSITIVE_STATUS_ID, TRUE_POSITIVE_STATUS_ID].contains(&id))
}

#[derive(Debug)]
struct HaloState {
    tickets: BTreeMap<i64, Ticket>,
    actions: BTreeMap<i64, Action>,
    next_ticket: i64,
    next_action: i64,
    tokens: HashMap<String, Instant>,
    tokens_issued: usize,
    /// The time of the newest action, in Unix milliseconds.
    last_action_ms: u64,
    /// Customers: (id, name, inactive).
    clients: Vec<(i64, String, bool)>,
    /// Sites: (id, client id, name).
    sites: Vec<(i64, i64, String)>,
    /// When the budget's counted requests arrived, oldest first (within one window).
    budget_log: std::collections::VecDeque<Instant>,
    /// Requests answered 429 by the budget.
    rate_limited: usize,
}

/// The ticket types the fake lists (`GET /TicketType`).
const TICKET_TYPES: &[(i64, &str)] = &[(1, "Incident"), (29, "Security Incident")];
/// The custom fields the fake lists (`GET /FieldInfo`).
const FIELDS: &[(i64, &str)] = &[(42, "CF Reference"), (77, "Classification")];

impl HaloState {
    /// Stores a new action at a time strictly later than any before it (Halo's clock is finer than a test's
    /// steps, so two actions never share a time) and makes that time its ticket's `lastactiondate`.
    fn log_action(&mut self, mut action: Action) -> Action {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        self.last_action_ms = now.max(self.last_action_ms + 1);
        action.datetime = rfc3339((self.last_action_ms / 1000) as i64, (self.last_action_ms % 1000) as u32);
        if let Some(t) = self.tickets.get_mut(&action.ticket_id) {
            t.lastactiondate = Some(action.datetime.clone());
        }
        self.actions.insert(action.id, action.clone());
        action
    }
}

type HaloInner = FakeCore<HaloConfig, HaloState>;

/// The fake HaloPSA server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeHalo {
    inner: Arc<HaloInner>,
    server: ServerHandle,
}

impl FakeHalo {
    /// Starts the fake on 127.0.0.1 (`config.port` or a free port). Panics if it cannot bind.
    pub fn start(config: HaloConfig) -> FakeHalo {
        FakeHalo::try_start(config).expect("sandbox: FakeHalo could not bind its port")
    }

    /// Starts the fake, returning the bind error instead of panicking.
    pub fn try_start(config: HaloConfig) -> io::Result<FakeHalo> {
        let port = config.port;
        let state = HaloState {
            tickets: BTreeMap::new(),
            actions: BTreeMap::new(),
            next_ticket: 1001,
            next_action: 1,
            tokens: HashMap::new(),
            tokens_issued: 0,
            last_action_ms: 0,
            clients: vec![(1, "Default Triage".into(), false)],
            sites: vec![(1, 1, "Main".into())],
            budget_log: std::collections::VecDeque::new(),
            rate_limited: 0,
        };
        let (inner, server) = fake::serve(config, state, port, "halo", dispatch)?;
        Ok(FakeHalo { inner, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    /// `base_url() + "/auth"` (the HALO_AUTH_URL; the token URL is this plus `/token`).
    pub fn auth_url(&self) -> String {
        format!("{}/auth", self.base_url())
    }

    /// `base_url() + "/api"` (the HALO_API_BASE_URL).
    pub fn api_url(&self) -> String {
        format!("{}/api", self.base_url())
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The configuration the fake runs with.
    pub fn config(&self) -> &HaloConfig {
        &self.inner.config
    }

    /// All tickets, by id.
    pub fn tickets(&self) -> Vec<Ticket> {
        self.inner.lock().tickets.values().cloned().collect()
    }

    /// One ticket.
    pub fn ticket(&self, id: i64) -> Option<Ticket> {
        self.inner.lock().tickets.get(&id).cloned()
    }

    /// The actions of a ticket, sorted by id (ascending).
    pub fn actions(&self, ticket_id: i64) -> Vec<Action> {
        self.inner.lock().actions.values().filter(|a| a.ticket_id == ticket_id).cloned().collect()
    }

    /// Adds an action as a human agent in the Halo UI would; returns its id.
    /// Panics if the ticket does not exist.
    pub fn add_action(&self, ticket_id: i64, action: NewAction) -> i64 {
        let mut s = self.inner.lock();
        assert!(s.tickets.contains_key(&ticket_id), "sandbox: FakeHalo has no ticket {ticket_id}");
        insert_human_action(&mut s, ticket_id, action)
    }

    /// Sets a ticket's status as an agent would (also sets `hasbeenclosed`).
    /// Panics if the ticket does not exist.
    pub fn set_status(&self, ticket_id: i64, status_id: i64, status_name: &str, closed: bool) {
        let mut s = self.inner.lock();
        let t = s.tickets.get_mut(&ticket_id).unwrap_or_else(|| panic!("sandbox: FakeHalo has no ticket {ticket_id}"));
        t.status_id = status_id;
        t.status_name = status_name.to_string();
        t.hasbeenclosed = closed;
    }

    /// Sets a ticket's custom field as an agent would. Panics if the ticket does not exist.
    pub fn set_custom_field(&self, ticket_id: i64, field_id: i64, value: &str) {
        let mut s = self.inner.lock();
        let t = s.tickets.get_mut(&ticket_id).unwrap_or_else(|| panic!("sandbox: FakeHalo has no ticket {ticket_id}"));
        t.customfields.retain(|f| f.id != field_id);
        t.customfields.push(CustomField { id: field_id, name: format!("CF{field_id}"), value: value.into() });
    }

    /// Adds a site of client `client_id`; returns its id.
    pub fn add_site(&self, client_id: i64, name: &str) -> i64 {
        let mut s = self.inner.lock();
        let id = s.sites.iter().map(|c| c.0).max().unwrap_or(0) + 1;
        s.sites.push((id, client_id, name.to_string()));
        id
    }

    /// Adds a customer (Halo client) named `name`; returns its id.
    pub fn add_client(&self, name: &str) -> i64 {
        let mut s = self.inner.lock();
        let id = s.clients.iter().map(|c| c.0).max().unwrap_or(0) + 1;
        s.clients.push((id, name.to_string(), false));
        id
    }

    /// Creates a ticket directly (not through the API, no actions); returns its id.
    pub fn create_ticket_direct(&self, ticket: NewTicket) -> i64 {
        let mut s = self.inner.lock();
        insert_direct_ticket(&mut s, ticket)
    }

    /// Every recorded request (admin `/_sandbox/` requests excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.log.all()
    }

    /// Requests whose method matches (`"*"` for any) and path starts with `path_prefix`
    /// (case-insensitive), faults included.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.inner.log.count_with(method, path_prefix, |p| vec![p.to_string()])
    }

    /// Number of `POST /auth/token` requests received (successful or not).
    pub fn token_requests(&self) -> usize {
        self.count("POST", "/auth/token")
    }

    /// Number of tokens issued.
    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().tokens_issued
    }

    /// Makes every issued token invalid; the next API call with one gets 401.
    pub fn expire_all_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// Requests the tenant budget answered 429.
    pub fn rate_limited(&self) -> usize {
        self.inner.lock().rate_limited
    }

    /// The fault plan of this fake.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Forgets the recorded requests (tickets, actions and tokens are kept).
    pub fn reset_requests(&self) {
        self.inner.log.clear();
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn ticket_json(t: &Ticket) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn action_json(a: &Action, with_html: bool) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    if !with_html {
        if let Some(o) = v.as_object_mut() {
            o.remove("note_html");
        }
    }
    v
}

fn bad_request(message: &str) -> Outgoing {
    Outgoing::json(400, &json!({ "error": "bad_request", "message": message }))
}

fn not_found(message: &str) -> Outgoing {
    Outgoing::json(404, &json!({ "error": "not_found", "message": message }))
}

fn insert_human_action(s: &mut HaloState, ticket_id: i64, a: NewAction) -> i64 {
    let (note, note_html) = derive_notes(a.note, a.note_html);
    let id = s.next_action;
    s.next_action += 1;
    s.log_action(Action {
        id,
        ticket_id,
        outcome: a.outcome.unwrap_or_else(|| "Note".into()),
        outcome_id: None,
        note,
        note_html,
        hiddenfromuser: a.hiddenfromuser,
        who: a.who.unwrap_or_else(|| "Sandbox Agent".into()),
        who_agentid: a.who_agentid.unwrap_or(2),
        actionby_application_id: a.actionby_application_id,
        datetime: String::new(),
        new_status: None,
    });
    id
}

fn insert_direct_ticket(s: &mut HaloState, t: NewTicket) -> i64 {
    let id = s.next_ticket;
    s.next_ticket += 1;
    let status_id = t.status_id.unwrap_or(1);
    let (default_name, default_closed) = status_info(status_id);
    s.tickets.insert(
        id,
        Ticket {
            id,
            summary: t.summary,
            details: html_to_text(&t.details_html),
            details_html: t.details_html,
            client_id: t.client_id,
            site_id: None,
            tickettype_id: t.tickettype_id,
            priority_id: t.priority_id,
            status_id,
            status_name: t.status_name.unwrap_or(default_name),
            hasbeenclosed: t.closed.unwrap_or(default_closed),
            supplier_reference: t.supplier_reference,
            thirdpartynumber: t.thirdpartynumber,
            customfields: t
                .customfields
                .into_iter()
                .map(|(id, value)| CustomField { id, name: format!("CF{id}"), value })
                .collect(),
            lastactiondate: None,
        },
    );
    id
}

/// Fills in whichever of note / note_html is missing.
fn derive_notes(note: Option<String>, note_html: Option<String>) -> (String, String) {
    match (note, note_html) {
        (Some(n), Some(h)) => (n, h),
        (None, Some(h)) => (html_to_text(&h), h),
        (Some(n), None) => {
            let h = html_escape(&n).replace('\n', "<br>");
            (n, h)
        }
        (None, None) => (String::new(), String::new()),
    }
}

async fn dispatch(inner: Arc<HaloInner>, req: Incoming) -> warp::reply::Response {
    let segs = req.segments();
    if segs.first().is_some_and(|s| s.eq_ignore_ascii_case("_sandbox")) {
        return admin(&inner, &req, &segs).into_response();
    }
    let log = inner.log.clone();
    let faults = inner.faults.clone();
    let paths = vec![req.path.clone()];
    respond(log, faults, req, paths, move |req| async move { handle(&inner, &req) }).await
}

fn lower(segs: &[String]) -> Vec<String> {
    segs.iter().map(|s| s.to_ascii_lowercase()).collect()
}

fn handle(inner: &HaloInner, req: &Incoming) -> Outgoing {
    let segs = req.segments();
    let lsegs = lower(&segs);
    let parts: Vec<&str> = lsegs.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["auth", "token"] => {
            if req.method == Method::POST {
                token(inner, req)
            } else {
                Outgoing::empty(405)
            }
        }
        ["api", rest @ ..] => {
            if !authorized(inner, req) {
                return Outgoing::empty(401).with_header("www-authenticate", "Bearer");
            }
            if let Some(refused) = over_budget(inner) {
                return refused;
            }
            let m = &req.method;
            match rest {
                ["tickets"] if m == Method::GET => list_tickets(inner, req),
                ["tickets"] if m == Method::POST => post_tickets(inner, req),
                ["tickets", id] if m == Method::GET => get_ticket(inner, id),
                ["actions"] if m == Method::GET => list_actions(inner, req),
                ["actions"] if m == Method::POST => post_actions(inner, req),
                ["actions", id] if m == Method::GET => get_action(inner, id),
                ["client"] if m == Method::GET => list_clients(inner, req),
                ["site"] if m == Method::GET => {
                    let s = inner.lock();
                    let sites: Vec<Value> = s
                        .sites
                        .iter()
                        .map(|(id, client, name)| json!({"id": id, "client_id": client, "name": name}))
                        .collect();
                    Outgoing::json(200, &json!({"record_count": sites.len(), "sites": sites}))
                }
                ["tickettype"] if m == Method::GET => Outgoing::json(
                    200,
                    &Value::Array(TICKET_TYPES.iter().map(|(id, name)| json!({"id": id, "name": name})).collect()),
                ),
                ["fieldinfo"] if m == Method::GET => Outgoing::json(
                    200,
                    &Value::Array(FIELDS.iter().map(|(id, name)| json!({"id": id, "name": name})).collect()),
                ),
                ["status"] if m == Method::GET => Outgoing::json(
                    200,
                    &Value::Array(STATUSES.iter().map(|(id, name)| json!({"id": id, "name": name})).collect()),
                ),
                ["tickets"] | ["tickets", _] | ["actions"] | ["actions", _] | ["status"] => Outgoing::empty(405),
                _ => not_found("no such endpoint in the sandbox"),
            }
        }
        _ => not_found("no such endpoint in the sandbox"),
    }
}

/// Counts one request against the tenant's budget, or answers its 429.
fn over_budget(inner: &HaloInner) -> Option<Outgoing> {
    let budget = inner.config.budget?;
    let mut s = inner.lock();
    let now = Instant::now();
    while s.budget_log.front().is_some_and(|t| now.duration_since(*t) >= budget.window) {
        s.budget_log.pop_front();
    }
    if s.budget_log.len() < budget.requests {
        s.budget_log.push_back(now);
        return None;
    }
    s.rate_limited += 1;
    let text = format!(
        "Rate Limit Reached - {} Requests per rolling {} second window",
        budget.requests,
        budget.window.as_secs()
    );
    let refused = Outgoing::json(429, &json!({ "error": text }));
    if !budget.retry_after {
        return Some(refused);
    }
    let frees = s.budget_log.front().map_or(Duration::ZERO, |t| budget.window.saturating_sub(now.duration_since(*t)));
    Some(refused.with_header("retry-after", &(frees.as_secs() + 1).to_string()))
}

fn token(inner: &HaloInner, req: &Incoming) -> Outgoing {
    let cfg = &inner.config;
    let form = query_map(&String::from_utf8_lossy(&req.body));
    let query = query_map(&req.query);
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Outgoing::json(400, &json!({"error": "unsupported_grant_type"}));
    }
    let creds_ok =
        form.get("client_id") == Some(&cfg.client_id) && form.get("client_secret") == Some(&cfg.client_secret);
    let tenant_ok = match &cfg.tenant {
        Some(t) => query.get("tenant") == Some(t),
        None => true,
    };
    if !creds_ok || !tenant_ok {
        return Outgoing::json(401, &json!({"error": "invalid_client"}));
    }
    let token = random_hex(24);
    let ttl = cfg.token_ttl_secs;
    let mut s = inner.lock();
    s.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
    s.tokens_issued += 1;
    Outgoing::json(
        200,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": form.get("scope").cloned().unwrap_or_else(|| "all".into()),
        }),
    )
}

fn authorized(inner: &HaloInner, req: &Incoming) -> bool {
    let Some(value) = req.header("authorization") else {
        return false;
    };
    let mut it = value.splitn(2, ' ');
    let (Some(scheme), Some(tok)) = (it.next(), it.next()) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let s = inner.lock();
    s.tokens.get(tok.trim()).is_some_and(|exp| *exp > Instant::now())
}

fn parse_body_array(req: &Incoming) -> Result<Vec<Map<String, Value>>, Outgoing> {
    let value: Value = serde_json::from_slice(&req.body).map_err(|e| bad_request(&format!("body is not JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(bad_request("body must be a JSON array"));
    };
    if items.is_empty() {
        return Err(bad_request("body must not be an empty array"));
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::Object(o) => Ok(o),
            _ => Err(bad_request("array items must be objects")),
        })
        .collect()
}

/// A nullable int32-ish field: absent/null → None; an integer → Some; anything else → 400.
fn int_field(o: &Map<String, Value>, name: &str) -> Result<Option<i64>, Outgoing> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(other) => Err(bad_request(&format!("{name} must be an integer, got {other}"))),
    }
}

/// Like [`int_field`] but also accepts a numeric string, as .NET model binding does for ids.
fn lenient_int_field(o: &Map<String, Value>, name: &str) -> Result<Option<i64>, Outgoing> {
    match o.get(name) {
        Some(Value::String(s)) => {
            s.trim().parse::<i64>().map(Some).map_err(|_| bad_request(&format!("{name} must be an integer, got {s:?}")))
        }
        _ => int_field(o, name),
    }
}

fn str_field(o: &Map<String, Value>, name: &str) -> Option<String> {
    match o.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

fn custom_fields(o: &Map<String, Value>) -> Result<Option<Vec<CustomField>>, Outgoing> {
    match o.get("customfields") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                let Some(obj) = item.as_object() else {
                    return Err(bad_request("customfields items must be objects"));
                };
                let id = lenient_int_field(obj, "id")?
                    .ok_or_else(|| bad_request("customfields items need an integer id"))?;
                Ok(CustomField {
                    id,
                    name: str_field(obj, "name").unwrap_or_else(|| format!("CF{id}")),
                    value: obj.get("value").cloned().unwrap_or(Value::Null),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad_request("customfields must be an array")),
    }
}

struct TicketInput {
    id: Option<i64>,
    fields: Map<String, Value>,
    client_id: Option<i64>,
    site_id: Option<i64>,
    tickettype_id: Option<i64>,
    priority_id: Option<i64>,
    status_id: Option<i64>,
    customfields: Option<Vec<CustomField>>,
}

fn post_tickets(inner: &HaloInner, req: &Incoming) -> Outgoing {
    let items = match parse_body_array(req) {
        Ok(i) => i,
        Err(e) => return e,
    };
    // Validate everything before applying anything.
    let mut inputs = Vec::with_capacity(items.len());
    for o in items {
        let parsed = (|| {
            Ok::<_, Outgoing>(TicketInput {
                id: int_field(&o, "id")?.filter(|id| *id > 0),
                client_id: int_field(&o, "client_id")?,
                site_id: int_field(&o, "site_id")?,
                tickettype_id: int_field(&o, "tickettype_id")?,
                priority_id: int_field(&o, "priority_id")?,
                status_id: int_field(&o, "status_id")?,
                customfields: custom_fields(&o)?,
                fields: o.clone(),
            })
        })();
        match parsed {
            Ok(p) => inputs.push(p),
            Err(e) => return e,
        }
    }
    let cfg = &inner.config;
    let mut s = inner.lock();
    for input in &inputs {
        if let Some(id) = input.id {
            if !s.tickets.contains_key(&id) {
                return not_found(&format!("ticket {id} not found"));
            }
        }
    }
    let mut saved = Vec::new();
    for input in inputs {
        let f = &input.fields;
        match input.id {
            Some(id) => {
                let t = s.tickets.get_mut(&id).expect("checked above");
                if let Some(v) = str_field(f, "summary") {
                    t.summary = v;
                }
                if let Some(v) = str_field(f, "details_html") {
                    t.details = html_to_text(&v);
                    t.details_html = v;
                } else if let Some(v) = str_field(f, "details") {
                    t.details_html = html_escape(&v);
                    t.details = v;
                }
                if f.contains_key("client_id") {
                    t.client_id = input.client_id;
                }
                if f.contains_key("site_id") {
                    t.site_id = input.site_id;
                }
                if f.contains_key("tickettype_id") {
                    t.tickettype_id = input.tickettype_id;
                }
                if f.contains_key("priority_id") {
                    t.priority_id = input.priority_id;
                }
                if f.contains_key("supplier_reference") {
                    t.supplier_reference = str_field(f, "supplier_reference");
                }
                if f.contains_key("thirdpartynumber") {
                    t.thirdpartynumber = str_field(f, "thirdpartynumber");
                }
                if let Some(status_id) = input.status_id {
                    let (name, closed) = status_info(status_id);
                    t.status_id = status_id;
                    t.status_name = name;
                    t.hasbeenclosed = closed;
                }
                if let Some(cfs) = input.customfields {
                    for cf in cfs {
                        match t.customfields.iter_mut().find(|c| c.id == cf.id) {
                            Some(existing) => existing.value = cf.value,
                            None => t.customfields.push(cf),
                        }
                    }
                }
                saved.push(t.clone());
            }
            None => {
                let id = s.next_ticket;
                s.next_ticket += 1;
                let (details, details_html) = derive_notes(str_field(f, "details"), str_field(f, "details_html"));
                let status_id = input.status_id.unwrap_or(1);
                let (status_name, closed) = status_info(status_id);
                let ticket = Ticket {
                    id,
                    summary: str_field(f, "summary").unwrap_or_default(),
                    details: details.clone(),
                    details_html: details_html.clone(),
                    client_id: input.client_id,
                    site_id: input.site_id,
                    tickettype_id: input.tickettype_id,
                    priority_id: input.priority_id,
                    status_id,
                    status_name,
                    hasbeenclosed: closed,
                    supplier_reference: str_field(f, "supplier_reference"),
                    thirdpartynumber: str_field(f, "thirdpartynumber"),
                    customfields: input.customfields.unwrap_or_default(),
                    lastactiondate: None,
                };
                s.tickets.insert(id, ticket.clone());
                let action_id = s.next_action;
                s.next_action += 1;
                s.log_action(Action {
                    id: action_id,
                    ticket_id: id,
                    outcome: "New Ticket".into(),
                    outcome_id: None,
                    note: details,
                    note_html: details_html,
                    hiddenfromuser: false,
                    who: cfg.agent_name.clone(),
                    who_agentid: cfg.agent_id,
                    actionby_application_id: Some(cfg.app_name.clone()),
                    datetime: String::new(),
                    new_status: None,
                });
                // As stored, with its opening action's time.
                saved.push(s.tickets.get(&id).cloned().unwrap_or(ticket));
            }
        }
    }
    if truthy(query_map(&req.query).get("returnall")) {
        Outgoing::json(200, &Value::Array(saved.iter().map(ticket_json).collect()))
    } else {
        Outgoing::json(200, &ticket_json(saved.last().expect("non-empty")))
    }
}

fn get_ticket(inner: &HaloInner, id: &str) -> Outgoing {
    let Ok(id) = id.parse::<i64>() else {
        return not_found("ticket not found");
    };
    match inner.lock().tickets.get(&id) {
        Some(t) => Outgoing::json(200, &ticket_json(t)),
        None => not_found(&format!("ticket {id} not found")),
    }
}

fn list_clients(inner: &HaloInner, req: &Incoming) -> Outgoing {
    let q = query_map(&req.query);
    let s = inner.lock();
    let needle = q.get("search").map(|n| n.to_lowercase());
    let with_inactive = truthy(q.get("includeinactive"));
    let clients: Vec<Value> = s
        .clients
        .iter()
        .filter(|(_, _, inactive)| with_inactive || !inactive)
        .filter(|(_, name, _)| needle.as_ref().is_none_or(|n| name.to_lowercase().contains(n.as_str())))
        .map(|(id, name, inactive)| json!({"id": id, "name": name, "inactive": inactive}))
        .collect();
    Outgoing::json(200, &json!({"record_count": clients.len(), "clients": clients}))
}

fn list_tickets(inner: &HaloInner, req: &Incoming) -> Outgoing {
    let q = query_map(&req.query);
    let s = inner.lock();
    let mut list: Vec<&Ticket> = s.tickets.values().collect();
    if let Some(needle) = q.get("search_supplier_reference") {
        let needle = needle.to_lowercase();
        list.retain(|t| t.supplier_reference.as_deref().is_some_and(|r| r.to_lowercase().contains(&needle)));
    }
    if let Some(needle) = q.get("search") {
        let needle = needle.to_lowercase();
        list.retain(|t| t.summary.to_lowercase().contains(&needle) || t.details.to_lowercase().contains(&needle));
    }
    if let Some(client) = q.get("client_id").and_then(|v| v.parse::<i64>().ok()) {
        list.retain(|t| t.client_id == Some(client));
    }
    if let Some(ids) = q.get("ticketids") {
        let ids: Vec<i64> = ids.split(',').filter_map(|i| i.trim().parse().ok()).collect();
        list.retain(|t| ids.contains(&t.id));
    }
    if truthy(q.get("open_only")) {
        list.retain(|t| !t.hasbeenclosed);
    }
    if truthy(q.get("closed_only")) {
        list.retain(|t| t.hasbeenclosed);
    }
    // `order` names the field to sort by (ids by default, as the store keeps them), `orderdesc` reverses it.
    if let Some(field) = q.get("order").filter(|f| !f.eq_ignore_ascii_case("id")) {
        let key = |t: &Ticket| ticket_json(t).get(field.as_str()).cloned().unwrap_or(Value::Null);
        list.sort_by(|a, b| compare_values(&key(a), &key(b)).then(a.id.cmp(&b.id)));
    }
    if truthy(q.get("orderdesc")) {
        list.reverse();
    }
    let total = list.len();
    let mut body = json!({ "record_count": total });
    if truthy(q.get("pageinate")) {
        let size = q.get("page_size").and_then(|v| v.parse::<usize>().ok()).unwrap_or(50).clamp(1, 100);
        let page = q.get("page_no").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1);
        list = list.into_iter().skip((page - 1) * size).take(size).collect();
        body["page_no"] = json!(page);
        body["page_size"] = json!(size);
    } else if let Some(count) = q.get("count").and_then(|v| v.parse::<usize>().ok()) {
        list.truncate(count);
    }
    body["tickets"] = Value::Array(list.into_iter().map(ticket_json).collect());
    Outgoing::json(200, &body)
}

/// Numbers by value, anything else by its text; a missing field sorts first.
fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.as_str().unwrap_or_default().cmp(b.as_str().unwrap_or_default()),
    }
}

fn list_actions(inner: &HaloInner, req: &Incoming) -> Outgoing {
    let q = query_map(&req.query);
    let ticket = match q.get("ticket_id") {
        Some(v) => match v.trim().parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => return bad_request("ticket_id must be an integer"),
        },
        None => None,
    };
    let with_html = truthy(q.get("includehtmlnote"));
    let exclude_private = truthy(q.get("excludeprivate"));
    let limit = q.get("count").and_then(|v| v.parse::<usize>().ok()).unwrap_or(inner.config.default_actions_count);
    let limit = inner.config.max_actions_count.map_or(limit, |cap| limit.min(cap));
    let s = inner.lock();
    let mut list: Vec<&Action> = s
        .actions
        .values()
        .rev()
        .filter(|a| ticket.is_none_or(|t| a.ticket_id == t))
        .filter(|a| !(exclude_private && a.hiddenfromuser))
        .collect();
    let total = list.len();
    list.truncate(limit);
    Outgoing::json(
        200,
        &json!({
            "record_count": total,
            "actions": list.into_iter().map(|a| action_json(a, with_html)).collect::<Vec<_>>(),
        }),
    )
}

fn get_action(inner: &HaloInner, id: &str) -> Outgoing {
    let Ok(id) = id.parse::<i64>() else {
        return not_found("action not found");
    };
    match inner.lock().actions.get(&id) {
        Some(a) => Outgoing::json(200, &action_json(a, true)),
        None => not_found(&format!("action {id} not found")),
    }
}

struct ActionInput {
    id: Option<i64>,
    ticket_id: i64,
    outcome: Option<String>,
    outcome_id: Option<i64>,
    new_status: Option<i64>,
    fields: Map<String, Value>,
}

fn post_actions(inner: &HaloInner, req: &Incoming) -> Outgoing {
    let items = match parse_body_array(req) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut s = inner.lock();
    let mut inputs = Vec::new();
    for o in items {
        let parsed = (|| {
            let id = int_field(&o, "id")?.filter(|id| *id > 0);
            let ticket_id = lenient_int_field(&o, "ticket_id")?.ok_or_else(|| bad_request("ticket_id is required"))?;
            if !s.tickets.contains_key(&ticket_id) {
                return Err(bad_request(&format!("ticket {ticket_id} does not exist")));
            }
            if let Some(id) = id {
                if !s.actions.contains_key(&id) {
                    return Err(not_found(&format!("action {id} not found")));
                }
            }
            let outcome = str_field(&o, "outcome").filter(|v| !v.trim().is_empty());
            let outcome_id = lenient_int_field(&o, "outcome_id")?;
            if id.is_none() && outcome.is_none() && outcome_id.is_none() {
                return Err(bad_request("outcome or outcome_id is required"));
            }
            Ok(ActionInput {
                id,
                ticket_id,
                outcome,
                outcome_id,
                new_status: lenient_int_field(&o, "new_status")?,
                fields: o,
            })
        })();
        match parsed {
            Ok(p) => inputs.push(p),
            Err(e) => return e,
        }
    }
    let cfg = &inner.config;
    let mut saved = Vec::new();
    for input in inputs {
        let f = &input.fields;
        let hidden = f.get("hiddenfromuser").and_then(Value::as_bool);
        let action = match input.id {
            Some(id) => {
                let a = s.actions.get_mut(&id).expect("checked above");
                if f.contains_key("note") || f.contains_key("note_html") {
                    let (note, html) = derive_notes(str_field(f, "note"), str_field(f, "note_html"));
                    a.note = note;
                    a.note_html = html;
                }
                if let Some(h) = hidden {
                    a.hiddenfromuser = h;
                }
                if let Some(o) = input.outcome {
                    a.outcome = o;
                }
                a.clone()
            }
            None => {
                let id = s.next_action;
                s.next_action += 1;
                let (note, note_html) = derive_notes(str_field(f, "note"), str_field(f, "note_html"));
                let a = Action {
                    id,
                    ticket_id: input.ticket_id,
                    outcome: input.outcome.unwrap_or_else(|| format!("Outcome {}", input.outcome_id.unwrap_or(0))),
                    outcome_id: input.outcome_id,
                    note,
                    note_html,
                    hiddenfromuser: hidden.unwrap_or(false),
                    who: cfg.agent_name.clone(),
                    who_agentid: cfg.agent_id,
                    actionby_application_id: Some(cfg.app_name.clone()),
                    datetime: String::new(),
                    new_status: input.new_status,
                };
                s.log_action(a)
            }
        };
        if let Some(status_id) = input.new_status {
            if let Some(t) = s.tickets.get_mut(&input.ticket_id) {
                let (name, closed) = status_info(status_id);
                t.status_id = status_id;
                t.status_name = name;
                t.hasbeenclosed = closed;
            }
        }
        saved.push(action);
    }
    if truthy(query_map(&req.query).get("returnall")) {
        Outgoing::json(200, &Value::Array(saved.iter().map(|a| action_json(a, true)).collect()))
    } else {
        Outgoing::json(200, &action_json(saved.last().expect("non-empty"), true))
    }
}

#[derive(Deserialize)]
struct StatusChange {
    status_id: i64,
    status_name: Option<String>,
    closed: Option<bool>,
}

fn admin(inner: &HaloInner, req: &Incoming, segs: &[String]) -> Outgoing {
    let lsegs = lower(segs);
    let parts: Vec<&str> = lsegs.iter().map(String::as_str).collect();
    let m = &req.method;
    match parts.as_slice() {
        // The customers, each with its sites (the demos name clients by their ids).
        ["_sandbox", "clients"] if m == Method::GET => {
            let s = inner.lock();
            let list: Vec<Value> = s
                .clients
                .iter()
                .map(|(id, name, inactive)| {
                    let sites: Vec<Value> = s
                        .sites
                        .iter()
                        .filter(|(_, client, _)| client == id)
                        .map(|(site, _, name)| json!({"id": site, "name": name}))
                        .collect();
                    json!({"id": id, "name": name, "inactive": inactive, "sites": sites})
                })
                .collect();
            Outgoing::json(200, &Value::Array(list))
        }
        ["_sandbox", "tickets"] if m == Method::GET => {
            let s = inner.lock();
            let list: Vec<Value> = s
                .tickets
                .values()
                .map(|t| {
                    let mut v = ticket_json(t);
                    v["actions"] = Value::Array(
                        s.actions.values().filter(|a| a.ticket_id == t.id).map(|a| action_json(a, true)).collect(),
                    );
                    v
                })
                .collect();
            Outgoing::json(200, &Value::Array(list))
        }
        ["_sandbox", "tickets"] if m == Method::POST => match serde_json::from_slice::<NewTicket>(&req.body) {
            Ok(t) => {
                let id = insert_direct_ticket(&mut inner.lock(), t);
                Outgoing::json(201, &json!({ "id": id }))
            }
            Err(e) => bad_request(&e.to_string()),
        },
        ["_sandbox", "tickets", id, "actions"] if m == Method::POST => {
            let Ok(id) = id.parse::<i64>() else {
                return not_found("ticket not found");
            };
            let action = match serde_json::from_slice::<NewAction>(&req.body) {
                Ok(a) => a,
                Err(e) => return bad_request(&e.to_string()),
            };
            let mut s = inner.lock();
            if !s.tickets.contains_key(&id) {
                return not_found(&format!("ticket {id} not found"));
            }
            let action_id = insert_human_action(&mut s, id, action);
            Outgoing::json(201, &json!({ "id": action_id }))
        }
        ["_sandbox", "tickets", id, "status"] if m == Method::POST => {
            let Ok(id) = id.parse::<i64>() else {
                return not_found("ticket not found");
            };
            let change = match serde_json::from_slice::<StatusChange>(&req.body) {
                Ok(c) => c,
                Err(e) => return bad_request(&e.to_string()),
            };
            let mut s = inner.lock();
            let Some(t) = s.tickets.get_mut(&id) else {
                return not_found(&format!("ticket {id} not found"));
            };
            let (name, closed) = status_info(change.status_id);
            t.status_id = change.status_id;
            t.status_name = change.status_name.unwrap_or(name);
            t.hasbeenclosed = change.closed.unwrap_or(closed);
            Outgoing::json(200, &ticket_json(t))
        }
        // An outage (`sandbox halo-outage`): every API call, the token's too, answers 503 until it is lifted.
        ["_sandbox", "outage"] if m == Method::POST => {
            inner.faults.clear();
            inner.faults.push(crate::faults::Rule::always("*", "/", crate::faults::Fault::status(503)));
            Outgoing::json(200, &json!({ "down": true }))
        }
        ["_sandbox", "outage"] if m == Method::DELETE => {
            inner.faults.clear();
            Outgoing::json(200, &json!({ "down": false }))
        }
        ["_sandbox", "requests"] if m == Method::GET => {
            let list: Vec<Value> = inner
                .log
                .all()
                .iter()
                .map(|r| {
                    json!({
                        "seq": r.seq, "method": r.method, "path": r.path, "query": r.query,
                        "status": r.status, "fault": r.fault, "body": r.body_text(),
                    })
                })
                .collect();
            Outgoing::json(200, &Value::Array(list))
        }
        _ => not_found("no such sandbox admin endpoint"),
    }
}
