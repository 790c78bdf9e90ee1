//! cf-webhook, ContraForce → Halo, exactly once: one ticket per incident (`cf|source|incidentId`), one private note
//! per later event, nothing done twice however deliveries are retried, duplicated, interleaved or cut off.
//!
//! The incident record in Table Storage is the source of truth (a Halo search is not: docs/halo-api.md). A delivery
//! claims the incident (`store::claim`) before calling Halo; a claim whose holder died is taken over only after
//! looking for the ticket in Halo, and a Halo result counts only if it carries our exact reference.

pub mod mapping;
pub mod routing;

use super::{Context, IN_FLIGHT_RETRY};
use crate::cf::event::Incident;
use crate::config::CfWebhookConfig;
use crate::domain::{EventId, ExternalRef, TicketId};
use crate::store::claim::{Acquired, Claiming, Patience, Release};
use crate::store::{
    delivery_key, event_key, incident_key, own_note_key, ticket_key, ActionMarker, Claim, DeliveryRecord, EventRecord,
    EventState, IncidentRecord, IncidentState, Key, MarkerState, StoreError, TicketRecord, Versioned, Write,
};
use crate::upstream::UpstreamError;
use crate::work::WorkFailure;
use std::time::Duration;

/// How long a delivery waits for a concurrent delivery of the same incident before answering 503.
const WAIT_FOR_OTHER_DELIVERY: Duration = Duration::from_secs(3);

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created(TicketId),
    Updated(TicketId),
    Duplicate(TicketId),
}

impl Outcome {
    pub fn ticket_id(self) -> TicketId {
        match self {
            Outcome::Created(t) | Outcome::Updated(t) | Outcome::Duplicate(t) => t,
        }
    }

