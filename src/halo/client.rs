//! The Halo API calls the bridge makes. Every call carries the shared token; a 401 refreshes it once and retries.
//! GETs are retried with backoff; POSTs are never blindly retried (callers look first, see `outbound`).

use super::model::{list_items, single_item, Action, Client, Listed, Ticket};
use super::token::TokenSource;
use crate::config::HaloApiConfig;
use crate::domain::{ExternalRef, RefLocation, TicketId};
use crate::secrets::Secrets;
use crate::upstream::{self, not_json, Answer, Deadline, Pacer, Retry, UpstreamError};
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
/// The most tickets one page of `GET /Tickets` holds (docs/halo-api.md, Tickets).
pub const MAX_PAGE_SIZE: i64 = 100;
/// The recovery lookup's page: the ticket it looks for is one of the newest, so small pages, newest first.
const LOOKUP_PAGE_SIZE: i64 = 50;
/// Pages the recovery lookup reads at most (the 1,000 newest tickets whose reference contains ours).
const LOOKUP_MAX_PAGES: i64 = 20;

/// Pages of clients a name lookup reads at most (a name contained in more than 500 client names is not a name).
const CLIENT_PAGES: i64 = 5;

/// The configuration lists `--check` reads (docs/halo-api.md, *Configuration lists*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Clients,
    Sites,
    Statuses,
    TicketTypes,
    CustomFields,
}

/// One page of a paged ticket list.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketPage {
    pub tickets: Vec<Ticket>,
    /// Every ticket the list holds, over all its pages.
    pub record_count: Option<i64>,
}

impl TicketPage {
    /// Whether a page after `page_no` (from 1, of `page_size`) may hold more: the tickets collected through this
    /// page are fewer than `record_count` (or, without one, this page was full).
    pub fn more_after(&self, page_no: i64, page_size: i64) -> bool {
        let collected = (page_no - 1) * page_size + self.tickets.len() as i64;
        !self.tickets.is_empty() && self.record_count.map_or(self.tickets.len() as i64 >= page_size, |n| collected < n)
    }
}

pub struct HaloClient {
    http: reqwest::Client,
    api: String,
    tokens: TokenSource,
    call_timeout: Duration,
    calls: AtomicU64,
    /// Halo's API budget, as this instance spends it (`HALO_RATE_LIMIT`).
    pacer: Pacer,
}

impl HaloClient {
    pub fn new(http: reqwest::Client, cfg: &HaloApiConfig, secrets: Secrets, call_timeout: Duration) -> Self {
        HaloClient {
            tokens: TokenSource::new(http.clone(), cfg, secrets, call_timeout),
            http,
            api: cfg.api_base_url.clone(),
            call_timeout,
            calls: AtomicU64::new(0),
            pacer: Pacer::new(cfg.rate_limit, cfg.rate_window),
        }
    }

