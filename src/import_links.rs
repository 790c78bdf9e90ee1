//! `handler import-links`: the cut-over from Logic App 01. Scans Halo's tickets page by page for a
//! `cf|source|incidentId` reference (where the bridge writes it, and in `thirdpartynumber`, where Logic App 01 wrote
//! it), and records each link in the shapes the bridge's own create writes: the incident record (Created, with the
//! ticket id) and the ticket record (`created_by_bridge: false`). The halo-webhook direction then treats an imported
//! ticket exactly like one it linked itself, and a later ContraForce event of the incident becomes a note on it
//! instead of a second ticket.
//!
//! - **Conflicts are reported, never resolved**: two or more tickets claiming one incident link none of them; an
//!   incident the bridge already linked to another ticket, or a ticket already linked to another incident, is left
//!   as it is.
//! - **What Logic App 03 already forwarded is not forwarded again**: an imported ticket's record starts with
//!   `last_action_id` at its newest action (one `GET /Actions` per ticket linked: the ticket list carries no action
//!   id, docs/halo-api.md), and with its close counted as mirrored when the ticket is closed.
//! - **Idempotent**: an incident already linked to the same ticket is skipped without a Halo call, so a second run
//!   (or a run after an interruption) links only what is left.
//! - **Rate-aware**: each call waits out 429s (`Retry-After`, else the backoff of docs/halo-api.md), up to a bound;
//!   `--from-page` starts the scan later.
//! - `--dry-run` reads Halo and the store and writes nothing.

use crate::app::App;
use crate::directions::halo_webhook::is_closed;
use crate::domain::{ExternalRef, TicketId};
use crate::halo::client::{HaloClient, TicketPage, MAX_PAGE_SIZE};
use crate::halo::model::Ticket;
use crate::store::{
    incident_key, ticket_key, CloseState, IncidentRecord, IncidentState, Store, StoreError, TicketRecord,
};
use crate::upstream::{Deadline, UpstreamError, RATE_LIMIT_BACKOFF};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Each Halo call's budget, its own retries included.
const CALL_BUDGET: Duration = Duration::from_secs(120);
/// Rate-limit waits in a row on one call before the run stops (resumable with `--from-page`).
const MAX_WAITS: u32 = 30;
/// Pages scanned at most (a million tickets).
const MAX_PAGES: i64 = 10_000;

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub dry_run: bool,
    /// The first page to scan (from 1).
    pub from_page: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options { dry_run: false, from_page: 1 }
    }
}

/// What became of one ticket carrying a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linked,
    /// `--dry-run`: would be linked.
    WouldLink,
    /// Already linked to this very ticket (by the bridge or an earlier import).
    AlreadyLinked,
    /// Not linked, and why.
    Conflict(String),
}

/// One output line: a ticket, its reference, and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub ticket_id: TicketId,
    pub reference: ExternalRef,
    pub verdict: Verdict,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (word, why) = match &self.verdict {
            Verdict::Linked => ("linked", String::new()),
            Verdict::WouldLink => ("would link", String::new()),
            Verdict::AlreadyLinked => ("skipped", ": already linked".to_string()),
            Verdict::Conflict(why) => ("CONFLICT", format!(": {why}")),
        };
        write!(f, "ticket {}\t{}\t{word}{why}", self.ticket_id, self.reference)
    }
}

/// What a run did, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub pages: i64,
    pub scanned: usize,
    /// Tickets without a `cf|source|id` reference.
    pub unrelated: usize,
    pub linked: usize,
    pub would_link: usize,
    pub already_linked: usize,
    pub conflicts: usize,
    pub halo_calls: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scanned {} tickets on {} pages ({} without a reference): linked {}, would link {}, already linked {}, \
             conflicts {}; {} Halo calls",
            self.scanned,
            self.pages,
            self.unrelated,
            self.linked,
            self.would_link,
            self.already_linked,
            self.conflicts,
            self.halo_calls
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("Halo, scanning page {page}: {error}; run again with --from-page {page}")]
    Scan { page: i64, error: UpstreamError },
    #[error("ticket {ticket}: {error}; run again (linked tickets are skipped) from --from-page {page}")]
    Link { ticket: TicketId, page: i64, error: String },
}

/// One ticket that carries a reference.
struct Found {
    page: i64,
    ticket: Ticket,
    reference: ExternalRef,
}