    pub fn status(self) -> &'static str {
        match self {
            Outcome::Created(_) => "created",
            Outcome::Updated(_) => "updated",
            Outcome::Duplicate(_) => "duplicate",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CfWebhookError {
    #[error("another delivery of this incident is being processed; retry shortly")]
    InFlight,
    #[error(transparent)]
    Halo(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WorkFailure for CfWebhookError {
    /// Halo refused for good (a 400 on the ticket, a 403): a dead letter. A create whose answer was lost is not
    /// permanent: its claim asks the next attempt to look in Halo first, so the queued retry is safe.
    fn is_permanent(&self) -> bool {
        matches!(self, CfWebhookError::Halo(e) if e.is_permanent())
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            CfWebhookError::InFlight => Some(IN_FLIGHT_RETRY),
            CfWebhookError::Halo(e) => e.retry_after(),
            CfWebhookError::Store(_) => None,
        }
    }
}

/// The work of one delivery.
pub struct CfWebhook<'a> {
    ctx: Context<'a>,
    cfg: &'a CfWebhookConfig,
}

enum Link {
    /// This delivery created (or recovered) the ticket.
    CreatedNow(TicketId),
    Existing {
        ticket_id: TicketId,
        created_by_event: Option<String>,
        created_by_delivery: Option<String>,
    },
}

impl<'a> CfWebhook<'a> {
    pub fn new(ctx: Context<'a>, cfg: &'a CfWebhookConfig) -> Self {
        CfWebhook { ctx, cfg }
    }

    pub fn config(&self) -> &'a CfWebhookConfig {
        self.cfg
    }

    /// One Table read (the incident, this event's record and this signed delivery's, in one query) decides the
    /// path: a duplicate costs nothing more; a new incident costs three writes and one Halo call; a later event
    /// two writes (entity group transactions) and one note. `delivery` (`cf::signature::delivery_id`) is the signed time and body: the same
    /// delivery under another event id (the id is not signed) is a replay, answered as a duplicate.
    pub async fn deliver(
        &self,
        event_id: &EventId,
        delivery: &str,
        incident: &Incident,
    ) -> Result<Outcome, CfWebhookError> {
        let reference = &incident.reference;
        let event_key = event_key(reference, event_id);
        let delivery_key = delivery_key(reference, delivery);
        let (incident_record, event_record, delivery_record) = self
            .ctx
            .store
            .get_three::<IncidentRecord, EventRecord, DeliveryRecord>(
                &incident_key(reference),
                &event_key,
                &delivery_key,
            )
            .await?;
        if let Some(done) = event_record.as_ref().filter(|e| e.value.state == EventState::Done) {
            return Ok(Outcome::Duplicate(done.value.ticket_id.unwrap_or_default()));
        }
        if let Some(replayed) = delivery_record.as_ref().filter(|d| d.value.event_id != event_id.as_str()) {
            return Ok(Outcome::Duplicate(replayed.value.ticket_id));
        }
        let delivery_unseen = delivery_record.is_none();
        match self.link(event_id, delivery, incident, incident_record).await? {
            Link::CreatedNow(ticket_id) => Ok(Outcome::Created(ticket_id)),
            // The event that created the ticket (its ticket record was written before the incident was marked
            // created), or its signed delivery under another id: a duplicate, with no record of its own.
            Link::Existing { ticket_id, created_by_event, created_by_delivery }
                if created_by_event.as_deref() == Some(event_id.as_str())
                    || created_by_delivery.as_deref() == Some(delivery) =>
            {
                Ok(Outcome::Duplicate(ticket_id))
            }
            Link::Existing { ticket_id, .. } => {
                let keys = (&event_key, &delivery_key);
                let read = (event_record, delivery_unseen);
                self.note_once(keys, event_id, ticket_id, read).await
            }
        }
    }

    /// Finds the incident's ticket, or claims the incident and creates it. `read` is the record as just read.
    async fn link(
        &self,
        event_id: &EventId,
        delivery: &str,
        incident: &Incident,
        read: Option<Versioned<IncidentRecord>>,
    ) -> Result<Link, CfWebhookError> {
        let key = incident_key(&incident.reference);
        let fresh = || IncidentRecord::new(incident.reference.clone(), IncidentState::Claimed, None);
        let how = Claiming {
            fresh: Some(&fresh),
            take_over: &IncidentRecord::clone,
            patience: Patience::Wait(WAIT_FOR_OTHER_DELIVERY),
        };
        match self.ctx.claims.acquire(&key, Some(read), how).await? {
            Acquired::Done(found) => Ok(Link::Existing {
                ticket_id: found.value.ticket_id.unwrap_or_default(),
                created_by_event: found.value.created_by_event,
                created_by_delivery: found.value.created_by_delivery,
            }),
            Acquired::Ours { mut record, took_over } => {
                // A claim that timed out (rather than being released after a sure failure) may have created.
                record.value.lookup_needed |= took_over.is_some_and(|c| c.since != 0);
                self.create(&key, event_id, delivery, incident, record).await
            }
            Acquired::Busy | Acquired::Uncertain(_) => Err(CfWebhookError::InFlight),
        }
    }

    /// Holding the incident's claim: looks first when a previous attempt may have created the ticket, else creates.
    async fn create(
        &self,
        key: &Key,
        event_id: &EventId,
        delivery: &str,
        incident: &Incident,
        claim: Versioned<IncidentRecord>,
    ) -> Result<Link, CfWebhookError> {
        let reference = &incident.reference;
        let lookup_needed = claim.value.lookup_needed;
        let release = |sure_not_created: bool| {
            let how = if sure_not_created { Release::Now } else { Release::AfterSettling };
            self.ctx.claims.release(key, &claim, how, move |r| r.lookup_needed = !sure_not_created)
        };
        let route = match routing::route(&self.ctx, self.cfg, incident).await {
            Ok(route) => route,
            Err(e) => {
                // Nothing was sent to create: the next attempt may claim at once.
                release(!lookup_needed).await;
                return Err(match e {
                    routing::RoutingError::Halo(e) => e.into(),
                    routing::RoutingError::Store(e) => e.into(),
                });
            }
        };
        let client_id = route.client.client_id;
        let recovered = if lookup_needed {
            match self.ctx.halo.find_ticket(reference, self.ctx.location, client_id, self.ctx.deadline).await {
                Ok(found) => found,
                Err(e) => {
                    release(false).await;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let ticket_id = match recovered {
            Some(id) => {
                tracing::info!(reference = %reference, ticket_id = id, "found the ticket an earlier attempt created");
                id
            }
            None => {
                let ticket = mapping::new_ticket(incident, self.cfg, self.ctx.location, route.client);
                match self.ctx.halo.create_ticket(&ticket, self.ctx.deadline).await {
                    Ok(id) => id,
                    Err(e) => {
                        release(!e.maybe_applied() && !lookup_needed).await;
                        return Err(e.into());
                    }
                }
            }
        };
        // The ticket's record first: once the incident says Created, everything for it exists (a redelivery of
        // this event is then a plain duplicate).
        let workspace = self.cfg.mapped_workspace(incident.account_id.as_deref());
        let routed_by = route.by.describe();
        let reference_text = reference.to_string();
        tracing::info!(
            reference = reference_text.as_str(),
            ticket_id,
            client_id,
            site_id = route.client.site_id,
            routed_by,
            workspace,
            "routed"
        );
        crate::trace::routed(client_id, &routed_by);
        if let Err(e) = self.seed_ticket(ticket_id, reference, workspace).await {
            // The ticket exists: give the claim back (settling), and the next delivery finds it by its reference.
            release(false).await;
            return Err(e.into());
        }
        let mut created = claim.value.clone();
        created.state = IncidentState::Created;
        created.ticket_id = Some(ticket_id);
        created.lookup_needed = false;
        created.created_by_event = Some(event_id.to_string());
        created.created_by_delivery = Some(delivery.to_string());
        created.client_id = Some(client_id);
        created.routed_by = Some(routed_by);
        created.workspace_id = workspace.map(str::to_string);
        // Our claim may have gone stale and been taken over: record ours unless another delivery finished first.
        let written = self.ctx.claims.settle_if(key, &claim, &created, |r| r.state == IncidentState::Claimed).await?;
        if written.is_none() {
            let stored = self.ctx.store.get::<IncidentRecord>(key).await?;
            if let Some(other) = stored.and_then(|r| r.value.ticket_id).filter(|other| *other != ticket_id) {
                tracing::error!(reference = %reference, ticket_id, other, "two tickets for one incident");
            }
        }
        Ok(Link::CreatedNow(ticket_id))
    }

    /// The halo-webhook direction's record for a ticket we created: its creation is not echoed back.
    async fn seed_ticket(
        &self,
        ticket_id: TicketId,
        reference: &ExternalRef,
        workspace: Option<&str>,
    ) -> Result<(), StoreError> {
        let record =
            TicketRecord { workspace_id: workspace.map(str::to_string), ..TicketRecord::new(reference.clone(), true) };
        match self.ctx.store.insert(&ticket_key(ticket_id), &record).await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A later event of an incident that has its ticket: one private note, exactly once per event id and per
    /// signed delivery. `keys`: the event's record and the delivery's; `read`: the event's record as read, and
    /// whether the delivery's was absent.
    async fn note_once(
        &self,
        (key, delivery_key): (&Key, &Key),
        event_id: &EventId,
        ticket_id: TicketId,
        (read, delivery_unseen): (Option<Versioned<EventRecord>>, bool),
    ) -> Result<Outcome, CfWebhookError> {
        let pending = || EventRecord {
            event_id: event_id.to_string(),
            state: EventState::Pending,
            ticket_id: Some(ticket_id),
            claim: Claim::released(),
        };
        let ours = DeliveryRecord { event_id: event_id.to_string(), ticket_id };
        // The usual later event, new under both keys: its claim and its delivery's record in one write.
        let together = match (&read, delivery_unseen) {
            (None, true) => {
                let claimed = EventRecord { claim: self.ctx.claims.new_claim(), ..pending() };
                let writes = [Write::insert(key, &claimed), Write::insert(delivery_key, &ours)];
                match self.ctx.store.batch(&key.partition, &writes).await {
                    Ok(etags) => Some(Versioned { value: claimed, etag: etags[0].clone() }),
                    // Another delivery wrote one of them first, or this batch's own first attempt landed unseen:
                    // claimed one record at a time, from a fresh read.
                    Err(StoreError::Conflict) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            _ => None,
        };
        let (claim, took_over) = match together {
            Some(claim) => (claim, false),
            None => {
                let read = if delivery_unseen && read.is_none() { None } else { Some(read) };
                match self.claim_event_and_delivery((key, delivery_key), &pending, &ours, read).await? {
                    Some(claimed) => claimed,
                    None => return Ok(Outcome::Duplicate(ticket_id)),
                }
            }
        };
        if took_over {
            // An earlier attempt may have written the note: look before writing it again.
            match self.ctx.halo.actions(ticket_id, self.ctx.deadline).await {
                Ok(actions) => {
                    let written = actions
                        .iter()
                        .find(|a| mapping::is_event_note(a.note_html.as_deref(), a.note.as_deref(), event_id));
                    if let Some(action) = written {
                        self.finish_note(key, &claim, ticket_id, action.id).await?;
                        return Ok(Outcome::Updated(ticket_id));
                    }
                }
                Err(e) => {
                    self.ctx.claims.release(key, &claim, Release::AfterSettling, |_| {}).await;
                    return Err(e.into());
                }
            }
        }
        let note = mapping::event_note(ticket_id, event_id, &self.cfg.note_outcome);
        match self.ctx.halo.add_action(&note, self.ctx.deadline).await {
            Ok(action_id) => {
                self.finish_note(key, &claim, ticket_id, action_id).await?;
                Ok(Outcome::Updated(ticket_id))
            }
            Err(e) => {
                // After a failed note: forget the claim when the note surely was not written, else release it
                // after the settling time, and the next delivery looks in Halo first.
                let how = if e.maybe_applied() { Release::AfterSettling } else { Release::Forget };
                self.ctx.claims.release(key, &claim, how, |_| {}).await;
                Err(e.into())
            }
        }
    }

    /// The event's claim, then its delivery's record, one write each (when the batch of both met a record).
    /// `None`: a duplicate (the event is done, or its signed delivery was noted under another event id).
    async fn claim_event_and_delivery(
        &self,
        (key, delivery_key): (&Key, &Key),
        pending: &(dyn Fn() -> EventRecord + Sync),
        ours: &DeliveryRecord,
        read: Option<Option<Versioned<EventRecord>>>,
    ) -> Result<Option<(Versioned<EventRecord>, bool)>, CfWebhookError> {
        let how = Claiming {
            fresh: Some(pending),
            take_over: &|_: &EventRecord| pending(),
            patience: Patience::Wait(WAIT_FOR_OTHER_DELIVERY),
        };
        let (claim, took_over) = match self.ctx.claims.acquire(key, read, how).await? {
            Acquired::Done(_) => return Ok(None),
            Acquired::Busy | Acquired::Uncertain(_) => return Err(CfWebhookError::InFlight),
            Acquired::Ours { record, took_over } => (record, took_over.is_some()),
        };
        // The delivery is ours under this event id, or another id holds it: a replay, and this event is nothing.
        let held_by = match self.ctx.store.insert(delivery_key, ours).await {
            Ok(_) => None,
            Err(StoreError::Conflict) => self.ctx.store.get::<DeliveryRecord>(delivery_key).await?.map(|d| d.value),
            Err(e) => {
                self.ctx.claims.release(key, &claim, Release::Now, |_| {}).await;
                return Err(e.into());
            }
        };
        if held_by.is_some_and(|d| d.event_id != ours.event_id) {
            self.ctx.claims.release(key, &claim, Release::Forget, |_| {}).await;
            return Ok(None);
        }
        Ok(Some((claim, took_over)))
    }

    /// The note exists: mark it as the bridge's own (never forwarded back) and the event Done, whatever happened to
    /// our claim meanwhile (the note is written; a redelivery must be a duplicate).
    async fn finish_note(
        &self,
        key: &Key,
        claim: &Versioned<EventRecord>,
        ticket_id: TicketId,
        action_id: i64,
    ) -> Result<(), StoreError> {
        let own = ActionMarker { state: MarkerState::Own, claim: Claim::released() };
        let own_key = own_note_key(key, action_id);
        let mut done = claim.value.clone();
        done.state = EventState::Done;
        done.claim = Claim::released();
        // Both in the incident's partition: one write when the event's record is still as we hold it.
        let together = [Write::replace(key, &done, &claim.etag), Write::insert(&own_key, &own)];
        match self.ctx.store.batch(&key.partition, &together).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Unavailable(e)) => return Err(StoreError::Unavailable(e)),
            // Our claim was taken over, or the mark is there already: one at a time.
            Err(_) => {}
        }
        match self.ctx.store.insert(&own_key, &own).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => tracing::warn!(error = %e, ticket_id, "could not mark the bridge's own note"),
        }
        match self.ctx.claims.settle_if(key, claim, &done, |r| r.state != EventState::Done).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound) => match self.ctx.store.insert(key, &done).await {
                Ok(_) | Err(StoreError::Conflict) => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}