    /// API calls made since start (tokens not included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The client-side rate limit (what it has made wait or turned away).
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
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
            crate::trace::count(crate::trace::Service::Halo);
            let result = upstream::send_paced(SERVICE, self.call_timeout, deadline, retry, Some(&self.pacer), || {
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

    /// One page of `GET /Tickets` (`pageinate=true`, `page_no` from 1, `page_size` at most 100) with `filters`.
    pub async fn tickets_page(
        &self,
        filters: &[(&str, String)],
        page_no: i64,
        page_size: i64,
        deadline: Deadline,
    ) -> Result<TicketPage, UpstreamError> {
        let mut query: Vec<(&str, String)> = filters.to_vec();
        query.extend([
            ("pageinate", "true".into()),
            ("page_size", page_size.clamp(1, MAX_PAGE_SIZE).to_string()),
            ("page_no", page_no.max(1).to_string()),
        ]);
        let answer = self.call(Method::GET, "Tickets", deadline, Retry::Idempotent, |r| r.query(&query)).await?;
        let (tickets, record_count) =
            list_items::<Ticket>(&answer.body, "tickets").map_err(|e| not_json(SERVICE, e))?;
        Ok(TicketPage { tickets, record_count })
    }

    /// The listed tickets among `ids` (at most `MAX_PAGE_SIZE`), in one call: `GET /Tickets?ticketids=<csv>`.
    /// The filter's format is not documented beyond its name (docs/halo-api.md, Tickets), so an answer naming a
    /// ticket that was not asked for means Halo ignored it: that answer is refused, never read as a change list.
    pub async fn tickets_by_ids(&self, ids: &[TicketId], deadline: Deadline) -> Result<Vec<Ticket>, UpstreamError> {
        let ids = &ids[..ids.len().min(MAX_PAGE_SIZE as usize)];
        let csv = ids.iter().map(TicketId::to_string).collect::<Vec<_>>().join(",");
        let page = self.tickets_page(&[("ticketids", csv)], 1, MAX_PAGE_SIZE, deadline).await?;
        match page.tickets.iter().find(|t| !ids.contains(&t.id)) {
            Some(_) => Err(UpstreamError::Broken {
                service: SERVICE,
                detail: "Halo answered tickets that were not asked for: the ticketids filter was ignored".into(),
            }),
            None => Ok(page.tickets),
        }
    }

    /// The active clients whose name *contains* `name` (Halo's `search` is "like your search string"), up to
    /// `CLIENT_PAGES` pages of 100: the caller compares names exactly.
    pub async fn clients_named(&self, name: &str, deadline: Deadline) -> Result<Vec<Client>, UpstreamError> {
        let mut found = Vec::new();
        for page_no in 1..=CLIENT_PAGES {
            let query = [
                ("search", name.to_string()),
                ("pageinate", "true".to_string()),
                ("page_size", MAX_PAGE_SIZE.to_string()),
                ("page_no", page_no.to_string()),
            ];
            let answer = self.call(Method::GET, "Client", deadline, Retry::Idempotent, |r| r.query(&query)).await?;
            let (clients, total) = list_items::<Client>(&answer.body, "clients").map_err(|e| not_json(SERVICE, e))?;
            let full = clients.len() as i64 >= MAX_PAGE_SIZE;
            found.extend(clients);
            if !full || total.is_some_and(|n| found.len() as i64 >= n) {
                break;
            }
        }
        found.retain(|c| !c.inactive);
        Ok(found)
    }

    /// Every row of one configuration list, in one call (`--check`: does each configured id exist?).
    pub async fn listed(&self, kind: Listing, deadline: Deadline) -> Result<Vec<Listed>, UpstreamError> {
        let (path, key, query): (&str, &str, &[(&str, &str)]) = match kind {
            Listing::Clients => ("Client", "clients", &[("includeinactive", "true"), ("count", "100000")]),
            Listing::Sites => ("Site", "sites", &[("includeinactive", "true"), ("count", "100000")]),
            Listing::Statuses => ("Status", "statuses", &[("showall", "true")]),
            Listing::TicketTypes => ("TicketType", "tickettypes", &[("showall", "true"), ("showinactive", "true")]),
            Listing::CustomFields => ("FieldInfo", "fieldinfo", &[]),
        };
        let answer = self.call(Method::GET, path, deadline, Retry::Idempotent, |r| r.query(query)).await?;
        let (rows, _) = list_items::<Listed>(&answer.body, key).map_err(|e| not_json(SERVICE, e))?;
        Ok(rows)
    }

    /// Looks for the ticket that carries exactly this reference (after a crash or an uncertain create). A Halo
    /// search matches any ticket whose reference *contains* ours (`cf|s|12` finds `cf|s|120`), so a result counts
    /// only if it carries our exact reference, and the search is read newest first (the ticket an earlier attempt
    /// created is among the newest), page by page, until found or the list ends.
    pub(crate) async fn find_ticket(
        &self,
        reference: &ExternalRef,
        location: RefLocation,
        client_id: i64,
        deadline: Deadline,
    ) -> Result<Option<TicketId>, UpstreamError> {
        let wanted = reference.to_string();
        let newest_first = [("order", "id".to_string()), ("orderdesc", "true".to_string())];
        if location != RefLocation::SupplierReference {
            // Custom fields cannot be searched (docs/halo-api.md, Tickets): check the client's most recent tickets.
            let mut query = vec![("client_id", client_id.to_string()), ("count", RECENT_TICKETS.to_string())];
            query.extend(newest_first);
            let answer = self.call(Method::GET, "Tickets", deadline, Retry::Idempotent, |r| r.query(&query)).await?;
            let (tickets, _) = list_items::<Ticket>(&answer.body, "tickets").map_err(|e| not_json(SERVICE, e))?;
            return Ok(exact_match(&tickets, location, &wanted));
        }
        let mut filters = vec![("search_supplier_reference", wanted.clone())];
        filters.extend(newest_first);
        for page_no in 1..=LOOKUP_MAX_PAGES {
            let page = self.tickets_page(&filters, page_no, LOOKUP_PAGE_SIZE, deadline).await?;
            if let Some(found) = exact_match(&page.tickets, location, &wanted) {
                return Ok(Some(found));
            }
            if !page.more_after(page_no, LOOKUP_PAGE_SIZE) {
                return Ok(None);
            }
        }
        tracing::warn!(reference = %reference, pages = LOOKUP_MAX_PAGES, "no ticket with this exact reference among the newest");
        Ok(None)
    }
}

/// The ticket carrying exactly `wanted` where the bridge writes it (the oldest, should there be two).
fn exact_match(tickets: &[Ticket], location: RefLocation, wanted: &str) -> Option<TicketId> {
    tickets.iter().filter(|t| t.reference_at(location) == Some(wanted)).map(|t| t.id).min()
}

fn saved_id(body: Value) -> Result<i64, UpstreamError> {
    single_item(body)
        .as_ref()
        .and_then(|item| item.get("id"))
        .and_then(crate::wire::lenient_i64)
        .filter(|id| *id > 0)
        .ok_or_else(|| UpstreamError::Broken { service: SERVICE, detail: "the answer carries no id".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(id: i64, reference: &str) -> Ticket {
        serde_json::from_value(serde_json::json!({"id": id, "supplier_reference": reference})).unwrap()
    }

    #[test]
    fn only_the_exact_reference_matches_not_a_longer_one_the_search_also_finds() {
        let decoys: Vec<Ticket> = (0..60).map(|n| ticket(2000 - n, &format!("cf|defenderxdr|12{n}"))).collect();
        let wanted = "cf|defenderxdr|12";
        assert_eq!(exact_match(&decoys, RefLocation::SupplierReference, wanted), None);
        let mut with_real = decoys;
        with_real.push(ticket(1500, wanted));
        assert_eq!(exact_match(&with_real, RefLocation::SupplierReference, wanted), Some(1500));
        assert_eq!(exact_match(&with_real, RefLocation::CustomField(4), wanted), None, "only where it is written");
    }

    #[test]
    fn paging_goes_on_while_fewer_than_record_count_are_collected() {
        let page = |n: usize, count: Option<i64>| TicketPage {
            tickets: (0..n as i64).map(|i| ticket(i + 1, "x")).collect(),
            record_count: count,
        };
        assert!(page(50, Some(101)).more_after(2, 50), "100 of 101");
        assert!(!page(1, Some(101)).more_after(3, 50), "101 of 101");
        assert!(!page(50, Some(100)).more_after(2, 50));
        assert!(!page(0, Some(500)).more_after(1, 50), "an empty page ends it whatever the count says");
        assert!(page(50, None).more_after(1, 50) && !page(49, None).more_after(1, 50), "no count: a full page");
    }
}