/// Runs the import; `print` gets each line as it is decided.
pub async fn run(app: &App, options: &Options, mut print: impl FnMut(&Line)) -> Result<Summary, ImportError> {
    let halo =
        app.halo.as_ref().ok_or(ImportError::NotConfigured("the Halo API is not configured (HALO_* settings)"))?;
    let store = app.store.as_ref().ok_or(ImportError::NotConfigured(
        "no state storage: set AzureWebJobsStorage (or the identity-based settings)",
    ))?;
    let location =
        app.config.halo.ready().map(|h| h.reference).unwrap_or(crate::domain::RefLocation::SupplierReference);
    let calls_before = halo.calls();
    let mut summary = Summary::default();
    // The whole scan first: only then is it known whether two tickets claim one incident.
    let mut claims: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    let mut page_no = options.from_page.max(1);
    // Ascending ids: a ticket created during the scan lands on a later page and shifts nothing.
    let filters = [("order", "id".to_string()), ("orderdesc", "false".to_string())];
    while page_no < options.from_page.max(1) + MAX_PAGES {
        let page: TicketPage = patiently(|deadline| halo.tickets_page(&filters, page_no, MAX_PAGE_SIZE, deadline))
            .await
            .map_err(|error| ImportError::Scan { page: page_no, error })?;
        summary.pages += 1;
        summary.scanned += page.tickets.len();
        let more = page.more_after(page_no, MAX_PAGE_SIZE);
        for ticket in page.tickets {
            let reference = ticket.candidate_references(location).find_map(ExternalRef::parse);
            match reference {
                Some(reference) => {
                    claims.entry(reference.to_string()).or_default().push(Found { page: page_no, ticket, reference })
                }
                None => summary.unrelated += 1,
            }
        }
        if !more {
            break;
        }
        page_no += 1;
    }
    let closed =
        |ticket: &Ticket| app.config.halo_webhook.ready().map_or(ticket.hasbeenclosed, |c| is_closed(ticket, c));
    let mut lines: Vec<Line> = Vec::new();
    for found in claims.into_values() {
        let decided = if found.len() > 1 {
            let key = incident_key(&found[0].reference);
            let linked = store.get::<IncidentRecord>(&key).await.map_err(|e| ImportError::Link {
                ticket: found[0].ticket.id,
                page: found[0].page,
                error: e.to_string(),
            })?;
            conflicting(&found, linked.map(|r| r.value).as_ref())
        } else {
            let one = &found[0];
            let verdict = link(halo, store, one, closed(&one.ticket), options.dry_run)
                .await
                .map_err(|error| ImportError::Link { ticket: one.ticket.id, page: one.page, error })?;
            vec![Line { ticket_id: one.ticket.id, reference: one.reference.clone(), verdict }]
        };
        lines.extend(decided);
    }
    lines.sort_by_key(|l| l.ticket_id);
    for line in &lines {
        match line.verdict {
            Verdict::Linked => summary.linked += 1,
            Verdict::WouldLink => summary.would_link += 1,
            Verdict::AlreadyLinked => summary.already_linked += 1,
            Verdict::Conflict(_) => summary.conflicts += 1,
        }
        print(line);
    }
    summary.halo_calls = halo.calls() - calls_before;
    Ok(summary)
}

/// Two or more tickets claim one incident: none is linked. When the bridge already linked the incident (`linked`),
/// that link stands and each ticket is judged against it.
fn conflicting(found: &[Found], linked: Option<&IncidentRecord>) -> Vec<Line> {
    let ids: Vec<String> = found.iter().map(|f| f.ticket.id.to_string()).collect();
    let why = format!("tickets {} all claim this incident; none linked, keep one and clear the others", ids.join(", "));
    let verdict = |id| match linked {
        Some(record) => against_incident(record, id),
        None => Verdict::Conflict(why.clone()),
    };
    found
        .iter()
        .map(|f| Line { ticket_id: f.ticket.id, reference: f.reference.clone(), verdict: verdict(f.ticket.id) })
        .collect()
}

