//! The reconcile: the backstop for Halo webhooks that never arrived (Halo does not retry a webhook it could not
//! deliver). A timer-triggered function (`reconcile`, schedule `RECONCILE_SCHEDULE`) walks the bridge's watch list
//! (every ticket it links whose close is not mirrored, `Store::open_tickets`), asks Halo for up to 100 of them per
//! call (`GET /Tickets?ticketids=`), and syncs only the tickets whose `lastactiondate` moved or whose close state
//! differs from the record, with the halo-webhook's own code (`HaloWebhook::sync_listed`: the same records, the
//! same verification, the same claims, so a webhook and a reconcile racing on one ticket do nothing twice).
//!
//! A run spends at most `RECONCILE_HALO_CALLS` Halo calls: one per listed chunk, one per changed ticket whose
//! actions must be read (a close alone costs none). A run that cannot cover the list stops before the chunk it
//! cannot finish, and the next run starts there (the cursor in the reconcile record): within a chunk the oldest
//! change goes first. A 429 ends the run and no run calls Halo before its `Retry-After` has passed. One run at a
//! time across instances: the record's lease is a claim (`store::claim`) that goes stale if its holder dies.
//!
//! The same run re-enqueues queued work whose queue message was lost (`Ledger::requeue_lost`).

use super::halo_webhook::{HaloWebhook, HaloWebhookError, HaloWebhookOutcome, SyncNeed};
use crate::config::ReconcileConfig;
use crate::domain::{unix_now, TicketId};
use crate::halo::client::MAX_PAGE_SIZE;
use crate::halo::model::Ticket;
use crate::store::claim::{Acquired, ClaimPolicy, Claimant, Claiming, Patience, Release};
use crate::store::{reconcile_key, ReconcileRecord, StoreError, TicketRecord};
use crate::upstream::{Deadline, UpstreamError, RATE_LIMIT_BACKOFF};
use crate::work::{WorkError, WorkFailure, WorkItem};
use serde_json::{json, Value};
use std::time::Duration;

/// The timer-triggered function's name (its folder, and the path the host invokes).
pub const RECONCILE_FUNCTION: &str = "reconcile";

/// How long one run may take: inside host.json's `functionTimeout` (5 minutes), with room to write its record.
pub const RUN_BUDGET: Duration = Duration::from_secs(240);

/// A lease older than this belongs to a run that died (a run ends within `RUN_BUDGET`).
const LEASE_TTL_SECS: i64 = 300;

/// The time one Halo listing or one ticket's sync may take. Shorter than the wait after a 429
/// (`upstream::RATE_LIMIT_BACKOFF`), so a 429 is never waited out (and the call repeated) inside a run: it ends
/// the run. A sync cut short by it is put on the work queue.
pub const STEP_BUDGET: Duration = Duration::from_secs(15);

/// Whether a run changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sync what changed, move the cursor, re-enqueue lost work.
    Apply,
    /// Read the watch list and Halo's listing only: what would be synced, and at what cost.
    DryRun,
}

/// Why a run stopped before covering the watch list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutShort {
    /// The next call would exceed `RECONCILE_HALO_CALLS`.
    Budget,
    /// The run's time (`RUN_BUDGET`) ran out.
    Time,
    /// Halo asked to wait (429): no run calls it before then.
    RateLimited,
    /// Halo failed: the next run tries again.
    HaloFailed,
}

impl CutShort {
    pub fn as_str(self) -> &'static str {
        match self {
            CutShort::Budget => "budget",
            CutShort::Time => "time",
            CutShort::RateLimited => "halo-rate-limited",
            CutShort::HaloFailed => "halo-failed",
        }
    }
}

/// One ticket a run synced (or, dry, would sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub ticket: TicketId,
    pub need: SyncNeed,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Tickets on the watch list.
    pub watched: usize,
    /// Tickets Halo listed this run.
    pub checked: usize,
    /// Tickets synced (or, dry, to sync), in order.
    pub synced: Vec<Planned>,
    pub comments: usize,
    pub closes: usize,
    /// Tickets whose sync failed for now and was put on the work queue.
    pub queued: usize,
    /// Comments or closes dead-lettered or of unknown outcome.
    pub set_aside: usize,
    /// Halo calls made (a dry run: the listing's).
    pub halo_calls: u32,
    /// Halo calls a dry run's syncs would add.
    pub planned_calls: u32,
    pub cut_short: Option<CutShort>,
    /// Queued work whose message was lost, queued again.
    pub requeued: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Done(Report),
    /// Another run holds the lease: this one did nothing.
    Busy,
    /// Halo asked to wait until this time (Unix seconds): nothing was asked of it.
    Waiting(i64),
}

