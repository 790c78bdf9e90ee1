//! ContraForce → Halo, exactly once: one ticket per incident (`cf|source|incidentId`), one private note per later
//! event, nothing done twice however deliveries are retried, duplicated, interleaved or cut off.
//!
//! The incident record in Table Storage is the source of truth (a Halo search is not: halo-api.md §2). A delivery
//! claims the incident (insert-if-absent, ETag updates) before calling Halo; a claim whose holder died is taken over
//! only after looking for the ticket in Halo, and a Halo result counts only if it carries our exact reference.

use crate::app::Context;
use crate::cf::event::Incident;
use crate::config::OutboundConfig;
use crate::domain::{EventId, ExternalRef, TicketId};
use crate::halo::mapping;
use crate::store::{
    action_key, event_key, incident_key, ticket_key, ActionMarker, Claim, EventRecord, EventState, IncidentRecord,
    IncidentState, MarkerState, StoreError, TicketRecord, Versioned,
};
use crate::upstream::UpstreamError;
use std::time::Duration;
use tokio::time::Instant;

/// How long a delivery waits for a concurrent delivery of the same incident before answering 503.
const WAIT_FOR_OTHER_DELIVERY: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(150);

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
pub enum OutboundError {
    #[error("another delivery of this incident is being processed; retry shortly")]
    InFlight,
    #[error(transparent)]
    Halo(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything one delivery needs.
pub struct Delivery<'a> {
    pub ctx: Context<'a>,
    pub cfg: &'a OutboundConfig,
}

impl<'a> std::ops::Deref for Delivery<'a> {
    type Target = Context<'a>;
    fn deref(&self) -> &Context<'a> {
        &self.ctx
    }
}

enum Link {
    /// This delivery created (or recovered) the ticket.
    CreatedNow(TicketId),
    Existing {
        ticket_id: TicketId,
        created_by_event: Option<String>,
    },
}

