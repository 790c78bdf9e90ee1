//! halo-webhook, Halo → ContraForce, exactly once: every public Halo action reaches ContraForce once as a comment, oldest first,
//! and each close is mirrored once, across restarts, retries and concurrent webhooks.
//!
//! Per ticket, Table Storage holds the highest action id handled (it only moves forward), a marker per forwarded
//! action (claimed before the comment is posted, so two concurrent webhooks cannot both post it), and the close
//! state (claimed before the close is sent), all through `store::claim`.
//!
//! A comment or close that ContraForce refuses for good (a 4xx other than 408/409/429) is dead-lettered and does
//! not block what follows; a comment whose answer was lost is recorded as uncertain and never posted again by
//! itself; anything else transient fails the webhook, whose work is then queued (`work`). So does finding an action
//! or the close claimed by another delivery: that holder may have died, or may not have seen the actions this one
//! saw, so the work is not done until a later attempt finds it done.

use super::{Context, IN_FLIGHT_RETRY};
use crate::cf::client::{CfClient, Close};
use crate::config::{Decision, HaloWebhookConfig};
use crate::domain::{IncidentAt, TicketId};
use crate::halo::model::{Action, Ticket};
use crate::halo::text::{cap, html_to_text, MAX_COMMENT_CHARS};
use crate::store::claim::{Acquired, Claiming, Patience, Release};
use crate::store::{
    action_key, incident_key, own_note_key, ticket_key, ActionMarker, Claim, CloseState, IncidentRecord, IncidentState,
    Key, MarkerState, StoreError, TicketRecord, Versioned, Write, OWN_NOTE_ROW,
};
use crate::upstream::{Call, Failure, UpstreamError};
use crate::work::{WorkFailure, WorkItem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaloWebhookOutcome {
    Ignored(&'static str),
    /// `set_aside`: comments and closes dead-lettered or of uncertain outcome (in the work ledger).
    Processed {
        forwarded: usize,
        closed: bool,
        set_aside: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HaloWebhookError {
    /// Another delivery holds the claim on one of the ticket's actions or its close: retried shortly.
    #[error("another delivery is forwarding this ticket's actions or close; retry shortly")]
    InFlight,
    #[error(transparent)]
    Halo(UpstreamError),
    #[error(transparent)]
    Cf(UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WorkFailure for HaloWebhookError {
    fn is_permanent(&self) -> bool {
        match self {
            HaloWebhookError::Halo(e) | HaloWebhookError::Cf(e) => e.is_permanent(),
            HaloWebhookError::InFlight | HaloWebhookError::Store(_) => false,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            HaloWebhookError::Halo(e) | HaloWebhookError::Cf(e) => e.retry_after(),
            HaloWebhookError::InFlight => Some(IN_FLIGHT_RETRY),
            HaloWebhookError::Store(_) => None,
        }
    }
}

/// Why an action is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Private,
    ByTheBridgeApplication,
    ByTheBridgeAgent,
    TicketCreation,
    NoText,
}

/// The decision for one action, and the comment text when it is forwarded.
pub fn forwardable(action: &Action, cfg: &HaloWebhookConfig, is_bridge_creation: bool) -> Result<String, Skip> {
    if action.hiddenfromuser {
        return Err(Skip::Private);
    }
    let by_app = match (&cfg.integration_application, &action.actionby_application_id) {
        (Some(ours), Some(theirs)) => ours.trim().eq_ignore_ascii_case(theirs.trim()),
        _ => false,
    };
    if by_app {
        return Err(Skip::ByTheBridgeApplication);
    }
    if cfg.integration_agent_id.is_some() && action.who_agentid == cfg.integration_agent_id {
        return Err(Skip::ByTheBridgeAgent);
    }
    if is_bridge_creation {
        return Err(Skip::TicketCreation);
    }
    let text = match action.note_html.as_deref().filter(|h| !h.trim().is_empty()) {
        Some(html) => html_to_text(html),
        None => action.note.as_deref().unwrap_or_default().trim().to_string(),
    };
    if text.is_empty() {
        return Err(Skip::NoText);
    }
    Ok(text)
}

/// The comment ContraForce receives for a forwarded action.
pub fn comment_for(ticket_id: TicketId, action: &Action, text: &str) -> String {
    let who = action.who.as_deref().map(str::trim).filter(|w| !w.is_empty()).unwrap_or("Halo");
    format!("[Halo ticket #{ticket_id} note by {who}]\n\n{}", cap(text, MAX_COMMENT_CHARS))
}

const NOT_LINKED: &str = "not a ticket the bridge created or imported";
const NOT_VERIFIED: &str = "the incident's record does not name this ticket";

/// The analyst's decision a close stands for: the classification field when set and valid, else the closing
/// status's entry in `HALO_CLOSE_DECISION_MAP`, else `CF_CLOSE_CLASSIFICATION` / `CF_CLOSE_CLASSIFICATION_REASON`.
pub fn decision(ticket: &Ticket, cfg: &HaloWebhookConfig) -> Decision {
    let from_field = cfg
        .classification_field_id
        .and_then(|id| ticket.custom_field(id))
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| Decision::parse(v).ok());
    from_field.or_else(|| ticket.status_id.and_then(|s| cfg.decisions.get(&s)).cloned()).unwrap_or_else(|| Decision {
        classification: cfg.close_classification.clone(),
        reason: Some(cfg.close_classification_reason.clone()),
    })
}

/// The longest closing note quoted in the close's comment.
const MAX_CLOSING_NOTE_CHARS: usize = 1000;

/// The close's comment: the Halo status, the decision, and the closing note (the last public action), capped.
pub fn close_comment(ticket: &Ticket, decision: &Decision, closing_note: Option<&str>) -> String {
    let status = ticket.status_name.as_deref().unwrap_or("Closed");
    let reason = decision.reason.as_deref().map(|r| format!(" / {r}")).unwrap_or_default();
    let mut comment =
        format!("Closed in HaloPSA (ticket #{}, status '{status}'): {}{reason}.", ticket.id, decision.classification);
    if let Some(note) = closing_note {
        comment.push_str(&format!("\n\nClosing note: {}", cap(note, MAX_CLOSING_NOTE_CHARS)));
    }
    comment
}

/// The text of the ticket's last public action (what a comment would carry), if the actions were read.
fn closing_note(actions: &[Action], record: &TicketRecord, cfg: &HaloWebhookConfig) -> Option<String> {
    let creation_id = actions.first().map(|a| a.id).filter(|_| record.created_by_bridge);
    actions.iter().rev().find_map(|a| forwardable(a, cfg, Some(a.id) == creation_id).ok())
}

/// Halo's `lastactiondate` is the one recorded when every action was last handled: there is no action to read.
fn actions_unchanged(ticket: &Ticket, record: &TicketRecord) -> bool {
    ticket.lastactiondate.is_some() && ticket.lastactiondate == record.last_action_date
}

/// What syncing a ticket would do, as far as its listing and record tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncNeed {
    /// Nothing changed since the bridge last looked.
    Nothing,
    /// Only the close (or a reopen) to mirror: no Halo call.
    CloseOnly,
    /// New actions may exist: one Halo call to read them.
    ReadActions,
}

/// Whether Halo's close state differs from the record's (a close to mirror, or a reopen to arm).
fn close_pending(ticket: &Ticket, cfg: &HaloWebhookConfig, read: CloseState) -> bool {
    let closed = is_closed(ticket, cfg);
    !((!closed && read == CloseState::Open) || (closed && read == CloseState::Closed))
}

/// Whether Halo says the ticket is closed.
pub(crate) fn is_closed(ticket: &Ticket, cfg: &HaloWebhookConfig) -> bool {
    ticket.hasbeenclosed || ticket.status_id.is_some_and(|s| cfg.closed_status_ids.contains(&s))
}

enum Forwarded {
    /// Posted: the marker, still Sending, for the caller to mark Sent.
    Posted(Versioned<ActionMarker>),
    AlreadyHandled,
    /// Refused for good (a dead letter) or of unknown outcome (recorded): the next actions go on.
    SetAside,
    /// Another delivery is posting this action right now: stop here to keep the order, and try again later.
    InFlightElsewhere,
}

/// A posted comment, as its Sent write needs it.
struct Sent<'m> {
    action_id: i64,
    sending: &'m Versioned<ActionMarker>,
    /// The `lastactiondate` the progress covers, when this was the last new action.
    dated: Option<&'m str>,
    /// The next action to forward, reserved in the same write.
    next: Option<i64>,
}

/// What became of the ticket's close in this webhook.
enum Closed {
    Now,
    NotNow,
    SetAside,
}

/// The work of one webhook.
pub struct HaloWebhook<'a> {
    ctx: Context<'a>,
    cf: &'a CfClient,
    cfg: &'a HaloWebhookConfig,
}

impl<'a> HaloWebhook<'a> {
    pub fn new(ctx: Context<'a>, cf: &'a CfClient, cfg: &'a HaloWebhookConfig) -> Self {
        HaloWebhook { ctx, cf, cfg }
    }

    /// The request's shared parts (the reconcile's run uses the same store, ledger, Halo client and deadline).
    pub(crate) fn context(&self) -> &Context<'a> {
        &self.ctx
    }

    /// One webhook for `ticket_id`. The bridge's own records are the only authority on which ticket belongs to
    /// which incident: a ticket it did not create (or an operator did not import) costs no Halo call, and nothing
    /// is posted or closed until the incident's record names this ticket.
    pub async fn sync(&self, ticket_id: TicketId) -> Result<HaloWebhookOutcome, HaloWebhookError> {
        let Some(record) = self.record(ticket_id).await? else {
            return Ok(HaloWebhookOutcome::Ignored(NOT_LINKED));
        };
        let found = self.ctx.halo.ticket(ticket_id, self.ctx.deadline).await.map_err(HaloWebhookError::Halo)?;
        let Some(ticket) = found else {
            return Ok(HaloWebhookOutcome::Ignored("ticket not found"));
        };
        self.sync_ticket(record, &ticket).await
    }

    /// The same sync for a ticket the caller already read from Halo (the reconcile's batched list), without
    /// reading it again: the same record, the same verification, the same claims.
    pub async fn sync_listed(&self, ticket: &Ticket) -> Result<HaloWebhookOutcome, HaloWebhookError> {
        let Some(record) = self.record(ticket.id).await? else {
            return Ok(HaloWebhookOutcome::Ignored(NOT_LINKED));
        };
        self.sync_ticket(record, ticket).await
    }

    /// Whether a sync of `ticket` would read its actions (a Halo call) or mirror a close or reopen: what the
    /// reconcile asks before spending a call on it.
    pub fn needs_sync(&self, ticket: &Ticket, record: &TicketRecord) -> SyncNeed {
        if !actions_unchanged(ticket, record) {
            SyncNeed::ReadActions
        } else if close_pending(ticket, self.cfg, record.close) {
            SyncNeed::CloseOnly
        } else {
            SyncNeed::Nothing
        }
    }

    async fn sync_ticket(
        &self,
        read: Versioned<TicketRecord>,
        ticket: &Ticket,
    ) -> Result<HaloWebhookOutcome, HaloWebhookError> {
        let ticket_id = ticket.id;
        let record = &read.value;
        // Halo's `lastactiondate` unchanged since every action was handled: no action to read (one call, not two).
        let unchanged = actions_unchanged(ticket, record);
        let actions = if unchanged {
            Vec::new()
        } else {
            self.ctx.halo.actions(ticket_id, self.ctx.deadline).await.map_err(HaloWebhookError::Halo)?
        };
        let new_actions = actions.iter().any(|a| a.id > record.last_action_id);
        let mut own = Vec::new();
        if new_actions || close_pending(ticket, self.cfg, record.close) {
            // The new actions that would be forwarded: the bridge's own notes among them are found in the same read.
            let creation_id = actions.first().map(|a| a.id).filter(|_| record.created_by_bridge);
            let candidates: Vec<i64> = actions
                .iter()
                .filter(|a| a.id > record.last_action_id && forwardable(a, self.cfg, Some(a.id) == creation_id).is_ok())
                .map(|a| a.id)
                .collect();
            match self.verify(ticket_id, record, &candidates).await? {
                Some(found) => own = found,
                None => return Ok(HaloWebhookOutcome::Ignored(NOT_VERIFIED)),
            }
        }
        let seen = (!unchanged).then_some(ticket.lastactiondate.as_deref()).flatten();
        let (forwarded, mut set_aside) = self.forward_actions(ticket_id, &read, &actions, &own, seen).await?;
        let closing_note = closing_note(&actions, record, self.cfg);
        let closed = match self.mirror_close(ticket, record.at(), record.close, closing_note.as_deref()).await? {
            Closed::Now => true,
            Closed::SetAside => {
                set_aside += 1;
                false
            }
            Closed::NotNow => false,
        };
        Ok(HaloWebhookOutcome::Processed { forwarded, closed, set_aside })
    }

    /// Forwards one action again (a replayed dead letter or uncertain comment), if it still is forwardable.
    pub async fn forward_action(
        &self,
        ticket_id: TicketId,
        action_id: i64,
    ) -> Result<HaloWebhookOutcome, HaloWebhookError> {
        let Some(Versioned { value: record, .. }) = self.record(ticket_id).await? else {
            return Ok(HaloWebhookOutcome::Ignored(NOT_LINKED));
        };
        let Some(own) = self.verify(ticket_id, &record, &[action_id]).await? else {
            return Ok(HaloWebhookOutcome::Ignored(NOT_VERIFIED));
        };
        if !own.is_empty() {
            return Ok(HaloWebhookOutcome::Ignored("the bridge's own note"));
        }
        let actions = self.ctx.halo.actions(ticket_id, self.ctx.deadline).await.map_err(HaloWebhookError::Halo)?;
        let Some(action) = actions.iter().find(|a| a.id == action_id) else {
            return Ok(HaloWebhookOutcome::Ignored("the action no longer exists"));
        };
        let is_creation = record.created_by_bridge && actions.first().is_some_and(|a| a.id == action_id);
        let Ok(text) = forwardable(action, self.cfg, is_creation) else {
            return Ok(HaloWebhookOutcome::Ignored("the action is no longer forwardable"));
        };
        let (forwarded, set_aside) = match self.forward_once(ticket_id, record.at(), action, &text, None).await? {
            Forwarded::Posted(sending) => {
                self.mark_sent(&action_key(ticket_id, action.id), &sending).await;
                (1, 0)
            }
            Forwarded::SetAside => (0, 1),
            Forwarded::AlreadyHandled => (0, 0),
            Forwarded::InFlightElsewhere => return Err(HaloWebhookError::InFlight),
        };
        Ok(HaloWebhookOutcome::Processed { forwarded, closed: false, set_aside })
    }

    /// The bridge's record of the ticket: written when cf-webhook created it or `handler import-links` linked it.
    /// A reference written on a ticket is never enough (anyone who edits a ticket can type or copy one).
    async fn record(&self, ticket_id: TicketId) -> Result<Option<Versioned<TicketRecord>>, StoreError> {
        self.ctx.store.get::<TicketRecord>(&ticket_key(ticket_id)).await
    }

    /// Whether the incident's own record names this ticket. A ticket record the bridge wrote while creating the
    /// ticket comes just before the incident's record says so: that short gap is a transient failure (the work is
    /// queued and done a moment later), never a trust. Any other mismatch (a record from an older version of the
    /// bridge that trusted a typed reference, a second ticket claiming one incident) is refused.
    ///
    /// The same read finds which of `candidates` (action ids) are the bridge's own notes (`own_note_key`): `Some`
    /// of those when the link is verified, `None` when it is not.
    async fn verify(
        &self,
        ticket_id: TicketId,
        record: &TicketRecord,
        candidates: &[i64],
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let key = incident_key(&record.reference);
        let own_rows: Vec<String> = candidates.iter().map(|id| own_note_key(&key, *id).row).collect();
        let (incident, found) = self.ctx.store.get_with_rows::<IncidentRecord>(&key, &own_rows).await?;
        let own = || found.iter().filter_map(|row| row.strip_prefix(OWN_NOTE_ROW)?.parse().ok()).collect();
        match incident.map(|v| v.value) {
            Some(i) if i.state == IncidentState::Created && i.ticket_id == Some(ticket_id) => Ok(Some(own())),
            Some(i) if record.created_by_bridge && i.state == IncidentState::Claimed => {
                Err(StoreError::Unavailable("the incident's link to its new ticket is still being written".into()))
            }
            other => {
                tracing::warn!(
                    ticket_id,
                    linked_ticket = other.and_then(|i| i.ticket_id),
                    "the incident's record does not name this ticket: nothing is posted or closed from it"
                );
                Ok(None)
            }
        }
    }

    async fn forward_actions(
        &self,
        ticket_id: TicketId,
        read: &Versioned<TicketRecord>,
        actions: &[Action],
        own: &[i64],
        seen: Option<&str>,
    ) -> Result<(usize, usize), HaloWebhookError> {
        let record = &read.value;
        // The opening action of a ticket the bridge made is the incident's own details: never a comment, whoever
        // Halo names as its author (the echo filter alone is not enough).
        let creation_id = actions.first().map(|a| a.id).filter(|_| record.created_by_bridge);
        // Each new action with the comment it becomes, if it is forwarded.
        let plan: Vec<(&Action, Option<String>)> = actions
            .iter()
            .filter(|a| a.id > record.last_action_id)
            .map(|a| (a, forwardable(a, self.cfg, Some(a.id) == creation_id).ok().filter(|_| !own.contains(&a.id))))
            .collect();
        // The record as this webhook last wrote it: each posted comment's Sent marker, the progress it makes and the
        // next comment's reservation go in one write (one partition), and the progress needs no write of its own.
        let mut progress = Some(read.clone());
        let mut reserved = None;
        let mut handled_through = record.last_action_id;
        let (mut forwarded, mut set_aside) = (0, 0);
        let mut outcome = Ok(());
        let mut complete = true;
        for (n, (action, text)) in plan.iter().enumerate() {
            if let Some(text) = text {
                match self.forward_once(ticket_id, record.at(), action, text, reserved.take()).await {
                    Ok(Forwarded::Posted(sending)) => {
                        forwarded += 1;
                        // The last new action: every action Halo had when it answered `seen` is handled.
                        let dated = (n + 1 == plan.len()).then_some(seen).flatten();
                        let next = plan[n + 1..].iter().find(|(_, t)| t.is_some()).map(|(a, _)| a.id);
                        let sent = Sent { action_id: action.id, sending: &sending, dated, next };
                        (progress, reserved) = self.sent_with_progress(ticket_id, sent, progress).await;
                    }
                    Ok(Forwarded::SetAside) => set_aside += 1,
                    Ok(Forwarded::AlreadyHandled) => {}
                    // Not done: what follows waits (the order), and the work is tried again.
                    Ok(Forwarded::InFlightElsewhere) => {
                        complete = false;
                        outcome = Err(HaloWebhookError::InFlight);
                        break;
                    }
                    Err(e) => {
                        complete = false;
                        outcome = Err(e);
                        break;
                    }
                }
            }
            handled_through = action.id;
        }
        // Every action Halo had when it answered `seen` is handled: the next webhook with that date reads none.
        let seen = seen.filter(|_| complete);
        let stored = progress.as_ref().map(|p| &p.value);
        let behind = stored.is_none_or(|r| r.last_action_id < handled_through);
        let undated = seen.is_some() && stored.is_none_or(|r| r.last_action_date.as_deref() != seen);
        // Nothing new (the common webhook: any ticket update): the record just read needs no write, and no re-read.
        if behind || undated {
            self.advance(ticket_id, progress, handled_through, seen).await?;
        }
        outcome.map(|_| (forwarded, set_aside))
    }

    /// A posted comment's marker goes Sent, the ticket's record moves past the action (with `dated`, the
    /// `lastactiondate` that covers it) and the next comment to forward is reserved, in one entity group
    /// transaction. When the next action's marker exists already (another webhook's), the transaction is made
    /// without it; when the record changed meanwhile (another webhook moved it), the marker is written alone and
    /// the progress is left to `advance`. Returns the record as now stored (`None` when not known) and the next
    /// action's reservation.
    async fn sent_with_progress(
        &self,
        ticket_id: TicketId,
        sent: Sent<'_>,
        progress: Option<Versioned<TicketRecord>>,
    ) -> (Option<Versioned<TicketRecord>>, Option<Versioned<ActionMarker>>) {
        let marker_key = action_key(ticket_id, sent.action_id);
        let Some(held) = progress else {
            self.mark_sent(&marker_key, sent.sending).await;
            return (None, None);
        };
        let mut moved = held.value.clone();
        moved.last_action_id = moved.last_action_id.max(sent.action_id);
        if let Some(date) = sent.dated.filter(|_| moved.last_action_id == sent.action_id) {
            moved.last_action_date = Some(date.to_string());
        }
        let marker = ActionMarker { state: MarkerState::Sent, claim: self.ctx.claims.new_claim() };
        let ticket = ticket_key(ticket_id);
        let mut writes =
            vec![Write::replace(&marker_key, &marker, &sent.sending.etag), Write::replace(&ticket, &moved, &held.etag)];
        let reservation = ActionMarker { state: MarkerState::Reserved, claim: self.ctx.claims.new_claim() };
        if let Some(next) = sent.next {
            writes.push(Write::insert(&action_key(ticket_id, next), &reservation));
        }
        let mut answered = self.ctx.store.batch(&ticket.partition, &writes).await;
        if matches!(answered, Err(StoreError::Conflict)) && writes.len() == 3 {
            writes.pop();
            answered = self.ctx.store.batch(&ticket.partition, &writes).await;
        }
        match answered {
            Ok(etags) => {
                let next = etags.get(2).map(|etag| Versioned { value: reservation, etag: etag.clone() });
                (Some(Versioned { value: moved, etag: etags[1].clone() }), next)
            }
            Err(_) => {
                self.mark_sent(&marker_key, sent.sending).await;
                (None, None)
            }
        }
    }

    /// A posted comment's marker goes Sent (best effort: left at Sending, it is never posted again either).
    async fn mark_sent(&self, key: &Key, sending: &Versioned<ActionMarker>) {
        let sent = ActionMarker { state: MarkerState::Sent, claim: self.ctx.claims.new_claim() };
        if let Err(e) = self.ctx.claims.settle(key, sending, &sent).await {
            tracing::warn!(error = %e, row = %key.row, "could not mark a forwarded action as sent");
        }
    }

    /// Posts one action's comment unless another webhook has, or is doing it. The marker goes Reserved (claimed, not
    /// posted) → Sending (written just before the POST) → Sent. A stale Reserved marker is taken over and posted;
    /// only a Sending marker whose post never reported back means "outcome unknown: not posted again". Reserved
    /// first is what keeps a storage outage that begins at the claim from losing the comment: the write that hangs
    /// is the one that says "not posted". `reserved`: the claim the previous comment's Sent write made on this
    /// action. `Posted` hands the Sending marker back for the caller to mark Sent.
    async fn forward_once(
        &self,
        ticket_id: TicketId,
        at: IncidentAt<'_>,
        action: &Action,
        text: &str,
        reserved: Option<Versioned<ActionMarker>>,
    ) -> Result<Forwarded, HaloWebhookError> {
        let key = action_key(ticket_id, action.id);
        let claim = match reserved {
            Some(claim) => claim,
            None => {
                let reserved = || ActionMarker { state: MarkerState::Reserved, claim: Claim::released() };
                let how = Claiming {
                    fresh: Some(&reserved),
                    take_over: &|_: &ActionMarker| reserved(),
                    patience: Patience::None,
                };
                // Most actions are new: the insert is tried first and doubles as the read.
                match self.ctx.claims.acquire(&key, Some(None), how).await? {
                    Acquired::Ours { record, .. } => record,
                    Acquired::Done(_) => return Ok(Forwarded::AlreadyHandled),
                    Acquired::Uncertain(_) => {
                        tracing::warn!(
                            action_id = action.id,
                            "an earlier comment post has an unknown outcome; not posting it again"
                        );
                        return Ok(Forwarded::AlreadyHandled);
                    }
                    Acquired::Busy => return Ok(Forwarded::InFlightElsewhere),
                }
            }
        };
        let sending = ActionMarker { state: MarkerState::Sending, claim: self.ctx.claims.new_claim() };
        let Some(etag) = self.ctx.claims.settle(&key, &claim, &sending).await? else {
            return Ok(Forwarded::InFlightElsewhere);
        };
        let sending = Versioned { value: sending, etag };
        match self.cf.add_comment(at, &comment_for(ticket_id, action, text), self.ctx.deadline).await {
            Ok(()) => Ok(Forwarded::Posted(sending)),
            Err(e) => {
                let item = WorkItem::HaloAction { ticket: ticket_id, action: action.id };
                match e.failure(Call::Create) {
                    // Refused for good: a dead letter first, then the marker (a crash between the two leaves it
                    // Sending: never posted again, and the dead letter is there to replay).
                    Failure::Permanent => {
                        self.ctx.ledger.dead_letter(&item, None, &e.to_string()).await?;
                        let dead = ActionMarker { state: MarkerState::DeadLettered, claim: Claim::released() };
                        if let Err(e) = self.ctx.claims.settle(&key, &sending, &dead).await {
                            tracing::warn!(error = %e, action_id = action.id, "could not mark a dead-lettered action");
                        }
                        Ok(Forwarded::SetAside)
                    }
                    // Surely not stored (429, 503, refused connection): the next attempt posts it.
                    Failure::Transient { .. } => {
                        self.ctx
                            .claims
                            .release(&key, &sending, Release::Now, |m| m.state = MarkerState::Reserved)
                            .await;
                        Err(HaloWebhookError::Cf(e))
                    }
                    // Maybe stored (a timeout, a 500, a broken answer): the Sending marker stays, it is never
                    // posted again by itself, and the ledger says so.
                    Failure::Uncertain => {
                        let reason = format!("{e}; the comment may have been posted");
                        self.ctx.ledger.uncertain(&item, &reason).await?;
                        Ok(Forwarded::SetAside)
                    }
                }
            }
        }
    }

    /// Moves the handled-through id forward, never backward, with the action date it covers: one write at the
    /// record's ETag when this webhook knows it (`held`), else (or when it changed meanwhile) read and written again.
    async fn advance(
        &self,
        ticket_id: TicketId,
        held: Option<Versioned<TicketRecord>>,
        handled_through: i64,
        seen: Option<&str>,
    ) -> Result<(), StoreError> {
        let key = ticket_key(ticket_id);
        let change = |r: &mut TicketRecord| {
            let forward = handled_through > r.last_action_id;
            r.last_action_id = r.last_action_id.max(handled_through);
            // Only a record that has not moved past what this webhook handled takes its date.
            let dated = seen.is_some() && r.last_action_id == handled_through && r.last_action_date.as_deref() != seen;
            if dated {
                r.last_action_date = seen.map(str::to_string);
            }
            forward || dated
        };
        if let Some(mut held) = held {
            if !change(&mut held.value) {
                return Ok(());
            }
            match self.ctx.store.replace(&key, &held.value, &held.etag).await {
                Err(StoreError::Changed) => {}
                other => return other.map(drop),
            }
        }
        self.ctx.store.update::<TicketRecord, _>(&key, change).await.map(drop)
    }

    /// Mirrors the ticket's close once per close; a reopen arms the next close. `read` is the close state as read
    /// at the start of this webhook.
    async fn mirror_close(
        &self,
        ticket: &Ticket,
        at: IncidentAt<'_>,
        read: CloseState,
        closing_note: Option<&str>,
    ) -> Result<Closed, HaloWebhookError> {
        let key = ticket_key(ticket.id);
        let closed = is_closed(ticket, self.cfg);
        // Halo and the record as read agree (open and armed, or closed and mirrored): nothing to write or re-read.
        if !close_pending(ticket, self.cfg, read) {
            return Ok(Closed::NotNow);
        }
        if !closed {
            self.ctx
                .store
                .update::<TicketRecord, _>(&key, |r| {
                    let reopened = r.close == CloseState::Closed;
                    if reopened {
                        r.close = CloseState::Open;
                    }
                    reopened
                })
                .await?;
            return Ok(Closed::NotNow);
        }
        let closing = |r: &TicketRecord| TicketRecord { close: CloseState::Closing, ..r.clone() };
        let how = Claiming { fresh: None, take_over: &closing, patience: Patience::None };
        let claim = match self.ctx.claims.acquire(&key, None, how).await? {
            Acquired::Ours { record, .. } => record,
            Acquired::Done(_) | Acquired::Uncertain(_) => return Ok(Closed::NotNow),
            // Another delivery is closing it: done only once a later attempt finds it closed.
            Acquired::Busy => return Err(HaloWebhookError::InFlight),
        };
        let decision = decision(ticket, self.cfg);
        let comment = close_comment(ticket, &decision, closing_note);
        let close =
            Close { comment: &comment, classification: &decision.classification, reason: decision.reason.as_deref() };
        let result = self.cf.close(at, &close, self.ctx.deadline).await;
        // Refused for good: dead-lettered, and this close counts as handled (a reopen arms the next one).
        let dead_lettered = match &result {
            Err(e) if e.is_permanent() => {
                let item = WorkItem::HaloClose { ticket: ticket.id };
                self.ctx.ledger.dead_letter(&item, None, &e.to_string()).await?;
                true
            }
            _ => false,
        };
        let final_state = if result.is_ok() || dead_lettered { CloseState::Closed } else { CloseState::Open };
        // Other fields may have moved on meanwhile (actions handled by another webhook): only the close changes,
        // and only while it is still ours.
        self.ctx
            .claims
            .settle_with(&key, &claim, |r| {
                let ours = r.close == CloseState::Closing && self.ctx.claims.is_mine(&r.close_claim);
                if ours {
                    r.close = final_state;
                    r.close_claim = Claim::released();
                }
                ours
            })
            .await?;
        match result {
            Ok(()) => Ok(Closed::Now),
            Err(_) if dead_lettered => Ok(Closed::SetAside),
            Err(e) => Err(HaloWebhookError::Cf(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Env};

    fn cfg() -> HaloWebhookConfig {
        let env = Env::from_pairs([
            ("CF_API_BASE_URL", "http://127.0.0.1:1/api/v2"),
            ("CF_SERVICE_ACCOUNT_CLIENT_ID", "c"),
            ("CF_WORKSPACE_ID", "ws"),
            ("HALO_INTEGRATION_AGENT_ID", "12"),
            ("HALO_INTEGRATION_APPLICATION", "ContraForce Bridge"),
            ("HALO_CLOSED_STATUS_ID", "9,17"),
        ]);
        Config::from_env(&env).unwrap().halo_webhook.ready().unwrap().clone()
    }

    fn action(json: serde_json::Value) -> Action {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn filters_skip_private_own_empty_and_creation_actions() {
        let c = cfg();
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "x", "hiddenfromuser": true})), &c, false),
            Err(Skip::Private)
        );
        assert_eq!(
            forwardable(
                &action(serde_json::json!({"id": 1, "note": "x", "actionby_application_id": " contraforce bridge "})),
                &c,
                false
            ),
            Err(Skip::ByTheBridgeApplication)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "x", "who_agentid": 12})), &c, false),
            Err(Skip::ByTheBridgeAgent)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "  ", "note_html": "<p> </p>"})), &c, false),
            Err(Skip::NoText)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "x"})), &c, true),
            Err(Skip::TicketCreation)
        );
        assert_eq!(
            forwardable(&action(serde_json::json!({"id": 1, "note": "plain", "who_agentid": 3})), &c, false),
            Ok("plain".into())
        );
        assert_eq!(
            forwardable(
                &action(serde_json::json!({"id": 1, "note": "plain", "note_html": "<p>rich &amp; <b>bold</b></p>"})),
                &c,
                false
            ),
            Ok("rich & bold".into())
        );
    }

    #[test]
    fn the_comment_names_the_ticket_and_the_author() {
        let a = action(serde_json::json!({"id": 5, "who": "Sam"}));
        assert_eq!(comment_for(1001, &a, "hello"), "[Halo ticket #1001 note by Sam]\n\nhello");
        let a = action(serde_json::json!({"id": 5}));
        assert!(comment_for(1001, &a, "hello").starts_with("[Halo ticket #1001 note by Halo]"));
        let long = "x".repeat(MAX_COMMENT_CHARS + 10);
        assert!(comment_for(1, &a, &long).contains("(truncated"));
    }

    #[test]
    fn close_decision_uses_the_flag_or_any_configured_status() {
        let c = cfg();
        let t = |json| serde_json::from_value::<Ticket>(json).unwrap();
        assert!(is_closed(&t(serde_json::json!({"id": 1, "hasbeenclosed": true, "status_id": 2})), &c));
        assert!(is_closed(&t(serde_json::json!({"id": 1, "status_id": 17})), &c));
        assert!(!is_closed(&t(serde_json::json!({"id": 1, "status_id": 2})), &c));
        assert!(!is_closed(&t(serde_json::json!({"id": 1})), &c));
    }
}