impl Ran {
    /// The one log line of a run: tickets checked and synced, comments and closes sent, Halo calls used, and whether
    /// (and why) it was cut short.
    pub fn log(&self, duration_ms: u64) {
        let route = RECONCILE_FUNCTION;
        match self {
            Ran::Done(r) => tracing::info!(
                route,
                status = 200,
                outcome = "reconciled",
                watched = r.watched,
                checked = r.checked,
                synced = r.synced.len(),
                comments = r.comments,
                closes = r.closes,
                queued = r.queued,
                set_aside = r.set_aside,
                requeued = r.requeued.len(),
                halo_calls = r.halo_calls,
                cut_short = r.cut_short.map_or("no", CutShort::as_str),
                duration_ms,
                "reconcile"
            ),
            Ran::Busy => tracing::info!(
                route,
                status = 200,
                outcome = "busy",
                duration_ms,
                "reconcile: another run holds the lease"
            ),
            Ran::Waiting(until) => {
                tracing::info!(
                    route,
                    status = 200,
                    outcome = "waiting",
                    until,
                    duration_ms,
                    "reconcile: Halo asked to wait"
                )
            }
        }
    }

    /// A run as JSON (the invocation's `ReturnValue`, and `handler reconcile --json`).
    pub fn json(&self) -> Value {
        match self {
            Ran::Done(r) => json!({
                "outcome": "reconciled",
                "watched": r.watched,
                "checked": r.checked,
                "synced": r.synced.iter().map(|p| p.ticket).collect::<Vec<_>>(),
                "comments": r.comments,
                "closes": r.closes,
                "queued": r.queued,
                "setAside": r.set_aside,
                "requeued": r.requeued,
                "haloCalls": r.halo_calls,
                "plannedCalls": r.planned_calls,
                "cutShort": r.cut_short.map(CutShort::as_str),
            }),
            Ran::Busy => json!({"outcome": "busy"}),
            Ran::Waiting(until) => json!({"outcome": "waiting", "until": until}),
        }
    }