impl Delivery<'_> {
    /// One Table read (the incident and this event's record, in one query) decides the path: a duplicate costs
    /// nothing more; a new incident costs three writes and one Halo call; a later event three writes and one note.
    pub async fn deliver(&self, event_id: &EventId, incident: &Incident) -> Result<Outcome, OutboundError> {
        let reference =
            ExternalRef::new(&incident.source, &incident.incident_id).expect("validated by the event parser");
        let event_key = event_key(&reference, event_id);
        let (incident_record, event_record) =
            self.store.get_pair::<IncidentRecord, EventRecord>(&incident_key(&reference), &event_key).await?;
        if let Some(done) = event_record.as_ref().filter(|e| e.value.state == EventState::Done) {
            return Ok(Outcome::Duplicate(done.value.ticket_id.unwrap_or_default()));
        }
        match self.link(&reference, event_id, incident, incident_record).await? {
            Link::CreatedNow(ticket_id) => Ok(Outcome::Created(ticket_id)),
            // The event that created the ticket (its ticket record was written before the incident was marked
            // created): a redelivery of it is a duplicate, and needs no record of its own.
            Link::Existing { ticket_id, created_by_event }
                if created_by_event.as_deref() == Some(event_id.as_str()) =>
            {
                Ok(Outcome::Duplicate(ticket_id))
            }
            Link::Existing { ticket_id, .. } => self.note_once(&event_key, event_id, ticket_id, event_record).await,
        }
    }

    async fn wait_or_give_up(&self, waiting_since: Instant) -> Result<(), OutboundError> {
        if waiting_since.elapsed() >= WAIT_FOR_OTHER_DELIVERY || self.deadline.remaining() < POLL * 4 {
            return Err(OutboundError::InFlight);
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }

    /// Finds the incident's ticket, or claims the incident and creates it. `read` is the record as just read;
    /// later rounds (after a lost race) read it again.
    async fn link(
        &self,
        reference: &ExternalRef,
        event_id: &EventId,
        incident: &Incident,
        read: Option<Versioned<IncidentRecord>>,
    ) -> Result<Link, OutboundError> {
        let key = incident_key(reference);
        let started = Instant::now();
        let mut current = Some(read);
        loop {
            let record = match current.take() {
                Some(read) => read,
                None => self.store.get::<IncidentRecord>(&key).await?,
            };
            match record {
                None => {
                    let record = IncidentRecord {
                        reference: reference.to_string(),
                        state: IncidentState::Claimed,
                        ticket_id: None,
                        claim: Claim::new(&self.owner),
                        lookup_needed: false,
                        created_by_event: None,
                    };
                    match self.store.insert(&key, &record).await {
                        Ok(etag) => {
                            return self.create(reference, event_id, incident, Versioned { value: record, etag }).await
                        }
                        Err(StoreError::Conflict) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(found) if found.value.state == IncidentState::Created => {
                    return Ok(Link::Existing {
                        ticket_id: found.value.ticket_id.unwrap_or_default(),
                        created_by_event: found.value.created_by_event,
                    })
                }
                Some(found) if found.value.claim.is_stale(self.claim_ttl_secs) => {
                    let mut record = found.value.clone();
                    // A claim that timed out (rather than being released after a sure failure) may have created.
                    record.lookup_needed |= found.value.claim.since != 0;
                    record.claim = Claim::new(&self.owner);
                    match self.store.replace(&key, &record, &found.etag).await {
                        Ok(etag) => {
                            return self.create(reference, event_id, incident, Versioned { value: record, etag }).await
                        }
                        Err(StoreError::Changed) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(_) => self.wait_or_give_up(started).await?,
            }
        }
    }

    /// Holding the incident's claim: looks first when a previous attempt may have created the ticket, else creates.
    async fn create(
        &self,
        reference: &ExternalRef,
        event_id: &EventId,
        incident: &Incident,
        claim: Versioned<IncidentRecord>,
    ) -> Result<Link, OutboundError> {
        let key = incident_key(reference);
        let client_id = self.cfg.client_for(incident.account_id.as_deref());
        let recovered = if claim.value.lookup_needed {
            match self.halo.find_ticket(reference, self.location, client_id, self.deadline).await {
                Ok(found) => found,
                Err(e) => {
                    self.release(&key, &claim, true).await;
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
                let ticket = mapping::new_ticket(incident, reference, self.cfg, self.location);
                match self.halo.create_ticket(&ticket, self.deadline).await {
                    Ok(id) => id,
                    Err(e) => {
                        self.release(&key, &claim, e.maybe_applied() || claim.value.lookup_needed).await;
                        return Err(e.into());
                    }
                }
            }
        };
        // The ticket's record first: once the incident says Created, everything for it exists (a redelivery of
        // this event is then a plain duplicate).
        if let Err(e) = self.seed_ticket(ticket_id, reference).await {
            // The ticket exists: give the claim back (settling), and the next delivery finds it by its reference.
            self.release(&key, &claim, true).await;
            return Err(e.into());
        }
        let mut created = claim.value.clone();
        created.state = IncidentState::Created;
        created.ticket_id = Some(ticket_id);
        created.lookup_needed = false;
        created.created_by_event = Some(event_id.to_string());
        match self.store.replace(&key, &created, &claim.etag).await {
            Ok(_) => {}
            Err(StoreError::Changed) => {
                // Our claim went stale and another delivery took it over; record ours unless it already finished.
                let stored = self
                    .store
                    .update::<IncidentRecord, _>(&key, |r| {
                        let open = r.state == IncidentState::Claimed;
                        if open {
                            *r = created.clone();
                        }
                        open
                    })
                    .await?;
                if let Some(r) = stored.filter(|r| r.ticket_id != Some(ticket_id)) {
                    tracing::error!(reference = %reference, ticket_id, other = ?r.ticket_id, "two tickets for one incident");
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Link::CreatedNow(ticket_id))
    }

    /// Gives a failed claim back: at once for the next delivery when the create surely did not happen; when it may
    /// have, after a settling time (Halo may still be carrying it out), and the next delivery looks in Halo first.
    async fn release(&self, key: &crate::store::Key, claim: &Versioned<IncidentRecord>, lookup_needed: bool) {
        let mut released = claim.value.clone();
        released.claim =
            if lookup_needed { Claim::settling(self.claim_ttl_secs, self.settle_secs) } else { Claim::released() };
        released.lookup_needed = lookup_needed;
        if let Err(e) = self.store.replace(key, &released, &claim.etag).await {
            // The claim then goes stale after its TTL and the next delivery looks in Halo first.
            tracing::warn!(error = %e, "could not release an incident claim");
        }
    }

    /// The inbound direction's record for a ticket we created: its creation is not echoed back.
    async fn seed_ticket(&self, ticket_id: TicketId, reference: &ExternalRef) -> Result<(), StoreError> {
        match self.store.insert(&ticket_key(ticket_id), &TicketRecord::new(reference.to_string(), true)).await {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes the event's Done record whatever its current state (after our claim was taken over).
    async fn mark_event_done(&self, key: &crate::store::Key, done: &EventRecord) -> Result<(), StoreError> {
        match self.store.insert(key, done).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict) => self
                .store
                .update::<EventRecord, _>(key, |r| std::mem::replace(r, done.clone()) != *done)
                .await
                .map(drop),
            Err(e) => Err(e),
        }
    }

    /// A later event of an incident that has its ticket: one private note, exactly once per event id.
    async fn note_once(
        &self,
        key: &crate::store::Key,
        event_id: &EventId,
        ticket_id: TicketId,
        read: Option<Versioned<EventRecord>>,
    ) -> Result<Outcome, OutboundError> {
        let started = Instant::now();
        let mut current = Some(read);
        let (claim, took_over) = loop {
            let pending = EventRecord {
                event_id: event_id.to_string(),
                state: EventState::Pending,
                ticket_id: Some(ticket_id),
                claim: Claim::new(&self.owner),
            };
            let record = match current.take() {
                Some(read) => read,
                None => self.store.get::<EventRecord>(key).await?,
            };
            match record {
                None => match self.store.insert(key, &pending).await {
                    Ok(etag) => break (Versioned { value: pending, etag }, false),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                },
                Some(found) if found.value.state == EventState::Done => return Ok(Outcome::Duplicate(ticket_id)),
                Some(found) if found.value.claim.is_stale(self.claim_ttl_secs) => {
                    match self.store.replace(key, &pending, &found.etag).await {
                        Ok(etag) => break (Versioned { value: pending, etag }, true),
                        Err(StoreError::Changed) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(_) => self.wait_or_give_up(started).await?,
            }
        };
        if took_over {
            // An earlier attempt may have written the note: look before writing it again.
            match self.halo.actions(ticket_id, self.deadline).await {
                Ok(actions) => {
                    if let Some(action) = actions
                        .iter()
                        .find(|a| mapping::is_event_note(a.note_html.as_deref(), a.note.as_deref(), event_id))
                    {
                        self.finish_note(key, &claim, event_id, ticket_id, action.id).await?;
                        return Ok(Outcome::Updated(ticket_id));
                    }
                }
                Err(e) => {
                    self.give_back_event(key, &claim, true).await;
                    return Err(e.into());
                }
            }
        }
        let note = mapping::event_note(ticket_id, event_id, &self.cfg.note_outcome);
        match self.halo.add_action(&note, self.deadline).await {
            Ok(action_id) => {
                self.finish_note(key, &claim, event_id, ticket_id, action_id).await?;
                Ok(Outcome::Updated(ticket_id))
            }
            Err(e) => {
                self.give_back_event(key, &claim, e.maybe_applied()).await;
                Err(e.into())
            }
        }
    }

    async fn finish_note(
        &self,
        key: &crate::store::Key,
        claim: &Versioned<EventRecord>,
        event_id: &EventId,
        ticket_id: TicketId,
        action_id: i64,
    ) -> Result<(), StoreError> {
        let own = ActionMarker { state: MarkerState::Own, claim: Claim::released() };
        match self.store.insert(&action_key(ticket_id, action_id), &own).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => tracing::warn!(error = %e, "could not mark the bridge's own note"),
        }
        let done = EventRecord {
            event_id: event_id.to_string(),
            state: EventState::Done,
            ticket_id: Some(ticket_id),
            claim: Claim::released(),
        };
        match self.store.replace(key, &done, &claim.etag).await {
            Ok(_) => Ok(()),
            Err(StoreError::Changed) => self.mark_event_done(key, &done).await,
            Err(e) => Err(e),
        }
    }

    /// After a failed note: forget the claim when the note surely was not written, else release it after the
    /// settling time, and the next delivery looks in Halo first.
    async fn give_back_event(&self, key: &crate::store::Key, claim: &Versioned<EventRecord>, maybe_written: bool) {
        let result = if maybe_written {
            let mut released = claim.value.clone();
            released.claim = Claim::settling(self.claim_ttl_secs, self.settle_secs);
            self.store.replace(key, &released, &claim.etag).await.map(drop)
        } else {
            self.store.delete(key, &claim.etag).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not give back an event claim");
        }
    }
}