/// Links one ticket to its incident unless the store says otherwise.
async fn link(halo: &HaloClient, store: &Store, found: &Found, closed: bool, dry_run: bool) -> Result<Verdict, String> {
    let (ticket_id, reference) = (found.ticket.id, &found.reference);
    let incident_key = incident_key(reference);
    let incident = store.get::<IncidentRecord>(&incident_key).await.map_err(|e| e.to_string())?;
    if let Some(verdict) = incident.map(|r| against_incident(&r.value, ticket_id)) {
        return Ok(verdict);
    }
    let ticket_key = ticket_key(ticket_id);
    let existing = store.get::<TicketRecord>(&ticket_key).await.map_err(|e| e.to_string())?;
    if let Some(other) = existing.as_ref().filter(|r| r.value.reference != *reference) {
        return Ok(Verdict::Conflict(format!("the ticket is already linked to {}", other.value.reference)));
    }
    if dry_run {
        return Ok(Verdict::WouldLink);
    }
    // The ticket's record first, as the bridge's own create does: once the incident says Created, everything for
    // it exists. A record the halo-webhook already keeps for this ticket stays: its progress is real.
    if existing.is_none() {
        let actions = patiently(|deadline| halo.actions(ticket_id, deadline)).await.map_err(|e| e.to_string())?;
        let record = TicketRecord {
            last_action_id: actions.iter().map(|a| a.id).max().unwrap_or(0),
            // The listing's date, read before the actions: a later action makes the next sync read them again.
            last_action_date: found.ticket.lastactiondate.clone(),
            close: if closed { CloseState::Closed } else { CloseState::Open },
            ..TicketRecord::new(reference.clone(), false)
        };
        match store.insert(&ticket_key, &record).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let created = IncidentRecord {
        routed_by: Some("imported".into()),
        ..IncidentRecord::new(reference.clone(), IncidentState::Created, Some(ticket_id))
    };
    match store.insert(&incident_key, &created).await {
        Ok(_) => Ok(Verdict::Linked),
        // A delivery of the incident came first: its record decides.
        Err(StoreError::Conflict) => match store.get::<IncidentRecord>(&incident_key).await {
            Ok(Some(stored)) => Ok(against_incident(&stored.value, ticket_id)),
            Ok(None) => Err("the incident record vanished while it was written".into()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// The verdict when the incident already has a record.
fn against_incident(record: &IncidentRecord, ticket_id: TicketId) -> Verdict {
    match (record.state, record.ticket_id) {
        (IncidentState::Created, Some(linked)) if linked == ticket_id => Verdict::AlreadyLinked,
        (IncidentState::Created, Some(linked)) => {
            Verdict::Conflict(format!("the bridge already linked this incident to ticket {linked}; not changed"))
        }
        _ => Verdict::Conflict(
            "the bridge is creating this incident's ticket (or an attempt of it died); run again later".into(),
        ),
    }
}

/// One Halo call, its 429s waited out (`Retry-After`, else the rate-limit backoff) up to `MAX_WAITS` in a row.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, UpstreamError>
where
    F: FnMut(Deadline) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let mut waits = 0;
    loop {
        match call(Deadline::after(CALL_BUDGET)).await {
            Err(e) if waits < MAX_WAITS && rate_limited(&e) => {
                let wait = e.retry_after().unwrap_or(RATE_LIMIT_BACKOFF);
                eprintln!("handler: Halo is rate limiting; waiting {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
                waits += 1;
            }
            other => return other,
        }
    }
}

fn rate_limited(e: &UpstreamError) -> bool {
    matches!(e, UpstreamError::RetryLater { .. } | UpstreamError::Status { status: 429, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: IncidentState, ticket_id: Option<TicketId>) -> IncidentRecord {
        IncidentRecord::new(ExternalRef::parse("cf|s|1").unwrap(), state, ticket_id)
    }

    #[test]
    fn an_existing_link_is_never_overwritten() {
        assert_eq!(against_incident(&record(IncidentState::Created, Some(7)), 7), Verdict::AlreadyLinked);
        let Verdict::Conflict(why) = against_incident(&record(IncidentState::Created, Some(8)), 7) else { panic!() };
        assert!(why.contains("ticket 8"), "{why}");
        assert!(matches!(against_incident(&record(IncidentState::Claimed, None), 7), Verdict::Conflict(_)));
    }

    #[test]
    fn lines_and_the_summary_read_as_one_line_each() {
        let line = Line {
            ticket_id: 1001,
            reference: ExternalRef::parse("cf|s|1").unwrap(),
            verdict: Verdict::Conflict("why".into()),
        };
        assert_eq!(line.to_string(), "ticket 1001\tcf|s|1\tCONFLICT: why");
        assert!(!Summary::default().to_string().contains('\n'));
    }

    #[test]
    fn only_rate_limits_are_waited_out() {
        let status = |status| UpstreamError::Status { service: "x", status, retry_after: None };
        assert!(rate_limited(&status(429)));
        assert!(rate_limited(&UpstreamError::RetryLater { service: "x", retry_after: Duration::from_secs(1) }));
        assert!(!rate_limited(&status(500)) && !rate_limited(&status(404)));
    }
}