    pub fn summary(&self) -> String {
        match self {
            Ran::Done(r) => format!(
                "{} of {} watched tickets checked, {} synced ({} comments, {} closes), {} queued, {} Halo calls{}",
                r.checked,
                r.watched,
                r.synced.len(),
                r.comments,
                r.closes,
                r.queued,
                r.halo_calls,
                r.cut_short.map(|c| format!(", cut short: {}", c.as_str())).unwrap_or_default()
            ),
            Ran::Busy => "another run holds the lease; nothing done".into(),
            Ran::Waiting(until) => format!("Halo asked to wait until {until} (Unix time); nothing asked of it"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("state storage: {0}")]
    Store(#[from] StoreError),
    #[error("work queue: {0}")]
    Work(#[from] WorkError),
    #[error("{0}")]
    Off(String),
}

/// The halo-webhook work of one step of a run, with `STEP_BUDGET` to finish (or why the direction is off).
pub type Step<'a> = Box<dyn Fn() -> Result<HaloWebhook<'a>, String> + Send + Sync + 'a>;

/// One reconcile run.
pub struct Reconcile<'a> {
    /// The run's own parts and deadline (`RUN_BUDGET`).
    sync: HaloWebhook<'a>,
    step: Step<'a>,
    cfg: ReconcileConfig,
}

impl<'a> Reconcile<'a> {
    pub fn new(sync: HaloWebhook<'a>, step: Step<'a>, cfg: ReconcileConfig) -> Self {
        Reconcile { sync, step, cfg }
    }

    pub async fn run(&self, mode: Mode) -> Result<Ran, ReconcileError> {
        let ctx = self.sync.context();
        let key = reconcile_key();
        if mode == Mode::DryRun {
            let state = ctx.store.get::<ReconcileRecord>(&key).await?.map(|v| v.value).unwrap_or_default();
            return Ok(Ran::Done(self.walk(mode, &state).await?.0));
        }
        let lease = Claimant::new(ctx.store, ClaimPolicy { ttl_secs: LEASE_TTL_SECS, settle_secs: 0 }, ctx.deadline);
        let claiming = Claiming {
            fresh: Some(&ReconcileRecord::default),
            take_over: &|r: &ReconcileRecord| r.clone(),
            patience: Patience::None,
        };
        let held = match lease.acquire(&key, None, claiming).await? {
            Acquired::Ours { record, .. } => record,
            Acquired::Busy | Acquired::Done(_) | Acquired::Uncertain(_) => return Ok(Ran::Busy),
        };
        if held.value.not_before > unix_now() {
            let until = held.value.not_before;
            lease.release(&key, &held, Release::Now, |_| {}).await;
            return Ok(Ran::Waiting(until));
        }
        let walked = self.walk(mode, &held.value).await;
        let (report, cursor, not_before) = match walked {
            Ok(walked) => walked,
            Err(e) => {
                lease.release(&key, &held, Release::Now, |_| {}).await;
                return Err(e);
            }
        };
        lease
            .release(&key, &held, Release::Now, |r| {
                r.cursor = cursor;
                r.not_before = not_before;
            })
            .await;
        Ok(Ran::Done(report))
    }

    /// Walks the watch list from the cursor: the report, the next cursor and the next `not_before`.
    async fn walk(&self, mode: Mode, state: &ReconcileRecord) -> Result<(Report, TicketId, i64), ReconcileError> {
        let ctx = self.sync.context();
        let mut report = Report::default();
        if mode == Mode::Apply {
            report.requeued = ctx.ledger.requeue_lost(self.cfg.requeue_after).await?;
        }
        let watch = ctx.store.open_tickets().await?;
        report.watched = watch.len();
        let (mut cursor, mut not_before) = (state.cursor, 0);
        let budget = self.cfg.halo_calls;
        // From the first ticket after the cursor round to the one before it.
        let start = watch.iter().position(|(id, _)| *id > state.cursor).unwrap_or(0);
        let rotated: Vec<&(TicketId, TicketRecord)> = watch[start..].iter().chain(&watch[..start]).collect();
        'chunks: for chunk in rotated.chunks(MAX_PAGE_SIZE as usize) {
            if let Some(cut) = self.cut(&report, 1, budget, ctx.deadline) {
                report.cut_short = Some(cut);
                break;
            }
            let ids: Vec<TicketId> = chunk.iter().map(|(id, _)| *id).collect();
            report.halo_calls += 1;
            let listed = match ctx.halo.tickets_by_ids(&ids, Deadline::after(STEP_BUDGET)).await {
                Ok(listed) => listed,
                Err(e) => {
                    (report.cut_short, not_before) = halo_failed(&e);
                    break;
                }
            };
            report.checked += listed.len();
            let mut changed: Vec<(&Ticket, SyncNeed)> = listed
                .iter()
                .filter_map(|t| {
                    let (_, record) = chunk.iter().find(|(id, _)| *id == t.id)?;
                    Some((t, self.sync.needs_sync(t, record)))
                })
                .filter(|(_, need)| *need != SyncNeed::Nothing)
                .collect();
            // Oldest change first (Halo's dates are UTC text of one format; a ticket without one goes first).
            changed.sort_by(|(a, _), (b, _)| a.lastactiondate.cmp(&b.lastactiondate).then(a.id.cmp(&b.id)));
            for (ticket, need) in changed {
                let cost = u32::from(need == SyncNeed::ReadActions);
                if let Some(cut) = self.cut(&report, cost, budget, ctx.deadline) {
                    // This chunk is listed again next run; what it synced now is unchanged by then.
                    report.cut_short = Some(cut);
                    break 'chunks;
                }
                report.synced.push(Planned { ticket: ticket.id, need });
                if mode == Mode::DryRun {
                    report.planned_calls += cost;
                    continue;
                }
                report.halo_calls += cost;
                let step = (self.step)().map_err(ReconcileError::Off)?;
                match step.sync_listed(ticket).await {
                    Ok(HaloWebhookOutcome::Processed { forwarded, closed, set_aside }) => {
                        report.comments += forwarded;
                        report.closes += usize::from(closed);
                        report.set_aside += set_aside;
                    }
                    Ok(HaloWebhookOutcome::Ignored(_)) => {}
                    Err(HaloWebhookError::Halo(e)) => {
                        (report.cut_short, not_before) = halo_failed(&e);
                        break 'chunks;
                    }
                    // ContraForce or storage failed for this ticket: the queue retries it, the run goes on.
                    Err(e) => {
                        let item = WorkItem::HaloTicket { ticket: ticket.id };
                        if e.is_permanent() {
                            ctx.ledger.dead_letter(&item, None, &e.to_string()).await?;
                            report.set_aside += 1;
                        } else {
                            ctx.ledger.enqueue(&item, None, &e.to_string(), e.retry_after()).await?;
                            report.queued += 1;
                        }
                    }
                }
            }
            cursor = chunk.last().map_or(cursor, |(id, _)| *id);
        }
        if report.cut_short.is_none() {
            cursor = 0;
        }
        Ok((report, cursor, not_before))
    }

    /// Whether a step costing `cost` Halo calls must not be taken.
    fn cut(&self, report: &Report, cost: u32, budget: u32, deadline: Deadline) -> Option<CutShort> {
        let spent = report.halo_calls + report.planned_calls;
        if spent + cost > budget {
            Some(CutShort::Budget)
        } else if deadline.remaining() < Duration::from_secs(20) {
            Some(CutShort::Time)
        } else {
            None
        }
    }
}

/// A Halo failure ends the run; a 429 also holds every run off until its `Retry-After` (Halo sends none, as far
/// as any source shows: then the usual backoff).
fn halo_failed(e: &UpstreamError) -> (Option<CutShort>, i64) {
    let wait = match e {
        UpstreamError::Status { status: 429, retry_after, .. } => Some(retry_after.unwrap_or(RATE_LIMIT_BACKOFF)),
        UpstreamError::RetryLater { retry_after, .. } => Some(*retry_after),
        _ => None,
    };
    match wait {
        Some(wait) => (Some(CutShort::RateLimited), unix_now() + wait.as_secs().max(1) as i64),
        None => (Some(CutShort::HaloFailed), 0),
    }
}
