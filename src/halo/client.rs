//! The Halo API calls the bridge makes. Every call carries the shared token; a 401 refreshes it once and retries.
//! GETs are retried with backoff; POSTs are never blindly retried (callers look first, see `outbound`).

use super::model::{list_items, single_item, Action, Ticket};
use super::token::TokenSource;
use crate::config::HaloApiConfig;
use crate::domain::{ExternalRef, TicketId};
use crate::domain::{RefLocation, TicketRefField};
use crate::secrets::Secrets;
use crate::upstream::{self, not_json, Answer, Deadline, Retry, UpstreamError};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SERVICE: &str = "Halo API";
/// Enough actions for any real ticket in one call; a larger `record_count` triggers one more call with it.
const ACTIONS_PAGE: i64 = 1000;
const MAX_ACTIONS: i64 = 20_000;
/// How many recent tickets of a client are checked when looking for a ticket by a non-searchable reference.
const RECENT_TICKETS: i64 = 100;

pub struct HaloClient {
    http: reqwest::Client,
    api: String,
    tokens: TokenSource,
    call_timeout: Duration,
    calls: AtomicU64,
}

impl HaloClient {
    pub fn new(http: reqwest::Client, cfg: &HaloApiConfig, secrets: Secrets, call_timeout: Duration) -> Self {
        HaloClient {
            tokens: TokenSource::new(http.clone(), cfg, secrets, call_timeout),
            http,
            api: cfg.api_base_url.clone(),
            call_timeout,
            calls: AtomicU64::new(0),
        }
    }

    /// API calls made since start (tokens not included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        deadline: Deadline,
        retry: Retry,
        shape: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Answer, UpstreamError> {
        let url = format!("{}/{}", self.api, path);
        let mut refreshed = false;
        loop {
            let token = self.tokens.token(deadline).await?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let result = upstream::send(SERVICE, self.call_timeout, deadline, retry, || {
                shape(self.http.request(method.clone(), &url).bearer_auth(token.expose()))
            })
            .await;
            match result {
                Err(UpstreamError::Status { status: 401, .. }) if !refreshed => {
                    self.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// `POST /Tickets` with one ticket; Halo answers the saved ticket as a single object.
    pub(crate) async fn create_ticket(&self, ticket: &Value, deadline: Deadline) -> Result<TicketId, UpstreamError> {
        let body = Value::Array(vec![ticket.clone()]);
        let answer = self.call(Method::POST, "Tickets", deadline, Retry::OnlyIfNotSent, |r| r.json(&body)).await?;
        saved_id(answer.json(SERVICE)?)
    }

    /// `POST /Actions` with one action; returns the new action's id.
    pub async fn add_action(&self, action: &Value, deadline: Deadline) -> Result<i64, UpstreamError> {
        let body = Value::Array(vec![action.clone()]);
        let answer = self.call(Method::POST, "Actions", deadline, Retry::OnlyIfNotSent, |r| r.json(&body)).await?;
        saved_id(answer.json(SERVICE)?)
    }

    /// `GET /Tickets/{id}` (with `includedetails`, harmless and defensive for custom fields); `None` on 404.
    pub async fn ticket(&self, id: TicketId, deadline: Deadline) -> Result<Option<Ticket>, UpstreamError> {
        let path = format!("Tickets/{id}");
        match self
            .call(Method::GET, &path, deadline, Retry::Idempotent, |r| r.query(&[("includedetails", "true")]))
            .await
        {
            Ok(answer) => answer.parse(SERVICE, "ticket").map(Some),
            Err(UpstreamError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every action of a ticket with its HTML note, sorted by id (Halo documents no order).
    pub async fn actions(&self, ticket_id: TicketId, deadline: Deadline) -> Result<Vec<Action>, UpstreamError> {
        let mut count = ACTIONS_PAGE;
        loop {
            let query = [
                ("ticket_id", ticket_id.to_string()),
                ("count", count.to_string()),
                ("includehtmlnote", "true".to_string()),
                ("excludesys", "true".to_string()),
            ];
            let answer = self.call(Method::GET, "Actions", deadline, Retry::Idempotent, |r| r.query(&query)).await?;
            let (mut actions, total) =
                list_items::<Action>(&answer.body, "actions").map_err(|e| not_json(SERVICE, e))?;
            match total {
                Some(total) if total > actions.len() as i64 && total > count && count < MAX_ACTIONS => {
                    count = total.min(MAX_ACTIONS);
                }
                // Fewer than Halo's own count, and no way to ask for the rest (`/Actions` documents no paging):
                // a partial list would skip actions for good, so the webhook fails (and is retried) instead.
                Some(total) if total > actions.len() as i64 => {
                    return Err(UpstreamError::Broken {
                        service: SERVICE,
                        detail: format!("Halo listed {} of the ticket's {total} actions", actions.len()),
                    });
                }
                _ => {
                    actions.sort_by_key(|a| a.id);
                    actions.dedup_by_key(|a| a.id);
                    return Ok(actions);
                }
            }
        }
    }

    /// Looks for the ticket that carries exactly this reference (after a crash or an uncertain create). A Halo
    /// search is fuzzy, so a result counts only if the ticket really carries our exact reference.
    pub(crate) async fn find_ticket(
        &self,
        reference: &ExternalRef,
        location: RefLocation,
        client_id: i64,
        deadline: Deadline,
    ) -> Result<Option<TicketId>, UpstreamError> {
        let wanted = reference.to_string();
        let query: Vec<(&str, String)> = match location {
            RefLocation::Field(TicketRefField::SupplierReference) => {
                vec![("search_supplier_reference", wanted.clone()), ("count", "50".into())]
            }
            // Neither custom fields nor thirdpartynumber can be searched (docs/halo-api.md, Tickets): check the client's
            // most recent tickets instead.
            _ => vec![
                ("client_id", client_id.to_string()),
                ("count", RECENT_TICKETS.to_string()),
                ("order", "id".into()),
                ("orderdesc", "true".into()),
            ],
        };
        let answer = self.call(Method::GET, "Tickets", deadline, Retry::Idempotent, |r| r.query(&query)).await?;
        let (tickets, _) = list_items::<Ticket>(&answer.body, "tickets").map_err(|e| not_json(SERVICE, e))?;
        Ok(tickets.into_iter().filter(|t| t.reference_at(location) == Some(wanted.as_str())).map(|t| t.id).min())
    }
}

fn saved_id(body: Value) -> Result<i64, UpstreamError> {
    single_item(body)
        .as_ref()
        .and_then(|item| item.get("id"))
        .and_then(crate::wire::lenient_i64)
        .filter(|id| *id > 0)
        .ok_or_else(|| UpstreamError::Broken { service: SERVICE, detail: "the answer carries no id".into() })
}
